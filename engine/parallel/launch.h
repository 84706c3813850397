/* launch.h: how the ranks of a multi-GPU job start and find each other on one host (DESIGN
 * section 11), without NCCL itself: the launcher that starts one process per GPU and
 * supervises them, each rank's view of its place (from the environment the launcher gives
 * it), and the hand-over of NCCL's unique id through a file in the job's output directory.
 *
 * Rank 0 makes the id (ncclGetUniqueId: its process hosts NCCL's bootstrap root, so the id
 * must come from a rank that stays, not from the launcher) and publishes it; the others wait
 * for it. The file carries the launch's nonce, so a file left by an earlier launch (a crash,
 * a kill) is never taken for this one's, and it is written to a temp name and renamed, so a
 * reader never sees half of it. The id is opaque here: PAR_ID_BYTES bytes, sizeof(ncclUniqueId). */
#ifndef LEMO_LAUNCH_H
#define LEMO_LAUNCH_H

#include <stdint.h>

#include "err.h"

#define PAR_ID_BYTES 128          // NCCL_UNIQUE_ID_BYTES
#define PAR_ID_FILE ".nccl-id"    // in the job's output directory

/* A rank's place, from the environment par_launch gives it: LEMO_RANK, LEMO_WORLD,
 * LEMO_LAUNCH_ID (the nonce, 16 hex digits) and LEMO_NCCL_ID_FILE (the id file's path). */
typedef struct {
    int rank, world;
    uint64_t nonce;
    char id_file[1100];
} ParRank;

/* Reads the rank's place from the environment: 1 when the process is a rank of a launch, 0
 * when LEMO_RANK is unset (a one-process run), -1 with e set when the variables are malformed. */
int par_rank_from_env(ParRank *r, Err *e);

/* Rank 0: writes nonce and id to path (path.tmp, fsync, rename). */
int par_id_publish(const char *path, uint64_t nonce, const unsigned char id[PAR_ID_BYTES], Err *e);
/* The other ranks: waits up to timeout_ms for path to hold this launch's nonce and reads the
 * id; a file of another launch, or not yet complete, is waited past. -1 with e naming the
 * file on timeout. */
int par_id_wait(const char *path, uint64_t nonce, int timeout_ms, unsigned char id[PAR_ID_BYTES], Err *e);

/* What a launch starts: world copies of argv (argv[0] looked up in PATH), rank r with
 * CUDA_VISIBLE_DEVICES=gpus[r] (gpus NULL: r), NCCL_NVLS_ENABLE=0 (NVLink multicast stays off
 * in every rank, DESIGN section 11) and the variables of ParRank, the id file id_file (any
 * stale one removed first). Rank 0 keeps the launcher's stdout (its progress lines are the
 * job's); the others' stdout goes to /dev/null; every rank keeps stderr. grace_ms: how long a
 * rank has to stop after SIGTERM before SIGKILL. */
typedef struct {
    int world;
    char *const *argv;
    const int *gpus;
    const char *id_file;
    int grace_ms;
} ParLaunch;

/* Starts the ranks and waits for them. When one fails (non-zero exit or a signal) the others
 * get SIGTERM, then SIGKILL after grace_ms, and the failed one is reported: -1 with e naming
 * the rank and how it ended, *failed the rank (-1 when all succeeded). A SIGTERM or SIGINT to
 * the launcher while it waits is passed on to every rank (cancel: each rank checkpoints and
 * exits 0), and the launch then succeeds if they do. */
int par_launch(const ParLaunch *l, int *failed, Err *e);

#endif
