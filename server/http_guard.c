/* http_guard.c: closes connections that hold a place without asking anything (see http_guard.h).
 *
 * libmicrohttpd's own timeout (MHD_OPTION_CONNECTION_TIMEOUT, --idle-timeout) counts from the
 * last byte either way, so a client that sends its request header one byte every few seconds
 * (slow loris) is never idle and keeps its connection, and its thread, for ever. Here each open
 * connection carries a deadline by which its next request header must be complete: set when it
 * opens and again when an answer has been sent, cleared while a request is being served (a
 * long upload or an event stream is not a slow header). A thread looks at the deadlines a few
 * times a second and shuts down the sockets past theirs; libmicrohttpd then sees the end of
 * the stream and closes the connection itself, so nothing is freed behind its back.
 *
 * The table's lock is held from the connection's start notification to its close
 * notification, which libmicrohttpd sends before it closes the descriptor: a descriptor the
 * thread shuts down is always still the connection's own, never one reused by a newer
 * connection. */
#include "clock.h"
#include "http_guard.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

struct GuardConn {
    GuardConn *prev, *next;
    int fd;
    double deadline;      // monotonic seconds; 0 while a request is served
    int shut;             // shut down already
};

struct HttpGuard {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    GuardConn *head;
    double header_timeout;
    int stop;
    pthread_t th;
    atomic_long closed;
};

static double mono_s(void) { return clock_mono_s(); }

/* The watchdog: shuts down connections past their header deadline, about 4 times a second. */
static void *guard_main(void *arg) {
    HttpGuard *g = arg;
    pthread_mutex_lock(&g->mu);
    while (!g->stop) {
        double now = mono_s();
        int n = 0;
        for (GuardConn *c = g->head; c; c = c->next) {
            if (c->shut || !c->deadline || now < c->deadline) continue;
            shutdown(c->fd, SHUT_RDWR);
            c->shut = 1;
            n++;
        }
        if (n) {   // one line a round, not one a connection: hundreds may go at once
            atomic_fetch_add(&g->closed, n);
            fprintf(stderr, "lemo serve: http: closed %d connection%s that sent no whole request header within %g s\n", n,
                    n == 1 ? "" : "s", g->header_timeout);
        }
        struct timespec ts = clock_wall_after(0.25);
        pthread_cond_timedwait(&g->cond, &g->mu, &ts);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

HttpGuard *http_guard_start(int header_timeout_s, Err *e) {
    HttpGuard *g = calloc(1, sizeof *g);
    if (!g) { err_set(e, "out of memory"); return NULL; }
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->header_timeout = header_timeout_s;
    if (pthread_create(&g->th, NULL, guard_main, g)) {
        free(g);
        err_set(e, "cannot start the connection watchdog thread");
        return NULL;
    }
    return g;
}

void http_guard_stop(HttpGuard *g) {
    if (!g) return;
    pthread_mutex_lock(&g->mu);
    g->stop = 1;
    pthread_cond_signal(&g->cond);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->th, NULL);
    // connections still listed are closed by MHD_stop_daemon, which runs before this
    while (g->head) {
        GuardConn *c = g->head;
        g->head = c->next;
        free(c);
    }
    free(g);
}

long http_guard_closed(HttpGuard *g) { return g ? atomic_load(&g->closed) : 0; }

void http_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                       enum MHD_ConnectionNotificationCode code) {
    HttpGuard *g = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        GuardConn *c = ci ? calloc(1, sizeof *c) : NULL;
        *socket_context = c;
        if (!c) return;   // not watched: only libmicrohttpd's own timeout applies to it
        c->fd = ci->connect_fd;
        c->deadline = mono_s() + g->header_timeout;
        pthread_mutex_lock(&g->mu);
        c->next = g->head;
        if (g->head) g->head->prev = c;
        g->head = c;
        pthread_mutex_unlock(&g->mu);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        GuardConn *c = *socket_context;
        if (!c) return;
        pthread_mutex_lock(&g->mu);
        if (c->prev) c->prev->next = c->next;
        else g->head = c->next;
        if (c->next) c->next->prev = c->prev;
        pthread_mutex_unlock(&g->mu);
        free(c);
        *socket_context = NULL;
    }
}

/* The connection's entry, or NULL when it is not watched. */
static GuardConn *guard_conn(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

void http_guard_request_began(HttpGuard *g, struct MHD_Connection *conn) {
    GuardConn *c = g ? guard_conn(conn) : NULL;
    if (!c) return;
    pthread_mutex_lock(&g->mu);
    c->deadline = 0;
    pthread_mutex_unlock(&g->mu);
}

void http_guard_request_done(HttpGuard *g, struct MHD_Connection *conn) {
    GuardConn *c = g ? guard_conn(conn) : NULL;
    if (!c) return;
    pthread_mutex_lock(&g->mu);
    c->deadline = mono_s() + g->header_timeout;
    pthread_mutex_unlock(&g->mu);
}
