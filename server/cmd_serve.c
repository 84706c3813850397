/* cmd_serve.c: `lemo serve`: the HTTP service (API, job queue, dashboard).
 *
 * Start-up order matters: the data directory and database first (migrations), then jobs a
 * crash left running are requeued, then the HTTP port opens, then the engine threads start
 * claiming jobs. SIGINT/SIGTERM stop it the other way round: trainers are asked to checkpoint
 * and stop (their jobs go back to the queue and resume on the next start), then HTTP closes. */
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "auth.h"
#include "http.h"
#include "scheduler.h"
#include "srv_util.h"
#include "webhook.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: lemo serve [flags]\n"
            "  Runs the fine-tuning service: the /v1 API (OpenAI fine-tuning shapes), the job queue\n"
            "  with one engine slot per device, and the dashboard at /.\n"
            "  --host ADDR             address to listen on (default 127.0.0.1; with no API key configured\n"
            "                          the server always binds to loopback)\n"
            "  --port N                TCP port, 0 = any free port (default 8080)\n"
            "  --data-dir DIR          database, uploaded files and job outputs (default ./data)\n"
            "  --models DIR            a folder of base model folders; repeat for more (default ./models)\n"
            "  --web DIR               the dashboard's static files (default: web/ found above the binary,\n"
            "                          else ./web)\n"
            "  --slots N               jobs trained at once (default: one per GPU, else 1 CPU slot)\n"
            "  --max-upload-bytes N    largest dataset upload or URL import (default 1073741824)\n"
            "  --max-body-bytes N      largest body of any other request (default 1048576)\n"
            "  --import-timeout S      time limit of a dataset import by URL, seconds (default 300)\n"
            "  --allow-internal-urls   let URLs that clients name (dataset imports, a job's metadata.webhook_url)\n"
            "                          reach loopback, private and link-local addresses (default: refused, so\n"
            "                          clients cannot make the server reach what only its network can see)\n"
            "  --import-internal       the same as --allow-internal-urls (its older name)\n"
            "  --public-metrics        serve /metrics without an API key when keys exist (default: off; it\n"
            "                          names jobs and their speed)\n"
            "  --webhook-url URL       POST job.succeeded/failed/cancelled events here (default: none; it may\n"
            "                          be internal; a job's metadata.webhook_url adds one per job)\n"
            "  --webhook-secret S      HMAC-SHA256 key signing webhooks (default: none, or $LEMO_WEBHOOK_SECRET)\n"
            "  --max-connections N     connections open at once; more are refused until some close (default 1024;\n"
            "                          each holds a thread and up to 128 KiB)\n"
            "  --max-connections-per-ip N\n"
            "                          connections open at once from one client address (default 0: no limit,\n"
            "                          as behind a reverse proxy every client has the proxy's address)\n"
            "  --header-timeout S      a connection must send a whole request header within S seconds of\n"
            "                          opening or of its previous answer, else it is closed: bounds clients\n"
            "                          that send a header a byte at a time, and idle keep-alive (default 20)\n"
            "  --idle-timeout S        a connection that sends and receives nothing for S seconds is closed,\n"
            "                          e.g. a stalled upload (default 60; event streams send a comment every 15 s)\n"
            "  --no-access-log         no line per request on stderr (default: one each, with the client\n"
            "                          address, method, path without the query, status, bytes and milliseconds)\n"
            "  --help                  this text\n");
}

/* realpath into a SERVER_PATH buffer; -1 if it fails or is too long. */
static int real_dir(const char *in, char *out) {
    char tmp[PATH_MAX];
    if (!realpath(in, tmp) || strlen(tmp) >= SERVER_PATH) return -1;
    memcpy(out, tmp, strlen(tmp) + 1);
    return 0;
}

