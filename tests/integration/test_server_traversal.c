/* test_server_traversal.c: no id or file name a client sends reaches a file it should not.
 *
 * Every route with an id or a name in its path ({file_id}, {fine_tuning_job_id}, {model}, the
 * adapter's {file}, the dashboard's paths) is asked with ../ in every spelling (plain, %2e%2e%2f,
 * %2f and %5c, double-encoded, overlong UTF-8), absolute paths, %00, names of 300 and 5000
 * bytes and bytes that are not UTF-8: each answer is a 400 or a 404. Uploads take the same names
 * as ?filename= and as the multipart filename: they are listed under the name's last component
 * (made valid UTF-8) or refused, and their bytes land in DATA/files/FILE_ID.jsonl only. Raw
 * bytes no client library sends (a NUL, 0xff, a space, a broken %-escape in the request line)
 * get a 4xx. Then the filesystem is compared with before: nothing outside the data directory
 * was written or removed, a canary file beside it is unchanged, the data directory holds only
 * what the server itself writes, and no answer held the canary, /etc/passwd or the database. */
#include <ftw.h>

#include "fsutil.h"

#include "itraw.h"

static ITServer s;
static char canary_path[400];
static const char canary[] = "lemo-canary-3b9d1f: this file is outside the data directory\n";
static int bad_bodies;

/* Flags an answer that shows what no answer may hold. */
static void scan_body(const char *what, const char *body, size_t n) {
    if (!body) return;
    if (memmem(body, n, "lemo-canary-3b9d1f", 18) || memmem(body, n, "root:x:0:0", 10) ||
        memmem(body, n, "SQLite format 3", 15)) {
        bad_bodies++;
        fprintf(stderr, "answer to %s leaks a file: %.200s\n", what, body);
    }
}

/* One request on a new connection, the path sent as it is (it_req's URL buffer is too short
 * for the long names here). */
static ITResp req(const char *method, const char *path, const char *ctype, const char *body) {
    ITResp r;
    memset(&r, 0, sizeof r);
    r.body = calloc(1, 1);
    CURL *c = curl_easy_init();
    size_t ul = strlen(s.base) + strlen(path) + 1;
    char *url = malloc(ul);
    snprintf(url, ul, "%s%s", s.base, path);
    struct curl_slist *hs = ctype ? curl_slist_append(NULL, ctype) : NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, it_write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    if (curl_easy_perform(c) != CURLE_OK) r.status = -1;
    else curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(hs);
    curl_easy_cleanup(c);
    free(url);
    return r;
}

static long ask(const char *method, const char *path) {
    ITResp r = req(method, path, NULL, NULL);
    scan_body(path, r.body, r.len);
    long st = r.status;
    if (st != 400 && st != 404) fprintf(stderr, "%s %s: %ld %.200s\n", method, path, st, r.body);
    it_free(&r);
    return st;
}

/* ---- a listing of the temp root: every path with its size and modification time ---- */

typedef struct { char path[512]; long long size, mtime; } Entry;
static Entry *walk_out;
static int walk_n, walk_cap;
static size_t walk_root_len;

static int walk_one(const char *p, const struct stat *st, int type, struct FTW *ftw) {
    (void)type, (void)ftw;
    if (walk_n == walk_cap) {
        walk_cap = walk_cap ? walk_cap * 2 : 256;
        walk_out = realloc(walk_out, (size_t)walk_cap * sizeof *walk_out);
    }
    Entry *e = &walk_out[walk_n++];
    snprintf(e->path, sizeof e->path, "%s", p + walk_root_len);
    e->size = (long long)st->st_size;
    e->mtime = (long long)st->st_mtime;
    return 0;
}

static int walk(const char *root, Entry **out) {
    walk_out = NULL;
    walk_n = walk_cap = 0;
    walk_root_len = strlen(root);
    nftw(root, walk_one, 16, FTW_PHYS);
    *out = walk_out;
    return walk_n;
}

