/* cuda_attention_wgmma.cu: the causal flash-attention forward on Hopper's warpgroup MMA.
 *
 * Same function as attn_fwd_kernel (cuda_attention.cu), which stays the path for other
 * GPUs and under LEMO_ATTN_NO_WGMMA=1: out (S,NH,HS) bf16 and lse (NH,S) fp32 (natural
 * log), grouped-query heads. One block per (NC x 64 query rows, query head) with NC + 1
 * warpgroups, shaped after FlashAttention-3's forward:
 *   - a load warpgroup whose one thread moves every tile with TMA (cp.async.bulk.tensor
 *     through tensor maps made on the host): Q once, then K and V tiles of 128 keys, last
 *     to first, into two stages each, paced by full / empty mbarriers. The copy engine
 *     writes the 128-byte swizzle the wgmma descriptors read and zero-fills past S, so no
 *     math thread spends an instruction on loads; the load warpgroup drops to 24-32
 *     registers (setmaxnreg) and the math warpgroups rise to 240 / 160;
 *   - NC math warpgroups of 64 rows each. Per key tile a warpgroup issues S = Q K^T of this
 *     tile and P V of the previous one back to back, waits for S only, runs the online
 *     softmax (base 2, scale folded into one FFMA before ex2) while P V still runs, then
 *     waits for P V, rescales O and packs P (bf16, the accumulator layout reused as the A
 *     fragment). Keys run last to first so the masked diagonal tiles come first and every
 *     later tile takes the unmasked softmax;
 *   - at head size 128 (NC = 2) the two math warpgroups take turns at the tensor cores
 *     (named barriers, round robin): one issues its products while the other does its
 *     exponentials, so the tensor pipe sees one warpgroup's GEMMs under the other's softmax
 *     rather than both waiting together. At head size 64 (NC = 3, 192-row blocks) the
 *     turns measured no better than free-running and are off;
 *   - blocks are ordered heaviest query tile first within sections of heads whose K and V
 *     fit ~32 MB of L2 (one head at 64K tokens): the ~132 resident blocks then walk the same
 *     K/V rows a few tiles apart and find them in L2 (+4-6% over heads-fastest order);
 *   - at head size 128 the output goes back through the warpgroup's own Q rows in shared
 *     memory and a TMA store (coalesced, clipped at S); at head size 64 direct stores
 *     measured the same and stay.
 * Measured (NVIDIA H200, causal, 32 heads, TFLOP/s as attn_bench counts), 16K / 64K tokens:
 * head size 128 651 / 592, head size 64 492 / 485 (cuDNN on that card: 664 / 622 and
 * 463 / 469). The previous design of this file (two warpgroups sharing every barrier,
 * cp.async from all threads, no overlap) ran 319 / 329 and 251 / 258 on the same card.
 * Steps, head size 128 at 16K: load warpgroup + TMA + in-warpgroup overlap 591, + turns
 * 614, + L2 sections 642, + TMA store 651; 64-key tiles (511) or a third stage (645) did
 * not help. ncu at 16K: tensor pipe active 70% of cycles, DRAM 4%. Not measured further;
 * the likely rest is the per-block prologue (blocks are not persistent: each waits for its
 * first Q and K) and the diagonal tile, whose S is waited for with nothing to overlap, and
 * at 64K whatever makes the longer blocks slower (not DRAM, not the section size: 16 and
 * 64 MB measured the same). No spills (ptxas reports the launch cap, 168 / 128 registers,
 * under which setmaxnreg moves them). */
#include <cuda.h>
#include <cudaTypedefs.h>
#include <math.h>
#include <stdlib.h>

#include "cuda_common.h"
#include "cuda_wgmma.h"

#define WG_LOG2E 1.4426950408889634f
#define WG_LN2 0.6931471805599453f
/* Bytes of K and V a section of heads may span (block order; 16 and 64 MB measured the same). */
#define WG_L2_SECTION ((size_t)32 << 20)

/* 2^x, subnormal results flushed to zero. */
__device__ __forceinline__ float wg_ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* Shared-memory bytes of one block: Q (BM x HS), ST stages of K and V (BK x HS each), the
 * mbarriers, and the slack that aligns the tiles to 1024 bytes. */
template <int HS, int NC, int BK, int ST> constexpr size_t wg_smem_bytes() {
    return (size_t)(NC * 64 + 2 * ST * BK) * HS * sizeof(bf16) + (1 + 4 * ST) * 8 + 1024;
}

