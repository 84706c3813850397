/* job_state.h: the fine-tuning job's state machine, as one table (job_state.c).
 *
 * A job is born `queued` (POST /v1/fine_tuning/jobs inserts the row); from then on every
 * change of its status goes through db_job_move(), which checks the move against
 * job_transitions[] inside the same transaction that applies it. A move the table lacks is
 * logged and refused, never applied: a status in the database is always one the table can
 * explain, which is what lets a restarted server trust it. The API's `validating_files`
 * status is never stored: a file is validated when it is uploaded, before any job names it. */
#ifndef LEMO_JOB_STATE_H
#define LEMO_JOB_STATE_H

#include "err.h"

typedef enum {
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_PAUSED,
    JOB_SUCCEEDED,
    JOB_FAILED,
    JOB_CANCELLED,
    JOB_STATE_N
} JobState;
extern const char *const job_state_names[JOB_STATE_N];     // as stored and as the API shows them
extern const char *const job_state_on_disk[JOB_STATE_N];   // what the data directory holds in that state

/* Who moves a job. */
typedef enum {
    JOB_BY_API,          // a user's request (cancel, pause, resume)
    JOB_BY_SCHEDULER,    // a slot thread: claiming, failing to start, stopping for a shutdown
    JOB_BY_TRAINER_EXIT, // how the `lemo train` child ended (its last lines and exit status)
    JOB_BY_RECOVERY,     // server start: jobs a crash left `running`
    JOB_ACTOR_N
} JobActor;
extern const char *const job_actor_names[JOB_ACTOR_N];

typedef struct {
    JobState from, to;
    JobActor by;
    const char *when;    // the event that makes the move
} JobTransition;
extern const JobTransition job_transitions[];
extern const int job_transition_count;

/* The state named s, or -1 for a name the table does not know. */
int job_state_parse(const char *s);
/* 1 for succeeded, failed, cancelled: no move leaves them. */
int job_state_terminal(JobState s);
/* 0 when the table has from -> to by `by`; else -1 with e saying which move was refused. */
int job_transition_check(JobState from, JobState to, JobActor by, Err *e);

#endif
