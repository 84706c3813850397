/* test_cpu_ops.c: the CPU backend's ops other than attention and the LM head loss
 * (those have test_cpu_attention.c and test_cpu_loss.c).
 *
 * Memory and dtype conversion exactly; row ops exactly; every forward against a
 * double-precision reference; every backward by central finite differences of
 * L = sum(out * R) (fp32 forward, loss summed in double) and, for the ops that
 * accumulate, by checking that a second call adds onto what is there. RoPE's
 * backward is checked as the exact transpose of its forward (<Rx,y> = <x,R^T y>),
 * LoRA dropout for forward/backward mask agreement, AdamW against a scalar
 * double formula over three steps. Tolerances sit next to each check. */
#include "test_cpu_util.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static const Backend *be;

/* ---- memory and conversion ---- */

static void test_memory(void) {
    size_t used0 = be->mem_used();
    unsigned char *p = be->alloc(1000);
    CHECK(p != NULL, "alloc(1000) failed");
    CHECK(((uintptr_t)p & 63) == 0, "alloc not 64-byte aligned: %p", (void *)p);
    int zeroed = 1;
    for (int i = 0; i < 1000; i++) zeroed &= p[i] == 0;
    CHECK(zeroed, "alloc did not zero the block");
    CHECK(be->mem_used() == used0 + 1000, "mem_used %zu, want %zu", be->mem_used(), used0 + 1000);
    float *q = be->alloc(64 * sizeof(float));
    CHECK(be->mem_used() == used0 + 1256, "mem_used %zu after a second block", be->mem_used());
    float host[64], back[64];
    for (int i = 0; i < 64; i++) host[i] = (float)i * 0.5f - 3.0f;
    be->copy_to_device(q, host, sizeof host);
    be->copy_device(p, q, sizeof host);
    be->copy_to_host(back, p, sizeof host);
    be->sync();
    CHECK(!memcmp(host, back, sizeof host), "copy round trip changed the data");
    be->download_act(back, q, 64);
    CHECK(!memcmp(host, back, sizeof host), "download_act changed fp32 data");
    be->zero(q, 16 * sizeof(float));
    CHECK(q[0] == 0 && q[15] == 0 && q[16] == host[16], "zero cleared the wrong range");
    be->free(p);
    be->free(q);
    be->free(NULL);
    CHECK(be->mem_used() == used0, "mem_used %zu after free, want %zu", be->mem_used(), used0);

    // bf16 is the high half of fp32; f16 covers normal, subnormal, max, inf and NaN
    const uint16_t bf[5] = {0x3F80, 0xC040, 0x0000, 0x8000, 0x7F80};
    const float bfw[5] = {1.0f, -3.0f, 0.0f, -0.0f, INFINITY};
    const uint16_t hf[8] = {0x3C00, 0xC000, 0x3555, 0x0001, 0x03FF, 0x7BFF, 0xFC00, 0x8400};
    const float hfw[8] = {1.0f, -2.0f, 0.333251953125f, 5.9604644775390625e-8f,
                          6.0975551605224609375e-5f, 65504.0f, -INFINITY, -6.103515625e-5f};
    float *d = tu_alloc(be, 8);
    be->upload_act(d, bf, DT_BF16, 5);
    for (int i = 0; i < 5; i++)
        CHECK(memcmp(&d[i], &bfw[i], 4) == 0, "bf16 %#06x -> %g, want %g", bf[i], d[i], bfw[i]);
    be->upload_act(d, hf, DT_F16, 8);
    for (int i = 0; i < 8; i++)
        CHECK(d[i] == hfw[i], "f16 %#06x -> %.10g, want %.10g", hf[i], d[i], hfw[i]);
    uint16_t nan16 = 0x7E00;
    be->upload_act(d, &nan16, DT_F16, 1);
    CHECK(isnan(d[0]), "f16 NaN -> %g", d[0]);
    be->upload_act(d, host, DT_F32, 8);
    CHECK(!memcmp(d, host, 32), "fp32 upload changed the data");
    be->free(d);
}

/* ---- embedding, residual add, gather / scatter-add ---- */

