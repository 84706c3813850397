/* test_parallel.c: the multi-GPU math on the CPU, with the ranks simulated in one process
 * (engine/parallel, kernels/cpu/attention_partial.c; DESIGN section 11).
 *
 * 1. Layouts: zigzag and striped cover every row exactly once for several rank counts,
 *    lengths and units, the inverse map agrees, local rows ascend, and zigzag's causal work
 *    is equal on every rank when the window splits evenly (within 4 N unit / S otherwise).
 * 2. Ring attention: every rank's query rows against each rank's K/V shard in ring order,
 *    merged by log-sum-exp, equal the unsplit causal attention (cpu_attention_forward) within
 *    1e-5 of its largest output, for N = 1, 2, 4, both layouts, GQA, head dims 32 and 64,
 *    lengths that are and are not multiples of 64; the same over LeMo's kept rows re-dealt
 *    over the kept list. The backward through the shards equals cpu_attention_backward
 *    and finite differences of the ring's merged output.
 * 3. Data parallel: the sum all-reduce of per-rank LoRA gradients over disjoint shares of a
 *    step's windows, each scaled by the step's target count, equals the one-GPU gradient of
 *    the step (dropout on, uneven target counts); the windows-to-ranks split walks the
 *    trainer's cursor and covers every window once per epoch.
 * 4. The run-time checks and the mode auto picks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cpu/cpu_ops.h"
#include "data.h"
#include "job_config.h"
#include "model.h"
#include "parallel.h"
#include "partition.h"
#include "tiny_model.h"

static const char *kind_name(int kind) { return kind == PAR_ZIGZAG ? "zigzag" : "striped"; }

/* ---- 1. layouts ---- */

static void layout_checks(int kind, int S, int N, int unit) {
    ParSplit p = par_split(kind, S, N, unit);
    int *seen = calloc((size_t)S + 1, sizeof(int)), total = 0, ok_inv = 1, ok_asc = 1, ok_range = 1;
    int *rows = malloc(sizeof(int) * ((size_t)S + 1));
    for (int r = 0; r < N; r++) {
        int n = par_rank_rows(&p, r);
        total += n;
        par_rank_global_rows(&p, r, rows);
        for (int i = 0; i < n; i++) {
            int g = rows[i], rr = -1, ii = -1;
            if (g < 0 || g >= S) { ok_range = 0; continue; }
            seen[g]++;
            par_locate(&p, g, &rr, &ii);
            if (rr != r || ii != i) ok_inv = 0;
            if (i && rows[i - 1] >= g) ok_asc = 0;
        }
    }
    int once = 1;
    for (int g = 0; g < S; g++) once &= seen[g] == 1;
    CHECK(total == S && once && ok_range, "%s S %d N %d unit %d: rows not covered exactly once (total %d)",
          kind_name(kind), S, N, unit, total);
    CHECK(ok_inv, "%s S %d N %d unit %d: par_locate disagrees with par_global_row", kind_name(kind), S, N, unit);
    CHECK(ok_asc, "%s S %d N %d unit %d: local rows not in ascending global order", kind_name(kind), S, N, unit);
    int mx = 0;
    for (int r = 0; r < N; r++) mx = par_rank_rows(&p, r) > mx ? par_rank_rows(&p, r) : mx;
    CHECK(par_max_rows(&p) == mx, "%s S %d N %d: max rows %d, want %d", kind_name(kind), S, N, par_max_rows(&p), mx);
    if (kind == PAR_ZIGZAG) {  // chunks are whole units: a unit never straddles two ranks
        int straddle = 0;
        for (int g = 0; g < S; g++) {
            int r0, i0, r1, i1;
            par_locate(&p, g, &r0, &i0);
            par_locate(&p, (g / unit) * unit, &r1, &i1);
            straddle |= r0 != r1;
        }
        CHECK(!straddle, "zigzag S %d N %d unit %d: a unit lies on two ranks", S, N, unit);
    }
    // causal balance: sum over a rank's rows of g + 1
    long long wmin = -1, wmax = 0, wsum = 0;
    for (int r = 0; r < N; r++) {
        long long w = par_causal_work(&p, r);
        wsum += w;
        wmin = wmin < 0 || w < wmin ? w : wmin;
        wmax = w > wmax ? w : wmax;
    }
    CHECK(wsum == (long long)S * (S + 1) / 2, "%s S %d N %d: causal work sums to %lld", kind_name(kind), S, N, wsum);
    double mean = (double)wsum / N, imb = (wmax - wmin) / mean;
    if (kind == PAR_ZIGZAG && S % (2 * N * unit) == 0)
        CHECK(wmax == wmin, "zigzag S %d N %d unit %d: causal work %lld..%lld, want equal", S, N, unit, wmin, wmax);
    if (kind == PAR_ZIGZAG && S >= 2 * N * unit)
        CHECK(imb <= 4.0 * N * unit / S, "zigzag S %d N %d unit %d: causal imbalance %.4f over 4 N unit / S = %.4f", S, N,
              unit, imb, 4.0 * N * unit / S);
    if (kind == PAR_STRIPED && unit == 1 && S >= N)
        CHECK(imb <= 2.0 * N / S, "striped S %d N %d: causal imbalance %.4f over 2 N / S = %.4f", S, N, imb,
              2.0 * N / S);
    free(seen);
    free(rows);
}

