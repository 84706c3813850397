/* tokenizer_text.h: text primitives the tokenizer modules share.
 *
 * A growable byte buffer, a growable id vector, UTF-8 decoding/encoding with the
 * exact validity rules of Rust's str (HF `tokenizers` is Rust, so "valid UTF-8" and
 * "lossy decoding" must mean what they mean there), and the Unicode operations the
 * normalizers need: NFC/NFD/NFKC/NFKD, lowercase, White_Space. Kept apart from the
 * pipeline code so each piece can be tested and read on its own. */
#ifndef LEMO_TOKENIZER_TEXT_H
#define LEMO_TOKENIZER_TEXT_H

#include <stddef.h>
#include <stdint.h>

typedef struct { char *p; size_t n, cap; } Buf;          // bytes p[0..n), NUL kept after n
typedef struct { int32_t *p; size_t n, cap; } IdVec;

void buf_put(Buf *b, const void *s, size_t n);
void buf_putc(Buf *b, char c);
void buf_put_cp(Buf *b, uint32_t cp);                     // appends cp as UTF-8
void buf_free(Buf *b);
void idvec_push(IdVec *v, int32_t id);
void idvec_free(IdVec *v);

/* Decodes one code point at s[0..n) (n > 0). Returns its byte length (1-4), or 0 when the
 * bytes there are not valid UTF-8 (overlong, surrogate, > U+10FFFF, truncated). */
int utf8_next(const char *s, size_t n, uint32_t *cp);
/* Byte offset of the first invalid sequence in s[0..n), or n when all of it is valid. */
size_t utf8_check(const char *s, size_t n);
/* Appends s[0..n) to out, each maximal invalid subsequence replaced by U+FFFD (the
 * same replacement rule as Rust's String::from_utf8_lossy). */
void utf8_lossy(Buf *out, const char *s, size_t n);

enum { UNI_NFC, UNI_NFD, UNI_NFKC, UNI_NFKD };
/* Appends the normalization form `form` of the valid UTF-8 s[0..n) to out. */
void uni_normalize(int form, const char *s, size_t n, Buf *out);
/* Appends the per-character lowercase of s[0..n) (Rust char::to_lowercase) to out. */
void uni_lowercase(const char *s, size_t n, Buf *out);
/* Unicode White_Space (Rust char::is_whitespace). */
int uni_is_space(uint32_t cp);

#endif
