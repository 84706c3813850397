/* test_server_auth.c: API keys. Without keys the server answers loopback clients without
 * auth; once `lemo keys create` made one, every /v1 request needs `Authorization: Bearer KEY`
 * (401 in OpenAI's error shape otherwise), /healthz stays open and /metrics needs the key too
 * (it names jobs) unless --public-metrics, the key is stored only hashed, a revoked key stops
 * working, and with no key the server binds to loopback. */
#include "itest.h"

/* Runs `lemo keys ARGS... --data-dir DIR`, capturing stdout into out. Returns the exit status. */
static int keys_cmd(ITServer *s, const char *a1, const char *a2, char *out, size_t cap) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' keys %s %s --data-dir '%s' 2>/dev/null", it_bin(), a1, a2 ? a2 : "", s->data);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static long status_with(ITServer *s, const char *path, const char *auth) {
    const char *h[] = {auth, NULL};
    ITResp r = it_req(s, "GET", path, auth ? h : NULL, NULL, 0);
    long st = r.status;
    if (st == 401) {
        char type[64];
        it_err_field(&r, "type", type, sizeof type);
        CHECK(!strcmp(type, "authentication_error"), "401 type: %s", r.body);
    }
    it_free(&r);
    return st;
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ITServer s;
    it_tempdir(&s);
    if (it_start(&s, "--slots", "0", NULL)) { CHECK(0, "server start"); return check_done("auth"); }
    CHECK(status_with(&s, "/v1/models", NULL) == 200, "no keys: open on loopback");

    char key[256], out[4096];
    CHECK(keys_cmd(&s, "create", "--name ci", key, sizeof key) == 0, "keys create");
    key[strcspn(key, "\n")] = 0;
    CHECK(!strncmp(key, "sk-lemo-", 8), "key format: %s", key);
    char bearer[400], wrong[400];
    snprintf(bearer, sizeof bearer, "Authorization: Bearer %s", key);
    snprintf(wrong, sizeof wrong, "Authorization: Bearer %.*sXX", (int)strlen(key) - 2, key);

    CHECK(status_with(&s, "/v1/models", NULL) == 401, "a key exists: missing header is 401");
    CHECK(status_with(&s, "/v1/fine_tuning/jobs", wrong) == 401, "wrong key is 401");
    CHECK(status_with(&s, "/v1/files", "Authorization: Basic abc") == 401, "not Bearer is 401");
    CHECK(status_with(&s, "/v1/models", bearer) == 200, "right key is 200");
    CHECK(status_with(&s, "/v1/fine_tuning/jobs", bearer) == 200, "right key on jobs");
    CHECK(status_with(&s, "/healthz", NULL) == 200, "healthz open");
    CHECK(status_with(&s, "/metrics", NULL) == 401, "metrics need the key once one exists");
    CHECK(status_with(&s, "/metrics", bearer) == 200, "metrics with the key");
    char *ds = it_story_jsonl(3);
    ITResp r = it_upload(&s, "a.jsonl", ds, strlen(ds), "fine-tune", NULL);
    CHECK(r.status == 401, "upload without key: %ld", r.status);
    it_free(&r);
    r = it_upload(&s, "a.jsonl", ds, strlen(ds), "fine-tune", bearer);
    CHECK(r.status == 200, "upload with key: %ld %s", r.status, r.body);
    it_free(&r);
    free(ds);

    /* list shows the id, never the key; the database holds no copy of it */
    CHECK(keys_cmd(&s, "list", NULL, out, sizeof out) == 0, "keys list");
    char id[64];
    snprintf(id, sizeof id, "%.16s", key + 8);
    CHECK(strstr(out, id) && strstr(out, "ci") && !strstr(out, key), "list: %s", out);
    char dbp[400];
    snprintf(dbp, sizeof dbp, "%s/lemo.db", s.data);
    size_t total = 0;
    int found = 0;
    const char *dbfiles[] = {"lemo.db", "lemo.db-wal"};
    for (int i = 0; i < 2; i++) {
        snprintf(dbp, sizeof dbp, "%s/%s", s.data, dbfiles[i]);
        FILE *f = fopen(dbp, "rb");
        if (!f) continue;
        static char buf[1 << 22];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        total += n;
        for (size_t k = 0; k + strlen(key) <= n; k++)
            if (!memcmp(buf + k, key + 8 + 17, strlen(key) - 25)) found = 1;
    }
    CHECK(total > 0 && !found, "the key's secret is not stored (%zu bytes scanned)", total);

    char key2[256], bearer2[400];
    CHECK(keys_cmd(&s, "create", NULL, key2, sizeof key2) == 0, "second key");
    key2[strcspn(key2, "\n")] = 0;
    snprintf(bearer2, sizeof bearer2, "Authorization: Bearer %s", key2);
    it_stop(&s, SIGTERM);  // --public-metrics: /metrics open to anyone, the API still not
    CHECK(it_start(&s, "--slots", "0", "--public-metrics", NULL) == 0, "restart with --public-metrics");
    CHECK(status_with(&s, "/metrics", NULL) == 200, "public metrics without a key");
    CHECK(status_with(&s, "/v1/models", NULL) == 401, "the API still needs the key");
    CHECK(keys_cmd(&s, "revoke", id, out, sizeof out) == 0, "keys revoke");
    CHECK(status_with(&s, "/v1/models", bearer) == 401, "revoked key no longer works");
    CHECK(status_with(&s, "/v1/models", bearer2) == 200, "the other key still works");
    char id2[64];
    snprintf(id2, sizeof id2, "%.16s", key2 + 8);
    CHECK(keys_cmd(&s, "revoke", id2, out, sizeof out) == 0, "revoke the second key");
    CHECK(keys_cmd(&s, "revoke", "nosuchkey", out, sizeof out) != 0, "revoking an unknown key fails");
    CHECK(keys_cmd(&s, "bogus", NULL, out, sizeof out) == 2, "unknown keys action is a usage error");

    /* no active key any more: asked for 0.0.0.0, the server binds to loopback and says so */
    it_stop(&s, SIGTERM);
    CHECK(it_start(&s, "--slots", "0", "--host", "0.0.0.0", NULL) == 0, "restart with --host 0.0.0.0");
    FILE *lf = fopen(s.log, "r");
    char line[1024];
    int said = 0;
    while (lf && fgets(line, sizeof line, lf)) said |= strstr(line, "binds to loopback") != NULL;
    if (lf) fclose(lf);
    CHECK(said, "the log says it binds to loopback");
    CHECK(status_with(&s, "/v1/models", NULL) == 200, "open again on loopback with no active key");
    it_stop(&s, SIGTERM);
    it_cleanup(&s);
    return check_done("test_server_auth");
}
