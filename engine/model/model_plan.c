/* model_plan.c: the memory plan. A layer's buffers and the sets that share its dead MLP buffers
 * are declared in the tables below (rows, width, dtype, the condition each exists under, the
 * span each set holds data); the plan's byte counts and model_load's carve-up both walk them.
 * The window-level buffers (layer inputs, the gradient block, the loss and token buffers) are
 * counted in model_plan, with their sharing said in model_internal.h. */
#include <stddef.h>
#include <string.h>

#include "model_internal.h"

#define BUF(f, r, w, fp, when, t) {#f, offsetof(LayerActs, f), r, w, fp, when, t}

/* One layer's activations, carve order: g, u, a back to back are the MLP region. */
static const BufSpec layer_bufs[] = {
    BUF(h, ROWS_ALL, W_C, 0, IF_ALWAYS, 0),       // input norm -> q, k, v LoRA grads in the backward
    BUF(q, ROWS_KEPT, W_Q, 0, IF_ALWAYS, 0),      // after RoPE
    BUF(k, ROWS_KEPT, W_KV, 0, IF_ALWAYS, 0),
    BUF(v, ROWS_KEPT, W_KV, 0, IF_ALWAYS, 0),
    BUF(att, ROWS_KEPT, W_Q, 0, IF_ALWAYS, 0),    // attention output, o_proj's input
    BUF(x1, ROWS_ALL, W_C, 0, IF_ALWAYS, 0),      // residual after attention
    BUF(h2, ROWS_H2, W_C, 0, IF_H2, 0),           // else m->dh2 (model_load)
    BUF(g, ROWS_TILE, W_F, 0, IF_ALWAYS, 0),
    BUF(u, ROWS_TILE, W_F, 0, IF_ALWAYS, 0),
    BUF(a, ROWS_TILE, W_F, 0, IF_ALWAYS, 0),
    BUF(lse, ROWS_KEPT, W_NH, 1, IF_ALWAYS, 0),
    BUF(rstd1, ROWS_ALL, W_ONE, 1, IF_ALWAYS, 0),
    BUF(rstd2, ROWS_ALL, W_ONE, 1, IF_ALWAYS, 0),
    BUF(t[TARGET_Q], ROWS_KEPT, W_R, 1, IF_ADAPTER, TARGET_Q),  // LoRA A outputs
    BUF(t[TARGET_K], ROWS_KEPT, W_R, 1, IF_ADAPTER, TARGET_K),
    BUF(t[TARGET_V], ROWS_KEPT, W_R, 1, IF_ADAPTER, TARGET_V),
    BUF(t[TARGET_O], ROWS_KEPT, W_R, 1, IF_ADAPTER, TARGET_O),
    BUF(t[TARGET_GATE], ROWS_ALL, W_R, 1, IF_ADAPTER, TARGET_GATE),
    BUF(t[TARGET_UP], ROWS_ALL, W_R, 1, IF_ADAPTER, TARGET_UP),
    BUF(t[TARGET_DOWN], ROWS_ALL, W_R, 1, IF_ADAPTER, TARGET_DOWN),
};
/* The attention backward's set: gradients and the backend's workspace for S rows. */
static const BufSpec attn_bufs[] = {
    BUF(datt, ROWS_ALL, W_Q, 0, IF_ALWAYS, 0), BUF(dq, ROWS_ALL, W_Q, 0, IF_ALWAYS, 0),
    BUF(dk, ROWS_ALL, W_KV, 0, IF_ALWAYS, 0),  BUF(dv, ROWS_ALL, W_KV, 0, IF_ALWAYS, 0),
    BUF(attn_ws, ROWS_WS, W_WS_ATTN, 0, IF_ALWAYS, 0),
};
/* LeMo's scoring set: q, k of every row (exact scores), the block scores, the workspaces (the
 * predictors' too). */
