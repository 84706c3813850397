/* model.h: a decoder-only transformer (Llama / Mistral / Qwen2) with LoRA, forward and
 * backward, written once against the Backend table (backend.h).
 *
 * Memory is planned before anything is allocated (model_plan): one device allocation per
 * category (base weights, LoRA + optimizer state, layer checkpoints, layer activations,
 * gradient scratch, loss, token buffers), nothing allocated inside a step. Buffers whose
 * lifetimes do not overlap share memory: the attention backward's gradients and the
 * backend's workspace for it live in the layer's MLP activations, dead by then, when they
 * fit there; the final norm's output and gradient live in two gradient buffers that are
 * dead around the loss (model_internal.h says which and why). The activation policy (ActPolicy,
 * ACT_* in job_config.h), layer by layer, picks what a layer keeps for its backward:
 * everything (ACT_KEEP: the layer has its own activation buffers); only its input residual,
 * the layer being recomputed right before its backward (ACT_RECOMPUTE); or that input in
 * pinned host memory (ACT_OFFLOAD, ACT_OFFLOAD_ATT): the device then holds two offloaded
 * layer inputs, each copied out after the layer that made it and copied back one layer
 * ahead of its recompute, on a side stream while the neighbouring layer computes. Every
 * layer that is not kept shares one set of activation buffers.
 *
 * Token elimination (LeMo, DESIGN section 8): a layer may attend over a sorted list of kept
 * rows only; then only those rows are attention queries and keys, RoPE uses their original
 * positions, and the attention output is added into those residual rows only. The list is
 * chosen inside the step (LemoSelect): by the model's schedule (LemoSpec, lemo.h), from
 * layer l's own input in its forward (exact block scores or the random control, then the
 * top-k on the device), stored, and reused by its recompute and its backward; or given by
 * the caller. The plan sizes each layer's attention activations by its kept rows. The full
 * list reproduces dense attention exactly. */
#ifndef LEMO_MODEL_H
#define LEMO_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "err.h"
#include "job_config.h"
#include "lemo.h"
#include "model_config.h"

typedef struct {
    void *attn_norm;          // (C)
    void *wq, *wk, *wv, *wo;  // (NH*HS, C), (NKV*HS, C), (NKV*HS, C), (C, NH*HS)
    void *bq, *bk, *bv;       // (NH*HS), (NKV*HS), (NKV*HS); NULL without q/k/v bias
    void *bo;                 // (C); NULL without an o_proj bias
    void *mlp_norm;           // (C)
    void *wg, *wu, *wd;       // (F, C), (F, C), (C, F)
} LayerWeights;

/* One LoRA pair, offsets in floats into Model.lora_params: A (R, K) at a, B (N, R) at b. */
typedef struct {
    long a, b;                // -1 when this (layer, target) has no adapter
    int K, N;
} LoraSlot;

typedef struct {
    int r;
    float alpha, dropout;
    int targets[JOB_MAX_TARGETS];  // 0/1 per TARGET_*
} LoraSpec;

/* Bytes per category for a given model shape, sequence length and LoRA (model_plan).
 * total is the device bytes; host is the pinned host memory of offloaded checkpoints.
 * grads: dx, dh2, dok (S, C) and da (S, F) with a down_proj adapter, plus the attention
 * backward's set (datt, dq, dk, dv and the backend's workspace) only when that set does not
 * fit a layer's dead MLP buffers (attn_in_mlp == 0), and likewise LeMo's scoring set
 * (score_in_mlp). loss: the final norm's rstd (its output and gradient alias dok and dh2). */
typedef struct {
    size_t weights, lora, checkpoints, activations, grads, loss, tokens;
    size_t total;
    size_t host;
    int attn_in_mlp;          // 1: the attention backward's set lives in each LayerActs' g, u, a
    int score_in_mlp;         // 1: LeMo's scoring set too (it is live only before the MLP's forward)
} MemPlan;