/* Online softmax of one tile's scores s (64 rows x BK keys of this warpgroup, wgmma layout,
 * raw Q K^T) for this thread's rows r0, r1: masks keys after the row when MASK, moves the
 * running maxima m0, m1 (base-2 units, scale folded in), turns s into P = 2^(s sl2 - m) in
 * place, and updates the running sums l0, l1 (this thread's columns only); c0, c1 receive
 * the factors that rescale what the output accumulated so far. */
template <int BK, bool MASK>
__device__ __forceinline__ void wg_softmax(float (&s)[BK / 2], int key0, int r0, int r1, float sl2, float &m0,
                                           float &m1, float &l0, float &l1, float &c0, float &c1) {
    int t = threadIdx.x & 3;
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int n = 0; n < BK / 8; n++) {
#pragma unroll
        for (int e = 0; e < 2; e++) {
            if (MASK) {
                int key = key0 + n * 8 + 2 * t + e;
                if (key > r0) s[n * 4 + e] = -INFINITY;
                if (key > r1) s[n * 4 + 2 + e] = -INFINITY;
            }
            mx0 = fmaxf(mx0, s[n * 4 + e]);
            mx1 = fmaxf(mx1, s[n * 4 + 2 + e]);
        }
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    float mn0 = fmaxf(m0, mx0 * sl2), mn1 = fmaxf(m1, mx1 * sl2);
    // a row with no visible key yet keeps m = -inf: 0 as the base gives 2^-inf = 0, not NaN
    float b0 = mn0 == -INFINITY ? 0.0f : mn0, b1 = mn1 == -INFINITY ? 0.0f : mn1;
    c0 = wg_ex2(m0 - b0), c1 = wg_ex2(m1 - b1);
    m0 = mn0, m1 = mn1;
    float ls0 = 0.0f, ls1 = 0.0f;
#pragma unroll
    for (int n = 0; n < BK / 8; n++) {
#pragma unroll
        for (int e = 0; e < 2; e++) {
            float p0 = wg_ex2(fmaf(s[n * 4 + e], sl2, -b0)), p1 = wg_ex2(fmaf(s[n * 4 + 2 + e], sl2, -b1));
            s[n * 4 + e] = p0, s[n * 4 + 2 + e] = p1;
            ls0 += p0, ls1 += p1;
        }
    }
    l0 = l0 * c0 + ls0, l1 = l1 * c1 + ls1;
}

/* The forward (see the file comment). HS head size; NC math warpgroups (64 query rows
 * each); BK keys a tile; ST copy stages; PP the math warpgroups take turns at the tensor
 * cores; TS the output leaves through shared memory and a TMA store. Block b of the 1-D
 * grid takes, within section b / (hsec nq) of hsec consecutive heads, query tile
 * nq - 1 - l / hsec of head l % hsec (l the index inside the section): heads fastest,
 * heaviest tiles first. */
