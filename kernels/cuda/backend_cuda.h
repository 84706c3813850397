/* backend_cuda.h: what the CUDA backend offers beyond the Backend table (C callable).
 *
 * backend_cuda() itself is declared in engine/backend.h. These extras serve the
 * benchmark and the trainer's memory report: the peak of mem_used since the last
 * reset, and the device's name; and the attention backward's workspace size and the LoRA
 * products' chunk of rows, which the estimate needs without the backend. */
#ifndef LEMO_BACKEND_CUDA_H
#define LEMO_BACKEND_CUDA_H

#include <stddef.h>

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

/* Highest mem_used seen since backend_cuda() or the last cuda_mem_reset_peak(). */
size_t cuda_mem_peak(void);
void cuda_mem_reset_peak(void);
/* "NVIDIA H100 80GB HBM3" etc.; "" before backend_cuda() succeeded. */
const char *cuda_device_name(void);

#ifdef __cplusplus
}
#endif

#endif