/* Finds web/index.html in the binary's directory or up to 4 levels above it, else ./web. */
static void find_web(const char *exe, char *out) {
    char d[PATH_MAX];
    snprintf(d, sizeof d, "%s", exe);
    for (int up = 0; up < 5; up++) {
        char *slash = strrchr(d, '/');
        if (!slash) break;
        *slash = 0;
        char p[PATH_MAX + 32];
        snprintf(p, sizeof p, "%s/web/index.html", d[0] ? d : "");
        if (access(p, R_OK) == 0) {
            snprintf(p, sizeof p, "%s/web", d);
            if (real_dir(p, out) == 0) return;
        }
    }
    if (access("web/index.html", R_OK) == 0 && real_dir("web", out) == 0) return;
    out[0] = 0;
}

static int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* Removes temp files an interrupted upload or estimate left behind. */
static void clean_temp(Server *srv) {
    char d[PATH_MAX + 16];
    snprintf(d, sizeof d, "%s/files", srv->data_dir);
    DIR *dir = opendir(d);
    if (!dir) return;
    struct dirent *de;
    while ((de = readdir(dir))) {
        if (strncmp(de->d_name, ".upload-", 8)) continue;
        char p[PATH_MAX + 300];
        snprintf(p, sizeof p, "%s/%s", d, de->d_name);
        unlink(p);
    }
    closedir(dir);
}

static int is_loopback(const char *host) {
    return !strncmp(host, "127.", 4) || !strcmp(host, "::1");
}

