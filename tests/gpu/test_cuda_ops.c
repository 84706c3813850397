/* test_cuda_ops.c: every op of the CUDA backend against the CPU backend (the
 * fp32 reference) on fresh random inputs.
 *
 * Inputs are drawn once per case, rounded to bf16 so both backends see the same
 * values, and uploaded to both. Outputs that an op WRITES are poisoned first on
 * the GPU (all bits set: bf16/fp32 NaN), so an element the kernel forgets stays
 * NaN and fails; outputs an op accumulates into start from the same random data.
 * A case passes when the norm-wise relative error ||gpu - cpu|| / (||cpu|| + 1e-5 sqrt(n)) is under
 * the tolerance written beside it (bf16 storage rounds each element to 2^-9
 * relative, so elementwise ops land near 3e-3 and matmul chains near 5e-3) and
 * every element is finite. The seed is new each run (LEMO_TEST_SEED to repeat) and
 * printed, with the max abs error of every case. The LeMo ops: block scores also pass an
 * element-wise bound and repeat bit for bit; block selection (on identical scores, ties,
 * NaN and signed zeros included) and random scores must equal the CPU's exactly; CUB's
 * storage must fit backend_cuda.h's plain-C bound; the block matrix, its reduction and the
 * predictors' forward, backward and SmoothL1 against the CPU. LEMO_TEST_ONLY=word runs only the cases
 * whose name holds it (lemo, attention, ...).
 *
 * Needs a GPU: without one it skips (exit 77) and says why. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "check.h"
#include "cuda/backend_cuda.h"

static const Backend *cpu, *gpu;
static uint64_t rng_state;

static uint64_t rng_next(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* uniform in [-1, 1) */
static float rng_uniform(void) { return (float)((rng_next() >> 40) * (2.0 / 16777216.0) - 1.0); }

/* Round to the nearest bf16 (even on ties), returned as float. */
static float bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

/* n host floats, uniform(-a, a), bf16-representable. */
static float *host_rand(size_t n, float a) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = bf16_round(a * rng_uniform());
    return x;
}

/* A tensor on both backends: c on the CPU, g on the GPU. */
typedef struct {
    void *c, *g;
    size_t n;
    int act;  // 1: act dtype, 0: fp32 / int32 raw
} Pair;

static Pair pair_act(const float *host, size_t n) {
    Pair p = {cpu->alloc(n * 4), gpu->alloc(n * gpu->act_size), n, 1};
    cpu->upload_act(p.c, host, DT_F32, n);
    gpu->upload_act(p.g, host, DT_F32, n);
    return p;
}

static Pair pair_raw(const void *host, size_t n) {  // fp32 or int32
    Pair p = {cpu->alloc(n * 4), gpu->alloc(n * 4), n, 0};
    cpu->copy_to_device(p.c, host, n * 4);
    gpu->copy_to_device(p.g, host, n * 4);
    return p;
}

/* A written output: zero on the CPU, poisoned (NaN) on the GPU. */
static Pair pair_out(size_t n, int act) {
    Pair p = {cpu->alloc(n * 4), gpu->alloc(n * (act ? gpu->act_size : 4)), n, act};
    unsigned char *ff = malloc(n * 4);
    memset(ff, 0xff, n * 4);
    gpu->copy_to_device(p.g, ff, n * (act ? gpu->act_size : 4));
    free(ff);
    return p;
}

static void pair_free(Pair *p) {
    cpu->free(p->c);
    gpu->free(p->g);
}

/* Compares the GPU copy with the CPU copy; rel = ||g-c||/||c||. */
static void compare(const char *what, Pair *p, double tol) {
    float *g = malloc(p->n * sizeof(float));
    if (p->act)
        gpu->download_act(g, p->g, p->n);
    else
        gpu->copy_to_host(g, p->g, p->n * 4);
    const float *c = p->c;
    double num = 0, den = 0, maxabs = 0;
    size_t bad = 0, first_bad = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (!isfinite(g[i]) || !isfinite(c[i])) {
            if (!bad++) first_bad = i;
            continue;
        }
        double d = (double)g[i] - c[i];
        num += d * d;
        den += (double)c[i] * c[i];
        if (fabs(d) > maxabs) maxabs = fabs(d);
    }
    // an absolute floor of 1e-5 per element: a tensor that is zero in exact arithmetic
    // (dq, dk of a one-token sequence) compares its rounding noise against the floor
    double rel = sqrt(num) / (sqrt(den) + 1e-5 * sqrt((double)p->n));
    printf("  %-34s n=%-9zu rel=%.2e maxabs=%.2e tol=%.0e%s\n", what, p->n, rel, maxabs, tol,
           bad ? "  NON-FINITE" : "");
    CHECK(bad == 0, "%s: %zu non-finite or unwritten elements (first at %zu: gpu %g cpu %g)", what,
          bad, first_bad, g[first_bad], c[first_bad]);
    CHECK(rel <= tol, "%s: relative error %.3e > %.0e (max abs %.3e)", what, rel, tol, maxabs);
    free(g);
}

/* The largest element-wise relative error |g - c| / (|c| + atol) between the two copies of a
 * written fp32 output; prints the worst element and fails above rtol. Norm-wise errors can hide
 * one wrong entry of a long vector; the block scores check both. */
static void compare_each(const char *what, Pair *p, double atol, double rtol) {
    float *g = malloc(p->n * sizeof(float));
    gpu->copy_to_host(g, p->g, p->n * 4);
    const float *c = p->c;
    double worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < p->n; i++) {
        double r = fabs((double)g[i] - c[i]) / (fabs((double)c[i]) + atol);
        if (!(r <= worst)) worst = r, wi = i;  // NaN counts as the worst
    }
    printf("  %-34s worst elementwise rel=%.2e at [%zu] (gpu %.9g cpu %.9g) tol=%.0e\n", what, worst, wi,
           g[wi], c[wi], rtol);
    CHECK(worst <= rtol, "%s: element %zu: gpu %.9g cpu %.9g (rel %.3e > %.0e)", what, wi, g[wi], c[wi], worst, rtol);
    free(g);
}

/* The GPU copy must equal the CPU copy bit for bit (int32 or fp32 raw data); prints the first
 * differences as ints. */
