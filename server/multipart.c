/* multipart.c: streaming multipart/form-data parser (see multipart.h).
 *
 * The stream is treated as if it began with CRLF, so every delimiter is the same byte
 * string "\r\n--BOUNDARY". Unconsumed bytes live in one growable buffer; while inside a
 * part, all but the last (delimiter length - 1) bytes are handed out at once, since a
 * delimiter can straddle two fed chunks. */
#include "multipart.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MP_MAX_HEADERS 16384

enum { MP_PREAMBLE, MP_AFTER_DELIM, MP_HEADERS, MP_BODY, MP_DONE };

struct Multipart {
    MultipartCallbacks cb;
    char delim[80];       // "\r\n--" + boundary
    size_t dlen;
    int state;
    char *buf;            // unconsumed bytes
    size_t len, cap;
};

/* Copies the value of a `key=value` or `key="value"` parameter out of a header value. */
static int mp_param(const char *hv, const char *key, char *out, size_t cap) {
    size_t kl = strlen(key);
    const char *p = hv;
    out[0] = 0;
    while ((p = strchr(p, ';')) != NULL) {
        p++;
        while (*p == ' ' || *p == '\t') p++;
        if (strncasecmp(p, key, kl) || p[kl] != '=') continue;
        p += kl + 1;
        size_t o = 0;
        if (*p == '"') {
            p++;
            while (*p && *p != '"') {
                if (*p == '\\' && p[1]) p++;
                if (o + 1 < cap) out[o++] = *p;
                p++;
            }
        } else {
            while (*p && *p != ';' && *p != ' ' && *p != '\t') {
                if (o + 1 < cap) out[o++] = *p;
                p++;
            }
        }
        out[o] = 0;
        return 1;
    }
    return 0;
}

Multipart *multipart_new(const char *content_type, const MultipartCallbacks *cb, Err *e) {
    if (!content_type || strncasecmp(content_type, "multipart/form-data", 19)) {
        err_set_at(e, "Content-Type", 0, "expected a multipart/form-data body");
        return NULL;
    }
    char b[128];
    if (!mp_param(content_type, "boundary", b, sizeof b) || !b[0] || strlen(b) > 70) {
        err_set_at(e, "Content-Type", 0, "multipart/form-data without a valid boundary parameter");
        return NULL;
    }
    Multipart *m = calloc(1, sizeof *m);
    if (!m) { err_set(e, "out of memory"); return NULL; }
    m->cb = *cb;
    m->dlen = (size_t)snprintf(m->delim, sizeof m->delim, "\r\n--%s", b);
    m->state = MP_PREAMBLE;
    m->cap = 4096;
    m->buf = malloc(m->cap);
    if (!m->buf) { free(m); err_set(e, "out of memory"); return NULL; }
    memcpy(m->buf, "\r\n", 2);  // the virtual CRLF before the first delimiter
    m->len = 2;
    return m;
}

/* Parses one part's header block [h, h+n) and announces the part. */
static int mp_begin_part(Multipart *m, const char *h, size_t n, Err *e) {
    char name[256] = "", filename[512] = "", ctype[256] = "";
    int have_disp = 0;
    const char *end = h + n;
    while (h < end) {
        const char *eol = h;
        while (eol + 1 < end && !(eol[0] == '\r' && eol[1] == '\n')) eol++;
        if (eol + 1 >= end) eol = end;
        size_t ll = (size_t)(eol - h);
        char line[4096];
        if (ll >= sizeof line) return err_set_at(e, "file", 0, "multipart header line too long");
        memcpy(line, h, ll);
        line[ll] = 0;
        char *colon = strchr(line, ':');
        if (colon) {
            *colon = 0;
            char *v = colon + 1;
            while (*v == ' ' || *v == '\t') v++;
            if (!strcasecmp(line, "Content-Disposition")) {
                if (strncasecmp(v, "form-data", 9))
                    return err_set_at(e, "file", 0, "multipart part is not form-data");
                have_disp = 1;
                mp_param(v, "name", name, sizeof name);
                mp_param(v, "filename", filename, sizeof filename);
            } else if (!strcasecmp(line, "Content-Type")) {
                snprintf(ctype, sizeof ctype, "%s", v);
            }
        } else if (ll) {
            return err_set_at(e, "file", 0, "malformed multipart header line");
        }
        h = eol + 2;
    }
    if (!have_disp || !name[0])
        return err_set_at(e, "file", 0, "multipart part without a Content-Disposition name");
    if (m->cb.on_begin && m->cb.on_begin(m->cb.ctx, name, filename, ctype))
        return err_set_at(e, "file", 0, "upload stopped");
    return 0;
}

