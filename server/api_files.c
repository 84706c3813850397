/* api_files.c: /v1/files: dataset upload (multipart, raw body, or import from a URL), list,
 * retrieve, content, delete.
 *
 * An upload is streamed to a temp file under DATA/files/ as it arrives (never held whole in
 * memory), then validated line by line with data_validate_jsonl() (a bad line is a 400 that
 * names the line and the field), and only then renamed to files/FILE_ID.jsonl and recorded.
 * So a file object always refers to a complete, valid dataset. An import by URL refuses
 * internal addresses (netaddr_curl.h) unless the server runs with --allow-internal-urls. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "fsutil.h"
#include "api.h"
#include "data.h"
#include "multipart.h"
#include "netaddr_curl.h"
#include "results.h"
#include "srv_util.h"

enum { UP_RAW = 1, UP_MULTIPART = 2 };

/* State of one streamed upload. */
typedef struct {
    Server *srv;
    int mode;
    int fd;
    char tmp[PATH_MAX];
    int64_t bytes;
    Multipart *mp;
    int in_file, saw_file, field_purpose;
    char filename[256];
    char purpose[64];
    size_t purpose_len;
    Err err;              // why the file part stopped (size limit, disk)
    int err_status;
} Upload;

static void upload_free(void *p) {
    Upload *u = p;
    if (!u) return;
    if (u->fd >= 0) close(u->fd);
    if (u->tmp[0]) unlink(u->tmp);
    multipart_free(u->mp);
    free(u);
}

/* The name a file is listed under (never a path: the bytes are stored as files/FILE_ID.jsonl):
 * the last component of what the client sent, control characters and bytes that are not UTF-8
 * made '_', cut at a character boundary to fit out (cap bytes with the NUL); "upload.jsonl"
 * when nothing (or only "." or "..") is left. */
static void clean_filename(const char *in, char *out, size_t cap) {
    const char *base = in;
    for (const char *p = in; *p; p++)
        if (*p == '/' || *p == '\\') base = p + 1;
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)base; *p;) {
        size_t u = utf8_len(p);
        if (!u || (u == 1 && (*p < 0x20 || *p == 0x7f))) {
            if (o + 2 > cap) break;
            out[o++] = '_';
            p++;
            continue;
        }
        if (o + u + 1 > cap) break;
        memcpy(out + o, p, u);
        o += u;
        p += u;
    }
    out[o] = 0;
    if (!o || !strcmp(out, ".") || !strcmp(out, "..")) snprintf(out, cap, "upload.jsonl");
}

/* Creates DATA/files/.upload-XXXXXX; -1 on failure. */
static int upload_tmp(Server *srv, char *path, size_t cap) {
    char dir[SERVER_PATH + 16];
    snprintf(dir, sizeof dir, "%s/files", srv->data_dir);
    fs_mkdirs(dir, NULL);
    snprintf(path, cap, "%s/.upload-XXXXXX", dir);
    return mkostemp(path, O_CLOEXEC);
}

/* Appends to the temp file, enforcing the size limit. */
static int upload_write(Upload *u, const char *data, size_t n, Err *e, int *status) {
    if (u->bytes + (int64_t)n > u->srv->max_upload_bytes) {
        *status = 413;
        return err_set_at(e, "file", 0, "The file is larger than the upload limit of %lld bytes (--max-upload-bytes)",
                          (long long)u->srv->max_upload_bytes);
    }
    while (n) {
        ssize_t w = write(u->fd, data, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            // a full disk (or a file-size limit) is the operator's to fix, not a broken request
            int full = w < 0 && (errno == ENOSPC || errno == EDQUOT || errno == EFBIG);
            *status = full ? 507 : 500;
            return err_set_at(e, "file", 0, "cannot store the upload: %s%s", strerror(errno),
                              full ? " (the data directory is full: nothing was stored)" : "");
        }
        data += w;
        n -= (size_t)w;
        u->bytes += w;
    }
    return 0;
}

