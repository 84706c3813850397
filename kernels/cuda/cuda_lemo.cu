/* cuda_lemo.cu: LeMo's token selection on the device: exact block scores, the random
 * control and the top-k choice of blocks (backend.h, "LeMo token selection").
 *
 * Block scores, two kernels:
 *   lemo_pair_max_kernel: one CTA per causal block pair (m >= n), ordered like the lower
 *     triangle it fills (p = m*(m+1)/2 + n), so neighbouring CTAs share the query block.
 *     The CTA walks every query head h and, per head, the head size in 64-column stages;
 *     each stage's q rows of block m and k rows of block n (kv head h / (NH/NKV)) stream
 *     through shared memory with cp.async, double-buffered. Each warp owns 32 query rows
 *     (16 at B = 128) against all B keys: q.k accumulates in fp32 registers over a head's
 *     stages on bf16 tensor cores (mma.sync m16n8k16), then relu of it is added onto a
 *     second register tile that sums the heads. After the last head the CTA takes the max
 *     of that tile (over i >= j on the diagonal pair) and writes A[m,n] = max / NH into the
 *     caller's workspace. No (S, S) matrix ever exists, and the (B, B) tile never leaves
 *     the registers. On an H200, S = 16384, 32 query / 8 kv heads of 128, B = 64 take
 *     6.4 ms (173 TFLOP/s of tile products, 5.4 TB/s of tiles from L2: every pair re-reads
 *     its two tiles per head); B = 128, half the traffic a product at one CTA a
 *     multiprocessor, runs no faster.
 *   lemo_score_reduce_kernel: one warp per block n sums its column and row of A,
 *     score[n] = sum_{m >= n} A[m,n] + sum_{m < n} A[n,m], in double in a fixed order
 *     (lane-strided, then a fixed shuffle tree): no atomics, so the scores are
 *     bit-identical run to run.
 * The same two kernels run apart as lemo_block_matrix (the triangle, the predictors' training
 * target) and lemo_matrix_scores (a predicted triangle reduced like the exact one).
 * B is a template (32, 64, 128: the tile lives in registers); the head size is any
 * multiple of 16, its last stage narrower where HS is not a multiple of 64.
 *
 * Selection stays on the device, with no host round trip and no host sync: each block
 * gets a 32-bit key whose descending order is the ranking (score desc, NaN below every
 * number, -0 equal to +0), block 0 the one key above every score's; CUB's radix sort,
 * stable, sorts (key, block) pairs descending, so equal scores keep the lower block
 * first; the first k blocks are flagged, CUB's select compacts the flagged block ids in
 * ascending order, and a last kernel expands them to rows. The CPU twin (kernels/cpu/
 * lemo.c) sorts by the same order, so both pick the same blocks from the same scores.
 * CUB's temporary storage comes from the caller's workspace, sized by a plain-C bound
 * (backend_cuda.h); every call checks CUB's own answer against it. */
#include <cub/cub.cuh>
#include <limits.h>
#include <math.h>

#include "backend_cuda.h"
#include "cuda_common.h"
#include "cuda_ptx.h"

#define LEMO_KC 64      // head-size columns per pipeline stage (one 128-byte swizzled row)
#ifndef LEMO_STAGES
#define LEMO_STAGES 2   // double-buffered (-DLEMO_STAGES=3 to compare: 15% slower on an H200)
#endif

/* ---------------- block scores ---------------- */

/* Index of A[m,n] (m >= n) in the lower triangle. */
__host__ __device__ __forceinline__ size_t lemo_tri(int m, int n) { return (size_t)m * (m + 1) / 2 + n; }

/* The pair (m, n) with lemo_tri(m, n) == p. */
__device__ __forceinline__ void lemo_pair(long p, int &m, int &n) {
    long r = (long)((sqrt(8.0 * (double)p + 1.0) - 1.0) * 0.5);  // then fix the rounding
    while (r * (r + 1) / 2 > p) r--;
    while ((r + 1) * (r + 2) / 2 <= p) r++;
    m = (int)r;
    n = (int)(p - r * (r + 1) / 2);
}

