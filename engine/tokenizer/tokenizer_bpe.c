/* tokenizer_bpe.c: BPE model: vocab and merge tables, and word -> ids.
 *
 * The merge loop mirrors HF `tokenizers` (models/bpe/word.rs) step for step: a min-heap
 * of candidate merges keyed by (rank, position); a popped candidate is applied only if
 * its left symbol is alive, has a right neighbour, and the pair there still maps to the
 * same merged id. Matching that rule (rather than a "cleaner" one) is what makes the ids
 * identical on pathological vocabularies too. Words shorter than 256 bytes are cached per
 * call, as HF caches them, since natural text repeats words heavily. */
#include "hash.h"
#include "tokenizer_bpe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) abort();
    return p;
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) abort();
    return q;
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = hash_fnv1a64(HASH_FNV_OFFSET, s, n);
    return h ^ (h >> 29);
}

void strmap_init(StrMap *m) { memset(m, 0, sizeof *m); }

void strmap_free(StrMap *m) {
    for (size_t i = 0; i < m->n; i++) free((void *)m->key[i]);
    free(m->slot); free(m->key); free(m->klen); free(m->val);
    memset(m, 0, sizeof *m);
}

static size_t strmap_find_slot(const StrMap *m, const char *key, size_t len, uint32_t h) {
    size_t mask = m->cap - 1, i = h & mask;
    for (;;) {
        uint64_t s = m->slot[i];
        if (!s) return i;
        uint32_t e = (uint32_t)s - 1;
        if ((uint32_t)(s >> 32) == h && m->klen[e] == len && !memcmp(m->key[e], key, len)) return i;
        i = (i + 1) & mask;
    }
}

static uint32_t strmap_hash(const char *key, size_t len) {
    uint64_t h = hash_bytes(key, len);
    return (uint32_t)(h ^ (h >> 32));
}

static void strmap_grow(StrMap *m) {
    size_t cap = m->cap ? m->cap * 2 : 64;
    free(m->slot);
    m->slot = calloc(cap, sizeof *m->slot);
    if (!m->slot) abort();
    m->cap = cap;
    for (size_t e = 0; e < m->n; e++) {
        uint32_t h = strmap_hash(m->key[e], m->klen[e]);
        m->slot[strmap_find_slot(m, m->key[e], m->klen[e], h)] = (uint64_t)h << 32 | (e + 1);
    }
}

size_t strmap_set(StrMap *m, const char *key, size_t len, int32_t val) {
    if (2 * (m->n + 1) > m->cap) strmap_grow(m);
    uint32_t h = strmap_hash(key, len);
    size_t i = strmap_find_slot(m, key, len, h);
    if (m->slot[i]) {
        size_t e = (uint32_t)m->slot[i] - 1;
        m->val[e] = val;
        return e;
    }
    if (m->n == m->ecap) {
        m->ecap = m->ecap ? m->ecap * 2 : 64;
        m->key = xrealloc(m->key, m->ecap * sizeof *m->key);
        m->klen = xrealloc(m->klen, m->ecap * sizeof *m->klen);
        m->val = xrealloc(m->val, m->ecap * sizeof *m->val);
    }
    char *k = xmalloc(len + 1);
    memcpy(k, key, len);
    k[len] = 0;
    m->key[m->n] = k;
    m->klen[m->n] = (uint32_t)len;
    m->val[m->n] = val;
    m->slot[i] = (uint64_t)h << 32 | (m->n + 1);
    return m->n++;
}

int32_t strmap_get(const StrMap *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    uint64_t s = m->slot[strmap_find_slot(m, key, len, strmap_hash(key, len))];
    return s ? m->val[(uint32_t)s - 1] : -1;
}

static size_t merge_slot(const Bpe *b, uint64_t key) {
    uint64_t h = key * 0x9E3779B97F4A7C15ULL;  // both halves of the pair must reach the low bits
    h ^= h >> 32;
    size_t mask = b->mcap - 1, i = (size_t)h & mask;
    while (b->merge[i].key != UINT64_MAX && b->merge[i].key != key) i = (i + 1) & mask;
    return i;
}

