/* test_cpu_lemo.c: the CPU backend's LeMo token selection (block scores, random scores,
 * top-k block selection).
 *
 * Block scores against a brute force that applies backend.h's definition literally:
 * every head's full (S, S) matrix of q.k in double, relu summed over heads, the causal
 * max over each block pair, the row and column sums; shapes cover one block (S = B),
 * 7 and 33 blocks, several key chunks per query block, NH/NKV of 1, 2 and 4, head sizes
 * 6 to 64, B of 16, 64 and 128, plus inputs built so that the causal cut on the diagonal
 * block decides the max (keys that grow along the block) and so that many pairs are
 * all-negative (relu 0). Then bit-identical results with one thread and with all.
 * Selection against a naive repeated argmax, exactly: ties on purpose, NaN, -0 and +0,
 * infinities, block 0 at the bottom and at the top, every k of a small nb, and nothing
 * written past k*B. Random scores: the shared hash, deterministic, different across
 * seeds, and a selection from them picks every block 1..nb-1 about equally often. */
#include "test_cpu_util.h"

#include <math.h>
#include <omp.h>
#include <string.h>

static const Backend *be;

/* score (nb) in double from q (S,NH,HS), k (S,NKV,HS), straight from the definition. */
static void ref_block_scores(double *score, const float *q, const float *k, int S, int NH, int NKV,
                             int HS, int B) {
    int nb = S / B;
    double *P = tu_dalloc((size_t)S * S), *W = tu_dalloc((size_t)S * S);
    double *A = tu_dalloc((size_t)nb * nb);
    for (int h = 0; h < NH; h++) {
        int g = h / (NH / NKV);
        for (int i = 0; i < S; i++)  // this head's whole matrix, upper triangle included
            for (int j = 0; j < S; j++) {
                double d = 0;
                for (int e = 0; e < HS; e++)
                    d += (double)q[((size_t)i * NH + h) * HS + e] * k[((size_t)j * NKV + g) * HS + e];
                P[(size_t)i * S + j] = d;
            }
        for (size_t e = 0; e < (size_t)S * S; e++) W[e] += P[e] > 0 ? P[e] : 0;
    }
    for (int m = 0; m < nb; m++)
        for (int n = 0; n <= m; n++) {
            double best = -INFINITY;
            for (int i = m * B; i < (m + 1) * B; i++)
                for (int j = n * B; j < (n + 1) * B; j++)
                    if (i >= j && W[(size_t)i * S + j] / NH > best) best = W[(size_t)i * S + j] / NH;
            A[(size_t)m * nb + n] = best;
        }
    for (int n = 0; n < nb; n++) {
        double s = 0;
        for (int m = n; m < nb; m++) s += A[(size_t)m * nb + n];
        for (int m = 0; m < n; m++) s += A[(size_t)n * nb + m];
        score[n] = s;
    }
    free(P), free(W), free(A);
}

/* How a case's inputs are drawn. */
enum { IN_RANDOM, IN_RISING_KEYS, IN_NEGATED };

