/* job_config.c: parse and validate the job config JSON (see job_config.h).
 *
 * Every key is looked up in a table of known keys first, so a typo is an error that
 * names the key instead of a silently ignored setting. Values are range-checked here,
 * once, for both the CLI and the server. */
#include "job_config.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

const char *const job_target_names[JOB_MAX_TARGETS] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
const char *const act_names[ACT_N] = {"keep", "recompute", "offload", "offload_attention"};
const char *const lemo_score_names[LEMO_SCORES_N] = {"exact", "random", "predictor"};
const char *const parallel_mode_names[PAR_MODE_N] = {"auto", "data", "context"};

int act_from_name(const char *name) {
    for (int a = 0; a < ACT_N; a++)
        if (!strcmp(name, act_names[a])) return a;
    return -1;
}

int act_policy_check(const ActPolicy *p, int n_layers, Err *e) {
    if (p->n && p->n != n_layers)
        return err_set_at(e, "memory.layers", 0, "'memory.layers' names %d layers but the model has %d: give one "
                          "policy per layer", p->n, n_layers);
    return 0;
}

void job_config_defaults(JobConfig *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->device, "auto");
    c->context_length = 1024;
    c->max_steps = 0;
    c->epochs = 1.0;
    c->seed = 42;
    c->chat_template = TEMPLATE_AUTO;
    c->eval_fraction = 0.05;
    c->eval_every = 0;          // 0: only at the end
    c->checkpoint_every = 0;    // 0: only at the end
    c->eval_windows = 32;
    c->grad_accum = 1;
    c->lora.r = 8;
    c->lora.alpha = 16;
    c->lora.dropout = 0.0f;
    c->lora.targets[TARGET_Q] = c->lora.targets[TARGET_K] = 1;
    c->lora.targets[TARGET_V] = c->lora.targets[TARGET_O] = 1;
    c->optim.lr = 2e-4f;
    c->optim.beta1 = 0.9f;
    c->optim.beta2 = 0.999f;
    c->optim.eps = 1e-8f;
    c->optim.weight_decay = 0.0f;
    c->optim.grad_clip = 1.0f;
    c->optim.warmup_steps = 0;
    c->optim.min_lr_ratio = 0.0f;
    c->act = act_uniform(ACT_RECOMPUTE);
    c->lemo.block = 64;
    c->lemo.keep_all = 0.4;
    c->lemo.n_dense = -1;
    c->parallel.gpus = 1;
    c->parallel.mode = PAR_MODE_AUTO;
}

/* Returns -1 with an error naming `key` unless every key of obj is in `known`. */
static int check_keys(json_t *obj, const char *prefix, const char *const *known, Err *e) {
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        int ok = 0;
        for (int i = 0; known[i]; i++)
            if (!strcmp(k, known[i])) ok = 1;
        if (!ok) {
            char p[128];
            snprintf(p, sizeof p, "%s%s", prefix, k);
            return err_set_at(e, p, 0, "unknown key '%s'", p);
        }
    }
    return 0;
}

static int get_str(json_t *o, const char *key, const char *name, char *dst, size_t cap, Err *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return err_set_at(e, name, 0, "'%s' must be a string", name);
    if (strlen(json_string_value(v)) >= cap) return err_set_at(e, name, 0, "'%s' is too long", name);
    strcpy(dst, json_string_value(v));
    return 0;
}

/* Integer in [lo, hi]; a float with an integral value is accepted (JSON writers differ). */
static int get_int(json_t *o, const char *key, const char *name, int *dst, long lo, long hi, Err *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    double d;
    if (json_is_integer(v)) d = (double)json_integer_value(v);
    else if (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v)) d = json_real_value(v);
    else return err_set_at(e, name, 0, "'%s' must be an integer", name);
    if (d < lo || d > hi) return err_set_at(e, name, 0, "'%s' must be in [%ld, %ld], got %.0f", name, lo, hi, d);
    *dst = (int)d;
    return 0;
}

static int get_num(json_t *o, const char *key, const char *name, double *dst, double lo, double hi, Err *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return err_set_at(e, name, 0, "'%s' must be a number", name);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) return err_set_at(e, name, 0, "'%s' must be in [%g, %g], got %g", name, lo, hi, d);
    *dst = d;
    return 0;
}

