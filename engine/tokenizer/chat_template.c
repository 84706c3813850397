/* chat_template.c: the chat templates of the supported model families, written out in C,
 * and tokenization with a loss mask.
 *
 * Each renderer reproduces the string the family's official Hugging Face chat template
 * (tokenizer_config.json "chat_template", rendered by apply_chat_template without a
 * generation prompt) produces for system/user/assistant messages:
 *
 *   llama3  Meta-Llama-3-Instruct: BOS, then per message
 *           <|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT|trim<|eot_id|>.
 *           Llama-3.1+ templates also write a "Cutting Knowledge Date" system header; that
 *           block is not reproduced (it carries a date that 3.2+ takes from the clock).
 *   chatml  Qwen: <|im_start|>ROLE\nCONTENT<|im_end|>\n per message. The official Qwen2 and
 *           Qwen2.5 templates insert a default system message when the first message is not
 *           a system one, and so do we, with each one's text: Qwen2 "You are a helpful
 *           assistant.", Qwen2.5 (tokenizer has <tool_call>) "You are Qwen, created by Alibaba
 *           Cloud. You are a helpful assistant.". Qwen3 (tokenizer has <think>) inserts none
 *           and writes assistant turns after the last user turn as its template does: the
 *           final one always with a <think>...</think> block (empty if the content has none),
 *           and any "<think>..." reasoning dropped from earlier turns' content.
 *   inst    Llama-2-chat: BOS[INST] USER|strip [/INST] ASSISTANT|strip EOS, a system message
 *           folded into the first user turn as <<SYS>>\nSYSTEM\n<</SYS>>\n\n. Mistral uses the
 *           same [INST] markers; Llama-2's form is the one that can carry a system prompt.
 *           Turns must alternate user/assistant after the optional system message, as the
 *           template itself demands.
 * trim/strip are Python's str.strip() (Unicode whitespace), which the templates call. As with
 * apply_chat_template, a special token's text inside a message (say "<|im_end|>") is
 * recognised as that token: tokenization does not know where the template ends.
 *
 * Loss: the tokens of an assistant turn's content and its end token (<|eot_id|>, <|im_end|>,
 * </s>) are targets; a token that straddles the start of the content (e.g. "▁Sure" where the
 * template put the space) is a target too.
 *
 * Tokenization: the ids are always those of tokenizing the whole rendered string with
 * add_special = 0 (the template writes BOS itself), which is what apply_chat_template(...,
 * tokenize=True) returns. To find which tokens a byte offset p separates, we tokenize the
 * text up to p and take the longest common prefix with the whole ids: tokens in that prefix lie
 * before p. To keep this linear, the renderer records "cuts" where it wrote a special token;
 * the tokenizer splits on added tokens before anything else, so the pieces between cuts
 * tokenize independently. That is checked, not assumed: the pieces' ids are concatenated and
 * compared with the whole string's; if they differ (a normalizer or pre-tokenizer that looks
 * across the split), the prefixes are taken from the start of the text instead. */
#include "chat_template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"

/* ---- a growing rendered conversation ---- */

typedef struct {
    ChatRender r;
    size_t cap, cuts_cap, spans_cap;
    int oom;
} Builder;

static void build_put(Builder *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->r.len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->r.len + n + 1) cap *= 2;
        char *p = realloc(b->r.text, cap);
        if (!p) { b->oom = 1; return; }
        b->r.text = p;
        b->cap = cap;
    }
    memcpy(b->r.text + b->r.len, s, n);
    b->r.len += n;
    b->r.text[b->r.len] = 0;
}

static void build_str(Builder *b, const char *s) { build_put(b, s, strlen(s)); }

/* Records that a special token starts at the current end of the text. */
static void build_cut(Builder *b) {
    if (b->oom) return;
    if (b->r.n_cuts && b->r.cuts[b->r.n_cuts - 1] == b->r.len) return;
    if (b->r.n_cuts == b->cuts_cap) {
        size_t cap = b->cuts_cap ? 2 * b->cuts_cap : 16;
        size_t *p = realloc(b->r.cuts, cap * sizeof *p);
        if (!p) { b->oom = 1; return; }
        b->r.cuts = p;
        b->cuts_cap = cap;
    }
    b->r.cuts[b->r.n_cuts++] = b->r.len;
}

/* Writes a special token, cutting before it when the tokenizer knows it as one token. */
static void build_special(Builder *b, const Tokenizer *tok, const char *s) {
    if (tokenizer_token_id(tok, s) >= 0) build_cut(b);
    build_str(b, s);
}

