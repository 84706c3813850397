/* fuzz_safetensors.c: st_parse on arbitrary bytes.
 *
 * The header parser is the first code that touches a user-supplied model file,
 * so it must reject anything malformed without crashing, and whatever it
 * accepts must be safe to read: every tensor span inside the buffer, element
 * count matching its byte size. Those properties are asserted here, so a
 * violation is a crash the fuzzer reports. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a private copy, so reads past the end are caught by ASan */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    StTensor *t = NULL;
    int n = 0;
    Err e;
    if (st_parse(buf, size, &t, &n, &e) == 0) {
        float sink = 0;
        for (int i = 0; i < n; i++) {
            const uint8_t *p = t[i].data;
            if (p < buf || p + t[i].nbytes > buf + size) abort();
            if ((size_t)t[i].numel * st_dtype_size(t[i].dtype) != t[i].nbytes) abort();
            if (t[i].numel > 0 && t[i].numel <= 4096) {
                float *out = malloc((size_t)t[i].numel * sizeof *out);
                if (out) {
                    st_to_f32(&t[i], out);
                    sink += out[0];
                    free(out);
                }
            }
            free(t[i].name);
        }
        free(t);
        (void)sink;
    } else if (t != NULL || n != 0 || !e.msg[0]) {
        abort();  // a failure must leave no output and say why
    }
    free(buf);
    return 0;
}