/* Runs the state machine over the buffered bytes; consumes what it can. */
static int mp_run(Multipart *m, Err *e) {
    size_t pos = 0;
    for (;;) {
        char *p = m->buf + pos;
        size_t avail = m->len - pos;
        if (m->state == MP_DONE) { pos = m->len; break; }
        if (m->state == MP_PREAMBLE || m->state == MP_BODY) {
            char *hit = memmem(p, avail, m->delim, m->dlen);
            if (hit) {
                size_t k = (size_t)(hit - p);
                if (m->state == MP_BODY) {
                    if (k && m->cb.on_data && m->cb.on_data(m->cb.ctx, p, k))
                        return err_set_at(e, "file", 0, "upload stopped");
                    if (m->cb.on_end && m->cb.on_end(m->cb.ctx)) return err_set_at(e, "file", 0, "upload stopped");
                }
                pos += k + m->dlen;
                m->state = MP_AFTER_DELIM;
                continue;
            }
            size_t keep = m->dlen - 1;
            if (avail > keep) {
                size_t out = avail - keep;
                if (m->state == MP_BODY && m->cb.on_data && m->cb.on_data(m->cb.ctx, p, out))
                    return err_set_at(e, "file", 0, "upload stopped");
                pos += out;
            }
            break;
        }
        if (m->state == MP_AFTER_DELIM) {
            while (avail && (*p == ' ' || *p == '\t')) { p++; pos++; avail--; }  // transport padding
            if (avail < 2) break;
            if (p[0] == '-' && p[1] == '-') { m->state = MP_DONE; continue; }
            if (p[0] == '\r' && p[1] == '\n') { pos += 2; m->state = MP_HEADERS; continue; }
            return err_set_at(e, "file", 0, "malformed multipart delimiter line");
        }
        /* MP_HEADERS */
        if (avail >= 2 && p[0] == '\r' && p[1] == '\n') {  // a part without headers
            return err_set_at(e, "file", 0, "multipart part without a Content-Disposition name");
        }
        char *hend = memmem(p, avail, "\r\n\r\n", 4);
        if (!hend) {
            if (avail > MP_MAX_HEADERS) return err_set_at(e, "file", 0, "multipart part headers too long");
            break;
        }
        size_t hn = (size_t)(hend - p);
        if (hn > MP_MAX_HEADERS) return err_set_at(e, "file", 0, "multipart part headers too long");
        if (mp_begin_part(m, p, hn, e)) return -1;
        pos += hn + 4;
        m->state = MP_BODY;
    }
    memmove(m->buf, m->buf + pos, m->len - pos);
    m->len -= pos;
    return 0;
}

int multipart_feed(Multipart *m, const char *data, size_t n, Err *e) {
    if (m->state == MP_DONE) return 0;  // epilogue: ignored
    if (m->len + n > m->cap) {
        size_t cap = m->cap;
        while (cap < m->len + n) cap *= 2;
        char *nb = realloc(m->buf, cap);
        if (!nb) return err_set(e, "out of memory");
        m->buf = nb;
        m->cap = cap;
    }
    memcpy(m->buf + m->len, data, n);
    m->len += n;
    return mp_run(m, e);
}

int multipart_finish(Multipart *m, Err *e) {
    if (m->state != MP_DONE)
        return err_set_at(e, "file", 0, "multipart body ended before its closing boundary");
    return 0;
}

void multipart_free(Multipart *m) {
    if (!m) return;
    free(m->buf);
    free(m);
}
