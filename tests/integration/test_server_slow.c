/* test_server_slow.c: connections that send no whole request cannot starve the ones that do.
 *
 * A server with --header-timeout 3 --idle-timeout 6 --max-connections-per-ip 512 (the
 * defaults are 20, 60 and none; short here so the test is short):
 *   - 300 slow-loris connections from 127.0.0.2 send a request header a byte every 0.4 s and
 *     never finish it; 500 keep-alive connections from 127.0.0.3 ask once and then stay
 *     silent; one connection never sends a byte. Meanwhile a normal client on 127.0.0.1 gets
 *     every answer within 1 s.
 *   - The slow connections are closed 3 s after they opened although they never stop
 *     sending (libmicrohttpd's idle timeout alone never closes them), the idle ones 3 s after
 *     their answer, the silent one 3 s after it opened; none before 2 s.
 *   - An event stream stays open past both timeouts (it gets a comment every 3 s); an upload
 *     that stalls halfway is closed after the 6 s idle timeout and leaves no temp file.
 *   - Of 600 connections from 127.0.0.4, 512 are kept and 88 refused; the normal client still
 *     gets in. /metrics counts the connections closed for a late header. */
#include <pthread.h>

#include "itraw.h"

#define SLOW 300
#define IDLE 500
#define HEADER_TIMEOUT 3.0
#define IDLE_TIMEOUT 6.0

static ITServer s;

typedef struct { int ok, n; double worst; } Normal;

/* 20 requests from 127.0.0.1, one every 100 ms, each on a new connection. */
static void *normal_client(void *arg) {
    Normal *nc = arg;
    for (int i = 0; i < 20; i++) {
        double t0 = it_now();
        ITResp r = it_get(&s, i % 2 ? "/v1/files" : "/healthz");
        double dt = it_now() - t0;
        nc->n++;
        nc->ok += r.status == 200;
        if (dt > nc->worst) nc->worst = dt;
        it_free(&r);
        usleep(100000);
    }
    return NULL;
}

typedef struct { char path[128]; int keepalives; long status; CURLcode rc; double open_s; } Stream;

static size_t count_keepalives(char *p, size_t sz, size_t nm, void *ud) {
    Stream *st = ud;
    size_t n = sz * nm;
    for (const char *q = p; (q = memmem(q, (size_t)(p + n - q), ": keep-alive", 12)); q += 12) st->keepalives++;
    return n;
}

/* Holds an event stream for 8 s (curl's timeout ends it): the server must not close it first. */
static void *hold_stream(void *arg) {
    Stream *st = arg;
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof url, "%s%s", s.base, st->path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, count_keepalives);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, st);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 8000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    double t0 = it_now();
    st->rc = curl_easy_perform(c);
    st->open_s = it_now() - t0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st->status);
    curl_easy_cleanup(c);
    return NULL;
}

