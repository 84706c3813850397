/* cuda_matmul.cu: the frozen linear layers (cuBLAS) and the LoRA branch.
 *
 * Base weights: bf16 in, fp32 accumulation, bf16 out, through cublasGemmEx.
 * Row-major (S,K) x (N,K)^T is the column-major product W^T-op times x, so each
 * call below is one GEMM with no copies.
 *
 * LoRA: the adapters are fp32 masters (A (R,K), B (N,R)) and the rank R is small,
 * so each of its products has one thin side (R columns or R rows): they are bound by
 * reading the (S,K) or (S,N) activations. They run as cuBLAS bf16 GEMMs with fp32
 * accumulation (A, B, t rounded to bf16 for the products, as PEFT does in bf16; t, dA,
 * dB stay fp32 where they are kept), near the memory bandwidth. With dropout the masked
 * input drop(x) is materialized in bf16, 64 MiB of rows at a time (cuda_lora_chunk_rows in
 * backend_cuda.h, so the scratch stays small at any S), and the input gradient's mask is
 * applied to dt A one chunk at a time:
 * the mask of element (s, k) is lora_dropout_keep(seed, s*K + k) on both sides, as on the
 * CPU. (Applying the mask inside a hand-written fp32 GEMM instead ran 5-10x slower.)
 * cuBLAS is deterministic here (no atomics mode).
 *
 *   forward:  t = drop(x) A^T  (S,R) written;   out += scale * t B^T
 *   backward: dB += scale * dout^T t;  dt = scale * dout B (scratch);
 *             dA += dt^T drop(x);      din += drop'(dt A) */
#include "backend_cuda.h"
#include "cuda_common.h"

/* ---------------- base linear layers ---------------- */

/* out(S,N) (+)= bias(N) added row by row (bf16). */
__global__ void bias_add_kernel(bf16 *out, const bf16 *bias, int S, int N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)S * N) return;
    int n = (int)(i % N);
    out[i] = __float2bfloat16(__bfloat162float(out[i]) + __bfloat162float(bias[n]));
}

