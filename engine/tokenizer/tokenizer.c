/* tokenizer.c: Hugging Face tokenizer.json (BPE) loading, encoding and decoding.
 *
 * The pipeline is HF `tokenizers`' own, stage by stage, because ids must match it
 * exactly: (1) added tokens that are not "normalized" are cut out of the raw text
 * (leftmost-longest, with their lstrip/rstrip/single_word flags); (2) each stretch in
 * between is normalized on its own, then cut again at "normalized" added tokens;
 * (3) each remaining stretch is pre-tokenized into words; (4) the BPE model turns each
 * word into ids; (5) the post-processor adds BOS/EOS when add_special is set. Decoding
 * runs the decoder chain over the token strings. The stages live in tokenizer_pretok.c
 * (normalizers, pre-tokenizers), tokenizer_bpe.c (model) and tokenizer_text.c (UTF-8,
 * Unicode); this file owns the added vocabulary, the post-processor and the decoder. */
#include "tokenizer.h"

#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_bpe.h"
#include "tokenizer_pretok.h"
#include "tokenizer_text.h"

typedef struct {
    char *content;
    size_t len;
    int32_t id;
    int single_word, lstrip, rstrip, normalized, special;
} AddedTok;

/* A byte trie over added-token strings; node 0 is the root. */
typedef struct {
    int32_t *child, *sibling, *tok;  // (n) first child, next sibling, added-token index or -1
    unsigned char *byte;             // (n) edge label into the node
    int32_t root[256];               // root's child per first byte (-1: none)
    size_t n, cap;
} Trie;

enum { DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_BYTELEVEL, DEC_METASPACE, DEC_BPE };
typedef struct {
    int kind;
    char *str;          // Replace content, Strip content char, Metaspace replacement, BPE suffix
    Regex re;           // Replace pattern
    int start, stop;    // Strip counts
    int prepend;        // Metaspace: prepend_scheme != never
} DecStep;

struct Tokenizer {
    Bpe bpe;
    Normalizer norm;
    PreTokenizer pre;
    AddedTok *added;
    int n_added;
    Trie trie_raw, trie_norm;   // added tokens matched before / after normalization
    int has_single_word;
    Regex word_re;              // one word character (Rust regex \w), for single_word
    StrMap added_map;           // content -> index into added
    int32_t *added_by_id;       // (n_total) id -> added index or -1
    int n_total;                // largest id + 1 over model and added tokens
    IdVec post_pre, post_post;  // ids the post-processor puts before / after the text
    DecStep *dec;
    int n_dec, has_decoder;
    int32_t cfg_eos;            // from a tokenizer_config.json beside the file, -1 if none
};

/* ---- added tokens ------------------------------------------------------------------ */

static void trie_init(Trie *t) {
    memset(t, 0, sizeof *t);
    for (int i = 0; i < 256; i++) t->root[i] = -1;
}

static void trie_free(Trie *t) { free(t->child); free(t->sibling); free(t->tok); free(t->byte); }

static int32_t trie_node(Trie *t, unsigned char b) {
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 256;
        t->child = realloc(t->child, t->cap * sizeof *t->child);
        t->sibling = realloc(t->sibling, t->cap * sizeof *t->sibling);
        t->tok = realloc(t->tok, t->cap * sizeof *t->tok);
        t->byte = realloc(t->byte, t->cap);
        if (!t->child || !t->sibling || !t->tok || !t->byte) abort();
    }
    t->child[t->n] = t->sibling[t->n] = t->tok[t->n] = -1;
    t->byte[t->n] = b;
    return (int32_t)t->n++;
}

static void trie_add(Trie *t, const char *s, size_t n, int32_t tok) {
    if (!n) return;
    int32_t cur = t->root[(unsigned char)s[0]];
    if (cur < 0) cur = t->root[(unsigned char)s[0]] = trie_node(t, (unsigned char)s[0]);
    for (size_t i = 1; i < n; i++) {
        int32_t c = t->child[cur];
        while (c >= 0 && t->byte[c] != (unsigned char)s[i]) c = t->sibling[c];
        if (c < 0) {
            c = trie_node(t, (unsigned char)s[i]);
            t->sibling[c] = t->child[cur];
            t->child[cur] = c;
        }
        cur = c;
    }
    if (t->tok[cur] < 0) t->tok[cur] = tok;
}

