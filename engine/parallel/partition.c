/* partition.c: the row layouts and the window split of partition.h.
 *
 * Zigzag chunk k (0..2N-1) spans rows [b(k), b(k+1)) with b(k) = unit * floor(k * nu / 2N),
 * nu = ceil(S / unit) units, the last boundary clipped to S: every boundary is on a unit,
 * chunk sizes differ by at most one unit, and the mapping back from a row to its chunk is one
 * division (par_locate), not a search. */
#include "partition.h"

#include "data.h"

static int units_of(const ParSplit *p) { return (p->S + p->unit - 1) / p->unit; }

/* First row of zigzag chunk k (k = 2N gives S). */
static int zz_bound(const ParSplit *p, int k) {
    long long b = (long long)p->unit * ((long long)k * units_of(p) / (2 * p->N));
    return b < p->S ? (int)b : p->S;
}

/* Rows of zigzag chunk k. */
static int zz_len(const ParSplit *p, int k) { return zz_bound(p, k + 1) - zz_bound(p, k); }

/* Striped: rows of the units u = r, r + N, ... (the last unit may be short). */
static int st_rows(const ParSplit *p, int r) {
    int nu = units_of(p), mine = nu > r ? (nu - r + p->N - 1) / p->N : 0;
    int rows = mine * p->unit;
    if (mine && (nu - 1) % p->N == r) rows -= nu * p->unit - p->S;  // r holds the short last unit
    return rows;
}

int par_rank_rows(const ParSplit *p, int r) {
    if (p->kind == PAR_STRIPED) return st_rows(p, r);
    return zz_len(p, r) + zz_len(p, 2 * p->N - 1 - r);
}

int par_max_rows(const ParSplit *p) {
    int m = 0;
    for (int r = 0; r < p->N; r++) {
        int n = par_rank_rows(p, r);
        m = n > m ? n : m;
    }
    return m;
}

int par_global_row(const ParSplit *p, int r, int i) {
    if (p->kind == PAR_STRIPED) {
        int u = i / p->unit;  // rank r's u-th unit is global unit r + u N
        return (r + u * p->N) * p->unit + i % p->unit;
    }
    int first = zz_len(p, r);
    return i < first ? zz_bound(p, r) + i : zz_bound(p, 2 * p->N - 1 - r) + (i - first);
}

void par_locate(const ParSplit *p, int g, int *r, int *i) {
    int ug = g / p->unit;
    if (p->kind == PAR_STRIPED) {
        *r = ug % p->N;
        *i = (ug / p->N) * p->unit + g % p->unit;
        return;
    }
    // the last chunk k with floor(k nu / 2N) <= ug: k < (ug + 1) 2N / nu
    int N2 = 2 * p->N, nu = units_of(p);
    int k = (int)(((long long)(ug + 1) * N2 - 1) / nu);
    if (k > N2 - 1) k = N2 - 1;
    if (k < p->N) {
        *r = k;
        *i = g - zz_bound(p, k);
    } else {
        *r = N2 - 1 - k;
        *i = zz_len(p, *r) + g - zz_bound(p, k);
    }
}

void par_rank_global_rows(const ParSplit *p, int r, int *rows) {
    int n = par_rank_rows(p, r);
    for (int i = 0; i < n; i++) rows[i] = par_global_row(p, r, i);
}

long long par_causal_work(const ParSplit *p, int r) {
    long long w = 0;
    int n = par_rank_rows(p, r);
    for (int i = 0; i < n; i++) w += par_global_row(p, r, i) + 1;
    return w;
}

void par_cursor_init(ParCursor *c, size_t n, uint64_t seed, uint64_t epoch, size_t pos, size_t *order) {
    *c = (ParCursor){seed, epoch, pos, n, order};
    data_shuffle_order(n, seed, epoch, order);
}

void par_step_windows(ParCursor *c, int G, size_t *win, uint64_t *epoch_of) {
    for (int j = 0; j < G; j++) {
        if (c->pos == c->n) {  // as the trainer: the next epoch's order, drawn when first needed
            c->epoch++;
            c->pos = 0;
            data_shuffle_order(c->n, c->seed, c->epoch, c->order);
        }
        if (epoch_of) epoch_of[j] = c->epoch;
        win[j] = c->order[c->pos++];
    }
}

void par_rank_windows(int G, int N, int r, int *lo, int *hi) {
    int q = G / N, extra = G % N;
    *lo = r * q + (r < extra ? r : extra);
    *hi = *lo + q + (r < extra);
}
