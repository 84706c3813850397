/* scheduler.h: engine threads, one per device slot (DESIGN section 2).
 *
 * Each slot thread claims the oldest queued job in a transaction, runs `lemo train
 * JOB_DIR/config.json` as a child process (this binary, via /proc/self/exe), turns the
 * child's JSON progress lines into events, progress and checkpoints, and records how it
 * ended. Training never happens inside the server: a crash or OOM of a job kills only its
 * child. The child gets no descriptor of the server's (all closed before exec) and dies
 * with the server (PR_SET_PDEATHSIG), so a restarted server can safely resume the job. */
#ifndef LEMO_SCHEDULER_H
#define LEMO_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "server.h"

/* Live numbers of a busy slot, for /metrics. */
typedef struct {
    char job_id[48];
    int gpu;                 // -1: CPU slot
    int64_t step, total_steps, gpu_mem_bytes, mem_bytes;
    double tokens_per_s, loss;
} SlotInfo;

/* Number of NVIDIA GPUs (/dev/nvidiaN device files). */
int scheduler_count_gpus(void);
/* Requeues jobs a crash left `running`, with an event naming the step they resume from. */
int scheduler_recover(Server *srv, Err *e);
/* Starts n slot threads; gpus > 0: slot i trains on GPU i % gpus (CUDA_VISIBLE_DEVICES). */
Scheduler *scheduler_start(Server *srv, int n, int gpus, Err *e);
/* New work is queued. */
void scheduler_wake(Scheduler *s);
/* SIGTERM to the child training job_id (it checkpoints and exits); 1 if one was running. */
int scheduler_signal_job(Scheduler *s, const char *job_id);
/* 1 when a slot is preparing LeMo predictors of base model `model` now: the job in job_id,
 * the block in *block. */
int scheduler_lemo_preparing(Scheduler *s, const char *model, char *job_id, size_t cap, int *block);
/* Copies up to max busy slots' numbers; returns how many. */
int scheduler_slot_info(Scheduler *s, SlotInfo *out, int max);
int scheduler_slots(Scheduler *s);
/* Stops every child (their jobs go back to the queue and resume on the next start) and joins. */
void scheduler_stop(Scheduler *s);
/* The highest checkpoint step of a job, from its checkpoints directory. */
int64_t scheduler_disk_checkpoint_step(const char *job_dir);

#endif
