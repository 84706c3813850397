/* test_model_memory.c: the memory plan's buffer reuse (engine/model/model_internal.h). The attention
 * backward's set (datt, dq, dk, dv and the backend's workspace) lives in a layer's dead
 * g, u, a when it fits there, else in the gradient block; dL/dh and dL/dhk reuse dh2 and
 * dok; the final norm's xf, dxf alias dok, dh2. Checked here:
 *   - where every piece lands: inside its region, pairwise disjoint, each layer in its own
 *     LayerActs without checkpointing;
 *   - every activation policy (keep, recompute, offload) with either placement gives the
 *     same losses, LoRA gradients and final-norm output bit for bit, with kept-row lists,
 *     dropout, q/k/v/o biases, NKV 1, with and without a down_proj adapter; the placement in
 *     the gradient block is forced through a backend table whose workspace is too large for
 *     the MLP buffers, so both placements run on the same model;
 *   - those gradients match finite differences;
 *   - the plan for a Llama-2-7B shape at 64K tokens (bf16, LoRA r 8 on q, k, v, o) is smaller
 *     than the layout without reuse by exactly the buffers that now share memory. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cuda/backend_cuda.h"
#include "model.h"
#include "tiny_model.h"

#define S 12
#define NT JOB_MAX_TARGETS

static int32_t in1[S] = {1, 5, 9, 3, 17, 22, 8, 30, 2, 14, 6, 11};
static int32_t in2[S] = {4, 4, 19, 7, 1, 0, 31, 12, 12, 5, 28, 3};

/* A CPU table whose attention workspace is 1 MiB larger than it needs: too large for a tiny
 * model's MLP buffers, so the plan puts the attention backward's set in the gradient block. */
static size_t big_ws_bytes(int s, int nh, int nkv, int hs) {
    return backend_cpu()->attention_bwd_ws_bytes(s, nh, nkv, hs) + ((size_t)1 << 20);
}
static Backend big_ws_backend;

/* Loads on backend be with B seeded (PEFT starts it at 0) so that every path carries gradient,
 * as tiny_model_load does on the CPU table (which it is used for). */
static Model *load(const Backend *be, const char *dir, int policy, const int *targets, float dropout) {
    LoraSpec spec = {2, 4.0f, dropout, {0}};
    memcpy(spec.targets, targets, sizeof spec.targets);
    if (be == backend_cpu()) return tiny_model_load(dir, S, &spec, policy);
    Err e = {0};
    Model *m = model_load(be, dir, NULL, S, &spec, &(ActPolicy){.all = policy}, NULL, 7, &e);
    if (!m) {
        fprintf(stderr, "model_load: %s\n", e.msg);
        exit(1);
    }
    float *p = malloc(sizeof(float) * m->n_lora);
    unsigned long long seed = 99;
    be->copy_to_host(p, m->lora_params, sizeof(float) * m->n_lora);
    for (int i = 0; i < m->cfg.n_layers * NT; i++) {
        LoraSlot *sl = &m->slots[i];
        for (int j = 0; sl->a >= 0 && j < sl->N * spec.r; j++) p[sl->b + j] = 0.3f * tiny_randn(&seed);
    }
    be->copy_to_device(m->lora_params, p, sizeof(float) * m->n_lora);
    free(p);
    return m;
}

static int inside(const void *p, size_t bytes, const void *base, size_t cap) {
    const char *a = p, *b = base;
    return a >= b && a + bytes <= b + cap;
}

static int disjoint(const void *p, size_t pb, const void *q, size_t qb) {
    const char *a = p, *b = q;
    return a + pb <= b || b + qb <= a;
}

