/* test_model_offload.c: the activation policies (ACT_KEEP, ACT_RECOMPUTE, ACT_OFFLOAD,
 * ACT_OFFLOAD_ATT), one for every layer or mixed layer by layer, give the same loss and LoRA
 * gradients bit for bit, over consecutive steps (the two device slots of offloaded layer
 * inputs and attention outputs are reused) and with kept-index lists; the memory plan moves
 * the layer checkpoints (and attention outputs) to the host, layer by layer; and without a
 * down_proj adapter (dL/da in the layer's own buffer, swiglu backward in place) the gradients
 * still match finite differences. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "model.h"
#include "tiny_model.h"

#define S 12

/* The CPU backend's workspace sizes with bf16 activations: plans of CUDA's element size. */
static BackendSizes cpu_sizes_bf16;

static int32_t in1[S] = {1, 5, 9, 3, 17, 22, 8, 30, 2, 14, 6, 11};
static int32_t in2[S] = {4, 4, 19, 7, 1, 0, 31, 12, 12, 5, 28, 3};

static Model *load_act(const char *dir, const ActPolicy *act, const int *targets) {
    LoraSpec spec = {2, 4.0f, 0.0f, {0}};
    memcpy(spec.targets, targets, sizeof spec.targets);
    return tiny_model_load_act(dir, S, &spec, act);
}
static Model *load(const char *dir, int policy, const int *targets) {
    ActPolicy act = act_uniform(policy);
    return load_act(dir, &act, targets);
}

/* Two steps (different windows, dropout off) accumulating into the gradients; returns both losses. */
static void two_steps(Model *m, const int *const *kept, const int *nk, float *g, double loss[2]) {
    int32_t tg[S];
    long c;
    model_zero_grads(m);
    for (int k = 0; k < 2; k++) {
        const int32_t *in = k ? in2 : in1;
        for (int i = 0; i < S; i++) tg[i] = i + 1 < S ? in[i + 1] : -1;
        loss[k] = model_step(m, in, tg, S, &(LemoSelect){LEMO_SEL_GIVEN, 0, kept, nk}, 1, 1, 1.0f, 55 + k, &c);
    }
    m->be->copy_to_host(g, m->lora_grads, 4 * m->n_lora);
}

#define NPOL (ACT_OFFLOAD_ATT + 1)  // every activation policy

static void same_results(const char *dir, const int *targets, const char *what) {
    int keep[] = {0, 1, 4, 5, 6, 9, 11};
    const int *kept[3] = {NULL, keep, NULL};
    int nk[3] = {S, 7, S};
    for (int pass = 0; pass < 2; pass++) {
        const int *const *kp = pass ? kept : NULL;
        Model *m[NPOL];
        float *g[NPOL];
        double loss[NPOL][2];
        for (int p = 0; p < NPOL; p++) {
            m[p] = load(dir, p, targets);
            g[p] = malloc(4 * m[p]->n_lora);
            two_steps(m[p], kp, pass ? nk : NULL, g[p], loss[p]);
        }
        for (int p = 1; p < NPOL; p++) {
            CHECK(loss[p][0] == loss[0][0] && loss[p][1] == loss[0][1],
                  "%s%s: policy %d losses %.9g %.9g vs keep %.9g %.9g", what, pass ? " kept" : "", p, loss[p][0],
                  loss[p][1], loss[0][0], loss[0][1]);
            CHECK(!memcmp(g[p], g[0], 4 * m[0]->n_lora), "%s%s: policy %d changes the gradients", what,
                  pass ? " kept" : "", p);
        }
        for (int p = 0; p < NPOL; p++) {
            free(g[p]);
            model_free(m[p]);
        }
    }
}

/* Per-layer mixes on a 6-layer model against keeping everything: kept layers between
 * offloaded ones, runs of offloaded attention outputs (the shared activations rotate through
 * the device pair around kept layers), each policy last, the offloaded pair holding the final
 * residual or not. */
