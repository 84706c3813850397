/* progress.c: JSON-lines progress output (see progress.h). */
#include "progress.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const progress_type_names[PROGRESS_N] = {"start", "step",      "eval", "checkpoint", "calibrate",
                                                     "recall", "log",      "done", "cancelled",  "error"};

ProgressType progress_type_of(const char *name) {
    for (int t = 0; name && t < PROGRESS_N; t++)
        if (!strcmp(name, progress_type_names[t])) return (ProgressType)t;
    return PROGRESS_N;
}

void progress_emit(ProgressType type, json_t *obj) {
    if (!obj) obj = json_object();
    json_object_set_new(obj, "type", json_string(progress_type_names[type]));
    char *s = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(9));
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        free(s);
    }
    json_decref(obj);
}

void progress_log(const char *level, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "lemo: %s\n", buf);
    progress_emit(PROGRESS_LOG, json_pack("{s:s, s:s}", "level", level, "message", buf));
}
