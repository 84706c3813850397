/* job_request.c: request body -> trainer config (see job_request.h). */
#include "job_request.h"

#include <limits.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "job_config.h"
#include "lemo.h"
#include "netaddr.h"
#include "srv_util.h"

/* Sets the error (param = request field) and the error code. */
#define FAIL(code_, param_, ...) \
    (snprintf(out->code, sizeof out->code, "%s", code_), err_set_at(e, param_, 0, __VA_ARGS__))

static int is_auto(json_t *v) { return json_is_string(v) && !strcmp(json_string_value(v), "auto"); }

/* Reads an integer hyperparameter (an integral real is accepted); 0 absent/auto, 1 read, -1 bad. */
static int hp_int(json_t *hp, const char *key, long lo, long hi, long *dst, JobSpec *out, Err *e) {
    json_t *v = json_object_get(hp, key);
    char p[96];
    snprintf(p, sizeof p, "hyperparameters.%s", key);
    if (!v || json_is_null(v) || is_auto(v)) return 0;
    double d;
    if (json_is_integer(v)) d = (double)json_integer_value(v);
    else if (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v)) d = json_real_value(v);
    else return FAIL("invalid_type", p, "'%s' must be an integer or \"auto\"", p);
    if (d < lo || d > hi) return FAIL("invalid_value", p, "'%s' must be from %ld to %ld, got %.0f", p, lo, hi, d);
    *dst = (long)d;
    return 1;
}

/* Reads a number hyperparameter in (lo, hi] (lo_open) or [lo, hi]. */
static int hp_num(json_t *hp, const char *key, double lo, int lo_open, double hi, double *dst, JobSpec *out, Err *e) {
    json_t *v = json_object_get(hp, key);
    char p[96];
    snprintf(p, sizeof p, "hyperparameters.%s", key);
    if (!v || json_is_null(v) || is_auto(v)) return 0;
    if (!json_is_number(v)) return FAIL("invalid_type", p, "'%s' must be a number or \"auto\"", p);
    double d = json_number_value(v);
    if (!(lo_open ? d > lo : d >= lo) || !(d <= hi))
        return FAIL("invalid_value", p, "'%s' must be %s %g and at most %g, got %g", p, lo_open ? "above" : "at least",
                    lo, hi, d);
    *dst = d;
    return 1;
}

static const char *const hp_known[] = {
    "n_epochs", "batch_size", "learning_rate_multiplier", "learning_rate", "max_steps", "context_length",
    "lora_r", "lora_alpha", "lora_dropout", "target_modules", "checkpoint_every", "eval_every",
    "warmup_steps", "weight_decay", "grad_clip", "rope_scaling", "memory", NULL};

/* Merges the top-level and method.supervised (or method.lemo) hyperparameters into one object
 * (method wins). With method.type "lemo", *is_lemo = 1 and *lemo is the method.lemo object
 * (borrowed; NULL when absent: LeMo's defaults), whose other keys are LeMo's (lemo_config). */