static void mixed_results(const char *dir, const int *targets) {
    enum { K = ACT_KEEP, R = ACT_RECOMPUTE, O = ACT_OFFLOAD, A = ACT_OFFLOAD_ATT };
    static const unsigned char mixes[][6] = {
        {A, A, K, O, R, A}, {O, K, A, K, O, K}, {R, O, O, R, K, O}, {A, R, A, O, A, R}, {K, K, K, K, K, A},
        {K, A, K, A, K, R},
    };
    int keep[] = {0, 2, 3, 4, 7, 8, 10, 11};
    const int *kept[6] = {NULL, keep, keep, NULL, keep, NULL};
    int nk[6] = {S, 8, 8, S, 8, S};
    for (int pass = 0; pass < 2; pass++) {
        const int *const *kp = pass ? kept : NULL;
        Model *m0 = load(dir, ACT_KEEP, targets);
        float *g0 = malloc(4 * m0->n_lora), *g = malloc(4 * m0->n_lora);
        double l0[2], l[2];
        two_steps(m0, kp, pass ? nk : NULL, g0, l0);
        for (size_t x = 0; x < sizeof mixes / sizeof mixes[0]; x++) {
            ActPolicy act = {.all = ACT_RECOMPUTE, .n = 6};
            memcpy(act.layer, mixes[x], 6);
            Model *m = load_act(dir, &act, targets);
            two_steps(m, kp, pass ? nk : NULL, g, l);
            CHECK(l[0] == l0[0] && l[1] == l0[1], "mix %zu%s: losses %.9g %.9g vs keep %.9g %.9g", x,
                  pass ? " kept" : "", l[0], l[1], l0[0], l0[1]);
            CHECK(!memcmp(g, g0, 4 * m->n_lora), "mix %zu%s changes the gradients", x, pass ? " kept" : "");
            model_free(m);
        }
        free(g0), free(g);
        model_free(m0);
    }
    // a per-layer policy must name every layer
    Err e = {0};
    ActPolicy five = {.all = ACT_RECOMPUTE, .n = 5};
    LoraSpec spec = {2, 4.0f, 0.0f, {1, 1, 1, 1, 0, 0, 0}};
    CHECK(model_load(backend_cpu(), dir, NULL, S, &spec, &five, NULL, 7, &e) == NULL && !strcmp(e.param, "memory.layers") &&
              strstr(e.msg, "has 6"),
          "a 5-entry policy for 6 layers: %s (%s)", e.msg, e.param);
}

/* The plan of a per-layer policy on L layers: device inputs of their own for kept and
 * recomputed layers (and the final residual unless layer L-1 offloads), the offloaded pair
 * when any layer offloads, host copies of offloaded layers but the last, one activation set
 * per kept layer plus the shared one. */
static void mixed_plan(const ModelConfig *mc) {
    enum { K = ACT_KEEP, R = ACT_RECOMPUTE, O = ACT_OFFLOAD, A = ACT_OFFLOAD_ATT };
    LoraSpec spec = {8, 16, 0, {1, 1, 1, 1, 0, 0, 0}};
    size_t Sx = 1024, slot = Sx * mc->hidden * 2;
    size_t pair = (Sx * mc->n_heads * mc->head_dim * 2 + 255) / 256 * 256 + (4 * Sx * mc->n_heads + 255) / 256 * 256;
    MemPlan keep, rec, p;
    cpu_sizes_bf16 = backend_sizes(backend_cpu());
    cpu_sizes_bf16.act_size = 2;
    model_plan(mc, (int)Sx, &spec, &(ActPolicy){.all = K}, NULL, &cpu_sizes_bf16, &keep);
    model_plan(mc, (int)Sx, &spec, &(ActPolicy){.all = R}, NULL, &cpu_sizes_bf16, &rec);
    size_t set = keep.activations / mc->n_layers;  // one layer's activation set
    CHECK(set * mc->n_layers == keep.activations && rec.activations == set, "activation sets: %zu keep, %zu recompute",
          keep.activations, rec.activations);
    ActPolicy act = {.all = R, .n = 6};
    memcpy(act.layer, (unsigned char[6]){A, K, O, R, K, A}, 6);  // layer 5 offloads: its output in the pair
    model_plan(mc, (int)Sx, &spec, &act, NULL, &cpu_sizes_bf16, &p);
    // own inputs: layers 1, 3, 4; the pair; host: inputs 0 and 2, attention output 0
    CHECK(p.checkpoints == 5 * slot, "mix A K O R K A: %zu checkpoint bytes, want %zu", p.checkpoints, 5 * slot);
    CHECK(p.host == 2 * slot + pair, "mix A K O R K A: %zu host bytes, want %zu", p.host, 2 * slot + pair);
    CHECK(p.activations == 3 * set + pair, "mix A K O R K A: %zu activation bytes, want %zu", p.activations,
          3 * set + pair);
    memcpy(act.layer, (unsigned char[6]){O, O, O, O, O, R}, 6);  // the final residual in the shared h
    model_plan(mc, (int)Sx, &spec, &act, NULL, &cpu_sizes_bf16, &p);
    CHECK(p.checkpoints == 3 * slot && p.host == 5 * slot && p.activations == set,
          "mix O O O O O R: %zu checkpoint, %zu host, %zu activation bytes", p.checkpoints, p.host, p.activations);
    memcpy(act.layer, (unsigned char[6]){O, O, O, O, O, K}, 6);  // kept last: the final residual on its own
    model_plan(mc, (int)Sx, &spec, &act, NULL, &cpu_sizes_bf16, &p);
    CHECK(p.checkpoints == 4 * slot && p.activations == 2 * set, "mix O O O O O K: %zu checkpoint, %zu activation bytes",
          p.checkpoints, p.activations);
}

