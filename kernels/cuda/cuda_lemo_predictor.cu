/* cuda_lemo_predictor.cu: LeMo's pattern predictors on the device (backend.h, "LeMo pattern
 * predictors"): the forward that turns a layer's normed input into the predicted block
 * matrix, its backward into the weights, and the SmoothL1 loss lemo prepare trains with.
 * The CPU twin is kernels/cpu/lemo_predictor.c; the layout and the letters are its.
 *
 * Every linear layer is one fp32 cuBLAS GEMM over all R = nb * C/HS rows (the weights are
 * shared across chunks and blocks), written in cblas's row-major terms (rm_sgemm) so each
 * call reads like its CPU twin's line. CUBLAS_COMPUTE_32F: plain fp32, no TF32, so the
 * predictor's scores match the CPU's to fp32 rounding. On the Llama-2-7B shape at 64K tokens
 * (R = 32768, D = 8192, H1 = H2 = 128) a layer's forward is ~140 GFLOP, milliseconds.
 *
 * The triangle A^[m,n] = Yq[m] . Yk[n] (m >= n) is one tiled kernel: a CTA per 16x16 tile of
 * the lower triangle, the rows staged through shared memory 32 columns at a time, each thread
 * summing its entry in column order (deterministic: no atomics, no split over columns).
 * The backward expands dA to the full (nb, nb) dF (zero above the diagonal) and runs the CPU
 * twin's GEMMs. SmoothL1 reduces in fp64 over a fixed grid, the host adding the block
 * partials in order, as cuda_sumsq does. */
#include <math.h>

#include "cuda_common.h"

#define PRED_TILE 16
#define PRED_KC 32
#define PRED_L1_BLOCKS 256
#define PRED_L1_THREADS 256

static void pred_check(const char *op, int S, int C, int HS, int B, int H1, int H2) {
    if (B > 0 && HS > 0 && S > 0 && S % B == 0 && C % HS == 0 && H1 > 0 && H2 > 0) return;
    cuda_fatal(op, "S must be a multiple of B, C of HS, widths positive", __FILE__, __LINE__);
}

/* Row-major C (M, N) = alpha op(A) op(B) + beta C, fp32, like cblas_sgemm(CblasRowMajor, ...):
 * cuBLAS is column-major, where a row-major matrix reads as its transpose, so C^T = op(B)^T
 * op(A)^T with the operands swapped. */
static void rm_sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                     int ldb, float beta, float *C, int ldc) {
    CUBLAS_CHECK(cublasGemmEx(cuda_cublas(), tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K,
                              &alpha, B, CUDA_R_32F, ldb, A, CUDA_R_32F, lda, &beta, C, CUDA_R_32F, ldc,
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/* X (R, D) fp32: row m*NC + c is block m's chunk c, its B rows' chunk-c vectors in turn. */
__global__ void pred_gather_kernel(float *X, const bf16 *h, int C, int HS, int B, size_t n) {
    size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n) return;
    int D = B * HS, NC = C / HS;
    size_t r = e / D;
    int within = (int)(e % D), i = within / HS, d = within % HS;
    size_t m = r / NC, c = r % NC;
    X[e] = __bfloat162float(h[(m * B + i) * C + c * HS + d]);
}

__global__ void pred_relu_kernel(float *x, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n && !(x[i] > 0.0f)) x[i] = 0.0f;
}

/* dz where the forward's relu passed (z > 0), else 0. */
__global__ void pred_relu_back_kernel(float *dz, const float *z, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n && !(z[i] > 0.0f)) dz[i] = 0.0f;
}

/* The (ti, tj) tile of the lower triangle of tiles with index t = ti*(ti+1)/2 + tj. */
__device__ __forceinline__ void pred_tile(int t, int &ti, int &tj) {
    int r = (int)((sqrt(8.0 * (double)t + 1.0) - 1.0) * 0.5);
    while (r * (r + 1) / 2 > t) r--;
    while ((r + 1) * (r + 2) / 2 <= t) r++;
    ti = r;
    tj = t - r * (r + 1) / 2;
}

