/* tar.h: writes a POSIX ustar archive of a few regular files (the adapter download).
 *
 * The archive is built on disk once (temp name, then rename) and its SHA-256 computed while
 * writing, so a download can be served from a file descriptor with an ETag and byte ranges.
 * Headers are deterministic (mode 0644, uid/gid 0, the source file's mtime), so the same
 * adapter always gives the same bytes and the same ETag. */
#ifndef LEMO_TAR_H
#define LEMO_TAR_H

#include "err.h"

/* Archives paths[i] under names[i] (each name < 100 bytes, no directories) into out_path;
 * fills sha_hex (65 bytes) with the archive's SHA-256. 0 done; -2 the disk is full (no space,
 * quota or file size limit: nothing left behind); -1 any other failure. */
int tar_write_files(const char *out_path, const char *const *names, const char *const *paths, int n,
                    char sha_hex[65], Err *e);

#endif