static int get_float(json_t *o, const char *key, const char *name, float *dst, double lo, double hi, Err *e) {
    double d = *dst;
    if (get_num(o, key, name, &d, lo, hi, e)) return -1;
    *dst = (float)d;
    return 0;
}

static int parse_lora(json_t *o, JobConfig *c, Err *e) {
    static const char *const known[] = {"r", "alpha", "dropout", "target_modules", NULL};
    if (!json_is_object(o)) return err_set_at(e, "lora", 0, "'lora' must be an object");
    if (check_keys(o, "lora.", known, e)) return -1;
    if (get_int(o, "r", "lora.r", &c->lora.r, 1, 1024, e)) return -1;
    if (get_float(o, "alpha", "lora.alpha", &c->lora.alpha, 1e-6, 1e6, e)) return -1;
    if (get_float(o, "dropout", "lora.dropout", &c->lora.dropout, 0, 0.9, e)) return -1;
    json_t *t = json_object_get(o, "target_modules");
    if (t && !json_is_null(t)) {
        if (!json_is_array(t) || json_array_size(t) == 0)
            return err_set_at(e, "lora.target_modules", 0, "'lora.target_modules' must be a non-empty array of module names");
        memset(c->lora.targets, 0, sizeof c->lora.targets);
        size_t i;
        json_t *x;
        json_array_foreach(t, i, x) {
            const char *s = json_is_string(x) ? json_string_value(x) : NULL;
            int found = -1;
            for (int j = 0; s && j < JOB_MAX_TARGETS; j++) {
                size_t n = strlen(job_target_names[j]) - 5;  // "q_proj" also accepted as "q"
                if (!strcmp(s, job_target_names[j]) || (strlen(s) == n && !strncmp(s, job_target_names[j], n)))
                    found = j;
            }
            if (found < 0)
                return err_set_at(e, "lora.target_modules", 0,
                                  "'lora.target_modules[%zu]' must be one of q_proj, k_proj, v_proj, o_proj, "
                                  "gate_proj, up_proj, down_proj", i);
            c->lora.targets[found] = 1;
        }
    }
    return 0;
}

static int parse_optimizer(json_t *o, JobConfig *c, Err *e) {
    static const char *const known[] = {"lr", "betas", "eps", "weight_decay", "warmup_steps", "grad_clip",
                                        "min_lr_ratio", "schedule", NULL};
    if (!json_is_object(o)) return err_set_at(e, "optimizer", 0, "'optimizer' must be an object");
    if (check_keys(o, "optimizer.", known, e)) return -1;
    if (get_float(o, "lr", "optimizer.lr", &c->optim.lr, 0, 1, e)) return -1;
    if (get_float(o, "eps", "optimizer.eps", &c->optim.eps, 1e-12, 1e-2, e)) return -1;
    if (get_float(o, "weight_decay", "optimizer.weight_decay", &c->optim.weight_decay, 0, 10, e)) return -1;
    if (get_float(o, "grad_clip", "optimizer.grad_clip", &c->optim.grad_clip, 0, 1e6, e)) return -1;
    if (get_float(o, "min_lr_ratio", "optimizer.min_lr_ratio", &c->optim.min_lr_ratio, 0, 1, e)) return -1;
    if (get_int(o, "warmup_steps", "optimizer.warmup_steps", &c->optim.warmup_steps, 0, 10000000, e)) return -1;
    json_t *s = json_object_get(o, "schedule");
    if (s && !(json_is_string(s) && !strcmp(json_string_value(s), "cosine")))
        return err_set_at(e, "optimizer.schedule", 0, "'optimizer.schedule' must be \"cosine\" (warmup + cosine)");
    json_t *b = json_object_get(o, "betas");
    if (b) {
        if (!json_is_array(b) || json_array_size(b) != 2 || !json_is_number(json_array_get(b, 0)) ||
            !json_is_number(json_array_get(b, 1)))
            return err_set_at(e, "optimizer.betas", 0, "'optimizer.betas' must be [beta1, beta2]");
        double b1 = json_number_value(json_array_get(b, 0)), b2 = json_number_value(json_array_get(b, 1));
        if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1))
            return err_set_at(e, "optimizer.betas", 0, "'optimizer.betas' must each be in [0, 1)");
        c->optim.beta1 = (float)b1;
        c->optim.beta2 = (float)b2;
    }
    return 0;
}