static void compare_exact(const char *what, Pair *p) {
    int32_t *g = malloc(p->n * 4);
    gpu->copy_to_host(g, p->g, p->n * 4);
    const int32_t *c = p->c;
    size_t bad = 0;
    for (size_t i = 0; i < p->n; i++)
        if (g[i] != c[i] && ++bad <= 5)
            fprintf(stderr, "  %s[%zu]: gpu %d cpu %d\n", what, i, (int)g[i], (int)c[i]);
    printf("  %-34s n=%-9zu %s\n", what, p->n, bad ? "DIFFERENT" : "identical");
    CHECK(bad == 0, "%s: %zu of %zu elements differ", what, bad, p->n);
    free(g);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* ---------------- cases ---------------- */

static void test_rows(void) {
    int V = 1000, S = 300, C = 264;
    float *w = host_rand((size_t)V * C, 1.0f);
    int *tok = malloc(S * sizeof(int));
    for (int s = 0; s < S; s++) tok[s] = (int)(rng_next() % V);
    Pair pw = pair_act(w, (size_t)V * C), pt = pair_raw(tok, S), po = pair_out((size_t)S * C, 1);
    cpu->embedding_forward(po.c, pt.c, pw.c, S, C);
    gpu->embedding_forward(po.g, pt.g, pw.g, S, C);
    compare("embedding_forward", &po, 0);  // a copy: exact

    // gather/scatter of a sorted subset (C odd too: the scalar path)
    for (int pass = 0; pass < 2; pass++) {
        int Cc = pass ? 75 : 256, n = 0;
        int *idx = malloc(S * sizeof(int));
        for (int s = 0; s < S; s++)
            if (rng_next() % 3) idx[n++] = s;
        float *x = host_rand((size_t)S * Cc, 2.0f), *y = host_rand((size_t)n * Cc, 2.0f);
        Pair px = pair_act(x, (size_t)S * Cc), pi = pair_raw(idx, n), pg = pair_out((size_t)n * Cc, 1);
        Pair py = pair_act(y, (size_t)n * Cc);
        cpu->gather_rows(pg.c, px.c, pi.c, n, Cc);
        gpu->gather_rows(pg.g, px.g, pi.g, n, Cc);
        compare(pass ? "gather_rows (C=75)" : "gather_rows", &pg, 0);
        cpu->scatter_add_rows(px.c, py.c, pi.c, n, Cc);
        gpu->scatter_add_rows(px.g, py.g, pi.g, n, Cc);
        compare(pass ? "scatter_add_rows (C=75)" : "scatter_add_rows", &px, 5e-3);  // one bf16 add
        cpu->add_inplace(px.c, px.c, (size_t)S * Cc);
        gpu->add_inplace(px.g, px.g, (size_t)S * Cc);
        compare(pass ? "add_inplace (odd n)" : "add_inplace", &px, 5e-3);
        pair_free(&px), pair_free(&pi), pair_free(&pg), pair_free(&py);
        free(idx), free(x), free(y);
    }
    pair_free(&pw), pair_free(&pt), pair_free(&po);
    free(w), free(tok);
}

static void test_rmsnorm(void) {
    int S = 257;
    int Cs[2] = {1024, 100};
    for (int ci = 0; ci < 2; ci++) {
        int C = Cs[ci];
        float *x = host_rand((size_t)S * C, 3.0f), *w = host_rand(C, 1.0f);
        float *dy = host_rand((size_t)S * C, 1.0f), *dx0 = host_rand((size_t)S * C, 1.0f);
        Pair px = pair_act(x, (size_t)S * C), pw = pair_act(w, C), po = pair_out((size_t)S * C, 1);
        Pair pr = pair_out(S, 0), pdy = pair_act(dy, (size_t)S * C), pdx = pair_act(dx0, (size_t)S * C);
        cpu->rmsnorm_forward(po.c, pr.c, px.c, pw.c, S, C, 1e-5f);
        gpu->rmsnorm_forward(po.g, pr.g, px.g, pw.g, S, C, 1e-5f);
        compare(ci ? "rmsnorm_forward (C=100)" : "rmsnorm_forward", &po, 5e-3);  // bf16 output
        compare(ci ? "rmsnorm rstd (C=100)" : "rmsnorm rstd", &pr, 1e-5);        // fp32 from the same bf16 x
        cpu->rmsnorm_backward(pdx.c, pdy.c, px.c, pw.c, pr.c, S, C);
        gpu->rmsnorm_backward(pdx.g, pdy.g, px.g, pw.g, pr.g, S, C);
        compare(ci ? "rmsnorm_backward (C=100)" : "rmsnorm_backward", &pdx, 5e-3);
        pair_free(&px), pair_free(&pw), pair_free(&po), pair_free(&pr), pair_free(&pdy), pair_free(&pdx);
        free(x), free(w), free(dy), free(dx0);
    }
}

static void test_matmul(void) {
    int S = 300, K = 512, N = 776;
    float *x = host_rand((size_t)S * K, 1.0f), *w = host_rand((size_t)N * K, 0.05f);
    float *b = host_rand(N, 0.5f), *acc = host_rand((size_t)S * N, 1.0f), *dy = host_rand((size_t)S * N, 1.0f);
    Pair px = pair_act(x, (size_t)S * K), pw = pair_act(w, (size_t)N * K), pb = pair_act(b, N);
    Pair po = pair_out((size_t)S * N, 1), pa = pair_act(acc, (size_t)S * N), pdy = pair_act(dy, (size_t)S * N);
    Pair pdx = pair_act(x, (size_t)S * K);  // accumulated into: starts as x
    cpu->matmul_forward(po.c, px.c, pw.c, pb.c, S, K, N, 0);
    gpu->matmul_forward(po.g, px.g, pw.g, pb.g, S, K, N, 0);
    compare("matmul_forward (+bias)", &po, 5e-3);  // fp32 accumulate, bf16 output
    cpu->matmul_forward(pa.c, px.c, pw.c, NULL, S, K, N, 1);
    gpu->matmul_forward(pa.g, px.g, pw.g, NULL, S, K, N, 1);
    compare("matmul_forward (accumulate)", &pa, 5e-3);
    cpu->matmul_backward(pdx.c, pdy.c, pw.c, S, K, N);
    gpu->matmul_backward(pdx.g, pdy.g, pw.g, S, K, N);
    compare("matmul_backward", &pdx, 5e-3);
    pair_free(&px), pair_free(&pw), pair_free(&pb), pair_free(&po), pair_free(&pa), pair_free(&pdy), pair_free(&pdx);
    free(x), free(w), free(b), free(acc), free(dy);
}

static void test_lora(void) {
    struct { int S, K, N, R; float p; } cs[] = {
        {300, 512, 384, 8, 0.0f}, {300, 512, 384, 8, 0.1f}, {4096, 256, 320, 16, 0.05f}, {77, 130, 90, 64, 0.0f},
        // drop(x) is materialized 64 MiB of rows at a time: two chunks of 4096 and 404 rows
        {4500, 8192, 64, 8, 0.1f},
    };
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        int S = cs[ci].S, K = cs[ci].K, N = cs[ci].N, R = cs[ci].R;
        float p = cs[ci].p, scale = 2.0f;
        uint64_t seed = rng_next();
        float *x = host_rand((size_t)S * K, 1.0f), *o = host_rand((size_t)S * N, 1.0f);
        float *A = host_rand((size_t)R * K, 0.1f), *B = host_rand((size_t)N * R, 0.1f);
        float *dy = host_rand((size_t)S * N, 1.0f), *dx = host_rand((size_t)S * K, 1.0f);
        float *dA = host_rand((size_t)R * K, 0.1f), *dB = host_rand((size_t)N * R, 0.1f);
        Pair px = pair_act(x, (size_t)S * K), po = pair_act(o, (size_t)S * N);
        Pair pA = pair_raw(A, (size_t)R * K), pB = pair_raw(B, (size_t)N * R), pt = pair_out((size_t)S * R, 0);
        Pair pdy = pair_act(dy, (size_t)S * N), pdx = pair_act(dx, (size_t)S * K);
        Pair pdA = pair_raw(dA, (size_t)R * K), pdB = pair_raw(dB, (size_t)N * R);
        cpu->lora_forward(po.c, pt.c, px.c, pA.c, pB.c, S, K, N, R, scale, p, seed);
        gpu->lora_forward(po.g, pt.g, px.g, pA.g, pB.g, S, K, N, R, scale, p, seed);
        char name[96];
        snprintf(name, sizeof name, "lora t (S=%d R=%d p=%.2f)", S, R, p);
        // the products run on the tensor cores with A, B, t (and drop(x), dt A) rounded to bf16
        double tol32 = 5e-3;
        compare(name, &pt, tol32);
        snprintf(name, sizeof name, "lora_forward out (S=%d R=%d p=%.2f)", S, R, p);
        compare(name, &po, 5e-3);  // bf16 accumulate
        cpu->lora_backward(pdx.c, pdA.c, pdB.c, pdy.c, px.c, pt.c, pA.c, pB.c, S, K, N, R, scale, p, seed);
        gpu->lora_backward(pdx.g, pdA.g, pdB.g, pdy.g, px.g, pt.g, pA.g, pB.g, S, K, N, R, scale, p, seed);
        snprintf(name, sizeof name, "lora_backward din (S=%d R=%d p=%.2f)", S, R, p);
        compare(name, &pdx, 5e-3);
        snprintf(name, sizeof name, "lora_backward dA (S=%d R=%d p=%.2f)", S, R, p);
        compare(name, &pdA, tol32);
        snprintf(name, sizeof name, "lora_backward dB (S=%d R=%d p=%.2f)", S, R, p);
        compare(name, &pdB, tol32);
        pair_free(&px), pair_free(&po), pair_free(&pA), pair_free(&pB), pair_free(&pt);
        pair_free(&pdy), pair_free(&pdx), pair_free(&pdA), pair_free(&pdB);
        free(x), free(o), free(A), free(B), free(dy), free(dx), free(dA), free(dB);
    }
}