static void test_rows(void) {
    int S = 9, C = 13, V = 11, n = 5;
    float *wte = tu_alloc(be, (size_t)V * C), *out = tu_alloc(be, (size_t)S * C);
    int tok[9] = {3, 0, 10, 3, 7, 1, 2, 10, 5};
    tu_fill(wte, (size_t)V * C, 1.0f);
    be->embedding_forward(out, tok, wte, S, C);
    CHECK(!memcmp(out + 4 * C, wte + 7 * C, C * 4) && !memcmp(out + 7 * C, wte + 10 * C, C * 4),
          "embedding rows are not the token rows");
    int ok = 1;
    for (int s = 0; s < S; s++) ok &= !memcmp(out + s * C, wte + tok[s] * C, C * 4);
    CHECK(ok, "embedding_forward differs from wte[tok]");

    float *a = tu_alloc(be, 1001), *b = tu_alloc(be, 1001), *a0 = tu_alloc(be, 1001);
    tu_fill(a, 1001, 1.0f), tu_fill(b, 1001, 1.0f);
    memcpy(a0, a, 1001 * 4);
    be->add_inplace(a, b, 1001);
    ok = 1;
    for (int i = 0; i < 1001; i++) ok &= a[i] == a0[i] + b[i];
    CHECK(ok, "add_inplace is not a + b");

    int idx[5] = {0, 2, 3, 7, 8};
    float *g = tu_alloc(be, (size_t)n * C), *x = tu_alloc(be, (size_t)S * C);
    float *x0 = tu_alloc(be, (size_t)S * C);
    tu_fill(x, (size_t)S * C, 1.0f);
    for (int i = 0; i < n * C; i++) g[i] = 99.0f;
    be->gather_rows(g, x, idx, n, C);
    ok = 1;
    for (int i = 0; i < n; i++) ok &= !memcmp(g + i * C, x + idx[i] * C, C * 4);
    CHECK(ok, "gather_rows differs from in[idx]");

    // scatter-add, a repeated index included: rows 3 gets two adds in order
    int idx2[5] = {1, 3, 3, 4, 8};
    tu_fill(g, (size_t)n * C, 1.0f);
    memcpy(x0, x, (size_t)S * C * 4);
    be->scatter_add_rows(x, g, idx2, n, C);
    for (int c = 0; c < C; c++) {
        x0[1 * C + c] += g[0 * C + c];
        x0[3 * C + c] += g[1 * C + c];
        x0[3 * C + c] += g[2 * C + c];
        x0[4 * C + c] += g[3 * C + c];
        x0[8 * C + c] += g[4 * C + c];
    }
    CHECK(!memcmp(x, x0, (size_t)S * C * 4), "scatter_add_rows differs from out[idx] += in");
    be->free(wte), be->free(out), be->free(a), be->free(b), be->free(a0);
    be->free(g), be->free(x), be->free(x0);
}

/* ---- RMSNorm ---- */

typedef struct {
    float *out, *rstd, *in, *w, *R;
    int S, C;
    float eps;
} NormCtx;

static double norm_loss(void *c) {
    NormCtx *a = c;
    be->rmsnorm_forward(a->out, a->rstd, a->in, a->w, a->S, a->C, a->eps);
    return tu_dot(a->out, a->R, (size_t)a->S * a->C);
}

