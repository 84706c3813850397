/* optim.c: the fp32 optimizer-side ops on LoRA parameters: gradient sum of
 * squares (for clipping), in-place scale, and AdamW.
 *
 * sumsq splits the vector into a fixed number of equal blocks, sums each block
 * in double and adds the block sums in order, so the result does not depend on
 * the number of threads either. */
#include "cpu_ops.h"

#include <math.h>

#define SUMSQ_BLOCKS 64

/* sum of g[i]^2 in double */
double cpu_sumsq(const float *g, size_t n) {
    double part[SUMSQ_BLOCKS];
    size_t bs = (n + SUMSQ_BLOCKS - 1) / SUMSQ_BLOCKS;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < SUMSQ_BLOCKS; b++) {
        size_t i0 = (size_t)b * bs, i1 = i0 + bs < n ? i0 + bs : n;
        double s = 0;
        for (size_t i = i0; i < i1; i++) s += (double)g[i] * g[i];
        part[b] = s;
    }
    double s = 0;
    for (int b = 0; b < SUMSQ_BLOCKS; b++) s += part[b];
    return s;
}

/* g(n) *= s */
void cpu_scale(float *g, size_t n, float s) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) g[i] *= s;
}

/* AdamW, decoupled weight decay, bias-corrected with step t >= 1:
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   p -= lr * ((m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) + wd p)
 * Bias corrections are formed in double and rounded once; the rest is fp32. */
void cpu_adamw(float *p, const float *g, float *m, float *v, size_t n,
               float lr, float b1, float b2, float eps, float wd, int t) {
    float bc1 = (float)(1.0 - pow((double)b1, t));
    float bc2 = (float)(1.0 - pow((double)b2, t));
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + wd * p[i]);
    }
}
