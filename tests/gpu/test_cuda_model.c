/* test_cuda_model.c: the whole model on the GPU against the CPU reference.
 *
 * refmodel-22m (Llama shape, GQA, tied embeddings, bf16 on disk) at 2048 tokens,
 * LoRA r=8 on all seven projections, loaded once per backend. LoRA B starts at
 * zero in PEFT, which would make every A gradient zero; so both copies get the
 * same random B (and the same seeded A) before the step. One forward + backward
 * on random tokens, dense, dense in training with LoRA dropout 0.1 (the masks are a
 * function of the seed on both backends), and with a LeMo-style kept set (every other
 * 64-token block dropped in the middle layers), and compares:
 *   - the mean loss: relative difference <= 1e-2 (bf16 activations vs fp32),
 *   - every LoRA gradient tensor: cosine(gpu, cpu) >= 0.99.
 * The same again with the layer checkpoints offloaded to host memory (ACT_OFFLOAD), with
 * the attention outputs too (ACT_OFFLOAD_ATT: the recompute skips the attention forward), and
 * with a policy per layer that mixes all four. Then LeMo selecting inside the step on both
 * backends (the default schedule): random scores must pick the same rows, exact ones nearly
 * the same (bf16 against fp32 scores), and with the CPU's rows the GPU's loss and gradients
 * must agree as above.
 * It prints the loss pair, the lowest cosine and the GPU step time.
 *
 * Needs a GPU and ../shared/models/refmodel-22m (LEMO_SHARED to point elsewhere);
 * skips (77) with the reason otherwise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "check.h"
#include "model.h"
#include "predictor.h"

#define S_TEST 2048

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng_next(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cosine(const float *a, const float *b, size_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : (aa == bb ? 1.0 : 0.0);
}

/* One step on both models (train: with the models' LoRA dropout, the same masks on both);
 * compares loss and every LoRA gradient tensor. */
static void compare_step_train(Model *mc, Model *mg, const int32_t *in, const int32_t *tgt,
                               const int *const *kept, const int *n_kept, int train, const char *what) {
    long cc = 0, cg = 0;
    model_zero_grads(mc);
    model_zero_grads(mg);
    double lc = model_step(mc, in, tgt, S_TEST, &(LemoSelect){LEMO_SEL_GIVEN, 0, kept, n_kept}, 1, train, 1.0f / S_TEST, 7, &cc);
    double t0 = now_s();
    double lg = model_step(mg, in, tgt, S_TEST, &(LemoSelect){LEMO_SEL_GIVEN, 0, kept, n_kept}, 1, train, 1.0f / S_TEST, 7, &cg);
    mg->be->sync();
    double dt = now_s() - t0;
    double mc_loss = lc / (cc ? cc : 1), mg_loss = lg / (cg ? cg : 1);
    double rel = fabs(mg_loss - mc_loss) / fabs(mc_loss);
    printf("%s: loss cpu %.5f gpu %.5f rel %.2e; gpu step %.1f ms\n", what, mc_loss, mg_loss, rel, dt * 1e3);
    CHECK(cc == cg && cc > 0, "%s: counted rows cpu %ld gpu %ld", what, cc, cg);
    CHECK(rel <= 1e-2, "%s: loss cpu %.6f gpu %.6f (rel %.3e)", what, mc_loss, mg_loss, rel);

    size_t n = mc->n_lora;
    float *gc = malloc(n * sizeof(float)), *gg = malloc(n * sizeof(float));
    mc->be->copy_to_host(gc, mc->lora_grads, n * sizeof(float));
    mg->be->copy_to_host(gg, mg->lora_grads, n * sizeof(float));
    double worst = 2.0;
    char worst_name[160] = "";
    int L = mc->cfg.n_layers, R = mc->lora.r;
    for (int l = 0; l < L; l++) {
        for (int t = 0; t < JOB_MAX_TARGETS; t++) {
            const LoraSlot *s = &mc->slots[l * JOB_MAX_TARGETS + t];
            if (s->a < 0) continue;
            for (int isb = 0; isb < 2; isb++) {
                size_t off = isb ? (size_t)s->b : (size_t)s->a, len = (size_t)R * (isb ? s->N : s->K);
                double c = cosine(gg + off, gc + off, len);
                char name[160];
                model_lora_name(mc, l, t, isb, name, sizeof name);
                CHECK(c >= 0.99, "%s: %s gradient cosine %.5f", what, name, c);
                if (c < worst) {
                    worst = c;
                    snprintf(worst_name, sizeof worst_name, "%s", name);
                }
            }
        }
    }
    printf("%s: lowest LoRA gradient cosine %.5f (%s)\n", what, worst, worst_name);
    free(gc);
    free(gg);
}

