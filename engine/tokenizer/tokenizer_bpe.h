/* tokenizer_bpe.h: the BPE model of a tokenizer.json ("model": {"type": "BPE", ...}).
 *
 * Turns one pre-tokenized word into ids exactly as HF `tokenizers` does: one symbol per
 * character (vocab lookup, then <0xXX> byte fallback, then unk with optional fusing),
 * then merges applied lowest rank first (leftmost on ties) with a heap over a linked
 * list of symbols, so a long word costs O(n log n), not O(n^2). A symbol whose id is in
 * no merge can never change or join a neighbour, so the merge loop runs separately on
 * the stretches between such symbols: the result is the same, and a whole document fed
 * as one word (SentencePiece-style tokenizers have no pre-tokenizer) keeps a small,
 * cache-resident heap instead of one the size of the document. Likewise a long word is
 * cut between two characters that appear next to each other in no vocab token (no merge
 * can ever join them), and the pieces go through the per-call word cache. */
#ifndef LEMO_TOKENIZER_BPE_H
#define LEMO_TOKENIZER_BPE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "tokenizer_text.h"

/* String -> int32 hash map (open addressing). Keys are copied into an arena. */
typedef struct {
    uint64_t *slot;   // (cap) key hash << 32 | (index+1) into the entry arrays; 0 = empty
    size_t cap, n;
    const char **key; // (n) NUL-terminated copies
    uint32_t *klen;   // (n)
    int32_t *val;     // (n)
    size_t ecap;
} StrMap;

void strmap_init(StrMap *m);
void strmap_free(StrMap *m);
/* Sets key -> val (overwrites). Returns the entry index. */
size_t strmap_set(StrMap *m, const char *key, size_t len, int32_t val);
/* Returns the value, or -1 when absent. */
int32_t strmap_get(const StrMap *m, const char *key, size_t len);

/* One merge: the pair (a << 32 | b), UINT64_MAX for an empty slot, its rank and merged id. */
typedef struct { uint64_t key; uint32_t rank, nid; } BpeMerge;

typedef struct {
    StrMap vocab;           // token -> id
    const char **id_tok;    // (n_ids) id -> token (points into vocab keys), NULL for holes
    int n_ids;              // largest id + 1
    BpeMerge *merge;        // (mcap) open-addressing table of merges
    size_t mcap, n_merges;
    uint8_t *in_merge;      // (n_ids) 1 if the id is the left or right half of some merge
    uint64_t *pairs;        // (pcap) set of adjacent code point pairs (a << 32 | b) + 1 seen
    size_t pcap;            //   inside any vocab token; 0 = empty slot; NULL when unused
    uint8_t *bmp_char;      // (65536/8) bit set: the BMP code point is a token on its own
    int32_t unk_id;         // -1: no unk token
    char *unk_token;        // as written (may be absent from vocab: then unk is an error)
    int fuse_unk, byte_fallback, ignore_merges;
    char *prefix, *suffix;  // continuing_subword_prefix, end_of_word_suffix (NULL: none)
    int32_t byte_id[256];   // id of "<0xXX>", -1 if absent
} Bpe;

/* Builds the model from the "model" object; errors name the field. */
int bpe_load(Bpe *b, json_t *model, Err *e);
void bpe_free(Bpe *b);

typedef struct BpeScratch BpeScratch;  // per-call working memory and word cache
BpeScratch *bpe_scratch_new(void);
void bpe_scratch_free(BpeScratch *s);
/* Appends the ids of word w[0..n) (valid UTF-8) to out. */
int bpe_encode_word(const Bpe *b, const char *w, size_t n, BpeScratch *s, IdVec *out, Err *e);

#endif