static void test_rope(void) {
    int S = 300, NH = 6, HS = 128;
    float *x = host_rand((size_t)S * NH * HS, 2.0f);
    int *pos = malloc(S * sizeof(int));
    for (int s = 0, p = 0; s < S; s++) pos[s] = (p += 1 + (int)(rng_next() % 200));  // up to ~60K
    float inv[64];
    for (int i = 0; i < HS / 2; i++) inv[i] = powf(500000.0f, -2.0f * i / HS);
    Pair px = pair_act(x, (size_t)S * NH * HS), pp = pair_raw(pos, S), pi = pair_raw(inv, HS / 2);
    cpu->rope_forward(px.c, pp.c, pi.c, S, NH, HS, 1.0f);
    gpu->rope_forward(px.g, pp.g, pi.g, S, NH, HS, 1.0f);
    compare("rope_forward", &px, 5e-3);
    cpu->rope_backward(px.c, pp.c, pi.c, S, NH, HS, 1.2f);
    gpu->rope_backward(px.g, pp.g, pi.g, S, NH, HS, 1.2f);
    compare("rope_backward (mscale 1.2)", &px, 5e-3);
    pair_free(&px), pair_free(&pp), pair_free(&pi);
    free(x), free(pos);
}

static void test_attention(void) {
    struct { int S, NH, NKV, HS; } cs[] = {
        {300, 4, 2, 64}, {256, 4, 4, 128}, {1000, 8, 2, 128}, {1, 2, 1, 64}, {65, 4, 1, 128}, {700, 4, 4, 64},
        // one key past a 128-key block; many query tiles per key block with a group of 2
        {129, 4, 2, 128}, {129, 4, 2, 64}, {1536, 2, 1, 128},
        // several turns of every copy stage; query tiles of 192 rows against 128-key tiles
        {1000, 4, 2, 64}, {385, 2, 2, 64},
        // four query heads a kv head over many key blocks (the backward sums dK, dV over them)
        {2048, 8, 2, 128}, {2048, 8, 2, 64},
        // one kv head read by four query heads, the block walking from head to head; S odd
        {1111, 4, 1, 128}, {1111, 4, 1, 64},
    };
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        int S = cs[ci].S, NH = cs[ci].NH, NKV = cs[ci].NKV, HS = cs[ci].HS;
        size_t nq = (size_t)S * NH * HS, nk = (size_t)S * NKV * HS;
        float *q = host_rand(nq, 2.0f), *k = host_rand(nk, 2.0f), *v = host_rand(nk, 1.0f);
        float *dy = host_rand(nq, 1.0f);
        Pair pq = pair_act(q, nq), pk = pair_act(k, nk), pv = pair_act(v, nk), pdy = pair_act(dy, nq);
        Pair po = pair_out(nq, 1), pl = pair_out((size_t)NH * S, 0);
        Pair pdq = pair_out(nq, 1), pdk = pair_out(nk, 1), pdv = pair_out(nk, 1);
        cpu->attention_forward(po.c, pl.c, pq.c, pk.c, pv.c, S, NH, NKV, HS);
        gpu->attention_forward(po.g, pl.g, pq.g, pk.g, pv.g, S, NH, NKV, HS);
        char name[96];
        snprintf(name, sizeof name, "attention_forward (S=%d %d/%d HS=%d)", S, NH, NKV, HS);
        compare(name, &po, 1e-2);  // P rounded to bf16 before P V
        compare("  lse", &pl, 1e-4);  // fp32 from identical bf16 q,k
        // backward from the CPU's own out/lse on both sides would hide a mismatch in
        // our forward: each backend differentiates its own forward
        // workspaces start as garbage (all bits set: NaN): the op must not read what it did
        // not write
        size_t wc = cpu->attention_bwd_ws_bytes(S, NH, NKV, HS), wg = gpu->attention_bwd_ws_bytes(S, NH, NKV, HS);
        void *wsc = malloc(wc ? wc : 1), *wsg = gpu->alloc(wg ? wg : 1), *junk = malloc(wg ? wg : 1);
        memset(wsc, 0xFF, wc), memset(junk, 0xFF, wg);
        gpu->copy_to_device(wsg, junk, wg);
        cpu->attention_backward(pdq.c, pdk.c, pdv.c, pdy.c, po.c, pl.c, pq.c, pk.c, pv.c, S, NH, NKV, HS, wsc);
        gpu->attention_backward(pdq.g, pdk.g, pdv.g, pdy.g, po.g, pl.g, pq.g, pk.g, pv.g, S, NH, NKV, HS, wsg);
        free(wsc), free(junk), gpu->free(wsg);
        compare("  attention_backward dq", &pdq, 2e-2);  // bf16 P and dS feed the products
        compare("  attention_backward dk", &pdk, 2e-2);
        compare("  attention_backward dv", &pdv, 2e-2);
        pair_free(&pq), pair_free(&pk), pair_free(&pv), pair_free(&pdy), pair_free(&po), pair_free(&pl);
        pair_free(&pdq), pair_free(&pdk), pair_free(&pdv);
        free(q), free(k), free(v), free(dy);
    }
}

