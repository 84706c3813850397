/* test_data.c: JSONL datasets (engine/training/data.c, engine/tokenizer/chat_template.c).
 *
 * Every malformed line is rejected by the validator and the loader with the same message,
 * line and field; loss masks are checked token by token on two tiny tokenizers built here
 * (SentencePiece-style BPE with byte fallback, and byte-level BPE with Llama-3/Qwen special
 * tokens) whose ids are derived by hand; packing windows/targets are exact; the shuffle is a
 * seeded, unbiased, pinned permutation. With ../shared present, the real stories260K and
 * refmodel-22m tokenizers load excerpts of finetune.jsonl.gz (read through `gzip -dc`). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat_template.h"
#include "check.h"
#include "data.h"
#include "tokenizer.h"

static char tmpdir[256];

static void write_file(const char *path, const char *s, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    fwrite(s, 1, n, f);
    fclose(f);
}

/* ---- tiny tokenizers ---- */

typedef struct { char *s; size_t n, cap; } Buf;
static void bput(Buf *b, const char *s) {
    size_t k = strlen(s);
    if (b->n + k + 1 > b->cap) {
        b->cap = (b->n + k + 1) * 2;
        b->s = realloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, k + 1);
    b->n += k;
}

static void added_token(Buf *b, int id, const char *content, int first) {
    char t[256];
    snprintf(t, sizeof t,
             "%s{\"id\":%d,\"content\":\"%s\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
             "\"normalized\":false,\"special\":true}", first ? "" : ",", id, content);
    bput(b, t);
}

/* SentencePiece-style (Llama-2 layout): <unk> <s> </s>, <0x00>..<0xFF> = 3..258, then
 * 259 ▁  260 h  261 i  262 o  263 k  264 I  265 N  266 S  267 T
 * 268 hi 269 ▁hi 270 ok 271 ▁ok 272 IN 273 ST 274 INST. */
static char *sp_json(void) {
    Buf b = {0};
    bput(&b, "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[");
    added_token(&b, 0, "<unk>", 1);
    added_token(&b, 1, "<s>", 0);
    added_token(&b, 2, "</s>", 0);
    bput(&b, "],\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\xe2\x96\x81\"},"
             "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\xe2\x96\x81\"}]},\"pre_tokenizer\":null,"
             "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
             "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
             "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":1}},"
             "{\"Sequence\":{\"id\":\"B\",\"type_id\":1}}],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]}}},"
             "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\xe2\x96\x81\"},\"content\":\" \"},"
             "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},"
             "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"continuing_subword_prefix\":null,"
             "\"end_of_word_suffix\":null,\"fuse_unk\":true,\"byte_fallback\":true,\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2");
    char t[64];
    for (int i = 0; i < 256; i++) {
        snprintf(t, sizeof t, ",\"<0x%02X>\":%d", i, 3 + i);
        bput(&b, t);
    }
    bput(&b, ",\"\xe2\x96\x81\":259,\"h\":260,\"i\":261,\"o\":262,\"k\":263,\"I\":264,\"N\":265,\"S\":266,\"T\":267,"
             "\"hi\":268,\"\xe2\x96\x81hi\":269,\"ok\":270,\"\xe2\x96\x81ok\":271,\"IN\":272,\"ST\":273,\"INST\":274},"
             "\"merges\":[\"h i\",\"\xe2\x96\x81 hi\",\"o k\",\"\xe2\x96\x81 ok\",\"I N\",\"S T\",\"IN ST\"]}}");
    return b.s;
}
enum { SP_UNK = 0, SP_BOS = 1, SP_EOS = 2, SP_SPACE = 259, SP_HI = 269, SP_OK = 271, SP_INST = 274 };
#define SP_BYTE(c) (3 + (c))

/* Byte-level (GPT-2 layout): id of byte b is b (its printable code point as the token),
 * 256 hi 257 ok 258 us 259 use 260 user; added 261 <|begin_of_text|> 262 <|end_of_text|>
 * 263 <|start_header_id|> 264 <|end_header_id|> 265 <|eot_id|> 266 <|im_start|> 267 <|im_end|>
 * and, for the Qwen3 flavour, 268 <think> 269 </think>. */
enum { BL_HI = 256, BL_OK, BL_US, BL_USE, BL_USER, BL_BOT = 261, BL_EOT_TEXT, BL_SH, BL_EH, BL_EOT, BL_IMS, BL_IME };

static void byte_char(int b, char *out) {  // GPT-2 bytes_to_unicode, UTF-8, JSON-escaped
    int cp;
    if ((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)) cp = b;
    else {
        int k = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= '!' && x <= '~') || (x >= 0xa1 && x <= 0xac) || (x >= 0xae && x <= 0xff))) k++;
        cp = 256 + k;
    }
    if (cp == '"' || cp == '\\') sprintf(out, "\\%c", cp);
    else if (cp < 0x80) sprintf(out, "%c", cp);
    else sprintf(out, "%c%c", 0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
}

