/* http.c: libmicrohttpd glue, the dispatcher over routes.c's table and the reply helpers (see http.h).
 *
 * The daemon runs one thread per connection: an event stream may then simply block in its
 * reader callback until the next event, and 64 keep-alive clients plus streams are 64+
 * threads, well within limits (bench/api_load.c: 256 connections and 32 streams at 3,000
 * reads/s on 2 cores). MHD calls on_request several times per request: first with the
 * headers (route, auth and size checks happen here, so an oversized upload is refused
 * before it is read), then once per body chunk, then once more to produce the answer.
 *
 * A request's Req is made when its request line is in (on_uri, which sees the URL as sent,
 * before it is decoded: its length and any %00 are judged there) and freed when it is done
 * (on_completed), which also writes its access log line. The limits on what a client may
 * send (URL, header lines, their number and size, idle and header timeouts, connections)
 * are answered with typed errors where an answer is possible; http_guard.c closes what sends
 * no complete request at all. */
#include "clock.h"
#include "http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api.h"
#include "api_errors.h"
#include "auth.h"
#include "http_guard.h"


// every GET outside /v1 that no route takes: the dashboard's files
static const Route web_route = {.method = "GET", .pattern = "/", .handler = api_web, .open = 1};

/* Splits path into r->segs and matches it against a pattern; fills r->params. */
static int route_match(Req *r, const char *pattern, const char *path) {
    const char *p = pattern, *u = path;
    r->n_params = 0;
    size_t used = 0;
    while (*p && *u) {
        if (*p != '/' || *u != '/') return 0;
        p++, u++;
        const char *pe = strchr(p, '/'), *ue = strchr(u, '/');
        size_t pl = pe ? (size_t)(pe - p) : strlen(p), ul = ue ? (size_t)(ue - u) : strlen(u);
        if (pl >= 2 && p[0] == '{' && p[pl - 1] == '}') {
            if (!ul || r->n_params == HTTP_MAX_PARAMS || used + ul + 1 > sizeof r->segs) return 0;
            memcpy(r->segs + used, u, ul);
            r->segs[used + ul] = 0;
            r->params[r->n_params++] = r->segs + used;
            used += ul + 1;
        } else if (pl != ul || strncmp(p, u, pl)) {
            return 0;
        }
        p += pl, u += ul;
    }
    return !*p && !*u;
}

/* Finds the route; *path_known = 1 if the path exists under another method (405). */
static const Route *route_find(Req *r, const char *method, const char *path, int *path_known) {
    *path_known = 0;
    const char *m = !strcmp(method, "HEAD") ? "GET" : method;
    for (int i = 0; i < http_n_routes; i++) {
        if (!route_match(r, http_routes[i].pattern, path)) continue;
        if (!strcmp(http_routes[i].method, m)) return &http_routes[i];
        *path_known = 1;
    }
    if (!strcmp(m, "GET") && strncmp(path, "/v1/", 4) && strcmp(path, "/v1")) {
        r->n_params = 0;
        return &web_route;
    }
    return NULL;
}

static unsigned status_class(unsigned s) { return s / 100 < 6 ? s / 100 : 5; }

