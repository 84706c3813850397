/* lemo.c: LeMo's per-layer schedule (lemo.h). */
#include "hash.h"
#include "lemo.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "predictor.h"

int lemo_blocks_kept(float keep, int nb) {
    int k = (int)lround((double)keep * nb);
    return k < 1 ? 1 : k > nb ? nb : k;
}

int lemo_rows(const LemoSpec *s, int l, int S) {
    if (!s || !s->on || s->keep[l] >= 1.0f || S % s->block) return S;
    int nb = S / s->block;
    return lemo_blocks_kept(s->keep[l], nb) * s->block;
}

uint64_t lemo_layer_seed(uint64_t window_seed, int l) {
    return hash_mix64(window_seed + HASH_GOLDEN * (uint64_t)(l + 1));
}

/* The widths and (keep "auto") the schedule from z->predictor's lemo.json into o. */
static int lemo_read_predictor(const LemoConfig *z, int L, LemoSpec *o, Err *e) {
    char path[JOB_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/lemo.json", z->predictor);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j)
        return err_set_at(e, "lemo.predictor", 0, "'lemo.predictor': cannot read %s: %s (a predictor folder is "
                          "what lemo prepare --out writes)", path, je.text);
    int rc = 0;
    json_t *w = json_object_get(j, "widths"), *k = json_object_get(j, "keep");
    o->pred_h1 = (int)json_integer_value(json_object_get(w, "hidden1"));
    o->pred_h2 = (int)json_integer_value(json_object_get(w, "hidden2"));
    if (o->pred_h1 <= 0 || o->pred_h2 <= 0) {
        rc = err_set_at(e, "lemo.predictor", 0, "'lemo.predictor': %s has no widths.hidden1 and widths.hidden2", path);
    } else if (z->keep_auto && json_integer_value(json_object_get(json_object_get(j, "model"), "n_layers")) == L) {
        // (a predictor of another depth is for another model: lemo_predictor_load says so, naming both)
        if (!json_is_array(k) || (int)json_array_size(k) != L)
            rc = err_set_at(e, "lemo.keep", 0, "'lemo.keep' \"auto\": %s has no calibrated schedule of %d layers", path, L);
        for (int l = 0; !rc && l < L; l++) {
            double v = json_number_value(json_array_get(k, l));
            if (!(v > 0 && v <= 1))
                rc = err_set_at(e, "lemo.keep", 0, "'lemo.keep' \"auto\": %s: keep[%d] is not a fraction in (0, 1]", path, l);
            o->keep[l] = (float)v;
        }
    }
    json_decref(j);
    return rc;
}

int lemo_pred_slot(const LemoSpec *s, int l) {
    int k = 0;
    for (int i = 0; i < l; i++) k += s->keep[i] < 1.0f;
    return k;
}

int lemo_sparse_layers(const LemoSpec *s) { return lemo_pred_slot(s, s->n_layers); }

int lemo_predictor_ready(const char *dir) {
    char path[JOB_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/lemo.json", dir);
    return access(path, R_OK) == 0;
}

int lemo_resolve_planned(const LemoConfig *z, int L, LemoSpec *o, Err *e) {
    if (z->on && z->scores == LEMO_SCORES_PREDICTOR && !lemo_predictor_ready(z->predictor)) {
        // what lemo prepare's defaults would make: its widths, and (keep "auto") the default
        // schedule in place of the calibration that does not exist yet
        LemoConfig d = *z;
        d.scores = LEMO_SCORES_EXACT;
        d.keep_auto = 0;
        if (lemo_resolve(&d, L, o, e)) return -1;
        o->scores = LEMO_SCORES_PREDICTOR;
        o->pred_h1 = LEMO_PRED_H1, o->pred_h2 = LEMO_PRED_H2;
        o->pending = 1;
        return 0;
    }
    return lemo_resolve(z, L, o, e);
}

int lemo_resolve(const LemoConfig *z, int L, LemoSpec *o, Err *e) {
    memset(o, 0, sizeof *o);
    o->n_layers = L;
    o->block = z->block;
    o->scores = z->scores;
    o->seed = z->seed;
    for (int l = 0; l < L; l++) o->keep[l] = 1.0f;
    if (!z->on) return 0;
    if (z->n_keep && z->n_keep != L)
        return err_set_at(e, "lemo.keep", 0, "'lemo.keep' gives %d fractions but the model has %d layers: give one "
                          "per layer, or one for all", z->n_keep, L);
    for (int l = 0; l < L; l++) o->keep[l] = (float)(z->n_keep ? z->keep[l] : z->keep_all);
    if (z->scores == LEMO_SCORES_PREDICTOR && lemo_read_predictor(z, L, o, e)) return -1;
    if (z->n_dense >= 0) {
        for (int i = 0; i < z->n_dense; i++) {
            if (z->dense[i] >= L)
                return err_set_at(e, "lemo.dense_layers", 0, "'lemo.dense_layers[%d]' is %d but the model has %d layers",
                                  i, z->dense[i], L);
            o->keep[z->dense[i]] = 1.0f;
        }
    } else if (!z->n_keep && !z->keep_auto) {  // the artifact's schedule: the first layers and the last dense
        for (int l = 0; l < L; l++)
            if (l < L / 2 - 1 || l == L - 1) o->keep[l] = 1.0f;
    }
    for (int l = 0; l < L; l++) o->on |= o->keep[l] < 1.0f;
    return 0;
}
