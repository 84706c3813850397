/* model_load.c: loads a model onto a backend and lays out its memory: one allocation per
 * category of the plan (model_plan.c), carved into the buffers the tables there declare, with
 * the sharing model_internal.h describes; LoRA initialised as PEFT does; model_free. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"
#include "safetensors.h"

/* Carves consecutive aligned pieces out of one allocation. */
typedef struct { char *base; size_t off, cap; } Carve;
static void *carve(Carve *cv, size_t bytes) {
    size_t off = (cv->off + 255) & ~(size_t)255;
    if (off + bytes > cv->cap) abort();  // sizes come from model_plan + padding: a bug, not input
    cv->off = off + bytes;
    return cv->base + off;
}
static size_t padded(size_t bytes, int pieces) { return bytes + 256 * (size_t)pieces; }

/* Set `set` of the tables (model_plan.c) carved from cv into the pointers of `base` (a
 * LayerActs, or the Model for the window's sets), in table order; a buffer that does not
 * exist is NULL. */
static void carve_set(void *base, int set, Carve *cv, const BufCtx *x) {
    size_t b[SET_MAX_BUFS];
    int n = model_set_bytes(set, x, b);
    for (int i = 0; i < n; i++)
        *(void **)((char *)base + model_sets[set].bufs[i].field) = b[i] ? carve(cv, b[i]) : NULL;
}
/* a's pointers of set `set` become from's (one set for every layer). */
static void copy_set(LayerActs *a, const LayerActs *from, int set) {
    for (int i = 0; i < model_sets[set].n; i++) {
        size_t f = model_sets[set].bufs[i].field;
        *(void **)((char *)a + f) = *(void *const *)((const char *)from + f);
    }
}

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
    size_t n_layers = c->n_layers > 0 ? (size_t)c->n_layers : 1;  // checked above; said again for the compiler
    m->layers = calloc(n_layers, sizeof *m->layers);
    m->slots = malloc(sizeof *m->slots * n_layers * NT);
    long off = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int t = 0; t < NT; t++) {
            LoraSlot *sl = &m->slots[l * NT + t];
            model_target_dims(c, t, &sl->K, &sl->N);
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
    BufCtx bx = {c, lora, act, &m->lemo, &bs, (size_t)S_max, (size_t)S_max};
    int eval_in_mlp = model_set_fits_mlp(SET_EVAL, &bx);
    size_t region = model_mlp_region(&bx);
    ActCounts cnt = model_act_counts(act, &m->lemo, c->n_layers, S_max, eval_in_mlp);
    int n_acts = m->n_acts = cnt.kept + cnt.shared;
    size_t sizes[7] = {padded(m->plan.weights, 16 * (c->n_layers + 2)), padded(m->plan.lora, 4),
                       padded(m->plan.checkpoints, 1), padded(m->plan.activations, SET_MAX_BUFS * n_acts + 2),
                       padded(m->plan.grads, 4 + 2 * SET_MAX_BUFS), padded(m->plan.loss, 1),
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

    size_t as = be->act_size, S = S_max, C = c->hidden, L = c->n_layers;
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
            m->host_off[2 * j + 1] = ha, ha += model_att_slot_bytes(c, (size_t)m->rows[j], as);
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
    for (size_t l = 0, k = 0; l < L; l++)  // kept layers own acts[0..kept-1]; the rest share the last
        m->layer_acts[l] = m->act.layer[l] == ACT_KEEP ? &m->acts[k++] : &m->acts[n_acts - 1];
    for (int i = 0; i < n_acts; i++) {
        LayerActs *a = &m->acts[i];
        size_t rows = S;  // the shared set holds every row; a kept layer's own set its kept rows
        for (size_t l = 0; l < L; l++)
            if (m->layer_acts[l] == a && m->act.layer[l] == ACT_KEEP) rows = (size_t)m->rows[l];
        BufCtx own = bx;
        own.n = rows;
        carve_set(a, SET_LAYER, &cv, &own);
        // the sets that live while g, u, a are dead go there when they fit (model_plan
        // checked); they live at different times (model_sets' spans)
        if (rows < S && eval_in_mlp) {  // the dense view for evaluations
            LayerActs *v = &m->eval_acts[i];
            *v = *a;
            Carve mlp = {a->g, 0, region};
            carve_set(v, SET_EVAL, &mlp, &bx);
        }
        if (m->plan.attn_in_mlp) {
            Carve mlp = {a->g, 0, region};
            carve_set(a, SET_ATTN_BWD, &mlp, &bx);
        }
        if (m->plan.score_in_mlp) {
            Carve mlp = {a->g, 0, region};
            carve_set(a, SET_SCORE, &mlp, &bx);
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
    carve_set(m, SET_GRADS, &cv, &bx);
    // sets that do not fit the MLP region: once in the gradient block, for every layer
    static const int shared_sets[2] = {SET_ATTN_BWD, SET_SCORE};
    for (int k = 0; k < 2; k++) {
        if (shared_sets[k] == SET_ATTN_BWD ? m->plan.attn_in_mlp : m->plan.score_in_mlp) continue;
        carve_set(&m->acts[0], shared_sets[k], &cv, &bx);
        for (int i = 1; i < n_acts; i++) copy_set(&m->acts[i], &m->acts[0], shared_sets[k]);
    }
    for (int i = 0; i < n_acts; i++) {  // the layer sets and their dense views alike
        LayerActs *sets[2] = {&m->acts[i], m->eval_acts[i].h ? &m->eval_acts[i] : NULL};
        for (int k = 0; k < 2 && sets[k]; k++) {
            if (!sets[k]->h2) sets[k]->h2 = m->dh2;
            sets[k]->hk = m->dh2;
        }
    }
    m->xf = m->dok;
    m->dxf = m->dh2;
    cv = (Carve){m->blocks[5], 0, sizes[5]};
    carve_set(m, SET_LOSS, &cv, &bx);
    cv = (Carve){m->blocks[6], 0, sizes[6]};
    carve_set(m, SET_TOKENS, &cv, &bx);

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

void model_zero_grads(Model *m) { m->be->zero(m->lora_grads, 4 * m->n_lora); }

int model_lora_name(const Model *m, int layer, int target, int is_b, char *buf, size_t cap) {
    (void)m;
    const char *block = target <= TARGET_O ? "self_attn" : "mlp";
    return snprintf(buf, cap, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", layer, block,
                    job_target_names[target], is_b ? 'B' : 'A');
}
