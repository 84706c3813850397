/* err.c: formatting helpers for Err (see err.h). */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int err_set(Err *e, const char *fmt, ...) {
    if (!e) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->param[0] = 0;
    e->line = 0;
    return -1;
}

int err_set_at(Err *e, const char *param, long line, const char *fmt, ...) {
    if (!e) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    e->line = line;
    return -1;
}

int err_prefix(Err *e, const char *fmt, ...) {
    if (!e) return -1;
    char pre[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    // "pre: old", truncating the old message if the whole would not fit
    size_t cap = sizeof e->msg, pl = strlen(pre), ol = strnlen(e->msg, cap - 1);
    if (pl > cap - 3) pl = cap - 3;
    if (ol > cap - 1 - pl - 2) ol = cap - 1 - pl - 2;
    memmove(e->msg + pl + 2, e->msg, ol);
    memcpy(e->msg, pre, pl);
    e->msg[pl] = ':';
    e->msg[pl + 1] = ' ';
    e->msg[pl + 2 + ol] = 0;
    return -1;
}