/* Intermediate activations of one layer's forward (saved for its backward). */
typedef struct {
    void *h, *hk;             // (S, C) normed input; (n, C) its kept rows, gathered into m->dh2
                              // when needed (forward and backward), unused when dense
    void *q, *k, *v;          // (n, NH*HS), (n, NKV*HS), (n, NKV*HS), q and k after RoPE
    void *att;                // (n, NH*HS) attention output before o_proj
    void *x1;                 // (S, C) residual after attention
    void *h2;                 // (S, C) normed x1; m->dh2 without gate/up adapters; (rt, C)
                              // one tile's rows with MLP tiles (rt = act_tile_rows)
    void *g, *u, *a;          // (S, F) gate, up, silu(gate)*up; (rt, F) with MLP tiles
    float *lse;               // (NH, n)
    float *rstd1, *rstd2;     // (S)
    float *t[JOB_MAX_TARGETS];  // (S, R) LoRA A outputs, NULL where no adapter
    // The attention backward's set, live only in this layer's backward from the attention
    // branch on: carved from g, u, a (dead once the MLP backward is done) when it fits there,
    // else the same buffers of the gradient block for every layer.
    void *datt, *dq;          // (n, NH*HS)
    void *dk, *dv;            // (n, NKV*HS)
    void *attn_ws;            // the backend's attention_backward workspace for S rows
    // LeMo's scoring set, live only in the layer's first forward between its input norm and
    // the selection: in g, u, a when it fits there (score_in_mlp), else one set for all layers
    void *sq, *sk;            // (S, NH*HS), (S, NKV*HS) pre-RoPE q, k of every row (exact scores)
    float *st;                // (S, R) the LoRA A outputs of those projections
    float *score;             // (S / block) block scores
    void *score_ws, *select_ws;  // the backend's lemo_block_scores and lemo_select_blocks workspaces
    float *pred_ws;           // predictor scores: the predicted block matrix (nb*(nb+1)/2, padded to
                              // 64 floats), then the forward's acts (lemo_predictor_acts)
} LayerActs;

/* How model_step picks each layer's kept rows. LEMO_SEL_SCHEDULE: the model's LemoSpec
 * (dense where it keeps everything), scored inside the step; seed feeds the random scores.
 * LEMO_SEL_GIVEN: kept[l] (NULL: dense) holds n_kept[l] sorted distinct rows in [0, S), at
 * most the rows the plan gave layer l (model->rows[l]; all S rows without a schedule); a
 * list of all rows takes the kept path and gives the dense result bit for bit. */
enum { LEMO_SEL_SCHEDULE = 0, LEMO_SEL_GIVEN = 1 };
typedef struct {
    int mode;
    uint64_t seed;
    const int *const *kept;
    const int *n_kept;
} LemoSelect;

