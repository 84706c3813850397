/* cuda_attention_wgmma_bwd.cu: the causal flash-attention backward's main kernel on Hopper's
 * warpgroup MMA.
 *
 * Same function as attn_bwd_kernel (cuda_attention.cu), which stays the path for other GPUs
 * and under LEMO_ATTN_NO_WGMMA=1; cuda_attention_backward does the rest around it (D =
 * rowsum(dO * O) before, dQ fp32 -> bf16 after). One block of two warpgroups (256 threads)
 * per (128 keys, kv head); each warpgroup owns 64 keys and keeps their dK and dV (64 x HS
 * fp32 each) in registers for the whole block, so that they are written once, summed over
 * the group's query heads without atomics. The block walks every (query head of the group,
 * 64-row query tile at or after its key tile), last query tile first, the next tile's Q and
 * dO (cp.async) and its lse, D (registers) loading while this one computes. Per tile, per
 * warpgroup:
 *   S^T (64 keys x 64 queries) = K Q^T and dP^T = V dO^T    wgmma, both operands K-major in
 *                                                          shared memory, issued together;
 *   P^T = exp2(S^T sl2 - lse log2 e), causal;  dS^T = P^T (dP^T - D)   fp32, in registers;
 *   dV += P^T dO and dK += dS^T Q    wgmma with A = P^T / dS^T from registers (bf16, the
 *                                    accumulator layout reused as A fragments) and B = dO / Q
 *                                    read MN-major from the same tiles; at head size 128 dV
 *                                    is issued as soon as P^T is, before the wait for dP^T,
 *                                    and runs while dS^T is computed (+2% at 16K tokens,
 *                                    +0.5% at 64K, near the ~1.5% spread between runs; -4%
 *                                    at head size 64, where it stays after dS^T);
 *   dS^T to shared memory (bf16, keys x queries), then after a barrier
 *   dQ (64 queries x HS) = dS K      wgmma with both operands MN-major (dS^T and K read
 *                                    transposed), staged in shared memory (fp32) and added
 *                                    into the caller's fp32 accumulator by bulk reductions
 *                                    (cp.reduce.async.bulk .add), one 256-byte row each.
 * The keys are the M side of every product but dQ's because wgmma's M is fixed at 64 and
 * the accumulators that persist (dK, dV) must be the register-resident ones: 246 registers
 * a thread at head size 128, no spills. dQ is split between the warpgroups by columns at
 * head size 128 (each adds a 64 x 64 tile; splitting by keys, each adding 64 x 128 with no
 * block barrier before dQ, ran at 282 TFLOP/s against 332 at 16K tokens) and by keys at
 * head size 64 (a 32-column split is below the swizzle atom of an MN-major operand). The
 * bulk reductions replaced 16-byte atomics (atomic_add_tile): the warp hands each row to
 * the copy engine and goes on, +1-3%; exp2 with subnormals flushed saves the non-ftz fixup,
 * +1%. A warpgroup whose keys all follow the tile's queries skips its products and leaves
 * zeros for dS. No warp specialization: the two warpgroups meet at two barriers a tile and
 * the MMAs of one overlap the other's exponentials only through the scheduler; ncu shows
 * the tensor pipe active 35% of the time, the warps waiting on wgmma, barriers and the
 * exponentials' scoreboard: the room that is left (FlashAttention-3 reaches ~1.5x with a
 * producer warp, register reallocation and staggered warpgroups).
 * Software pipelining inside the warpgroup lost: issuing the next tile's S^T right after
 * dQ so that it runs while dQ is written out (dP^T issued at the top of the tile, Q and dO
 * triple-buffered so the next tile's are ready by the mid-tile barrier, a warpgroup with no
 * work running its masked tile anyway, since a wgmma in a divergent path or left running
 * across the loop's back edge makes ptxas serialize them all) measured 313 / 324 at 16K /
 * 64K tokens against 336 / 340 for this kernel on the same H200 (head size 64: 207 / 211
 * against 242 / 249); its 255 registers spilled a few words at head size 128, and at head
 * size 64 it needs a block barrier mid-tile where this kernel's is per warpgroup.
 * Measured (NVIDIA H200, head size 128, 32 heads, causal; TFLOP/s as attn_bench counts,
 * median of 3): 343 at 16K tokens and 342 at 64K (336 and 340 without the early dV, in the
 * same run), against 211 and 196 for attn_bwd_kernel on the same card; head size 64:
 * 242 and 249 against 171 and 170. cuDNN on the same card: 563 and 551, 424 and 433. */
