/* attn_bench.c: our kernels' speed on the GPU, for the ratios bench/run.sh prints.
 *
 *   attention: causal flash attention forward and backward through the Backend
 *              table at S tokens, NH heads (NKV = NH), head size 128 and 64, batch 1;
 *              TFLOP/s counts the causal half of the two (forward) and five
 *              (backward) S x S x HS matrix products: fwd 2*S*S*NH*HS, bwd 2.5x that.
 *   matmul:    one bf16 GEMM (M=N=K=8192) through matmul_forward, the device's
 *              matrix ceiling as cuBLAS reaches it.
 * Inputs are random (never zeros); each timing is the median of `iters` runs, each
 * synchronized before and after, after two warm-up runs. Prints one JSON object a
 * line, for bench/run.sh to read.
 * Usage: attn_bench [S=16384] [NH=32] [iters=10] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "cuda/backend_cuda.h"

static const Backend *be;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A device act tensor of n random values uniform(-a, a). */
static void *rand_act(size_t n, float a, unsigned *seed) {
    float *h = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = a * ((float)rand_r(seed) / RAND_MAX * 2.0f - 1.0f);
    void *d = be->alloc(n * be->act_size);
    if (!d) {
        fprintf(stderr, "attn_bench: out of device memory for %zu elements\n", n);
        exit(1);
    }
    be->upload_act(d, h, DT_F32, n);
    free(h);
    return d;
}

typedef void (*RunFn)(void *ctx);

/* Median seconds of fn over iters runs after two warm-ups. */
static double time_median(RunFn fn, void *ctx, int iters) {
    double *t = malloc(iters * sizeof(double));
    for (int i = 0; i < 2; i++) fn(ctx);
    be->sync();
    for (int i = 0; i < iters; i++) {
        double t0 = now_s();
        fn(ctx);
        be->sync();
        t[i] = now_s() - t0;
    }
    qsort(t, iters, sizeof(double), cmp_double);
    double m = t[iters / 2];
    free(t);
    return m;
}

typedef struct {
    int S, NH, HS;
    void *q, *k, *v, *o, *dout, *dq, *dk, *dv, *ws;
    float *lse;
} Attn;

static void run_fwd(void *c) {
    Attn *a = c;
    be->attention_forward(a->o, a->lse, a->q, a->k, a->v, a->S, a->NH, a->NH, a->HS);
}

static void run_bwd(void *c) {
    Attn *a = c;
    be->attention_backward(a->dq, a->dk, a->dv, a->dout, a->o, a->lse, a->q, a->k, a->v, a->S,
                           a->NH, a->NH, a->HS, a->ws);
}

typedef struct {
    int n;
    void *a, *b, *c;
} Gemm;

static void run_gemm(void *c) {
    Gemm *g = c;
    be->matmul_forward(g->c, g->a, g->b, NULL, g->n, g->n, g->n, 0);
}

int main(int argc, char **argv) {
    int S = argc > 1 ? atoi(argv[1]) : 16384, NH = argc > 2 ? atoi(argv[2]) : 32;
    int iters = argc > 3 ? atoi(argv[3]) : 10;
    const char *why = NULL;
    be = backend_cuda(&why);
    if (!be) {
        fprintf(stderr, "attn_bench: CUDA backend unavailable: %s\n", why);
        return 77;
    }
    unsigned seed = 1234;
    printf("{\"bench\":\"device\",\"name\":\"%s\"}\n", cuda_device_name());
    Gemm g = {8192, NULL, NULL, NULL};
    size_t gn = (size_t)g.n * g.n;
    g.a = rand_act(gn, 1.0f, &seed);
    g.b = rand_act(gn, 0.02f, &seed);
    g.c = rand_act(gn, 1.0f, &seed);
    double tg = time_median(run_gemm, &g, iters);
    printf("{\"bench\":\"matmul\",\"n\":%d,\"ms\":%.3f,\"tflops\":%.1f}\n", g.n, tg * 1e3,
           2.0 * g.n * (double)g.n * g.n / tg * 1e-12);
    be->free(g.a), be->free(g.b), be->free(g.c);
    int hss[2] = {128, 64};
    for (int hi = 0; hi < 2; hi++) {
        Attn a = {S, NH, hss[hi], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        size_t n = (size_t)S * NH * a.HS;
        a.q = rand_act(n, 1.0f, &seed), a.k = rand_act(n, 1.0f, &seed), a.v = rand_act(n, 1.0f, &seed);
        a.dout = rand_act(n, 1.0f, &seed);
        a.o = be->alloc(n * 2), a.dq = be->alloc(n * 2), a.dk = be->alloc(n * 2), a.dv = be->alloc(n * 2);
        a.lse = be->alloc((size_t)NH * S * sizeof(float));
        a.ws = be->alloc(be->attention_bwd_ws_bytes(S, NH, NH, a.HS));
        double flops = 2.0 * S * (double)S * NH * a.HS;  // causal half of 2 products x 2 flops
        double tf = time_median(run_fwd, &a, iters);
        double tb = time_median(run_bwd, &a, iters);
        printf("{\"bench\":\"attention\",\"S\":%d,\"NH\":%d,\"HS\":%d,\"fwd_ms\":%.3f,\"fwd_tflops\":%.1f,"
               "\"bwd_ms\":%.3f,\"bwd_tflops\":%.1f}\n",
               S, NH, a.HS, tf * 1e3, flops / tf * 1e-12, tb * 1e3, 2.5 * flops / tb * 1e-12);
        void *ps[] = {a.q, a.k, a.v, a.dout, a.o, a.dq, a.dk, a.dv, a.lse, a.ws};
        for (int i = 0; i < 10; i++) be->free(ps[i]);
    }
    printf("{\"bench\":\"mem\",\"peak_bytes\":%zu}\n", cuda_mem_peak());
    return 0;
}