/* How a CTA of lemo_pair_max_kernel<BS> is cut: each warp owns MT m16 tiles of query rows
 * against all BS keys, so every K fragment read from shared memory feeds MT x 2 mma. Two
 * m-tiles halve the ldmatrix traffic per mma (the kernel is bound by it at one); B = 128
 * keeps one, as two would need 256 accumulator registers. */
template <int BS>
struct LemoTile {
    static constexpr int MT = BS <= 64 ? 2 : 1, WARPS = BS / (16 * MT), THREADS = 32 * WARPS;
};

/* A (nb*(nb+1)/2) written, one entry per CTA; q (S,NH,HS), k (S,NKV,HS) bf16, HS % 16 == 0.
 * Shared memory: LEMO_STAGES x (Q tile, K tile), each (BS, LEMO_KC) bf16, swizzled. */
template <int BS>
__global__ void __launch_bounds__(LemoTile<BS>::THREADS) lemo_pair_max_kernel(float *A, const bf16 *q,
                                                                             const bf16 *k, int NH, int NKV,
                                                                             int HS) {
    constexpr int MT = LemoTile<BS>::MT, WARPS = LemoTile<BS>::WARPS, THREADS = LemoTile<BS>::THREADS;
    constexpr int TILE = BS * LEMO_KC, NT = BS / 8;  // elements of a tile; 8-key n-tiles
    extern __shared__ __align__(128) unsigned char lemo_smem[];
    bf16 *sm = (bf16 *)lemo_smem;
    __shared__ float red[WARPS];
    int m, n;
    lemo_pair((long)blockIdx.x, m, n);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    int group = NH / NKV, nc = (HS + LEMO_KC - 1) / LEMO_KC, total = NH * nc;
    long qs = (long)NH * HS, ks = (long)NKV * HS;
    const bf16 *qm = q + (long)m * BS * qs, *kn = k + (long)n * BS * ks;

    // stage st = (head st / nc, columns from (st % nc) * LEMO_KC) into buffer st % LEMO_STAGES;
    // past the last stage it commits an empty group, so the wait count stays uniform
    auto issue = [&](int st) {
        if (st < total) {
            int h = st / nc, c0 = (st % nc) * LEMO_KC, cpr = min(LEMO_KC, HS - c0) >> 3;  // 16-byte chunks a row
            bf16 *Qs = sm + (st % LEMO_STAGES) * 2 * TILE, *Ks = Qs + TILE;
            const bf16 *qb = qm + (long)h * HS + c0, *kb = kn + (long)(h / group) * HS + c0;
            for (int e = threadIdx.x; e < BS * cpr; e += THREADS) {
                int r = e / cpr, c = (e - r * cpr) * 8;
                cp_async16(Qs + swz<LEMO_KC>(r, c), qb + r * qs + c, 16);
                cp_async16(Ks + swz<LEMO_KC>(r, c), kb + r * ks + c, 16);
            }
        }
        cp_async_commit();
    };
#pragma unroll
    for (int st = 0; st < LEMO_STAGES - 1; st++) issue(st);

    float s[MT][NT][4], acc[MT][NT][4];  // this head's q.k; the sum over heads of relu(q.k)
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int i = 0; i < NT; i++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[mt][i][e] = acc[mt][i][e] = 0.0f;
    // ldmatrix lanes: A fragments (16 rows x 16 columns), B fragments (two 8-key tiles)
    int ar = (lane & 7) + ((lane >> 3) & 1) * 8, ac = (lane >> 4) * 8;
    int br = (lane & 7) + (lane >> 4) * 8, bc = ((lane >> 3) & 1) * 8;
    int row0 = warp * 16 * MT;  // this warp's first query row in the block

    for (int st = 0; st < total; st++) {
        cp_async_wait<LEMO_STAGES - 2>();
        __syncthreads();                 // stage st landed; everyone is done with st - 1
        issue(st + LEMO_STAGES - 1);     // into the buffer of st - 1
        const bf16 *Qs = sm + (st % LEMO_STAGES) * 2 * TILE, *Ks = Qs + TILE;
        int c0 = (st % nc) * LEMO_KC, ksteps = min(LEMO_KC, HS - c0) >> 4;
#pragma unroll
        for (int kk = 0; kk < LEMO_KC / 16; kk++) {
            if (kk < ksteps) {
                uint32_t a[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
                    ldsm_x4(a[mt], Qs + swz<LEMO_KC>(row0 + mt * 16 + ar, kk * 16 + ac));
#pragma unroll
                for (int np = 0; np < BS / 16; np++) {
                    uint32_t b[4];
                    ldsm_x4(b, Ks + swz<LEMO_KC>(np * 16 + br, kk * 16 + bc));
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        mma16816(s[mt][2 * np], a[mt], b[0], b[1]);
                        mma16816(s[mt][2 * np + 1], a[mt], b[2], b[3]);
                    }
                }
            }
        }
        if (st % nc == nc - 1) {  // the head's dot products are complete
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int i = 0; i < NT; i++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        acc[mt][i][e] += fmaxf(s[mt][i][e], 0.0f);
                        s[mt][i][e] = 0.0f;
                    }
        }
    }

    // tile max; this thread holds rows i0, i0 + 8 of each m-tile and keys nt*8 + 2t (+1).
    // Every entry is >= 0 and the diagonal pair has i == j, so 0 is a neutral start.
    bool diag = m == n;
    float mx = 0.0f;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        int i0 = row0 + mt * 16 + g;