/* A (triangle) = Yq Yk^T for m >= n; Yq, Yk (nb, E). */
__global__ void __launch_bounds__(PRED_TILE *PRED_TILE) pred_triangle_kernel(float *A, const float *Yq,
                                                                              const float *Yk, int nb, int E) {
    __shared__ float sq[PRED_TILE][PRED_KC + 1], sk[PRED_TILE][PRED_KC + 1];
    int ti, tj;
    pred_tile(blockIdx.x, ti, tj);
    int tx = threadIdx.x, ty = threadIdx.y, tid = ty * PRED_TILE + tx;
    int m = ti * PRED_TILE + ty, n = tj * PRED_TILE + tx;
    float s = 0.0f;
    for (int e0 = 0; e0 < E; e0 += PRED_KC) {
        for (int l = tid; l < PRED_TILE * PRED_KC; l += PRED_TILE * PRED_TILE) {
            int r = l / PRED_KC, col = l % PRED_KC, e = e0 + col;
            int mr = ti * PRED_TILE + r, nr = tj * PRED_TILE + r;
            sq[r][col] = mr < nb && e < E ? Yq[(size_t)mr * E + e] : 0.0f;
            sk[r][col] = nr < nb && e < E ? Yk[(size_t)nr * E + e] : 0.0f;
        }
        __syncthreads();
        int w = E - e0 < PRED_KC ? E - e0 : PRED_KC;
        for (int col = 0; col < w; col++) s += sq[ty][col] * sk[tx][col];
        __syncthreads();
    }
    if (m < nb && n <= m) A[(size_t)m * (m + 1) / 2 + n] = s;
}

/* dF (nb, nb) from the triangle dA, zero above the diagonal. */
__global__ void pred_expand_kernel(float *dF, const float *dA, int nb) {
    size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= (size_t)nb * nb) return;
    size_t m = e / nb, n = e % nb;
    dF[e] = n <= m ? dA[m * (m + 1) / 2 + n] : 0.0f;
}

/* The three weight matrices of network p (0: Q, 1: K) in a layer's packed w. */
static void pred_weights(const float *w, int p, int D, int HS, int H1, int H2, const float **W1, const float **W2,
                         const float **W3) {
    const float *b = w + (size_t)p * ((size_t)H1 * D + (size_t)H2 * H1 + (size_t)HS * H2);
    *W1 = b;
    *W2 = b + (size_t)H1 * D;
    *W3 = *W2 + (size_t)H2 * H1;
}

/* The acts of network p: Z1 (R, H1), Z2 (R, H2), Y (R, HS), after X (S*C). */
static float *pred_acts(float *acts, int p, size_t SC, size_t R, int HS, int H1, int H2) {
    return acts + SC + (size_t)p * R * ((size_t)H1 + H2 + HS);
}

void cuda_lemo_predictor_forward(float *A, float *acts, const void *h, const float *w, int S, int C, int HS, int B,
                                 int H1, int H2) {
    pred_check("lemo_predictor_forward", S, C, HS, B, H1, H2);
    int nb = S / B, NC = C / HS, D = B * HS, E = NC * HS;
    size_t R = (size_t)nb * NC, SC = (size_t)S * C;
    float *X = acts;  // (R, D)
    pred_gather_kernel<<<cdiv(SC, 256), 256>>>(X, (const bf16 *)h, C, HS, B, SC);
    LAUNCH_CHECK();
    for (int p = 0; p < 2; p++) {
        const float *W1, *W2, *W3;
        pred_weights(w, p, D, HS, H1, H2, &W1, &W2, &W3);
        float *Z1 = pred_acts(acts, p, SC, R, HS, H1, H2), *Z2 = Z1 + R * H1, *Y = Z2 + R * H2;
        rm_sgemm(false, true, (int)R, H1, D, 1.0f, X, D, W1, D, 0.0f, Z1, H1);
        pred_relu_kernel<<<cdiv(R * H1, 256), 256>>>(Z1, R * H1);
        LAUNCH_CHECK();
        rm_sgemm(false, true, (int)R, H2, H1, 1.0f, Z1, H1, W2, H1, 0.0f, Z2, H2);
        pred_relu_kernel<<<cdiv(R * H2, 256), 256>>>(Z2, R * H2);
        LAUNCH_CHECK();
        rm_sgemm(false, true, (int)R, HS, H2, 1.0f, Z2, H2, W3, H2, 0.0f, Y, HS);
    }
    const float *Yq = pred_acts(acts, 0, SC, R, HS, H1, H2) + R * (H1 + H2);  // (nb, E)
    const float *Yk = pred_acts(acts, 1, SC, R, HS, H1, H2) + R * (H1 + H2);
    int tiles = (nb + PRED_TILE - 1) / PRED_TILE;
    long pairs = (long)tiles * (tiles + 1) / 2;
    pred_triangle_kernel<<<(unsigned)pairs, dim3(PRED_TILE, PRED_TILE)>>>(A, Yq, Yk, nb, E);
    LAUNCH_CHECK();
}

