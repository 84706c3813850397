/* test_cpu_loss.c: the CPU backend's chunked LM head + cross-entropy.
 *
 * Against a naive double reference that forms the full (S,V) logits: the loss
 * sum, the counted rows and every element of dx, with targets of -1 scattered in
 * and one whole 128-row chunk without targets (the skipped-chunk path; its dx rows
 * must come out zero). dx is also checked by finite differences of the fp32 loss,
 * and two runs must give the same bits. The argmax count (token accuracy) is checked
 * against a brute force over the double logits, with targets set to each row's best,
 * second-best and a random entry, and all-zero rows whose V logits tie exactly: the
 * tie goes to index 0. */
#include "test_cpu_util.h"

#include <math.h>
#include <string.h>

/* Returns sum over counted rows of -log softmax(x W^T)[t]; dx = gs * d/dx (zeroed first). */
static double ref_ce(double *dx, long *count, const float *x, const float *w, const int *target,
                     int S, int C, int V, double gs) {
    double total = 0, *l = tu_dalloc(V);
    *count = 0;
    memset(dx, 0, sizeof(double) * S * C);
    for (int s = 0; s < S; s++) {
        int t = target[s];
        if (t < 0) continue;
        ++*count;
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < V; j++) {
            l[j] = 0;
            for (int c = 0; c < C; c++) l[j] += (double)x[(size_t)s * C + c] * w[(size_t)j * C + c];
            if (l[j] > mx) mx = l[j];
        }
        for (int j = 0; j < V; j++) sum += exp(l[j] - mx);
        total += mx + log(sum) - l[t];
        for (int j = 0; j < V; j++) {
            double d = gs * (exp(l[j] - mx) / sum - (j == t));
            for (int c = 0; c < C; c++) dx[(size_t)s * C + c] += d * w[(size_t)j * C + c];
        }
    }
    free(l);
    return total;
}

/* The brute force of the argmax count: *hits = counted rows whose highest double logit (the
 * lowest index among equals) is the target; *close = counted rows whose best two logits lie
 * within 1e-4 of each other, where fp32 may honestly pick the other one. */
static void ref_argmax(long *hits, long *close, const float *x, const float *w, const int *target, int S, int C,
                       int V) {
    *hits = *close = 0;
    for (int s = 0; s < S; s++) {
        if (target[s] < 0) continue;
        double best = -INFINITY, second = -INFINITY;
        int am = -1;
        for (int j = 0; j < V; j++) {
            double l = 0;
            for (int c = 0; c < C; c++) l += (double)x[(size_t)s * C + c] * w[(size_t)j * C + c];
            if (l > best) second = best, best = l, am = j;
            else if (l > second) second = l;
        }
        *hits += am == target[s];
        *close += best - second < 1e-4 && best != second;
    }
}

/* The best (rank 0) or second best (rank 1) vocabulary entry of row s, by double logits. */
static int ref_rank(const float *x, const float *w, int s, int C, int V, int rank) {
    int b0 = -1, b1 = -1;
    double l0 = -INFINITY, l1 = -INFINITY;
    for (int j = 0; j < V; j++) {
        double l = 0;
        for (int c = 0; c < C; c++) l += (double)x[(size_t)s * C + c] * w[(size_t)j * C + c];
        if (l > l0) b1 = b0, l1 = l0, b0 = j, l0 = l;
        else if (l > l1) b1 = j, l1 = l;
    }
    return rank ? b1 : b0;
}

typedef struct {
    const Backend *be;
    const float *x, *w;
    const int *target;
    int S, C, V;
    float gs;
} CeCtx;

static double ce_loss(void *c) {
    CeCtx *a = c;
    long n;
    return a->gs * a->be->lm_head_ce(NULL, &n, NULL, a->x, a->w, a->target, a->S, a->C, a->V, 1.0f);
}

