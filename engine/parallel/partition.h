/* partition.h: which rows and which windows each rank of a multi-GPU job holds (DESIGN
 * section 11). Pure integer arithmetic, the same on every rank, so every rank can compute
 * every other rank's share without a message.
 *
 * Context parallel splits one window of S rows over N ranks. Causal attention makes row g
 * cost g + 1 key visits, so a contiguous split would give the last rank 2N - 1 times the
 * first one's work. Two layouts balance it:
 *   PAR_ZIGZAG: the rows are cut into 2N chunks of whole units and rank r holds chunks r and
 *     2N-1-r (ring-flash-attention's zigzag, Megatron's context parallelism). With S a
 *     multiple of 2N units every rank does exactly the same causal work, every chunk is
 *     contiguous (RoPE positions, LeMo blocks and the loss's targets stay whole), and a
 *     ring step against another rank's shard is exactly half of a full block product.
 *     This is the engine's layout.
 *   PAR_STRIPED: unit u on rank u mod N (unit 1: row i on rank i mod N; striped attention,
 *     Brandon et al. 2023). Balanced within about 2(N-1)/S, but a 64-row LeMo block is
 *     spread over every rank, so it serves dense attention only; kept as the alternative
 *     and tested to the same standard.
 * Local rows are numbered in ascending global order: causal order within a rank is kept.
 * S need not be a multiple of anything: chunk boundaries fall on whole units, sizes then
 * differ by at most one unit (LeMo's kept rows, a list of any length, are re-dealt this way).
 *
 * Dimension letters: S rows of the window, N ranks, r a rank, g a global row, i a local row. */
#ifndef LEMO_PARTITION_H
#define LEMO_PARTITION_H

#include <stddef.h>
#include <stdint.h>

enum { PAR_ZIGZAG = 0, PAR_STRIPED = 1 };

/* One window's split: S rows over N ranks in units of `unit` rows (1 or more). */
typedef struct {
    int kind;  // PAR_ZIGZAG, PAR_STRIPED
    int S, N, unit;
} ParSplit;

static inline ParSplit par_split(int kind, int S, int N, int unit) {
    return (ParSplit){kind, S, N, unit > 0 ? unit : 1};
}

/* Rows rank r holds. */
int par_rank_rows(const ParSplit *p, int r);
/* The most rows any rank holds (the size of a shard buffer). */
int par_max_rows(const ParSplit *p);
/* Global row of rank r's local row i (0 <= i < par_rank_rows(p, r)). */
int par_global_row(const ParSplit *p, int r, int i);
/* The rank holding global row g and its local row there. */
void par_locate(const ParSplit *p, int g, int *r, int *i);
/* rows (par_rank_rows(p, r)) written: rank r's global rows, ascending. */
void par_rank_global_rows(const ParSplit *p, int r, int *rows);
/* Causal work of rank r's rows as queries: the sum over its rows g of g + 1 (key visits of a
 * full causal attention). */
long long par_causal_work(const ParSplit *p, int r);

/* The ring: at step t (0..N-1) rank r works on the K/V shard of rank par_ring_src(r, t, N),
 * received at the end of step t-1 from par_ring_prev while it sent its own to par_ring_next;
 * step 0 is its own shard. */
static inline int par_ring_src(int r, int t, int N) { return ((r - t) % N + N) % N; }
static inline int par_ring_next(int r, int N) { return (r + 1) % N; }
static inline int par_ring_prev(int r, int N) { return (r + N - 1) % N; }

/* Data parallel. An optimizer step takes grad_accum (G) windows from the run's shuffled order,
 * whatever N: every rank walks the same cursor (the one-GPU trainer's: the order of epoch e is
 * data_shuffle_order(n, seed, e), a new epoch reshuffles mid-step), takes its share and counts
 * the targets of all G windows, so every rank scales its gradients by 1/(targets of the step)
 * and a sum all-reduce gives exactly the one-GPU step's mean-loss gradient. N changes the
 * speed, not the training: the checkpoint (the cursor) is the same for any N. */
typedef struct {
    uint64_t seed;
    uint64_t epoch;  // the cursor: epoch and position in its order (checkpoint.h's TrainState)
    size_t pos;
    size_t n;        // windows per epoch
    size_t *order;   // (n) the current epoch's order; filled by par_cursor_init
} ParCursor;

/* Sets the cursor at (epoch, pos) and fills order (n entries, the caller's) for that epoch. */
void par_cursor_init(ParCursor *c, size_t n, uint64_t seed, uint64_t epoch, size_t pos, size_t *order);
/* The G windows of the next step, in step order (win[j] is the step's window j: its dropout
 * and LeMo seeds are the one-GPU trainer's for index j), advancing the cursor; epoch_of (may
 * be NULL) gets the epoch each was drawn in. */
void par_step_windows(ParCursor *c, int G, size_t *win, uint64_t *epoch_of);
/* Rank r's share of a step's G windows: step indices [*lo, *hi), contiguous, the shares of
 * the N ranks differing by at most one window (the first G mod N ranks take one more). */
void par_rank_windows(int G, int N, int r, int *lo, int *hi);

#endif
