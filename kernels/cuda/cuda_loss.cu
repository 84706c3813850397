/* cuda_loss.cu: the fused LM head + cross-entropy, in row chunks.
 *
 * (S,V) logits never exist: rows go through in chunks of CE rows sized so the
 * chunk's fp32 logits plus its bf16 dlogits stay near CE_BUDGET bytes of scratch.
 * Per chunk: logits = x W^T (cuBLAS, bf16 in, fp32 out), then one block per row
 * takes a stable log-softmax in fp32 and, when dx is wanted, writes
 * dlogits = grad_scale * (softmax - onehot) in bf16; then dx_chunk = dlogits W
 * (cuBLAS). Rows whose target is outside [0,V) (-1: no loss) count nothing and
 * get zero gradient. Per-row losses stay on the device until the end and are
 * summed on the host in fp64 in row order, so the total is reproducible. The token
 * accuracy's argmax is the lowest index holding the row's max (the CPU twin's rule), found
 * after the max reduction with one shared atomicMin: ties resolve the same on both. */
#include <math.h>
#include <stdlib.h>

#include "cuda_common.h"

#define CE_BUDGET (256u << 20)  // bytes of scratch for one chunk's logits + dlogits
#define CE_THREADS 512

/* One block per row r of the chunk: rowloss[r] = lse - logit[target] (-inf when not
 * counted), rowhit[r] = 1 when the argmax is the target; dl(r,:) written when dl != NULL. */
__global__ void ce_rows_kernel(float *rowloss, int *rowhit, bf16 *dl, const float *logits, const int *target,
                               int V, float grad_scale) {
    __shared__ float red[32];
    __shared__ int amin;
    int r = blockIdx.x;
    const float *l = logits + (size_t)r * V;
    int t = target[r];
    bool counted = t >= 0 && t < V;
    if (!counted) {
        if (threadIdx.x == 0) rowloss[r] = -INFINITY, rowhit[r] = 0;
        if (dl)
            for (int j = threadIdx.x; j < V; j += blockDim.x) dl[(size_t)r * V + j] = __float2bfloat16(0.0f);
        return;
    }
    if (threadIdx.x == 0) amin = V;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, l[j]);
    mx = block_max(mx, red);  // its barriers also publish amin = V
    for (int j = threadIdx.x; j < V; j += blockDim.x)
        if (l[j] == mx) { atomicMin(&amin, j); break; }  // this thread's lowest: j only grows
    float sum = 0.0f;
    for (int j = threadIdx.x; j < V; j += blockDim.x) sum += expf(l[j] - mx);
    sum = block_sum(sum, red);  // its barriers order every atomicMin before the read below
    if (threadIdx.x == 0) rowloss[r] = mx + logf(sum) - l[t], rowhit[r] = amin == t;
    if (dl) {
        float inv = 1.0f / sum;
        for (int j = threadIdx.x; j < V; j += blockDim.x) {
            float pj = expf(l[j] - mx) * inv;
            dl[(size_t)r * V + j] = __float2bfloat16(grad_scale * (j == t ? pj - 1.0f : pj));
        }
    }
}

double cuda_lm_head_ce(void *dx, long *count, long *correct, const void *x, const void *w, const int *target,
                       int S, int C, int V, float grad_scale) {
    *count = 0;
    if (correct) *correct = 0;
    if (S <= 0) return 0.0;
    size_t per_row = (size_t)V * (sizeof(float) + (dx ? sizeof(bf16) : 0));
    int chunk = (int)(CE_BUDGET / per_row);
    chunk = chunk < 64 ? 64 : chunk / 64 * 64;
    if (chunk > S) chunk = S;
    size_t logit_bytes = align_up((size_t)chunk * V * sizeof(float), 256);
    size_t dl_bytes = dx ? align_up((size_t)chunk * V * sizeof(bf16), 256) : 0;
    size_t loss_bytes = align_up((size_t)S * sizeof(float), 256);
    size_t hit_bytes = align_up((size_t)S * sizeof(int), 256);
    char *base = (char *)cuda_scratch(logit_bytes + dl_bytes + loss_bytes + hit_bytes);
    float *logits = (float *)base;                               // (chunk, V)
    bf16 *dl = dx ? (bf16 *)(base + logit_bytes) : NULL;         // (chunk, V)
    float *rowloss = (float *)(base + logit_bytes + dl_bytes);   // (S)
    int *rowhit = (int *)(base + logit_bytes + dl_bytes + loss_bytes);  // (S)
    const bf16 *xs = (const bf16 *)x;
    bf16 *dxs = (bf16 *)dx;
    float one = 1.0f, zero = 0.0f;
    for (int s0 = 0; s0 < S; s0 += chunk) {
        int n = S - s0 < chunk ? S - s0 : chunk;
        // logits^T (V,n) = W (stored (C,V) col-major, transposed) x x_chunk^T (C,n)
        CUBLAS_CHECK(cublasGemmEx(cuda_cublas(), CUBLAS_OP_T, CUBLAS_OP_N, V, n, C, &one, w,
                                  CUDA_R_16BF, C, xs + (size_t)s0 * C, CUDA_R_16BF, C, &zero,
                                  logits, CUDA_R_32F, V, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        ce_rows_kernel<<<n, CE_THREADS>>>(rowloss + s0, rowhit + s0, dl, logits, target + s0, V, grad_scale);
        LAUNCH_CHECK();
        if (dx) {
            // dx_chunk^T (C,n) = W (C,V col-major) x dl^T (V,n)
            CUBLAS_CHECK(cublasGemmEx(cuda_cublas(), CUBLAS_OP_N, CUBLAS_OP_N, C, n, V, &one, w,
                                      CUDA_R_16BF, C, dl, CUDA_R_16BF, V, &zero,
                                      dxs + (size_t)s0 * C, CUDA_R_16BF, C, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT));
        }
    }
    float *host = (float *)malloc((size_t)S * sizeof(float));
    int *hits = (int *)malloc((size_t)S * sizeof(int));
    if (!host || !hits) cuda_fatal("malloc", "out of host memory for per-row losses", __FILE__, __LINE__);
    CUDA_CHECK(cudaMemcpy(host, rowloss, (size_t)S * sizeof(float), cudaMemcpyDeviceToHost));
    if (correct) CUDA_CHECK(cudaMemcpy(hits, rowhit, (size_t)S * sizeof(int), cudaMemcpyDeviceToHost));
    double total = 0.0;
    long cnt = 0, hit = 0;
    for (int s = 0; s < S; s++) {
        if (isinf(host[s]) && host[s] < 0.0f) continue;  // not counted
        total += host[s];
        cnt++;
        if (correct) hit += hits[s];
    }
    free(host);
    free(hits);
    *count = cnt;
    if (correct) *correct = hit;
    return total;
}
