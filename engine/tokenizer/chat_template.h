/* chat_template.h: conversations -> the text a model's HF chat template renders, and
 * tokenization of a text with byte spans marked as training targets.
 *
 * A rendered conversation carries, next to its text, the byte offsets where the template
 * put a special token (cuts: the tokenizer splits there, so pieces between cuts tokenize
 * independently) and the byte spans whose tokens carry loss (assistant content plus the
 * turn's end token). chat_encode_masked turns any text + spans into ids + a loss mask that
 * equal HF's ids for the whole text (see chat_template.c for how). */
#ifndef LEMO_CHAT_TEMPLATE_H
#define LEMO_CHAT_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "tokenizer.h"

typedef enum { CHAT_SYSTEM = 0, CHAT_USER, CHAT_ASSISTANT } ChatRole;

typedef struct {
    ChatRole role;
    const char *content;  // UTF-8, not NUL-terminated
    size_t len;
    int weight;           // 0 or 1; only assistant turns with weight 1 are targets
} ChatMessage;

typedef struct {
    size_t begin, end;    // byte range [begin, end) of the rendered text
} ChatSpan;

typedef struct {
    char *text;           // (len) rendered conversation, NUL-terminated
    size_t len;
    size_t *cuts;         // (n_cuts) ascending byte offsets where a template special token starts
    size_t n_cuts;
    ChatSpan *spans;      // (n_spans) ascending, disjoint target ranges
    size_t n_spans;
} ChatRender;

/* Renders msgs[0..n) with template tmpl (TEMPLATE_LLAMA3/CHATML/INST from data.h) the way the
 * model family's HF chat template does (no generation prompt). Errors (e.g. the [INST] form's
 * user/assistant alternation) set Err.param to "messages[i].role" and a message that starts
 * with that field; the caller adds file and line. */
int chat_render(const Tokenizer *tok, int tmpl, const ChatMessage *msgs, size_t n,
                ChatRender *out, Err *e);
void chat_render_free(ChatRender *r);

/* Tokenizes text[0..len) (add_special as tokenizer_encode) and marks loss[i] = 1 for every
 * token that overlaps one of spans[0..n_spans). cuts (may be NULL) are offsets where the text
 * may be split into independently tokenized pieces; they are only used when the pieces give
 * exactly the whole text's ids. On success *ids and *loss are malloc'd arrays of *n. */
int chat_encode_masked(const Tokenizer *tok, const char *text, size_t len, int add_special,
                       const size_t *cuts, size_t n_cuts, const ChatSpan *spans, size_t n_spans,
                       int32_t **ids, uint8_t **loss, size_t *n, Err *e);

#endif
