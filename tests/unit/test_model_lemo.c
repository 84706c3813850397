/* test_model_lemo.c: LeMo's token elimination inside the step (DESIGN section 8), on tiny
 * random models on the CPU:
 *   - keep 1 everywhere is the dense model bit for bit;
 *   - exact scores: layer 0's kept blocks are the top-k of a brute-force block score formed
 *     here from the model's own weights, block 0 among them;
 *   - the rows a layer picks are the ones its recompute and backward use: giving the picked
 *     lists back (LEMO_SEL_GIVEN) reproduces loss and gradients bit for bit, under every
 *     activation policy, and a forward-only step picks the same rows;
 *   - random scores: deterministic by seed, different across seeds, the same count of blocks;
 *   - finite differences of the whole model with LeMo selecting (exact and random), with the
 *     selection held fixed (it is not differentiated);
 *   - the memory plan: a kept layer's attention activations shrink with its kept rows, and a
 *     dense evaluation of a model whose kept layers hold only their kept rows equals the dense
 *     model's;
 *   - the MLP in row tiles (memory.mlp_tiles) equals the untiled MLP within fp32 rounding, with
 *     dropout, under every policy, and passes finite differences;
 *   - `lemo estimate` prices a LeMo job as the model allocates it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "predictor.h"
#include "cpu/cpu_ops.h"
#include "estimate.h"
#include "model.h"
#include "tiny_model.h"

#define S 24
#define BLK 4
#define NB (S / BLK)

static int32_t in[S], tg[S];

/* Predictor scores: random predictors of hidden widths PH over the tiny model's head_dim 4
 * (host memory is the CPU backend's device memory). */
#define PH 8
static float pred_w[3 * 2 * (PH * BLK * 4 + PH * PH + 4 * PH)];

static LemoSpec schedule(int scores, float keep, int L) {
    LemoSpec z = {.on = 1, .scores = scores, .block = BLK, .n_layers = L, .seed = 77};
    for (int l = 0; l < L; l++) z.keep[l] = keep;
    if (scores == LEMO_SCORES_PREDICTOR) {
        unsigned long long r = 99;
        for (size_t i = 0; i < sizeof pred_w / sizeof pred_w[0]; i++) pred_w[i] = 0.5f * tiny_randn(&r);
        z.pred_h1 = z.pred_h2 = PH;
        z.pred_w = pred_w;
    }
    return z;
}

static Model *load(const char *dir, int policy, const LemoSpec *z, float dropout) {
    LoraSpec spec = {2, 4.0f, dropout, {1, 1, 1, 1, 1, 1, 1}};
    ActPolicy act = act_uniform(policy);
    return tiny_model_load_lemo(dir, S, &spec, &act, z);
}

/* One step with backward from zeroed gradients: loss, gradients (g: n_lora floats). */
static double step(Model *m, const LemoSelect *sel, int train, float *g) {
    long c;
    model_zero_grads(m);
    double l = model_step(m, in, tg, S, sel, 1, train, 1.0f, 1234, &c);
    m->be->copy_to_host(g, m->lora_grads, 4 * m->n_lora);
    return l;
}

/* Each layer's kept rows after the last step, copied to the host: rows[l] (n[l] of them). */
typedef struct { int n[8]; int rows[8][S]; const int *p[8]; } Kept;
static void kept_of(const Model *m, Kept *k) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        k->n[l] = m->n_kept[l];
        if (k->n[l] == S) {
            k->p[l] = NULL;
            continue;
        }
        m->be->copy_to_host(k->rows[l], m->kept + (size_t)l * m->S_max, 4 * (size_t)k->n[l]);
        k->p[l] = k->rows[l];
    }
}
static int kept_equal(const Kept *a, const Kept *b, int L) {
    for (int l = 0; l < L; l++) {
        if (a->n[l] != b->n[l] || (!a->p[l]) != (!b->p[l])) return 0;
        if (a->p[l] && memcmp(a->rows[l], b->rows[l], 4 * (size_t)a->n[l])) return 0;
    }
    return 1;
}