static int mp_begin(void *ctx, const char *name, const char *filename, const char *ctype) {
    (void)ctype;
    Upload *u = ctx;
    u->in_file = u->field_purpose = 0;
    if (!strcmp(name, "file")) {
        if (u->saw_file) return 0;  // a second file part is ignored
        u->saw_file = u->in_file = 1;
        clean_filename(filename, u->filename, sizeof u->filename);
    } else if (!strcmp(name, "purpose")) {
        u->field_purpose = 1;
        u->purpose_len = 0;
        u->purpose[0] = 0;
    }
    return 0;
}

static int mp_data(void *ctx, const char *data, size_t n) {
    Upload *u = ctx;
    if (u->in_file) return upload_write(u, data, n, &u->err, &u->err_status);
    if (u->field_purpose) {
        for (size_t i = 0; i < n && u->purpose_len + 1 < sizeof u->purpose; i++) u->purpose[u->purpose_len++] = data[i];
        u->purpose[u->purpose_len] = 0;
    }
    return 0;
}

static int mp_end(void *ctx) {
    Upload *u = ctx;
    u->in_file = u->field_purpose = 0;
    return 0;
}

int api_files_begin(Req *r) {
    const char *ct = http_header(r, "Content-Type");
    const char *fname = http_query(r, "filename");
    int multipart = ct && !strncasecmp(ct, "multipart/form-data", 19);
    int json = ct && !strncasecmp(ct, "application/json", 16);
    if (!multipart && json && !fname) return 0;  // {"url": ...}: collected as a JSON body
    if (!multipart && !fname) {
        http_pend(r, 400, "missing_filename", "filename",
                  "Send the dataset as multipart/form-data (fields 'file' and 'purpose'), as a raw body with "
                  "?filename=NAME, or as JSON {\"url\": ...} to import it");
        return -1;
    }
    Upload *u = calloc(1, sizeof *u);
    if (!u) { http_pend(r, 500, "server_error", NULL, "out of memory"); return -1; }
    u->srv = r->srv;
    u->fd = upload_tmp(r->srv, u->tmp, sizeof u->tmp);
    r->ctx = u;
    r->ctx_free = upload_free;
    if (u->fd < 0) {
        u->tmp[0] = 0;
        http_pend(r, 500, "server_error", NULL, "cannot create a temp file in the data directory");
        return -1;
    }
    if (multipart) {
        MultipartCallbacks cb = {mp_begin, mp_data, mp_end, u};
        Err e;
        u->mp = multipart_new(ct, &cb, &e);
        if (!u->mp) { http_pend(r, 400, "invalid_multipart", e.param, e.msg); return -1; }
        u->mode = UP_MULTIPART;
    } else {
        u->mode = UP_RAW;
        clean_filename(fname, u->filename, sizeof u->filename);
        const char *p = http_query(r, "purpose");
        snprintf(u->purpose, sizeof u->purpose, "%s", p ? p : "fine-tune");
    }
    return 1;
}

int api_files_body(Req *r, const char *data, size_t n) {
    Upload *u = r->ctx;
    if (u->mode == UP_RAW) {
        if (upload_write(u, data, n, &r->stream_err, &r->stream_status)) return -1;
        return 0;
    }
    if (multipart_feed(u->mp, data, n, &r->stream_err)) {
        r->stream_status = 400;
        if (u->err_status) {  // the file part stopped: size limit or disk
            r->stream_err = u->err;
            r->stream_status = u->err_status;
        }
        return -1;
    }
    return 0;
}

void file_path(const Server *srv, const FileRow *f, char *out, size_t cap) {
    snprintf(out, cap, "%s/files/%s.%s", srv->data_dir, f->id, strcmp(f->purpose, RESULTS_PURPOSE) ? "jsonl" : "csv");
}

