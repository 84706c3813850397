/* api_openapi.c: GET /openapi.json, an OpenAPI 3.1 document built from the route table
 * (routes.c), the error table (api_errors.c) and the query parameter table below, so a
 * route or an error code cannot exist without being documented. Each operation's responses
 * group its error codes by HTTP status (x-error-codes lists them); components.schemas.ErrorCode
 * enumerates every code the server answers with. The document is built per request: it is
 * small, and the port in servers[] is the one this process listens on. */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "api_errors.h"

/* The query parameters routes name in Route.query. */
typedef struct {
    const char *name;
    const char *type;     // JSON Schema type
    const char *what;
} QueryParam;

static const QueryParam query_params[] = {
    {"limit", "integer", "How many items (1 to the list's maximum)"},
    {"after", "string", "The id of the item the page starts after, in the list's order"},
    {"order", "string", "asc (oldest first) or desc (newest first, the default)"},
    {"purpose", "string", "Only files of this purpose (fine-tune, fine-tune-results); for an upload, its purpose"},
    {"filename", "string", "The name of a raw-body upload"},
    {"metadata", "object", "metadata[KEY]=VALUE: only jobs whose metadata holds every such pair (up to 16); "
                           "metadata=null: only jobs without metadata"},
    {"dry_run", "boolean", "true: answer with the memory and time estimate, create nothing"},
    {"force", "boolean", "true: queue a job its estimate says does not fit"},
    {"stream", "boolean", "true: Server-Sent Events until the job ends"},
    {"step", "integer", "A checkpoint's step: its adapter instead of the final one"},
};

static const QueryParam *query_param_find(const char *name, size_t len) {
    for (size_t i = 0; i < sizeof query_params / sizeof query_params[0]; i++)
        if (strlen(query_params[i].name) == len && !strncmp(query_params[i].name, name, len)) return &query_params[i];
    return NULL;
}

/* Calls fn for each space-separated word of list. */
static void each_word(const char *list, void (*fn)(void *ctx, const char *w, size_t n), void *ctx) {
    for (const char *p = list ? list : ""; *p;) {
        while (*p == ' ') p++;
        size_t n = strcspn(p, " ");
        if (n) fn(ctx, p, n);
        p += n;
    }
}

static void add_error_code(void *ctx, const char *w, size_t n) {
    json_t *codes = ctx;
    char c[64];
    snprintf(c, sizeof c, "%.*s", (int)n, w);
    size_t i;
    json_t *x;
    json_array_foreach(codes, i, x) if (!strcmp(json_string_value(x), c)) return;
    json_array_append_new(codes, json_string(c));
}

static void add_query(void *ctx, const char *w, size_t n) {
    json_t *params = ctx;
    const QueryParam *q = query_param_find(w, n);
    if (!q) return;  // a route naming an unknown parameter: test_server_openapi fails on the missing one
    json_t *p = json_pack("{s:s, s:s, s:b, s:s, s:{s:s}}", "name", q->name, "in", "query", "required", 0,
                          "description", q->what, "schema", "type", q->type);
    if (!strcmp(q->name, "metadata")) json_object_set_new(p, "style", json_string("deepObject"));
    json_array_append_new(params, p);
}

/* The OpenAPI path of a route pattern ({name} segments are already OpenAPI's) and its path
 * parameters. */
static json_t *path_params(const char *pattern) {
    json_t *a = json_array();
    for (const char *p = strchr(pattern, '{'); p; p = strchr(p + 1, '{')) {
        const char *e = strchr(p, '}');
        if (!e) break;
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(e - p - 1), p + 1);
        json_array_append_new(a, json_pack("{s:s, s:s, s:b, s:{s:s}}", "name", name, "in", "path", "required", 1,
                                           "schema", "type", "string"));
    }
    return a;
}