static char *bl_json(int qwen3) {
    Buf b = {0};
    bput(&b, "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[");
    static const char *names[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                                  "<|eot_id|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"};
    for (int i = 0; i < (qwen3 ? 9 : 7); i++) added_token(&b, BL_BOT + i, names[i], i == 0);
    bput(&b, "],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,"
             "\"use_regex\":true},\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":"
             "{\"id\":\"<|begin_of_text|>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[{\"SpecialToken\":"
             "{\"id\":\"<|begin_of_text|>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":"
             "{\"id\":\"<|begin_of_text|>\",\"type_id\":1}},{\"Sequence\":{\"id\":\"B\",\"type_id\":1}}],\"special_tokens\":"
             "{\"<|begin_of_text|>\":{\"id\":\"<|begin_of_text|>\",\"ids\":[261],\"tokens\":[\"<|begin_of_text|>\"]}}},"
             "\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true},"
             "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"continuing_subword_prefix\":null,"
             "\"end_of_word_suffix\":null,\"fuse_unk\":false,\"byte_fallback\":false,\"vocab\":{");
    char t[64], c[16];
    for (int i = 0; i < 256; i++) {
        byte_char(i, c);
        snprintf(t, sizeof t, "%s\"%s\":%d", i ? "," : "", c, i);
        bput(&b, t);
    }
    bput(&b, ",\"hi\":256,\"ok\":257,\"us\":258,\"use\":259,\"user\":260},\"merges\":[\"h i\",\"o k\",\"u s\",\"us e\",\"use r\"]}}");
    return b.s;
}

static Tokenizer *load_tok(char *json) {
    Err e = {0};
    Tokenizer *t = tokenizer_load_text(json, strlen(json), &e);
    if (!t) fprintf(stderr, "tokenizer_load_text: %s\n", e.msg);
    free(json);
    return t;
}

/* ---- malformed lines ---- */

typedef struct {
    const char *line;   // the bad line (line 3 of the file)
    const char *param;  // expected Err.param
    const char *needle; // expected in the message
} BadLine;

static const BadLine bad_lines[] = {
    {"{\"text\": \"unterminated", "", "invalid JSON"},
    {"{\"text\": 1,}", "", "invalid JSON"},
    {"[1, 2]", "", "expected a JSON object, got an array"},
    {"\"just a string\"", "", "expected a JSON object, got a string"},
    {"{\"source\": \"x\"}", "", "expected a \"text\""},
    {"{\"text\": 5}", "text", "expected a string, got a number"},
    {"{\"text\": null}", "text", "expected a string, got null"},
    {"{\"prompt\": \"a\"}", "completion", "missing"},
    {"{\"completion\": \"a\"}", "prompt", "missing"},
    {"{\"prompt\": \"a\", \"completion\": [\"b\"]}", "completion", "expected a string, got an array"},
    {"{\"messages\": {}}", "messages", "expected an array"},
    {"{\"messages\": []}", "messages", "empty"},
    {"{\"messages\": [1]}", "messages[0]", "expected an object, got a number"},
    {"{\"messages\": [{\"content\": \"hi\"}]}", "messages[0].role", "missing"},
    {"{\"messages\": [{\"role\": 3, \"content\": \"hi\"}]}", "messages[0].role", "expected a string"},
    {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"bot\", \"content\": \"b\"}]}",
     "messages[1].role", "expected one of system, user, assistant"},
    {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"tool\", \"content\": \"b\"}]}",
     "messages[1].role", "expected one of system, user, assistant (\"tool\" turns are not supported)"},
    {"{\"messages\": [{\"role\": \"user\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}", "messages[0].content", "missing"},
    {"{\"messages\": [{\"role\": \"user\", \"content\": {\"a\": 1}}]}", "messages[0].content", "expected a string, got an object"},
    {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\", \"weight\": 2}]}",
     "messages[1].weight", "expected 0 or 1"},
    {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\", \"weight\": \"1\"}]}",
     "messages[1].weight", "expected 0 or 1"},
    {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\", \"weight\": 0.5}]}",
     "messages[1].weight", "expected 0 or 1"},
    {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": null, "
     "\"tool_calls\": [{\"id\": \"c\"}]}]}", "messages[1].tool_calls", "not supported"},
    {"{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \"a\"}]}",
     "messages", "no assistant message"},
    {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\", \"weight\": 0}]}",
     "messages", "weight 0"},
    {"{\"text\": \"caf\xc3\"}", "", "invalid UTF-8 at byte 14"},
    {"{\"text\": \"\xff\"}", "", "invalid UTF-8"},
    {"{\"text\": \"\xc0\xaf\"}", "", "invalid UTF-8"},          // overlong '/'
    {"{\"text\": \"\xed\xa0\x80\"}", "", "invalid UTF-8"},      // surrogate
    {"{\"text\": \"\xf4\x90\x80\x80\"}", "", "invalid UTF-8"},  // above U+10FFFF
    {"{\"text\": \"\\ud800\"}", "", "invalid JSON"},            // escaped lone surrogate
    {"{\"text\": \"\"}", "text", "empty: there is nothing to train on"},
    {"{\"text\": \" \\n\\t \"}", "text", "empty"},
    {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"\"}]}",
     "messages[1].content", "empty assistant turn"},
    {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}, "
     "{\"role\": \"user\", \"content\": \"c\"}, {\"role\": \"assistant\", \"content\": \"  \"}]}",
     "messages[3].content", "empty assistant turn"},
};

static void build_bad_file(const BadLine *c, Buf *b) {
    b->n = 0;
    bput(b, "{\"text\": \"ok\", \"source\": \"x\"}\n   \n");
    bput(b, c->line);
    bput(b, "\n{\"text\": \"after\"}\n");
}

/* Validator: each bad line is an error at line 3 naming its field. With tok, the loader must
 * give exactly the same Err. */
