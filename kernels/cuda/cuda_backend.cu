/* cuda_backend.cu: the CUDA backend's table, device set-up, memory and dtype transfer.
 *
 * backend_cuda() picks device 0, checks it can run this build (compute
 * capability 9.0: the kernels are built for sm_90a plus compute_90 PTX), creates
 * the cuBLAS handle with a workspace we own, and returns the table; on any failure
 * it returns NULL with the reason, so a caller can fall back to the CPU.
 *
 * Memory: every allocation goes through cuda_alloc, which records its size in a
 * small table, so mem_used is exactly the bytes this backend holds (weights,
 * activations, scratch, cuBLAS workspace), not other processes' use of the card.
 * Transfers of activations convert on the host in bounded chunks (fp32/f16 ->
 * bf16 with round-to-nearest-even), so loading a model needs no device staging. */
#include <cuda_fp16.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cuda.h"
#include "cuda_common.h"

/* --- errors --- */

static int g_sync_launches = -1;  // LEMO_CUDA_SYNC=1: synchronize after every launch

void cuda_fatal(const char *stmt, const char *msg, const char *file, int line) {
    fprintf(stderr, "lemo: CUDA error: %s failed: %s (%s:%d)\n", stmt, msg, file, line);
    fflush(stderr);
    exit(70);
}

void cuda_launch_check(const char *file, int line) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) cuda_fatal("kernel launch", cudaGetErrorString(e), file, line);
    if (g_sync_launches < 0) {
        const char *s = getenv("LEMO_CUDA_SYNC");
        g_sync_launches = s && *s == '1';
    }
    if (g_sync_launches) {
        e = cudaDeviceSynchronize();
        if (e != cudaSuccess) cuda_fatal("kernel execution", cudaGetErrorString(e), file, line);
    }
}

/* --- tracked allocations --- */

typedef struct {
    void *p;
    size_t bytes;
} Block;

static pthread_mutex_t g_mem_lock = PTHREAD_MUTEX_INITIALIZER;
static Block *g_blocks;              // live allocations (few: one per memory category)
static size_t g_nblocks, g_capblocks;
static size_t g_used, g_peak;

void *cuda_alloc(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 1;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        cudaGetLastError();  // out of memory is not sticky: clear it and report NULL
        return NULL;
    }
    CUDA_CHECK(cudaMemset(p, 0, bytes));
    pthread_mutex_lock(&g_mem_lock);
    if (g_nblocks == g_capblocks) {
        size_t cap = g_capblocks ? 2 * g_capblocks : 64;
        Block *nb = (Block *)realloc(g_blocks, cap * sizeof(Block));
        if (!nb) {
            pthread_mutex_unlock(&g_mem_lock);
            cudaFree(p);
            return NULL;
        }
        g_blocks = nb;
        g_capblocks = cap;
    }
    g_blocks[g_nblocks++] = (Block){p, bytes};
    g_used += bytes;
    if (g_used > g_peak) g_peak = g_used;
    pthread_mutex_unlock(&g_mem_lock);
    return p;
}

void cuda_free(void *p) {
    if (!p) return;
    pthread_mutex_lock(&g_mem_lock);
    for (size_t i = 0; i < g_nblocks; i++) {
        if (g_blocks[i].p == p) {
            g_used -= g_blocks[i].bytes;
            g_blocks[i] = g_blocks[--g_nblocks];
            break;
        }
    }
    pthread_mutex_unlock(&g_mem_lock);
    CUDA_CHECK(cudaFree(p));
}

static size_t cuda_mem_used(void) {
    pthread_mutex_lock(&g_mem_lock);
    size_t u = g_used;
    pthread_mutex_unlock(&g_mem_lock);
    return u;
}

extern "C" size_t cuda_mem_peak(void) {
    pthread_mutex_lock(&g_mem_lock);
    size_t u = g_peak;
    pthread_mutex_unlock(&g_mem_lock);
    return u;
}

extern "C" void cuda_mem_reset_peak(void) {
    pthread_mutex_lock(&g_mem_lock);
    g_peak = g_used;
    pthread_mutex_unlock(&g_mem_lock);
}

static void *g_scratch;
static size_t g_scratch_bytes;

void *cuda_scratch(size_t bytes) {
    if (bytes <= g_scratch_bytes) return g_scratch;
    bytes = align_up(bytes + bytes / 4, 1 << 20);  // grow with headroom, in MiB steps
    CUDA_CHECK(cudaDeviceSynchronize());             // earlier ops may still use the old block
    cuda_free(g_scratch);
    g_scratch = cuda_alloc(bytes);
    if (!g_scratch) {
        char msg[96];
        snprintf(msg, sizeof msg, "out of device memory for %zu bytes of scratch", bytes);
        cuda_fatal("cuda_scratch", msg, __FILE__, __LINE__);
    }
    g_scratch_bytes = bytes;
    return g_scratch;
}

/* --- memory ops of the table --- */

