/* norm.c: RMSNorm as HF Llama computes it in fp32:
 *   rstd = 1/sqrt(mean(x^2) + eps),  out = (x * rstd) * w.
 * The mean of squares is accumulated in double (the reference should not add
 * its own rounding noise); rstd is saved for the backward. One row per
 * iteration of a static parallel loop. The weight is frozen, so there is no dw. */
#include "cpu_ops.h"

#include <math.h>

/* out(S,C) = in * rstd * w;  rstd(S) written; w (C) */
void cpu_rmsnorm_forward(void *out, float *rstd, const void *in, const void *w,
                         int S, int C, float eps) {
    float *o = out;
    const float *x = in, *wt = w;
#pragma omp parallel for schedule(static)
    for (int s = 0; s < S; s++) {
        const float *xs = x + (size_t)s * C;
        float *os = o + (size_t)s * C;
        double ss = 0;
        for (int c = 0; c < C; c++) ss += (double)xs[c] * xs[c];
        float r = (float)(1.0 / sqrt(ss / C + (double)eps));
        rstd[s] = r;
        for (int c = 0; c < C; c++) os[c] = (xs[c] * r) * wt[c];
    }
}

/* din(S,C) += rstd w dout - x rstd^3 / C * sum_c(dout w x) */
void cpu_rmsnorm_backward(void *din, const void *dout, const void *in, const void *w,
                          const float *rstd, int S, int C) {
    float *dx = din;
    const float *dy = dout, *x = in, *wt = w;
#pragma omp parallel for schedule(static)
    for (int s = 0; s < S; s++) {
        const float *xs = x + (size_t)s * C, *gs = dy + (size_t)s * C;
        float *ds = dx + (size_t)s * C;
        double dot = 0;
        for (int c = 0; c < C; c++) dot += (double)gs[c] * wt[c] * xs[c];
        float r = rstd[s];
        float k = (float)(dot * r * r * r / C);
        for (int c = 0; c < C; c++) ds[c] += r * wt[c] * gs[c] - xs[c] * k;
    }
}
