/* webhook.c: the webhook queue and sender thread (see webhook.h).
 *
 * A job's metadata.webhook_url is a URL a client named, so its deliveries go through the
 * connect-time guard (netaddr_curl.h) unless the server allows internal addresses; the
 * operator's --webhook-url is trusted and is not guarded. A refused delivery is logged once and
 * dropped (trying again would be refused again). Redirects are not followed. */
#include "clock.h"
#include "webhook.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "netaddr_curl.h"
#include "sha256.h"
#include "srv_util.h"

#define WEBHOOK_TRIES 3

typedef struct Delivery {
    struct Delivery *next;
    char url[1024];
    char id[ID_MAX];
    char job[ID_MAX];
    int guarded;         // 1: internal addresses refused (a client's URL)
    char *body;
    int tries;
    double not_before;   // unix time of the next try
} Delivery;

struct Webhooks {
    Server *srv;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    Delivery *head;
    int stopping;
};

void webhook_sign(const char *secret, const char *msg_id, long long ts, const char *body, char *out, size_t cap) {
    size_t n = strlen(msg_id) + strlen(body) + 32;
    char *msg = malloc(n);
    uint8_t mac[32];
    char b64[48];
    if (!msg) { snprintf(out, cap, "v1,"); return; }
    int len = snprintf(msg, n, "%s.%lld.%s", msg_id, ts, body);
    hmac_sha256(secret, strlen(secret), msg, (size_t)len, mac);
    free(msg);
    base64_encode(mac, 32, b64);
    snprintf(out, cap, "v1,%s", b64);
}

static size_t discard(char *p, size_t s, size_t n, void *u) { (void)p, (void)u; return s * n; }

/* One POST; 0 when the receiver answered 2xx, -2 when the guard refused every address the URL
 * led to (logged here; not worth another try), -1 on any other failure. */
static int webhook_post(Webhooks *w, Delivery *d) {
    CURL *c = curl_easy_init();
    if (!c) return -1;
    long long ts = (long long)now_s();
    char sig[128], h1[160], h2[80], h3[80];
    webhook_sign(w->srv->webhook_secret, d->id, ts, d->body, sig, sizeof sig);
    struct curl_slist *hs = curl_slist_append(NULL, "Content-Type: application/json");
    snprintf(h1, sizeof h1, "webhook-signature: %s", sig);
    snprintf(h2, sizeof h2, "webhook-id: %s", d->id);
    snprintf(h3, sizeof h3, "webhook-timestamp: %lld", ts);
    hs = curl_slist_append(hs, h2);
    hs = curl_slist_append(hs, h3);
    if (w->srv->webhook_secret[0]) hs = curl_slist_append(hs, h1);
    curl_easy_setopt(c, CURLOPT_URL, d->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);   // a 3xx is a failed delivery, never a new target
    NetGuard guard = {!d->guarded, "", 0};
    netaddr_curl_guard(c, &guard);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, d->body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "lemo-webhook/1");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(hs);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK && guard.refused[0] && !guard.opened) {
        fprintf(stderr, "lemo serve: webhook %s of job %s to %s: refused: it leads to %s, an internal address "
                        "(loopback, private or link-local), which a job's webhook_url may not reach unless the "
                        "server runs with --allow-internal-urls; dropped\n", d->id, d->job, d->url, guard.refused);
        return -2;
    }
    if (rc != CURLE_OK || code < 200 || code > 299) {
        fprintf(stderr, "lemo serve: webhook %s to %s: %s (try %d of %d)\n", d->id, d->url,
                rc != CURLE_OK ? curl_easy_strerror(rc) : "non-2xx answer", d->tries + 1, WEBHOOK_TRIES);
        return -1;
    }
    return 0;
}

/* Takes the first delivery that is due (or, when stopping, any); waits otherwise. */
static void *webhook_main(void *arg) {
    Webhooks *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        Delivery **pp = &w->head, *d = NULL;
        double now = now_f(), next = 0;
        for (; *pp; pp = &(*pp)->next) {
            if (w->stopping || (*pp)->not_before <= now) { d = *pp; *pp = d->next; break; }
            if (!next || (*pp)->not_before < next) next = (*pp)->not_before;
        }
        if (!d) {
            if (w->stopping) break;
            struct timespec ts = clock_wall_at(next ? next : now + 60);
            pthread_cond_timedwait(&w->cond, &w->mu, &ts);
            continue;
        }
        int stopping = w->stopping;
        pthread_mutex_unlock(&w->mu);
        int rc = webhook_post(w, d);
        pthread_mutex_lock(&w->mu);
        if (rc == -1 && !stopping && ++d->tries < WEBHOOK_TRIES) {
            d->not_before = now_f() + (d->tries == 1 ? 2 : 8);
            d->next = w->head;
            w->head = d;
        } else {
            free(d->body);
            free(d);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

Webhooks *webhook_start(Server *srv, Err *e) {
    Webhooks *w = calloc(1, sizeof *w);
    if (!w) { err_set(e, "out of memory"); return NULL; }
    w->srv = srv;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (pthread_create(&w->th, NULL, webhook_main, w)) {
        free(w);
        err_set(e, "cannot start the webhook thread");
        return NULL;
    }
    return w;
}

/* Appends one delivery to the queue; guarded: refuse internal addresses. */
static void webhook_enqueue(Webhooks *w, const char *url, const char *job_id, int guarded, const char *body) {
    Delivery *d = calloc(1, sizeof *d);
    if (!d) return;
    snprintf(d->url, sizeof d->url, "%s", url);
    snprintf(d->job, sizeof d->job, "%s", job_id);
    d->guarded = guarded;
    id_new("msg_", d->id);
    d->body = strdup(body);
    if (!d->body) { free(d); return; }
    pthread_mutex_lock(&w->mu);
    Delivery **pp = &w->head;
    while (*pp) pp = &(*pp)->next;
    *pp = d;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

void webhook_send(Webhooks *w, const char *type, const char *job_id, const char *job_json, const char *url_override) {
    if (!w) return;
    const char *global = w->srv->webhook_url;
    if (!global[0] && (!url_override || !url_override[0])) return;
    char eid[ID_MAX];
    id_new("evt_", eid);
    json_t *job = json_loads(job_json, 0, NULL);
    json_t *ev = json_pack("{s:s, s:s, s:s, s:I, s:{s:s, s:o}}", "object", "event", "id", eid, "type", type,
                           "created_at", (json_int_t)now_s(), "data", "id", job_id, "job", job ? job : json_null());
    char *body = json_dumps(ev, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(ev);
    if (!body) return;
    if (global[0]) webhook_enqueue(w, global, job_id, 0, body);
    if (url_override && url_override[0] && strcmp(url_override, global))
        webhook_enqueue(w, url_override, job_id, !w->srv->allow_internal_urls, body);
    free(body);
}

void webhook_stop(Webhooks *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stopping = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->th, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cond);
    free(w);
}
