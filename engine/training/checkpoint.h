/* checkpoint.h: training checkpoints for exact resume.
 *
 * OUTPUT_DIR/checkpoints/step-N/ holds the LoRA as a PEFT adapter (so any checkpoint can be
 * downloaded and used), optimizer.safetensors (LoRA params, AdamW m and v, fp32, bit-exact)
 * and state.json (step, data cursor, token count, seed). It is written into a temp folder
 * and renamed into place, so a crash leaves either the whole checkpoint or none. */
#ifndef LEMO_CHECKPOINT_H
#define LEMO_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "model.h"

typedef struct {
    int step;                // optimizer steps done
    int total_steps;
    uint64_t epoch;          // data cursor: epoch and position within its shuffled order
    size_t pos;
    size_t n_windows;        // train windows (a resume with other data is refused)
    uint64_t seed;
    long long tokens;        // input tokens trained on so far
} TrainState;

int checkpoint_save(const Model *m, const char *output_dir, const char *base_model, const TrainState *st,
                    char *path_out, size_t cap, Err *e);
int checkpoint_load(Model *m, const char *ckpt_dir, TrainState *st, Err *e);
/* 1 when ckpt_dir is a checkpoint a resume can read: its state.json parses and its
 * optimizer.safetensors holds the three fp32 tensors (of any one LoRA size). */
int checkpoint_readable(const char *ckpt_dir);
/* state.json's text into st, every field present and in range (the cursor within the windows). */
int checkpoint_state_parse(const char *text, size_t len, TrainState *st, Err *e);
/* Newest OUTPUT_DIR/checkpoints/step-N into out; 0 if found, -1 if none. */
int checkpoint_latest(const char *output_dir, char *out, size_t cap);
/* The same among those of steps below `before` (the one before an unreadable checkpoint). */
int checkpoint_latest_before(const char *output_dir, long before, char *out, size_t cap);

#endif