/* Looks up the merge of (a, c); returns 1 and its rank/new id when it exists. */
static int merge_get(const Bpe *b, uint32_t a, uint32_t c, uint32_t *rank, uint32_t *nid) {
    if (!b->mcap) return 0;
    const BpeMerge *m = &b->merge[merge_slot(b, (uint64_t)a << 32 | c)];
    if (m->key == UINT64_MAX) return 0;
    *rank = m->rank;
    *nid = m->nid;
    return 1;
}

static char *opt_string(json_t *model, const char *key, const char *what, int *bad, Err *e) {
    json_t *v = json_object_get(model, key);
    if (!v || json_is_null(v)) return NULL;
    if (!json_is_string(v)) {
        *bad = 1;
        err_set_at(e, key, 0, "model.%s: expected %s (a string or null)", key, what);
        return NULL;
    }
    return strdup(json_string_value(v));
}

/* Reads merge i as its two halves (a "left right" string or a ["left", "right"] pair). */
static int merge_halves(json_t *m, size_t i, const char **a, size_t *la, const char **c, size_t *lc, Err *e) {
    if (json_is_string(m)) {
        const char *s = json_string_value(m);
        size_t n = json_string_length(m);
        const char *sp = memchr(s, ' ', n);
        if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s)))
            return err_set_at(e, "model.merges", 0,
                              "model.merges[%zu]: \"%.60s\" is not two tokens separated by one space", i, s);
        *a = s; *la = (size_t)(sp - s);
        *c = sp + 1; *lc = n - *la - 1;
        return 0;
    }
    if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0)); *la = json_string_length(json_array_get(m, 0));
        *c = json_string_value(json_array_get(m, 1)); *lc = json_string_length(json_array_get(m, 1));
        return 0;
    }
    return err_set_at(e, "model.merges", 0, "model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", i);
}

static size_t pair_slot(const uint64_t *set, size_t cap, uint64_t key) {
    uint64_t h = key * 0x9E3779B97F4A7C15ULL;
    h ^= h >> 32;
    size_t mask = cap - 1, i = (size_t)h & mask;
    while (set[i] && set[i] != key) i = (i + 1) & mask;
    return i;
}

/* Collects every pair of adjacent code points inside a vocab token. */
static void bpe_build_pairs(Bpe *b) {
    size_t total = 0;
    for (size_t t = 0; t < b->vocab.n; t++) total += b->vocab.klen[t];
    size_t cap = 64;
    while (cap < 2 * total + 2) cap *= 2;
    b->pairs = calloc(cap, sizeof *b->pairs);
    b->bmp_char = calloc(65536 / 8, 1);
    if (!b->pairs || !b->bmp_char) abort();
    b->pcap = cap;
    for (size_t t = 0; t < b->vocab.n; t++) {
        const char *s = b->vocab.key[t];
        size_t n = b->vocab.klen[t], i = 0;
        uint32_t prev = 0, cp;
        int have = 0, k;
        while (i < n && (k = utf8_next(s + i, n - i, &cp)) > 0) {
            if (i == 0 && (size_t)k == n && cp < 65536) b->bmp_char[cp >> 3] |= (uint8_t)(1u << (cp & 7));
            if (have) {
                uint64_t key = ((uint64_t)prev << 32 | cp) + 1;
                b->pairs[pair_slot(b->pairs, cap, key)] = key;
            }
            prev = cp;
            have = 1;
            i += (size_t)k;
        }
    }
}