/* Where the set of each LayerActs lies: in its own g, u, a, or in the gradient block. */
static void check_layout(const char *what, const Model *m, int in_mlp) {
    const ModelConfig *c = &m->cfg;
    size_t as = m->be->act_size, Q = (size_t)c->n_heads * c->head_dim, KV = (size_t)c->n_kv_heads * c->head_dim;
    size_t C = c->hidden, F = c->ffn;
    size_t ws = m->be->attention_bwd_ws_bytes(S, c->n_heads, c->n_kv_heads, c->head_dim);
    CHECK(m->plan.attn_in_mlp == in_mlp, "%s: attention set in the MLP buffers: %d, want %d", what,
          m->plan.attn_in_mlp, in_mlp);
    CHECK(m->xf == m->dok && m->dxf == m->dh2, "%s: xf, dxf are not dok, dh2", what);
    size_t grads = as * S * C * 3 + (m->da ? as * S * F : 0);
    CHECK(m->plan.grads == grads + (in_mlp ? 0 : as * S * (2 * Q + 2 * KV) + ws),
          "%s: gradient block %zu bytes", what, m->plan.grads);
    CHECK(m->plan.loss == 4 * S, "%s: loss block %zu bytes, want only rstdf", what, m->plan.loss);
    CHECK(m->n_acts == (m->act.layer[0] == ACT_KEEP ? c->n_layers : 1), "%s: %d activation sets", what, m->n_acts);
    for (int i = 0; i < m->n_acts; i++) {
        const LayerActs *a = &m->acts[i];
        const void *p[5] = {a->datt, a->dq, a->dk, a->dv, a->attn_ws};
        size_t b[5] = {as * S * Q, as * S * Q, as * S * KV, as * S * KV, ws};
        size_t step = (as * S * F + 255) & ~(size_t)255;
        CHECK((char *)a->u == (char *)a->g + step && (char *)a->a == (char *)a->u + step, "%s: g, u, a not back to back",
              what);
        for (int k = 0; k < 5; k++) {
            if (in_mlp)
                CHECK(inside(p[k], b[k], a->g, 3 * as * S * F), "%s: layer %d piece %d outside its g, u, a", what,
                      i, k);
            else
                CHECK(inside(p[k], b[k], m->blocks[4], m->plan.grads + 256 * 9) && p[k] == ((void **)&m->acts[0].datt)[k],
                      "%s: layer %d piece %d not the gradient block's", what, i, k);
            CHECK(((uintptr_t)p[k] & 255) == 0, "%s: layer %d piece %d not 256-byte aligned", what, i, k);
            for (int j = 0; j < k; j++)
                CHECK(disjoint(p[k], b[k], p[j], b[j]), "%s: pieces %d and %d overlap", what, j, k);
            const void *live[3] = {m->dx, m->dh2, m->dok};
            for (int j = 0; j < 3; j++)
                CHECK(disjoint(p[k], b[k], live[j], as * S * C), "%s: piece %d overlaps dx/dh2/dok", what, k);
            if (m->da) CHECK(disjoint(p[k], b[k], m->da, as * S * F), "%s: piece %d overlaps da", what, k);
        }
    }
}

/* Two training steps accumulating into the gradients, then a forward-only one; returns the
 * three losses, the gradients and the final norm output of the last step. */
static void run(Model *m, const int *const *kept, const int *nk, double loss[3], float *g, float *xf) {
    int32_t tg[S];
    long c;
    model_zero_grads(m);
    for (int k = 0; k < 3; k++) {
        const int32_t *in = k == 1 ? in2 : in1;
        for (int i = 0; i < S; i++) tg[i] = i + 1 < S ? in[i + 1] : -1;
        loss[k] = model_step(m, in, tg, S, &(LemoSelect){LEMO_SEL_GIVEN, 0, kept, nk}, k < 2, 1, 0.5f, 41 + k, &c);
    }
    m->be->copy_to_host(g, m->lora_grads, 4 * m->n_lora);
    m->be->download_act(xf, m->xf, (size_t)S * m->cfg.hidden);
}