/* Longest token starting at s[0..n): returns its length and sets *tok, or 0. */
static size_t trie_longest(const Trie *t, const char *s, size_t n, int32_t *tok) {
    int32_t cur = t->root[(unsigned char)s[0]];
    size_t best = 0;
    for (size_t i = 1; cur >= 0; i++) {
        if (t->tok[cur] >= 0) { best = i; *tok = t->tok[cur]; }
        if (i >= n) break;
        int32_t c = t->child[cur];
        while (c >= 0 && t->byte[c] != (unsigned char)s[i]) c = t->sibling[c];
        cur = c;
    }
    return best;
}

static int is_word_char(const Tokenizer *t, const char *s, size_t n) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->word_re.re, NULL);
    int rc = pcre2_match(t->word_re.re, (PCRE2_SPTR)s, n, 0, PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

/* Start of the last character of s[0..n) (n > 0). */
static size_t utf8_last(const char *s, size_t n) {
    size_t j = n - 1;
    while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
    return j;
}

typedef struct { size_t *a, *b; int32_t *id; size_t n, cap; } Segs;  // [a, b) with id, -1 = text

static void segs_push(Segs *g, size_t a, size_t b, int32_t id) {
    if (g->n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 16;
        g->a = realloc(g->a, g->cap * sizeof *g->a);
        g->b = realloc(g->b, g->cap * sizeof *g->b);
        g->id = realloc(g->id, g->cap * sizeof *g->id);
        if (!g->a || !g->b || !g->id) abort();
    }
    g->a[g->n] = a; g->b[g->n] = b; g->id[g->n++] = id;
}

/* Cuts s[0..n) at added tokens of trie tr, as HF AddedVocabulary::find_matches does. */
static void split_added(const Tokenizer *t, const Trie *tr, const char *s, size_t n, Segs *g) {
    g->n = 0;
    size_t start_off = 0, i = 0;
    while (tr->n && i < n) {
        int32_t k;
        size_t len = tr->root[(unsigned char)s[i]] >= 0 ? trie_longest(tr, s + i, n - i, &k) : 0;
        if (!len) { i++; continue; }
        size_t start = i, stop = i + len;
        const AddedTok *a = &t->added[k];
        i = stop;
        if (a->single_word) {
            int start_space = start == 0 || !is_word_char(t, s + utf8_last(s, start), start - utf8_last(s, start));
            int stop_space = stop == n || !is_word_char(t, s + stop, n - stop);
            if (!start_space || !stop_space) continue;
        }
        if (a->lstrip) {
            size_t ns = start;
            uint32_t cp;
            while (ns > 0) {
                size_t j = utf8_last(s, ns);
                if (!utf8_next(s + j, ns - j, &cp) || !uni_is_space(cp)) break;
                ns = j;
            }
            start = ns > start_off ? ns : start_off;
        }
        if (a->rstrip) {
            uint32_t cp;
            int w;
            while (stop < n && (w = utf8_next(s + stop, n - stop, &cp)) && uni_is_space(cp)) stop += (size_t)w;
            i = stop;
        }
        if (start_off < start) segs_push(g, start_off, start, -1);
        segs_push(g, start, stop, a->id);
        start_off = stop;
    }
    if (start_off != n || n == 0) segs_push(g, start_off, n, -1);
}

/* ---- loading ----------------------------------------------------------------------- */

static int load_added(Tokenizer *t, json_t *list, Err *e) {
    if (list && !json_is_null(list) && !json_is_array(list))
        return err_set_at(e, "added_tokens", 0, "added_tokens: not an array");
    size_t n = list ? json_array_size(list) : 0;
    t->added = calloc(n + 1, sizeof *t->added);
    if (!t->added) abort();
    int64_t max_added = -1;  // largest id in the added vocabulary so far
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(list, i), *c = json_object_get(o, "content"), *id = json_object_get(o, "id");
        if (!json_is_string(c) || !json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) > INT32_MAX - 1)
            return err_set_at(e, "added_tokens", 0, "added_tokens[%zu]: needs a string \"content\" and an id in [0, 2^31-1)", i);
        if (json_string_length(c) == 0) continue;  // HF ignores empty added tokens
        AddedTok *a = &t->added[t->n_added];
        a->len = json_string_length(c);
        a->content = malloc(a->len + 1);
        if (!a->content) abort();
        memcpy(a->content, json_string_value(c), a->len + 1);
        // ids as HF assigns them while adding the list in order: a known content keeps its
        // id; a new one gets the model's vocab size, or one past the largest added id once
        // that is beyond it. Consistent files give every token its written "id" this way.
        int32_t prev = strmap_get(&t->added_map, a->content, a->len);
        int32_t mid = prev >= 0 ? t->added[prev].id : strmap_get(&t->bpe.vocab, a->content, a->len);
        if (mid >= 0) a->id = mid;
        else if (max_added < 0) a->id = (int32_t)t->bpe.vocab.n;
        else a->id = max_added >= (int64_t)t->bpe.vocab.n || t->bpe.vocab.n == 0 ? (int32_t)max_added + 1 : (int32_t)t->bpe.vocab.n;
        if (a->id > max_added) max_added = a->id;
        a->special = json_is_true(json_object_get(o, "special"));
        a->single_word = json_is_true(json_object_get(o, "single_word"));
        a->lstrip = json_is_true(json_object_get(o, "lstrip"));
        a->rstrip = json_is_true(json_object_get(o, "rstrip"));
        json_t *nz = json_object_get(o, "normalized");
        a->normalized = json_is_boolean(nz) ? json_is_true(nz) : !a->special;
        if (a->single_word) t->has_single_word = 1;
        strmap_set(&t->added_map, a->content, a->len, t->n_added);
        t->n_added++;
    }
    return 0;
}