int bpe_load(Bpe *b, json_t *model, Err *e) {
    memset(b, 0, sizeof *b);
    strmap_init(&b->vocab);
    b->unk_id = -1;
    for (int i = 0; i < 256; i++) b->byte_id[i] = -1;
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab)) return err_set_at(e, "model.vocab", 0, "model.vocab: missing or not an object");
    if (merges && !json_is_null(merges) && !json_is_array(merges))
        return err_set_at(e, "model.merges", 0, "model.merges: not an array");
    json_t *drop = json_object_get(model, "dropout");
    if (drop && !json_is_null(drop) && !(json_is_number(drop) && json_number_value(drop) == 0.0))
        return err_set_at(e, "model.dropout", 0,
                          "model.dropout: BPE dropout makes encoding random; only null or 0 is supported");

    const char *k;
    json_t *v;
    int64_t max_id = -1;
    json_object_foreach(vocab, k, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX - 1)
            return err_set_at(e, "model.vocab", 0, "model.vocab: id of token \"%.60s\" is not an integer in [0, 2^31-1)", k);
        strmap_set(&b->vocab, k, strlen(k), (int32_t)json_integer_value(v));
        if (json_integer_value(v) > max_id) max_id = json_integer_value(v);
    }
    b->n_ids = (int)(max_id + 1);
    if ((size_t)b->n_ids > 4 * b->vocab.n + 1024)
        return err_set_at(e, "model.vocab", 0, "model.vocab: ids out of range (largest %lld for %zu tokens)",
                          (long long)max_id, b->vocab.n);
    b->id_tok = calloc((size_t)b->n_ids + 1, sizeof *b->id_tok);
    if (!b->id_tok) abort();
    for (size_t i = 0; i < b->vocab.n; i++)
        if (!b->id_tok[b->vocab.val[i]]) b->id_tok[b->vocab.val[i]] = b->vocab.key[i];

    int bad = 0;
    b->unk_token = opt_string(model, "unk_token", "the unk token", &bad, e);
    b->prefix = opt_string(model, "continuing_subword_prefix", "a prefix", &bad, e);
    b->suffix = opt_string(model, "end_of_word_suffix", "a suffix", &bad, e);
    if (bad) return -1;
    if (b->unk_token) b->unk_id = strmap_get(&b->vocab, b->unk_token, strlen(b->unk_token));
    b->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    b->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    b->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    for (int i = 0; i < 256; i++) {
        char t[8];
        snprintf(t, sizeof t, "<0x%02X>", i);
        b->byte_id[i] = strmap_get(&b->vocab, t, 6);
    }

    size_t nm = merges ? json_array_size(merges) : 0, cap = 64;
    while (cap < 2 * nm + 2) cap *= 2;
    b->mcap = cap;
    b->merge = xmalloc(cap * sizeof *b->merge);
    for (size_t i = 0; i < cap; i++) b->merge[i].key = UINT64_MAX;
    size_t plen = b->prefix ? strlen(b->prefix) : 0;
    Buf joined = {0};
    uint32_t rank = 0;
    for (size_t i = 0; i < nm; i++) {
        json_t *m = json_array_get(merges, i);
        if (json_is_string(m) && !strncmp(json_string_value(m), "#version", 8)) continue;
        const char *a = NULL, *c = NULL;
        size_t la = 0, lc = 0;
        if (merge_halves(m, i, &a, &la, &c, &lc, e)) { buf_free(&joined); return -1; }
        int32_t ia = strmap_get(&b->vocab, a, la), ic = strmap_get(&b->vocab, c, lc);
        joined.n = 0;
        buf_put(&joined, a, la);
        if (lc >= plen) buf_put(&joined, c + plen, lc - plen);
        int32_t in = strmap_get(&b->vocab, joined.p, joined.n);
        if (ia < 0 || ic < 0 || in < 0) {
            err_set_at(e, "model.merges", 0, "model.merges[%zu]: token \"%.60s\" is not in model.vocab", i,
                       ia < 0 ? a : ic < 0 ? c : joined.p);
            buf_free(&joined);
            return -1;
        }
        uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ic;
        BpeMerge *slot = &b->merge[merge_slot(b, key)];
        if (slot->key == UINT64_MAX) b->n_merges++;
        *slot = (BpeMerge){key, rank++, (uint32_t)in};  // a repeated pair takes its later rank, as a map insert does
    }
    buf_free(&joined);
    if (!(b->prefix && *b->prefix) && !(b->suffix && *b->suffix)) bpe_build_pairs(b);
    b->in_merge = calloc((size_t)b->n_ids + 1, 1);
    if (!b->in_merge) abort();
    for (size_t i = 0; i < b->mcap; i++)
        if (b->merge[i].key != UINT64_MAX) b->in_merge[b->merge[i].key >> 32] = b->in_merge[b->merge[i].key & 0xFFFFFFFFu] = 1;
    return 0;
}