template <int HS, int NC, int BK, int ST, bool PP, bool TS>
__global__ void __launch_bounds__((NC + 1) * 128, 1)
    attn_fwd_wgmma_kernel(bf16 *out, float *lse, const __grid_constant__ CUtensorMap tmq,
                          const __grid_constant__ CUtensorMap tmk, const __grid_constant__ CUtensorMap tmv,
                          const __grid_constant__ CUtensorMap tmo, int S, int NH, int NKV, float sl2, int hsec) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int BM = NC * 64, NSUB = HS / 64;
    constexpr uint32_t QBYTES = BM * HS * 2, KVBYTES = BK * HS * 2;
    extern __shared__ __align__(1024) unsigned char wg_smem[];
    bf16 *Qs = (bf16 *)wg_align1024(wg_smem);  // (NSUB, BM, 64)
    bf16 *Ks = Qs + BM * HS;                    // (ST, NSUB, BK, 64)
    bf16 *Vs = Ks + ST * BK * HS;               // (ST, NSUB, BK, 64)
    uint64_t *qfull = (uint64_t *)(Vs + ST * BK * HS);
    uint64_t *kfull = qfull + 1, *vfull = kfull + ST, *kempty = vfull + ST, *vempty = kempty + ST;
    int nq = cdiv(S, BM), bid = blockIdx.x;
    int sec = bid / (hsec * nq), hs = min(hsec, NH - sec * hsec), l = bid - sec * hsec * nq;
    int qt = nq - 1 - l / hs, h = sec * hsec + l % hs;  // the last section may hold fewer heads
    int kvh = h / (NH / NKV);
    int q0 = qt * BM;
    int nkt = cdiv(min(S, q0 + BM), BK);  // key tiles up to the block's last row
    int wg = threadIdx.x >> 7;
    if (threadIdx.x == 0) {
        mbar_init(qfull, 1);
        for (int i = 0; i < ST; i++) {
            mbar_init(kfull + i, 1), mbar_init(vfull + i, 1);
            mbar_init(kempty + i, NC * 4), mbar_init(vempty + i, NC * 4);
        }
        mbar_fence_init();
    }
    __syncthreads();

    if (wg == 0) {  // the load warpgroup: one thread starts every copy
        wg_setmaxnreg_dec<NC == 2 ? 24 : 32>();
        if (threadIdx.x == 0) {
            tma_prefetch_map(&tmq), tma_prefetch_map(&tmk), tma_prefetch_map(&tmv);
            mbar_expect_tx(qfull, QBYTES);
#pragma unroll
            for (int c = 0; c < NSUB; c++) tma_load_3d(Qs + c * BM * 64, &tmq, qfull, c * 64, h, q0);
            for (int it = 0; it < nkt; it++) {
                int j = nkt - 1 - it, st = it % ST;
                uint32_t ph = (it / ST) & 1;
                if (it >= ST) mbar_wait(kempty + st, ph ^ 1);
                mbar_expect_tx(kfull + st, KVBYTES);
#pragma unroll
                for (int c = 0; c < NSUB; c++)
                    tma_load_3d(Ks + (st * NSUB + c) * BK * 64, &tmk, kfull + st, c * 64, kvh, j * BK);
                if (it >= ST) mbar_wait(vempty + st, ph ^ 1);
                mbar_expect_tx(vfull + st, KVBYTES);
#pragma unroll
                for (int c = 0; c < NSUB; c++)
                    tma_load_3d(Vs + (st * NSUB + c) * BK * 64, &tmv, vfull + st, c * 64, kvh, j * BK);
            }
        }
        return;
    }
    wg_setmaxnreg_inc<NC == 2 ? 240 : 160>();
    int cw = wg - 1;  // consumer warpgroup
    int wl = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    int rowbase = q0 + cw * 64;                   // this warpgroup's rows
    int r0 = rowbase + wl * 16 + g, r1 = r0 + 8;  // this thread's two rows
    const bf16 *Qw = Qs + cw * 64 * 64;           // row 64*cw of sub-tile 0

    float o[HS / 2];  // (64 rows x HS) accumulator of this warpgroup, wgmma layout
