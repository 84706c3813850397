/* err.h: the one error type every module fills in.
 *
 * The engine fails fast with a clear message; the server turns the same
 * message into a typed HTTP error. So library code never prints or exits:
 * it fills an Err and returns -1 (or NULL), and the caller decides. `param`
 * names the offending field/key when there is one and `line` the 1-based
 * input line (0 when not applicable), so a dataset error can say "line 17,
 * field messages[2].role" to an API client. */
#ifndef LEMO_ERR_H
#define LEMO_ERR_H

typedef struct {
    char msg[1024];   // human-readable, complete sentence fragment ("file x: line 3: ...")
    char param[128];  // offending field or key, "" if none
    long line;        // 1-based input line, 0 if none
} Err;

/* Formats msg, clears param/line; returns -1 so callers can `return err_set(...)`. */
int err_set(Err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same, also recording the field name and line. */
int err_set_at(Err *e, const char *param, long line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Prepends "prefix: " to an existing message (adds context while unwinding). */
int err_prefix(Err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
