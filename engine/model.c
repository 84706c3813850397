/* model.c: the transformer forward and backward with LoRA, over the Backend table.
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
 * Memory reuse (model_plan, model_load). Within one step the buffers below are live only
 * over the spans given, so the plan lets them share memory:
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
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

#define NT JOB_MAX_TARGETS

/* Splitmix64: the seeded stream for LoRA A initialisation (deterministic everywhere). */
static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* In and out widths of the linear layer that target t adapts. */
static void target_dims(const ModelConfig *c, int t, int *K, int *N) {
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
        target_dims(c, t, &K, &N);
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

/* Bytes of one LayerActs for S rows. */
/* Whether a layer keeps its MLP norm output h2 for the backward: only gate_proj and up_proj
 * adapters read it there (their A gradients); otherwise it lives in dh2 (model.c's header). */
static int keeps_h2(const LoraSpec *l) { return l->targets[TARGET_GATE] || l->targets[TARGET_UP]; }

/* Rows of the MLP's g, u, a (and h2 when tiled): S, or one tile (act_tile_rows). */
static size_t mlp_rows(const ActPolicy *act, size_t S) { return (size_t)act_tile_rows(act, (int)S); }
/* Bytes of a layer's g, u, a region: the place of the sets that live while they are dead. */
static size_t mlp_region(const ModelConfig *c, const ActPolicy *act, size_t S, size_t as) {
    return 3 * as * mlp_rows(act, S) * c->ffn;
}

/* Bytes of one LayerActs for S rows whose attention runs over n of them (n == S: dense). With
 * MLP tiles h2 is one tile's rows of its own (recomputed per tile in the backward). */
static size_t acts_bytes(const ModelConfig *c, size_t S, size_t n, const LoraSpec *l, const ActPolicy *act,
                         size_t as) {
    size_t C = c->hidden, Q = (size_t)c->n_heads * c->head_dim, KV = (size_t)c->n_kv_heads * c->head_dim;
    size_t F = c->ffn, lt = 0, rt = mlp_rows(act, S);
    size_t h2 = act_tiles(act) > 1 ? rt * C : keeps_h2(l) ? S * C : 0;
    for (int t = 0; t < NT; t++) lt += l->targets[t] ? (t <= TARGET_O ? n : S) * l->r * 4 : 0;
    return as * (S * C * 2 + h2 + n * Q * 2 + n * KV * 2 + rt * F * 3) + 4 * ((size_t)c->n_heads * n + 2 * S) + lt;
}

static size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

/* Bytes of the attention backward's set for S rows, in carve order: datt, dq (S, Q), dk,
 * dv (S, KV) and the backend's workspace. */
#define ATTN_SET 5
static void attn_set_bytes(const ModelConfig *c, int S, size_t as, size_t (*ws)(int, int, int, int),
                           size_t b[ATTN_SET]) {
    size_t Q = (size_t)c->n_heads * c->head_dim, KV = (size_t)c->n_kv_heads * c->head_dim;
    b[0] = b[1] = as * S * Q;
    b[2] = b[3] = as * S * KV;
    b[4] = ws(S, c->n_heads, c->n_kv_heads, c->head_dim);
}

/* Bytes of LeMo's scoring set for S rows, in carve order: sq (S, Q), sk (S, KV), st (S, R),
 * the block scores (nb) and the backend's scoring and selection workspaces; all 0 without a
 * schedule, and only the scores and the selection's workspace with random scores. */
#define SCORE_SET 6
static void score_set_bytes(const ModelConfig *c, int S, const LoraSpec *l, const LemoSpec *z,
                            const BackendSizes *bs, size_t b[SCORE_SET]) {
    memset(b, 0, sizeof(size_t) * SCORE_SET);
    if (!z || !z->on || S % z->block) return;
    size_t Q = (size_t)c->n_heads * c->head_dim, KV = (size_t)c->n_kv_heads * c->head_dim;
    int nb = S / z->block;
    if (z->scores == LEMO_SCORES_EXACT) {
        b[0] = bs->act_size * S * Q;
        b[1] = bs->act_size * S * KV;
        b[2] = l->targets[TARGET_Q] || l->targets[TARGET_K] ? 4 * (size_t)S * l->r : 0;
        b[4] = bs->lemo_scores_ws_bytes(S, z->block);
    }
    b[3] = 4 * (size_t)nb;
    b[5] = bs->lemo_select_ws_bytes(nb);
}

/* Whether a set of n pieces fits a layer's g, u, a region of `region` bytes from g's
 * 256-aligned start, each piece starting on a 256-byte boundary as carve places it. */
static int set_fits_mlp(size_t region, const size_t *b, int n) {
    size_t end = 0;
    for (int i = 0; i < n; i++) end = align256(end) + b[i];
    return end <= region;
}
static size_t set_total(const size_t *b, int n) {
    size_t t = 0;
    for (int i = 0; i < n; i++) t += b[i];
    return t;
}

/* Bytes of one layer's attention output (S, Q) and lse (NH, S), each 256-byte aligned: a
 * device buffer pair or a host slot of ACT_OFFLOAD_ATT. */
static size_t att_slot_bytes(const ModelConfig *c, size_t S, size_t as) {
    return align256(as * S * c->n_heads * c->head_dim) + align256(4 * S * c->n_heads);
}

/* Where a layer's input lives under the policy (j == L: the final residual, which follows
 * layer L-1): in the pair of offloaded slots (slot j % 2), or in a device buffer of its own.
 * When layer L-1 is recomputed the final residual needs neither: it lives in the shared
 * activation set's h (final_in_shared; model.c's header says why that is safe). */
static int input_in_slot(const ActPolicy *act, int L, int j) { return act_offloads(act_layer(act, j < L ? j : L - 1)); }
static int final_in_shared(const ActPolicy *act, int L) { return act_layer(act, L - 1) == ACT_RECOMPUTE; }
/* Whether layer j's input goes to the host after its forward, and its attention output and
 * lse: not for the last layer, whose backward comes right after its forward. */
static int input_to_host(const ActPolicy *act, int L, int j) { return j <= L - 2 && act_offloads(act_layer(act, j)); }
static int att_to_host(const ActPolicy *act, int L, int j) { return j <= L - 2 && act_layer(act, j) == ACT_OFFLOAD_ATT; }

/* Bytes of a dense layer's attention buffers for S rows, in carve order: q (S, Q), k, v
 * (S, KV), att (S, Q), lse (NH, S) and the LoRA A outputs of q, k, v, o (S, R). A dense
 * forward-only step (an evaluation) of a kept layer whose own buffers hold only its kept rows
 * carves them from its g, u, a: they are dead once o_proj has read att, before the MLP
 * writes g. */
#define EVAL_SET 9
static void eval_set_bytes(const ModelConfig *c, size_t S, const LoraSpec *l, size_t as, size_t b[EVAL_SET]) {
    size_t Q = (size_t)c->n_heads * c->head_dim, KV = (size_t)c->n_kv_heads * c->head_dim;
    size_t v[EVAL_SET] = {as * S * Q, as * S * KV, as * S * KV, as * S * Q, 4 * c->n_heads * S};
    for (int t = 0; t <= TARGET_O; t++) v[5 + t] = l->targets[t] ? 4 * S * l->r : 0;
    memcpy(b, v, sizeof v);
}

/* Counts of the policy's buffers: device inputs of their own, whether the offloaded pair
 * exists, host inputs and attention outputs, kept layers, whether any layer offloads its
 * attention output (then the shared activations rotate through a device pair), and whether
 * the shared set exists: for the layers that are not kept, and, when a kept layer's attention
 * buffers hold only its kept rows and a dense attention set does not fit its MLP buffers,
 * for dense forward-only steps (evaluation), which then run that layer in the shared set. */
typedef struct { int dev_inputs, slots, host_inputs, host_atts, kept, shared, att_pair; } ActCounts;
static ActCounts act_counts(const ActPolicy *act, const LemoSpec *z, int L, int S, int eval_in_mlp) {
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
    size_t S = Si, C = c->hidden, F = c->ffn, as = bs->act_size;
    int L = c->n_layers;
    memset(p, 0, sizeof *p);
    p->weights = weight_count(c) * as;
    p->lora = lora_count(c, l) * 4 * 4;
    size_t ev[EVAL_SET], region = mlp_region(c, act, S, as);
    eval_set_bytes(c, S, l, as, ev);
    ActCounts n = act_counts(act, z, L, Si, set_fits_mlp(region, ev, EVAL_SET));
    p->checkpoints = (size_t)(n.dev_inputs + 2 * n.slots) * S * C * as;
    p->host = (size_t)n.host_inputs * S * C * as;
    // a kept layer's own activations and an offloaded attention output hold the layer's kept
    // rows; the shared set holds S (dense layers and evaluations run in it)
    for (int j = 0; j < L; j++) {
        size_t rows = (size_t)lemo_rows(z, j, Si);
        if (att_to_host(act, L, j)) p->host += att_slot_bytes(c, rows, as);
        if (act_layer(act, j) == ACT_KEEP) p->activations += acts_bytes(c, S, rows, l, act, as);
    }
    if (n.shared) p->activations += acts_bytes(c, S, S, l, act, as);
    if (n.att_pair) p->activations += att_slot_bytes(c, S, as);  // the pair's second buffer
    // dx, dh2, dok; (S, F) gradient scratch only for a down_proj adapter: otherwise dL/da
    // goes into the layer's own `a`, and swiglu's backward runs in place (layer_backward)
    p->grads = as * (S * C * 3 + (l->targets[TARGET_DOWN] ? mlp_rows(act, S) * F : 0));
    size_t set[ATTN_SET], sc[SCORE_SET];
    attn_set_bytes(c, Si, as, bs->attention_bwd_ws_bytes, set);
    p->attn_in_mlp = set_fits_mlp(region, set, ATTN_SET);
    if (!p->attn_in_mlp) p->grads += set_total(set, ATTN_SET);
    score_set_bytes(c, Si, l, z, bs, sc);
    p->score_in_mlp = set_fits_mlp(region, sc, SCORE_SET);
    if (!p->score_in_mlp) p->grads += set_total(sc, SCORE_SET);
    p->loss = 4 * S;  // rstdf; xf and dxf alias dok and dh2
    p->tokens = 4 * (S * 3 + S * c->n_layers) + 4 * (size_t)c->head_dim / 2;
    p->total = p->weights + p->lora + p->checkpoints + p->activations + p->grads + p->loss + p->tokens;
}

/* Carves consecutive aligned pieces out of one allocation. */
typedef struct { char *base; size_t off, cap; } Carve;
static void *carve(Carve *cv, size_t bytes) {
    size_t off = (cv->off + 255) & ~(size_t)255;
    if (off + bytes > cv->cap) abort();  // sizes come from model_plan + padding: a bug, not input
    cv->off = off + bytes;
    return cv->base + off;
}
static size_t padded(size_t bytes, int pieces) { return bytes + 256 * (size_t)pieces; }

static int upload_tensor(Model *m, const SafeModel *sm, const char *name, void **dst, Carve *cv,
                         int64_t d0, int64_t d1, Err *e) {
    const StTensor *t = st_model_find(sm, name);
    if (!t) return err_set(e, "tensor %s is missing from the model", name);
    int64_t want = d1 ? d0 * d1 : d0;
    int shape_ok = t->numel == want && (d1 ? (t->ndim == 2 && t->shape[0] == d0 && t->shape[1] == d1) : t->ndim == 1);
    if (!shape_ok)
        return err_set(e, "tensor %s has shape [%lld%s%lld], expected [%lld%s%lld]", name,
                       (long long)t->shape[0], t->ndim > 1 ? ", " : "", t->ndim > 1 ? (long long)t->shape[1] : 0LL,
                       (long long)d0, d1 ? ", " : "", (long long)d1);
    *dst = carve(cv, (size_t)want * m->be->act_size);
    m->be->upload_act(*dst, t->data, t->dtype, (size_t)want);
    return 0;
}

static int load_weights(Model *m, const char *dir, Err *e) {
    const ModelConfig *c = &m->cfg;
    SafeModel *sm = st_model_open(dir, e);
    if (!sm) return -1;
    int C = c->hidden, Q = c->n_heads * c->head_dim, KV = c->n_kv_heads * c->head_dim, F = c->ffn;
    Carve cv = {m->blocks[0], 0, padded(m->plan.weights, 16 * (c->n_layers + 2))};
    char n[160];
    int rc = -1;
    if (upload_tensor(m, sm, "model.embed_tokens.weight", &m->wte, &cv, c->vocab, C, e)) goto out;
    if (upload_tensor(m, sm, "model.norm.weight", &m->final_norm, &cv, C, 0, e)) goto out;
    if (c->tie_embeddings) m->lm_head = m->wte;
    else if (upload_tensor(m, sm, "lm_head.weight", &m->lm_head, &cv, c->vocab, C, e)) goto out;
    for (int l = 0; l < c->n_layers; l++) {
        LayerWeights *w = &m->layers[l];
        struct { const char *suffix; void **dst; int d0, d1; } spec[] = {
            {"input_layernorm.weight", &w->attn_norm, C, 0},
            {"self_attn.q_proj.weight", &w->wq, Q, C},
            {"self_attn.k_proj.weight", &w->wk, KV, C},
            {"self_attn.v_proj.weight", &w->wv, KV, C},
            {"self_attn.o_proj.weight", &w->wo, C, Q},
            {"post_attention_layernorm.weight", &w->mlp_norm, C, 0},
            {"mlp.gate_proj.weight", &w->wg, F, C},
            {"mlp.up_proj.weight", &w->wu, F, C},
            {"mlp.down_proj.weight", &w->wd, C, F},
            {"self_attn.q_proj.bias", &w->bq, Q, 0},
            {"self_attn.k_proj.bias", &w->bk, KV, 0},
            {"self_attn.v_proj.bias", &w->bv, KV, 0},
            {"self_attn.o_proj.bias", &w->bo, C, 0},
        };
        for (int i = 0; i < 13; i++) {
            if ((i >= 9 && i < 12 && !c->qkv_bias) || (i == 12 && !c->o_bias)) continue;
            snprintf(n, sizeof n, "model.layers.%d.%s", l, spec[i].suffix);
            if (upload_tensor(m, sm, n, spec[i].dst, &cv, spec[i].d0, spec[i].d1, e)) goto out;
        }
    }
    rc = 0;
out:
    st_model_close(sm);
    if (rc) err_prefix(e, "model %s", dir);
    return rc;
}

/* One LayerActs for S rows whose attention holds n of them. */
static void carve_acts(Model *m, LayerActs *a, Carve *cv, size_t S, size_t n) {
    const ModelConfig *c = &m->cfg;
    size_t as = m->be->act_size, C = c->hidden, Q = (size_t)c->n_heads * c->head_dim;
    size_t KV = (size_t)c->n_kv_heads * c->head_dim, F = c->ffn;
    a->h = carve(cv, as * S * C);
    a->q = carve(cv, as * n * Q);
    a->k = carve(cv, as * n * KV);
    a->v = carve(cv, as * n * KV);
    a->att = carve(cv, as * n * Q);
    a->x1 = carve(cv, as * S * C);
    size_t rt = mlp_rows(&m->act, S);
    // h2: one tile's rows with MLP tiles, else all rows where an adapter needs them (else dh2,
    // set in model_load)
    a->h2 = m->tiles > 1 ? carve(cv, as * rt * C) : keeps_h2(&m->lora) ? carve(cv, as * S * C) : NULL;
    // g, u, a back to back (rt rows: S or one tile): one region, where the attention
    // backward's set (and LeMo's scoring set, and the dense view) go while they are dead
    a->g = carve(cv, as * rt * F);
    a->u = carve(cv, as * rt * F);
    a->a = carve(cv, as * rt * F);
    a->lse = carve(cv, 4 * (size_t)c->n_heads * n);
    a->rstd1 = carve(cv, 4 * S);
    a->rstd2 = carve(cv, 4 * S);
    for (int t = 0; t < NT; t++)
        a->t[t] = m->lora.targets[t] ? carve(cv, 4 * (t <= TARGET_O ? n : S) * m->lora.r) : NULL;
}

/* LeMo's scoring set, carved from cv (a layer's g, u, a region, or the gradient block);
 * sizes from score_set_bytes (a piece of 0 bytes is NULL). */
static void carve_score_set(LayerActs *a, Carve *cv, const size_t b[SCORE_SET]) {
    void *p[SCORE_SET];
    for (int i = 0; i < SCORE_SET; i++) p[i] = b[i] ? carve(cv, b[i]) : NULL;
    a->sq = p[0], a->sk = p[1], a->st = p[2], a->score = p[3], a->score_ws = p[4], a->select_ws = p[5];
}

/* The attention backward's set, carved from cv (a layer's g, u, a region, or the gradient
 * block); sizes from attn_set_bytes. */
static void carve_attn_set(LayerActs *a, Carve *cv, const size_t b[ATTN_SET]) {
    a->datt = carve(cv, b[0]);
    a->dq = carve(cv, b[1]);
    a->dk = carve(cv, b[2]);
    a->dv = carve(cv, b[3]);
    a->attn_ws = carve(cv, b[4]);
}

/* LoRA A ~ uniform(-1/sqrt(K), 1/sqrt(K)) (PEFT's kaiming_uniform(a=sqrt(5))), B = 0. */
static void lora_init(Model *m, uint64_t seed) {
    float *host = calloc(m->n_lora, sizeof(float));
    uint64_t s = seed ^ 0x4C6F5241ull;  // "LoRA"
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int t = 0; t < NT; t++) {
            LoraSlot *sl = &m->slots[l * NT + t];
            if (sl->a < 0) continue;
            float bound = 1.0f / sqrtf((float)sl->K);
            for (long i = 0; i < (long)m->lora.r * sl->K; i++) {
                double u = (double)(splitmix(&s) >> 11) * (1.0 / 9007199254740992.0);
                host[sl->a + i] = (float)((2 * u - 1) * bound);
            }
        }
    m->be->copy_to_device(m->lora_params, host, m->n_lora * sizeof(float));
    free(host);
}

