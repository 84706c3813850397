/* job_view.h: database rows -> the API's JSON objects (OpenAI fine-tuning shapes), shared by
 * the job handlers, the event stream and the webhook sender so all three show one shape. */
#ifndef LEMO_JOB_VIEW_H
#define LEMO_JOB_VIEW_H

#include <jansson.h>

#include "db.h"
#include "srv_util.h"

/* {"object":"fine_tuning.job","id",...,"progress":{...}}, written as text (the list endpoint's
 * hot path: the JSON columns go in verbatim, nothing is parsed), and the same as a json_t. */
void job_write_json(StrBuf *b, const JobRow *j);
json_t *job_to_json(const JobRow *j);
/* {"object":"fine_tuning.job.event","id","created_at","level","message","type","data"}, as a
 * json_t and written as text (the event list's and the event streams' hot path: the data column
 * goes in verbatim when it is an object, as the job's JSON columns do). */
json_t *event_to_json(const EventRow *ev);
void event_write_json(StrBuf *b, const EventRow *ev);
/* {"object":"fine_tuning.job.checkpoint","id","step_number","metrics",...} */
json_t *checkpoint_to_json(const CheckpointRow *c, const JobRow *j);
/* 1 for succeeded, failed, cancelled. */
int job_status_terminal(const char *status);

#endif
