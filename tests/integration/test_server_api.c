/* test_server_api.c: the list and document shapes users script against, on a server that
 * trains nothing (--slots 0, a model folder holding only a config.json):
 *   - ?order=asc|desc on jobs, files and events, with ?after=/?limit= pages that together give
 *     every item once, in order, under both orders; a bad order is a 400 naming it;
 *   - ?metadata[KEY]=VALUE filters (several at once, paged) and ?metadata=null; bad ones 400;
 *   - DELETE /v1/models/{id}: 404 for unknown ids (path tricks included), 403 for a base model;
 *   - GET /openapi.json: OpenAPI 3.1, every route of the route table and every code of the
 *     error table in it, each code under some operation;
 *   - n_epochs 2.0 reads back as the integer 2;
 *   - no error the server answered with is missing from its error table (its log says so). */
#include "itest.h"

#include "api_errors.h"
#include "http.h"

static ITServer s;

/* Creates a job (forced: nothing is estimated) with this metadata JSON; its id into out. */
static void make_job(const char *fid, const char *metadata, char *out, size_t cap) {
    char body[1024];
    snprintf(body, sizeof body, "{\"model\": \"m1\", \"training_file\": \"%s\", \"hyperparameters\": {\"max_steps\": 2}%s%s}",
             fid, metadata ? ", \"metadata\": " : "", metadata ? metadata : "");
    ITResp r = it_post_json(&s, "/v1/fine_tuning/jobs?force=true", body);
    CHECK(r.status == 200, "create job: %ld %.300s", r.status, r.body);
    it_str(&r, "id", out, cap);
    it_free(&r);
}

/* Walks a list page by page (limit per page) and writes the ids in order, space-separated,
 * into out; returns how many, -1 on a failed page. query: "" or "&k=v...". */
static int walk(const char *path, const char *query, int limit, char *out, size_t cap) {
    char after[64] = "", url[1024];
    int n = 0;
    out[0] = 0;
    for (int page = 0; page < 100; page++) {
        snprintf(url, sizeof url, "%s?limit=%d%s%s%s", path, limit, query, after[0] ? "&after=" : "", after);
        ITResp r = it_get(&s, url);
        json_t *j = it_json(&r);
        json_t *data = json_object_get(j, "data");
        if (r.status != 200 || !json_is_array(data)) {
            fprintf(stderr, "GET %s: %ld %.300s\n", url, r.status, r.body);
            json_decref(j);
            it_free(&r);
            return -1;
        }
        size_t i;
        json_t *x;
        json_array_foreach(data, i, x) {
            const char *id = json_string_value(json_object_get(x, "id"));
            size_t l = strlen(out);
            snprintf(out + l, cap - l, "%s%s", l ? " " : "", id ? id : "?");
            snprintf(after, sizeof after, "%s", id ? id : "");
            n++;
        }
        int more = json_is_true(json_object_get(j, "has_more"));
        json_decref(j);
        it_free(&r);
        if (!more) break;
    }
    return n;
}

/* The words of a space-separated list in reverse order. */
static void reversed(const char *in, char *out, size_t cap) {
    out[0] = 0;
    const char *end = in + strlen(in);
    while (end > in) {
        const char *b = end;
        while (b > in && b[-1] != ' ') b--;
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s%.*s", l ? " " : "", (int)(end - b), b);
        end = b > in ? b - 1 : b;
    }
}

static void expect_error(const char *what, const char *method, const char *path, long status, const char *param,
                         const char *code) {
    ITResp r = it_req(&s, method, path, NULL, NULL, 0);
    CHECK(it_is_error(&r, status, param, code, NULL), "%s: %ld %.300s (want %ld %s %s)", what, r.status, r.body, status,
          param, code);
    it_free(&r);
}

/* Checks a list under both orders and several page sizes: asc is desc reversed, every page
 * size gives the same sequence. want: how many items. */
