/* data.c: JSONL datasets -> token streams with loss masks -> packed training windows.
 *
 * One JSON object a line, parsed with jansson line by line (getline, so a line may be any
 * length and a file any size). The same line parser serves the loader and the server's
 * upload validator, so both reject the same lines with the same message
 * ("train.jsonl: line 17: messages[2].role: expected one of system, user, assistant",
 * Err.param "messages[2].role", Err.line 17). The one check only the loader makes is the
 * [INST] template's user/assistant alternation, since the validator does not know the model.
 *
 * Formats, picked by key (first match wins; other keys are ignored):
 *   "messages"              a conversation, rendered by the model family's chat template
 *                           (chat_template.c); targets = assistant turns with weight 1 (the
 *                           default) and their end token. Roles system/user/assistant; weight
 *                           0 or 1; tool roles and tool calls are rejected.
 *   "prompt", "completion"  joined with nothing in between (prompt + completion, as OpenAI and
 *                           Together do for completion fine-tunes: put any separator in the
 *                           data), tokenized together with BOS; targets = the completion's
 *                           tokens (a token straddling the join counts as completion) and EOS.
 *   "text"                  tokenized with BOS; every token but BOS is a target, and EOS.
 * Every document is followed by EOS unless it already ends with it (the [INST] form does).
 * After a conversation that EOS is a separator only, not a target: the model learns to stop
 * with its template's end token. Text must be valid UTF-8 (checked on the raw line, before
 * JSON, so the error names the line and byte); a UTF-8 BOM at the start of the file is skipped.
 *
 * Packing and shuffling: see data.h. The shuffle is Fisher-Yates driven by splitmix64,
 * written here so the order is the same on every machine and libc. */
#include "hash.h"
#include "data.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"

typedef enum { DOC_TEXT, DOC_COMPLETION, DOC_CHAT } DocKind;

/* One parsed line; strings point into the line's json_t. */
typedef struct {
    DocKind kind;
    const char *text, *prompt, *completion;
    size_t text_len, prompt_len, completion_len;
    ChatMessage *msgs;   // (n_msgs) for DOC_CHAT, malloc'd
    size_t n_msgs;
} Doc;

/* Sets e to "NAME: line N: PARAM: MESSAGE" (no "PARAM: " when param is empty). */
__attribute__((format(printf, 5, 6)))
static int line_err(Err *e, const char *name, long line, const char *param, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (param && *param) return err_set_at(e, param, line, "%s: line %ld: %s: %s", name, line, param, msg);
    return err_set_at(e, "", line, "%s: line %ld: %s", name, line, msg);
}

/* Offset of the first byte that is not part of valid UTF-8 (no overlongs, no surrogates,
 * nothing above U+10FFFF), or len if all of s[0..len) is valid. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t k;
        unsigned lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) k = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else return i;
        if (len - i <= k) return i;
        if (s[i + 1] < lo || s[i + 1] > hi) return i;
        for (size_t j = 2; j <= k; j++)
            if ((s[i + j] & 0xc0) != 0x80) return i;
        i += k + 1;
    }
    return len;
}

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* Reads key of obj as a string into *s, *n; error naming the key if missing or not a string. */
static int get_string(const json_t *obj, const char *key, const char *param, const char *name, long line,
                      const char **s, size_t *n, Err *e) {
    const json_t *v = json_object_get(obj, key);
    if (!v) return line_err(e, name, line, param, "missing");
    if (!json_is_string(v)) return line_err(e, name, line, param, "expected a string, got %s", json_kind(v));
    *s = json_string_value(v);
    *n = json_string_length(v);
    return 0;
}

