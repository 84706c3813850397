/* results.c: the results CSV of a job (see results.h).
 *
 * Columns are OpenAI's: step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy.
 * The rows come from the job's stored metrics events, not from the trainer's last run alone:
 * a job paused, resumed or restarted by a crash spans several runs, and steps a resumed run
 * repeats after its checkpoint appear once, with the last run's numbers (the ones its adapter
 * comes from). A step's training numbers and its eval arrive as two events and merge here. */
#include "results.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "srv_util.h"

enum { R_TRAIN_LOSS, R_TRAIN_ACC, R_VALID_LOSS, R_VALID_ACC, R_COLS };

/* The event data field behind each column. */
static const char *const col_field[R_COLS] = {"train_loss", "train_mean_token_accuracy", "valid_loss",
                                              "valid_mean_token_accuracy"};

typedef struct {
    double v[R_COLS];
    int seen;
} Row;

/* Merges one metrics event's data into rows[step] (rows grown as steps appear). */
static int merge_event(const char *data, Row **rows, int64_t *n_rows) {
    json_t *d = data ? json_loads(data, 0, NULL) : NULL;
    json_t *sv = json_object_get(d, "step");
    int64_t step = json_is_integer(sv) ? (int64_t)json_integer_value(sv) : 0;
    if (step < 1 || step > 100000000) { json_decref(d); return 0; }  // step 0: the baseline eval, before training
    if (step >= *n_rows) {
        int64_t n = *n_rows ? *n_rows : 64;
        while (n <= step) n *= 2;
        Row *nr = realloc(*rows, (size_t)n * sizeof *nr);
        if (!nr) { json_decref(d); return -1; }
        for (int64_t i = *n_rows; i < n; i++) {
            nr[i].seen = 0;
            for (int c = 0; c < R_COLS; c++) nr[i].v[c] = NAN;
        }
        *rows = nr;
        *n_rows = n;
    }
    Row *r = &(*rows)[step];
    r->seen = 1;
    for (int c = 0; c < R_COLS; c++) {
        json_t *x = json_object_get(d, col_field[c]);
        if (json_is_number(x)) r->v[c] = json_number_value(x);
    }
    json_decref(d);
    return 0;
}

int results_write(Server *srv, const char *job_id, FileRow *f, Err *e) {
    Row *rows = NULL;
    int64_t n_rows = 0, after = 0;
    for (;;) {  // every event of the job, oldest first, a page at a time
        EventRow *ev;
        int n;
        if (db_event_since(srv->db, job_id, after, 500, &ev, &n, e)) { free(rows); return -1; }
        for (int i = 0; i < n; i++) {
            after = ev[i].seq;
            if (!strcmp(ev[i].type, "metrics") && merge_event(ev[i].data, &rows, &n_rows)) {
                event_rows_free(ev, n);
                free(rows);
                return err_set(e, "out of memory for the results of %s", job_id);
            }
        }
        event_rows_free(ev, n);
        if (n < 500) break;
    }
    StrBuf b = {0};
    sb_puts(&b, "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n");
    for (int64_t s = 1; s < n_rows; s++) {
        if (!rows[s].seen) continue;
        sb_printf(&b, "%lld", (long long)s);
        for (int c = 0; c < R_COLS; c++) {
            if (isnan(rows[s].v[c])) sb_puts(&b, ",");
            else sb_printf(&b, ",%.6g", rows[s].v[c]);
        }
        sb_puts(&b, "\n");
    }
    free(rows);
    if (b.oom) { free(b.buf); return err_set(e, "out of memory for the results of %s", job_id); }
    memset(f, 0, sizeof *f);
    id_new("file-", f->id);
    snprintf(f->filename, sizeof f->filename, "%s_results.csv", job_id);
    snprintf(f->purpose, sizeof f->purpose, "%s", RESULTS_PURPOSE);
    f->bytes = (int64_t)b.len;
    f->created_at = now_s();
    for (size_t i = 0; i + 1 < b.len; i++) f->n_examples += b.buf[i] == '\n';  // data rows: lines past the header
    char dir[PATH_MAX], path[PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s/files", srv->data_dir);
    snprintf(path, sizeof path, "%s/%s.csv", dir, f->id);
    int rc = fs_mkdirs(dir, e) || fs_write_atomic(path, b.buf, b.len, e) ? -1 : 0;
    free(b.buf);
    if (!rc) fs_fsync_dir(dir);
    return rc;
}
