/* test_tokenizer.c: the tokenizer.json implementation on small inline tokenizers.
 *
 * Each tokenizer below is a few lines of JSON built so that one feature decides the ids
 * (a merge that may or may not cross a split, a byte-fallback token, an added token's
 * strip flag ...); the expected ids follow from HF `tokenizers`' rules by hand. Malformed
 * files must fail with a message that names the problem. The real tokenizers are
 * compared against an independent implementation in tests/node/tokenizer_oracle.test.mjs. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tokenizer.h"

static Tokenizer *load(const char *json) {
    Err e = {0};
    Tokenizer *t = tokenizer_load_text(json, strlen(json), &e);
    CHECK(t != NULL, "load failed: %s", e.msg);
    return t;
}

/* Encodes text and compares with want[0..nwant). */
static void expect_ids(const Tokenizer *t, const char *text, int add_special, const int32_t *want, size_t nwant,
                       const char *what) {
    int32_t *ids = NULL;
    size_t n = 0;
    Err e = {0};
    int rc = tokenizer_encode(t, text, strlen(text), add_special, &ids, &n, &e);
    CHECK(rc == 0, "%s: encode failed: %s", what, e.msg);
    int same = rc == 0 && n == nwant && (n == 0 || !memcmp(ids, want, n * sizeof *ids));
    if (!same) {
        char got[512] = "";
        size_t k = 0;
        for (size_t i = 0; i < n && k < sizeof got - 16; i++) k += (size_t)snprintf(got + k, sizeof got - k, "%d ", ids[i]);
        CHECK(same, "%s: got [%s] (%zu ids, want %zu)", what, got, n, nwant);
    } else CHECK(same, "%s", what);
    free(ids);
}
#define IDS(...) (const int32_t[]){__VA_ARGS__}, sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t)

static void expect_text(const Tokenizer *t, const int32_t *ids, size_t n, int skip, const char *want, const char *what) {
    char *s = tokenizer_decode(t, ids, n, skip);
    CHECK(s && !strcmp(s, want), "%s: decoded \"%s\", want \"%s\"", what, s ? s : "(null)", want);
    free(s);
}

static void expect_load_error(const char *json, const char *needle, const char *what) {
    Err e = {0};
    Tokenizer *t = tokenizer_load_text(json, strlen(json), &e);
    CHECK(t == NULL, "%s: loaded but should fail", what);
    CHECK(t != NULL || strstr(e.msg, needle), "%s: message \"%s\" lacks \"%s\"", what, e.msg, needle);
    tokenizer_free(t);
}

/* SentencePiece style: Prepend + Replace normalizer, byte fallback, unk, BOS template,
 * and the Llama-2 decoder chain. */
static const char *SP_JSON =
    "{\"version\":\"1.0\",\"added_tokens\":["
    "{\"id\":0,\"content\":\"<unk>\",\"special\":true,\"normalized\":false,\"single_word\":false,\"lstrip\":false,\"rstrip\":false},"
    "{\"id\":1,\"content\":\"<s>\",\"special\":true,\"normalized\":false,\"single_word\":false,\"lstrip\":false,\"rstrip\":false},"
    "{\"id\":2,\"content\":\"</s>\",\"special\":true,\"normalized\":false,\"single_word\":false,\"lstrip\":false,\"rstrip\":false}],"
    "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\xe2\x96\x81\"},"
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\xe2\x96\x81\"}]},"
    "\"pre_tokenizer\":null,"
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]}}},"
    "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\xe2\x96\x81\"},\"content\":\" \"},"
    "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"byte_fallback\":true,"
    "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2,\"<0xC3>\":3,\"<0xA9>\":4,\"\xe2\x96\x81\":5,\"a\":6,\"b\":7,"
    "\"\xe2\x96\x81" "a\":8,\"ab\":9,\"\xe2\x96\x81" "ab\":10,\"<0x0A>\":11},"
    "\"merges\":[\"\xe2\x96\x81 a\",\"a b\",\"\xe2\x96\x81" "a b\"]}}";

