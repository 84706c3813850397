/* model_internal.h: what the model's files share (model_plan.c sizes, model_load.c loads and
 * carves, model_layer.c runs one layer, model_step.c runs a window); not for other modules.
 *
 * The transformer forward and backward with LoRA, over the Backend table.
 *
 * One layer (x: residual (S, C); idx: kept rows, n of them; dense when idx is all rows):
 *   h  = rmsnorm(x);  hk = h[idx]
 *   q, k, v = hk Wq^T (+bq) (+lora), ...;  RoPE(q, k) at positions idx
 *   att = causal_attention(q, k, v);  o = att Wo^T (+lora)
 *   x1 = x;  x1[idx] += o
 *   h2 = rmsnorm(x1);  a = silu(h2 Wg^T) * (h2 Wu^T);  x' = x1 + a Wd^T   (+lora each)
 * then the final norm and the fused LM-head + cross-entropy. The backward walks the same
 * graph in reverse; base weights are frozen so only input gradients and LoRA gradients
 * are formed. With checkpointing the layer's forward is recomputed from its saved input
 * right before its backward; it sees the same kept list and the same dropout masks (they
 * are a pure function of a seed), so the recomputation is exact. With the layer inputs
 * offloaded to host memory (ACT_OFFLOAD) the device holds two of them, used in turn: layer l
 * reads slot l % 2 and writes slot (l+1) % 2; each input is copied out to the host after the
 * layer that made it (a copy ticket per slot; a layer waits for its slot's copy before
 * overwriting it), and in backward the input of layer l-1 is copied back into the slot
 * layer l+1 has finished with while layer l recomputes and back-propagates. With
 * ACT_OFFLOAD_ATT each layer's attention output and log-sum-exp go to the host as well, from
 * two device buffers used in turn like the input slots (copy tickets 2 and 3), and come back
 * ahead of the layer's backward, whose recompute then skips the attention forward. Copies of
 * the same bytes in another order give the same numbers: offloading changes no result.
 * The policy is per layer and the layers may mix them: an offloaded input lives in slot j % 2
 * whatever its neighbours do (the final residual follows layer L-1), every other input in a
 * buffer of its own; a kept layer (ACT_KEEP) has activation buffers of its own and is not
 * recomputed, every other layer uses the one shared set, which, when any layer offloads its
 * attention output, takes the attention pair's buffer j % 2 (waiting for its copies) so that
 * a shared layer never writes a buffer whose copy is in flight. In backward layer l's inputs
 * are dead above it, so the slot (or pair buffer) layer l+1 used takes layer l-1's copy.
 *
 * Memory reuse (model_plan, model_load). A layer's activation buffers, the sets that live in
 * its dead MLP buffers and the window's gradient, loss and token buffers are declared in
 * tables (model_plan.c: rows, width, dtype, the condition for each; the span each set is
 * live): the plan's byte counts and the carve-up walk the same tables. The layer inputs
 * (checkpoints) are counted by the policy's placement (model_act_counts). Within one step the buffers below are live only over the spans
 * given, so the plan lets them share memory:
 *   - a layer's g, u, a (3 S F activations, carved contiguously) are read for the last
 *     time by the gate and up projections' backward (so is da, when it is separate); from
 *     there to the end of that layer's backward they hold the attention backward's set: datt,
 *     dq (n, Q), dk, dv (n, KV) and the backend's attention_backward workspace (on CUDA its
 *     fp32 dQ accumulator). Nothing else reads g, u, a before the layer's next forward or
 *     recompute rewrites them, and a kept layer uses its own LayerActs.
 *     When the set does not fit (F small against the attention widths) it gets its own
 *     buffers in the gradient block, shared by every layer.
 *   - dh2 (dL/dh2) is dead after the MLP's rmsnorm backward, so it then holds dL/dh; dok (the
 *     o_proj output in forward, the gathered rows of dx for o_proj's backward) is dead after
 *     o_proj's backward, so it then holds dL/dhk. The gradient block thus holds dx, dh2, dok
 *     (and da with a down_proj adapter), the buffers live across the MLP backward or the
 *     forward.
 *   - the final norm's output xf is dok and its gradient dxf is dh2: they are live from the
 *     final rmsnorm forward to the final rmsnorm backward; the last layer's forward writes
 *     dok before that, and the recompute (or backward) of layer L-1 writes dok and dh2 only
 *     after it. After a step with backward xf no longer holds the final norm output.
 *   - the final residual (the last layer's output) is read by the final rmsnorm forward and
 *     backward only; when the last layer is recomputed it lives in the shared set's h: h is
 *     dead in the last layer's forward once q, k, v are projected (before the residual is
 *     written), and the recompute of layer L-1 rewrites it only after the final rmsnorm
 *     backward.
 *   - the kept rows of a layer's normed input, hk (n, C), feed the q, k, v projections of its
 *     forward and their LoRA gradients in its backward. They are gathered from h into dh2
 *     both times: in the forward dh2 is dead until the MLP (h2 or the recompute's unused
 *     output), in the backward until dL/dh is formed after the q, k, v backward. A dense
 *     layer reads h itself.
 *   - without gate_proj and up_proj adapters a layer's MLP norm output h2 is read only by
 *     the gate and up projections of its forward (or recompute), so it is written into dh2,
 *     dead over that span: dh2 takes dL/dh2 only in the backward, after the recompute, and
 *     the recompute's unused output (with a down_proj adapter) overwrites h2 only after the
 *     gate and up projections have read it.
 * Placing a buffer elsewhere changes no arithmetic: every result is the same bit for bit. */
