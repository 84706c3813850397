/* tokenizer_text.c: buffers, UTF-8 and Unicode normalization for the tokenizer.
 *
 * Normalization follows UAX #15: full decomposition (tables in tokenizer_unidata.c,
 * Hangul by rule), canonical reordering, then canonical composition for the C forms.
 * Text is processed in segments that end before an ASCII byte: an ASCII character is
 * a starter that never composes with what precedes it, so each segment normalizes
 * independently and pure-ASCII text is copied straight through. */
#include "tokenizer_text.h"

#include <stdlib.h>
#include <string.h>

#include "tokenizer_unidata.h"

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) abort();  // out of memory: nothing sensible to return from deep in a loop
    return q;
}

void buf_put(Buf *b, const void *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void buf_putc(Buf *b, char c) { buf_put(b, &c, 1); }

void buf_put_cp(Buf *b, uint32_t cp) {
    char u[4];
    int k;
    if (cp < 0x80) { u[0] = (char)cp; k = 1; }
    else if (cp < 0x800) { u[0] = (char)(0xC0 | cp >> 6); u[1] = (char)(0x80 | (cp & 63)); k = 2; }
    else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12); u[1] = (char)(0x80 | (cp >> 6 & 63)); u[2] = (char)(0x80 | (cp & 63)); k = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18); u[1] = (char)(0x80 | (cp >> 12 & 63));
        u[2] = (char)(0x80 | (cp >> 6 & 63)); u[3] = (char)(0x80 | (cp & 63)); k = 4;
    }
    buf_put(b, u, (size_t)k);
}

void buf_free(Buf *b) { free(b->p); memset(b, 0, sizeof *b); }

void idvec_push(IdVec *v, int32_t id) {
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->p = xrealloc(v->p, v->cap * sizeof *v->p);
    }
    v->p[v->n++] = id;
}

void idvec_free(IdVec *v) { free(v->p); memset(v, 0, sizeof *v); }

/* Valid range of the second byte of a sequence led by b0 (Unicode Table 3-7). */
static void utf8_second_range(unsigned b0, unsigned *lo, unsigned *hi) {
    *lo = 0x80; *hi = 0xBF;
    if (b0 == 0xE0) *lo = 0xA0;
    else if (b0 == 0xED) *hi = 0x9F;
    else if (b0 == 0xF0) *lo = 0x90;
    else if (b0 == 0xF4) *hi = 0x8F;
}

static int utf8_width(unsigned b0) {
    if (b0 < 0x80) return 1;
    if (b0 >= 0xC2 && b0 <= 0xDF) return 2;
    if (b0 >= 0xE0 && b0 <= 0xEF) return 3;
    if (b0 >= 0xF0 && b0 <= 0xF4) return 4;
    return 0;
}

/* Length of the longest prefix of s[0..n) that is a valid start of a sequence (at least 1
 * byte for an invalid lead); equals the full width when the sequence is complete. */
static int utf8_prefix(const unsigned char *s, size_t n, int *width) {
    int w = utf8_width(s[0]);
    *width = w;
    if (w <= 1) return 1;
    unsigned lo, hi;
    utf8_second_range(s[0], &lo, &hi);
    if (n < 2 || s[1] < lo || s[1] > hi) return 1;
    for (int k = 2; k < w; k++)
        if ((size_t)k >= n || (s[k] & 0xC0) != 0x80) return k;
    return w;
}

int utf8_next(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) { *cp = u[0]; return 1; }
    int w, k = utf8_prefix(u, n, &w);
    if (w == 0 || k != w) return 0;
    uint32_t c = u[0] & (0x7F >> w);
    for (int i = 1; i < w; i++) c = c << 6 | (u[i] & 63);
    *cp = c;
    return w;
}

size_t utf8_check(const char *s, size_t n) {
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        if ((unsigned char)s[i] < 0x80) { i++; continue; }
        int k = utf8_next(s + i, n - i, &cp);
        if (!k) return i;
        i += (size_t)k;
    }
    return n;
}

void utf8_lossy(Buf *out, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        int w, k = utf8_prefix((const unsigned char *)s + i, n - i, &w);
        if (w != 0 && k == w) buf_put(out, s + i, (size_t)k);
        else buf_put(out, "\xEF\xBF\xBD", 3);
        i += (size_t)k;
    }
}

int uni_is_space(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static int uni_ccc_of(uint32_t c) {
    if (c < 0x300) return 0;
    int lo = 0, hi = uni_ccc_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (c < uni_ccc[mid].lo) hi = mid - 1;
        else if (c > uni_ccc[mid].hi) lo = mid + 1;
        else return uni_ccc[mid].ccc;
    }
    return 0;
}

static const UniDecomp *uni_decomp_of(uint32_t c) {
    int lo = 0, hi = uni_decomp_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (c < uni_decomp[mid].cp) hi = mid - 1;
        else if (c > uni_decomp[mid].cp) lo = mid + 1;
        else return &uni_decomp[mid];
    }
    return NULL;
}

enum { H_SBASE = 0xAC00, H_LBASE = 0x1100, H_VBASE = 0x1161, H_TBASE = 0x11A7,
       H_LCOUNT = 19, H_VCOUNT = 21, H_TCOUNT = 28, H_NCOUNT = 588, H_SCOUNT = 11172 };

