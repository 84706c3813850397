/* lemo_store.h: base models' LeMo predictors in the data directory (DESIGN sections 3 and 8).
 *
 * DATA/lemo/MODEL/bB/ holds the predictor of base model MODEL at block B (predictor.safetensors,
 * lemo.json: what `lemo prepare --out` writes), shared by every LeMo job on that model. A
 * preparation writes into bB.partial/ and is installed by rename, so a reader sees no folder or
 * a whole one; a replaced one waits in bB.old/ until the new one is in. A crash at any point
 * leaves a state lemo_store_sweep repairs at the next start. */
#ifndef LEMO_LEMO_STORE_H
#define LEMO_LEMO_STORE_H

#include <jansson.h>
#include <stddef.h>

#include "err.h"

/* The folder a preparation of `final` writes into (final + ".partial"). */
void lemo_store_partial(const char *final, char *out, size_t cap);
/* Moves the finished partial folder into place as `final` (replacing an older one). */
int lemo_store_install(const char *final, Err *e);
/* At start: removes unfinished partial folders, restores a replaced one whose successor was
 * never installed. */
void lemo_store_sweep(const char *lemo_dir);
/* The `lemo` object of a base model: {status: "none" | "preparing" | "ready", block, recall,
 * random_recall, trained_context, mean_keep, schedule, prepared_at, job_id (preparing)} for
 * its block-64 predictor, else the first prepared one; `blocks` lists every prepared block.
 * preparing_job: the job preparing one now ("" none), and the block it prepares. */
json_t *lemo_store_model_json(const char *lemo_dir, const char *model, const char *preparing_job, int preparing_block);

#endif
