/* train_bench.c: our side of the training benchmark (DESIGN section 9), through the engine's
 * own model_load / model_step, so it measures exactly what `lemo train` runs per step.
 *
 *   train_bench make-model DIR [LAYERS [VOCAB]]
 *       writes a Llama-2-7B-shape model (hidden 4096, 32 heads, FFN 11008, vocab 32000,
 *       untied head, 32 layers unless LAYERS says otherwise) with seeded random bf16 weights:
 *       uniform with standard deviation 0.02 from a counter hash (so 16 cores fill 13 GB in
 *       seconds; `lemo init-model` draws normals one at a time and stops at 2e9 parameters),
 *       RMSNorm weights 1. config.json + one model.safetensors; no tokenizer (ids are random).
 *   train_bench run DIR POLICY CONTEXTS STEPS
 *       POLICY recompute | offload | offload-att (checkpoints and attention outputs) | keep,
 *       each optionally followed by +keepN: then the last N layers keep their activations
 *       (memory.layers; no recompute there) and the others follow POLICY; or auto: what
 *       memory.auto picks for each context on this device (estimate_auto_policy);
 *       CONTEXTS like 4096,16384. BENCH_LEMO=random|exact|predictor: LeMo at the default
 *       schedule (layers l < L/2 - 1 and the last dense, 40% of the 64-token blocks elsewhere),
 *       chosen inside every step; memory.auto then knows it. predictor: predictors of the
 *       model's widths with seeded random weights (DIR/predictor-random, written once): their
 *       time and memory, not their recall. BENCH_MLP_TILES=N: the MLP in N row tiles
 *       (auto picks its own). BENCH_PROFILE=1: after the timed steps one more step synchronized
 *       around every layer, printing a per-layer time breakdown of layer 0 and of the first
 *       sparse layer (forward, LeMo's selection within it, recompute, backward) and the bytes
 *       each would keep (one JSON line "layers"). For each context: load the model for that length on the GPU, one warm-up step, then STEPS timed steps
 *       (STEPS 0: the warm-up step alone, timed: a "does it fit" probe). A step is what the
 *       trainer does: zero grads, forward + backward of one window of random ids (LoRA r=8
 *       alpha=16 on q,k,v,o; dropout BENCH_LORA_DROPOUT, default 0), gradient norm, AdamW,
 *       synchronize. Prints one JSON object a
 *       context: median step time, tokens/s, the backend's peak of tracked device memory
 *       (like torch.cuda.max_memory_allocated), the device's used memory (total - free:
 *       what nvidia-smi shows, the CUDA context included), the planned bytes, and what
 *       `lemo estimate` predicts for the same job: its peak and the largest context it
 *       says fits this card (and host). A context that does not fit prints
 *       {"oom": true} and ends the run. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "hash.h"
#include "estimate.h"
#include "job_config.h"
#include "model.h"
#include "predictor.h"

#ifdef LEMO_CUDA
#include <cuda_runtime_api.h>
#include "cuda/backend_cuda.h"
#endif

static uint64_t mix64(uint64_t z) { return hash_mix64(z); }

/* fp32 -> bf16, round to nearest even (the values here are finite). */
static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7FFF + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

typedef struct { char name[96]; int64_t d0, d1; int ones; } Spec;

/* --------------------------------------------------------------- make-model */