static void test_sentencepiece(void) {
    Tokenizer *t = load(SP_JSON);
    if (!t) return;
    expect_ids(t, "ab ab", 1, IDS(1, 10, 10), "sp: merges + BOS");
    expect_ids(t, "ab ab", 0, IDS(10, 10), "sp: no BOS");
    expect_ids(t, "", 1, IDS(1), "sp: empty text gives just BOS");
    expect_ids(t, "b", 0, IDS(5, 7), "sp: prepended meta-space stays alone");
    expect_ids(t, "a\xc3\xa9", 0, IDS(8, 3, 4), "sp: byte fallback for e-acute");
    expect_ids(t, "a\n", 0, IDS(8, 11), "sp: newline through byte fallback");
    expect_ids(t, "a\xe4\xb8\xad\xe6\x96\x87" "b", 0, IDS(8, 0, 7), "sp: unknown chars fuse into one unk");
    expect_ids(t, "<s>ab</s>", 0, IDS(1, 10, 2), "sp: special tokens in text; each stretch gets its own meta-space");
    expect_text(t, IDS(1, 10, 10), 0, "<s> ab ab", "sp: decode keeps <s>");
    expect_text(t, IDS(1, 10, 10), 1, "ab ab", "sp: decode skip special");
    expect_text(t, IDS(8, 3, 4), 1, "a\xc3\xa9", "sp: byte fallback decode");
    expect_text(t, IDS(8, 3, 6), 1, "a\xef\xbf\xbd" "a", "sp: a lone lead byte decodes to U+FFFD");
    expect_text(t, IDS(8, 3, 3), 1, "a\xef\xbf\xbd\xef\xbf\xbd", "sp: invalid byte run gives one U+FFFD per byte");
    expect_text(t, IDS(8, 999, -5), 1, "a", "sp: ids out of range are skipped");
    CHECK(tokenizer_bos_id(t) == 1, "sp: bos %d", tokenizer_bos_id(t));
    CHECK(tokenizer_eos_id(t) == 2, "sp: eos %d (no template EOS: falls back to </s>)", tokenizer_eos_id(t));
    CHECK(tokenizer_vocab_size(t) == 12, "sp: vocab size %d", tokenizer_vocab_size(t));
    CHECK(tokenizer_token_id(t, "ab") == 9 && tokenizer_token_id(t, "zz") == -1, "sp: token_id");
    CHECK(tokenizer_token(t, 10) && !strcmp(tokenizer_token(t, 10), "\xe2\x96\x81" "ab"), "sp: token(10)");
    CHECK(tokenizer_token(t, 12) == NULL && tokenizer_token(t, -1) == NULL, "sp: token out of range");

    int32_t *ids = NULL;
    size_t n = 7;
    Err e = {0};
    CHECK(tokenizer_encode(t, "ab\xff" "c", 4, 1, &ids, &n, &e) == -1, "sp: invalid UTF-8 must fail");
    CHECK(strstr(e.msg, "UTF-8") && strstr(e.msg, "byte 2"), "sp: invalid UTF-8 message: %s", e.msg);
    CHECK(tokenizer_encode(t, "\xed\xa0\x80", 3, 1, &ids, &n, &e) == -1, "sp: a UTF-16 surrogate is invalid UTF-8");
    CHECK(tokenizer_encode(t, "\xc0\xaf", 2, 1, &ids, &n, &e) == -1, "sp: an overlong form is invalid UTF-8");
    tokenizer_free(t);
}

/* Byte-level (GPT-2 style) tokenizer; the vocab is every byte character plus a few merges.
 * Built at run time: 256 byte characters are too many to write out. */
static char *bytelevel_json(const char *pre, const char *extra_vocab, const char *merges, const char *added,
                            const char *post, int ignore_merges) {
    static char buf[1 << 16];
    size_t k = 0;
    k += (size_t)snprintf(buf + k, sizeof buf - k,
                          "{\"version\":\"1.0\",\"added_tokens\":[%s],\"normalizer\":null,\"pre_tokenizer\":%s,"
                          "\"post_processor\":%s,\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":false},"
                          "\"model\":{\"type\":\"BPE\",\"ignore_merges\":%s,\"vocab\":{",
                          added, pre, post, ignore_merges ? "true" : "false");
    for (int b = 0; b < 256; b++) {  // the GPT-2 byte -> character map
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        int r = 0;
        for (int x = 0; x < b; x++) r += !((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE);
        unsigned cp = keep ? (unsigned)b : 256u + (unsigned)r;
        char u[8];
        if (cp < 0x80) snprintf(u, sizeof u, "%s%c", cp == '"' || cp == '\\' ? "\\" : "", (char)cp);
        else snprintf(u, sizeof u, "%c%c", (char)(0xC0 | cp >> 6), (char)(0x80 | (cp & 63)));
        k += (size_t)snprintf(buf + k, sizeof buf - k, "%s\"%s\":%d", b ? "," : "", u, b);
    }
    k += (size_t)snprintf(buf + k, sizeof buf - k, "%s},\"merges\":[%s]}}", extra_vocab, merges);
    return buf;
}