static int parse_rope(json_t *o, JobConfig *c, Err *e) {
    static const char *const known[] = {"type", "rope_type", "factor", "low_freq_factor", "high_freq_factor",
                                        "original_max_position_embeddings", NULL};
    if (json_is_null(o)) return 0;
    if (!json_is_object(o)) return err_set_at(e, "rope_scaling", 0, "'rope_scaling' must be an object");
    if (check_keys(o, "rope_scaling.", known, e)) return -1;
    json_t *t = json_object_get(o, "type");
    if (!t) t = json_object_get(o, "rope_type");
    const char *ts = t && json_is_string(t) ? json_string_value(t) : NULL;
    if (ts && !strcmp(ts, "none")) {  // the model's own positions as they are: no override
        if (json_object_size(o) > 1)
            return err_set_at(e, "rope_scaling", 0, "'rope_scaling' {\"type\": \"none\"} takes no other field");
        return 0;
    }
    RopeScaling *r = &c->rope_scaling;
    memset(r, 0, sizeof *r);
    if (ts && !strcmp(ts, "linear")) r->type = ROPE_LINEAR;
    else if (ts && !strcmp(ts, "llama3")) r->type = ROPE_LLAMA3;
    else if (ts && !strcmp(ts, "default")) r->type = ROPE_DEFAULT;
    else return err_set_at(e, "rope_scaling.type", 0, "'rope_scaling.type' must be \"linear\", \"llama3\", \"default\" or \"none\"");
    r->factor = 1;
    r->low_freq_factor = 1;
    r->high_freq_factor = 4;
    r->original_max_position = 8192;
    if (get_float(o, "factor", "rope_scaling.factor", &r->factor, 1, 1024, e)) return -1;
    if (get_float(o, "low_freq_factor", "rope_scaling.low_freq_factor", &r->low_freq_factor, 1e-3, 1e3, e)) return -1;
    if (get_float(o, "high_freq_factor", "rope_scaling.high_freq_factor", &r->high_freq_factor, 1e-3, 1e3, e)) return -1;
    if (get_int(o, "original_max_position_embeddings", "rope_scaling.original_max_position_embeddings",
                &r->original_max_position, 1, 1 << 24, e))
        return -1;
    if (r->type == ROPE_LLAMA3 && !(r->high_freq_factor > r->low_freq_factor))
        return err_set_at(e, "rope_scaling.high_freq_factor", 0, "'rope_scaling.high_freq_factor' must exceed low_freq_factor");
    c->has_rope_scaling = 1;
    return 0;
}

/* memory: {checkpointing, offload, offload_attention} set the policy of every layer
 * (job_config.h's ACT_*); layers, an array of policy names, one per layer, sets each layer's
 * own and overrides them (its length is checked against the model when it is loaded); auto
 * (alone) leaves the choice to the trainer, which fits it to the device. */