void cuda_matmul_forward(void *out, const void *in, const void *w, const void *bias, int S,
                         int K, int N, int accumulate) {
    if (S <= 0 || N <= 0) return;
    float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    // column-major: out^T (N,S) = W (stored (K,N) col-major, transposed) x in^T (K,S)
    CUBLAS_CHECK(cublasGemmEx(cuda_cublas(), CUBLAS_OP_T, CUBLAS_OP_N, N, S, K, &alpha, w,
                              CUDA_R_16BF, K, in, CUDA_R_16BF, K, &beta, out, CUDA_R_16BF, N,
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    if (bias) {
        bias_add_kernel<<<cdiv((size_t)S * N, 256), 256>>>((bf16 *)out, (const bf16 *)bias, S, N);
        LAUNCH_CHECK();
    }
}

void cuda_matmul_backward(void *din, const void *dout, const void *w, int S, int K, int N) {
    if (S <= 0 || K <= 0) return;
    float alpha = 1.0f, beta = 1.0f;
    // column-major: din^T (K,S) += W (K,N col-major) x dout^T (N,S)
    CUBLAS_CHECK(cublasGemmEx(cuda_cublas(), CUBLAS_OP_N, CUBLAS_OP_N, K, S, N, &alpha, w,
                              CUDA_R_16BF, K, dout, CUDA_R_16BF, N, &beta, din, CUDA_R_16BF, K,
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/* ---------------- the LoRA products on the tensor cores ---------------- */

typedef struct {
    float p, inv_keep;
    uint64_t seed;
} Dropout;

/* xd(rows, K) = drop(x) of rows r0.. of x (S, K), rescaled by 1/(1-p), in bf16. */
__global__ void lora_drop_rows_kernel(bf16 *xd, const bf16 *x, long r0, size_t n, int K, Dropout d) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    size_t e = (size_t)r0 * K + i;  // the row-major offset of the element in x
    xd[i] = dropout_keep(d.seed, e, d.p) ? __float2bfloat16(__bfloat162float(x[e]) * d.inv_keep) : __float2bfloat16(0.0f);
}

/* din rows r0.. (S, K) += drop(v(rows, K)), the same mask as x's. */
__global__ void lora_drop_add_kernel(bf16 *din, const bf16 *v, long r0, size_t n, int K, Dropout d) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    size_t e = (size_t)r0 * K + i;
    if (dropout_keep(d.seed, e, d.p))
        din[e] = __float2bfloat16(__bfloat162float(din[e]) + __bfloat162float(v[i]) * d.inv_keep);
}

__global__ void lora_to_bf16_kernel(bf16 *dst, const float *src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __float2bfloat16(src[i]);
}

static void to_bf16(bf16 *dst, const float *src, size_t n) {
    lora_to_bf16_kernel<<<cdiv(n, 256), 256>>>(dst, src, n);
    LAUNCH_CHECK();
}

/* Column-major C(m,n) = alpha op(a) op(b) + beta C; a, b bf16, C of type ct. */
static void gemm_bf16(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                      const void *a, int lda, const void *b, int ldb, float beta, void *c,
                      cudaDataType ct, int ldc) {
    CUBLAS_CHECK(cublasGemmEx(cuda_cublas(), ta, tb, m, n, k, &alpha, a, CUDA_R_16BF, lda, b, CUDA_R_16BF,
                              ldb, &beta, c, ct, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/* Carves n bf16 elements off *base (256-byte aligned pieces of one scratch block). */
static bf16 *take_bf16(char **base, size_t n) {
    bf16 *p = (bf16 *)*base;
    *base += align_up(n * sizeof(bf16), 256);
    return p;
}

/* Row-major products written as column-major ones on the transposes: a row-major (r,c)
 * matrix is a column-major (c,r) one with leading dimension c. d NULL: no dropout. */
static void lora_forward_tc(void *out, float *t, const void *in, const float *A, const float *B, int S,
                            int K, int N, int R, float scale, const Dropout *d) {
    int ch = d ? cuda_lora_chunk_rows(S, K) : 0;
    char *base = (char *)cuda_scratch(align_up((size_t)R * K * 2, 256) + align_up((size_t)N * R * 2, 256) +
                                      align_up((size_t)S * R * 2, 256) + align_up((size_t)ch * K * 2, 256));
    bf16 *Ab = take_bf16(&base, (size_t)R * K), *Bb = take_bf16(&base, (size_t)N * R);
    bf16 *tb = take_bf16(&base, (size_t)S * R), *xd = take_bf16(&base, (size_t)ch * K);
    to_bf16(Ab, A, (size_t)R * K);
    to_bf16(Bb, B, (size_t)N * R);
    if (!d) {  // t^T(R,S) = A(R,K) x^T(K,S)
        gemm_bf16(CUBLAS_OP_T, CUBLAS_OP_N, R, S, K, 1.0f, Ab, K, in, K, 0.0f, t, CUDA_R_32F, R);
    } else {
        for (int r0 = 0; r0 < S; r0 += ch) {  // the same on drop(x), chunk by chunk
            int rows = S - r0 < ch ? S - r0 : ch;
            size_t n = (size_t)rows * K;
            lora_drop_rows_kernel<<<cdiv(n, 256), 256>>>(xd, (const bf16 *)in, r0, n, K, *d);
            LAUNCH_CHECK();
            gemm_bf16(CUBLAS_OP_T, CUBLAS_OP_N, R, rows, K, 1.0f, Ab, K, xd, K, 0.0f, t + (size_t)r0 * R, CUDA_R_32F, R);
        }
    }
    to_bf16(tb, t, (size_t)S * R);
    // out^T(N,S) += scale B(N,R) t^T(R,S)
    gemm_bf16(CUBLAS_OP_T, CUBLAS_OP_N, N, S, R, scale, Bb, R, tb, R, 1.0f, out, CUDA_R_16BF, N);
}

static void lora_backward_tc(void *din, float *dA, float *dB, const void *dout, const void *in, const float *t,
                             const float *A, const float *B, int S, int K, int N, int R, float scale,
                             const Dropout *d) {
    int ch = d ? cuda_lora_chunk_rows(S, K) : 0;
    char *base = (char *)cuda_scratch(align_up((size_t)R * K * 2, 256) + align_up((size_t)N * R * 2, 256) +
                                      2 * align_up((size_t)S * R * 2, 256) + align_up((size_t)ch * K * 2, 256));
    bf16 *Ab = take_bf16(&base, (size_t)R * K), *Bb = take_bf16(&base, (size_t)N * R);
    bf16 *tb = take_bf16(&base, (size_t)S * R), *dtb = take_bf16(&base, (size_t)S * R);
    bf16 *xd = take_bf16(&base, (size_t)ch * K);
    to_bf16(Ab, A, (size_t)R * K);
    to_bf16(Bb, B, (size_t)N * R);
    to_bf16(tb, t, (size_t)S * R);
    // dB^T(R,N) += scale t^T(R,S) dout(S,N)
    gemm_bf16(CUBLAS_OP_N, CUBLAS_OP_T, R, N, S, scale, tb, R, dout, N, 1.0f, dB, CUDA_R_32F, R);
    // dt^T(R,S) = scale B^T(R,N) dout^T(N,S)
    gemm_bf16(CUBLAS_OP_N, CUBLAS_OP_N, R, S, N, scale, Bb, R, dout, N, 0.0f, dtb, CUDA_R_16BF, R);
    if (!d) {
        // dA^T(K,R) += x^T(K,S) dt(S,R)
        gemm_bf16(CUBLAS_OP_N, CUBLAS_OP_T, K, R, S, 1.0f, in, K, dtb, R, 1.0f, dA, CUDA_R_32F, K);
        // din^T(K,S) += A^T(K,R) dt^T(R,S)
        gemm_bf16(CUBLAS_OP_N, CUBLAS_OP_N, K, S, R, 1.0f, Ab, K, dtb, R, 1.0f, din, CUDA_R_16BF, K);
        return;
    }
    for (int r0 = 0; r0 < S; r0 += ch) {  // chunk by chunk: dA from drop(x), din += drop(dt A)
        int rows = S - r0 < ch ? S - r0 : ch;
        size_t n = (size_t)rows * K;
        const bf16 *dtr = dtb + (size_t)r0 * R;
        lora_drop_rows_kernel<<<cdiv(n, 256), 256>>>(xd, (const bf16 *)in, r0, n, K, *d);
        LAUNCH_CHECK();
        gemm_bf16(CUBLAS_OP_N, CUBLAS_OP_T, K, R, rows, 1.0f, xd, K, dtr, R, 1.0f, dA, CUDA_R_32F, K);
        gemm_bf16(CUBLAS_OP_N, CUBLAS_OP_N, K, rows, R, 1.0f, Ab, K, dtr, R, 0.0f, xd, CUDA_R_16BF, K);
        lora_drop_add_kernel<<<cdiv(n, 256), 256>>>((bf16 *)din, xd, r0, n, K, *d);
        LAUNCH_CHECK();
    }
}

void cuda_lora_forward(void *out, float *t, const void *in, const float *A, const float *B,
                       int S, int K, int N, int R, float scale, float p, uint64_t seed) {
    if (S <= 0 || R <= 0) return;
    Dropout d = {p, p > 0.0f ? 1.0f / (1.0f - p) : 1.0f, seed};
    lora_forward_tc(out, t, in, A, B, S, K, N, R, scale, p > 0.0f ? &d : NULL);
}

void cuda_lora_backward(void *din, float *dA, float *dB, const void *dout, const void *in,
                        const float *t, const float *A, const float *B, int S, int K, int N,
                        int R, float scale, float p, uint64_t seed) {
    if (S <= 0 || R <= 0) return;
    Dropout d = {p, p > 0.0f ? 1.0f / (1.0f - p) : 1.0f, seed};
    lora_backward_tc(din, dA, dB, dout, in, t, A, B, S, K, N, R, scale, p > 0.0f ? &d : NULL);
}
