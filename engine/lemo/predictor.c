/* predictor.c: a LeMo predictor folder, made, read and written (predictor.h). */
#include "hash.h"
#include "predictor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "safetensors.h"

void lemo_predictor_widths(const ModelConfig *c, int B, int *h1, int *h2) {
    (void)c, (void)B;  // the rule is fixed widths today; D and the output follow B and HS
    *h1 = LEMO_PRED_H1;
    *h2 = LEMO_PRED_H2;
}

int lemo_file_hash(const char *path, uint64_t *out, Err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(e, "cannot open %s", path);
    uint64_t h = HASH_FNV_OFFSET;
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) h = hash_fnv1a64(h, buf, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) return err_set(e, "cannot read %s", path);
    *out = h;
    return 0;
}

static const char *base_name(const char *dir) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    const char *s = dir + n;
    while (s > dir && s[-1] != '/') s--;
    return s;
}

/* The identity fields of the model in dir into p. */
static int predictor_identity(LemoPredictor *p, const char *model_dir, const ModelConfig *c, Err *e) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    if (lemo_file_hash(path, &p->config_hash, e)) return -1;
    const char *b = base_name(model_dir);
    size_t n = strcspn(b, "/");
    if (n >= sizeof p->model_name) n = sizeof p->model_name - 1;
    memcpy(p->model_name, b, n);
    p->model_name[n] = 0;
    p->hidden = c->hidden, p->head_dim = c->head_dim, p->n_heads = c->n_heads;
    p->n_kv_heads = c->n_kv_heads, p->n_layers = c->n_layers, p->vocab = c->vocab;
    return 0;
}

LemoPredictor *lemo_predictor_new(const char *model_dir, const ModelConfig *c, int B, int h1, int h2,
                                  uint64_t seed, Err *e) {
    if (c->hidden % c->head_dim) {
        err_set(e, "the model's hidden size %d is not a multiple of its head_dim %d: the predictors cut a row "
                "into head_dim chunks", c->hidden, c->head_dim);
        return NULL;
    }
    if (c->n_layers > JOB_MAX_LAYERS) {
        err_set(e, "the model has %d layers, more than the %d a schedule holds", c->n_layers, JOB_MAX_LAYERS);
        return NULL;
    }
    LemoPredictor *p = calloc(1, sizeof *p);
    if (!p || predictor_identity(p, model_dir, c, e)) {
        free(p);
        return NULL;
    }
    p->block = B, p->h1 = h1, p->h2 = h2;
    int HS = c->head_dim, D = B * HS;
    p->n_w = lemo_predictor_weights(B, HS, h1, h2);
    p->w = malloc(sizeof(float) * p->n_w * c->n_layers);
    if (!p->w) {
        free(p);
        err_set(e, "out of memory for the predictor weights");
        return NULL;
    }
    uint64_t s = seed ^ 0x5052454449435452ull;
    // per network: W1 (h1, D), W2 (h2, h1), W3 (HS, h2); bound 1/sqrt(in)
    const int in[3] = {D, h1, h2}, out[3] = {h1, h2, HS};
    float *w = p->w;
    for (int l = 0; l < c->n_layers; l++)
        for (int net = 0; net < 2; net++)
            for (int j = 0; j < 3; j++) {
                float bound = 1.0f / sqrtf((float)in[j]);
                for (size_t i = 0; i < (size_t)in[j] * out[j]; i++) {
                    uint64_t z = hash_splitmix(&s);
                    *w++ = bound * ((float)(z >> 40) * (2.0f / 16777216.0f) - 1.0f);
                }
            }
    for (int l = 0; l < JOB_MAX_LAYERS; l++) p->keep[l] = 1.0f;
    return p;
}

void lemo_predictor_free(LemoPredictor *p) {
    if (!p) return;
    free(p->w);
    free(p);
}

static const char *const net_names[2] = {"q", "k"};