Model *model_load(const Backend *be, const char *dir, const RopeScaling *rope_override, int S_max,
                  const LoraSpec *lora, const ActPolicy *act, const LemoSpec *lemo, uint64_t seed, Err *e) {
    Model *m = calloc(1, sizeof *m);
    m->be = be;
    if (model_config_load(dir, &m->cfg, e)) goto fail;
    const ModelConfig *c = &m->cfg;
    if (lora->r < 1) { err_set(e, "LoRA rank must be >= 1"); goto fail; }
    if (c->sliding_window && S_max > c->sliding_window) {  // within the window it is full attention
        err_set_at(e, "context_length", 0,
                   "model %s attends within a sliding window of %d tokens, which is not implemented: "
                   "use a context_length of at most %d", dir, c->sliding_window, c->sliding_window);
        goto fail;
    }
    if (act_policy_check(act, c->n_layers, e)) goto fail;
    if (c->n_layers < 1 || c->n_layers > JOB_MAX_LAYERS) {
        err_set(e, "model %s has %d layers; at most %d are supported", dir, c->n_layers, JOB_MAX_LAYERS);
        goto fail;
    }
    if (lemo && lemo->on && lemo->n_layers != c->n_layers) {  // lemo_resolve was given another model
        err_set_at(e, "lemo.keep", 0, "the LeMo schedule has %d layers but model %s has %d", lemo->n_layers, dir,
                   c->n_layers);
        goto fail;
    }
    m->S_max = S_max;
    if (lemo) m->lemo = *lemo;
    m->lemo.n_layers = c->n_layers;
    m->rows = malloc(sizeof(int) * c->n_layers);
    m->profile = calloc(3 * (size_t)c->n_layers, sizeof(double));
    m->profile_select = calloc((size_t)c->n_layers, sizeof(double));
    m->n_kept = malloc(sizeof(int) * c->n_layers);
    for (int l = 0; l < c->n_layers; l++) m->rows[l] = m->n_kept[l] = lemo_rows(&m->lemo, l, S_max);
    m->act = (ActPolicy){.all = act->all, .n = c->n_layers, .mlp_tiles = act_tiles(act)};
    m->tiles = act_tiles(act);
    for (int l = 0; l < c->n_layers; l++) m->act.layer[l] = (unsigned char)act_layer(act, l);
    m->lora = *lora;
    m->lora_scale = lora->alpha / lora->r;
    m->layers = calloc(c->n_layers, sizeof *m->layers);
    m->slots = malloc(sizeof *m->slots * c->n_layers * NT);
    long off = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int t = 0; t < NT; t++) {
            LoraSlot *sl = &m->slots[l * NT + t];
            target_dims(c, t, &sl->K, &sl->N);
            sl->a = sl->b = -1;
            if (!lora->targets[t]) continue;
            sl->a = off;
            off += (long)lora->r * sl->K;
            sl->b = off;
            off += (long)sl->N * lora->r;
        }
    m->n_lora = off;
    BackendSizes bs = backend_sizes(be);
    model_plan(c, S_max, lora, act, &m->lemo, &bs, &m->plan);
    size_t ev[EVAL_SET], region = mlp_region(c, act, S_max, be->act_size);
    eval_set_bytes(c, S_max, lora, be->act_size, ev);
    int eval_in_mlp = set_fits_mlp(region, ev, EVAL_SET);
    ActCounts cnt = act_counts(act, &m->lemo, c->n_layers, S_max, eval_in_mlp);
    int n_acts = m->n_acts = cnt.kept + cnt.shared;
    size_t sizes[7] = {padded(m->plan.weights, 16 * (c->n_layers + 2)), padded(m->plan.lora, 4),
                       padded(m->plan.checkpoints, 1), padded(m->plan.activations, 32 * n_acts + 2),
                       padded(m->plan.grads, 4 + ATTN_SET + SCORE_SET), padded(m->plan.loss, 1),
                       padded(m->plan.tokens, 5)};
    for (int i = 0; i < 7; i++) {
        m->blocks[i] = be->alloc(sizes[i]);
        if (!m->blocks[i]) {
            err_set(e, "out of %s memory: %zu MiB more needed for %s", be->name, sizes[i] >> 20,
                    (const char *[]){"weights", "LoRA + optimizer", "layer checkpoints", "activations",
                                     "gradients", "loss", "tokens"}[i]);
            goto fail;
        }
    }
    if (load_weights(m, dir, e)) goto fail;

    Carve cv = {m->blocks[1], 0, sizes[1]};
    m->lora_params = carve(&cv, 4 * m->n_lora);
    m->lora_grads = carve(&cv, 4 * m->n_lora);
    m->adam_m = carve(&cv, 4 * m->n_lora);
    m->adam_v = carve(&cv, 4 * m->n_lora);
    lora_init(m, seed);

    size_t as = be->act_size, S = S_max, C = c->hidden, F = c->ffn, L = c->n_layers;
    // layer inputs: their own device buffers in layer order, then the offloaded pair; host
    // copies of offloaded inputs, then of attention outputs, in layer order
    m->resid = m->blocks[2];
    m->xin = malloc(sizeof *m->xin * (L + 1));
    m->host_off = calloc(2 * L, sizeof *m->host_off);
    size_t own = 0, hx = 0, ha = (size_t)cnt.host_inputs * S * C * as;
    for (size_t j = 0; j <= L; j++) {
        if (!input_in_slot(act, (int)L, (int)j) && (j < L || !final_in_shared(act, (int)L)))
            m->xin[j] = (char *)m->resid + own++ * S * C * as;
        if (j < L && input_to_host(act, (int)L, (int)j)) m->host_off[2 * j] = hx, hx += S * C * as;
        if (j < L && att_to_host(act, (int)L, (int)j))
            m->host_off[2 * j + 1] = ha, ha += att_slot_bytes(c, (size_t)m->rows[j], as);
    }
    for (size_t j = 0; j <= L; j++)
        if (input_in_slot(act, (int)L, (int)j)) m->xin[j] = (char *)m->resid + (own + j % 2) * S * C * as;
    if (m->plan.host && !(m->host_resid = be->host_alloc(m->plan.host))) {
        err_set(e, "out of pinned host memory: %zu MiB needed for offloaded layer checkpoints%s", m->plan.host >> 20,
                cnt.host_atts ? " and attention outputs" : "");
        goto fail;
    }
    cv = (Carve){m->blocks[3], 0, sizes[3]};
    m->acts = calloc(n_acts, sizeof *m->acts);
    m->eval_acts = calloc(n_acts, sizeof *m->eval_acts);
    m->layer_acts = malloc(sizeof *m->layer_acts * L);
    size_t set[ATTN_SET], sc[SCORE_SET];
    attn_set_bytes(c, S_max, as, be->attention_bwd_ws_bytes, set);
    score_set_bytes(c, S_max, lora, &m->lemo, &bs, sc);
    for (size_t l = 0, k = 0; l < L; l++)  // kept layers own acts[0..kept-1]; the rest share the last
        m->layer_acts[l] = m->act.layer[l] == ACT_KEEP ? &m->acts[k++] : &m->acts[n_acts - 1];
    for (int i = 0; i < n_acts; i++) {
        LayerActs *a = &m->acts[i];
        size_t rows = S;  // the shared set holds every row; a kept layer's own set its kept rows
        for (size_t l = 0; l < L; l++)
            if (m->layer_acts[l] == a && m->act.layer[l] == ACT_KEEP) rows = (size_t)m->rows[l];
        carve_acts(m, a, &cv, S, rows);
        if (rows < S && eval_in_mlp) {  // the dense view for evaluations (eval_set_bytes)
            LayerActs *v = &m->eval_acts[i];
            *v = *a;
            Carve mlp = {a->g, 0, region};
            void *p[EVAL_SET];
            for (int j = 0; j < EVAL_SET; j++) p[j] = ev[j] ? carve(&mlp, ev[j]) : NULL;
            v->q = p[0], v->k = p[1], v->v = p[2], v->att = p[3], v->lse = p[4];
            for (int t = 0; t <= TARGET_O; t++) v->t[t] = p[5 + t];
        }
        // both sets fit there (model_plan checked), and live at different times: scoring
        // before the MLP's forward, the attention backward after the MLP's backward
        if (m->plan.attn_in_mlp) {
            Carve mlp = {a->g, 0, region};
            carve_attn_set(a, &mlp, set);
        }
        if (m->plan.score_in_mlp) {
            Carve mlp = {a->g, 0, region};
            carve_score_set(a, &mlp, sc);
        }
    }
    if (final_in_shared(act, (int)L)) m->xin[L] = m->acts[n_acts - 1].h;
    if (cnt.att_pair) {
        size_t Q = (size_t)c->n_heads * c->head_dim;
        LayerActs *sh = &m->acts[n_acts - 1];
        m->att_buf[0] = sh->att, m->lse_buf[0] = sh->lse;
        m->att_buf[1] = carve(&cv, as * S * Q);
        m->lse_buf[1] = carve(&cv, 4 * S * c->n_heads);
    }
    cv = (Carve){m->blocks[4], 0, sizes[4]};
    m->dx = carve(&cv, as * S * C);
    m->dh2 = carve(&cv, as * S * C);
    m->dok = carve(&cv, as * S * C);
    m->da = lora->targets[TARGET_DOWN] ? carve(&cv, as * mlp_rows(act, S) * F) : NULL;
    if (!m->plan.attn_in_mlp) {
        carve_attn_set(&m->acts[0], &cv, set);
        for (int i = 1; i < n_acts; i++) {
            LayerActs *a = &m->acts[i];
            a->datt = m->acts[0].datt, a->dq = m->acts[0].dq, a->dk = m->acts[0].dk, a->dv = m->acts[0].dv;
            a->attn_ws = m->acts[0].attn_ws;
        }
    }
    if (!m->plan.score_in_mlp) {
        carve_score_set(&m->acts[0], &cv, sc);
        for (int i = 1; i < n_acts; i++) {
            LayerActs *a = &m->acts[i], *z = &m->acts[0];
            a->sq = z->sq, a->sk = z->sk, a->st = z->st, a->score = z->score;
            a->score_ws = z->score_ws, a->select_ws = z->select_ws;
        }
    }
    for (int i = 0; i < n_acts; i++) {
        if (!m->acts[i].h2) m->acts[i].h2 = m->dh2;
        m->acts[i].hk = m->dh2;
    }
    m->xf = m->dok;
    m->dxf = m->dh2;
    cv = (Carve){m->blocks[5], 0, sizes[5]};
    m->rstdf = carve(&cv, 4 * S);
    cv = (Carve){m->blocks[6], 0, sizes[6]};
    m->tok_in = carve(&cv, 4 * S);
    m->tok_tgt = carve(&cv, 4 * S);
    m->iota = carve(&cv, 4 * S);
    m->kept = carve(&cv, 4 * S * c->n_layers);
    m->inv_freq = carve(&cv, 4 * (size_t)c->head_dim / 2);

    int *iota = malloc(sizeof(int) * S);
    for (size_t i = 0; i < S; i++) iota[i] = (int)i;
    be->copy_to_device(m->iota, iota, sizeof(int) * S);
    free(iota);
    float *inv = malloc(sizeof(float) * c->head_dim / 2);
    model_rope_inv_freq(c, rope_override, inv, &m->mscale);
    be->copy_to_device(m->inv_freq, inv, sizeof(float) * c->head_dim / 2);
    free(inv);
    return m;