int cmd_serve(int argc, char **argv) {
    static Server srv;   // lives for the whole process; threads point into it
    memset(&srv, 0, sizeof srv);
    snprintf(srv.host, sizeof srv.host, "127.0.0.1");
    srv.port = 8080;
    char data_dir[PATH_MAX] = "./data", web[PATH_MAX] = "";
    const char *models[SERVER_MAX_MODEL_DIRS];
    int n_models = 0;
    int64_t slots = -1, v;
    srv.max_upload_bytes = 1073741824LL;
    srv.max_body_bytes = 1 << 20;
    srv.import_timeout_s = 300;
    srv.access_log = 1;
    srv.header_timeout_s = 20;
    srv.idle_timeout_s = 60;
    srv.max_connections = 1024;
    srv.max_connections_per_ip = 0;
    const char *sec = getenv("LEMO_WEBHOOK_SECRET");
    if (sec) snprintf(srv.webhook_secret, sizeof srv.webhook_secret, "%s", sec);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--allow-internal-urls") || !strcmp(a, "--import-internal")) {
            srv.allow_internal_urls = 1;
            continue;
        }
        if (!strcmp(a, "--public-metrics")) {
            srv.public_metrics = 1;
            continue;
        }
        if (!strcmp(a, "--no-access-log")) {
            srv.access_log = 0;
            continue;
        }
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--host") && val) snprintf(srv.host, sizeof srv.host, "%s", val);
        else if (!strcmp(a, "--port") && val) { bad = parse_i64(val, 0, 65535, &v); srv.port = (int)v; }
        else if (!strcmp(a, "--data-dir") && val) snprintf(data_dir, sizeof data_dir, "%s", val);
        else if (!strcmp(a, "--models") && val) {
            if (n_models == SERVER_MAX_MODEL_DIRS) { fprintf(stderr, "lemo serve: at most %d --models\n", SERVER_MAX_MODEL_DIRS); return 2; }
            models[n_models++] = val;
        } else if (!strcmp(a, "--web") && val) snprintf(web, sizeof web, "%s", val);
        else if (!strcmp(a, "--slots") && val) bad = parse_i64(val, 0, 256, &slots);
        else if (!strcmp(a, "--max-upload-bytes") && val) bad = parse_i64(val, 1, INT64_MAX / 2, &srv.max_upload_bytes);
        else if (!strcmp(a, "--max-body-bytes") && val) bad = parse_i64(val, 1024, 1LL << 30, &srv.max_body_bytes);
        else if (!strcmp(a, "--import-timeout") && val) { bad = parse_i64(val, 1, 86400, &v); srv.import_timeout_s = (int)v; }
        else if (!strcmp(a, "--webhook-url") && val) snprintf(srv.webhook_url, sizeof srv.webhook_url, "%s", val);
        else if (!strcmp(a, "--webhook-secret") && val) snprintf(srv.webhook_secret, sizeof srv.webhook_secret, "%s", val);
        else if (!strcmp(a, "--max-connections") && val) { bad = parse_i64(val, 1, 65536, &v); srv.max_connections = (int)v; }
        else if (!strcmp(a, "--max-connections-per-ip") && val) {
            bad = parse_i64(val, 0, 65536, &v);
            srv.max_connections_per_ip = (int)v;
        } else if (!strcmp(a, "--header-timeout") && val) { bad = parse_i64(val, 1, 3600, &v); srv.header_timeout_s = (int)v; }
        else if (!strcmp(a, "--idle-timeout") && val) { bad = parse_i64(val, 1, 86400, &v); srv.idle_timeout_s = (int)v; }
        else {
            static const char *const known[] = {"--host", "--port", "--data-dir", "--models", "--web", "--slots",
                                                "--max-upload-bytes", "--max-body-bytes", "--import-timeout",
                                                "--webhook-url", "--webhook-secret", "--max-connections",
                                                "--max-connections-per-ip", "--header-timeout", "--idle-timeout", NULL};
            fprintf(stderr, "lemo serve: %s '%s'\n", str_in(a, known) ? "missing value for" : "unknown flag", a);
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "lemo serve: bad value '%s' for %s\n", val, a);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (srv.webhook_url[0] && strncmp(srv.webhook_url, "http://", 7) && strncmp(srv.webhook_url, "https://", 8)) {
        fprintf(stderr, "lemo serve: --webhook-url must be an http(s) URL\n");
        return 2;
    }
    ssize_t n = readlink("/proc/self/exe", srv.exe, sizeof srv.exe - 1);
    if (n <= 0) { fprintf(stderr, "lemo serve: cannot find my own binary (/proc/self/exe)\n"); return 1; }
    srv.exe[n] = 0;

    if (fs_mkdirs(data_dir, NULL) || real_dir(data_dir, srv.data_dir)) {
        fprintf(stderr, "lemo serve: cannot create the data directory %s: %s\n", data_dir, strerror(errno));
        return 1;
    }
    char sub[PATH_MAX + 16];
    const char *subs[] = {"files", "jobs", "tmp"};
    for (int i = 0; i < 3; i++) {
        snprintf(sub, sizeof sub, "%s/%s", srv.data_dir, subs[i]);
        if (fs_mkdirs(sub, NULL)) { fprintf(stderr, "lemo serve: cannot create %s\n", sub); return 1; }
    }
    clean_temp(&srv);
    if (n_models == 0) models[n_models++] = "./models";
    for (int i = 0; i < n_models; i++) {
        if (real_dir(models[i], srv.models[srv.n_models])) {
            fprintf(stderr, "lemo serve: warning: --models %s does not exist (yet); it is searched when it does\n", models[i]);
            snprintf(srv.models[srv.n_models], sizeof srv.models[0], "%s", models[i]);
        }
        srv.n_models++;
    }
    if (web[0]) {
        if (real_dir(web, srv.web_dir)) { fprintf(stderr, "lemo serve: --web %s does not exist\n", web); return 2; }
    } else {
        find_web(srv.exe, srv.web_dir);
    }

    /* every connection is a descriptor: the soft limit (often 1024) would refuse connections
     * well below --max-connections, so it is raised as far as the hard limit lets it */
    struct rlimit nofile;
    rlim_t want = (rlim_t)srv.max_connections + 256;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < want) {
        nofile.rlim_cur = nofile.rlim_max < want ? nofile.rlim_max : want;
        setrlimit(RLIMIT_NOFILE, &nofile);
        if (nofile.rlim_cur < want)
            fprintf(stderr, "lemo serve: warning: at most %llu open files (ulimit -Hn): fewer connections than "
                            "--max-connections %d can be accepted\n", (unsigned long long)nofile.rlim_cur,
                    srv.max_connections);
    }

    /* signals: handled by this thread with sigwait; every thread started below inherits the mask */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_mutex_init(&srv.ev_mu, NULL);
    pthread_cond_init(&srv.ev_cond, NULL);
    srv.started_at = now_s();

    Err e = {0};
    char dbp[PATH_MAX + 16];
    snprintf(dbp, sizeof dbp, "%s/lemo.db", srv.data_dir);
    if (!(srv.db = db_open(dbp, &e))) { fprintf(stderr, "lemo serve: %s\n", e.msg); return 1; }
    int keys = db_key_count_active(srv.db, &e);
    if (keys < 0) { fprintf(stderr, "lemo serve: %s\n", e.msg); return 1; }
    if (keys == 0) {
        if (!is_loopback(srv.host)) {
            fprintf(stderr, "lemo serve: no API key is configured, so the server binds to loopback (127.0.0.1) "
                            "instead of %s; create a key with `lemo keys create --data-dir %s` to serve the network\n",
                    srv.host, data_dir);
            snprintf(srv.host, sizeof srv.host, "127.0.0.1");
        } else {
            fprintf(stderr, "lemo serve: no API key is configured: serving loopback clients only, without "
                            "authentication (`lemo keys create --data-dir %s` turns keys on)\n", data_dir);
        }
    } else {
        fprintf(stderr, "lemo serve: %d API key%s configured: /v1 requests need 'Authorization: Bearer KEY'\n", keys,
                keys == 1 ? "" : "s");
    }
    if (scheduler_recover(&srv, &e)) { fprintf(stderr, "lemo serve: %s\n", e.msg); return 1; }
    if (!(srv.hooks = webhook_start(&srv, &e))) { fprintf(stderr, "lemo serve: %s\n", e.msg); return 1; }
    if (http_start(&srv, &e)) { fprintf(stderr, "lemo serve: %s\n", e.msg); return 1; }
    int gpus = scheduler_count_gpus();
    int n_slots = slots >= 0 ? (int)slots : gpus > 0 ? gpus : 1;
    if (!(srv.sched = scheduler_start(&srv, n_slots, gpus, &e))) { fprintf(stderr, "lemo serve: %s\n", e.msg); return 1; }
    fprintf(stderr, "lemo serve: data %s; models", srv.data_dir);
    for (int i = 0; i < srv.n_models; i++) fprintf(stderr, " %s", srv.models[i]);
    fprintf(stderr, "; %d slot%s (%s); dashboard %s\n", n_slots, n_slots == 1 ? "" : "s",
            gpus > 0 ? "GPU" : "CPU", srv.web_dir[0] ? srv.web_dir : "not found (--web DIR)");
    char per_ip[32] = "no limit";
    if (srv.max_connections_per_ip) snprintf(per_ip, sizeof per_ip, "%d", srv.max_connections_per_ip);
    fprintf(stderr, "lemo serve: connections: at most %d (%s per client address); a request header within %d s, "
                    "closed after %d s silent; access log %s\n", srv.max_connections, per_ip, srv.header_timeout_s,
            srv.idle_timeout_s, srv.access_log ? "on stderr" : "off");
    fprintf(stderr, "lemo serve: listening on http://%s%s%s:%d\n", strchr(srv.host, ':') ? "[" : "", srv.host,
            strchr(srv.host, ':') ? "]" : "", srv.port);
    fflush(stderr);

    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "lemo serve: %s: stopping (running jobs checkpoint and resume on the next start)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM");
    atomic_store(&srv.stopping, 1);
    server_notify_events(&srv);
    scheduler_stop(srv.sched);
    server_notify_events(&srv);
    http_stop(&srv);
    webhook_stop(srv.hooks);
    db_close(srv.db);
    curl_global_cleanup();
    fprintf(stderr, "lemo serve: stopped\n");
    return 0;
}