static int parse_memory(json_t *x, ActPolicy *p, int *act_auto, Err *e) {
    static const char *const mk[] = {"checkpointing", "offload", "offload_attention", "layers", "auto", "mlp_tiles",
                                     NULL};
    if (!json_is_object(x)) return err_set_at(e, "memory", 0, "'memory' must be an object");
    if (check_keys(x, "memory.", mk, e)) return -1;
    json_t *au = json_object_get(x, "auto");
    if (au) {
        if (!json_is_boolean(au)) return err_set_at(e, "memory.auto", 0, "'memory.auto' must be true or false");
        *act_auto = json_is_true(au);
        if (*act_auto && json_object_size(x) > 1)
            return err_set_at(e, "memory.auto", 0, "'memory.auto' picks the policy of every layer and the MLP tiles: "
                              "give it alone, without checkpointing, offload, offload_attention, layers or mlp_tiles");
    }
    if (get_int(x, "mlp_tiles", "memory.mlp_tiles", &p->mlp_tiles, 1, 4096, e)) return -1;
    json_t *cp = json_object_get(x, "checkpointing"), *of = json_object_get(x, "offload");
    json_t *oa = json_object_get(x, "offload_attention"), *ly = json_object_get(x, "layers");
    if (cp) {
        if (!json_is_boolean(cp)) return err_set_at(e, "memory.checkpointing", 0, "'memory.checkpointing' must be true or false");
        p->all = json_is_true(cp) ? ACT_RECOMPUTE : ACT_KEEP;
    }
    if (of) {
        if (!json_is_boolean(of)) return err_set_at(e, "memory.offload", 0, "'memory.offload' must be true or false");
        // offloading moves the layer checkpoints to host memory: it needs checkpointing
        if (json_is_true(of) && p->all == ACT_KEEP)
            return err_set_at(e, "memory.offload", 0, "'memory.offload' needs 'memory.checkpointing' (offload moves "
                              "the layer checkpoints to host memory)");
        if (json_is_true(of)) p->all = ACT_OFFLOAD;
    }
    if (oa) {
        if (!json_is_boolean(oa))
            return err_set_at(e, "memory.offload_attention", 0, "'memory.offload_attention' must be true or false");
        if (json_is_true(oa) && p->all != ACT_OFFLOAD)
            return err_set_at(e, "memory.offload_attention", 0, "'memory.offload_attention' needs 'memory.offload' (it "
                              "offloads the attention outputs beside the layer checkpoints)");
        if (json_is_true(oa)) p->all = ACT_OFFLOAD_ATT;
    }
    if (ly) {
        if (!json_is_array(ly) || json_array_size(ly) == 0 || json_array_size(ly) > JOB_MAX_LAYERS)
            return err_set_at(e, "memory.layers", 0, "'memory.layers' must be an array of 1 to %d policies, one per "
                              "layer: \"keep\", \"recompute\", \"offload\" or \"offload_attention\"", JOB_MAX_LAYERS);
        size_t i;
        json_t *v;
        json_array_foreach(ly, i, v) {
            int k = json_is_string(v) ? act_from_name(json_string_value(v)) : -1;
            if (k < 0)
                return err_set_at(e, "memory.layers", 0, "'memory.layers[%zu]' must be \"keep\", \"recompute\", "
                                  "\"offload\" or \"offload_attention\"", i);
            p->layer[i] = (unsigned char)k;
        }
        p->n = (int)json_array_size(ly);
    }
    return 0;
}

/* lemo: {keep: F | [F per layer] | "auto", scores: "exact" | "random" | "predictor", block: N,
 * dense_layers: [l..], seed: N, predictor: DIR} (job_config.h's LemoConfig). Fractions are in
 * (0, 1]; the layer count of an array is checked against the model when it is known
 * (lemo_resolve), and so is the predictor (lemo_predictor_load, in the trainer). */
