/* cuda_wgmma.h: Hopper warpgroup-MMA (wgmma) helpers shared by the attention kernels
 * (cuda_attention_wgmma.cu forward, cuda_attention_wgmma_bwd.cu backward).
 *
 * wgmma multiplies a 64-row A (shared memory through a matrix descriptor, or registers) by
 * a shared-memory B into fp32 accumulators spread over the 128 threads of a warpgroup: in
 * warp w (of 4), lane l (g = l/4, t = l%4), d[n*4 + e] holds row 16w + g, column 8n + 2t + e
 * and d[n*4 + 2 + e] row 16w + g + 8: per 8-column block the m16n8 layout of mma.sync, so
 * a 16-column slice of an accumulator, packed to bf16, is the A fragment of the next
 * k16 step (the P-as-A trick) and mma.sync-style epilogues apply unchanged.
 *
 * Tiles in shared memory use the 128-byte swizzle the descriptors name: R rows x W columns
 * (bf16) are stored as W/64 sub-tiles of R rows x 64 columns (128 bytes a row), each 16-byte
 * chunk at index chunk ^ (row % 8), sub-tiles 1024-byte aligned. One such tile serves as a
 * K-major operand (the 64-column direction is the reduction: descriptor leading offset 16,
 * stride 1024, the k16 steps 32 bytes apart inside a row) and as an MN-major one (rows are
 * the reduction: leading offset = the sub-tile size, stride 1024, k16 steps 16 rows apart),
 * which is why no kernel ever transposes a tile in shared memory. */
#ifndef LEMO_CUDA_WGMMA_H
#define LEMO_CUDA_WGMMA_H

#include "cuda_common.h"
#include "cuda_ptx.h"

#define WG_D8(i)                                                                               \
    "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), \
        "+f"(d[i + 6]), "+f"(d[i + 7])

/* d(64 x 128) (+)= A(64 x 16, shared) B(16 x 128, shared); TA / TB = 1 reads that operand
 * MN-major (transposed), 0 K-major. */
template <int TA = 0, int TB = 0>
__device__ __forceinline__ void wgmma_ss_n128(float d[64], uint64_t da, uint64_t db, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
        ", %64, %65, p, 1, 1, %67, %68;\n}\n"
        : WG_D8(0),
          WG_D8(8),
          WG_D8(16),
          WG_D8(24),
          WG_D8(32),
          WG_D8(40),
          WG_D8(48),
          WG_D8(56)
        : "l"(da), "l"(db), "r"(accumulate), "n"(TA), "n"(TB));
}

/* d(64 x 64) (+)= A(64 x 16, shared) B(16 x 64, shared); TA / TB as above. */
template <int TA = 0, int TB = 0>
__device__ __forceinline__ void wgmma_ss_n64(float d[32], uint64_t da, uint64_t db, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
        ", %32, %33, p, 1, 1, %35, %36;\n}\n"
        : WG_D8(0),
          WG_D8(8),
          WG_D8(16),
          WG_D8(24)
        : "l"(da), "l"(db), "r"(accumulate), "n"(TA), "n"(TB));
}

/* d(64 x 128) += A(64 x 16, registers) B(16 x 128, shared, MN-major). */
__device__ __forceinline__ void wgmma_rs_n128(float d[64], const uint32_t a[4], uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
        ", {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
        : WG_D8(0),
          WG_D8(8),
          WG_D8(16),
          WG_D8(24),
          WG_D8(32),
          WG_D8(40),
          WG_D8(48),
          WG_D8(56)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

/* d(64 x 64) += A(64 x 16, registers) B(16 x 64, shared, MN-major). */
__device__ __forceinline__ void wgmma_rs_n64(float d[32], const uint32_t a[4], uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
        ", {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
        : WG_D8(0),
          WG_D8(8),
          WG_D8(16),
          WG_D8(24)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

#undef WG_D8

/* d (64 x N) += A(64 x 16, registers) B(16 x N, shared, MN-major), N = 64 or 128. */
template <int N>
__device__ __forceinline__ void wgmma_rs(float d[N / 2], const uint32_t a[4], uint64_t db) {
    if constexpr (N == 128)
        wgmma_rs_n128(d, a, db);
    else
        wgmma_rs_n64(d, a, db);
}

/* wgmma shared-memory matrix descriptor, 128-byte swizzle: start address, leading and
 * stride byte offsets (PTX ISA, "matrix descriptor format"; both in 16-byte units). */
__device__ __forceinline__ uint64_t wg_desc(const void *p, uint32_t lbo, uint32_t sbo) {
    uint64_t d = (uint64_t)((smem_addr(p) & 0x3FFFF) >> 4);
    d |= (uint64_t)((lbo >> 4) & 0x3FFF) << 16;
    d |= (uint64_t)((sbo >> 4) & 0x3FFF) << 32;
    d |= (uint64_t)1 << 62;
    return d;
}

__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
/* Waits until at most N committed wgmma groups of this warpgroup are still running. */
template <int N>
__device__ __forceinline__ void wg_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }
__device__ __forceinline__ void wg_wait0() { wg_wait<0>(); }

/* Pins accumulator registers at this point of the program: the compiler sees a wgmma's
 * outputs as ready when it is issued, so without this it may move their first reads above
 * the wait_group that makes them so. */
template <int N>
__device__ __forceinline__ void wg_pin(float (&d)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(d[i])::"memory");
}

