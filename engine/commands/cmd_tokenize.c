/* cmd_tokenize.c: `lemo tokenize`, the tokenizer on the command line.
 *
 * Text on stdin -> one JSON array of ids on stdout; with --decode, a JSON array of ids on
 * stdin -> the text on stdout (written as is, no newline added, so a round trip is
 * byte-exact). --lines handles many texts in one run (one JSON value a line), which is how
 * the oracle tests compare thousands of texts against another tokenizer without paying
 * for loading the tokenizer each time. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

static void tokenize_usage(FILE *f) {
    fprintf(f,
            "usage: lemo tokenize (--tokenizer FILE.json | --model DIR) [--decode] [--no-special] [--lines]\n"
            "  text on stdin -> JSON array of token ids on stdout\n\n"
            "  --tokenizer FILE  a Hugging Face tokenizer.json (no default; this or --model is required)\n"
            "  --model DIR       a model folder; uses DIR/tokenizer.json\n"
            "  --decode          read a JSON array of ids on stdin and print the text (default: off, encode)\n"
            "  --no-special      encode without the post-processor's BOS/EOS; decode without special\n"
            "                    tokens (default: off: add them / keep them)\n"
            "  --lines           batch mode: stdin is JSON Lines, each line a JSON string to encode (with\n"
            "                    --decode: an array of ids); one JSON line out per line in: the ids (with\n"
            "                    --decode: the text as a JSON string) (default: off, stdin is one text)\n"
            "  --help            this text\n");
}

/* Reads all of stdin into a malloc'd buffer. */
static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap);
    if (!p) return NULL;
    size_t k;
    while ((k = fread(p + n, 1, cap - n, stdin)) > 0) {
        n += k;
        if (n == cap) {
            char *q = realloc(p, cap *= 2);
            if (!q) { free(p); return NULL; }
            p = q;
        }
    }
    *len = n;
    return p;
}

static int tokenize_decode(const Tokenizer *t, const char *in, size_t len, int skip_special) {
    json_error_t je;
    json_t *arr = json_loadb(in, len, JSON_DECODE_ANY, &je);
    if (!json_is_array(arr)) {
        fprintf(stderr, "lemo tokenize: stdin: expected a JSON array of ids (%s)\n", arr ? "not an array" : je.text);
        json_decref(arr);
        return 1;
    }
    size_t n = json_array_size(arr);
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    if (!ids) { json_decref(arr); return 1; }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_integer(v) || json_integer_value(v) < INT32_MIN || json_integer_value(v) > INT32_MAX) {
            fprintf(stderr, "lemo tokenize: stdin: element %zu is not an integer id\n", i);
            free(ids);
            json_decref(arr);
            return 1;
        }
        ids[i] = (int32_t)json_integer_value(v);
    }
    json_decref(arr);
    char *text = tokenizer_decode(t, ids, n, skip_special);
    free(ids);
    fwrite(text, 1, strlen(text), stdout);
    free(text);
    return 0;
}

/* Writes ids as a JSON array and a newline. */
static void print_ids(const int32_t *ids, size_t n) {
    char num[16];
    fputc('[', stdout);
    for (size_t i = 0; i < n; i++) {
        int k = snprintf(num, sizeof num, i ? ", %d" : "%d", ids[i]);
        fwrite(num, 1, (size_t)k, stdout);
    }
    fputs("]\n", stdout);
}

/* Batch mode: one JSON value per input line, one JSON line out per line in. */
static int tokenize_lines(const Tokenizer *t, char *in, size_t len, int decode, int special) {
    size_t pos = 0;
    long line = 0;
    while (pos < len) {
        char *nl = memchr(in + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - in) : len;
        line++;
        json_error_t je;
        json_t *v = end > pos ? json_loadb(in + pos, end - pos, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je) : NULL;
        pos = end + 1;
        if (!v) {
            fprintf(stderr, "lemo tokenize: stdin: line %ld: not JSON\n", line);
            return 1;
        }
        if (decode) {
            size_t n = json_array_size(v);
            int32_t *ids = malloc((n + 1) * sizeof *ids);
            if (!ids) abort();
            for (size_t i = 0; i < n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(v, i));
            char *text = tokenizer_decode(t, ids, n, !special);
            json_t *s = json_stringn(text, strlen(text));
            char *dump = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
            puts(dump ? dump : "null");
            free(dump); json_decref(s); free(text); free(ids);
        } else {
            if (!json_is_string(v)) {
                fprintf(stderr, "lemo tokenize: stdin: line %ld: expected a JSON string\n", line);
                json_decref(v);
                return 1;
            }
            int32_t *ids;
            size_t n;
            Err e = {0};
            if (tokenizer_encode(t, json_string_value(v), json_string_length(v), special, &ids, &n, &e)) {
                fprintf(stderr, "lemo tokenize: stdin: line %ld: %s\n", line, e.msg);
                json_decref(v);
                return 1;
            }
            print_ids(ids, n);
            free(ids);
        }
        json_decref(v);
    }
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    const char *file = NULL, *model = NULL;
    int decode = 0, special = 1, lines = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { tokenize_usage(stdout); return 0; }
        else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) file = argv[++i];
        else if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--decode")) decode = 1;
        else if (!strcmp(argv[i], "--no-special")) special = 0;
        else if (!strcmp(argv[i], "--lines")) lines = 1;
        else {
            fprintf(stderr, "lemo tokenize: unknown or incomplete flag '%s'\n\n", argv[i]);
            tokenize_usage(stderr);
            return 2;
        }
    }
    if (!file == !model) {
        fprintf(stderr, "lemo tokenize: give exactly one of --tokenizer and --model\n\n");
        tokenize_usage(stderr);
        return 2;
    }
    char path[4096];
    if (model) snprintf(path, sizeof path, "%s/tokenizer.json", model);
    else snprintf(path, sizeof path, "%s", file);
    Err e = {0};
    Tokenizer *t = tokenizer_load(path, &e);
    if (!t) { fprintf(stderr, "lemo tokenize: %s\n", e.msg); return 1; }
    size_t len = 0;
    char *in = read_stdin(&len);
    if (!in) { fprintf(stderr, "lemo tokenize: cannot read stdin\n"); tokenizer_free(t); return 1; }
    int rc = 0;
    if (lines) rc = tokenize_lines(t, in, len, decode, special);
    else if (decode) rc = tokenize_decode(t, in, len, !special);
    else {
        int32_t *ids;
        size_t n;
        if (tokenizer_encode(t, in, len, special, &ids, &n, &e)) {
            fprintf(stderr, "lemo tokenize: stdin: %s\n", e.msg);
            rc = 1;
        } else {
            print_ids(ids, n);
            free(ids);
        }
    }
    free(in);
    tokenizer_free(t);
    if (fflush(stdout)) { fprintf(stderr, "lemo tokenize: write error\n"); return 1; }
    return rc;
}