static int parse_lemo(json_t *o, LemoConfig *z, Err *e) {
    static const char *const known[] = {"keep", "scores", "block", "dense_layers", "seed", "predictor", NULL};
    if (!json_is_object(o)) return err_set_at(e, "lemo", 0, "'lemo' must be an object");
    if (check_keys(o, "lemo.", known, e)) return -1;
    z->on = 1;
    json_t *s = json_object_get(o, "scores");
    if (s) {
        const char *v = json_is_string(s) ? json_string_value(s) : "";
        z->scores = -1;
        for (int i = 0; i < LEMO_SCORES_N; i++)
            if (!strcmp(v, lemo_score_names[i])) z->scores = i;
        if (z->scores < 0)
            return err_set_at(e, "lemo.scores", 0, "'lemo.scores' must be \"exact\", \"random\" or \"predictor\"");
    }
    json_t *pd = json_object_get(o, "predictor");
    if (pd) {
        if (!json_is_string(pd) || !json_string_length(pd) || json_string_length(pd) >= sizeof z->predictor)
            return err_set_at(e, "lemo.predictor", 0, "'lemo.predictor' must be the folder lemo prepare wrote");
        strcpy(z->predictor, json_string_value(pd));
    }
    if (z->scores == LEMO_SCORES_PREDICTOR && !z->predictor[0])
        return err_set_at(e, "lemo.predictor", 0, "'lemo.scores' \"predictor\" needs 'lemo.predictor', the folder "
                          "lemo prepare wrote");
    if (z->predictor[0] && z->scores != LEMO_SCORES_PREDICTOR)
        return err_set_at(e, "lemo.predictor", 0, "'lemo.predictor' is read only with 'lemo.scores' \"predictor\"");
    // the sizes both backends implement (the CUDA scoring kernel is built for these)
    if (get_int(o, "block", "lemo.block", &z->block, 32, 128, e)) return -1;
    if (z->block != 32 && z->block != 64 && z->block != 128)
        return err_set_at(e, "lemo.block", 0, "'lemo.block' must be 32, 64 or 128 tokens, got %d", z->block);
    json_t *k = json_object_get(o, "keep");
    if (k && json_is_array(k)) {
        size_t i, n = json_array_size(k);
        json_t *x;
        if (n == 0 || n > JOB_MAX_LAYERS)
            return err_set_at(e, "lemo.keep", 0, "'lemo.keep' must be a fraction or an array of 1 to %d fractions, "
                              "one per layer", JOB_MAX_LAYERS);
        json_array_foreach(k, i, x) {
            double d = json_is_number(x) ? json_number_value(x) : -1;
            if (!(d > 0 && d <= 1))
                return err_set_at(e, "lemo.keep", 0, "'lemo.keep[%zu]' must be a fraction in (0, 1]", i);
            z->keep[i] = d;
        }
        z->n_keep = (int)n;
    } else if (k && json_is_string(k) && !strcmp(json_string_value(k), "auto")) {
        if (z->scores != LEMO_SCORES_PREDICTOR)
            return err_set_at(e, "lemo.keep", 0, "'lemo.keep' \"auto\" is the predictor's calibrated schedule: it needs "
                              "'lemo.scores' \"predictor\"");
        z->keep_auto = 1;
    } else if (k) {
        double d = json_is_number(k) ? json_number_value(k) : -1;
        if (!(d > 0 && d <= 1))
            return err_set_at(e, "lemo.keep", 0, "'lemo.keep' must be a fraction in (0, 1], one per layer or \"auto\"");
        z->keep_all = d;
    }
    json_t *d = json_object_get(o, "dense_layers");
    if (d) {
        size_t i;
        json_t *x;
        if (!json_is_array(d) || json_array_size(d) > JOB_MAX_LAYERS)
            return err_set_at(e, "lemo.dense_layers", 0, "'lemo.dense_layers' must be an array of layer indices");
        json_array_foreach(d, i, x) {
            if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= JOB_MAX_LAYERS)
                return err_set_at(e, "lemo.dense_layers", 0, "'lemo.dense_layers[%zu]' must be a layer index", i);
            z->dense[i] = (int)json_integer_value(x);
        }
        z->n_dense = (int)json_array_size(d);
    }
    json_t *sd = json_object_get(o, "seed");
    if (sd) {
        if (!json_is_integer(sd) || json_integer_value(sd) < 0)
            return err_set_at(e, "lemo.seed", 0, "'lemo.seed' must be a non-negative integer");
        z->seed = (uint64_t)json_integer_value(sd);
        z->has_seed = 1;
    }
    return 0;
}

/* parallel: {gpus: N, mode: "auto" | "data" | "context"} (job_config.h's ParallelConfig); how
 * it fits the rest of the config is job_parallel_check's, run once everything is read. */
static int parse_parallel(json_t *o, ParallelConfig *p, Err *e) {
    static const char *const known[] = {"gpus", "mode", NULL};
    if (!json_is_object(o)) return err_set_at(e, "parallel", 0, "'parallel' must be an object: {\"gpus\": N, \"mode\": ...}");
    if (check_keys(o, "parallel.", known, e)) return -1;
    if (get_int(o, "gpus", "parallel.gpus", &p->gpus, 1, PAR_MAX_GPUS, e)) return -1;
    json_t *m = json_object_get(o, "mode");
    if (m && !json_is_null(m)) {
        const char *v = json_is_string(m) ? json_string_value(m) : "";
        p->mode = -1;
        for (int i = 0; i < PAR_MODE_N; i++)
            if (!strcmp(v, parallel_mode_names[i])) p->mode = i;
        if (p->mode < 0)
            return err_set_at(e, "parallel.mode", 0, "'parallel.mode' must be \"data\", \"context\" or \"auto\"");
    }
    return 0;
}

