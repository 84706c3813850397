/* test_hf_parity.c: our CPU engine against HF transformers + PEFT (fp32) on the real models
 * of ../shared/models: loss, logits at a few positions and every LoRA gradient, with LoRA
 * r=8 alpha=16 on all seven targets, from the fixtures tests/gpu/make_hf_fixtures.py wrote.
 * The LoRA weights are a formula both sides compute, so only the results are stored. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "model.h"
#include "safetensors.h"

static void fill_lora(Model *m) {
    float *p = calloc(m->n_lora, sizeof(float));
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int t = 0; t < JOB_MAX_TARGETS; t++) {
            LoraSlot *sl = &m->slots[l * JOB_MAX_TARGETS + t];
            int R = m->lora.r;
            for (int i = 0; i < R; i++)
                for (int j = 0; j < sl->K; j++)
                    p[sl->a + i * sl->K + j] = (float)(0.05 * sin(0.37 * i + 0.11 * j + 1.3 * l + 0.7 * t));
            for (int i = 0; i < sl->N; i++)
                for (int j = 0; j < R; j++)
                    p[sl->b + i * R + j] = (float)(0.05 * cos(0.23 * i + 0.19 * j + 0.5 * l + 0.9 * t));
        }
    m->be->copy_to_device(m->lora_params, p, sizeof(float) * m->n_lora);
    free(p);
}

static void check_model(const char *shared, const char *name) {
    char dir[512], fx[512];
    snprintf(dir, sizeof dir, "%s/models/%s", shared, name);
    snprintf(fx, sizeof fx, "tests/fixtures/hf_%s.safetensors", name);
    Err e = {0};
    SafeFile *f = st_open(fx, &e);
    CHECK(f != NULL, "fixture %s: %s", fx, e.msg);
    if (!f) return;
    const StTensor *ids_t = st_find(f, "input_ids"), *loss_t = st_find(f, "loss");
    const StTensor *pos_t = st_find(f, "logit_positions"), *logits_t = st_find(f, "logits");
    int S = (int)ids_t->numel;
    int32_t *in = malloc(4 * S), *tg = malloc(4 * S);
    const float *idf = ids_t->data;
    for (int i = 0; i < S; i++) in[i] = (int32_t)idf[i];
    for (int i = 0; i < S; i++) tg[i] = i + 1 < S ? in[i + 1] : -1;

    LoraSpec spec = {8, 16.0f, 0.0f, {1, 1, 1, 1, 1, 1, 1}};
    Model *m = model_load(backend_cpu(), dir, NULL, S, &spec, &(ActPolicy){.all = ACT_RECOMPUTE}, NULL, 0, &e);
    CHECK(m != NULL, "%s: %s", name, e.msg);
    if (!m) return;
    fill_lora(m);
    long cnt;
    model_zero_grads(m);
    double sum = model_step(m, in, tg, S, NULL, 1, 0, 1.0f / (S - 1), 0, &cnt);
    double hf_loss = ((const float *)loss_t->data)[0], loss = sum / cnt;
    CHECK(cnt == S - 1, "%s: %ld targets", name, cnt);
    CHECK_CLOSE(loss, hf_loss, 1e-5, 1e-5, "%s: loss %.7f vs HF %.7f", name, loss, hf_loss);
    fprintf(stderr, "%s: loss %.7f HF %.7f (diff %.2g)\n", name, loss, hf_loss, loss - hf_loss);

    // logits = final-norm output x lm_head^T at the fixture's positions; xf holds the final
    // norm output after a forward-only step (a backward reuses its memory)
    model_step(m, in, tg, S, NULL, 0, 0, 1.0f, 0, &cnt);
    int C = m->cfg.hidden, V = m->cfg.vocab;
    float *xf = malloc(sizeof(float) * (size_t)S * C), *w = malloc(sizeof(float) * (size_t)V * C);
    m->be->download_act(xf, m->xf, (size_t)S * C);
    m->be->download_act(w, m->lm_head, (size_t)V * C);
    double maxd = 0;
    for (int k = 0; k < (int)pos_t->numel; k++) {
        int p = (int)((const float *)pos_t->data)[k];
        const float *ref = (const float *)logits_t->data + (size_t)k * V;
        for (int v = 0; v < V; v++) {
            double z = 0;
            for (int c = 0; c < C; c++) z += (double)xf[(size_t)p * C + c] * w[(size_t)v * C + c];
            maxd = fmax(maxd, fabs(z - ref[v]));
        }
    }
    CHECK(maxd < 2e-3, "%s: max logit difference %g", name, maxd);
    fprintf(stderr, "%s: max |logit - HF| %.3g\n", name, maxd);

    // every LoRA gradient: cosine similarity and relative max error per tensor
    float *g = malloc(sizeof(float) * m->n_lora);
    m->be->copy_to_host(g, m->lora_grads, sizeof(float) * m->n_lora);
    double worst_cos = 1, worst_rel = 0;
    int tensors = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int t = 0; t < JOB_MAX_TARGETS; t++)
            for (int b = 0; b < 2; b++) {
                LoraSlot *sl = &m->slots[l * JOB_MAX_TARGETS + t];
                char nm[256], key[300];
                model_lora_name(m, l, t, b, nm, sizeof nm);
                snprintf(key, sizeof key, "grad.%s", nm);
                const StTensor *r = st_find(f, key);
                CHECK(r != NULL, "%s: fixture lacks %s", name, key);
                if (!r) continue;
                const float *ours = g + (b ? sl->b : sl->a), *ref = r->data;
                double dot = 0, na = 0, nb = 0, md = 0, mr = 0;
                for (int64_t i = 0; i < r->numel; i++) {
                    dot += (double)ours[i] * ref[i];
                    na += (double)ours[i] * ours[i];
                    nb += (double)ref[i] * ref[i];
                    md = fmax(md, fabs(ours[i] - ref[i]));
                    mr = fmax(mr, fabs(ref[i]));
                }
                double cs = dot / (sqrt(na * nb) + 1e-30);
                worst_cos = fmin(worst_cos, cs);
                worst_rel = fmax(worst_rel, md / (mr + 1e-12));
                CHECK(cs > 0.99999, "%s: %s cosine %.7f", name, nm, cs);
                CHECK(md <= 1e-3 * mr + 1e-7, "%s: %s max diff %g (max |g| %g)", name, nm, md, mr);
                tensors++;
            }
    CHECK(tensors == m->cfg.n_layers * 14, "%s: compared %d tensors", name, tensors);
    fprintf(stderr, "%s: %d LoRA gradients, worst cosine %.8f, worst max-diff/max %.3g\n", name, tensors,
            worst_cos, worst_rel);

    const StTensor *lr = st_find(f, "loss_rope_linear2");
    if (lr) {  // linear RoPE scaling (position interpolation) x2, forward only
        RopeScaling rs = {ROPE_LINEAR, 2.0f, 1, 4, 0};
        Model *m2 = model_load(backend_cpu(), dir, &rs, S, &spec, &(ActPolicy){.all = ACT_RECOMPUTE}, NULL, 0, &e);
        fill_lora(m2);
        double l2 = model_step(m2, in, tg, S, NULL, 0, 0, 1, 0, &cnt) / cnt;
        double ref = ((const float *)lr->data)[0];
        CHECK_CLOSE(l2, ref, 1e-5, 1e-5, "%s: linear x2 loss %.7f vs HF %.7f", name, l2, ref);
        fprintf(stderr, "%s: rope linear x2 loss %.7f HF %.7f\n", name, l2, ref);
        model_free(m2);
    }
    free(g);
    free(xf);
    free(w);
    free(in);
    free(tg);
    model_free(m);
    st_close(f);
}

int main(void) {
    const char *shared = shared_dir();
    if (!shared) SKIP("../shared/models is absent: the HF parity fixtures need the real models");
    check_model(shared, "stories260K");
    check_model(shared, "refmodel-22m");
    return check_done("test_hf_parity");
}