/* Every (policy, placement) pair agrees with (keep, gradient block) bit for bit. */
static void same_results(const char *name, const char *dir, const int *targets, float dropout) {
    int keep1[] = {0, 2, 3, 6, 7, 9, 11}, keep2[] = {1, 2, 4, 5, 8, 10, 11};
    const int *kept[3] = {keep1, NULL, keep2};
    int nk[3] = {7, S, 7};
    for (int pass = 0; pass < 2; pass++) {
        const int *const *kp = pass ? kept : NULL;
        double ref_loss[3];
        float *ref_g = NULL, *ref_x = NULL;
        size_t n = 0, nx = 0;
        for (int place = 0; place < 2; place++)
            for (int pol = 0; pol <= ACT_OFFLOAD_ATT; pol++) {
                const Backend *be = place ? backend_cpu() : &big_ws_backend;
                Model *m = load(be, dir, pol, targets, dropout);
                char what[160];
                snprintf(what, sizeof what, "%s%s policy %d, set in %s", name, pass ? " kept" : "", pol,
                         place ? "g/u/a" : "gradient block");
                check_layout(what, m, place);
                n = m->n_lora, nx = (size_t)S * m->cfg.hidden;
                double loss[3];
                float *g = malloc(4 * n), *x = malloc(4 * nx);
                run(m, kp, pass ? nk : NULL, loss, g, x);
                if (!ref_g) {
                    memcpy(ref_loss, loss, sizeof loss);
                    ref_g = g, ref_x = x;
                } else {
                    CHECK(!memcmp(loss, ref_loss, sizeof loss), "%s: losses %.9g %.9g %.9g vs %.9g %.9g %.9g", what,
                          loss[0], loss[1], loss[2], ref_loss[0], ref_loss[1], ref_loss[2]);
                    CHECK(!memcmp(g, ref_g, 4 * n), "%s: LoRA gradients differ", what);
                    CHECK(!memcmp(x, ref_x, 4 * nx), "%s: final norm output differs", what);
                    free(g), free(x);
                }
                model_free(m);
            }
        double gmax = 0;
        for (size_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(ref_g[i]));
        CHECK(gmax > 1e-3 && isfinite(ref_loss[0]), "%s: degenerate reference (max grad %g)", name, gmax);
        free(ref_g), free(ref_x);
    }
}

/* Central differences on sampled LoRA parameters, set in g, u, a, every layer its own
 * (no checkpointing), kept lists and dropout. */
static void fd_check(const char *dir, const int *targets) {
    Model *m = load(backend_cpu(), dir, ACT_KEEP, targets, 0.2f);
    CHECK(m->plan.attn_in_mlp, "finite differences: the set should be in g, u, a");
    int keep1[] = {0, 1, 4, 5, 6, 9, 11};
    const int *kept[3] = {NULL, keep1, keep1};
    int nk[3] = {S, 7, 7};
    int32_t tg[S];
    for (int i = 0; i < S; i++) tg[i] = i + 1 < S ? in1[i + 1] : -1;
    long c;
    float *g = tiny_step_grads(m, in1, tg, S, kept, nk, 1, 9, &c);
    int bad = tiny_fd_disagreements(m, g, in1, tg, S, kept, nk, 1, 9, 60, 17, "attention set in g, u, a");
    CHECK(bad == 0, "attention set in g, u, a: %d of 60 sampled gradients disagree with finite differences", bad);
    free(g);
    model_free(m);
}

/* Llama-2-7B at 64K tokens: every category from the shapes, and the saving against the layout
 * without reuse (dh, dhk, dq, dk, dv, datt in the gradient block; xf, dxf in the loss block;
 * h2 in the activations, which without gate/up adapters lives in dh2). */
