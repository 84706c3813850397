/* cuda_rows.cu: the memory-bound ops: embedding, RMSNorm, RoPE, SwiGLU, add,
 * gather/scatter of token rows.
 *
 * Each is one pass over its tensors in bf16 with fp32 arithmetic. Where the row
 * width is a multiple of 8 and the pointers are 16-byte aligned (the model's
 * buffers are), a thread moves 8 elements per 16-byte access; otherwise the same
 * kernel runs element by element. Row ops (norms, gathers) take one block per row
 * so a row's reduction stays in one block and needs no second pass. */
#include "cuda_common.h"

/* ---------------- gather / scatter / embedding ---------------- */

/* out(n,C) = in[idx[i]]: one block per output row. */
template <bool VEC>
__global__ void gather_rows_kernel(bf16 *out, const bf16 *in, const int *idx, int C) {
    int i = blockIdx.x;
    const bf16 *src = in + (size_t)idx[i] * C;
    bf16 *dst = out + (size_t)i * C;
    if (VEC) {
        for (int c = threadIdx.x * 8; c < C; c += blockDim.x * 8)
            *(uint4 *)(dst + c) = *(const uint4 *)(src + c);
    } else {
        for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] = src[c];
    }
}

/* out[idx[i]] += in(i): one block per input row. idx is sorted, so repeated
 * indices are adjacent: the block of a run's first row adds the whole run in
 * order and the others do nothing, so no two blocks touch one row. */
template <bool VEC>
__global__ void scatter_add_rows_kernel(bf16 *out, const bf16 *in, const int *idx, int n, int C) {
    int i = blockIdx.x;
    if (i > 0 && idx[i - 1] == idx[i]) return;
    int i1 = i + 1;
    while (i1 < n && idx[i1] == idx[i]) i1++;
    bf16 *dst = out + (size_t)idx[i] * C;
    if (VEC) {
        for (int c = threadIdx.x * 8; c < C; c += blockDim.x * 8) {
            float a[8], b[8];
            load8(a, dst + c);
            for (int r = i; r < i1; r++) {
                load8(b, in + (size_t)r * C + c);
#pragma unroll
                for (int j = 0; j < 8; j++) a[j] += b[j];
            }
            store8(dst + c, a);
        }
    } else {
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            float a = __bfloat162float(dst[c]);
            for (int r = i; r < i1; r++) a += __bfloat162float(in[(size_t)r * C + c]);
            dst[c] = __float2bfloat16(a);
        }
    }
}

static int row_threads(int C, bool vec) {
    int per = vec ? C / 8 : C;
    int t = per >= 256 ? 256 : (per + 31) / 32 * 32;
    return t < 32 ? 32 : t;
}

void cuda_gather_rows(void *out, const void *in, const int *idx, int n, int C) {
    if (n <= 0 || C <= 0) return;
    bool vec = C % 8 == 0 && aligned16(out) && aligned16(in);
    if (vec)
        gather_rows_kernel<true><<<n, row_threads(C, true)>>>((bf16 *)out, (const bf16 *)in, idx, C);
    else
        gather_rows_kernel<false><<<n, row_threads(C, false)>>>((bf16 *)out, (const bf16 *)in, idx, C);
    LAUNCH_CHECK();
}

void cuda_scatter_add_rows(void *out, const void *in, const int *idx, int n, int C) {
    if (n <= 0 || C <= 0) return;
    bool vec = C % 8 == 0 && aligned16(out) && aligned16(in);
    if (vec)
        scatter_add_rows_kernel<true><<<n, row_threads(C, true)>>>((bf16 *)out, (const bf16 *)in, idx, n, C);
    else
        scatter_add_rows_kernel<false><<<n, row_threads(C, false)>>>((bf16 *)out, (const bf16 *)in, idx, n, C);
    LAUNCH_CHECK();
}

/* out(S,C) = wte[tok[s]]: the gather above with token ids as row indices. */
void cuda_embedding_forward(void *out, const int *tok, const void *wte, int S, int C) {
    cuda_gather_rows(out, wte, tok, S, C);
}