static void test_rmsnorm(void) {
    int S = 5, C = 37;
    float eps = 1e-5f;
    size_t n = (size_t)S * C;
    float *in = tu_alloc(be, n), *w = tu_alloc(be, C), *out = tu_alloc(be, n);
    float *rstd = tu_alloc(be, S);
    float *R = tu_alloc(be, n), *din = tu_alloc(be, n), *din2 = tu_alloc(be, n);
    tu_fill(in, n, 2.0f), tu_fill(w, C, 1.5f), tu_fill(R, n, 1.0f);
    be->rmsnorm_forward(out, rstd, in, w, S, C, eps);
    double *ro = tu_dalloc(n), *rr = tu_dalloc(S);
    for (int s = 0; s < S; s++) {
        double ss = 0;
        for (int c = 0; c < C; c++) ss += (double)in[s * C + c] * in[s * C + c];
        rr[s] = 1.0 / sqrt(ss / C + eps);
        for (int c = 0; c < C; c++) ro[s * C + c] = in[s * C + c] * rr[s] * w[c];
    }
    tu_check_arr("rmsnorm rstd", rstd, rr, S, 0, 2e-7);   // one rounding of a double
    tu_check_arr("rmsnorm out", out, ro, n, 1e-7, 4e-7);  // plus two fp32 products
    be->rmsnorm_backward(din, R, in, w, rstd, S, C);
    NormCtx ctx = {tu_alloc(be, n), tu_alloc(be, S), in, w, R, S, C, eps};
    // smooth in x; step 1e-3 on O(1) inputs: error ~1e-7/1e-3 rounding + 1e-6 curvature
    tu_check_fd("fd rmsnorm din", norm_loss, &ctx, in, din, n, n, 1e-3f, 5e-4, 2e-3);
    tu_fill(din2, n, 1.0f);
    double *want = tu_dalloc(n);
    for (size_t i = 0; i < n; i++) want[i] = (double)din2[i] + din[i];
    be->rmsnorm_backward(din2, R, in, w, rstd, S, C);
    tu_check_arr("rmsnorm backward accumulates", din2, want, n, 1e-7, 1e-7);
    be->free(in), be->free(w), be->free(out), be->free(rstd), be->free(R), be->free(din);
    be->free(din2), be->free(ctx.out), be->free(ctx.rstd);
    free(ro), free(rr), free(want);
}

/* ---- base linear layer ---- */

typedef struct {
    float *out, *in, *w, *bias, *R;
    int S, K, N;
} MmCtx;

static double mm_loss(void *c) {
    MmCtx *a = c;
    be->matmul_forward(a->out, a->in, a->w, a->bias, a->S, a->K, a->N, 0);
    return tu_dot(a->out, a->R, (size_t)a->S * a->N);
}

static void test_matmul(void) {
    int S = 7, K = 19, N = 13;
    float *in = tu_alloc(be, S * K), *w = tu_alloc(be, N * K), *bias = tu_alloc(be, N);
    float *out = tu_alloc(be, S * N), *R = tu_alloc(be, S * N), *din = tu_alloc(be, S * K);
    tu_fill(in, S * K, 1.0f), tu_fill(w, N * K, 1.0f);
    tu_fill(bias, N, 1.0f), tu_fill(R, S * N, 1.0f);
    double *ref = tu_dalloc(S * N), *ref2 = tu_dalloc(S * N), *rdin = tu_dalloc(S * K);
    for (int s = 0; s < S; s++)
        for (int o = 0; o < N; o++) {
            double a = 0;
            for (int k = 0; k < K; k++) a += (double)in[s * K + k] * w[o * K + k];
            ref[s * N + o] = a;
            ref2[s * N + o] = 2 * (a + bias[o]);
        }
    for (int i = 0; i < S * N; i++) out[i] = 1e30f;  // written when accumulate == 0
    be->matmul_forward(out, in, w, NULL, S, K, N, 0);
    tu_check_arr("matmul out", out, ref, S * N, 1e-6, 1e-6);  // 19-term fp32 dot products
    be->matmul_forward(out, in, w, bias, S, K, N, 0);
    be->matmul_forward(out, in, w, bias, S, K, N, 1);
    tu_check_arr("matmul out+bias, accumulated twice", out, ref2, S * N, 2e-6, 1e-6);
    for (int s = 0; s < S; s++)
        for (int k = 0; k < K; k++) {
            double a = 0.5;  // din starts at 0.5: the backward adds onto it
            for (int o = 0; o < N; o++) a += (double)R[s * N + o] * w[o * K + k];
            rdin[s * K + k] = a;
        }
    for (int i = 0; i < S * K; i++) din[i] = 0.5f;
    be->matmul_backward(din, R, w, S, K, N);
    tu_check_arr("matmul din", din, rdin, S * K, 1e-6, 1e-6);
    for (int i = 0; i < S * K; i++) din[i] -= 0.5f;
    MmCtx ctx = {tu_alloc(be, S * N), in, w, bias, R, S, K, N};
    // linear in x: central differences are exact up to fp32 rounding of L (~1e-6/1e-2)
    tu_check_fd("fd matmul din", mm_loss, &ctx, in, din, S * K, S * K, 1e-2f, 2e-4, 1e-4);
    be->free(in), be->free(w), be->free(bias), be->free(out), be->free(R), be->free(din);
    be->free(ctx.out);
    free(ref), free(ref2), free(rdin);
}