int lemo_predictor_save(const LemoPredictor *p, const char *dir, const json_t *extra, Err *e) {
    if (fs_mkdirs(dir, e)) return -1;
    int HS = p->head_dim, D = p->block * HS;
    const int64_t shapes[3][2] = {{p->h1, D}, {p->h2, p->h1}, {HS, p->h2}};
    StWriter *st = st_writer_new();
    int rc = -1;
    json_t *o = NULL;
    char path[4200], name[64];
    for (int l = 0; l < p->n_layers; l++) {
        const float *w = p->w + (size_t)l * p->n_w;
        for (int net = 0; net < 2; net++)
            for (int j = 0; j < 3; j++) {
                snprintf(name, sizeof name, "layers.%d.%s.w%d", l, net_names[net], j + 1);
                if (st_writer_add(st, name, DT_F32, w, 2, shapes[j], e)) goto out;
                w += shapes[j][0] * shapes[j][1];
            }
    }
    if (st_writer_meta(st, "format", "lemo-predictor", e)) goto out;
    snprintf(path, sizeof path, "%s/predictor.safetensors", dir);
    if (st_writer_save(st, path, e)) goto out;
    uint64_t wh;
    if (lemo_file_hash(path, &wh, e)) goto out;
    char hex[3][17];
    snprintf(hex[0], sizeof hex[0], "%016llx", (unsigned long long)p->config_hash);
    snprintf(hex[1], sizeof hex[1], "%016llx", (unsigned long long)wh);
    o = json_pack("{s:s, s:{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i}, s:{s:i, s:i, s:i, s:i}, s:i, s:i, s:s}",
                  "format", "lemo-predictor",
                  "model", "name", p->model_name, "config_fnv1a64", hex[0], "hidden", p->hidden, "head_dim",
                  p->head_dim, "n_heads", p->n_heads, "n_kv_heads", p->n_kv_heads, "n_layers", p->n_layers,
                  "vocab", p->vocab,
                  "widths", "in", D, "hidden1", p->h1, "hidden2", p->h2, "out", HS,
                  "block", p->block, "context", p->context, "weights_fnv1a64", hex[1]);
    if (p->has_schedule) {
        json_t *k = json_array(), *r = json_array();
        for (int l = 0; l < p->n_layers; l++) {
            json_array_append_new(k, json_real(p->keep[l]));
            json_array_append_new(r, json_real(p->recall[l]));
        }
        json_object_set_new(o, "keep", k);
        json_object_set_new(o, "recall", r);
        json_object_set_new(o, "recall_mean", json_real(p->recall_mean));
    }
    if (extra) json_object_update(o, (json_t *)extra);
    char *txt = json_dumps(o, JSON_INDENT(1) | JSON_REAL_PRECISION(6));
    snprintf(path, sizeof path, "%s/lemo.json", dir);
    size_t tl = strlen(txt);
    txt = realloc(txt, tl + 2);
    txt[tl] = '\n', txt[tl + 1] = 0;
    rc = fs_write_atomic(path, txt, tl + 1, e);
    free(txt);
out:
    json_decref(o);
    st_writer_free(st);
    return rc;
}

/* A mismatch between the predictor and the model it is used with, naming both. */
static int mismatch(Err *e, const char *param, const char *dir, const char *what, long have, const char *model_dir,
                    long want) {
    return err_set_at(e, param, 0, "'%s': the predictor %s was made for %s %ld, but the model %s has %ld: run "
                      "lemo prepare for this model", param, dir, what, have, model_dir, want);
}