fail:
    model_free(m);
    return NULL;
}

void model_free(Model *m) {
    if (!m) return;
    for (int i = 0; i < 7; i++)
        if (m->blocks[i]) m->be->free(m->blocks[i]);
    if (m->host_resid) m->be->host_free(m->host_resid);
    free(m->xin);
    free(m->host_off);
    free(m->rows);
    free(m->profile);
    free(m->profile_select);
    free(m->n_kept);
    free(m->layer_acts);
    free(m->layers);
    free(m->slots);
    free(m->acts);
    free(m->eval_acts);
    free(m);
}

size_t model_layer_act_bytes(const Model *m, int l) {
    return acts_bytes(&m->cfg, (size_t)m->S_max, (size_t)m->rows[l], &m->lora, &m->act, m->be->act_size);
}

void model_zero_grads(Model *m) { m->be->zero(m->lora_grads, 4 * m->n_lora); }

int model_lora_name(const Model *m, int layer, int target, int is_b, char *buf, size_t cap) {
    (void)m;
    const char *block = target <= TARGET_O ? "self_attn" : "mlp";
    return snprintf(buf, cap, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", layer, block,
                    job_target_names[target], is_b ? 'B' : 'A');
}

/* Per-(layer, target) dropout seed: distinct streams from one step seed. */
static uint64_t drop_seed(uint64_t base, int l, int t) {
    uint64_t s = base ^ (0xD1B54A32D192ED03ull * (uint64_t)(l * NT + t + 1));
    return splitmix(&s);
}

