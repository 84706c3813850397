/* attention_partial.c: causal attention of some query rows against one shard of key/value
 * rows, each row carrying its global position, and the merge of such partials: the arithmetic
 * of ring attention (context parallel, DESIGN section 11), forward and backward.
 *
 * A rank holds nq query rows at positions qpos and, at one ring step, a K/V shard of nk rows at
 * positions kpos; query p sees key j when kpos[j] <= qpos[p] (causal by global position, so
 * any layout works: zigzag chunks, striped rows, LeMo's kept rows). The partial forward returns
 * the shard's output normalised by its own softmax sum, out_s = sum_j exp(s_j - lse_s) v_j, and
 * lse_s = log sum_j exp(s_j) over the visible keys (-inf and a zero row when it sees none): the
 * unnormalised output is exp(lse_s) out_s. Partials merge by their log-sum-exp,
 *   lse = logaddexp(lse_a, lse_b),  out = exp(lse_a - lse) out_a + exp(lse_b - lse) out_b,
 * which is associative and commutative, so the ring order does not change the result beyond
 * rounding; after every shard has been merged (out, lse) are the full attention's.
 *
 * The backward of one shard is FlashAttention-2's with the merged row statistics: with the
 * full lse and D = rowsum(dout * out) of the merged output, P = exp(s - lse) is the true
 * probability of each (query, key) pair, so
 *   dP = dout V^T,  dS = P (dP - D) / sqrt(HS),  dV += P^T dout,  dK += dS^T Q,  dQ += dS K
 * summed over the shards gives the exact gradients: dq accumulates on the query's rank, and
 * dk, dv accumulate in buffers that travel around the ring with their shard back to its owner.
 *
 * Shapes as kernels/cpu/attention.c: q, out (nq, NH, HS); k, v (nk, NKV, HS); lse, D (NH, nq);
 * query head h reads kv head h / (NH / NKV); scores are scaled by 1/sqrt(HS). Blocks of at most
 * PA_BQ query rows against PA_BK key rows (PA_BQ keys against PA_BK queries in the dK/dV pass),
 * each product one cblas_sgemm on rows read in place; a block whose keys all lie after its
 * queries is skipped. Threads, determinism and the OpenBLAS thread count as in attention.c:
 * every unit owns its output rows (dQ by query tile, dK and dV by key tile), fixed order, so
 * the result is bit-identical whatever the thread count. This is the CPU reference of the ring
 * kernels; the trainer does not call it yet. */
#include "cpu_ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

#define PA_BQ 64   // query rows per tile (forward, dQ pass), key rows per tile (dK/dV pass)
#define PA_BK 256  // key rows per block (forward, dQ pass), query rows per block (dK/dV pass)

static inline int imin(int a, int b) { return a < b ? a : b; }

static int pa_blas_single(void) {
    int n = openblas_get_num_threads();
    if (n != 1) openblas_set_num_threads(1);
    return n;
}

static void pa_blas_restore(int n) {
    if (n != 1) openblas_set_num_threads(n);
}

/* The smallest and largest of pos[0..n). */
static void pos_range(const int *pos, int n, int *lo, int *hi) {
    int a = pos[0], b = pos[0];
    for (int i = 1; i < n; i++) {
        a = pos[i] < a ? pos[i] : a;
        b = pos[i] > b ? pos[i] : b;
    }
    *lo = a, *hi = b;
}