#define G "\xc4\xa0"  // the byte-level character of a space
static const char *BL_VOCAB = ",\"" G "h\":256,\"he\":257,\"ll\":258,\"hell\":259,\"hello\":260,\"" G "hello\":261,"
                              "\"abc\":262,\"bc\":263";
static const char *BL_MERGES = "\"h e\",\"l l\",\"he ll\",\"hell o\",\"" G " h\",\"" G " hello\"";

static void test_bytelevel(void) {
    const char *gpt2 = "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":true}";
    Tokenizer *t = load(bytelevel_json(gpt2, BL_VOCAB, BL_MERGES, "", "null", 0));
    if (!t) return;
    // "Ġ h" (rank 4) loses to "h e" (rank 0), so " hello" is built as Ġ + hello (rank 5)
    expect_ids(t, "hello hello", 0, IDS(260, 261), "bytelevel: merges by rank within regex pieces");
    expect_ids(t, "hi", 0, IDS(104, 105), "bytelevel: unmerged bytes");
    expect_ids(t, "\xc3\xa9", 0, IDS(0xC3, 0xA9), "bytelevel: two-byte char as two byte symbols");
    expect_ids(t, "a  b", 0, IDS(97, 32, 32, 98), "bytelevel: \\s+(?!\\S) keeps one space for the next word");
    expect_ids(t, "it's", 0, IDS(105, 116, 39, 115), "bytelevel: contraction split");
    expect_text(t, IDS(260, 261), 0, "hello hello", "bytelevel: decode");
    expect_text(t, IDS(0xC3), 0, "\xef\xbf\xbd", "bytelevel: lone byte decodes lossily");
    expect_text(t, IDS(0xE4, 0xB8, 'a'), 0, "\xef\xbf\xbd" "a", "bytelevel: truncated sequence is one U+FFFD");
    tokenizer_free(t);

    const char *prefix = "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":false,\"use_regex\":true}";
    t = load(bytelevel_json(prefix, BL_VOCAB, BL_MERGES, "", "null", 0));
    if (t) {
        expect_ids(t, "hello", 0, IDS(261), "bytelevel: add_prefix_space");
        tokenizer_free(t);
    }

    // ignore_merges: a word that is itself a token is emitted whole, merges or not
    t = load(bytelevel_json(gpt2, BL_VOCAB, "\"b c\"", "", "null", 1));
    if (t) {
        expect_ids(t, "abc", 0, IDS(262), "bytelevel: ignore_merges takes the vocab word");
        expect_ids(t, "abcd", 0, IDS(97, 263, 100), "bytelevel: ignore_merges only for whole words");
        tokenizer_free(t);
    }
    t = load(bytelevel_json(gpt2, BL_VOCAB, "\"b c\"", "", "null", 0));
    if (t) {
        expect_ids(t, "abc", 0, IDS(97, 263), "bytelevel: without ignore_merges the merges decide");
        tokenizer_free(t);
    }

    // Llama-3 style: Split(regex) then ByteLevel without regex; Sequence post-processor with a BOS template
    const char *seq = "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
                      "\"\\\\p{N}{1,3}| ?\\\\p{L}+|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},"
                      "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":false}]}";
    const char *added = "{\"id\":264,\"content\":\"<|bot|>\",\"special\":true,\"normalized\":false,\"single_word\":false,\"lstrip\":false,\"rstrip\":false},"
                        "{\"id\":265,\"content\":\"<|eot|>\",\"special\":true,\"normalized\":false,\"single_word\":false,\"lstrip\":false,\"rstrip\":false}";
    const char *post = "{\"type\":\"Sequence\",\"processors\":[{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":false},{\"type\":\"TemplateProcessing\","
                       "\"single\":[{\"SpecialToken\":{\"id\":\"<|bot|>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
                       "{\"SpecialToken\":{\"id\":\"<|eot|>\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{"
                       "\"<|bot|>\":{\"id\":\"<|bot|>\",\"ids\":[264],\"tokens\":[\"<|bot|>\"]},"
                       "\"<|eot|>\":{\"id\":\"<|eot|>\",\"ids\":[265],\"tokens\":[\"<|eot|>\"]}}}]}";
    t = load(bytelevel_json(seq, BL_VOCAB, BL_MERGES, added, post, 0));
    if (t) {
        expect_ids(t, "12345 hello", 1, IDS(264, '1', '2', '3', '4', '5', 261, 265), "llama3-style: digits by 3, BOS/EOS");
        expect_ids(t, "hello<|eot|>hello", 0, IDS(260, 265, 260), "llama3-style: special token in text");
        CHECK(tokenizer_bos_id(t) == 264 && tokenizer_eos_id(t) == 265, "llama3-style: bos %d eos %d",
              tokenizer_bos_id(t), tokenizer_eos_id(t));
        CHECK(tokenizer_vocab_size(t) == 266, "llama3-style: vocab size counts added ids: %d", tokenizer_vocab_size(t));
        expect_text(t, IDS(264, 260, 265), 0, "<|bot|>hello<|eot|>", "llama3-style: decode keeps specials");
        expect_text(t, IDS(264, 260, 265), 1, "hello", "llama3-style: decode skips specials");
        tokenizer_free(t);
    }
}

