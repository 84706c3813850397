/* checkpoint.c: save and load training checkpoints (see checkpoint.h). */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "peft.h"
#include "safetensors.h"

int checkpoint_save(const Model *m, const char *output_dir, const char *base_model, const TrainState *st,
                    char *path_out, size_t cap, Err *e) {
    char root[4096], tmp[4200], dst[4200], path[4300];
    snprintf(root, sizeof root, "%s/checkpoints", output_dir);
    snprintf(tmp, sizeof tmp, "%s/.tmp-step-%d", root, st->step);
    snprintf(dst, sizeof dst, "%s/step-%d", root, st->step);
    fs_remove_tree(tmp);
    if (fs_mkdirs(tmp, e)) return -1;
    // a failed save (a full disk) leaves nothing behind: the space goes back and the newest
    // complete checkpoint stays the one a resume picks
    if (peft_save(m, tmp, base_model, e)) { fs_remove_tree(tmp); return -1; }

    size_t n = m->n_lora;
    float *host = malloc(sizeof(float) * n);
    StWriter *w = st_writer_new();
    int64_t shape[1] = {(int64_t)n};
    const float *src[3] = {m->lora_params, m->adam_m, m->adam_v};
    const char *names[3] = {"lora_params", "adam_m", "adam_v"};
    int rc = -1;
    for (int i = 0; i < 3; i++) {
        m->be->copy_to_host(host, src[i], sizeof(float) * n);
        if (st_writer_add(w, names[i], DT_F32, host, 1, shape, e)) goto out;
    }
    snprintf(path, sizeof path, "%s/optimizer.safetensors", tmp);
    if (st_writer_save(w, path, e)) goto out;

    json_t *o = json_pack("{s:i, s:i, s:I, s:I, s:I, s:I, s:I}", "step", st->step, "total_steps", st->total_steps,
                          "epoch", (json_int_t)st->epoch, "pos", (json_int_t)st->pos, "n_windows",
                          (json_int_t)st->n_windows, "seed", (json_int_t)st->seed, "tokens", (json_int_t)st->tokens);
    char *s = json_dumps(o, JSON_INDENT(2));
    json_decref(o);
    snprintf(path, sizeof path, "%s/state.json", tmp);
    int wrc = fs_write_atomic(path, s, strlen(s), e);
    free(s);
    if (wrc) goto out;
    fs_remove_tree(dst);  // a checkpoint of the same step from a run that crashed after writing it
    if (rename(tmp, dst)) { err_set(e, "cannot move checkpoint into %s: %s", dst, strerror(errno)); goto out; }
    fs_fsync_dir(root);
    if (path_out) snprintf(path_out, cap, "%s", dst);
    rc = 0;
out:
    if (rc) fs_remove_tree(tmp);
    st_writer_free(w);
    free(host);
    return rc;
}

int checkpoint_state_parse(const char *text, size_t len, TrainState *st, Err *e) {
    json_error_t je;
    json_t *o = json_loadb(text, len, 0, &je);
    if (!o) return err_set(e, "state.json is not JSON: %s", je.text);
    json_int_t step = -1, total = -1, epoch = -1, pos = -1, nw = -1, seed = -1, tokens = -1;
    int bad = json_unpack(o, "{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "step", &step, "total_steps", &total, "epoch",
                          &epoch, "pos", &pos, "n_windows", &nw, "seed", &seed, "tokens", &tokens);
    json_decref(o);
    if (bad) return err_set(e, "state.json lacks a field");
    // the data cursor indexes the window order: one beyond it would read outside it on resume
    if (step < 0 || step > INT_MAX || total < 0 || total > INT_MAX || epoch < 0 || nw < 0 || pos < 0 || pos > nw ||
        tokens < 0)
        return err_set(e, "state.json holds a value out of range (step %lld, pos %lld of %lld windows)", (long long)step,
                       (long long)pos, (long long)nw);
    *st = (TrainState){(int)step, (int)total, (uint64_t)epoch, (size_t)pos, (size_t)nw, (uint64_t)seed, tokens};
    return 0;
}

int checkpoint_readable(const char *dir) {
    char path[4300];
    snprintf(path, sizeof path, "%s/state.json", dir);
    size_t n;
    Err e;
    char *txt = fs_read_all(path, &n, 1 << 20, &e);
    TrainState st;
    int ok = txt && checkpoint_state_parse(txt, n, &st, &e) == 0;
    free(txt);
    if (!ok) return 0;
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    SafeFile *f = st_open(path, &e);
    if (!f) return 0;
    const StTensor *t[3] = {st_find(f, "lora_params"), st_find(f, "adam_m"), st_find(f, "adam_v")};
    for (int i = 0; i < 3; i++) ok &= t[i] && t[i]->dtype == DT_F32 && t[i]->numel == t[0]->numel;
    st_close(f);
    return ok;
}

int checkpoint_load(Model *m, const char *dir, TrainState *st, Err *e) {
    char path[4300];
    snprintf(path, sizeof path, "%s/state.json", dir);
    size_t n;
    char *txt = fs_read_all(path, &n, 1 << 20, e);
    if (!txt) return err_prefix(e, "checkpoint %s: cannot read state.json", dir);
    int bad = checkpoint_state_parse(txt, n, st, e);
    free(txt);
    if (bad) return err_prefix(e, "checkpoint %s", dir);

    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    SafeFile *f = st_open(path, e);
    if (!f) return err_prefix(e, "checkpoint %s", dir);
    float *dst[3] = {m->lora_params, m->adam_m, m->adam_v};
    const char *names[3] = {"lora_params", "adam_m", "adam_v"};
    float *host = malloc(sizeof(float) * m->n_lora);
    int rc = -1;
    for (int i = 0; i < 3; i++) {
        const StTensor *t = st_find(f, names[i]);
        if (!t || t->dtype != DT_F32 || t->numel != (int64_t)m->n_lora) {
            err_set(e, "checkpoint %s: %s is missing or does not match this model's LoRA setup", dir, names[i]);
            goto out;
        }
        memcpy(host, t->data, sizeof(float) * m->n_lora);
        m->be->copy_to_device(dst[i], host, sizeof(float) * m->n_lora);
    }
    rc = 0;
out:
    free(host);
    st_close(f);
    return rc;
}

int checkpoint_latest(const char *output_dir, char *out, size_t cap) {
    return checkpoint_latest_before(output_dir, LONG_MAX, out, cap);
}

int checkpoint_latest_before(const char *output_dir, long before, char *out, size_t cap) {
    char root[4096];
    snprintf(root, sizeof root, "%s/checkpoints", output_dir);
    DIR *d = opendir(root);
    if (!d) return -1;
    long best = -1;
    struct dirent *de;
    while ((de = readdir(d))) {
        char *end;
        if (strncmp(de->d_name, "step-", 5)) continue;
        long s = strtol(de->d_name + 5, &end, 10);
        if (*end || s < 0) continue;
        char st[4400];
        snprintf(st, sizeof st, "%s/%s/state.json", root, de->d_name);
        if (access(st, R_OK)) continue;  // incomplete (cannot happen with rename, but be safe)
        if (s > best && s < before) best = s;
    }
    closedir(d);
    if (best < 0) return -1;
    snprintf(out, cap, "%s/step-%ld", root, best);
    return 0;
}