#pragma unroll
        for (int i = 0; i < NT; i++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                int j = i * 8 + 2 * t + e;
                if (!diag || j <= i0) mx = fmaxf(mx, acc[mt][i][e]);
                if (!diag || j <= i0 + 8) mx = fmaxf(mx, acc[mt][i][2 + e]);
            }
    }
    mx = warp_max(mx);
    if (lane == 0) red[warp] = mx;
    __syncthreads();
    if (threadIdx.x == 0) {
#pragma unroll
        for (int w = 1; w < WARPS; w++) mx = fmaxf(mx, red[w]);
        A[blockIdx.x] = mx / (float)NH;
    }
}

/* score (nb) written from the triangle A: one warp per block. */
__global__ void lemo_score_reduce_kernel(float *score, const float *A, int nb) {
    int n = (int)(((long)blockIdx.x * blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    if (n >= nb) return;
    double s = 0.0;
    for (int m = lane; m < nb; m += 32) s += m >= n ? A[lemo_tri(m, n)] : A[lemo_tri(n, m)];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) score[n] = (float)s;
}

template <int BS>
static size_t lemo_pair_smem(void) { return (size_t)LEMO_STAGES * 2 * BS * LEMO_KC * sizeof(bf16); }

/* Raises the kernels' dynamic shared-memory limit, once (B = 128 double-buffered takes 64 KB;
 * at LEMO_STAGES=3, B = 64 takes exactly 48 KB, past the default with the static slots). */
static void lemo_setup(void) {
    static bool done;
    if (done) return;
    CUDA_CHECK(cudaFuncSetAttribute(lemo_pair_max_kernel<32>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)lemo_pair_smem<32>()));
    CUDA_CHECK(cudaFuncSetAttribute(lemo_pair_max_kernel<64>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)lemo_pair_smem<64>()));
    CUDA_CHECK(cudaFuncSetAttribute(lemo_pair_max_kernel<128>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)lemo_pair_smem<128>()));
    done = true;
}

template <int BS>
static void lemo_launch_pairs(float *A, const void *q, const void *k, long pairs, int NH, int NKV, int HS) {
    lemo_pair_max_kernel<BS><<<(unsigned)pairs, LemoTile<BS>::THREADS, lemo_pair_smem<BS>()>>>(A, (const bf16 *)q, (const bf16 *)k,
                                                                              NH, NKV, HS);
    LAUNCH_CHECK();
}

size_t cuda_lemo_scores_ws_bytes(int S, int B) { return cuda_lemo_scores_ws(S, B); }

