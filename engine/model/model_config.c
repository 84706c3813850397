/* model_config.c: config.json -> ModelConfig, and the RoPE inverse frequencies.
 *
 * The engine supports three Hugging Face families (llama, mistral, qwen2) that
 * share one decoder layout, so a config reduces to a few sizes plus the RoPE
 * setup. Two spellings of RoPE exist in the wild: the classic top-level
 * `rope_theta` + `rope_scaling` ({"type"|"rope_type", "factor", ...}) and the
 * transformers-5 `rope_parameters` object carrying the theta as well; both
 * land in the same RopeScaling. Anything the engine cannot run faithfully
 * (another family, another rope type, MLP biases, a non-SiLU activation) is
 * refused with the offending key named, rather than silently approximated.
 *
 * model_rope_inv_freq mirrors transformers' rope init functions (default,
 * linear, llama3), computed in double and stored as float. */
#include "model_config.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Integer-valued key: absent -> def (or error when required); reals with an
 * integral value (4096.0) are accepted since some exporters write them. */
static int get_int(json_t *o, const char *key, int required, int def, int *out, Err *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required) return err_set_at(e, key, 0, "config.json: missing %s", key);
        *out = def;
        return 0;
    }
    double d;
    if (json_is_integer(v)) d = (double)json_integer_value(v);
    else if (json_is_real(v)) d = json_real_value(v);
    else return err_set_at(e, key, 0, "config.json: %s is not a number", key);
    if (d != floor(d) || d < -2147483648.0 || d > 2147483647.0)
        return err_set_at(e, key, 0, "config.json: %s = %g is not an integer", key, d);
    *out = (int)d;
    return 0;
}

/* Number-valued key (integer or real). `where` prefixes the key in messages
 * ("rope_scaling.factor"). */
static int get_num(json_t *o, const char *where, const char *key, int required, double def,
                   double *out, Err *e) {
    char full[128];
    snprintf(full, sizeof full, "%s%s%s", where, *where ? "." : "", key);
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required) return err_set_at(e, full, 0, "config.json: missing %s", full);
        *out = def;
        return 0;
    }
    if (!json_is_number(v)) return err_set_at(e, full, 0, "config.json: %s is not a number", full);
    *out = json_number_value(v);
    if (!isfinite(*out)) return err_set_at(e, full, 0, "config.json: %s is not finite", full);
    return 0;
}

static int get_bool(json_t *o, const char *key, int def, int *out, Err *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v)) return err_set_at(e, key, 0, "config.json: %s is not true/false", key);
    *out = json_is_true(v);
    return 0;
}

/* A token id: an integer, a list of integers (first one counts), or absent/null -> -1. */
static int get_token_id(json_t *o, const char *key, int *out, Err *e) {
    json_t *v = json_object_get(o, key);
    *out = -1;
    if (!v || json_is_null(v)) return 0;
    if (json_is_array(v)) {
        if (json_array_size(v) == 0) return 0;
        v = json_array_get(v, 0);
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 0x7fffffff)
        return err_set_at(e, key, 0, "config.json: %s is not a token id (or list of ids)", key);
    *out = (int)json_integer_value(v);
    return 0;
}

/* Reads a rope scaling object (classic rope_scaling or rope_parameters) named
 * `where`; sets the type and, for scaled types, the numbers they need. */