/* Brute-force exact block scores of layer 0 (DESIGN section 8 step 2), in double, from the
 * model's weights on the CPU: h = rmsnorm(embedding), q, k = h W^T (+ bias) + LoRA, pre-RoPE. */
static void brute_scores_layer0(Model *m, double *score) {
    const ModelConfig *c = &m->cfg;
    int C = c->hidden, NH = c->n_heads, NKV = c->n_kv_heads, HS = c->head_dim, Q = NH * HS, KV = NKV * HS;
    float *x = malloc(4 * (size_t)S * C), *h = malloc(4 * (size_t)S * C), rstd[S];
    float *q = calloc((size_t)S * Q, 4), *k = calloc((size_t)S * KV, 4), *t = malloc(4 * (size_t)S * 2);
    const LayerWeights *w = &m->layers[0];
    int tok[S];
    for (int i = 0; i < S; i++) tok[i] = in[i];
    cpu_embedding_forward(x, tok, m->wte, S, C);
    cpu_rmsnorm_forward(h, rstd, x, w->attn_norm, S, C, c->norm_eps);
    const LoraSlot *sq = &m->slots[TARGET_Q], *sk = &m->slots[TARGET_K];
    cpu_matmul_forward(q, h, w->wq, w->bq, S, C, Q, 0);
    cpu_lora_forward(q, t, h, m->lora_params + sq->a, m->lora_params + sq->b, S, C, Q, 2, m->lora_scale, 0, 0);
    cpu_matmul_forward(k, h, w->wk, w->bk, S, C, KV, 0);
    cpu_lora_forward(k, t, h, m->lora_params + sk->a, m->lora_params + sk->b, S, C, KV, 2, m->lora_scale, 0, 0);
    double A[NB][NB] = {{0}};
    for (int i = 0; i < S; i++)
        for (int j = 0; j <= i; j++) {
            double sum = 0;
            for (int hh = 0; hh < NH; hh++) {
                double d = 0;
                for (int e = 0; e < HS; e++) d += (double)q[i * Q + hh * HS + e] * k[j * KV + (hh / (NH / NKV)) * HS + e];
                sum += d > 0 ? d : 0;
            }
            sum /= NH;
            if (sum > A[i / BLK][j / BLK]) A[i / BLK][j / BLK] = sum;
        }
    for (int n = 0; n < NB; n++) {
        score[n] = 0;
        for (int mm = n; mm < NB; mm++) score[n] += A[mm][n];
        for (int mm = 0; mm < n; mm++) score[n] += A[n][mm];
    }
    free(x), free(h), free(q), free(k), free(t);
}