/* The file object as the API shows it. */
static json_t *file_json(const FileRow *f) {
    return json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:n, s:I}", "id", f->id, "object", "file", "bytes",
                     (json_int_t)f->bytes, "created_at", (json_int_t)f->created_at, "filename", f->filename,
                     "purpose", f->purpose, "status", "processed", "status_details", "n_examples",
                     (json_int_t)f->n_examples);
}

/* Validates a complete, plain temp file and, if good, renames it into place and records it. */
static int file_commit_plain(Req *r, const char *tmp, const char *filename, const char *purpose, int64_t bytes) {
    if (bytes == 0)
        return http_error(r, 400, "invalid_request_error", "invalid_file", "file", "The file %s is empty", filename);
    int fd = open(tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return http_500(r, "cannot reopen the upload");
    void *map = mmap(NULL, (size_t)bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return http_500(r, "cannot map the upload");
    long n_ex = 0, lines = 0, chars = 0;
    Err e = {0};
    int bad = data_validate_jsonl(map, (size_t)bytes, filename, &n_ex, &e);
    for (const unsigned char *c = map, *end = c + bytes; c < end; c++) {
        lines += *c == '\n';
        chars += (*c & 0xC0) != 0x80;  // UTF-8 lead bytes: one a code point (the validator checked the encoding)
    }
    if (bytes > 0 && ((const char *)map)[bytes - 1] != '\n') lines++;  // a last line without its newline
    munmap(map, (size_t)bytes);
    if (bad) return http_error_from(r, 400, "invalid_file", &e);
    FileRow f;
    memset(&f, 0, sizeof f);
    id_new("file-", f.id);
    snprintf(f.filename, sizeof f.filename, "%s", filename);
    snprintf(f.purpose, sizeof f.purpose, "%s", purpose);
    f.bytes = bytes;
    f.n_examples = n_ex;
    f.created_at = now_s();
    char dst[PATH_MAX];
    snprintf(dst, sizeof dst, "%s/files/%s.jsonl", r->srv->data_dir, f.id);
    // the bytes reach the disk before the name does: a crash never leaves a listed, torn file
    int sfd = open(tmp, O_RDONLY | O_CLOEXEC);
    int synced = sfd >= 0 && fsync(sfd) == 0;
    if (sfd >= 0) close(sfd);
    if (!synced) return http_500(r, "cannot flush the upload: %s", strerror(errno));
    if (rename(tmp, dst)) return http_500(r, "cannot store the file: %s", strerror(errno));
    char fdir[PATH_MAX];
    snprintf(fdir, sizeof fdir, "%s/files", r->srv->data_dir);
    fs_fsync_dir(fdir);
    if (db_file_insert(r->srv->db, &f, &e)) {
        unlink(dst);
        return http_500(r, "%s", e.msg);
    }
    json_t *o = file_json(&f);
    json_object_set_new(o, "lines", json_integer(lines));
    json_object_set_new(o, "characters", json_integer(chars));
    return http_json(r, 200, o);
}

/* A gzip upload (.jsonl.gz, by its magic bytes) decompressed with zlib into a new temp file
 * (its path in out, its size in *bytes), at most the upload limit once decompressed; 0, or -1
 * with the HTTP error answered in *res. Not gzip: 1, nothing done. */
static int gunzip_upload(Req *r, const char *tmp, const char *filename, char *out, size_t cap, int64_t *bytes,
                         int *res) {
    unsigned char magic[2] = {0};
    int fd = open(tmp, O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? read(fd, magic, 2) : -1;
    if (fd >= 0) close(fd);
    if (got != 2 || magic[0] != 0x1f || magic[1] != 0x8b) return 1;
    gzFile gz = gzopen(tmp, "rb");
    int ofd = upload_tmp(r->srv, out, cap);
    if (!gz || ofd < 0) {
        if (gz) gzclose(gz);
        if (ofd >= 0) close(ofd), unlink(out);
        *res = http_500(r, "cannot decompress the upload");
        return -1;
    }
    char buf[1 << 16];
    int64_t total = 0;
    int n, bad = 0, werr = 0;
    while ((n = gzread(gz, buf, sizeof buf)) > 0 && !bad) {
        total += n;
        if (total > r->srv->max_upload_bytes) bad = 2;
        else if (write(ofd, buf, (size_t)n) != n) bad = 3, werr = errno;
    }
    int zerr = 0;
    if (n < 0) gzerror(gz, &zerr), bad = bad ? bad : 1;
    gzclose(gz);
    if (!bad && fsync(ofd)) bad = 3, werr = errno;
    close(ofd);
    if (bad) {
        unlink(out);
        *res = bad == 2 ? http_error(r, 413, "invalid_request_error", "file_too_large", "file",
                                     "%s is larger than the upload limit of %lld bytes once decompressed "
                                     "(--max-upload-bytes)", filename, (long long)r->srv->max_upload_bytes)
               : bad == 3 && (werr == ENOSPC || werr == EDQUOT || werr == EFBIG)
                   ? http_error(r, 507, "server_error", "insufficient_storage", "file",
                                "cannot store the decompressed upload: %s (the data directory is full: nothing was "
                                "stored)", strerror(werr))
               : bad == 3 ? http_500(r, "cannot store the decompressed upload")
                          : http_error(r, 400, "invalid_request_error", "invalid_file", "file",
                                       "%s looks like gzip but does not decompress (zlib error %d)", filename, zerr);
        return -1;
    }
    *bytes = total;
    return 0;
}

/* Validates a complete temp file (decompressed first when it is gzip) and, if good, renames it
 * into place and records it; the reply adds the file's lines and characters (code points). */
static int file_commit(Req *r, const char *tmp_in, const char *filename, const char *purpose, int64_t bytes) {
    if (strcmp(purpose, "fine-tune"))
        return http_error(r, 400, "invalid_request_error", "invalid_purpose", "purpose",
                          "'purpose' must be \"fine-tune\", got \"%s\"", purpose);
    char unz[PATH_MAX];
    int res = 0, gz = bytes > 0 ? gunzip_upload(r, tmp_in, filename, unz, sizeof unz, &bytes, &res) : 1;
    if (gz < 0) return res;
    const char *tmp = gz == 0 ? unz : tmp_in;
    res = file_commit_plain(r, tmp, filename, purpose, bytes);
    if (gz == 0) unlink(unz);  // no-op once committed (renamed)
    return res;
}

typedef struct { int fd; int64_t bytes, max; int too_big, werr; } Fetch;

static size_t fetch_write(char *p, size_t sz, size_t nm, void *ud) {
    Fetch *f = ud;
    size_t n = sz * nm;
    if (f->bytes + (int64_t)n > f->max) { f->too_big = 1; return 0; }
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(f->fd, p + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { f->werr = w < 0 ? errno : EIO; return 0; }
        off += (size_t)w;
    }
    f->bytes += (int64_t)n;
    return n;
}

/* POST /v1/files with {"url": ..., "filename"?, "purpose"?}: downloads with libcurl (http and
 * https only, size and time limits, internal addresses refused at connect time unless allowed:
 * netaddr_curl.h) into a temp file, then commits it like an upload. */
static int file_import(Req *r) {
    json_t *b = http_body_json(r);
    if (!b) return MHD_YES;
    const char *k;
    json_t *v;
    json_object_foreach(b, k, v) {
        if (strcmp(k, "url") && strcmp(k, "filename") && strcmp(k, "purpose")) {
            char key[64];
            snprintf(key, sizeof key, "%s", k);
            json_decref(b);
            return http_error(r, 400, "invalid_request_error", "unknown_parameter", key,
                              "Unknown field '%s' (an import takes url, filename, purpose)", key);
        }
        if (!json_is_string(v)) {
            char key[64];
            snprintf(key, sizeof key, "%s", k);
            json_decref(b);
            return http_error(r, 400, "invalid_request_error", "invalid_type", key, "'%s' must be a string", key);
        }
    }
    const char *url = json_string_value(json_object_get(b, "url"));
    if (!url || (strncasecmp(url, "http://", 7) && strncasecmp(url, "https://", 8))) {
        json_decref(b);
        return http_error(r, 400, "invalid_request_error", "invalid_url", "url",
                          "'url' must be an http:// or https:// URL of a JSONL file");
    }
    char filename[256], purpose[64];
    const char *fn = json_string_value(json_object_get(b, "filename"));
    if (!fn) {
        const char *q = strchr(url, '?');
        size_t ul = q ? (size_t)(q - url) : strlen(url);
        char path[1024];
        snprintf(path, sizeof path, "%.*s", (int)(ul < sizeof path ? ul : sizeof path - 1), url);
        const char *slash = strrchr(path, '/');
        fn = slash && slash[1] && (slash - path) > 8 ? slash + 1 : "import.jsonl";
        clean_filename(fn, filename, sizeof filename);
    } else {
        clean_filename(fn, filename, sizeof filename);
    }
    const char *pu = json_string_value(json_object_get(b, "purpose"));
    snprintf(purpose, sizeof purpose, "%s", pu ? pu : "fine-tune");
    char tmp[PATH_MAX];
    Fetch f = {upload_tmp(r->srv, tmp, sizeof tmp), 0, r->srv->max_upload_bytes, 0, 0};
    if (f.fd < 0) { json_decref(b); return http_500(r, "cannot create a temp file"); }
    CURL *c = curl_easy_init();
    char cerr[CURL_ERROR_SIZE] = "";
    NetGuard guard = {r->srv->allow_internal_urls, "", 0};
    netaddr_curl_guard(c, &guard);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->srv->max_upload_bytes);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)r->srv->import_timeout_s);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "lemo-import/1");
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fetch_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &f);
    CURLcode rc = curl_easy_perform(c);
    long http_code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http_code);
    curl_easy_cleanup(c);
    close(f.fd);
    int res;
    if (f.too_big || rc == CURLE_FILESIZE_EXCEEDED)
        res = http_error(r, 413, "invalid_request_error", "file_too_large", "url",
                         "The file at the URL is larger than the upload limit of %lld bytes",
                         (long long)r->srv->max_upload_bytes);
    else if (guard.refused[0])
        res = http_error(r, 400, "invalid_request_error", "url_not_allowed", "url",
                         "The URL leads to %s, an internal address (loopback, private or link-local): this server "
                         "does not import from those (started with --allow-internal-urls it would)", guard.refused);
    else if (f.werr == ENOSPC || f.werr == EDQUOT || f.werr == EFBIG)
        res = http_error(r, 507, "server_error", "insufficient_storage", "url",
                         "cannot store the download: %s (the data directory is full: nothing was stored)",
                         strerror(f.werr));
    else if (f.werr)
        res = http_500(r, "cannot store the download: %s", strerror(f.werr));
    else if (rc != CURLE_OK)
        res = http_error(r, 400, "invalid_request_error", "import_failed", "url", "Cannot download the URL (HTTP %ld): %s",
                         http_code, cerr[0] ? cerr : curl_easy_strerror(rc));
    else
        res = file_commit(r, tmp, filename, purpose, f.bytes);
    unlink(tmp);  // no-op once committed (renamed)
    json_decref(b);
    return res;
}

