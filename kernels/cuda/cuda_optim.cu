/* cuda_optim.cu: the fp32 optimizer-side ops on LoRA parameters: sum of squares
 * (for gradient clipping), scale, AdamW.
 *
 * sumsq is deterministic: a fixed grid of blocks each reduces a fixed stride of
 * the vector in fp64, and the host adds the block partials in block order. */
#include <math.h>
#include <stdlib.h>

#include "cuda_common.h"

#define SUMSQ_BLOCKS 256
#define SUMSQ_THREADS 256

__global__ void sumsq_kernel(double *partial, const float *g, size_t n) {
    __shared__ double red[SUMSQ_THREADS];
    double s = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        s += (double)g[i] * g[i];
    red[threadIdx.x] = s;
    __syncthreads();
    for (int o = blockDim.x / 2; o > 0; o >>= 1) {
        if (threadIdx.x < o) red[threadIdx.x] += red[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = red[0];
}

double cuda_sumsq(const float *g, size_t n) {
    if (!n) return 0.0;
    double *partial = (double *)cuda_scratch(SUMSQ_BLOCKS * sizeof(double));
    sumsq_kernel<<<SUMSQ_BLOCKS, SUMSQ_THREADS>>>(partial, g, n);
    LAUNCH_CHECK();
    double host[SUMSQ_BLOCKS];
    CUDA_CHECK(cudaMemcpy(host, partial, sizeof host, cudaMemcpyDeviceToHost));
    double s = 0.0;
    for (int i = 0; i < SUMSQ_BLOCKS; i++) s += host[i];
    return s;
}

__global__ void scale_kernel(float *g, size_t n, float s) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) g[i] *= s;
}

void cuda_scale(float *g, size_t n, float s) {
    if (!n) return;
    scale_kernel<<<cdiv(n, 256), 256>>>(g, n, s);
    LAUNCH_CHECK();
}

/* AdamW with decoupled weight decay and bias correction; bc1 = 1-b1^t, bc2 = 1-b2^t. */
__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, size_t n, float lr,
                             float b1, float b2, float eps, float wd, float bc1, float bc2) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = g[i];
    float mi = b1 * m[i] + (1.0f - b1) * gi;
    float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float mh = mi / bc1, vh = vi / bc2;
    p[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * p[i]);
}

void cuda_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
                float b2, float eps, float wd, int t) {
    if (!n) return;
    float bc1 = (float)(1.0 - pow((double)b1, t)), bc2 = (float)(1.0 - pow((double)b2, t));
    adamw_kernel<<<cdiv(n, 256), 256>>>(p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2);
    LAUNCH_CHECK();
}