static json_t *hp_collect(json_t *body, JobSpec *out, json_t **lemo, int *is_lemo_out, Err *e) {
    *lemo = NULL;
    *is_lemo_out = 0;
    json_t *hp = json_object();
    json_t *top = json_object_get(body, "hyperparameters");
    if (top && !json_is_null(top)) {
        if (!json_is_object(top)) { json_decref(hp); FAIL("invalid_type", "hyperparameters", "'hyperparameters' must be an object"); return NULL; }
        json_object_update(hp, top);
    }
    json_t *m = json_object_get(body, "method");
    if (m && !json_is_null(m)) {
        if (!json_is_object(m)) { json_decref(hp); FAIL("invalid_type", "method", "'method' must be an object"); return NULL; }
        const char *k;
        json_t *v;
        json_t *t = json_object_get(m, "type");
        int is_lemo = t && json_is_string(t) && !strcmp(json_string_value(t), "lemo");
        if (t && !is_lemo && !(json_is_string(t) && !strcmp(json_string_value(t), "supervised"))) {
            json_decref(hp);
            FAIL("unsupported_method", "method.type", "'method.type' must be \"supervised\" (LoRA fine-tuning) or "
                 "\"lemo\" (LoRA with LeMo's token elimination)");
            return NULL;
        }
        const char *sub = is_lemo ? "lemo" : "supervised";
        json_object_foreach(m, k, v) {
            if (strcmp(k, "type") && strcmp(k, sub)) {
                char p[96];
                snprintf(p, sizeof p, "method.%.60s", k);
                json_decref(hp);
                FAIL("unknown_parameter", p, "Unknown field '%s' (method.type \"%s\" takes method.%s)", p, is_lemo ? "lemo" :
                     "supervised", sub);
                return NULL;
            }
        }
        json_t *s = json_object_get(m, sub);
        *is_lemo_out = is_lemo;
        if (is_lemo && s && json_is_object(s)) *lemo = s;
        if (s && !json_is_null(s)) {
            char p[96];
            snprintf(p, sizeof p, "method.%s", sub);
            if (!json_is_object(s)) { json_decref(hp); FAIL("invalid_type", p, "'%s' must be an object", p); return NULL; }
            static const char *const lemo_keys[] = {"hyperparameters", "keep", "scores", "block", "dense_layers", "seed",
                                                    "prepare", NULL};
            json_object_foreach(s, k, v) {
                if (strcmp(k, "hyperparameters") && !(is_lemo && str_in(k, lemo_keys))) {
                    snprintf(p, sizeof p, "method.%s.%.50s", sub, k);
                    json_decref(hp);
                    FAIL("unknown_parameter", p, "Unknown field '%s'%s", p, is_lemo ? " (method.lemo takes "
                         "hyperparameters, keep, scores, block, dense_layers, seed, prepare)" : "");
                    return NULL;
                }
            }
            json_t *sh = json_object_get(s, "hyperparameters");
            if (sh && !json_is_null(sh)) {
                snprintf(p, sizeof p, "method.%s.hyperparameters", sub);
                if (!json_is_object(sh)) {
                    json_decref(hp);
                    FAIL("invalid_type", p, "'%s' must be an object", p);
                    return NULL;
                }
                // given in both places, a hyperparameter must say the same in both
                json_object_foreach(sh, k, v) {
                    json_t *t = json_object_get(hp, k);
                    if (t && !json_equal(t, v)) {
                        snprintf(p, sizeof p, "method.%s.hyperparameters.%.40s", sub, k);
                        json_decref(hp);
                        FAIL("conflicting_hyperparameters", p, "'%s' disagrees with 'hyperparameters.%.40s': give it in "
                             "one place, or the same in both", p, k);
                        return NULL;
                    }
                }
                json_object_update(hp, sh);
            }
        }
    }
    const char *k;
    json_t *v;
    json_object_foreach(hp, k, v) {
        if (!str_in(k, hp_known)) {
            char p[96];
            snprintf(p, sizeof p, "hyperparameters.%.60s", k);
            FAIL("unknown_parameter", p, "Unknown hyperparameter '%.60s' (known: n_epochs, max_steps, batch_size, "
                 "learning_rate, learning_rate_multiplier, context_length, lora_r, lora_alpha, lora_dropout, "
                 "target_modules, checkpoint_every, eval_every, warmup_steps, weight_decay, grad_clip, rope_scaling, "
                 "memory)", k);
            json_decref(hp);
            return NULL;
        }
    }
    return hp;
}

