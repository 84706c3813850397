/* tokenizer_pretok.c: normalizers, pre-tokenizers and the regex engine behind them.
 *
 * Semantics follow HF `tokenizers` (normalizer.rs, pattern.rs, split.rs, metaspace.rs,
 * byte_level.rs): every split produces the alternating match / non-match spans that
 * cover the text, a SplitDelimiterBehavior folds them, and empty pieces are dropped.
 * Char-predicate splitters (Whitespace, Digits, Punctuation ...) are expressed as
 * one-character regexes, which yields the same spans. */
#include "tokenizer_pretok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) abort();
    return q;
}

/* ---- regex ------------------------------------------------------------------------- */

/* Rewrites an Oniguruma pattern for PCRE2: outside a class \s -> [\s\x{85}],
 * \S -> [^\s\x{85}], \w -> [\w\p{M}\p{Pc}], \W -> [^\w\p{M}\p{Pc}]; inside a class the
 * extra members are appended (Oniguruma's \s includes U+0085 and its \w marks and
 * connector punctuation; PCRE2's UCP classes do not). */
static void regex_onig_rewrite(const char *p, size_t n, Buf *out) {
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[++i];
            if (d == 's') buf_put(out, in_class ? "\\s\\x{85}" : "[\\s\\x{85}]", in_class ? 8 : 10);
            else if (d == 'S' && !in_class) buf_put(out, "[^\\s\\x{85}]", 11);
            else if (d == 'w') buf_put(out, in_class ? "\\w\\p{M}\\p{Pc}" : "[\\w\\p{M}\\p{Pc}]", in_class ? 13 : 15);
            else if (d == 'W' && !in_class) buf_put(out, "[^\\w\\p{M}\\p{Pc}]", 16);
            else { buf_putc(out, '\\'); buf_putc(out, d); }
            continue;
        }
        if (!in_class && c == '[') {
            in_class = 1;
            buf_putc(out, c);
            if (i + 1 < n && p[i + 1] == '^') buf_putc(out, p[++i]);
            if (i + 1 < n && p[i + 1] == ']') buf_putc(out, p[++i]);  // a leading ] is literal
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') {  // POSIX [:name:]
            const char *end = strstr(p + i, ":]");
            size_t k = end && (size_t)(end - p) < n ? (size_t)(end - p) + 2 : i + 1;
            buf_put(out, p + i, k - i);
            i = k - 1;
            continue;
        }
        if (in_class && c == ']') in_class = 0;
        buf_putc(out, c);
    }
}

