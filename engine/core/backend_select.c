/* backend_select.c: picks the compute backend for --device auto|cpu|cuda.
 * "auto" takes CUDA when this build has it and a device answers, else the CPU.
 *
 * The CUDA backend is built as liblemo_cuda.so beside the lemo binary and loaded here on
 * first use: linking cuBLAS and the CUDA runtime into lemo itself made every process (the
 * server, CPU training, `lemo --help`) ~220 MB resident before doing anything. */
#include <string.h>

#include "backend_select.h"
#include "err.h"

#ifdef LEMO_CUDA
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

/* backend_cuda() of liblemo_cuda.so, next to /proc/self/exe; NULL with *why on failure. */
static const Backend *cuda_load(const char **why) {
    static const Backend *(*fn)(const char **);
    static char err[512];
    if (!fn) {
        // no NVIDIA device node: skip loading the CUDA libraries at all (they are large)
        if (access("/dev/nvidiactl", F_OK) && access("/dev/nvidia0", F_OK)) {
            *why = "no NVIDIA GPU device (/dev/nvidia*) on this machine";
            return NULL;
        }
        char exe[PATH_MAX], path[PATH_MAX + 32];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n <= 0) { *why = "cannot find the lemo binary's folder"; return NULL; }
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        snprintf(path, sizeof path, "%s/liblemo_cuda.so", exe);
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            snprintf(err, sizeof err, "cannot load the CUDA backend: %s", dlerror());
            *why = err;
            return NULL;
        }
        fn = (const Backend *(*)(const char **))dlsym(h, "backend_cuda");
        if (!fn) { *why = "liblemo_cuda.so has no backend_cuda"; return NULL; }
    }
    return fn(why);
}
#else
/* Built without nvcc: there is no CUDA backend to offer. */
static const Backend *cuda_load(const char **why) {
    *why = "this build has no CUDA backend (nvcc was not found at build time)";
    return NULL;
}
#endif

const Backend *backend_select(const char *device, Err *e) {
    if (!device || !strcmp(device, "cpu")) return backend_cpu();
    const char *why = "";
    const Backend *be = cuda_load(&why);
    if (be) return be;
    if (!strcmp(device, "cuda")) {
        err_set_at(e, "device", 0, "device \"cuda\" requested but unavailable: %s", why);
        return NULL;
    }
    return backend_cpu();
}