static void test_bad_lines(Tokenizer *tok) {
    Buf b = {0};
    char path[300];
    snprintf(path, sizeof path, "%s/bad.jsonl", tmpdir);
    for (size_t i = 0; i < sizeof bad_lines / sizeof *bad_lines; i++) {
        const BadLine *c = &bad_lines[i];
        build_bad_file(c, &b);
        Err ev = {0};
        long n = -1;
        int rc = data_validate_jsonl(b.s, b.n, path, &n, &ev);
        CHECK(rc == -1, "case %zu (%s) validated", i, c->line);
        CHECK(ev.line == 3, "case %zu: line %ld", i, ev.line);
        CHECK(strcmp(ev.param, c->param) == 0, "case %zu: param '%s' want '%s'", i, ev.param, c->param);
        CHECK(strstr(ev.msg, c->needle) != NULL, "case %zu: msg '%s' lacks '%s'", i, ev.msg, c->needle);
        char prefix[400];
        if (*c->param) snprintf(prefix, sizeof prefix, "%s: line 3: %s: ", path, c->param);
        else snprintf(prefix, sizeof prefix, "%s: line 3: ", path);
        CHECK(strncmp(ev.msg, prefix, strlen(prefix)) == 0, "case %zu: msg '%s' does not start with '%s'", i, ev.msg, prefix);
        if (!tok) continue;
        write_file(path, b.s, b.n);
        TokenStream s = {0};
        Err el = {0};
        rc = data_load_jsonl(path, tok, TEMPLATE_AUTO, NULL, NULL, &s, &el);
        CHECK(rc == -1, "case %zu: loader accepted", i);
        CHECK(strcmp(el.msg, ev.msg) == 0 && strcmp(el.param, ev.param) == 0 && el.line == ev.line,
              "case %zu: loader '%s' [%s] %ld vs validator '%s' [%s] %ld", i, el.msg, el.param, el.line, ev.msg,
              ev.param, ev.line);
        CHECK(s.n == 0 && s.n_docs == 0, "case %zu: stream not left empty", i);
        token_stream_free(&s);
    }
    free(b.s);
}

/* Files that are fine or empty, for the validator's counts and whole-file errors. */
static void test_validate_counts(void) {
    Err e = {0};
    long n = -1;
    const char *ok = "\xef\xbb\xbf{\"text\": \"a\"}\r\n\n{\"prompt\": \"p\", \"completion\": \"c\", \"extra\": [1]}\n"
                     "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"a\", \"weight\": 1}]}";
    CHECK(data_validate_jsonl(ok, strlen(ok), "ok.jsonl", &n, &e) == 0, "valid file rejected: %s", e.msg);
    CHECK(n == 3, "n_examples %ld", n);
    CHECK(data_validate_jsonl("", 0, "empty.jsonl", &n, &e) == -1 && strstr(e.msg, "empty.jsonl: no examples"),
          "empty file: %s", e.msg);
    CHECK(data_validate_jsonl("\n  \n\r\n", 6, "blank.jsonl", &n, &e) == -1 && strstr(e.msg, "no examples"),
          "blank file: %s", e.msg);
    // a NUL byte inside a line is an error, not a truncation
    const char nul[] = "{\"text\": \"a\"}\n{\"text\": \"a\0b\"}\n";
    CHECK(data_validate_jsonl(nul, sizeof nul - 1, "nul.jsonl", &n, &e) == -1 && e.line == 2, "NUL: %s", e.msg);
    // a long line (2 MB of text)
    size_t big = 2u << 20;
    char *s = malloc(big + 32);
    memcpy(s, "{\"text\": \"", 10);
    memset(s + 10, 'x', big);
    memcpy(s + 10 + big, "\"}\n", 3);
    CHECK(data_validate_jsonl(s, big + 13, "big.jsonl", &n, &e) == 0 && n == 1, "long line: %s", e.msg);
    free(s);
}

/* ---- masks on the SentencePiece-style tokenizer ---- */

static int load_lines(Tokenizer *tok, const char *content, int tmpl, TokenStream *s, Err *e) {
    char path[300];
    snprintf(path, sizeof path, "%s/t.jsonl", tmpdir);
    write_file(path, content, strlen(content));
    memset(s, 0, sizeof *s);
    return data_load_jsonl(path, tok, tmpl, NULL, NULL, s, e);
}

static void check_stream(const TokenStream *s, const int32_t *ids, const uint8_t *loss, size_t n, const char *what) {
    CHECK(s->n == n, "%s: %zu tokens, want %zu", what, s->n, n);
    for (size_t i = 0; i < n && i < s->n; i++) {
        CHECK(s->ids[i] == ids[i], "%s: ids[%zu] = %d, want %d", what, i, s->ids[i], ids[i]);
        CHECK(s->loss[i] == loss[i], "%s: loss[%zu] = %d, want %d (id %d)", what, i, s->loss[i], loss[i], s->ids[i]);
    }
}

/* keep() for the held-out split test: odd documents, counting the calls. */
static int odd(size_t i, void *ctx) {
    (*(long *)ctx)++;
    return (int)(i % 2);
}

/* keep() that keeps nothing, counting the calls. */
static int keep_none(size_t i, void *ctx) {
    (void)i;
    (*(long *)ctx)++;
    return 0;
}