/* Builds the two tries; a normalized token is matched by its normalized form. */
static int build_tries(Tokenizer *t, Err *e) {
    trie_init(&t->trie_raw);
    trie_init(&t->trie_norm);
    Buf nb = {0};
    // special tokens take precedence over plain ones with the same content, as in HF
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < t->n_added; i++) {
            AddedTok *a = &t->added[i];
            if (a->special != (pass == 0)) continue;
            if (strmap_get(&t->added_map, a->content, a->len) != i) continue;  // superseded duplicate
            if (!a->normalized) { trie_add(&t->trie_raw, a->content, a->len, i); continue; }
            if (normalizer_run(&t->norm, a->content, a->len, &nb, e)) { buf_free(&nb); return -1; }
            trie_add(&t->trie_norm, nb.p, nb.n, i);
        }
    buf_free(&nb);
    if (t->has_single_word) {
        static const char w[] = "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]";
        if (regex_compile(&t->word_re, w, sizeof w - 1, 0, e)) return -1;
    }
    return 0;
}

static int32_t special_ids_of(json_t *specials, const char *name, IdVec *out, Err *e) {
    json_t *s = json_object_get(specials, name), *ids = json_object_get(s, "ids");
    if (!json_is_array(ids))
        return err_set_at(e, "post_processor", 0, "post_processor: special token \"%.60s\" has no ids", name);
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v) {
        if (!json_is_integer(v)) return err_set_at(e, "post_processor", 0, "post_processor: bad id for \"%.60s\"", name);
        idvec_push(out, (int32_t)json_integer_value(v));
    }
    return 0;
}

/* Adds what processor j puts around a single sequence to pre/post (outermost last). */
static int parse_post(Tokenizer *t, json_t *j, int depth, Err *e) {
    if (!j || json_is_null(j)) return 0;
    const char *ty = json_string_value(json_object_get(j, "type"));
    if (!ty) return err_set_at(e, "post_processor", 0, "post_processor: missing \"type\"");
    IdVec pre = {0}, post = {0};
    if (!strcmp(ty, "TemplateProcessing")) {
        json_t *single = json_object_get(j, "single"), *specials = json_object_get(j, "special_tokens");
        if (!json_is_array(single)) return err_set_at(e, "post_processor", 0, "post_processor TemplateProcessing: missing \"single\"");
        int seen_a = 0;
        size_t i;
        json_t *it;
        json_array_foreach(single, i, it) {
            json_t *sp = json_object_get(it, "SpecialToken"), *sq = json_object_get(it, "Sequence");
            if (sp) {
                const char *name = json_string_value(json_object_get(sp, "id"));
                if (!name || special_ids_of(specials, name, seen_a ? &post : &pre, e)) {
                    idvec_free(&pre); idvec_free(&post);
                    return name ? -1 : err_set_at(e, "post_processor", 0, "post_processor: SpecialToken without id");
                }
            } else if (sq) seen_a = 1;
            else {
                idvec_free(&pre); idvec_free(&post);
                return err_set_at(e, "post_processor", 0, "post_processor: single[%zu] is neither SpecialToken nor Sequence", i);
            }
        }
    } else if (!strcmp(ty, "RobertaProcessing") || !strcmp(ty, "BertProcessing")) {
        json_t *cls = json_object_get(j, "cls"), *sep = json_object_get(j, "sep");
        if (!json_is_integer(json_array_get(cls, 1)) || !json_is_integer(json_array_get(sep, 1)))
            return err_set_at(e, "post_processor", 0, "post_processor %s: \"cls\"/\"sep\" must be [token, id]", ty);
        idvec_push(&pre, (int32_t)json_integer_value(json_array_get(cls, 1)));
        idvec_push(&post, (int32_t)json_integer_value(json_array_get(sep, 1)));
    } else if (!strcmp(ty, "Sequence")) {
        json_t *list = json_object_get(j, "processors");
        if (!json_is_array(list) || depth > 8) return err_set_at(e, "post_processor", 0, "post_processor Sequence: bad \"processors\"");
        size_t i;
        json_t *it;
        json_array_foreach(list, i, it) if (parse_post(t, it, depth + 1, e)) return -1;
        return 0;
    } else if (strcmp(ty, "ByteLevel")) {
        return err_set_at(e, "post_processor", 0, "post_processor type \"%s\" is not supported", ty);
    }
    // wrap: new pre goes before the existing pre, new post after the existing post
    IdVec np = {0};
    for (size_t i = 0; i < pre.n; i++) idvec_push(&np, pre.p[i]);
    for (size_t i = 0; i < t->post_pre.n; i++) idvec_push(&np, t->post_pre.p[i]);
    idvec_free(&t->post_pre);
    t->post_pre = np;
    for (size_t i = 0; i < post.n; i++) idvec_push(&t->post_post, post.p[i]);
    idvec_free(&pre);
    idvec_free(&post);
    return 0;
}