/* Split behaviors: merges "a -" and "- b" reveal where the pieces were cut. */
static void test_split_behaviors(void) {
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    static const int32_t want[5][4] = {{0, 1, -1}, {0, 2, 2, 1}, {3, 2, 1, -1}, {0, 2, 4, -1}, {0, 5, 1, -1}};
    for (int b = 0; b < 5; b++) {
        char json[2048];
        snprintf(json, sizeof json,
                 "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\"-\"},\"behavior\":\"%s\",\"invert\":false},"
                 "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"-\":2,\"a-\":3,\"-b\":4,\"--\":5},"
                 "\"merges\":[[\"a\",\"-\"],[\"-\",\"b\"],[\"-\",\"-\"]]}}",
                 names[b]);
        Tokenizer *t = load(json);
        if (!t) continue;
        size_t n = 0;
        while (n < 4 && want[b][n] >= 0) n++;
        char what[64];
        snprintf(what, sizeof what, "split %s on a--b", names[b]);
        expect_ids(t, "a--b", 0, want[b], n, what);
        tokenizer_free(t);
    }
    // invert: the pattern names the pieces to keep
    Tokenizer *t = load("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[ab]+\"},\"behavior\":\"Removed\",\"invert\":true},"
                        "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"-\":2,\"ab\":3},\"merges\":[\"a b\"]}}");
    if (t) {
        expect_ids(t, "ab-a-b", 0, IDS(3, 0, 1), "split invert keeps the matches");
        tokenizer_free(t);
    }
}

/* Added tokens: lstrip/rstrip swallow whitespace, single_word needs word boundaries,
 * normalized tokens match after the normalizer. */
static void test_added_flags(void) {
    Tokenizer *t = load(
        "{\"added_tokens\":["
        "{\"id\":10,\"content\":\"<m>\",\"special\":true,\"lstrip\":true,\"rstrip\":false,\"normalized\":false,\"single_word\":false},"
        "{\"id\":11,\"content\":\"<r>\",\"special\":false,\"rstrip\":true,\"normalized\":false,\"single_word\":false,\"lstrip\":false},"
        "{\"id\":12,\"content\":\"cat\",\"special\":false,\"single_word\":true,\"normalized\":false,\"lstrip\":false,\"rstrip\":false},"
        "{\"id\":13,\"content\":\"dog\",\"special\":false,\"normalized\":true,\"single_word\":false,\"lstrip\":false,\"rstrip\":false}],"
        "\"normalizer\":{\"type\":\"Lowercase\"},"
        "\"model\":{\"type\":\"BPE\",\"vocab\":{\" \":0,\"a\":1,\"c\":2,\"t\":3,\"x\":4,\"d\":5,\"o\":6,\"g\":7,\"C\":8,\"A\":9},\"merges\":[]}}");
    if (!t) return;
    expect_ids(t, "x  <m> x", 0, IDS(4, 10, 0, 4), "lstrip takes the spaces before");
    expect_ids(t, "x <r>  x", 0, IDS(4, 0, 11, 4), "rstrip takes the spaces after");
    expect_ids(t, "a cat x", 0, IDS(1, 0, 12, 0, 4), "single_word matches a whole word");
    expect_ids(t, "acat", 0, IDS(1, 2, 1, 3), "single_word does not match inside a word");
    expect_ids(t, "x DOG", 0, IDS(4, 0, 13), "normalized token matches the lowercased text");
    expect_ids(t, "CAT", 0, IDS(2, 1, 3), "a non-normalized token does not match other case");
    expect_text(t, IDS(4, 10, 11), 1, "x <r>", "no decoder: tokens joined by spaces, special skipped");
    tokenizer_free(t);

    // an id that disagrees with the vocab is reassigned the way HF adds tokens: next free id
#define FLAGS "\"special\":true,\"normalized\":false,\"single_word\":false,\"lstrip\":false,\"rstrip\":false}"
    t = load("{\"added_tokens\":[{\"id\":50,\"content\":\"<x>\"," FLAGS ",{\"id\":0,\"content\":\"<y>\"," FLAGS ","
             "{\"id\":7,\"content\":\"a\"," FLAGS "],"
             "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[]}}");
    if (t) {
        CHECK(tokenizer_token_id(t, "<x>") == 2 && tokenizer_token_id(t, "<y>") == 3 && tokenizer_token_id(t, "a") == 0,
              "added ids: <x> %d <y> %d a %d", tokenizer_token_id(t, "<x>"), tokenizer_token_id(t, "<y>"),
              tokenizer_token_id(t, "a"));
        expect_ids(t, "b<x>a<y>", 0, IDS(1, 2, 0, 3), "added tokens with reassigned ids");
        tokenizer_free(t);
    }
#undef FLAGS
}

