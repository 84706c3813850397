/* cuda_attention_wgmma.cu: the causal flash-attention forward on Hopper's warpgroup MMA.
 *
 * Same function as attn_fwd_kernel (cuda_attention.cu), which stays the path for other
 * GPUs: out (S,NH,HS) bf16 and lse (NH,S) fp32 (natural log). One block of two warpgroups
 * (256 threads) per (128 query rows, query head); each warpgroup owns 64 rows. Key/value
 * tiles of 128 rows (64 at head size 64) stream through shared memory, double-buffered with
 * cp.async issued by all threads. Per tile a warpgroup forms S = Q K^T with wgmma (A = Q and B = K both read
 * from shared memory through matrix descriptors), runs the online softmax on the fp32
 * accumulators in registers (base 2, the scale folded into log2 e), and adds P V with
 * wgmma taking P from registers (bf16, the accumulator layout reused as the A fragment)
 * and V from shared memory transposed (MN-major). The two warpgroups of a block, and the
 * block's MMAs and softmax, overlap only through the scheduler: no warp specialization.
 *
 * Shared-memory tiles use the 128-byte-swizzled sub-tile layout of cuda_wgmma.h, which also
 * holds the wgmma wrappers this kernel and the backward (cuda_attention_wgmma_bwd.cu) share.
 * LEMO_ATTN_NO_WGMMA=1 in the environment selects the mma.sync kernel instead (to compare). */
#include <math.h>
#include <stdlib.h>

#include "cuda_common.h"
#include "cuda_wgmma.h"

/* Warpgroups (of 64 query rows) per block and keys per tile, by head size: the fastest of
 * (1 or 2) x (64 or 128) on the H100 (forward TFLOP/s at 16K tokens, 32 heads: head size 128
 * 325 / 282 / 267 / 231 for (2,128) / (2,64) / (1,64) / (1,128); head size 64 255 for
 * (2,64), 221-235 for the others). */
template <int HS> struct WgShape { static constexpr int NWG = 2, BK = HS == 128 ? 128 : 64; };
#define WG_LOG2E 1.4426950408889634f
#define WG_LN2 0.6931471805599453f

template <int HS, int NWG, int BK>
__global__ void __launch_bounds__(NWG * 128, NWG == 1 ? 2 : 1)
    attn_fwd_wgmma_kernel(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, int S, int NH,
                          int NKV, float sl2) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int WG_ROWS = NWG * 64, WG_KEYS = BK, NTH = NWG * 128;
    extern __shared__ __align__(1024) unsigned char wg_smem[];
    bf16 *Qs = (bf16 *)wg_align1024(wg_smem);  // (HS/64, rows, 64)
    bf16 *Ks = Qs + WG_ROWS * HS;               // (2, HS/64, BK, 64)
    bf16 *Vs = Ks + 2 * WG_KEYS * HS;           // (2, HS/64, BK, 64)
    int nq = cdiv(S, WG_ROWS);
    int h = blockIdx.x, qt = nq - 1 - blockIdx.y, kvh = h / (NH / NKV);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    int wg = warp >> 2, wl = warp & 3;
    long qstride = (long)NH * HS, kstride = (long)NKV * HS;
    int q0 = qt * WG_ROWS;
    int nkt = cdiv(min(S, q0 + WG_ROWS), WG_KEYS);  // key tiles up to the block's last row
    wg_load<HS, WG_ROWS, NTH>(Qs, q + (long)q0 * qstride + (long)h * HS, qstride, S - q0);
    wg_load<HS, WG_KEYS, NTH>(Ks, k + (long)kvh * HS, kstride, S);
    wg_load<HS, WG_KEYS, NTH>(Vs, v + (long)kvh * HS, kstride, S);
    cp_async_commit();

    float o[HS / 2];  // (64 rows x HS) accumulator of this warpgroup, wgmma layout