static void test_sp_masks(Tokenizer *tok) {
    TokenStream s;
    Err e = {0};
    CHECK(data_pick_template(tok, TEMPLATE_AUTO) == TEMPLATE_INST, "sp tokenizer -> [INST]");
    CHECK(tokenizer_bos_id(tok) == SP_BOS && tokenizer_eos_id(tok) == SP_EOS, "bos %d eos %d", tokenizer_bos_id(tok),
          tokenizer_eos_id(tok));

    // text: BOS is not a target, EOS is
    if (load_lines(tok, "{\"text\": \"hi ok\"}\n", TEMPLATE_AUTO, &s, &e) == 0) {
        int32_t ids[] = {SP_BOS, SP_HI, SP_OK, SP_EOS};
        uint8_t loss[] = {0, 1, 1, 1};
        check_stream(&s, ids, loss, 4, "text");
        CHECK(s.n_docs == 1, "n_docs %zu", s.n_docs);
    } else CHECK(0, "text: %s", e.msg);
    token_stream_free(&s);

    // prompt + completion, joined with nothing in between: loss on the completion and EOS
    if (load_lines(tok, "{\"prompt\": \"hi\", \"completion\": \" ok\"}\n{\"prompt\": \"hi ok\", \"completion\": \"\"}\n",
                   TEMPLATE_AUTO, &s, &e) == 0) {
        int32_t ids[] = {SP_BOS, SP_HI, SP_OK, SP_EOS, SP_BOS, SP_HI, SP_OK, SP_EOS};
        uint8_t loss[] = {0, 0, 1, 1, 0, 0, 0, 1};
        check_stream(&s, ids, loss, 8, "prompt/completion");
        CHECK(s.n_docs == 2, "n_docs %zu", s.n_docs);
    } else CHECK(0, "prompt/completion: %s", e.msg);
    token_stream_free(&s);

    // a completion that starts inside a word: the straddling token is a target
    if (load_lines(tok, "{\"prompt\": \"h\", \"completion\": \"i\"}\n", TEMPLATE_AUTO, &s, &e) == 0) {
        int32_t ids[] = {SP_BOS, SP_HI, SP_EOS};
        uint8_t loss[] = {0, 1, 1};
        check_stream(&s, ids, loss, 3, "straddling completion");
    } else CHECK(0, "straddling: %s", e.msg);
    token_stream_free(&s);

    // [INST] conversation: "<s>[INST] hi [/INST] ok </s>" ->
    // <s> ▁ [ INST ] ▁hi ▁ [ / INST ] ▁ok ▁ </s>; targets ▁ok ▁ </s>; no EOS appended (ends with it)
    const char *conv = "{\"messages\": [{\"role\": \"user\", \"content\": \" hi\"}, {\"role\": \"assistant\", \"content\": \"ok\\n\"}]}\n";
    if (load_lines(tok, conv, TEMPLATE_AUTO, &s, &e) == 0) {
        int32_t ids[] = {SP_BOS, SP_SPACE, SP_BYTE('['), SP_INST, SP_BYTE(']'), SP_HI, SP_SPACE, SP_BYTE('['),
                         SP_BYTE('/'), SP_INST, SP_BYTE(']'), SP_OK, SP_SPACE, SP_EOS};
        uint8_t loss[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1};
        check_stream(&s, ids, loss, 14, "[INST] chat");
    } else CHECK(0, "[INST] chat: %s", e.msg);
    token_stream_free(&s);

    // system folding and weight 0: the first answer is context only
    ChatMessage m[] = {{CHAT_SYSTEM, "be brief", 8, 1}, {CHAT_USER, "hi", 2, 1}, {CHAT_ASSISTANT, "ok", 2, 0},
                       {CHAT_USER, "hi", 2, 1}, {CHAT_ASSISTANT, " ok ", 4, 1}};
    ChatRender r;
    if (chat_render(tok, TEMPLATE_INST, m, 5, &r, &e) == 0) {
        const char *want = "<s>[INST] <<SYS>>\nbe brief\n<</SYS>>\n\nhi [/INST] ok </s><s>[INST] hi [/INST] ok </s>";
        CHECK(strcmp(r.text, want) == 0, "[INST] render:\n%s\nwant\n%s", r.text, want);
        CHECK(r.n_spans == 1 && r.n_spans && strncmp(r.text + r.spans[0].begin, "ok </s>", r.spans[0].end - r.spans[0].begin) == 0 &&
                  r.spans[0].end == r.len,
              "[INST] span");
        // the loss must not depend on whether the cuts are used
        int32_t *i1, *i2;
        uint8_t *l1, *l2;
        size_t n1, n2;
        int ok1 = chat_encode_masked(tok, r.text, r.len, 0, r.cuts, r.n_cuts, r.spans, r.n_spans, &i1, &l1, &n1, &e) == 0;
        int ok2 = chat_encode_masked(tok, r.text, r.len, 0, NULL, 0, r.spans, r.n_spans, &i2, &l2, &n2, &e) == 0;
        CHECK(ok1 && ok2 && n1 == n2 && memcmp(i1, i2, n1 * 4) == 0 && memcmp(l1, l2, n1) == 0, "cuts change the result");
        if (ok1 && ok2) {
            size_t nt = 0;
            for (size_t i = 0; i < n1; i++) nt += l1[i];
            CHECK(nt == 3 && l1[n1 - 1] == 1 && i1[n1 - 1] == SP_EOS && i1[n1 - 3] == SP_OK, "weight 0 mask: %zu targets", nt);
            free(i1), free(i2), free(l1), free(l2);
        }
        chat_render_free(&r);
    } else CHECK(0, "[INST] render: %s", e.msg);

    // cuts that do not fall on special tokens: the pieces do not add up, the whole text decides
    {
        const char *t = "hi ok hi";
        size_t cuts[] = {1, 4};
        ChatSpan sp = {3, 5};
        int32_t *ids;
        uint8_t *l;
        size_t n;
        if (chat_encode_masked(tok, t, 8, 0, cuts, 2, &sp, 1, &ids, &l, &n, &e) == 0) {
            CHECK(n == 3 && ids[0] == SP_HI && ids[1] == SP_OK && ids[2] == SP_HI && !l[0] && l[1] && !l[2],
                  "bad cuts: %zu ids", n);
            free(ids), free(l);
        } else CHECK(0, "bad cuts: %s", e.msg);
    }

    // the [INST] form needs alternating turns: a loader-only error, with line and field
    const char *alt = "{\"text\": \"hi\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"b\"}, "
                      "{\"role\": \"assistant\", \"content\": \"c\"}]}\n";
    CHECK(load_lines(tok, alt, TEMPLATE_AUTO, &s, &e) == -1 && e.line == 2 && strcmp(e.param, "messages[1].role") == 0 &&
              strstr(e.msg, "t.jsonl: line 2: messages[1].role: expected assistant"),
          "alternation: '%s' [%s] %ld", e.msg, e.param, e.line);
    token_stream_free(&s);
    long none_calls = 0;
    char apath[300];
    snprintf(apath, sizeof apath, "%s/t.jsonl", tmpdir);
    memset(&s, 0, sizeof s);
    CHECK(data_load_jsonl(apath, tok, TEMPLATE_AUTO, keep_none, &none_calls, &s, &e) == -1 && e.line == 2 &&
              strcmp(e.param, "messages[1].role") == 0 && none_calls == 2,
          "alternation in a held-out line: '%s'", e.msg);
    token_stream_free(&s);

    // keep(): the held-out split sees document indexes, blank lines do not count
    char path[300];
    snprintf(path, sizeof path, "%s/keep.jsonl", tmpdir);
    const char *three = "{\"text\": \"hi\"}\n\n{\"text\": \"ok\"}\n{\"text\": \"hi hi\"}\n";
    write_file(path, three, strlen(three));
    memset(&s, 0, sizeof s);
    long calls = 0;
    if (data_load_jsonl(path, tok, TEMPLATE_AUTO, odd, &calls, &s, &e) == 0) {
        int32_t ids[] = {SP_BOS, SP_OK, SP_EOS};
        uint8_t loss[] = {0, 1, 1};
        check_stream(&s, ids, loss, 3, "keep odd");
        CHECK(calls == 3 && s.n_docs == 1, "keep calls %ld docs %zu", calls, s.n_docs);
    } else CHECK(0, "keep: %s", e.msg);
    // appending a second file keeps the first
    if (data_load_jsonl(path, tok, TEMPLATE_AUTO, NULL, NULL, &s, &e) == 0)
        CHECK(s.n == 3 + 3 + 3 + 4 && s.n_docs == 4 && s.ids[3] == SP_BOS, "append: n %zu docs %zu", s.n, s.n_docs);
    else CHECK(0, "append: %s", e.msg);
    // a failing load leaves the stream as it was
    snprintf(path, sizeof path, "%s/missing.jsonl", tmpdir);
    size_t before = s.n;
    CHECK(data_load_jsonl(path, tok, TEMPLATE_AUTO, NULL, NULL, &s, &e) == -1 && strstr(e.msg, "missing.jsonl") && s.n == before,
          "missing file: %s", e.msg);
    token_stream_free(&s);

    // a long line through getline, and an empty file
    size_t big = 300000;
    char *t = malloc(big * 3 + 32);
    strcpy(t, "{\"text\": \"");
    for (size_t i = 0; i < big; i++) memcpy(t + 10 + 3 * i, " hi", 3);
    strcpy(t + 10 + 3 * big, "\"}\n");
    if (load_lines(tok, t, TEMPLATE_AUTO, &s, &e) == 0)
        // "▁▁hi▁hi...": the normalizer's ▁ then the text's own
        CHECK(s.n == big + 3 && s.ids[1] == SP_SPACE && s.ids[big + 1] == SP_HI && s.ids[big + 2] == SP_EOS,
              "long line: %zu tokens", s.n);
    else CHECK(0, "long line: %s", e.msg);
    free(t);
    token_stream_free(&s);
    CHECK(load_lines(tok, "\n\n", TEMPLATE_AUTO, &s, &e) == -1 && strstr(e.msg, "no examples"), "empty: %s", e.msg);
}

