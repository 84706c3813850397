/* rope.c: rotary position embedding in HF's "rotate_half" layout, in place.
 *
 * For head h and i < HS/2 the pair (x[i], x[i+HS/2]) is rotated by
 * angle = pos[s] * inv_freq[i]. The angle is formed as HF forms it, an fp32
 * product of the fp32 position and inv_freq; its cos and sin are then taken in
 * double and rounded once, and multiplied by mscale in fp32 (HF scales cos/sin
 * by attention_scaling before applying them). The backward applies the
 * transposed matrix, a rotation by -angle, with the same cos/sin values, so it
 * is the exact transpose of the forward. cos/sin are computed once per (row, i)
 * and reused across heads. */
#include "cpu_ops.h"

#include <math.h>

/* Rotates x (S,NH,HS) in place; dir = +1 forward, -1 the transpose. */
static void rope_apply(float *x, const int *pos, const float *inv_freq, int S, int NH, int HS,
                       float mscale, float dir) {
    int half = HS / 2;
#pragma omp parallel for schedule(static)
    for (int s = 0; s < S; s++) {
        float *xs = x + (size_t)s * NH * HS;
        float ps = (float)pos[s];
        for (int i = 0; i < half; i++) {
            float ang = ps * inv_freq[i];
            float c = (float)cos((double)ang) * mscale;
            float sn = dir * ((float)sin((double)ang) * mscale);
            for (int h = 0; h < NH; h++) {
                float *xh = xs + (size_t)h * HS;
                float a = xh[i], b = xh[i + half];
                xh[i] = a * c - b * sn;
                xh[i + half] = b * c + a * sn;
            }
        }
    }
}

/* x (S,NH,HS) in place: (a, b) -> (a cos - b sin, b cos + a sin) * mscale */
void cpu_rope_forward(void *x, const int *pos, const float *inv_freq, int S, int NH, int HS,
                      float mscale) {
    rope_apply(x, pos, inv_freq, S, NH, HS, mscale, 1.0f);
}

/* dx in place: (a, b) -> (a cos + b sin, b cos - a sin) * mscale, the transpose */
void cpu_rope_backward(void *dx, const int *pos, const float *inv_freq, int S, int NH, int HS,
                       float mscale) {
    rope_apply(dx, pos, inv_freq, S, NH, HS, mscale, -1.0f);
}
