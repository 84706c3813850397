/* fuzz_jsonl.c: the upload validator (data_validate_jsonl) on arbitrary bytes.
 *
 * The server runs it on whatever a client uploads, so it must never crash, hang or read
 * out of bounds, and an error must always come with a message and, for a line error, a
 * line number inside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // a copy of exactly size bytes, so ASan sees any read past the end
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    Err e;
    memset(&e, 0, sizeof e);
    long n = -1;
    int rc = data_validate_jsonl(buf, size, "fuzz.jsonl", &n, &e);
    if (rc == 0) {
        if (n < 1) abort();
    } else {
        if (rc != -1 || e.msg[0] == 0 || strlen(e.msg) >= sizeof e.msg) abort();
        long lines = 1;
        for (size_t i = 0; i < size; i++) lines += buf[i] == '\n';
        if (e.line < 0 || e.line > lines) abort();
    }
    free(buf);
    return 0;
}