/* Maps a trainer-config key reported by job_config_parse back to the request field. */
static void map_config_param(const char *cp, char *out, size_t cap) {
    static const char *const map[][2] = {
        {"context_length", "hyperparameters.context_length"}, {"max_steps", "hyperparameters.max_steps"},
        {"epochs", "hyperparameters.n_epochs"}, {"grad_accum", "hyperparameters.batch_size"},
        {"lora.r", "hyperparameters.lora_r"}, {"lora.alpha", "hyperparameters.lora_alpha"},
        {"lora.dropout", "hyperparameters.lora_dropout"}, {"lora.target_modules", "hyperparameters.target_modules"},
        {"optimizer.lr", "hyperparameters.learning_rate"}, {"optimizer.weight_decay", "hyperparameters.weight_decay"},
        {"optimizer.warmup_steps", "hyperparameters.warmup_steps"}, {"optimizer.grad_clip", "hyperparameters.grad_clip"},
        {"eval_every", "hyperparameters.eval_every"}, {"checkpoint_every", "hyperparameters.checkpoint_every"},
        {"seed", "seed"}, {"model", "model"}, {"train_file", "training_file"}, {"eval_file", "validation_file"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(cp, map[i][0])) { snprintf(out, cap, "%s", map[i][1]); return; }
    if (!strncmp(cp, "rope_scaling", 12)) { snprintf(out, cap, "hyperparameters.%.100s", cp); return; }
    if (!strncmp(cp, "memory", 6)) { snprintf(out, cap, "hyperparameters.memory"); return; }
    if (!strncmp(cp, "lemo", 4)) { snprintf(out, cap, "method.%.100s", cp); return; }
    snprintf(out, cap, "%s", cp);
}

/* Checks the top-level fields other than hyperparameters/method and fills out. */
static int top_fields(json_t *b, const JobEnv *env, JobSpec *out, char *model_dir, int *max_pos, int *n_layers,
                      char *train_path, char *eval_path, Err *e) {
    static const char *const known[] = {"model", "training_file", "validation_file", "seed", "suffix", "metadata",
                                        "hyperparameters", "method", NULL};
    const char *k;
    json_t *v;
    json_object_foreach(b, k, v) {
        if (!str_in(k, known)) {
            char p[80];
            snprintf(p, sizeof p, "%.60s", k);
            return FAIL("unknown_parameter", p, "Unknown field '%s' (known: model, training_file, validation_file, "
                        "seed, suffix, metadata, hyperparameters, method)", p);
        }
    }
    json_t *m = json_object_get(b, "model");
    if (!m) return FAIL("missing_required_parameter", "model", "'model' is required: the name of a model folder");
    if (!json_is_string(m)) return FAIL("invalid_type", "model", "'model' must be a string");
    const char *ms = json_string_value(m);
    if (strlen(ms) >= sizeof out->model || env->model_dir(env->ctx, ms, model_dir, PATH_MAX, max_pos, n_layers))
        return FAIL("model_not_found", "model", "Model '%.200s' not found: it must be the name of a model folder "
                    "(config.json + *.safetensors + tokenizer.json) under --models; see GET /v1/models", ms);
    snprintf(out->model, sizeof out->model, "%s", ms);
    json_t *tf = json_object_get(b, "training_file");
    if (!tf) return FAIL("missing_required_parameter", "training_file", "'training_file' is required (a file id from POST /v1/files)");
    if (!json_is_string(tf)) return FAIL("invalid_type", "training_file", "'training_file' must be a string");
    const char *ts = json_string_value(tf);
    if (!id_valid(ts, "file-") || env->file_path(env->ctx, ts, train_path, PATH_MAX))
        return FAIL("file_not_found", "training_file", "Training file '%.100s' not found", ts);
    snprintf(out->training_file, sizeof out->training_file, "%s", ts);
    json_t *vf = json_object_get(b, "validation_file");
    eval_path[0] = 0;
    if (vf && !json_is_null(vf)) {
        if (!json_is_string(vf)) return FAIL("invalid_type", "validation_file", "'validation_file' must be a string or null");
        const char *vs = json_string_value(vf);
        if (!id_valid(vs, "file-") || env->file_path(env->ctx, vs, eval_path, PATH_MAX))
            return FAIL("file_not_found", "validation_file", "Validation file '%.100s' not found", vs);
        snprintf(out->validation_file, sizeof out->validation_file, "%s", vs);
    }
    json_t *sd = json_object_get(b, "seed");
    if (sd && !json_is_null(sd)) {
        if (!json_is_integer(sd)) return FAIL("invalid_type", "seed", "'seed' must be an integer");
        json_int_t s = json_integer_value(sd);
        if (s < 0 || s > 2147483647) return FAIL("invalid_value", "seed", "'seed' must be from 0 to 2147483647");
        out->seed = s;
    } else {
        uint32_t r;
        random_bytes(&r, sizeof r);
        out->seed = r & 0x7fffffff;
    }
    json_t *sf = json_object_get(b, "suffix");
    if (sf && !json_is_null(sf)) {
        if (!json_is_string(sf)) return FAIL("invalid_type", "suffix", "'suffix' must be a string");
        const char *s = json_string_value(sf);
        size_t n = strlen(s);
        if (n < 1 || n > 64) return FAIL("invalid_value", "suffix", "'suffix' must have 1 to 64 characters");
        for (const char *c = s; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-' ||
                  *c == '_' || *c == '.'))
                return FAIL("invalid_value", "suffix", "'suffix' may hold only letters, digits, '-', '_' and '.'");
        snprintf(out->suffix, sizeof out->suffix, "%s", s);
    }
    json_t *md = json_object_get(b, "metadata");
    if (md && !json_is_null(md)) {
        if (!json_is_object(md)) return FAIL("invalid_type", "metadata", "'metadata' must be an object of strings");
        if (json_object_size(md) > 16) return FAIL("invalid_value", "metadata", "'metadata' may have at most 16 keys");
        json_object_foreach(md, k, v) {
            char p[96];
            snprintf(p, sizeof p, "metadata.%.60s", k);
            if (strlen(k) > 64) return FAIL("invalid_value", "metadata", "metadata keys may have at most 64 characters");
            if (!json_is_string(v)) return FAIL("invalid_type", p, "'%s' must be a string", p);
            if (strlen(json_string_value(v)) > 512) return FAIL("invalid_value", p, "'%s' may have at most 512 characters", p);
        }
        json_t *wh = json_object_get(md, "webhook_url");
        if (wh) {
            const char *u = json_string_value(wh);
            if (strncmp(u, "http://", 7) && strncmp(u, "https://", 8))
                return FAIL("invalid_value", "metadata.webhook_url", "'metadata.webhook_url' must be an http(s) URL");
            char ip[64];   // a host name is judged when the webhook connects (its DNS answer can change)
            if (!env->allow_internal_urls && netaddr_url_host_internal(u, ip, sizeof ip))
                return FAIL("invalid_value", "metadata.webhook_url", "'metadata.webhook_url' leads to %s, an internal "
                            "address (loopback, private or link-local): this server does not send webhooks there "
                            "(started with --allow-internal-urls it would)", ip);
            snprintf(out->webhook_url, sizeof out->webhook_url, "%s", u);
        }
    }
    return 0;
}

