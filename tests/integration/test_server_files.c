/* test_server_files.c: /v1/files against a real server: multipart and raw uploads, the
 * validator's line+field errors, list with cursors, retrieve, content, delete, import by URL
 * (from the server itself, allowed by --import-internal; refused without it), and the size
 * limit (413) for each upload path. */
#include <zlib.h>

#include "itest.h"

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ITServer s;
    it_tempdir(&s);
    // --import-internal: the import test below fetches from this server on 127.0.0.1
    if (it_start(&s, "--slots", "0", "--max-upload-bytes", "20000", "--import-internal", NULL)) {
        CHECK(0, "server start");
        return check_done("files");
    }

    /* multipart upload */
    char *good = it_story_jsonl(10);
    ITResp r = it_upload(&s, "train.jsonl", good, strlen(good), "fine-tune", NULL);
    CHECK(r.status == 200, "multipart upload: %ld %s", r.status, r.body);
    json_t *f = it_json(&r);
    char id1[64];
    snprintf(id1, sizeof id1, "%s", json_string_value(json_object_get(f, "id")) ?: "");
    CHECK(!strncmp(id1, "file-", 5), "file id %s", id1);
    CHECK(json_integer_value(json_object_get(f, "bytes")) == (json_int_t)strlen(good), "bytes");
    CHECK(json_integer_value(json_object_get(f, "n_examples")) == 10, "n_examples");
    CHECK(!strcmp(json_string_value(json_object_get(f, "object")) ?: "", "file"), "object");
    CHECK(!strcmp(json_string_value(json_object_get(f, "purpose")) ?: "", "fine-tune"), "purpose");
    CHECK(!strcmp(json_string_value(json_object_get(f, "filename")) ?: "", "train.jsonl"), "filename");
    json_decref(f);
    it_free(&r);

    /* raw upload with ?filename= */
    const char *oct[] = {"Content-Type: application/octet-stream", NULL};
    r = it_req(&s, "POST", "/v1/files?filename=raw.jsonl&purpose=fine-tune", oct, good, (long)strlen(good));
    CHECK(r.status == 200, "raw upload: %ld %s", r.status, r.body);
    char id2[64];
    it_str(&r, "id", id2, sizeof id2);
    it_free(&r);

    /* a raw body without ?filename= */
    r = it_req(&s, "POST", "/v1/files", oct, good, (long)strlen(good));
    char param[64];
    it_err_field(&r, "param", param, sizeof param);
    CHECK(r.status == 400 && !strcmp(param, "filename"), "raw without filename: %ld %s", r.status, r.body);
    it_free(&r);

    /* dataset errors name the line and the field */
    static const struct { const char *text, *line, *param; } bad[] = {
        {"{\"text\": \"ok\"}\n{\"text\": 5}\n", "line 2", "text"},
        {"{\"text\": \"ok\"}\n\n{\"prompt\": \"a\", \"completion\": 3}\n", "line 3", "completion"},
        {"{\"text\": \"ok\"}\n{not json\n", "line 2", ""},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": 7, \"content\": \"x\"}]}\n", "line 1", "messages"},
        {"[1, 2]\n", "line 1", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = it_upload(&s, "bad.jsonl", bad[i].text, strlen(bad[i].text), "fine-tune", NULL);
        char msg[1024], code[64];
        it_err_field(&r, "message", msg, sizeof msg);
        it_err_field(&r, "param", param, sizeof param);
        it_err_field(&r, "code", code, sizeof code);
        CHECK(r.status == 400, "bad dataset %zu: status %ld", i, r.status);
        CHECK(strstr(msg, bad[i].line) != NULL, "bad dataset %zu: message '%s' names %s", i, msg, bad[i].line);
        CHECK(!strcmp(code, "invalid_file"), "bad dataset %zu: code %s", i, code);
        if (bad[i].param[0])
            CHECK(strstr(param, bad[i].param) != NULL, "bad dataset %zu: param '%s' names %s", i, param, bad[i].param);
        it_free(&r);
        CHECK(it_healthy(&s), "healthy after bad dataset %zu", i);
    }
    /* empty file, wrong purpose, no purpose, no file part */
    r = it_upload(&s, "e.jsonl", "", 0, "fine-tune", NULL);
    CHECK(r.status == 400, "empty file: %ld", r.status);
    it_free(&r);
    r = it_upload(&s, "t.jsonl", good, strlen(good), "assistants", NULL);
    it_err_field(&r, "param", param, sizeof param);
    CHECK(r.status == 400 && !strcmp(param, "purpose"), "wrong purpose: %ld %s", r.status, r.body);
    it_free(&r);
    r = it_upload(&s, "t.jsonl", good, strlen(good), NULL, NULL);
    it_err_field(&r, "param", param, sizeof param);
    CHECK(r.status == 400 && !strcmp(param, "purpose"), "missing purpose: %ld %s", r.status, r.body);
    it_free(&r);
    const char *mp_hdr[] = {"Content-Type: multipart/form-data; boundary=XyZ", NULL};
    const char *mp_body = "--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n--XyZ--\r\n";
    r = it_req(&s, "POST", "/v1/files", mp_hdr, mp_body, (long)strlen(mp_body));
    it_err_field(&r, "param", param, sizeof param);
    CHECK(r.status == 400 && !strcmp(param, "file"), "no file part: %ld %s", r.status, r.body);
    it_free(&r);
    const char *mp_trunc = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\n\r\n{\"text\":\"a\"}\n";
    r = it_req(&s, "POST", "/v1/files", mp_hdr, mp_trunc, (long)strlen(mp_trunc));
    CHECK(r.status == 400, "truncated multipart: %ld %s", r.status, r.body);
    it_free(&r);

    /* size limit: 20000 bytes */
    char *big = it_story_jsonl(300);
    r = it_upload(&s, "big.jsonl", big, strlen(big), "fine-tune", NULL);
    CHECK(r.status == 413, "multipart over the limit: %ld %s", r.status, r.body);
    it_free(&r);
    r = it_req(&s, "POST", "/v1/files?filename=big.jsonl", oct, big, (long)strlen(big));
    CHECK(r.status == 413, "raw over the limit: %ld %s", r.status, r.body);
    it_free(&r);
    CHECK(it_healthy(&s), "healthy after 413s");

    /* list, cursors */
    r = it_get(&s, "/v1/files?limit=1");
    json_t *l = it_json(&r);
    CHECK(r.status == 200 && json_array_size(json_object_get(l, "data")) == 1, "list limit=1: %s", r.body);
    CHECK(json_is_true(json_object_get(l, "has_more")), "has_more with 2 files");
    const char *first = json_string_value(json_object_get(json_array_get(json_object_get(l, "data"), 0), "id"));
    CHECK(first && !strcmp(first, id2), "newest first: %s", first ? first : "?");
    char path[256];
    snprintf(path, sizeof path, "/v1/files?limit=1&after=%s", first ? first : "");
    json_decref(l);
    it_free(&r);
    r = it_get(&s, path);
    l = it_json(&r);
    const char *second = json_string_value(json_object_get(json_array_get(json_object_get(l, "data"), 0), "id"));
    CHECK(second && !strcmp(second, id1), "after cursor gives the older file");
    CHECK(json_is_false(json_object_get(l, "has_more")), "no more after the last");
    json_decref(l);
    it_free(&r);
    r = it_get(&s, "/v1/files?after=file-doesnotexist");
    CHECK(r.status == 400, "unknown cursor: %ld", r.status);
    it_free(&r);

    /* retrieve, content */
    snprintf(path, sizeof path, "/v1/files/%s", id1);
    r = it_get(&s, path);
    CHECK(r.status == 200, "retrieve");
    it_free(&r);
    snprintf(path, sizeof path, "/v1/files/%s/content", id1);
    r = it_get(&s, path);
    CHECK(r.status == 200 && r.len == strlen(good) && !memcmp(r.body, good, r.len), "content round trip");
    it_free(&r);

    /* import by URL: the server downloads its own file's content */
    char json[512];
    snprintf(json, sizeof json, "{\"url\": \"%s/v1/files/%s/content\", \"filename\": \"imported.jsonl\"}", s.base, id1);
    r = it_post_json(&s, "/v1/files", json);
    CHECK(r.status == 200, "import: %ld %s", r.status, r.body);
    char id3[64];
    it_str(&r, "id", id3, sizeof id3);
    it_free(&r);
    snprintf(json, sizeof json, "{\"url\": \"%s/v1/nothing-here\"}", s.base);
    r = it_post_json(&s, "/v1/files", json);
    it_err_field(&r, "param", param, sizeof param);
    CHECK(r.status == 400 && !strcmp(param, "url"), "import of a 404: %ld %s", r.status, r.body);
    it_free(&r);
    r = it_post_json(&s, "/v1/files", "{\"url\": \"file:///etc/passwd\"}");
    CHECK(r.status == 400, "import of file:// refused: %ld", r.status);
    it_free(&r);
    {  // by default a URL that leads to an internal address is refused, naming the address
        ITServer t;
        it_tempdir(&t);
        if (it_start(&t, "--slots", "0", NULL)) {
            CHECK(0, "second server start");
        } else {
            snprintf(json, sizeof json, "{\"url\": \"%s/v1/files/%s/content\"}", s.base, id1);
            r = it_post_json(&t, "/v1/files", json);
            CHECK(it_is_error(&r, 400, "url", "url_not_allowed", "127.0.0.1"),
                  "import from 127.0.0.1 without --import-internal: %ld %s", r.status, r.body);
            it_free(&r);
            r = it_get(&t, "/v1/files");
            CHECK(r.status == 200 && !strstr(r.body, "file-"), "a refused import stores nothing: %s", r.body);
            it_free(&r);
            it_stop(&t, SIGTERM);
            it_cleanup(&t);
        }
    }
    r = it_post_json(&s, "/v1/files", "{\"url\": \"http://x\", \"extra\": 1}");
    it_err_field(&r, "param", param, sizeof param);
    CHECK(r.status == 400 && !strcmp(param, "extra"), "import unknown field: %ld %s", r.status, r.body);
    it_free(&r);
    /* an import over the size limit, from a peer that serves the big file */
    ITPeer peer;
    memset(&peer, 0, sizeof peer);
    peer.get_body = big;
    peer.get_len = strlen(big);
    CHECK(it_peer_start(&peer) == 0, "peer start");
    snprintf(json, sizeof json, "{\"url\": \"http://127.0.0.1:%d/big.jsonl\"}", peer.port);
    r = it_post_json(&s, "/v1/files", json);
    CHECK(r.status == 413, "import over the limit: %ld %s", r.status, r.body);
    it_free(&r);
    peer.get_body = good;
    peer.get_len = strlen(good);
    r = it_post_json(&s, "/v1/files", json);
    char fname[64];
    it_str(&r, "filename", fname, sizeof fname);
    CHECK(r.status == 200 && !strcmp(fname, "big.jsonl"), "import names the file after the URL: %ld %s", r.status, r.body);
    it_free(&r);
    it_peer_stop(&peer);

    /* delete */
    snprintf(path, sizeof path, "/v1/files/%s", id3);
    r = it_req(&s, "DELETE", path, NULL, NULL, 0);
    json_t *d = it_json(&r);
    CHECK(r.status == 200 && json_is_true(json_object_get(d, "deleted")), "delete: %ld %s", r.status, r.body);
    json_decref(d);
    it_free(&r);
    r = it_get(&s, path);
    CHECK(r.status == 404, "deleted file is gone: %ld", r.status);
    it_free(&r);
    r = it_req(&s, "DELETE", path, NULL, NULL, 0);
    CHECK(r.status == 404, "second delete: %ld", r.status);
    it_free(&r);
    char stored[512];
    snprintf(stored, sizeof stored, "%s/files/%s.jsonl", s.data, id3);
    CHECK(access(stored, F_OK) != 0, "deleted file removed from disk");
    snprintf(stored, sizeof stored, "%s/files/%s.jsonl", s.data, id1);
    CHECK(access(stored, F_OK) == 0, "stored file at files/ID.jsonl");

    /* a gzip upload (.jsonl.gz) is decompressed and validated like a plain one; the reply counts
     * lines and characters (code points); a corrupt one and one too large once decompressed are
     * refused */
    {
        const char *txt = "{\"text\": \"caf\u00e9 au lait\"}\n{\"text\": \"two\"}";  // no final newline
        char gzpath[600];
        snprintf(gzpath, sizeof gzpath, "%s/t.jsonl.gz", s.dir);
        gzFile g = gzopen(gzpath, "wb");
        gzwrite(g, txt, (unsigned)strlen(txt));
        gzclose(g);
        FILE *fz = fopen(gzpath, "rb");
        char gzb[4096];
        size_t gzn = fread(gzb, 1, sizeof gzb, fz);
        fclose(fz);
        r = it_req(&s, "POST", "/v1/files?filename=t.jsonl.gz&purpose=fine-tune", oct, gzb, (long)gzn);
        json_t *gj = it_json(&r);
        CHECK(r.status == 200 && json_integer_value(json_object_get(gj, "n_examples")) == 2 &&
                  json_integer_value(json_object_get(gj, "bytes")) == (json_int_t)strlen(txt) &&
                  json_integer_value(json_object_get(gj, "lines")) == 2 &&
                  json_integer_value(json_object_get(gj, "characters")) == (json_int_t)strlen(txt) - 1,
              "gzip upload: %ld %s", r.status, r.body);
        char gid[64];
        snprintf(gid, sizeof gid, "%s", json_string_value(json_object_get(gj, "id")) ?: "");
        json_decref(gj);
        it_free(&r);
        snprintf(path, sizeof path, "/v1/files/%s/content", gid);
        r = it_get(&s, path);
        CHECK(r.status == 200 && r.len == strlen(txt) && !memcmp(r.body, txt, strlen(txt)),
              "the stored content is the decompressed text: %.200s", r.body);
        it_free(&r);
        gzb[gzn / 2] ^= 0x5a;  // a corrupt stream
        r = it_req(&s, "POST", "/v1/files?filename=c.jsonl.gz&purpose=fine-tune", oct, gzb, (long)gzn);
        it_err_field(&r, "code", param, sizeof param);
        CHECK(r.status == 400, "corrupt gzip: %ld %s", r.status, r.body);
        it_free(&r);
        g = gzopen(gzpath, "wb");  // 30,000 bytes of text: under the 20,000-byte limit compressed, over it after
        for (int i = 0; i < 1000; i++) gzputs(g, "{\"text\": \"aaaaaaaaaaaaaaaa\"}\n");
        gzclose(g);
        fz = fopen(gzpath, "rb");
        gzn = fread(gzb, 1, sizeof gzb, fz);
        fclose(fz);
        r = it_req(&s, "POST", "/v1/files?filename=big.jsonl.gz&purpose=fine-tune", oct, gzb, (long)gzn);
        CHECK(r.status == 413, "a gzip bomb past the limit: %ld %s", r.status, r.body);
        it_free(&r);
        r = it_upload(&s, "plain.jsonl", txt, strlen(txt), "fine-tune", NULL);
        gj = it_json(&r);
        CHECK(json_integer_value(json_object_get(gj, "lines")) == 2 &&
                  json_integer_value(json_object_get(gj, "characters")) == (json_int_t)strlen(txt) - 1,
              "plain upload counts: %s", r.body);
        json_decref(gj);
        it_free(&r);
    }

    CHECK(it_healthy(&s), "healthy at the end");
    it_stop(&s, SIGTERM);
    it_cleanup(&s);
    free(good);
    free(big);
    return check_done("test_server_files");
}