/* One forward unit: head h, query tile qt. ws: PA_BQ * PA_BK + PA_BQ * HS + 2 PA_BQ floats. */
static void partial_forward_unit(float *out, float *lse, const float *q, const int *qpos, int nq, const float *k,
                                 const float *v, const int *kpos, int nk, int NH, int NKV, int HS, int h, int qt,
                                 float *ws) {
    int g = h / (NH / NKV), qs = NH * HS, ks = NKV * HS;
    int i0 = qt * PA_BQ, nr = imin(PA_BQ, nq - i0);
    float scale = 1.0f / sqrtf((float)HS);
    float *sc = ws;                         // (PA_BQ, PA_BK) scores, then probabilities
    float *acc = sc + PA_BQ * PA_BK;        // (PA_BQ, HS) unnormalised output
    float *mx = acc + (size_t)PA_BQ * HS;   // (PA_BQ) running max
    float *l = mx + PA_BQ;                  // (PA_BQ) running sum
    const float *qh = q + (long)i0 * qs + (long)h * HS;
    const int *qp = qpos + i0;
    int qlo, qhi;
    pos_range(qp, nr, &qlo, &qhi);
    for (int r = 0; r < nr; r++) mx[r] = -INFINITY, l[r] = 0.0f;
    memset(acc, 0, (size_t)nr * HS * sizeof(float));
    for (int j0 = 0; j0 < nk; j0 += PA_BK) {
        int nc = imin(PA_BK, nk - j0), klo, khi;
        const int *kp = kpos + j0;
        pos_range(kp, nc, &klo, &khi);
        if (klo > qhi) continue;  // every key of the block after every query of the tile
        const float *kg = k + (long)j0 * ks + (long)g * HS, *vg = v + (long)j0 * ks + (long)g * HS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nc, HS, scale, qh, qs, kg, ks, 0.0f, sc, PA_BK);
        for (int r = 0; r < nr; r++) {
            float *sr = sc + (size_t)r * PA_BK;
            int p = qp[r];
            float m_new = mx[r];
            for (int j = 0; j < nc; j++)
                if (kp[j] <= p && sr[j] > m_new) m_new = sr[j];
            if (m_new == -INFINITY) {  // no visible key yet: nothing to add
                memset(sr, 0, (size_t)nc * sizeof(float));
                continue;
            }
            float corr = expf(mx[r] - m_new), sum = 0.0f;  // 0 while the row had no key (mx -inf)
            for (int j = 0; j < nc; j++) {
                sr[j] = kp[j] <= p ? expf(sr[j] - m_new) : 0.0f;
                sum += sr[j];
            }
            l[r] = l[r] * corr + sum;
            mx[r] = m_new;
            if (corr != 1.0f) {
                float *ar = acc + (size_t)r * HS;
                for (int d = 0; d < HS; d++) ar[d] *= corr;
            }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, HS, nc, 1.0f, sc, PA_BK, vg, ks, 1.0f, acc, HS);
    }
    for (int r = 0; r < nr; r++) {
        float *o = out + (long)(i0 + r) * qs + (long)h * HS;
        const float *ar = acc + (size_t)r * HS;
        if (l[r] > 0) {
            for (int d = 0; d < HS; d++) o[d] = ar[d] / l[r];
            lse[(long)h * nq + i0 + r] = mx[r] + logf(l[r]);
        } else {
            memset(o, 0, (size_t)HS * sizeof(float));
            lse[(long)h * nq + i0 + r] = -INFINITY;
        }
    }
}

/* out (nq,NH,HS), lse (NH,nq) written: the causal attention of query rows q at positions qpos
 * against the shard k, v (nk,NKV,HS) at positions kpos, normalised within the shard. */
void cpu_attention_partial_forward(float *out, float *lse, const void *q, const int *qpos, int nq, const void *k,
                                   const void *v, const int *kpos, int nk, int NH, int NKV, int HS) {
    if (nq <= 0) return;
    if (nk <= 0) {
        memset(out, 0, (size_t)nq * NH * HS * sizeof(float));
        for (size_t i = 0; i < (size_t)NH * nq; i++) lse[i] = -INFINITY;
        return;
    }
    int nt = (nq + PA_BQ - 1) / PA_BQ;
    size_t per = (size_t)PA_BQ * PA_BK + (size_t)PA_BQ * HS + 2 * PA_BQ;
    float *ws = malloc((size_t)omp_get_max_threads() * per * sizeof(float));
    if (!ws) {
        cpu_fill_nan(out, (size_t)nq * NH * HS);
        cpu_fill_nan(lse, (size_t)NH * nq);
        return;
    }
    long units = (long)nt * NH;
    int blas_threads = pa_blas_single();
#pragma omp parallel for schedule(dynamic, 1)
    for (long u = 0; u < units; u++)
        partial_forward_unit(out, lse, q, qpos, nq, k, v, kpos, nk, NH, NKV, HS, (int)(u % NH), (int)(u / NH),
                             ws + (size_t)omp_get_thread_num() * per);
    pa_blas_restore(blas_threads);
    free(ws);
}

/* (out, lse) <- their merge with the partial (pout, plse); shapes (nq,NH,HS) and (NH,nq). A
 * running merge starts from out 0, lse -inf. */