#pragma unroll
    for (int i = 0; i < HS / 2; i++) o[i] = 0.0f;
    float s[BK / 2];          // scores, then P, of the newest tile
    uint32_t pf[BK / 16][4];  // P of the tile whose P V is in flight, as A fragments
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f, c0, c1;

    // S (64 x BK) = Q K^T: k16 steps along the head dimension, 32 bytes apart inside a
    // 128-byte row, the next 64 columns in the next sub-tile
    auto issue_s = [&](const bf16 *Kb) {
#pragma unroll
        for (int kk = 0; kk < HS / 16; kk++) {
            int sub = kk >> 2, off = (kk & 3) * 16;
            uint64_t da = wg_desc(Qw + sub * BM * 64 + off, 16, 1024);
            uint64_t db = wg_desc(Kb + sub * BK * 64 + off, 16, 1024);
            if constexpr (BK == 128)
                wgmma_ss_n128(s, da, db, kk > 0);
            else
                wgmma_ss_n64(s, da, db, kk > 0);
        }
        wg_commit();
    };
    // o += P V: k16 steps along the keys, 16 rows (2048 bytes) apart; V is MN-major: its
    // 64-column sub-tiles are BK rows apart (leading byte offset), 8-row groups 1024 bytes
    // apart (stride byte offset)
    auto issue_pv = [&](const bf16 *Vb) {
#pragma unroll
        for (int kk = 0; kk < BK / 16; kk++) wgmma_rs<HS>(o, pf[kk], wg_desc(Vb + kk * 16 * 64, BK * 128, 1024));
        wg_commit();
    };
    auto softmax = [&](int j) {
        if (j * BK + BK - 1 > rowbase)  // some key of the tile may follow some row
            wg_softmax<BK, true>(s, j * BK, r0, r1, sl2, m0, m1, l0, l1, c0, c1);
        else
            wg_softmax<BK, false>(s, j * BK, r0, r1, sl2, m0, m1, l0, l1, c0, c1);
    };
    auto pack_p = [&]() {
#pragma unroll
        for (int n = 0; n < BK / 8; n++) {
            pf[n / 2][(n & 1) * 2] = pack_bf16(s[n * 4], s[n * 4 + 1]);
            pf[n / 2][(n & 1) * 2 + 1] = pack_bf16(s[n * 4 + 2], s[n * 4 + 3]);
        }
    };
    // turns of the consumer warpgroups at the tensor cores, round robin: warpgroup cw waits
    // on barrier 1 + cw and, once its products are issued, lets the next one go; the last
    // lets the first start, and skips that on its last turn so every barrier phase completes
    auto turn_wait = [&]() {
        if constexpr (PP) named_bar_sync(1 + cw, 256);
    };
    auto turn_pass = [&](bool last) {
        if constexpr (PP)
            if (!(last && cw == NC - 1)) named_bar_arrive(1 + (cw + 1) % NC, 256);
    };
    if (cw == NC - 1) turn_pass(false);

    mbar_wait(qfull, 0);
    // the first (diagonal) tile: S, softmax, P
    mbar_wait(kfull, 0);
    turn_wait();
    wg_fence();
    issue_s(Ks);
    turn_pass(nkt == 1);
    wg_wait<0>();
    wg_pin(s);
    if (lane == 0) mbar_arrive(kempty);
    softmax(nkt - 1);
    pack_p();
    // then per tile, last to first: S of this tile and P V of the previous one issued
    // together; this tile's softmax runs while P V does
    for (int it = 1; it < nkt; it++) {
        int j = nkt - 1 - it, st = it % ST, pst = (it - 1) % ST;
        mbar_wait(kfull + st, (it / ST) & 1);
        mbar_wait(vfull + pst, ((it - 1) / ST) & 1);
        turn_wait();
        wg_fence();
        issue_s(Ks + st * BK * HS);
        issue_pv(Vs + pst * BK * HS);
        turn_pass(it == nkt - 1);
        wg_wait<1>();
        wg_pin(s);
        if (lane == 0) mbar_arrive(kempty + st);
        softmax(j);
        wg_wait<0>();
        wg_pin(o);
        if (lane == 0) mbar_arrive(vempty + pst);
#pragma unroll
        for (int n = 0; n < HS / 8; n++) {
            o[n * 4] *= c0, o[n * 4 + 1] *= c0;
            o[n * 4 + 2] *= c1, o[n * 4 + 3] *= c1;
        }
        pack_p();
    }
    {
        int pst = (nkt - 1) % ST;
        mbar_wait(vfull + pst, ((nkt - 1) / ST) & 1);
        wg_fence();
        issue_pv(Vs + pst * BK * HS);
        wg_wait<0>();
        wg_pin(o);
    }

    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
    if constexpr (TS) {
        // through this warpgroup's Q rows (its last S product has completed), swizzled as
        // the tensor map's box, then one bulk tensor store per 64-column sub-tile
        bf16 *Os = Qs + cw * 64 * 64;
        int a = wl * 16 + g;
#pragma unroll
        for (int n = 0; n < HS / 8; n++) {
            bf16 *p = Os + (n >> 3) * BM * 64 + (((n & 7) ^ (a & 7)) << 3) + 2 * t;
            *(__nv_bfloat162 *)(p + a * 64) = __floats2bfloat162_rn(o[n * 4] * inv0, o[n * 4 + 1] * inv0);
            *(__nv_bfloat162 *)(p + (a + 8) * 64) = __floats2bfloat162_rn(o[n * 4 + 2] * inv1, o[n * 4 + 3] * inv1);
        }
        fence_proxy_async();
        named_bar_sync(8 + cw, 128);
        if ((threadIdx.x & 127) == 0) {
#pragma unroll
            for (int c = 0; c < NSUB; c++) tma_store_3d(&tmo, Os + c * BM * 64, c * 64, h, rowbase);
            bulk_commit();
            bulk_wait_read0();
        }
    } else {
#pragma unroll
        for (int n = 0; n < HS / 8; n++) {
            int col = n * 8 + 2 * t;
            if (r0 < S)
                *(__nv_bfloat162 *)(out + ((long)r0 * NH + h) * HS + col) =
                    __floats2bfloat162_rn(o[n * 4] * inv0, o[n * 4 + 1] * inv0);
            if (r1 < S)
                *(__nv_bfloat162 *)(out + ((long)r1 * NH + h) * HS + col) =
                    __floats2bfloat162_rn(o[n * 4 + 2] * inv1, o[n * 4 + 3] * inv1);
        }
    }
    if (t == 0) {
        if (r0 < S) lse[(long)h * S + r0] = (m0 + log2f(l0)) * WG_LN2;
        if (r1 < S) lse[(long)h * S + r1] = (m1 + log2f(l1)) * WG_LN2;
    }