static const BufSpec score_bufs[] = {
    BUF(sq, ROWS_ALL, W_Q, 0, IF_EXACT, 0),          BUF(sk, ROWS_ALL, W_KV, 0, IF_EXACT, 0),
    BUF(st, ROWS_ALL, W_R, 1, IF_EXACT_QK, 0),       BUF(score, ROWS_BLOCKS, W_ONE, 1, IF_LEMO, 0),
    BUF(score_ws, ROWS_WS, W_WS_SCORES, 0, IF_EXACT, 0), BUF(select_ws, ROWS_WS, W_WS_SELECT, 0, IF_LEMO, 0),
    BUF(pred_ws, ROWS_WS, W_WS_PRED, 1, IF_PREDICTOR, 0),
};
/* A dense view of a kept sparse layer's attention buffers, for evaluations. */
static const BufSpec eval_bufs[] = {
    BUF(q, ROWS_ALL, W_Q, 0, IF_ALWAYS, 0),   BUF(k, ROWS_ALL, W_KV, 0, IF_ALWAYS, 0),
    BUF(v, ROWS_ALL, W_KV, 0, IF_ALWAYS, 0),  BUF(att, ROWS_ALL, W_Q, 0, IF_ALWAYS, 0),
    BUF(lse, ROWS_ALL, W_NH, 1, IF_ALWAYS, 0),
    BUF(t[TARGET_Q], ROWS_ALL, W_R, 1, IF_ADAPTER, TARGET_Q), BUF(t[TARGET_K], ROWS_ALL, W_R, 1, IF_ADAPTER, TARGET_K),
    BUF(t[TARGET_V], ROWS_ALL, W_R, 1, IF_ADAPTER, TARGET_V), BUF(t[TARGET_O], ROWS_ALL, W_R, 1, IF_ADAPTER, TARGET_O),
};
/* The window's buffers (fields of Model). */
#define WBUF(f, r, w, fp, when, t) {#f, offsetof(Model, f), r, w, fp, when, t}
static const BufSpec grads_bufs[] = {
    WBUF(dx, ROWS_ALL, W_C, 0, IF_ALWAYS, 0),    // dL/d(residual), down the layers
    WBUF(dh2, ROWS_ALL, W_C, 0, IF_ALWAYS, 0),   // dL/dh2, then dL/dh; hk, h2, dxf in their spans
    WBUF(dok, ROWS_ALL, W_C, 0, IF_ALWAYS, 0),   // o_proj's output; gathered dx rows, dL/dhk; xf
    WBUF(da, ROWS_TILE, W_F, 0, IF_ADAPTER, TARGET_DOWN),  // else the layer's own `a`
};
static const BufSpec loss_bufs[] = {WBUF(rstdf, ROWS_ALL, W_ONE, 1, IF_ALWAYS, 0)};
static const BufSpec token_bufs[] = {
    WBUF(tok_in, ROWS_ALL, W_ONE, 1, IF_ALWAYS, 0), WBUF(tok_tgt, ROWS_ALL, W_ONE, 1, IF_ALWAYS, 0),
    WBUF(iota, ROWS_ALL, W_ONE, 1, IF_ALWAYS, 0),   WBUF(kept, ROWS_ALL, W_L, 1, IF_ALWAYS, 0),
    WBUF(inv_freq, ROWS_ONE, W_HS2, 1, IF_ALWAYS, 0),
};
#define N_OF(a) (int)(sizeof a / sizeof a[0])
const SetSpec model_sets[SET_N] = {
    {"layer", layer_bufs, N_OF(layer_bufs), "a layer's forward to its backward (the shared set: each layer's turn)"},
    {"attention backward", attn_bufs, N_OF(attn_bufs),
     "the layer's backward from the attention branch on, after the MLP's backward has read g, u, a"},
    {"LeMo scoring", score_bufs, N_OF(score_bufs),
     "the layer's first forward from its input norm to the selection, before the MLP writes g"},
    {"dense view", eval_bufs, N_OF(eval_bufs),
     "a forward-only step's q, k, v projections to o_proj, before the MLP writes g"},
    {"gradients", grads_bufs, N_OF(grads_bufs), "the whole step (each buffer's turns in model_internal.h)"},
    {"loss", loss_bufs, N_OF(loss_bufs), "the final norm's forward to its backward"},
    {"tokens", token_bufs, N_OF(token_bufs), "the whole step"},
};

static int buf_exists(const BufSpec *b, const BufCtx *x) {
    int lemo = x->z && x->z->on && x->S % x->z->block == 0;
    int exact = lemo && x->z->scores == LEMO_SCORES_EXACT;
    switch (b->when) {
    case IF_ALWAYS: return 1;
    case IF_H2: return act_tiles(x->act) > 1 || keeps_h2(x->l);
    case IF_ADAPTER: return x->l->targets[b->target];
    case IF_LEMO: return lemo;
    case IF_EXACT: return exact;
    case IF_EXACT_QK: return exact && (x->l->targets[TARGET_Q] || x->l->targets[TARGET_K]);
    case IF_PREDICTOR: return lemo && x->z->scores == LEMO_SCORES_PREDICTOR;
    }
    return 0;
}

