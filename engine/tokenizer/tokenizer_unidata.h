/* tokenizer_unidata.h: the Unicode tables behind the tokenizer's normalizers.
 *
 * Generated data (engine/tokenizer_unidata.c); tokenizer_text.c is the only reader.
 * Every table is sorted by its first field so lookups are binary searches. */
#ifndef LEMO_TOKENIZER_UNIDATA_H
#define LEMO_TOKENIZER_UNIDATA_H

#include <stdint.h>

typedef struct { uint32_t lo, hi; uint8_t ccc; } UniCccRange;  // canonical combining class of lo..hi
/* Full (recursive) decompositions as runs of uni_pool: canonical (NFD) and, when it
 * differs, compatibility (NFKD); a length of 0 means "none of that kind". */
typedef struct { uint32_t cp; uint16_t canon_off, canon_len; uint16_t compat_off, compat_len; } UniDecomp;
/* Lowercase of one code point: n == 0: the single code point `lo`; else n code points at uni_pool[lo]. */
typedef struct { uint32_t cp, lo; uint8_t n; } UniLower;
typedef struct { uint32_t first, second, composite; } UniComp;  // primary composites, sorted by (first, second)

extern const UniCccRange uni_ccc[];
extern const int uni_ccc_n;
extern const UniDecomp uni_decomp[];
extern const int uni_decomp_n;
extern const UniLower uni_lower[];
extern const int uni_lower_n;
extern const UniComp uni_comp[];
extern const int uni_comp_n;
extern const uint32_t uni_pool[];

#endif