// kind: 0 slow, 1 idle, 2 silent, 3 upload; t_sent: a slow one's last byte
typedef struct { int fd; double t_ref, t_closed, t_sent; int kind; size_t sent; } Conn;

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (it_raise_nofile(4096)) SKIP("needs 4096 open files (ulimit -Hn)");
    it_tempdir(&s);
    char models[400];
    it_config_only_model(&s, models, sizeof models);
    if (it_start(&s, "--slots", "0", "--models", models, "--header-timeout", "3", "--idle-timeout", "6",
                 "--max-connections-per-ip", "512", NULL)) {
        CHECK(0, "server start");
        return check_done("slow");
    }
    char file[64], body[256], job[64];
    char *ds = it_story_jsonl(3);
    CHECK(it_upload_ok(&s, "d.jsonl", ds, file, sizeof file) == 0, "upload");
    free(ds);
    snprintf(body, sizeof body, "{\"model\": \"m1\", \"training_file\": \"%s\"}", file);
    ITResp r = it_post_json(&s, "/v1/fine_tuning/jobs", body);
    it_str(&r, "id", job, sizeof job);
    CHECK(r.status == 200 && job[0], "job created: %ld %s", r.status, r.body);
    it_free(&r);

    /* phase 1: slow, idle, silent and a stalled upload at once, a stream and a normal client beside them */
    int n = SLOW + IDLE + 2;
    Conn *cs = calloc((size_t)n, sizeof *cs);
    static const char slow_head[] = "GET /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    static const char trickle[] = "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    int opened = 0, answered = 0;
    for (int i = 0; i < n; i++) {
        Conn *c = &cs[i];
        c->kind = i < SLOW ? 0 : i < SLOW + IDLE ? 1 : i == SLOW + IDLE ? 2 : 3;
        c->fd = it_raw_connect(&s, c->kind == 0 ? "127.0.0.2" : c->kind == 1 ? "127.0.0.3" : NULL);
        c->t_ref = it_now();
        if (c->fd < 0) continue;
        opened++;
        if (c->kind == 0) it_raw_send(c->fd, slow_head, sizeof slow_head - 1);
        if (c->kind == 1) {
            static const char q[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
            char ans[2048] = "";
            size_t got = 0;
            it_raw_send(c->fd, q, sizeof q - 1);
            while (got < sizeof ans - 1 && !strstr(ans, "\"status\":\"ok\"")) {  // the whole answer
                ssize_t k = recv(c->fd, ans + got, sizeof ans - 1 - got, 0);
                if (k <= 0) break;
                got += (size_t)k;
                ans[got] = 0;
            }
            answered += !strncmp(ans, "HTTP/1.1 200", 12);
            c->t_ref = it_now();   // idle from its answer on
        }
        if (c->kind == 3) {
            static const char up[] = "POST /v1/files?filename=stall.jsonl HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                     "Content-Length: 1000\r\n\r\n{\"text\": \"a";
            it_raw_send(c->fd, up, sizeof up - 1);
        }
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    }
    CHECK(opened == n, "%d of %d connections opened", opened, n);
    CHECK(answered == IDLE, "%d of %d keep-alive connections answered", answered, IDLE);
    Normal nc = {0};
    Stream st = {0};
    snprintf(st.path, sizeof st.path, "/v1/fine_tuning/jobs/%s/events?stream=true", job);
    pthread_t tn, ts;
    pthread_create(&tn, NULL, normal_client, &nc);
    pthread_create(&ts, NULL, hold_stream, &st);
    double t0 = it_now(), last_trickle = 0;
    struct pollfd *pf = calloc((size_t)n, sizeof *pf);
    int open_now = opened;
    while (open_now > 0 && it_now() - t0 < 12) {
        double now = it_now();
        if (now - last_trickle >= 0.4) {   // one more byte of header on every slow connection
            last_trickle = now;
            for (int i = 0; i < SLOW; i++) {
                Conn *c = &cs[i];
                if (c->fd < 0 || c->t_closed) continue;
                if (send(c->fd, trickle + c->sent % (sizeof trickle - 1), 1, MSG_NOSIGNAL) == 1) c->sent++, c->t_sent = now;
                else if (errno != EAGAIN) c->t_closed = it_now();
            }
        }
        for (int i = 0; i < n; i++) pf[i] = (struct pollfd){cs[i].fd >= 0 && !cs[i].t_closed ? cs[i].fd : -1, POLLIN, 0};
        poll(pf, (nfds_t)n, 100);
        now = it_now();
        open_now = 0;
        for (int i = 0; i < n; i++) {
            Conn *c = &cs[i];
            if (c->fd < 0 || c->t_closed) continue;
            if (pf[i].revents) {
                char buf[4096];
                ssize_t k = recv(c->fd, buf, sizeof buf, 0);
                if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) c->t_closed = now;
            }
            open_now += !c->t_closed;
        }
    }
    pthread_join(tn, NULL);
    int early[4] = {0}, late[4] = {0}, fine[4] = {0};
    double lo = 2.0, hi[4] = {HEADER_TIMEOUT + 2, HEADER_TIMEOUT + 2, HEADER_TIMEOUT + 2, IDLE_TIMEOUT + 2.5};
    double idle_before_close = 0;   // the longest a slow connection had been silent when it was closed
    for (int i = 0; i < n; i++) {
        Conn *c = &cs[i];
        if (c->fd < 0) continue;
        double after = c->t_closed ? c->t_closed - c->t_ref : 1e9;
        if (after < (c->kind == 3 ? IDLE_TIMEOUT - 1 : lo)) early[c->kind]++;
        else if (after > hi[c->kind]) late[c->kind]++;
        else fine[c->kind]++;
        if (c->kind == 0 && c->t_closed && c->t_closed - c->t_sent > idle_before_close)
            idle_before_close = c->t_closed - (c->t_sent ? c->t_sent : c->t_ref);
        close(c->fd);
    }
    static const char *const what[4] = {"slow-loris", "idle keep-alive", "silent", "stalled upload"};
    for (int k = 0; k < 4; k++)
        CHECK(!early[k] && !late[k], "%s connections: %d closed too early, %d too late (or never), %d in time", what[k],
              early[k], late[k], fine[k]);
    CHECK(idle_before_close < 1.0, "every slow-loris connection was sending until it was closed (silent %.2f s at most)",
          idle_before_close);
    CHECK(nc.ok == nc.n && nc.n == 20, "normal client: %d of %d answers 200", nc.ok, nc.n);
    CHECK(nc.worst < 1.0, "normal client's slowest answer %.3f s beside %d idle and slow connections", nc.worst,
          SLOW + IDLE);
    pthread_join(ts, NULL);
    CHECK(st.status == 200 && st.rc == CURLE_OPERATION_TIMEDOUT && st.open_s > 7.5,
          "the event stream stayed open past both timeouts: status %ld, %s after %.1f s", st.status,
          curl_easy_strerror(st.rc), st.open_s);
    CHECK(st.keepalives >= 2, "the stream got %d keep-alive comments (every half idle timeout)", st.keepalives);
    char fdir[400];
    snprintf(fdir, sizeof fdir, "%s/files", s.data);
    DIR *d = opendir(fdir);
    int temps = 0;
    for (struct dirent *de; d && (de = readdir(d));) temps += !strncmp(de->d_name, ".upload-", 8);
    if (d) closedir(d);
    CHECK(temps == 0, "the stalled upload left %d temp files", temps);

    /* phase 2: one address may hold 512 connections; the 88 past that are refused at once */
    int m = 600, kept = 0;
    int *fds = calloc((size_t)m, sizeof *fds);
    for (int i = 0; i < m; i++) fds[i] = it_raw_connect(&s, "127.0.0.4");
    usleep(500000);
    for (int i = 0; i < m; i++) kept += fds[i] >= 0 && !it_raw_closed_within(fds[i], 0.002);
    CHECK(kept == 512, "%d of %d connections from one address kept (limit 512)", kept, m);
    ITResp h = it_get(&s, "/healthz");
    CHECK(h.status == 200, "another address gets in beside them: %ld", h.status);
    it_free(&h);
    for (int i = 0; i < m; i++)
        if (fds[i] >= 0) close(fds[i]);

    r = it_get(&s, "/metrics");
    static const char tm[] = "\nlemo_http_header_timeouts_total ";
    const char *mt = r.body ? strstr(r.body, tm) : NULL;
    long timeouts = mt ? atol(mt + sizeof tm - 1) : -1;
    CHECK(timeouts >= SLOW + IDLE + 1, "/metrics: %ld connections closed for a late header", timeouts);
    CHECK(r.body && strstr(r.body, "\nlemo_http_connections "), "/metrics shows the open connections");
    it_free(&r);
    CHECK(it_healthy(&s), "healthy after the abuse");
    free(pf);
    free(cs);
    free(fds);
    it_stop(&s, SIGTERM);
    it_cleanup(&s);
    return check_done("test_server_slow");
}