/* Whether s (n bytes) is empty or only whitespace: nothing to train on. */
static int blank_text(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

/* Fills doc->msgs from the "messages" array; checks roles, content, weight and that some
 * assistant turn carries loss (an empty trained assistant turn is an error). */
static int parse_messages(const json_t *arr, const char *name, long line, Doc *doc, Err *e) {
    if (!json_is_array(arr)) return line_err(e, name, line, "messages", "expected an array, got %s", json_kind(arr));
    size_t n = json_array_size(arr);
    if (n == 0) return line_err(e, name, line, "messages", "empty: a conversation needs at least one message");
    doc->msgs = calloc(n, sizeof *doc->msgs);
    if (!doc->msgs) return line_err(e, name, line, "", "out of memory");
    doc->n_msgs = n;
    int n_assistant = 0, n_trained = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(arr, i);
        char param[96];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(m)) return line_err(e, name, line, param, "expected an object, got %s", json_kind(m));
        ChatMessage *cm = &doc->msgs[i];
        const char *role;
        size_t role_len;
        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (get_string(m, "role", param, name, line, &role, &role_len, e) != 0) return -1;
        if (strcmp(role, "system") == 0) cm->role = CHAT_SYSTEM;
        else if (strcmp(role, "user") == 0) cm->role = CHAT_USER;
        else if (strcmp(role, "assistant") == 0) cm->role = CHAT_ASSISTANT;
        else if (strcmp(role, "tool") == 0 || strcmp(role, "function") == 0 || strcmp(role, "ipython") == 0)
            return line_err(e, name, line, param, "expected one of system, user, assistant (\"%s\" turns are not supported)", role);
        else return line_err(e, name, line, param, "expected one of system, user, assistant");
        static const char *tool_keys[] = {"tool_calls", "function_call"};
        for (int k = 0; k < 2; k++) {
            const json_t *t = json_object_get(m, tool_keys[k]);
            if (t && !json_is_null(t)) {
                snprintf(param, sizeof param, "messages[%zu].%s", i, tool_keys[k]);
                return line_err(e, name, line, param, "tool calls are not supported");
            }
        }
        snprintf(param, sizeof param, "messages[%zu].content", i);
        if (get_string(m, "content", param, name, line, &cm->content, &cm->len, e) != 0) return -1;
        cm->weight = 1;
        const json_t *w = json_object_get(m, "weight");
        if (w) {
            snprintf(param, sizeof param, "messages[%zu].weight", i);
            if (!json_is_number(w) || (json_number_value(w) != 0.0 && json_number_value(w) != 1.0))
                return line_err(e, name, line, param, "expected 0 or 1");
            cm->weight = json_number_value(w) == 1.0;
        }
        if (cm->role == CHAT_ASSISTANT) {
            n_assistant++;
            n_trained += cm->weight;
            snprintf(param, sizeof param, "messages[%zu].content", i);
            if (cm->weight && blank_text(cm->content, cm->len))
                return line_err(e, name, line, param, "empty assistant turn: there is nothing to train on (give it text, "
                                "or weight 0)");
        }
    }
    if (n_assistant == 0) return line_err(e, name, line, "messages", "no assistant message: there is nothing to train on");
    if (n_trained == 0) return line_err(e, name, line, "messages", "every assistant message has weight 0: there is nothing to train on");
    return 0;
}

/* Parses one line. *blank = 1 for a whitespace-only line (nothing else is set). On success
 * *root holds the parsed object (the caller frees it and doc->msgs). */
static int parse_line(const char *name, long line, const char *buf, size_t len, int *blank, json_t **root,
                      Doc *doc, Err *e) {
    memset(doc, 0, sizeof *doc);
    *root = NULL;
    *blank = 0;
    size_t i = 0;
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n')) i++;
    if (i == len) { *blank = 1; return 0; }
    size_t bad = utf8_invalid_at((const unsigned char *)buf, len);
    if (bad < len) return line_err(e, name, line, "", "invalid UTF-8 at byte %zu of the line", bad + 1);
    json_error_t je;
    json_t *v = json_loadb(buf, len, JSON_DECODE_ANY, &je);
    if (!v) return line_err(e, name, line, "", "invalid JSON at column %d: %s", je.column, je.text);
    *root = v;
    if (!json_is_object(v)) return line_err(e, name, line, "", "expected a JSON object, got %s", json_kind(v));
    const json_t *msgs = json_object_get(v, "messages");
    if (msgs) {
        doc->kind = DOC_CHAT;
        return parse_messages(msgs, name, line, doc, e);
    }
    if (json_object_get(v, "prompt") || json_object_get(v, "completion")) {
        doc->kind = DOC_COMPLETION;
        if (get_string(v, "prompt", "prompt", name, line, &doc->prompt, &doc->prompt_len, e) != 0) return -1;
        // an empty completion still trains the EOS after the prompt (stopping there)
        return get_string(v, "completion", "completion", name, line, &doc->completion, &doc->completion_len, e);
    }
    if (json_object_get(v, "text")) {
        doc->kind = DOC_TEXT;
        if (get_string(v, "text", "text", name, line, &doc->text, &doc->text_len, e)) return -1;
        if (blank_text(doc->text, doc->text_len)) return line_err(e, name, line, "text", "empty: there is nothing to train on");
        return 0;
    }
    return line_err(e, name, line, "", "expected a \"text\", \"prompt\" and \"completion\", or \"messages\" key");
}

static void doc_free(Doc *d, json_t *root) {
    free(d->msgs);
    d->msgs = NULL;
    json_decref(root);
}