static void build_span(Builder *b, size_t begin, size_t end) {
    if (b->oom || end <= begin) return;
    if (b->r.n_spans == b->spans_cap) {
        size_t cap = b->spans_cap ? 2 * b->spans_cap : 8;
        ChatSpan *p = realloc(b->r.spans, cap * sizeof *p);
        if (!p) { b->oom = 1; return; }
        b->r.spans = p;
        b->spans_cap = cap;
    }
    b->r.spans[b->r.n_spans++] = (ChatSpan){begin, end};
}

/* ---- string helpers with the templates' Python semantics ---- */

/* Length of the UTF-8 sequence at s[0..n) if it is a character Python's str.isspace() accepts
 * (what str.strip() and Jinja's trim remove), else 0. */
static size_t py_space_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if ((c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20)) return 1;
    if (c == 0xc2 && n >= 2 && (s[1] == 0x85 || s[1] == 0xa0)) return 2;
    if (n >= 3 && c == 0xe1 && s[1] == 0x9a && s[2] == 0x80) return 3;                 // U+1680
    if (n >= 3 && c == 0xe2 && s[1] == 0x80 &&
        (s[2] <= 0x8a || s[2] == 0xa8 || s[2] == 0xa9 || s[2] == 0xaf)) return 3;        // U+2000..200A, 2028, 2029, 202F
    if (n >= 3 && c == 0xe2 && s[1] == 0x81 && s[2] == 0x9f) return 3;                 // U+205F
    if (n >= 3 && c == 0xe3 && s[1] == 0x80 && s[2] == 0x80) return 3;                 // U+3000
    return 0;
}

/* Python str.strip() on s[0..*n): advances *s and shrinks *n. */
static void py_strip(const char **s, size_t *n) {
    const unsigned char *p = (const unsigned char *)*s;
    size_t b = 0, e = *n, k;
    while (b < e && (k = py_space_len(p + b, e - b)) > 0) b += k;
    // trailing: step back over whole UTF-8 characters
    while (e > b) {
        size_t st = e - 1;
        while (st > b && (p[st] & 0xc0) == 0x80 && e - st < 4) st--;
        k = py_space_len(p + st, e - st);
        if (k == 0 || st + k != e) break;
        e = st;
    }
    *s += b;
    *n = e - b;
}

/* Python s.lstrip('\n') / s.rstrip('\n') / s.strip('\n'). */
static void nl_lstrip(const char **s, size_t *n) { while (*n && **s == '\n') { (*s)++; (*n)--; } }
static void nl_rstrip(const char **s, size_t *n) { (void)s; while (*n && (*s)[*n - 1] == '\n') (*n)--; }

/* First / last occurrence of needle in s[0..n), or NULL. */
static const char *mem_find(const char *s, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++) if (memcmp(s + i, needle, k) == 0) return s + i;
    return NULL;
}
static const char *mem_find_last(const char *s, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = n >= k ? n - k + 1 : 0; i-- > 0;) if (memcmp(s + i, needle, k) == 0) return s + i;
    return NULL;
}

static const char *role_name(ChatRole r) {
    return r == CHAT_SYSTEM ? "system" : r == CHAT_USER ? "user" : "assistant";
}

static int trains(const ChatMessage *m) { return m->role == CHAT_ASSISTANT && m->weight != 0; }

/* ---- the templates ---- */

/* Meta-Llama-3-Instruct. */
static void render_llama3(Builder *b, const Tokenizer *tok, const ChatMessage *m, size_t n) {
    const char *bos = "<|begin_of_text|>";
    if (tokenizer_token_id(tok, bos) < 0) {
        bos = tokenizer_token(tok, tokenizer_bos_id(tok));
        if (!bos) bos = "";
    }
    for (size_t i = 0; i < n; i++) {
        if (i == 0) build_special(b, tok, bos);
        build_special(b, tok, "<|start_header_id|>");
        build_str(b, role_name(m[i].role));
        build_special(b, tok, "<|end_header_id|>");
        build_str(b, "\n\n");
        const char *c = m[i].content;
        size_t cn = m[i].len;
        py_strip(&c, &cn);
        size_t begin = b->r.len;
        build_put(b, c, cn);
        build_special(b, tok, "<|eot_id|>");
        if (trains(&m[i])) build_span(b, begin, b->r.len);
    }
}