/* Orders this thread's ordinary shared-memory writes (cp.async, st.shared) before the tensor
 * cores' reads through the async proxy; a barrier after it makes that hold for the block. */
__device__ __forceinline__ void fence_proxy_async() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

/* First 1024-byte-aligned address at or after p: the swizzle is a function of the address,
 * so sub-tiles must start on 1024-byte boundaries. */
__device__ __forceinline__ unsigned char *wg_align1024(unsigned char *p) {
    return p + ((1024 - (smem_addr(p) & 1023)) & 1023);
}

/* cp.async of R rows x HS columns into the 128-byte-swizzled sub-tile layout by NTH threads;
 * row r from g + r*stride; rows >= nvalid zero-filled. */
template <int HS, int R, int NTH>
__device__ __forceinline__ void wg_load(bf16 *sm, const bf16 *g, long stride, int nvalid) {
    constexpr int CH = HS / 8;  // 16-byte chunks a row
#pragma unroll 4
    for (int e = threadIdx.x; e < R * CH; e += NTH) {
        int r = e / CH, c = e % CH, sub = c >> 3, cc = c & 7;
        bool ok = r < nvalid;
        const bf16 *src = g + (ok ? (long)r * stride : 0) + c * 8;
        cp_async16(sm + sub * R * 64 + r * 64 + ((cc ^ (r & 7)) << 3), src, ok ? 16 : 0);
    }
}

/* --- Asynchronous copies (TMA) and the barriers that pace them ---
 * A tile arrives through cp.async.bulk.tensor, the copy engine writing it already in the
 * 128-byte swizzle above (the tensor map names it), and signals an mbarrier with its byte
 * count: one thread starts a whole tile and the others wait on the barrier's phase, so a
 * producer warp can feed consumer warpgroups that never issue a load. */

/* mbarrier in shared memory expecting `count` arrivals a phase. */
__device__ __forceinline__ void mbar_init(uint64_t *bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
}
/* Makes barrier initializations visible to the copy engine (then a block barrier). */
__device__ __forceinline__ void mbar_fence_init() {
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
/* One arrival that also announces `bytes` of asynchronous copies this phase waits for. */
__device__ __forceinline__ void mbar_expect_tx(uint64_t *bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t *bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}
/* Waits until the barrier's phase of the given parity (0 for its first, 1 for its second,
 * ...) has completed. */
__device__ __forceinline__ void mbar_wait(uint64_t *bar, uint32_t parity) {
    asm volatile(
        "{\n.reg .pred p;\n"
        "WAIT_%=:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
        "@!p bra WAIT_%=;\n}\n" ::"r"(smem_addr(bar)),
        "r"(parity)
        : "memory");
}

/* Box of a 3-D tensor map at coordinates (c0 innermost, c1, c2) into shared memory at dst,
 * completing `bar` with its bytes; out-of-range elements arrive as zeros. */
__device__ __forceinline__ void tma_load_3d(void *dst, const void *tmap, uint64_t *bar, int c0, int c1, int c2) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], "
        "[%2];\n" ::"r"(smem_addr(dst)),
        "l"(tmap), "r"(smem_addr(bar)), "r"(c0), "r"(c1), "r"(c2)
        : "memory");
}
/* Pulls a tensor map (a __grid_constant__ parameter) into the descriptor cache early. */
__device__ __forceinline__ void tma_prefetch_map(const void *tmap) {
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(tmap) : "memory");
}

/* Box of shared memory at src (laid out as tma_load_3d writes it) to a 3-D tensor map at
 * (c0, c1, c2); elements outside the tensor are not written. Completes as a bulk group. */
__device__ __forceinline__ void tma_store_3d(const void *tmap, const void *src, int c0, int c1, int c2) {
    asm volatile("cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {%2, %3, %4}], [%1];\n" ::"l"(tmap),
                 "r"(smem_addr(src)), "r"(c0), "r"(c1), "r"(c2)
                 : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
/* Waits until this thread's bulk groups have read their shared-memory sources. */
__device__ __forceinline__ void bulk_wait_read0() { asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory"); }

/* Named barrier `id` (1..15; 0 is __syncthreads) over `n` threads: sync waits, arrive
 * counts this warp without waiting. */
__device__ __forceinline__ void named_bar_sync(int id, int n) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
__device__ __forceinline__ void named_bar_arrive(int id, int n) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}

/* Moves this warpgroup's per-thread register limit up or down to N (a multiple of 8),
 * executed by all its warps: a load warpgroup gives registers to the math warpgroups. */
template <int N>
__device__ __forceinline__ void wg_setmaxnreg_inc() { asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N)); }
template <int N>
__device__ __forceinline__ void wg_setmaxnreg_dec() { asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N)); }

#endif