int main(void) {
    const Backend *be = backend_cpu();
    size_t used0 = be->mem_used();
    int S = 300, C = 24, V = 517;  // 3 chunks of 128, the last partial
    float gs = 0.37f;
    float *x = tu_alloc(be, (size_t)S * C), *w = tu_alloc(be, (size_t)V * C);
    float *dx = tu_alloc(be, (size_t)S * C), *dx2 = tu_alloc(be, (size_t)S * C);
    int *target = be->alloc((size_t)S * sizeof(int));
    tu_fill(x, (size_t)S * C, 1.0f);
    tu_fill(w, (size_t)V * C, 1.0f);
    for (int s = 0; s < S; s++) {
        int t = (int)((tu_rand() * 0.5f + 0.5f) * V) % V;
        target[s] = (s % 7 == 3 || (s >= 128 && s < 256)) ? -1 : t;
    }
    target[0] = 0, target[1] = V - 1;  // the first and last vocabulary entries
    for (size_t i = 0; i < (size_t)S * C; i++) dx[i] = 1e30f;  // dx is written, not added to

    double *rdx = tu_dalloc((size_t)S * C);
    long rcount, count = -5;
    double rl = ref_ce(rdx, &rcount, x, w, target, S, C, V, gs);
    double l = be->lm_head_ce(dx, &count, NULL, x, w, target, S, C, V, gs);
    CHECK(count == rcount, "count %ld, reference %ld", count, rcount);
    // sum of ~150 row losses of ~6 each: fp32 logits carry ~1e-7 relative error
    CHECK_CLOSE(l, rl, 1e-4, 1e-6, "loss %.12g, reference %.12g", l, rl);
    tu_check_arr("lm_head_ce dx", dx, rdx, (size_t)S * C, 1e-6, 1e-5);
    int zero_ok = 1;
    for (int s = 128; s < 256; s++)
        for (int c = 0; c < C; c++) zero_ok &= dx[(size_t)s * C + c] == 0.0f;
    CHECK(zero_ok, "dx rows without a target are not zero");

    // finite differences of gs * loss along x (fp32 loss; step 1e-2; O(1) values)
    CeCtx ctx = {be, x, w, target, S, C, V, gs};
    tu_check_fd("fd lm_head_ce dx", ce_loss, &ctx, x, dx, (size_t)S * C, 60, 1e-2f, 5e-5, 5e-4);

    // loss without dx is the same number; a second run gives the same bits
    long c2;
    double l2 = be->lm_head_ce(NULL, &c2, NULL, x, w, target, S, C, V, gs);
    CHECK(l2 == l && c2 == count, "loss without dx %.17g differs from %.17g", l2, l);
    double l3 = be->lm_head_ce(dx2, &c2, NULL, x, w, target, S, C, V, gs);
    CHECK(l3 == l, "second run loss %.17g differs from %.17g", l3, l);
    CHECK(!memcmp(dx, dx2, (size_t)S * C * 4), "second run dx differs");

    // token accuracy: a third of the rows aim at their best entry, a third at the second best
    for (int s = 0; s < S; s++)
        if (target[s] >= 0 && s % 3 < 2) target[s] = ref_rank(x, w, s, C, V, s % 3);
    for (int s = 290; s < 300; s++) {  // rows of zeros: every logit exactly 0, a V-way tie
        memset(x + (size_t)s * C, 0, (size_t)C * sizeof(float));
        target[s] = s % 2 ? 0 : 5;         // index 0 wins the tie; 5 loses it
    }
    long hits, close, correct = -1, cc;
    ref_argmax(&hits, &close, x, w, target, S, C, V);
    double la = be->lm_head_ce(dx2, &cc, &correct, x, w, target, S, C, V, gs);
    CHECK(labs(correct - hits) <= close, "argmax hits %ld, brute force %ld (%ld near ties)", correct, hits, close);
    CHECK(hits >= 40, "the accuracy check has hits to count: %ld", hits);  // ~147 counted rows, a third aimed
    long correct2 = -1;
    double lb = be->lm_head_ce(NULL, &cc, &correct2, x, w, target, S, C, V, gs);
    CHECK(correct2 == correct && lb == la, "argmax hits without dx %ld, with dx %ld", correct2, correct);
    // the tie rows alone: five count (target 0), five do not (target 5)
    long tie_hits = -1;
    be->lm_head_ce(NULL, &cc, &tie_hits, x + (size_t)290 * C, w, target + 290, 10, C, V, gs);
    CHECK(cc == 10 && tie_hits == 5, "a tie goes to the lowest index: %ld hits of %ld", tie_hits, cc);

    // no counted rows at all: loss 0, count 0, dx zero
    for (int s = 0; s < S; s++) target[s] = -1;
    long c0 = -1;
    double l0 = be->lm_head_ce(dx2, &c2, &c0, x, w, target, S, C, V, gs);
    int all_zero = 1;
    for (size_t i = 0; i < (size_t)S * C; i++) all_zero &= dx2[i] == 0.0f;
    CHECK(l0 == 0.0 && c2 == 0 && c0 == 0 && all_zero, "no targets: loss %g count %ld hits %ld", l0, c2, c0);

    be->free(x), be->free(w), be->free(dx), be->free(dx2), be->free(target);
    free(rdx);
    CHECK(be->mem_used() == used0, "mem_used %zu after freeing everything, was %zu",
          be->mem_used(), used0);
    return check_done("test_cpu_loss");
}
