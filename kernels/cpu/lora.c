/* lora.c: the LoRA branch of a linear layer and its gradients.
 *
 *   forward:  t = drop(in) A^T           (S,R), saved, without the LoRA scale
 *             out += scale * t B^T       (S,N)
 *   backward: dB += scale * dout^T t     (N,R)
 *             dt  = scale * dout B       (S,R), scratch
 *             dA += dt^T drop(in)        (R,K)
 *             din += drop'(dt A)         (S,K)
 * drop() is inverted dropout: element e = s*K + k of in is kept, times 1/(1-p),
 * when lora_dropout_keep(seed, e, p), else zeroed; drop' applies the same mask and
 * factor to the gradient. With p > 0 the dropped input is materialized only
 * LORA_CHUNK rows at a time; with p == 0 the sgemms read `in` directly. */
#include "backend.h"
#include "cpu_ops.h"

#include <cblas.h>
#include <stdlib.h>

#define LORA_CHUNK 256  // rows of drop(in) materialized at once

/* dst(n,K) = drop(src rows s0..s0+n) with the mask of element (s0+r)*K + k. */
static void lora_drop_rows(float *dst, const float *src, int s0, int n, int K, float p,
                           uint64_t seed) {
    float inv = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; r++) {
        uint64_t e0 = (uint64_t)(s0 + r) * (uint64_t)K;
        const float *x = src + (size_t)r * K;
        float *y = dst + (size_t)r * K;
        for (int k = 0; k < K; k++) y[k] = lora_dropout_keep(seed, e0 + k, p) ? x[k] * inv : 0.0f;
    }
}

/* out(S,N) += scale * drop(in) A^T B^T; t (S,R) written. in (S,K), A (R,K), B (N,R). */
void cpu_lora_forward(void *out, float *t, const void *in, const float *A, const float *B,
                      int S, int K, int N, int R, float scale, float p, uint64_t seed) {
    const float *x = in;
    if (S == 0 || R == 0) return;
    if (p == 0.0f) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, S, R, K, 1.0f, x, K, A, K, 0.0f,
                    t, R);
    } else {
        float *xd = malloc((size_t)LORA_CHUNK * K * sizeof(float));  // (LORA_CHUNK, K)
        if (!xd) {
            cpu_fill_nan(t, (size_t)S * R);
            cpu_fill_nan(out, (size_t)S * N);
            return;
        }
        for (int s0 = 0; s0 < S; s0 += LORA_CHUNK) {
            int n = S - s0 < LORA_CHUNK ? S - s0 : LORA_CHUNK;
            lora_drop_rows(xd, x + (size_t)s0 * K, s0, n, K, p, seed);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, R, K, 1.0f, xd, K, A, K,
                        0.0f, t + (size_t)s0 * R, R);
        }
        free(xd);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, S, N, R, scale, t, R, B, R, 1.0f, out,
                N);
}

/* din(S,K) +=, dA(R,K) +=, dB(N,R) += the gradients of the forward above given dout (S,N). */
void cpu_lora_backward(void *din, float *dA, float *dB, const void *dout, const void *in,
                       const float *t, const float *A, const float *B,
                       int S, int K, int N, int R, float scale, float p, uint64_t seed) {
    const float *x = in, *dy = dout;
    float *dx = din;
    if (S == 0 || R == 0) return;
    float *dt = malloc((size_t)S * R * sizeof(float));                       // (S,R)
    float *xd = NULL;                                                         // (LORA_CHUNK,K)
    if (p != 0.0f) xd = malloc((size_t)LORA_CHUNK * K * sizeof(float));
    if (!dt || (p != 0.0f && !xd)) {
        free(dt);
        free(xd);
        cpu_fill_nan(dx, (size_t)S * K);
        cpu_fill_nan(dA, (size_t)R * K);
        cpu_fill_nan(dB, (size_t)N * R);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, R, S, scale, dy, N, t, R, 1.0f, dB,
                R);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, S, R, N, scale, dy, N, B, R, 0.0f,
                dt, R);
    if (p == 0.0f) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, R, K, S, 1.0f, dt, R, x, K, 1.0f,
                    dA, K);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, S, K, R, 1.0f, dt, R, A, K, 1.0f,
                    dx, K);
    } else {
        float inv = 1.0f / (1.0f - p);
        for (int s0 = 0; s0 < S; s0 += LORA_CHUNK) {
            int n = S - s0 < LORA_CHUNK ? S - s0 : LORA_CHUNK;
            const float *dtc = dt + (size_t)s0 * R;
            lora_drop_rows(xd, x + (size_t)s0 * K, s0, n, K, p, seed);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, R, K, n, 1.0f, dtc, R, xd, K,
                        1.0f, dA, K);
            // xd is free again: reuse it for the chunk's dt A, then mask it into din
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, K, R, 1.0f, dtc, R, A, K,
                        0.0f, xd, K);
#pragma omp parallel for schedule(static)
            for (int r = 0; r < n; r++) {
                uint64_t e0 = (uint64_t)(s0 + r) * (uint64_t)K;
                const float *g = xd + (size_t)r * K;
                float *d = dx + (size_t)(s0 + r) * K;
                for (int k = 0; k < K; k++)
                    if (lora_dropout_keep(seed, e0 + k, p)) d[k] += g[k] * inv;
            }
        }
    }
    free(dt);
    free(xd);
}