void cpu_attention_merge(float *out, float *lse, const float *pout, const float *plse, int nq, int NH, int HS) {
#pragma omp parallel for schedule(static)
    for (int s = 0; s < nq; s++) {
        for (int h = 0; h < NH; h++) {
            float a = lse[(long)h * nq + s], b = plse[(long)h * nq + s];
            float *o = out + ((long)s * NH + h) * HS;
            const float *po = pout + ((long)s * NH + h) * HS;
            if (b == -INFINITY) continue;  // the partial saw no key of its shard
            if (a == -INFINITY) {
                memcpy(o, po, (size_t)HS * sizeof(float));
                lse[(long)h * nq + s] = b;
                continue;
            }
            float m = a > b ? a : b;
            float wa = expf(a - m), wb = expf(b - m), inv = 1.0f / (wa + wb);
            for (int d = 0; d < HS; d++) o[d] = (wa * o[d] + wb * po[d]) * inv;
            lse[(long)h * nq + s] = m + log1pf(expf(-fabsf(a - b)));
        }
    }
}

/* D (NH,n) written: rowsum(dout * out) per head, the backward's row term (in double, as
 * cpu_attention_backward's). */
void cpu_attention_rowdot(float *D, const void *dout, const void *out, int n, int NH, int HS) {
    const float *dy = dout, *o = out;
#pragma omp parallel for schedule(static)
    for (int s = 0; s < n; s++) {
        for (int h = 0; h < NH; h++) {
            const float *orow = o + ((long)s * NH + h) * HS, *dr = dy + ((long)s * NH + h) * HS;
            double acc = 0;
            for (int d = 0; d < HS; d++) acc += (double)orow[d] * dr[d];
            D[(long)h * n + s] = (float)acc;
        }
    }
}

/* Shapes shared by the backward's units. */
typedef struct {
    const float *q, *k, *v, *dout, *lse, *D;
    const int *qpos, *kpos;
    int nq, nk, NH, NKV, HS, qs, ks;
    float scale;
} PartialBwd;

/* For query rows i0..i0+nr of head h against key rows j0..j0+nc of kv head g: P (nr,nc) =
 * exp(score - lse) and dS = P (dP - D) scale, row stride ld, zero where a key lies after its
 * query. Returns 0 (P, dS untouched) when every key of the block lies after every query. */
static int partial_block_grad(const PartialBwd *a, float *P, float *dS, int ld, int h, int g, int i0, int nr, int j0,
                              int nc) {
    int qlo, qhi, klo, khi;
    pos_range(a->qpos + i0, nr, &qlo, &qhi);
    pos_range(a->kpos + j0, nc, &klo, &khi);
    if (klo > qhi) return 0;
    const float *qh = a->q + (long)i0 * a->qs + (long)h * a->HS;
    const float *doh = a->dout + (long)i0 * a->qs + (long)h * a->HS;
    const float *kg = a->k + (long)j0 * a->ks + (long)g * a->HS;
    const float *vg = a->v + (long)j0 * a->ks + (long)g * a->HS;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nc, a->HS, a->scale, qh, a->qs, kg, a->ks, 0.0f, P, ld);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nc, a->HS, 1.0f, doh, a->qs, vg, a->ks, 0.0f, dS, ld);
    const int *kp = a->kpos + j0;
    for (int r = 0; r < nr; r++) {
        float *pr = P + (size_t)r * ld, *dr = dS + (size_t)r * ld;
        float lr = a->lse[(long)h * a->nq + i0 + r], Dr = a->D[(long)h * a->nq + i0 + r];
        int p = a->qpos[i0 + r];
        for (int j = 0; j < nc; j++) {
            if (kp[j] <= p && lr != -INFINITY) {
                float pj = expf(pr[j] - lr);
                pr[j] = pj;
                dr[j] = pj * (dr[j] - Dr) * a->scale;
            } else {
                pr[j] = dr[j] = 0.0f;
            }
        }
    }
    return 1;
}

/* dK/dV unit: key tile kt of kv head g, summed over the group's query heads and every query
 * block (ws: 2 PA_BK PA_BQ floats). */