int api_files_create(Req *r) {
    Upload *u = r->ctx;
    if (!u) return file_import(r);
    if (r->stream_failed) return http_error_from(r, (unsigned)(r->stream_status ? r->stream_status : 400),
                                                 r->stream_status == 413   ? "file_too_large"
                                                 : r->stream_status == 507 ? "insufficient_storage"
                                                 : r->stream_status == 500 ? "server_error"
                                                                           : "invalid_file",
                                                 &r->stream_err);
    if (u->mode == UP_MULTIPART) {
        Err e;
        if (multipart_finish(u->mp, &e)) return http_error_from(r, 400, "invalid_multipart", &e);
        if (!u->saw_file)
            return http_error(r, 400, "invalid_request_error", "missing_file", "file",
                              "The multipart body has no 'file' field");
        if (!u->purpose[0])
            return http_error(r, 400, "invalid_request_error", "missing_purpose", "purpose",
                              "The multipart body has no 'purpose' field (use purpose=fine-tune)");
    }
    if (fsync(u->fd)) return http_500(r, "cannot store the upload");
    close(u->fd);
    u->fd = -1;
    int res = file_commit(r, u->tmp, u->filename, u->purpose, u->bytes);
    unlink(u->tmp);
    u->tmp[0] = 0;
    return res;
}

