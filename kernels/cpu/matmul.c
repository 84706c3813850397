/* matmul.c: the frozen base linear layers, y = x W^T (+ bias), and their input
 * gradient dx += dy W. Straight OpenBLAS sgemm calls (row-major, W stored (N,K)
 * as in PyTorch); OpenBLAS threads them itself and partitions the output, so
 * results are reproducible for a fixed thread count. */
#include "cpu_ops.h"

#include <cblas.h>
#include <string.h>

/* out(S,N) (+)= in(S,K) W(N,K)^T + bias(N); bias may be NULL. With accumulate the
 * whole right-hand side, bias included, is added to out. */
void cpu_matmul_forward(void *out, const void *in, const void *w, const void *bias,
                        int S, int K, int N, int accumulate) {
    float *o = out;
    const float *b = bias;
    float beta = accumulate ? 1.0f : 0.0f;
    if (b) {
        // fold the bias in first so sgemm can add onto it with beta = 1
#pragma omp parallel for schedule(static)
        for (int s = 0; s < S; s++) {
            float *os = o + (size_t)s * N;
            if (accumulate)
                for (int n = 0; n < N; n++) os[n] += b[n];
            else
                memcpy(os, b, (size_t)N * 4);
        }
        beta = 1.0f;
    }
    if (S == 0 || N == 0) return;
    if (K == 0) {
        if (beta == 0.0f) memset(o, 0, (size_t)S * N * 4);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, S, N, K, 1.0f, in, K, w, K, beta, o, N);
}

/* din(S,K) += dout(S,N) W(N,K) */
void cpu_matmul_backward(void *din, const void *dout, const void *w, int S, int K, int N) {
    if (S == 0 || K == 0 || N == 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, S, K, N, 1.0f, dout, N, w, K, 1.0f,
                din, K);
}