void job_lemo_predictor_dir(const char *lemo_dir, const char *model, int block, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s/b%d", lemo_dir, model, block);
}

int job_lemo_prepare_of(json_t *request, LemoPrepare *p) {
    json_t *m = json_object_get(request, "method");
    json_t *lz = json_object_get(m, "lemo"), *pp = json_object_get(lz, "prepare");
    if (!json_is_object(pp)) return -1;
    p->steps = (long)json_integer_value(json_object_get(pp, "steps"));
    p->train_windows = (long)json_integer_value(json_object_get(pp, "train_windows"));
    p->context_length = (long)json_integer_value(json_object_get(pp, "context_length"));
    p->seed = (long)json_integer_value(json_object_get(pp, "seed"));
    p->keep_mean = json_number_value(json_object_get(pp, "keep_mean"));
    p->only = json_is_true(json_object_get(pp, "only"));
    return p->steps > 0 && p->train_windows > 0 && p->context_length > 0 ? 0 : -1;
}

int job_request_resolve(const char *body, size_t len, const JobEnv *env, JobSpec *out, Err *e) {
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *b = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!b) return FAIL("invalid_json", "", "The request body is not valid JSON (line %d, column %d): %s", je.line,
                        je.column, je.text);
    if (!json_is_object(b)) { json_decref(b); return FAIL("invalid_json", "", "The request body must be a JSON object"); }
    char model_dir[PATH_MAX], train_path[PATH_MAX], eval_path[PATH_MAX];
    int max_pos = 0, n_layers = 0;
    json_t *hp = NULL;
    if (top_fields(b, env, out, model_dir, &max_pos, &n_layers, train_path, eval_path, e)) goto fail;
    json_t *lemo_in = NULL;
    int is_lemo = 0;
    if (!(hp = hp_collect(b, out, &lemo_in, &is_lemo, e))) goto fail;

    long max_steps = 0, batch = 1, ctx = max_pos > 0 && max_pos < 1024 ? max_pos : 1024, r = 8;
    long ckpt = 0, eval_every = 0, warmup = 0;
    double epochs = 1, lr = JOB_DEFAULT_LR, mult = 1, alpha = 16, dropout = 0, wd = 0, clip = 1;
    int has_epochs, has_steps, has_lr, has_mult;
    if ((has_epochs = hp_num(hp, "n_epochs", 0, 1, 1000, &epochs, out, e)) < 0) goto fail;
    if ((has_steps = hp_int(hp, "max_steps", 1, 100000000, &max_steps, out, e)) < 0) goto fail;
    if (has_epochs && has_steps) {
        FAIL("invalid_value", "hyperparameters.n_epochs", "Give 'hyperparameters.n_epochs' or 'hyperparameters.max_steps', not both");
        goto fail;
    }
    if (hp_int(hp, "batch_size", 1, 4096, &batch, out, e) < 0) goto fail;
    if ((has_lr = hp_num(hp, "learning_rate", 0, 1, 1, &lr, out, e)) < 0) goto fail;
    if ((has_mult = hp_num(hp, "learning_rate_multiplier", 0, 1, 1000, &mult, out, e)) < 0) goto fail;
    if (has_lr && has_mult) {
        FAIL("invalid_value", "hyperparameters.learning_rate", "Give 'hyperparameters.learning_rate' or "
             "'hyperparameters.learning_rate_multiplier' (of %g), not both", JOB_DEFAULT_LR);
        goto fail;
    }
    if (has_mult) lr = JOB_DEFAULT_LR * mult;
    else mult = lr / JOB_DEFAULT_LR;
    if (lr > 1) { FAIL("invalid_value", "hyperparameters.learning_rate_multiplier", "The learning rate must stay at most 1"); goto fail; }
    if (hp_int(hp, "context_length", 2, 1 << 22, &ctx, out, e) < 0) goto fail;
    if (hp_int(hp, "lora_r", 1, 1024, &r, out, e) < 0) goto fail;
    if (hp_num(hp, "lora_alpha", 0, 1, 1e6, &alpha, out, e) < 0) goto fail;
    if (hp_num(hp, "lora_dropout", 0, 0, 0.9, &dropout, out, e) < 0) goto fail;
    if (hp_int(hp, "checkpoint_every", 0, 100000000, &ckpt, out, e) < 0) goto fail;
    if (hp_int(hp, "eval_every", 0, 100000000, &eval_every, out, e) < 0) goto fail;
    if (hp_int(hp, "warmup_steps", 0, 100000000, &warmup, out, e) < 0) goto fail;
    if (hp_num(hp, "weight_decay", 0, 0, 10, &wd, out, e) < 0) goto fail;
    if (hp_num(hp, "grad_clip", 0, 0, 1e6, &clip, out, e) < 0) goto fail;

    json_t *targets = json_array();
    json_t *tm = json_object_get(hp, "target_modules");
    if (!tm || json_is_null(tm) || is_auto(tm)) {
        for (int i = 0; i < 4; i++) json_array_append_new(targets, json_string(job_target_names[i]));
    } else if (json_is_string(tm) && !strcmp(json_string_value(tm), "all")) {
        for (int i = 0; i < JOB_MAX_TARGETS; i++) json_array_append_new(targets, json_string(job_target_names[i]));
    } else if (json_is_array(tm) && json_array_size(tm) > 0 && json_array_size(tm) <= JOB_MAX_TARGETS) {
        size_t i;
        json_t *x;
        json_array_foreach(tm, i, x) {
            int found = -1;
            for (int j = 0; json_is_string(x) && j < JOB_MAX_TARGETS; j++)
                if (!strcmp(json_string_value(x), job_target_names[j])) found = j;
            if (found < 0) {
                json_decref(targets);
                FAIL("invalid_value", "hyperparameters.target_modules", "'hyperparameters.target_modules[%zu]' must be one "
                     "of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj", i);
                goto fail;
            }
            json_array_append_new(targets, json_string(job_target_names[found]));
        }
    } else {
        json_decref(targets);
        FAIL("invalid_type", "hyperparameters.target_modules", "'hyperparameters.target_modules' must be \"auto\", "
             "\"all\" or a non-empty array of module names (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
        goto fail;
    }
    json_t *rope = json_object_get(hp, "rope_scaling");
    if (rope && (json_is_null(rope) || is_auto(rope))) rope = NULL;
    if (rope && !json_is_object(rope)) {
        json_decref(targets);
        FAIL("invalid_type", "hyperparameters.rope_scaling", "'hyperparameters.rope_scaling' must be an object like "
             "{\"type\": \"linear\", \"factor\": 4}");
        goto fail;
    }
    // beyond the positions the model was trained on, RoPE must be told what to do: scaled, or
    // {"type": "none"} to train there as the model is (then no override reaches the trainer)
    json_t *rt = rope ? json_object_get(rope, "type") : NULL;
    if (!rt && rope) rt = json_object_get(rope, "rope_type");
    int rope_none = rt && json_is_string(rt) && !strcmp(json_string_value(rt), "none");
    if (rope_none && json_object_size(rope) > 1) {
        json_decref(targets);
        FAIL("invalid_value", "hyperparameters.rope_scaling", "'hyperparameters.rope_scaling' {\"type\": \"none\"} takes "
             "no other field");
        goto fail;
    }
    if (!rope && max_pos > 0 && ctx > max_pos) {
        json_decref(targets);
        FAIL("context_beyond_model", "hyperparameters.context_length", "'hyperparameters.context_length' %ld is beyond "
             "the %d positions model %s was trained on: give 'hyperparameters.rope_scaling', e.g. {\"type\": "
             "\"linear\", \"factor\": %ld}, or {\"type\": \"none\"} to train there without scaling", ctx, max_pos,
             out->model, (ctx + max_pos - 1) / max_pos);
        goto fail;
    }

    // where a layer's activations wait for its backward (job_config.h's ACT_*): one policy
    // for every layer, or an array of one per layer (the trainer checks its length)
    int mem = ACT_RECOMPUTE;
    json_t *layers = NULL;
    json_t *mv = json_object_get(hp, "memory");
    int mem_auto = mv && is_auto(mv);  // the trainer fits the policy to the device (memory.auto)
    if (mv && !json_is_null(mv) && !is_auto(mv)) {
        int bad = 0;
        if (json_is_array(mv)) {
            size_t i;
            json_t *v;
            layers = json_array();
            json_array_foreach(mv, i, v) {
                int k = json_is_string(v) ? act_from_name(json_string_value(v)) : -1;
                if (k < 0) bad = 1;
                else json_array_append_new(layers, json_string(act_names[k]));
            }
            bad |= json_array_size(mv) == 0;
            if (!bad && n_layers > 0 && json_array_size(mv) != (size_t)n_layers) {
                json_decref(targets);
                json_decref(layers);
                FAIL("invalid_value", "hyperparameters.memory", "'hyperparameters.memory' names %zu layers but model "
                     "'%s' has %d: give one policy per layer, or one policy for all", json_array_size(mv), out->model,
                     n_layers);
                goto fail;
            }
        } else {
            mem = json_is_string(mv) ? act_from_name(json_string_value(mv)) : -1;
            bad = mem < 0;
        }
        if (bad) {
            json_decref(targets);
            json_decref(layers);
            FAIL("invalid_value", "hyperparameters.memory", "'hyperparameters.memory' must be \"recompute\" (layer "
                 "checkpoints on the device, the default), \"offload\" (in host memory), \"offload_attention\" "
                 "(checkpoints and attention outputs in host memory: faster at long context), \"keep\" (every "
                 "activation on the device), \"auto\" (the trainer picks, layer by layer, the fastest that fits "
                 "the GPU), or an array of these, one per layer of the model");
            goto fail;
        }
    }

    json_t *cfg = json_object();
    json_object_set_new(cfg, "model", json_string(model_dir));
    json_object_set_new(cfg, "base_model_name", json_string(out->model));  // the adapters name the id, not a server path
    json_object_set_new(cfg, "train_file", json_string(train_path));
    json_object_set_new(cfg, "eval_file", json_string(eval_path));
    json_object_set_new(cfg, "output_dir", json_string(env->output_dir));
    json_object_set_new(cfg, "context_length", json_integer(ctx));
    if (has_steps) json_object_set_new(cfg, "max_steps", json_integer(max_steps));
    else json_object_set_new(cfg, "epochs", json_real(epochs));
    json_object_set_new(cfg, "seed", json_integer(out->seed));
    json_object_set_new(cfg, "chat_template", json_string("auto"));
    json_object_set_new(cfg, "eval_every", json_integer(eval_every));
    json_object_set_new(cfg, "checkpoint_every", json_integer(ckpt));
    json_object_set_new(cfg, "grad_accum", json_integer(batch));
    json_object_set_new(cfg, "lora", json_pack("{s:I, s:f, s:f, s:O}", "r", (json_int_t)r, "alpha", alpha, "dropout",
                                               dropout, "target_modules", targets));
    json_object_set_new(cfg, "optimizer", json_pack("{s:f, s:f, s:I, s:f}", "lr", lr, "weight_decay", wd,
                                                    "warmup_steps", (json_int_t)warmup, "grad_clip", clip));
    if (rope && !rope_none) json_object_set(cfg, "rope_scaling", rope);
    json_object_set_new(cfg, "resume_from", json_string("auto"));
    json_object_set_new(cfg, "device", json_string("auto"));
    json_t *mem_cfg = mem_auto ? json_pack("{s:b}", "auto", 1)
                               : json_pack("{s:b, s:b, s:b}", "checkpointing", mem != ACT_KEEP, "offload",
                                           act_offloads(mem), "offload_attention", mem == ACT_OFFLOAD_ATT);
    if (layers) json_object_set_new(mem_cfg, "layers", layers);
    json_object_set_new(cfg, "memory", mem_cfg);
    /* LeMo (method.type "lemo"): its keys go to the trainer's "lemo" as they are; the trainer's
     * parser checks them (errors come back as method.lemo.KEY). Scores default to the learned
     * predictors, kept per base model in the data directory: a job on a model without them
     * prepares them first (the scheduler's phase), with method.lemo.prepare's settings. */
    json_t *lemo_cfg = NULL, *prep_out = NULL;
    if (is_lemo) {
        lemo_cfg = json_object();
        static const char *const lk[] = {"keep", "scores", "block", "dense_layers", "seed", NULL};
        for (int i = 0; lk[i]; i++) {
            json_t *v = lemo_in ? json_object_get(lemo_in, lk[i]) : NULL;
            if (v && !json_is_null(v)) json_object_set(lemo_cfg, lk[i], v);
        }
        if (!json_object_get(lemo_cfg, "scores")) json_object_set_new(lemo_cfg, "scores", json_string("predictor"));
        json_t *sc = json_object_get(lemo_cfg, "scores"), *bk = json_object_get(lemo_cfg, "block");
        int predictor = json_is_string(sc) && !strcmp(json_string_value(sc), "predictor");
        json_t *pin = lemo_in ? json_object_get(lemo_in, "prepare") : NULL;
        if (pin && !json_is_null(pin) && !predictor) {
            json_decref(cfg), json_decref(targets), json_decref(lemo_cfg);
            FAIL("invalid_value", "method.lemo.prepare", "'method.lemo.prepare' is read only with 'method.lemo.scores' "
                 "\"predictor\" (the default)");
            goto fail;
        }
        if (predictor) {
            if (!env->lemo_dir) {
                json_decref(cfg), json_decref(targets), json_decref(lemo_cfg);
                FAIL("unsupported_value", "method.lemo.scores", "this server keeps no LeMo predictors: use "
                     "'method.lemo.scores' \"exact\" or \"random\"");
                goto fail;
            }
            LemoPrepare lp = {LEMO_PREPARE_DEFAULT_STEPS, LEMO_PREPARE_DEFAULT_WINDOWS, 0, 42, 0.6, 0};
            if (pin && !json_is_null(pin)) {
                if (!json_is_object(pin)) {
                    json_decref(cfg), json_decref(targets), json_decref(lemo_cfg);
                    FAIL("invalid_type", "method.lemo.prepare", "'method.lemo.prepare' must be an object (steps, "
                         "train_windows, context_length, keep_mean, seed)");
                    goto fail;
                }
                static const struct { const char *k; long lo, hi; size_t off; } ints[] = {
                    {"steps", 1, 100000, offsetof(LemoPrepare, steps)},
                    {"train_windows", 1, 4096, offsetof(LemoPrepare, train_windows)},
                    {"context_length", 64, 1 << 20, offsetof(LemoPrepare, context_length)},
                    {"seed", 0, 1L << 40, offsetof(LemoPrepare, seed)}};
                const char *pk;
                json_t *pv;
                json_object_foreach(pin, pk, pv) {
                    char pp[96];
                    snprintf(pp, sizeof pp, "method.lemo.prepare.%.40s", pk);
                    int known = !strcmp(pk, "keep_mean") || (!strcmp(pk, "only") && env->allow_prepare_only);
                    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) known |= !strcmp(pk, ints[i].k);
                    if (!known) {
                        json_decref(cfg), json_decref(targets), json_decref(lemo_cfg);
                        FAIL("unknown_parameter", pp, "Unknown field '%s' (method.lemo.prepare takes steps, "
                             "train_windows, context_length, keep_mean, seed)", pp);
                        goto fail;
                    }
                    int bad = 0;
                    if (!strcmp(pk, "only")) {
                        bad = !json_is_boolean(pv);
                        lp.only = json_is_true(pv);
                    } else if (!strcmp(pk, "keep_mean")) {
                        bad = !json_is_number(pv) || !(json_number_value(pv) >= 0.2 && json_number_value(pv) <= 1);
                        lp.keep_mean = json_number_value(pv);
                    }
                    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
                        if (strcmp(pk, ints[i].k)) continue;
                        bad = !json_is_integer(pv) || json_integer_value(pv) < ints[i].lo ||
                              json_integer_value(pv) > ints[i].hi;
                        *(long *)((char *)&lp + ints[i].off) = (long)json_integer_value(pv);
                        if (bad) {
                            json_decref(cfg), json_decref(targets), json_decref(lemo_cfg);
                            FAIL("invalid_value", pp, "'%s' must be an integer from %ld to %ld", pp, ints[i].lo,
                                 ints[i].hi);
                            goto fail;
                        }
                    }
                    if (bad) {
                        json_decref(cfg), json_decref(targets), json_decref(lemo_cfg);
                        FAIL("invalid_value", pp, !strcmp(pk, "only") ? "'%s' must be true or false"
                                                                      : "'%s' must be a number from 0.2 to 1", pp);
                        goto fail;
                    }
                }
            }
            int block = json_is_integer(bk) ? (int)json_integer_value(bk) : 64;
            int block_ok = block == 32 || block == 64 || block == 128;  // else the trainer's parser says so
            if (!lp.context_length) {  // the job's context, within what a preparation needs and affords
                lp.context_length = ctx < LEMO_PREPARE_MAX_CONTEXT ? ctx : LEMO_PREPARE_MAX_CONTEXT;
                if (block_ok) lp.context_length = lp.context_length / block * block;
                if (block_ok && lp.context_length < 2 * block) lp.context_length = 2 * block;
            } else if (block_ok && lp.context_length % block) {
                json_decref(cfg), json_decref(targets), json_decref(lemo_cfg);
                FAIL("invalid_value", "method.lemo.prepare.context_length", "'method.lemo.prepare.context_length' (%ld) "
                     "must be a multiple of 'method.lemo.block' (%d)", lp.context_length, block);
                goto fail;
            }
            char pdir[PATH_MAX];
            job_lemo_predictor_dir(env->lemo_dir, out->model, block, pdir, sizeof pdir);
            json_object_set_new(lemo_cfg, "predictor", json_string(pdir));
            prep_out = json_pack("{s:I, s:I, s:I, s:f, s:I}", "steps", (json_int_t)lp.steps, "train_windows",
                                 (json_int_t)lp.train_windows, "context_length", (json_int_t)lp.context_length,
                                 "keep_mean", lp.keep_mean, "seed", (json_int_t)lp.seed);
            if (lp.only) json_object_set_new(prep_out, "only", json_true());
        }
        json_object_set(cfg, "lemo", lemo_cfg);
    }

    /* the trainer's own parser has the last word */
    char *txt = json_dumps(cfg, JSON_COMPACT | JSON_REAL_PRECISION(10));
    JobConfig jc;
    Err ce = {0};
    int bad = !txt || job_config_parse(txt, &jc, &ce);
    free(txt);
    if (bad) {
        char p[128];
        map_config_param(ce.param, p, sizeof p);
        json_decref(cfg);
        json_decref(targets);
        json_decref(lemo_cfg);
        json_decref(prep_out);
        FAIL("invalid_value", p, "%s", ce.msg);
        goto fail;
    }

    LemoSpec lz;  // LeMo's per-layer schedule against the model's depth, where it is known
    if (is_lemo && n_layers > 0 && lemo_resolve_planned(&jc.lemo, n_layers, &lz, &ce)) {
        char p[128];
        map_config_param(ce.param, p, sizeof p);
        json_decref(cfg);
        json_decref(targets);
        json_decref(lemo_cfg);
        json_decref(prep_out);
        FAIL("invalid_value", p, "%s", ce.msg);
        goto fail;
    }

    json_t *hpo = json_object();
    // an integer where it is whole, as OpenAI's clients type it (fractional epochs stay real)
    json_object_set_new(hpo, "n_epochs", has_steps ? json_string("auto")
                                         : epochs == floor(epochs) ? json_integer((json_int_t)epochs)
                                                                   : json_real(epochs));
    json_object_set_new(hpo, "max_steps", has_steps ? json_integer(max_steps) : json_null());
    json_object_set_new(hpo, "batch_size", json_integer(batch));
    json_object_set_new(hpo, "learning_rate_multiplier", json_real(mult));
    json_object_set_new(hpo, "learning_rate", json_real(lr));
    json_object_set_new(hpo, "context_length", json_integer(ctx));
    json_object_set_new(hpo, "lora_r", json_integer(r));
    json_object_set_new(hpo, "lora_alpha", json_real(alpha));
    json_object_set_new(hpo, "lora_dropout", json_real(dropout));
    json_object_set_new(hpo, "target_modules", targets);
    json_object_set_new(hpo, "checkpoint_every", json_integer(ckpt));
    json_object_set_new(hpo, "eval_every", json_integer(eval_every));
    json_object_set_new(hpo, "warmup_steps", json_integer(warmup));
    json_object_set_new(hpo, "weight_decay", json_real(wd));
    json_object_set_new(hpo, "grad_clip", json_real(clip));
    json_object_set_new(hpo, "rope_scaling", rope ? json_incref(rope) : json_null());
    json_object_set_new(hpo, "memory", layers ? json_incref(layers) : json_string(mem_auto ? "auto" : act_names[mem]));
    json_t *md = json_object_get(b, "metadata");
    json_t *method = json_pack("{s:s}", "type", is_lemo ? "lemo" : "supervised");
    // LeMo's settings as the trainer resolved them (its defaults filled in)
    json_t *sub = is_lemo ? lemo_config_to_json(&jc.lemo) : json_object();
    json_object_del(sub, "predictor");  // a server path: the job object names the base model's predictor by prepare
    if (prep_out) json_object_set_new(sub, "prepare", prep_out);
    json_object_set(sub, "hyperparameters", hpo);
    json_object_set_new(method, is_lemo ? "lemo" : "supervised", sub);
    out->request = json_pack("{s:O, s:o, s:O}", "hyperparameters", hpo, "method", method, "metadata",
                             md && json_is_object(md) ? md : json_null());
    json_decref(hpo);
    json_decref(lemo_cfg);
    out->config = cfg;
    json_decref(hp);
    json_decref(b);
    return 0;
fail:
    json_decref(hp);
    json_decref(b);
    return -1;
}

void job_spec_free(JobSpec *s) {
    json_decref(s->request);
    json_decref(s->config);
    s->request = s->config = NULL;
}
