/* chat_ids.c: prints, for each line of a JSONL dataset, the token ids and loss mask the
 * loader produces (one JSON object per line: {"ids":[...],"loss":[...]}).
 *
 * Used by tests/node/chat_template_oracle.test.mjs to compare our chat templates with the
 * reference implementation's apply_chat_template. Each line goes through data_load_jsonl
 * on its own, so the output is exactly what training sees for that document.
 * Usage: chat_ids TOKENIZER_JSON auto|llama3|chatml|inst DATASET.jsonl */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"
#include "tokenizer.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: chat_ids TOKENIZER_JSON auto|llama3|chatml|inst DATASET.jsonl\n");
        return 2;
    }
    static const char *names[] = {"auto", "llama3", "chatml", "inst"};
    int tmpl = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(argv[2], names[i]) == 0) tmpl = i;
    if (tmpl < 0) { fprintf(stderr, "chat_ids: unknown template %s\n", argv[2]); return 2; }
    Err e = {0};
    Tokenizer *tok = tokenizer_load(argv[1], &e);
    if (!tok) { fprintf(stderr, "chat_ids: %s\n", e.msg); return 1; }
    FILE *in = fopen(argv[3], "rb");
    if (!in) { perror(argv[3]); return 1; }
    char tmp[] = "/tmp/chat_ids_XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0) { perror("mkstemp"); return 1; }
    close(fd);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while ((n = getline(&line, &cap, in)) > 0) {
        FILE *f = fopen(tmp, "wb");
        fwrite(line, 1, (size_t)n, f);
        fclose(f);
        TokenStream s = {0};
        if (data_load_jsonl(tmp, tok, tmpl, NULL, NULL, &s, &e) != 0) {
            printf("{\"error\":\"see stderr\"}\n");
            fprintf(stderr, "chat_ids: %s\n", e.msg);
            rc = 1;
            continue;
        }
        printf("{\"ids\":[");
        for (size_t i = 0; i < s.n; i++) printf("%s%d", i ? "," : "", s.ids[i]);
        printf("],\"loss\":[");
        for (size_t i = 0; i < s.n; i++) printf("%s%d", i ? "," : "", s.loss[i]);
        printf("]}\n");
        token_stream_free(&s);
    }
    free(line);
    fclose(in);
    remove(tmp);
    tokenizer_free(tok);
    return rc;
}
