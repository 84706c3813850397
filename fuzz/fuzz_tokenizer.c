/* fuzz_tokenizer.c: libFuzzer target for tokenizer.json loading and encoding.
 *
 * Input: a tokenizer.json text, optionally followed by a NUL byte and a text to encode.
 * Whatever loads must encode a fixed string full of edge cases (spaces, digits,
 * contractions, CJK, emoji, combining marks, special-token lookalikes) and the tail
 * text, decode the ids again, and free everything, without crashing or leaking. Bad
 * files and invalid UTF-8 must come back as errors. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

static const char FIXED[] =
    "  Hello, world!\n\tIt's 12345 caf\xc3\xa9 cafe\xcc\x81 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80 "
    "<s></s><|endoftext|> <unk> a  b   \r\n\xe2\x96\x81x \xc2\x85 ";

static void exercise(const Tokenizer *t, const char *text, size_t len) {
    int32_t *ids = NULL;
    size_t n = 0;
    Err e;
    for (int special = 0; special < 2; special++) {
        if (tokenizer_encode(t, text, len, special, &ids, &n, &e) == 0) {
            for (int skip = 0; skip < 2; skip++) free(tokenizer_decode(t, ids, n, skip));
            free(ids);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t json_len = nul ? (size_t)(nul - data) : size;
    Err e;
    Tokenizer *t = tokenizer_load_text((const char *)data, json_len, &e);
    if (!t) return 0;
    exercise(t, FIXED, sizeof FIXED - 1);
    if (nul) exercise(t, (const char *)nul + 1, size - json_len - 1);
    int v = tokenizer_vocab_size(t);
    for (int id = -1; id <= v && id < 4096; id++) {
        const char *tok = tokenizer_token(t, id);
        if (tok && tokenizer_token_id(t, tok) < 0) abort();  // every token must be found again
    }
    int32_t odd[] = {-1, 0, v - 1, v, INT32_MAX};
    free(tokenizer_decode(t, odd, 5, 0));
    tokenizer_bos_id(t);
    tokenizer_eos_id(t);
    tokenizer_free(t);
    return 0;
}