typedef struct {
    Model *m;
    int l, train;
    uint64_t seed;
    int select;               // > 0: this forward picks the layer's kept rows, `select` blocks
    uint64_t lemo_seed;       // the window's seed of the random scores
} Ctx;

/* out (+)= in W^T (+ bias) (+ LoRA of target t) over S rows that start at row r0 of the
 * layer's rows (an MLP tile; 0 otherwise): the LoRA A output goes to its rows of a->t[t], and
 * the dropout mask is the whole tensor's (lora_dropout_seed_at). */
static void linear_fwd_at(Ctx *x, LayerActs *a, int t, void *out, const void *in, const void *w,
                          const void *bias, int S, int r0, int accumulate) {
    Model *m = x->m;
    const LoraSlot *sl = &m->slots[x->l * NT + t];
    m->be->matmul_forward(out, in, w, bias, S, sl->K, sl->N, accumulate);
    if (sl->a >= 0)
        m->be->lora_forward(out, a->t[t] + (size_t)r0 * m->lora.r, in, m->lora_params + sl->a,
                            m->lora_params + sl->b, S, sl->K, sl->N, m->lora.r, m->lora_scale,
                            x->train ? m->lora.dropout : 0.0f,
                            lora_dropout_seed_at(drop_seed(x->seed, x->l, t), (uint64_t)r0 * sl->K));
}
static void linear_fwd(Ctx *x, LayerActs *a, int t, void *out, const void *in, const void *w,
                       const void *bias, int S, int accumulate) {
    linear_fwd_at(x, a, t, out, in, w, bias, S, 0, accumulate);
}