static void test_swiglu(void) {
    size_t ns[2] = {40000, 1003};
    for (int ci = 0; ci < 2; ci++) {
        size_t n = ns[ci];
        float *g = host_rand(n, 4.0f), *u = host_rand(n, 2.0f), *dy = host_rand(n, 1.0f);
        Pair pg = pair_act(g, n), pu = pair_act(u, n), pdy = pair_act(dy, n);
        Pair po = pair_out(n, 1), pdg = pair_out(n, 1), pdu = pair_out(n, 1);
        cpu->swiglu_forward(po.c, pg.c, pu.c, n);
        gpu->swiglu_forward(po.g, pg.g, pu.g, n);
        compare(ci ? "swiglu_forward (odd n)" : "swiglu_forward", &po, 5e-3);
        cpu->swiglu_backward(pdg.c, pdu.c, pdy.c, pg.c, pu.c, n);
        gpu->swiglu_backward(pdg.g, pdu.g, pdy.g, pg.g, pu.g, n);
        compare(ci ? "swiglu_backward dgate (odd n)" : "swiglu_backward dgate", &pdg, 5e-3);
        compare(ci ? "swiglu_backward dup (odd n)" : "swiglu_backward dup", &pdu, 5e-3);
        pair_free(&pg), pair_free(&pu), pair_free(&pdy), pair_free(&po), pair_free(&pdg), pair_free(&pdu);
        free(g), free(u), free(dy);
    }
}