/* Primary composite of (a, b), or 0 when the pair does not compose. */
static uint32_t uni_compose(uint32_t a, uint32_t b) {
    if (a >= H_LBASE && a < H_LBASE + H_LCOUNT && b >= H_VBASE && b < H_VBASE + H_VCOUNT)
        return H_SBASE + ((a - H_LBASE) * H_VCOUNT + (b - H_VBASE)) * H_TCOUNT;
    if (a >= H_SBASE && a < H_SBASE + H_SCOUNT && (a - H_SBASE) % H_TCOUNT == 0 &&
        b > H_TBASE && b < H_TBASE + H_TCOUNT)
        return a + (b - H_TBASE);
    int lo = 0, hi = uni_comp_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const UniComp *m = &uni_comp[mid];
        if (a < m->first || (a == m->first && b < m->second)) hi = mid - 1;
        else if (a > m->first || b > m->second) lo = mid + 1;
        else return m->composite;
    }
    return 0;
}

typedef struct { uint32_t *cp; size_t n, cap; } CpVec;

static void cpvec_push(CpVec *v, uint32_t c) {
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->cp = xrealloc(v->cp, v->cap * sizeof *v->cp);
    }
    v->cp[v->n++] = c;
}

/* Appends the full decomposition of c (compatibility too when compat) to v. */
static void uni_decompose_cp(uint32_t c, int compat, CpVec *v) {
    if (c >= H_SBASE && c < H_SBASE + H_SCOUNT) {
        uint32_t s = c - H_SBASE;
        cpvec_push(v, H_LBASE + s / H_NCOUNT);
        cpvec_push(v, H_VBASE + (s % H_NCOUNT) / H_TCOUNT);
        if (s % H_TCOUNT) cpvec_push(v, H_TBASE + s % H_TCOUNT);
        return;
    }
    const UniDecomp *d = c < 0xA0 ? NULL : uni_decomp_of(c);
    if (!d) { cpvec_push(v, c); return; }
    int off = d->canon_off, len = d->canon_len;
    if (compat && d->compat_len) { off = d->compat_off; len = d->compat_len; }
    if (!len) { cpvec_push(v, c); return; }
    for (int i = 0; i < len; i++) cpvec_push(v, uni_pool[off + i]);
}

/* Normalizes one segment s[0..n) (valid UTF-8) into out using scratch v. */
static void uni_normalize_segment(int form, const char *s, size_t n, CpVec *v, Buf *out) {
    int compat = form == UNI_NFKC || form == UNI_NFKD;
    v->n = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        int k = utf8_next(s + i, n - i, &c);
        if (!k) { c = 0xFFFD; k = 1; }  // callers validate first; never reached on valid input
        uni_decompose_cp(c, compat, v);
        i += (size_t)k;
    }
    // canonical ordering: stable insertion sort of each run of non-starters by class
    for (size_t i = 1; i < v->n; i++) {
        int cc = uni_ccc_of(v->cp[i]);
        if (!cc) continue;
        size_t j = i;
        uint32_t c = v->cp[i];
        while (j > 0) {
            int pc = uni_ccc_of(v->cp[j - 1]);
            if (pc <= cc) break;
            v->cp[j] = v->cp[j - 1];
            j--;
        }
        v->cp[j] = c;
    }
    if (form == UNI_NFC || form == UNI_NFKC) {
        size_t w = 0;
        long starter = -1;
        int prev_cc = -1;  // class of the last character kept after the starter; -1: none
        for (size_t i = 0; i < v->n; i++) {
            uint32_t c = v->cp[i];
            int cc = uni_ccc_of(c);
            if (starter >= 0) {
                int blocked = prev_cc != -1 && (prev_cc == 0 || prev_cc >= cc);
                uint32_t p = blocked ? 0 : uni_compose(v->cp[starter], c);
                if (p) { v->cp[starter] = p; continue; }
            }
            if (cc == 0) { starter = (long)w; prev_cc = -1; }
            else prev_cc = cc;
            v->cp[w++] = c;
        }
        v->n = w;
    }
    for (size_t i = 0; i < v->n; i++) buf_put_cp(out, v->cp[i]);
}

void uni_normalize(int form, const char *s, size_t n, Buf *out) {
    CpVec v = {0};
    size_t i = 0;
    while (i < n) {
        if ((unsigned char)s[i] < 0x80 && (i + 1 == n || (unsigned char)s[i + 1] < 0x80)) {
            size_t j = i + 1;
            while (j < n && (unsigned char)s[j] < 0x80 && (j + 1 == n || (unsigned char)s[j + 1] < 0x80)) j++;
            buf_put(out, s + i, j - i);
            i = j;
            continue;
        }
        size_t j = i + 1;
        while (j < n && (unsigned char)s[j] >= 0x80) j++;
        uni_normalize_segment(form, s + i, j - i, &v, out);
        i = j;
    }
    free(v.cp);
}

void uni_lowercase(const char *s, size_t n, Buf *out) {
    for (size_t i = 0; i < n;) {
        uint32_t c;
        int k = utf8_next(s + i, n - i, &c);
        if (!k) { c = 0xFFFD; k = 1; }
        i += (size_t)k;
        if (c < 0x80) { buf_putc(out, (char)(c >= 'A' && c <= 'Z' ? c + 32 : c)); continue; }
        int lo = 0, hi = uni_lower_n - 1, found = -1;
        while (lo <= hi) {
            int mid = (lo + hi) / 2;
            if (c < uni_lower[mid].cp) hi = mid - 1;
            else if (c > uni_lower[mid].cp) lo = mid + 1;
            else { found = mid; break; }
        }
        if (found < 0) buf_put_cp(out, c);
        else if (!uni_lower[found].n) buf_put_cp(out, uni_lower[found].lo);
        else for (int m = 0; m < uni_lower[found].n; m++) buf_put_cp(out, uni_pool[uni_lower[found].lo + m]);
    }
}
