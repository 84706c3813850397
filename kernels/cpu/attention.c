/* attention.c: causal grouped-query attention, forward and backward, in blocks.
 *
 * Query head h reads kv head g = h / (NH/NKV); scores are scaled by 1/sqrt(HS)
 * and row s sees rows 0..s. No S x S matrix ever exists: work is cut into blocks
 * of at most ATT_BQ query rows against ATT_BK key rows (or ATT_BQ key rows against
 * ATT_BK query rows in the dK/dV pass), and only per-thread block buffers are held.
 * Every product of a block (scores, dP, P V, P^T dout, dS^T q, dS k) is one
 * cblas_sgemm reading a head's rows in place: the layout (S, heads, HS) makes a
 * head's rows a matrix with row stride heads*HS, so nothing is gathered.
 *
 * Forward (one work unit = head h x query tile): an online softmax walks the key
 * blocks up to the diagonal keeping per row the running max m, the running sum l
 * of exp(score - m) and the unnormalized output acc; out = acc / l and
 * lse = m + log(l) (natural log, saved for the backward).
 *
 * Backward, FlashAttention-2 style: each block's P = exp(score - lse) is
 * recomputed, with D = rowsum(dout * out):
 *   dP = dout V^T,  dS = P * (dP - D) / sqrt(HS),
 *   dV += P^T dout, dK += dS^T Q, dQ += dS K.
 * To give every output element a single owner without atomics, it runs in two
 * passes: pass 1 owns (kv head, key tile) units and sums dK, dV over the group's
 * query heads and the query rows at or below the diagonal; pass 2 owns (query
 * head, query tile) units and sums dQ over key blocks. P and dS are recomputed in
 * pass 2 (about 40% more arithmetic than one pass), which buys full parallelism
 * at any NKV with no write conflicts.
 *
 * Threads: the units run on OpenMP threads and each calls sgemm on its own
 * blocks, so for the duration of a call OpenBLAS is set to one thread (and set
 * back after): the two thread pools never nest, and each sgemm's arithmetic is a
 * fixed function of its operands.
 *
 * Determinism: every unit writes only its own rows, always in the same order, with
 * single-threaded sgemm calls of fixed shapes, and its scratch is fully rewritten
 * before being read, so the dynamic schedule (used only to balance the triangular
 * work) cannot change any bit of the result, whatever the thread count.
 *
 * Memory: the backward's one S-sized scratch, D (NH, S), lives in the caller's workspace
 * (cpu_attention_bwd_ws_bytes), which the model places in memory that is dead at that
 * point of its step. The per-thread block buffers (2 ATT_BQ x ATT_BK floats a thread,
 * 128 KiB) stay allocated per call: their size follows the thread count, not the shapes,
 * so a workspace sized from the shapes alone could not hold them. */
#include "cpu_ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

#define ATT_BQ 64   // rows per query tile (forward, dQ pass) and per key tile (dK/dV pass)
#define ATT_BK 256  // rows per key block (forward, dQ pass) and per query block (dK/dV pass)

static inline int imin(int a, int b) { return a < b ? a : b; }

/* exp(x) for x <= 88 in plain float arithmetic, so that loops over it vectorize:
 * x = n ln2 + r with |r| <= ln2/2 (ln2 split in two for an exact n ln2), exp(r)
 * from its degree-7 Taylor-fitted polynomial (Cephes expf, within 2 ulp of expf),
 * times 2^n built in the exponent bits. Below -87.3 (under FLT_MIN) it returns 0. */
#pragma omp declare simd notinbranch
static inline float attn_exp(float x) {
    float xc = x < -87.3f ? -87.3f : x;
    float n = (xc * 1.44269504f + 12582912.0f) - 12582912.0f;  // round to nearest
    float r = xc - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    union { int i; float f; } two_n = {.i = ((int)n + 127) << 23};
    y *= two_n.f;
    return x < -87.3f ? 0.0f : y;
}

/* Sets OpenBLAS to one thread and returns the count it had, for attn_blas_restore. */
static int attn_blas_single(void) {
    int n = openblas_get_num_threads();
    if (n != 1) openblas_set_num_threads(1);
    return n;
}