static void test_block_scores(void) {
    struct { int S, NH, NKV, HS, B, kind; } cs[] = {
        {16, 2, 1, 8, 16, IN_RANDOM},          // one block
        {64, 4, 4, 16, 64, IN_RANDOM},         // one block of 64
        {7 * 16, 4, 2, 8, 16, IN_RANDOM},      // 7 blocks
        {4 * 16, 4, 2, 6, 16, IN_RANDOM},      // the test models' head size
        {33 * 16, 8, 2, 32, 16, IN_RANDOM},    // 33 blocks, three key chunks a row
        {7 * 64, 4, 1, 64, 64, IN_RANDOM},     // NH/NKV = 4, two key chunks a row
        {33 * 64, 2, 2, 24, 64, IN_RANDOM},    // 33 blocks of 64
        {3 * 128, 2, 1, 16, 128, IN_RANDOM},   // B = 128
        {7 * 16, 4, 2, 8, 16, IN_RISING_KEYS}, // the causal cut on the diagonal decides
        {5 * 64, 2, 1, 16, 64, IN_RISING_KEYS},
        {7 * 16, 2, 2, 8, 16, IN_NEGATED},     // q = -k: the diagonal is all relu 0
    };
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        int S = cs[ci].S, NH = cs[ci].NH, NKV = cs[ci].NKV, HS = cs[ci].HS, B = cs[ci].B;
        int nb = S / B;
        size_t nq = (size_t)S * NH * HS, nk = (size_t)S * NKV * HS;
        float *q = tu_alloc(be, nq), *k = tu_alloc(be, nk), *score = tu_alloc(be, nb);
        tu_fill(q, nq, 1.0f), tu_fill(k, nk, 1.0f);
        if (cs[ci].kind == IN_RISING_KEYS) {
            // keys grow along each block and queries lean positive: the largest products of a
            // row sit at the block's last keys, which the diagonal block must not see
            for (int j = 0; j < S; j++)
                for (size_t e = 0; e < (size_t)NKV * HS; e++) {
                    float *x = &k[(size_t)j * NKV * HS + e];
                    *x = (fabsf(*x) + 0.2f) * (1.0f + 4.0f * (float)(j % B) / B);
                }
            for (size_t e = 0; e < nq; e++) q[e] = fabsf(q[e]) + 0.1f;
        } else if (cs[ci].kind == IN_NEGATED) {
            for (int s = 0; s < S; s++)
                for (int h = 0; h < NH; h++)
                    for (int e = 0; e < HS; e++)
                        q[((size_t)s * NH + h) * HS + e] = -k[((size_t)s * NKV + h / (NH / NKV)) * HS + e];
        }
        size_t wsb = be->lemo_scores_ws_bytes(S, B);
        CHECK(wsb >= (size_t)nb * (nb + 1) / 2 * sizeof(float), "ws %zu bytes for nb=%d", wsb, nb);
        void *ws = be->alloc(wsb);
        memset(ws, 0xff, wsb);  // contents on entry must not matter
        for (int i = 0; i < nb; i++) score[i] = NAN;  // written: nothing may stay NaN
        be->lemo_block_scores(score, q, k, S, NH, NKV, HS, B, ws);
        double *want = tu_dalloc(nb);
        ref_block_scores(want, q, k, S, NH, NKV, HS, B);
        char name[96];
        snprintf(name, sizeof name, "block scores S=%d NH=%d NKV=%d HS=%d B=%d kind=%d", S, NH, NKV,
                 HS, B, cs[ci].kind);
        // fp32 dot products of <= 64 terms and fp32 sums over <= 8 heads: ~1e-6 relative
        tu_check_arr(name, score, want, nb, 1e-6, 1e-5);

        // one thread and all threads, twice: bit-identical
        float *again = tu_alloc(be, nb);
        int nt = omp_get_max_threads();
        omp_set_num_threads(1);
        memset(ws, 0xff, wsb);
        be->lemo_block_scores(again, q, k, S, NH, NKV, HS, B, ws);
        omp_set_num_threads(nt);
        CHECK(!memcmp(again, score, (size_t)nb * sizeof(float)), "%s: one thread differs", name);
        be->lemo_block_scores(again, q, k, S, NH, NKV, HS, B, ws);
        CHECK(!memcmp(again, score, (size_t)nb * sizeof(float)), "%s: a second run differs", name);
        be->free(q), be->free(k), be->free(score), be->free(ws), be->free(again);
        free(want);
    }
}

/* a ranks above b: higher score, NaN below everything, equal scores by lower block. */
static int ref_above(const float *s, int a, int b) {
    int na = isnan(s[a]), nbn = isnan(s[b]);
    if (na || nbn) return na == nbn ? a < b : nbn;
    return s[a] > s[b] || (s[a] == s[b] && a < b);
}

/* idx (k*B): block 0, then k-1 times the best block not yet taken; rows ascending. */
static void ref_select(int *idx, const float *s, int nb, int k, int B) {
    unsigned char *keep = calloc(nb, 1);
    keep[0] = 1;
    for (int t = 1; t < k; t++) {
        int best = -1;
        for (int b = 1; b < nb; b++)
            if (!keep[b] && (best < 0 || ref_above(s, b, best))) best = b;
        keep[best] = 1;
    }
    int o = 0;
    for (int b = 0; b < nb; b++)
        if (keep[b])
            for (int j = 0; j < B; j++) idx[o++] = b * B + j;
    free(keep);
}

/* Runs the op and the reference on one score vector; compares every index exactly and
 * checks that nothing past k*B was written. */
static void check_select(const char *what, const float *score, int nb, int k, int B) {
    size_t n = (size_t)k * B, pad = 17;
    int *got = be->alloc((n + pad) * sizeof(int)), *want = malloc(n * sizeof(int));
    for (size_t i = 0; i < n + pad; i++) got[i] = -7;
    size_t wsb = be->lemo_select_ws_bytes(nb);
    void *ws = be->alloc(wsb ? wsb : 1);
    float *sc = tu_alloc(be, nb);
    memcpy(sc, score, (size_t)nb * sizeof(float));
    be->lemo_select_blocks(got, sc, nb, k, B, ws);
    ref_select(want, score, nb, k, B);
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i] && !bad++) first = i;
    int tail = 1;
    for (size_t i = n; i < n + pad; i++) tail &= got[i] == -7;
    CHECK(bad == 0, "%s (nb=%d k=%d B=%d): %zu of %zu rows differ, first [%zu]: got %d want %d", what,
          nb, k, B, bad, n, first, got[first], want[first]);
    CHECK(tail, "%s (nb=%d k=%d B=%d): wrote past k*B", what, nb, k, B);
    CHECK(!memcmp(sc, score, (size_t)nb * sizeof(float)), "%s: score changed", what);
    be->free(got), be->free(ws), be->free(sc);
    free(want);
}