int http_queue(Req *r, unsigned status, struct MHD_Response *resp) {
    if (!resp) return MHD_NO;
    atomic_fetch_add(&r->srv->http_by_class[status_class(status)], 1);
    r->status = status;
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    enum MHD_Result rc = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

int http_json(Req *r, unsigned status, json_t *obj) {
    char *txt = obj ? json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(obj);
    if (!txt) {   // an object that could not be built: still an answer, never a silent close
        static const char fail[] = "{\"error\":{\"message\":\"the answer could not be built\",\"type\":"
                                   "\"server_error\",\"param\":null,\"code\":\"server_error\"}}";
        struct MHD_Response *resp = MHD_create_response_from_buffer(sizeof fail - 1, (void *)fail, MHD_RESPMEM_PERSISTENT);
        if (!resp) return MHD_NO;
        MHD_add_response_header(resp, "Content-Type", "application/json");
        r->resp_bytes = (int64_t)(sizeof fail - 1);
        return http_queue(r, 500, resp);
    }
    size_t n = strlen(txt);
    txt[n] = 0;
    struct MHD_Response *resp = MHD_create_response_from_buffer(n, txt, MHD_RESPMEM_MUST_FREE);
    if (!resp) { free(txt); return MHD_NO; }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    r->resp_bytes = (int64_t)n;
    return http_queue(r, status, resp);
}

int http_json_text(Req *r, unsigned status, StrBuf *b) {
    if (b->oom || !b->buf) {
        free(b->buf);
        b->buf = NULL;
        return http_500(r, "out of memory");
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(b->len, b->buf, MHD_RESPMEM_MUST_FREE);
    if (!resp) { free(b->buf); return MHD_NO; }
    b->buf = NULL;
    r->resp_bytes = (int64_t)b->len;
    MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    return http_queue(r, status, resp);
}

/* Builds the OpenAI error object. A code missing from api_errors.c (or answered with another
 * status than the table's) is reported on stderr: the API document would not list it, and
 * the integration tests fail on the report. */
static json_t *error_obj(unsigned status, const char *type, const char *code, const char *param, const char *msg,
                         long line) {
    const ApiError *ae = api_error_find(code);
    if (!ae || ae->status != status)
        fprintf(stderr, "lemo serve: error code '%s' with status %u is not in the error table (server/api_errors.c)\n",
                code ? code : "(none)", status);
    /* the message and param often quote what the client sent (an id from the path): bytes
     * that are not UTF-8 become '?', or JSON could not hold them and no answer would go out */
    char m[1024], p[256];
    snprintf(m, sizeof m, "%s", msg);
    snprintf(p, sizeof p, "%s", param ? param : "");
    utf8_sanitize(m);
    utf8_sanitize(p);
    json_t *e = json_pack("{s:s, s:s, s:o, s:o}", "message", m, "type", type, "param", *p ? json_string(p) : json_null(),
                          "code", code && *code ? json_string(code) : json_null());
    if (line > 0) json_object_set_new(e, "line", json_integer(line));
    return json_pack("{s:o}", "error", e);
}

/* An OpenAI-shaped error reply, with `estimate` (borrowed, may be NULL) as error.estimate. */
static int error_reply(Req *r, unsigned status, const char *type, const char *code, const char *param, json_t *estimate,
                       const char *fmt, va_list ap) {
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    json_t *o = error_obj(status, type, code, param, msg, 0);
    if (estimate) json_object_set(json_object_get(o, "error"), "estimate", estimate);
    return http_json(r, status, o);
}

int http_error(Req *r, unsigned status, const char *type, const char *code, const char *param,
               const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = error_reply(r, status, type, code, param, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

int http_error_with(Req *r, unsigned status, const char *type, const char *code, const char *param, json_t *estimate,
                    const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = error_reply(r, status, type, code, param, estimate, fmt, ap);
    va_end(ap);
    return rc;
}

int http_500(Req *r, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return http_json(r, 500, error_obj(500, "server_error", "server_error", NULL, msg, 0));
}

int http_error_from(Req *r, unsigned status, const char *code, const Err *e) {
    const char *type = status == 413 ? "invalid_request_error" : status >= 500 ? "server_error"
                                                                                : "invalid_request_error";
    return http_json(r, status, error_obj(status, type, code, e->param, e->msg, e->line));
}

int http_not_found(Req *r, const char *what, const char *id) {
    char safe[96];
    snprintf(safe, sizeof safe, "%s", id ? id : "");
    for (char *c = safe; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == '"') *c = '?';
    return http_error(r, 404, "invalid_request_error", "not_found", "id", "No %s found with id '%s'", what, safe);
}

const char *http_query(Req *r, const char *key) {
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *http_header(Req *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

int http_query_bool(Req *r, const char *key) {
    const char *v = http_query(r, key);
    return v && (!strcasecmp(v, "true") || !strcmp(v, "1"));
}

int http_list_params(Req *r, int def, int max, int *limit, const char **after, int *asc) {
    const char *l = http_query(r, "limit");
    *limit = def;
    if (l) {
        char *end;
        long v = strtol(l, &end, 10);
        if (!*l || *end || v < 1 || v > max) {
            http_error(r, 400, "invalid_request_error", "invalid_limit", "limit",
                       "'limit' must be an integer from 1 to %d", max);
            return -1;
        }
        *limit = (int)v;
    }
    *after = http_query(r, "after");
    if (*after && !**after) *after = NULL;
    if (asc) {
        const char *o = http_query(r, "order");
        *asc = o && !strcmp(o, "asc");
        if (o && !*asc && strcmp(o, "desc")) {
            http_error(r, 400, "invalid_request_error", "invalid_order", "order",
                       "'order' must be \"asc\" (oldest first) or \"desc\" (newest first, the default)");
            return -1;
        }
    }
    return 0;
}

json_t *http_body_json(Req *r) {
    if (!r->body || !r->body_len) {
        http_error(r, 400, "invalid_request_error", "invalid_json", NULL, "The request body must be a JSON object");
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        http_error(r, 400, "invalid_request_error", "invalid_json", NULL,
                   "The request body is not valid JSON (line %d, column %d): %s", je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        http_error(r, 400, "invalid_request_error", "invalid_json", NULL, "The request body must be a JSON object");
        return NULL;
    }
    return j;
}

int http_parse_range(const char *v, uint64_t size, uint64_t *first, uint64_t *last) {
    if (!v || strncmp(v, "bytes=", 6)) return 0;
    v += 6;
    while (*v == ' ') v++;
    if (strchr(v, ',')) return 0;  // several ranges: answer with the whole resource
    char *end;
    if (*v == '-') {               // suffix range: the last N bytes
        if (v[1] < '0' || v[1] > '9') return 0;
        unsigned long long n = strtoull(v + 1, &end, 10);
        while (*end == ' ') end++;
        if (*end) return 0;
        if (n == 0 || size == 0) return -1;
        *first = n >= size ? 0 : size - n;
        *last = size - 1;
        return 1;
    }
    if (*v < '0' || *v > '9') return 0;
    unsigned long long a = strtoull(v, &end, 10);
    if (*end != '-') return 0;
    const char *b = end + 1;
    unsigned long long z = size ? size - 1 : 0;
    if (*b >= '0' && *b <= '9') {
        z = strtoull(b, &end, 10);
        while (*end == ' ') end++;
        if (*end) return 0;
        if (z < a) return 0;       // syntactically invalid: ignore the header
        if (size && z >= size) z = size - 1;
    } else {
        while (*b == ' ') b++;
        if (*b) return 0;
    }
    if (a >= size) return -1;
    *first = a;
    *last = z;
    return 1;
}

/* 1 if the peer is on the loopback interface. */
static int peer_is_loopback(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr) return 0;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a)) return 1;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return 0;
}

/* Remembers an error to answer once the body is consumed (or at once if early). */
void http_pend(Req *r, int status, const char *code, const char *param, const char *msg) {
    r->pending_status = status;
    snprintf(r->pending_code, sizeof r->pending_code, "%s", code);
    snprintf(r->pending_param, sizeof r->pending_param, "%s", param ? param : "");
    snprintf(r->pending_msg, sizeof r->pending_msg, "%s", msg);
}

static int req_answer_pending(Req *r) {
    const ApiError *ae = api_error_find(r->pending_code);  // a pended 500 is a server_error, a 401 authentication
    const char *type = ae ? ae->type : r->pending_status >= 500 ? "server_error" : "invalid_request_error";
    return http_json(r, (unsigned)r->pending_status,
                     error_obj((unsigned)r->pending_status, type, r->pending_code, r->pending_param, r->pending_msg, 0));
}

/* Body limit for this request. */
static int64_t req_limit(Req *r) {
    return r->streaming || (r->route && r->route->on_body && !r->began) ? r->srv->max_upload_bytes
                                                                        : r->srv->max_body_bytes;
}

typedef struct { int n; size_t longest, total; } HeaderSizes;

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    (void)kind;
    HeaderSizes *h = cls;
    size_t line = strlen(key) + 2 + (value ? strlen(value) : 0);   // "Name: value"
    h->n++;
    if (line > h->longest) h->longest = line;
    h->total += line + 2;
    return MHD_YES;
}

/* The limits on what a request may send before it is routed (http.h's HTTP_MAX_*): 0, or 1
 * with the answer pended. */
static int req_limits(Req *r) {
    char msg[256];
    if (r->url_len > HTTP_MAX_URL) {
        snprintf(msg, sizeof msg, "The URL has %zu bytes; the limit is %d", r->url_len, HTTP_MAX_URL);
        http_pend(r, 414, "uri_too_long", NULL, msg);
        return 1;
    }
    if (r->url_nul) {
        http_pend(r, 400, "nul_byte_in_url", NULL,
                  "The URL holds a NUL byte (%00): no path segment or query value here can contain one");
        return 1;
    }
    HeaderSizes h = {0};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, count_header, &h);
    if (h.n > HTTP_MAX_HEADERS || h.longest > HTTP_MAX_HEADER_LINE || h.total > HTTP_MAX_HEADER_BYTES) {
        snprintf(msg, sizeof msg, "The request has %d header lines, the longest %zu bytes, %zu bytes in all; the limits "
                 "are %d lines, %d bytes a line and %d in all", h.n, h.longest, h.total, HTTP_MAX_HEADERS,
                 HTTP_MAX_HEADER_LINE, HTTP_MAX_HEADER_BYTES);
        http_pend(r, 431, "headers_too_large", NULL, msg);
        return 1;
    }
    return 0;
}

/* First call for a request: limits, route, auth, size limits. Returns MHD_YES, or the result
 * of an early reply. */
static enum MHD_Result req_start(Req *r, const char *url, const char *method) {
    int path_known = 0;
    const char *cl = http_header(r, "Content-Length");
    r->content_length = cl ? strtoll(cl, NULL, 10) : -1;
    if (req_limits(r)) {
        // answered before routing: the request may not even name a path
    } else if (!(r->route = route_find(r, method, url, &path_known))) {
        if (path_known)
            http_pend(r, 405, "method_not_allowed", NULL, "This method is not allowed on this path");
        else
            http_pend(r, 404, "not_found", NULL, "Unknown path (see the API reference: /v1/files, /v1/fine_tuning/jobs, /v1/models)");
    } else if (!r->route->open || (r->route->open == ROUTE_OPEN_IF_PUBLIC && !r->srv->public_metrics)) {
        char why[256];
        if (auth_check(r->srv, http_header(r, "Authorization"), peer_is_loopback(r->conn), r->key_id, why,
                       sizeof why))
            http_pend(r, 401, "invalid_api_key", NULL, why);
    }
    int64_t limit = req_limit(r);
    if (!r->pending_status && r->content_length > limit) {
        char msg[256];
        snprintf(msg, sizeof msg, "Request body of %lld bytes is larger than the limit of %lld bytes",
                 (long long)r->content_length, (long long)limit);
        http_pend(r, 413, "request_too_large", NULL, msg);
    }
    /* Refuse large bodies before reading them: the client is waiting for "100 Continue" or
     * sending far more than we would read and drop. Small ones are read and dropped first so
     * the client sees the answer instead of a reset. */
    if (r->pending_status && r->content_length > 0) {
        const char *ex = http_header(r, "Expect");
        if ((ex && !strcasecmp(ex, "100-continue")) || r->content_length > (64 << 20))
            return (enum MHD_Result)req_answer_pending(r);
    }
    if (!r->pending_status && r->route && r->route->on_begin) {
        int rc = r->route->on_begin(r);
        r->began = 1;
        if (rc < 0) return MHD_YES;        // the handler's answer is in pending_*
        r->streaming = rc == 1;
        if (!r->streaming && r->content_length > r->srv->max_body_bytes) {  // collected after all
            char msg[256];
            snprintf(msg, sizeof msg, "Request body of %lld bytes is larger than the limit of %lld bytes",
                     (long long)r->content_length, (long long)r->srv->max_body_bytes);
            http_pend(r, 413, "request_too_large", NULL, msg);
        }
    }
    return MHD_YES;
}

/* One chunk of body. */
static void req_body(Req *r, const char *data, size_t n) {
    if (r->pending_status) return;  // answering with an error: drop the body
    if (r->streaming) {
        if (!r->stream_failed && r->route->on_body(r, data, n) < 0) r->stream_failed = 1;
        return;
    }
    int64_t limit = req_limit(r);
    if ((int64_t)(r->body_len + n) > limit) {
        char msg[256];
        snprintf(msg, sizeof msg, "Request body is larger than the limit of %lld bytes", (long long)limit);
        http_pend(r, 413, "request_too_large", NULL, msg);
        free(r->body);
        r->body = NULL;
        r->body_len = r->body_cap = 0;
        return;
    }
    if (r->body_len + n + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 4096;
        while (cap < r->body_len + n + 1) cap *= 2;
        char *nb = realloc(r->body, cap);
        if (!nb) { http_pend(r, 500, "server_error", NULL, "out of memory"); return; }
        r->body = nb;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = 0;
}

/* The request line is in: a new Req for it. The URL is as the client sent it (not decoded):
 * its length, a %00 anywhere in it, and the path for the access log (the query is left out:
 * clients put secrets there) are taken from it. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
    Req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->srv = cls;
    r->conn = conn;
    r->resp_bytes = -1;
    r->t0 = clock_mono_s();
    r->url_len = strlen(uri);
    for (const char *p = strchr(uri, '%'); p && !r->url_nul; p = strchr(p + 1, '%'))
        r->url_nul = p[1] == '0' && p[2] == '0';
    // printable ASCII as it is, any other byte as \xNN: a log line stays one line of text
    size_t n = strcspn(uri, "?"), o = 0, room = sizeof r->log_path - 4;   // for "..." and the NUL
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)uri[i];
        char one[8];
        int l = c > 0x20 && c < 0x7f && c != '"' && c != '\\' ? (one[0] = (char)c, 1) : snprintf(one, sizeof one, "\\x%02x", c);
        if (o + (size_t)l > room) { memcpy(r->log_path + o, "...", 3); o += 3; break; }
        memcpy(r->log_path + o, one, (size_t)l);
        o += (size_t)l;
    }
    r->log_path[o] = 0;
    return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    (void)version;
    Server *srv = cls;
    Req *r = *con_cls;
    if (!r && !(r = *con_cls = on_uri(srv, url, conn))) return MHD_NO;
    if (!r->method) {   // the headers are in: the first call
        r->method = method;
        r->url = url;
        http_guard_request_began(srv->guard, conn);
        atomic_fetch_add(&srv->http_requests, 1);
        return req_start(r, url, method);
    }
    if (*upload_data_size) {
        req_body(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->pending_status) return (enum MHD_Result)req_answer_pending(r);
    return (enum MHD_Result)r->route->handler(r);
}

/* The access log line of a finished request: client, method, path without the query, status,
 * bytes of body sent (- when not known), duration. Never a header: they hold the API key. */
static void access_log(Req *r, enum MHD_RequestTerminationCode toe) {
    unsigned status = r->status;
    if (!status) {   // an answer of libmicrohttpd's own (a header it could not hold): its status
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_HTTP_STATUS);
        if (ci) status = ci->http_status;
    }
    char addr[INET6_ADDRSTRLEN] = "-";
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof addr);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof addr);
    double ms = (clock_mono_s() - r->t0) * 1e3;
    int64_t bytes = r->stream_bytes ? *r->stream_bytes : r->resp_bytes;
    char st[16] = "-", by[24] = "-";
    if (status) snprintf(st, sizeof st, "%u", status);
    if (bytes >= 0) snprintf(by, sizeof by, "%lld", (long long)bytes);
    const char *why = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? ""
                      : toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? " (idle timeout)"
                      : toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN ? " (server stopping)"
                      : toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT ? " (client closed)"
                                                                    : " (closed)";
    fprintf(stderr, "lemo serve: access: %s %s %s %s %s %.1fms%s\n", addr, r->method ? r->method : "-", r->log_path,
            st, by, ms, why);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    Server *srv = cls;
    Req *r = *con_cls;
    http_guard_request_done(srv->guard, conn);   // the next request header's time starts now
    if (!r) return;
    if (srv->access_log) access_log(r, toe);
    if (r->ctx_free) r->ctx_free(r->ctx);
    free(r->body);
    free(r);
    *con_cls = NULL;
}

