/* job_config.h: the job config `lemo train` runs (DESIGN section 6), parsed and validated.
 *
 * The same parser serves the CLI and the server, so a config the server accepts is a
 * config the trainer runs. Unknown keys and bad values are errors naming the key
 * (Err.param holds the dotted key, e.g. "lora.r"). */
#ifndef LEMO_JOB_CONFIG_H
#define LEMO_JOB_CONFIG_H

#include <jansson.h>
#include <stdint.h>

#include "err.h"
#include "model_config.h"

#define JOB_MAX_TARGETS 7
#define JOB_MAX_LAYERS 512               // per-layer settings (memory.layers) of models up to this depth
#define JOB_PATH_MAX 1024

enum { TARGET_Q = 0, TARGET_K, TARGET_V, TARGET_O, TARGET_GATE, TARGET_UP, TARGET_DOWN };

/* Activation policy, per layer: where a layer's activations wait for its backward. ACT_KEEP:
 * every activation stays on the device (no recompute). ACT_RECOMPUTE: only the layer's input
 * stays on the device, and the layer is recomputed right before its backward. ACT_OFFLOAD: that
 * input goes to pinned host memory and is copied back ahead of the recompute while the layer
 * above computes. ACT_OFFLOAD_ATT: in addition the layer's attention output and log-sum-exp,
 * so that its recompute skips the attention forward (the step's most expensive kernel once
 * instead of twice, for twice the pinned host memory). Keeping costs a whole layer's
 * activations on the device and saves its recompute; the others cost one (S, C) input each,
 * on the device or the host. */
enum { ACT_KEEP = 0, ACT_RECOMPUTE = 1, ACT_OFFLOAD = 2, ACT_OFFLOAD_ATT = 3, ACT_N };
extern const char *const act_names[ACT_N];  // "keep", "recompute", "offload", "offload_attention"
/* The ACT_* a policy name names, or -1. */
int act_from_name(const char *name);
/* Whether the policy keeps a layer's input in host memory. */
static inline int act_offloads(int policy) { return policy == ACT_OFFLOAD || policy == ACT_OFFLOAD_ATT; }

/* A run's activation policy: `all` for every layer, unless `n` (then the model's layer count)
 * gives each layer its own in layer[]. */
typedef struct {
    int all;
    int n;
    unsigned char layer[JOB_MAX_LAYERS];
    int mlp_tiles;            // memory.mlp_tiles: the MLP runs in this many row tiles (0, 1: one)
} ActPolicy;
static inline int act_layer(const ActPolicy *p, int l) { return p->n ? p->layer[l] : p->all; }
/* The MLP's row tiles: with T > 1 every layer's gate, up and SwiGLU outputs exist for one tile
 * of rows at a time, in its forward and again in its backward (recomputed from the saved
 * residual), never for all S rows. Exact: the same arithmetic per row. */
static inline int act_tiles(const ActPolicy *p) { return p->mlp_tiles > 1 ? p->mlp_tiles : 1; }
static inline int act_tile_rows(const ActPolicy *p, int S) { return (S + act_tiles(p) - 1) / act_tiles(p); }
static inline ActPolicy act_uniform(int policy) { return (ActPolicy){.all = policy}; }
/* Checks that a per-layer policy matches a model of n_layers layers (Err.param "memory.layers"). */
int act_policy_check(const ActPolicy *p, int n_layers, Err *e);

/* LeMo token elimination (DESIGN section 8): how each layer's attention keeps token blocks.
 * LEMO_SCORES_EXACT: the oracle block scores from the layer's own q, k; LEMO_SCORES_RANDOM:
 * the same number of blocks, drawn by seed, step and layer (the control); LEMO_SCORES_PREDICTOR:
 * the learned predictors of `lemo prepare` (predictor.h) from the layer's normed input. */
enum { LEMO_SCORES_EXACT = 0, LEMO_SCORES_RANDOM = 1, LEMO_SCORES_PREDICTOR = 2, LEMO_SCORES_N };
extern const char *const lemo_score_names[LEMO_SCORES_N];  // "exact", "random", "predictor"

/* The "lemo" key as given; lemo_resolve (lemo.h) turns it into one keep fraction per layer
 * once the model's depth is known. */
