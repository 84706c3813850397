/* model_layer.c: one decoder layer, forward and backward, over the Backend table (the graph
 * and the buffer sharing are in model_internal.h): the linear layers with their LoRA branches,
 * LeMo's selection inside the first forward, the kept-row attention, the MLP whole or in row
 * tiles. */
#include <stdlib.h>

#include "model_internal.h"

/* Per-(layer, target) dropout seed: distinct streams from one step seed. */
static uint64_t drop_seed(uint64_t base, int l, int t) {
    uint64_t s = base ^ (0xD1B54A32D192ED03ull * (uint64_t)(l * NT + t + 1));
    return splitmix(&s);
}

/* out (+)= in W^T (+ bias) (+ LoRA of target t) over S rows that start at row r0 of the
 * layer's rows (an MLP tile; 0 otherwise): the LoRA A output goes to its rows of a->t[t], and
 * the dropout mask is the whole tensor's (lora_dropout_seed_at). */
static void linear_fwd_at(LayerCtx *x, LayerActs *a, int t, void *out, const void *in, const void *w,
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
static void linear_fwd(LayerCtx *x, LayerActs *a, int t, void *out, const void *in, const void *w,
                       const void *bias, int S, int accumulate) {
    linear_fwd_at(x, a, t, out, in, w, bias, S, 0, accumulate);
}

/* din += dout W (+ LoRA input grad); LoRA weight grads accumulate; rows from r0 as above. */
static void linear_bwd_at(LayerCtx *x, LayerActs *a, int t, void *din, const void *dout, const void *in,
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
static void linear_bwd(LayerCtx *x, LayerActs *a, int t, void *din, const void *dout, const void *in,
                       const void *w, int S) {
    linear_bwd_at(x, a, t, din, dout, in, w, S, 0);
}

/* The MLP over row tiles (m->tiles > 1), forward: per tile h2 = rmsnorm(x1), g, u, a and
 * out = x1 + a Wd^T for its rows; g, u, a, h2 hold one tile. Nothing of it is kept but the
 * LoRA A outputs and rstd2: the backward recomputes each tile (mlp_backward_tiled). */
static void mlp_forward_tiled(LayerCtx *x, LayerActs *a, void *xout, int S) {
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
static void mlp_backward_tiled(LayerCtx *x, LayerActs *a, int S) {
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
static void score_proj(LayerCtx *x, LayerActs *a, int t, void *out, const void *w, const void *bias, int S) {
    Model *m = x->m;
    const LoraSlot *sl = &m->slots[x->l * NT + t];
    m->be->matmul_forward(out, a->h, w, bias, S, sl->K, sl->N, 0);
    if (sl->a >= 0)
        m->be->lora_forward(out, a->st, a->h, m->lora_params + sl->a, m->lora_params + sl->b, S, sl->K, sl->N,
                            m->lora.r, m->lora_scale, 0.0f, 0);
}

double model_profile_mark(Model *m) {
    if (!m->profile_clock) return 0;
    m->be->sync();
    return m->profile_clock();
}

/* LeMo's selection for layer l (DESIGN section 8 steps 2-3): block scores from the layer's
 * normed input a->h (exact: from its q, k of every row; predictor: the layer's predictors over
 * h's blocks) or the random control, then the
 * top `select` blocks into idx (select * block rows, ascending), all on the device. */
static void layer_select(LayerCtx *x, LayerActs *a, int *idx, int S) {
    Model *m = x->m;
    const Backend *be = m->be;
    const ModelConfig *c = &m->cfg;
    const LayerWeights *w = &m->layers[x->l];
    int B = m->lemo.block, nb = S / B;
    if (m->lemo.scores == LEMO_SCORES_EXACT) {
        score_proj(x, a, TARGET_Q, a->sq, w->wq, w->bq, S);
        score_proj(x, a, TARGET_K, a->sk, w->wk, w->bk, S);
        be->lemo_block_scores(a->score, a->sq, a->sk, S, c->n_heads, c->n_kv_heads, c->head_dim, B, a->score_ws);
    } else if (m->lemo.scores == LEMO_SCORES_PREDICTOR) {
        // no gradient: the predictors are frozen while the adapter trains
        const LemoSpec *z = &m->lemo;
        size_t tri = (lemo_tri_size(nb) + 63) / 64 * 64;
        size_t nw = lemo_predictor_weights(B, c->head_dim, z->pred_h1, z->pred_h2);
        be->lemo_predictor_forward(a->pred_ws, a->pred_ws + tri, a->h, z->pred_w + (size_t)lemo_pred_slot(z, x->l) * nw, S, c->hidden,
                                   c->head_dim, B, z->pred_h1, z->pred_h2);
        be->lemo_matrix_scores(a->score, a->pred_ws, nb);
    } else {
        be->lemo_random_scores(a->score, nb, lemo_layer_seed(x->lemo_seed, x->l));
    }
    be->lemo_select_blocks(idx, a->score, nb, x->select, B, a->select_ws);
}

/* layer_select, timed into the profile's selection column (model.h) when there is a clock. */
static void layer_select_timed(LayerCtx *x, LayerActs *a, int *idx, int S) {
    double t0 = model_profile_mark(x->m);
    layer_select(x, a, idx, S);
    if (x->m->profile_clock) x->m->profile_select[x->l] += model_profile_mark(x->m) - t0;
}

/* Layer l forward: x (S, C) -> out (S, C); idx (n) kept rows on the device. xout NULL: a
 * recomputation right before the layer's backward, which needs the saved activations but not
 * the output: the SwiGLU product and the down projection are skipped (a 2*S*C*F-FLOP GEMM),
 * unless a down_proj adapter needs them for its gradients; then dh2, dead here, takes the
 * unused output. */
void model_layer_forward(LayerCtx *x, LayerActs *a, const void *xin, void *xout, const int *idx, int n, int S) {
    Model *m = x->m;
    const Backend *be = m->be;
    const ModelConfig *c = &m->cfg;
    const LayerWeights *w = &m->layers[x->l];
    int C = c->hidden, HS = c->head_dim;
    size_t as = be->act_size;
    int dense = idx == m->iota;

    be->rmsnorm_forward(a->h, a->rstd1, xin, w->attn_norm, S, C, c->norm_eps);
    if (m->probe && xout) m->probe(m->probe_ctx, x->l, a->h, S);
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
void model_layer_backward(LayerCtx *x, LayerActs *a, const void *xin, const int *idx, int n, int S) {
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
    // and, once o_proj's backward has read it, dok takes dL/dhk (model_internal.h).
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
    if (!dense) {  // the kept rows again, into dh2 (model_internal.h)
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
