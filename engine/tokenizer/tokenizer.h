/* tokenizer.h: Hugging Face tokenizer.json (BPE) encoding and decoding.
 *
 * Supports the two BPE styles real models ship: SentencePiece-style (Llama-2,
 * Mistral: metaspace "▁", byte fallback <0xXX>) and byte-level (GPT-2,
 * Llama-3, Qwen2: regex pre-split with Unicode classes via PCRE2, bytes mapped
 * to printable code points). Merges as "a b" strings or ["a","b"] pairs;
 * added/special tokens are matched before the model; normalizers and the
 * post-processor's BOS/EOS are applied. Ids must equal HF `tokenizers`. */
#ifndef LEMO_TOKENIZER_H
#define LEMO_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct Tokenizer Tokenizer;

Tokenizer *tokenizer_load(const char *json_path, Err *e);
Tokenizer *tokenizer_load_text(const char *json_text, size_t len, Err *e);  // used by fuzzer/tests
void tokenizer_free(Tokenizer *t);

/* Encodes text[0..len) (UTF-8; invalid bytes are an error). add_special != 0 applies
 * the post-processor (e.g. BOS) like HF encode(add_special_tokens=True). Added tokens
 * (special or not) in the text are recognised, as HF does. On success *ids is a
 * malloc'd array of *n ids. */
int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int add_special,
                     int32_t **ids, size_t *n, Err *e);
/* Decodes to a malloc'd NUL-terminated string; skip_special drops special tokens. */
char *tokenizer_decode(const Tokenizer *t, const int32_t *ids, size_t n, int skip_special);

int tokenizer_vocab_size(const Tokenizer *t);     // largest id + 1
int tokenizer_token_id(const Tokenizer *t, const char *token);  // -1 if absent
const char *tokenizer_token(const Tokenizer *t, int id);        // NULL if absent
int tokenizer_bos_id(const Tokenizer *t);         // -1 if none
int tokenizer_eos_id(const Tokenizer *t);         // -1 if none

#endif