/* NFC (Qwen's normalizer) composes; NFKC folds compatibility characters. */
static void test_normalizers(void) {
    const char *fmt = "{\"normalizer\":{\"type\":\"%s\"},\"model\":{\"type\":\"BPE\",\"unk_token\":\"?\","
                      "\"vocab\":{\"?\":0,\"\xc3\xa9\":1,\"e\":2,\"\xcc\x81\":3,\"f\":4,\"i\":5,\"\xea\xb0\x81\":6,"
                      "\"\xe1\x84\x80\":7,\"\xe1\x85\xa1\":8,\"\xe1\x86\xa8\":9,\"s\":10},\"merges\":[]}}";
    char json[1024];
    snprintf(json, sizeof json, fmt, "NFC");
    Tokenizer *t = load(json);
    if (t) {
        expect_ids(t, "e\xcc\x81", 0, IDS(1), "NFC composes e + acute");
        expect_ids(t, "\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8", 0, IDS(6), "NFC composes Hangul jamo");
        expect_ids(t, "\xef\xac\x81", 0, IDS(0), "NFC keeps the fi ligature (unk here)");
        tokenizer_free(t);
    }
    snprintf(json, sizeof json, fmt, "NFD");
    if ((t = load(json))) {
        expect_ids(t, "\xc3\xa9\xea\xb0\x81", 0, IDS(2, 3, 7, 8, 9), "NFD decomposes e-acute and a Hangul syllable");
        tokenizer_free(t);
    }
    snprintf(json, sizeof json, fmt, "NFKC");
    if ((t = load(json))) {
        expect_ids(t, "\xef\xac\x81" "e\xcc\x81", 0, IDS(4, 5, 1), "NFKC folds the ligature");
        tokenizer_free(t);
    }
    snprintf(json, sizeof json, fmt, "Lowercase");
    if ((t = load(json))) {
        expect_ids(t, "\xc3\x89" "I", 0, IDS(1, 5), "Lowercase maps E-acute and I");
        tokenizer_free(t);
    }
}

/* Metaspace pre-tokenizer: prepend schemes and split; its decoder drops the first meta-space. */
static void test_metaspace(void) {
    const char *fmt = "{\"added_tokens\":[{\"id\":4,\"content\":\"<s>\",\"special\":true,\"normalized\":false,\"single_word\":false,\"lstrip\":false,\"rstrip\":false}],"
                      "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"%s\",\"split\":%s},"
                      "\"decoder\":{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"%s\",\"split\":true},"
                      "\"model\":{\"type\":\"BPE\",\"vocab\":{\"\xe2\x96\x81\":0,\"a\":1,\"\xe2\x96\x81" "a\":2,\"a\xe2\x96\x81\":3},"
                      "\"merges\":[\"a \xe2\x96\x81\",\"\xe2\x96\x81 a\"]}}";
    char json[1024];
    snprintf(json, sizeof json, fmt, "first", "true", "first");
    Tokenizer *t = load(json);
    if (t) {
        expect_ids(t, "a a", 0, IDS(2, 2), "metaspace first: prepend at the start, split before each meta-space");
        expect_ids(t, "<s>a", 0, IDS(4, 1), "metaspace first: no prepend after a special token");
        expect_text(t, IDS(2, 2), 0, "a a", "metaspace decode drops the first meta-space");
        tokenizer_free(t);
    }
    snprintf(json, sizeof json, fmt, "always", "false", "always");
    if ((t = load(json))) {
        expect_ids(t, "a a", 0, IDS(0, 3, 1), "metaspace always without split: one word, merges across");
        expect_ids(t, "<s>a", 0, IDS(4, 2), "metaspace always: prepend after a special token too");
        tokenizer_free(t);
    }
    snprintf(json, sizeof json, fmt, "never", "true", "never");
    if ((t = load(json))) {
        expect_ids(t, "a a", 0, IDS(1, 2), "metaspace never");
        expect_text(t, IDS(1, 2), 0, "a a", "metaspace never decode");
        tokenizer_free(t);
    }
}

