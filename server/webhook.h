/* webhook.h: job.succeeded / job.failed / job.cancelled notifications over HTTP POST.
 *
 * Deliveries go through a queue to one background thread, so a slow or dead receiver never
 * blocks a request or an engine thread. Each delivery is retried (3 tries in all, 2 s then
 * 8 s apart) until the receiver answers 2xx. Signing follows the Standard Webhooks scheme:
 * headers webhook-id, webhook-timestamp and webhook-signature: "v1,"
 * base64(HMAC-SHA256(secret, id "." timestamp "." body)), with the secret's bytes as given.
 * The body: {"object":"event","id","type","created_at","data":{"id":JOB_ID,"job":{...}}}.
 * A job's own URL may not reach internal addresses unless --allow-internal-urls (webhook.c). */
#ifndef LEMO_WEBHOOK_H
#define LEMO_WEBHOOK_H

#include "err.h"
#include "server.h"

Webhooks *webhook_start(Server *srv, Err *e);
/* Queues `type` for the server's --webhook-url (trusted) and for url_override (a job's
 * metadata.webhook_url, guarded; NULL or "" for none). job_json is copied. */
void webhook_send(Webhooks *w, const char *type, const char *job_id, const char *job_json, const char *url_override);
/* Delivers what is queued (each gets one try left) and stops the thread. */
void webhook_stop(Webhooks *w);
/* The signature header value for a body ("v1,BASE64"). */
void webhook_sign(const char *secret, const char *msg_id, long long ts, const char *body, char *out, size_t cap);

#endif
