/* lemo.c: LeMo's token selection on the CPU: exact block scores (and the exact block
 * matrix they reduce, the predictors' training target), the random control and the top-k
 * choice of blocks (backend.h, "LeMo token selection").
 *
 * Block scores. For a causal block pair (m >= n) the value A[m,n] is the max of a
 * (B, B) tile T = sum over heads of relu(q_m,h k_n,g^T), so no (S, S) matrix is ever
 * needed: work is cut into units of one query block m against a chunk of up to
 * LEMO_CHUNK_KEYS keys (whole key blocks n <= m), and each unit holds only its own
 * (B, chunk) tiles. Per head the unit runs one cblas_sgemm on the rows in place (the
 * layout (S, heads, HS) makes a head's rows a matrix of row stride heads*HS), adds
 * relu of it onto T, then takes the max of every (B, B) block of T, over i >= j on the
 * diagonal block. Max and the division by NH commute (both are monotone), so the
 * division is done once on the max. A is kept as the lower triangle in the caller's
 * workspace: A[m,n] at m*(m+1)/2 + n. The reduction to score[n] then runs once per
 * block, summing in double in a fixed order.
 *
 * Threads: units run on OpenMP threads and each calls sgemm on its own tiles, so
 * OpenBLAS is held to one thread for the duration (as attention.c does): the two pools
 * never nest. Every A entry has exactly one owner and is computed in a fixed order by
 * single-threaded sgemm calls of fixed shapes, so the result does not depend on the
 * thread count or the schedule.
 *
 * Selection sorts (score desc, NaN lowest, block asc) over blocks 1..nb-1, takes the
 * first k-1 of them plus block 0 and writes their rows in ascending order; CUDA sorts
 * keys that encode exactly this order, so both backends pick the same blocks.
 *
 * Shapes outside the contract (S not a multiple of B, NH not a multiple of NKV, k
 * outside 1..nb) are a caller's bug with no output that could show it, so they end
 * the process with a message, as a CUDA fault does. */
#include "cpu_ops.h"

#include "backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

#define LEMO_CHUNK_KEYS 256  // keys per unit: whole blocks, at least one

/* Reports a broken precondition and ends the process (see the file comment). */
static void lemo_fatal(const char *op, const char *msg) {
    fprintf(stderr, "lemo: %s: %s\n", op, msg);
    fflush(stderr);
    exit(70);
}

/* Sets OpenBLAS to one thread and returns the count it had, for lemo_blas_restore. */
static int lemo_blas_single(void) {
    int n = openblas_get_num_threads();
    if (n != 1) openblas_set_num_threads(1);
    return n;
}

static void lemo_blas_restore(int n) {
    if (n != 1) openblas_set_num_threads(n);
}

/* Index of A[m,n] (m >= n) in the lower triangle. */
static inline size_t lemo_tri(int m, int n) { return (size_t)m * (m + 1) / 2 + n; }

/* Workspace of cpu_lemo_block_scores: the lower triangle of A, nb*(nb+1)/2 fp32, rounded
 * up to 256 bytes (the same formula as CUDA's, see backend_cuda.h). */
size_t cpu_lemo_scores_ws_bytes(int S, int B) {
    if (S <= 0 || B <= 0) return 0;
    size_t nb = (size_t)(S / B), bytes = nb * (nb + 1) / 2 * sizeof(float);
    return (bytes + 255) / 256 * 256;
}

/* One unit: query block m against key blocks n0..n1 (n1 <= m) -> A[m, n0..n1].
 * P, T: (B, (n1-n0+1)*B) fp32 each, this thread's. */
static void lemo_scores_unit(float *A, const float *q, const float *k, int NH, int NKV, int HS,
                             int B, int m, int n0, int n1, float *P, float *T) {
    int G = NH / NKV, qs = NH * HS, ks = NKV * HS;
    int nk = (n1 - n0 + 1) * B;  // keys of the chunk, also the row stride of P and T
    size_t nt = (size_t)B * nk;
    const float *qm = q + (long)m * B * qs, *kn = k + (long)n0 * B * ks;
    for (int h = 0; h < NH; h++) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, nk, HS, 1.0f, qm + (long)h * HS, qs,
                    kn + (long)(h / G) * HS, ks, 0.0f, P, nk);
        if (h == 0) {
#pragma omp simd
            for (size_t e = 0; e < nt; e++) T[e] = P[e] > 0.0f ? P[e] : 0.0f;
        } else {
#pragma omp simd
            for (size_t e = 0; e < nt; e++) T[e] += P[e] > 0.0f ? P[e] : 0.0f;
        }
    }
    for (int n = n0; n <= n1; n++) {
        const float *Tn = T + (size_t)(n - n0) * B;
        float best = 0.0f;  // every entry is >= 0 and the diagonal block has i == j
        for (int i = 0; i < B; i++) {
            int jn = n == m ? i + 1 : B;  // causal on the diagonal block: j <= i
            const float *row = Tn + (size_t)i * nk;
            for (int j = 0; j < jn; j++) best = row[j] > best ? row[j] : best;
        }
        A[lemo_tri(m, n)] = best / (float)NH;
    }
}

/* A (nb*(nb+1)/2 lower triangle) written from q (S,NH,HS), k (S,NKV,HS): every entry by the
 * unit that owns it (the file comment). */