/* ---- Llama-3 and ChatML on the byte-level tokenizer ---- */

static void test_byte_level(Tokenizer *tok, Tokenizer *tok3) {
    TokenStream s;
    Err e = {0};
    CHECK(data_pick_template(tok, TEMPLATE_AUTO) == TEMPLATE_LLAMA3, "byte-level -> llama3");
    CHECK(data_pick_template(tok, TEMPLATE_CHATML) == TEMPLATE_CHATML, "explicit template wins");
    int32_t eos = tokenizer_eos_id(tok);
    const char *conv = "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \" ok \"}]}\n";

    // <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>
    // <|start_header_id|>assistant<|end_header_id|>\n\nok<|eot_id|>   (content trimmed)
    if (load_lines(tok, conv, TEMPLATE_AUTO, &s, &e) == 0) {
        int32_t ids[] = {BL_BOT, BL_SH, BL_USER, BL_EH, '\n', '\n', BL_HI, BL_EOT, BL_SH, 'a', 's', 's', 'i', 's', 't',
                         'a', 'n', 't', BL_EH, '\n', '\n', BL_OK, BL_EOT, eos};
        uint8_t loss[24] = {0};
        loss[21] = loss[22] = 1;
        check_stream(&s, ids, loss, eos >= 0 ? 24 : 23, "llama3 chat");
    } else CHECK(0, "llama3 chat: %s", e.msg);
    token_stream_free(&s);

    // ChatML with Qwen2's default system message; targets: ok <|im_end|>
    ChatMessage m[] = {{CHAT_USER, "hi", 2, 1}, {CHAT_ASSISTANT, "ok", 2, 1}};
    ChatRender r;
    if (chat_render(tok, TEMPLATE_CHATML, m, 2, &r, &e) == 0) {
        const char *want = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                           "<|im_start|>assistant\nok<|im_end|>\n";
        CHECK(strcmp(r.text, want) == 0, "chatml render:\n%s", r.text);
        chat_render_free(&r);
    } else CHECK(0, "chatml render: %s", e.msg);
    if (load_lines(tok, conv, TEMPLATE_CHATML, &s, &e) == 0) {
        int32_t *w = NULL;
        size_t nw = 0;
        const char *text = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                           "<|im_start|>assistant\n ok <|im_end|>\n";
        if (tokenizer_encode(tok, text, strlen(text), 0, &w, &nw, &e) == 0) {
            CHECK(s.n == nw + (eos >= 0), "chatml: %zu tokens, whole string %zu", s.n, nw);
            CHECK(s.n >= nw && memcmp(s.ids, w, nw * sizeof *w) == 0, "chatml ids differ from the whole string's");
            // targets: " ok " -> Ġ o k Ġ (byte-level keeps the spaces: no trim in ChatML) and <|im_end|>
            size_t first = s.n, nt = 0;
            for (size_t i = 0; i < s.n; i++)
                if (s.loss[i]) { nt++; if (first == s.n) first = i; }
            CHECK(nt >= 2 && s.ids[first + nt - 1] == BL_IME && s.ids[first + nt] == '\n' && !s.loss[first + nt],
                  "chatml targets end at <|im_end|>");
            char *d = tokenizer_decode(tok, s.ids + first, nt, 0);
            CHECK(d && strcmp(d, " ok <|im_end|>") == 0, "chatml targets decode to '%s'", d ? d : "(null)");
            free(d);
            free(w);
        } else CHECK(0, "encode: %s", e.msg);
    } else CHECK(0, "chatml chat: %s", e.msg);
    token_stream_free(&s);

    // a conversation starting with system: no default system message; several targets
    ChatMessage m2[] = {{CHAT_SYSTEM, "s", 1, 1}, {CHAT_USER, "hi", 2, 1}, {CHAT_ASSISTANT, "ok", 2, 1},
                        {CHAT_USER, "hi", 2, 1}, {CHAT_ASSISTANT, "hi", 2, 1}};
    if (chat_render(tok, TEMPLATE_CHATML, m2, 5, &r, &e) == 0) {
        const char *want = "<|im_start|>system\ns<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nok<|im_end|>\n"
                           "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhi<|im_end|>\n";
        CHECK(strcmp(r.text, want) == 0, "chatml system render:\n%s", r.text);
        int32_t *ids;
        uint8_t *loss;
        size_t n;
        if (chat_encode_masked(tok, r.text, r.len, 0, r.cuts, r.n_cuts, r.spans, r.n_spans, &ids, &loss, &n, &e) == 0) {
            int32_t tg[8];
            size_t nt = 0;
            for (size_t i = 0; i < n; i++)
                if (loss[i] && nt < 8) tg[nt++] = ids[i];
            CHECK(nt == 4 && tg[0] == BL_OK && tg[1] == BL_IME && tg[2] == BL_HI && tg[3] == BL_IME, "chatml 2-turn targets (%zu)", nt);
            free(ids);
            free(loss);
        } else CHECK(0, "%s", e.msg);
        chat_render_free(&r);
    } else CHECK(0, "%s", e.msg);

    // Qwen3 flavour: no default system; reasoning dropped from earlier turns, the final
    // answer after the last user turn carries a <think> block
    if (tok3) {
        ChatMessage q[] = {{CHAT_USER, "a", 1, 1}, {CHAT_ASSISTANT, "<think>\nr1\n</think>\n\nx", 22, 1},
                           {CHAT_USER, "b", 1, 1}, {CHAT_ASSISTANT, "y", 1, 1}};
        if (chat_render(tok3, TEMPLATE_CHATML, q, 4, &r, &e) == 0) {
            const char *want = "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nx<|im_end|>\n<|im_start|>user\nb<|im_end|>\n"
                               "<|im_start|>assistant\n<think>\n\n</think>\n\ny<|im_end|>\n";
            CHECK(strcmp(r.text, want) == 0, "qwen3 render:\n%s", r.text);
            chat_render_free(&r);
        } else CHECK(0, "%s", e.msg);
        ChatMessage q2[] = {{CHAT_USER, "a", 1, 1}, {CHAT_ASSISTANT, "<think>\nr1\n</think>\n\nx", 22, 1}};
        if (chat_render(tok3, TEMPLATE_CHATML, q2, 2, &r, &e) == 0) {
            const char *want = "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\n<think>\nr1\n</think>\n\nx<|im_end|>\n";
            CHECK(strcmp(r.text, want) == 0, "qwen3 reasoning render:\n%s", r.text);
            CHECK(r.n_spans == 1 && strncmp(r.text + r.spans[0].begin, "<think>", 7) == 0, "qwen3 span starts at <think>");
            chat_render_free(&r);
        } else CHECK(0, "%s", e.msg);
    }
}

