/* attention.c: causal grouped-query attention, forward and backward, in tiles.
 *
 * Query head h reads kv head g = h / (NH/NKV); scores are scaled by 1/sqrt(HS)
 * and row s sees rows 0..s. Rows are cut into tiles of ATT_B query rows and ATT_B
 * key rows; no S x S matrix ever exists, only per-thread tiles.
 *
 * Forward (one work unit = head h x query tile): an online softmax walks the key
 * tiles 0..qt keeping per row the running max m, the running sum l of
 * exp(score - m) and the unnormalized output acc; out = acc / l and
 * lse = m + log(l) (natural log, saved for the backward).
 *
 * Backward, FlashAttention-2 style: each tile's P = exp(score - lse) is recomputed,
 * with D = rowsum(dout * out):
 *   dP = dout V^T,  dS = P * (dP - D) / sqrt(HS),
 *   dV += P^T dout, dK += dS^T Q, dQ += dS K.
 * To give every output element a single owner without atomics, it runs in two
 * passes: pass 1 owns (kv head, key tile) units and sums dK, dV over the group's
 * query heads and the query tiles at or below the diagonal; pass 2 owns (query
 * head, query tile) units and sums dQ over key tiles. P and dS are recomputed in
 * pass 2 (about 40% more arithmetic than one pass), which buys full parallelism
 * at any NKV with no write conflicts.
 *
 * Determinism: every unit writes only its own rows, always in the same order,
 * and its scratch is fully rewritten before being read, so the dynamic schedule
 * (used only to balance the triangular work) cannot change any bit of the result,
 * whatever the thread count. The tile products go through tile_acc, whose
 * vectorized inner loop has a fixed summation order. */
#include "cpu_ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#define ATT_B 64  // rows per query tile and per key tile

static inline int imin(int a, int b) { return a < b ? a : b; }

/* C[m][0..D) += sum_{j<J} P[m*pm + j*pj] * X[j*ldx + 0..D)   for m < M.
 * C (M, ldc); P is read through strides (pm, pj) so it can be a transposed tile;
 * X (J, ldx). The adds into each C element happen in increasing j, four terms per
 * pass of the vector loop, so the result is the plain loop's bit for bit. */
static void tile_acc(float *restrict C, long ldc, const float *restrict P, long pm, long pj,
                     const float *restrict X, long ldx, int M, int J, int D) {
    for (int m = 0; m < M; m++) {
        float *restrict c = C + m * ldc;
        const float *pr = P + m * pm;
        int j = 0;
        for (; j + 4 <= J; j += 4) {
            float p0 = pr[j * pj], p1 = pr[(j + 1) * pj], p2 = pr[(j + 2) * pj],
                  p3 = pr[(j + 3) * pj];
            const float *x0 = X + j * ldx, *x1 = x0 + ldx, *x2 = x1 + ldx, *x3 = x2 + ldx;
#pragma omp simd
            for (int d = 0; d < D; d++) {
                float a = c[d];
                a += p0 * x0[d];
                a += p1 * x1[d];
                a += p2 * x2[d];
                a += p3 * x3[d];
                c[d] = a;
            }
        }
        for (; j < J; j++) {
            float p0 = pr[j * pj];
            const float *x0 = X + j * ldx;
#pragma omp simd
            for (int d = 0; d < D; d++) c[d] += p0 * x0[d];
        }
    }
}

/* T(HS, ATT_B) = rows j0..j0+nk of x (row stride ld, HS wide), transposed. */
static void tile_transpose(float *T, const float *x, long ld, int nk, int HS) {
    for (int j = 0; j < nk; j++)
        for (int d = 0; d < HS; d++) T[(size_t)d * ATT_B + j] = x[j * ld + d];
}

/* Zeroes rows r < nq, columns < nc of a (ATT_B-wide or ld-wide) tile. */
static void tile_zero(float *T, long ld, int nq, int nc) {
    for (int r = 0; r < nq; r++) memset(T + r * ld, 0, (size_t)nc * sizeof(float));
}

/* One forward unit: head h, query tile qt -> out rows and lse entries of that tile.
 * ws: per-thread scratch of attn_forward_ws(HS) floats. */