static void partial_backward_kv_unit(const PartialBwd *a, float *dk, float *dv, int g, int kt, float *ws) {
    int HS = a->HS, G = a->NH / a->NKV;
    int j0 = kt * PA_BQ, nc = imin(PA_BQ, a->nk - j0);
    float *P = ws, *dS = P + PA_BK * PA_BQ;  // (PA_BK, PA_BQ) each
    float *dKg = dk + (long)j0 * a->ks + (long)g * HS, *dVg = dv + (long)j0 * a->ks + (long)g * HS;
    for (int h = g * G; h < (g + 1) * G; h++) {
        for (int i0 = 0; i0 < a->nq; i0 += PA_BK) {
            int nr = imin(PA_BK, a->nq - i0);
            if (!partial_block_grad(a, P, dS, PA_BQ, h, g, i0, nr, j0, nc)) continue;
            const float *qh = a->q + (long)i0 * a->qs + (long)h * HS;
            const float *doh = a->dout + (long)i0 * a->qs + (long)h * HS;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nc, HS, nr, 1.0f, P, PA_BQ, doh, a->qs, 1.0f, dVg,
                        a->ks);  // dV += P^T dout
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nc, HS, nr, 1.0f, dS, PA_BQ, qh, a->qs, 1.0f, dKg,
                        a->ks);  // dK += dS^T q
        }
    }
}

/* dQ unit: query tile qt of head h, summed over the shard's key blocks (ws: 2 PA_BQ PA_BK). */
static void partial_backward_q_unit(const PartialBwd *a, float *dq, int h, int qt, float *ws) {
    int HS = a->HS, g = h / (a->NH / a->NKV);
    int i0 = qt * PA_BQ, nr = imin(PA_BQ, a->nq - i0);
    float *P = ws, *dS = P + PA_BQ * PA_BK;  // (PA_BQ, PA_BK) each
    float *dQh = dq + (long)i0 * a->qs + (long)h * HS;
    for (int j0 = 0; j0 < a->nk; j0 += PA_BK) {
        int nc = imin(PA_BK, a->nk - j0);
        if (!partial_block_grad(a, P, dS, PA_BK, h, g, i0, nr, j0, nc)) continue;
        const float *kg = a->k + (long)j0 * a->ks + (long)g * HS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, HS, nc, 1.0f, dS, PA_BK, kg, a->ks, 1.0f, dQh,
                    a->qs);  // dQ += dS k
    }
}

/* dq (nq,NH,HS) += and dk, dv (nk,NKV,HS) += the gradients through one shard, given dout
 * (nq,NH,HS) of the merged output, the merged lse (NH,nq) and D = cpu_attention_rowdot(dout,
 * merged out) (NH,nq). */
void cpu_attention_partial_backward(float *dq, float *dk, float *dv, const void *dout, const float *lse,
                                    const float *D, const void *q, const int *qpos, int nq, const void *k,
                                    const void *v, const int *kpos, int nk, int NH, int NKV, int HS) {
    if (nq <= 0 || nk <= 0) return;
    size_t per = (size_t)2 * PA_BQ * PA_BK;
    float *ws = malloc((size_t)omp_get_max_threads() * per * sizeof(float));
    if (!ws) {
        cpu_fill_nan(dq, (size_t)nq * NH * HS);
        cpu_fill_nan(dk, (size_t)nk * NKV * HS);
        cpu_fill_nan(dv, (size_t)nk * NKV * HS);
        return;
    }
    PartialBwd a = {q,  k,   v,   dout, lse,     D,       qpos, kpos, nq, nk, NH, NKV, HS, NH * HS, NKV * HS,
                    1.0f / sqrtf((float)HS)};
    long units_kv = (long)((nk + PA_BQ - 1) / PA_BQ) * NKV, units_q = (long)((nq + PA_BQ - 1) / PA_BQ) * NH;
    int blas_threads = pa_blas_single();
#pragma omp parallel for schedule(dynamic, 1)
    for (long u = 0; u < units_kv; u++)
        partial_backward_kv_unit(&a, dk, dv, (int)(u % NKV), (int)(u / NKV), ws + (size_t)omp_get_thread_num() * per);
#pragma omp parallel for schedule(dynamic, 1)
    for (long u = 0; u < units_q; u++)
        partial_backward_q_unit(&a, dq, (int)(u % NH), (int)(u / NH), ws + (size_t)omp_get_thread_num() * per);
    pa_blas_restore(blas_threads);
    free(ws);
}
