/* job_view.c: see job_view.h. */
#include "job_view.h"

#include <stdlib.h>
#include <string.h>

#include "srv_util.h"

int job_status_terminal(const char *s) {
    return !strcmp(s, "succeeded") || !strcmp(s, "failed") || !strcmp(s, "cancelled");
}

/* Parses a JSON column; null when absent or (never expected) unparsable. */
static json_t *col_json(const char *txt) {
    if (!txt || !*txt) return json_null();
    json_t *v = json_loads(txt, 0, NULL);
    return v ? v : json_null();
}


/* Appends a JSON column verbatim (it was written by json_dumps), or `null`/`dflt` when empty. */
static void put_raw(StrBuf *b, const char *txt, const char *dflt) {
    sb_puts(b, txt && *txt ? txt : dflt);
}

static void put_int_or_null(StrBuf *b, int64_t v) {
    if (v) sb_printf(b, "%lld", (long long)v);
    else sb_puts(b, "null");
}

void job_write_json(StrBuf *b, const JobRow *j) {
    sb_puts(b, "{\"object\":\"fine_tuning.job\",\"id\":");
    sb_json_str(b, j->id);
    sb_puts(b, ",\"model\":");
    sb_json_str(b, j->model);
    sb_printf(b, ",\"created_at\":%lld,\"started_at\":", (long long)j->created_at);
    put_int_or_null(b, j->started_at);
    sb_puts(b, ",\"finished_at\":");
    put_int_or_null(b, j->finished_at);
    sb_puts(b, ",\"status\":");
    sb_json_str(b, j->status);
    sb_puts(b, ",\"error\":");
    put_raw(b, j->error, "null");
    sb_puts(b, ",\"training_file\":");
    sb_json_str(b, j->training_file);
    sb_puts(b, ",\"validation_file\":");
    sb_json_str(b, j->validation_file[0] ? j->validation_file : NULL);
    /* the request column is {"hyperparameters","method","metadata"}: its members go in as they are */
    const char *req = j->request;
    size_t rl = req ? strlen(req) : 0;
    if (rl > 2 && req[0] == '{' && req[rl - 1] == '}') {
        sb_put(b, ",", 1);
        sb_put(b, req + 1, rl - 2);
    } else {
        sb_puts(b, ",\"hyperparameters\":{},\"method\":null,\"metadata\":null");
    }
    sb_puts(b, ",\"trained_tokens\":");
    if (j->trained_tokens || !strcmp(j->status, "succeeded")) sb_printf(b, "%lld", (long long)j->trained_tokens);
    else sb_puts(b, "null");
    sb_puts(b, ",\"fine_tuned_model\":");
    sb_json_str(b, j->fine_tuned_model[0] ? j->fine_tuned_model : NULL);
    sb_puts(b, ",\"estimated_finish\":");
    put_int_or_null(b, j->estimated_finish);
    sb_printf(b, ",\"seed\":%lld,\"suffix\":", (long long)j->seed);
    sb_json_str(b, j->suffix[0] ? j->suffix : NULL);
    sb_puts(b, ",\"user_provided_suffix\":");
    sb_json_str(b, j->suffix[0] ? j->suffix : NULL);
    sb_puts(b, ",\"organization_id\":\"org-local\",\"result_files\":[");
    if (j->result_file[0]) sb_json_str(b, j->result_file);
    sb_puts(b, "],\"integrations\":[],\"progress\":");
    put_raw(b, j->progress, "{}");
    sb_puts(b, "}");
}

json_t *job_to_json(const JobRow *j) {
    StrBuf b = {0};
    job_write_json(&b, j);
    json_t *o = b.oom ? NULL : json_loadb(b.buf, b.len, 0, NULL);
    free(b.buf);
    return o ? o : json_pack("{s:s, s:s}", "id", j->id, "status", j->status);
}

/* The length of txt without trailing blanks if it is a JSON object as db_event_add stores them
 * ({...}, written by json_dumps, or a trainer line that parsed as one), which can go into an
 * answer as it is; else 0. */
static size_t raw_object_len(const char *txt) {
    size_t n = txt ? strlen(txt) : 0;
    while (n && (txt[n - 1] == '\n' || txt[n - 1] == '\r' || txt[n - 1] == ' ')) n--;
    return n >= 2 && txt[0] == '{' && txt[n - 1] == '}' ? n : 0;
}

void event_write_json(StrBuf *b, const EventRow *ev) {
    sb_puts(b, "{\"object\":\"fine_tuning.job.event\",\"id\":");
    sb_json_str(b, ev->id);
    sb_printf(b, ",\"created_at\":%lld,\"level\":", (long long)ev->created_at);
    sb_json_str(b, ev->level);
    sb_puts(b, ",\"message\":");
    sb_json_str(b, ev->message ? ev->message : "");
    sb_puts(b, ",\"type\":");
    sb_json_str(b, ev->type);
    sb_puts(b, ",\"data\":");
    size_t raw = raw_object_len(ev->data);
    if (raw) {
        sb_put(b, ev->data, raw);
    } else if (ev->data && *ev->data) {   // not an object: parsed, so the answer stays JSON whatever it holds
        json_t *v = col_json(ev->data);
        char *txt = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(10));
        sb_puts(b, txt ? txt : "null");
        free(txt);
        json_decref(v);
    } else {
        sb_puts(b, "null");
    }
    sb_puts(b, "}");
}

json_t *event_to_json(const EventRow *ev) {
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s}", "object", "fine_tuning.job.event", "id", ev->id,
                          "created_at", (json_int_t)ev->created_at, "level", ev->level, "message",
                          ev->message ? ev->message : "", "type", ev->type);
    json_object_set_new(o, "data", col_json(ev->data));
    return o;
}

json_t *checkpoint_to_json(const CheckpointRow *c, const JobRow *j) {
    char name[600];
    snprintf(name, sizeof name, "%s:ckpt-step-%lld", j->fine_tuned_model[0] ? j->fine_tuned_model : j->id,
             (long long)c->step);
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:s, s:I}", "object", "fine_tuning.job.checkpoint", "id", c->id,
                          "created_at", (json_int_t)c->created_at, "fine_tuned_model_checkpoint", name,
                          "fine_tuning_job_id", c->job_id, "step_number", (json_int_t)c->step);
    json_object_set_new(o, "metrics", col_json(c->metrics));
    return o;
}