/* ---- RoPE ---- */

typedef struct {
    float *x, *xw;  // input, and a work copy rotated in place
    const int *pos;
    const float *inv_freq, *R;
    int S, NH, HS;
    float mscale;
} RopeCtx;

static double rope_loss(void *c) {
    RopeCtx *a = c;
    size_t n = (size_t)a->S * a->NH * a->HS;
    memcpy(a->xw, a->x, n * 4);
    be->rope_forward(a->xw, a->pos, a->inv_freq, a->S, a->NH, a->HS, a->mscale);
    return tu_dot(a->xw, a->R, n);
}

static void test_rope(void) {
    int S = 6, NH = 3, HS = 16, half = HS / 2;
    size_t n = (size_t)S * NH * HS;
    int pos[6] = {0, 1, 5, 6, 4095, 70001};  // kept rows keep their original positions
    float inv_freq[8], mscale = 1.3f;
    for (int i = 0; i < half; i++) inv_freq[i] = (float)pow(10000.0, -2.0 * i / HS);
    float *x = tu_alloc(be, n), *x0 = tu_alloc(be, n), *y = tu_alloc(be, n), *y0 = tu_alloc(be, n);
    tu_fill(x0, n, 1.0f), tu_fill(y0, n, 1.0f);
    memcpy(x, x0, n * 4);
    be->rope_forward(x, pos, inv_freq, S, NH, HS, mscale);
    double *ref = tu_dalloc(n);
    for (int s = 0; s < S; s++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < half; i++) {
                float ang = (float)pos[s] * inv_freq[i];  // HF forms the angle in fp32
                double c = cos(ang) * mscale, sn = sin(ang) * mscale;
                size_t e = ((size_t)s * NH + h) * HS + i;
                ref[e] = x0[e] * c - x0[e + half] * sn;
                ref[e + half] = x0[e + half] * c + x0[e] * sn;
            }
    tu_check_arr("rope forward", x, ref, n, 3e-7, 6e-7);  // a few fp32 roundings
    // <R x0, y0> == <x0, R^T y0> up to fp32 rounding of the two sums
    memcpy(y, y0, n * 4);
    be->rope_backward(y, pos, inv_freq, S, NH, HS, mscale);
    double lhs = tu_dot(x, y0, n), rhs = tu_dot(x0, y, n);
    CHECK_CLOSE(lhs, rhs, 1e-5, 1e-6, "<Rx,y> %.12g != <x,R^T y> %.12g", lhs, rhs);
    // R^T R = mscale^2 I (a scaled rotation)
    be->rope_backward(x, pos, inv_freq, S, NH, HS, mscale);
    double *want = tu_dalloc(n);
    for (size_t i = 0; i < n; i++) want[i] = x0[i] * (double)mscale * mscale;
    tu_check_arr("rope backward(forward(x))", x, want, n, 5e-7, 1e-6);
    // finite differences: L = <rope(x0), y0> is linear in x0, so its gradient is R^T y0 = y
    RopeCtx ctx = {x0, tu_alloc(be, n), pos, inv_freq, y0, S, NH, HS, mscale};
    tu_check_fd("fd rope backward", rope_loss, &ctx, x0, y, n, n, 1e-2f, 2e-4, 1e-4);
    be->free(ctx.xw);
    be->free(x), be->free(x0), be->free(y), be->free(y0);
    free(ref), free(want);
}

/* ---- SwiGLU ---- */

typedef struct {
    float *out, *gate, *up, *R;
    size_t n;
} SwiCtx;

static double swi_loss(void *c) {
    SwiCtx *a = c;
    be->swiglu_forward(a->out, a->gate, a->up, a->n);
    return tu_dot(a->out, a->R, a->n);
}

