/* estimate.h: peak memory, largest context and duration of a job, without running it. */
#ifndef LEMO_ESTIMATE_H
#define LEMO_ESTIMATE_H

#include <jansson.h>
#include <stddef.h>

#include "err.h"
#include "job_config.h"

/* device: "auto", "cpu" or "cuda"; device_mem: bytes available (0 = detect); host_mem: the
 * host's memory in bytes, which holds a CUDA job's offloaded layers (0 = this machine's). On success *out
 * is {device, device_mem_bytes, peak_bytes, device_fits, host_mem_bytes (this machine's
 * memory), fits (on CUDA: the device peak fits and the host holds host_bytes plus the dataset),
 * context_length, max_context_length (fits both), breakdown{...}, host_bytes (pinned host
 * memory of offloaded layer checkpoints), tokens, steps, est_seconds, tokens_per_s,
 * memory_layers (layers per activation policy)}. With memory.auto the figures are those of
 * the policy the trainer would pick (memory_layers says which) and the largest context is
 * the longest at which it finds one that fits. With parallel.gpus N > 1 (CUDA only: an error
 * naming parallel.gpus or parallel.mode otherwise) the device figures are one GPU's, device_mem
 * one GPU's memory, the host figures all N ranks'; mode auto is resolved as the trainer would
 * (parallel_resolve_mode), and *out adds parallel {gpus, mode, rows_per_gpu, per_gpu_peak_bytes,
 * host_bytes_all_gpus} and breakdown.nccl (and, context parallel, breakdown.context_ring). */
int estimate_job(const JobConfig *jc, const char *device, size_t device_mem, size_t host_mem, int flags,
                 json_t **out, Err *e);
/* estimate_job's flags: ESTIMATE_MEMORY_ONLY skips the duration (on the CPU a 0.2 s sgemm probe):
 * tokens, steps, est_seconds and tokens_per_s are then absent. */
#define ESTIMATE_MEMORY_ONLY 1
/* memory.auto: sets jc->act to the fastest policy, layer by layer, that fits this machine (one
 * rank's share of it when jc->parallel.mode is context over several GPUs: resolve "auto" first): the
 * CUDA device's free memory (cuda) or physical memory, and the host's available memory for
 * pinned offloads. 0,
 * or -1 with e set (unreadable model config, no device memory to read). */
int estimate_auto_policy(JobConfig *jc, int cuda, Err *e);

/* The host memory available now (/proc/meminfo's MemAvailable), else the physical memory. */
size_t estimate_host_available(void);

#endif
