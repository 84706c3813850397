/* api_web.c: the dashboard's static files (web/) for any GET outside /v1.
 *
 * Paths are checked segment by segment (no "..", no hidden files) and the resolved real path
 * must stay inside the web directory, so no request can read anything else. "/" and
 * directories serve their index.html. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"

static const char *mime_of(const char *path) {
    static const char *const map[][2] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
        {".json", "application/json"}, {".svg", "image/svg+xml"}, {".png", "image/png"},
        {".ico", "image/x-icon"}, {".txt", "text/plain; charset=utf-8"}, {".map", "application/json"},
        {".woff2", "font/woff2"}, {".webmanifest", "application/manifest+json"}};
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(dot, map[i][0])) return map[i][1];
    return "application/octet-stream";
}

/* 1 if every segment of url is a plain name (no "", ".", "..", hidden, backslash). */
static int web_path_ok(const char *url) {
    if (url[0] != '/' || strlen(url) > 1024 || strchr(url, '\\')) return 0;
    const char *p = url + 1;
    while (*p) {
        const char *s = strchr(p, '/');
        size_t n = s ? (size_t)(s - p) : strlen(p);
        if (n == 0 && s) return 0;
        if (n && p[0] == '.') return 0;
        p += n + (s ? 1 : 0);
    }
    return 1;
}

int api_web(Req *r) {
    const char *root = r->srv->web_dir;
    if (!root[0]) {
        if (strcmp(r->url, "/"))
            return http_error(r, 404, "invalid_request_error", "not_found", NULL, "No such page");
        static const char msg[] = "lemo is running. The dashboard files (web/) were not found: start the server "
                                  "with --web DIR. The API is under /v1.\n";
        struct MHD_Response *resp = MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
        r->resp_bytes = (int64_t)(sizeof msg - 1);
        return http_queue(r, 200, resp);
    }
    if (!web_path_ok(r->url)) return http_error(r, 404, "invalid_request_error", "not_found", NULL, "No such page");
    char path[PATH_MAX * 2], real[PATH_MAX];
    snprintf(path, sizeof path, "%s%s", root, r->url);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        size_t l = strlen(path);
        snprintf(path + l, sizeof path - l, "%sindex.html", path[l - 1] == '/' ? "" : "/");
    }
    size_t rl = strlen(root);
    if (!realpath(path, real) || strncmp(real, root, rl) || real[rl] != '/')
        return http_error(r, 404, "invalid_request_error", "not_found", NULL, "No such page");
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        return http_error(r, 404, "invalid_request_error", "not_found", NULL, "No such page");
    }
    struct MHD_Response *resp = MHD_create_response_from_fd64((uint64_t)st.st_size, fd);
    if (!resp) { close(fd); return MHD_NO; }
    MHD_add_response_header(resp, "Content-Type", mime_of(real));
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    r->resp_bytes = (int64_t)st.st_size;
    return http_queue(r, 200, resp);
}