void cpu_lemo_block_matrix(float *A, const void *q, const void *k, int S, int NH, int NKV, int HS, int B) {
    if (S <= 0) return;
    if (B <= 0 || S % B != 0) lemo_fatal("lemo_block_matrix", "S must be a positive multiple of B");
    if (NKV <= 0 || NH % NKV != 0)
        lemo_fatal("lemo_block_matrix", "query heads must be a multiple of kv heads");
    int nb = S / B;
    int cb = LEMO_CHUNK_KEYS / B > 1 ? LEMO_CHUNK_KEYS / B : 1;  // key blocks per unit
    int nch = (nb + cb - 1) / cb;
    size_t per = (size_t)2 * B * cb * B;  // P and T of one thread
    float *tiles = malloc((size_t)omp_get_max_threads() * per * sizeof(float));
    if (!tiles) {
        cpu_fill_nan(A, lemo_tri_size(nb));
        return;
    }
    long units = (long)nb * nch;
    int blas_threads = lemo_blas_single();
    // unit u: query block m = u / nch against key chunk c = u % nch; chunks past the
    // diagonal are empty, the rest are near equal work
#pragma omp parallel for schedule(dynamic, 1)
    for (long u = 0; u < units; u++) {
        int m = (int)(u / nch), c = (int)(u % nch);
        int n0 = c * cb, n1 = n0 + cb - 1 < m ? n0 + cb - 1 : m;
        if (n0 > m) continue;
        float *P = tiles + (size_t)omp_get_thread_num() * per;
        lemo_scores_unit(A, q, k, NH, NKV, HS, B, m, n0, n1, P, P + per / 2);
    }
    lemo_blas_restore(blas_threads);
    free(tiles);
}

/* score (nb) written from the lower triangle A: score[n] = sum_{m >= n} A[m,n] (n as the key
 * block) + sum_{m < n} A[n,m] (as the query), in double, in a fixed order. */
void cpu_lemo_matrix_scores(float *score, const float *A, int nb) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < nb; n++) {
        double s = 0.0;
        for (int m = n; m < nb; m++) s += A[lemo_tri(m, n)];
        for (int m = 0; m < n; m++) s += A[lemo_tri(n, m)];
        score[n] = (float)s;
    }
}

/* score (nb) written from q (S,NH,HS), k (S,NKV,HS); ws: cpu_lemo_scores_ws_bytes(S, B). */
void cpu_lemo_block_scores(float *score, const void *q, const void *k, int S, int NH, int NKV,
                           int HS, int B, void *ws) {
    if (S <= 0) return;
    if (B <= 0 || S % B != 0) lemo_fatal("lemo_block_scores", "S must be a positive multiple of B");
    float *A = ws;  // (nb*(nb+1)/2) lower triangle
    cpu_lemo_block_matrix(A, q, k, S, NH, NKV, HS, B);
    cpu_lemo_matrix_scores(score, A, S / B);
}

void cpu_lemo_random_scores(float *score, int nb, uint64_t seed) {
    for (int n = 0; n < nb; n++) score[n] = lemo_random_score(seed, (uint64_t)n);
}

/* A block and its score, for the sort. */
typedef struct {
    float s;
    int b;
} LemoRank;

/* Higher score first, NaN after everything, equal scores by ascending block: a total
 * order, so qsort's result does not depend on its algorithm. -0 and +0 compare equal. */
static int lemo_rank_cmp(const void *pa, const void *pb) {
    const LemoRank *a = pa, *b = pb;
    int na = isnan(a->s), nbn = isnan(b->s);
    if (na != nbn) return na - nbn;
    if (!na && a->s != b->s) return a->s > b->s ? -1 : 1;
    return (a->b > b->b) - (a->b < b->b);
}

/* Workspace of cpu_lemo_select_blocks: the ranks being sorted (nb) and a flag a block. */
size_t cpu_lemo_select_ws_bytes(int nb) {
    return nb > 0 ? (size_t)nb * (sizeof(LemoRank) + 1) : 0;
}

/* idx (k*B) written with the rows of block 0 and the k-1 best of blocks 1..nb-1, ascending;
 * ws: cpu_lemo_select_ws_bytes(nb). */
void cpu_lemo_select_blocks(int *idx, const float *score, int nb, int k, int B, void *ws) {
    if (nb < 1 || k < 1 || k > nb) lemo_fatal("lemo_select_blocks", "k must be in 1..nb");
    if (B <= 0) lemo_fatal("lemo_select_blocks", "B must be positive");
    LemoRank *r = ws;                               // (nb - 1) blocks 1..nb-1
    unsigned char *keep = (unsigned char *)(r + nb);  // (nb)
    for (int b = 1; b < nb; b++) r[b - 1] = (LemoRank){score[b], b};
    qsort(r, (size_t)nb - 1, sizeof *r, lemo_rank_cmp);
    memset(keep, 0, (size_t)nb);
    keep[0] = 1;
    for (int i = 0; i < k - 1; i++) keep[r[i].b] = 1;
    long o = 0;
    for (int b = 0; b < nb; b++)
        if (keep[b])
            for (int j = 0; j < B; j++) idx[o++] = b * B + j;
}