static void layouts(void) {
    static const int Ss[] = {1, 7, 64, 100, 128, 1000, 1024, 4096, 4097, 12288};
    static const int Ns[] = {1, 2, 3, 4, 8};
    static const int units[] = {1, 64, 128};
    for (int kind = 0; kind < 2; kind++)
        for (size_t a = 0; a < sizeof Ss / sizeof *Ss; a++)
            for (size_t b = 0; b < sizeof Ns / sizeof *Ns; b++)
                for (size_t c = 0; c < sizeof units / sizeof *units; c++) layout_checks(kind, Ss[a], Ns[b], units[c]);
    // the layouts themselves, spelled out
    ParSplit z = par_split(PAR_ZIGZAG, 8, 2, 1), s = par_split(PAR_STRIPED, 5, 2, 1);
    int r0[4], r1[4], s0[3], s1[2];
    par_rank_global_rows(&z, 0, r0);
    par_rank_global_rows(&z, 1, r1);
    par_rank_global_rows(&s, 0, s0);
    par_rank_global_rows(&s, 1, s1);
    CHECK(r0[0] == 0 && r0[1] == 1 && r0[2] == 6 && r0[3] == 7 && r1[0] == 2 && r1[3] == 5,
          "zigzag 8 over 2: rank 0 {0,1,6,7}, rank 1 {2,3,4,5}");
    CHECK(par_rank_rows(&s, 0) == 3 && s0[0] == 0 && s0[1] == 2 && s0[2] == 4 && s1[0] == 1 && s1[1] == 3,
          "striped 5 over 2: rank 0 {0,2,4}, rank 1 {1,3}");
    ParSplit zu = par_split(PAR_ZIGZAG, 1024, 4, 64);  // 8 chunks of 128 rows: rank 1 holds 128..255 and 768..895
    CHECK(par_rank_rows(&zu, 1) == 256 && par_global_row(&zu, 1, 0) == 128 && par_global_row(&zu, 1, 128) == 768,
          "zigzag 1024 over 4 in 64-row units");
    // a contiguous split, for contrast, is far off balance: the metric can fail
    long long first = 0, last = 0;
    for (int g = 0; g < 256; g++) first += g + 1;
    for (int g = 768; g < 1024; g++) last += g + 1;
    CHECK((double)(last - first) / ((1024.0 * 1025 / 2) / 4) > 1.0, "contiguous split should be unbalanced");
    // the ring visits every shard once
    for (int N = 1; N <= 8; N++)
        for (int r = 0; r < N; r++) {
            int mask = 0;
            for (int t = 0; t < N; t++) mask |= 1 << par_ring_src(r, t, N);
            CHECK(mask == (1 << N) - 1 && par_ring_src(r, 0, N) == r &&
                      par_ring_src(par_ring_next(r, N), 1, N) == r && par_ring_prev(par_ring_next(r, N), N) == r,
                  "ring of %d from rank %d", N, r);
        }
}

/* ---- 2. ring attention ---- */

static unsigned long long rng = 12345;
static float urand(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) / 16777216.0) * 2 - 1;
}
static float *rand_buf(size_t n, float amp) {
    float *x = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) x[i] = amp * urand();
    return x;
}

/* Rows of x (rows, width) at idx into out (n, width). */
static void gather(float *out, const float *x, const int *idx, int n, int width) {
    for (int i = 0; i < n; i++) memcpy(out + (size_t)i * width, x + (size_t)idx[i] * width, sizeof(float) * width);
}

