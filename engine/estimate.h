/* estimate.h: peak memory, largest context and duration of a job, without running it. */
#ifndef LEMO_ESTIMATE_H
#define LEMO_ESTIMATE_H

#include <jansson.h>
#include <stddef.h>

#include "err.h"
#include "job_config.h"

/* device: "auto", "cpu" or "cuda"; device_mem: bytes available (0 = detect). On success *out
 * is {device, device_mem_bytes, peak_bytes, fits, context_length, max_context_length,
 * breakdown{...}, host_bytes (pinned host memory of offloaded layer checkpoints), tokens, steps,
 * est_seconds, tokens_per_s}. */
int estimate_job(const JobConfig *jc, const char *device, size_t device_mem, json_t **out, Err *e);

#endif