static void test_select(void) {
    // nb = 1: the sink alone
    float one = NAN;
    check_select("one block", &one, 1, 1, 5);

    // every k of 7 blocks, block 0 lowest, ties among the rest (blocks 2, 4, 5 equal)
    float s7[7] = {-5.0f, 1.0f, 3.0f, 0.5f, 3.0f, 3.0f, 2.0f};
    for (int k = 1; k <= 7; k++) check_select("7 blocks with ties", s7, 7, k, 16);
    // block 0 on top: it counts as one of the k, not as an extra
    s7[0] = 100.0f;
    for (int k = 1; k <= 7; k++) check_select("7 blocks, sink on top", s7, 7, k, 3);

    // 33 blocks: four levels only (many ties), NaN, -0 and +0, both infinities
    float s33[33];
    for (int b = 0; b < 33; b++) s33[b] = 0.5f * (float)((b * 7) % 4);
    s33[3] = NAN, s33[9] = NAN, s33[0] = NAN;
    s33[5] = -0.0f, s33[6] = 0.0f, s33[7] = -0.0f;
    s33[11] = INFINITY, s33[12] = -INFINITY, s33[30] = INFINITY;
    int ks[] = {1, 2, 3, 5, 9, 17, 28, 29, 30, 31, 32, 33};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        check_select("33 blocks, ties/NaN/zeros/inf", s33, 33, ks[i], 1);
        check_select("33 blocks, ties/NaN/zeros/inf", s33, 33, ks[i], 64);
    }
    // all equal: the lowest blocks win
    float flat[20];
    for (int b = 0; b < 20; b++) flat[b] = 0.25f;
    check_select("20 equal blocks", flat, 20, 6, 4);
    for (int b = 0; b < 20; b++) flat[b] = NAN;
    check_select("20 NaN blocks", flat, 20, 6, 4);

    // larger random vectors, a few repeated values among them
    for (int r = 0; r < 4; r++) {
        int nb = 100 + 400 * r;
        float *s = malloc((size_t)nb * sizeof(float));
        for (int b = 0; b < nb; b++) s[b] = tu_rand();
        for (int b = 0; b < nb; b += 9) s[b] = s[nb / 2];
        for (int b = 5; b < nb; b += 37) s[b] = NAN;
        check_select("random scores", s, nb, 1 + nb * 2 / 5, 64);
        check_select("random scores", s, nb, nb, 2);
        free(s);
    }
}

static void test_random(void) {
    int nb = 1000;
    float *a = tu_alloc(be, nb), *b = tu_alloc(be, nb);
    be->lemo_random_scores(a, nb, 42);
    be->lemo_random_scores(b, nb, 42);
    CHECK(!memcmp(a, b, (size_t)nb * sizeof(float)), "random scores differ for one seed");
    int ok = 1, range = 1;
    for (int n = 0; n < nb; n++) {
        ok &= a[n] == lemo_random_score(42, (uint64_t)n);
        range &= a[n] >= 0.0f && a[n] < 1.0f;
    }
    CHECK(ok, "random scores are not lemo_random_score(seed, n)");
    CHECK(range, "random scores outside [0, 1)");
    be->lemo_random_scores(b, nb, 43);
    int same = 0;
    for (int n = 0; n < nb; n++) same += a[n] == b[n];
    CHECK(same <= 5, "seeds 42 and 43 agree on %d of %d blocks", same, nb);

    // uniform choice: over N seeds each block 1..nb-1 is taken with probability
    // (k-1)/(nb-1); 20000 draws put one standard deviation near 1.4% of the mean, so a
    // 10% band fails only on a real bias
    int nbs = 20, k = 5, N = 20000, B = 1;
    long count[20] = {0};
    float *s = tu_alloc(be, nbs);
    int *idx = be->alloc((size_t)k * B * sizeof(int));
    size_t wsb = be->lemo_select_ws_bytes(nbs);
    void *ws = be->alloc(wsb ? wsb : 1);
    for (int seed = 0; seed < N; seed++) {
        be->lemo_random_scores(s, nbs, (uint64_t)seed);
        be->lemo_select_blocks(idx, s, nbs, k, B, ws);
        for (int i = 0; i < k; i++) count[idx[i]]++;
    }
    double expect = (double)N * (k - 1) / (nbs - 1);
    CHECK(count[0] == N, "block 0 taken %ld of %d times", count[0], N);
    for (int bk = 1; bk < nbs; bk++)
        CHECK(fabs(count[bk] - expect) <= 0.1 * expect, "block %d taken %ld times, expected about %.0f", bk,
              count[bk], expect);
    be->free(a), be->free(b), be->free(s), be->free(idx), be->free(ws);
}

int main(void) {
    be = backend_cpu();
    test_block_scores();
    test_select();
    test_random();
    return check_done("test_cpu_lemo");
}
