/* api_events.c: GET /v1/fine_tuning/jobs/{id}/events (newest first, OpenAI's order, or
 * ?order=asc, with ?limit= and ?after= cursors; ?stream=true hands over to sse.c) and
 * .../checkpoints. */
#include <stdlib.h>

#include "api.h"
#include "job_view.h"
#include "srv_util.h"

int api_events_list(Req *r) {
    if (http_query_bool(r, "stream")) return api_events_stream(r);
    int limit, asc;
    const char *after;
    if (http_list_params(r, 20, 1000, &limit, &after, &asc)) return MHD_YES;
    JobRow j;
    if (job_of_path(r, &j)) return MHD_YES;
    job_row_free(&j);
    EventRow *rows;
    int n, more;
    Err e;
    int rc = db_event_list(r->srv->db, r->params[0], after, limit, asc, &rows, &n, &more, &e);
    if (rc == -2) return http_error(r, 400, "invalid_request_error", "invalid_cursor", "after", "Unknown 'after' event id");
    if (rc) return http_500(r, "%s", e.msg);
    StrBuf b = {0};   // written as text, as the job list is: the list a dashboard polls
    sb_puts(&b, "{\"object\":\"list\",\"data\":[");
    for (int i = 0; i < n; i++) {
        if (i) sb_put(&b, ",", 1);
        event_write_json(&b, &rows[i]);
    }
    event_rows_free(rows, n);
    sb_printf(&b, "],\"has_more\":%s}", more ? "true" : "false");
    return http_json_text(r, 200, &b);
}

int api_checkpoints_list(Req *r) {
    int limit;
    const char *after;
    if (http_list_params(r, 10, 1000, &limit, &after, NULL)) return MHD_YES;
    JobRow j;
    if (job_of_path(r, &j)) return MHD_YES;
    CheckpointRow *rows;
    int n, more;
    Err e;
    int rc = db_checkpoint_list(r->srv->db, j.id, after, limit, &rows, &n, &more, &e);
    if (rc == -2) { job_row_free(&j); return http_error(r, 400, "invalid_request_error", "invalid_cursor", "after", "Unknown 'after' checkpoint id"); }
    if (rc) { job_row_free(&j); return http_500(r, "%s", e.msg); }
    json_t *data = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(data, checkpoint_to_json(&rows[i], &j));
    json_t *out = json_pack("{s:s, s:o, s:b}", "object", "list", "data", data, "has_more", more);
    json_object_set_new(out, "first_id", n ? json_string(rows[0].id) : json_null());
    json_object_set_new(out, "last_id", n ? json_string(rows[n - 1].id) : json_null());
    checkpoint_rows_free(rows, n);
    job_row_free(&j);
    return http_json(r, 200, out);
}
