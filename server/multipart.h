/* multipart.h: a streaming multipart/form-data parser (RFC 7578) for dataset uploads.
 *
 * Uploads can be large, so the body is never held whole: bytes are fed as they arrive and
 * each part's data is handed to a callback in pieces (the server writes the `file` part
 * straight to a temp file). Memory use is bounded by the largest chunk fed plus the
 * boundary length; a part's header block is capped at 16 KiB. */
#ifndef LEMO_MULTIPART_H
#define LEMO_MULTIPART_H

#include <stddef.h>

#include "err.h"

typedef struct {
    /* A part starts: its form field name, filename ("" if none) and content type ("" if none).
     * Each callback returns 0 to go on, non-zero to stop the parse (the caller set the reason). */
    int (*on_begin)(void *ctx, const char *name, const char *filename, const char *content_type);
    int (*on_data)(void *ctx, const char *data, size_t n);
    int (*on_end)(void *ctx);
    void *ctx;
} MultipartCallbacks;

typedef struct Multipart Multipart;

/* Reads the boundary from a Content-Type header value; NULL + e if it has none. */
Multipart *multipart_new(const char *content_type, const MultipartCallbacks *cb, Err *e);
/* Feeds the next n bytes of the body; -1 on malformed input or when a callback stops it. */
int multipart_feed(Multipart *m, const char *data, size_t n, Err *e);
/* The body is complete: -1 unless the closing boundary was seen. */
int multipart_finish(Multipart *m, Err *e);
void multipart_free(Multipart *m);

#endif