static void test_lm_head(void) {
    int S = 300, C = 256, V = 5003;
    float *x = host_rand((size_t)S * C, 2.0f), *w = host_rand((size_t)V * C, 0.2f);
    int *tgt = malloc(S * sizeof(int));
    for (int s = 0; s < S; s++) tgt[s] = rng_next() % 5 == 0 ? -1 : (int)(rng_next() % V);
    Pair px = pair_act(x, (size_t)S * C), pw = pair_act(w, (size_t)V * C), pt = pair_raw(tgt, S);
    Pair pdx = pair_out((size_t)S * C, 1);
    long cc = 0, cg = 0;
    double lc = cpu->lm_head_ce(pdx.c, &cc, NULL, px.c, pw.c, pt.c, S, C, V, 0.5f);
    double lg = gpu->lm_head_ce(pdx.g, &cg, NULL, px.g, pw.g, pt.g, S, C, V, 0.5f);
    printf("  %-34s cpu=%.6f gpu=%.6f rel=%.2e\n", "lm_head_ce loss", lc, lg, fabs(lg - lc) / fabs(lc));
    CHECK(cc == cg, "lm_head_ce count: cpu %ld gpu %ld", cc, cg);
    CHECK(fabs(lg - lc) <= 2e-3 * fabs(lc), "lm_head_ce loss: cpu %.6f gpu %.6f", lc, lg);  // bf16 x,W; fp32 logits
    compare("lm_head_ce dx", &pdx, 1e-2);  // dlogits rounded to bf16 before dlogits W
    long c2 = 0;
    double l2 = gpu->lm_head_ce(NULL, &c2, NULL, px.g, pw.g, pt.g, S, C, V, 1.0f);
    CHECK(c2 == cg && l2 == lg, "lm_head_ce without dx: %.6f (%ld) vs %.6f (%ld)", l2, c2, lg, cg);

    /* The argmax count (token accuracy). Half the rows aim at their best entry by the exact
     * logits of the bf16 inputs both backends hold, so there are hits to count; rows whose
     * best two logits lie within 1e-3 may honestly differ (fp32 sums in another order). The
     * last 10 rows are zeros: every logit is exactly 0 on both, a V-way tie that goes to
     * index 0 on both (targets 0 count, 5 do not). */
    long close = 0;
    for (int s = 0; s < S; s++) {
        double b0 = -INFINITY, b1 = -INFINITY;
        int am = 0;
        for (int j = 0; j < V; j++) {
            double l = 0;
            for (int c = 0; c < C; c++) l += (double)x[(size_t)s * C + c] * w[(size_t)j * C + c];
            if (l > b0) b1 = b0, b0 = l, am = j;
            else if (l > b1) b1 = l;
        }
        if (s >= S - 10) tgt[s] = s % 2 ? 0 : 5;
        else if (s % 2 == 0) tgt[s] = am;
        close += tgt[s] >= 0 && s < S - 10 && b0 - b1 < 1e-3;
    }
    for (int s = S - 10; s < S; s++) memset(x + (size_t)s * C, 0, (size_t)C * sizeof(float));
    Pair px2 = pair_act(x, (size_t)S * C), pt2 = pair_raw(tgt, S);
    long hc = -1, hg = -1, hg2 = -1;
    cpu->lm_head_ce(NULL, &cc, &hc, px2.c, pw.c, pt2.c, S, C, V, 1.0f);
    gpu->lm_head_ce(pdx.g, &cg, &hg, px2.g, pw.g, pt2.g, S, C, V, 1.0f);
    gpu->lm_head_ce(NULL, &c2, &hg2, px2.g, pw.g, pt2.g, S, C, V, 1.0f);
    printf("  %-34s cpu=%ld gpu=%ld of %ld (%ld near ties)\n", "lm_head_ce argmax hits", hc, hg, cc, close);
    CHECK(hc >= 100 && labs(hg - hc) <= close, "lm_head_ce argmax hits: cpu %ld gpu %ld (%ld near ties)", hc, hg, close);
    CHECK(hg2 == hg, "lm_head_ce argmax hits without dx: %ld, with dx %ld", hg2, hg);
    long tc = -1, tg = -1;
    cpu->lm_head_ce(NULL, &cc, &tc, (char *)px2.c + (size_t)(S - 10) * C * 4, pw.c, (int *)pt2.c + S - 10, 10, C, V, 1.0f);
    gpu->lm_head_ce(NULL, &cg, &tg, (char *)px2.g + (size_t)(S - 10) * C * gpu->act_size, pw.g, (int *)pt2.g + S - 10,
                    10, C, V, 1.0f);
    CHECK(tc == 5 && tg == 5, "lm_head_ce ties go to the lowest index: cpu %ld gpu %ld hits of 10 (want 5)", tc, tg);
    pair_free(&px2), pair_free(&pt2);
    pair_free(&px), pair_free(&pw), pair_free(&pt), pair_free(&pdx);
    free(x), free(w), free(tgt);
}

static void test_optim(void) {
    size_t n = 100003;
    float *p = host_rand(n, 1.0f), *g = host_rand(n, 0.1f), *m = host_rand(n, 0.01f), *v = host_rand(n, 0.01f);
    for (size_t i = 0; i < n; i++) v[i] = fabsf(v[i]);
    Pair pp = pair_raw(p, n), pg = pair_raw(g, n), pm = pair_raw(m, n), pv = pair_raw(v, n);
    double sc = cpu->sumsq(pg.c, n), sg = gpu->sumsq(pg.g, n);
    printf("  %-34s cpu=%.9g gpu=%.9g\n", "sumsq", sc, sg);
    CHECK(fabs(sc - sg) <= 1e-12 * sc, "sumsq: cpu %.12g gpu %.12g", sc, sg);  // fp64 sums of fp32 squares
    cpu->scale(pg.c, n, 0.37f);
    gpu->scale(pg.g, n, 0.37f);
    compare("scale", &pg, 0);  // one fp32 multiply: exact
    for (int t = 1; t <= 3; t++) {
        cpu->adamw(pp.c, pg.c, pm.c, pv.c, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, t);
        gpu->adamw(pp.g, pg.g, pm.g, pv.g, n, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, t);
    }
    compare("adamw p (3 steps)", &pp, 1e-6);  // fp32, same formula (division vs fma rounding)
    compare("adamw m", &pm, 1e-6);
    compare("adamw v", &pv, 1e-6);
    pair_free(&pp), pair_free(&pg), pair_free(&pm), pair_free(&pv);
    free(p), free(g), free(m), free(v);
}

/* LeMo block scores against the CPU twin on identical bf16 q, k; workspaces start as
 * garbage on both. Two GPU runs must agree bit for bit (no atomics in the reduction). */
