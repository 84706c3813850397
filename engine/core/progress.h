/* progress.h: the JSON-lines progress protocol of `lemo train` (DESIGN section 6).
 * One object per line on stdout, flushed at once, so the server (or a user's pipe) sees
 * each step as it ends. Human logs go to stderr. */
#ifndef LEMO_PROGRESS_H
#define LEMO_PROGRESS_H

#include <jansson.h>

/* The line types, one table (progress.c) for the commands that print them and the server
 * that reads them: `lemo train` prints start, step, eval, checkpoint, log, done, cancelled,
 * error; `lemo prepare` start, step, calibrate, recall, log, done, error. */
typedef enum {
    PROGRESS_START, PROGRESS_STEP, PROGRESS_EVAL, PROGRESS_CHECKPOINT, PROGRESS_CALIBRATE, PROGRESS_RECALL,
    PROGRESS_LOG, PROGRESS_DONE, PROGRESS_CANCELLED, PROGRESS_ERROR,
    PROGRESS_N  // not a type: the count, and what progress_type_of answers for a name it does not know
} ProgressType;
extern const char *const progress_type_names[PROGRESS_N];
/* The type a line's "type" names; PROGRESS_N when it names none (NULL included). */
ProgressType progress_type_of(const char *name);

/* Prints obj (plus "type": its name) as one line and takes ownership of obj. */
void progress_emit(ProgressType type, json_t *obj);
/* {"type":"log","level":level,"message":...} */
void progress_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