typedef struct {
    const Backend *be;
    ModelConfig cfg;
    int S_max;                // the most rows one forward handles
    ActPolicy act;            // each layer's activation policy (act.n == L)
    int tiles;                // the MLP's row tiles (act_tiles): 1, or g, u, a hold one tile

    void *wte, *lm_head, *final_norm;  // (V, C), (V, C) (== wte when tied), (C)
    LayerWeights *layers;     // (L) host array of device pointers

    LoraSpec lora;
    float lora_scale;         // alpha / r
    LoraSlot *slots;          // (L * JOB_MAX_TARGETS)
    size_t n_lora;            // LoRA parameter count
    float *lora_params, *lora_grads, *adam_m, *adam_v;  // (n_lora) each, fp32 on the device

    float *inv_freq;          // (HS/2) fp32 on the device
    float mscale;
    int *iota;                // (S_max) 0..S_max-1, positions of a dense layer
    int *tok_in, *tok_tgt;    // (S_max) this forward's inputs and targets
    int *kept;                // (L, S_max) per-layer kept indices
    LemoSpec lemo;            // the token-elimination schedule (lemo.on == 0: dense)
    int *rows;                // (L) host: the rows each layer's attention buffers hold (S_max: dense)
    int *n_kept;              // (L) host: the rows each layer attended over in the last step
    long n_correct;           // counted targets of the last step whose argmax logit was the
                              // target (the token accuracy's numerator, from the fused loss)

    void *resid;              // layer inputs (checkpoints) and the final residual, (S, C) each:
                              // one per layer that keeps its input on the device, then the
                              // two slots of offloaded inputs (layer j's in slot j % 2)
    void **xin;               // (L+1) where layer j's input lives (j == L: the final residual)
    void *host_resid;         // pinned: the offloaded inputs of layers 0..L-2, then the attention
                              // outputs and lse of ACT_OFFLOAD_ATT layers 0..L-2
    size_t *host_off;         // (2L) byte offsets in host_resid: layer j's input, its attention
    void *att_buf[2];         // with ACT_OFFLOAD_ATT layers: device pairs the shared activation
    float *lse_buf[2];        // buffers use in turn (0 is the shared set's own)
    LayerActs *acts;          // n_acts: one per kept layer (ACT_KEEP), then the shared set
    int n_acts;
    LayerActs **layer_acts;   // (L) the activation buffers layer l uses
    LayerActs *eval_acts;     // (n_acts) dense views of kept sparse layers' own sets for
                              // forward-only steps (h NULL where there is none)
    void *dx;                 // (S, C) dL/d(residual) flowing down the layers
    void *dh2;                // (S, C) dL/dh2, then dL/dh (the attention branch's input grad)
    void *dok;                // (S, C) o_proj output in forward; gathered dx rows, then dL/dhk
    void *da;                 // (S, F) when down_proj has an adapter; else a layer's `a` serves
    void *xf, *dxf;           // (S, C) final norm output and its gradient: aliases of dok, dh2.
                              // xf holds the final norm output after a forward-only step
    float *rstdf;             // (S)

    // Per-layer timing for benchmarks: when the caller sets profile_clock (seconds), each step
    // synchronizes around every layer and adds its forward, recompute and backward seconds to
    // profile (L, 3) and the selection's (scores and top-k, inside the forward) to
    // profile_select (L). NULL (the default): no synchronization, nothing recorded.
    double (*profile_clock)(void);
    double *profile, *profile_select;

    // lemo prepare: when set, every step hands each layer's normed input h (S, C), on the
    // device, to probe right after the layer's input norm (valid during the call only)
    void (*probe)(void *ctx, int l, const void *h, int S);
    void *probe_ctx;

    void *blocks[7];          // the per-category allocations, freed by model_free
    MemPlan plan;
} Model;

/* Sizes each memory category would need; act = the activation policy (a per-layer one must
 * match c->n_layers: act_policy_check); lemo = the token-elimination schedule (NULL: dense);
 * bs = the backend's sizes (the estimate passes CUDA's without loading that backend). */
void model_plan(const ModelConfig *c, int S, const LoraSpec *lora, const ActPolicy *act, const LemoSpec *lemo,
                const BackendSizes *bs, MemPlan *p);

/* Loads config.json + safetensors from dir onto the backend and allocates everything for
 * sequences up to S_max, under activation policy `act` and LeMo schedule `lemo` (NULL:
 * dense). rope_override (may be NULL) replaces the model's rope scaling.
 * LoRA parameters start as PEFT initialises them (A uniform(+-1/sqrt(K)) from seed, B = 0). */
Model *model_load(const Backend *be, const char *dir, const RopeScaling *rope_override, int S_max,
                  const LoraSpec *lora, const ActPolicy *act, const LemoSpec *lemo, uint64_t seed, Err *e);
void model_free(Model *m);

/* One window: inputs and targets (S) on the host (target -1: no loss). sel picks each
 * layer's kept rows (NULL: every layer dense, e.g. an evaluation); a schedule needs S to be
 * a whole number of blocks, or the window runs dense. Afterwards m->n_kept[l] says how many
 * rows layer l attended over and m->kept + l * m->S_max holds them (on the device).
 * With backward, LoRA gradients ACCUMULATE into lora_grads scaled by grad_scale (pass
 * 1/number of counted targets of the whole optimizer step for a mean loss).
 * train != 0 turns LoRA dropout on, with masks derived from dropout_seed.
 * Returns the summed loss over counted targets and their number in *count. */
double model_step(Model *m, const int32_t *inputs, const int32_t *targets, int S, const LemoSelect *sel,
                  int backward, int train, float grad_scale, uint64_t dropout_seed, long *count);

void model_zero_grads(Model *m);

/* Bytes of layer l's activations when it keeps them (ACT_KEEP) at S_max rows: its kept rows'
 * attention buffers, every row's MLP (one tile with MLP tiles). */
size_t model_layer_act_bytes(const Model *m, int l);

/* LoRA tensors in PEFT naming (base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight). */
int model_lora_name(const Model *m, int layer, int target, int is_b, char *buf, size_t cap);

#endif