static void attn_blas_restore(int n) {
    if (n != 1) openblas_set_num_threads(n);
}

/* One forward unit: head h, query tile qt -> out rows and lse entries of that tile.
 * ws: per-thread scratch of attn_forward_ws(HS) floats. */
static void attn_forward_unit(float *out, float *lse, const float *q, const float *k,
                              const float *v, int S, int NH, int NKV, int HS, int h, int qt,
                              float *ws) {
    int g = h / (NH / NKV);
    int i0 = qt * ATT_BQ, nq = imin(ATT_BQ, S - i0);
    int qs = NH * HS, ks = NKV * HS;
    float scale = 1.0f / sqrtf((float)HS);
    float *sc = ws;                         // (ATT_BQ, ATT_BK) scores, then probabilities
    float *acc = sc + ATT_BQ * ATT_BK;      // (ATT_BQ, HS) unnormalized output
    float *mx = acc + (size_t)ATT_BQ * HS;  // (ATT_BQ) running max
    float *l = mx + ATT_BQ;                 // (ATT_BQ) running sum
    const float *qh = q + (long)i0 * qs + (long)h * HS;
    for (int r = 0; r < nq; r++) {
        mx[r] = -INFINITY;
        l[r] = 0.0f;
    }
    memset(acc, 0, (size_t)nq * HS * sizeof(float));
    // key blocks start at multiples of ATT_BK <= i0, so every row sees >= 1 key of each
    for (int j0 = 0; j0 < i0 + nq; j0 += ATT_BK) {
        int nk = imin(ATT_BK, i0 + nq - j0);
        const float *kg = k + (long)j0 * ks + (long)g * HS, *vg = v + (long)j0 * ks + (long)g * HS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, HS, scale, qh, qs, kg, ks,
                    0.0f, sc, ATT_BK);
        for (int r = 0; r < nq; r++) {
            int jn = imin(nk, i0 + r - j0 + 1);  // causal cut
            float *sr = sc + r * ATT_BK;
            float m_new = mx[r];
#pragma omp simd reduction(max : m_new)
            for (int j = 0; j < jn; j++) m_new = sr[j] > m_new ? sr[j] : m_new;
            float corr = expf(mx[r] - m_new);  // 0 on the first block (mx = -inf)
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int j = 0; j < jn; j++) {
                sr[j] = attn_exp(sr[j] - m_new);
                sum += sr[j];
            }
            for (int j = jn; j < nk; j++) sr[j] = 0.0f;
            l[r] = l[r] * corr + sum;
            mx[r] = m_new;
            if (corr != 1.0f) {
                float *ar = acc + (size_t)r * HS;
                for (int d = 0; d < HS; d++) ar[d] *= corr;
            }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, HS, nk, 1.0f, sc, ATT_BK, vg,
                    ks, 1.0f, acc, HS);
    }
    for (int r = 0; r < nq; r++) {
        float *o = out + (long)(i0 + r) * qs + (long)h * HS;
        const float *ar = acc + (size_t)r * HS;
        for (int d = 0; d < HS; d++) o[d] = ar[d] / l[r];
        lse[(long)h * S + i0 + r] = mx[r] + logf(l[r]);
    }
}

static size_t attn_forward_ws(int HS) {
    return (size_t)ATT_BQ * ATT_BK + (size_t)ATT_BQ * HS + 2 * ATT_BQ;
}

/* One block holding `per` floats of scratch for each thread; NULL on failure. */
static float *attn_ws_alloc(size_t per) {
    return malloc((size_t)omp_get_max_threads() * per * sizeof(float));
}

/* out (S,NH,HS), lse (NH,S) written from q (S,NH,HS), k, v (S,NKV,HS). */
void cpu_attention_forward(void *out, float *lse, const void *q, const void *k, const void *v,
                           int S, int NH, int NKV, int HS) {
    int nt = (S + ATT_BQ - 1) / ATT_BQ;
    size_t per = attn_forward_ws(HS);
    float *ws = attn_ws_alloc(per);
    if (!ws) {
        cpu_fill_nan(out, (size_t)S * NH * HS);
        cpu_fill_nan(lse, (size_t)NH * S);
        return;
    }
    long units = (long)nt * NH;
    int blas_threads = attn_blas_single();
#pragma omp parallel for schedule(dynamic, 1)
    for (long u = 0; u < units; u++) {
        int qt = nt - 1 - (int)(u / NH), h = (int)(u % NH);  // longest rows first
        attn_forward_unit(out, lse, q, k, v, S, NH, NKV, HS, h, qt,
                          ws + (size_t)omp_get_thread_num() * per);
    }
    attn_blas_restore(blas_threads);
    free(ws);
}

