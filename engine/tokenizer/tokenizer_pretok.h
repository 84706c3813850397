/* tokenizer_pretok.h: normalizers and pre-tokenizers of a tokenizer.json.
 *
 * Both are parsed once into flat step lists (a "Sequence" is flattened) and then run on
 * each stretch of text between added tokens. Regex patterns (HF compiles them with
 * Oniguruma) run on PCRE2 with UTF + UCP after a small rewrite that gives \s and \w
 * Oniguruma's Unicode meaning. */
#ifndef LEMO_TOKENIZER_PRETOK_H
#define LEMO_TOKENIZER_PRETOK_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <stddef.h>

#include "err.h"
#include "tokenizer_text.h"

typedef struct { pcre2_code *re; } Regex;
typedef struct { size_t *p; size_t n, cap; } SpanVec;  // (start, end) pairs: p[2i], p[2i+1]

/* Compiles a regex (HF "Regex") or, with literal != 0, a plain string (HF "String"). */
int regex_compile(Regex *r, const char *pat, size_t len, int literal, Err *e);
void regex_free(Regex *r);
/* All matches in s[0..n) with Oniguruma's find_iter rules for empty matches. */
int regex_find_all(const Regex *r, const char *s, size_t n, SpanVec *out, Err *e);

enum { NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_LOWER, NORM_STRIP, NORM_STRIP_ACCENTS,
       NORM_PREPEND, NORM_APPEND, NORM_REPLACE, NORM_BYTELEVEL };
typedef struct {
    int kind;
    int left, right;   // NORM_STRIP
    char *str;         // NORM_PREPEND / NORM_APPEND text, NORM_REPLACE content
    Regex re;          // NORM_REPLACE pattern, NORM_STRIP_ACCENTS (\p{Mn})
} NormStep;

enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS };
enum { PRE_SPLIT, PRE_BYTELEVEL, PRE_METASPACE };
enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };
typedef struct {
    int kind;
    Regex re;               // PRE_SPLIT (or the GPT-2 pattern of PRE_BYTELEVEL with use_regex)
    int behavior, invert;   // PRE_SPLIT
    int add_prefix_space;   // PRE_BYTELEVEL
    int use_regex;          // PRE_BYTELEVEL
    char rep[8];            // PRE_METASPACE replacement character (UTF-8)
    int prepend, split;     // PRE_METASPACE
} PreStep;

typedef struct { NormStep *s; int n; } Normalizer;
typedef struct { PreStep *s; int n; } PreTokenizer;

/* Parse "normalizer" / "pre_tokenizer" (null gives an empty list). */
int normalizer_parse(Normalizer *nz, json_t *j, Err *e);
int pretokenizer_parse(PreTokenizer *pt, json_t *j, Err *e);
void normalizer_free(Normalizer *nz);
void pretokenizer_free(PreTokenizer *pt);

/* Normalizes s[0..n) into out (replacing its contents). */
int normalizer_run(const Normalizer *nz, const char *s, size_t n, Buf *out, Err *e);

typedef struct { size_t off, len; int origin; } Piece;  // origin: starts at input offset 0
typedef struct { Piece *p; size_t n, cap; Buf text; } PieceList;
void piecelist_free(PieceList *l);

/* Pre-tokenizes s[0..n) into words (appended to out). origin: s starts the input. */
int pretokenizer_run(const PreTokenizer *pt, const char *s, size_t n, int origin, PieceList *out, SpanVec *spans,
                     Err *e);

/* The byte <-> printable-character map of byte-level BPE (GPT-2's bytes_to_unicode). */
uint32_t bytelevel_char(unsigned char b);
int bytelevel_byte(uint32_t cp);  // -1 if cp is not one of the 256 characters

#endif
