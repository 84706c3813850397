/* progress.h: the JSON-lines progress protocol of `lemo train` (DESIGN section 6).
 * One object per line on stdout, flushed at once, so the server (or a user's pipe) sees
 * each step as it ends. Human logs go to stderr. */
#ifndef LEMO_PROGRESS_H
#define LEMO_PROGRESS_H

#include <jansson.h>

/* Prints obj (plus "type": type) as one line and takes ownership of obj. */
void progress_emit(const char *type, json_t *obj);
/* {"type":"log","level":level,"message":...} */
void progress_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
