/* fuzz_multipart.c: libFuzzer target for the streaming multipart/form-data parser. Input:
 * byte 0 picks the boundary length (1..32 bytes taken from the input), byte 1 the chunk size
 * the rest is fed in. Invariants: no crash, and the parts' bytes never exceed the input. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "multipart.h"

typedef struct { size_t bytes; int open; } Count;

static int on_begin(void *ctx, const char *name, const char *filename, const char *ct) {
    (void)name, (void)filename, (void)ct;
    ((Count *)ctx)->open++;
    return 0;
}

static int on_data(void *ctx, const char *d, size_t n) {
    (void)d;
    ((Count *)ctx)->bytes += n;
    return 0;
}

static int on_end(void *ctx) {
    ((Count *)ctx)->open--;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t bl = (size_t)(data[0] % 32) + 1, chunk = (size_t)data[1] + 1;
    if (size < 2 + bl) return 0;
    char ct[128];
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=\"%.*s\"", (int)bl, (const char *)data + 2);
    if (memchr(data + 2, 0, bl) || memchr(data + 2, '"', bl)) return 0;
    const char *body = (const char *)data + 2 + bl;
    size_t n = size - 2 - bl;
    Count c = {0, 0};
    MultipartCallbacks cb = {on_begin, on_data, on_end, &c};
    Err e;
    Multipart *m = multipart_new(ct, &cb, &e);
    if (!m) return 0;
    for (size_t i = 0; i < n; i += chunk)
        if (multipart_feed(m, body + i, i + chunk <= n ? chunk : n - i, &e)) break;
    multipart_finish(m, &e);
    multipart_free(m);
    if (c.bytes > n) __builtin_trap();
    return 0;
}
