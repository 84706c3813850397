/* backend_cuda.h: what the CUDA backend offers beyond the Backend table (C callable).
 *
 * backend_cuda() itself is declared in kernels/backend.h. These extras serve the
 * benchmark and the trainer's memory report: the peak of mem_used since the last
 * reset, and the device's name; and the attention backward's and the LeMo ops' workspace
 * sizes and the LoRA products' chunk of rows, which the estimate needs without the backend. */
#ifndef LEMO_BACKEND_CUDA_H
#define LEMO_BACKEND_CUDA_H

#include <stddef.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Workspace bytes of the CUDA attention backward (Backend.attention_bwd_ws_bytes): its fp32
 * dQ accumulator (S, NH, HS) and the row sums D (NH, S), each 256-byte aligned. Plain C, so
 * that the estimate can size a CUDA job without loading the backend. */
static inline size_t cuda_attention_bwd_ws(int S, int NH, int NKV, int HS) {
    (void)NKV;
    size_t acc = (size_t)S * NH * HS * 4, d = (size_t)NH * S * 4;
    return (acc + 255) / 256 * 256 + (d + 255) / 256 * 256;
}

/* Rows of drop(x) the LoRA products with dropout materialize at once (cuda_matmul.cu): 64 MiB
 * of bf16 (S, K) rows, a multiple of 64, at most S. Plain C, for the estimate's scratch. */
static inline int cuda_lora_chunk_rows(int S, int K) {
    size_t r = ((size_t)64 << 20) / ((size_t)K * 2) / 64 * 64;
    if (r < 64) r = 64;
    return r > (size_t)S ? S : (int)r;
}

/* Workspace bytes of the CUDA LeMo block scores (Backend.lemo_scores_ws_bytes): the lower
 * triangle of the block-pair maxima A, nb*(nb+1)/2 fp32 with nb = S/B, rounded up to 256. */
static inline size_t cuda_lemo_scores_ws(int S, int B) {
    if (S <= 0 || B <= 0) return 0;
    size_t nb = (size_t)(S / B), bytes = nb * (nb + 1) / 2 * 4;
    return (bytes + 255) / 256 * 256;
}

/* The part of the selection's workspace given to CUB (radix sort, then select), an upper
 * bound since CUB's own size is known only by asking it on a device: on sm_90 CUB asks for
 * about 4 KiB of digit bins plus 1 KiB of look-back state per 8832-item tile (0.12 bytes a
 * block) and some 256-byte padding; the bound allows 64 KiB plus one byte a block. The op
 * checks CUB's answer against it on every call and fails loudly if it does not fit, and
 * cuda_lemo_select_cub_bytes lets the tests check it over many nb. */
static inline size_t cuda_lemo_select_cub_bound(int nb) {
    size_t bytes = 65536 + (size_t)(nb > 0 ? nb : 0);
    return (bytes + 255) / 256 * 256;
}

/* Workspace bytes of the CUDA LeMo selection (Backend.lemo_select_ws_bytes), each piece
 * 256-byte aligned: sort keys and block ids double-buffered (4 x nb 4-byte), the flags of
 * the chosen blocks (nb bytes), the count CUB selects (256), and CUB's temporary storage
 * (cuda_lemo_select_cub_bound). */
static inline size_t cuda_lemo_select_ws(int nb) {
    if (nb <= 0) return 0;
    size_t a4 = ((size_t)nb * 4 + 255) / 256 * 256, a1 = ((size_t)nb + 255) / 256 * 256;
    return 4 * a4 + a1 + 256 + cuda_lemo_select_cub_bound(nb);
}

/* CUB's own temporary-storage size for the selection over nb blocks, as CUB reports it on
 * this device (needs backend_cuda() first); at most cuda_lemo_select_cub_bound(nb). */
size_t cuda_lemo_select_cub_bytes(int nb);

/* cuBLAS's workspace, which the backend allocates once (cuda_backend.cu), and the device memory
 * the CUDA context and cuBLAS take beside what the backend tracks (device used - tracked on an
 * H100 and an H200, CUDA 13). */
#define CUDA_CUBLAS_WORKSPACE ((size_t)32 << 20)
#define CUDA_CONTEXT_BYTES ((size_t)606 << 20)

static inline size_t cuda_round_up(size_t a, size_t b) { return (a + b - 1) / b * b; }

/* The ops' scratch block (cuda_scratch) for a window (Backend.scratch_bytes): sized by its
 * largest user, the fused loss's chunk of fp32 logits + bf16 dlogits within 256 MiB plus S
 * fp32 row losses and S int32 argmax hits (cuda_loss.cu); a LoRA product's bf16 copies of A, B, t and dt for cuBLAS
 * and, with dropout, a chunk of drop(x) rows (cuda_matmul.cu); or the gradient norm's 256
 * partial sums (cuda_optim.cu); grown to 1.25x the request, in MiB steps, as cuda_scratch
 * grows it. */
static inline size_t cuda_scratch_bytes(int Si, int Vi, int Ri, int n, const int *Ks, const int *Ns, float p) {
    size_t S = (size_t)Si, V = (size_t)Vi, R = (size_t)Ri;
    size_t rows = ((size_t)256 << 20) / (V * 6);
    rows = rows < 64 ? 64 : rows / 64 * 64;
    if (rows > S) rows = S;
    size_t need = cuda_round_up(rows * V * 4, 256) + cuda_round_up(rows * V * 2, 256) + 2 * cuda_round_up(4 * S, 256);
    for (int i = 0; i < n; i++) {
        size_t K = (size_t)Ks[i], N = (size_t)Ns[i];
        size_t drop = p > 0 ? cuda_round_up((size_t)cuda_lora_chunk_rows(Si, (int)K) * K * 2, 256) : 0;
        size_t fwd = cuda_round_up(R * K * 2, 256) + cuda_round_up(N * R * 2, 256) + cuda_round_up(S * R * 2, 256) + drop;
        size_t bwd = fwd + cuda_round_up(S * R * 2, 256);
        if (bwd > need) need = bwd;
    }
    if (256 * sizeof(double) > need) need = 256 * sizeof(double);
    need += need / 4;
    return cuda_round_up(need, (size_t)1 << 20);
}

/* The CUDA backend's sizes (kernels/backend.h's BackendSizes) for the memory plan, without
 * loading the backend: cuda_lemo_scores_ws and cuda_lemo_select_ws are the LeMo ops'
 * workspace sizes, defined above like cuda_attention_bwd_ws. */
static inline BackendSizes cuda_backend_sizes(void) {
    BackendSizes s = {2, cuda_attention_bwd_ws, cuda_lemo_scores_ws, cuda_lemo_select_ws, cuda_scratch_bytes,
                      CUDA_CONTEXT_BYTES + CUDA_CUBLAS_WORKSPACE};
    return s;
}

/* Highest mem_used seen since backend_cuda() or the last cuda_mem_reset_peak(). */
size_t cuda_mem_peak(void);
void cuda_mem_reset_peak(void);
/* "NVIDIA H100 80GB HBM3" etc.; "" before backend_cuda() succeeded. */
const char *cuda_device_name(void);

#ifdef __cplusplus
}
#endif

#endif