#ifndef LEMO_MODEL_INTERNAL_H
#define LEMO_MODEL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "hash.h"
#include "model.h"

#define NT JOB_MAX_TARGETS

/* Splitmix64 (hash.h): the seeded stream for LoRA A initialisation and the dropout seeds. */
static inline uint64_t splitmix(uint64_t *s) { return hash_splitmix(s); }

static inline size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

/* In and out widths of the linear layer that target t adapts. */
void model_target_dims(const ModelConfig *c, int t, int *K, int *N);

/* Whether a layer keeps its MLP norm output h2 for the backward without MLP tiles: only
 * gate_proj and up_proj adapters read it there (their A gradients); otherwise it lives in dh2
 * (this header's comment). */
static inline int keeps_h2(const LoraSpec *l) { return l->targets[TARGET_GATE] || l->targets[TARGET_UP]; }
/* Rows of the MLP's g, u, a (and h2 when tiled): S, or one tile (act_tile_rows). */
static inline size_t mlp_rows(const ActPolicy *act, size_t S) { return (size_t)act_tile_rows(act, (int)S); }

/* Where a layer's input lives under the policy (j == L: the final residual, which follows
 * layer L-1): in the pair of offloaded slots (slot j % 2), or in a device buffer of its own.
 * When layer L-1 is recomputed the final residual needs neither: it lives in the shared
 * activation set's h (final_in_shared; this header's comment says why that is safe). */
static inline int input_in_slot(const ActPolicy *act, int L, int j) {
    return act_offloads(act_layer(act, j < L ? j : L - 1));
}
static inline int final_in_shared(const ActPolicy *act, int L) { return act_layer(act, L - 1) == ACT_RECOMPUTE; }
/* Whether layer j's input goes to the host after its forward, and its attention output and
 * lse: not for the last layer, whose backward comes right after its forward. */
static inline int input_to_host(const ActPolicy *act, int L, int j) {
    return j <= L - 2 && act_offloads(act_layer(act, j));
}
static inline int att_to_host(const ActPolicy *act, int L, int j) {
    return j <= L - 2 && act_layer(act, j) == ACT_OFFLOAD_ATT;
}

/* --- the declared buffers (model_plan.c) --- */

/* What sizes a buffer: the rows it holds of an S-row window whose attention runs over n of
 * them, and its row width; ROWS_WS: a backend workspace, its bytes from the backend. */
typedef enum { ROWS_ALL, ROWS_KEPT, ROWS_TILE, ROWS_H2, ROWS_BLOCKS, ROWS_ONE, ROWS_WS } BufRows;
typedef enum { W_C, W_Q, W_KV, W_F, W_NH, W_ONE, W_R, W_L, W_HS2, W_WS_ATTN, W_WS_SCORES, W_WS_SELECT, W_WS_PRED } BufWidth;
/* When it exists: always; h2 of its own (MLP tiles, or a gate/up adapter); an adapter on
 * target `target`; a LeMo schedule; exact scores; exact scores with a q or k adapter; predictor
 * scores. */
