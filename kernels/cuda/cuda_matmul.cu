/* cuda_matmul.cu: the frozen linear layers (cuBLAS) and the LoRA branch.
 *
 * Base weights: bf16 in, fp32 accumulation, bf16 out, through cublasGemmEx.
 * Row-major (S,K) x (N,K)^T is the column-major product W^T-op times x, so each
 * call below is one GEMM with no copies.
 *
 * LoRA: the adapters are fp32 masters (A (R,K), B (N,R)) and the rank R is small,
 * so each of its products has one thin side (R columns or R rows): they are bound by
 * reading the (S,K) or (S,N) activations. Without dropout they run as cuBLAS bf16
 * GEMMs with fp32 accumulation (A, B, t rounded to bf16 for the products, as PEFT does
 * in bf16; t, dA, dB stay fp32 where they are kept), near the memory bandwidth. With
 * dropout the masked input would have to be materialized, so that case runs one small
 * tiled fp32 GEMM kernel (lora_gemm) whose operand loaders read bf16 or fp32 with any
 * strides and apply the mask on the fly from lora_dropout_keep (5-10x slower: scalar
 * loads). Its products that reduce over the S rows (dA, dB) split the reduction across
 * blocks and add the partial tiles in a fixed order afterwards: deterministic, no
 * atomics; cuBLAS is deterministic too (no atomics mode).
 *
 *   forward:  t = drop(x) A^T  (S,R) written;   out += scale * t B^T
 *   backward: dB += scale * dout^T t;  dt = scale * dout B (scratch);
 *             dA += dt^T drop(x);      din += drop'(dt A) */
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

/* ---------------- the small fp32 GEMM of the LoRA branch ---------------- */

/* One operand: element (i,j) at p[i*rs + j*cs], bf16 or fp32; with drop, element
 * offset e = i*rs + j*cs (the row-major offset of x) is masked and rescaled. */
typedef struct {
    const void *p;
    long rs, cs;
    int bf;          // 1: bf16, 0: fp32
    int drop;        // apply the dropout mask
} Operand;

typedef struct {
    void *p;         // C(m,n) at p[m*rs + n*cs]
    long rs, cs;
    int bf;          // 1: bf16 (read-modify-write), 0: fp32
    int accumulate;  // C += alpha*AB, else C = alpha*AB
    int drop;        // multiply by the dropout mask of offset m*rs+n*cs (and 1/(1-p))
} Output;

typedef struct {
    float p, inv_keep;
    uint64_t seed;
} Dropout;

__device__ __forceinline__ float operand_at(const Operand &o, long i, long j, const Dropout &d) {
    long e = i * o.rs + j * o.cs;
    float v = o.bf ? __bfloat162float(((const bf16 *)o.p)[e]) : ((const float *)o.p)[e];
    if (o.drop) v = dropout_keep(d.seed, (uint64_t)e, d.p) ? v * d.inv_keep : 0.0f;
    return v;
}

#define GEMM_BK 16

/* C(M,N) (+)= alpha * A(M,Kd) B(Kd,N) over k in [k0, k1) of this block's split
 * (blockIdx.z). BM x BN tile per block of 256 threads, TM x TN outputs per thread.
 * With partial != NULL the block writes its raw tile sum to partial[z][m][n]
 * instead (split-K), and gemm_reduce_kernel finishes. */