static void compare_step(Model *mc, Model *mg, const int32_t *in, const int32_t *tgt, const int *const *kept,
                         const int *n_kept, const char *what) {
    compare_step_train(mc, mg, in, tgt, kept, n_kept, 0, what);
}

int main(void) {
    const char *why = NULL;
    const Backend *gpu = backend_cuda(&why);
    if (!gpu) SKIP("CUDA backend unavailable: %s", why ? why : "unknown");
    const char *sd = shared_dir();
    if (!sd) SKIP("no shared directory with models (set LEMO_SHARED)");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/models/refmodel-22m", sd);
    char cfgp[600];
    snprintf(cfgp, sizeof cfgp, "%s/config.json", dir);
    FILE *f = fopen(cfgp, "r");
    if (!f) SKIP("%s not found", cfgp);
    fclose(f);

    LoraSpec ls;
    memset(&ls, 0, sizeof ls);
    ls.r = 8;
    ls.alpha = 16;
    ls.dropout = 0;
    for (int t = 0; t < JOB_MAX_TARGETS; t++) ls.targets[t] = 1;
    Err e;
    Model *mc = model_load(backend_cpu(), dir, NULL, S_TEST, &ls, &(ActPolicy){.all = ACT_RECOMPUTE}, NULL, 42, &e);
    CHECK(mc != NULL, "cpu model_load: %s", e.msg);
    Model *mg = model_load(gpu, dir, NULL, S_TEST, &ls, &(ActPolicy){.all = ACT_RECOMPUTE}, NULL, 42, &e);
    CHECK(mg != NULL, "cuda model_load: %s", e.msg);
    if (!mc || !mg) return check_done("test_cuda_model");
    CHECK(mc->n_lora == mg->n_lora, "LoRA sizes differ: %zu vs %zu", mc->n_lora, mg->n_lora);

    // same A (seeded) on both; give B random values so A gets gradients
    size_t n = mc->n_lora;
    float *p = malloc(n * sizeof(float));
    mc->be->copy_to_host(p, mc->lora_params, n * sizeof(float));
    for (int l = 0; l < mc->cfg.n_layers; l++)
        for (int t = 0; t < JOB_MAX_TARGETS; t++) {
            const LoraSlot *s = &mc->slots[l * JOB_MAX_TARGETS + t];
            if (s->a < 0) continue;
            for (size_t i = 0; i < (size_t)s->N * ls.r; i++)
                p[s->b + i] = (float)((rng_next() >> 40) * (0.1 / 16777216.0) - 0.05);
        }
    mc->be->copy_to_device(mc->lora_params, p, n * sizeof(float));
    mg->be->copy_to_device(mg->lora_params, p, n * sizeof(float));
    free(p);

    int V = mc->cfg.vocab;
    int32_t *in = malloc(S_TEST * sizeof(int32_t)), *tgt = malloc(S_TEST * sizeof(int32_t));
    for (int s = 0; s < S_TEST; s++) in[s] = (int32_t)(rng_next() % V);
    for (int s = 0; s < S_TEST; s++) tgt[s] = s + 1 < S_TEST ? in[s + 1] : -1;

    compare_step(mc, mg, in, tgt, NULL, NULL, "dense");
    // LoRA dropout in training: the masks are a function of the seed, the same on both
    mc->lora.dropout = mg->lora.dropout = 0.1f;
    compare_step_train(mc, mg, in, tgt, NULL, NULL, 1, "dense, dropout 0.1");
    mc->lora.dropout = mg->lora.dropout = 0.0f;

    // kept sets: layers 1..L-2 keep the even 64-token blocks (and the last block)
    int L = mc->cfg.n_layers;
    int *kbuf = malloc((size_t)L * S_TEST * sizeof(int)), n_kept[64];
    const int *kept[64];
    for (int l = 0; l < L; l++) {
        kept[l] = NULL;
        n_kept[l] = S_TEST;
        if (l == 0 || l == L - 1) continue;
        int *k = kbuf + (size_t)l * S_TEST, m = 0;
        for (int s = 0; s < S_TEST; s++)
            if ((s / 64) % 2 == 0 || s >= S_TEST - 64) k[m++] = s;
        kept[l] = k;
        n_kept[l] = m;
    }
    compare_step(mc, mg, in, tgt, kept, n_kept, "kept blocks");

    // layer checkpoints (and then also the attention outputs) offloaded to pinned host memory
    // (copies on the side stream, ordered by events): the same results as keeping them on the
    // device; then a policy per layer mixing all four (kept layers between offloaded ones, the
    // shared activations rotating through the attention pair around them)
    ActPolicy mixed = {.all = ACT_RECOMPUTE, .n = L};
    static const unsigned char cycle[6] = {ACT_OFFLOAD_ATT, ACT_OFFLOAD_ATT, ACT_KEEP, ACT_OFFLOAD, ACT_RECOMPUTE,
                                           ACT_OFFLOAD_ATT};
    for (int l = 0; l < L; l++) mixed.layer[l] = cycle[l % 6];
    for (int pol = ACT_OFFLOAD; pol <= ACT_OFFLOAD_ATT + 1; pol++) {
        const char *pn = pol == ACT_OFFLOAD ? "offload" : pol == ACT_OFFLOAD_ATT ? "offload+attention" : "per-layer mix";
        ActPolicy act = pol <= ACT_OFFLOAD_ATT ? act_uniform(pol) : mixed;
        Model *mo = model_load(gpu, dir, NULL, S_TEST, &ls, &act, NULL, 42, &e);
        CHECK(mo != NULL, "cuda model_load (%s): %s", pn, e.msg);
        if (!mo) continue;
        CHECK((pol > ACT_OFFLOAD_ATT || mo->plan.total < mg->plan.total) && mo->plan.host > 0,
              "%s plan: %zu device bytes vs %zu, host %zu", pn, mo->plan.total, mg->plan.total, mo->plan.host);
        mo->be->copy_device(mo->lora_params, mg->lora_params, mo->n_lora * sizeof(float));
        char what[64];
        snprintf(what, sizeof what, "%s dense", pn);
        compare_step(mc, mo, in, tgt, NULL, NULL, what);
        snprintf(what, sizeof what, "%s kept blocks", pn);
        compare_step(mc, mo, in, tgt, kept, n_kept, what);
        long c1, c2;
        double l1 = model_step(mg, in, tgt, S_TEST, NULL, 1, 0, 1.0f / S_TEST, 7, &c1);
        double l2 = model_step(mo, in, tgt, S_TEST, NULL, 1, 0, 1.0f / S_TEST, 7, &c2);
        CHECK(fabs(l1 - l2) <= 1e-5 * fabs(l1), "%s changes the GPU loss: %.9g vs %.9g", pn, l2, l1);
        model_free(mo);
    }

    // LeMo selecting inside the step, the artifact's schedule (layers 0, 1 and the last dense,
    // 40% of the blocks elsewhere): random scores pick the same rows on both backends; exact
    // scores (bf16 q, k on the GPU) pick nearly the same blocks; with the CPU's rows given to
    // the GPU, loss and gradients agree as above, kept layers holding only their kept rows
    // predictor scores (a seeded untrained predictor, fp32 on both, from the backend's own h)
    // pick nearly the same blocks as well
    for (int scores = 0; scores < LEMO_SCORES_N; scores++) {
        int pred = scores == LEMO_SCORES_PREDICTOR;
        LemoConfig lc = {.on = 1, .scores = pred ? LEMO_SCORES_EXACT : scores, .block = 64, .keep_all = 0.4,
                         .n_dense = -1, .seed = 5};
        LemoSpec z;
        CHECK(lemo_resolve(&lc, L, &z, &e) == 0, "lemo_resolve: %s", e.msg);
        LemoPredictor *lp = NULL;
        float *pw_cpu = NULL, *pw_gpu = NULL;
        if (pred) {
            z.scores = LEMO_SCORES_PREDICTOR, z.pred_h1 = LEMO_PRED_H1, z.pred_h2 = LEMO_PRED_H2;
            lp = lemo_predictor_new(dir, &mc->cfg, 64, z.pred_h1, z.pred_h2, 99, &e);
            CHECK(lp != NULL, "lemo_predictor_new: %s", e.msg);
            if (!lp) break;
            size_t pb = sizeof(float) * lp->n_w * L;
            pw_cpu = backend_cpu()->alloc(pb), pw_gpu = gpu->alloc(pb);
            backend_cpu()->copy_to_device(pw_cpu, lp->w, pb);
            gpu->copy_to_device(pw_gpu, lp->w, pb);
        }
        Model *lcpu = model_load(backend_cpu(), dir, NULL, S_TEST, &ls, &(ActPolicy){.all = ACT_RECOMPUTE}, &z, 42, &e);
        Model *lgpu = model_load(gpu, dir, NULL, S_TEST, &ls, &(ActPolicy){.all = ACT_KEEP}, &z, 42, &e);
        CHECK(lcpu && lgpu, "LeMo model_load: %s", e.msg);
        if (!lcpu || !lgpu) break;
        if (pred) lcpu->lemo.pred_w = pw_cpu, lgpu->lemo.pred_w = pw_gpu;
        lcpu->be->copy_device(lcpu->lora_params, mc->lora_params, n * sizeof(float));
        lgpu->be->copy_device(lgpu->lora_params, mg->lora_params, n * sizeof(float));
        LemoSelect sel = {LEMO_SEL_SCHEDULE, 1234, NULL, NULL};
        long c;
        model_step(lcpu, in, tgt, S_TEST, &sel, 0, 0, 1.0f, 7, &c);
        model_step(lgpu, in, tgt, S_TEST, &sel, 0, 0, 1.0f, 7, &c);
        int *rc = malloc(sizeof(int) * S_TEST), *rg = malloc(sizeof(int) * S_TEST);
        double worst = 1;
        for (int l = 0; l < L; l++) {
            CHECK(lcpu->n_kept[l] == lgpu->n_kept[l], "LeMo %s layer %d: kept %d rows on the CPU, %d on the GPU",
                  lemo_score_names[scores], l, lcpu->n_kept[l], lgpu->n_kept[l]);
            if (lcpu->n_kept[l] == S_TEST || lcpu->n_kept[l] != lgpu->n_kept[l]) continue;
            lcpu->be->copy_to_host(rc, lcpu->kept + (size_t)l * S_TEST, sizeof(int) * lcpu->n_kept[l]);
            lgpu->be->copy_to_host(rg, lgpu->kept + (size_t)l * S_TEST, sizeof(int) * lgpu->n_kept[l]);
            int same = 0, nk = lcpu->n_kept[l];
            for (int i = 0, j = 0; i < nk && j < nk;)  // both ascending: count the common rows
                if (rc[i] == rg[j]) same++, i++, j++;
                else if (rc[i] < rg[j]) i++;
                else j++;
            double share = (double)same / nk;
            if (share < worst) worst = share;
            CHECK(rg[0] == 0, "LeMo layer %d: the GPU dropped block 0", l);
            if (scores == LEMO_SCORES_RANDOM) CHECK(same == nk, "LeMo random layer %d: %d of %d rows agree", l, same, nk);
            else CHECK(share >= 0.9, "LeMo %s layer %d: only %.1f%% of the kept rows agree", lemo_score_names[scores], l,
                       100 * share);
        }
        printf("LeMo %s: the GPU's kept rows agree with the CPU's: lowest share %.4f\n", lemo_score_names[scores], worst);
        free(rc), free(rg);
        if (scores == LEMO_SCORES_EXACT) {  // the CPU's rows given to the GPU: same rows, compare the numbers
            int *kb = malloc((size_t)L * S_TEST * sizeof(int)), nk[64];
            const int *kp[64];
            for (int l = 0; l < L; l++) {
                nk[l] = lcpu->n_kept[l];
                kp[l] = NULL;
                if (nk[l] == S_TEST) continue;
                lcpu->be->copy_to_host(kb + (size_t)l * S_TEST, lcpu->kept + (size_t)l * S_TEST, sizeof(int) * nk[l]);
                kp[l] = kb + (size_t)l * S_TEST;
            }
            MemPlan dense_keep;  // every layer kept without LeMo: each holds all its rows
            BackendSizes bs = backend_sizes(gpu);
            model_plan(&lgpu->cfg, S_TEST, &ls, &(ActPolicy){.all = ACT_KEEP}, NULL, &bs, &dense_keep);
            CHECK(lgpu->plan.activations < dense_keep.activations, "LeMo kept layers: %zu activation bytes, dense %zu",
                  lgpu->plan.activations, dense_keep.activations);
            compare_step(lcpu, lgpu, in, tgt, kp, nk, "LeMo exact rows, kept layers");
            free(kb);
        }
        model_free(lcpu), model_free(lgpu);
        if (pred) backend_cpu()->free(pw_cpu), gpu->free(pw_gpu), lemo_predictor_free(lp);
    }

    printf("gpu mem_used %.1f MiB\n", gpu->mem_used() / 1048576.0);
    model_free(mc);
    model_free(mg);
    free(in), free(tgt), free(kbuf);
    return check_done("test_cuda_model");
}