void bpe_free(Bpe *b) {
    strmap_free(&b->vocab);
    free(b->id_tok); free(b->merge); free(b->in_merge); free(b->pairs); free(b->bmp_char);
    free(b->unk_token); free(b->prefix); free(b->suffix);
    memset(b, 0, sizeof *b);
}

typedef struct { uint32_t rank, pos, nid; } Cand;  // a candidate merge at symbol pos

struct BpeScratch {
    uint32_t *c;      // (cap) symbol ids
    int32_t *prev, *next;  // (cap) linked list over live symbols, -1 = none
    uint32_t *len;    // (cap) symbol byte lengths; 0 = merged away
    size_t cap;
    Cand *heap;
    size_t hn, hcap;
    Buf tmp;
    StrMap cache;     // word -> entry index
    size_t *coff, *clen, cn, ccap;  // cached entry -> run of cids
    IdVec cids;
};

BpeScratch *bpe_scratch_new(void) {
    BpeScratch *s = calloc(1, sizeof *s);
    if (!s) abort();
    strmap_init(&s->cache);
    return s;
}

void bpe_scratch_free(BpeScratch *s) {
    if (!s) return;
    free(s->c); free(s->prev); free(s->next); free(s->len); free(s->heap);
    buf_free(&s->tmp);
    strmap_free(&s->cache);
    free(s->coff); free(s->clen);
    idvec_free(&s->cids);
    free(s);
}

static int cand_less(const Cand *x, const Cand *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(BpeScratch *s, Cand c) {
    if (s->hn == s->hcap) {
        s->hcap = s->hcap ? s->hcap * 2 : 256;
        s->heap = xrealloc(s->heap, s->hcap * sizeof *s->heap);
    }
    size_t i = s->hn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = c;
}

static Cand heap_pop(BpeScratch *s) {
    Cand top = s->heap[0], last = s->heap[--s->hn];
    size_t i = 0, n = s->hn;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        const Cand *best = &last;
        if (l < n && cand_less(&s->heap[l], best)) { m = l; best = &s->heap[l]; }
        if (l + 1 < n && cand_less(&s->heap[l + 1], best)) { m = l + 1; }
        if (m == i) break;
        s->heap[i] = s->heap[m];
        i = m;
    }
    if (n) s->heap[i] = last;
    return top;
}

/* Merges the ns symbols in s (see the file comment for the rule), appends the survivors to
 * out and empties the symbol list. */
static void bpe_merge_flush(const Bpe *b, BpeScratch *s, size_t *ns, IdVec *out) {
    size_t n = *ns;
    s->hn = 0;
    uint32_t rank, nid;
    for (size_t i = 0; i + 1 < n; i++)
        if (merge_get(b, s->c[i], s->c[i + 1], &rank, &nid)) heap_push(s, (Cand){rank, (uint32_t)i, nid});
    while (s->hn) {
        Cand top = heap_pop(s);
        size_t p = top.pos;
        if (s->len[p] == 0 || s->next[p] < 0) continue;
        size_t q = (size_t)s->next[p];
        if (!merge_get(b, s->c[p], s->c[q], &rank, &nid) || nid != top.nid) continue;
        s->c[p] = top.nid;
        s->len[p] += s->len[q];
        s->next[p] = s->next[q];
        s->len[q] = 0;
        if (s->next[q] >= 0) s->prev[s->next[q]] = (int32_t)p;
        if (s->prev[p] >= 0 && merge_get(b, s->c[s->prev[p]], s->c[p], &rank, &nid))
            heap_push(s, (Cand){rank, (uint32_t)s->prev[p], nid});
        if (s->next[p] >= 0 && merge_get(b, s->c[p], s->c[s->next[p]], &rank, &nid))
            heap_push(s, (Cand){rank, (uint32_t)p, nid});
    }
    for (size_t i = 0; i < n; i++)
        if (s->len[i]) idvec_push(out, (int32_t)s->c[i]);
    *ns = 0;
}

