/* backend_select.h: --device auto|cpu|cuda -> a Backend table. */
#ifndef LEMO_BACKEND_SELECT_H
#define LEMO_BACKEND_SELECT_H

#include "backend.h"
#include "err.h"

/* "auto" (CUDA when built in and a device answers, else CPU), "cpu", or "cuda" (an error
 * naming the reason when unavailable). */
const Backend *backend_select(const char *device, Err *e);

#endif
