/* lemo.h: LeMo's schedule, the part of token elimination that is policy, not arithmetic.
 *
 * A job's "lemo" key (LemoConfig, job_config.h) becomes, once the model's depth is known, one
 * keep fraction per layer (LemoSpec): the fraction of token blocks that layer's attention
 * keeps; 1 = dense. The default is the authors' artifact's schedule: layers l < L/2 - 1 and
 * the last layer dense, the others keep 0.4. A layer keeping k of nb blocks keeps k * block
 * rows, k = round(keep * nb) within [1, nb]; block 0 (the attention sink) is always one of
 * them. The selection itself (which blocks) happens inside the step, layer by layer, from the
 * layer's own input (model_layer.c); the scores and the top-k are backend ops (backend.h). */
#ifndef LEMO_LEMO_H
#define LEMO_LEMO_H

#include <stdint.h>

#include "err.h"
#include "job_config.h"

typedef struct {
    int on;                          // some layer keeps less than all its blocks
    int scores;                      // LEMO_SCORES_*
    int block;                       // rows per block
    int n_layers;
    float keep[JOB_MAX_LAYERS];      // per layer; 1 = dense
    uint64_t seed;                   // random scores: mixed with step and layer (lemo_layer_seed)
    int pred_h1, pred_h2;            // predictor scores: the networks' hidden widths (predictor.h)
    const float *pred_w;             // predictor scores: (sparse layers, n_w) fp32 weights on the device,
                                     // the layers that keep less than all in order (lemo_pred_slot), set
                                     // by whoever loaded them (lemo_predictor_upload) before the first step
    int pending;                     // lemo_resolve_planned: the predictor is not prepared yet
} LemoSpec;

/* The per-layer schedule of config z for a model of L layers; an error names the key
 * (lemo.keep with the wrong count, lemo.dense_layers out of range). z->on == 0: dense. With
 * predictor scores it reads the predictor's lemo.json for the widths (the memory plan needs
 * them) and, with keep "auto", the calibrated schedule; its weights and the check that it fits
 * the model are lemo_predictor_load's. */
int lemo_resolve(const LemoConfig *z, int L, LemoSpec *out, Err *e);
/* As lemo_resolve, for planning a job whose predictor may not be prepared yet (the service's
 * first LeMo job on a model prepares it as its first phase): with no DIR/lemo.json it plans
 * with lemo prepare's default widths and, for keep "auto", the default schedule, and sets
 * out->pending. The trainer itself uses lemo_resolve: it never runs on a missing predictor. */
int lemo_resolve_planned(const LemoConfig *z, int L, LemoSpec *out, Err *e);
/* Layer l's row of pred_w: the number of sparse layers before it (a dense layer has none). */
int lemo_pred_slot(const LemoSpec *spec, int l);
/* Layers that keep less than all their blocks (those whose predictors are on the device). */
int lemo_sparse_layers(const LemoSpec *spec);
/* 1 when dir holds a finished predictor (its lemo.json, written last, is there). */
int lemo_predictor_ready(const char *dir);
/* Blocks a layer keeping `keep` of nb blocks keeps: round(keep * nb) within [1, nb]. */
int lemo_blocks_kept(float keep, int nb);
/* Rows layer l attends over in an S-row window: S when dense (spec NULL, off, keep 1 or
 * S not a whole number of blocks), else its kept blocks times the block size. */
int lemo_rows(const LemoSpec *spec, int l, int S);
/* The random scores' seed of one layer in one window: distinct streams from one window seed. */
uint64_t lemo_layer_seed(uint64_t window_seed, int l);

#endif
