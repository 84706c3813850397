/* predictor.h: LeMo's pattern predictors for one base model (DESIGN section 8 step 2): what
 * `lemo prepare` trains and writes, and what `lemo train` with "scores": "predictor" reads.
 *
 * Per layer a Q and a K network over each token block's chunks (backend.h, "LeMo pattern
 * predictors", says the arithmetic); fp32 weights, no biases (the trained artifact has none).
 * A predictor lives in a folder of two files:
 *   predictor.safetensors  tensors layers.L.{q,k}.w{1,2,3}, fp32, shapes (H1, D), (H2, H1), (HS, H2)
 *   lemo.json              the model it was made for (identity fields), the widths, the block,
 *                          the trained context, per-layer recall, the calibrated keep schedule
 *                          and the loss deltas it was chosen from, and the weights file's hash
 * lemo.json is written last and names the hash of the weights file, so a folder whose write
 * was cut short does not load as a valid predictor.
 *
 * Widths (the rule, lemo_predictor_widths): D = B * HS in, H1 = 128, H2 = 128, HS out. The
 * paper's Llama-2-7B networks are 8192-128-8192-128 (H2 = D). H2 = 128 is not a measured
 * choice: the recall these reach on refmodel-22m is still near random selection's
 * (bench/RESULTS.md, 2026-12-04), so no width could be told to hold it better than another;
 * lemo prepare --hidden2 sets it. */
#ifndef LEMO_PREDICTOR_H
#define LEMO_PREDICTOR_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "backend.h"
#include "err.h"
#include "job_config.h"
#include "lemo.h"
#include "model_config.h"

#define LEMO_PRED_H1 128
#define LEMO_PRED_H2 128

typedef struct {
    // identity of the model it was made for
    char model_name[256];           // the model folder's base name (informational)
    uint64_t config_hash;           // FNV-1a 64 of the model's config.json bytes
    int hidden, head_dim, n_heads, n_kv_heads, n_layers, vocab;
    // shape
    int block, h1, h2;              // B, H1, H2 (D = B * head_dim, out = head_dim)
    int context;                    // the windows it was trained on
    size_t n_w;                     // floats per layer: lemo_predictor_weights(B, HS, H1, H2)
    float *w;                       // (L, n_w) host fp32, layer l at l * n_w
    // what prepare measured and chose
    int has_schedule;
    float keep[JOB_MAX_LAYERS];     // the calibrated keep fraction per layer
    float recall[JOB_MAX_LAYERS];   // held-out recall per layer at keep 0.4
    float recall_mean;
} LemoPredictor;

/* The widths of model c's predictors at block B (the rule above). */
void lemo_predictor_widths(const ModelConfig *c, int B, int *h1, int *h2);
/* A fresh predictor for the model in dir: identity filled in, weights as PyTorch's nn.Linear
 * default draws them (uniform +-1/sqrt(in)) from seed. NULL + e on failure. */
LemoPredictor *lemo_predictor_new(const char *model_dir, const ModelConfig *c, int B, int h1, int h2,
                                  uint64_t seed, Err *e);
/* Reads dir/lemo.json and dir/predictor.safetensors; checks they belong together and that they
 * were made for the model in model_dir with block B: a mismatch is an error naming both
 * (param: `param`, e.g. "lemo.predictor"). */
LemoPredictor *lemo_predictor_load(const char *dir, const char *model_dir, const ModelConfig *c, int B,
                                   const char *param, Err *e);
/* Writes both files into dir (created), each atomically, lemo.json last. extra: more members
 * of lemo.json (the measurements; borrowed), may be NULL. */
int lemo_predictor_save(const LemoPredictor *p, const char *dir, const json_t *extra, Err *e);
void lemo_predictor_free(LemoPredictor *p);
/* The weights the step reads (the layers z keeps less than all of, in order: lemo_pred_slot)
 * copied into one buffer of backend be; sets z->pred_w to it and returns it (the caller frees
 * it with be->free), or NULL + e when the device has no room. *bytes: its size. */
void *lemo_predictor_upload(const Backend *be, const LemoPredictor *p, LemoSpec *z, size_t *bytes, Err *e);
/* FNV-1a 64 of a file's bytes (the identity and integrity hashes). */
int lemo_file_hash(const char *path, uint64_t *out, Err *e);

#endif
