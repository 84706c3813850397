/* trainer.h: run one fine-tuning job (see trainer.c). */
#ifndef LEMO_TRAINER_H
#define LEMO_TRAINER_H

#include "err.h"
#include "job_config.h"

/* Trains as c says, printing progress lines; 0 on success or clean cancel. */
int trainer_run(const JobConfig *c, Err *e);
/* Learning rate for 0-based step of total (warmup + cosine). */
double trainer_lr(const JobConfig *c, int step, int total);

#endif
