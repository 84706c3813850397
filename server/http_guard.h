/* http_guard.h: the request-header deadline of every open connection (http_guard.c): a
 * connection that has not sent a complete request header within --header-timeout seconds of
 * opening, or of its previous answer, is closed. That bounds slow-loris clients (a header sent a
 * byte at a time) and idle keep-alive connections, neither of which libmicrohttpd's idle timeout
 * catches on its own: the first is never idle, the second is only idle. */
#ifndef LEMO_HTTP_GUARD_H
#define LEMO_HTTP_GUARD_H

#include <microhttpd.h>

#include "err.h"

typedef struct HttpGuard HttpGuard;
typedef struct GuardConn GuardConn;

/* Starts the watchdog thread; NULL + e on failure. */
HttpGuard *http_guard_start(int header_timeout_s, Err *e);
/* Stops it; call after MHD_stop_daemon (NULL is fine). */
void http_guard_stop(HttpGuard *g);
/* MHD_OPTION_NOTIFY_CONNECTION's callback (cls = the guard): lists and unlists connections. */
void http_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                       enum MHD_ConnectionNotificationCode code);
/* A request's header is complete: its connection has no deadline until the answer is sent. */
void http_guard_request_began(HttpGuard *g, struct MHD_Connection *conn);
/* The answer is sent: the next request header is due within the timeout. */
void http_guard_request_done(HttpGuard *g, struct MHD_Connection *conn);
/* Connections closed for a late header so far (for /metrics). */
long http_guard_closed(HttpGuard *g);

#endif