/* din += dout W (+ LoRA input grad); LoRA weight grads accumulate; rows from r0 as above. */
static void linear_bwd_at(Ctx *x, LayerActs *a, int t, void *din, const void *dout, const void *in,
                          const void *w, int S, int r0) {
    Model *m = x->m;
    const LoraSlot *sl = &m->slots[x->l * NT + t];
    m->be->matmul_backward(din, dout, w, S, sl->K, sl->N);
    if (sl->a >= 0)
        m->be->lora_backward(din, m->lora_grads + sl->a, m->lora_grads + sl->b, dout, in,
                             a->t[t] + (size_t)r0 * m->lora.r, m->lora_params + sl->a, m->lora_params + sl->b, S,
                             sl->K, sl->N, m->lora.r, m->lora_scale, x->train ? m->lora.dropout : 0.0f,
                             lora_dropout_seed_at(drop_seed(x->seed, x->l, t), (uint64_t)r0 * sl->K));
}
static void linear_bwd(Ctx *x, LayerActs *a, int t, void *din, const void *dout, const void *in,
                       const void *w, int S) {
    linear_bwd_at(x, a, t, din, dout, in, w, S, 0);
}

/* The MLP over row tiles (m->tiles > 1), forward: per tile h2 = rmsnorm(x1), g, u, a and
 * out = x1 + a Wd^T for its rows; g, u, a, h2 hold one tile. Nothing of it is kept but the
 * LoRA A outputs and rstd2: the backward recomputes each tile (mlp_backward_tiled). */
