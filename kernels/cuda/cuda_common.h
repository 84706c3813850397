/* cuda_common.h: what every file of the CUDA backend shares (C++ only, internal).
 *
 * One error-check family: CUDA_CHECK(stmt), CUBLAS_CHECK(stmt) and LAUNCH_CHECK()
 * after every kernel launch. The Backend ops return void and a CUDA fault leaves
 * the context unusable, so a failed check is fatal: it reports the statement,
 * file and line on stderr and ends the process (the engine runs jobs in a child
 * process, so the service survives and records the exit). With LEMO_CUDA_SYNC=1
 * in the environment every launch is followed by a device synchronize, so an
 * asynchronous fault is reported at the launch that caused it.
 *
 * Everything runs on the legacy default stream, in issue order: ops are
 * asynchronous to the host but ordered among themselves, and the scratch arena
 * (cuda_scratch) can be shared by consecutive ops without events. The one exception
 * is copy_async (cuda_backend.cu): host <-> device copies on a side stream, ordered
 * against the ops by events, so offloaded layer checkpoints move while layers compute.
 *
 * Types: bf16 = __nv_bfloat16 is the activation dtype; arithmetic is fp32. */
#ifndef LEMO_CUDA_COMMON_H
#define LEMO_CUDA_COMMON_H

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

#include "backend.h"

typedef __nv_bfloat16 bf16;

/* Reports "what failed: msg (file:line)" and ends the process (see the file comment). */
[[noreturn]] void cuda_fatal(const char *stmt, const char *msg, const char *file, int line);
/* After a launch: the launch error, and with LEMO_CUDA_SYNC=1 the kernel's own. */
void cuda_launch_check(const char *file, int line);

#define CUDA_CHECK(stmt)                                                              \
    do {                                                                              \
        cudaError_t err_ = (stmt);                                                    \
        if (err_ != cudaSuccess) cuda_fatal(#stmt, cudaGetErrorString(err_), __FILE__, __LINE__); \
    } while (0)

#define CUBLAS_CHECK(stmt)                                                            \
    do {                                                                              \
        cublasStatus_t st_ = (stmt);                                                  \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                             \
            cuda_fatal(#stmt, cublasGetStatusString(st_), __FILE__, __LINE__);        \
    } while (0)

#define LAUNCH_CHECK() cuda_launch_check(__FILE__, __LINE__)

/* The cuBLAS handle (workspace set, default stream), created by backend_cuda(). */
cublasHandle_t cuda_cublas(void);
/* Multiprocessor count of the device. */
int cuda_sm_count(void);

/* A device scratch block of at least `bytes`, valid until the next call (ops take
 * it whole and carve it). Grows by reallocation, so the first step of a run pays
 * for it and later steps reuse it; it counts in mem_used. */
void *cuda_scratch(size_t bytes);

/* Tracked device allocation: zeroed, counted in mem_used; NULL on failure. */
void *cuda_alloc(size_t bytes);
void cuda_free(void *p);

__host__ __device__ static inline unsigned cdiv(size_t a, size_t b) { return (unsigned)((a + b - 1) / b); }
static inline size_t align_up(size_t a, size_t b) { return (a + b - 1) / b * b; }
/* 16-byte alignment of a pointer: the vectorized kernels need it. */
static inline bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* --- device helpers --- */

/* Eight bf16 <-> eight floats through one 16-byte access. */
__device__ __forceinline__ void load8(float f[8], const bf16 *p) {
    uint4 u = *(const uint4 *)p;
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 v = __bfloat1622float2(h[i]);
        f[2 * i] = v.x;
        f[2 * i + 1] = v.y;
    }
}

__device__ __forceinline__ void store8(bf16 *p, const float f[8]) {
    uint4 u;
    __nv_bfloat162 *h = (__nv_bfloat162 *)&u;
#pragma unroll
    for (int i = 0; i < 4; i++) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
    *(uint4 *)p = u;
}

/* Sum over a warp. */
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
 * `red` is 32 floats of shared memory. */
__device__ __forceinline__ float block_sum(float v, float *red) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float *red) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : -INFINITY;
    return warp_max(v);
}

/* The dropout mask: backend.h's lora_dropout_keep itself, so CPU and GPU masks agree. */
__device__ __forceinline__ bool dropout_keep(uint64_t seed, uint64_t e, float p) {
    return lora_dropout_keep(seed, e, p);
}

/* --- the ops, one family per file, gathered into the table by cuda_backend.cu --- */

/* cuda_rows.cu: elementwise and row ops */
void cuda_embedding_forward(void *out, const int *tok, const void *wte, int S, int C);
void cuda_rmsnorm_forward(void *out, float *rstd, const void *in, const void *w, int S, int C,
                          float eps);