int data_validate_jsonl(const char *buf, size_t len, const char *name, long *n_examples, Err *e) {
    long line = 0, n = 0;
    size_t pos = 0;
    if (!name) name = "file";
    if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) pos = 3;
    while (pos < len) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - buf) : len;
        line++;
        int blank;
        json_t *root;
        Doc doc;
        int rc = parse_line(name, line, buf + pos, end - pos, &blank, &root, &doc, e);
        doc_free(&doc, root);
        if (rc != 0) return -1;
        if (!blank) n++;
        pos = end + 1;
    }
    if (n == 0) return err_set(e, "%s: no examples: the file is empty or has only blank lines", name);
    if (n_examples) *n_examples = n;
    return 0;
}

/* ---- the loader ---- */

/* Appends ids/loss to the stream, growing it by doubling. */
static int stream_append(TokenStream *s, size_t *cap, const int32_t *ids, const uint8_t *loss, size_t n) {
    if (s->n + n > *cap) {
        size_t c = *cap ? *cap : 4096;
        while (c < s->n + n) c *= 2;
        int32_t *ni = realloc(s->ids, c * sizeof *ni);
        if (!ni) return -1;
        s->ids = ni;
        uint8_t *nl = realloc(s->loss, c);
        if (!nl) return -1;
        s->loss = nl;
        *cap = c;
    }
    memcpy(s->ids + s->n, ids, n * sizeof *ids);
    memcpy(s->loss + s->n, loss, n);
    s->n += n;
    return 0;
}

/* Tokenizes one parsed document with its loss mask (EOS not yet appended). */
static int doc_encode(const Doc *d, const Tokenizer *tok, int tmpl, int32_t **ids, uint8_t **loss, size_t *n, Err *e) {
    if (d->kind == DOC_TEXT) {
        ChatSpan all = {0, d->text_len};
        return chat_encode_masked(tok, d->text, d->text_len, 1, NULL, 0, &all, 1, ids, loss, n, e);
    }
    if (d->kind == DOC_COMPLETION) {
        size_t len = d->prompt_len + d->completion_len;
        char *t = malloc(len + 1);
        if (!t) return err_set(e, "out of memory");
        memcpy(t, d->prompt, d->prompt_len);
        memcpy(t + d->prompt_len, d->completion, d->completion_len);
        t[len] = 0;
        ChatSpan comp = {d->prompt_len, len};
        int rc = chat_encode_masked(tok, t, len, 1, NULL, 0, &comp, 1, ids, loss, n, e);
        free(t);
        return rc;
    }
    ChatRender r;
    if (chat_render(tok, tmpl, d->msgs, d->n_msgs, &r, e) != 0) return -1;
    int rc = chat_encode_masked(tok, r.text, r.len, 0, r.cuts, r.n_cuts, r.spans, r.n_spans, ids, loss, n, e);
    chat_render_free(&r);
    return rc;
}

int data_load_jsonl(const char *path, const Tokenizer *tok, int tmpl,
                    int (*keep)(size_t doc_index, void *ctx), void *ctx, TokenStream *out, Err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(e, "%s: cannot open: %m", path);
    tmpl = data_pick_template(tok, tmpl);
    int32_t eos = tokenizer_eos_id(tok);
    size_t cap = out->n, n0 = out->n, docs0 = out->n_docs, index = 0;
    char *buf = NULL;
    size_t bufcap = 0;
    ssize_t got;
    long line = 0;
    int rc = -1;
    while ((got = getline(&buf, &bufcap, f)) >= 0) {
        line++;
        const char *p = buf;
        size_t len = (size_t)got;
        if (line == 1 && len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) { p += 3; len -= 3; }
        if (len > 0 && p[len - 1] == '\n') len--;  // the validator sees lines without it too
        int blank;
        json_t *root;
        Doc doc;
        if (parse_line(path, line, p, len, &blank, &root, &doc, e) != 0) { doc_free(&doc, root); goto done; }
        if (blank) continue;
        size_t this_doc = index++;
        if (keep && !keep(this_doc, ctx)) {
            // not tokenized, but the [INST] alternation rule holds for every line
            ChatRender r;
            int bad = doc.kind == DOC_CHAT && tmpl == TEMPLATE_INST &&
                      chat_render(tok, tmpl, doc.msgs, doc.n_msgs, &r, e) != 0;
            if (doc.kind == DOC_CHAT && tmpl == TEMPLATE_INST && !bad) chat_render_free(&r);
            doc_free(&doc, root);
            if (bad) {
                err_prefix(e, "%s: line %ld", path, line);
                e->line = line;
                goto done;
            }
            continue;
        }
        int32_t *ids = NULL;
        uint8_t *loss = NULL;
        size_t n = 0;
        int erc = doc_encode(&doc, tok, tmpl, &ids, &loss, &n, e);
        int chat = doc.kind == DOC_CHAT;
        doc_free(&doc, root);
        if (erc != 0) {
            err_prefix(e, "%s: line %ld", path, line);
            e->line = line;
            goto done;
        }
        int ok = stream_append(out, &cap, ids, loss, n) == 0;
        if (ok && eos >= 0 && (n == 0 || ids[n - 1] != eos)) {
            uint8_t l = chat ? 0 : 1;
            ok = stream_append(out, &cap, &eos, &l, 1) == 0;
        } else if (ok && n > 0 && ids[n - 1] == eos && !chat) {
            out->loss[out->n - 1] = 1;  // a post-processor EOS is the document's end: a target
        }
        free(ids);
        free(loss);
        if (!ok) { err_set(e, "%s: out of memory at line %ld", path, line); goto done; }
        out->n_docs++;
    }
    if (ferror(f)) { err_set(e, "%s: read error after line %ld", path, line); goto done; }
    if (index == 0) { err_set(e, "%s: no examples: the file is empty or has only blank lines", path); goto done; }
    rc = 0;
done:
    if (rc != 0) {  // leave *out as it was
        out->n = n0;
        out->n_docs = docs0;
    }
    free(buf);
    fclose(f);
    return rc;
}