#include <math.h>

#include "cuda_common.h"
#include "cuda_wgmma.h"

#define WB_KEYS 128  // keys per block: two warpgroups of 64
#define WB_Q 64      // query rows per tile
#define WB_THREADS 256
#define WB_LOG2E 1.4426950408889634f
#define WB_DQS 72    // floats a row of the dQ staging tile: 16-byte aligned rows, 2-way bank conflicts

/* 2^x, subnormal results flushed to zero. */
__device__ __forceinline__ float ex2_ftz(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* dQ rows q0.. (64 queries) x columns c0..c0+63 += scale * dS K over NK keys, by one
 * warpgroup: dSt points at the first key's row of dS^T (keys x 64 queries), Kc at the same
 * key's row of K's 64-column sub-tile c0/64. Both are read MN-major: their rows are the
 * reduction. Waits for every wgmma of the warpgroup, then adds the tile through dqs, this
 * warpgroup's 64 x WB_DQS fp32 staging rows (each warp uses its own 16). */
template <int NK>
__device__ __forceinline__ void wb_dq(float *dqacc, float *dqs, const bf16 *dSt, const bf16 *Kc, int q0, int h,
                                      int c0, int S, int NH, int HS, float scale, int wl, int lane) {
    int g = lane >> 2, t = lane & 3;
    float dq[32];
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < NK / 16; kk++) {
        uint64_t da = wg_desc(dSt + kk * 16 * 64, WB_KEYS * 128, 1024);
        uint64_t db = wg_desc(Kc + kk * 16 * 64, WB_KEYS * 128, 1024);
        wgmma_ss_n64<1, 1>(dq, da, db, kk > 0);
    }
    wg_commit();
    wg_wait<0>();
    wg_pin(dq);
    int qr = q0 + wl * 16;
    float *tile = dqacc + ((long)qr * NH + h) * HS + c0;
    // the warp's 16 rows through shared memory (WB_DQS floats a row), each row added by one
    // bulk reduction; the previous tile's reductions must have read the rows first
    float *rows = dqs + wl * 16 * WB_DQS;
    if (lane < 16) asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
    __syncwarp();
#pragma unroll
    for (int n = 0; n < 8; n++) {
        *(float2 *)(rows + g * WB_DQS + n * 8 + 2 * t) = make_float2(dq[n * 4] * scale, dq[n * 4 + 1] * scale);
        *(float2 *)(rows + (g + 8) * WB_DQS + n * 8 + 2 * t) = make_float2(dq[n * 4 + 2] * scale, dq[n * 4 + 3] * scale);
    }
    fence_proxy_async();
    __syncwarp();
    if (lane < 16 && qr + lane < S) {
        asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], 256;\n" ::"l"(
                         tile + (long)lane * NH * HS),
                     "r"(smem_addr(rows + lane * WB_DQS))
                     : "memory");
        asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
    }
}

template <int HS>
__global__ void __launch_bounds__(WB_THREADS, 1)
    attn_bwd_wgmma_kernel(float *dqacc, bf16 *dk, bf16 *dv, const bf16 *dout, const float *lse, const float *Dv,
                          const bf16 *q, const bf16 *k, const bf16 *v, int S, int NH, int NKV, float sl2,
                          float scale) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int KT = WB_KEYS, BQ = WB_Q, NTH = WB_THREADS;
    constexpr bool DQ_BY_COLS = HS == 128;  // else by keys
    constexpr bool EARLY_DV = HS == 128;    // dV issued before dP^T is waited for
    extern __shared__ __align__(1024) unsigned char wg_smem[];
    bf16 *Ks = (bf16 *)wg_align1024(wg_smem);  // (HS/64, KT, 64)
    bf16 *Vs = Ks + KT * HS;                    // (HS/64, KT, 64)
    bf16 *Qs2 = Vs + KT * HS;                   // (2, HS/64, BQ, 64)
    bf16 *dOs2 = Qs2 + 2 * BQ * HS;             // (2, HS/64, BQ, 64)
    bf16 *dSt = dOs2 + 2 * BQ * HS;             // (KT keys, BQ queries): dS^T
    float *lse_s = (float *)(dSt + KT * BQ);    // (2, BQ) lse * log2 e
    float *D_s = lse_s + 2 * BQ;                // (2, BQ)
    float *dQs = D_s + 2 * BQ;                  // (2 warpgroups, 64, WB_DQS) dQ staging
    int nq = cdiv(S, BQ);
    int kvh = blockIdx.x, j = blockIdx.y, group = NH / NKV;
    int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    int wg = warp >> 2, wl = warp & 3;
    long qstride = (long)NH * HS, kstride = (long)NKV * HS;
    int k0 = j * KT, kw0 = k0 + wg * 64;            // block's and warpgroup's first key
    int key0 = kw0 + wl * 16 + g, key1 = key0 + 8;  // this thread's two keys
    wg_load<HS, KT, NTH>(Ks, k + (long)k0 * kstride + (long)kvh * HS, kstride, S - k0);
    wg_load<HS, KT, NTH>(Vs, v + (long)k0 * kstride + (long)kvh * HS, kstride, S - k0);

    // the (query head, query tile) pairs of this block, in order
    int i_first = k0 / BQ, per_head = nq - i_first, total = group * per_head;