/* 1 for what the server writes itself: its database, its log, files/ID.jsonl, jobs/ID/..., tmp/. */
static int servers_own(const char *p) {
    if (!strcmp(p, "/server.log") || !strncmp(p, "/data/lemo.db", 13) || !strcmp(p, "/data/files") ||
        !strcmp(p, "/data/jobs") || !strcmp(p, "/data/tmp") || !strcmp(p, "/data"))
        return 1;
    if (!strncmp(p, "/data/files/file-", 17)) {
        const char *q = p + 17;
        while ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9')) q++;
        return !strcmp(q, ".jsonl");
    }
    return !strncmp(p, "/data/jobs/ftjob-", 17) || !strncmp(p, "/data/tmp/", 10);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    it_tempdir(&s);
    char models[400];
    it_config_only_model(&s, models, sizeof models);
    snprintf(canary_path, sizeof canary_path, "%s/secret.txt", s.dir);
    it_write_file(canary_path, canary);
    if (it_start(&s, "--slots", "0", "--models", models, NULL)) { CHECK(0, "server start"); return check_done("traversal"); }
    char file[64], job[64], body[256];
    char *ds = it_story_jsonl(3);
    CHECK(it_upload_ok(&s, "d.jsonl", ds, file, sizeof file) == 0, "upload");
    snprintf(body, sizeof body, "{\"model\": \"m1\", \"training_file\": \"%s\"}", file);
    ITResp r = it_post_json(&s, "/v1/fine_tuning/jobs", body);
    it_str(&r, "id", job, sizeof job);
    CHECK(r.status == 200 && job[0], "job: %ld %s", r.status, r.body);
    it_free(&r);
    Entry *before;
    int n_before = walk(s.dir, &before);

    /* the names, as they go into a URL */
    char l300[400] = "file-", l5000[5100];
    memset(l300 + 5, 'a', 300);
    l300[305] = 0;
    memset(l5000, 'b', 5000);
    l5000[5000] = 0;
    const char *evil[] = {"..", "%2e%2e", ".", "..%2fsecret.txt", "%2e%2e%2fsecret.txt", "%2E%2E%2F%2E%2E%2Fsecret.txt",
                          "..%2f..%2f..%2f..%2f..%2fetc%2fpasswd", "%2fetc%2fpasswd", "%2F", "..%5c..%5csecret.txt",
                          "%5c%5cetc%5cpasswd", "%252e%252e%252fsecret.txt", "%c0%ae%c0%ae%c0%afsecret.txt",
                          "%00", "file-%00", "%00..%2fsecret.txt", "%ff%fe%fd", "%e2%80%ae", "~root", "*", "%20",
                          "secret.txt", "lemo.db", "..%2flemo.db", l300, l5000};
    int n_evil = (int)(sizeof evil / sizeof evil[0]);
    const char *templ[] = {"GET /v1/files/%s", "GET /v1/files/%s/content", "DELETE /v1/files/%s",
                           "GET /v1/fine_tuning/jobs/%s", "GET /v1/fine_tuning/jobs/%s/events",
                           "GET /v1/fine_tuning/jobs/%s/events?stream=true", "GET /v1/fine_tuning/jobs/%s/checkpoints",
                           "GET /v1/fine_tuning/jobs/%s/adapter", "GET /v1/fine_tuning/jobs/%s/adapter/adapter_config.json",
                           "GET /v1/fine_tuning/jobs/JOB/adapter/%s", "GET /v1/fine_tuning/jobs/JOB/adapter?step=%s",
                           "POST /v1/fine_tuning/jobs/%s/cancel", "POST /v1/fine_tuning/jobs/%s/pause",
                           "POST /v1/fine_tuning/jobs/%s/resume", "GET /v1/models/%s", "DELETE /v1/models/%s",
                           "DELETE /v1/models/ft:m1:%s", "POST /v1/models/%s/lemo", "GET /%s", "GET /%s/index.html",
                           "GET /v1/files/%s/../" , "GET /v1/files/../../%s"};
    int n_templ = (int)(sizeof templ / sizeof templ[0]), asked = 0, ok = 0;
    char *path = malloc(8192), *pat = malloc(512);
    for (int t = 0; t < n_templ; t++) {
        for (int i = 0; i < n_evil; i++) {
            char method[8];
            const char *sp = strchr(templ[t], ' ');
            snprintf(method, sizeof method, "%.*s", (int)(sp - templ[t]), templ[t]);
            snprintf(pat, 512, "%s", sp + 1);
            char *jp = strstr(pat, "JOB");
            if (jp) {   // the route's other segment: the real job, so only the name is wrong
                char tail[512];
                snprintf(tail, sizeof tail, "%s", jp + 3);
                snprintf(jp, 512 - (size_t)(jp - pat), "%s%s", job, tail);
            }
            snprintf(path, 8192, pat, evil[i]);
            long st = ask(method, path);
            asked++;
            ok += st == 400 || st == 404;
        }
    }
    CHECK(ok == asked, "%d of %d requests with a bad id or name answered 400 or 404", ok, asked);
    CHECK(it_healthy(&s), "healthy after the bad names");

    /* uploads named so: listed under the last component, stored as FILE_ID.jsonl */
    const char *names[] = {"..%2f..%2fpwned.jsonl", "%2e%2e%2f%2e%2e%2fpwned.jsonl", "%2ftmp%2fpwned.jsonl",
                           "..%5c..%5cpwned.jsonl", "pwned.jsonl%00.txt", "%ff%fepwned", "..", ".", "%2e%2e",
                           "dir%2f", l300, l5000};
    int uploads = 0, well = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, 8192, "/v1/files?purpose=fine-tune&filename=%s", names[i]);
        r = req("POST", path, "Content-Type: application/octet-stream", ds);
        scan_body(path, r.body, r.len);
        json_t *j = it_json(&r);
        const char *fn = json_string_value(json_object_get(j, "filename"));
        int fine = (r.status == 200 && fn && *fn && !strchr(fn, '/') && !strchr(fn, '\\') && strcmp(fn, "..") &&
                    strcmp(fn, ".") && strlen(fn) < 256) || (r.status == 400 && strstr(names[i], "%00"));
        if (!fine) fprintf(stderr, "upload named %.60s: %ld %.200s\n", names[i], r.status, r.body);
        well += fine;
        uploads++;
        json_decref(j);
        it_free(&r);
    }
    CHECK(well == uploads, "%d of %d uploads with a bad ?filename= listed under a safe name (or refused)", well, uploads);
    const char *mp_names[] = {"../../pwned.jsonl", "/etc/passwd", "..\\..\\pwned.jsonl", "a\xff\xfe" "b.jsonl", "..",
                              "", "dir/", "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                              "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"};
    char longname[700];
    for (int i = 0; i < 300; i++) memcpy(longname + 2 * i, "\xc3\xa9", 2);   // 600 bytes of é: cut at a boundary
    longname[600] = 0;
    int mp = 0, mp_well = 0;
    for (size_t i = 0; i <= sizeof mp_names / sizeof mp_names[0]; i++) {
        const char *nm = i < sizeof mp_names / sizeof mp_names[0] ? mp_names[i] : longname;
        r = it_upload(&s, nm, ds, strlen(ds), "fine-tune", NULL);
        scan_body(nm, r.body, r.len);
        json_t *j = it_json(&r);
        const char *fn = json_string_value(json_object_get(j, "filename"));
        int fine = r.status == 200 && fn && *fn && !strchr(fn, '/') && !strchr(fn, '\\') && strcmp(fn, "..") &&
                   strlen(fn) < 256;
        if (!fine) fprintf(stderr, "multipart file named %.60s: %ld %.200s\n", nm, r.status, r.body);
        mp_well += fine;
        mp++;
        json_decref(j);
        it_free(&r);
    }
    CHECK(mp_well == mp, "%d of %d multipart uploads with a bad filename listed under a safe name", mp_well, mp);

    /* bytes in the request line that no client library sends */
    static const char *const raws[] = {"GET /v1/files/\x01\x02 HTTP/1.1\r\nHost: x\r\n\r\n",
                                       "GET /v1/files/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
                                       "GET /v1/files/a b HTTP/1.1\r\nHost: x\r\n\r\n",
                                       "GET /v1/files/%zz%2 HTTP/1.1\r\nHost: x\r\n\r\n",
                                       "GET /../../secret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
                                       "GET ../../secret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
                                       "GET /v1/files/..\\..\\secret.txt HTTP/1.1\r\nHost: x\r\n\r\n"};
    int raw_ok = 0;
    for (size_t i = 0; i < sizeof raws / sizeof raws[0]; i++) {
        static char ans[1 << 16];
        long st = it_raw_request(&s, raws[i], strlen(raws[i]), ans, sizeof ans, 5);
        scan_body("a raw request", ans, strlen(ans));
        raw_ok += st >= 400 && st < 500;
        if (st < 400 || st >= 500) fprintf(stderr, "raw request %zu: %ld %.200s\n", i, st, ans);
    }
    static const char nul_req[] = "GET /v1/files/file-\0../../secret.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    static char ans[1 << 16];
    long st = it_raw_request(&s, nul_req, sizeof nul_req - 1, ans, sizeof ans, 5);
    scan_body("a raw NUL", ans, strlen(ans));
    raw_ok += st >= 400 && st < 500;
    CHECK(raw_ok == (int)(sizeof raws / sizeof raws[0]) + 1, "%d of %zu raw requests with odd bytes answered 4xx", raw_ok,
          sizeof raws / sizeof raws[0] + 1);
    CHECK(it_healthy(&s), "healthy after the raw requests");
    CHECK(bad_bodies == 0, "%d answers held the canary, /etc/passwd or the database", bad_bodies);

    /* the filesystem: nothing outside the data directory changed; inside it only the server's own */
    it_stop(&s, SIGTERM);
    Entry *after;
    int n_after = walk(s.dir, &after);
    int outside = 0, foreign = 0, gone = 0;
    for (int i = 0; i < n_after; i++) {
        if (servers_own(after[i].path)) continue;
        int same = 0;
        for (int k = 0; k < n_before && !same; k++)
            same = !strcmp(before[k].path, after[i].path) && before[k].size == after[i].size &&
                   before[k].mtime == after[i].mtime;
        if (!same) {
            fprintf(stderr, "new or changed: %s\n", after[i].path);
            if (!strncmp(after[i].path, "/data", 5)) foreign++;
            else outside++;
        }
    }
    for (int k = 0; k < n_before; k++) {
        if (servers_own(before[k].path)) continue;   // e.g. the database's WAL, folded in at the stop
        int there = 0;
        for (int i = 0; i < n_after && !there; i++) there = !strcmp(before[k].path, after[i].path);
        if (!there) { fprintf(stderr, "removed: %s\n", before[k].path); gone++; }
    }
    CHECK(outside == 0, "%d files outside the data directory written", outside);
    CHECK(foreign == 0, "%d files in the data directory that the server does not name itself", foreign);
    CHECK(gone == 0, "%d files removed", gone);
    size_t cn;
    char *c = fs_read_all(canary_path, &cn, 4096, NULL);
    CHECK(c && cn == strlen(canary) && !memcmp(c, canary, cn), "the canary beside the data directory is unchanged");
    free(c);
    CHECK(access("/tmp/pwned.jsonl", F_OK) != 0, "nothing written as /tmp/pwned.jsonl");
    free(before);
    free(after);
    free(path);
    free(pat);
    free(ds);
    it_cleanup(&s);
    return check_done("test_server_traversal");
}