#pragma unroll
    for (int i = 0; i < HS / 2; i++) o[i] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    int rowbase = q0 + wg * 64;                // this warpgroup's rows
    int r0 = rowbase + wl * 16 + g, r1 = r0 + 8;  // this thread's two rows
    const bf16 *Qw = Qs + wg * 64 * 64;        // row 64*wg of sub-tile 0

    for (int j = 0; j < nkt; j++) {
        int buf = j & 1;
        if (j + 1 < nkt) {
            long kr = (long)(j + 1) * WG_KEYS;
            wg_load<HS, WG_KEYS, NTH>(Ks + (buf ^ 1) * WG_KEYS * HS, k + kr * kstride + (long)kvh * HS, kstride, S - (int)kr);
            wg_load<HS, WG_KEYS, NTH>(Vs + (buf ^ 1) * WG_KEYS * HS, v + kr * kstride + (long)kvh * HS, kstride, S - (int)kr);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        fence_proxy_async();
        __syncthreads();
        const bf16 *Kb = Ks + buf * WG_KEYS * HS, *Vb = Vs + buf * WG_KEYS * HS;
        if (j * WG_KEYS <= rowbase + 63) {  // some key of the tile is visible to some row
            // S (64 x BK keys) = Q K^T: k16 steps along the head dimension, 32 bytes apart
            // inside a 128-byte row, the next 64 columns in the next sub-tile
            float s[BK / 2];
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < HS / 16; kk++) {
                int sub = kk >> 2, off = (kk & 3) * 16;
                uint64_t da = wg_desc(Qw + sub * WG_ROWS * 64 + off, 16, 1024);
                uint64_t db = wg_desc(Kb + sub * WG_KEYS * 64 + off, 16, 1024);
                if constexpr (BK == 128)
                    wgmma_ss_n128(s, da, db, kk > 0);
                else
                    wgmma_ss_n64(s, da, db, kk > 0);
            }
            wg_commit();
            wg_wait0();
            // s[n*4 + e]: n8 column block n; e 0,1 row r0 columns 2t, 2t+1; e 2,3 row r1
            bool diag = j * WG_KEYS + WG_KEYS - 1 > rowbase;  // some key may follow some row
            float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
            for (int n = 0; n < BK / 8; n++) {
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    int key = j * WG_KEYS + n * 8 + 2 * t + e;
                    float x0 = s[n * 4 + e] * sl2, x1 = s[n * 4 + 2 + e] * sl2;
                    if (diag) {
                        if (key > r0) x0 = -INFINITY;
                        if (key > r1) x1 = -INFINITY;
                    }
                    s[n * 4 + e] = x0;
                    s[n * 4 + 2 + e] = x1;
                    mx0 = fmaxf(mx0, x0);
                    mx1 = fmaxf(mx1, x1);
                }
            }
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
            float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
            // a row with no visible key yet keeps m = -inf: 0 as the base gives exp2 = 0, not NaN
            float b0 = mn0 == -INFINITY ? 0.0f : mn0, b1 = mn1 == -INFINITY ? 0.0f : mn1;
            float c0 = exp2f(m0 - b0), c1 = exp2f(m1 - b1);
            m0 = mn0, m1 = mn1;
            l0 *= c0, l1 *= c1;
#pragma unroll
            for (int n = 0; n < HS / 8; n++) {
                o[n * 4] *= c0, o[n * 4 + 1] *= c0;
                o[n * 4 + 2] *= c1, o[n * 4 + 3] *= c1;
            }
            uint32_t pf[BK / 16][4];  // P as the A fragment of each 16-key step
#pragma unroll
            for (int n = 0; n < BK / 8; n++) {
                float p0 = exp2f(s[n * 4] - b0), p1 = exp2f(s[n * 4 + 1] - b0);
                float p2 = exp2f(s[n * 4 + 2] - b1), p3 = exp2f(s[n * 4 + 3] - b1);
                l0 += p0 + p1;
                l1 += p2 + p3;
                pf[n / 2][(n & 1) * 2] = pack_bf16(p0, p1);
                pf[n / 2][(n & 1) * 2 + 1] = pack_bf16(p2, p3);
            }
            // o += P V: k16 steps along the keys, 16 rows (2048 bytes) apart; V is MN-major:
            // its 64-column sub-tiles are BK rows apart (leading byte offset), 8-row groups
            // 1024 bytes apart (stride byte offset)
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < WG_KEYS / 16; kk++) {
                uint64_t db = wg_desc(Vb + kk * 16 * 64, WG_KEYS * 128, 1024);
                if constexpr (HS == 128)
                    wgmma_rs_n128(o, pf[kk], db);
                else
                    wgmma_rs_n64(o, pf[kk], db);
            }
            wg_commit();
            wg_wait0();
        }
        __syncthreads();  // before the next iteration's loads overwrite this buffer
    }
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
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
    if (t == 0) {
        if (r0 < S) lse[(long)h * S + r0] = (m0 + log2f(l0)) * WG_LN2;
        if (r1 < S) lse[(long)h * S + r1] = (m1 + log2f(l1)) * WG_LN2;
    }
#else
    __trap();  // built without sm_90a: cuda_attention_forward does not launch this
#endif
}

template <int HS> static size_t wg_smem_bytes() {
    return (size_t)(WgShape<HS>::NWG * 64 + 4 * WgShape<HS>::BK) * HS * sizeof(bf16) + 1024;
}

template <int HS>
static void wg_launch(void *out, float *lse, const void *q, const void *k, const void *v, int S, int NH, int NKV) {
    constexpr int NWG = WgShape<HS>::NWG, BK = WgShape<HS>::BK;
    static bool attr_set;
    if (!attr_set) {
        CUDA_CHECK(cudaFuncSetAttribute(attn_fwd_wgmma_kernel<HS, NWG, BK>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)wg_smem_bytes<HS>()));
        attr_set = true;
    }
    dim3 grid(NH, cdiv(S, NWG * 64));
    float sl2 = WG_LOG2E / sqrtf((float)HS);
    attn_fwd_wgmma_kernel<HS, NWG, BK><<<grid, NWG * 128, wg_smem_bytes<HS>()>>>(
        (bf16 *)out, lse, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, S, NH, NKV, sl2);
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
        wg_launch<64>(out, lse, q, k, v, S, NH, NKV);
    else
        wg_launch<128>(out, lse, q, k, v, S, NH, NKV);
}