/* Central differences on sampled LoRA parameters vs the analytic gradient. */
static void fd_check(const char *dir, const int *targets, int policy) {
    Model *m = load(dir, policy, targets);
    int32_t tg[S];
    for (int i = 0; i < S; i++) tg[i] = i + 1 < S ? in1[i + 1] : -1;
    long c;
    float *g = tiny_step_grads(m, in1, tg, S, NULL, NULL, 0, 1, &c);
    int bad = tiny_fd_disagreements(m, g, in1, tg, S, NULL, NULL, 0, 1, 60, 3, "offload");
    CHECK(bad == 0, "policy %d, q/k/v/o adapters: %d of 60 sampled gradients disagree with finite differences", policy,
          bad);
    free(g);
    model_free(m);
}

int main(void) {
    char dir[64] = "/tmp/lemo-tiny-offload-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    TinySpec llama = {3, 16, 4, 2, 4, 24, 32, 1, 0, 0, 0.3f};
    if (tiny_model_write(dir, &llama, 21)) return 1;
    int all[JOB_MAX_TARGETS] = {1, 1, 1, 1, 1, 1, 1}, qkvo[JOB_MAX_TARGETS] = {1, 1, 1, 1, 0, 0, 0};

    same_results(dir, all, "all targets");
    same_results(dir, qkvo, "q,k,v,o");
    fd_check(dir, qkvo, ACT_OFFLOAD);
    fd_check(dir, qkvo, ACT_OFFLOAD_ATT);

    char dir6[64] = "/tmp/lemo-tiny-offload6-XXXXXX";
    if (!mkdtemp(dir6)) return 1;
    TinySpec six = {6, 16, 4, 2, 4, 24, 32, 1, 0, 0, 0.3f};
    if (tiny_model_write(dir6, &six, 22)) return 1;
    mixed_results(dir6, all);
    mixed_results(dir6, qkvo);
    ModelConfig mc6;
    Err e6;
    CHECK(model_config_load(dir6, &mc6, &e6) == 0, "config: %s", e6.msg);
    mixed_plan(&mc6);

    // the plan: offloading keeps two layer inputs on the device and L-1 on the host
    ModelConfig mc;
    Err e;
    char cfg[128];
    snprintf(cfg, sizeof cfg, "%s", dir);
    CHECK(model_config_load(cfg, &mc, &e) == 0, "config: %s", e.msg);
    LoraSpec spec = {8, 16, 0, {1, 1, 1, 1, 0, 0, 0}};
    MemPlan rec, off;
    cpu_sizes_bf16 = backend_sizes(backend_cpu());
    cpu_sizes_bf16.act_size = 2;
    model_plan(&mc, 1024, &spec, &(ActPolicy){.all = ACT_RECOMPUTE}, NULL, &cpu_sizes_bf16, &rec);
    model_plan(&mc, 1024, &spec, &(ActPolicy){.all = ACT_OFFLOAD}, NULL, &cpu_sizes_bf16, &off);
    size_t slot = (size_t)1024 * mc.hidden * 2;
    // recomputed, the last layer's output lives in the shared activations' h: 3 layer inputs
    CHECK(rec.checkpoints == 3 * slot && rec.host == 0, "recompute plan: %zu checkpoint bytes, %zu host", rec.checkpoints,
          rec.host);
    CHECK(off.checkpoints == 2 * slot && off.host == 2 * slot, "offload plan: %zu on the device, %zu on the host",
          off.checkpoints, off.host);
    CHECK(rec.total - off.total == slot, "offload saves %zu device bytes, want %zu", rec.total - off.total, slot);
    // with the attention outputs: one more (S, Q) + (NH, S) pair on the device, L-1 on the host
    MemPlan oa;
    model_plan(&mc, 1024, &spec, &(ActPolicy){.all = ACT_OFFLOAD_ATT}, NULL, &cpu_sizes_bf16, &oa);
    size_t pair = ((size_t)1024 * mc.n_heads * mc.head_dim * 2 + 255) / 256 * 256 + ((size_t)4 * 1024 * mc.n_heads + 255) / 256 * 256;
    CHECK(oa.total - off.total == pair && oa.host - off.host == (size_t)(mc.n_layers - 1) * pair,
          "offload_attention plan: %zu more device bytes, %zu more host, want %zu and %zu", oa.total - off.total,
          oa.host - off.host, pair, (size_t)(mc.n_layers - 1) * pair);
    // a down_proj adapter needs its own (S, F) gradient buffer; without one the layer's `a` serves
    MemPlan dn;
    spec.targets[TARGET_DOWN] = 1;
    model_plan(&mc, 1024, &spec, &(ActPolicy){.all = ACT_RECOMPUTE}, NULL, &cpu_sizes_bf16, &dn);
    CHECK(dn.grads - rec.grads == (size_t)1024 * mc.ffn * 2, "down_proj gradient buffer: %zu bytes",
          dn.grads - rec.grads);
    tiny_model_remove(dir), tiny_model_remove(dir6);
    return check_done("test_model_offload");
}
