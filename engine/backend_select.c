/* backend_select.c: picks the compute backend for --device auto|cpu|cuda.
 * "auto" takes CUDA when this build has it and a device answers, else the CPU. */
#include <string.h>

#include "backend_select.h"
#include "err.h"

#ifndef LEMO_CUDA
/* Built without nvcc: there is no CUDA backend to offer. */
const Backend *backend_cuda(const char **why) {
    if (why) *why = "this build has no CUDA backend (nvcc was not found at build time)";
    return NULL;
}
#endif

const Backend *backend_select(const char *device, Err *e) {
    if (!device || !strcmp(device, "cpu")) return backend_cpu();
    const char *why = "";
    const Backend *be = backend_cuda(&why);
    if (be) return be;
    if (!strcmp(device, "cuda")) {
        err_set_at(e, "device", 0, "device \"cuda\" requested but unavailable: %s", why);
        return NULL;
    }
    return backend_cpu();
}
