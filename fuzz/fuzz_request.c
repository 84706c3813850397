/* fuzz_request.c: libFuzzer target for what a request's bytes reach before any I/O: the
 * job-creation body resolver (JSON -> trainer config, every field type-checked), the Range
 * header parser and the id / model-name checks that guard paths. The input is split at the
 * first NUL: body before, header/id text after. Invariants: a resolve either fails with a
 * named code or yields a config object; a parsed range lies inside the resource. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "job_request.h"
#include "models.h"
#include "srv_util.h"

static int model_dir(void *ctx, const char *name, char *dir, size_t cap, int *max_pos, int *n_layers) {
    (void)ctx;
    if (strcmp(name, "m")) return -1;
    snprintf(dir, cap, "/m");
    *max_pos = 128;
    *n_layers = 2;
    return 0;
}

static int file_path(void *ctx, const char *id, char *path, size_t cap) {
    (void)ctx;
    if (strcmp(id, "file-a")) return -1;
    snprintf(path, cap, "/f/%s", id);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t blen = nul ? (size_t)(nul - data) : size;
    JobEnv env = {model_dir, file_path, NULL, "/out", 0, "/lemo", 1};
    JobSpec sp;
    Err e = {0};
    if (job_request_resolve((const char *)data, blen, &env, &sp, &e) == 0) {
        if (!json_is_object(sp.config) || !json_is_object(sp.request)) abort();
    } else if (!sp.code[0]) {
        abort();  // every failure carries an error code
    }
    job_spec_free(&sp);
    if (nul) {
        size_t n = size - blen - 1;
        char *t = malloc(n + 1);
        memcpy(t, nul + 1, n);
        t[n] = 0;
        uint64_t sizes[3] = {0, 1, 1000}, a, b;
        for (int i = 0; i < 3; i++) {
            int rc = http_parse_range(t, sizes[i], &a, &b);
            if (rc == 1 && !(a <= b && b < sizes[i])) abort();
        }
        if (id_valid(t, "file-") && (strchr(t, '/') || strchr(t, '.'))) abort();
        if (models_name_valid(t) && (strchr(t, '/') || t[0] == '.')) abort();
        free(t);
    }
    return 0;
}