static void test_swiglu(void) {
    size_t n = 203;
    float *g = tu_alloc(be, n), *u = tu_alloc(be, n), *o = tu_alloc(be, n), *R = tu_alloc(be, n);
    float *dg = tu_alloc(be, n), *du = tu_alloc(be, n);
    tu_fill(g, n, 4.0f), tu_fill(u, n, 2.0f), tu_fill(R, n, 1.0f);
    be->swiglu_forward(o, g, u, n);
    double *ref = tu_dalloc(n);
    for (size_t i = 0; i < n; i++) ref[i] = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
    tu_check_arr("swiglu out", o, ref, n, 1e-7, 1e-6);  // expf: a few ulp
    for (size_t i = 0; i < n; i++) dg[i] = du[i] = 1e30f;  // written, not added to
    be->swiglu_backward(dg, du, R, g, u, n);
    SwiCtx ctx = {tu_alloc(be, n), g, u, R, n};
    // step 1e-3: curvature error ~1e-7, rounding ~1e-7/1e-3
    tu_check_fd("fd swiglu dgate", swi_loss, &ctx, g, dg, n, n, 1e-3f, 5e-4, 1e-3);
    tu_check_fd("fd swiglu dup", swi_loss, &ctx, u, du, n, n, 1e-3f, 5e-4, 1e-3);
    be->free(g), be->free(u), be->free(o), be->free(R);
    be->free(dg), be->free(du), be->free(ctx.out);
    free(ref);
}

/* ---- LoRA ---- */

typedef struct {
    float *out, *out0, *t, *in, *A, *B, *R;
    int S, K, N, Rk;
    float scale, p;
    uint64_t seed;
} LoraCtx;

static double lora_loss(void *c) {
    LoraCtx *a = c;
    memcpy(a->out, a->out0, (size_t)a->S * a->N * 4);
    be->lora_forward(a->out, a->t, a->in, a->A, a->B, a->S, a->K, a->N, a->Rk, a->scale, a->p,
                     a->seed);
    return tu_dot(a->out, a->R, (size_t)a->S * a->N);
}

/* Forward against a double reference (mask from lora_dropout_keep), backward by finite
 * differences along in, A and B, against the double analytic gradients, and for
 * accumulation; with p > 0 din must vanish exactly where the forward dropped. */
