/* swiglu.c: the gated MLP activation out = silu(gate) * up and its gradient.
 * Elementwise, so a static parallel loop; sigmoid via expf in fp32 as HF does. */
#include "cpu_ops.h"

#include <math.h>

/* out(n) = silu(gate) * up, silu(g) = g * sigmoid(g) */
void cpu_swiglu_forward(void *out, const void *gate, const void *up, size_t n) {
    float *o = out;
    const float *g = gate, *u = up;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float sg = 1.0f / (1.0f + expf(-g[i]));
        o[i] = g[i] * sg * u[i];
    }
}

/* dgate, dup (n) written: dup = dout silu(g); dgate = dout up sig (1 + g (1 - sig)) */
void cpu_swiglu_backward(void *dgate, void *dup, const void *dout, const void *gate,
                         const void *up, size_t n) {
    float *dg = dgate, *du = dup;
    const float *d = dout, *g = gate, *u = up;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float sg = 1.0f / (1.0f + expf(-g[i]));
        float silu = g[i] * sg;
        float gu = d[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
        float gs = d[i] * silu;
        dg[i] = gu;  // both computed before either store: in-place calls are safe
        du[i] = gs;
    }
}