/* Appends a symbol; one that takes part in no merge closes the stretch before it, which is
 * merged and flushed to out right away (it can never interact with what follows). */
static void sym_add(const Bpe *b, BpeScratch *s, size_t *ns, IdVec *out, uint32_t id, size_t len) {
    if ((int64_t)id < b->n_ids && !b->in_merge[id]) {
        bpe_merge_flush(b, s, ns, out);
        idvec_push(out, (int32_t)id);
        return;
    }
    if (*ns == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 256;
        s->c = xrealloc(s->c, s->cap * sizeof *s->c);
        s->prev = xrealloc(s->prev, s->cap * sizeof *s->prev);
        s->next = xrealloc(s->next, s->cap * sizeof *s->next);
        s->len = xrealloc(s->len, s->cap * sizeof *s->len);
    }
    size_t i = (*ns)++;
    s->c[i] = id;
    s->prev[i] = (int32_t)i - 1;
    s->next[i] = -1;
    s->len[i] = (uint32_t)len;
    if (i > 0) s->next[i - 1] = (int32_t)i;
}

/* Splits w into symbols (vocab, byte fallback, unk) and merges them into out. */
static int bpe_word(const Bpe *b, const char *w, size_t n, BpeScratch *s, IdVec *out, Err *e) {
    size_t ns = 0;
    int64_t unk = -1;  // pending unk symbol: id in unk, byte length in unk_len
    size_t unk_len = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = utf8_next(w + i, n - i, &cp);
        if (!k) k = 1;
        int first = i == 0, last = i + (size_t)k >= n;
        const char *key = w + i;
        size_t klen = (size_t)k;
        if ((!first && b->prefix && *b->prefix) || (last && b->suffix && *b->suffix)) {
            s->tmp.n = 0;
            if (!first && b->prefix) buf_put(&s->tmp, b->prefix, strlen(b->prefix));
            buf_put(&s->tmp, w + i, (size_t)k);
            if (last && b->suffix) buf_put(&s->tmp, b->suffix, strlen(b->suffix));
            key = s->tmp.p;
            klen = s->tmp.n;
        }
        int32_t id = strmap_get(&b->vocab, key, klen);
        if (id >= 0) {
            if (unk >= 0) { sym_add(b, s, &ns, out, (uint32_t)unk, unk_len); unk = -1; }
            sym_add(b, s, &ns, out, (uint32_t)id, (size_t)k);
        } else {
            int done = 0;
            if (b->byte_fallback) {
                int all = 1;
                for (size_t j = 0; j < klen; j++)
                    if (b->byte_id[(unsigned char)key[j]] < 0) all = 0;
                if (all) {  // a pending unk stays pending here, exactly as HF orders it
                    for (size_t j = 0; j < klen; j++)
                        sym_add(b, s, &ns, out, (uint32_t)b->byte_id[(unsigned char)key[j]], 1);
                    done = 1;
                }
            }
            if (!done && b->unk_token) {
                if (b->unk_id < 0)
                    return err_set_at(e, "model.unk_token", 0, "unk token \"%.60s\" is not in model.vocab", b->unk_token);
                if (unk >= 0 && b->fuse_unk) unk_len += (size_t)k;
                else {
                    if (unk >= 0) sym_add(b, s, &ns, out, (uint32_t)unk, unk_len);
                    unk = b->unk_id;
                    unk_len = (size_t)k;
                }
            }
        }
        i += (size_t)k;
    }
    if (unk >= 0) sym_add(b, s, &ns, out, (uint32_t)unk, unk_len);
    bpe_merge_flush(b, s, &ns, out);
    return 0;
}

