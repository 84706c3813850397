/* test_cpu_attention.c: the CPU backend's tiled causal GQA attention.
 *
 * Oracle chain: a naive O(S^2) double-precision attention (forward and backward)
 * is itself checked by finite differences in double; the tiled fp32 forward and
 * backward are checked against it on every element, and the fp32 backward is also
 * checked by finite differences of the fp32 forward. Shapes cover S below, equal
 * to and not a multiple of the 64-row tile, NH != NKV (GQA and MQA), HS 64 and
 * small HS. Finally two runs, and runs with 1 and with all threads, must give
 * bit-identical outputs. */
#include "test_cpu_util.h"

#include <math.h>
#include <omp.h>
#include <string.h>

/* out (S,NH,HS), lse (NH,S) from q (S,NH,HS), k, v (S,NKV,HS), all double. */
static void ref_forward(double *out, double *lse, const double *q, const double *k,
                        const double *v, int S, int NH, int NKV, int HS) {
    double scale = 1.0 / sqrt((double)HS), *p = tu_dalloc(S);
    for (int h = 0; h < NH; h++) {
        int g = h / (NH / NKV);
        for (int i = 0; i < S; i++) {
            const double *qi = q + ((size_t)i * NH + h) * HS;
            double m = -INFINITY, sum = 0;
            for (int j = 0; j <= i; j++) {
                const double *kj = k + ((size_t)j * NKV + g) * HS;
                double s = 0;
                for (int d = 0; d < HS; d++) s += qi[d] * kj[d];
                p[j] = s * scale;
                if (p[j] > m) m = p[j];
            }
            for (int j = 0; j <= i; j++) sum += (p[j] = exp(p[j] - m));
            double *o = out + ((size_t)i * NH + h) * HS;
            for (int d = 0; d < HS; d++) o[d] = 0;
            for (int j = 0; j <= i; j++) {
                const double *vj = v + ((size_t)j * NKV + g) * HS;
                for (int d = 0; d < HS; d++) o[d] += p[j] / sum * vj[d];
            }
            lse[(size_t)h * S + i] = m + log(sum);
        }
    }
    free(p);
}

/* dq, dk, dv (zeroed first) of L = sum(out * dout), straight from the definition. */
static void ref_backward(double *dq, double *dk, double *dv, const double *dout, const double *q,
                         const double *k, const double *v, int S, int NH, int NKV, int HS) {
    double scale = 1.0 / sqrt((double)HS), *p = tu_dalloc(S), *dp = tu_dalloc(S);
    memset(dq, 0, sizeof(double) * S * NH * HS);
    memset(dk, 0, sizeof(double) * S * NKV * HS);
    memset(dv, 0, sizeof(double) * S * NKV * HS);
    for (int h = 0; h < NH; h++) {
        int g = h / (NH / NKV);
        for (int i = 0; i < S; i++) {
            const double *qi = q + ((size_t)i * NH + h) * HS;
            const double *gi = dout + ((size_t)i * NH + h) * HS;
            double m = -INFINITY, sum = 0, D = 0;
            for (int j = 0; j <= i; j++) {
                const double *kj = k + ((size_t)j * NKV + g) * HS;
                const double *vj = v + ((size_t)j * NKV + g) * HS;
                double s = 0, t = 0;
                for (int d = 0; d < HS; d++) s += qi[d] * kj[d], t += gi[d] * vj[d];
                p[j] = s * scale;
                dp[j] = t;
                if (p[j] > m) m = p[j];
            }
            for (int j = 0; j <= i; j++) sum += (p[j] = exp(p[j] - m));
            for (int j = 0; j <= i; j++) D += (p[j] /= sum) * dp[j];
            for (int j = 0; j <= i; j++) {
                double ds = p[j] * (dp[j] - D) * scale;
                const double *kj = k + ((size_t)j * NKV + g) * HS;
                double *dkj = dk + ((size_t)j * NKV + g) * HS;
                double *dvj = dv + ((size_t)j * NKV + g) * HS;
                double *dqi = dq + ((size_t)i * NH + h) * HS;
                for (int d = 0; d < HS; d++) {
                    dqi[d] += ds * kj[d];
                    dkj[d] += ds * qi[d];
                    dvj[d] += p[j] * gi[d];
                }
            }
        }
    }
    free(p);
    free(dp);
}

static void to_double(double *d, const float *f, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = f[i];
}

/* Central differences in double of the reference forward against its backward:
 * validates the oracle itself. */