int api_files_list(Req *r) {
    int limit, asc;
    const char *after;
    if (http_list_params(r, 100, 10000, &limit, &after, &asc)) return MHD_YES;
    FileRow *rows;
    int n, more;
    Err e;
    int rc = db_file_list(r->srv->db, http_query(r, "purpose"), after, limit, asc, &rows, &n, &more, &e);
    if (rc == -2) return http_error(r, 400, "invalid_request_error", "invalid_cursor", "after", "Unknown 'after' id");
    if (rc) return http_500(r, "%s", e.msg);
    json_t *data = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(data, file_json(&rows[i]));
    json_t *out = json_pack("{s:s, s:o, s:b}", "object", "list", "data", data, "has_more", more);
    json_object_set_new(out, "first_id", n ? json_string(rows[0].id) : json_null());
    json_object_set_new(out, "last_id", n ? json_string(rows[n - 1].id) : json_null());
    free(rows);
    return http_json(r, 200, out);
}

/* Looks up the {id} of the path; replies 404 itself when there is no such file. */
static int file_lookup(Req *r, FileRow *f) {
    const char *id = r->params[0];
    Err e;
    int rc = id_valid(id, "file-") ? db_file_get(r->srv->db, id, f, &e) : 0;
    if (rc < 0) { http_500(r, "%s", e.msg); return -1; }
    if (rc == 0) { http_not_found(r, "file", id); return -1; }
    return 0;
}

