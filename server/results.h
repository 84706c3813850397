/* results.h: a succeeded job's results file (OpenAI's result_files): a CSV of its metrics per
 * step, stored like an uploaded file (files/FILE_ID.csv, purpose "fine-tune-results"), so
 * GET /v1/files/{id}/content serves it and DELETE /v1/files/{id} removes it. */
#ifndef LEMO_RESULTS_H
#define LEMO_RESULTS_H

#include "db.h"
#include "server.h"

#define RESULTS_PURPOSE "fine-tune-results"

/* Writes the job's CSV (from its metrics events) atomically under files/ and fills *f; the
 * caller records f (db_file_insert, db_job_set_result_file) with the job's success. 0 or -1. */
int results_write(Server *srv, const char *job_id, FileRow *f, Err *e);

#endif
