/* job_config.h: the job config `lemo train` runs (DESIGN section 6), parsed and validated.
 *
 * The same parser serves the CLI and the server, so a config the server accepts is a
 * config the trainer runs. Unknown keys and bad values are errors naming the key
 * (Err.param holds the dotted key, e.g. "lora.r"). */
#ifndef LEMO_JOB_CONFIG_H
#define LEMO_JOB_CONFIG_H

#include <stdint.h>

#include "err.h"
#include "model_config.h"

#define JOB_MAX_TARGETS 7
#define JOB_PATH_MAX 1024

enum { TARGET_Q = 0, TARGET_K, TARGET_V, TARGET_O, TARGET_GATE, TARGET_UP, TARGET_DOWN };

typedef struct {
    char model[JOB_PATH_MAX];        // HF model directory
    char train_file[JOB_PATH_MAX];   // JSONL
    char eval_file[JOB_PATH_MAX];    // "" = hold out eval_fraction of train documents
    char output_dir[JOB_PATH_MAX];
    char resume_from[JOB_PATH_MAX];  // checkpoint dir, "" = fresh; "auto" = latest in output_dir
    char device[8];                  // "auto", "cpu", "cuda"
    int context_length;              // S
    int max_steps;                   // 0 = from epochs
    double epochs;                   // used when max_steps == 0
    uint64_t seed;
    int chat_template;               // TEMPLATE_* (data.h)
    double eval_fraction;            // held-out share of documents when no eval_file
    int eval_every, checkpoint_every, eval_windows;
    int grad_accum;
    struct { int r; float alpha, dropout; int targets[JOB_MAX_TARGETS]; } lora;  // targets: 0/1 per TARGET_*
    struct { float lr, beta1, beta2, eps, weight_decay, grad_clip; int warmup_steps; float min_lr_ratio; } optim;
    int has_rope_scaling;
    RopeScaling rope_scaling;        // overrides the model's when has_rope_scaling
    int checkpointing;               // activation policy, ACT_*: memory.checkpointing and memory.offload
} JobConfig;

/* Activation policy (JobConfig.checkpointing, model_load's `checkpointing`): keep every
 * layer's activations; keep each layer's input on the device and recompute the layer in
 * backward; or keep those layer inputs in pinned host memory, copied back ahead of each
 * layer's recompute while the previous layer computes ("memory": {"offload": true}); or, in
 * addition, each layer's attention output and log-sum-exp, so that the recompute skips the
 * attention forward ("offload_attention": true: twice the pinned host memory, one (S, Q)
 * buffer more on the device, the step's most expensive kernel once instead of twice). */
enum { ACT_KEEP = 0, ACT_RECOMPUTE = 1, ACT_OFFLOAD = 2, ACT_OFFLOAD_ATT = 3 };
/* Whether the policy keeps layer inputs in host memory. */
static inline int act_offloads(int policy) { return policy == ACT_OFFLOAD || policy == ACT_OFFLOAD_ATT; }

void job_config_defaults(JobConfig *c);
/* Parses a JSON object text into c (starting from defaults); validates every value. */
int job_config_parse(const char *json_text, JobConfig *c, Err *e);
int job_config_load(const char *path, JobConfig *c, Err *e);
/* Writes the resolved config as JSON (malloc'd string). */
char *job_config_to_json(const JobConfig *c);
extern const char *const job_target_names[JOB_MAX_TARGETS];  // "q_proj", ... "down_proj"

#endif