static void mlp_forward_tiled(Ctx *x, LayerActs *a, void *xout, int S) {
    Model *m = x->m;
    const Backend *be = m->be;
    const ModelConfig *c = &m->cfg;
    const LayerWeights *w = &m->layers[x->l];
    size_t as = be->act_size, C = c->hidden;
    int rt = act_tile_rows(&m->act, S);
    for (int r0 = 0; r0 < S; r0 += rt) {
        int rows = S - r0 < rt ? S - r0 : rt;
        const char *x1 = (const char *)a->x1 + as * r0 * C;
        char *out = (char *)xout + as * r0 * C;
        be->rmsnorm_forward(a->h2, a->rstd2 + r0, x1, w->mlp_norm, rows, (int)C, c->norm_eps);
        linear_fwd_at(x, a, TARGET_GATE, a->g, a->h2, w->wg, NULL, rows, r0, 0);
        linear_fwd_at(x, a, TARGET_UP, a->u, a->h2, w->wu, NULL, rows, r0, 0);
        be->swiglu_forward(a->a, a->g, a->u, (size_t)rows * c->ffn);
        be->copy_device(out, x1, as * rows * C);
        linear_fwd_at(x, a, TARGET_DOWN, out, a->a, w->wd, NULL, rows, r0, 1);
    }
}

/* The MLP's backward over row tiles: per tile the forward again (h2, g, u; with a down_proj
 * adapter a and its LoRA A output, through dok, dead here, as a discarded output), then
 * dL/da, the SwiGLU backward, dL/dh2 into dh2's rows and the norm's backward into dx's rows.
 * m->dx holds dL/d(layer output) on entry and dL/dx1 on exit, as the untiled path leaves it. */
static void mlp_backward_tiled(Ctx *x, LayerActs *a, int S) {
    Model *m = x->m;
    const Backend *be = m->be;
    const ModelConfig *c = &m->cfg;
    const LayerWeights *w = &m->layers[x->l];
    size_t as = be->act_size, C = c->hidden, F = c->ffn;
    int rt = act_tile_rows(&m->act, S), down = m->slots[x->l * NT + TARGET_DOWN].a >= 0;
    void *da = m->da ? m->da : a->a;
    for (int r0 = 0; r0 < S; r0 += rt) {
        int rows = S - r0 < rt ? S - r0 : rt;
        const char *x1 = (const char *)a->x1 + as * r0 * C;
        char *dx = (char *)m->dx + as * r0 * C, *dh2 = (char *)m->dh2 + as * r0 * C;
        be->rmsnorm_forward(a->h2, a->rstd2 + r0, x1, w->mlp_norm, rows, (int)C, c->norm_eps);
        linear_fwd_at(x, a, TARGET_GATE, a->g, a->h2, w->wg, NULL, rows, r0, 0);
        linear_fwd_at(x, a, TARGET_UP, a->u, a->h2, w->wu, NULL, rows, r0, 0);
        if (down) {  // a and the down adapter's A output (its output discarded into dok)
            const LoraSlot *sl = &m->slots[x->l * NT + TARGET_DOWN];
            be->swiglu_forward(a->a, a->g, a->u, (size_t)rows * F);
            be->zero(m->dok, as * rows * C);
            be->lora_forward(m->dok, a->t[TARGET_DOWN] + (size_t)r0 * m->lora.r, a->a, m->lora_params + sl->a,
                             m->lora_params + sl->b, rows, sl->K, sl->N, m->lora.r, m->lora_scale,
                             x->train ? m->lora.dropout : 0.0f,
                             lora_dropout_seed_at(drop_seed(x->seed, x->l, TARGET_DOWN), (uint64_t)r0 * sl->K));
        }
        be->zero(da, as * (size_t)rows * F);
        linear_bwd_at(x, a, TARGET_DOWN, da, dx, a->a, w->wd, rows, r0);
        be->swiglu_backward(da, a->u, da, a->g, a->u, (size_t)rows * F);
        be->zero(dh2, as * rows * C);
        linear_bwd_at(x, a, TARGET_GATE, dh2, da, a->h2, w->wg, rows, r0);
        linear_bwd_at(x, a, TARGET_UP, dh2, a->u, a->h2, w->wu, rows, r0);
        be->rmsnorm_backward(dx, dh2, x1, w->mlp_norm, a->rstd2 + r0, rows, (int)C);
    }
}

/* q or k of every row for LeMo's exact scores: out (S, N) = h W^T (+ bias) + LoRA, pre-RoPE,
 * as the layer's own projection computes it (the current adapter, no dropout). */
static void score_proj(Ctx *x, LayerActs *a, int t, void *out, const void *w, const void *bias, int S) {
    Model *m = x->m;
    const LoraSlot *sl = &m->slots[x->l * NT + t];
    m->be->matmul_forward(out, a->h, w, bias, S, sl->K, sl->N, 0);
    if (sl->a >= 0)
        m->be->lora_forward(out, a->st, a->h, m->lora_params + sl->a, m->lora_params + sl->b, S, sl->K, sl->N,
                            m->lora.r, m->lora_scale, 0.0f, 0);
}

/* With a profile clock (model.h): wait for the device, then the caller's clock; else 0. */
static double profile_mark(Model *m) {
    if (!m->profile_clock) return 0;
    m->be->sync();
    return m->profile_clock();
}

/* LeMo's selection for layer l (DESIGN section 8 steps 2-3): block scores from the layer's
 * normed input a->h (exact: from its q, k of every row) or the random control, then the
 * top `select` blocks into idx (select * block rows, ascending), all on the device. */
static void layer_select(Ctx *x, LayerActs *a, int *idx, int S) {
    Model *m = x->m;
    const Backend *be = m->be;
    const ModelConfig *c = &m->cfg;
    const LayerWeights *w = &m->layers[x->l];
    int B = m->lemo.block, nb = S / B;
    if (m->lemo.scores == LEMO_SCORES_EXACT) {
        score_proj(x, a, TARGET_Q, a->sq, w->wq, w->bq, S);
        score_proj(x, a, TARGET_K, a->sk, w->wk, w->bk, S);
        be->lemo_block_scores(a->score, a->sq, a->sk, S, c->n_heads, c->n_kv_heads, c->head_dim, B, a->score_ws);
    } else {
        be->lemo_random_scores(a->score, nb, lemo_layer_seed(x->lemo_seed, x->l));
    }
    be->lemo_select_blocks(idx, a->score, nb, x->select, B, a->select_ws);
}

/* layer_select, timed into the profile's selection column (model.h) when there is a clock. */
static void layer_select_timed(Ctx *x, LayerActs *a, int *idx, int S) {
    double t0 = profile_mark(x->m);
    layer_select(x, a, idx, S);
    if (x->m->profile_clock) x->m->profile_select[x->l] += profile_mark(x->m) - t0;
}

/* Layer l forward: x (S, C) -> out (S, C); idx (n) kept rows on the device. xout NULL: a
 * recomputation right before the layer's backward, which needs the saved activations but not
 * the output: the SwiGLU product and the down projection are skipped (a 2*S*C*F-FLOP GEMM),
 * unless a down_proj adapter needs them for its gradients; then dh2, dead here, takes the
 * unused output. */