template <int BM, int BN, int TM, int TN>
__global__ void __launch_bounds__(256) lora_gemm_kernel(Output C, Operand A, Operand B, int M,
                                                        int N, int Kd, int kchunk, float alpha,
                                                        Dropout d, float *partial) {
    static_assert((BM / TM) * (BN / TN) == 256, "256 threads");
    __shared__ float As[GEMM_BK][BM + 1];
    __shared__ float Bs[GEMM_BK][BN + 1];
    int tid = threadIdx.x;
    int tr = tid / (BN / TN), tc = tid % (BN / TN);
    long m0 = (long)blockIdx.y * BM, n0 = (long)blockIdx.x * BN;
    int k0 = blockIdx.z * kchunk, k1 = min(Kd, k0 + kchunk);
    float acc[TM][TN] = {};
    // A tile loads walk k fastest when A is k-contiguous, else m fastest (coalescing)
    bool a_kfast = A.cs == 1, b_nfast = B.cs == 1;
    for (int kb = k0; kb < k1; kb += GEMM_BK) {
        for (int e = tid; e < BM * GEMM_BK; e += 256) {
            int mm = a_kfast ? e / GEMM_BK : e % BM, kk = a_kfast ? e % GEMM_BK : e / BM;
            long gm = m0 + mm, gk = kb + kk;
            As[kk][mm] = (gm < M && gk < k1) ? operand_at(A, gm, gk, d) : 0.0f;
        }
        for (int e = tid; e < BN * GEMM_BK; e += 256) {
            int nn = b_nfast ? e % BN : e / GEMM_BK, kk = b_nfast ? e / BN : e % GEMM_BK;
            long gn = n0 + nn, gk = kb + kk;
            Bs[kk][nn] = (gn < N && gk < k1) ? operand_at(B, gk, gn, d) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < GEMM_BK; kk++) {
            float a[TM], b[TN];
#pragma unroll
            for (int i = 0; i < TM; i++) a[i] = As[kk][tr * TM + i];
#pragma unroll
            for (int j = 0; j < TN; j++) b[j] = Bs[kk][tc + j * (BN / TN)];
#pragma unroll
            for (int i = 0; i < TM; i++)
#pragma unroll
                for (int j = 0; j < TN; j++) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < TM; i++) {
        long m = m0 + tr * TM + i;
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < TN; j++) {
            long n = n0 + tc + j * (BN / TN);
            if (n >= N) continue;
            if (partial) {
                partial[((size_t)blockIdx.z * M + m) * N + n] = acc[i][j];
                continue;
            }
            long e = m * C.rs + n * C.cs;
            float v = alpha * acc[i][j];
            if (C.drop) v = dropout_keep(d.seed, (uint64_t)e, d.p) ? v * d.inv_keep : 0.0f;
            if (C.bf) {
                bf16 *c = (bf16 *)C.p + e;
                *c = __float2bfloat16(C.accumulate ? __bfloat162float(*c) + v : v);
            } else {
                float *c = (float *)C.p + e;
                *c = C.accumulate ? *c + v : v;
            }
        }
    }
}

/* C(m,n) (+)= alpha * sum over splits z in order of partial[z][m][n]. */
__global__ void gemm_reduce_kernel(Output C, const float *partial, int M, int N, int splits,
                                   float alpha, Dropout d) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)M * N) return;
    long m = (long)(i / N), n = (long)(i % N);
    float s = 0.0f;
    for (int z = 0; z < splits; z++) s += partial[(size_t)z * M * N + i];
    long e = m * C.rs + n * C.cs;
    float v = alpha * s;
    if (C.drop) v = dropout_keep(d.seed, (uint64_t)e, d.p) ? v * d.inv_keep : 0.0f;
    if (C.bf) {
        bf16 *c = (bf16 *)C.p + e;
        *c = __float2bfloat16(C.accumulate ? __bfloat162float(*c) + v : v);
    } else {
        float *c = (float *)C.p + e;
        *c = C.accumulate ? *c + v : v;
    }
}

/* Tile shape for C(M,N): 1 = thin N (64x16), 2 = thin M (16x256), 0 = square 64x64. */
static int gemm_shape(int M, int N) { return N <= 16 ? 1 : (M <= 16 ? 2 : 0); }

/* Blocks along Kd: more than one when the output tiles alone would leave the device
 * idle and Kd is long (the reductions over S rows). */
static int gemm_splits(int M, int N, int Kd, int *kchunk) {
    int shape = gemm_shape(M, N);
    int BM = shape == 2 ? 16 : 64, BN = shape == 1 ? 16 : (shape == 2 ? 256 : 64);
    long tiles = (long)cdiv(M, BM) * cdiv(N, BN);
    long want = 4L * cuda_sm_count();
    int splits = 1;
    if (tiles < want && Kd > 512) {
        splits = (int)((want + tiles - 1) / tiles);
        if (splits > Kd / 256) splits = Kd / 256;
        if (splits > 64) splits = 64;
        if (splits < 1) splits = 1;
    }
    *kchunk = (int)align_up(cdiv(Kd, splits), GEMM_BK);
    return cdiv(Kd, *kchunk);
}

/* Floats of split-K workspace lora_gemm needs for this product. */
static size_t gemm_ws_floats(int M, int N, int Kd) {
    int kchunk, splits = gemm_splits(M, N, Kd, &kchunk);
    return splits > 1 ? (size_t)splits * M * N : 0;
}