int job_parallel_check(const JobConfig *c, Err *e) {
    const ParallelConfig *p = &c->parallel;
    if (p->gpus < 1 || p->gpus > PAR_MAX_GPUS)
        return err_set_at(e, "parallel.gpus", 0, "'parallel.gpus' must be in [1, %d], got %d", PAR_MAX_GPUS, p->gpus);
    if (p->mode < 0 || p->mode >= PAR_MODE_N)
        return err_set_at(e, "parallel.mode", 0, "'parallel.mode' must be \"data\", \"context\" or \"auto\"");
    int cpu = !strcmp(c->device, "cpu");
    if (cpu && p->mode == PAR_MODE_CONTEXT)
        return err_set_at(e, "parallel.mode", 0, "'parallel.mode' \"context\" needs the CUDA backend (its ring of K/V "
                          "shards runs over NCCL), but 'device' is \"cpu\"");
    if (cpu && p->gpus > 1)
        return err_set_at(e, "parallel.gpus", 0, "'parallel.gpus' %d needs the CUDA backend (the ranks talk through "
                          "NCCL), but 'device' is \"cpu\"", p->gpus);
    if (p->mode == PAR_MODE_DATA && c->grad_accum < p->gpus)
        return err_set_at(e, "grad_accum", 0, "'grad_accum' (%d) must be at least 'parallel.gpus' (%d) in data parallel: "
                          "each GPU trains whole windows of the step's %d; raise grad_accum or use mode \"context\"",
                          c->grad_accum, p->gpus, c->grad_accum);
    // one GPU splits nothing; several cut the window into 2 * gpus chunks of whole units
    int unit = parallel_unit_rows(c->lemo.on, c->lemo.block), split = 2 * p->gpus * unit;
    if (p->mode == PAR_MODE_CONTEXT && p->gpus > 1 && c->context_length % split) {
        int below = c->context_length / split * split, above = below + split;
        char near[64];
        if (below) snprintf(near, sizeof near, "%d or %d", below, above);
        else snprintf(near, sizeof near, "%d", above);
        return err_set_at(e, "context_length", 0, "'context_length' (%d) must be a multiple of %d in context parallel "
                          "over %d GPUs: the window is cut into %d chunks (zigzag) of whole %d-row units; %s would do",
                          c->context_length, split, p->gpus, 2 * p->gpus, unit, near);
    }
    return 0;
}

