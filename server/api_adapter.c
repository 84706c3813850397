/* api_adapter.c: GET /v1/fine_tuning/jobs/{id}/adapter (a tar of adapter_config.json +
 * adapter_model.safetensors, PEFT layout) and /adapter/{FILE} (one of the two); ?step=N takes
 * checkpoint N's adapter instead of the final one.
 *
 * The tar is built once per adapter into jobs/JOB_ID/downloads/ (rebuilt if the adapter is
 * newer) with its SHA-256 beside it, then served from a file descriptor: the ETag is that
 * SHA-256 (If-None-Match gives 304), and a single byte range (Range / If-Range) gives 206, so
 * an interrupted download of a large adapter can continue. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "api.h"
#include "sha256.h"
#include "srv_util.h"
#include "tar.h"

static pthread_mutex_t build_mu = PTHREAD_MUTEX_INITIALIZER;   // one tar build at a time

static const char *const ADAPTER_FILES[2] = {"adapter_config.json", "adapter_model.safetensors"};

static int64_t mtime_of(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (int64_t)st.st_mtime : -1;
}

/* The SHA-256 of path, cached in sidecar (recomputed when path is newer). */
static int cached_sha(const char *path, const char *sidecar, char hex[65]) {
    size_t n;
    char *txt = fs_read_all(sidecar, &n, 256, NULL);
    if (txt && n >= 64 && mtime_of(sidecar) >= mtime_of(path)) {
        memcpy(hex, txt, 64);
        hex[64] = 0;
        free(txt);
        return 0;
    }
    free(txt);
    if (sha256_file_hex(path, hex)) return -1;
    char line[80];
    snprintf(line, sizeof line, "%s\n", hex);
    fs_write_atomic(sidecar, line, strlen(line), NULL);
    return 0;
}

/* Resolves the adapter directory of the request (final or ?step=N); replies itself on error. */
static int adapter_dir(Req *r, char *dir, size_t cap, char *tag, size_t tcap) {
    const char *id = r->params[0];
    Err e;
    JobRow j;
    int rc = id_valid(id, "ftjob-") ? db_job_get(r->srv->db, id, &j, &e) : 0;
    if (rc < 0) { http_500(r, "%s", e.msg); return -1; }
    if (rc == 0) { http_not_found(r, "fine-tuning job", id); return -1; }
    char status[24];
    snprintf(status, sizeof status, "%s", j.status);
    job_row_free(&j);
    const char *step = http_query(r, "step");
    if (step) {
        char *end;
        long long n = strtoll(step, &end, 10);
        if (!*step || *end || n <= 0 || n > 1000000000LL) {
            http_error(r, 400, "invalid_request_error", "invalid_step", "step", "'step' must be a positive integer");
            return -1;
        }
        snprintf(dir, cap, "%s/jobs/%s/checkpoints/step-%lld", r->srv->data_dir, id, n);
        snprintf(tag, tcap, "step-%lld", n);
        struct stat st;
        if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
            http_error(r, 404, "invalid_request_error", "checkpoint_not_found", "step", "Job %s has no checkpoint at step %lld",
                       id, n);
            return -1;
        }
    } else {
        snprintf(dir, cap, "%s/jobs/%s/adapter", r->srv->data_dir, id);
        snprintf(tag, tcap, "final");
        struct stat st;
        if (strcmp(status, "succeeded") || stat(dir, &st)) {
            http_error(r, 404, "invalid_request_error", "adapter_not_ready", "id",
                       "Job %s is %s: its adapter exists once it has succeeded (checkpoints: ?step=N)", id, status);
            return -1;
        }
    }
    return 0;
}

/* Serves a file with ETag, Range and Content-Disposition. */
static int serve_file(Req *r, const char *path, const char *hex, const char *ctype, const char *dl_name) {
    char etag[80];
    snprintf(etag, sizeof etag, "\"%s\"", hex);
    const char *inm = http_header(r, "If-None-Match");
    if (inm && (strstr(inm, etag) || !strcmp(inm, "*"))) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(resp, "ETag", etag);
        return http_queue(r, 304, resp);
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        if (fd >= 0) close(fd);
        return http_500(r, "cannot open the adapter file");
    }
    uint64_t size = (uint64_t)st.st_size, a = 0, b = size ? size - 1 : 0;
    const char *range = http_header(r, "Range");
    const char *ifr = http_header(r, "If-Range");
    if (ifr && strcmp(ifr, etag)) range = NULL;  // the client's copy is stale: send it all
    int rc = http_parse_range(range, size, &a, &b);
    char cr[96], disp[256];
    if (rc < 0) {
        close(fd);
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
        snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)size);
        MHD_add_response_header(resp, "Content-Range", cr);
        MHD_add_response_header(resp, "ETag", etag);
        return http_queue(r, 416, resp);
    }
    struct MHD_Response *resp = rc == 1 ? MHD_create_response_from_fd_at_offset64(b - a + 1, fd, a)
                                        : MHD_create_response_from_fd64(size, fd);
    if (!resp) { close(fd); return MHD_NO; }
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "ETag", etag);
    MHD_add_response_header(resp, "Accept-Ranges", "bytes");
    snprintf(disp, sizeof disp, "attachment; filename=\"%s\"", dl_name);
    MHD_add_response_header(resp, "Content-Disposition", disp);
    if (rc == 1) {
        snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)a, (unsigned long long)b,
                 (unsigned long long)size);
        MHD_add_response_header(resp, "Content-Range", cr);
        r->resp_bytes = (int64_t)(b - a + 1);
        return http_queue(r, 206, resp);
    }
    r->resp_bytes = (int64_t)size;
    return http_queue(r, 200, resp);
}