/* C(M,N) (+)= alpha * A(M,Kd) B(Kd,N), split along Kd into ws when gemm_splits says so. */
static void lora_gemm(Output C, Operand A, Operand B, int M, int N, int Kd, float alpha,
                      Dropout d, float *ws) {
    if (M <= 0 || N <= 0) return;
    int shape = gemm_shape(M, N), BM = shape == 2 ? 16 : 64, BN = shape == 1 ? 16 : (shape == 2 ? 256 : 64);
    int kchunk, splits = gemm_splits(M, N, Kd, &kchunk);
    dim3 grid(cdiv(N, BN), cdiv(M, BM), splits);
    float *partial = splits > 1 ? ws : NULL;
    if (shape == 1)
        lora_gemm_kernel<64, 16, 2, 2><<<grid, 256>>>(C, A, B, M, N, Kd, kchunk, alpha, d, partial);
    else if (shape == 2)
        lora_gemm_kernel<16, 256, 2, 8><<<grid, 256>>>(C, A, B, M, N, Kd, kchunk, alpha, d, partial);
    else
        lora_gemm_kernel<64, 64, 4, 4><<<grid, 256>>>(C, A, B, M, N, Kd, kchunk, alpha, d, partial);
    LAUNCH_CHECK();
    if (partial) {
        gemm_reduce_kernel<<<cdiv((size_t)M * N, 256), 256>>>(C, partial, M, N, splits, alpha, d);
        LAUNCH_CHECK();
    }
}

/* ---------------- the dropout-free LoRA products on the tensor cores ---------------- */

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
 * matrix is a column-major (c,r) one with leading dimension c. */
static void lora_forward_tc(void *out, float *t, const void *in, const float *A, const float *B, int S,
                            int K, int N, int R, float scale) {
    char *base = (char *)cuda_scratch(align_up((size_t)R * K * 2, 256) + align_up((size_t)N * R * 2, 256) +
                                      align_up((size_t)S * R * 2, 256));
    bf16 *Ab = take_bf16(&base, (size_t)R * K), *Bb = take_bf16(&base, (size_t)N * R);
    bf16 *tb = take_bf16(&base, (size_t)S * R);
    to_bf16(Ab, A, (size_t)R * K);
    to_bf16(Bb, B, (size_t)N * R);
    // t^T(R,S) = A(R,K) x^T(K,S)
    gemm_bf16(CUBLAS_OP_T, CUBLAS_OP_N, R, S, K, 1.0f, Ab, K, in, K, 0.0f, t, CUDA_R_32F, R);
    to_bf16(tb, t, (size_t)S * R);
    // out^T(N,S) += scale B(N,R) t^T(R,S)
    gemm_bf16(CUBLAS_OP_T, CUBLAS_OP_N, N, S, R, scale, Bb, R, tb, R, 1.0f, out, CUDA_R_16BF, N);
}

static void lora_backward_tc(void *din, float *dA, float *dB, const void *dout, const void *in, const float *t,
                             const float *A, const float *B, int S, int K, int N, int R, float scale) {
    char *base = (char *)cuda_scratch(align_up((size_t)R * K * 2, 256) + align_up((size_t)N * R * 2, 256) +
                                      2 * align_up((size_t)S * R * 2, 256));
    bf16 *Ab = take_bf16(&base, (size_t)R * K), *Bb = take_bf16(&base, (size_t)N * R);
    bf16 *tb = take_bf16(&base, (size_t)S * R), *dtb = take_bf16(&base, (size_t)S * R);
    to_bf16(Ab, A, (size_t)R * K);
    to_bf16(Bb, B, (size_t)N * R);
    to_bf16(tb, t, (size_t)S * R);
    // dB^T(R,N) += scale t^T(R,S) dout(S,N)
    gemm_bf16(CUBLAS_OP_N, CUBLAS_OP_T, R, N, S, scale, tb, R, dout, N, 1.0f, dB, CUDA_R_32F, R);
    // dt^T(R,S) = scale B^T(R,N) dout^T(N,S)
    gemm_bf16(CUBLAS_OP_N, CUBLAS_OP_N, R, S, N, scale, Bb, R, dout, N, 0.0f, dtb, CUDA_R_16BF, R);
    // dA^T(K,R) += x^T(K,S) dt(S,R)
    gemm_bf16(CUBLAS_OP_N, CUBLAS_OP_T, K, R, S, 1.0f, in, K, dtb, R, 1.0f, dA, CUDA_R_32F, K);
    // din^T(K,S) += A^T(K,R) dt^T(R,S)
    gemm_bf16(CUBLAS_OP_N, CUBLAS_OP_N, K, S, R, 1.0f, Ab, K, dtb, R, 1.0f, din, CUDA_R_16BF, K);
}