/* Shapes shared by the backward's helpers. */
typedef struct {
    const float *q, *k, *v, *dout, *lse, *D;  // D (NH,S) = rowsum(dout * out)
    int S, NH, NKV, HS;
    int qs, ks;  // row strides of q/out (NH*HS) and k/v (NKV*HS)
    float scale;
} AttnBwd;

/* For query rows i0..i0+nq of head h against key rows j0..j0+nk of kv head g:
 * P(nq, nk) = exp(score - lse) and dS(nq, nk) = P (dP - D) * scale, both with row
 * stride ld, zero where the causal mask cuts. */
static void attn_block_grad(const AttnBwd *a, float *P, float *dS, int ld, int h, int g, int i0,
                            int nq, int j0, int nk) {
    const float *qh = a->q + (long)i0 * a->qs + (long)h * a->HS;
    const float *doh = a->dout + (long)i0 * a->qs + (long)h * a->HS;
    const float *kg = a->k + (long)j0 * a->ks + (long)g * a->HS;
    const float *vg = a->v + (long)j0 * a->ks + (long)g * a->HS;
    const float *lh = a->lse + (long)h * a->S + i0, *Dh = a->D + (long)h * a->S + i0;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, a->HS, a->scale, qh, a->qs, kg,
                a->ks, 0.0f, P, ld);  // scaled scores q.k
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, a->HS, 1.0f, doh, a->qs, vg,
                a->ks, 0.0f, dS, ld);  // dP = dout.v
    for (int r = 0; r < nq; r++) {
        int jn = i0 + r - j0 + 1;
        jn = jn < 0 ? 0 : imin(nk, jn);
        float *pr = P + (size_t)r * ld, *dr = dS + (size_t)r * ld;
        float lr = lh[r], Dr = Dh[r], scale = a->scale;
#pragma omp simd
        for (int j = 0; j < jn; j++) {
            float p = attn_exp(pr[j] - lr);
            pr[j] = p;
            dr[j] = p * (dr[j] - Dr) * scale;
        }
        for (int j = jn; j < nk; j++) pr[j] = dr[j] = 0.0f;
    }
}

static size_t attn_backward_ws(void) { return (size_t)2 * ATT_BQ * ATT_BK; }

/* Pass 1 unit: dk, dv rows of key tile kt of kv head g, summed over the group's
 * query heads and the query rows i >= the tile's first row, in query blocks. */
static void attn_backward_kv_unit(const AttnBwd *a, float *dk, float *dv, int g, int kt,
                                  float *ws) {
    int HS = a->HS, G = a->NH / a->NKV;
    int j0 = kt * ATT_BQ, nk = imin(ATT_BQ, a->S - j0);
    float *P = ws;                   // (ATT_BK, ATT_BQ)
    float *dS = P + ATT_BK * ATT_BQ; // (ATT_BK, ATT_BQ)
    float *dKg = dk + (long)j0 * a->ks + (long)g * HS, *dVg = dv + (long)j0 * a->ks + (long)g * HS;
    for (int j = 0; j < nk; j++) {
        memset(dKg + (long)j * a->ks, 0, (size_t)HS * sizeof(float));
        memset(dVg + (long)j * a->ks, 0, (size_t)HS * sizeof(float));
    }
    for (int h = g * G; h < (g + 1) * G; h++) {
        for (int i0 = j0; i0 < a->S; i0 += ATT_BK) {
            int nq = imin(ATT_BK, a->S - i0);
            attn_block_grad(a, P, dS, ATT_BQ, h, g, i0, nq, j0, nk);
            const float *qh = a->q + (long)i0 * a->qs + (long)h * HS;
            const float *doh = a->dout + (long)i0 * a->qs + (long)h * HS;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, HS, nq, 1.0f, P, ATT_BQ, doh,
                        a->qs, 1.0f, dVg, a->ks);  // dV += P^T dout
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, HS, nq, 1.0f, dS, ATT_BQ, qh,
                        a->qs, 1.0f, dKg, a->ks);  // dK += dS^T q
        }
    }
}