static DecStep *dec_add(Tokenizer *t, int kind) {
    t->dec = realloc(t->dec, (size_t)(t->n_dec + 1) * sizeof *t->dec);
    if (!t->dec) abort();
    DecStep *d = &t->dec[t->n_dec++];
    memset(d, 0, sizeof *d);
    d->kind = kind;
    return d;
}

static int parse_decoder(Tokenizer *t, json_t *j, int depth, Err *e) {
    const char *ty = json_string_value(json_object_get(j, "type"));
    if (!ty) return err_set_at(e, "decoder", 0, "decoder: missing \"type\"");
    if (!strcmp(ty, "Sequence")) {
        json_t *list = json_object_get(j, "decoders");
        if (!json_is_array(list) || depth > 8) return err_set_at(e, "decoder", 0, "decoder Sequence: bad \"decoders\"");
        size_t i;
        json_t *it;
        json_array_foreach(list, i, it) if (parse_decoder(t, it, depth + 1, e)) return -1;
        return 0;
    }
    if (!strcmp(ty, "ByteLevel")) { dec_add(t, DEC_BYTELEVEL); return 0; }
    if (!strcmp(ty, "ByteFallback")) { dec_add(t, DEC_BYTEFALLBACK); return 0; }
    if (!strcmp(ty, "Fuse")) { dec_add(t, DEC_FUSE); return 0; }
    if (!strcmp(ty, "Strip")) {
        json_t *c = json_object_get(j, "content");
        if (!json_is_string(c)) return err_set_at(e, "decoder", 0, "decoder Strip: missing \"content\"");
        DecStep *d = dec_add(t, DEC_STRIP);
        d->str = strdup(json_string_value(c));
        d->start = (int)json_integer_value(json_object_get(j, "start"));
        d->stop = (int)json_integer_value(json_object_get(j, "stop"));
        return 0;
    }
    if (!strcmp(ty, "Replace")) {
        json_t *c = json_object_get(j, "content"), *pat = json_object_get(j, "pattern"), *v;
        if (!json_is_string(c)) return err_set_at(e, "decoder", 0, "decoder Replace: missing \"content\"");
        DecStep *d = dec_add(t, DEC_REPLACE);
        d->str = strdup(json_string_value(c));
        if (json_is_string(v = json_object_get(pat, "String")))
            return regex_compile(&d->re, json_string_value(v), json_string_length(v), 1, e);
        if (json_is_string(v = json_object_get(pat, "Regex")))
            return regex_compile(&d->re, json_string_value(v), json_string_length(v), 0, e);
        return err_set_at(e, "decoder", 0, "decoder Replace: bad \"pattern\"");
    }
    if (!strcmp(ty, "Metaspace")) {
        json_t *r = json_object_get(j, "replacement"), *ps = json_object_get(j, "prepend_scheme");
        if (!json_is_string(r)) return err_set_at(e, "decoder", 0, "decoder Metaspace: missing \"replacement\"");
        DecStep *d = dec_add(t, DEC_METASPACE);
        d->str = strdup(json_string_value(r));
        if (json_is_string(ps)) d->prepend = strcmp(json_string_value(ps), "never") != 0;
        else d->prepend = !json_is_false(json_object_get(j, "add_prefix_space"));
        return 0;
    }
    if (!strcmp(ty, "BPEDecoder")) {
        json_t *s = json_object_get(j, "suffix");
        DecStep *d = dec_add(t, DEC_BPE);
        d->str = strdup(json_is_string(s) ? json_string_value(s) : "</w>");
        return 0;
    }
    return err_set_at(e, "decoder", 0, "decoder type \"%s\" is not supported", ty);
}