static void test_malformed(void) {
    expect_load_error("{\"model\": {\"type\": \"BPE\", ", "line", "truncated JSON");
    expect_load_error("[1, 2]", "object", "top level not an object");
    expect_load_error("{\"version\":\"1.0\"}", "model", "missing model");
    expect_load_error("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", "WordPiece", "unknown model type");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"merges\":[]}}", "vocab", "missing vocab");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b c\"]}}",
                      "merges[0]", "merge with three parts");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}",
                      "not in model.vocab", "merge result missing from vocab");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[[\"a\"]]}}", "merges[0]", "merge pair of one");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}", "\"a\"", "negative id");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":2000000000},\"merges\":[]}}", "out of range",
                      "id far beyond the vocab");
    expect_load_error("{\"normalizer\":{\"type\":\"Precompiled\"},\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}",
                      "Precompiled", "unsupported normalizer");
    expect_load_error("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"},"
                      "\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}", "regex", "bad regex");
    expect_load_error("{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"}}],"
                      "\"special_tokens\":{}},\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}", "<s>",
                      "template names an undefined special token");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":{},\"merges\":[]}}", "dropout", "dropout");

    Err e = {0};
    CHECK(tokenizer_load("/nonexistent/tokenizer.json", &e) == NULL && strstr(e.msg, "/nonexistent/tokenizer.json"),
          "missing file: %s", e.msg);
}

/* The unk token must exist once it is needed; without unk, unknown chars vanish (as in HF). */
static void test_unk(void) {
    Tokenizer *t = load("{\"model\":{\"type\":\"BPE\",\"unk_token\":\"<u>\",\"vocab\":{\"a\":0},\"merges\":[]}}");
    if (t) {
        int32_t *ids = NULL;
        size_t n;
        Err e = {0};
        CHECK(tokenizer_encode(t, "ab", 2, 0, &ids, &n, &e) == -1 && strstr(e.msg, "<u>"),
              "missing unk token must fail when needed: %s", e.msg);
        expect_ids(t, "aa", 0, IDS(0, 0), "no unknown char, no error");
        tokenizer_free(t);
    }
    if ((t = load("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}"))) {
        expect_ids(t, "abca", 0, IDS(0, 0), "no unk token: unknown chars are dropped");
        tokenizer_free(t);
    }
    if ((t = load("{\"model\":{\"type\":\"BPE\",\"unk_token\":\"<u>\",\"fuse_unk\":false,\"vocab\":{\"a\":0,\"<u>\":1},\"merges\":[]}}"))) {
        expect_ids(t, "abca", 0, IDS(0, 1, 1, 0), "unk without fuse: one per char");
        tokenizer_free(t);
    }
}

/* A stories260K sentence whose HF ids are known, when the shared models are present. */
static void test_shared_stories(void) {
    const char *d = shared_dir();
    if (!d) return;
    char path[512];
    snprintf(path, sizeof path, "%s/models/stories260K/tokenizer.json", d);
    Err e = {0};
    Tokenizer *t = tokenizer_load(path, &e);
    CHECK(t != NULL, "stories260K: %s", e.msg);
    if (!t) return;
    expect_ids(t, "Once upon a time, there was a little girl named Lily.", 1,
               IDS(1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426), "stories260K known ids");
    CHECK(tokenizer_bos_id(t) == 1 && tokenizer_eos_id(t) == 2, "stories260K bos/eos");
    tokenizer_free(t);
}

int main(void) {
    test_sentencepiece();
    test_bytelevel();
    test_split_behaviors();
    test_added_flags();
    test_normalizers();
    test_metaspace();
    test_malformed();
    test_unk();
    test_shared_stories();
    return check_done("test_tokenizer");
}