void cuda_lemo_predictor_backward(float *dw, const float *dA, const float *acts, const float *w, int S, int C,
                                  int HS, int B, int H1, int H2, float *ws) {
    pred_check("lemo_predictor_backward", S, C, HS, B, H1, H2);
    int nb = S / B, NC = C / HS, D = B * HS, E = NC * HS;
    size_t R = (size_t)nb * NC, SC = (size_t)S * C;
    float *dF = ws;                               // (nb, nb)
    float *dY[2] = {dF + (size_t)nb * nb, NULL};  // (R, HS) = (nb, E) each
    dY[1] = dY[0] + R * HS;
    float *dZ2 = dY[1] + R * HS, *dZ1 = dZ2 + R * H2;
    pred_expand_kernel<<<cdiv((size_t)nb * nb, 256), 256>>>(dF, dA, nb);
    LAUNCH_CHECK();
    const float *X = acts;
    const float *Y[2];
    for (int p = 0; p < 2; p++) Y[p] = pred_acts((float *)acts, p, SC, R, HS, H1, H2) + R * (H1 + H2);
    // A^ = Yq Yk^T over the triangle: dYq = dF Yk, dYk = dF^T Yq
    rm_sgemm(false, false, nb, E, nb, 1.0f, dF, nb, Y[1], E, 0.0f, dY[0], E);
    rm_sgemm(true, false, nb, E, nb, 1.0f, dF, nb, Y[0], E, 0.0f, dY[1], E);
    size_t half = (size_t)H1 * D + (size_t)H2 * H1 + (size_t)HS * H2;
    for (int p = 0; p < 2; p++) {
        const float *W1, *W2, *W3;
        pred_weights(w, p, D, HS, H1, H2, &W1, &W2, &W3);
        float *dW1 = dw + p * half, *dW2 = dW1 + (size_t)H1 * D, *dW3 = dW2 + (size_t)H2 * H1;
        const float *Z1 = pred_acts((float *)acts, p, SC, R, HS, H1, H2), *Z2 = Z1 + R * H1;
        rm_sgemm(true, false, HS, H2, (int)R, 1.0f, dY[p], HS, Z2, H2, 1.0f, dW3, H2);
        rm_sgemm(false, false, (int)R, H2, HS, 1.0f, dY[p], HS, W3, H2, 0.0f, dZ2, H2);
        pred_relu_back_kernel<<<cdiv(R * H2, 256), 256>>>(dZ2, Z2, R * H2);
        LAUNCH_CHECK();
        rm_sgemm(true, false, H2, H1, (int)R, 1.0f, dZ2, H2, Z1, H1, 1.0f, dW2, H1);
        rm_sgemm(false, false, (int)R, H1, H2, 1.0f, dZ2, H2, W2, H1, 0.0f, dZ1, H1);
        pred_relu_back_kernel<<<cdiv(R * H1, 256), 256>>>(dZ1, Z1, R * H1);
        LAUNCH_CHECK();
        rm_sgemm(true, false, H1, D, (int)R, 1.0f, dZ1, H1, X, D, 1.0f, dW1, D);
    }
}

__global__ void pred_smooth_l1_kernel(double *partial, float *d, const float *p, const float *t, size_t n,
                                      float beta, float scale) {
    __shared__ double red[PRED_L1_THREADS];
    double s = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float x = p[i] - t[i], ax = fabsf(x);
        if (ax < beta) {
            s += 0.5 * (double)x * x / beta;
            d[i] = scale * x / beta;
        } else {
            s += (double)ax - 0.5 * beta;
            d[i] = x > 0 ? scale : -scale;
        }
    }
    red[threadIdx.x] = s;
    __syncthreads();
    for (int o = blockDim.x / 2; o > 0; o >>= 1) {
        if (threadIdx.x < o) red[threadIdx.x] += red[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = red[0];
}

double cuda_lemo_smooth_l1(float *d, const float *p, const float *t, size_t n, float beta, float scale) {
    if (!n) return 0.0;
    double *partial = (double *)cuda_scratch(PRED_L1_BLOCKS * sizeof(double));
    pred_smooth_l1_kernel<<<PRED_L1_BLOCKS, PRED_L1_THREADS>>>(partial, d, p, t, n, beta, scale);
    LAUNCH_CHECK();
    double host[PRED_L1_BLOCKS];
    CUDA_CHECK(cudaMemcpy(host, partial, sizeof host, cudaMemcpyDeviceToHost));
    double s = 0.0;
    for (int i = 0; i < PRED_L1_BLOCKS; i++) s += host[i];
    return s;
}