/* ---- packing ---- */

static void test_pack(void) {
    int32_t ids[10];
    uint8_t loss[10] = {0, 1, 1, 1, 0, 0, 0, 0, 1, 1};
    for (int i = 0; i < 10; i++) ids[i] = 100 + i;
    TokenStream s = {ids, loss, 10, 1};
    Packed p;
    Err e = {0};
    // S=3: windows start at 0, 3, 6 (9 inputs + the last target); window 1's targets
    // (ids 104..106) all carry no loss, so it is dropped
    CHECK(data_pack(&s, 3, &p, &e) == 0, "pack: %s", e.msg);
    int32_t win[2][3] = {{100, 101, 102}, {106, 107, 108}}, tgt[2][3] = {{101, 102, 103}, {-1, 108, 109}};
    CHECK(p.n == 2 && p.S == 3, "pack S=3: %zu windows", p.n);
    for (size_t w = 0; w < 2 && w < p.n; w++)
        for (int i = 0; i < 3; i++) {
            CHECK(p.inputs[w * 3 + i] == win[w][i], "inputs[%zu][%d] = %d", w, i, p.inputs[w * 3 + i]);
            CHECK(p.targets[w * 3 + i] == tgt[w][i], "targets[%zu][%d] = %d", w, i, p.targets[w * 3 + i]);
        }
    packed_free(&p);
    // S=4: (10-1)/4 = 2 full windows; the trailing partial one is dropped
    CHECK(data_pack(&s, 4, &p, &e) == 0 && p.n == 2 && p.inputs[4] == 104 && p.targets[7] == 108, "pack S=4");
    packed_free(&p);
    // S=9: exactly one full window uses all 10 tokens
    CHECK(data_pack(&s, 9, &p, &e) == 0 && p.n == 1 && p.inputs[8] == 108 && p.targets[8] == 109, "pack S=9");
    packed_free(&p);
    // S=16: the only window is partial: padded with id 0 and no loss
    CHECK(data_pack(&s, 16, &p, &e) == 0 && p.n == 1, "pack S=16");
    if (p.n == 1) {
        CHECK(p.inputs[8] == 108 && p.targets[8] == 109 && p.inputs[9] == 0 && p.targets[9] == -1 && p.targets[15] == -1,
              "partial window padding");
        CHECK(p.targets[0] == 101 && p.targets[3] == -1, "partial window targets");
    }
    packed_free(&p);
    // errors
    uint8_t none[10] = {0};
    TokenStream z = {ids, none, 10, 1};
    CHECK(data_pack(&z, 4, &p, &e) == -1 && strstr(e.msg, "training target") && p.n == 0 && !p.inputs, "no targets: %s", e.msg);
    TokenStream one = {ids, loss, 1, 1};
    CHECK(data_pack(&one, 4, &p, &e) == -1 && strstr(e.msg, "at least 2"), "1 token: %s", e.msg);
    CHECK(data_pack(&s, 0, &p, &e) == -1 && strstr(e.msg, "positive"), "S=0: %s", e.msg);
}