static void plan_7b(void) {
    char dir[64] = "/tmp/lemo-plan-7b-XXXXXX";
    if (!mkdtemp(dir)) exit(1);
    if (llama7b_config_write(dir)) exit(1);
    ModelConfig mc;
    Err e = {0};
    CHECK(model_config_load(dir, &mc, &e) == 0, "7B config: %s", e.msg);
    tiny_model_remove(dir);
    size_t Sl = 65536, as = 2, C = mc.hidden, Q = (size_t)mc.n_heads * mc.head_dim;
    size_t KV = (size_t)mc.n_kv_heads * mc.head_dim, F = mc.ffn, V = mc.vocab, L = mc.n_layers, R = 8;
    LoraSpec spec = {(int)R, 16, 0, {1, 1, 1, 1, 0, 0, 0}};
    BackendSizes cuda_sizes = cuda_backend_sizes();
    for (int pol = ACT_RECOMPUTE; pol <= ACT_OFFLOAD; pol++) {
        MemPlan p;
        model_plan(&mc, (int)Sl, &spec, &(ActPolicy){.all = pol}, NULL, &cuda_sizes, &p);
        size_t layer_w = 2 * C + Q * C + 2 * KV * C + C * Q + 3 * F * C;
        size_t weights = as * (2 * V * C + C + L * layer_w);
        size_t lora = 16 * L * R * ((C + Q) + 2 * (C + KV) + (Q + C));
        // recomputed, the last layer's output lives in the shared activations' h: L inputs
        size_t ckpt = as * Sl * C * (pol == ACT_OFFLOAD ? 2 : L);
        size_t acts = as * Sl * (2 * C + 2 * Q + 2 * KV + 3 * F) + 4 * (mc.n_heads * Sl + 2 * Sl) + 4 * 4 * Sl * R;
        size_t grads = as * Sl * C * 3, loss = 4 * Sl;
        size_t tokens = 4 * (3 * Sl + Sl * L) + 4 * (size_t)mc.head_dim / 2;
        CHECK(p.attn_in_mlp, "7B: the attention set (%zu bytes) should fit g, u, a (%zu)",
              as * Sl * (2 * Q + 2 * KV) + cuda_attention_bwd_ws((int)Sl, mc.n_heads, mc.n_kv_heads, mc.head_dim),
              3 * as * Sl * F);
        CHECK(p.weights == weights && p.lora == lora && p.checkpoints == ckpt && p.activations == acts &&
                  p.grads == grads && p.loss == loss && p.tokens == tokens,
              "7B policy %d: a category differs from its shapes", pol);
        size_t before = weights + lora + ckpt + acts + as * Sl * C + as * Sl * (5 * C + 2 * Q + 2 * KV) +
                        as * Sl * C * 2 + 4 * Sl + tokens;
        size_t saved = as * Sl * (2 * C + 2 * Q + 2 * KV) + as * Sl * C * 2 + as * Sl * C;
        before += as * Sl * C;  // hk had a buffer of its own; now dh2
        saved += as * Sl * C;
        if (pol == ACT_RECOMPUTE) {  // the final residual had a buffer of its own; now the shared h
            before += as * Sl * C;
            saved += as * Sl * C;
        }
        CHECK(p.total == before - saved, "7B policy %d: plan %zu bytes, want %zu - %zu", pol, p.total, before, saved);
        fprintf(stderr, "7B at 64K, policy %d: plan %.2f GiB (was %.2f GiB without reuse; gradient block %.2f GiB)\n",
                pol, p.total / 1073741824.0, before / 1073741824.0, p.grads / 1073741824.0);
    }
}

int main(void) {
    big_ws_backend = *backend_cpu();
    big_ws_backend.attention_bwd_ws_bytes = big_ws_bytes;
    char d1[64] = "/tmp/lemo-tiny-mem-llama-XXXXXX", d2[64] = "/tmp/lemo-tiny-mem-qwen-XXXXXX";
    if (!mkdtemp(d1) || !mkdtemp(d2)) return 1;
    TinySpec llama = {3, 16, 4, 2, 4, 24, 32, 1, 0, 1, 0.3f};  // q/k/v/o biases, tied
    TinySpec qwen = {3, 16, 4, 1, 6, 64, 32, 0, 1, 0, 0.3f};   // q/k/v biases, NKV 1, HS 6
    if (tiny_model_write(d1, &llama, 31) || tiny_model_write(d2, &qwen, 32)) return 1;
    int all[NT] = {1, 1, 1, 1, 1, 1, 1}, qkvo[NT] = {1, 1, 1, 1, 0, 0, 0};
    // no gate/up adapter: h2 lives in dh2, which the recompute also takes as the output its
    // down_proj adapter needs formed
    int down[NT] = {0, 0, 0, 0, 0, 0, 1};

    same_results("llama all targets", d1, all, 0.2f);
    same_results("llama q,k,v,o", d1, qkvo, 0.0f);
    same_results("qwen2 all targets", d2, all, 0.1f);
    same_results("qwen2 q,k,v,o", d2, qkvo, 0.2f);
    same_results("llama down_proj", d1, down, 0.1f);
    fd_check(d1, all);
    fd_check(d1, qkvo);
    fd_check(d1, down);
    plan_7b();
    tiny_model_remove(d1), tiny_model_remove(d2);
    return check_done("test_model_memory");
}