typedef struct {
    int on;                          // "lemo" given
    int scores;                      // LEMO_SCORES_*
    int block;                       // rows per token block (64)
    double keep_all;                 // keep: one fraction for every sparse layer
    int n_keep;                      // keep: an array, one fraction per layer (then n_keep == L)
    double keep[JOB_MAX_LAYERS];
    int n_dense;                     // -1: the default dense layers (l < L/2 - 1 and the last)
    int dense[JOB_MAX_LAYERS];       // layer indices kept dense
    uint64_t seed;                   // random scores; defaults to the job's seed
    int has_seed;
    char predictor[JOB_PATH_MAX];    // scores "predictor": the folder lemo prepare wrote
    int keep_auto;                   // keep "auto": the predictor's calibrated schedule
} LemoConfig;

/* Several GPUs for one job (DESIGN section 11): "parallel": {"gpus": N, "mode": M}, one process
 * (rank) per GPU. PAR_MODE_DATA: each rank trains whole windows of the step and the LoRA
 * gradients are all-reduced; PAR_MODE_CONTEXT: every window is split across the ranks (zigzag
 * chunks, engine/parallel/partition.h) and attention passes K/V shards around a ring;
 * PAR_MODE_AUTO: the trainer picks (parallel_resolve_mode, engine/parallel/parallel.h). One
 * GPU (the default) is the single-process engine, whatever the mode. */
enum { PAR_MODE_AUTO = 0, PAR_MODE_DATA = 1, PAR_MODE_CONTEXT = 2, PAR_MODE_N };
extern const char *const parallel_mode_names[PAR_MODE_N];  // "auto", "data", "context"
#define PAR_MAX_GPUS 64
typedef struct {
    int gpus;                        // ranks, one per GPU: 1..PAR_MAX_GPUS
    int mode;                        // PAR_MODE_*
} ParallelConfig;
/* Rows of the unit a context-parallel window is cut in: 64 (the attention kernels' query tile
 * and the default LeMo block), or the LeMo block when it is larger, so that every chunk holds
 * whole tiles and whole LeMo blocks. The window splits into 2 * gpus chunks of whole units
 * (zigzag): context_length must be a multiple of 2 * gpus * this. */
static inline int parallel_unit_rows(int lemo_on, int lemo_block) { return lemo_on && lemo_block > 64 ? lemo_block : 64; }

typedef struct {
    char model[JOB_PATH_MAX];        // HF model directory
    char base_model_name[256];       // the adapters' base_model_name_or_path ("" = the model directory);
                                     // the service gives the model's id, so no server path leaves it
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
    ActPolicy act;                   // activation policy: memory.checkpointing, .offload, .offload_attention, .layers
    int act_auto;                    // memory.auto: the trainer picks act to fit the device (estimate_auto_policy)
    LemoConfig lemo;                 // token elimination; lemo.on == 0: dense
    ParallelConfig parallel;         // GPUs per job and how the work is split (gpus 1: one process)
} JobConfig;

void job_config_defaults(JobConfig *c);
/* Parses a JSON object text into c (starting from defaults); validates every value. */
int job_config_parse(const char *json_text, JobConfig *c, Err *e);
int job_config_load(const char *path, JobConfig *c, Err *e);
/* The checks of the "parallel" key that need no hardware, against the rest of the config (the
 * parser runs them; so does whoever changes c->parallel afterwards, e.g. lemo estimate --gpus):
 * gpus within 1..PAR_MAX_GPUS (parallel.gpus); more than one GPU, or mode context, with device
 * "cpu" (parallel.gpus, parallel.mode: NCCL and the ring kernels are CUDA's); mode data with
 * fewer windows per step than GPUs (grad_accum: a GPU would idle); mode context with a window
 * that does not split into 2 * gpus chunks of whole units (context_length). The checks that
 * need the machine are parallel_check_runtime's (engine/parallel/parallel.h). */
int job_parallel_check(const JobConfig *c, Err *e);
/* The "lemo" key as the parser reads it back, defaults filled in (a new reference). */
json_t *lemo_config_to_json(const LemoConfig *z);
/* Writes the resolved config as JSON (malloc'd string). */
char *job_config_to_json(const JobConfig *c);
extern const char *const job_target_names[JOB_MAX_TARGETS];  // "q_proj", ... "down_proj"

#endif
