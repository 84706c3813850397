/* server.h: the state of one `lemo serve` process, shared by the HTTP handlers, the engine
 * threads, the event streams and the webhook sender.
 *
 * Settings are fixed after start; the mutable parts are the database (db.h, thread-safe),
 * the scheduler's slots (scheduler.h), the event notifier below and a few atomic counters
 * for /metrics. */
#ifndef LEMO_SERVER_H
#define LEMO_SERVER_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "db.h"

#define SERVER_MAX_MODEL_DIRS 16
#define SERVER_PATH 2048   // longest data/models/web directory path (leaves room for the names under it)

typedef struct Scheduler Scheduler;
typedef struct Webhooks Webhooks;
typedef struct HttpGuard HttpGuard;

typedef struct Server {
    /* settings (flags of `lemo serve`) */
    char host[256];
    int port;
    char data_dir[SERVER_PATH];                          // absolute
    char models[SERVER_MAX_MODEL_DIRS][SERVER_PATH];     // absolute model roots, searched in order
    int n_models;
    char web_dir[SERVER_PATH];                         // "" = no dashboard found
    int slots;
    int64_t max_upload_bytes;                         // POST /v1/files bodies and URL imports
    int64_t max_body_bytes;                           // every other request body
    int import_timeout_s;
    int public_metrics;                               // /metrics without a key even when keys exist
    int allow_internal_urls;                          // URL imports and job webhooks may reach internal addresses (netaddr.h)
    char webhook_url[1024], webhook_secret[256];
    int access_log;                                   // a line per request on stderr (--no-access-log: 0)
    int header_timeout_s;                             // a request header must be complete this soon (http_guard.h)
    int idle_timeout_s;                               // a connection silent this long either way is closed
    int max_connections, max_connections_per_ip;      // open at once (per client address: 0 = no limit)
    char exe[PATH_MAX];                               // this binary, for `lemo train` / `lemo estimate`
    /* state */
    Db *db;
    Scheduler *sched;
    Webhooks *hooks;
    void *mhd;                                        // struct MHD_Daemon *
    HttpGuard *guard;                                 // the connections' header deadlines
    atomic_int stopping;
    int64_t started_at;
    /* event notifier: bumped on every stored event or status change, waited on by streams */
    pthread_mutex_t ev_mu;
    pthread_cond_t ev_cond;
    uint64_t ev_version;
    /* counters for /metrics */
    atomic_long http_by_class[6];                     // [k] = responses with status k00..k99
    atomic_long http_requests;
} Server;

/* Wakes every event stream (call after committing events or a status change). */
void server_notify_events(Server *s);
/* Waits until the event version differs from *seen or timeout_ms passes; updates *seen. */
void server_wait_events(Server *s, uint64_t *seen, int timeout_ms);

#endif