/* ---------------- RMSNorm ---------------- */

#define NORM_THREADS 256

/* One block per row: rstd = 1/sqrt(mean(x^2)+eps), out = x*rstd*w. */
template <bool VEC>
__global__ void rmsnorm_forward_kernel(bf16 *out, float *rstd, const bf16 *in, const bf16 *w,
                                       int C, float eps) {
    __shared__ float red[32];
    int s = blockIdx.x;
    const bf16 *x = in + (size_t)s * C;
    bf16 *o = out + (size_t)s * C;
    float ss = 0.0f;
    if (VEC) {
        for (int c = threadIdx.x * 8; c < C; c += blockDim.x * 8) {
            float a[8];
            load8(a, x + c);
#pragma unroll
            for (int j = 0; j < 8; j++) ss += a[j] * a[j];
        }
    } else {
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            float a = __bfloat162float(x[c]);
            ss += a * a;
        }
    }
    ss = block_sum(ss, red);
    float r = rsqrtf(ss / C + eps);
    if (threadIdx.x == 0) rstd[s] = r;
    if (VEC) {
        for (int c = threadIdx.x * 8; c < C; c += blockDim.x * 8) {
            float a[8], g[8];
            load8(a, x + c);
            load8(g, w + c);
#pragma unroll
            for (int j = 0; j < 8; j++) a[j] = a[j] * r * g[j];
            store8(o + c, a);
        }
    } else {
        for (int c = threadIdx.x; c < C; c += blockDim.x)
            o[c] = __float2bfloat16(__bfloat162float(x[c]) * r * __bfloat162float(w[c]));
    }
}

/* One block per row: din += rstd*w*dout - x*rstd^3/C * sum(dout*w*x). */
template <bool VEC>
__global__ void rmsnorm_backward_kernel(bf16 *din, const bf16 *dout, const bf16 *in,
                                        const bf16 *w, const float *rstd, int C) {
    __shared__ float red[32];
    int s = blockIdx.x;
    const bf16 *x = in + (size_t)s * C, *g = dout + (size_t)s * C;
    bf16 *d = din + (size_t)s * C;
    float dot = 0.0f;
    if (VEC) {
        for (int c = threadIdx.x * 8; c < C; c += blockDim.x * 8) {
            float a[8], b[8], ww[8];
            load8(a, x + c);
            load8(b, g + c);
            load8(ww, w + c);
#pragma unroll
            for (int j = 0; j < 8; j++) dot += a[j] * b[j] * ww[j];
        }
    } else {
        for (int c = threadIdx.x; c < C; c += blockDim.x)
            dot += __bfloat162float(x[c]) * __bfloat162float(g[c]) * __bfloat162float(w[c]);
    }
    dot = block_sum(dot, red);
    float r = rstd[s];
    float k = dot * r * r * r / C;
    if (VEC) {
        for (int c = threadIdx.x * 8; c < C; c += blockDim.x * 8) {
            float a[8], b[8], ww[8], o[8];
            load8(a, x + c);
            load8(b, g + c);
            load8(ww, w + c);
            load8(o, d + c);
#pragma unroll
            for (int j = 0; j < 8; j++) o[j] += r * ww[j] * b[j] - a[j] * k;
            store8(d + c, o);
        }
    } else {
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            float v = __bfloat162float(d[c]) + r * __bfloat162float(w[c]) * __bfloat162float(g[c]) -
                      __bfloat162float(x[c]) * k;
            d[c] = __float2bfloat16(v);
        }
    }
}

void cuda_rmsnorm_forward(void *out, float *rstd, const void *in, const void *w, int S, int C,
                          float eps) {
    if (S <= 0) return;
    bool vec = C % 8 == 0 && aligned16(out) && aligned16(in) && aligned16(w);
    if (vec)
        rmsnorm_forward_kernel<true><<<S, NORM_THREADS>>>((bf16 *)out, rstd, (const bf16 *)in,
                                                          (const bf16 *)w, C, eps);
    else
        rmsnorm_forward_kernel<false><<<S, NORM_THREADS>>>((bf16 *)out, rstd, (const bf16 *)in,
                                                           (const bf16 *)w, C, eps);
    LAUNCH_CHECK();
}