/* Pass 2 unit: dq rows of query tile qt of head h, summed over key blocks up to the
 * diagonal. */
static void attn_backward_q_unit(const AttnBwd *a, float *dq, int h, int qt, float *ws) {
    int HS = a->HS, g = h / (a->NH / a->NKV);
    int i0 = qt * ATT_BQ, nq = imin(ATT_BQ, a->S - i0);
    float *P = ws, *dS = P + ATT_BQ * ATT_BK;  // (ATT_BQ, ATT_BK) each
    float *dQh = dq + (long)i0 * a->qs + (long)h * HS;
    for (int r = 0; r < nq; r++) memset(dQh + (long)r * a->qs, 0, (size_t)HS * sizeof(float));
    for (int j0 = 0; j0 < i0 + nq; j0 += ATT_BK) {
        int nk = imin(ATT_BK, i0 + nq - j0);
        attn_block_grad(a, P, dS, ATT_BK, h, g, i0, nq, j0, nk);
        const float *kg = a->k + (long)j0 * a->ks + (long)g * HS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, HS, nk, 1.0f, dS, ATT_BK, kg,
                    a->ks, 1.0f, dQh, a->qs);  // dQ += dS k
    }
}

/* Workspace bytes of cpu_attention_backward: D (NH, S) fp32. */
size_t cpu_attention_bwd_ws_bytes(int S, int NH, int NKV, int HS) {
    (void)NKV, (void)HS;
    return (size_t)NH * S * sizeof(float);
}

/* dq (S,NH,HS), dk, dv (S,NKV,HS) written, from dout, out (S,NH,HS), lse (NH,S), q, k, v;
 * work: cpu_attention_bwd_ws_bytes of the caller's memory. */
void cpu_attention_backward(void *dq, void *dk, void *dv, const void *dout, const void *out,
                            const float *lse, const void *q, const void *k, const void *v,
                            int S, int NH, int NKV, int HS, void *work) {
    int nt = (S + ATT_BQ - 1) / ATT_BQ;
    size_t per = attn_backward_ws();
    float *D = work;  // (NH,S)
    float *ws = attn_ws_alloc(per);
    if (!ws) {
        cpu_fill_nan(dq, (size_t)S * NH * HS);
        cpu_fill_nan(dk, (size_t)S * NKV * HS);
        cpu_fill_nan(dv, (size_t)S * NKV * HS);
        return;
    }
    AttnBwd a = {q, k, v, dout, lse, D, S, NH, NKV, HS, NH * HS, NKV * HS,
                 1.0f / sqrtf((float)HS)};
    const float *o = out, *dy = dout;
#pragma omp parallel for schedule(static)
    for (int s = 0; s < S; s++) {
        for (int h = 0; h < NH; h++) {
            const float *orow = o + (long)s * a.qs + (long)h * HS;
            const float *dr = dy + (long)s * a.qs + (long)h * HS;
            double acc = 0;
            for (int d = 0; d < HS; d++) acc += (double)orow[d] * dr[d];
            D[(long)h * S + s] = (float)acc;
        }
    }
    long units_kv = (long)nt * NKV, units_q = (long)nt * NH;
    int blas_threads = attn_blas_single();
#pragma omp parallel for schedule(dynamic, 1)
    for (long u = 0; u < units_kv; u++)  // kt ascending: the longest columns first
        attn_backward_kv_unit(&a, dk, dv, (int)(u % NKV), (int)(u / NKV),
                              ws + (size_t)omp_get_thread_num() * per);
#pragma omp parallel for schedule(dynamic, 1)
    for (long u = 0; u < units_q; u++)  // qt descending: the longest rows first
        attn_backward_q_unit(&a, dq, (int)(u % NH), nt - 1 - (int)(u / NH),
                             ws + (size_t)omp_get_thread_num() * per);
    attn_blas_restore(blas_threads);
    free(ws);
}