int job_config_parse(const char *text, JobConfig *c, Err *e) {
    static const char *const known[] = {
        "model", "train_file", "eval_file", "output_dir", "resume_from", "device", "context_length",
        "max_steps", "epochs", "seed", "chat_template", "eval_fraction", "eval_every", "checkpoint_every",
        "eval_windows", "grad_accum", "lora", "optimizer", "rope_scaling", "memory", "lemo", "base_model_name", "parallel",
        NULL};
    job_config_defaults(c);
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    if (!o) return err_set(e, "config is not valid JSON: line %d: %s", je.line, je.text);
    int rc = -1;
    if (!json_is_object(o)) { err_set(e, "config must be a JSON object"); goto out; }
    if (check_keys(o, "", known, e)) goto out;
    if (get_str(o, "model", "model", c->model, sizeof c->model, e)) goto out;
    if (get_str(o, "base_model_name", "base_model_name", c->base_model_name, sizeof c->base_model_name, e)) goto out;
    if (get_str(o, "train_file", "train_file", c->train_file, sizeof c->train_file, e)) goto out;
    if (get_str(o, "eval_file", "eval_file", c->eval_file, sizeof c->eval_file, e)) goto out;
    if (get_str(o, "output_dir", "output_dir", c->output_dir, sizeof c->output_dir, e)) goto out;
    if (get_str(o, "resume_from", "resume_from", c->resume_from, sizeof c->resume_from, e)) goto out;
    if (get_str(o, "device", "device", c->device, sizeof c->device, e)) goto out;
    if (strcmp(c->device, "auto") && strcmp(c->device, "cpu") && strcmp(c->device, "cuda")) {
        err_set_at(e, "device", 0, "'device' must be \"auto\", \"cpu\" or \"cuda\"");
        goto out;
    }
    if (!c->model[0]) { err_set_at(e, "model", 0, "'model' (a model directory) is required"); goto out; }
    if (!c->train_file[0]) { err_set_at(e, "train_file", 0, "'train_file' is required"); goto out; }
    if (!c->output_dir[0]) { err_set_at(e, "output_dir", 0, "'output_dir' is required"); goto out; }
    if (get_int(o, "context_length", "context_length", &c->context_length, 2, 1 << 22, e)) goto out;
    if (get_int(o, "max_steps", "max_steps", &c->max_steps, 0, 100000000, e)) goto out;
    if (get_num(o, "epochs", "epochs", &c->epochs, 1e-6, 1e6, e)) goto out;
    if (json_object_get(o, "seed")) {
        json_t *s = json_object_get(o, "seed");
        if (!json_is_integer(s) || json_integer_value(s) < 0) { err_set_at(e, "seed", 0, "'seed' must be a non-negative integer"); goto out; }
        c->seed = (uint64_t)json_integer_value(s);
    }
    json_t *tm = json_object_get(o, "chat_template");
    if (tm && !json_is_null(tm)) {
        const char *s = json_is_string(tm) ? json_string_value(tm) : "";
        if (!strcmp(s, "auto")) c->chat_template = TEMPLATE_AUTO;
        else if (!strcmp(s, "llama3")) c->chat_template = TEMPLATE_LLAMA3;
        else if (!strcmp(s, "chatml")) c->chat_template = TEMPLATE_CHATML;
        else if (!strcmp(s, "inst")) c->chat_template = TEMPLATE_INST;
        else { err_set_at(e, "chat_template", 0, "'chat_template' must be \"auto\", \"llama3\", \"chatml\" or \"inst\""); goto out; }
    }
    if (get_num(o, "eval_fraction", "eval_fraction", &c->eval_fraction, 0, 0.5, e)) goto out;
    if (get_int(o, "eval_every", "eval_every", &c->eval_every, 0, 100000000, e)) goto out;
    if (get_int(o, "checkpoint_every", "checkpoint_every", &c->checkpoint_every, 0, 100000000, e)) goto out;
    if (get_int(o, "eval_windows", "eval_windows", &c->eval_windows, 1, 1000000, e)) goto out;
    if (get_int(o, "grad_accum", "grad_accum", &c->grad_accum, 1, 4096, e)) goto out;
    json_t *x;
    if ((x = json_object_get(o, "lora")) && parse_lora(x, c, e)) goto out;
    if ((x = json_object_get(o, "optimizer")) && parse_optimizer(x, c, e)) goto out;
    if ((x = json_object_get(o, "rope_scaling")) && parse_rope(x, c, e)) goto out;
    if ((x = json_object_get(o, "memory")) && parse_memory(x, &c->act, &c->act_auto, e)) goto out;
    if ((x = json_object_get(o, "lemo")) && !json_is_null(x) && parse_lemo(x, &c->lemo, e)) goto out;
    if (!c->lemo.has_seed) c->lemo.seed = c->seed;
    if (c->lemo.on && c->context_length % c->lemo.block) {
        err_set_at(e, "context_length", 0, "'context_length' (%d) must be a multiple of 'lemo.block' (%d): LeMo keeps "
                   "or drops whole blocks of tokens", c->context_length, c->lemo.block);
        goto out;
    }
    if ((x = json_object_get(o, "parallel")) && !json_is_null(x) && parse_parallel(x, &c->parallel, e)) goto out;
    if (job_parallel_check(c, e)) goto out;
    rc = 0;
out:
    json_decref(o);
    return rc;
}