void cuda_rmsnorm_backward(void *din, const void *dout, const void *in, const void *w,
                           const float *rstd, int S, int C) {
    if (S <= 0) return;
    bool vec = C % 8 == 0 && aligned16(din) && aligned16(dout) && aligned16(in) && aligned16(w);
    if (vec)
        rmsnorm_backward_kernel<true><<<S, NORM_THREADS>>>((bf16 *)din, (const bf16 *)dout,
                                                           (const bf16 *)in, (const bf16 *)w, rstd, C);
    else
        rmsnorm_backward_kernel<false><<<S, NORM_THREADS>>>((bf16 *)din, (const bf16 *)dout,
                                                            (const bf16 *)in, (const bf16 *)w, rstd, C);
    LAUNCH_CHECK();
}

/* ---------------- RoPE ---------------- */

/* One thread per (row s, pair i): cos/sin once, applied to every head.
 * dir = +1 forward, -1 the transpose (rotation by -angle). The angle is the fp32
 * product as in HF; cos/sin in full precision (sincosf, not the fast intrinsic),
 * since angles reach tens of thousands of radians at long context. */
__global__ void rope_kernel(bf16 *x, const int *pos, const float *inv_freq, int S, int NH, int HS,
                            float mscale, float dir) {
    int half = HS / 2;
    long gid = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (gid >= (long)S * half) return;
    int s = (int)(gid / half), i = (int)(gid % half);
    float ang = (float)pos[s] * inv_freq[i];
    float sn, cs;
    sincosf(ang, &sn, &cs);
    cs *= mscale;
    sn = dir * (sn * mscale);
    bf16 *xs = x + (size_t)s * NH * HS;
    for (int h = 0; h < NH; h++) {
        bf16 *xh = xs + (size_t)h * HS;
        float a = __bfloat162float(xh[i]), b = __bfloat162float(xh[i + half]);
        xh[i] = __float2bfloat16(a * cs - b * sn);
        xh[i + half] = __float2bfloat16(b * cs + a * sn);
    }
}

void cuda_rope_forward(void *x, const int *pos, const float *inv_freq, int S, int NH, int HS,
                       float mscale) {
    if (S <= 0) return;
    rope_kernel<<<cdiv((size_t)S * (HS / 2), 256), 256>>>((bf16 *)x, pos, inv_freq, S, NH, HS, mscale, 1.0f);
    LAUNCH_CHECK();
}

void cuda_rope_backward(void *dx, const int *pos, const float *inv_freq, int S, int NH, int HS,
                        float mscale) {
    if (S <= 0) return;
    rope_kernel<<<cdiv((size_t)S * (HS / 2), 256), 256>>>((bf16 *)dx, pos, inv_freq, S, NH, HS, mscale, -1.0f);
    LAUNCH_CHECK();
}

/* ---------------- elementwise ---------------- */

__device__ __forceinline__ float silu(float g) { return g / (1.0f + __expf(-g)); }

/* The elementwise kernels: thread i covers elements [8i, 8i+8), vectorized when
 * VEC (n % 8 == 0, aligned), element by element otherwise (with bounds). */
template <bool VEC>
__global__ void swiglu_forward_kernel(bf16 *out, const bf16 *gate, const bf16 *up, size_t n) {
    size_t i0 = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 8;
    if (i0 >= n) return;
    if (VEC) {
        float g[8], u[8];
        load8(g, gate + i0);
        load8(u, up + i0);
#pragma unroll
        for (int j = 0; j < 8; j++) g[j] = silu(g[j]) * u[j];
        store8(out + i0, g);
    } else {
        for (size_t i = i0; i < i0 + 8 && i < n; i++)
            out[i] = __float2bfloat16(silu(__bfloat162float(gate[i])) * __bfloat162float(up[i]));
    }
}

