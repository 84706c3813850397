/* fuzz_dataset.c: libFuzzer target for the whole upload path of a dataset: the input is the
 * file a client sends; it is wrapped in a multipart/form-data body, parsed back by the
 * streaming parser in uneven chunks, and the recovered bytes are validated with
 * data_validate_jsonl, as POST /v1/files does. Invariants: the parser returns the file's bytes
 * exactly (whatever they contain, boundary look-alikes included), and the validator accepts
 * with 1..lines examples or rejects naming a line inside the file. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "multipart.h"

typedef struct { char *buf; size_t len, cap; int in_file; } Got;

static int on_begin(void *ctx, const char *name, const char *filename, const char *ct) {
    (void)filename, (void)ct;
    ((Got *)ctx)->in_file = !strcmp(name, "file");
    return 0;
}

static int on_data(void *ctx, const char *d, size_t n) {
    Got *g = ctx;
    if (!g->in_file) return 0;
    if (g->len + n > g->cap) return 1;
    memcpy(g->buf + g->len, d, n);
    g->len += n;
    return 0;
}

static int on_end(void *ctx) {
    ((Got *)ctx)->in_file = 0;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char head[] = "--bNd7\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n"
                               "--bNd7\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.jsonl\"\r\n\r\n";
    static const char tail[] = "\r\n--bNd7--\r\n";
    if (memmem(data, size, "\r\n--bNd7", 8)) return 0;  // a real client picks a boundary absent from the file
    size_t n = sizeof head - 1 + size + sizeof tail - 1;
    char *body = malloc(n);
    Got g = {malloc(size ? size : 1), 0, size, 0};
    memcpy(body, head, sizeof head - 1);
    memcpy(body + sizeof head - 1, data, size);
    memcpy(body + sizeof head - 1 + size, tail, sizeof tail - 1);
    MultipartCallbacks cb = {on_begin, on_data, on_end, &g};
    Err e = {0};
    Multipart *m = multipart_new("multipart/form-data; boundary=bNd7", &cb, &e);
    size_t chunk = size % 61 + 1;
    int bad = 0;
    for (size_t i = 0; i < n && !bad; i += chunk) bad = multipart_feed(m, body + i, i + chunk <= n ? chunk : n - i, &e);
    if (bad || multipart_finish(m, &e) || g.len != size || memcmp(g.buf, data, size)) abort();
    multipart_free(m);
    free(body);
    long lines = 1;
    for (size_t i = 0; i < size; i++) lines += data[i] == '\n';
    long ex = -1;
    memset(&e, 0, sizeof e);
    if (data_validate_jsonl(g.buf, g.len, "f.jsonl", &ex, &e) == 0) {
        if (ex < 1 || ex > lines) abort();
    } else if (e.line < 0 || e.line > lines || !e.msg[0]) {
        abort();
    }
    free(g.buf);
    return 0;
}