static void layer_forward(Ctx *x, LayerActs *a, const void *xin, void *xout, const int *idx, int n, int S) {
    Model *m = x->m;
    const Backend *be = m->be;
    const ModelConfig *c = &m->cfg;
    const LayerWeights *w = &m->layers[x->l];
    int C = c->hidden, HS = c->head_dim;
    size_t as = be->act_size;
    int dense = idx == m->iota;

    be->rmsnorm_forward(a->h, a->rstd1, xin, w->attn_norm, S, C, c->norm_eps);
    if (x->select) layer_select_timed(x, a, (int *)idx, S);
    const void *hk = a->h;
    if (!dense) {
        be->gather_rows(a->hk, a->h, idx, n, C);
        hk = a->hk;
    }
    linear_fwd(x, a, TARGET_Q, a->q, hk, w->wq, w->bq, n, 0);
    linear_fwd(x, a, TARGET_K, a->k, hk, w->wk, w->bk, n, 0);
    linear_fwd(x, a, TARGET_V, a->v, hk, w->wv, w->bv, n, 0);
    be->rope_forward(a->q, idx, m->inv_freq, n, c->n_heads, HS, m->mscale);
    be->rope_forward(a->k, idx, m->inv_freq, n, c->n_kv_heads, HS, m->mscale);
    // with ACT_OFFLOAD_ATT the recompute finds the attention output and lse copied back
    if (xout || m->act.layer[x->l] != ACT_OFFLOAD_ATT)
        be->attention_forward(a->att, a->lse, a->q, a->k, a->v, n, c->n_heads, c->n_kv_heads, HS);
    // o = att Wo^T (+lora) is formed apart and then added, on both paths, so a kept list of
    // all rows gives bit-for-bit the dense result
    linear_fwd(x, a, TARGET_O, m->dok, a->att, w->wo, w->bo, n, 0);
    be->copy_device(a->x1, xin, as * S * C);
    if (dense) be->add_inplace(a->x1, m->dok, (size_t)S * C);
    else be->scatter_add_rows(a->x1, m->dok, idx, n, C);
    if (m->tiles > 1) {  // a recompute skips the tiled MLP: its backward recomputes each tile
        if (xout) mlp_forward_tiled(x, a, xout, S);
        return;
    }
    be->rmsnorm_forward(a->h2, a->rstd2, a->x1, w->mlp_norm, S, C, c->norm_eps);
    linear_fwd(x, a, TARGET_GATE, a->g, a->h2, w->wg, NULL, S, 0);
    linear_fwd(x, a, TARGET_UP, a->u, a->h2, w->wu, NULL, S, 0);
    if (!xout) {
        if (m->slots[x->l * NT + TARGET_DOWN].a < 0) return;
        xout = m->dh2;
    }
    be->swiglu_forward(a->a, a->g, a->u, (size_t)S * c->ffn);
    be->copy_device(xout, a->x1, as * S * C);
    linear_fwd(x, a, TARGET_DOWN, xout, a->a, w->wd, NULL, S, 1);
}

/* Layer l backward: m->dx holds dL/d(layer output) on entry and dL/d(layer input) on exit. */
static void layer_backward(Ctx *x, LayerActs *a, const void *xin, const int *idx, int n, int S) {
    Model *m = x->m;
    const Backend *be = m->be;
    const ModelConfig *c = &m->cfg;
    const LayerWeights *w = &m->layers[x->l];
    int C = c->hidden, F = c->ffn, HS = c->head_dim;
    int Q = c->n_heads * HS;
    size_t as = be->act_size;
    int dense = idx == m->iota;

    // MLP branch. Without a down_proj adapter `a` is dead here, so dL/da goes into it. The
    // swiglu backward runs in place (every element is read before it is written): dgate over
    // da, dup over u; neither g nor u is read again in this step.
    if (m->tiles > 1) {
        mlp_backward_tiled(x, a, S);
    } else {
        void *da = m->da ? m->da : a->a;
        be->zero(da, as * (size_t)S * F);
        linear_bwd(x, a, TARGET_DOWN, da, m->dx, a->a, w->wd, S);
        be->swiglu_backward(da, a->u, da, a->g, a->u, (size_t)S * F);
        be->zero(m->dh2, as * (size_t)S * C);
        linear_bwd(x, a, TARGET_GATE, m->dh2, da, a->h2, w->wg, S);
        linear_bwd(x, a, TARGET_UP, m->dh2, a->u, a->h2, w->wu, S);
        be->rmsnorm_backward(m->dx, m->dh2, a->x1, w->mlp_norm, a->rstd2, S, C);
    }

    // attention branch: only the kept rows received the attention output. From here on g,
    // u, a, da and dh2 are dead: a->datt .. a->attn_ws may live in g, u, a, dh2 takes dL/dh
    // and, once o_proj's backward has read it, dok takes dL/dhk (model.c's header).
    const void *dout = m->dx;
    if (!dense) {
        be->gather_rows(m->dok, m->dx, idx, n, C);
        dout = m->dok;
    }
    be->zero(a->datt, as * (size_t)n * Q);
    linear_bwd(x, a, TARGET_O, a->datt, dout, a->att, w->wo, n);
    be->attention_backward(a->dq, a->dk, a->dv, a->datt, a->att, a->lse, a->q, a->k, a->v, n, c->n_heads,
                           c->n_kv_heads, HS, a->attn_ws);
    be->rope_backward(a->dq, idx, m->inv_freq, n, c->n_heads, HS, m->mscale);
    be->rope_backward(a->dk, idx, m->inv_freq, n, c->n_kv_heads, HS, m->mscale);
    const void *hk = a->h;
    void *dh = m->dh2;                        // (S, C)
    void *dhk = dense ? dh : m->dok;          // (n, C)
    if (!dense) {  // the kept rows again, into dh2 (model.c's header)
        be->gather_rows(a->hk, a->h, idx, n, C);
        hk = a->hk;
    }
    be->zero(dhk, as * (size_t)n * C);
    linear_bwd(x, a, TARGET_Q, dhk, a->dq, hk, w->wq, n);
    linear_bwd(x, a, TARGET_K, dhk, a->dk, hk, w->wk, n);
    linear_bwd(x, a, TARGET_V, dhk, a->dv, hk, w->wv, n);
    if (!dense) {
        be->zero(dh, as * (size_t)S * C);
        be->scatter_add_rows(dh, dhk, idx, n, C);
    }
    be->rmsnorm_backward(m->dx, dh, xin, w->attn_norm, a->rstd1, S, C);
}

