/* test_server_limits.c: what a request may send before it is served (http.h's HTTP_MAX_*,
 * --max-body-bytes), each past its limit a clear 4xx with the typed error, and just under it
 * served as usual:
 *   - a header line over 8192 bytes, more than 100 header lines, more than 32768 bytes of
 *     headers: 431 headers_too_large;
 *   - a URL (path, or query) over 8192 bytes: 414 uri_too_long;
 *   - a JSON body over --max-body-bytes on a JSON route: 413 request_too_large, with its
 *     Content-Length, with Expect: 100-continue (refused before it is sent) and chunked
 *     (no Content-Length: refused once the limit is passed);
 *   - far past what a connection's memory holds (a megabyte of header or URL), libmicrohttpd's
 *     own 431 / 414.
 * The server stays healthy after each, and the log names no code missing from the error
 * table. */
#include "itraw.h"

static ITServer s;
static char big[1 << 21];

/* A raw request's answer: status and error.code (or "" if the body is no typed error). */
static long raw(const char *req, size_t n, char *code, size_t cap) {
    static char ans[1 << 16];
    long st = it_raw_request(&s, req, n, ans, sizeof ans, 10);
    json_t *j = json_loads(it_raw_body(ans), 0, NULL);
    const char *c = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    const char *t = json_string_value(json_object_get(json_object_get(j, "error"), "type"));
    snprintf(code, cap, "%s", c && t && !strcmp(t, "invalid_request_error") ? c : "");
    json_decref(j);
    return st;
}

