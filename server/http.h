/* http.h: the HTTP layer: libmicrohttpd glue, the route table, request bodies and the JSON
 * reply helpers every handler uses.
 *
 * One route table (routes.c) maps (method, path pattern) to a handler; `{name}` in a pattern
 * matches one path segment, which the handler reads from r->params in order. The same table
 * documents the API: GET /openapi.json is generated from it (api_openapi.c). A request body is collected into
 * r->body up to Server.max_body_bytes (413 beyond), except for routes that stream their body
 * (file uploads), which get each chunk through on_body. Handlers answer with exactly one of
 * the http_* reply functions and return its result. Every API error has the OpenAI shape
 * {"error":{"message","type","param","code"}}. */
#ifndef LEMO_HTTP_H
#define LEMO_HTTP_H

#include <jansson.h>
#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "err.h"
#include "server.h"
#include "srv_util.h"

#define HTTP_MAX_PARAMS 4

/* What one request may send before it is routed, each a 4xx with a typed error past it
 * (README: Limits). Real clients send a few hundred bytes of headers; these leave room for
 * long query strings (metadata filters) and cookies of a proxy in front while bounding what a
 * connection's 128 KiB of memory must hold. */
#define HTTP_MAX_URL 8192            // bytes of the request target as sent: 414 uri_too_long
#define HTTP_MAX_HEADERS 100         // header lines: 431 headers_too_large
#define HTTP_MAX_HEADER_LINE 8192    // bytes of one "Name: value": 431
#define HTTP_MAX_HEADER_BYTES 32768  // bytes of them all: 431

typedef struct Req Req;

#define ROUTE_OPEN_IF_PUBLIC 2
typedef struct Route {
    const char *method;
    const char *pattern;
    int (*handler)(Req *r);
    /* Optional streaming body: on_begin runs once the headers are in (return 1 to stream the
     * body through on_body, 0 to collect it as usual, -1 after http_pend() set the answer);
     * on_body gets each chunk (return -1 to stop: the handler then sees r->stream_err). */
    int (*on_begin)(Req *r);
    int (*on_body)(Req *r, const char *data, size_t n);
    int open;              // 1: no API key needed (health, dashboard); ROUTE_OPEN_IF_PUBLIC: only
                           // with --public-metrics (metrics: they name jobs)
    const char *summary;   // one line for the API document
    const char *query;     // the query parameters it reads, space-separated (api_openapi.c's table)
    const char *errors;    // the error codes (api_errors.c) it answers with beyond every route's
                           // own (server_error, and invalid_api_key where a key is needed), space-separated
} Route;

/* routes.c: the route table, walked by the dispatcher and by the API document. */
extern const Route http_routes[];
extern const int http_n_routes;

struct Req {
    Server *srv;
    struct MHD_Connection *conn;
    const char *method;
    const char *url;
    const Route *route;
    const char *params[HTTP_MAX_PARAMS];   // the {} segments of the path
    char segs[2048];
    int n_params;
    char *body;                            // collected body (NUL-terminated), NULL if none
    size_t body_len, body_cap;
    int64_t content_length;                // -1 if not given
    int pending_status;                    // an error decided before the body ended
    char pending_msg[512], pending_code[64], pending_param[64];
    int began;                             // route->on_begin has run
    int streaming;                         // body goes to route->on_body
    int stream_failed;
    Err stream_err;
    int stream_status;                     // status for stream_err (400, 413, 500)
    void *ctx;                             // a streaming route's state
    void (*ctx_free)(void *ctx);
    char key_id[48];                       // the API key that authenticated the request
    /* what the access log says of it (on_uri, http_queue) */
    double t0;                             // when its request line was in (clock_mono_s)
    size_t url_len;                        // the request target as sent, query included
    int url_nul;                           // it holds %00
    char log_path[256];                    // its path as sent, without the query, printable
    unsigned status;                       // the answer's status (0: none yet)
    int64_t resp_bytes;                    // its body's bytes, -1 when not known
    const int64_t *stream_bytes;           // a streamed answer's bytes so far (sse.c), else NULL
};

/* Starts the HTTP daemon on srv->host:srv->port; -1 + e on failure. */
int http_start(Server *srv, Err *e);
void http_stop(Server *srv);
/* Connections open now (for /metrics). */
long http_open_connections(Server *srv);

/* Reply helpers; each queues the response and returns the MHD result. */
int http_json(Req *r, unsigned status, json_t *obj);   // steals obj
/* A JSON reply already written as text (takes the buffer; 500 if it is incomplete). */
int http_json_text(Req *r, unsigned status, StrBuf *b);
int http_error(Req *r, unsigned status, const char *type, const char *code, const char *param,
               const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* The same with the job estimate that led to it as error.estimate (borrowed). */
int http_error_with(Req *r, unsigned status, const char *type, const char *code, const char *param, json_t *estimate,
                    const char *fmt, ...) __attribute__((format(printf, 7, 8)));
/* A 500 server_error (something on this side failed). */
int http_500(Req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A 400 invalid_request_error from an Err (param and line taken from it). */
int http_error_from(Req *r, unsigned status, const char *code, const Err *e);
int http_not_found(Req *r, const char *what, const char *id);
/* Sets an error to answer once the request body has been consumed (handlers that stream). */
void http_pend(Req *r, int status, const char *code, const char *param, const char *msg);
/* Adds the standard headers and queues any response (destroys it). */
int http_queue(Req *r, unsigned status, struct MHD_Response *resp);

const char *http_query(Req *r, const char *key);
const char *http_header(Req *r, const char *name);
/* 1 if the query parameter is "true" or "1". */
int http_query_bool(Req *r, const char *key);
/* Reads ?limit= (default def, 1..max), ?after= and, when asc is not NULL, ?order= (asc or
 * desc, default desc: newest first, as OpenAI); 0 ok, -1 after replying 400. */
int http_list_params(Req *r, int def, int max, int *limit, const char **after, int *asc);
/* Parses the collected body as a JSON object; NULL after replying 400. */
json_t *http_body_json(Req *r);
/* Parses a Range header value against a resource size: 0 no/ignored range, 1 range set
 * (*first, *last inclusive), -1 unsatisfiable. */
int http_parse_range(const char *v, uint64_t size, uint64_t *first, uint64_t *last);

#endif