/* dgate = dout*up*sig(g)*(1 + g*(1-sig(g))), dup = dout*silu(g); both written. */
__device__ __forceinline__ void swiglu_grad(float d, float g, float u, float *dg, float *du) {
    float sg = 1.0f / (1.0f + __expf(-g));
    *dg = d * u * sg * (1.0f + g * (1.0f - sg));
    *du = d * g * sg;
}

template <bool VEC>
__global__ void swiglu_backward_kernel(bf16 *dgate, bf16 *dup, const bf16 *dout, const bf16 *gate,
                                       const bf16 *up, size_t n) {
    size_t i0 = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 8;
    if (i0 >= n) return;
    if (VEC) {
        float d[8], g[8], u[8], dg[8], du[8];
        load8(d, dout + i0);
        load8(g, gate + i0);
        load8(u, up + i0);
#pragma unroll
        for (int j = 0; j < 8; j++) swiglu_grad(d[j], g[j], u[j], &dg[j], &du[j]);
        store8(dgate + i0, dg);
        store8(dup + i0, du);
    } else {
        for (size_t i = i0; i < i0 + 8 && i < n; i++) {
            float dg, du;
            swiglu_grad(__bfloat162float(dout[i]), __bfloat162float(gate[i]), __bfloat162float(up[i]),
                        &dg, &du);
            dgate[i] = __float2bfloat16(dg);
            dup[i] = __float2bfloat16(du);
        }
    }
}

template <bool VEC>
__global__ void add_inplace_kernel(bf16 *a, const bf16 *b, size_t n) {
    size_t i0 = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 8;
    if (i0 >= n) return;
    if (VEC) {
        float x[8], y[8];
        load8(x, a + i0);
        load8(y, b + i0);
#pragma unroll
        for (int j = 0; j < 8; j++) x[j] += y[j];
        store8(a + i0, x);
    } else {
        for (size_t i = i0; i < i0 + 8 && i < n; i++)
            a[i] = __float2bfloat16(__bfloat162float(a[i]) + __bfloat162float(b[i]));
    }
}

void cuda_swiglu_forward(void *out, const void *gate, const void *up, size_t n) {
    if (!n) return;
    unsigned grid = cdiv(cdiv(n, 8), 256);
    if (n % 8 == 0 && aligned16(out) && aligned16(gate) && aligned16(up))
        swiglu_forward_kernel<true><<<grid, 256>>>((bf16 *)out, (const bf16 *)gate, (const bf16 *)up, n);
    else
        swiglu_forward_kernel<false><<<grid, 256>>>((bf16 *)out, (const bf16 *)gate, (const bf16 *)up, n);
    LAUNCH_CHECK();
}

void cuda_swiglu_backward(void *dgate, void *dup, const void *dout, const void *gate,
                          const void *up, size_t n) {
    if (!n) return;
    unsigned grid = cdiv(cdiv(n, 8), 256);
    if (n % 8 == 0 && aligned16(dgate) && aligned16(dup) && aligned16(dout) && aligned16(gate) &&
        aligned16(up))
        swiglu_backward_kernel<true><<<grid, 256>>>((bf16 *)dgate, (bf16 *)dup, (const bf16 *)dout,
                                                    (const bf16 *)gate, (const bf16 *)up, n);
    else
        swiglu_backward_kernel<false><<<grid, 256>>>((bf16 *)dgate, (bf16 *)dup, (const bf16 *)dout,
                                                     (const bf16 *)gate, (const bf16 *)up, n);
    LAUNCH_CHECK();
}

void cuda_add_inplace(void *a, const void *b, size_t n) {
    if (!n) return;
    unsigned grid = cdiv(cdiv(n, 8), 256);
    if (n % 8 == 0 && aligned16(a) && aligned16(b))
        add_inplace_kernel<true><<<grid, 256>>>((bf16 *)a, (const bf16 *)b, n);
    else
        add_inplace_kernel<false><<<grid, 256>>>((bf16 *)a, (const bf16 *)b, n);
    LAUNCH_CHECK();
}