int job_config_load(const char *path, JobConfig *c, Err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(e, "cannot open config %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || n > (1 << 20)) { fclose(f); return err_set(e, "config %s: too large or unreadable", path); }
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    buf[got] = 0;
    int rc = job_config_parse(buf, c, e);
    free(buf);
    if (rc) err_prefix(e, "config %s", path);
    return rc;
}

json_t *lemo_config_to_json(const LemoConfig *z) {
    json_t *lm = json_pack("{s:s, s:i, s:I}", "scores", lemo_score_names[z->scores], "block", z->block, "seed",
                           (json_int_t)z->seed);
    if (z->predictor[0]) json_object_set_new(lm, "predictor", json_string(z->predictor));
    if (z->keep_auto) {
        json_object_set_new(lm, "keep", json_string("auto"));
    } else if (z->n_keep) {
        json_t *k = json_array();
        for (int l = 0; l < z->n_keep; l++) json_array_append_new(k, json_real(z->keep[l]));
        json_object_set_new(lm, "keep", k);
    } else {
        json_object_set_new(lm, "keep", json_real(z->keep_all));
    }
    if (z->n_dense >= 0) {
        json_t *d = json_array();
        for (int l = 0; l < z->n_dense; l++) json_array_append_new(d, json_integer(z->dense[l]));
        json_object_set_new(lm, "dense_layers", d);
    }
    return lm;
}

char *job_config_to_json(const JobConfig *c) {
    static const char *const tmpl[] = {"auto", "llama3", "chatml", "inst"};
    json_t *t = json_array();
    for (int i = 0; i < JOB_MAX_TARGETS; i++)
        if (c->lora.targets[i]) json_array_append_new(t, json_string(job_target_names[i]));
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:f, s:I, s:s, s:f, s:i, s:i, s:i, s:i}",
                          "model", c->model, "train_file", c->train_file, "eval_file", c->eval_file,
                          "output_dir", c->output_dir, "resume_from", c->resume_from, "device", c->device,
                          "context_length", c->context_length, "max_steps", c->max_steps, "epochs", c->epochs,
                          "seed", (json_int_t)c->seed, "chat_template", tmpl[c->chat_template],
                          "eval_fraction", c->eval_fraction, "eval_every", c->eval_every,
                          "checkpoint_every", c->checkpoint_every, "eval_windows", c->eval_windows,
                          "grad_accum", c->grad_accum);
    if (c->base_model_name[0]) json_object_set_new(o, "base_model_name", json_string(c->base_model_name));
    json_object_set_new(o, "lora", json_pack("{s:i, s:f, s:f, s:o}", "r", c->lora.r, "alpha", (double)c->lora.alpha,
                                             "dropout", (double)c->lora.dropout, "target_modules", t));
    json_object_set_new(o, "optimizer",
                        json_pack("{s:f, s:[f,f], s:f, s:f, s:i, s:f, s:f}", "lr", (double)c->optim.lr, "betas",
                                  (double)c->optim.beta1, (double)c->optim.beta2, "eps", (double)c->optim.eps,
                                  "weight_decay", (double)c->optim.weight_decay, "warmup_steps",
                                  c->optim.warmup_steps, "grad_clip", (double)c->optim.grad_clip, "min_lr_ratio",
                                  (double)c->optim.min_lr_ratio));
    if (c->has_rope_scaling) {
        static const char *const rt[] = {"default", "linear", "llama3"};
        const RopeScaling *r = &c->rope_scaling;
        json_object_set_new(o, "rope_scaling",
                            json_pack("{s:s, s:f, s:f, s:f, s:i}", "type", rt[r->type], "factor", (double)r->factor,
                                      "low_freq_factor", (double)r->low_freq_factor, "high_freq_factor",
                                      (double)r->high_freq_factor, "original_max_position_embeddings",
                                      r->original_max_position));
    }
    // memory.auto stands alone; otherwise the policy of every layer and the per-layer list
    json_t *mem = c->act_auto ? json_pack("{s:b}", "auto", 1)
                              : json_pack("{s:b, s:b, s:b}", "checkpointing", c->act.all != ACT_KEEP, "offload",
                                          act_offloads(c->act.all), "offload_attention", c->act.all == ACT_OFFLOAD_ATT);
    if (!c->act_auto && c->act.mlp_tiles > 1) json_object_set_new(mem, "mlp_tiles", json_integer(c->act.mlp_tiles));
    if (!c->act_auto && c->act.n) {
        json_t *ly = json_array();
        for (int l = 0; l < c->act.n; l++) json_array_append_new(ly, json_string(act_names[c->act.layer[l]]));
        json_object_set_new(mem, "layers", ly);
    }
    json_object_set_new(o, "memory", mem);
    if (c->lemo.on) json_object_set_new(o, "lemo", lemo_config_to_json(&c->lemo));
    json_object_set_new(o, "parallel", json_pack("{s:i, s:s}", "gpus", c->parallel.gpus, "mode",
                                                 parallel_mode_names[c->parallel.mode]));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(o);
    return s;
}