static int parse_rope(json_t *o, const char *where, RopeScaling *r, Err *e) {
    char key[128];
    json_t *jt = json_object_get(o, "rope_type");
    const char *tkey = "rope_type";
    if (!jt || json_is_null(jt)) {
        jt = json_object_get(o, "type");
        tkey = "type";
    }
    snprintf(key, sizeof key, "%s.%s", where, tkey);
    const char *type = "default";
    if (jt && !json_is_null(jt)) {
        if (!json_is_string(jt)) return err_set_at(e, key, 0, "config.json: %s is not a string", key);
        type = json_string_value(jt);
    }
    memset(r, 0, sizeof *r);
    r->factor = 1.0f;
    if (!strcmp(type, "default")) {
        r->type = ROPE_DEFAULT;
        return 0;
    }
    double factor;
    if (!strcmp(type, "linear")) {
        r->type = ROPE_LINEAR;
        if (get_num(o, where, "factor", 1, 0, &factor, e)) return -1;
        if (factor <= 0) {
            snprintf(key, sizeof key, "%s.factor", where);
            return err_set_at(e, key, 0, "config.json: %s = %g must be > 0", key, factor);
        }
        r->factor = (float)factor;
        return 0;
    }
    if (!strcmp(type, "llama3")) {
        double lo, hi, orig;
        r->type = ROPE_LLAMA3;
        if (get_num(o, where, "factor", 1, 0, &factor, e) ||
            get_num(o, where, "low_freq_factor", 1, 0, &lo, e) ||
            get_num(o, where, "high_freq_factor", 1, 0, &hi, e) ||
            get_num(o, where, "original_max_position_embeddings", 1, 0, &orig, e))
            return -1;
        if (factor <= 0 || lo <= 0 || orig < 1 || orig != floor(orig)) {
            snprintf(key, sizeof key, "%s", where);
            return err_set_at(e, key, 0,
                              "config.json: %s: factor, low_freq_factor must be > 0 and "
                              "original_max_position_embeddings a positive integer", where);
        }
        if (hi <= lo) {
            snprintf(key, sizeof key, "%s.high_freq_factor", where);
            return err_set_at(e, key, 0, "config.json: %s = %g must be above low_freq_factor = %g",
                              key, hi, lo);
        }
        r->factor = (float)factor;
        r->low_freq_factor = (float)lo;
        r->high_freq_factor = (float)hi;
        r->original_max_position = (int)orig;
        return 0;
    }
    return err_set_at(e, key, 0,
                      "config.json: %s = \"%.40s\" is not supported (lemo supports default, linear, llama3)",
                      key, type);
}