/* A simulated context-parallel attention over n rows of q (n,NH,HS), k, v (n,NKV,HS) whose
 * row i sits at position pos[i] (ascending), split by p over p->N ranks: each rank's queries
 * against the shards of par_ring_src(r, t) for t = 0..N-1, merged. out (n,NH,HS) and lse
 * (NH,n) written in the unsplit row order. With dout (n,NH,HS) non-NULL also the backward:
 * dq, dk, dv (n, ...) written, dk and dv summed in per-shard buffers as they would travel. */
typedef struct {
    int n, NH, NKV, HS;
    const float *q, *k, *v;
    const int *pos;
} Attn;

static void ring_attention(const Attn *a, const ParSplit *p, float *out, float *lse, const float *dout, float *dq,
                           float *dk, float *dv) {
    int N = p->N, qw = a->NH * a->HS, kw = a->NKV * a->HS, mr = par_max_rows(p);
    int **rows = malloc(sizeof(int *) * N), **pos = malloc(sizeof(int *) * N), *nr = malloc(sizeof(int) * N);
    float **qr = malloc(sizeof(float *) * N), **kr = malloc(sizeof(float *) * N), **vr = malloc(sizeof(float *) * N);
    float **o = malloc(sizeof(float *) * N), **l = malloc(sizeof(float *) * N);
    for (int r = 0; r < N; r++) {  // what each rank holds: its rows of q, k, v and their positions
        nr[r] = par_rank_rows(p, r);
        rows[r] = malloc(sizeof(int) * (nr[r] + 1));
        pos[r] = malloc(sizeof(int) * (nr[r] + 1));
        par_rank_global_rows(p, r, rows[r]);
        for (int i = 0; i < nr[r]; i++) pos[r][i] = a->pos[rows[r][i]];
        qr[r] = malloc(sizeof(float) * ((size_t)nr[r] * qw + 1));
        kr[r] = malloc(sizeof(float) * ((size_t)nr[r] * kw + 1));
        vr[r] = malloc(sizeof(float) * ((size_t)nr[r] * kw + 1));
        gather(qr[r], a->q, rows[r], nr[r], qw);
        gather(kr[r], a->k, rows[r], nr[r], kw);
        gather(vr[r], a->v, rows[r], nr[r], kw);
        o[r] = calloc((size_t)nr[r] * qw + 1, sizeof(float));
        l[r] = malloc(sizeof(float) * ((size_t)a->NH * nr[r] + 1));
    }
    float *po = malloc(sizeof(float) * ((size_t)mr * qw + 1)), *pl = malloc(sizeof(float) * ((size_t)a->NH * mr + 1));
    for (int r = 0; r < N; r++) {
        for (int i = 0; i < a->NH * nr[r]; i++) l[r][i] = -INFINITY;
        for (int t = 0; t < N; t++) {
            int s = par_ring_src(r, t, N);
            cpu_attention_partial_forward(po, pl, qr[r], pos[r], nr[r], kr[s], vr[s], pos[s], nr[s], a->NH, a->NKV,
                                          a->HS);
            cpu_attention_merge(o[r], l[r], po, pl, nr[r], a->NH, a->HS);
        }
        for (int i = 0; i < nr[r]; i++) {
            memcpy(out + (size_t)rows[r][i] * qw, o[r] + (size_t)i * qw, sizeof(float) * qw);
            for (int h = 0; h < a->NH; h++) lse[(size_t)h * a->n + rows[r][i]] = l[r][(size_t)h * nr[r] + i];
        }
    }
    if (dout) {
        float **dqr = malloc(sizeof(float *) * N), **dkr = malloc(sizeof(float *) * N), **dvr = malloc(sizeof(float *) * N);
        float **dor = malloc(sizeof(float *) * N), **D = malloc(sizeof(float *) * N);
        for (int r = 0; r < N; r++) {
            dqr[r] = calloc((size_t)nr[r] * qw + 1, sizeof(float));
            dkr[r] = calloc((size_t)nr[r] * kw + 1, sizeof(float));  // travels with shard r
            dvr[r] = calloc((size_t)nr[r] * kw + 1, sizeof(float));
            dor[r] = malloc(sizeof(float) * ((size_t)nr[r] * qw + 1));
            D[r] = malloc(sizeof(float) * ((size_t)a->NH * nr[r] + 1));
            gather(dor[r], dout, rows[r], nr[r], qw);
            cpu_attention_rowdot(D[r], dor[r], o[r], nr[r], a->NH, a->HS);
        }
        for (int r = 0; r < N; r++)
            for (int t = 0; t < N; t++) {
                int s = par_ring_src(r, t, N);
                cpu_attention_partial_backward(dqr[r], dkr[s], dvr[s], dor[r], l[r], D[r], qr[r], pos[r], nr[r], kr[s],
                                               vr[s], pos[s], nr[s], a->NH, a->NKV, a->HS);
            }
        for (int r = 0; r < N; r++) {
            for (int i = 0; i < nr[r]; i++) {
                memcpy(dq + (size_t)rows[r][i] * qw, dqr[r] + (size_t)i * qw, sizeof(float) * qw);
                memcpy(dk + (size_t)rows[r][i] * kw, dkr[r] + (size_t)i * kw, sizeof(float) * kw);
                memcpy(dv + (size_t)rows[r][i] * kw, dvr[r] + (size_t)i * kw, sizeof(float) * kw);
            }
            free(dqr[r]), free(dkr[r]), free(dvr[r]), free(dor[r]), free(D[r]);
        }
        free(dqr), free(dkr), free(dvr), free(dor), free(D);
    }
    for (int r = 0; r < N; r++) free(rows[r]), free(pos[r]), free(qr[r]), free(kr[r]), free(vr[r]), free(o[r]), free(l[r]);
    free(rows), free(pos), free(nr), free(qr), free(kr), free(vr), free(o), free(l), free(po), free(pl);
}