#define PAIR_HEAD(it) (kvh * group + (it) / per_head)
#define PAIR_TILE(it) (nq - 1 - (it) % per_head)
    float lse_r = INFINITY, d_r = 0.0f;  // lse, D of the next pair's row tid (tid < BQ)
    {
        int h0 = PAIR_HEAD(0), q00 = PAIR_TILE(0) * BQ;
        wg_load<HS, BQ, NTH>(Qs2, q + (long)q00 * qstride + (long)h0 * HS, qstride, S - q00);
        wg_load<HS, BQ, NTH>(dOs2, dout + (long)q00 * qstride + (long)h0 * HS, qstride, S - q00);
        cp_async_commit();  // one group: K, V and the first Q, dO
        if (tid < BQ && q00 + tid < S) {
            lse_r = lse[(long)h0 * S + q00 + tid] * WB_LOG2E;
            d_r = Dv[(long)h0 * S + q00 + tid];
        }
    }

    float dka[HS / 2], dva[HS / 2];  // (64 keys x HS) of this warpgroup, accumulator layout
#pragma unroll
    for (int i = 0; i < HS / 2; i++) dka[i] = dva[i] = 0.0f;
    const bf16 *Kw = Ks + wg * 64 * 64, *Vw = Vs + wg * 64 * 64;  // row 64*wg of sub-tile 0

    for (int it = 0; it < total; it++) {
        int h = PAIR_HEAD(it), q0 = PAIR_TILE(it) * BQ, buf = it & 1;
        if (tid < BQ) {
            lse_s[buf * BQ + tid] = lse_r;
            D_s[buf * BQ + tid] = d_r;
        }
        cp_async_wait<0>();
        fence_proxy_async();
        // this tile's Q, dO, lse, D visible to all; every wgmma of the previous tile done
        // (each warpgroup waited for its own), so the other buffers and dS^T are free
        __syncthreads();
        if (it + 1 < total) {
            int hn = PAIR_HEAD(it + 1), qn = PAIR_TILE(it + 1) * BQ;
            wg_load<HS, BQ, NTH>(Qs2 + (buf ^ 1) * BQ * HS, q + (long)qn * qstride + (long)hn * HS, qstride, S - qn);
            wg_load<HS, BQ, NTH>(dOs2 + (buf ^ 1) * BQ * HS, dout + (long)qn * qstride + (long)hn * HS, qstride,
                                 S - qn);
            cp_async_commit();
            lse_r = INFINITY, d_r = 0.0f;
            if (tid < BQ && qn + tid < S) {
                lse_r = lse[(long)hn * S + qn + tid] * WB_LOG2E;
                d_r = Dv[(long)hn * S + qn + tid];
            }
        }
        const bf16 *Qs = Qs2 + buf * BQ * HS, *dOs = dOs2 + buf * BQ * HS;
        const float *Ls = lse_s + buf * BQ, *Ds = D_s + buf * BQ;
        bool active = kw0 <= q0 + BQ - 1;  // some key of this warpgroup precedes some query
        if (active) {
            // S^T = K_w Q^T and dP^T = V_w dO^T: k16 steps along the head dimension, 32 bytes
            // apart inside a 128-byte row, the next 64 columns in the next sub-tile
            float s[32], dp[32];
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < HS / 16; kk++) {
                int sub = kk >> 2, off = (kk & 3) * 16;
                wgmma_ss_n64(s, wg_desc(Kw + sub * KT * 64 + off, 16, 1024), wg_desc(Qs + sub * BQ * 64 + off, 16, 1024),
                             kk > 0);
            }
            wg_commit();
#pragma unroll
            for (int kk = 0; kk < HS / 16; kk++) {
                int sub = kk >> 2, off = (kk & 3) * 16;
                wgmma_ss_n64(dp, wg_desc(Vw + sub * KT * 64 + off, 16, 1024),
                             wg_desc(dOs + sub * BQ * 64 + off, 16, 1024), kk > 0);
            }
            wg_commit();
            wg_wait<1>();
            wg_pin(s);
            // s[n*4 + e]: key0, query q0 + 8n + 2t + e; s[n*4 + 2 + e]: key1, same query
            bool diag = q0 < kw0 + 63;  // some key may follow some query
#pragma unroll
            for (int n = 0; n < 8; n++) {
                float2 L = *(const float2 *)(Ls + n * 8 + 2 * t);
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    int query = q0 + n * 8 + 2 * t + e;
                    float Le = e ? L.y : L.x;
                    float p0 = ex2_ftz(s[n * 4 + e] * sl2 - Le), p1 = ex2_ftz(s[n * 4 + 2 + e] * sl2 - Le);
                    if (diag) {
                        if (key0 > query) p0 = 0.0f;
                        if (key1 > query) p1 = 0.0f;
                    }
                    s[n * 4 + e] = p0;
                    s[n * 4 + 2 + e] = p1;
                }
            }
            uint32_t pf[4][4], sf[4][4];
            if constexpr (EARLY_DV) {  // dV runs while dS^T is computed
#pragma unroll
                for (int n = 0; n < 8; n++) {
                    pf[n / 2][(n & 1) * 2] = pack_bf16(s[n * 4], s[n * 4 + 1]);
                    pf[n / 2][(n & 1) * 2 + 1] = pack_bf16(s[n * 4 + 2], s[n * 4 + 3]);
                }
                wg_fence();
#pragma unroll
                for (int kk = 0; kk < 4; kk++) wgmma_rs<HS>(dva, pf[kk], wg_desc(dOs + kk * 16 * 64, BQ * 128, 1024));
                wg_commit();
                wg_wait<1>();  // dP^T done, dV running
            } else {
                wg_wait<0>();
            }
            wg_pin(dp);
            // dS^T = P^T (dP^T - D); P^T and dS^T as bf16 A fragments of the 16-query steps;
            // dS^T also to shared memory, row = key, 16-byte chunk n ^ (row % 8) = n ^ g
            int row0 = wg * 64 + wl * 16 + g;
