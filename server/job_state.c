/* job_state.c: the job state machine's one table (see job_state.h).
 *
 * Not a move: a trainer killed by a signal nobody sent it (the OOM killer, a crash) while the
 * job runs is started again by its slot from the newest readable checkpoint, a bounded number
 * of times (scheduler.c); the job stays `running` meanwhile and its events say so. */
#include "job_state.h"

#include <string.h>

const char *const job_state_names[JOB_STATE_N] = {
    [JOB_QUEUED] = "queued",
    [JOB_RUNNING] = "running",
    [JOB_PAUSED] = "paused",
    [JOB_SUCCEEDED] = "succeeded",
    [JOB_FAILED] = "failed",
    [JOB_CANCELLED] = "cancelled",
};

/* Every checkpoint is complete where it is listed (written under checkpoints/.tmp-step-N and
 * renamed to step-N), and so is the adapter (exported under a temp name and renamed). */
const char *const job_state_on_disk[JOB_STATE_N] = {
    [JOB_QUEUED] = "the row (request, resolved config); jobs/ID/ may hold the checkpoints of an earlier run, "
                   "and the next run resumes from the newest readable one",
    [JOB_RUNNING] = "a live `lemo train` child; jobs/ID/config.json, events.jsonl and train.log growing, "
                    "checkpoints/step-N as they are written",
    [JOB_PAUSED] = "no child; checkpoints/step-N of the step it stopped at (or, after a full disk, the last "
                   "one that was written), which resume continues from",
    [JOB_SUCCEEDED] = "adapter/ (adapter_config.json, adapter_model.safetensors) and the checkpoints; "
                      "fine_tuned_model is set",
    [JOB_FAILED] = "error is set; the checkpoints written before the failure stay and are listed; no adapter",
    [JOB_CANCELLED] = "no child; the checkpoints up to the step it stopped at; no adapter",
};

const char *const job_actor_names[JOB_ACTOR_N] = {
    [JOB_BY_API] = "api",
    [JOB_BY_SCHEDULER] = "scheduler",
    [JOB_BY_TRAINER_EXIT] = "trainer exit",
    [JOB_BY_RECOVERY] = "startup recovery",
};

const JobTransition job_transitions[] = {
    {JOB_QUEUED, JOB_RUNNING, JOB_BY_SCHEDULER, "a free slot claims the oldest queued job"},
    {JOB_QUEUED, JOB_PAUSED, JOB_BY_API, "POST /pause before the job ran"},
    {JOB_QUEUED, JOB_CANCELLED, JOB_BY_API, "POST /cancel before the job ran"},
    {JOB_RUNNING, JOB_FAILED, JOB_BY_SCHEDULER, "the slot cannot write the job's config or start its trainer"},
    {JOB_RUNNING, JOB_QUEUED, JOB_BY_SCHEDULER, "the server is stopping: the trainer checkpointed on SIGTERM"},
    {JOB_RUNNING, JOB_SUCCEEDED, JOB_BY_TRAINER_EXIT, "a done line and exit status 0"},
    {JOB_RUNNING, JOB_PAUSED, JOB_BY_TRAINER_EXIT, "stopped with a checkpoint on a pause request, or the disk "
                                                   "filled (error disk_full: the last checkpoint is kept)"},
    {JOB_RUNNING, JOB_CANCELLED, JOB_BY_TRAINER_EXIT, "stopped on a cancel request"},
    {JOB_RUNNING, JOB_FAILED, JOB_BY_TRAINER_EXIT, "an error line, a nonzero exit, or killed again after its retries"},
    {JOB_RUNNING, JOB_QUEUED, JOB_BY_RECOVERY, "found running at start: the server died under it"},
    {JOB_PAUSED, JOB_QUEUED, JOB_BY_API, "POST /resume: queued at the back, continues from its checkpoint"},
    {JOB_PAUSED, JOB_CANCELLED, JOB_BY_API, "POST /cancel of a paused job"},
};
const int job_transition_count = (int)(sizeof job_transitions / sizeof job_transitions[0]);

int job_state_parse(const char *s) {
    for (int i = 0; s && i < JOB_STATE_N; i++)
        if (!strcmp(s, job_state_names[i])) return i;
    return -1;
}

int job_state_terminal(JobState s) { return s == JOB_SUCCEEDED || s == JOB_FAILED || s == JOB_CANCELLED; }

int job_transition_check(JobState from, JobState to, JobActor by, Err *e) {
    if ((unsigned)from >= JOB_STATE_N || (unsigned)to >= JOB_STATE_N || (unsigned)by >= JOB_ACTOR_N)
        return err_set(e, "job state move %d -> %d by %d is out of the table's range", (int)from, (int)to, (int)by);
    for (int i = 0; i < job_transition_count; i++) {
        const JobTransition *t = &job_transitions[i];
        if (t->from == from && t->to == to && t->by == by) return 0;
    }
    return err_set(e, "the job state machine has no move %s -> %s by %s", job_state_names[from], job_state_names[to],
                   job_actor_names[by]);
}
