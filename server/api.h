/* api.h: the request handlers, one file per resource (api_files.c, api_jobs.c, ...). The
 * route table in routes.c is the one place that maps paths to them. */
#ifndef LEMO_API_H
#define LEMO_API_H

#include "db.h"
#include "http.h"

int api_health(Req *r);
int api_metrics(Req *r);

int api_files_begin(Req *r);
int api_files_body(Req *r, const char *data, size_t n);
int api_files_create(Req *r);
int api_files_list(Req *r);
int api_files_get(Req *r);
int api_files_content(Req *r);
int api_files_delete(Req *r);
/* Where a file's bytes are: files/ID.jsonl (datasets) or files/ID.csv (results). */
void file_path(const Server *srv, const FileRow *f, char *out, size_t cap);

int api_jobs_create(Req *r);
/* Creates a job from body (the POST /v1/fine_tuning/jobs body); prepare_only: a LeMo
 * preparation job (POST /v1/models/{id}/lemo builds the body). */
int api_jobs_create_from(Req *r, const char *body, size_t body_len, int prepare_only);
int api_jobs_list(Req *r);
int api_jobs_get(Req *r);
int api_jobs_cancel(Req *r);
int api_jobs_pause(Req *r);
int api_jobs_resume(Req *r);
/* Loads the job the path names ({} of /v1/fine_tuning/jobs/{}); replies 404/500 itself and
 * returns -1 when there is none. Shared by the job, event and checkpoint handlers. */
int job_of_path(Req *r, JobRow *j);

int api_events_list(Req *r);          // ?stream=true: Server-Sent Events (sse.c)
int api_events_stream(Req *r);
int api_checkpoints_list(Req *r);

int api_adapter_tar(Req *r);
int api_adapter_file(Req *r);

int api_models_list(Req *r);
int api_models_get(Req *r);
int api_models_delete(Req *r);
int api_models_lemo_prepare(Req *r);

/* GET /openapi.json (api_openapi.c). */
int api_openapi(Req *r);

/* GET of anything outside /v1: the dashboard's static files. */
int api_web(Req *r);

#endif
