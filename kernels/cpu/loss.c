/* loss.c: the fused LM head + cross-entropy.
 *
 * Rows go through in chunks of CE_CHUNK, so only (CE_CHUNK, V) logits exist at
 * once, never (S, V): logits = x_chunk W^T (sgemm), then per row a stable
 * log-softmax (max subtracted, the sum of exponentials in double), then, when dx
 * is wanted, the logits buffer is overwritten in place by dlogits =
 * grad_scale * (softmax - onehot) and dx_chunk = dlogits W (sgemm). Rows without
 * a target get zero dlogits and so zero dx. Per-row losses are summed in row
 * order, so the total is reproducible bit for bit. The argmax for the token accuracy
 * comes from the same pass that finds the row's max (strict >, so a tie keeps the lowest
 * index: the CUDA kernel follows the same rule). */
#include "cpu_ops.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CE_CHUNK 128  // rows per chunk: (128, 32000) fp32 logits = 16 MB

/* The CPU ops' scratch beside the plan (Backend.scratch_bytes): the fused loss's (CE_CHUNK, V)
 * fp32 logits per chunk; the other ops' per-call scratch is smaller. */
size_t cpu_scratch_bytes(int S, int V, int R, int n, const int *K, const int *N, float p) {
    (void)S, (void)R, (void)n, (void)K, (void)N, (void)p;
    return (size_t)CE_CHUNK * V * sizeof(float);
}

/* Sum over counted rows (target in [0,V); -1 = not counted) of -log softmax(x W^T)[target];
 * *count = counted rows; *correct (if not NULL) = counted rows whose argmax is the target;
 * dx (S,C), if not NULL, WRITTEN with grad_scale * d(sum)/dx. x (S,C), w (V,C), target (S). */
double cpu_lm_head_ce(void *dx, long *count, long *correct, const void *x, const void *w, const int *target,
                      int S, int C, int V, float grad_scale) {
    const float *xs = x, *wt = w;
    float *dxs = dx;
    long cnt = 0;
    for (int s = 0; s < S; s++) cnt += target[s] >= 0 && target[s] < V;
    *count = cnt;
    if (correct) *correct = 0;
    float *logits = malloc((size_t)CE_CHUNK * V * sizeof(float));   // (CE_CHUNK, V)
    double *rowloss = malloc(CE_CHUNK * sizeof(double));              // (CE_CHUNK)
    char *rowhit = malloc(CE_CHUNK);                                  // (CE_CHUNK) argmax == target
    if (!logits || !rowloss || !rowhit) {
        free(logits);
        free(rowloss);
        free(rowhit);
        if (dxs) cpu_fill_nan(dxs, (size_t)S * C);
        return NAN;
    }
    double total = 0;
    for (int s0 = 0; s0 < S; s0 += CE_CHUNK) {
        int n = S - s0 < CE_CHUNK ? S - s0 : CE_CHUNK;
        int any = 0;
        for (int r = 0; r < n; r++) any |= target[s0 + r] >= 0 && target[s0 + r] < V;
        if (!any) {  // nothing to learn from this chunk: skip both matmuls
            if (dxs) memset(dxs + (size_t)s0 * C, 0, (size_t)n * C * sizeof(float));
            continue;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, V, C, 1.0f, xs + (size_t)s0 * C,
                    C, wt, C, 0.0f, logits, V);
#pragma omp parallel for schedule(static)
        for (int r = 0; r < n; r++) {
            float *l = logits + (size_t)r * V;
            int t = target[s0 + r];
            if (t < 0 || t >= V) {
                rowloss[r] = 0;
                rowhit[r] = 0;
                if (dxs) memset(l, 0, (size_t)V * sizeof(float));
                continue;
            }
            float mx = l[0];
            int am = 0;
            for (int j = 1; j < V; j++)
                if (l[j] > mx) mx = l[j], am = j;
            rowhit[r] = am == t;
            float lt = l[t];
            double sum = 0;
            for (int j = 0; j < V; j++) {
                float e = expf(l[j] - mx);
                l[j] = e;
                sum += e;
            }
            rowloss[r] = (double)mx + log(sum) - (double)lt;
            if (dxs) {
                float inv = (float)(1.0 / sum);
                float pt = l[t] * inv;
                for (int j = 0; j < V; j++) l[j] = grad_scale * (l[j] * inv);
                l[t] = grad_scale * (pt - 1.0f);
            }
        }
        for (int r = 0; r < n; r++) total += rowloss[r];
        if (correct)
            for (int r = 0; r < n; r++) *correct += rowhit[r];
        if (dxs)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, C, V, 1.0f, logits, V, wt,
                        C, 0.0f, dxs + (size_t)s0 * C, C);
    }
    free(logits);
    free(rowloss);
    free(rowhit);
    return total;
}