int main(void) {
    char dir[64] = "/tmp/lemo-tiny-lemo-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    TinySpec spec = {3, 16, 4, 2, 4, 24, 32, 1, 0, 0, 0.3f};
    if (tiny_model_write(dir, &spec, 21)) return 1;
    unsigned long long r = 5;
    for (int i = 0; i < S; i++) in[i] = (int)((r = r * 6364136223846793005ull + 1442695040888963407ull) >> 59);
    for (int i = 0; i < S; i++) tg[i] = i + 1 < S ? in[i + 1] : -1;
    const int L = spec.layers;
    LemoSelect sched = {LEMO_SEL_SCHEDULE, 99, NULL, NULL};

    // 1. keep 1 everywhere = dense, bit for bit
    {
        Model *d = load(dir, ACT_RECOMPUTE, NULL, 0), *z = NULL;
        LemoSpec one = schedule(LEMO_SCORES_EXACT, 1.0f, L);
        one.on = 0;
        for (int l = 0; l < L; l++) one.on |= one.keep[l] < 1;
        z = load(dir, ACT_RECOMPUTE, &one, 0);
        float *g1 = malloc(4 * d->n_lora), *g2 = malloc(4 * d->n_lora);
        double l1 = step(d, NULL, 0, g1), l2 = step(z, &sched, 0, g2);
        CHECK(l1 == l2 && !memcmp(g1, g2, 4 * d->n_lora), "keep 1: loss %.9g vs dense %.9g, gradients %s", l2, l1,
              memcmp(g1, g2, 4 * d->n_lora) ? "differ" : "equal");
        model_free(d), model_free(z), free(g1), free(g2);
    }

    // 2. exact scores pick layer 0's top-k blocks of the brute-force score, block 0 always
    {
        LemoSpec z = schedule(LEMO_SCORES_EXACT, 0.5f, L);
        Model *m = load(dir, ACT_RECOMPUTE, &z, 0);
        float *g = malloc(4 * m->n_lora);
        step(m, &sched, 0, g);
        Kept k;
        kept_of(m, &k);
        double sc[NB];
        brute_scores_layer0(m, sc);
        int kb = lemo_blocks_kept(0.5f, NB), want[NB] = {0};
        want[0] = 1;  // the sink, then the best of the rest (lower block first on ties)
        for (int got = 1; got < kb; got++) {
            int best = -1;
            for (int n = 1; n < NB; n++)
                if (!want[n] && (best < 0 || sc[n] > sc[best])) best = n;
            want[best] = 1;
        }
        CHECK(k.n[0] == kb * BLK, "layer 0 kept %d rows, want %d", k.n[0], kb * BLK);
        int ok = 1;
        for (int i = 0, b = 0; b < NB; b++)
            if (want[b])
                for (int e = 0; e < BLK; e++, i++) ok &= i < k.n[0] && k.rows[0][i] == b * BLK + e;
        CHECK(ok, "layer 0's kept rows are not the brute-force top-%d blocks (scores %.4g %.4g %.4g %.4g %.4g %.4g)",
              kb, sc[0], sc[1], sc[2], sc[3], sc[4], sc[5]);
        // the blocks differ between layers somewhere, or the test says nothing about per-layer inputs
        CHECK(k.n[1] == kb * BLK && k.n[2] == kb * BLK, "layers 1, 2 kept %d, %d rows", k.n[1], k.n[2]);
        model_free(m), free(g);
    }

    // 3. the picked rows are the ones used: given back they reproduce the step bit for bit, under
    //    every policy; a forward-only step picks the same rows; exact and random
    for (int scores = 0; scores < LEMO_SCORES_N; scores++) {
        LemoSpec z = schedule(scores, 0.5f, L);
        z.keep[L - 1] = 1.0f;  // one dense layer among sparse ones
        Model *ref = load(dir, ACT_RECOMPUTE, &z, 0);
        float *g0 = malloc(4 * ref->n_lora), *g = malloc(4 * ref->n_lora);
        double l0 = step(ref, &sched, 0, g0);
        Kept k0, k1;
        kept_of(ref, &k0);
        long c;
        double lf = model_step(ref, in, tg, S, &sched, 0, 0, 1.0f, 1234, &c);
        kept_of(ref, &k1);
        CHECK(lf == l0 && kept_equal(&k0, &k1, L), "%s: forward-only step: loss %.9g vs %.9g, rows %s",
              lemo_score_names[scores], lf, l0, kept_equal(&k0, &k1, L) ? "same" : "differ");
        CHECK(k0.n[L - 1] == S && k0.n[0] == lemo_blocks_kept(0.5f, NB) * BLK, "%s: kept %d and %d rows",
              lemo_score_names[scores], k0.n[0], k0.n[L - 1]);
        for (int pol = 0; pol < ACT_N; pol++) {
            Model *m = load(dir, pol, &z, 0);
            double l1 = step(m, &sched, 0, g);
            CHECK(l1 == l0 && !memcmp(g, g0, 4 * m->n_lora), "%s under %s: loss %.9g vs %.9g, gradients %s",
                  lemo_score_names[scores], act_names[pol], l1, l0, memcmp(g, g0, 4 * m->n_lora) ? "differ" : "equal");
            double l2 = step(m, &(LemoSelect){LEMO_SEL_GIVEN, 0, k0.p, k0.n}, 0, g);
            CHECK(l2 == l0 && !memcmp(g, g0, 4 * m->n_lora), "%s under %s, rows given back: loss %.9g vs %.9g",
                  lemo_score_names[scores], act_names[pol], l2, l0);
            model_free(m);
        }
        // LeMo changes the result (else nothing here could tell a dropped token from a kept one)
        Model *d = load(dir, ACT_RECOMPUTE, NULL, 0);
        double ld = step(d, NULL, 0, g);
        CHECK(ld != l0, "%s: LeMo's loss equals the dense loss %.9g", lemo_score_names[scores], ld);
        model_free(d), model_free(ref), free(g0), free(g);
    }

    // 4. random scores: deterministic by seed, other seeds other blocks
    {
        LemoSpec z = schedule(LEMO_SCORES_RANDOM, 0.5f, L);
        Model *m = load(dir, ACT_RECOMPUTE, &z, 0);
        float *g = malloc(4 * m->n_lora);
        Kept a, b;
        step(m, &sched, 0, g);
        kept_of(m, &a);
        step(m, &sched, 0, g);
        kept_of(m, &b);
        CHECK(kept_equal(&a, &b, L), "random: the same seed picked other rows");
        int differ = 0;
        for (uint64_t s = 1; s <= 8; s++) {
            step(m, &(LemoSelect){LEMO_SEL_SCHEDULE, s, NULL, NULL}, 0, g);
            kept_of(m, &b);
            differ += !kept_equal(&a, &b, L);
            CHECK(b.n[0] == a.n[0] && b.rows[0][0] == 0, "random seed %llu: %d rows, first %d", (unsigned long long)s,
                  b.n[0], b.rows[0][0]);
        }
        CHECK(differ >= 6, "random: only %d of 8 other seeds picked other rows", differ);
        // layers of one window draw apart (a layer seed, not only the window's)
        step(m, &sched, 0, g);
        kept_of(m, &a);
        int same_layers = !memcmp(a.rows[0], a.rows[1], 4 * (size_t)a.n[0]) && !memcmp(a.rows[1], a.rows[2], 4 * (size_t)a.n[0]);
        CHECK(!same_layers, "random: every layer picked the same rows");
        model_free(m), free(g);
    }

    // 5. finite differences with LeMo selecting (the selection held fixed: given back), with
    //    dropout on for the random control
    for (int scores = 0; scores < LEMO_SCORES_N; scores++) {
        LemoSpec z = schedule(scores, 0.5f, L);
        float drop = scores == LEMO_SCORES_RANDOM ? 0.1f : 0.0f;
        Model *m = load(dir, ACT_RECOMPUTE, &z, drop);
        long c;
        model_zero_grads(m);
        model_step(m, in, tg, S, &sched, 1, drop > 0, 1.0f, 1234, &c);
        float *g = malloc(4 * m->n_lora);
        m->be->copy_to_host(g, m->lora_grads, 4 * m->n_lora);
        Kept k;
        kept_of(m, &k);
        double gmax = 0;
        for (size_t i = 0; i < m->n_lora; i++) gmax = fmax(gmax, fabs(g[i]));
        CHECK(gmax > 1e-3, "%s: gradients ~0", lemo_score_names[scores]);
        char what[64];
        snprintf(what, sizeof what, "lemo %s", lemo_score_names[scores]);
        int bad = tiny_fd_disagreements(m, g, in, tg, S, k.p, k.n, drop > 0, 1234, 80, 9, what);
        CHECK(bad == 0, "%s: %d of 80 gradients disagree with finite differences", what, bad);
        model_free(m), free(g);
    }

    // 6. memory: kept layers hold only their kept rows; a dense evaluation still runs (in their
    //    dense views) and equals the dense model's, with adapters on every target and on the
    //    attention ones only (then h2 lives in dh2, in the views too)
    for (int attn_only = 0; attn_only < 2; attn_only++) {
        LemoSpec z = schedule(LEMO_SCORES_EXACT, 0.5f, L);
        LoraSpec ls = {2, 4.0f, 0, {1, 1, 1, 1, !attn_only, !attn_only, !attn_only}};
        ActPolicy keep = act_uniform(ACT_KEEP);
        Model *d = tiny_model_load_lemo(dir, S, &ls, &keep, NULL), *m = tiny_model_load_lemo(dir, S, &ls, &keep, &z);
        CHECK(m->plan.activations < d->plan.activations, "kept layers with LeMo: %zu activation bytes, dense %zu",
              m->plan.activations, d->plan.activations);
        CHECK(m->n_acts == L && m->eval_acts[0].h && m->eval_acts[L - 1].h, "the dense views serve evaluations (%d sets)",
              m->n_acts);
        long c;
        double ld = model_step(d, in, tg, S, NULL, 0, 0, 1.0f, 0, &c);
        double lm = model_step(m, in, tg, S, NULL, 0, 0, 1.0f, 0, &c);
        CHECK(ld == lm, "dense evaluation of a LeMo model: %.9g vs %.9g", lm, ld);
        float *g = malloc(4 * m->n_lora);
        step(m, &sched, 0, g);
        CHECK(m->n_kept[0] < S, "the LeMo model trains sparse after an evaluation");
        model_free(d), model_free(m), free(g);
    }

    // 7. the tiled MLP: the same results as untiled within fp32 rounding (dropout masks included),
    //    under every policy, with LeMo selecting; finite differences; smaller activations
    for (int pass = 0; pass < 2; pass++) {
        LemoSpec z = schedule(LEMO_SCORES_EXACT, 0.5f, L);
        float drop = pass ? 0.1f : 0.0f;
        Model *u = load(dir, ACT_RECOMPUTE, &z, drop);
        float *g0 = malloc(4 * u->n_lora), *g = malloc(4 * u->n_lora);
        double l0 = step(u, &sched, pass, g0);
        for (int tiles = 2; tiles <= 5; tiles += 3) {  // 12-row and 5-row tiles (the last one short)
            for (int pol = 0; pol < ACT_N; pol++) {
                LoraSpec ls = {2, 4.0f, drop, {1, 1, 1, 1, 1, 1, 1}};
                ActPolicy act = act_uniform(pol);
                act.mlp_tiles = tiles;
                Model *m = tiny_model_load_lemo(dir, S, &ls, &act, &z);
                CHECK(m->plan.activations < u->plan.activations || pol != ACT_RECOMPUTE,
                      "%d tiles: %zu activation bytes, untiled %zu", tiles, m->plan.activations, u->plan.activations);
                double l1 = step(m, &sched, pass, g);
                double worst = 0, gn = 0;
                for (size_t i = 0; i < m->n_lora; i++) worst = fmax(worst, fabs(g[i] - g0[i])), gn = fmax(gn, fabs(g0[i]));
                CHECK(fabs(l1 - l0) <= 1e-5 * fabs(l0) && worst <= 1e-4 * gn,
                      "%d tiles under %s%s: loss %.9g vs %.9g, largest gradient difference %.3g of %.3g", tiles,
                      act_names[pol], pass ? " with dropout" : "", l1, l0, worst, gn);
                long c;
                double le = model_step(m, in, tg, S, NULL, 0, 0, 1.0f, 0, &c), lu = model_step(u, in, tg, S, NULL, 0, 0, 1.0f, 0, &c);
                CHECK(fabs(le - lu) <= 1e-5 * fabs(lu), "%d tiles under %s: dense evaluation %.9g vs %.9g", tiles,
                      act_names[pol], le, lu);
                if (pol == ACT_OFFLOAD_ATT && tiles == 5) {
                    Kept k;
                    model_zero_grads(m);
                    model_step(m, in, tg, S, &sched, 1, pass, 1.0f, 1234, &c);
                    m->be->copy_to_host(g, m->lora_grads, 4 * m->n_lora);
                    kept_of(m, &k);
                    int bad = tiny_fd_disagreements(m, g, in, tg, S, k.p, k.n, pass, 1234, 60, 13, "tiled MLP");
                    CHECK(bad == 0, "tiled MLP%s: %d of 60 gradients disagree with finite differences",
                          pass ? " with dropout" : "", bad);
                }
                model_free(m);
            }
        }
        model_free(u), free(g0), free(g);
    }

    // 8. the estimate prices LeMo as the trainer runs it: its activations are the loaded model's
    //    plan (kept layers holding their kept rows), and the allocation is that plan
    {
        char train[600], cfg[1400];
        snprintf(train, sizeof train, "%s/train.jsonl", dir);
        FILE *f = fopen(train, "w");
        fprintf(f, "{\"text\": \"a b c\"}\n");
        fclose(f);
        snprintf(cfg, sizeof cfg, "{\"model\":\"%s\",\"train_file\":\"%s\",\"output_dir\":\"%s/out\",\"context_length\":%d,"
                 "\"lora\":{\"r\":2,\"alpha\":4,\"target_modules\":[\"q\",\"k\",\"v\",\"o\",\"gate\",\"up\",\"down\"]},"
                 "\"memory\":{\"checkpointing\":false},\"lemo\":{\"keep\":0.5,\"block\":32,\"dense_layers\":[0]}}",
                 dir, train, dir, 4 * 32);
        JobConfig jc;
        Err e;
        CHECK(job_config_parse(cfg, &jc, &e) == 0, "config: %s", e.msg);
        json_t *est = NULL;
        CHECK(estimate_job(&jc, "cpu", 0, 0, 0, &est, &e) == 0, "estimate: %s", e.msg);
        LemoSpec z;
        CHECK(lemo_resolve(&jc.lemo, L, &z, &e) == 0 && z.on, "resolve: %s", e.msg);
        LoraSpec ls = {2, 4.0f, 0, {1, 1, 1, 1, 1, 1, 1}};
        size_t before = backend_cpu()->mem_used();
        Model *m = tiny_model_load_lemo(dir, 4 * 32, &ls, &jc.act, &z);
        size_t used = backend_cpu()->mem_used() - before;
        json_t *bd = json_object_get(est, "breakdown"), *lm = json_object_get(est, "lemo");
        size_t act = (size_t)json_integer_value(json_object_get(bd, "activations"));
        CHECK(act == m->plan.activations + m->plan.grads, "estimate's activations %zu, the model's plan %zu", act,
              m->plan.activations + m->plan.grads);
        CHECK(used >= m->plan.total && used <= m->plan.total + m->plan.total / 50 + 65536,
              "allocated %zu bytes for a plan of %zu", used, m->plan.total);
        CHECK(lm && json_array_size(json_object_get(lm, "kept_fraction")) == (size_t)L &&
                  json_real_value(json_array_get(json_object_get(lm, "kept_fraction"), 1)) == 0.5,
              "the estimate's kept_fraction");
        Model *d = tiny_model_load(dir, 4 * 32, &ls, ACT_KEEP);
        CHECK(m->plan.activations < d->plan.activations, "LeMo's kept layers: %zu bytes, dense %zu", m->plan.activations,
              d->plan.activations);
        model_free(m), model_free(d);
        json_decref(est);
        unlink(train);
    }

    tiny_model_remove(dir);
    // predictor weights on the device for the sparse layers only, in layer order
    {
        LemoSpec z = schedule(LEMO_SCORES_PREDICTOR, 0.5f, L);
        z.keep[0] = 1.0f;  // a dense layer: its predictor is never read
        LemoPredictor p = {.n_w = 5};
        float w[3 * 5];
        for (int i = 0; i < 15; i++) w[i] = (float)i;
        p.w = w;
        size_t bytes;
        Err e = {0};
        const Backend *cpu = backend_cpu();
        float *d = lemo_predictor_upload(cpu, &p, &z, &bytes, &e);
        CHECK(d && bytes == 2 * 5 * sizeof(float) && z.pred_w == d && lemo_sparse_layers(&z) == 2 &&
                  lemo_pred_slot(&z, 1) == 0 && lemo_pred_slot(&z, 2) == 1 && d[0] == 5 && d[9] == 14,
              "the upload holds layers 1 and 2 (%zu bytes, first %g, last %g)", bytes, d ? d[0] : -1, d ? d[9] : -1);
        if (d) cpu->free(d);
    }
    return check_done("test_model_lemo");
}