int api_files_get(Req *r) {
    FileRow f;
    if (file_lookup(r, &f)) return MHD_YES;
    return http_json(r, 200, file_json(&f));
}

int api_files_content(Req *r) {
    FileRow f;
    if (file_lookup(r, &f)) return MHD_YES;
    char path[PATH_MAX];
    file_path(r->srv, &f, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        if (fd >= 0) close(fd);
        return http_500(r, "the stored file %s is missing", f.id);
    }
    struct MHD_Response *resp = MHD_create_response_from_fd64((uint64_t)st.st_size, fd);
    if (!resp) { close(fd); return MHD_NO; }
    MHD_add_response_header(resp, "Content-Type", strcmp(f.purpose, RESULTS_PURPOSE) ? "application/jsonl" : "text/csv");
    char disp[400];
    snprintf(disp, sizeof disp, "attachment; filename=\"%s\"", f.filename);
    for (char *p = disp + 22; *p && p[1]; p++)
        if (*p == '"' || *p == '\\') *p = '_';
    MHD_add_response_header(resp, "Content-Disposition", disp);
    r->resp_bytes = (int64_t)st.st_size;
    return http_queue(r, 200, resp);
}

int api_files_delete(Req *r) {
    FileRow f;
    if (file_lookup(r, &f)) return MHD_YES;
    Err e;
    int used = db_file_in_use(r->srv->db, f.id, &e);
    if (used > 0)
        return http_error(r, 409, "invalid_request_error", "file_in_use", "id",
                          "File %s is used by a job that has not finished; cancel the job first", f.id);
    if (used < 0 || db_file_delete(r->srv->db, f.id, &e) < 0)
        return http_500(r, "%s", e.msg);
    char path[PATH_MAX];
    file_path(r->srv, &f, path, sizeof path);
    unlink(path);
    return http_json(r, 200, json_pack("{s:s, s:s, s:b}", "id", f.id, "object", "file", "deleted", 1));
}
