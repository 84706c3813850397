/* data.h: JSONL datasets -> token streams with loss masks -> packed windows.
 *
 * Line formats (one JSON object per line, blank lines skipped):
 *   {"text": "..."}                               loss on every token
 *   {"prompt": "...", "completion": "..."}        loss on the completion only
 *   {"messages": [{"role","content","weight"?}]}  loss on assistant turns (weight 0 turns excluded)
 * Extra keys are ignored (e.g. "source"). Chat templates follow the model family:
 * llama-3 (<|start_header_id|>...), chatml for qwen2 (<|im_start|>...), and the
 * Mistral / Llama-2 [INST] form; the exact token sequence of HF apply_chat_template.
 * A malformed line is an error naming the file, the 1-based line and the field.
 *
 * Packing: documents are concatenated, EOS between them, into one stream, cut into
 * windows of S inputs; window w has inputs stream[wS .. wS+S) and targets
 * stream[wS+1 .. wS+S] (the target is -1 where the target token carries no loss). */
#ifndef LEMO_DATA_H
#define LEMO_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "tokenizer.h"

enum { TEMPLATE_AUTO = 0, TEMPLATE_LLAMA3, TEMPLATE_CHATML, TEMPLATE_INST };

typedef struct {
    int32_t *ids;     // (n) token ids of all documents, EOS-separated
    uint8_t *loss;    // (n) 1 where the token is a training target
    size_t n;
    size_t n_docs;
} TokenStream;

typedef struct {
    int S;            // window length (context_length)
    size_t n;         // number of windows
    int32_t *inputs;  // (n, S)
    int32_t *targets; // (n, S), -1 = no loss
} Packed;

/* Chooses the template for a model: an explicit TEMPLATE_* wins; else by the tokenizer's
 * special tokens (<|start_header_id|> -> llama3, <|im_start|> -> chatml, else [INST]). */
int data_pick_template(const Tokenizer *tok, int requested);

/* Reads a JSONL file, tokenizes every document (BOS per the tokenizer's post-processor,
 * EOS appended), appends to *out. keep(doc_index) decides which documents go in (NULL: all);
 * used for the held-out split. */
int data_load_jsonl(const char *path, const Tokenizer *tok, int tmpl,
                    int (*keep)(size_t doc_index, void *ctx), void *ctx,
                    TokenStream *out, Err *e);
/* Checks a JSONL file's structure without a tokenizer (the server's upload validator):
 * counts lines and examples, stops at the first error. */
int data_validate_jsonl(const char *buf, size_t len, const char *name, long *n_examples, Err *e);
void token_stream_free(TokenStream *s);

/* Packs a stream into S-token windows (a trailing partial window is dropped unless it is the
 * only one; a window whose targets are all -1 is dropped). */
int data_pack(const TokenStream *s, int S, Packed *out, Err *e);
void packed_free(Packed *p);

/* Deterministic permutation of 0..n-1 for (seed, epoch): the same on every machine. */
void data_shuffle_order(size_t n, uint64_t seed, uint64_t epoch, size_t *order);

#endif
