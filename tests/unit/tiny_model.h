/* tiny_model.h: writes a small random Llama/Qwen2-shaped model folder for tests
 * (config.json + model.safetensors), so model tests need no downloaded weights, and checks a
 * model's LoRA gradients against finite differences. */
#ifndef LEMO_TEST_TINY_MODEL_H
#define LEMO_TEST_TINY_MODEL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"
#include "safetensors.h"

typedef struct {
    int layers, hidden, heads, kv_heads, head_dim, ffn, vocab;
    int tied, qwen2;  // qwen2: q/k/v biases
    int attention_bias;  // llama attention_bias=true: q/k/v and o_proj biases
    float std;
} TinySpec;

static inline float tiny_randn(unsigned long long *s) {
    double u1 = 0, u2;
    while (u1 < 1e-12) { *s = *s * 6364136223846793005ull + 1442695040888963407ull; u1 = (double)(*s >> 11) / 9007199254740992.0; }
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    u2 = (double)(*s >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
}

static inline void tiny_add(StWriter *w, const char *name, int64_t d0, int64_t d1, float std, float mean,
                     unsigned long long *seed) {
    int64_t n = d1 ? d0 * d1 : d0;
    float *x = malloc(sizeof(float) * n);
    for (int64_t i = 0; i < n; i++) x[i] = mean + std * tiny_randn(seed);
    int64_t shape[2] = {d0, d1};
    Err e;
    if (st_writer_add(w, name, DT_F32, x, d1 ? 2 : 1, shape, &e)) { fprintf(stderr, "%s\n", e.msg); exit(1); }
    free(x);
}

/* Writes the model into dir (which must exist); returns 0 on success. */
static inline int tiny_model_write(const char *dir, const TinySpec *t, unsigned long long seed) {
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f,
            "{\"architectures\":[\"%s\"],\"model_type\":\"%s\",\"hidden_size\":%d,\"intermediate_size\":%d,"
            "\"num_hidden_layers\":%d,\"num_attention_heads\":%d,\"num_key_value_heads\":%d,\"head_dim\":%d,"
            "\"vocab_size\":%d,\"max_position_embeddings\":4096,\"rms_norm_eps\":1e-5,\"rope_theta\":10000.0,"
            "\"hidden_act\":\"silu\",\"tie_word_embeddings\":%s,\"attention_bias\":%s,\"bos_token_id\":1,"
            "\"eos_token_id\":2}\n",
            t->qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM", t->qwen2 ? "qwen2" : "llama", t->hidden, t->ffn,
            t->layers, t->heads, t->kv_heads, t->head_dim, t->vocab, t->tied ? "true" : "false",
            t->attention_bias ? "true" : "false");
    fclose(f);
    StWriter *w = st_writer_new();
    int C = t->hidden, Q = t->heads * t->head_dim, KV = t->kv_heads * t->head_dim, F = t->ffn;
    float s = t->std;
    char n[160];
    tiny_add(w, "model.embed_tokens.weight", t->vocab, C, 1.0f, 0, &seed);
    tiny_add(w, "model.norm.weight", C, 0, 0.1f, 1, &seed);
    if (!t->tied) tiny_add(w, "lm_head.weight", t->vocab, C, s, 0, &seed);
    for (int l = 0; l < t->layers; l++) {
        struct { const char *nm; int d0, d1; float mean; } sp[] = {
            {"input_layernorm.weight", C, 0, 1}, {"post_attention_layernorm.weight", C, 0, 1},
            {"self_attn.q_proj.weight", Q, C, 0}, {"self_attn.k_proj.weight", KV, C, 0},
            {"self_attn.v_proj.weight", KV, C, 0}, {"self_attn.o_proj.weight", C, Q, 0},
            {"mlp.gate_proj.weight", F, C, 0}, {"mlp.up_proj.weight", F, C, 0}, {"mlp.down_proj.weight", C, F, 0},
            {"self_attn.q_proj.bias", Q, 0, 0}, {"self_attn.k_proj.bias", KV, 0, 0}, {"self_attn.v_proj.bias", KV, 0, 0},
            {"self_attn.o_proj.bias", C, 0, 0}};
        int n_spec = t->attention_bias ? 13 : t->qwen2 ? 12 : 9;
        for (int i = 0; i < n_spec; i++) {
            snprintf(n, sizeof n, "model.layers.%d.%s", l, sp[i].nm);
            tiny_add(w, n, sp[i].d0, sp[i].d1, sp[i].d1 ? s : 0.1f, sp[i].mean, &seed);
        }
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    Err e;
    int rc = st_writer_save(w, path, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    st_writer_free(w);
    return rc;
}

/* Writes DIR/config.json of the Llama-2-7B shape (no weights: for memory plans and estimates). */
static inline int llama7b_config_write(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs("{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_size\":4096,"
          "\"intermediate_size\":11008,\"num_hidden_layers\":32,\"num_attention_heads\":32,"
          "\"num_key_value_heads\":32,\"vocab_size\":32000,\"max_position_embeddings\":4096,"
          "\"rms_norm_eps\":1e-5,\"rope_theta\":10000.0,\"tie_word_embeddings\":false}\n",
          f);
    return fclose(f);
}

/* Loads a tiny model on the CPU with LoRA spec, an activation policy per layer and a LeMo
 * schedule (NULL: dense); PEFT
 * starts B at zero, so B gets seeded values here to make every path carry gradient. Exits
 * on failure. */
static inline Model *tiny_model_load_lemo(const char *dir, int S, const LoraSpec *spec, const ActPolicy *act,
                                          const LemoSpec *lemo) {
    Err e = {0};
    Model *m = model_load(backend_cpu(), dir, NULL, S, spec, act, lemo, 7, &e);
    if (!m) { fprintf(stderr, "model_load: %s\n", e.msg); exit(1); }
    float *p = malloc(sizeof(float) * m->n_lora);
    unsigned long long seed = 99;
    m->be->copy_to_host(p, m->lora_params, sizeof(float) * m->n_lora);
    for (int i = 0; i < m->cfg.n_layers * JOB_MAX_TARGETS; i++) {
        LoraSlot *sl = &m->slots[i];
        if (sl->a < 0) continue;
        for (int j = 0; j < sl->N * spec->r; j++) p[sl->b + j] = 0.3f * tiny_randn(&seed);
    }
    m->be->copy_to_device(m->lora_params, p, sizeof(float) * m->n_lora);
    free(p);
    return m;
}

/* The same, dense. */
static inline Model *tiny_model_load_act(const char *dir, int S, const LoraSpec *spec, const ActPolicy *act) {
    return tiny_model_load_lemo(dir, S, spec, act, NULL);
}

/* The same with one activation policy (ACT_*) for every layer. */
static inline Model *tiny_model_load(const char *dir, int S, const LoraSpec *spec, int policy) {
    ActPolicy act = act_uniform(policy);
    return tiny_model_load_act(dir, S, spec, &act);
}

/* One step with backward over (in, tg) from zeroed gradients: the LoRA gradients it leaves,
 * malloc'd (the caller frees them), and the counted targets in *count. */
static inline float *tiny_step_grads(Model *m, const int32_t *in, const int32_t *tg, int S, const int *const *kept,
                                     const int *nk, int train, uint64_t drop_seed, long *count) {
    model_zero_grads(m);
    model_step(m, in, tg, S, &(LemoSelect){LEMO_SEL_GIVEN, 0, kept, nk}, 1, train, 1.0f, drop_seed, count);
    float *g = malloc(4 * m->n_lora);
    m->be->copy_to_host(g, m->lora_grads, 4 * m->n_lora);
    return g;
}

/* Removes a model directory tiny_model_write made. */
static inline void tiny_model_remove(const char *dir) {
    char path[1100];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    rmdir(dir);
}

/* Compares g, the analytic gradient of m's LoRA parameters for one step over (in, tg), with
 * central differences of the loss (forward only, same kept lists, train flag and dropout
 * seed) on `samples` parameters drawn from `seed`. Prints the first five disagreements
 * under `what`; returns how many there are. The parameters end as they started. */
static inline int tiny_fd_disagreements(Model *m, const float *g, const int32_t *in, const int32_t *tg, int S,
                                 const int *const *kept, const int *nk, int train, uint64_t drop_seed,
                                 int samples, unsigned long long seed, const char *what) {
    size_t n = m->n_lora;
    float *p = malloc(4 * n);
    m->be->copy_to_host(p, m->lora_params, 4 * n);
    long c;
    int bad = 0;
    for (int k = 0; k < samples; k++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        size_t i = (size_t)(seed >> 33) % n;
        float orig = p[i], h = 1e-2f;
        p[i] = orig + h;
        m->be->copy_to_device(m->lora_params, p, 4 * n);
        double lp = model_step(m, in, tg, S, &(LemoSelect){LEMO_SEL_GIVEN, 0, kept, nk}, 0, train, 1.0f, drop_seed, &c);
        p[i] = orig - h;
        m->be->copy_to_device(m->lora_params, p, 4 * n);
        double lm = model_step(m, in, tg, S, &(LemoSelect){LEMO_SEL_GIVEN, 0, kept, nk}, 0, train, 1.0f, drop_seed, &c);
        p[i] = orig;
        double fd = (lp - lm) / (2 * h);
        // fp32 forward: noise ~ 1e-7 * |L| / h plus O(h^2) curvature
        if (fabs(fd - g[i]) > 3e-3 + 3e-2 * fabs(g[i]) && bad++ < 5)
            fprintf(stderr, "%s: param %zu: fd %.6f analytic %.6f\n", what, i, fd, g[i]);
    }
    m->be->copy_to_device(m->lora_params, p, 4 * n);
    free(p);
    return bad;
}

#endif
