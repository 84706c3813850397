/* test_cpu_lemo_predictor.c: the CPU backend's LeMo predictor ops (backend.h, "LeMo pattern
 * predictors").
 *
 * Forward against a double reference written from the definition (each block's chunk vectors
 * concatenated, both three-layer networks, the sum over chunks of q^ . k^ for m >= n) on shapes
 * with one and several chunks, one block and many, B of 4 to 64. Backward against central
 * finite differences of L = sum(A^ * G) over every weight of a small predictor, and against the
 * forward's own accumulation contract (a second call adds the same again). The exact block
 * matrix reduced by lemo_matrix_scores gives lemo_block_scores bit for bit, and
 * lemo_matrix_scores matches the row-and-column sum in double. SmoothL1: values on both sides
 * of beta, its derivative by finite differences. */
#include "test_cpu_util.h"

#include <math.h>
#include <string.h>

static const Backend *be;

/* A (nb*(nb+1)/2) in double, straight from the definition. */
static void ref_predict(double *A, const float *h, const float *w, int S, int C, int HS, int B, int H1, int H2) {
    int nb = S / B, NC = C / HS, D = B * HS;
    double *out[2];
    for (int p = 0; p < 2; p++) {
        const float *W1 = w + (size_t)p * ((size_t)H1 * D + (size_t)H2 * H1 + (size_t)HS * H2);
        const float *W2 = W1 + (size_t)H1 * D, *W3 = W2 + (size_t)H2 * H1;
        out[p] = tu_dalloc((size_t)nb * NC * HS);
        double *x = tu_dalloc(D), *z1 = tu_dalloc(H1), *z2 = tu_dalloc(H2);
        for (int m = 0; m < nb; m++)
            for (int c = 0; c < NC; c++) {
                for (int i = 0; i < B; i++)
                    for (int e = 0; e < HS; e++) x[i * HS + e] = h[((size_t)m * B + i) * C + c * HS + e];
                for (int j = 0; j < H1; j++) {
                    double s = 0;
                    for (int d = 0; d < D; d++) s += W1[(size_t)j * D + d] * x[d];
                    z1[j] = s > 0 ? s : 0;
                }
                for (int j = 0; j < H2; j++) {
                    double s = 0;
                    for (int d = 0; d < H1; d++) s += W2[(size_t)j * H1 + d] * z1[d];
                    z2[j] = s > 0 ? s : 0;
                }
                for (int j = 0; j < HS; j++) {
                    double s = 0;
                    for (int d = 0; d < H2; d++) s += W3[(size_t)j * H2 + d] * z2[d];
                    out[p][((size_t)m * NC + c) * HS + j] = s;
                }
            }
        free(x), free(z1), free(z2);
    }
    for (int m = 0; m < nb; m++)
        for (int n = 0; n <= m; n++) {
            double s = 0;
            for (int e = 0; e < NC * HS; e++) s += out[0][(size_t)m * NC * HS + e] * out[1][(size_t)n * NC * HS + e];
            A[(size_t)m * (m + 1) / 2 + n] = s;
        }
    free(out[0]), free(out[1]);
}