static void check_orders(const char *what, const char *path, const char *query, int want) {
    static char desc[8192], asc[8192], rev[8192], other[8192];
    char q[512];
    CHECK(walk(path, query, 100, desc, sizeof desc) == want, "%s: %d items newest first", what, want);
    snprintf(q, sizeof q, "%s&order=desc", query);
    CHECK(walk(path, q, 2, other, sizeof other) == want && !strcmp(other, desc), "%s: order=desc in pages of 2: %s vs %s",
          what, other, desc);
    snprintf(q, sizeof q, "%s&order=asc", query);
    CHECK(walk(path, q, 100, asc, sizeof asc) == want, "%s: asc", what);
    reversed(desc, rev, sizeof rev);
    CHECK(!strcmp(asc, rev), "%s: asc is desc reversed: %s vs %s", what, asc, rev);
    for (int lim = 1; lim <= 3; lim++) {
        CHECK(walk(path, q, lim, other, sizeof other) == want && !strcmp(other, asc), "%s: asc in pages of %d: %s", what,
              lim, other);
    }
}

/* 1 if the JSON array holds the string. */
static int has_string(json_t *a, const char *v) {
    size_t i;
    json_t *x;
    json_array_foreach(a, i, x) if (json_is_string(x) && !strcmp(json_string_value(x), v)) return 1;
    return 0;
}