#pragma unroll
            for (int n = 0; n < 8; n++) {
                float2 Dq = *(const float2 *)(Ds + n * 8 + 2 * t);
                float d0 = s[n * 4] * (dp[n * 4] - Dq.x), d1 = s[n * 4 + 1] * (dp[n * 4 + 1] - Dq.y);
                float d2 = s[n * 4 + 2] * (dp[n * 4 + 2] - Dq.x), d3 = s[n * 4 + 3] * (dp[n * 4 + 3] - Dq.y);
                if constexpr (!EARLY_DV) {
                    pf[n / 2][(n & 1) * 2] = pack_bf16(s[n * 4], s[n * 4 + 1]);
                    pf[n / 2][(n & 1) * 2 + 1] = pack_bf16(s[n * 4 + 2], s[n * 4 + 3]);
                }
                uint32_t lo = pack_bf16(d0, d1), hi = pack_bf16(d2, d3);
                sf[n / 2][(n & 1) * 2] = lo;
                sf[n / 2][(n & 1) * 2 + 1] = hi;
                *(uint32_t *)(dSt + row0 * 64 + ((n ^ g) << 3) + 2 * t) = lo;
                *(uint32_t *)(dSt + (row0 + 8) * 64 + ((n ^ g) << 3) + 2 * t) = hi;
            }
            // dV += P^T dO, dK += dS^T Q: k16 steps along the queries, 16 rows (2048 bytes)
            // apart; dO and Q MN-major: 64-column sub-tiles BQ rows apart, 8-row groups 1024
            // bytes apart. Left running across the barrier; the dQ wait below ends them.
            wg_fence();
            if constexpr (!EARLY_DV) {
#pragma unroll
                for (int kk = 0; kk < 4; kk++) wgmma_rs<HS>(dva, pf[kk], wg_desc(dOs + kk * 16 * 64, BQ * 128, 1024));
            }
