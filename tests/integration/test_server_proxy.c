/* test_server_proxy.c: the internal-address guard holds with http_proxy / https_proxy set.
 *
 * The guard judges the address curl connects to; through a proxy that is the proxy's, and the
 * proxy would then reach any address for the server, internal ones included. So guarded
 * transfers (dataset imports, webhooks) never use a proxy: here the server runs with
 * http_proxy and HTTPS_PROXY pointing at a local peer that answers every request with its own
 * body, and an import of another peer's file must bring that file, fetched directly, with the
 * proxy never asked. Then, without --import-internal, an import of an internal address is
 * refused naming that address, not the proxy's. */
#include "itest.h"

static ITServer s;

/* Sets (url) or clears (NULL) every proxy variable curl reads. */
static void proxy_env(const char *url) {
    static const char *const vars[] = {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        if (url) setenv(vars[i], url, 1);
        else unsetenv(vars[i]);
    }
    unsetenv("no_proxy"), unsetenv("NO_PROXY");
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ITPeer proxy = {0}, origin = {0};
    static const char proxied[] = "{\"text\": \"answered by the proxy\"}\n";
    static const char direct[] = "{\"text\": \"answered by the origin\"}\n";
    proxy.get_body = proxied, proxy.get_len = sizeof proxied - 1;
    origin.get_body = direct, origin.get_len = sizeof direct - 1;
    if (it_peer_start(&proxy) || it_peer_start(&origin)) { CHECK(0, "peers start"); return check_done("test_server_proxy"); }
    char purl[64];
    snprintf(purl, sizeof purl, "http://127.0.0.1:%d", proxy.port);
    it_tempdir(&s);
    // the proxy is in the server's environment only: this test's own client talks to it directly
    proxy_env(purl);
    int started = it_start(&s, "--slots", "0", "--import-internal", NULL);
    proxy_env(NULL);
    if (started) { CHECK(0, "server start"); return check_done("test_server_proxy"); }
    char json[256], id[64] = "", path[128];
    snprintf(json, sizeof json, "{\"url\": \"http://127.0.0.1:%d/data.jsonl\"}", origin.port);
    ITResp r = it_post_json(&s, "/v1/files", json);
    CHECK(r.status == 200, "import with a proxy in the environment: %ld %s", r.status, r.body);
    it_str(&r, "id", id, sizeof id);
    it_free(&r);
    snprintf(path, sizeof path, "/v1/files/%s/content", id);
    r = it_get(&s, path);
    CHECK(r.status == 200 && strstr(r.body, "answered by the origin") && !strstr(r.body, "proxy"),
          "the import fetched the origin directly, not through the proxy: %.200s", r.body);
    it_free(&r);
    it_stop(&s, SIGTERM);

    // guarded as it should be: the refusal names the internal target, the proxy is not asked
    proxy_env(purl);
    started = it_start(&s, "--slots", "0", NULL);
    proxy_env(NULL);
    CHECK(started == 0, "restart without --import-internal");
    snprintf(json, sizeof json, "{\"url\": \"http://127.0.0.2:%d/data.jsonl\"}", origin.port);
    r = it_post_json(&s, "/v1/files", json);
    CHECK(it_is_error(&r, 400, "url", "url_not_allowed", "127.0.0.2"), "an internal import refused by its own address: %ld %s",
          r.status, r.body);
    it_free(&r);
    CHECK(it_healthy(&s), "healthy at the end");
    it_stop(&s, SIGTERM);
    it_cleanup(&s);
    it_peer_stop(&proxy), it_peer_stop(&origin);
    return check_done("test_server_proxy");
}