/* A GET of path with extra raw header lines (each ending in \r\n); status and code. */
static long get_with(const char *path, const char *headers, char *code, size_t cap) {
    size_t n = strlen(path) + strlen(headers) + 64;
    char *req = malloc(n);
    int l = snprintf(req, n, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", path, headers);
    long st = raw(req, (size_t)l, code, cap);
    free(req);
    return st;
}

static char *repeat(char c, size_t n) {
    char *p = malloc(n + 1);
    memset(p, c, n);
    p[n] = 0;
    return p;
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    it_tempdir(&s);
    char models[400];
    it_config_only_model(&s, models, sizeof models);
    if (it_start(&s, "--slots", "0", "--models", models, NULL)) {  // --max-body-bytes: its default, 1 MiB
        CHECK(0, "server start");
        return check_done("limits");
    }
    char code[64];
    long st;

    /* headers */
    char *v = repeat('a', 8000), *hdr = malloc(20000);
    snprintf(hdr, 20000, "X-Long: %s\r\n", v);
    st = get_with("/healthz", hdr, code, sizeof code);
    CHECK(st == 200, "a header line of 8008 bytes is served: %ld %s", st, code);
    free(v);
    v = repeat('a', 9000);
    snprintf(hdr, 20000, "X-Long: %s\r\n", v);
    st = get_with("/healthz", hdr, code, sizeof code);
    CHECK(st == 431 && !strcmp(code, "headers_too_large"), "a header line of 9008 bytes: %ld '%s'", st, code);
    free(v);
    hdr[0] = 0;
    for (int i = 0; i < 90; i++) snprintf(hdr + strlen(hdr), 20000 - strlen(hdr), "X-H%d: v\r\n", i);
    st = get_with("/healthz", hdr, code, sizeof code);
    CHECK(st == 200, "91 header lines are served: %ld %s", st, code);
    hdr[0] = 0;
    for (int i = 0; i < 150; i++) snprintf(hdr + strlen(hdr), 20000 - strlen(hdr), "X-H%d: v\r\n", i);
    st = get_with("/healthz", hdr, code, sizeof code);
    CHECK(st == 431 && !strcmp(code, "headers_too_large"), "151 header lines: %ld '%s'", st, code);
    free(hdr);
    hdr = malloc(60000);
    hdr[0] = 0;
    v = repeat('b', 7000);
    for (int i = 0; i < 6; i++) snprintf(hdr + strlen(hdr), 60000 - strlen(hdr), "X-Part%d: %s\r\n", i, v);
    st = get_with("/healthz", hdr, code, sizeof code);
    CHECK(st == 431 && !strcmp(code, "headers_too_large"), "42 KB of header lines of 7 KB each: %ld '%s'", st, code);
    free(v);
    free(hdr);
    CHECK(it_healthy(&s), "healthy after the header limits");

    /* the URL */
    char *path = malloc(10000);
    v = repeat('a', 8100);
    snprintf(path, 10000, "/v1/files/file-%s", v);
    st = get_with(path, "", code, sizeof code);
    CHECK(st == 404 && !strcmp(code, "not_found"), "a path of 8115 bytes is routed (404, no such file): %ld '%s'", st, code);
    free(v);
    v = repeat('a', 9000);
    snprintf(path, 10000, "/v1/files/file-%s", v);
    st = get_with(path, "", code, sizeof code);
    CHECK(st == 414 && !strcmp(code, "uri_too_long"), "a path of 9015 bytes: %ld '%s'", st, code);
    snprintf(path, 10000, "/v1/files?purpose=%s", v);
    st = get_with(path, "", code, sizeof code);
    CHECK(st == 414 && !strcmp(code, "uri_too_long"), "a query of 9009 bytes: %ld '%s'", st, code);
    free(v);
    free(path);
    CHECK(it_healthy(&s), "healthy after the URL limit");

    /* past what a connection's memory holds: libmicrohttpd's own answer, and the server stays up */
    int l = snprintf(big, sizeof big, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: ");
    memset(big + l, 'c', (1 << 20) - (size_t)l);
    strcpy(big + (1 << 20), "\r\n\r\n");
    st = raw(big, strlen(big), code, sizeof code);
    CHECK(st == 431, "a megabyte of header: %ld", st);
    l = snprintf(big, sizeof big, "GET /v1/files/");
    memset(big + l, 'd', (1 << 20) - (size_t)l);
    strcpy(big + (1 << 20), " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    st = raw(big, strlen(big), code, sizeof code);
    CHECK(st == 414 || st == 431, "a megabyte of URL: %ld", st);
    CHECK(it_healthy(&s), "healthy after a megabyte of header and of URL");

    /* a JSON body over --max-body-bytes (1 MiB) on a JSON route */
    size_t bl = (1 << 20) + 4096;
    char *body = malloc(bl + 1);
    l = snprintf(body, bl, "{\"model\": \"m1\", \"suffix\": \"");
    memset(body + l, 'x', bl - (size_t)l - 2);
    memcpy(body + bl - 2, "\"}", 3);
    const char *hj[] = {"Content-Type: application/json", NULL};
    ITResp r = it_req(&s, "POST", "/v1/fine_tuning/jobs", hj, body, (long)bl);
    it_err_field(&r, "code", code, sizeof code);
    CHECK(r.status == 413 && !strcmp(code, "request_too_large"), "a JSON body of 1 MiB + 4 KiB: %ld '%s'", r.status, code);
    it_free(&r);
    const char *he[] = {"Content-Type: application/json", "Expect: 100-continue", NULL};
    r = it_req(&s, "POST", "/v1/fine_tuning/jobs", he, body, (long)bl);
    it_err_field(&r, "code", code, sizeof code);
    CHECK(r.status == 413 && !strcmp(code, "request_too_large"), "the same with Expect: 100-continue: %ld '%s'", r.status,
          code);
    it_free(&r);
    /* chunked: no Content-Length to refuse it by, so it is refused once 1 MiB has come */
    l = snprintf(big, sizeof big, "POST /v1/fine_tuning/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                 "application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (size_t off = 0; off < bl; off += 65536) {
        size_t c = bl - off < 65536 ? bl - off : 65536;
        l += snprintf(big + l, sizeof big - (size_t)l, "%zx\r\n", c);
        memcpy(big + l, body + off, c);
        l += (int)c;
        l += snprintf(big + l, sizeof big - (size_t)l, "\r\n");
    }
    l += snprintf(big + l, sizeof big - (size_t)l, "0\r\n\r\n");
    st = raw(big, (size_t)l, code, sizeof code);
    CHECK(st == 413 && !strcmp(code, "request_too_large"), "a chunked JSON body of 1 MiB + 4 KiB: %ld '%s'", st, code);
    body[(1 << 20) - 4096] = 0;   // under the limit: read, and judged for what it says
    memcpy(body + (1 << 20) - 4098, "\"}", 2);
    r = it_req(&s, "POST", "/v1/fine_tuning/jobs", hj, body, (long)strlen(body));
    it_err_field(&r, "code", code, sizeof code);
    CHECK(r.status == 400 && strcmp(code, "request_too_large"), "a JSON body under 1 MiB is read: %ld '%s'", r.status, code);
    it_free(&r);
    free(body);
    CHECK(it_healthy(&s), "healthy after the body limit");

    it_stop(&s, SIGTERM);
    FILE *f = fopen(s.log, "r");
    char line[2048];
    int missing = 0;
    while (f && fgets(line, sizeof line, f)) missing += strstr(line, "is not in the error table") != NULL;
    if (f) fclose(f);
    CHECK(missing == 0, "%d answers with a code or status the error table lacks", missing);
    it_cleanup(&s);
    return check_done("test_server_limits");
}