enum { BPE_CACHE_MAX_LEN = 256, BPE_CACHE_MAX_WORDS = 1 << 19 };

/* Encodes one word or one independent piece of a word, through the cache. */
static int bpe_encode_piece(const Bpe *b, const char *w, size_t n, BpeScratch *s, IdVec *out, Err *e) {
    int cacheable = n < BPE_CACHE_MAX_LEN;
    if (cacheable) {
        int32_t ent = strmap_get(&s->cache, w, n);
        if (ent >= 0) {
            for (size_t i = 0; i < s->clen[ent]; i++) idvec_push(out, s->cids.p[s->coff[ent] + i]);
            return 0;
        }
    }
    size_t start = out->n;
    if (bpe_word(b, w, n, s, out, e)) return -1;
    if (cacheable && s->cn < BPE_CACHE_MAX_WORDS) {
        if (s->cn == s->ccap) {
            s->ccap = s->ccap ? s->ccap * 2 : 1024;
            s->coff = xrealloc(s->coff, s->ccap * sizeof *s->coff);
            s->clen = xrealloc(s->clen, s->ccap * sizeof *s->clen);
        }
        s->coff[s->cn] = s->cids.n;
        s->clen[s->cn] = out->n - start;
        for (size_t i = start; i < out->n; i++) idvec_push(&s->cids, out->p[i]);
        strmap_set(&s->cache, w, n, (int32_t)s->cn);
        s->cn++;
    }
    return 0;
}

/* 1 if no vocab token has code points a, b next to each other and both are tokens alone,
 * so that no merge can ever join a symbol ending in a with one starting with b. */
static int bpe_can_cut(const Bpe *b, const char *w, size_t ia, int ka, size_t ib, int kb, uint32_t a, uint32_t c) {
    uint64_t key = ((uint64_t)a << 32 | c) + 1;
    if (b->pairs[pair_slot(b->pairs, b->pcap, key)] == key) return 0;
    int ka_ok = a < 65536 ? b->bmp_char[a >> 3] >> (a & 7) & 1 : strmap_get(&b->vocab, w + ia, (size_t)ka) >= 0;
    int kb_ok = c < 65536 ? b->bmp_char[c >> 3] >> (c & 7) & 1 : strmap_get(&b->vocab, w + ib, (size_t)kb) >= 0;
    return ka_ok && kb_ok;
}

int bpe_encode_word(const Bpe *b, const char *w, size_t n, BpeScratch *s, IdVec *out, Err *e) {
    if (n == 0) return 0;
    if (b->ignore_merges) {
        int32_t id = strmap_get(&b->vocab, w, n);
        if (id >= 0) { idvec_push(out, id); return 0; }
    }
    if (n < BPE_CACHE_MAX_LEN || !b->pairs) return bpe_encode_piece(b, w, n, s, out, e);
    size_t start = 0, prev_i = 0;
    uint32_t prev = 0;
    int prev_k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = utf8_next(w + i, n - i, &cp);
        if (!k) return bpe_encode_piece(b, w + start, n - start, s, out, e);  // not reached on valid input
        if (prev_k && bpe_can_cut(b, w, prev_i, prev_k, i, k, prev, cp)) {
            if (bpe_encode_piece(b, w + start, i - start, s, out, e)) return -1;
            start = i;
        }
        prev = cp;
        prev_i = i;
        prev_k = k;
        i += (size_t)k;
    }
    return bpe_encode_piece(b, w + start, n - start, s, out, e);
}