static size_t buf_bytes(const BufSpec *b, const BufCtx *x) {
    if (!buf_exists(b, x)) return 0;
    const ModelConfig *c = x->c;
    size_t S = x->S;
    switch (b->width) {  // the workspaces: the backend's own sizes
    case W_WS_ATTN: return x->bs->attention_bwd_ws_bytes((int)S, c->n_heads, c->n_kv_heads, c->head_dim);
    case W_WS_SCORES: return x->bs->lemo_scores_ws_bytes((int)S, x->z->block);
    case W_WS_SELECT: return x->bs->lemo_select_ws_bytes((int)S / x->z->block);
    case W_WS_PRED: return 4 * model_pred_ws_floats(c, x->z, (int)S);
    default: break;
    }
    size_t rows = b->rows == ROWS_ALL      ? S
                  : b->rows == ROWS_KEPT   ? x->n
                  : b->rows == ROWS_TILE   ? mlp_rows(x->act, S)
                  : b->rows == ROWS_H2     ? (act_tiles(x->act) > 1 ? mlp_rows(x->act, S) : S)
                  : b->rows == ROWS_BLOCKS ? S / x->z->block
                  : b->rows == ROWS_ONE    ? 1
                                           : 0;
    size_t width = b->width == W_C    ? (size_t)c->hidden
                   : b->width == W_Q  ? (size_t)c->n_heads * c->head_dim
                   : b->width == W_KV ? (size_t)c->n_kv_heads * c->head_dim
                   : b->width == W_F  ? (size_t)c->ffn
                   : b->width == W_NH ? (size_t)c->n_heads
                   : b->width == W_R  ? (size_t)x->l->r
                   : b->width == W_L  ? (size_t)c->n_layers
                   : b->width == W_HS2 ? (size_t)c->head_dim / 2
                                      : 1;
    return rows * width * (b->fp32 ? 4 : x->bs->act_size);
}

int model_set_bytes(int set, const BufCtx *x, size_t b[SET_MAX_BUFS]) {
    const SetSpec *s = &model_sets[set];
    for (int i = 0; i < s->n; i++) b[i] = buf_bytes(&s->bufs[i], x);
    return s->n;
}

size_t model_set_total(int set, const BufCtx *x) {
    size_t b[SET_MAX_BUFS], t = 0;
    int n = model_set_bytes(set, x, b);
    for (int i = 0; i < n; i++) t += b[i];
    return t;
}

size_t model_mlp_region(const BufCtx *x) { return 3 * x->bs->act_size * mlp_rows(x->act, x->S) * x->c->ffn; }

int model_set_fits_mlp(int set, const BufCtx *x) {
    size_t b[SET_MAX_BUFS], end = 0;
    int n = model_set_bytes(set, x, b);
    for (int i = 0; i < n; i++) end = b[i] ? align256(end) + b[i] : end;
    return end <= model_mlp_region(x);
}

size_t model_att_slot_bytes(const ModelConfig *c, size_t S, size_t as) {
    return align256(as * S * c->n_heads * c->head_dim) + align256(4 * S * c->n_heads);
}

void model_target_dims(const ModelConfig *c, int t, int *K, int *N) {
    int C = c->hidden, Q = c->n_heads * c->head_dim, KV = c->n_kv_heads * c->head_dim, F = c->ffn;
    static const int in_is[NT] = {0, 0, 0, 1, 0, 0, 2};  // 0: C, 1: Q, 2: F
    int ins[3] = {C, Q, F};
    int outs[NT] = {Q, KV, KV, C, F, F, C};
    *K = ins[in_is[t]];
    *N = outs[t];
}

static size_t lora_count(const ModelConfig *c, const LoraSpec *l) {
    size_t n = 0;
    for (int t = 0; t < NT; t++) {
        if (!l->targets[t]) continue;
        int K, N;
        model_target_dims(c, t, &K, &N);
        n += (size_t)l->r * (K + N);
    }
    return n * c->n_layers;
}