static void test_lemo_scores(void) {
    struct { int S, NH, NKV, HS, B, rising; } cs[] = {
        {64, 32, 32, 64, 64, 0},       // one block: the diagonal pair alone
        {1024, 32, 8, 128, 64, 0}, {1024, 8, 1, 64, 64, 1}, {1024, 32, 32, 128, 64, 0},
        {4096, 32, 32, 64, 64, 0}, {4096, 32, 8, 128, 64, 0}, {4096, 8, 1, 64, 64, 0},
        {16384, 32, 8, 128, 64, 0},
        // the other block sizes; head sizes that end in a narrower stage (80 = 64 + 16,
        // 96 = 64 + 32), one stage of 16, four stages of 64
        {2048, 8, 2, 128, 32, 0}, {2048, 8, 2, 64, 128, 1}, {1024, 4, 2, 80, 64, 1},
        {192, 6, 3, 96, 64, 1}, {256, 2, 1, 16, 64, 0}, {512, 4, 1, 256, 128, 0}, {512, 4, 4, 256, 64, 1},
    };
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        int S = cs[ci].S, NH = cs[ci].NH, NKV = cs[ci].NKV, HS = cs[ci].HS, B = cs[ci].B, nb = S / B;
        size_t nq = (size_t)S * NH * HS, nk = (size_t)S * NKV * HS;
        float *q = host_rand(nq, 2.0f), *k = host_rand(nk, 2.0f);
        if (cs[ci].rising) {
            // keys grow along their block and queries lean positive, so each row's largest
            // products sit at keys the diagonal pair's causal cut must hide
            for (size_t e = 0; e < nq; e++) q[e] = bf16_round(fabsf(q[e]) + 0.1f);
            for (int j = 0; j < S; j++)
                for (size_t e = 0; e < (size_t)NKV * HS; e++) {
                    float *x = &k[(size_t)j * NKV * HS + e];
                    *x = bf16_round((fabsf(*x) + 0.2f) * (1.0f + 3.0f * (float)(j % B) / B));
                }
        }
        Pair pq = pair_act(q, nq), pk = pair_act(k, nk), ps = pair_out(nb, 0), ps2 = pair_out(nb, 0);
        size_t wc = cpu->lemo_scores_ws_bytes(S, B), wg = gpu->lemo_scores_ws_bytes(S, B);
        CHECK(wg == cuda_lemo_scores_ws(S, B), "lemo_scores_ws_bytes %zu, backend_cuda.h says %zu", wg,
              cuda_lemo_scores_ws(S, B));
        void *wsc = malloc(wc), *wsg = gpu->alloc(wg), *junk = malloc(wg);
        memset(wsc, 0xFF, wc), memset(junk, 0xFF, wg);
        gpu->copy_to_device(wsg, junk, wg);
        double t0 = now_ms();
        cpu->lemo_block_scores(ps.c, pq.c, pk.c, S, NH, NKV, HS, B, wsc);
        double t1 = now_ms();
        gpu->lemo_block_scores(ps.g, pq.g, pk.g, S, NH, NKV, HS, B, wsg);
        gpu->sync();
        double t2 = now_ms();
        gpu->lemo_block_scores(ps2.g, pq.g, pk.g, S, NH, NKV, HS, B, wsg);  // warm, and the repeat
        gpu->sync();
        double t3 = now_ms();
        char name[96];
        snprintf(name, sizeof name, "lemo_block_scores (S=%d %d/%d HS=%d B=%d%s)", S, NH, NKV, HS, B,
                 cs[ci].rising ? " rising" : "");
        printf("  %s: cpu %.1f ms, gpu %.2f ms (first call %.2f)\n", name, t1 - t0, t3 - t2, t2 - t1);
        // the same exact bf16 products summed in another order (fp32 tensor-core
        // accumulation vs sgemm): an H200 showed <= 4e-7 on every score; a causal-cut or
        // head-mapping bug moves scores by percents
        compare(name, &ps, 5e-6);
        compare_each("  elementwise", &ps, 1e-6, 1e-5);
        gpu->copy_to_host(ps2.c, ps.g, (size_t)nb * 4);  // the first GPU run against the second
        compare_exact("  second GPU run bit-identical", &ps2);
        free(wsc), free(junk), gpu->free(wsg);
        pair_free(&pq), pair_free(&pk), pair_free(&ps), pair_free(&ps2);
        free(q), free(k);
    }
}

/* LeMo's block matrix (unreduced) and its reduction, against the CPU on the same inputs. */
static void test_lemo_matrix(void) {
    struct { int S, NH, NKV, HS, B; } cs[] = {{1024, 6, 2, 64, 64}, {4096, 32, 8, 128, 64}, {2048, 8, 2, 64, 128}};
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        int S = cs[ci].S, NH = cs[ci].NH, NKV = cs[ci].NKV, HS = cs[ci].HS, B = cs[ci].B, nb = S / B;
        size_t nq = (size_t)S * NH * HS, nk = (size_t)S * NKV * HS, tri = lemo_tri_size(nb);
        float *q = host_rand(nq, 2.0f), *k = host_rand(nk, 2.0f);
        Pair pq = pair_act(q, nq), pk = pair_act(k, nk), pa = pair_out(tri, 0), ps = pair_out(nb, 0);
        cpu->lemo_block_matrix(pa.c, pq.c, pk.c, S, NH, NKV, HS, B);
        gpu->lemo_block_matrix(pa.g, pq.g, pk.g, S, NH, NKV, HS, B);
        char name[96];
        snprintf(name, sizeof name, "lemo_block_matrix (S=%d %d/%d HS=%d B=%d)", S, NH, NKV, HS, B);
        compare(name, &pa, 5e-6);
        compare_each("  elementwise", &pa, 1e-6, 1e-5);
        // the reduction of the same triangle (the GPU's copy uploaded to both)
        gpu->copy_to_host(pa.c, pa.g, tri * 4);
        cpu->lemo_matrix_scores(ps.c, pa.c, nb);
        gpu->lemo_matrix_scores(ps.g, pa.g, nb);
        compare("  lemo_matrix_scores", &ps, 1e-6);
        pair_free(&pq), pair_free(&pk), pair_free(&pa), pair_free(&ps);
        free(q), free(k);
    }
}

/* LeMo's predictors: forward (the predicted triangle and every activation the backward
 * reads), backward (weight gradients accumulated onto the same start) and SmoothL1, against
 * the CPU on the same bf16 input and fp32 weights. Both sides run fp32 GEMMs, summed in
 * other orders. */
