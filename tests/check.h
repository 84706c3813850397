/* check.h: the test harness every C test uses.
 *
 * CHECK(cond, fmt, ...) records a failure with file:line and a message and goes on,
 * so one run shows the first mismatches rather than only the first. A test binary
 * exits 1 if any check failed, 77 (skip) via SKIP(why), else 0. Keep assertions about
 * behaviour: each CHECK must be able to fail. */
#ifndef LEMO_CHECK_H
#define LEMO_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int check_failures, check_count;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        check_count++;                                                      \
        if (!(cond)) {                                                      \
            if (++check_failures <= 20) {                                   \
                fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
                fprintf(stderr, __VA_ARGS__);                               \
                fputc('\n', stderr);                                        \
            }                                                               \
        }                                                                   \
    } while (0)

/* |a-b| <= atol + rtol*|b| */
#define CHECK_CLOSE(a, b, atol, rtol, ...)                                  \
    CHECK(fabs((double)(a) - (double)(b)) <= (atol) + (rtol) * fabs((double)(b)), __VA_ARGS__)

#define SKIP(...)                                                           \
    do {                                                                    \
        fprintf(stderr, "SKIP: ");                                          \
        fprintf(stderr, __VA_ARGS__);                                       \
        fputc('\n', stderr);                                                \
        exit(77);                                                           \
    } while (0)

static inline int check_done(const char *name) {
    if (check_count == 0) {
        fprintf(stderr, "%s: ran no checks\n", name);
        return 1;
    }
    fprintf(stderr, "%s: %d checks, %d failed\n", name, check_count, check_failures);
    return check_failures ? 1 : 0;
}

/* ../shared beside the checkout (models and data), or NULL. */
static inline const char *shared_dir(void) {
    const char *d = getenv("LEMO_SHARED");
    if (d && *d) return d;
    static const char *cands[] = {"../shared", "../../shared"};
    for (int i = 0; i < 2; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s/models", cands[i]);
        FILE *f = fopen(p, "r");
        if (f) { fclose(f); return cands[i]; }
    }
    return NULL;
}

#endif