/* The triangle itself (the predictors' training target and the exact scores' first pass). */
void cuda_lemo_block_matrix(float *A, const void *q, const void *k, int S, int NH, int NKV, int HS, int B) {
    if (S <= 0) return;
    if (B != 32 && B != 64 && B != 128)
        cuda_fatal("lemo_block_matrix", "LeMo block size must be 32, 64 or 128 on CUDA", __FILE__, __LINE__);
    if (S % B != 0) cuda_fatal("lemo_block_matrix", "S must be a multiple of the block size", __FILE__, __LINE__);
    if (NKV <= 0 || NH % NKV != 0)
        cuda_fatal("lemo_block_matrix", "query heads must be a multiple of kv heads", __FILE__, __LINE__);
    if (HS <= 0 || HS % 16 != 0)
        cuda_fatal("lemo_block_matrix", "head size must be a multiple of 16 on CUDA", __FILE__, __LINE__);
    if (!aligned16(q) || !aligned16(k))
        cuda_fatal("lemo_block_matrix", "q and k must be 16-byte aligned", __FILE__, __LINE__);
    int nb = S / B;
    long pairs = (long)nb * (nb + 1) / 2;
    if (pairs > INT_MAX) cuda_fatal("lemo_block_matrix", "too many block pairs for one grid", __FILE__, __LINE__);
    lemo_setup();
    if (B == 32)
        lemo_launch_pairs<32>(A, q, k, pairs, NH, NKV, HS);
    else if (B == 64)
        lemo_launch_pairs<64>(A, q, k, pairs, NH, NKV, HS);
    else
        lemo_launch_pairs<128>(A, q, k, pairs, NH, NKV, HS);
}

/* Exact scores: the triangle into ws (nb*(nb+1)/2 floats), then its reduction. */
void cuda_lemo_block_scores(float *score, const void *q, const void *k, int S, int NH, int NKV, int HS, int B,
                            void *ws) {
    if (S <= 0) return;
    cuda_lemo_block_matrix((float *)ws, q, k, S, NH, NKV, HS, B);
    cuda_lemo_matrix_scores(score, (const float *)ws, S / B);
}

void cuda_lemo_matrix_scores(float *score, const float *A, int nb) {
    if (nb <= 0) return;
    lemo_score_reduce_kernel<<<cdiv((size_t)nb * 32, 256), 256>>>(score, A, nb);
    LAUNCH_CHECK();
}

/* ---------------- random scores ---------------- */

__global__ void lemo_random_kernel(float *score, int nb, uint64_t seed) {
    int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n < nb) score[n] = lemo_random_score(seed, (uint64_t)n);
}

void cuda_lemo_random_scores(float *score, int nb, uint64_t seed) {
    if (nb <= 0) return;
    lemo_random_kernel<<<cdiv(nb, 256), 256>>>(score, nb, seed);
    LAUNCH_CHECK();
}

/* ---------------- selection ---------------- */

#define LEMO_SINK_KEY 0xffffffffu  // block 0's key: above +inf's (0xff800000), so always first

/* A 32-bit key whose unsigned order is the ranking order: the float's bits made monotone
 * (negatives flipped, positives above them), NaN the lowest (0, below -inf's 0x007fffff)
 * and -0 folded onto +0 so that the two tie as they do in the CPU's comparison. */
__device__ __forceinline__ uint32_t lemo_rank_key(float s) {
    if (s != s) return 0u;
    if (s == 0.0f) s = 0.0f;
    uint32_t u = __float_as_uint(s);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* keys (nb), ids (nb) = block index, flags (nb) cleared. */
__global__ void lemo_select_keys_kernel(uint32_t *keys, int *ids, unsigned char *flags, const float *score, int nb) {
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= nb) return;
    keys[b] = b == 0 ? LEMO_SINK_KEY : lemo_rank_key(score[b]);
    ids[b] = b;
    flags[b] = 0;
}

/* flags of the first k ranked blocks set; iota (nb) = 0..nb-1, the ids the select compacts. */
__global__ void lemo_select_flag_kernel(unsigned char *flags, int *iota, const int *ranked, int nb, int k) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= nb) return;
    iota[i] = i;
    if (i < k) flags[ranked[i]] = 1;
}

/* idx (k*B) = the rows of the chosen blocks (k, ascending). */
__global__ void lemo_select_expand_kernel(int *idx, const int *chosen, int k, int B) {
    long r = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= (long)k * B) return;
    idx[r] = chosen[r / B] * B + (int)(r % B);
}