/* Qwen2 / Qwen2.5 / Qwen3 ChatML (see the file comment for the differences). */
static void render_chatml(Builder *b, const Tokenizer *tok, const ChatMessage *m, size_t n) {
    int qwen3 = tokenizer_token_id(tok, "<think>") >= 0 && tokenizer_token_id(tok, "</think>") >= 0;
    const char *default_system = NULL;
    if (!qwen3)
        default_system = tokenizer_token_id(tok, "<tool_call>") >= 0
                             ? "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
                             : "You are a helpful assistant.";
    if (default_system && n > 0 && m[0].role != CHAT_SYSTEM) {
        build_special(b, tok, "<|im_start|>");
        build_str(b, "system\n");
        build_str(b, default_system);
        build_special(b, tok, "<|im_end|>");
        build_str(b, "\n");
    }
    // Qwen3: index of the last user turn that is not a tool response (else n-1)
    size_t last_query = n ? n - 1 : 0;
    for (size_t i = n; i-- > 0;) {
        if (m[i].role != CHAT_USER) continue;
        const char *c = m[i].content;
        size_t cn = m[i].len;
        int tool_resp = cn >= 31 && memcmp(c, "<tool_response>", 15) == 0 &&
                        memcmp(c + cn - 16, "</tool_response>", 16) == 0;
        if (!tool_resp) { last_query = i; break; }
    }
    for (size_t i = 0; i < n; i++) {
        build_special(b, tok, "<|im_start|>");
        build_str(b, role_name(m[i].role));
        build_str(b, "\n");
        size_t begin = b->r.len;
        const char *c = m[i].content;
        size_t cn = m[i].len;
        if (qwen3 && m[i].role == CHAT_ASSISTANT) {
            const char *r = "";
            size_t rn = 0;
            const char *close = mem_find(c, cn, "</think>");
            if (close) {
                // reasoning = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n')
                r = c;
                rn = (size_t)(close - c);
                nl_rstrip(&r, &rn);
                const char *open = mem_find_last(r, rn, "<think>");
                if (open) { rn -= (size_t)(open + 7 - r); r = open + 7; }
                nl_lstrip(&r, &rn);
                // content = content.split('</think>')[-1].lstrip('\n')
                const char *last = mem_find_last(c, cn, "</think>");
                cn -= (size_t)(last + 8 - c);
                c = last + 8;
                nl_lstrip(&c, &cn);
            }
            if (i > last_query && (i == n - 1 || rn > 0)) {
                build_str(b, "<think>\n");
                nl_lstrip(&r, &rn);
                nl_rstrip(&r, &rn);
                build_put(b, r, rn);
                build_str(b, "\n</think>\n\n");
                nl_lstrip(&c, &cn);
            }
        }
        build_put(b, c, cn);
        build_special(b, tok, "<|im_end|>");
        if (trains(&m[i])) build_span(b, begin, b->r.len);
        build_str(b, "\n");
    }
}

/* Llama-2-chat [INST] form; fails if turns do not alternate user/assistant. */
static int render_inst(Builder *b, const Tokenizer *tok, const ChatMessage *m, size_t n, Err *e) {
    const char *bos = tokenizer_token(tok, tokenizer_bos_id(tok));
    const char *eos = tokenizer_token(tok, tokenizer_eos_id(tok));
    if (!bos) bos = "";
    if (!eos) return err_set_at(e, "messages", 0, "messages: the [INST] chat template needs an EOS token and the tokenizer has none");
    size_t start = 0;
    const ChatMessage *sys = NULL;
    if (n > 0 && m[0].role == CHAT_SYSTEM) { sys = &m[0]; start = 1; }
    for (size_t i = start; i < n; i++) {
        ChatRole want = (i - start) % 2 == 0 ? CHAT_USER : CHAT_ASSISTANT;
        if (m[i].role != want) {
            char param[64];
            snprintf(param, sizeof param, "messages[%zu].role", i);
            return err_set_at(e, param, 0,
                              "%s: expected %s: the [INST] chat template (Llama-2, Mistral) needs user and assistant "
                              "turns to alternate, starting with user, after an optional first system message",
                              param, role_name(want));
        }
        const char *c = m[i].content;
        size_t cn = m[i].len;
        if (m[i].role == CHAT_USER) {
            build_special(b, tok, bos);
            build_str(b, "[INST] ");
            if (i == start && sys) {
                // ('<<SYS>>\n' + system + '\n<</SYS>>\n\n' + content).strip()
                Builder t = {0};
                build_str(&t, "<<SYS>>\n");
                build_put(&t, sys->content, sys->len);
                build_str(&t, "\n<</SYS>>\n\n");
                build_put(&t, c, cn);
                if (t.oom) { free(t.r.text); b->oom = 1; return 0; }
                const char *s = t.r.text;
                size_t sn = t.r.len;
                py_strip(&s, &sn);
                build_put(b, s, sn);
                free(t.r.text);
            } else {
                py_strip(&c, &cn);
                build_put(b, c, cn);
            }
            build_str(b, " [/INST]");
        } else {
            build_str(b, " ");
            py_strip(&c, &cn);
            size_t begin = b->r.len;
            build_put(b, c, cn);
            build_str(b, " ");
            build_special(b, tok, eos);
            if (trains(&m[i])) build_span(b, begin, b->r.len);
        }
    }
    return 0;
}