/* Id of a token named by tokenizer_config.json's eos_token (a string or an object). */
static int32_t config_token_id(const Tokenizer *t, json_t *v) {
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_is_string(v) ? tokenizer_token_id(t, json_string_value(v)) : -1;
}

Tokenizer *tokenizer_load_text(const char *json_text, size_t len, Err *e) {
    json_error_t je;
    json_t *root = json_loadb(json_text, len, 0, &je);
    if (!root) {
        err_set_at(e, "", je.line, "tokenizer.json: line %d column %d: %s", je.line, je.column, je.text);
        return NULL;
    }
    Tokenizer *t = calloc(1, sizeof *t);
    if (!t) abort();
    t->cfg_eos = -1;
    strmap_init(&t->added_map);
    trie_init(&t->trie_raw);
    trie_init(&t->trie_norm);
    json_t *model = json_object_get(root, "model");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    int rc = -1;
    if (!json_is_object(root)) err_set(e, "tokenizer.json: top level is not an object");
    else if (!json_is_object(model)) err_set_at(e, "model", 0, "tokenizer.json: missing \"model\"");
    else if (mtype && strcmp(mtype, "BPE"))
        err_set_at(e, "model.type", 0, "tokenizer.json: model type \"%s\" is not supported (only BPE)", mtype);
    else if (!mtype && !json_object_get(model, "merges"))
        err_set_at(e, "model.type", 0, "tokenizer.json: model has no \"type\" and no \"merges\"; only BPE is supported");
    else if (bpe_load(&t->bpe, model, e)) {}
    else if (normalizer_parse(&t->norm, json_object_get(root, "normalizer"), e)) {}
    else if (pretokenizer_parse(&t->pre, json_object_get(root, "pre_tokenizer"), e)) {}
    else if (load_added(t, json_object_get(root, "added_tokens"), e)) {}
    else if (build_tries(t, e)) {}
    else if (parse_post(t, json_object_get(root, "post_processor"), 0, e)) {}
    else {
        json_t *d = json_object_get(root, "decoder");
        t->has_decoder = d && !json_is_null(d);
        rc = t->has_decoder ? parse_decoder(t, d, 0, e) : 0;
    }
    json_decref(root);
    if (rc) { tokenizer_free(t); return NULL; }

    int64_t n_total = t->bpe.n_ids;
    for (int i = 0; i < t->n_added; i++) if (t->added[i].id + 1 > n_total) n_total = t->added[i].id + 1;
    if (n_total > 4 * (int64_t)(t->bpe.vocab.n + (size_t)t->n_added) + 1024) {
        err_set_at(e, "added_tokens", 0, "tokenizer.json: ids out of range (largest %lld for %zu tokens)",
                   (long long)n_total - 1, t->bpe.vocab.n + (size_t)t->n_added);
        tokenizer_free(t);
        return NULL;
    }
    t->n_total = (int)n_total;
    t->added_by_id = malloc((size_t)n_total * sizeof *t->added_by_id + 1);
    if (!t->added_by_id) abort();
    for (int64_t i = 0; i < n_total; i++) t->added_by_id[i] = -1;
    for (int i = 0; i < t->n_added; i++) t->added_by_id[t->added[i].id] = i;
    for (IdVec *v = &t->post_pre; v; v = v == &t->post_pre ? &t->post_post : NULL)
        for (size_t i = 0; i < v->n; i++)
            if (v->p[i] < 0 || v->p[i] >= t->n_total) {
                err_set_at(e, "post_processor", 0, "post_processor: special token id %d is not in the vocabulary", v->p[i]);
                tokenizer_free(t);
                return NULL;
            }
    return t;
}

