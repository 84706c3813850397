/* peft.c: PEFT adapter export and import (see peft.h). */
#include "peft.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "safetensors.h"

int peft_read_spec(const char *dir, LoraSpec *spec, Err *e) {
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    if (!o) return err_set(e, "adapter %s: cannot read adapter_config.json: %s", dir, je.text);
    int rc = -1;
    memset(spec, 0, sizeof *spec);
    json_t *r = json_object_get(o, "r"), *a = json_object_get(o, "lora_alpha");
    json_t *d = json_object_get(o, "lora_dropout"), *t = json_object_get(o, "target_modules");
    json_t *pt = json_object_get(o, "peft_type");
    if (pt && (!json_is_string(pt) || strcmp(json_string_value(pt), "LORA"))) {
        err_set_at(e, "peft_type", 0, "adapter %s: peft_type must be \"LORA\"", dir);
        goto out;
    }
    if (!json_is_integer(r) || json_integer_value(r) < 1) { err_set_at(e, "r", 0, "adapter %s: 'r' must be a positive integer", dir); goto out; }
    if (!json_is_number(a)) { err_set_at(e, "lora_alpha", 0, "adapter %s: 'lora_alpha' must be a number", dir); goto out; }
    if (!json_is_array(t)) { err_set_at(e, "target_modules", 0, "adapter %s: 'target_modules' must be a list", dir); goto out; }
    spec->r = (int)json_integer_value(r);
    spec->alpha = (float)json_number_value(a);
    spec->dropout = json_is_number(d) ? (float)json_number_value(d) : 0.0f;
    size_t i;
    json_t *x;
    json_array_foreach(t, i, x) {
        int found = -1;
        for (int j = 0; j < JOB_MAX_TARGETS; j++)
            if (json_is_string(x) && !strcmp(json_string_value(x), job_target_names[j])) found = j;
        if (found < 0) { err_set_at(e, "target_modules", 0, "adapter %s: unsupported target module %s", dir, json_is_string(x) ? json_string_value(x) : "?"); goto out; }
        spec->targets[found] = 1;
    }
    json_t *rs = json_object_get(o, "use_rslora"), *dora = json_object_get(o, "use_dora");
    if (json_is_true(rs) || json_is_true(dora)) { err_set(e, "adapter %s: rsLoRA and DoRA adapters are not supported", dir); goto out; }
    rc = 0;
out:
    json_decref(o);
    return rc;
}

int peft_save(const Model *m, const char *dir, const char *base_model, Err *e) {
    if (fs_mkdirs(dir, e)) return -1;
    float *host = malloc(sizeof(float) * m->n_lora);
    m->be->copy_to_host(host, m->lora_params, sizeof(float) * m->n_lora);
    StWriter *w = st_writer_new();
    char name[256], path[4096];
    int rc = -1;
    if (st_writer_meta(w, "format", "pt", e)) goto out;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int t = 0; t < JOB_MAX_TARGETS; t++) {
            const LoraSlot *sl = &m->slots[l * JOB_MAX_TARGETS + t];
            if (sl->a < 0) continue;
            int64_t sa[2] = {m->lora.r, sl->K}, sb[2] = {sl->N, m->lora.r};
            model_lora_name(m, l, t, 0, name, sizeof name);
            if (st_writer_add(w, name, DT_F32, host + sl->a, 2, sa, e)) goto out;
            model_lora_name(m, l, t, 1, name, sizeof name);
            if (st_writer_add(w, name, DT_F32, host + sl->b, 2, sb, e)) goto out;
        }
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (st_writer_save(w, path, e)) goto out;

    json_t *targets = json_array();
    for (int t = 0; t < JOB_MAX_TARGETS; t++)
        if (m->lora.targets[t]) json_array_append_new(targets, json_string(job_target_names[t]));
    json_t *cfg = json_pack(
        "{s:s, s:s, s:s, s:i, s:f, s:f, s:o, s:s, s:b, s:b, s:b, s:n, s:b, s:b, s:n, s:n, s:{}, s:{}, s:n, s:n}",
        "peft_type", "LORA", "task_type", "CAUSAL_LM", "base_model_name_or_path", base_model, "r", m->lora.r,
        "lora_alpha", (double)m->lora.alpha, "lora_dropout", (double)m->lora.dropout, "target_modules", targets,
        "bias", "none", "fan_in_fan_out", 0, "inference_mode", 1, "init_lora_weights", 1, "modules_to_save",
        "use_rslora", 0, "use_dora", 0, "layers_to_transform", "layers_pattern", "rank_pattern", "alpha_pattern",
        "revision", "megatron_config");
    char *s = json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(cfg);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    rc = fs_write_atomic(path, s, strlen(s), e);
    free(s);
out:
    st_writer_free(w);
    free(host);
    return rc;
}

int peft_load(Model *m, const char *dir, Err *e) {
    LoraSpec spec;
    if (peft_read_spec(dir, &spec, e)) return -1;
    if (spec.r != m->lora.r || memcmp(spec.targets, m->lora.targets, sizeof spec.targets))
        return err_set(e, "adapter %s: rank or target modules differ from the model's LoRA setup", dir);
    char path[4096], name[256];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    SafeFile *f = st_open(path, e);
    if (!f) return err_prefix(e, "adapter %s", dir);
    float *host = calloc(m->n_lora, sizeof(float));
    int rc = -1;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int t = 0; t < JOB_MAX_TARGETS; t++) {
            const LoraSlot *sl = &m->slots[l * JOB_MAX_TARGETS + t];
            if (sl->a < 0) continue;
            for (int b = 0; b < 2; b++) {
                model_lora_name(m, l, t, b, name, sizeof name);
                const StTensor *x = st_find(f, name);
                if (!x) {
                    // PEFT versions differ on the ".default" adapter-name infix; accept both
                    char alt[300];
                    snprintf(alt, sizeof alt, "%.*s.default.weight", (int)(strlen(name) - 7), name);
                    x = st_find(f, alt);
                }
                int64_t d0 = b ? sl->N : m->lora.r, d1 = b ? m->lora.r : sl->K;
                if (!x) { err_set(e, "adapter %s: tensor %s is missing", dir, name); goto out; }
                if (x->ndim != 2 || x->shape[0] != d0 || x->shape[1] != d1) {
                    err_set(e, "adapter %s: tensor %s has the wrong shape (expected [%lld, %lld])", dir, name,
                            (long long)d0, (long long)d1);
                    goto out;
                }
                st_to_f32(x, host + (b ? sl->b : sl->a));
            }
        }
    m->be->copy_to_device(m->lora_params, host, sizeof(float) * m->n_lora);
    rc = 0;
out:
    free(host);
    st_close(f);
    return rc;
}