void cuda_rmsnorm_backward(void *din, const void *dout, const void *in, const void *w,
                           const float *rstd, int S, int C);
void cuda_rope_forward(void *x, const int *pos, const float *inv_freq, int S, int NH, int HS,
                       float mscale);
void cuda_rope_backward(void *dx, const int *pos, const float *inv_freq, int S, int NH, int HS,
                        float mscale);
void cuda_swiglu_forward(void *out, const void *gate, const void *up, size_t n);
void cuda_swiglu_backward(void *dgate, void *dup, const void *dout, const void *gate,
                          const void *up, size_t n);
void cuda_add_inplace(void *a, const void *b, size_t n);
void cuda_gather_rows(void *out, const void *in, const int *idx, int n, int C);
void cuda_scatter_add_rows(void *out, const void *in, const int *idx, int n, int C);

/* cuda_matmul.cu: cuBLAS linear layers and the LoRA branch */
void cuda_matmul_forward(void *out, const void *in, const void *w, const void *bias, int S,
                         int K, int N, int accumulate);
void cuda_matmul_backward(void *din, const void *dout, const void *w, int S, int K, int N);
void cuda_lora_forward(void *out, float *t, const void *in, const float *A, const float *B,
                       int S, int K, int N, int R, float scale, float p, uint64_t seed);
void cuda_lora_backward(void *din, float *dA, float *dB, const void *dout, const void *in,
                        const float *t, const float *A, const float *B, int S, int K, int N,
                        int R, float scale, float p, uint64_t seed);

/* cuda_attention.cu: causal GQA flash attention */
void cuda_attention_forward(void *out, float *lse, const void *q, const void *k, const void *v,
                            int S, int NH, int NKV, int HS);
void cuda_attention_backward(void *dq, void *dk, void *dv, const void *dout, const void *out,
                             const float *lse, const void *q, const void *k, const void *v,
                             int S, int NH, int NKV, int HS, void *ws);
size_t cuda_attention_bwd_ws_bytes(int S, int NH, int NKV, int HS);
/* cuda_attention_wgmma.cu: the forward on Hopper's warpgroup MMA (sm_90a) */
int cuda_attention_wgmma_ok(void);
void cuda_attention_forward_wgmma(void *out, float *lse, const void *q, const void *k, const void *v, int S,
                                  int NH, int NKV, int HS);
/* cuda_attention_wgmma_bwd.cu: the backward's main kernel on sm_90a. dqacc (S, NH, HS) fp32
 * zeroed, D (NH, S) = rowsum(dO * O) already computed; dk, dv (S, NKV, HS) bf16 written. */
void cuda_attention_backward_wgmma(float *dqacc, void *dk, void *dv, const void *dout, const float *lse,
                                   const float *D, const void *q, const void *k, const void *v, int S, int NH,
                                   int NKV, int HS);

/* cuda_loss.cu: chunked LM head + cross-entropy */
double cuda_lm_head_ce(void *dx, long *count, long *correct, const void *x, const void *w, const int *target,
                       int S, int C, int V, float grad_scale);

/* cuda_lemo.cu: LeMo's block scores and top-k block selection */
void cuda_lemo_block_scores(float *score, const void *q, const void *k, int S, int NH, int NKV, int HS, int B,
                            void *ws);
size_t cuda_lemo_scores_ws_bytes(int S, int B);
void cuda_lemo_random_scores(float *score, int nb, uint64_t seed);
void cuda_lemo_select_blocks(int *idx, const float *score, int nb, int k, int B, void *ws);
size_t cuda_lemo_select_ws_bytes(int nb);
void cuda_lemo_block_matrix(float *A, const void *q, const void *k, int S, int NH, int NKV, int HS, int B);
void cuda_lemo_matrix_scores(float *score, const float *A, int nb);
/* cuda_lemo_predictor.cu: LeMo's pattern predictors, their backward and SmoothL1 */
void cuda_lemo_predictor_forward(float *A, float *acts, const void *h, const float *w, int S, int C, int HS, int B,
                                 int H1, int H2);
void cuda_lemo_predictor_backward(float *dw, const float *dA, const float *acts, const float *w, int S, int C,
                                  int HS, int B, int H1, int H2, float *ws);
double cuda_lemo_smooth_l1(float *d, const float *p, const float *t, size_t n, float beta, float scale);

/* cuda_optim.cu: fp32 optimizer-side ops */
double cuda_sumsq(const float *g, size_t n);
void cuda_scale(float *g, size_t n, float s);
void cuda_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
                float b2, float eps, float wd, int t);

#endif