static void attn_forward_unit(float *out, float *lse, const float *q, const float *k,
                              const float *v, int S, int NH, int NKV, int HS, int h, int qt,
                              float *ws) {
    int g = h / (NH / NKV);
    int i0 = qt * ATT_B, nq = imin(ATT_B, S - i0);
    long qs = (long)NH * HS, ks = (long)NKV * HS;
    float scale = 1.0f / sqrtf((float)HS);
    float *KT = ws;                       // (HS, ATT_B)
    float *sc = KT + (size_t)HS * ATT_B;  // (ATT_B, ATT_B) scores, then probabilities
    float *acc = sc + ATT_B * ATT_B;      // (ATT_B, HS) unnormalized output
    float *mx = acc + (size_t)ATT_B * HS; // (ATT_B) running max
    float *l = mx + ATT_B;                // (ATT_B) running sum
    const float *qh = q + (long)i0 * qs + (long)h * HS;
    for (int r = 0; r < nq; r++) {
        mx[r] = -INFINITY;
        l[r] = 0.0f;
    }
    tile_zero(acc, HS, nq, HS);
    for (int kt = 0; kt <= qt; kt++) {
        int j0 = kt * ATT_B, nk = imin(ATT_B, S - j0);
        const float *kg = k + (long)j0 * ks + (long)g * HS, *vg = v + (long)j0 * ks + (long)g * HS;
        tile_transpose(KT, kg, ks, nk, HS);
        tile_zero(sc, ATT_B, nq, nk);
        tile_acc(sc, ATT_B, qh, qs, 1, KT, ATT_B, nq, HS, nk);
        for (int r = 0; r < nq; r++) {
            int jn = kt < qt ? nk : imin(nk, i0 + r - j0 + 1);  // causal cut on the diagonal tile
            float *sr = sc + r * ATT_B;
            float m_new = mx[r];
            for (int j = 0; j < jn; j++) {
                sr[j] *= scale;
                m_new = sr[j] > m_new ? sr[j] : m_new;
            }
            float corr = expf(mx[r] - m_new);  // 0 on the first tile (mx = -inf)
            float sum = 0.0f;
            for (int j = 0; j < jn; j++) {
                sr[j] = expf(sr[j] - m_new);
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
        tile_acc(acc, HS, sc, ATT_B, 1, vg, ks, nq, nk, HS);
    }
    for (int r = 0; r < nq; r++) {
        float *o = out + (long)(i0 + r) * qs + (long)h * HS;
        const float *ar = acc + (size_t)r * HS;
        for (int d = 0; d < HS; d++) o[d] = ar[d] / l[r];
        lse[(long)h * S + i0 + r] = mx[r] + logf(l[r]);
    }
}

static size_t attn_forward_ws(int HS) { return (size_t)2 * HS * ATT_B + ATT_B * ATT_B + 2 * ATT_B; }

/* One block holding `per` floats of scratch for each thread; NULL on failure. */
static float *attn_ws_alloc(size_t per) {
    return malloc((size_t)omp_get_max_threads() * per * sizeof(float));
}

/* out (S,NH,HS), lse (NH,S) written from q (S,NH,HS), k, v (S,NKV,HS). */
void cpu_attention_forward(void *out, float *lse, const void *q, const void *k, const void *v,
                           int S, int NH, int NKV, int HS) {
    int nt = (S + ATT_B - 1) / ATT_B;
    size_t per = attn_forward_ws(HS);
    float *ws = attn_ws_alloc(per);
    if (!ws) {
        cpu_fill_nan(out, (size_t)S * NH * HS);
        cpu_fill_nan(lse, (size_t)NH * S);
        return;
    }
    long units = (long)nt * NH;
#pragma omp parallel for schedule(dynamic, 1)
    for (long u = 0; u < units; u++) {
        int qt = nt - 1 - (int)(u / NH), h = (int)(u % NH);  // longest rows first
        attn_forward_unit(out, lse, q, k, v, S, NH, NKV, HS, h, qt,
                          ws + (size_t)omp_get_thread_num() * per);
    }
    free(ws);
}

/* Shapes shared by the backward's helpers. */
typedef struct {
    const float *q, *k, *v, *dout, *lse, *D;  // D (NH,S) = rowsum(dout * out)
    int S, NH, NKV, HS;
    long qs, ks;  // row strides of q/out (NH*HS) and k/v (NKV*HS)
    float scale;
} AttnBwd;

/* For query tile qt of head h against key tile kt (K^T, V^T of that tile in KT, VT):
 * P(ATT_B,ATT_B) = exp(score - lse) and dS(ATT_B,ATT_B) = P (dP - D) * scale, both
 * written for r < nq, j < nk, zero where the causal mask cuts. */
static void attn_tile_grad(const AttnBwd *a, float *P, float *dS, const float *KT,
                           const float *VT, int h, int qt, int kt) {
    int i0 = qt * ATT_B, nq = imin(ATT_B, a->S - i0);
    int j0 = kt * ATT_B, nk = imin(ATT_B, a->S - j0);
    const float *qh = a->q + (long)i0 * a->qs + (long)h * a->HS;
    const float *doh = a->dout + (long)i0 * a->qs + (long)h * a->HS;
    const float *lh = a->lse + (long)h * a->S + i0, *Dh = a->D + (long)h * a->S + i0;
    tile_zero(P, ATT_B, nq, nk);
    tile_zero(dS, ATT_B, nq, nk);
    tile_acc(P, ATT_B, qh, a->qs, 1, KT, ATT_B, nq, a->HS, nk);    // scores q.k
    tile_acc(dS, ATT_B, doh, a->qs, 1, VT, ATT_B, nq, a->HS, nk);  // dP = dout.v
    for (int r = 0; r < nq; r++) {
        int jn = kt < qt ? nk : imin(nk, i0 + r - j0 + 1);
        float *pr = P + r * ATT_B, *dr = dS + r * ATT_B;
        for (int j = 0; j < jn; j++) {
            float p = expf(pr[j] * a->scale - lh[r]);
            pr[j] = p;
            dr[j] = p * (dr[j] - Dh[r]) * a->scale;
        }
        for (int j = jn; j < nk; j++) pr[j] = dr[j] = 0.0f;
    }
}

/* Loads K^T and V^T of key tile kt of kv head g into KT, VT (HS, ATT_B). */
static void attn_load_kv(const AttnBwd *a, float *KT, float *VT, int g, int kt) {
    int j0 = kt * ATT_B, nk = imin(ATT_B, a->S - j0);
    long off = (long)j0 * a->ks + (long)g * a->HS;
    tile_transpose(KT, a->k + off, a->ks, nk, a->HS);
    tile_transpose(VT, a->v + off, a->ks, nk, a->HS);
}

static size_t attn_backward_ws(int HS) { return (size_t)4 * HS * ATT_B + 2 * ATT_B * ATT_B; }

/* Pass 1 unit: dk, dv rows of key tile kt of kv head g, summed over the group's
 * query heads and the query tiles qt >= kt. */
static void attn_backward_kv_unit(const AttnBwd *a, float *dk, float *dv, int g, int kt,
                                  float *ws) {
    int HS = a->HS, nt = (a->S + ATT_B - 1) / ATT_B, G = a->NH / a->NKV;
    int j0 = kt * ATT_B, nk = imin(ATT_B, a->S - j0);
    float *KT = ws, *VT = KT + (size_t)HS * ATT_B;  // (HS, ATT_B) each
    float *P = VT + (size_t)HS * ATT_B;             // (ATT_B, ATT_B)
    float *dS = P + ATT_B * ATT_B;                  // (ATT_B, ATT_B)
    float *dK = dS + ATT_B * ATT_B;                 // (ATT_B, HS)
    float *dV = dK + (size_t)ATT_B * HS;            // (ATT_B, HS)
    attn_load_kv(a, KT, VT, g, kt);
    tile_zero(dK, HS, nk, HS);
    tile_zero(dV, HS, nk, HS);
    for (int h = g * G; h < (g + 1) * G; h++) {
        for (int qt = kt; qt < nt; qt++) {
            int i0 = qt * ATT_B, nq = imin(ATT_B, a->S - i0);
            attn_tile_grad(a, P, dS, KT, VT, h, qt, kt);
            const float *qh = a->q + (long)i0 * a->qs + (long)h * HS;
            const float *doh = a->dout + (long)i0 * a->qs + (long)h * HS;
            tile_acc(dV, HS, P, 1, ATT_B, doh, a->qs, nk, nq, HS);  // dV += P^T dout
            tile_acc(dK, HS, dS, 1, ATT_B, qh, a->qs, nk, nq, HS);  // dK += dS^T q
        }
    }
    long off = (long)j0 * a->ks + (long)g * HS;
    for (int j = 0; j < nk; j++) {
        memcpy(dk + off + j * a->ks, dK + (size_t)j * HS, (size_t)HS * sizeof(float));
        memcpy(dv + off + j * a->ks, dV + (size_t)j * HS, (size_t)HS * sizeof(float));
    }
}

/* Pass 2 unit: dq rows of query tile qt of head h, summed over key tiles kt <= qt. */
static void attn_backward_q_unit(const AttnBwd *a, float *dq, int h, int qt, float *ws) {
    int HS = a->HS, g = h / (a->NH / a->NKV);
    int i0 = qt * ATT_B, nq = imin(ATT_B, a->S - i0);
    float *KT = ws, *VT = KT + (size_t)HS * ATT_B;
    float *P = VT + (size_t)HS * ATT_B, *dS = P + ATT_B * ATT_B;
    float *dQ = dS + ATT_B * ATT_B;  // (ATT_B, HS)
    tile_zero(dQ, HS, nq, HS);
    for (int kt = 0; kt <= qt; kt++) {
        int j0 = kt * ATT_B, nk = imin(ATT_B, a->S - j0);
        attn_load_kv(a, KT, VT, g, kt);
        attn_tile_grad(a, P, dS, KT, VT, h, qt, kt);
        const float *kg = a->k + (long)j0 * a->ks + (long)g * HS;
        tile_acc(dQ, HS, dS, ATT_B, 1, kg, a->ks, nq, nk, HS);  // dQ += dS k
    }
    for (int r = 0; r < nq; r++)
        memcpy(dq + (long)(i0 + r) * a->qs + (long)h * HS, dQ + (size_t)r * HS,
               (size_t)HS * sizeof(float));
}

/* dq (S,NH,HS), dk, dv (S,NKV,HS) written, from dout, out (S,NH,HS), lse (NH,S), q, k, v. */
void cpu_attention_backward(void *dq, void *dk, void *dv, const void *dout, const void *out,
                            const float *lse, const void *q, const void *k, const void *v,
                            int S, int NH, int NKV, int HS) {
    int nt = (S + ATT_B - 1) / ATT_B;
    size_t per = attn_backward_ws(HS);
    float *D = malloc((size_t)NH * S * sizeof(float));  // (NH,S)
    float *ws = attn_ws_alloc(per);
    if (!D || !ws) {
        free(D);
        free(ws);
        cpu_fill_nan(dq, (size_t)S * NH * HS);
        cpu_fill_nan(dk, (size_t)S * NKV * HS);
        cpu_fill_nan(dv, (size_t)S * NKV * HS);
        return;
    }
    AttnBwd a = {q, k, v, dout, lse, D, S, NH, NKV, HS, (long)NH * HS, (long)NKV * HS,
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
#pragma omp parallel for schedule(dynamic, 1)
    for (long u = 0; u < units_kv; u++)  // kt ascending: the longest columns first
        attn_backward_kv_unit(&a, dk, dv, (int)(u % NKV), (int)(u / NKV),
                              ws + (size_t)omp_get_thread_num() * per);
#pragma omp parallel for schedule(dynamic, 1)
    for (long u = 0; u < units_q; u++)  // qt descending: the longest rows first
        attn_backward_q_unit(&a, dq, (int)(u % NH), nt - 1 - (int)(u / NH),
                             ws + (size_t)omp_get_thread_num() * per);
    free(D);
    free(ws);
}
