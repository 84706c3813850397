/* fsutil.h: the few file-system operations the engine needs, done crash-safely:
 * whole-file writes go to a temp name, are fsynced and renamed over the target. */
#ifndef LEMO_FSUTIL_H
#define LEMO_FSUTIL_H

#include <stddef.h>

#include "err.h"

int fs_mkdirs(const char *path, Err *e);                  // mkdir -p
int fs_write_atomic(const char *path, const void *data, size_t n, Err *e);
char *fs_read_all(const char *path, size_t *n, size_t max, Err *e);  // malloc'd, NUL-terminated
int fs_remove_tree(const char *path);                     // rm -rf (best effort)
int fs_fsync_dir(const char *dir);
int fs_is_dir(const char *path);

#endif