static void test_lora_case(int S, int K, int N, int Rk, float p, int fd) {
    float scale = 2.0f;
    uint64_t seed = 0xC0FFEE1234ull;
    char tag[64], name[128];
    snprintf(tag, sizeof tag, "S=%d K=%d p=%g", S, K, p);
    size_t nin = (size_t)S * K, nout = (size_t)S * N;
    float *in = tu_alloc(be, nin), *A = tu_alloc(be, (size_t)Rk * K);
    float *B = tu_alloc(be, (size_t)N * Rk);
    float *out = tu_alloc(be, nout), *out0 = tu_alloc(be, nout), *t = tu_alloc(be, (size_t)S * Rk);
    float *R = tu_alloc(be, nout), *din = tu_alloc(be, nin), *dA = tu_alloc(be, (size_t)Rk * K);
    float *dB = tu_alloc(be, (size_t)N * Rk);
    tu_fill(in, nin, 1.0f), tu_fill(A, (size_t)Rk * K, 1.0f), tu_fill(B, (size_t)N * Rk, 1.0f);
    tu_fill(out0, nout, 1.0f), tu_fill(R, nout, 1.0f);

    // reference: xd = drop(in), t = xd A^T, out = out0 + scale t B^T, and the gradients
    double *xd = tu_dalloc(nin), *rt = tu_dalloc((size_t)S * Rk), *ro = tu_dalloc(nout);
    double *rdt = tu_dalloc((size_t)S * Rk), *rdin = tu_dalloc(nin);
    double *rdA = tu_dalloc((size_t)Rk * K), *rdB = tu_dalloc((size_t)N * Rk);
    long kept = 0;
    for (size_t e = 0; e < nin; e++) {
        int keep = p == 0.0f || lora_dropout_keep(seed, e, p);
        kept += keep;
        xd[e] = keep ? in[e] / (1.0 - p) : 0.0;
    }
    for (int s = 0; s < S; s++)
        for (int r = 0; r < Rk; r++) {
            double a = 0;
            for (int k = 0; k < K; k++) a += xd[s * K + k] * A[r * K + k];
            rt[s * Rk + r] = a;
        }
    for (int s = 0; s < S; s++)
        for (int o = 0; o < N; o++) {
            double a = out0[s * N + o];
            for (int r = 0; r < Rk; r++) a += scale * rt[s * Rk + r] * B[o * Rk + r];
            ro[s * N + o] = a;
        }
    for (int s = 0; s < S; s++)
        for (int r = 0; r < Rk; r++) {
            double a = 0;
            for (int o = 0; o < N; o++) a += scale * (double)R[s * N + o] * B[o * Rk + r];
            rdt[s * Rk + r] = a;
        }
    for (int o = 0; o < N; o++)
        for (int r = 0; r < Rk; r++) {
            double a = 0;
            for (int s = 0; s < S; s++) a += scale * (double)R[s * N + o] * rt[s * Rk + r];
            rdB[o * Rk + r] = a;
        }
    for (int r = 0; r < Rk; r++)
        for (int k = 0; k < K; k++) {
            double a = 0;
            for (int s = 0; s < S; s++) a += rdt[s * Rk + r] * xd[s * K + k];
            rdA[r * K + k] = a;
        }
    for (int s = 0; s < S; s++)
        for (int k = 0; k < K; k++) {
            size_t e = (size_t)s * K + k;
            double a = 0;
            for (int r = 0; r < Rk; r++) a += rdt[s * Rk + r] * A[r * K + k];
            int keep = p == 0.0f || lora_dropout_keep(seed, e, p);
            rdin[e] = keep ? a / (1.0 - p) : 0.0;
        }

    memcpy(out, out0, nout * 4);
    be->lora_forward(out, t, in, A, B, S, K, N, Rk, scale, p, seed);
    // sums of K (then R) fp32 products of O(1) terms
    snprintf(name, sizeof name, "lora t %s", tag);
    tu_check_arr(name, t, rt, (size_t)S * Rk, 2e-6, 2e-6);
    snprintf(name, sizeof name, "lora out %s", tag);
    tu_check_arr(name, out, ro, nout, 4e-6, 2e-6);
    be->lora_backward(din, dA, dB, R, in, t, A, B, S, K, N, Rk, scale, p, seed);
    snprintf(name, sizeof name, "lora din %s", tag);
    tu_check_arr(name, din, rdin, nin, 4e-6, 2e-6);
    snprintf(name, sizeof name, "lora dA %s", tag);
    tu_check_arr(name, dA, rdA, (size_t)Rk * K, 4e-6 * S, 2e-6);
    snprintf(name, sizeof name, "lora dB %s", tag);
    tu_check_arr(name, dB, rdB, (size_t)N * Rk, 4e-6 * S, 2e-6);
    if (p > 0) {
        size_t leak = 0;
        for (size_t e = 0; e < nin; e++) leak += !lora_dropout_keep(seed, e, p) && din[e] != 0.0f;
        CHECK(leak == 0, "lora %s: din nonzero at %zu dropped elements", tag, leak);
        double frac = (double)kept / nin, sd = sqrt(p * (1 - p) / nin);
        CHECK(fabs(frac - (1 - p)) < 5 * sd + 1e-9, "lora %s: kept %.4f, want %.4f", tag, frac,
              1 - p);  // binomial: within 5 standard deviations
    }
    if (fd) {
        LoraCtx ctx = {tu_alloc(be, nout), out0, tu_alloc(be, (size_t)S * Rk), in, A, B, R,
                       S, K, N, Rk, scale, p, seed};
        // L is linear in each of in, A, B: central differences exact up to fp32 rounding of L
        snprintf(name, sizeof name, "fd lora din %s", tag);
        tu_check_fd(name, lora_loss, &ctx, in, din, nin, nin, 1e-2f, 5e-4, 1e-4);
        snprintf(name, sizeof name, "fd lora dA %s", tag);
        tu_check_fd(name, lora_loss, &ctx, A, dA, (size_t)Rk * K, 1000, 1e-2f, 5e-4, 1e-4);
        snprintf(name, sizeof name, "fd lora dB %s", tag);
        tu_check_fd(name, lora_loss, &ctx, B, dB, (size_t)N * Rk, 1000, 1e-2f, 5e-4, 1e-4);
        be->free(ctx.out), be->free(ctx.t);
    }
    // a second backward adds the same gradients again
    for (size_t i = 0; i < nin; i++) rdin[i] = 2.0 * din[i];
    for (size_t i = 0; i < (size_t)Rk * K; i++) rdA[i] = 2.0 * dA[i];
    for (size_t i = 0; i < (size_t)N * Rk; i++) rdB[i] = 2.0 * dB[i];
    be->lora_backward(din, dA, dB, R, in, t, A, B, S, K, N, Rk, scale, p, seed);
    snprintf(name, sizeof name, "lora backward accumulates %s", tag);
    tu_check_arr(name, din, rdin, nin, 1e-7, 1e-6);
    // dA, dB: sums over S rows (chunked with p > 0), so the rounding is relative to the terms
    tu_check_arr(name, dA, rdA, (size_t)Rk * K, 1e-7 * S, 1e-6);
    tu_check_arr(name, dB, rdB, (size_t)N * Rk, 1e-7 * S, 1e-6);

    be->free(in), be->free(A), be->free(B), be->free(out), be->free(out0), be->free(t);
    be->free(R), be->free(din), be->free(dA), be->free(dB);
    free(xd), free(rt), free(ro), free(rdt), free(rdin), free(rdA), free(rdB);
}