static char *read_file(const char *path, size_t *len, Err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) { err_set(e, "%s: cannot open", path); return NULL; }
    Buf b = {0};
    char chunk[1 << 16];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) buf_put(&b, chunk, k);
    int bad = ferror(f);
    fclose(f);
    if (bad) { buf_free(&b); err_set(e, "%s: read error", path); return NULL; }
    buf_put(&b, "", 0);
    *len = b.n;
    return b.p;
}

Tokenizer *tokenizer_load(const char *json_path, Err *e) {
    size_t len;
    char *text = read_file(json_path, &len, e);
    if (!text) return NULL;
    Tokenizer *t = tokenizer_load_text(text, len, e);
    free(text);
    if (!t) { err_prefix(e, "%s", json_path); return NULL; }
    // tokenizer_config.json beside it names the EOS when the post-processor does not
    char *dir = strdup(json_path), cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", dirname(dir));
    free(dir);
    json_t *c = json_load_file(cfg, 0, NULL);
    if (c) {
        t->cfg_eos = config_token_id(t, json_object_get(c, "eos_token"));
        json_decref(c);
    }
    return t;
}

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    bpe_free(&t->bpe);
    normalizer_free(&t->norm);
    pretokenizer_free(&t->pre);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    trie_free(&t->trie_raw);
    trie_free(&t->trie_norm);
    regex_free(&t->word_re);
    strmap_free(&t->added_map);
    free(t->added_by_id);
    idvec_free(&t->post_pre);
    idvec_free(&t->post_post);
    for (int i = 0; i < t->n_dec; i++) { free(t->dec[i].str); regex_free(&t->dec[i].re); }
    free(t->dec);
    free(t);
}

/* ---- encoding ---------------------------------------------------------------------- */

typedef struct {
    BpeScratch *bpe;
    PieceList words;
    SpanVec spans;
    Buf norm;
    Segs segs;
} EncScratch;

/* Pre-tokenizes and models one stretch of normalized text. */
static int encode_stretch(const Tokenizer *t, const char *s, size_t n, int origin, EncScratch *x, IdVec *out, Err *e) {
    x->words.n = 0;
    x->words.text.n = 0;
    if (pretokenizer_run(&t->pre, s, n, origin, &x->words, &x->spans, e)) return -1;
    for (size_t i = 0; i < x->words.n; i++)
        if (bpe_encode_word(&t->bpe, x->words.text.p + x->words.p[i].off, x->words.p[i].len, x->bpe, out, e)) return -1;
    return 0;
}

/* Normalizes one stretch between raw added tokens, cuts it at normalized added tokens
 * and encodes the pieces. */
static int encode_segment(const Tokenizer *t, const char *s, size_t n, int origin, EncScratch *x, IdVec *out, Err *e) {
    const char *ns = s;
    size_t nn = n;
    if (t->norm.n) {
        if (normalizer_run(&t->norm, s, n, &x->norm, e)) return -1;
        ns = x->norm.p ? x->norm.p : "";
        nn = x->norm.n;
    }
    if (!t->trie_norm.n) return encode_stretch(t, ns, nn, origin, x, out, e);
    Segs g = {0};
    split_added(t, &t->trie_norm, ns, nn, &g);
    int rc = 0;
    for (size_t i = 0; i < g.n && !rc; i++) {
        if (g.id[i] >= 0) idvec_push(out, g.id[i]);
        else rc = encode_stretch(t, ns + g.a[i], g.b[i] - g.a[i], origin && g.a[i] == 0, x, out, e);
    }
    free(g.a); free(g.b); free(g.id);
    return rc;
}

int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int add_special, int32_t **ids, size_t *n,
                     Err *e) {
    *ids = NULL;
    *n = 0;
    size_t bad = utf8_check(text, len);
    if (bad != len) return err_set(e, "input is not valid UTF-8 (byte %zu)", bad);
    IdVec out = {0};
    EncScratch x = {0};
    x.bpe = bpe_scratch_new();
    if (add_special) for (size_t i = 0; i < t->post_pre.n; i++) idvec_push(&out, t->post_pre.p[i]);
    split_added(t, &t->trie_raw, text, len, &x.segs);
    int rc = 0;
    for (size_t i = 0; i < x.segs.n && !rc; i++) {
        if (x.segs.id[i] >= 0) idvec_push(&out, x.segs.id[i]);
        else rc = encode_segment(t, text + x.segs.a[i], x.segs.b[i] - x.segs.a[i], x.segs.a[i] == 0, &x, &out, e);
    }
    if (add_special) for (size_t i = 0; i < t->post_post.n; i++) idvec_push(&out, t->post_post.p[i]);
    bpe_scratch_free(x.bpe);
    piecelist_free(&x.words);
    free(x.spans.p);
    buf_free(&x.norm);
    free(x.segs.a); free(x.segs.b); free(x.segs.id);
    if (rc) { idvec_free(&out); return -1; }
    if (!out.p) out.p = malloc(sizeof *out.p);  // a valid pointer even for zero ids
    if (!out.p) abort();
    *ids = out.p;
    *n = out.n;
    return 0;
}