static void test_forward(void) {
    static const struct { int S, C, HS, B, H1, H2; } cs[] = {
        {4, 4, 4, 4, 3, 5}, {32, 12, 4, 4, 5, 6}, {128, 64, 8, 64, 16, 24}, {96, 24, 6, 32, 7, 9}, {256, 48, 16, 16, 8, 32}};
    for (size_t t = 0; t < sizeof cs / sizeof cs[0]; t++) {
        int S = cs[t].S, C = cs[t].C, HS = cs[t].HS, B = cs[t].B, H1 = cs[t].H1, H2 = cs[t].H2, nb = S / B;
        size_t nw = lemo_predictor_weights(B, HS, H1, H2), na = lemo_predictor_acts(S, C, HS, B, H1, H2);
        float *h = tu_alloc(be, (size_t)S * C), *w = tu_alloc(be, nw), *acts = tu_alloc(be, na);
        float *A = tu_alloc(be, lemo_tri_size(nb));
        tu_fill(h, (size_t)S * C, 1.0f);
        // scaled so every layer's pre-activations stay of order one, both signs
        size_t half = nw / 2, w1 = (size_t)H1 * B * HS, w2 = (size_t)H2 * H1;
        for (int p = 0; p < 2; p++) {
            tu_fill(w + p * half, w1, 1.0f / sqrtf((float)B * HS));
            tu_fill(w + p * half + w1, w2, 1.0f / sqrtf((float)H1));
            tu_fill(w + p * half + w1 + w2, (size_t)HS * H2, 1.0f / sqrtf((float)H2));
        }
        be->lemo_predictor_forward(A, acts, h, w, S, C, HS, B, H1, H2);
        double *ref = tu_dalloc(lemo_tri_size(nb));
        ref_predict(ref, h, w, S, C, HS, B, H1, H2);
        char name[96];
        snprintf(name, sizeof name, "forward S=%d C=%d HS=%d B=%d H1=%d H2=%d", S, C, HS, B, H1, H2);
        tu_check_arr(name, A, ref, lemo_tri_size(nb), 1e-5, 1e-4);
        be->free(h), be->free(w), be->free(acts), be->free(A);
        free(ref);
    }
}

typedef struct {
    int S, C, HS, B, H1, H2;
    float *h, *w, *acts, *A, *G;
} FdCtx;

/* L = sum(A^ * G) from the op's own forward. */
static double fd_loss(void *p) {
    FdCtx *x = p;
    be->lemo_predictor_forward(x->A, x->acts, x->h, x->w, x->S, x->C, x->HS, x->B, x->H1, x->H2);
    return tu_dot(x->A, x->G, lemo_tri_size(x->S / x->B));
}

static void test_backward(void) {
    static const struct { int S, C, HS, B, H1, H2; } cs[] = {{16, 12, 4, 4, 5, 6}, {24, 8, 8, 2, 4, 3}};
    for (size_t t = 0; t < sizeof cs / sizeof cs[0]; t++) {
        FdCtx x = {.S = cs[t].S, .C = cs[t].C, .HS = cs[t].HS, .B = cs[t].B, .H1 = cs[t].H1, .H2 = cs[t].H2};
        int nb = x.S / x.B;
        size_t nw = lemo_predictor_weights(x.B, x.HS, x.H1, x.H2);
        x.h = tu_alloc(be, (size_t)x.S * x.C), x.w = tu_alloc(be, nw);
        x.acts = tu_alloc(be, lemo_predictor_acts(x.S, x.C, x.HS, x.B, x.H1, x.H2));
        x.A = tu_alloc(be, lemo_tri_size(nb)), x.G = tu_alloc(be, lemo_tri_size(nb));
        float *dw = tu_alloc(be, nw), *dw2 = tu_alloc(be, nw);
        float *ws = tu_alloc(be, lemo_predictor_bwd_ws(x.S, x.C, x.HS, x.B, x.H1, x.H2));
        tu_fill(x.h, (size_t)x.S * x.C, 1.0f);
        tu_fill(x.w, nw, 0.6f);
        tu_fill(x.G, lemo_tri_size(nb), 1.0f);
        fd_loss(&x);
        be->lemo_predictor_backward(dw, x.G, x.acts, x.w, x.S, x.C, x.HS, x.B, x.H1, x.H2, ws);
        char name[64];
        snprintf(name, sizeof name, "backward S=%d C=%d HS=%d B=%d", x.S, x.C, x.HS, x.B);
        tu_check_fd(name, fd_loss, &x, x.w, dw, nw, nw, 1e-3f, 2e-3, 2e-2);
        // accumulates: a second call on the same forward doubles dw
        fd_loss(&x);
        memcpy(dw2, dw, nw * sizeof(float));
        be->lemo_predictor_backward(dw2, x.G, x.acts, x.w, x.S, x.C, x.HS, x.B, x.H1, x.H2, ws);
        double *want = tu_dalloc(nw);
        for (size_t i = 0; i < nw; i++) want[i] = 2.0 * dw[i];
        tu_check_arr("backward accumulates", dw2, want, nw, 1e-6, 1e-5);
        free(want);
        be->free(x.h), be->free(x.w), be->free(x.acts), be->free(x.A), be->free(x.G);
        be->free(dw), be->free(dw2), be->free(ws);
    }
}