#pragma unroll
            for (int kk = 0; kk < 4; kk++) wgmma_rs<HS>(dka, sf[kk], wg_desc(Qs + kk * 16 * 64, BQ * 128, 1024));
            wg_commit();
            if constexpr (!DQ_BY_COLS) {  // dQ from this warpgroup's keys: its own barrier
                fence_proxy_async();
                asm volatile("bar.sync %0, 128;\n" ::"r"(1 + wg) : "memory");
                wb_dq<64>(dqacc, dQs + wg * 64 * WB_DQS, dSt + wg * 64 * 64, Ks + wg * 64 * 64, q0, h, 0, S,
                                    NH, HS, scale, wl, lane);
            }
        } else if (DQ_BY_COLS) {
            // no key of this warpgroup precedes a query: dS^T rows are zero for the other's dQ
            for (int e = tid & 127; e < 64 * 8; e += 128)
                *(uint4 *)(dSt + (wg * 64 + (e >> 3)) * 64 + (e & 7) * 8) = make_uint4(0, 0, 0, 0);
        }
        if constexpr (DQ_BY_COLS) {
            fence_proxy_async();
            __syncthreads();  // dS^T of both warpgroups in shared memory
            wb_dq<KT>(dqacc, dQs + wg * 64 * WB_DQS, dSt, Ks + wg * KT * 64, q0, h, wg * 64, S, NH, HS,
                                scale, wl, lane);
        }
        wg_pin(dka);
        wg_pin(dva);
    }
#undef PAIR_HEAD
#undef PAIR_TILE
    if (lane < 16) asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");  // dQ rows added
#pragma unroll
    for (int n = 0; n < HS / 8; n++) {
        int col = n * 8 + 2 * t;
        if (key0 < S) {
            *(__nv_bfloat162 *)(dk + ((long)key0 * NKV + kvh) * HS + col) =
                __floats2bfloat162_rn(dka[n * 4] * scale, dka[n * 4 + 1] * scale);
            *(__nv_bfloat162 *)(dv + ((long)key0 * NKV + kvh) * HS + col) =
                __floats2bfloat162_rn(dva[n * 4], dva[n * 4 + 1]);
        }
        if (key1 < S) {
            *(__nv_bfloat162 *)(dk + ((long)key1 * NKV + kvh) * HS + col) =
                __floats2bfloat162_rn(dka[n * 4 + 2] * scale, dka[n * 4 + 3] * scale);
            *(__nv_bfloat162 *)(dv + ((long)key1 * NKV + kvh) * HS + col) =
                __floats2bfloat162_rn(dva[n * 4 + 2], dva[n * 4 + 3]);
        }
    }
#else
    __trap();  // built without sm_90a: cuda_attention_backward does not launch this
#endif
}

template <int HS>
static size_t wb_smem_bytes() {
    return (size_t)(2 * WB_KEYS + 4 * WB_Q) * HS * sizeof(bf16) + WB_KEYS * WB_Q * sizeof(bf16) +
           4 * WB_Q * sizeof(float) + 2 * 64 * WB_DQS * sizeof(float) + 1024;
}

template <int HS>
static void wb_launch(float *dqacc, void *dk, void *dv, const void *dout, const float *lse, const float *D,
                      const void *q, const void *k, const void *v, int S, int NH, int NKV) {
    static bool attr_set;
    if (!attr_set) {
        CUDA_CHECK(cudaFuncSetAttribute(attn_bwd_wgmma_kernel<HS>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)wb_smem_bytes<HS>()));
        attr_set = true;
    }
    float scale = 1.0f / sqrtf((float)HS);
    dim3 grid(NKV, cdiv(S, WB_KEYS));
    attn_bwd_wgmma_kernel<HS><<<grid, WB_THREADS, wb_smem_bytes<HS>()>>>(
        dqacc, (bf16 *)dk, (bf16 *)dv, (const bf16 *)dout, lse, D, (const bf16 *)q, (const bf16 *)k,
        (const bf16 *)v, S, NH, NKV, scale * WB_LOG2E, scale);
    LAUNCH_CHECK();
}

void cuda_attention_backward_wgmma(float *dqacc, void *dk, void *dv, const void *dout, const float *lse,
                                   const float *D, const void *q, const void *k, const void *v, int S, int NH,
                                   int NKV, int HS) {
    if (HS == 64)
        wb_launch<64>(dqacc, dk, dv, dout, lse, D, q, k, v, S, NH, NKV);
    else
        wb_launch<128>(dqacc, dk, dv, dout, lse, D, q, k, v, S, NH, NKV);
}