/* Reads the family, sizes, RoPE, embeddings tying, biases and special ids from a parsed root. */
static int parse_root(json_t *root, ModelConfig *c, Err *e) {
    memset(c, 0, sizeof *c);
    json_t *mt = json_object_get(root, "model_type");
    if (!json_is_string(mt)) return err_set_at(e, "model_type", 0, "config.json: missing model_type");
    const char *t = json_string_value(mt);
    if (!strcmp(t, "llama")) c->family = FAMILY_LLAMA;
    else if (!strcmp(t, "mistral")) c->family = FAMILY_MISTRAL;
    else if (!strcmp(t, "qwen2")) c->family = FAMILY_QWEN2;
    else
        return err_set_at(e, "model_type", 0,
                          "config.json: model_type \"%.40s\" is not supported (lemo supports llama, mistral, qwen2)", t);
    snprintf(c->model_type, sizeof c->model_type, "%s", t);

    /* family defaults as in transformers' config classes */
    int def_max_pos = c->family == FAMILY_LLAMA ? 2048 : c->family == FAMILY_MISTRAL ? 4096 * 32 : 32768;
    if (get_int(root, "num_hidden_layers", 1, 0, &c->n_layers, e) ||
        get_int(root, "hidden_size", 1, 0, &c->hidden, e) ||
        get_int(root, "num_attention_heads", 1, 0, &c->n_heads, e) ||
        get_int(root, "intermediate_size", 1, 0, &c->ffn, e) ||
        get_int(root, "vocab_size", 1, 0, &c->vocab, e) ||
        get_int(root, "max_position_embeddings", 0, def_max_pos, &c->max_pos, e))
        return -1;
    if (get_int(root, "num_key_value_heads", 0, c->n_heads, &c->n_kv_heads, e)) return -1;
    const struct { const char *k; int v; } pos[] = {
        {"num_hidden_layers", c->n_layers}, {"hidden_size", c->hidden},
        {"num_attention_heads", c->n_heads}, {"num_key_value_heads", c->n_kv_heads},
        {"intermediate_size", c->ffn}, {"vocab_size", c->vocab},
        {"max_position_embeddings", c->max_pos}};
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v <= 0)
            return err_set_at(e, pos[i].k, 0, "config.json: %s = %d must be positive", pos[i].k, pos[i].v);
    if (c->n_heads % c->n_kv_heads)
        return err_set_at(e, "num_key_value_heads", 0,
                          "config.json: num_key_value_heads = %d does not divide num_attention_heads = %d",
                          c->n_kv_heads, c->n_heads);
    json_t *hd = json_object_get(root, "head_dim");
    if (hd && !json_is_null(hd)) {
        if (get_int(root, "head_dim", 1, 0, &c->head_dim, e)) return -1;
        if (c->head_dim <= 0)
            return err_set_at(e, "head_dim", 0, "config.json: head_dim = %d must be positive", c->head_dim);
    } else {
        if (c->hidden % c->n_heads)
            return err_set_at(e, "num_attention_heads", 0,
                              "config.json: num_attention_heads = %d does not divide hidden_size = %d",
                              c->n_heads, c->hidden);
        c->head_dim = c->hidden / c->n_heads;
    }
    if (c->head_dim % 2)
        return err_set_at(e, "head_dim", 0, "config.json: head_dim = %d must be even for RoPE", c->head_dim);

    double eps;
    if (get_num(root, "", "rms_norm_eps", 0, 1e-6, &eps, e)) return -1;
    if (eps <= 0) return err_set_at(e, "rms_norm_eps", 0, "config.json: rms_norm_eps = %g must be > 0", eps);
    c->norm_eps = (float)eps;

    json_t *act = json_object_get(root, "hidden_act");
    if (act && !json_is_null(act) && (!json_is_string(act) || strcmp(json_string_value(act), "silu")))
        return err_set_at(e, "hidden_act", 0, "config.json: hidden_act must be \"silu\"");
    int mlp_bias = 0;
    if (get_bool(root, "mlp_bias", 0, &mlp_bias, e)) return -1;
    if (mlp_bias) return err_set_at(e, "mlp_bias", 0, "config.json: mlp_bias = true is not supported");
    if (c->family == FAMILY_QWEN2) {
        int sw = 0;
        if (get_bool(root, "use_sliding_window", 0, &sw, e)) return -1;
        if (sw)
            return err_set_at(e, "use_sliding_window", 0,
                              "config.json: use_sliding_window = true is not supported");
    }

    /* RoPE: rope_parameters (transformers 5) wins over the classic keys */
    double theta;
    json_t *rp = json_object_get(root, "rope_parameters");
    if (rp && !json_is_null(rp)) {
        if (!json_is_object(rp))
            return err_set_at(e, "rope_parameters", 0, "config.json: rope_parameters is not an object");
        if (get_num(rp, "rope_parameters", "rope_theta", 0, 10000.0, &theta, e) ||
            parse_rope(rp, "rope_parameters", &c->rope, e))
            return -1;
    } else {
        if (get_num(root, "", "rope_theta", 0, 10000.0, &theta, e)) return -1;
        json_t *rs = json_object_get(root, "rope_scaling");
        if (rs && !json_is_null(rs)) {
            if (!json_is_object(rs))
                return err_set_at(e, "rope_scaling", 0, "config.json: rope_scaling is not an object");
            if (parse_rope(rs, "rope_scaling", &c->rope, e)) return -1;
        } else {
            memset(&c->rope, 0, sizeof c->rope);
            c->rope.type = ROPE_DEFAULT;
            c->rope.factor = 1.0f;
        }
    }
    if (theta <= 0) return err_set_at(e, "rope_theta", 0, "config.json: rope_theta = %g must be > 0", theta);
    c->rope_theta = (float)theta;

    if (get_bool(root, "tie_word_embeddings", 0, &c->tie_embeddings, e)) return -1;
    int attn_bias = 0;
    if (get_bool(root, "attention_bias", 0, &attn_bias, e)) return -1;
    c->qkv_bias = c->family == FAMILY_QWEN2 || (c->family == FAMILY_LLAMA && attn_bias);
    c->o_bias = c->family == FAMILY_LLAMA && attn_bias;
    c->sliding_window = 0;
    if (c->family == FAMILY_MISTRAL) {  // null in Mistral v0.2+, 4096 in v0.1
        json_t *sw = json_object_get(root, "sliding_window");
        if (sw && !json_is_null(sw)) {
            if (!json_is_integer(sw) || json_integer_value(sw) < 1 || json_integer_value(sw) > (1 << 30))
                return err_set_at(e, "sliding_window", 0, "config.json: sliding_window must be a positive integer or null");
            c->sliding_window = (int)json_integer_value(sw);
        }
    }
    if (get_token_id(root, "bos_token_id", &c->bos_id, e) ||
        get_token_id(root, "eos_token_id", &c->eos_id, e))
        return -1;
    return 0;
}