static void test_matrix(void) {
    int S = 7 * 16, NH = 4, NKV = 2, HS = 8, B = 16, nb = S / B;
    float *q = tu_alloc(be, (size_t)S * NH * HS), *k = tu_alloc(be, (size_t)S * NKV * HS);
    tu_fill(q, (size_t)S * NH * HS, 1.0f);
    tu_fill(k, (size_t)S * NKV * HS, 1.0f);
    float *A = tu_alloc(be, lemo_tri_size(nb)), *s1 = tu_alloc(be, nb), *s2 = tu_alloc(be, nb);
    void *ws = be->alloc(be->lemo_scores_ws_bytes(S, B));
    be->lemo_block_matrix(A, q, k, S, NH, NKV, HS, B);
    be->lemo_matrix_scores(s1, A, nb);
    be->lemo_block_scores(s2, q, k, S, NH, NKV, HS, B, ws);
    CHECK(!memcmp(s1, s2, nb * sizeof(float)), "block matrix reduced differs from lemo_block_scores");
    double *ref = tu_dalloc(nb);
    for (int n = 0; n < nb; n++) {
        for (int m = n; m < nb; m++) ref[n] += A[(size_t)m * (m + 1) / 2 + n];
        for (int m = 0; m < n; m++) ref[n] += A[(size_t)n * (n + 1) / 2 + m];
    }
    tu_check_arr("matrix scores", s1, ref, nb, 1e-6, 1e-6);
    int nonneg = 1;
    for (size_t i = 0; i < lemo_tri_size(nb); i++) nonneg &= A[i] >= 0;
    CHECK(nonneg, "exact block matrix has a negative entry");
    free(ref);
    be->free(q), be->free(k), be->free(A), be->free(s1), be->free(s2), be->free(ws);
}

typedef struct {
    float *p, *t, *d;
    size_t n;
} SlCtx;
static double sl_loss(void *c) {
    SlCtx *x = c;
    return be->lemo_smooth_l1(x->d, x->p, x->t, x->n, 0.5f, 1.0f);
}

static void test_smooth_l1(void) {
    float p[4] = {0.0f, 0.2f, 2.0f, -3.0f}, t[4] = {0.0f, 0.0f, 0.5f, 0.0f}, d[4];
    double L = be->lemo_smooth_l1(d, p, t, 4, 0.5f, 2.0f);
    // 0; 0.5*0.04/0.5 = 0.04; 1.5 - 0.25 = 1.25; 3 - 0.25 = 2.75
    CHECK_CLOSE(L, 0.04 + 1.25 + 2.75, 1e-6, 1e-6, "smooth_l1 sum %.9g", L);
    CHECK_CLOSE(d[1], 2.0 * 0.2 / 0.5, 1e-6, 1e-6, "d[1] %g", d[1]);
    CHECK(d[2] == 2.0f && d[3] == -2.0f && d[0] == 0.0f, "d past beta: %g %g %g", d[0], d[2], d[3]);
    size_t n = 64;
    SlCtx x = {malloc(n * 4), malloc(n * 4), malloc(n * 4), n};
    float *g = malloc(n * 4);
    tu_fill(x.p, n, 2.0f);
    tu_fill(x.t, n, 2.0f);
    be->lemo_smooth_l1(g, x.p, x.t, n, 0.5f, 1.0f);
    tu_check_fd("smooth_l1", sl_loss, &x, x.p, g, n, n, 1e-3f, 2e-3, 1e-2);
    free(x.p), free(x.t), free(x.d), free(g);
}

int main(void) {
    be = backend_cpu();
    test_forward();
    test_backward();
    test_matrix();
    test_smooth_l1();
    return check_done("test_cpu_lemo_predictor");
}