/* One operation object of a route. */
static json_t *operation(const Route *rt) {
    json_t *codes = json_array();
    each_word(rt->errors, add_error_code, codes);
    if (!rt->open || rt->open == ROUTE_OPEN_IF_PUBLIC) add_error_code(codes, "invalid_api_key", 15);
    if (!strcmp(rt->method, "POST")) add_error_code(codes, "request_too_large", 17);
    each_word("uri_too_long headers_too_large nul_byte_in_url", add_error_code, codes);   // http.c's, before routing
    add_error_code(codes, "server_error", 12);
    json_t *responses = json_object();
    json_object_set_new(responses, "200", json_pack("{s:s}", "description", "OK"));
    size_t i;
    json_t *c;
    json_array_foreach(codes, i, c) {
        const ApiError *ae = api_error_find(json_string_value(c));
        if (!ae) continue;  // a code missing from the table: the document lacks it and its test fails
        char st[8];
        snprintf(st, sizeof st, "%u", ae->status);
        json_t *resp = json_object_get(responses, st);
        if (!resp) {
            resp = json_pack("{s:s, s:{s:{s:{s:s}}}, s:[]}", "description", "", "content", "application/json", "schema",
                             "$ref", "#/components/schemas/Error", "x-error-codes");
            json_object_set_new(responses, st, resp);
        }
        json_array_append_new(json_object_get(resp, "x-error-codes"), json_string(ae->code));
        const char *d = json_string_value(json_object_get(resp, "description"));
        char buf[2048];
        snprintf(buf, sizeof buf, "%s%s%s: %s", d, *d ? "; " : "", ae->code, ae->what);
        json_object_set_new(resp, "description", json_string(buf));
    }
    json_decref(codes);
    json_t *params = path_params(rt->pattern);
    each_word(rt->query, add_query, params);
    char opid[300];
    snprintf(opid, sizeof opid, "%s %s", rt->method, rt->pattern);
    json_t *op = json_pack("{s:s, s:s, s:o, s:o}", "summary", rt->summary ? rt->summary : "", "operationId", opid,
                           "parameters", params, "responses", responses);
    if (rt->open == 1) json_object_set_new(op, "security", json_array());  // no key needed
    return op;
}

int api_openapi(Req *r) {
    json_t *paths = json_object();
    for (int i = 0; i < http_n_routes; i++) {
        const Route *rt = &http_routes[i];
        json_t *item = json_object_get(paths, rt->pattern);
        if (!item) json_object_set_new(paths, rt->pattern, item = json_object());
        char m[16];
        size_t k = 0;
        for (; rt->method[k] && k + 1 < sizeof m; k++) m[k] = (char)(rt->method[k] | 0x20);  // OpenAPI's lower case
        m[k] = 0;
        json_object_set_new(item, m, operation(rt));
    }
    json_t *enums = json_array();
    for (int i = 0; i < api_n_errors; i++) json_array_append_new(enums, json_string(api_errors[i].code));
    json_t *table = json_array();
    for (int i = 0; i < api_n_errors; i++)
        json_array_append_new(table, json_pack("{s:s, s:i, s:s, s:s}", "code", api_errors[i].code, "status",
                                               (int)api_errors[i].status, "type", api_errors[i].type, "description",
                                               api_errors[i].what));
    char url[400];
    snprintf(url, sizeof url, "http://%s:%d", r->srv->host, r->srv->port);
    json_t *err_props = json_pack("{s:{s:s}, s:{s:s}, s:{s:[s, s]}, s:{s:s}, s:{s:s}}", "message", "type", "string",
                                  "type", "type", "string", "param", "type", "string", "null", "code", "$ref",
                                  "#/components/schemas/ErrorCode", "line", "type", "integer");
    json_t *error_schema = json_pack("{s:s, s:[s], s:{s:{s:s, s:[s, s, s, s], s:o}}}", "type", "object", "required",
                                     "error", "properties", "error", "type", "object", "required", "message", "type",
                                     "param", "code", "properties", err_props);
    json_t *components = json_pack("{s:{s:{s:s, s:s}}, s:{s:o, s:{s:s, s:o}}}", "securitySchemes", "bearer", "type",
                                   "http", "scheme", "bearer", "schemas", "Error", error_schema, "ErrorCode", "type",
                                   "string", "enum", enums);
    json_t *info = json_pack("{s:s, s:s, s:s}", "title", "lemo", "version", "1", "description",
                             "Self-hosted long-context LoRA fine-tuning in OpenAI's fine-tuning shapes. Errors are "
                             "{\"error\":{\"message\",\"type\",\"param\",\"code\"}}; a path under another "
                             "method answers 405 method_not_allowed, an unknown path 404 not_found.");
    json_t *doc = json_pack("{s:s, s:o, s:[{s:s}], s:o, s:o, s:[{s:[]}], s:o}", "openapi", "3.1.0", "info", info,
                            "servers", "url", url, "paths", paths, "components", components, "security", "bearer",
                            "x-errors", table);
    if (!doc) return http_500(r, "cannot build the API document");
    return http_json(r, 200, doc);
}