static void test_lemo_predictor(void) {
    struct { int S, C, HS, B, H1, H2; } cs[] = {
        {1024, 384, 64, 64, 128, 128},   // refmodel-22m's shape, the default widths
        {512, 256, 32, 32, 16, 24},      // odd widths, block 32
        {2048, 512, 64, 128, 32, 8192},  // H2 = D, the paper's second width
        {4096, 4096, 128, 64, 128, 128},  // Llama-2-7B's widths (train_bench times it at length)
    };
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        int S = cs[ci].S, C = cs[ci].C, HS = cs[ci].HS, B = cs[ci].B, H1 = cs[ci].H1, H2 = cs[ci].H2, nb = S / B;
        size_t nw = lemo_predictor_weights(B, HS, H1, H2), na = lemo_predictor_acts(S, C, HS, B, H1, H2);
        size_t tri = lemo_tri_size(nb), nws = lemo_predictor_bwd_ws(S, C, HS, B, H1, H2);
        float *h = host_rand((size_t)S * C, 1.0f), *w = malloc(nw * 4);
        // weights at PyTorch's nn.Linear scale per layer (uniform +-1/sqrt(in)): the first
        // layer's in is D, the others' H1 and H2
        size_t half = nw / 2, n1 = (size_t)H1 * B * HS, n2 = (size_t)H2 * H1;
        for (size_t i = 0; i < nw; i++) {
            size_t j = i % half;
            int in = j < n1 ? B * HS : j < n1 + n2 ? H1 : H2;
            w[i] = rng_uniform() / sqrtf((float)in);
        }
        Pair ph = pair_act(h, (size_t)S * C), pw = pair_raw(w, nw), pa = pair_out(tri, 0), pact = pair_out(na, 0);
        cpu->lemo_predictor_forward(pa.c, pact.c, ph.c, pw.c, S, C, HS, B, H1, H2);
        gpu->sync();
        double t0 = now_ms();
        gpu->lemo_predictor_forward(pa.g, pact.g, ph.g, pw.g, S, C, HS, B, H1, H2);
        gpu->sync();
        double t1 = now_ms();
        gpu->lemo_predictor_forward(pa.g, pact.g, ph.g, pw.g, S, C, HS, B, H1, H2);
        gpu->sync();
        double t2 = now_ms();
        char name[112];
        snprintf(name, sizeof name, "lemo_predictor_forward (S=%d C=%d HS=%d B=%d %d-%d)", S, C, HS, B, H1, H2);
        printf("  %s: gpu %.2f ms (first call %.2f)\n", name, t2 - t1, t1 - t0);
        compare(name, &pa, 2e-5);
        compare("  acts", &pact, 2e-5);
        // backward: dA from SmoothL1 against a random target, dw accumulated onto random values
        float *t = malloc(tri * 4);
        for (size_t i = 0; i < tri; i++) t[i] = ((float *)pa.c)[i] + rng_uniform();
        float *dw0 = host_rand(nw, 0.01f);
        Pair pt = pair_raw(t, tri), pd = pair_out(tri, 0), pdw = pair_raw(dw0, nw);
        gpu->copy_to_device(pa.g, pa.c, tri * 4);  // both from the CPU's prediction
        double lc = cpu->lemo_smooth_l1(pd.c, pa.c, pt.c, tri, 0.5f, 1.0f / (float)tri);
        double lg = gpu->lemo_smooth_l1(pd.g, pa.g, pt.g, tri, 0.5f, 1.0f / (float)tri);
        printf("  lemo_smooth_l1: cpu %.12g gpu %.12g\n", lc, lg);
        CHECK(fabs(lc - lg) <= 1e-9 * fabs(lc) + 1e-12, "lemo_smooth_l1: cpu %.12g gpu %.12g", lc, lg);
        compare("  lemo_smooth_l1 d", &pd, 1e-7);
        float *wsc = malloc(nws * 4);
        void *wsg = gpu->alloc(nws * 4);
        memset(wsc, 0xFF, nws * 4);
        gpu->copy_to_device(wsg, wsc, nws * 4);
        gpu->copy_to_device(pact.g, pact.c, na * 4);  // the same acts on both
        gpu->copy_to_device(pd.g, pd.c, tri * 4);
        cpu->lemo_predictor_backward(pdw.c, pd.c, pact.c, pw.c, S, C, HS, B, H1, H2, wsc);
        gpu->lemo_predictor_backward(pdw.g, pd.g, pact.g, pw.g, S, C, HS, B, H1, H2, wsg);
        compare("  lemo_predictor_backward dw", &pdw, 1e-4);
        free(wsc), gpu->free(wsg), free(t), free(dw0), free(h), free(w);
        pair_free(&ph), pair_free(&pw), pair_free(&pa), pair_free(&pact), pair_free(&pt), pair_free(&pd);
        pair_free(&pdw);
    }
}

/* n scores with ties, NaN, -0 and +0 and infinities on purpose: half drawn from a few levels,
 * half continuous. */
static float *lemo_tied_scores(int n) {
    static const float lv[] = {NAN, -INFINITY, -1.0f, -0.0f, 0.0f, 0.5f, 0.5f, 2.0f, INFINITY};
    float *s = malloc((size_t)n * sizeof(float));
    for (int b = 0; b < n; b++)
        s[b] = rng_next() & 1 ? lv[rng_next() % (sizeof lv / sizeof lv[0])] : rng_uniform();
    return s;
}

/* The selection on identical scores uploaded to both backends: the same rows exactly. */
static void lemo_check_select(const char *what, Pair *ps, int nb, int k, int B) {
    Pair pi = pair_out((size_t)k * B, 0);
    size_t wc = cpu->lemo_select_ws_bytes(nb), wg = gpu->lemo_select_ws_bytes(nb);
    void *wsc = malloc(wc ? wc : 1), *wsg = gpu->alloc(wg), *junk = malloc(wg);
    memset(junk, 0xFF, wg);
    gpu->copy_to_device(wsg, junk, wg);
    cpu->lemo_select_blocks(pi.c, ps->c, nb, k, B, wsc);
    double t0 = now_ms();
    gpu->lemo_select_blocks(pi.g, ps->g, nb, k, B, wsg);
    gpu->sync();
    double t1 = now_ms();
    char name[96];
    snprintf(name, sizeof name, "%s nb=%d k=%d B=%d (%.2f ms)", what, nb, k, B, t1 - t0);
    compare_exact(name, &pi);
    free(wsc), free(junk), gpu->free(wsg);
    pair_free(&pi);
}

