/* parallel.c: parallel_check_runtime and parallel_resolve_mode (parallel.h). */
#include "parallel.h"

int parallel_check_runtime(const JobConfig *c, int n_gpus_visible, int backend_is_cuda, Err *e) {
    const ParallelConfig *p = &c->parallel;
    if (p->mode == PAR_MODE_CONTEXT && !backend_is_cuda)
        return err_set_at(e, "parallel.mode", 0, "'parallel.mode' \"context\" needs the CUDA backend (its ring of K/V "
                          "shards runs over NCCL), but this job runs on the CPU");
    if (p->gpus > 1 && !backend_is_cuda)
        return err_set_at(e, "parallel.gpus", 0, "'parallel.gpus' %d needs the CUDA backend (the ranks talk through NCCL), "
                          "but this job runs on the CPU", p->gpus);
    if (backend_is_cuda && p->gpus > n_gpus_visible)
        return err_set_at(e, "parallel.gpus", 0, "'parallel.gpus' asks for %d GPUs but this machine shows %d%s", p->gpus,
                          n_gpus_visible, n_gpus_visible ? " (CUDA_VISIBLE_DEVICES may hide some)" : "");
    return 0;
}

/* Whether context_length splits into 2 * gpus chunks of whole units. */
static int context_splits(const JobConfig *c) {
    int split = 2 * c->parallel.gpus * parallel_unit_rows(c->lemo.on, c->lemo.block);
    return c->context_length % split == 0;
}

int parallel_resolve_mode(const JobConfig *c, int window_fits_one_gpu, Err *e) {
    const ParallelConfig *p = &c->parallel;
    if (p->gpus == 1) return p->mode == PAR_MODE_CONTEXT ? PAR_MODE_CONTEXT : PAR_MODE_DATA;
    if (p->mode != PAR_MODE_AUTO) return p->mode;  // job_parallel_check has checked it fits the config
    int split = 2 * p->gpus * parallel_unit_rows(c->lemo.on, c->lemo.block);
    if (!window_fits_one_gpu) {
        if (context_splits(c)) return PAR_MODE_CONTEXT;
        return err_set_at(e, "context_length", 0, "'context_length' (%d) does not fit one GPU, and context parallel over "
                          "%d GPUs needs a multiple of %d", c->context_length, p->gpus, split);
    }
    if (c->grad_accum >= p->gpus) return PAR_MODE_DATA;
    if (context_splits(c)) return PAR_MODE_CONTEXT;
    return err_set_at(e, "grad_accum", 0, "'parallel.mode' \"auto\" over %d GPUs finds no mode: data parallel needs "
                      "'grad_accum' (%d) of at least %d, context parallel a 'context_length' (%d) that is a multiple of %d",
                      p->gpus, c->grad_accum, p->gpus, c->context_length, split);
}