int model_config_parse(const char *json_text, ModelConfig *c, Err *e) {
    json_error_t je;
    json_t *root = json_loads(json_text, JSON_REJECT_DUPLICATES, &je);
    if (!root) return err_set_at(e, "", je.line, "config.json: line %d: invalid JSON: %s", je.line, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return err_set(e, "config.json: not a JSON object");
    }
    int rc = parse_root(root, c, e);
    json_decref(root);
    return rc;
}

int model_config_load(const char *model_dir, ModelConfig *c, Err *e) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(e, "%s: cannot open", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || n > (16 << 20)) {
        fclose(f);
        return err_set(e, "%s: unreadable or larger than 16 MB", path);
    }
    char *buf = malloc((size_t)n + 1);
    if (!buf) {
        fclose(f);
        return err_set(e, "%s: out of memory", path);
    }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    buf[got] = 0;
    int rc = model_config_parse(buf, c, e);
    free(buf);
    if (rc) {
        /* messages already start with "config.json: "; replace that with the full path */
        char old[sizeof e->msg];
        snprintf(old, sizeof old, "%s", e->msg);
        const char *rest = strncmp(old, "config.json: ", 13) ? old : old + 13;
        snprintf(e->msg, sizeof e->msg, "%.300s: %.700s", path, rest);
    }
    return rc;
}

/* inv_freq[i] = 1 / theta^(2i/HS), then the scaling rule:
 *   linear: inv_freq / factor;
 *   llama3: wavelengths longer than original/low_freq_factor are divided by
 *   factor, shorter than original/high_freq_factor kept, and the band between
 *   interpolated with smooth = (original/wavelen - low) / (high - low). */
void model_rope_inv_freq(const ModelConfig *c, const RopeScaling *override_or_null, float *inv_freq,
                         float *mscale) {
    const RopeScaling *r = override_or_null ? override_or_null : &c->rope;
    int hs = c->head_dim;
    double base = c->rope_theta;
    for (int i = 0; i < hs / 2; i++) {
        double f = 1.0 / pow(base, (double)(2 * i) / (double)hs);
        if (r->type == ROPE_LINEAR) {
            f /= r->factor;
        } else if (r->type == ROPE_LLAMA3) {
            double factor = r->factor, lo = r->low_freq_factor, hi = r->high_freq_factor;
            double old_len = r->original_max_position;
            double low_wavelen = old_len / lo, high_wavelen = old_len / hi;
            double wavelen = 2.0 * M_PI / f;
            if (wavelen > low_wavelen) {
                f = f / factor;
            } else if (!(wavelen < high_wavelen)) {
                double smooth = (old_len / wavelen - lo) / (hi - lo);
                f = (1.0 - smooth) * f / factor + smooth * f;
            }
        }
        inv_freq[i] = (float)f;
    }
    if (mscale) *mscale = 1.0f;
}