static void check_openapi(void) {
    ITResp r = it_get(&s, "/openapi.json");
    json_t *doc = it_json(&r);
    CHECK(r.status == 200 && json_is_object(doc), "GET /openapi.json: %ld", r.status);
    CHECK(!strcmp(json_string_value(json_object_get(doc, "openapi")) ?: "", "3.1.0"), "OpenAPI 3.1");
    json_t *paths = json_object_get(doc, "paths");
    json_t *used = json_array();  // every code some operation lists
    for (int i = 0; i < http_n_routes; i++) {
        const Route *rt = &http_routes[i];
        char m[16];
        size_t k = 0;
        for (; rt->method[k] && k + 1 < sizeof m; k++) m[k] = (char)(rt->method[k] | 0x20);
        m[k] = 0;
        json_t *op = json_object_get(json_object_get(paths, rt->pattern), m);
        CHECK(json_is_object(op), "route %s %s is in the document", rt->method, rt->pattern);
        const char *key;
        json_t *resp;
        json_object_foreach(json_object_get(op, "responses"), key, resp) {
            size_t j;
            json_t *c;
            json_array_foreach(json_object_get(resp, "x-error-codes"), j, c) {
                const ApiError *ae = api_error_find(json_string_value(c));
                CHECK(ae && (unsigned)atoi(key) == ae->status, "%s %s: code %s under status %s", rt->method, rt->pattern,
                      json_string_value(c), key);
                if (!has_string(used, json_string_value(c))) json_array_append(used, c);
            }
        }
        /* the route's own codes, each under the operation */
        char codes[1024];
        snprintf(codes, sizeof codes, "%s", rt->errors ? rt->errors : "");
        for (char *save = NULL, *w = strtok_r(codes, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
            CHECK(api_error_find(w), "%s %s names code %s, which the error table lacks", rt->method, rt->pattern, w);
            int found = 0;
            json_object_foreach(json_object_get(op, "responses"), key, resp)
                found |= has_string(json_object_get(resp, "x-error-codes"), w);
            CHECK(found, "%s %s: its code %s is in its responses", rt->method, rt->pattern, w);
        }
        /* every query parameter the route reads is documented */
        char qs[256];
        snprintf(qs, sizeof qs, "%s", rt->query ? rt->query : "");
        for (char *save = NULL, *w = strtok_r(qs, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
            int found = 0;
            size_t j;
            json_t *p;
            json_array_foreach(json_object_get(op, "parameters"), j, p)
                found |= !strcmp(json_string_value(json_object_get(p, "name")) ?: "", w);
            CHECK(found, "%s %s: query parameter %s documented", rt->method, rt->pattern, w);
        }
    }
    json_t *enums = json_object_get(json_object_get(json_object_get(json_object_get(doc, "components"), "schemas"),
                                                    "ErrorCode"), "enum");
    for (int i = 0; i < api_n_errors; i++) {
        const char *c = api_errors[i].code;
        CHECK(has_string(enums, c), "error code %s in components.schemas.ErrorCode", c);
        // the dispatcher's own two answer any path: the document says so in info
        int dispatcher = !strcmp(c, "method_not_allowed");
        CHECK(dispatcher || has_string(used, c), "error code %s listed under some operation", c);
    }
    CHECK(strstr(r.body, "method_not_allowed"), "method_not_allowed documented");
    json_decref(used);
    json_decref(doc);
    it_free(&r);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    it_tempdir(&s);
    char models[400];
    it_config_only_model(&s, models, sizeof models);
    if (it_start(&s, "--slots", "0", "--models", models, NULL)) {
        CHECK(0, "server start");
        return check_done("api");
    }
    /* files: five uploads */
    char fid[5][64];
    char *ds = it_story_jsonl(3);
    for (int i = 0; i < 5; i++) CHECK(it_upload_ok(&s, "d.jsonl", ds, fid[i], sizeof fid[i]) == 0, "upload %d", i);
    free(ds);
    check_orders("files", "/v1/files", "", 5);
    check_orders("fine-tune files", "/v1/files", "&purpose=fine-tune", 5);

    /* jobs: seven, with metadata to filter on */
    static const char *const md[7] = {"{\"team\": \"a\", \"run\": \"1\"}", "{\"team\": \"b\"}", NULL,
                                      "{\"team\": \"a\", \"run\": \"2\"}", "{\"team\": \"a\", \"run\": \"1\"}", "{}",
                                      "{\"team\": \"a\", \"note\": \"x y&z\"}"};
    char job[7][64];
    for (int i = 0; i < 7; i++) make_job(fid[0], md[i], job[i], sizeof job[i]);
    check_orders("jobs", "/v1/fine_tuning/jobs", "", 7);
    char got[4096], want[4096];
    CHECK(walk("/v1/fine_tuning/jobs", "&metadata[team]=a&order=asc", 1, got, sizeof got) == 4, "team a: %s", got);
    snprintf(want, sizeof want, "%s %s %s %s", job[0], job[3], job[4], job[6]);
    CHECK(!strcmp(got, want), "team a, oldest first, one a page: %s, want %s", got, want);
    check_orders("team a", "/v1/fine_tuning/jobs", "&metadata[team]=a", 4);
    CHECK(walk("/v1/fine_tuning/jobs", "&metadata[team]=a&metadata[run]=1", 100, got, sizeof got) == 2, "two filters");
    snprintf(want, sizeof want, "%s %s", job[4], job[0]);
    CHECK(!strcmp(got, want), "team a and run 1, newest first: %s, want %s", got, want);
    CHECK(walk("/v1/fine_tuning/jobs", "&metadata%5Bnote%5D=x%20y%26z", 100, got, sizeof got) == 1 && !strcmp(got, job[6]),
          "an encoded key and value: %s", got);
    CHECK(walk("/v1/fine_tuning/jobs", "&metadata[team]=c", 100, got, sizeof got) == 0, "no match: empty list");
    CHECK(walk("/v1/fine_tuning/jobs", "&metadata=null&order=asc", 100, got, sizeof got) == 2, "metadata=null: %s", got);
    snprintf(want, sizeof want, "%s %s", job[2], job[5]);
    CHECK(!strcmp(got, want), "jobs without metadata: %s, want %s", got, want);

    /* events of one job: its creation and queueing, plus a cancel */
    char path[256];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/cancel", job[1]);
    ITResp r = it_post_json(&s, path, NULL);
    CHECK(r.status == 200, "cancel a queued job: %ld", r.status);
    it_free(&r);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/events", job[1]);
    check_orders("events", path, "", 3);

    /* bad list parameters: typed 400s naming the parameter */
    expect_error("order=up on jobs", "GET", "/v1/fine_tuning/jobs?order=up", 400, "order", "invalid_order");
    expect_error("order=ASC on files", "GET", "/v1/files?order=ASC", 400, "order", "invalid_order");
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/%s/events?order=", job[1]);
    expect_error("empty order on events", "GET", path, 400, "order", "invalid_order");
    expect_error("after of another list", "GET", "/v1/fine_tuning/jobs?order=asc&after=file-nope", 400, "after",
                 "invalid_cursor");
    expect_error("metadata=x", "GET", "/v1/fine_tuning/jobs?metadata=x", 400, "metadata", "invalid_metadata_filter");
    expect_error("metadata[]", "GET", "/v1/fine_tuning/jobs?metadata[]=a", 400, "metadata[]", "invalid_metadata_filter");
    expect_error("metadata[k] without value", "GET", "/v1/fine_tuning/jobs?metadata[k]", 400, "metadata[k]",
                 "invalid_metadata_filter");
    char longkey[200];
    snprintf(longkey, sizeof longkey, "/v1/fine_tuning/jobs?metadata[%070d]=1", 0);
    r = it_get(&s, longkey);
    CHECK(r.status == 400 && strstr(r.body, "invalid_metadata_filter"), "a 70-character key: %ld", r.status);
    it_free(&r);
    char many[2048] = "/v1/fine_tuning/jobs?x=1";
    for (int i = 0; i < 17; i++) {
        size_t l = strlen(many);
        snprintf(many + l, sizeof many - l, "&metadata[k%d]=v", i);
    }
    r = it_get(&s, many);
    CHECK(r.status == 400 && strstr(r.body, "At most 16"), "17 filters: %ld %.200s", r.status, r.body);
    it_free(&r);

    /* DELETE /v1/models: unknown ids and tricks are 404s, base models 403 */
    expect_error("delete unknown ft model", "DELETE", "/v1/models/ft:m1:ftjob-nope", 404, "id", "not_found");
    snprintf(path, sizeof path, "/v1/models/ft:m1:%s", job[0]);  // a queued job: no model yet
    expect_error("delete the model of an unfinished job", "DELETE", path, 404, "id", "not_found");
    expect_error("delete a base model", "DELETE", "/v1/models/m1", 403, "model", "model_not_deletable");
    expect_error("delete ..", "DELETE", "/v1/models/..", 404, "id", "not_found");
    // an encoded slash is decoded before routing: more segments, a path no route has
    expect_error("delete %2e%2e", "DELETE", "/v1/models/%2e%2e%2fm1", 404, "", "not_found");
    expect_error("delete a traversal", "DELETE", "/v1/models/ft:m1:..%2f..%2fjobs", 404, "", "not_found");
    expect_error("delete a traversal job id", "DELETE", "/v1/models/ft:m1:ftjob-..%2f..", 404, "", "not_found");
    expect_error("delete a dotted job id", "DELETE", "/v1/models/ft:m1:ftjob-..", 404, "id", "not_found");
    expect_error("delete a base name with a colon", "DELETE", "/v1/models/ft:..:ftjob-x", 404, "id", "not_found");
    expect_error("delete no model", "DELETE", "/v1/models/", 404, "", "not_found");
    expect_error("post on models", "POST", "/v1/models/m1", 405, "", "method_not_allowed");
    char jdir[600];
    snprintf(jdir, sizeof jdir, "%s/jobs/%s/config.json", s.data, job[0]);
    CHECK(access(jdir, R_OK) == 0, "nothing of the jobs was removed");

    /* n_epochs given as 2.0 reads back as the integer 2 */
    char body[512];
    snprintf(body, sizeof body, "{\"model\": \"m1\", \"training_file\": \"%s\", \"hyperparameters\": {\"n_epochs\": 2.0}}",
             fid[0]);
    r = it_post_json(&s, "/v1/fine_tuning/jobs?force=true", body);
    json_t *j = it_json(&r);
    json_t *ne = json_object_get(json_object_get(j, "hyperparameters"), "n_epochs");
    CHECK(r.status == 200 && json_is_integer(ne) && json_integer_value(ne) == 2, "n_epochs 2.0 -> 2: %.300s", r.body);
    json_decref(j);
    it_free(&r);

    check_openapi();
    CHECK(it_healthy(&s), "healthy at the end");
    it_stop(&s, SIGTERM);
    /* every error answered above is in the error table */
    FILE *f = fopen(s.log, "r");
    char line[1024];
    int missing = 0;
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, "is not in the error table")) { fprintf(stderr, "%s", line); missing++; }
    if (f) fclose(f);
    CHECK(missing == 0, "%d answers with codes outside the error table", missing);
    it_cleanup(&s);
    return check_done("api");
}