static void test_lemo_select(void) {
    struct { int nb, B; } cs[] = {{1, 64}, {2, 64}, {7, 64}, {33, 16}, {256, 64}, {2049, 64}, {100000, 3}, {3000000, 1}};
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        int nb = cs[ci].nb, B = cs[ci].B;
        float *s = lemo_tied_scores(nb);
        for (int sink = 0; sink < 2; sink++) {
            s[0] = sink ? INFINITY : NAN;  // the sink on the bottom, then on top
            Pair ps = pair_raw(s, nb);
            int ks[5] = {1, 2, nb / 3 + 1, nb - 1, nb};
            for (int i = 0; i < 5; i++)
                if (ks[i] >= 1 && ks[i] <= nb && (i == 0 || ks[i] > ks[i - 1]))
                    lemo_check_select(sink ? "lemo_select_blocks (sink on top)" : "lemo_select_blocks", &ps, nb,
                                      ks[i], B);
            pair_free(&ps);
        }
        free(s);
    }
    // every score equal: the lowest blocks win
    int nb = 5000;
    float *s = malloc(nb * sizeof(float));
    for (int b = 0; b < nb; b++) s[b] = 1.0f;
    Pair ps = pair_raw(s, nb);
    lemo_check_select("lemo_select_blocks (all equal)", &ps, nb, 2000, 64);
    pair_free(&ps);
    free(s);

    // random scores: the same hash on both, then the same blocks
    int ns[3] = {1, 64, 2048};
    for (int i = 0; i < 3; i++) {
        uint64_t seed = rng_next();
        Pair pr = pair_out(ns[i], 0);
        cpu->lemo_random_scores(pr.c, ns[i], seed);
        gpu->lemo_random_scores(pr.g, ns[i], seed);
        char name[64];
        snprintf(name, sizeof name, "lemo_random_scores (nb=%d)", ns[i]);
        compare_exact(name, &pr);
        lemo_check_select("  select from them", &pr, ns[i], ns[i] * 2 / 5 + 1, 64);
        pair_free(&pr);
    }

    // CUB's temporary storage fits the plain-C bound the estimate uses, up to nb = 2^31 - 1
    double worst = 0;
    long worst_nb = 0;
    for (double x = 1; x < 2147483647.0; x *= 1.37) {
        for (int d = -1; d <= 1; d++) {
            long n = (long)x + d;
            if (n < 1 || n > 2147483647L) continue;
            size_t need = cuda_lemo_select_cub_bytes((int)n), bound = cuda_lemo_select_cub_bound((int)n);
            double r = (double)need / bound;
            if (r > worst) worst = r, worst_nb = n;
            CHECK(need <= bound, "CUB needs %zu bytes for nb=%ld, the bound is %zu", need, n, bound);
        }
    }
    printf("  %-34s worst need/bound %.3f at nb=%ld (bound %zu, need %zu)\n", "lemo select CUB storage", worst,
           worst_nb, cuda_lemo_select_cub_bound((int)worst_nb), cuda_lemo_select_cub_bytes((int)worst_nb));
    CHECK(gpu->lemo_select_ws_bytes(1000) == cuda_lemo_select_ws(1000), "lemo_select_ws_bytes differs from backend_cuda.h");
}

static void test_memory(void) {
    size_t before = gpu->mem_used();
    void *p = gpu->alloc(3u << 20);
    CHECK(p != NULL, "alloc of 3 MiB failed");
    CHECK(gpu->mem_used() >= before + (3u << 20), "mem_used %zu did not grow by 3 MiB from %zu", gpu->mem_used(), before);
    unsigned char *h = malloc(3u << 20);
    gpu->copy_to_host(h, p, 3u << 20);
    size_t nz = 0;
    for (size_t i = 0; i < (3u << 20); i++) nz += h[i] != 0;
    CHECK(nz == 0, "alloc not zeroed: %zu non-zero bytes", nz);
    gpu->free(p);
    CHECK(gpu->mem_used() == before, "mem_used %zu after free, %zu before", gpu->mem_used(), before);
    // upload from each source dtype
    uint16_t bf[4] = {0x3f80, 0xc000, 0x3e80, 0x7f80};  // 1, -2, 0.25, inf
    uint16_t hf[4] = {0x3c00, 0xc000, 0x3400, 0x0001};  // 1, -2, 0.25, 2^-24
    float f[4] = {1.0f, -2.0f, 0.25f, 3.0f}, out[4];
    void *d = gpu->alloc(8);
    gpu->upload_act(d, bf, DT_BF16, 4);
    gpu->download_act(out, d, 4);
    CHECK(out[0] == 1 && out[1] == -2 && out[2] == 0.25f && isinf(out[3]), "bf16 upload: %g %g %g %g", out[0], out[1], out[2], out[3]);
    gpu->upload_act(d, hf, DT_F16, 4);
    gpu->download_act(out, d, 4);
    CHECK(out[0] == 1 && out[1] == -2 && out[2] == 0.25f && out[3] == bf16_round(5.9604645e-8f), "f16 upload: %g %g %g %g", out[0], out[1], out[2], out[3]);
    gpu->upload_act(d, f, DT_F32, 4);
    gpu->download_act(out, d, 4);
    CHECK(out[0] == 1 && out[1] == -2 && out[2] == 0.25f && out[3] == 3, "f32 upload: %g %g %g %g", out[0], out[1], out[2], out[3]);
    gpu->free(d);
    free(h);
}

int main(void) {
    const char *why = NULL;
    gpu = backend_cuda(&why);
    if (!gpu) SKIP("CUDA backend unavailable: %s", why ? why : "unknown");
    cpu = backend_cpu();
    CHECK(gpu->act_dtype == DT_BF16 && gpu->act_size == 2, "act dtype %d size %zu", gpu->act_dtype, gpu->act_size);
    const char *env = getenv("LEMO_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) * 2654435761u + (uint64_t)clock();
    rng_state = seed ? seed : 1;
    printf("test_cuda_ops: seed %llu (LEMO_TEST_SEED to repeat)\n", (unsigned long long)seed);
    // LEMO_TEST_ONLY=word runs only the cases whose name holds it (e.g. lemo, attention)
    const char *only = getenv("LEMO_TEST_ONLY");
    struct { const char *name; void (*fn)(void); } cases[] = {
        {"memory", test_memory}, {"rows", test_rows}, {"rmsnorm", test_rmsnorm}, {"matmul", test_matmul},
        {"lora", test_lora}, {"rope", test_rope}, {"attention", test_attention}, {"swiglu", test_swiglu},
        {"lm_head", test_lm_head}, {"optim", test_optim}, {"lemo_scores", test_lemo_scores},
        {"lemo_select", test_lemo_select}, {"lemo_matrix", test_lemo_matrix}, {"lemo_predictor", test_lemo_predictor},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!only || strstr(cases[i].name, only)) cases[i].fn();
    gpu->sync();
    return check_done("test_cuda_ops");
}
