/* test_cpu_util.h: helpers shared by the CPU backend tests (test_cpu_*.c):
 * a seeded generator for inputs, whole-array comparison against a double
 * reference that prints the first mismatches, and a central finite-difference
 * check of a backward against a scalar loss L = sum(out * R) accumulated in
 * double. Header-only so each test stays one self-contained binary. */
#ifndef LEMO_TEST_CPU_UTIL_H
#define LEMO_TEST_CPU_UTIL_H

#include "backend.h"
#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t tu_rng = 0x1234567887654321ull;

/* uniform in [-1, 1) */
static inline float tu_rand(void) {
    tu_rng ^= tu_rng << 13;
    tu_rng ^= tu_rng >> 7;
    tu_rng ^= tu_rng << 17;
    return (float)((tu_rng >> 40) * (2.0 / 16777216.0) - 1.0);
}

static inline void tu_fill(float *x, size_t n, float amp) {
    for (size_t i = 0; i < n; i++) x[i] = amp * tu_rand();
}

/* A zeroed fp32 buffer from the backend under test. */
static inline float *tu_alloc(const Backend *be, size_t n) {
    float *p = be->alloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "alloc of %zu floats failed\n", n);
        exit(1);
    }
    return p;
}

static inline double *tu_dalloc(size_t n) {
    double *p = calloc(n ? n : 1, sizeof(double));
    if (!p) exit(1);
    return p;
}

/* sum a[i] * b[i] in double */
static inline double tu_dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* Checks |got - want| <= atol + rtol |want| elementwise; prints the first
 * mismatches and the worst error; one CHECK for the whole array. */
static inline void tu_check_arr(const char *what, const float *got, const double *want, size_t n,
                                double atol, double rtol) {
    size_t bad = 0, worst = 0;
    double worst_r = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]), lim = atol + rtol * fabs(want[i]);
        double r = err / lim;
        if (!(r <= 1.0)) {
            if (++bad <= 5)
                fprintf(stderr, "  %s[%zu]: got %.9g want %.9g (err %.3g, limit %.3g)\n", what, i,
                        (double)got[i], want[i], err, lim);
        }
        if (r > worst_r || r != r) worst_r = r, worst = i;
    }
    if (getenv("LEMO_TEST_VERBOSE"))
        fprintf(stderr, "  %s: worst error %.3g x limit\n", what, worst_r);
    CHECK(bad == 0, "%s: %zu of %zu elements off (worst [%zu] at %.3g x limit)", what, bad, n,
          worst, worst_r);
}

/* Runs the op's forward on the current inputs and returns L = sum(out * R). */
typedef double (*tu_loss_fn)(void *ctx);

/* Central differences of L along up to nsample elements of x (all when n <= nsample)
 * against grad: fd = (L(x+h) - L(x-h)) / (actual step). */
static inline void tu_check_fd(const char *what, tu_loss_fn loss, void *ctx, float *x,
                               const float *grad, size_t n, size_t nsample, float h, double atol,
                               double rtol) {
    size_t bad = 0, m = n <= nsample ? n : nsample;
    double worst_r = 0;
    for (size_t s = 0; s < m; s++) {
        size_t i = n <= nsample ? s : (size_t)((tu_rand() * 0.5f + 0.5f) * (float)n) % n;
        float x0 = x[i], xp = x0 + h, xm = x0 - h;
        x[i] = xp;
        double lp = loss(ctx);
        x[i] = xm;
        double lm = loss(ctx);
        x[i] = x0;
        double fd = (lp - lm) / ((double)xp - (double)xm);
        double err = fabs(fd - grad[i]), lim = atol + rtol * fabs(fd);
        if (!(err <= lim)) {
            if (++bad <= 5)
                fprintf(stderr, "  %s[%zu]: backward %.9g, finite difference %.9g (err %.3g)\n",
                        what, i, (double)grad[i], fd, err);
        }
        if (err / lim > worst_r) worst_r = err / lim;
    }
    if (getenv("LEMO_TEST_VERBOSE"))
        fprintf(stderr, "  %s: worst error %.3g x limit\n", what, worst_r);
    CHECK(bad == 0, "%s: %zu of %zu finite differences off (worst at %.3g x limit)", what, bad,
          m, worst_r);
}

#endif