static void be_zero(void *p, size_t bytes) { CUDA_CHECK(cudaMemsetAsync(p, 0, bytes)); }
static void be_sync(void) { CUDA_CHECK(cudaDeviceSynchronize()); }
static void be_copy_to_device(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
static void be_copy_to_host(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
static void be_copy_device(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice));
}

/* --- host staging and overlapped copies (layer checkpoints offloaded to host memory) ---
 * The ops run on the legacy default stream; copies run on a non-blocking side stream, so
 * they overlap the ops. A copy first waits for an event recorded on the default stream
 * (every op issued before it), then records its ticket's event; copy_wait makes the
 * default stream wait for that event. */

static cudaStream_t g_copy_stream;
static cudaEvent_t g_issued, g_ticket[BACKEND_COPY_TICKETS];

static void *be_host_alloc(size_t bytes) {
    void *p = NULL;
    if (cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocDefault) != cudaSuccess) {
        cudaGetLastError();  // out of pinned memory: report NULL, the caller names what failed
        return NULL;
    }
    return p;
}

static void be_host_free(void *p) {
    if (p) CUDA_CHECK(cudaFreeHost(p));
}

static void be_copy_async(void *dst, const void *src, size_t bytes, int ticket) {
    if (ticket < 0 || ticket >= BACKEND_COPY_TICKETS) cuda_fatal("copy_async", "ticket out of range", __FILE__, __LINE__);
    CUDA_CHECK(cudaEventRecord(g_issued, 0));
    CUDA_CHECK(cudaStreamWaitEvent(g_copy_stream, g_issued, 0));
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, g_copy_stream));
    CUDA_CHECK(cudaEventRecord(g_ticket[ticket], g_copy_stream));
}

static void be_copy_wait(int ticket) {
    if (ticket < 0 || ticket >= BACKEND_COPY_TICKETS) cuda_fatal("copy_wait", "ticket out of range", __FILE__, __LINE__);
    CUDA_CHECK(cudaStreamWaitEvent(0, g_ticket[ticket], 0));
}

#define XFER_CHUNK (1u << 22)  // elements converted per host staging round (8 MB of bf16)

/* Host src of src_dtype (n elements) -> bf16 on the device. */
static void be_upload_act(void *dst, const void *src, int src_dtype, size_t n) {
    if (src_dtype == DT_BF16) {
        be_copy_to_device(dst, src, n * 2);
        return;
    }
    bf16 *stage = (bf16 *)malloc((size_t)XFER_CHUNK * sizeof(bf16));
    if (!stage) cuda_fatal("malloc", "out of host memory for upload staging", __FILE__, __LINE__);
    for (size_t i0 = 0; i0 < n; i0 += XFER_CHUNK) {
        size_t m = n - i0 < XFER_CHUNK ? n - i0 : XFER_CHUNK;
        if (src_dtype == DT_F32) {
            const float *s = (const float *)src + i0;
            for (size_t i = 0; i < m; i++) stage[i] = __float2bfloat16_rn(s[i]);
        } else {  // DT_F16
            const __half *s = (const __half *)src + i0;
            for (size_t i = 0; i < m; i++) stage[i] = __float2bfloat16_rn(__half2float(s[i]));
        }
        be_copy_to_device((bf16 *)dst + i0, stage, m * sizeof(bf16));
    }
    free(stage);
}

/* bf16 on the device (n elements) -> fp32 on the host. */
static void be_download_act(float *dst, const void *src, size_t n) {
    bf16 *stage = (bf16 *)malloc((size_t)XFER_CHUNK * sizeof(bf16));
    if (!stage) cuda_fatal("malloc", "out of host memory for download staging", __FILE__, __LINE__);
    for (size_t i0 = 0; i0 < n; i0 += XFER_CHUNK) {
        size_t m = n - i0 < XFER_CHUNK ? n - i0 : XFER_CHUNK;
        be_copy_to_host(stage, (const bf16 *)src + i0, m * sizeof(bf16));
        for (size_t i = 0; i < m; i++) dst[i0 + i] = __bfloat162float(stage[i]);
    }
    free(stage);
}

/* --- device set-up --- */

static cublasHandle_t g_cublas;
static int g_sm_count;
static char g_device_name[256];

cublasHandle_t cuda_cublas(void) { return g_cublas; }
int cuda_sm_count(void) { return g_sm_count; }
extern "C" const char *cuda_device_name(void) { return g_device_name; }