static void check_ref_fd(const char *what, double *x, const double *grad, size_t n,
                         const double *q, const double *k, const double *v, const double *R,
                         int S, int NH, int NKV, int HS) {
    double *out = tu_dalloc((size_t)S * NH * HS), *lse = tu_dalloc((size_t)NH * S);
    size_t nq = (size_t)S * NH * HS, bad = 0;
    for (int s = 0; s < 25; s++) {
        size_t i = (size_t)((tu_rand() * 0.5f + 0.5f) * (float)n) % n;
        double x0 = x[i], h = 1e-5, lp = 0, lm = 0;
        x[i] = x0 + h;
        ref_forward(out, lse, q, k, v, S, NH, NKV, HS);
        for (size_t e = 0; e < nq; e++) lp += out[e] * R[e];
        x[i] = x0 - h;
        ref_forward(out, lse, q, k, v, S, NH, NKV, HS);
        for (size_t e = 0; e < nq; e++) lm += out[e] * R[e];
        x[i] = x0;
        double fd = (lp - lm) / (2 * h);
        // tolerance: O(h^2) = 1e-10 curvature plus double rounding / h
        if (!(fabs(fd - grad[i]) <= 1e-7 + 1e-6 * fabs(fd)) && ++bad <= 5)
            fprintf(stderr, "  ref %s[%zu]: backward %.12g fd %.12g\n", what, i, grad[i], fd);
    }
    CHECK(bad == 0, "reference attention backward %s disagrees with finite differences", what);
    free(out);
    free(lse);
}

typedef struct {
    const Backend *be;
    float *q, *k, *v, *out, *lse, *R;
    int S, NH, NKV, HS;
} FdCtx;

static double attn_loss(void *c) {
    FdCtx *x = c;
    x->be->attention_forward(x->out, x->lse, x->q, x->k, x->v, x->S, x->NH, x->NKV, x->HS);
    return tu_dot(x->out, x->R, (size_t)x->S * x->NH * x->HS);
}

/* One shape: forward and backward against the double reference, the reference
 * against finite differences, and (fd != 0) the fp32 backward against finite
 * differences of the fp32 forward. */
static void test_shape(const Backend *be, int S, int NH, int NKV, int HS, int fd) {
    char tag[96];
    snprintf(tag, sizeof tag, "S=%d NH=%d NKV=%d HS=%d", S, NH, NKV, HS);
    size_t nq = (size_t)S * NH * HS, nk = (size_t)S * NKV * HS;
    float *q = tu_alloc(be, nq), *k = tu_alloc(be, nk), *v = tu_alloc(be, nk);
    float *out = tu_alloc(be, nq), *lse = tu_alloc(be, (size_t)NH * S), *dout = tu_alloc(be, nq);
    float *dq = tu_alloc(be, nq), *dk = tu_alloc(be, nk), *dv = tu_alloc(be, nk);
    tu_fill(q, nq, 1.5f);
    tu_fill(k, nk, 1.5f);
    tu_fill(v, nk, 1.0f);
    tu_fill(dout, nq, 1.0f);
    // the written outputs must not depend on what was there before
    for (size_t i = 0; i < nq; i++) out[i] = dq[i] = 1e30f;
    for (size_t i = 0; i < nk; i++) dk[i] = dv[i] = -7.0f;

    double *qd = tu_dalloc(nq), *kd = tu_dalloc(nk), *vd = tu_dalloc(nk), *gd = tu_dalloc(nq);
    double *ro = tu_dalloc(nq), *rl = tu_dalloc((size_t)NH * S);
    double *rdq = tu_dalloc(nq), *rdk = tu_dalloc(nk), *rdv = tu_dalloc(nk);
    to_double(qd, q, nq), to_double(kd, k, nk), to_double(vd, v, nk), to_double(gd, dout, nq);
    ref_forward(ro, rl, qd, kd, vd, S, NH, NKV, HS);
    ref_backward(rdq, rdk, rdv, gd, qd, kd, vd, S, NH, NKV, HS);

    be->attention_forward(out, lse, q, k, v, S, NH, NKV, HS);
    // the caller's workspace: its contents on entry must not matter either
    size_t wsb = be->attention_bwd_ws_bytes(S, NH, NKV, HS);
    float *ws = be->alloc(wsb);
    for (size_t i = 0; i < wsb / 4; i++) ws[i] = NAN;
    be->attention_backward(dq, dk, dv, dout, out, lse, q, k, v, S, NH, NKV, HS, ws);
    be->free(ws);
    char name[160];
    // fp32 tiles vs double: a few fp32 roundings (6e-8 relative) per sum of <= S terms
    snprintf(name, sizeof name, "out %s", tag);
    tu_check_arr(name, out, ro, nq, 5e-7, 2e-6);
    snprintf(name, sizeof name, "lse %s", tag);
    tu_check_arr(name, lse, rl, (size_t)NH * S, 5e-7, 5e-7);
    snprintf(name, sizeof name, "dq %s", tag);
    tu_check_arr(name, dq, rdq, nq, 2e-6, 2e-5);
    snprintf(name, sizeof name, "dk %s", tag);
    tu_check_arr(name, dk, rdk, nk, 2e-6, 2e-5);
    snprintf(name, sizeof name, "dv %s", tag);
    tu_check_arr(name, dv, rdv, nk, 2e-6, 2e-5);

    if (fd) {
        check_ref_fd("dq", qd, rdq, nq, qd, kd, vd, gd, S, NH, NKV, HS);
        check_ref_fd("dk", kd, rdk, nk, qd, kd, vd, gd, S, NH, NKV, HS);
        check_ref_fd("dv", vd, rdv, nk, qd, kd, vd, gd, S, NH, NKV, HS);
        float *o2 = tu_alloc(be, nq), *l2 = tu_alloc(be, (size_t)NH * S);
        FdCtx c = {be, q, k, v, o2, l2, dout, S, NH, NKV, HS};
        // fp32 forward, step 1e-2 on O(1) inputs: rounding ~1e-6/1e-2 plus O(h^2) curvature
        snprintf(name, sizeof name, "fd dq %s", tag);
        tu_check_fd(name, attn_loss, &c, q, dq, nq, 40, 1e-2f, 2e-4, 2e-3);
        snprintf(name, sizeof name, "fd dk %s", tag);
        tu_check_fd(name, attn_loss, &c, k, dk, nk, 40, 1e-2f, 2e-4, 2e-3);
        snprintf(name, sizeof name, "fd dv %s", tag);
        tu_check_fd(name, attn_loss, &c, v, dv, nk, 40, 1e-2f, 2e-4, 2e-3);
        be->free(o2);
        be->free(l2);
    }
    be->free(q), be->free(k), be->free(v), be->free(out), be->free(lse), be->free(dout);
    be->free(dq), be->free(dk), be->free(dv);
    free(qd), free(kd), free(vd), free(gd), free(ro), free(rl), free(rdq), free(rdk), free(rdv);
}