static Dropout make_dropout(float p, uint64_t seed) {
    Dropout d = {p, p > 0.0f ? 1.0f / (1.0f - p) : 1.0f, seed};
    return d;
}

void cuda_lora_forward(void *out, float *t, const void *in, const float *A, const float *B,
                       int S, int K, int N, int R, float scale, float p, uint64_t seed) {
    if (S <= 0 || R <= 0) return;
    if (p <= 0.0f) {
        lora_forward_tc(out, t, in, A, B, S, K, N, R, scale);
        return;
    }
    Dropout d = make_dropout(p, seed);
    float *ws = (float *)cuda_scratch(gemm_ws_floats(S, R, K) * sizeof(float) + 256);
    // t(S,R) = drop(x)(S,K) A^T(K,R)
    Output ct = {t, R, 1, 0, 0, 0};
    Operand ax = {in, K, 1, 1, p > 0.0f};
    Operand bA = {A, 1, K, 0, 0};  // A^T(k,r) = A[r*K + k]
    lora_gemm(ct, ax, bA, S, R, K, 1.0f, d, ws);
    // out(S,N) += scale * t(S,R) B^T(R,N)
    Output co = {out, N, 1, 1, 1, 0};
    Operand at = {t, R, 1, 0, 0};
    Operand bB = {B, 1, R, 0, 0};  // B^T(r,n) = B[n*R + r]
    lora_gemm(co, at, bB, S, N, R, scale, d, ws);
}

void cuda_lora_backward(void *din, float *dA, float *dB, const void *dout, const void *in,
                        const float *t, const float *A, const float *B, int S, int K, int N,
                        int R, float scale, float p, uint64_t seed) {
    if (S <= 0 || R <= 0) return;
    if (p <= 0.0f) {
        lora_backward_tc(din, dA, dB, dout, in, t, A, B, S, K, N, R, scale);
        return;
    }
    Dropout d = make_dropout(p, seed);
    size_t ws_f = gemm_ws_floats(N, R, S);
    if (gemm_ws_floats(S, R, N) > ws_f) ws_f = gemm_ws_floats(S, R, N);
    if (gemm_ws_floats(R, K, S) > ws_f) ws_f = gemm_ws_floats(R, K, S);
    size_t dt_bytes = align_up((size_t)S * R * sizeof(float), 256);
    char *base = (char *)cuda_scratch(dt_bytes + ws_f * sizeof(float));
    float *dt = (float *)base;                 // (S,R)
    float *ws = (float *)(base + dt_bytes);
    // dB(N,R) += scale * dout^T(N,S) t(S,R)
    Output cdB = {dB, R, 1, 0, 1, 0};
    Operand adoT = {dout, 1, N, 1, 0};  // dout^T(n,s) = dout[s*N + n]
    Operand bt = {t, R, 1, 0, 0};
    lora_gemm(cdB, adoT, bt, N, R, S, scale, d, ws);
    // dt(S,R) = scale * dout(S,N) B(N,R)
    Output cdt = {dt, R, 1, 0, 0, 0};
    Operand ado = {dout, N, 1, 1, 0};
    Operand bB = {B, R, 1, 0, 0};
    lora_gemm(cdt, ado, bB, S, R, N, scale, d, ws);
    // dA(R,K) += dt^T(R,S) drop(x)(S,K)
    Output cdA = {dA, K, 1, 0, 1, 0};
    Operand adtT = {dt, 1, R, 0, 0};  // dt^T(r,s) = dt[s*R + r]
    Operand bx = {in, K, 1, 1, p > 0.0f};
    lora_gemm(cdA, adtT, bx, R, K, S, 1.0f, d, ws);
    // din(S,K) += drop'(dt(S,R) A(R,K))
    Output cdin = {din, K, 1, 1, 1, p > 0.0f};
    Operand adt = {dt, R, 1, 0, 0};
    Operand bA = {A, K, 1, 0, 0};
    lora_gemm(cdin, adt, bA, S, K, R, 1.0f, d, ws);
}