/* libmicrohttpd's messages, one line each. A client that goes away mid-request is no fault of
 * the server's (and the access log shows it as "(closed)"): those messages are dropped, so a
 * few hundred slow clients closed for their timeout do not flood the log. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (strstr(msg, "detected connection closure") || strstr(msg, "Connection reset by peer")) return;
    size_t n = strlen(msg);
    fprintf(stderr, "lemo serve: http: %s%s", msg, n && msg[n - 1] == '\n' ? "" : "\n");
}

int http_start(Server *srv, Err *e) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                     MHD_USE_ERROR_LOG;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, srv->host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)srv->port);
    } else if (inet_pton(AF_INET6, srv->host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)srv->port);
        flags |= MHD_USE_IPv6;
    } else {
        return err_set_at(e, "--host", 0, "--host must be an IPv4 or IPv6 address, got '%s'", srv->host);
    }
    if (!(srv->guard = http_guard_start(srv->header_timeout_s, e))) return -1;
    /* The memory a connection may use holds its request line and headers: 128 KiB leaves room
     * above HTTP_MAX_HEADER_BYTES and HTTP_MAX_URL, so a request past those limits still gets
     * the typed answer from req_limits(); libmicrohttpd answers 431 or 414 itself only past
     * this. The backlog holds a burst of new connections while the accepting thread is busy. */
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)srv->port, NULL, NULL, on_request, srv,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_NOTIFY_CONNECTION, http_guard_notify, srv->guard,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)srv->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)srv->max_connections_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)srv->idle_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024),
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)512,
        MHD_OPTION_END);
    if (!d) {
        http_guard_stop(srv->guard);
        srv->guard = NULL;
        return err_set(e, "cannot listen on %s:%d (in use, or not an address of this machine)", srv->host, srv->port);
    }
    srv->mhd = d;
    if (srv->port == 0) {
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
        if (di) srv->port = di->port;
    }
    return 0;
}

void http_stop(Server *srv) {
    if (srv->mhd) MHD_stop_daemon(srv->mhd);
    srv->mhd = NULL;
    http_guard_stop(srv->guard);   // after the daemon: its connections are closed by then
    srv->guard = NULL;
}

long http_open_connections(Server *srv) {
    const union MHD_DaemonInfo *di = srv->mhd ? MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS) : NULL;
    return di ? (long)di->num_connections : 0;
}