static const Backend cuda_backend_table = {
    .name = "cuda",
    .act_dtype = DT_BF16,
    .act_size = 2,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .zero = be_zero,
    .sync = be_sync,
    .copy_to_device = be_copy_to_device,
    .copy_to_host = be_copy_to_host,
    .copy_device = be_copy_device,
    .upload_act = be_upload_act,
    .download_act = be_download_act,
    .mem_used = cuda_mem_used,
    .embedding_forward = cuda_embedding_forward,
    .rmsnorm_forward = cuda_rmsnorm_forward,
    .rmsnorm_backward = cuda_rmsnorm_backward,
    .matmul_forward = cuda_matmul_forward,
    .matmul_backward = cuda_matmul_backward,
    .lora_forward = cuda_lora_forward,
    .lora_backward = cuda_lora_backward,
    .rope_forward = cuda_rope_forward,
    .rope_backward = cuda_rope_backward,
    .attention_forward = cuda_attention_forward,
    .attention_backward = cuda_attention_backward,
    .attention_bwd_ws_bytes = cuda_attention_bwd_ws_bytes,
    .swiglu_forward = cuda_swiglu_forward,
    .swiglu_backward = cuda_swiglu_backward,
    .add_inplace = cuda_add_inplace,
    .gather_rows = cuda_gather_rows,
    .scatter_add_rows = cuda_scatter_add_rows,
    .lm_head_ce = cuda_lm_head_ce,
    .lemo_block_scores = cuda_lemo_block_scores,
    .lemo_scores_ws_bytes = cuda_lemo_scores_ws_bytes,
    .lemo_random_scores = cuda_lemo_random_scores,
    .lemo_select_blocks = cuda_lemo_select_blocks,
    .lemo_select_ws_bytes = cuda_lemo_select_ws_bytes,
    .lemo_block_matrix = cuda_lemo_block_matrix,
    .lemo_matrix_scores = cuda_lemo_matrix_scores,
    .lemo_predictor_forward = cuda_lemo_predictor_forward,
    .lemo_predictor_backward = cuda_lemo_predictor_backward,
    .lemo_smooth_l1 = cuda_lemo_smooth_l1,
    .scratch_bytes = cuda_scratch_bytes,
    .runtime_bytes = CUDA_CONTEXT_BYTES + CUDA_CUBLAS_WORKSPACE,
    .sumsq = cuda_sumsq,
    .scale = cuda_scale,
    .adamw = cuda_adamw,
    .host_alloc = be_host_alloc,
    .host_free = be_host_free,
    .copy_async = be_copy_async,
    .copy_wait = be_copy_wait,
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static const char *g_why;  // NULL once set up
static char g_why_buf[256];


/* Device 0 checked and prepared; sets g_why on failure. */
static void cuda_setup(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        snprintf(g_why_buf, sizeof g_why_buf, "no CUDA device: %s",
                 e != cudaSuccess ? cudaGetErrorString(e) : "none found");
        cudaGetLastError();
        g_why = g_why_buf;
        return;
    }
    cudaDeviceProp prop;
    if ((e = cudaGetDeviceProperties(&prop, 0)) != cudaSuccess) {
        snprintf(g_why_buf, sizeof g_why_buf, "CUDA device 0: %s", cudaGetErrorString(e));
        g_why = g_why_buf;
        return;
    }
    if (prop.major != 9) {
        snprintf(g_why_buf, sizeof g_why_buf,
                 "CUDA device 0 (%s) has compute capability %d.%d; this build needs 9.0 (Hopper)",
                 prop.name, prop.major, prop.minor);
        g_why = g_why_buf;
        return;
    }
    snprintf(g_device_name, sizeof g_device_name, "%s", prop.name);
    g_sm_count = prop.multiProcessorCount;
    if ((e = cudaSetDevice(0)) != cudaSuccess) {
        snprintf(g_why_buf, sizeof g_why_buf, "cudaSetDevice: %s", cudaGetErrorString(e));
        g_why = g_why_buf;
        return;
    }
    cublasStatus_t st = cublasCreate(&g_cublas);
    if (st != CUBLAS_STATUS_SUCCESS) {
        snprintf(g_why_buf, sizeof g_why_buf, "cublasCreate: %s", cublasGetStatusString(st));
        g_why = g_why_buf;
        return;
    }
    void *ws = cuda_alloc(CUDA_CUBLAS_WORKSPACE);
    if (!ws) {
        snprintf(g_why_buf, sizeof g_why_buf, "no device memory for the cuBLAS workspace");
        g_why = g_why_buf;
        return;
    }
    CUBLAS_CHECK(cublasSetWorkspace(g_cublas, ws, CUDA_CUBLAS_WORKSPACE));
    if ((e = cudaStreamCreateWithFlags(&g_copy_stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaEventCreateWithFlags(&g_issued, cudaEventDisableTiming)) != cudaSuccess) {
        snprintf(g_why_buf, sizeof g_why_buf, "copy stream: %s", cudaGetErrorString(e));
        g_why = g_why_buf;
        return;
    }
    for (int i = 0; i < BACKEND_COPY_TICKETS; i++)
        if ((e = cudaEventCreateWithFlags(&g_ticket[i], cudaEventDisableTiming)) != cudaSuccess) {
            snprintf(g_why_buf, sizeof g_why_buf, "copy events: %s", cudaGetErrorString(e));
            g_why = g_why_buf;
            return;
        }
    CUBLAS_CHECK(cublasSetMathMode(g_cublas, CUBLAS_DEFAULT_MATH));
    g_peak = g_used;
}

extern "C" const Backend *backend_cuda(const char **why) {
    pthread_once(&g_once, cuda_setup);
    if (g_why) {
        if (why) *why = g_why;
        return NULL;
    }
    if (why) *why = NULL;
    return &cuda_backend_table;
}