static int make_model(const char *dir, int L, int V) {
    const int C = 4096, NH = 32, F = 11008;
    int n = 3 + 9 * L;
    Spec *t = calloc(n, sizeof *t);
    int k = 0;
    snprintf(t[k].name, sizeof t[k].name, "model.embed_tokens.weight"), t[k].d0 = V, t[k++].d1 = C;
    for (int l = 0; l < L; l++) {
        const struct { const char *s; int64_t d0, d1; int ones; } ls[] = {
            {"self_attn.q_proj.weight", C, C, 0}, {"self_attn.k_proj.weight", C, C, 0},
            {"self_attn.v_proj.weight", C, C, 0}, {"self_attn.o_proj.weight", C, C, 0},
            {"mlp.gate_proj.weight", F, C, 0},    {"mlp.up_proj.weight", F, C, 0},
            {"mlp.down_proj.weight", C, F, 0},    {"input_layernorm.weight", C, 0, 1},
            {"post_attention_layernorm.weight", C, 0, 1}};
        for (int i = 0; i < 9; i++, k++) {
            snprintf(t[k].name, sizeof t[k].name, "model.layers.%d.%s", l, ls[i].s);
            t[k].d0 = ls[i].d0, t[k].d1 = ls[i].d1, t[k].ones = ls[i].ones;
        }
    }
    snprintf(t[k].name, sizeof t[k].name, "model.norm.weight"), t[k].d0 = C, t[k++].ones = 1;
    snprintf(t[k].name, sizeof t[k].name, "lm_head.weight"), t[k].d0 = V, t[k++].d1 = C;

    // header: every tensor's dtype, shape and byte span, padded with spaces to 8 bytes
    json_t *h = json_object();
    size_t off = 0, maxn = 0;
    for (int i = 0; i < n; i++) {
        size_t numel = (size_t)t[i].d0 * (t[i].d1 ? t[i].d1 : 1);
        json_t *shape = t[i].d1 ? json_pack("[I,I]", (json_int_t)t[i].d0, (json_int_t)t[i].d1)
                                : json_pack("[I]", (json_int_t)t[i].d0);
        json_object_set_new(h, t[i].name, json_pack("{s:s, s:o, s:[I,I]}", "dtype", "BF16", "shape", shape,
                                                    "data_offsets", (json_int_t)off, (json_int_t)(off + 2 * numel)));
        off += 2 * numel;
        if (numel > maxn) maxn = numel;
    }
    json_object_set_new(h, "__metadata__", json_pack("{s:s, s:s}", "format", "pt", "lemo",
                                                      "random init for benchmarks, uniform std 0.02, not trained"));
    char *hs = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    size_t hl = strlen(hs), hp = (hl + 7) / 8 * 8;

    char path[4096];
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    if (!f) { fprintf(stderr, "train_bench: cannot write %s\n", path); return 1; }
    uint64_t hl64 = hp;
    fwrite(&hl64, 8, 1, f);
    fwrite(hs, 1, hl, f);
    for (size_t i = hl; i < hp; i++) fputc(' ', f);
    free(hs);
    uint16_t *buf = malloc(2 * maxn);
    const float a = 0.02f * sqrtf(3.0f);  // uniform(-a, a) has standard deviation 0.02
    for (int i = 0; i < n; i++) {
        size_t numel = (size_t)t[i].d0 * (t[i].d1 ? t[i].d1 : 1);
        uint64_t base = mix64(0x5EEDull + (uint64_t)i * 0x9E3779B97F4A7C15ull);
#pragma omp parallel for schedule(static)
        for (size_t j = 0; j < numel; j++) {
            float u = (float)(mix64(base + j) >> 40) * (1.0f / 16777216.0f);
            buf[j] = to_bf16(t[i].ones ? 1.0f : (2 * u - 1) * a);
        }
        if (fwrite(buf, 2, numel, f) != numel) { fprintf(stderr, "train_bench: short write\n"); return 1; }
    }
    free(buf);
    if (fclose(f)) { fprintf(stderr, "train_bench: cannot write %s\n", path); return 1; }
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *c = json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:s, s:b, s:b, s:s}",
                          "architectures", "LlamaForCausalLM", "model_type", "llama", "hidden_size", C,
                          "intermediate_size", F, "num_hidden_layers", L, "num_attention_heads", NH,
                          "num_key_value_heads", NH, "head_dim", C / NH, "vocab_size", V,
                          "max_position_embeddings", 1 << 20, "rms_norm_eps", 1e-5, "rope_theta", 10000.0,
                          "hidden_act", "silu", "tie_word_embeddings", 0, "attention_bias", 0, "torch_dtype",
                          "bfloat16");
    int rc = json_dump_file(c, path, JSON_INDENT(2));
    json_decref(c);
    printf("{\"bench\":\"make_model\",\"dir\":\"%s\",\"layers\":%d,\"vocab\":%d,\"bytes\":%zu}\n", dir, L, V, off);
    free(t);
    return rc ? 1 : 0;
}

/* ---------------------------------------------------------------------- run */

#ifdef LEMO_CUDA
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* BENCH_LORA_DROPOUT (default 0, as the peer): the LoRA dropout of the timed steps. */
static float lora_dropout;

/* The benchmark's job config for S tokens under policy act (a one-line dataset file). */
static LemoConfig bench_lemo;  // BENCH_LEMO: on with its scores, else off