/* The selection's pieces of the caller's workspace, in cuda_lemo_select_ws's order. */
typedef struct {
    uint32_t *keys[2];
    int *ids[2];
    unsigned char *flags;
    int *count;
    void *cub;
    size_t cub_bytes;
} LemoSelectWs;

static LemoSelectWs lemo_select_carve(void *ws, int nb) {
    size_t a4 = align_up((size_t)nb * 4, 256), a1 = align_up((size_t)nb, 256);
    char *p = (char *)ws;
    LemoSelectWs w;
    w.keys[0] = (uint32_t *)p, w.keys[1] = (uint32_t *)(p + a4);
    w.ids[0] = (int *)(p + 2 * a4), w.ids[1] = (int *)(p + 3 * a4);
    w.flags = (unsigned char *)(p + 4 * a4);
    w.count = (int *)(p + 4 * a4 + a1);
    w.cub = p + 4 * a4 + a1 + 256;
    w.cub_bytes = cuda_lemo_select_cub_bound(nb);
    return w;
}

/* CUB's temporary bytes for the sort and for the select over nb items, the larger (they run
 * one after the other in the same storage). A size query reads only the argument types and
 * nb: it touches no memory and launches nothing. */
static size_t lemo_select_cub_need(int nb) {
    cub::DoubleBuffer<uint32_t> dk(nullptr, nullptr);
    cub::DoubleBuffer<int> dv(nullptr, nullptr);
    size_t sort_bytes = 0, sel_bytes = 0;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(nullptr, sort_bytes, dk, dv, nb, 0, 32, 0));
    CUDA_CHECK(cub::DeviceSelect::Flagged(nullptr, sel_bytes, (const int *)nullptr, (const unsigned char *)nullptr,
                                          (int *)nullptr, (int *)nullptr, nb, 0));
    return sort_bytes > sel_bytes ? sort_bytes : sel_bytes;
}

extern "C" size_t cuda_lemo_select_cub_bytes(int nb) { return nb > 0 ? lemo_select_cub_need(nb) : 0; }

size_t cuda_lemo_select_ws_bytes(int nb) { return cuda_lemo_select_ws(nb); }

void cuda_lemo_select_blocks(int *idx, const float *score, int nb, int k, int B, void *ws) {
    if (nb < 1 || k < 1 || k > nb) cuda_fatal("lemo_select_blocks", "k must be in 1..nb", __FILE__, __LINE__);
    if (B < 1 || (long)k * B > INT_MAX)
        cuda_fatal("lemo_select_blocks", "block size must be positive and k*B fit an int", __FILE__, __LINE__);
    LemoSelectWs w = lemo_select_carve(ws, nb);
    size_t need = lemo_select_cub_need(nb);
    if (need > w.cub_bytes) {
        char msg[160];
        snprintf(msg, sizeof msg, "CUB needs %zu bytes of temporary storage for %d blocks, the workspace bound "
                 "cuda_lemo_select_cub_bound gives %zu", need, nb, w.cub_bytes);
        cuda_fatal("lemo_select_blocks", msg, __FILE__, __LINE__);
    }
    lemo_select_keys_kernel<<<cdiv(nb, 256), 256>>>(w.keys[0], w.ids[0], w.flags, score, nb);
    LAUNCH_CHECK();
    cub::DoubleBuffer<uint32_t> dk(w.keys[0], w.keys[1]);
    cub::DoubleBuffer<int> dv(w.ids[0], w.ids[1]);
    size_t bytes = w.cub_bytes;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(w.cub, bytes, dk, dv, nb, 0, 32, 0));
    // the sorted keys are no longer needed: their two buffers hold the ids to compact and
    // the compacted ones
    int *iota = (int *)w.keys[0], *chosen = (int *)w.keys[1];
    lemo_select_flag_kernel<<<cdiv(nb, 256), 256>>>(w.flags, iota, dv.Current(), nb, k);
    LAUNCH_CHECK();
    bytes = w.cub_bytes;
    CUDA_CHECK(cub::DeviceSelect::Flagged(w.cub, bytes, (const int *)iota, w.flags, chosen, w.count, nb, 0));
    lemo_select_expand_kernel<<<cdiv((size_t)k * B, 256), 256>>>(idx, chosen, k, B);
    LAUNCH_CHECK();
}
