/* cmd_estimate.c: `lemo estimate CONFIG.json`: the job's memory and time estimate as JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "estimate.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: lemo estimate CONFIG.json [flags]\n"
            "  Prints the predicted peak memory, whether it fits, the largest context_length that\n"
            "  fits, and the estimated tokens and duration of the job, as one JSON object. With\n"
            "  several GPUs the peak is one GPU's and --device-mem one GPU's memory.\n"
            "  --device D       auto, cpu or cuda (default: the config's device, else auto)\n"
            "  --device-mem N   memory available in bytes (default: detected; GPU via nvidia-smi)\n"
            "  --host-mem N     the host's memory in bytes, which holds offloaded layers (default: this machine's)\n"
            "  --memory-only    memory and fit only, no duration (skips the CPU's 0.2 s speed probe)\n"
            "  --gpus N         price the job on N GPUs, replacing parallel.gpus (default: the config's, 1)\n"
            "  --parallel-mode M  data, context or auto, replacing parallel.mode (default: the config's, auto)\n"
            "  --help           this text\n");
}

int cmd_estimate(int argc, char **argv) {
    const char *path = NULL, *device = NULL;
    size_t mem = 0, host_mem = 0;
    int flags = 0, gpus = 0, mode = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--memory-only")) { flags |= ESTIMATE_MEMORY_ONLY; continue; }
        if (!strcmp(a, "--gpus") && i + 1 < argc) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > PAR_MAX_GPUS) {
                fprintf(stderr, "lemo estimate: --gpus must be a count in [1, %d]\n", PAR_MAX_GPUS);
                return 2;
            }
            gpus = (int)n;
            continue;
        }
        if (!strcmp(a, "--parallel-mode") && i + 1 < argc) {
            const char *v = argv[++i];
            for (int m = 0; m < PAR_MODE_N; m++)
                if (!strcmp(v, parallel_mode_names[m])) mode = m;
            if (mode < 0) { fprintf(stderr, "lemo estimate: --parallel-mode must be data, context or auto\n"); return 2; }
            continue;
        }
        if ((!strcmp(a, "--device") || !strcmp(a, "--device-mem") || !strcmp(a, "--host-mem")) && i + 1 < argc) {
            const char *v = argv[++i];
            if (!strcmp(a, "--device")) {
                if (strcmp(v, "auto") && strcmp(v, "cpu") && strcmp(v, "cuda")) {
                    fprintf(stderr, "lemo estimate: --device must be auto, cpu or cuda\n");
                    return 2;
                }
                device = v;
            } else {
                char *end;
                unsigned long long n = strtoull(v, &end, 10);
                if (*end || n == 0) { fprintf(stderr, "lemo estimate: %s must be a byte count\n", a); return 2; }
                *(!strcmp(a, "--host-mem") ? &host_mem : &mem) = (size_t)n;
            }
            continue;
        }
        if (a[0] == '-' || path) {
            fprintf(stderr, "lemo estimate: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        path = a;
    }
    if (!path) { usage(stderr); return 2; }
    JobConfig c;
    Err e = {0};
    json_t *out = NULL;
    int rc = job_config_load(path, &c, &e);
    if (!rc && (gpus || mode >= 0)) {  // the flags replace the config's and are checked as it is
        if (gpus) c.parallel.gpus = gpus;
        if (mode >= 0) c.parallel.mode = mode;
        rc = job_parallel_check(&c, &e);
    }
    if (rc || estimate_job(&c, device ? device : c.device, mem, host_mem, flags, &out, &e)) {
        json_t *err = json_pack("{s:{s:s, s:s}}", "error", "message", e.msg, "param", e.param);
        char *s = json_dumps(err, JSON_COMPACT);
        puts(s);
        free(s);
        json_decref(err);
        fprintf(stderr, "lemo estimate: %s\n", e.msg);
        return 2;
    }
    char *s = json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(6));
    if (!s) {  // a number JSON cannot hold (not finite): a bug of the estimate, said so
        fprintf(stderr, "lemo estimate: the estimate holds a value JSON cannot write\n");
        json_decref(out);
        return 70;
    }
    puts(s);
    free(s);
    json_decref(out);
    return 0;
}