LemoPredictor *lemo_predictor_load(const char *dir, const char *model_dir, const ModelConfig *c, int B,
                                   const char *param, Err *e) {
    char path[4200];
    snprintf(path, sizeof path, "%s/lemo.json", dir);
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    LemoPredictor *p = NULL;
    SafeFile *sf = NULL;
    if (!o) {
        err_set_at(e, param, 0, "'%s': cannot read %s: %s (a predictor folder is what lemo prepare --out writes)",
                   param, path, je.text);
        return NULL;
    }
    const char *name = "", *cfg_hex = "", *w_hex = "";
    int hidden = 0, hd = 0, nh = 0, nkv = 0, L = 0, V = 0, blk = 0, h1 = 0, h2 = 0, ctx = 0;
    if (json_unpack_ex(o, &je, 0, "{s:{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i}, s:{s:i, s:i}, s:i, s:i, s:s}",
                       "model", "name", &name, "config_fnv1a64", &cfg_hex, "hidden", &hidden, "head_dim", &hd,
                       "n_heads", &nh, "n_kv_heads", &nkv, "n_layers", &L, "vocab", &V, "widths", "hidden1", &h1,
                       "hidden2", &h2, "block", &blk, "context", &ctx, "weights_fnv1a64", &w_hex)) {
        err_set_at(e, param, 0, "'%s': %s is not a predictor's lemo.json: %s", param, path, je.text);
        goto fail;
    }
    const struct { const char *what; long have, want; } id[] = {
        {"hidden size", hidden, c->hidden}, {"head_dim", hd, c->head_dim}, {"query heads", nh, c->n_heads},
        {"kv heads", nkv, c->n_kv_heads},   {"layers", L, c->n_layers},    {"vocabulary", V, c->vocab},
        {"block size", blk, B}};
    for (size_t i = 0; i < sizeof id / sizeof id[0]; i++)
        if (id[i].have != id[i].want) {
            if (i == 6)
                err_set_at(e, param, 0, "'%s': the predictor %s was made for blocks of %ld tokens, but lemo.block is "
                           "%ld: use its block or prepare one for this block", param, dir, id[i].have, id[i].want);
            else
                mismatch(e, param, dir, id[i].what, id[i].have, model_dir, id[i].want);
            goto fail;
        }
    if (!(p = calloc(1, sizeof *p))) goto oom;
    if (predictor_identity(p, model_dir, c, e)) goto fail;
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)p->config_hash);
    if (strcmp(hex, cfg_hex)) {
        err_set_at(e, param, 0, "'%s': the predictor %s was made for the model %s (config.json hash %s), not %s (%s): "
                   "run lemo prepare for this model", param, dir, name, cfg_hex, model_dir, hex);
        goto fail;
    }
    p->block = blk, p->h1 = h1, p->h2 = h2, p->context = ctx;
    p->n_w = lemo_predictor_weights(blk, hd, h1, h2);
    snprintf(path, sizeof path, "%s/predictor.safetensors", dir);
    uint64_t wh;
    if (lemo_file_hash(path, &wh, e)) {
        err_set_at(e, param, 0, "'%s': cannot read %s", param, path);
        goto fail;
    }
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)wh);
    if (strcmp(hex, w_hex)) {
        err_set_at(e, param, 0, "'%s': %s does not match its lemo.json (hash %s, lemo.json says %s): the folder was "
                   "not written whole; prepare it again", param, path, hex, w_hex);
        goto fail;
    }
    if (!(sf = st_open(path, e))) goto fail;
    if (!(p->w = malloc(sizeof(float) * p->n_w * L))) goto oom;
    const int64_t shapes[3][2] = {{h1, blk * hd}, {h2, h1}, {hd, h2}};
    float *w = p->w;
    for (int l = 0; l < L; l++)
        for (int net = 0; net < 2; net++)
            for (int j = 0; j < 3; j++) {
                char tn[64];
                snprintf(tn, sizeof tn, "layers.%d.%s.w%d", l, net_names[net], j + 1);
                const StTensor *t = st_find(sf, tn);
                if (!t || t->ndim != 2 || t->shape[0] != shapes[j][0] || t->shape[1] != shapes[j][1]) {
                    err_set_at(e, param, 0, "'%s': %s: tensor %s is missing or not (%lld, %lld)", param, path, tn,
                               (long long)shapes[j][0], (long long)shapes[j][1]);
                    goto fail;
                }
                st_to_f32(t, w);
                w += t->numel;
            }
    for (int l = 0; l < JOB_MAX_LAYERS; l++) p->keep[l] = 1.0f;
    json_t *k = json_object_get(o, "keep"), *r = json_object_get(o, "recall");
    if (json_is_array(k) && (int)json_array_size(k) == L) {
        p->has_schedule = 1;
        for (int l = 0; l < L; l++) {
            double v = json_number_value(json_array_get(k, l));
            if (!(v > 0 && v <= 1)) {
                err_set_at(e, param, 0, "'%s': %s/lemo.json: keep[%d] is not a fraction in (0, 1]", param, dir, l);
                goto fail;
            }
            p->keep[l] = (float)v;
            if (json_is_array(r)) p->recall[l] = (float)json_number_value(json_array_get(r, l));
        }
        p->recall_mean = (float)json_number_value(json_object_get(o, "recall_mean"));
    }
    st_close(sf);
    json_decref(o);
    return p;
oom:
    err_set(e, "out of memory reading the predictor %s", dir);
fail:
    if (sf) st_close(sf);
    lemo_predictor_free(p);
    json_decref(o);
    return NULL;
}

void *lemo_predictor_upload(const Backend *be, const LemoPredictor *p, LemoSpec *z, size_t *bytes, Err *e) {
    int n = lemo_sparse_layers(z);
    size_t row = sizeof(float) * p->n_w;
    *bytes = row * (size_t)(n ? n : 1);
    char *d = be->alloc(*bytes);
    if (!d) {
        err_set(e, "out of device memory for the predictor weights (%zu bytes)", *bytes);
        return NULL;
    }
    for (int l = 0; l < z->n_layers; l++)
        if (z->keep[l] < 1.0f) be->copy_to_device(d + row * (size_t)lemo_pred_slot(z, l), p->w + p->n_w * (size_t)l, row);
    z->pred_w = (const float *)d;
    return d;
}