int chat_render(const Tokenizer *tok, int tmpl, const ChatMessage *msgs, size_t n, ChatRender *out, Err *e) {
    Builder b = {0};
    build_put(&b, "", 0);  // text is never NULL
    int rc = 0;
    switch (tmpl) {
    case TEMPLATE_LLAMA3: render_llama3(&b, tok, msgs, n); break;
    case TEMPLATE_CHATML: render_chatml(&b, tok, msgs, n); break;
    case TEMPLATE_INST: rc = render_inst(&b, tok, msgs, n, e); break;
    default: rc = err_set(e, "unknown chat template %d", tmpl);
    }
    if (rc == 0 && b.oom) rc = err_set(e, "out of memory rendering a conversation");
    if (rc != 0) {
        chat_render_free(&b.r);
        return -1;
    }
    *out = b.r;
    return 0;
}

void chat_render_free(ChatRender *r) {
    if (!r) return;
    free(r->text);
    free(r->cuts);
    free(r->spans);
    memset(r, 0, sizeof *r);
}

/* ---- tokenization with a loss mask ---- */

static size_t common_prefix(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

/* Index of the first token of ids (the whole text's) that is not entirely before byte p:
 * pieces[k] is the byte start of piece k, piece_tok[k] its first token. */
static int boundary_token(const Tokenizer *tok, const char *text, size_t len, int add_special,
                          const size_t *pieces, const size_t *piece_tok, size_t n_pieces,
                          const int32_t *ids, size_t n, size_t p, size_t *out, Err *e) {
    if (p >= len) { *out = n; return 0; }
    size_t k = 0;
    while (k + 1 < n_pieces && pieces[k + 1] <= p) k++;
    size_t q = pieces[k], t0 = piece_tok[k];
    int special = add_special && q == 0;
    if (p == q && !special) { *out = t0; return 0; }
    int32_t *pre = NULL;
    size_t np = 0;
    if (tokenizer_encode(tok, text + q, p - q, special, &pre, &np, e) != 0) return -1;
    *out = t0 + common_prefix(pre, np, ids + t0, n - t0);
    free(pre);
    return 0;
}

int chat_encode_masked(const Tokenizer *tok, const char *text, size_t len, int add_special,
                       const size_t *cuts, size_t n_cuts, const ChatSpan *spans, size_t n_spans,
                       int32_t **ids_out, uint8_t **loss_out, size_t *n_out, Err *e) {
    int32_t *ids = NULL;
    uint8_t *loss = NULL;
    size_t n = 0, n_pieces = 1;
    size_t *pieces = NULL, *piece_tok = NULL;
    int rc = -1;
    if (tokenizer_encode(tok, text, len, add_special, &ids, &n, e) != 0) return -1;
    pieces = malloc((n_cuts + 1) * sizeof *pieces);
    piece_tok = malloc((n_cuts + 1) * sizeof *piece_tok);
    loss = calloc(n ? n : 1, 1);
    if (!pieces || !piece_tok || !loss) { err_set(e, "out of memory tokenizing a document"); goto done; }
    pieces[0] = 0;
    piece_tok[0] = 0;
    // Pieces between cuts (only without a post-processor, which would wrap every piece).
    if (!add_special && n_cuts > 0) {
        for (size_t i = 0; i < n_cuts; i++)
            if (cuts[i] > pieces[n_pieces - 1] && cuts[i] < len) pieces[n_pieces++] = cuts[i];
        size_t nc = 0;
        int same = 1;
        for (size_t k = 0; k < n_pieces && same; k++) {
            size_t end = k + 1 < n_pieces ? pieces[k + 1] : len;
            int32_t *pid = NULL;
            size_t np = 0;
            if (tokenizer_encode(tok, text + pieces[k], end - pieces[k], 0, &pid, &np, e) != 0) goto done;
            piece_tok[k] = nc;
            if (nc + np > n || memcmp(pid, ids + nc, np * sizeof *pid) != 0) same = 0;
            else nc += np;
            free(pid);
        }
        if (!same || nc != n) n_pieces = 1;  // the pieces do not add up: prefixes from the start
    }
    for (size_t s = 0; s < n_spans; s++) {
        size_t a, b;
        if (boundary_token(tok, text, len, add_special, pieces, piece_tok, n_pieces, ids, n, spans[s].begin, &a, e) != 0 ||
            boundary_token(tok, text, len, add_special, pieces, piece_tok, n_pieces, ids, n, spans[s].end, &b, e) != 0)
            goto done;
        for (size_t i = a; i < b; i++) loss[i] = 1;
    }
    rc = 0;
done:
    free(pieces);
    free(piece_tok);
    if (rc != 0) { free(ids); free(loss); return -1; }
    *ids_out = ids;
    *loss_out = loss;
    *n_out = n;
    return 0;
}
