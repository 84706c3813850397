/* rows.c: row-wise data movement: embedding lookup, residual add, and the
 * gather / scatter-add of token rows that LeMo's token elimination runs on
 * (DESIGN section 8: attention over the kept rows idx, added back into x[idx]).
 * Pure copies and adds, parallel over rows (or columns where rows may repeat). */
#include "cpu_ops.h"

#include <string.h>

#include <omp.h>

/* out(S,C) = wte(V,C)[tok[s]]; token ids are validated by the caller. */
void cpu_embedding_forward(void *out, const int *tok, const void *wte, int S, int C) {
    float *o = out;
    const float *w = wte;
#pragma omp parallel for schedule(static)
    for (int s = 0; s < S; s++)
        memcpy(o + (size_t)s * C, w + (size_t)tok[s] * C, (size_t)C * 4);
}

/* a(n) += b(n) */
void cpu_add_inplace(void *a, const void *b, size_t n) {
    float *x = a;
    const float *y = b;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/* out(n,C) = in(S,C)[idx[i]] */
void cpu_gather_rows(void *out, const void *in, const int *idx, int n, int C) {
    float *o = out;
    const float *x = in;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++)
        memcpy(o + (size_t)i * C, x + (size_t)idx[i] * C, (size_t)C * 4);
}

/* out(S,C)[idx[i]] += in(n,C)[i]. idx is sorted but a row index could repeat, so
 * the threads split the columns, not the rows: each element of out is summed by
 * one thread in the order of i, whatever the number of threads. */
void cpu_scatter_add_rows(void *out, const void *in, const int *idx, int n, int C) {
    float *o = out;
    const float *x = in;
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int c0 = (int)((long)C * t / nt), c1 = (int)((long)C * (t + 1) / nt);
        for (int i = 0; i < n; i++) {
            float *dst = o + (size_t)idx[i] * C;
            const float *src = x + (size_t)i * C;
#pragma omp simd
            for (int c = c0; c < c1; c++) dst[c] += src[c];
        }
    }
}