static void test_lora(void) {
    test_lora_case(9, 11, 7, 3, 0.0f, 1);
    test_lora_case(9, 11, 7, 3, 0.3f, 1);
    test_lora_case(600, 37, 5, 4, 0.1f, 0);  // three 256-row chunks: the mask index runs on
    test_lora_case(600, 37, 5, 4, 0.0f, 0);
}

/* ---- optimizer side ---- */

static void test_optim(void) {
    size_t n = 100003;
    float *g = tu_alloc(be, n);
    tu_fill(g, n, 3.0f);
    double ref = 0;
    for (size_t i = 0; i < n; i++) ref += (double)g[i] * g[i];
    double s = be->sumsq(g, n);
    CHECK_CLOSE(s, ref, 0, 1e-12, "sumsq %.17g, reference %.17g", s, ref);  // double sums
    CHECK(be->sumsq(g, 0) == 0.0, "sumsq of nothing is not 0");
    CHECK(be->sumsq(g, 3) == (double)g[0] * g[0] + (double)g[1] * g[1] + (double)g[2] * g[2],
          "sumsq of 3 elements");
    float g0 = g[17];
    be->scale(g, n, 0.25f);
    CHECK(g[17] == g0 * 0.25f, "scale: %g, want %g", g[17], g0 * 0.25f);
    be->free(g);

    // AdamW, three steps, against the header's formula in double
    size_t m = 1000;
    float *p = tu_alloc(be, m), *gr = tu_alloc(be, m), *mm = tu_alloc(be, m), *vv = tu_alloc(be, m);
    double *pd = tu_dalloc(m), *md = tu_dalloc(m), *vd = tu_dalloc(m);
    float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.1f;
    tu_fill(p, m, 1.0f);
    for (size_t i = 0; i < m; i++) pd[i] = p[i];
    for (int t = 1; t <= 3; t++) {
        tu_fill(gr, m, 0.5f);
        if (t == 2) gr[0] = 0.0f;  // a zero gradient only decays
        be->adamw(p, gr, mm, vv, m, lr, b1, b2, eps, wd, t);
        for (size_t i = 0; i < m; i++) {
            md[i] = b1 * md[i] + (1 - (double)b1) * gr[i];
            vd[i] = b2 * vd[i] + (1 - (double)b2) * gr[i] * gr[i];
            double mh = md[i] / (1 - pow(b1, t)), vh = vd[i] / (1 - pow(b2, t));
            pd[i] -= lr * (mh / (sqrt(vh) + eps) + wd * pd[i]);
        }
    }
    // a few fp32 roundings per step on O(1) parameters and O(lr) updates
    tu_check_arr("adamw p", p, pd, m, 2e-7, 5e-7);
    tu_check_arr("adamw m", mm, md, m, 1e-8, 1e-6);
    tu_check_arr("adamw v", vv, vd, m, 1e-10, 1e-6);
    be->free(p), be->free(gr), be->free(mm), be->free(vv);
    free(pd), free(md), free(vd);
}

int main(void) {
    be = backend_cpu();
    CHECK(be->act_dtype == DT_F32 && be->act_size == 4, "cpu backend is not fp32");
    size_t used0 = be->mem_used();
    test_memory();
    test_rows();
    test_rmsnorm();
    test_matmul();
    test_rope();
    test_swiglu();
    test_lora();
    test_optim();
    CHECK(be->mem_used() == used0, "mem_used %zu after freeing everything, was %zu",
          be->mem_used(), used0);
    return check_done("test_cpu_ops");
}