static void bench_job(JobConfig *jc, const char *dir, int S, const ActPolicy *act) {
    static char train[] = "/tmp/lemo-train-bench-XXXXXX";
    static int made;
    if (!made) {
        int fd = mkstemp(train);
        FILE *f = fd < 0 ? NULL : fdopen(fd, "w");
        if (f) {
            fprintf(f, "{\"text\": \"benchmark\"}\n");
            fclose(f);
        }
        made = 1;
    }
    job_config_defaults(jc);
    snprintf(jc->model, sizeof jc->model, "%s", dir);
    snprintf(jc->train_file, sizeof jc->train_file, "%s", train);
    jc->context_length = S;
    jc->act = *act;
    jc->max_steps = 1;
    jc->lora.dropout = lora_dropout;
    jc->lemo = bench_lemo;
}

/* What `lemo estimate` predicts for this job on this device (bytes), or 0; *max_ctx: the
 * largest context it says fits the device (and, offloaded, this host). */
static size_t predicted_peak(const char *dir, int S, const ActPolicy *act, size_t device_mem, long *max_ctx) {
    JobConfig jc;
    bench_job(&jc, dir, S, act);
    json_t *out = NULL;
    Err e;
    if (estimate_job(&jc, "cuda", device_mem, 0, ESTIMATE_MEMORY_ONLY, &out, &e)) {
        fprintf(stderr, "train_bench: estimate: %s\n", e.msg);
        return 0;
    }
    size_t p = (size_t)json_integer_value(json_object_get(out, "peak_bytes"));
    *max_ctx = (long)json_integer_value(json_object_get(out, "max_context_length"));
    json_decref(out);
    return p;
}
#endif