static size_t weight_count(const ModelConfig *c) {
    size_t C = c->hidden, Q = (size_t)c->n_heads * c->head_dim, KV = (size_t)c->n_kv_heads * c->head_dim;
    size_t F = c->ffn, V = c->vocab;
    size_t layer = 2 * C + Q * C + 2 * KV * C + C * Q + 3 * F * C + (c->qkv_bias ? Q + 2 * KV : 0) +
                   (c->o_bias ? C : 0);
    return V * C * (c->tie_embeddings ? 1 : 2) + C + layer * c->n_layers;
}

/* Counts of the policy's buffers: device inputs of their own, whether the offloaded pair
 * exists, host inputs and attention outputs, kept layers, whether any layer offloads its
 * attention output (then the shared activations rotate through a device pair), and whether
 * the shared set exists: for the layers that are not kept, and, when a kept layer's attention
 * buffers hold only its kept rows and its dense view does not fit its MLP buffers, for dense
 * forward-only steps (evaluation), which then run that layer in the shared set. */
ActCounts model_act_counts(const ActPolicy *act, const LemoSpec *z, int L, int S, int eval_in_mlp) {
    ActCounts n = {0};
    int sparse_kept = 0;
    for (int j = 0; j <= L; j++) {
        if (input_in_slot(act, L, j)) n.slots = 1;
        else if (j < L || !final_in_shared(act, L)) n.dev_inputs++;
        if (j == L) break;
        n.host_inputs += input_to_host(act, L, j);
        n.host_atts += att_to_host(act, L, j);
        if (act_layer(act, j) == ACT_KEEP) n.kept++, sparse_kept |= lemo_rows(z, j, S) < S;
        if (act_layer(act, j) == ACT_OFFLOAD_ATT) n.att_pair = 1;
    }
    n.shared = n.kept < L || (sparse_kept && !eval_in_mlp);
    return n;
}

void model_plan(const ModelConfig *c, int Si, const LoraSpec *l, const ActPolicy *act, const LemoSpec *z,
                const BackendSizes *bs, MemPlan *p) {
    size_t S = Si, C = c->hidden, as = bs->act_size;
    int L = c->n_layers;
    BufCtx x = {c, l, act, z, bs, S, S};
    memset(p, 0, sizeof *p);
    p->weights = weight_count(c) * as;
    p->lora = lora_count(c, l) * 4 * 4;
    ActCounts n = model_act_counts(act, z, L, Si, model_set_fits_mlp(SET_EVAL, &x));
    p->checkpoints = (size_t)(n.dev_inputs + 2 * n.slots) * S * C * as;
    p->host = (size_t)n.host_inputs * S * C * as;
    // a kept layer's own activations and an offloaded attention output hold the layer's kept
    // rows; the shared set holds S (dense layers and evaluations run in it)
    for (int j = 0; j < L; j++) {
        BufCtx xj = x;
        xj.n = (size_t)lemo_rows(z, j, Si);
        if (att_to_host(act, L, j)) p->host += model_att_slot_bytes(c, xj.n, as);
        if (act_layer(act, j) == ACT_KEEP) p->activations += model_set_total(SET_LAYER, &xj);
    }
    if (n.shared) p->activations += model_set_total(SET_LAYER, &x);
    if (n.att_pair) p->activations += model_att_slot_bytes(c, S, as);  // the pair's second buffer
    // dx, dh2, dok; (S, F) gradient scratch only for a down_proj adapter: otherwise dL/da
    // goes into the layer's own `a`, and swiglu's backward runs in place (model_layer.c)
    p->grads = model_set_total(SET_GRADS, &x);
    p->attn_in_mlp = model_set_fits_mlp(SET_ATTN_BWD, &x);
    if (!p->attn_in_mlp) p->grads += model_set_total(SET_ATTN_BWD, &x);
    p->score_in_mlp = model_set_fits_mlp(SET_SCORE, &x);
    if (!p->score_in_mlp) p->grads += model_set_total(SET_SCORE, &x);
    p->loss = model_set_total(SET_LOSS, &x);  // rstdf; xf and dxf alias dok and dh2
    p->tokens = model_set_total(SET_TOKENS, &x);
    p->total = p->weights + p->lora + p->checkpoints + p->activations + p->grads + p->loss + p->tokens;
}

size_t model_layer_act_bytes(const Model *m, int l) {
    BackendSizes bs = backend_sizes(m->be);
    BufCtx x = {&m->cfg, &m->lora, &m->act, &m->lemo, &bs, (size_t)m->S_max, (size_t)m->rows[l]};
    return model_set_total(SET_LAYER, &x);
}