/* max |a - b| / max |b| over n values. */
static double rel_err(const float *a, const float *b, size_t n) {
    double e = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        e = fmax(e, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? e / m : e;
}

static double lse_err(const float *a, const float *b, size_t n) {
    double e = 0;
    for (size_t i = 0; i < n; i++) e = fmax(e, fabs((double)a[i] - b[i]) / fmax(1.0, fabs((double)b[i])));
    return e;
}

/* Ring forward and backward of one shape against the unsplit op, for N = 1, 2, 4 and both layouts. */
static void ring_case(int S, int NH, int NKV, int HS) {
    size_t nq = (size_t)S * NH * HS, nk = (size_t)S * NKV * HS;
    float *q = rand_buf(nq, 1.5f), *k = rand_buf(nk, 1.5f), *v = rand_buf(nk, 1.0f), *dout = rand_buf(nq, 1.0f);
    float *ref = malloc(4 * nq), *rlse = malloc(4 * (size_t)NH * S);
    float *rdq = malloc(4 * nq), *rdk = malloc(4 * nk), *rdv = malloc(4 * nk);
    void *work = malloc(cpu_attention_bwd_ws_bytes(S, NH, NKV, HS));
    cpu_attention_forward(ref, rlse, q, k, v, S, NH, NKV, HS);
    cpu_attention_backward(rdq, rdk, rdv, dout, ref, rlse, q, k, v, S, NH, NKV, HS, work);
    int *pos = malloc(sizeof(int) * S);
    for (int i = 0; i < S; i++) pos[i] = i;
    Attn a = {S, NH, NKV, HS, q, k, v, pos};
    float *out = malloc(4 * nq), *lse = malloc(4 * (size_t)NH * S), *dq = malloc(4 * nq), *dk = malloc(4 * nk),
          *dv = malloc(4 * nk);
    static const int Ns[] = {1, 2, 4};
    for (int kind = 0; kind < 2; kind++)
        for (int ni = 0; ni < 3; ni++) {
            int N = Ns[ni];
            ParSplit p = par_split(kind, S, N, kind == PAR_ZIGZAG && S % (2 * N * 64) == 0 ? 64 : 1);
            ring_attention(&a, &p, out, lse, dout, dq, dk, dv);
            double eo = rel_err(out, ref, nq), el = lse_err(lse, rlse, (size_t)NH * S);
            double eq = rel_err(dq, rdq, nq), ek = rel_err(dk, rdk, nk), ev = rel_err(dv, rdv, nk);
            CHECK(eo <= 1e-5 && el <= 1e-5, "ring %s N %d S %d NH %d NKV %d HS %d: out %.2e, lse %.2e from unsplit",
                  kind_name(kind), N, S, NH, NKV, HS, eo, el);
            CHECK(eq <= 1e-5 && ek <= 1e-5 && ev <= 1e-5,
                  "ring backward %s N %d S %d NH %d NKV %d HS %d: dq %.2e, dk %.2e, dv %.2e from unsplit", kind_name(kind),
                  N, S, NH, NKV, HS, eq, ek, ev);
        }
    free(q), free(k), free(v), free(dout), free(ref), free(rlse), free(rdq), free(rdk), free(rdv), free(work);
    free(pos), free(out), free(lse), free(dq), free(dk), free(dv);
}

/* LeMo's kept rows in context parallel: the sorted kept list (block 0 and a random share of
 * the other blocks) is re-dealt zigzag over its own length in whole blocks, each rank's rows
 * keep their original positions, and the ring over them equals the unsplit attention of the
 * kept rows. */
static void ring_kept(int S, int B, int N, int NH, int NKV, int HS) {
    int nb = S / B, n = 0, *idx = malloc(sizeof(int) * S);
    for (int b = 0; b < nb; b++)
        if (b == 0 || urand() < -0.2f)  // ~40% of the blocks
            for (int i = 0; i < B; i++) idx[n++] = b * B + i;
    size_t qw = (size_t)NH * HS, kw = (size_t)NKV * HS;
    float *q = rand_buf(S * qw, 1.5f), *k = rand_buf(S * kw, 1.5f), *v = rand_buf(S * kw, 1.0f);
    float *qk = malloc(4 * n * qw), *kk = malloc(4 * n * kw), *vk = malloc(4 * n * kw);
    gather(qk, q, idx, n, (int)qw), gather(kk, k, idx, n, (int)kw), gather(vk, v, idx, n, (int)kw);
    float *ref = malloc(4 * n * qw), *rlse = malloc(4 * (size_t)NH * n), *out = malloc(4 * n * qw),
          *lse = malloc(4 * (size_t)NH * n);
    cpu_attention_forward(ref, rlse, qk, kk, vk, n, NH, NKV, HS);
    Attn a = {n, NH, NKV, HS, qk, kk, vk, idx};
    ParSplit p = par_split(PAR_ZIGZAG, n, N, B);
    ring_attention(&a, &p, out, lse, NULL, NULL, NULL, NULL);
    double eo = rel_err(out, ref, n * qw), el = lse_err(lse, rlse, (size_t)NH * n);
    CHECK(eo <= 1e-5 && el <= 1e-5, "ring over %d kept rows of %d, N %d: out %.2e, lse %.2e from unsplit", n, S, N, eo,
          el);
    // the re-deal balances the kept rows themselves: shares differ by at most 2 blocks
    int lo = n, hi = 0;
    for (int r = 0; r < N; r++) {
        int m = par_rank_rows(&p, r);
        lo = m < lo ? m : lo, hi = m > hi ? m : hi;
    }
    CHECK(hi - lo <= 2 * B, "kept rows re-dealt over %d ranks: %d..%d rows", N, lo, hi);
    free(idx), free(q), free(k), free(v), free(qk), free(kk), free(vk), free(ref), free(rlse), free(out), free(lse);
}

/* Finite differences of L = sum(w * ring output) against the ring backward's gradients, at
 * sampled entries of q, k and v. */
static void ring_fd(int kind, int S, int N, int NH, int NKV, int HS) {
    size_t nq = (size_t)S * NH * HS, nk = (size_t)S * NKV * HS;
    float *q = rand_buf(nq, 1.0f), *k = rand_buf(nk, 1.0f), *v = rand_buf(nk, 1.0f), *w = rand_buf(nq, 1.0f);
    float *out = malloc(4 * nq), *lse = malloc(4 * (size_t)NH * S), *dq = malloc(4 * nq), *dk = malloc(4 * nk),
          *dv = malloc(4 * nk);
    int *pos = malloc(sizeof(int) * S);
    for (int i = 0; i < S; i++) pos[i] = i;
    Attn a = {S, NH, NKV, HS, q, k, v, pos};
    ParSplit p = par_split(kind, S, N, 1);
    ring_attention(&a, &p, out, lse, w, dq, dk, dv);
    float *tensors[3] = {q, k, v}, *grads[3] = {dq, dk, dv};
    size_t sizes[3] = {nq, nk, nk};
    const char *names[3] = {"q", "k", "v"};
    int bad = 0, samples = 0;
    for (int t = 0; t < 3; t++)
        for (int sidx = 0; sidx < 12; sidx++) {
            size_t i = (size_t)((urand() + 1) * 0.5f * (sizes[t] - 1));
            float orig = tensors[t][i], h = 1e-2f;
            double lp = 0, lm = 0;
            tensors[t][i] = orig + h;
            ring_attention(&a, &p, out, lse, NULL, NULL, NULL, NULL);
            for (size_t j = 0; j < nq; j++) lp += (double)w[j] * out[j];
            tensors[t][i] = orig - h;
            ring_attention(&a, &p, out, lse, NULL, NULL, NULL, NULL);
            for (size_t j = 0; j < nq; j++) lm += (double)w[j] * out[j];
            tensors[t][i] = orig;
            double fd = (lp - lm) / (2 * h), g = grads[t][i];
            samples++;
            if (fabs(fd - g) > 2e-3 + 2e-2 * fabs(g) && bad++ < 5)
                fprintf(stderr, "ring fd %s N %d: d%s[%zu]: fd %.6f, backward %.6f\n", kind_name(kind), N, names[t], i, fd,
                        g);
        }
    CHECK(bad == 0, "ring %s N %d S %d: %d of %d sampled gradients disagree with finite differences", kind_name(kind), N,
          S, bad, samples);
    free(q), free(k), free(v), free(w), free(out), free(lse), free(dq), free(dk), free(dv), free(pos);
}

static void ring(void) {
    // head dims 32 and 64; GQA 4 query heads on 2 and on 1 kv head, and plain multi-head;
    // lengths that are and are not multiples of 64 (and of 2N chunks)
    ring_case(64, 2, 2, 32);
    ring_case(100, 4, 2, 32);
    ring_case(256, 4, 1, 64);
    ring_case(300, 4, 2, 64);
    ring_case(517, 2, 1, 32);
    ring_case(1024, 4, 2, 64);
    ring_kept(1024, 64, 2, 4, 2, 32);
    ring_kept(1024, 64, 4, 4, 1, 64);
    ring_kept(960, 32, 3, 2, 2, 32);
    ring_fd(PAR_ZIGZAG, 70, 4, 4, 2, 32);
    ring_fd(PAR_STRIPED, 45, 2, 2, 1, 64);
    // a row that sees no key of a shard: lse -inf and a zero row, and the merge leaves the
    // running state as it was
    float qv[32], kv[32], vv[32], o[32], l[1], mo[32], ml[1] = {0.5f};
    for (int d = 0; d < 32; d++) qv[d] = kv[d] = vv[d] = 1, mo[d] = 2;
    int qp = 3, kp = 7;
    cpu_attention_partial_forward(o, l, qv, &qp, 1, kv, vv, &kp, 1, 1, 1, 32);
    cpu_attention_merge(mo, ml, o, l, 1, 1, 32);
    CHECK(l[0] == -INFINITY && o[0] == 0 && o[31] == 0 && ml[0] == 0.5f && mo[0] == 2,
          "a query before every key of the shard: lse %g, out %g, merged %g", l[0], o[0], mo[0]);
}

/* ---- 3. data parallel ---- */

static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The one-GPU trainer's cursor walk (trainer.c), for comparison with par_step_windows. */
static void trainer_walk(size_t n, uint64_t seed, uint64_t *epoch, size_t *pos, size_t *order, int G, size_t *win) {
    for (int i = 0; i < G; i++) {
        if (*pos == n) {
            (*epoch)++;
            *pos = 0;
            data_shuffle_order(n, seed, *epoch, order);
        }
        win[i] = order[(*pos)++];
    }
}

static void window_split(void) {
    static const size_t ns[] = {1, 7, 10, 24};
    static const int Gs[] = {1, 3, 4, 8};
    static const int Ns[] = {1, 2, 3, 4};
    for (size_t a = 0; a < 4; a++)
        for (size_t b = 0; b < 4; b++)
            for (size_t c = 0; c < 4; c++) {
                size_t n = ns[a];
                int G = Gs[b], N = Ns[c];
                if (N > G) continue;
                size_t *order = malloc(sizeof(size_t) * n), *ord2 = malloc(sizeof(size_t) * n);
                size_t win[8], win2[8];
                uint64_t ep[8], e2 = 0;
                size_t p2 = 0;
                ParCursor cur;
                par_cursor_init(&cur, n, 42, 0, 0, order);
                data_shuffle_order(n, 42, 0, ord2);
                int E = 3, *count = calloc((size_t)(E + 2) * n, sizeof(int)), same = 1, shares = 1;
                while (cur.epoch < (uint64_t)E) {
                    par_step_windows(&cur, G, win, ep);
                    trainer_walk(n, 42, &e2, &p2, ord2, G, win2);
                    same &= !memcmp(win, win2, sizeof(size_t) * G) && cur.epoch == e2 && cur.pos == p2;
                    int covered = 0;
                    for (int r = 0; r < N; r++) {  // every rank's share of the step
                        int lo, hi;
                        par_rank_windows(G, N, r, &lo, &hi);
                        shares &= lo == covered && hi - lo >= G / N && hi - lo <= G / N + 1;
                        covered = hi;
                        for (int j = lo; j < hi; j++)
                            if (ep[j] < (uint64_t)E + 2) count[ep[j] * n + win[j]]++;
                    }
                    shares &= covered == G;
                }
                int once = 1;
                for (int e = 0; e < E; e++)
                    for (size_t w = 0; w < n; w++) once &= count[e * n + w] == 1;
                CHECK(same, "n %zu G %d: par_step_windows is not the trainer's cursor walk", n, G);
                CHECK(shares, "G %d N %d: shares not contiguous, complete and within one window", G, N);
                CHECK(once, "n %zu G %d N %d: a window not taken exactly once in an epoch", n, G, N);
                free(order), free(ord2), free(count);
            }
    // resuming the cursor mid-epoch (a checkpoint's epoch and pos) continues the same sequence
    size_t order[10], o2[10], w1[4], w2[4];
    ParCursor a, b;
    par_cursor_init(&a, 10, 7, 0, 0, order);
    for (int s = 0; s < 4; s++) par_step_windows(&a, 4, w1, NULL);
    par_cursor_init(&b, 10, 7, a.epoch, a.pos, o2);
    par_step_windows(&a, 4, w1, NULL);
    par_step_windows(&b, 4, w2, NULL);
    CHECK(!memcmp(w1, w2, sizeof w1), "a cursor rebuilt from (epoch, pos) takes the same windows");
}

#define DS 16  // rows per window
#define DW 6   // windows of the step (grad_accum)

/* The one-GPU step's LoRA gradient (grads zeroed, every window scaled by 1/targets of the
 * step) or rank r of N's share with the same scale; dropout seeds by the step index of each
 * window, as the trainer's. */
static float *dp_grads(Model *m, int32_t in[DW][DS], int32_t tg[DW][DS], int lo, int hi, float scale) {
    model_zero_grads(m);
    for (int j = lo; j < hi; j++) {
        long c;
        model_step(m, in[j], tg[j], DS, &(LemoSelect){LEMO_SEL_GIVEN, 0, NULL, NULL}, 1, 1, scale, mix(99 ^ mix(4096 + j)),
                   &c);
    }
    float *g = malloc(4 * m->n_lora);
    m->be->copy_to_host(g, m->lora_grads, 4 * m->n_lora);
    return g;
}

static void data_parallel(void) {
    char dir[64] = "/tmp/lemo-par-XXXXXX";
    if (!mkdtemp(dir)) { CHECK(0, "mkdtemp"); return; }
    TinySpec t = {2, 16, 4, 2, 4, 24, 32, 1, 0, 0, 0.3f};
    if (tiny_model_write(dir, &t, 5)) { CHECK(0, "tiny model"); return; }
    LoraSpec spec = {2, 4.0f, 0.2f, {1, 1, 1, 1, 1, 1, 1}};
    Model *m = tiny_model_load(dir, DS, &spec, ACT_RECOMPUTE);
    int32_t in[DW][DS], tg[DW][DS];
    long total = 0;
    for (int j = 0; j < DW; j++)
        for (int i = 0; i < DS; i++) {
            in[j][i] = (int32_t)((urand() + 1) * 15.9f);
            // uneven target counts: window j masks its first 2 j rows (prompt rows)
            tg[j][i] = i == DS - 1 || i < 2 * j ? -1 : (int32_t)((urand() + 1) * 15.9f);
            total += tg[j][i] >= 0;
        }
    float *one = dp_grads(m, in, tg, 0, DW, 1.0f / total);
    double gmax = 0;
    for (size_t i = 0; i < m->n_lora; i++) gmax = fmax(gmax, fabs(one[i]));
    CHECK(gmax > 1e-3, "the one-GPU gradient is ~0 (max %g)", gmax);
    for (int N = 1; N <= 4; N++) {
        // each rank: its share, scaled by N / (targets of the whole step); the mean over ranks
        // (NCCL's ncclAvg, or ncclSum of 1/total-scaled gradients) is the step's gradient
        double *mean = calloc(m->n_lora, sizeof(double)), *naive = calloc(m->n_lora, sizeof(double));
        for (int r = 0; r < N; r++) {
            int lo, hi;
            par_rank_windows(DW, N, r, &lo, &hi);
            float *g = dp_grads(m, in, tg, lo, hi, (float)N / total);
            long local = 0;
            for (int j = lo; j < hi; j++)
                for (int i = 0; i < DS; i++) local += tg[j][i] >= 0;
            for (size_t i = 0; i < m->n_lora; i++) {
                mean[i] += g[i] / N;
                naive[i] += (double)g[i] * total / N / local / N;  // each rank's own mean, then averaged
            }
            free(g);
        }
        double err = 0, nerr = 0;
        for (size_t i = 0; i < m->n_lora; i++) {
            err = fmax(err, fabs(mean[i] - one[i]));
            nerr = fmax(nerr, fabs(naive[i] - one[i]));
        }
        CHECK(err <= 1e-5 * gmax, "data parallel over %d ranks: mean gradient off the one-GPU step's by %.2e (max %.2e)",
              N, err, gmax);
        // the scale must be the step's: averaging each rank's own mean loss is another gradient
        if (N > 1) CHECK(nerr > 1e-3 * gmax, "N %d: per-rank means should differ with uneven target counts", N);
        free(mean), free(naive);
    }
    free(one);
    model_free(m);
    tiny_model_remove(dir);
}

/* ---- 4. run-time checks, mode auto ---- */

static void runtime(void) {
    JobConfig c;
    Err e = {0};
    CHECK(job_config_parse("{\"model\":\"m\",\"train_file\":\"t\",\"output_dir\":\"o\",\"context_length\":8192,"
                           "\"grad_accum\":4,\"parallel\":{\"gpus\":4,\"mode\":\"context\"}}",
                           &c, &e) == 0,
          "context config: %s", e.msg);
    CHECK(parallel_check_runtime(&c, 8, 1, &e) == 0, "4 of 8 GPUs: %s", e.msg);
    CHECK(parallel_check_runtime(&c, 4, 1, &e) == 0, "4 of 4 GPUs: %s", e.msg);
    e = (Err){0};
    CHECK(parallel_check_runtime(&c, 2, 1, &e) == -1 && !strcmp(e.param, "parallel.gpus") && strstr(e.msg, "parallel.gpus") &&
              strstr(e.msg, "4") && strstr(e.msg, "2"),
          "4 GPUs on a machine with 2: %s", e.msg);
    e = (Err){0};
    CHECK(parallel_check_runtime(&c, 8, 0, &e) == -1 && !strcmp(e.param, "parallel.mode") && strstr(e.msg, "parallel.mode"),
          "context on the CPU backend: %s", e.msg);
    c.parallel.mode = PAR_MODE_DATA;
    e = (Err){0};
    CHECK(parallel_check_runtime(&c, 8, 0, &e) == -1 && !strcmp(e.param, "parallel.gpus"), "data over 4 on the CPU: %s",
          e.msg);
    c.parallel.gpus = 1;
    CHECK(parallel_check_runtime(&c, 0, 0, &e) == 0, "one GPU's worth on the CPU: %s", e.msg);

    // auto: context when the window does not fit one GPU, data when it does and the step has
    // a window per GPU, else context; no mode: an error naming what to change
    c.parallel = (ParallelConfig){4, PAR_MODE_AUTO};
    CHECK(parallel_resolve_mode(&c, 0, &e) == PAR_MODE_CONTEXT, "auto, too long for one GPU: context");
    CHECK(parallel_resolve_mode(&c, 1, &e) == PAR_MODE_DATA, "auto, fits, grad_accum 4 over 4: data");
    c.grad_accum = 2;
    CHECK(parallel_resolve_mode(&c, 1, &e) == PAR_MODE_CONTEXT, "auto, fits, grad_accum 2 over 4: context");
    c.context_length = 8000;
    e = (Err){0};
    CHECK(parallel_resolve_mode(&c, 1, &e) == -1 && !strcmp(e.param, "grad_accum"), "auto with neither: %s", e.msg);
    e = (Err){0};
    CHECK(parallel_resolve_mode(&c, 0, &e) == -1 && !strcmp(e.param, "context_length") && strstr(e.msg, "512"),
          "auto, too long and not splitting: %s", e.msg);
    c.parallel.gpus = 1;
    CHECK(parallel_resolve_mode(&c, 0, &e) == PAR_MODE_DATA, "one GPU: the one-process run");
}

int main(void) {
    layouts();
    ring();
    window_split();
    data_parallel();
    runtime();
    return check_done("test_parallel");
}