int data_pick_template(const Tokenizer *tok, int requested) {
    if (requested == TEMPLATE_LLAMA3 || requested == TEMPLATE_CHATML || requested == TEMPLATE_INST) return requested;
    if (tokenizer_token_id(tok, "<|start_header_id|>") >= 0) return TEMPLATE_LLAMA3;
    if (tokenizer_token_id(tok, "<|im_start|>") >= 0) return TEMPLATE_CHATML;
    return TEMPLATE_INST;
}

void token_stream_free(TokenStream *s) {
    if (!s) return;
    free(s->ids);
    free(s->loss);
    memset(s, 0, sizeof *s);
}

/* ---- packing ---- */

int data_pack(const TokenStream *s, int S, Packed *out, Err *e) {
    memset(out, 0, sizeof *out);
    if (S <= 0) return err_set(e, "context_length must be positive, got %d", S);
    if (s->n < 2) return err_set(e, "the dataset has %zu tokens: at least 2 are needed to train", s->n);
    size_t full = (s->n - 1) / (size_t)S;
    size_t cand = full ? full : 1;  // a lone partial window is kept, padded
    out->S = S;
    out->inputs = malloc(cand * (size_t)S * sizeof *out->inputs);
    out->targets = malloc(cand * (size_t)S * sizeof *out->targets);
    if (!out->inputs || !out->targets) {
        packed_free(out);
        return err_set(e, "out of memory packing %zu windows of %d tokens", cand, S);
    }
    size_t w_out = 0;
    for (size_t w = 0; w < cand; w++) {
        int32_t *in = out->inputs + w_out * (size_t)S, *tg = out->targets + w_out * (size_t)S;
        size_t base = w * (size_t)S;
        int any = 0;
        for (size_t i = 0; i < (size_t)S; i++) {
            size_t t = base + i;
            if (t + 1 < s->n) {
                in[i] = s->ids[t];
                tg[i] = s->loss[t + 1] ? s->ids[t + 1] : -1;
                any |= tg[i] >= 0;
            } else {  // padding of the lone partial window: id 0, no loss
                in[i] = 0;
                tg[i] = -1;
            }
        }
        if (any) w_out++;
    }
    out->n = w_out;
    if (w_out == 0) {
        packed_free(out);
        return err_set(e, "no %d-token window has a training target (no assistant or completion tokens?)", S);
    }
    return 0;
}

void packed_free(Packed *p) {
    if (!p) return;
    free(p->inputs);
    free(p->targets);
    memset(p, 0, sizeof *p);
}

/* ---- shuffling ---- */

static uint64_t splitmix64(uint64_t *x) { return hash_splitmix(x); }

/* Uniform integer in [0, bound) by rejection, so no modulo bias. */
static uint64_t rand_below(uint64_t *state, uint64_t bound) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t r;
    do r = splitmix64(state); while (r >= limit);
    return r % bound;
}

void data_shuffle_order(size_t n, uint64_t seed, uint64_t epoch, size_t *order) {
    uint64_t mix = epoch;
    uint64_t state = seed ^ splitmix64(&mix);
    for (size_t i = 0; i < n; i++) order[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)rand_below(&state, i);
        size_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
}