#else
    __trap();  // built without sm_90a: cuda_attention_forward does not launch this
#endif
}

/* The driver's tensor-map encoder, through the runtime (no link against libcuda). */
static PFN_cuTensorMapEncodeTiled_v12000 wg_encoder(void) {
    static PFN_cuTensorMapEncodeTiled_v12000 fn;
    if (!fn) {
        void *p = NULL;
        cudaDriverEntryPointQueryResult qr;
        CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &qr));
        if (qr != cudaDriverEntryPointSuccess || !p)
            cuda_fatal("cudaGetDriverEntryPointByVersion(cuTensorMapEncodeTiled)", "driver has no tensor maps",
                       __FILE__, __LINE__);
        fn = (PFN_cuTensorMapEncodeTiled_v12000)p;
    }
    return fn;
}

/* Tensor map of a (S, heads, HS) bf16 tensor whose box is `rows` positions x 64 columns of
 * one head, written to shared memory in the 128-byte swizzle; positions past S read as 0. */
static CUtensorMap wg_map(const void *base, int S, int heads, int HS, int rows) {
    CUtensorMap m;
    cuuint64_t dims[3] = {(cuuint64_t)HS, (cuuint64_t)heads, (cuuint64_t)S};
    cuuint64_t strides[2] = {(cuuint64_t)HS * sizeof(bf16), (cuuint64_t)heads * HS * sizeof(bf16)};
    cuuint32_t box[3] = {64, 1, (cuuint32_t)rows}, estr[3] = {1, 1, 1};
    CUresult r = wg_encoder()(&m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, (void *)base, dims, strides, box, estr,
                              CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                              CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS)
        cuda_fatal("cuTensorMapEncodeTiled", "attention input not 16-byte aligned or too large", __FILE__, __LINE__);
    return m;
}

template <int HS, int NC, int BK, int ST, bool PP, bool TS>
static void wg_launch(void *out, float *lse, const void *q, const void *k, const void *v, int S, int NH, int NKV,
                      size_t l2_budget) {
    constexpr size_t smem = wg_smem_bytes<HS, NC, BK, ST>();
    static bool attr_set;
    if (!attr_set) {
        CUDA_CHECK(cudaFuncSetAttribute(attn_fwd_wgmma_kernel<HS, NC, BK, ST, PP, TS>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attr_set = true;
    }
    CUtensorMap tmq = wg_map(q, S, NH, HS, NC * 64), tmk = wg_map(k, S, NKV, HS, BK), tmv = wg_map(v, S, NKV, HS, BK);
    CUtensorMap tmo = wg_map(out, S, NH, HS, 64);
    // heads a section: as many kv heads as fit the budget (at least one), with all the
    // query heads that read them
    size_t kv = (size_t)S * HS * 2 * sizeof(bf16);  // K and V of one kv head
    int nq = cdiv(S, NC * 64), hsec = (int)(l2_budget / kv);
    if (hsec < 1) hsec = 1;
    hsec *= NH / NKV;
    if (hsec > NH) hsec = NH;
    float sl2 = WG_LOG2E / sqrtf((float)HS);
    attn_fwd_wgmma_kernel<HS, NC, BK, ST, PP, TS><<<nq * NH, (NC + 1) * 128, smem>>>(
        (bf16 *)out, lse, tmq, tmk, tmv, tmo, S, NH, NKV, sl2, hsec);
    LAUNCH_CHECK();
}

/* 1 when this device runs the sm_90a code (compute capability 9.0). */
int cuda_attention_wgmma_ok(void) {
    static int ok = -1;
    if (ok < 0) {
        int dev = 0, major = 0, minor = 0;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
        ok = major == 9 && minor == 0 && !getenv("LEMO_ATTN_NO_WGMMA");
    }
    return ok;
}

void cuda_attention_forward_wgmma(void *out, float *lse, const void *q, const void *k, const void *v, int S,
                                  int NH, int NKV, int HS) {
    if (HS == 64)
        wg_launch<64, 3, 128, 2, false, false>(out, lse, q, k, v, S, NH, NKV, WG_L2_SECTION);
    else
        wg_launch<128, 2, 128, 2, true, true>(out, lse, q, k, v, S, NH, NKV, WG_L2_SECTION);
}
