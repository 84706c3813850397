/* backend_cpu.c: the CPU backend's table, its memory ops and dtype conversion.
 *
 * "Device" memory on the CPU is host memory. Every block carries a small header
 * holding its size, so mem_used can report the bytes currently allocated through
 * alloc (the trainer's memory report works the same on both backends). Blocks are
 * 256-byte aligned, as backend.h promises (the model carves its buffers at 256-byte
 * offsets into a block, so every piece is then as aligned as on CUDA).
 * The compute ops live in the other files of kernels/cpu, one op family each. */
#include "backend.h"
#include "cpu_ops.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define CPU_ALIGN 256  // block alignment

static atomic_size_t cpu_bytes_in_use;

/* Header stored just below each block: where calloc's block starts and its size. */
typedef struct {
    void *base;
    size_t bytes;
} CpuBlock;

/* Zeroed, 256-byte aligned block of `bytes`. calloc rather than malloc + memset:
 * large blocks then come as fresh zero pages from the OS, not touched twice. */
static void *cpu_alloc(size_t bytes) {
    size_t extra = CPU_ALIGN + sizeof(CpuBlock);
    if (bytes > SIZE_MAX - extra) return NULL;
    char *base = calloc(1, bytes + extra);
    if (!base) return NULL;
    uintptr_t a = (uintptr_t)base + sizeof(CpuBlock) + CPU_ALIGN - 1;
    a &= ~(uintptr_t)(CPU_ALIGN - 1);
    CpuBlock *h = (CpuBlock *)a - 1;
    h->base = base;
    h->bytes = bytes;
    atomic_fetch_add(&cpu_bytes_in_use, bytes);
    return (void *)a;
}

static void cpu_free(void *p) {
    if (!p) return;
    CpuBlock *h = (CpuBlock *)p - 1;
    atomic_fetch_sub(&cpu_bytes_in_use, h->bytes);
    free(h->base);
}

static size_t cpu_mem_used(void) { return atomic_load(&cpu_bytes_in_use); }

static void cpu_zero(void *p, size_t bytes) { memset(p, 0, bytes); }
static void cpu_sync(void) {}
static void cpu_copy(void *dst, const void *src, size_t bytes) {
    if (bytes) memmove(dst, src, bytes);
}

/* Host staging: on the CPU "device" and host memory are one, so staging is plain memory,
 * copies happen at once and there is nothing to wait for. */
static void *cpu_host_alloc(size_t bytes) { return malloc(bytes ? bytes : 1); }
static void cpu_host_free(void *p) { free(p); }
static void cpu_copy_async(void *dst, const void *src, size_t bytes, int ticket) {
    (void)ticket;
    cpu_copy(dst, src, bytes);
}
static void cpu_copy_wait(int ticket) { (void)ticket; }

/* bf16 is the top half of an fp32: widen by shifting the bits back up. */
static float cpu_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* IEEE half -> float, exact for every input (subnormals, inf, NaN included). */
static float cpu_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);                 // inf / NaN
    } else if (exp != 0) {
        u = sign | ((exp + 112) << 23) | (man << 13);          // normal: rebias 15 -> 127
    } else if (man == 0) {
        u = sign;                                              // +-0
    } else {                                                   // subnormal: man * 2^-24
        float f = (float)man * (1.0f / 16777216.0f);
        memcpy(&u, &f, 4);
        u |= sign;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Host data of src_dtype -> fp32 device memory. */
static void cpu_upload_act(void *dst, const void *src, int src_dtype, size_t n) {
    float *d = dst;
    if (src_dtype == DT_F32) {
        cpu_copy(dst, src, n * 4);
    } else if (src_dtype == DT_BF16) {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) d[i] = cpu_bf16_to_f32(s[i]);
    } else if (src_dtype == DT_F16) {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) d[i] = cpu_f16_to_f32(s[i]);
    } else {
        cpu_fill_nan(d, n);  // unknown dtype: callers pass only the three above
    }
}

static void cpu_download_act(float *dst, const void *src, size_t n) { cpu_copy(dst, src, n * 4); }

void cpu_fill_nan(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

static const Backend cpu_backend = {
    .name = "cpu",
    .act_dtype = DT_F32,
    .act_size = 4,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .sync = cpu_sync,
    .copy_to_device = cpu_copy,
    .copy_to_host = cpu_copy,
    .copy_device = cpu_copy,
    .upload_act = cpu_upload_act,
    .download_act = cpu_download_act,
    .mem_used = cpu_mem_used,
    .embedding_forward = cpu_embedding_forward,
    .rmsnorm_forward = cpu_rmsnorm_forward,
    .rmsnorm_backward = cpu_rmsnorm_backward,
    .matmul_forward = cpu_matmul_forward,
    .matmul_backward = cpu_matmul_backward,
    .lora_forward = cpu_lora_forward,
    .lora_backward = cpu_lora_backward,
    .rope_forward = cpu_rope_forward,
    .rope_backward = cpu_rope_backward,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .attention_bwd_ws_bytes = cpu_attention_bwd_ws_bytes,
    .swiglu_forward = cpu_swiglu_forward,
    .swiglu_backward = cpu_swiglu_backward,
    .add_inplace = cpu_add_inplace,
    .gather_rows = cpu_gather_rows,
    .scatter_add_rows = cpu_scatter_add_rows,
    .lm_head_ce = cpu_lm_head_ce,
    .lemo_block_scores = cpu_lemo_block_scores,
    .lemo_scores_ws_bytes = cpu_lemo_scores_ws_bytes,
    .lemo_random_scores = cpu_lemo_random_scores,
    .lemo_select_blocks = cpu_lemo_select_blocks,
    .lemo_select_ws_bytes = cpu_lemo_select_ws_bytes,
    .lemo_block_matrix = cpu_lemo_block_matrix,
    .lemo_matrix_scores = cpu_lemo_matrix_scores,
    .lemo_predictor_forward = cpu_lemo_predictor_forward,
    .lemo_predictor_backward = cpu_lemo_predictor_backward,
    .lemo_smooth_l1 = cpu_lemo_smooth_l1,
    .scratch_bytes = cpu_scratch_bytes,
    .runtime_bytes = (size_t)16 << 20,  // the process, libraries, OpenBLAS buffers, stacks
    .sumsq = cpu_sumsq,
    .scale = cpu_scale,
    .adamw = cpu_adamw,
    .host_alloc = cpu_host_alloc,
    .host_free = cpu_host_free,
    .copy_async = cpu_copy_async,
    .copy_wait = cpu_copy_wait,
};

const Backend *backend_cpu(void) { return &cpu_backend; }
