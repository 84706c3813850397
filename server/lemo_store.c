/* lemo_store.c: base models' LeMo predictors in the data directory (lemo_store.h). */
#include "lemo_store.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fsutil.h"

static const int blocks[] = {64, 32, 128};  // the default block first: the one `lemo` shows

void lemo_store_partial(const char *final, char *out, size_t cap) { snprintf(out, cap, "%s.partial", final); }

static void old_of(const char *final, char *out, size_t cap) { snprintf(out, cap, "%s.old", final); }

static void parent_of(const char *path, char *out, size_t cap) {
    snprintf(out, cap, "%s", path);
    char *s = strrchr(out, '/');
    if (s && s != out) *s = 0;
}

int lemo_store_install(const char *final, Err *e) {
    char part[4200], old[4200], dir[4200];
    lemo_store_partial(final, part, sizeof part);
    old_of(final, old, sizeof old);
    parent_of(final, dir, sizeof dir);
    fs_remove_tree(old);
    if (fs_is_dir(final) && rename(final, old))
        return err_set(e, "cannot move the previous predictor aside: %s", strerror(errno));
    if (rename(part, final)) {
        int en = errno;
        rename(old, final);  // the previous one stays in service
        return err_set(e, "cannot install the new predictor: %s", strerror(en));
    }
    fs_fsync_dir(dir);
    fs_remove_tree(old);
    return 0;
}

void lemo_store_sweep(const char *lemo_dir) {
    DIR *d = opendir(lemo_dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) {
            char final[4200], part[4300], old[4300];
            snprintf(final, sizeof final, "%s/%s/b%d", lemo_dir, de->d_name, blocks[i]);
            lemo_store_partial(final, part, sizeof part);
            old_of(final, old, sizeof old);
            fs_remove_tree(part);
            if (fs_is_dir(old)) {
                if (fs_is_dir(final)) fs_remove_tree(old);
                else rename(old, final);
            }
        }
    }
    closedir(d);
}

/* What one prepared predictor's lemo.json says, in the API's words; NULL if none. */
static json_t *prepared(const char *lemo_dir, const char *model, int block) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s/b%d/lemo.json", lemo_dir, model, block);
    json_t *j = json_load_file(p, 0, NULL);
    if (!json_is_object(j)) { json_decref(j); return NULL; }
    struct stat st;
    json_t *o = json_pack("{s:s, s:i}", "status", "ready", "block", block);
    json_object_set(o, "recall", json_object_get(j, "recall_mean"));
    json_object_set(o, "recall_keep", json_object_get(j, "recall_keep"));
    json_object_set(o, "random_recall", json_object_get(j, "random_recall"));
    json_object_set(o, "recall_per_layer", json_object_get(j, "recall"));
    json_object_set(o, "trained_context", json_object_get(j, "context"));
    json_object_set(o, "schedule", json_object_get(j, "keep"));
    json_object_set(o, "mean_keep", json_object_get(json_object_get(j, "calibration"), "mean_keep"));
    json_object_set(o, "widths", json_object_get(j, "widths"));
    json_object_set_new(o, "prepared_at", stat(p, &st) == 0 ? json_integer((json_int_t)st.st_mtime) : json_null());
    json_decref(j);
    return o;
}

json_t *lemo_store_model_json(const char *lemo_dir, const char *model, const char *preparing_job, int preparing_block) {
    json_t *shown = NULL, *bl = json_array();
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) {
        json_t *o = prepared(lemo_dir, model, blocks[i]);
        if (!o) continue;
        json_array_append_new(bl, json_integer(blocks[i]));
        if (!shown) shown = o;
        else json_decref(o);
    }
    if (preparing_job && preparing_job[0]) {
        // a preparation in progress is what a user waits on: it is what `lemo` shows
        json_t *was = shown;
        shown = json_pack("{s:s, s:i, s:s}", "status", "preparing", "block", preparing_block, "job_id", preparing_job);
        if (was) json_object_set_new(shown, "previous", was);
    }
    if (!shown) shown = json_pack("{s:s}", "status", "none");
    json_object_set_new(shown, "blocks", bl);
    return shown;
}