typedef enum { IF_ALWAYS, IF_H2, IF_ADAPTER, IF_LEMO, IF_EXACT, IF_EXACT_QK, IF_PREDICTOR } BufIf;
/* Floats of pred_ws for S rows (model.h's LayerActs says the layout). */
static inline size_t model_pred_ws_floats(const ModelConfig *c, const LemoSpec *z, int S) {
    size_t tri = (lemo_tri_size(S / z->block) + 63) / 64 * 64;
    return tri + lemo_predictor_acts(S, c->hidden, c->head_dim, z->block, z->pred_h1, z->pred_h2);
}
typedef struct {
    const char *name;
    size_t field;             // offsetof(LayerActs, pointer), or of Model for the window's sets
    BufRows rows;
    BufWidth width;
    int fp32;                 // 1: fp32 or int32 (4 bytes); 0: the backend's activation dtype
    BufIf when;
    int target;               // IF_ADAPTER's target
} BufSpec;
/* A set of buffers carved together: the layer's own activations (SET_LAYER, g, u, a adjacent:
 * the MLP region), and three sets that live while that region is dead and so go there when
 * they fit (else once, in the gradient block, for every layer); then the window's own buffers
 * in Model, one set per allocation: the gradient block, the loss's, the tokens'. */
enum { SET_LAYER, SET_ATTN_BWD, SET_SCORE, SET_EVAL, SET_GRADS, SET_LOSS, SET_TOKENS, SET_N };
typedef struct {
    const char *name;
    const BufSpec *bufs;
    int n;
    const char *live;         // the span it holds data, which the sharing rests on
} SetSpec;
extern const SetSpec model_sets[SET_N];
#define SET_MAX_BUFS 24

/* What the sizes depend on. */
typedef struct {
    const ModelConfig *c;
    const LoraSpec *l;
    const ActPolicy *act;
    const LemoSpec *z;        // may be NULL: dense
    const BackendSizes *bs;
    size_t S, n;              // the window's rows; the rows its attention keeps
} BufCtx;

/* Bytes of each buffer of set `set` (0: it does not exist), in carve order; their count. */
int model_set_bytes(int set, const BufCtx *x, size_t b[SET_MAX_BUFS]);
/* Their sum (the plan counts each piece's alignment apart, model_load's padding). */
size_t model_set_total(int set, const BufCtx *x);
/* Bytes of the MLP region (g, u, a) and whether set `set` fits it, each piece 256-aligned. */
size_t model_mlp_region(const BufCtx *x);
int model_set_fits_mlp(int set, const BufCtx *x);
/* Bytes of one layer's attention output (S, Q) and lse (NH, S), each 256-byte aligned: a
 * device buffer pair or a host slot of ACT_OFFLOAD_ATT. */
size_t model_att_slot_bytes(const ModelConfig *c, size_t S, size_t as);

/* Counts of the policy's buffers (model_plan.c says what each is). */
typedef struct { int dev_inputs, slots, host_inputs, host_atts, kept, shared, att_pair; } ActCounts;
ActCounts model_act_counts(const ActPolicy *act, const LemoSpec *z, int L, int S, int eval_in_mlp);

/* --- one layer (model_layer.c) --- */

typedef struct {
    Model *m;
    int l, train;
    uint64_t seed;            // the window's dropout seed
    int select;               // > 0: this forward picks the layer's kept rows, `select` blocks
    uint64_t lemo_seed;       // the window's seed of the random scores
} LayerCtx;

/* Layer l forward: x (S, C) -> out (S, C); idx (n) kept rows on the device (m->iota: dense).
 * xout NULL: the recompute right before the layer's backward (model_layer.c says what it
 * skips). */
void model_layer_forward(LayerCtx *x, LayerActs *a, const void *xin, void *xout, const int *idx, int n, int S);
/* Layer l backward: m->dx holds dL/d(layer output) on entry and dL/d(layer input) on exit. */
void model_layer_backward(LayerCtx *x, LayerActs *a, const void *xin, const int *idx, int n, int S);
/* With a profile clock (model.h): wait for the device, then the caller's clock; else 0. */
double model_profile_mark(Model *m);

#endif