/* ---- shuffle ---- */

static void test_shuffle(void) {
    enum { N = 1000 };
    static size_t a[N], b[N], c[N];
    static unsigned char seen[N];
    data_shuffle_order(N, 42, 0, a);
    data_shuffle_order(N, 42, 0, b);
    data_shuffle_order(N, 42, 1, c);
    int perm = 1, fixed = 0;
    for (size_t i = 0; i < N; i++) {
        if (a[i] >= N || seen[a[i]]) perm = 0;
        else seen[a[i]] = 1;
        fixed += a[i] == i;
    }
    CHECK(perm, "not a permutation");
    CHECK(fixed < 10, "%d fixed points: not shuffled", fixed);
    CHECK(memcmp(a, b, sizeof a) == 0, "same seed and epoch, different order");
    CHECK(memcmp(a, c, sizeof a) != 0, "epochs give the same order");
    data_shuffle_order(N, 43, 0, b);
    CHECK(memcmp(a, b, sizeof a) != 0, "seeds give the same order");
    // pinned: the order must never change across machines or versions (checkpoints store a cursor)
    size_t g[10];
    data_shuffle_order(10, 1234, 5, g);
    size_t want[10] = {2, 6, 7, 4, 0, 5, 1, 9, 3, 8};
    CHECK(memcmp(g, want, sizeof g) == 0, "pinned order: %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu", g[0], g[1], g[2], g[3],
          g[4], g[5], g[6], g[7], g[8], g[9]);
    // unbiased: all 6 orders of 3 items about equally often over 60000 epochs
    int count[6] = {0};
    for (uint64_t ep = 0; ep < 60000; ep++) {
        size_t o[3];
        data_shuffle_order(3, 7, ep, o);
        count[o[0] * 2 + (o[1] > o[2])]++;
    }
    for (int k = 0; k < 6; k++) CHECK(count[k] > 9500 && count[k] < 10500, "order %d seen %d times of 60000", k, count[k]);
    data_shuffle_order(0, 1, 1, NULL);
    size_t one = 7;
    data_shuffle_order(1, 1, 1, &one);
    CHECK(one == 0, "n=1");
}