/* Two runs, and a run on one thread, give the same bits. */
static void test_determinism(const Backend *be) {
    int S = 333, NH = 6, NKV = 2, HS = 32;
    size_t nq = (size_t)S * NH * HS, nk = (size_t)S * NKV * HS, nl = (size_t)NH * S;
    float *q = tu_alloc(be, nq), *k = tu_alloc(be, nk), *v = tu_alloc(be, nk);
    float *g = tu_alloc(be, nq);
    float *o[3], *l[3], *dq[3], *dk[3], *dv[3];
    tu_fill(q, nq, 1.5f), tu_fill(k, nk, 1.5f), tu_fill(v, nk, 1.0f), tu_fill(g, nq, 1.0f);
    int nthreads = omp_get_max_threads();
    for (int r = 0; r < 3; r++) {
        o[r] = tu_alloc(be, nq), l[r] = tu_alloc(be, nl), dq[r] = tu_alloc(be, nq);
        dk[r] = tu_alloc(be, nk), dv[r] = tu_alloc(be, nk);
        if (r == 2) omp_set_num_threads(1);
        be->attention_forward(o[r], l[r], q, k, v, S, NH, NKV, HS);
        void *ws = be->alloc(be->attention_bwd_ws_bytes(S, NH, NKV, HS));
        be->attention_backward(dq[r], dk[r], dv[r], g, o[r], l[r], q, k, v, S, NH, NKV, HS, ws);
        be->free(ws);
        if (r == 2) omp_set_num_threads(nthreads);
    }
    for (int r = 1; r < 3; r++) {
        const char *how = r == 1 ? "second run" : "one thread";
        CHECK(!memcmp(o[0], o[r], nq * 4), "attention out differs on the %s", how);
        CHECK(!memcmp(l[0], l[r], nl * 4), "attention lse differs on the %s", how);
        CHECK(!memcmp(dq[0], dq[r], nq * 4), "attention dq differs on the %s", how);
        CHECK(!memcmp(dk[0], dk[r], nk * 4), "attention dk differs on the %s", how);
        CHECK(!memcmp(dv[0], dv[r], nk * 4), "attention dv differs on the %s", how);
    }
    for (int r = 0; r < 3; r++) {
        be->free(o[r]), be->free(l[r]);
        be->free(dq[r]), be->free(dk[r]), be->free(dv[r]);
    }
    be->free(q), be->free(k), be->free(v), be->free(g);
}

int main(void) {
    const Backend *be = backend_cpu();
    size_t used0 = be->mem_used();
    test_shape(be, 130, 4, 2, 8, 1);    // 3 tiles, last partial; GQA; small HS
    test_shape(be, 200, 2, 1, 64, 1);   // HS 64, MQA, partial tile
    test_shape(be, 64, 2, 2, 16, 0);    // exactly one tile
    test_shape(be, 128, 3, 3, 4, 0);    // exactly two tiles, no grouping
    test_shape(be, 37, 8, 4, 8, 1);     // below one tile, the stories260K head shape
    test_shape(be, 1, 2, 1, 8, 0);      // one row: out = v, lse = score
    test_determinism(be);
    CHECK(be->mem_used() == used0, "mem_used %zu after freeing everything, was %zu",
          be->mem_used(), used0);
    return check_done("test_cpu_attention");
}