static int run(const char *dir, const char *policy_name, const char *contexts, int steps) {
#ifndef LEMO_CUDA
    (void)dir, (void)policy_name, (void)contexts, (void)steps;
    fprintf(stderr, "train_bench: built without CUDA\n");
    return 77;
#else
    const char *why = NULL;
    const Backend *be = backend_cuda(&why);
    if (!be) { fprintf(stderr, "train_bench: %s\n", why); return 77; }
    ModelConfig mc;
    Err ce;
    if (model_config_load(dir, &mc, &ce)) { fprintf(stderr, "train_bench: %s\n", ce.msg); return 1; }
    // POLICY[+keepN]: the last N layers keep their activations
    const char *plus = strstr(policy_name, "+keep");
    size_t base_len = plus ? (size_t)(plus - policy_name) : strlen(policy_name);
    int keep_last = plus ? atoi(plus + 5) : 0;
    int policy = !strncmp(policy_name, "offload", base_len) && base_len == 7       ? ACT_OFFLOAD
                 : !strncmp(policy_name, "offload-att", base_len) && base_len == 11 ? ACT_OFFLOAD_ATT
                 : !strncmp(policy_name, "keep", base_len) && base_len == 4         ? ACT_KEEP
                                                                                     : ACT_RECOMPUTE;
    ActPolicy act = act_uniform(policy);
    const char *dv = getenv("BENCH_LORA_DROPOUT");
    lora_dropout = dv ? (float)atof(dv) : 0.0f;
    JobConfig defaults;
    job_config_defaults(&defaults);
    bench_lemo = defaults.lemo;
    const char *lv = getenv("BENCH_LEMO");
    LemoPredictor *pred = NULL;
    if (lv && *lv) {
        bench_lemo.on = 1;
        bench_lemo.scores = !strcmp(lv, "exact")       ? LEMO_SCORES_EXACT
                            : !strcmp(lv, "predictor") ? LEMO_SCORES_PREDICTOR
                                                       : LEMO_SCORES_RANDOM;
        bench_lemo.seed = 42;
    }
    if (bench_lemo.on && bench_lemo.scores == LEMO_SCORES_PREDICTOR) {
        // predictors of the model's widths with seeded random weights, written once beside the
        // model: their speed and size are what is measured, not their recall
        snprintf(bench_lemo.predictor, sizeof bench_lemo.predictor, "%s/predictor-random", dir);
        char lj[JOB_PATH_MAX + 32];
        snprintf(lj, sizeof lj, "%s/lemo.json", bench_lemo.predictor);
        struct stat st;
        if (stat(lj, &st)) {
            int h1, h2;
            lemo_predictor_widths(&mc, bench_lemo.block, &h1, &h2);
            LemoPredictor *p = lemo_predictor_new(dir, &mc, bench_lemo.block, h1, h2, 7, &ce);
            if (!p || lemo_predictor_save(p, bench_lemo.predictor, NULL, &ce)) {
                fprintf(stderr, "train_bench: predictor: %s\n", ce.msg);
                return 1;
            }
            lemo_predictor_free(p);
        }
        if (!(pred = lemo_predictor_load(bench_lemo.predictor, dir, &mc, bench_lemo.block, "lemo.predictor", &ce))) {
            fprintf(stderr, "train_bench: predictor: %s\n", ce.msg);
            return 1;
        }
    }
    const char *tv = getenv("BENCH_MLP_TILES");
    act.mlp_tiles = tv ? atoi(tv) : 0;
    int profile = getenv("BENCH_PROFILE") && !strcmp(getenv("BENCH_PROFILE"), "1");
    LemoSpec lemo;
    if (lemo_resolve(&bench_lemo, mc.n_layers, &lemo, &ce)) { fprintf(stderr, "train_bench: %s\n", ce.msg); return 1; }
    if (keep_last > 0) {
        act.n = mc.n_layers;
        for (int l = 0; l < mc.n_layers; l++) act.layer[l] = l >= mc.n_layers - keep_last ? ACT_KEEP : policy;
    }
    size_t free0, total;
    cudaMemGetInfo(&free0, &total);
    printf("{\"bench\":\"device\",\"name\":\"%s\",\"total_gib\":%.2f}\n", cuda_device_name(), total / 1073741824.0);
    fflush(stdout);
    char *list = strdup(contexts);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int S = atoi(tok);
        LoraSpec spec = {8, 16.0f, lora_dropout, {1, 1, 1, 1, 0, 0, 0}};
        Err e;
        cuda_mem_reset_peak();
        double t0 = now_s();
        if (!strcmp(policy_name, "auto")) {  // memory.auto: what the trainer would pick for S here
            JobConfig jc;
            bench_job(&jc, dir, S, &act);
            if (estimate_auto_policy(&jc, 1, &e)) { fprintf(stderr, "train_bench: auto: %s\n", e.msg); break; }
            act = jc.act;
        }
        int n_keep = 0;
        for (int l = 0; l < mc.n_layers; l++) n_keep += act_layer(&act, l) == ACT_KEEP;
        Model *m = model_load(be, dir, NULL, S, &spec, &act, &lemo, 42, &e);
        if (!m) {
            printf("{\"bench\":\"ours\",\"context\":%d,\"policy\":\"%s\",\"oom\":true,\"error\":\"%s\"}\n", S,
                   policy_name, e.msg);
            break;
        }
        void *pred_dev = NULL;
        if (pred) {  // as the trainer does: the weights on the device for the step's scoring
            size_t bytes;
            Err pe = {0};
            if (!(pred_dev = lemo_predictor_upload(be, pred, &m->lemo, &bytes, &pe))) {
                printf("{\"bench\":\"ours\",\"context\":%d,\"policy\":\"%s\",\"oom\":true,\"error\":\"predictor "
                       "weights\"}\n", S, policy_name);
                model_free(m);
                break;
            }
        }
        double load_s = now_s() - t0;
        int V = m->cfg.vocab;
        int32_t *in = malloc(4 * (size_t)S), *tg = malloc(4 * (size_t)S);
        uint64_t r = (uint64_t)S;
        for (int i = 0; i < S; i++) in[i] = (int32_t)(mix64(r++) % (uint64_t)V);
        for (int i = 0; i < S; i++) tg[i] = i + 1 < S ? in[i + 1] : -1;
        int n_runs = steps > 0 ? steps + 1 : 1;
        double *ts = malloc(sizeof(double) * n_runs), loss = 0;
        for (int k = 0; k < n_runs; k++) {
            double s0 = now_s();
            long cnt;
            model_zero_grads(m);
            LemoSelect sel = {LEMO_SEL_SCHEDULE, 777 + (uint64_t)k, NULL, NULL};
            loss = model_step(m, in, tg, S, &sel, 1, 1, 1.0f / (S - 1), 1234 + k, &cnt);
            double g = sqrt(be->sumsq(m->lora_grads, m->n_lora));
            if (g > 1.0) be->scale(m->lora_grads, m->n_lora, (float)(1.0 / g));
            be->adamw(m->lora_params, m->lora_grads, m->adam_m, m->adam_v, m->n_lora, 1e-4f, 0.9f, 0.999f, 1e-8f,
                      0.0f, k + 1);
            be->sync();
            ts[k] = now_s() - s0;
            loss /= cnt;
        }
        size_t fr;
        cudaMemGetInfo(&fr, &total);
        double t = ts[0];
        if (steps > 0) {
            qsort(ts + 1, steps, sizeof(double), cmp_double);
            t = ts[1 + steps / 2];
        }
        long max_ctx = 0;
        size_t est = predicted_peak(dir, S, &act, total, &max_ctx);
        printf("{\"bench\":\"ours\",\"context\":%d,\"policy\":\"%s\",\"steps\":%d,\"load_s\":%.1f,\"step_s\":%.3f,"
               "\"tokens_per_s\":%.1f,\"peak_gib\":%.3f,\"device_used_gib\":%.3f,\"planned_gib\":%.3f,"
               "\"host_gib\":%.3f,\"est_peak_gib\":%.3f,\"loss\":%.4f,\"kept_layers\":%d,\"base\":\"%s\","
               "\"lora_dropout\":%.2f,\"est_max_context\":%ld,\"lemo\":\"%s\",\"mlp_tiles\":%d}\n",
               S, policy_name, steps, load_s, t, S / t, cuda_mem_peak() / 1073741824.0,
               (total - fr) / 1073741824.0, m->plan.total / 1073741824.0, m->plan.host / 1073741824.0,
               est / 1073741824.0, loss, n_keep, act_names[act_layer(&act, 0)], lora_dropout, max_ctx,
               lemo.on ? lemo_score_names[lemo.scores] : "off", act_tiles(&act));
        fflush(stdout);
        if (profile) {  // one more step, synchronized around every layer
            m->profile_clock = now_s;
            long cnt;
            model_zero_grads(m);
            LemoSelect sel = {LEMO_SEL_SCHEDULE, 999, NULL, NULL};
            model_step(m, in, tg, S, &sel, 1, 1, 1.0f / (S - 1), 999, &cnt);
            int sp = -1;
            for (int l = 0; l < mc.n_layers && sp < 0; l++)
                if (m->rows[l] < S) sp = l;
            printf("{\"bench\":\"layers\",\"context\":%d,\"policy\":\"%s\",\"lemo\":\"%s\"", S, policy_name,
                   lemo.on ? lemo_score_names[lemo.scores] : "off");
            int show[2] = {0, sp};
            for (int i = 0; i < 2; i++) {
                int l = show[i];
                if (l < 0) continue;
                printf(",\"%s\":{\"layer\":%d,\"kept_fraction\":%.4f,\"forward_ms\":%.2f,\"select_ms\":%.2f,"
                       "\"recompute_ms\":%.2f,\"backward_ms\":%.2f,\"act_gib\":%.3f}",
                       i ? "sparse" : "dense", l, (double)m->rows[l] / S, 1e3 * m->profile[3 * l],
                       1e3 * m->profile_select[l], 1e3 * m->profile[3 * l + 1], 1e3 * m->profile[3 * l + 2],
                       model_layer_act_bytes(m, l) / 1073741824.0);
            }
            if (sp >= 0) {  // LeMo's token movement: a gather and a scatter-add of the kept rows
                int nk = m->rows[sp], C = mc.hidden;
                double g0 = now_s();
                for (int i = 0; i < 10; i++) be->gather_rows(m->dok, m->dx, m->kept + (size_t)sp * S, nk, C);
                be->sync();
                double g1 = now_s();
                for (int i = 0; i < 10; i++) be->scatter_add_rows(m->dx, m->dok, m->kept + (size_t)sp * S, nk, C);
                be->sync();
                double g2 = now_s();
                // per sparse layer: the forward gathers h and scatters o, the recompute again, the
                // backward gathers dx and h and scatters dL/dh
                printf(",\"movement\":{\"gather_ms\":%.3f,\"scatter_add_ms\":%.3f,\"per_layer_ms\":%.3f}",
                       1e2 * (g1 - g0), 1e2 * (g2 - g1), 1e2 * (4 * (g1 - g0) + 3 * (g2 - g1)));
            }
            printf("}\n");
            fflush(stdout);
        }
        free(ts), free(in), free(tg);
        model_free(m);
        if (pred_dev) be->free(pred_dev);
    }
    free(list);
    lemo_predictor_free(pred);
    return 0;
#endif
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "make-model"))
        return make_model(argv[2], argc > 3 ? atoi(argv[3]) : 32, argc > 4 ? atoi(argv[4]) : 32000);
    if (argc == 6 && !strcmp(argv[1], "run")) return run(argv[2], argv[3], argv[4], atoi(argv[5]));
    fprintf(stderr, "usage: train_bench make-model DIR [LAYERS [VOCAB]]\n"
                    "       train_bench run DIR recompute|offload|offload-att|keep[+keepN]|auto CONTEXTS STEPS\n");
    return 2;
}