double model_step(Model *m, const int32_t *inputs, const int32_t *targets, int S, const LemoSelect *sel,
                  int backward, int train, float grad_scale, uint64_t dropout_seed, long *count) {
    const Backend *be = m->be;
    const ModelConfig *c = &m->cfg;
    int C = c->hidden, L = c->n_layers;
    size_t as = be->act_size, SC = (size_t)S * C;
    if (S > m->S_max) abort();  // callers size the model for their longest window

    be->copy_to_device(m->tok_in, inputs, 4 * (size_t)S);
    be->copy_to_device(m->tok_tgt, targets, 4 * (size_t)S);
    // each layer's kept rows: all of them (iota), a given list, or the schedule's choice,
    // made in the layer's forward below (select[l] blocks) and reused by its recompute and
    // backward; a forward-only step runs every layer in buffers of S rows
    const int *idx[L];
    int n[L], select[L];
    int sched = sel && sel->mode == LEMO_SEL_SCHEDULE && m->lemo.on && S % m->lemo.block == 0;
    for (int l = 0; l < L; l++) {
        int *kl = m->kept + (size_t)l * m->S_max;
        select[l] = 0;
        n[l] = S;
        idx[l] = m->iota;
        if (sel && sel->mode == LEMO_SEL_GIVEN && sel->kept && sel->kept[l]) {
            if (sel->n_kept[l] > (backward ? m->rows[l] : S) || sel->n_kept[l] < 1) abort();  // a caller's bug
            n[l] = sel->n_kept[l];
            idx[l] = kl;
            be->copy_to_device(kl, sel->kept[l], 4 * (size_t)n[l]);
        } else if (sched && lemo_rows(&m->lemo, l, S) < S) {
            n[l] = lemo_rows(&m->lemo, l, S);
            select[l] = n[l] / m->lemo.block;
            idx[l] = kl;
        }
        m->n_kept[l] = n[l];
    }
    // a forward-only step attends densely where the layer's own buffers are too small: in
    // their dense view (eval_acts) or, where that does not fit, the shared set
    int fwd_only = !backward;

    // layer j's input on the device (j == L: the final residual) and on the host; with
    // ACT_OFFLOAD_ATT layer j's attention output and lse in device pair j % 2 and on the host
    const ActPolicy *act = &m->act;
    char *host = m->host_resid;
#define XIN(j) ((char *)m->xin[j])
#define XHOST(j) (host + m->host_off[2 * (j)])
#define IN_SLOT(j) input_in_slot(act, L, j)
#define TO_HOST(j) input_to_host(act, L, j)
#define ATT_HOST(j) att_to_host(act, L, j)
    size_t att_b = as * (size_t)c->n_heads * c->head_dim;
#define HATT(j) (host + m->host_off[2 * (j) + 1])
#define HLSE(j) (HATT(j) + align256(att_b * (size_t)m->rows[j]))
    // the shared activations use the pair in turn when any layer offloads its attention output
    int att_pair = m->att_buf[1] != NULL;
#define ROTATES(l) (att_pair && act->layer[l] != ACT_KEEP)
    be->embedding_forward(XIN(0), m->tok_in, m->wte, S, C);
    if (backward && TO_HOST(0)) be->copy_async(XHOST(0), XIN(0), SC * as, 0);
    for (int l = 0; l < L; l++) {
        Ctx x = {m, l, train, dropout_seed, select[l], sel ? sel->seed : 0};
        LayerActs *a = m->layer_acts[l];
        if (fwd_only && n[l] > m->rows[l])
            a = m->eval_acts[a - m->acts].h ? &m->eval_acts[a - m->acts] : &m->acts[m->n_acts - 1];
        if (IN_SLOT(l + 1)) be->copy_wait((l + 1) % 2);  // the slot written here (layer l-1's input) is out
        if (ROTATES(l)) {
            a->att = m->att_buf[l % 2], a->lse = m->lse_buf[l % 2];
            be->copy_wait(2 + l % 2);  // layer l-2's attention output has left this pair
        }
        double t0 = profile_mark(m);
        layer_forward(&x, a, XIN(l), XIN(l + 1), idx[l], n[l], S);
        if (m->profile_clock) m->profile[3 * l] += profile_mark(m) - t0;
        if (backward && l + 1 < L && TO_HOST(l + 1)) be->copy_async(XHOST(l + 1), XIN(l + 1), SC * as, (l + 1) % 2);
        if (backward && ATT_HOST(l)) {
            be->copy_async(HATT(l), a->att, att_b * n[l], 2 + l % 2);
            be->copy_async(HLSE(l), a->lse, 4 * (size_t)c->n_heads * n[l], 2 + l % 2);
        }
    }
    const void *xL = XIN(L);
    // xf, dxf are dok, dh2: the last layer's forward is done with dok, and nothing writes
    // either until the final rmsnorm backward below has read them
    be->rmsnorm_forward(m->xf, m->rstdf, xL, m->final_norm, S, C, c->norm_eps);
    double loss = be->lm_head_ce(backward ? m->dxf : NULL, count, m->xf, m->lm_head, m->tok_tgt, S, C, c->vocab,
                                 grad_scale);
    if (!backward) return loss;

    be->zero(m->dx, as * SC);
    be->rmsnorm_backward(m->dx, m->dxf, xL, m->final_norm, m->rstdf, S, C);
    for (int l = L - 1; l >= 0; l--) {
        Ctx x = {m, l, train, dropout_seed, 0, 0};  // the recompute reuses idx[l]: no rescoring
        LayerActs *a = m->layer_acts[l];
        // bring layer l-1's input (and attention output) into the slot (pair) layer l+1, the
        // final norm or the forward is done with, while this layer computes; then wait for
        // this layer's own (layer L-1's are still on the device)
        if (l >= 1 && TO_HOST(l - 1)) be->copy_async(XIN(l - 1), XHOST(l - 1), SC * as, (l - 1) % 2);
        if (IN_SLOT(l)) be->copy_wait(l % 2);
        if (l >= 1 && ATT_HOST(l - 1)) {
            be->copy_async(m->att_buf[(l - 1) % 2], HATT(l - 1), att_b * n[l - 1], 2 + (l - 1) % 2);
            be->copy_async(m->lse_buf[(l - 1) % 2], HLSE(l - 1), 4 * (size_t)c->n_heads * n[l - 1], 2 + (l - 1) % 2);
        }
        if (ROTATES(l)) {
            be->copy_wait(2 + l % 2);
            a->att = m->att_buf[l % 2], a->lse = m->lse_buf[l % 2];
        }
        const void *xin = XIN(l);
        // recompute (its output unused, dh2 when it is formed): the forward writes only a's
        // buffers, dok and dh2, all dead here (the final norm's xf, dxf, or layer l+1's dL/dh,
        // dL/dhk and attention set, all consumed)
        double t0 = profile_mark(m);
        if (act->layer[l] != ACT_KEEP) layer_forward(&x, a, xin, NULL, idx[l], n[l], S);
        double t1 = profile_mark(m);
        layer_backward(&x, a, xin, idx[l], n[l], S);
        if (m->profile_clock) m->profile[3 * l + 1] += t1 - t0, m->profile[3 * l + 2] += profile_mark(m) - t1;
    }
#undef XIN
#undef XHOST
#undef IN_SLOT
#undef TO_HOST
#undef ATT_HOST
#undef HATT
#undef HLSE
#undef ROTATES
    be->sync();
    return loss;
}