/* ---- decoding ---------------------------------------------------------------------- */

typedef struct { Buf *s; size_t n, cap; } Toks;  // a list of token strings

static void toks_push(Toks *l, const char *s, size_t n) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->s = realloc(l->s, l->cap * sizeof *l->s);
        if (!l->s) abort();
    }
    memset(&l->s[l->n], 0, sizeof l->s[l->n]);
    buf_put(&l->s[l->n++], s, n);
}

static void toks_free(Toks *l) {
    for (size_t i = 0; i < l->n; i++) buf_free(&l->s[i]);
    free(l->s);
    memset(l, 0, sizeof *l);
}

/* Byte value of a "<0xXX>" token, or -1. */
static int byte_token(const Buf *b) {
    if (b->n != 6 || memcmp(b->p, "<0x", 3) || b->p[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = b->p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static void flush_bytes(Toks *out, Buf *bytes) {
    if (!bytes->n) return;
    if (utf8_check(bytes->p, bytes->n) == bytes->n) toks_push(out, bytes->p, bytes->n);
    else for (size_t i = 0; i < bytes->n; i++) toks_push(out, "\xEF\xBF\xBD", 3);
    bytes->n = 0;
}

/* Applies one decoder step to the token list in place. */
static void decode_step(const DecStep *d, Toks *l) {
    Toks out = {0};
    Buf tmp = {0};
    switch (d->kind) {
    case DEC_REPLACE:
        for (size_t i = 0; i < l->n; i++) {
            SpanVec m = {0};
            Err e;
            tmp.n = 0;
            buf_put(&tmp, "", 0);
            size_t prev = 0;
            if (regex_find_all(&d->re, l->s[i].p, l->s[i].n, &m, &e) == 0)
                for (size_t k = 0; k < m.n; k += 2) {
                    buf_put(&tmp, l->s[i].p + prev, m.p[k] - prev);
                    buf_put(&tmp, d->str, strlen(d->str));
                    prev = m.p[k + 1];
                }
            buf_put(&tmp, l->s[i].p + prev, l->s[i].n - prev);
            free(m.p);
            toks_push(&out, tmp.p, tmp.n);
        }
        break;
    case DEC_BYTEFALLBACK:
        for (size_t i = 0; i < l->n; i++) {
            int b = byte_token(&l->s[i]);
            if (b >= 0) { char c = (char)b; buf_put(&tmp, &c, 1); continue; }
            flush_bytes(&out, &tmp);
            toks_push(&out, l->s[i].p, l->s[i].n);
        }
        flush_bytes(&out, &tmp);
        break;
    case DEC_FUSE:
        buf_put(&tmp, "", 0);
        for (size_t i = 0; i < l->n; i++) buf_put(&tmp, l->s[i].p, l->s[i].n);
        toks_push(&out, tmp.p, tmp.n);
        break;
    case DEC_STRIP: {
        size_t cl = strlen(d->str);
        for (size_t i = 0; i < l->n; i++) {
            const char *s = l->s[i].p;
            size_t a = 0, b = l->s[i].n;
            for (int k = 0; k < d->start && cl && b - a >= cl && !memcmp(s + a, d->str, cl); k++) a += cl;
            for (int k = 0; k < d->stop && cl && b - a >= cl && !memcmp(s + b - cl, d->str, cl); k++) b -= cl;
            toks_push(&out, s + a, b - a);
        }
        break;
    }
    case DEC_BYTELEVEL:
        buf_put(&tmp, "", 0);
        for (size_t i = 0; i < l->n; i++) {
            const char *s = l->s[i].p;
            size_t n = l->s[i].n, start = tmp.n;
            int all = 1;
            for (size_t k = 0; k < n;) {
                uint32_t cp;
                int w = utf8_next(s + k, n - k, &cp);
                int b = w ? bytelevel_byte(cp) : -1;
                if (b < 0) { all = 0; break; }
                char c = (char)b;
                buf_put(&tmp, &c, 1);
                k += (size_t)w;
            }
            if (!all) { tmp.n = start; buf_put(&tmp, s, n); }
        }
        {
            Buf u = {0};
            buf_put(&u, "", 0);
            utf8_lossy(&u, tmp.p, tmp.n);
            toks_push(&out, u.p, u.n);
            buf_free(&u);
        }
        break;
    case DEC_METASPACE: {
        size_t rl = strlen(d->str);
        for (size_t i = 0; i < l->n; i++) {
            tmp.n = 0;
            buf_put(&tmp, "", 0);
            const char *s = l->s[i].p;
            size_t n = l->s[i].n;
            for (size_t k = 0; k < n;) {
                if (rl && n - k >= rl && !memcmp(s + k, d->str, rl)) {
                    if (!(i == 0 && d->prepend)) buf_putc(&tmp, ' ');
                    k += rl;
                } else buf_putc(&tmp, s[k++]);
            }
            toks_push(&out, tmp.p, tmp.n);
        }
        break;
    }
    case DEC_BPE: {
        size_t sl = strlen(d->str);
        for (size_t i = 0; i < l->n; i++) {
            tmp.n = 0;
            buf_put(&tmp, "", 0);
            const char *s = l->s[i].p;
            size_t n = l->s[i].n;
            for (size_t k = 0; k < n;) {
                if (sl && n - k >= sl && !memcmp(s + k, d->str, sl)) {
                    if (i + 1 != l->n) buf_putc(&tmp, ' ');
                    k += sl;
                } else buf_putc(&tmp, s[k++]);
            }
            toks_push(&out, tmp.p, tmp.n);
        }
        break;
    }
    }
    buf_free(&tmp);
    toks_free(l);
    *l = out;
}

char *tokenizer_decode(const Tokenizer *t, const int32_t *ids, size_t n, int skip_special) {
    Toks l = {0};
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_total) continue;  // unknown ids are skipped, as HF does
        int a = t->added_by_id[id];
        if (a >= 0) {
            if (skip_special && t->added[a].special) continue;
            toks_push(&l, t->added[a].content, t->added[a].len);
        } else if (id < t->bpe.n_ids && t->bpe.id_tok[id]) {
            toks_push(&l, t->bpe.id_tok[id], strlen(t->bpe.id_tok[id]));
        }
    }
    for (int k = 0; k < t->n_dec; k++) decode_step(&t->dec[k], &l);
    Buf out = {0};
    buf_put(&out, "", 0);
    for (size_t i = 0; i < l.n; i++) {
        if (!t->has_decoder && i) buf_putc(&out, ' ');
        buf_put(&out, l.s[i].p, l.s[i].n);
    }
    toks_free(&l);
    return out.p;
}

/* ---- lookups ----------------------------------------------------------------------- */

int tokenizer_vocab_size(const Tokenizer *t) { return t->n_total; }

int tokenizer_token_id(const Tokenizer *t, const char *token) {
    int32_t a = strmap_get(&t->added_map, token, strlen(token));
    if (a >= 0) return t->added[a].id;
    return strmap_get(&t->bpe.vocab, token, strlen(token));
}

const char *tokenizer_token(const Tokenizer *t, int id) {
    if (id < 0 || id >= t->n_total) return NULL;
    if (t->added_by_id[id] >= 0) return t->added[t->added_by_id[id]].content;
    return id < t->bpe.n_ids ? t->bpe.id_tok[id] : NULL;
}

/* BOS is what the post-processor puts first (what encode adds); no post-processor BOS
 * means none, whatever tokenizer_config.json says, so callers never add one HF would not. */
int tokenizer_bos_id(const Tokenizer *t) { return t->post_pre.n ? t->post_pre.p[0] : -1; }

/* EOS: the post-processor's last appended token; else tokenizer_config.json's eos_token;
 * else the first special added token with a conventional end-of-text name. */
int tokenizer_eos_id(const Tokenizer *t) {
    if (t->post_post.n) return t->post_post.p[t->post_post.n - 1];
    if (t->cfg_eos >= 0) return t->cfg_eos;
    static const char *names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", "<|im_end|>"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int32_t a = strmap_get(&t->added_map, names[i], strlen(names[i]));
        if (a >= 0 && t->added[a].special) return t->added[a].id;
    }
    return -1;
}
