/* clock.h: the one clock of the tree. Durations (step times, timeouts, rates) come from the
 * monotonic clock, which no NTP step moves; timestamps (created_at, event times) and the
 * deadlines pthread_cond_timedwait takes come from the wall clock. */
#ifndef LEMO_CLOCK_H
#define LEMO_CLOCK_H

#include <time.h>

/* Seconds on the monotonic clock (an arbitrary origin): for durations. */
double clock_mono_s(void);
/* Seconds since the Unix epoch: for timestamps. */
double clock_wall_s(void);
/* The wall-clock instant `seconds` from now, as pthread_cond_timedwait wants it. */
struct timespec clock_wall_after(double seconds);
/* The wall-clock instant `at` (seconds since the epoch), likewise. */
struct timespec clock_wall_at(double at);

#endif