int api_adapter_tar(Req *r) {
    char dir[PATH_MAX], tag[48];
    if (adapter_dir(r, dir, sizeof dir, tag, sizeof tag)) return MHD_YES;
    const char *id = r->params[0];
    char src[2][PATH_MAX + 64], dl[PATH_MAX], tarp[PATH_MAX + 64], side[PATH_MAX + 80];
    int64_t newest = 0;
    for (int i = 0; i < 2; i++) {
        snprintf(src[i], sizeof src[i], "%s/%s", dir, ADAPTER_FILES[i]);
        int64_t m = mtime_of(src[i]);
        if (m < 0) return http_error(r, 404, "invalid_request_error", "adapter_not_ready", "id",
                                     "The adapter of job %s (%s) has no %s", id, tag, ADAPTER_FILES[i]);
        if (m > newest) newest = m;
    }
    snprintf(dl, sizeof dl, "%s/jobs/%s/downloads", r->srv->data_dir, id);
    snprintf(tarp, sizeof tarp, "%s/adapter-%s.tar", dl, tag);
    snprintf(side, sizeof side, "%s.sha256", tarp);
    char hex[65];
    pthread_mutex_lock(&build_mu);
    int64_t tm = mtime_of(tarp);
    int ok = 1, full = 0;
    if (tm < 0 || tm < newest) {
        Err e;
        const char *paths[2] = {src[0], src[1]};
        int rc = fs_mkdirs(dl, NULL) ? (errno == ENOSPC || errno == EDQUOT ? -2 : -1)
                                     : tar_write_files(tarp, ADAPTER_FILES, paths, 2, hex, &e);
        ok = rc == 0;
        full = rc == -2;
        if (ok) {
            char line[80];
            snprintf(line, sizeof line, "%s\n", hex);
            fs_write_atomic(side, line, strlen(line), NULL);
        }
    } else {
        ok = cached_sha(tarp, side, hex) == 0;
    }
    pthread_mutex_unlock(&build_mu);
    if (full)  // the adapter itself is whole: its files are still served one by one
        return http_error(r, 507, "server_error", "insufficient_storage", NULL, "The data directory is full: the "
                          "adapter archive cannot be built; its files download one by one (/adapter/FILE) meanwhile");
    if (!ok) return http_500(r, "cannot build the adapter archive");
    char name[128];
    snprintf(name, sizeof name, "%s-adapter%s%s.tar", id, strcmp(tag, "final") ? "-" : "", strcmp(tag, "final") ? tag : "");
    return serve_file(r, tarp, hex, "application/x-tar", name);
}

int api_adapter_file(Req *r) {
    const char *file = r->params[1];
    int which = -1;
    for (int i = 0; i < 2; i++)
        if (!strcmp(file, ADAPTER_FILES[i])) which = i;
    if (which < 0)
        return http_error(r, 404, "invalid_request_error", "not_found", "file",
                          "An adapter has two files: adapter_config.json and adapter_model.safetensors");
    char dir[PATH_MAX], tag[48];
    if (adapter_dir(r, dir, sizeof dir, tag, sizeof tag)) return MHD_YES;
    char path[PATH_MAX + 64], dl[PATH_MAX], side[PATH_MAX + 128];
    snprintf(path, sizeof path, "%s/%s", dir, ADAPTER_FILES[which]);
    if (mtime_of(path) < 0)
        return http_error(r, 404, "invalid_request_error", "adapter_not_ready", "id", "The adapter has no %s",
                          ADAPTER_FILES[which]);
    snprintf(dl, sizeof dl, "%s/jobs/%s/downloads", r->srv->data_dir, r->params[0]);
    fs_mkdirs(dl, NULL);
    snprintf(side, sizeof side, "%s/%s-%s.sha256", dl, tag, ADAPTER_FILES[which]);
    char hex[65];
    pthread_mutex_lock(&build_mu);
    int bad = cached_sha(path, side, hex);
    pthread_mutex_unlock(&build_mu);
    if (bad) return http_500(r, "cannot read the adapter file");
    return serve_file(r, path, hex, which == 0 ? "application/json" : "application/octet-stream", ADAPTER_FILES[which]);
}