int regex_compile(Regex *r, const char *pat, size_t len, int literal, Err *e) {
    Buf b = {0};
    uint32_t opts = PCRE2_UTF | PCRE2_UCP;
    if (literal) { opts = PCRE2_UTF | PCRE2_LITERAL; buf_put(&b, pat, len); }
    else regex_onig_rewrite(pat, len, &b);
    int code;
    PCRE2_SIZE off;
    r->re = pcre2_compile((PCRE2_SPTR)(b.p ? b.p : ""), b.n, opts, &code, &off, NULL);
    buf_free(&b);
    if (!r->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return err_set(e, "regex \"%.80s\": %s (at offset %zu)", pat, (char *)msg, (size_t)off);
    }
    pcre2_jit_compile(r->re, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
    return 0;
}

void regex_free(Regex *r) {
    if (r->re) pcre2_code_free(r->re);
    r->re = NULL;
}

static void span_push(SpanVec *v, size_t a, size_t b) {
    if (v->n + 2 > v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->p = xrealloc(v->p, v->cap * sizeof *v->p);
    }
    v->p[v->n++] = a;
    v->p[v->n++] = b;
}

static size_t utf8_len_at(const char *s, size_t n, size_t i) {
    if (i >= n) return 1;
    unsigned char c = (unsigned char)s[i];
    size_t k = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    return i + k > n ? n - i : k;
}

int regex_find_all(const Regex *r, const char *s, size_t n, SpanVec *out, Err *e) {
    out->n = 0;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(r->re, NULL);
    if (!md) abort();
    size_t start = 0;
    long last_end = -1;  // end of the previous accepted match
    int rc = 0;
    while (start <= n) {
        rc = pcre2_match(r->re, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(r->re, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
        if (rc < 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (ms == me && (long)me == last_end) {  // no empty match right after a match
            start += utf8_len_at(s, n, start);
            continue;
        }
        span_push(out, ms, me);
        last_end = (long)me;
        start = me;
    }
    pcre2_match_data_free(md);
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return err_set(e, "regex match failed: %s", (char *)msg);
    }
    return 0;
}

/* ---- byte-level map ---------------------------------------------------------------- */

/* Printable bytes map to themselves; the 68 others (0x00-0x20, 0x7F-0xA0, 0xAD), in
 * order, to U+0100 onwards. */
uint32_t bytelevel_char(unsigned char b) {
    if (b <= 0x20) return 256u + b;
    if (b >= 0x7F && b <= 0xA0) return 256u + 33 + (b - 0x7Fu);
    if (b == 0xAD) return 256u + 67;
    return b;
}

int bytelevel_byte(uint32_t cp) {
    if (cp < 256) return (cp <= 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD) ? -1 : (int)cp;
    uint32_t r = cp - 256;
    if (r < 33) return (int)r;
    if (r < 67) return (int)(0x7F + r - 33);
    return r == 67 ? 0xAD : -1;
}

/* ---- parsing ------------------------------------------------------------------------- */

static int json_bool(json_t *o, const char *k, int dflt) {
    json_t *v = json_object_get(o, k);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static int parse_pattern(json_t *o, const char *where, Regex *re, Err *e) {
    json_t *pat = json_object_get(o, "pattern"), *v;
    if (json_is_object(pat) && json_is_string(v = json_object_get(pat, "String")))
        return regex_compile(re, json_string_value(v), json_string_length(v), 1, e);
    if (json_is_object(pat) && json_is_string(v = json_object_get(pat, "Regex"))) {
        if (regex_compile(re, json_string_value(v), json_string_length(v), 0, e)) return err_prefix(e, "%s.pattern", where);
        return 0;
    }
    return err_set_at(e, "pattern", 0, "%s: pattern must be {\"String\": ...} or {\"Regex\": ...}", where);
}

static const char *type_of(json_t *o) {
    json_t *t = json_object_get(o, "type");
    return json_is_string(t) ? json_string_value(t) : "";
}

static NormStep *norm_add(Normalizer *nz, int kind) {
    nz->s = xrealloc(nz->s, (size_t)(nz->n + 1) * sizeof *nz->s);
    NormStep *st = &nz->s[nz->n++];
    memset(st, 0, sizeof *st);
    st->kind = kind;
    return st;
}

static int normalizer_parse_one(Normalizer *nz, json_t *j, int depth, Err *e) {
    if (!json_is_object(j)) return err_set_at(e, "normalizer", 0, "normalizer: expected an object");
    const char *t = type_of(j);
    if (!strcmp(t, "Sequence")) {
        json_t *list = json_object_get(j, "normalizers");
        if (!json_is_array(list) || depth > 8) return err_set_at(e, "normalizer", 0, "normalizer Sequence: bad \"normalizers\"");
        size_t i;
        json_t *x;
        json_array_foreach(list, i, x) if (normalizer_parse_one(nz, x, depth + 1, e)) return -1;
        return 0;
    }
    static const char *forms[] = {"NFC", "NFD", "NFKC", "NFKD"};
    for (int f = 0; f < 4; f++) if (!strcmp(t, forms[f])) { norm_add(nz, NORM_NFC + f); return 0; }
    if (!strcmp(t, "Lowercase")) { norm_add(nz, NORM_LOWER); return 0; }
    if (!strcmp(t, "ByteLevel")) { norm_add(nz, NORM_BYTELEVEL); return 0; }
    if (!strcmp(t, "Strip")) {
        NormStep *s = norm_add(nz, NORM_STRIP);
        s->left = json_bool(j, "strip_left", 1);
        s->right = json_bool(j, "strip_right", 1);
        return 0;
    }
    if (!strcmp(t, "StripAccents")) {
        NormStep *s = norm_add(nz, NORM_STRIP_ACCENTS);
        return regex_compile(&s->re, "\\p{Mn}", 6, 0, e);
    }
    if (!strcmp(t, "Prepend") || !strcmp(t, "Append")) {
        int pre = t[0] == 'P';
        json_t *v = json_object_get(j, pre ? "prepend" : "append");
        if (!json_is_string(v)) return err_set_at(e, "normalizer", 0, "normalizer %s: missing string \"%s\"", t, pre ? "prepend" : "append");
        norm_add(nz, pre ? NORM_PREPEND : NORM_APPEND)->str = strdup(json_string_value(v));
        return 0;
    }
    if (!strcmp(t, "Replace")) {
        json_t *c = json_object_get(j, "content");
        if (!json_is_string(c)) return err_set_at(e, "normalizer", 0, "normalizer Replace: missing string \"content\"");
        NormStep *s = norm_add(nz, NORM_REPLACE);
        s->str = strdup(json_string_value(c));
        return parse_pattern(j, "normalizer Replace", &s->re, e);
    }
    return err_set_at(e, "normalizer", 0, "normalizer type \"%s\" is not supported", t);
}

int normalizer_parse(Normalizer *nz, json_t *j, Err *e) {
    memset(nz, 0, sizeof *nz);
    if (!j || json_is_null(j)) return 0;
    return normalizer_parse_one(nz, j, 0, e);
}

void normalizer_free(Normalizer *nz) {
    for (int i = 0; i < nz->n; i++) { free(nz->s[i].str); regex_free(&nz->s[i].re); }
    free(nz->s);
    memset(nz, 0, sizeof *nz);
}

static PreStep *pre_add(PreTokenizer *pt, int kind) {
    pt->s = xrealloc(pt->s, (size_t)(pt->n + 1) * sizeof *pt->s);
    PreStep *st = &pt->s[pt->n++];
    memset(st, 0, sizeof *st);
    st->kind = kind;
    return st;
}

static int pre_add_regex(PreTokenizer *pt, const char *re, int behavior, int invert, Err *e) {
    PreStep *s = pre_add(pt, PRE_SPLIT);
    s->behavior = behavior;
    s->invert = invert;
    return regex_compile(&s->re, re, strlen(re), 0, e);
}

static int parse_behavior(json_t *j, int dflt, int *out, Err *e) {
    json_t *b = json_object_get(j, "behavior");
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    if (!b) { *out = dflt; return 0; }
    for (int i = 0; i < 5; i++)
        if (json_is_string(b) && !strcmp(json_string_value(b), names[i])) { *out = i; return 0; }
    return err_set_at(e, "behavior", 0, "pre_tokenizer %s: unknown behavior", type_of(j));
}

#define WHITE_SPACE_CLASS "[\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}]"
#define PUNCT_CLASS "[\\p{P}!-/:-@\\[-`{-~]"
/* GPT-2's pre-split pattern, used by ByteLevel with use_regex. */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int pretokenizer_parse_one(PreTokenizer *pt, json_t *j, int depth, Err *e) {
    if (!json_is_object(j)) return err_set_at(e, "pre_tokenizer", 0, "pre_tokenizer: expected an object");
    const char *t = type_of(j);
    if (!strcmp(t, "Sequence")) {
        json_t *list = json_object_get(j, "pretokenizers");
        if (!json_is_array(list) || depth > 8) return err_set_at(e, "pre_tokenizer", 0, "pre_tokenizer Sequence: bad \"pretokenizers\"");
        size_t i;
        json_t *x;
        json_array_foreach(list, i, x) if (pretokenizer_parse_one(pt, x, depth + 1, e)) return -1;
        return 0;
    }
    if (!strcmp(t, "ByteLevel")) {
        PreStep *s = pre_add(pt, PRE_BYTELEVEL);
        s->add_prefix_space = json_bool(j, "add_prefix_space", 1);
        s->use_regex = json_bool(j, "use_regex", 1);
        if (s->use_regex) return regex_compile(&s->re, GPT2_PATTERN, sizeof GPT2_PATTERN - 1, 0, e);
        return 0;
    }
    if (!strcmp(t, "Metaspace")) {
        PreStep *s = pre_add(pt, PRE_METASPACE);
        json_t *r = json_object_get(j, "replacement"), *ps = json_object_get(j, "prepend_scheme");
        uint32_t cp;
        if (!json_is_string(r) || json_string_length(r) == 0 || json_string_length(r) > 4 ||
            utf8_next(json_string_value(r), json_string_length(r), &cp) != (int)json_string_length(r))
            return err_set_at(e, "replacement", 0, "pre_tokenizer Metaspace: \"replacement\" must be one character");
        memcpy(s->rep, json_string_value(r), json_string_length(r));
        if (json_is_string(ps)) {
            const char *v = json_string_value(ps);
            if (!strcmp(v, "always")) s->prepend = PREPEND_ALWAYS;
            else if (!strcmp(v, "first")) s->prepend = PREPEND_FIRST;
            else if (!strcmp(v, "never")) s->prepend = PREPEND_NEVER;
            else return err_set_at(e, "prepend_scheme", 0, "pre_tokenizer Metaspace: unknown prepend_scheme \"%s\"", v);
        } else s->prepend = json_bool(j, "add_prefix_space", 1) ? PREPEND_ALWAYS : PREPEND_NEVER;
        s->split = json_bool(j, "split", 1);
        return 0;
    }
    if (!strcmp(t, "Split")) {
        PreStep *s = pre_add(pt, PRE_SPLIT);
        s->invert = json_bool(j, "invert", 0);
        if (parse_behavior(j, SPLIT_REMOVED, &s->behavior, e)) return -1;
        return parse_pattern(j, "pre_tokenizer Split", &s->re, e);
    }
    if (!strcmp(t, "Whitespace")) return pre_add_regex(pt, "\\w+|[^\\w\\s]+", SPLIT_REMOVED, 1, e);
    if (!strcmp(t, "WhitespaceSplit")) return pre_add_regex(pt, WHITE_SPACE_CLASS, SPLIT_REMOVED, 0, e);
    if (!strcmp(t, "Punctuation")) {
        int b;
        if (parse_behavior(j, SPLIT_ISOLATED, &b, e)) return -1;
        return pre_add_regex(pt, PUNCT_CLASS, b, 0, e);
    }
    if (!strcmp(t, "BertPreTokenizer")) {
        if (pre_add_regex(pt, WHITE_SPACE_CLASS, SPLIT_REMOVED, 0, e)) return -1;
        return pre_add_regex(pt, PUNCT_CLASS, SPLIT_ISOLATED, 0, e);
    }
    if (!strcmp(t, "Digits"))
        return pre_add_regex(pt, "\\p{N}", json_bool(j, "individual_digits", 0) ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS, 0, e);
    if (!strcmp(t, "CharDelimiterSplit")) {
        json_t *d = json_object_get(j, "delimiter");
        if (!json_is_string(d)) return err_set_at(e, "delimiter", 0, "pre_tokenizer CharDelimiterSplit: missing \"delimiter\"");
        PreStep *s = pre_add(pt, PRE_SPLIT);
        s->behavior = SPLIT_REMOVED;
        return regex_compile(&s->re, json_string_value(d), json_string_length(d), 1, e);
    }
    return err_set_at(e, "pre_tokenizer", 0, "pre_tokenizer type \"%s\" is not supported", t);
}

int pretokenizer_parse(PreTokenizer *pt, json_t *j, Err *e) {
    memset(pt, 0, sizeof *pt);
    if (!j || json_is_null(j)) return 0;
    return pretokenizer_parse_one(pt, j, 0, e);
}

void pretokenizer_free(PreTokenizer *pt) {
    for (int i = 0; i < pt->n; i++) regex_free(&pt->s[i].re);
    free(pt->s);
    memset(pt, 0, sizeof *pt);
}

/* ---- normalizing --------------------------------------------------------------------- */

/* Replaces every match of re in s[0..n) by content; appends to out. */
static int replace_all(const Regex *re, const char *content, const char *s, size_t n, Buf *out, Err *e) {
    SpanVec m = {0};
    if (regex_find_all(re, s, n, &m, e)) { free(m.p); return -1; }
    size_t prev = 0, cl = strlen(content);
    for (size_t i = 0; i < m.n; i += 2) {
        buf_put(out, s + prev, m.p[i] - prev);
        buf_put(out, content, cl);
        prev = m.p[i + 1];
    }
    buf_put(out, s + prev, n - prev);
    free(m.p);
    return 0;
}

int normalizer_run(const Normalizer *nz, const char *s, size_t n, Buf *out, Err *e) {
    Buf a = {0}, b = {0};
    buf_put(&a, s, n);
    for (int k = 0; k < nz->n; k++) {
        const NormStep *st = &nz->s[k];
        b.n = 0;
        buf_put(&b, "", 0);
        switch (st->kind) {
        case NORM_NFC: case NORM_NFD: case NORM_NFKC: case NORM_NFKD:
            uni_normalize(UNI_NFC + (st->kind - NORM_NFC), a.p, a.n, &b);
            break;
        case NORM_LOWER: uni_lowercase(a.p, a.n, &b); break;
        case NORM_STRIP: {
            size_t lo = 0, hi = a.n;
            uint32_t cp;
            int k2;
            while (st->left && lo < hi && (k2 = utf8_next(a.p + lo, hi - lo, &cp)) && uni_is_space(cp)) lo += (size_t)k2;
            while (st->right && hi > lo) {
                size_t j = hi - 1;
                while (j > lo && ((unsigned char)a.p[j] & 0xC0) == 0x80) j--;
                if (!utf8_next(a.p + j, hi - j, &cp) || !uni_is_space(cp)) break;
                hi = j;
            }
            buf_put(&b, a.p + lo, hi - lo);
            break;
        }
        case NORM_STRIP_ACCENTS:
        case NORM_REPLACE:
            if (replace_all(&st->re, st->kind == NORM_REPLACE ? st->str : "", a.p, a.n, &b, e)) {
                buf_free(&a); buf_free(&b);
                return -1;
            }
            break;
        case NORM_PREPEND:
            if (a.n) buf_put(&b, st->str, strlen(st->str));
            buf_put(&b, a.p, a.n);
            break;
        case NORM_APPEND:
            buf_put(&b, a.p, a.n);
            if (a.n) buf_put(&b, st->str, strlen(st->str));
            break;
        case NORM_BYTELEVEL:
            for (size_t i = 0; i < a.n; i++) buf_put_cp(&b, bytelevel_char((unsigned char)a.p[i]));
            break;
        }
        Buf t = a; a = b; b = t;
    }
    out->n = 0;
    buf_put(out, a.p, a.n);
    buf_free(&a);
    buf_free(&b);
    return 0;
}

/* ---- pre-tokenizing ------------------------------------------------------------------ */

static void piece_push(PieceList *l, const char *s, size_t n, int origin) {
    if (!n) return;  // HF drops empty splits
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->p = xrealloc(l->p, l->cap * sizeof *l->p);
    }
    l->p[l->n++] = (Piece){l->text.n, n, origin};
    buf_put(&l->text, s, n);
}

void piecelist_free(PieceList *l) {
    free(l->p);
    buf_free(&l->text);
    memset(l, 0, sizeof *l);
}

/* Splits s[0..n) at the spans in m (matches) per behavior/invert; pushes pieces to out. */
static void split_by_spans(const char *s, size_t n, int origin, const SpanVec *m, int behavior, int invert,
                           PieceList *out) {
    // alternating (start, end, is_match) triples covering s
    size_t cnt = 0, cap = 2 * (m->n / 2) + 2;
    size_t *st = malloc(cap * sizeof *st), *en = malloc(cap * sizeof *en);
    int *mt = malloc(cap * sizeof *mt);
    if (!st || !en || !mt) abort();
    size_t prev = 0;
    for (size_t i = 0; i < m->n; i += 2) {
        if (prev != m->p[i]) { st[cnt] = prev; en[cnt] = m->p[i]; mt[cnt++] = invert; }
        st[cnt] = m->p[i]; en[cnt] = m->p[i + 1]; mt[cnt++] = !invert;
        prev = m->p[i + 1];
    }
    if (prev != n) { st[cnt] = prev; en[cnt] = n; mt[cnt++] = invert; }

    // fold per behavior into kept ranges (written back into st/en, rm = removed)
    size_t k = 0;
    int *rm = calloc(cnt + 1, sizeof *rm);
    if (!rm) abort();
    if (behavior == SPLIT_ISOLATED || behavior == SPLIT_REMOVED) {
        for (size_t i = 0; i < cnt; i++) { st[k] = st[i]; en[k] = en[i]; rm[k++] = behavior == SPLIT_REMOVED && mt[i]; }
    } else if (behavior == SPLIT_CONTIGUOUS) {
        int pm = 0;
        for (size_t i = 0; i < cnt; i++) {
            if (mt[i] == pm && k > 0) en[k - 1] = en[i];
            else { st[k] = st[i]; en[k] = en[i]; k++; }
            pm = mt[i];
        }
    } else if (behavior == SPLIT_MERGED_PREV) {
        int pm = 0;
        for (size_t i = 0; i < cnt; i++) {
            if (mt[i] && !pm && k > 0) en[k - 1] = en[i];
            else { st[k] = st[i]; en[k] = en[i]; k++; }
            pm = mt[i];
        }
    } else {  // SPLIT_MERGED_NEXT: the same fold from the right
        int pm = 0;
        size_t w = cnt;  // kept ranges fill st/en[w..cnt) from the back
        for (size_t i = cnt; i-- > 0;) {
            if (mt[i] && !pm && w < cnt) st[w] = st[i];
            else { w--; st[w] = st[i]; en[w] = en[i]; }
            pm = mt[i];
        }
        for (size_t i = w; i < cnt; i++) { st[k] = st[i]; en[k] = en[i]; k++; }
    }
    for (size_t i = 0; i < k; i++)
        if (!rm[i]) piece_push(out, s + st[i], en[i] - st[i], origin && st[i] == 0);
    free(st); free(en); free(mt); free(rm);
}

/* Spans of each occurrence of the string r (one UTF-8 character) in s[0..n). */
static void find_char(const char *r, const char *s, size_t n, SpanVec *m) {
    size_t rl = strlen(r);
    m->n = 0;
    for (size_t i = 0; i + rl <= n;) {
        if (!memcmp(s + i, r, rl)) { span_push(m, i, i + rl); i += rl; }
        else i++;
    }
}

/* Runs one step on one piece; pushes results to out. */
static int pre_step_piece(const PreStep *st, const char *s, size_t n, int origin, PieceList *out, SpanVec *m,
                          Buf *tmp, Err *e) {
    if (st->kind == PRE_SPLIT) {
        if (regex_find_all(&st->re, s, n, m, e)) return -1;
        split_by_spans(s, n, origin, m, st->behavior, st->invert, out);
        return 0;
    }
    if (st->kind == PRE_BYTELEVEL) {
        tmp->n = 0;
        if (st->add_prefix_space && s[0] != ' ') buf_putc(tmp, ' ');
        buf_put(tmp, s, n);
        PieceList words = {0};
        if (st->use_regex) {
            if (regex_find_all(&st->re, tmp->p, tmp->n, m, e)) { piecelist_free(&words); return -1; }
            split_by_spans(tmp->p, tmp->n, origin, m, SPLIT_ISOLATED, 0, &words);
        } else piece_push(&words, tmp->p, tmp->n, origin);
        Buf mapped = {0};
        for (size_t w = 0; w < words.n; w++) {
            mapped.n = 0;
            const char *ws = words.text.p + words.p[w].off;
            for (size_t i = 0; i < words.p[w].len; i++) buf_put_cp(&mapped, bytelevel_char((unsigned char)ws[i]));
            piece_push(out, mapped.p, mapped.n, words.p[w].origin);
        }
        buf_free(&mapped);
        piecelist_free(&words);
        return 0;
    }
    // PRE_METASPACE
    tmp->n = 0;
    size_t rl = strlen(st->rep);
    int starts = (n >= rl && !memcmp(s, st->rep, rl)) || s[0] == ' ';  // as after replacing spaces
    if (!starts && (st->prepend == PREPEND_ALWAYS || (st->prepend == PREPEND_FIRST && origin))) buf_put(tmp, st->rep, rl);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') buf_put(tmp, st->rep, rl);
        else buf_putc(tmp, s[i]);
    }
    if (!st->split) { piece_push(out, tmp->p, tmp->n, origin); return 0; }
    find_char(st->rep, tmp->p, tmp->n, m);
    split_by_spans(tmp->p, tmp->n, origin, m, SPLIT_MERGED_NEXT, 0, out);
    return 0;
}

int pretokenizer_run(const PreTokenizer *pt, const char *s, size_t n, int origin, PieceList *out, SpanVec *spans,
                     Err *e) {
    if (!n) return 0;
    if (pt->n == 0) { piece_push(out, s, n, origin); return 0; }
    PieceList a = {0}, b = {0};
    Buf scratch = {0};
    piece_push(&a, s, n, origin);
    int rc = 0;
    for (int k = 0; k < pt->n && !rc; k++) {
        PieceList *dst = k == pt->n - 1 ? out : &b;
        if (dst == &b) { b.n = 0; b.text.n = 0; }
        for (size_t i = 0; i < a.n && !rc; i++)
            rc = pre_step_piece(&pt->s[k], a.text.p + a.p[i].off, a.p[i].len, a.p[i].origin, dst, spans, &scratch, e);
        if (dst == &b) { PieceList t = a; a = b; b = t; }
    }
    piecelist_free(&a);
    piecelist_free(&b);
    buf_free(&scratch);
    return rc;
}
