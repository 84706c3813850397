/* parallel.h: the run-time side of a multi-GPU job's config (DESIGN section 11): the checks
 * that need the machine and the mode "auto" picks. job_parallel_check (job_config.h) has
 * already checked what the config alone can show. */
#ifndef LEMO_PARALLEL_H
#define LEMO_PARALLEL_H

#include "err.h"
#include "job_config.h"

/* Before the ranks start (the trainer, with the backend chosen): parallel.gpus no larger than
 * the GPUs this process sees (n_gpus_visible: cudaGetDeviceCount under CUDA_VISIBLE_DEVICES;
 * Err.param "parallel.gpus"), and the CUDA backend for mode context or for more than one GPU
 * (backend_is_cuda; "parallel.mode" for context, else "parallel.gpus"), which device "auto"
 * can only show here. 0 or -1 with e set. */
int parallel_check_runtime(const JobConfig *c, int n_gpus_visible, int backend_is_cuda, Err *e);

/* The mode the job runs in, PAR_MODE_DATA or PAR_MODE_CONTEXT (one GPU: the mode given, auto
 * as data; either is then the one-process run). Auto on several GPUs: context parallel when a
 * window does not fit one GPU (window_fits_one_gpu, from the estimate), data parallel when it
 * does and the step has a window for every GPU (grad_accum >= gpus), else context parallel,
 * which shortens each window's step instead. Context parallel then needs a context_length that
 * splits (job_parallel_check's rule); when auto finds no mode that runs it says why (param
 * "context_length" or "grad_accum") and returns -1. */
int parallel_resolve_mode(const JobConfig *c, int window_fits_one_gpu, Err *e);

#endif