/* ---- the real tokenizers on real text ---- */

static void test_real(const char *shared) {
    char cmd[600], path[300];
    snprintf(path, sizeof path, "%s/real.jsonl", tmpdir);
    snprintf(cmd, sizeof cmd, "gzip -dc '%s/data/finetune.jsonl.gz' | head -n 4 | tail -n 2 > '%s'", shared, path);
    if (system(cmd) != 0) { CHECK(0, "gzip -dc failed"); return; }
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)sz);
    CHECK(fread(buf, 1, (size_t)sz, f) == (size_t)sz, "read");
    fclose(f);
    long n = 0;
    Err e = {0};
    CHECK(data_validate_jsonl(buf, (size_t)sz, "real.jsonl", &n, &e) == 0 && n == 2, "validate real: %s", e.msg);
    free(buf);
    static const char *models[] = {"stories260K", "refmodel-22m"};
    for (int m = 0; m < 2; m++) {
        char tp[400];
        snprintf(tp, sizeof tp, "%s/models/%s/tokenizer.json", shared, models[m]);
        Tokenizer *tok = tokenizer_load(tp, &e);
        if (!tok) { CHECK(0, "%s: %s", tp, e.msg); continue; }
        TokenStream s = {0};
        if (data_load_jsonl(path, tok, TEMPLATE_AUTO, NULL, NULL, &s, &e) == 0) {
            size_t eos_at[2], k = 0, targets = 0;
            for (size_t i = 0; i < s.n; i++) {
                if (s.ids[i] == 2 && k < 2) eos_at[k++] = i;
                targets += s.loss[i];
            }
            CHECK(s.n_docs == 2 && k == 2 && eos_at[1] == s.n - 1, "%s: 2 documents ending in </s>", models[m]);
            CHECK(s.ids[0] == 1 && !s.loss[0] && k == 2 && s.ids[eos_at[0] + 1] == 1 && !s.loss[eos_at[0] + 1],
                  "%s: each document starts with an untrained <s>", models[m]);
            CHECK(targets == s.n - 2, "%s: %zu targets of %zu tokens", models[m], targets, s.n);
            fprintf(stderr, "%s: 2 finetune.jsonl documents -> %zu tokens\n", models[m], s.n);
            Packed p;
            if (data_pack(&s, 512, &p, &e) == 0) {
                CHECK(p.n >= (s.n - 1) / 512 - 1 && p.n <= (s.n - 1) / 512, "%s: %zu windows", models[m], p.n);
                CHECK(p.inputs[512] == s.ids[512] && p.targets[511] == s.ids[512], "%s: window 1 continues window 0", models[m]);
                packed_free(&p);
            } else CHECK(0, "%s: pack: %s", models[m], e.msg);
        } else CHECK(0, "%s: load: %s", models[m], e.msg);
        token_stream_free(&s);

        // a conversation in the [INST] form: the targets decode to the answer and </s>
        ChatMessage c[] = {{CHAT_SYSTEM, "You answer briefly.", 19, 1}, {CHAT_USER, "Who was Lily?", 13, 1},
                           {CHAT_ASSISTANT, "A little girl who loved to play.", 32, 1}};
        ChatRender r;
        if (chat_render(tok, TEMPLATE_INST, c, 3, &r, &e) == 0) {
            int32_t *ids, *w;
            uint8_t *loss;
            size_t nn, nw;
            if (chat_encode_masked(tok, r.text, r.len, 0, r.cuts, r.n_cuts, r.spans, r.n_spans, &ids, &loss, &nn, &e) == 0 &&
                tokenizer_encode(tok, r.text, r.len, 0, &w, &nw, &e) == 0) {
                CHECK(nn == nw && memcmp(ids, w, nw * 4) == 0 && ids[0] == 1 && ids[nn - 1] == 2, "%s: chat ids", models[m]);
                size_t first = nn;
                for (size_t i = 0; i < nn; i++)
                    if (loss[i]) { first = i; break; }
                char *d = first < nn ? tokenizer_decode(tok, ids + first, nn - first, 0) : NULL;
                CHECK(d && strstr(d, "A little girl who loved to play.") && strstr(d, "</s>") && !strstr(d, "INST"),
                      "%s: targets decode to '%s'", models[m], d ? d : "");
                for (size_t i = first; i < nn; i++) CHECK(loss[i], "%s: target gap at %zu", models[m], i);
                free(d);
                free(ids), free(loss), free(w);
            } else CHECK(0, "%s: %s", models[m], e.msg);
            chat_render_free(&r);
        } else CHECK(0, "%s: %s", models[m], e.msg);
        tokenizer_free(tok);
    }
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lemo-test-data-XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    test_validate_counts();
    test_pack();
    test_shuffle();
    Tokenizer *sp = load_tok(sp_json());
    CHECK(sp != NULL, "tiny SentencePiece tokenizer did not load");
    test_bad_lines(sp);
    if (sp) test_sp_masks(sp);
    Tokenizer *bl = load_tok(bl_json(0)), *bl3 = load_tok(bl_json(1));
    CHECK(bl != NULL && bl3 != NULL, "tiny byte-level tokenizer did not load");
    if (bl) test_byte_level(bl, bl3);
    tokenizer_free(sp);
    tokenizer_free(bl);
    tokenizer_free(bl3);
    const char *shared = shared_dir();
    if (shared) test_real(shared);
    else fprintf(stderr, "note: ../shared not found: real-tokenizer checks not run\n");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_done("test_data");
}
