/* test_server_codecs.c: the server's byte-level pieces against known answers: SHA-256
 * (FIPS 180-4 vectors, streamed in odd pieces), HMAC-SHA256 (RFC 4231), base64, the ustar
 * writer (read back by tar(1)), byte-range parsing, and the streaming multipart parser fed in
 * every chunk size. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "http.h"
#include "multipart.h"
#include "sha256.h"
#include "tar.h"

typedef struct {
    char name[64], filename[64], data[4][256];
    int n_parts;
    size_t lens[4];
    int ended;
} MpLog;

static int on_begin(void *ctx, const char *name, const char *filename, const char *ct) {
    (void)ct;
    MpLog *l = ctx;
    if (l->n_parts == 4) return 1;
    if (l->n_parts == 0) snprintf(l->name, sizeof l->name, "%s", name);
    if (filename[0]) snprintf(l->filename, sizeof l->filename, "%s", filename);
    l->n_parts++;
    return 0;
}

static int on_data(void *ctx, const char *d, size_t n) {
    MpLog *l = ctx;
    int i = l->n_parts - 1;
    if (l->lens[i] + n >= sizeof l->data[i]) return 1;
    memcpy(l->data[i] + l->lens[i], d, n);
    l->lens[i] += n;
    return 0;
}

static int on_end(void *ctx) {
    ((MpLog *)ctx)->ended++;
    return 0;
}

int main(void) {
    char hex[65];
    uint8_t d[32];
    sha256_digest("abc", 3, d);
    hex_encode(d, 32, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "sha256(abc) %s", hex);
    sha256_digest("", 0, d);
    hex_encode(d, 32, hex);
    CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "sha256('') %s", hex);
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    for (size_t step = 1; step <= 64; step += 7) {
        Sha256 s;
        sha256_init(&s);
        for (size_t i = 0; i < strlen(m448); i += step)
            sha256_update(&s, m448 + i, i + step <= strlen(m448) ? step : strlen(m448) - i);
        sha256_final(&s, d);
        hex_encode(d, 32, hex);
        CHECK(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
              "sha256(448-bit msg) in pieces of %zu: %s", step, hex);
    }
    static char million[1000000];
    memset(million, 'a', sizeof million);
    sha256_digest(million, sizeof million, d);
    hex_encode(d, 32, hex);
    CHECK(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"), "sha256(a x 1e6) %s", hex);
    uint8_t key[131];
    memset(key, 0xaa, sizeof key);
    const char *msg = "Test Using Larger Than Block-Size Key - Hash Key First";
    hmac_sha256(key, sizeof key, msg, strlen(msg), d);
    hex_encode(d, 32, hex);
    CHECK(!strcmp(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"), "RFC 4231 case 6: %s", hex);
    char b64[16];
    base64_encode((const uint8_t *)"foob", 4, b64);
    CHECK(!strcmp(b64, "Zm9vYg=="), "base64 %s", b64);
    base64_encode((const uint8_t *)"fooba", 5, b64);
    CHECK(!strcmp(b64, "Zm9vYmE="), "base64 %s", b64);
    CHECK(bytes_equal_ct("abc", "abc", 3) && !bytes_equal_ct("abc", "abd", 3), "constant-time compare");

    /* tar: two files, read back by tar(1); the digest is the archive's */
    char dir[] = "/tmp/lemo-tar-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "temp dir");
    char p1[128], p2[128], out[128], cmd[512];
    snprintf(p1, sizeof p1, "%s/a.json", dir);
    snprintf(p2, sizeof p2, "%s/b.bin", dir);
    snprintf(out, sizeof out, "%s/x.tar", dir);
    FILE *f = fopen(p1, "w");
    fputs("{\"r\": 8}\n", f);
    fclose(f);
    f = fopen(p2, "wb");
    for (int i = 0; i < 1000; i++) fputc(i & 255, f);
    fclose(f);
    const char *names[2] = {"adapter_config.json", "adapter_model.safetensors"};
    const char *paths[2] = {p1, p2};
    Err e;
    char sha[65], sha2[65];
    CHECK(tar_write_files(out, names, paths, 2, sha, &e) == 0, "tar write");
    CHECK(sha256_file_hex(out, sha2) == 0 && !strcmp(sha, sha2), "tar digest matches the file");
    snprintf(cmd, sizeof cmd, "cd %s && mkdir x && tar -xf x.tar -C x && cmp x/adapter_config.json a.json && cmp x/adapter_model.safetensors b.bin", dir);
    CHECK(system(cmd) == 0, "tar(1) extracts both files intact");
    CHECK(tar_write_files(out, names, paths, 2, sha2, &e) == 0 && !strcmp(sha, sha2), "deterministic archive");
    const char *missing[2] = {p1, "/nonexistent/x"};
    CHECK(tar_write_files(out, names, missing, 2, sha2, &e) == -1, "missing member is an error");
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cleanup");

    /* ranges */
    uint64_t a, b;
    CHECK(http_parse_range("bytes=0-99", 1000, &a, &b) == 1 && a == 0 && b == 99, "0-99");
    CHECK(http_parse_range("bytes=900-", 1000, &a, &b) == 1 && a == 900 && b == 999, "900-");
    CHECK(http_parse_range("bytes=-100", 1000, &a, &b) == 1 && a == 900 && b == 999, "-100");
    CHECK(http_parse_range("bytes=-5000", 1000, &a, &b) == 1 && a == 0 && b == 999, "-5000 clamps");
    CHECK(http_parse_range("bytes=500-5000", 1000, &a, &b) == 1 && a == 500 && b == 999, "end clamps");
    CHECK(http_parse_range("bytes=1000-", 1000, &a, &b) == -1, "start past the end: 416");
    CHECK(http_parse_range("bytes=-0", 1000, &a, &b) == -1, "empty suffix: 416");
    CHECK(http_parse_range("bytes=5-2", 1000, &a, &b) == 0, "reversed: ignored");
    CHECK(http_parse_range("bytes=0-1,5-6", 1000, &a, &b) == 0, "multi-range: whole");
    CHECK(http_parse_range("items=0-1", 1000, &a, &b) == 0, "other unit: ignored");
    CHECK(http_parse_range("bytes=x-1", 1000, &a, &b) == 0, "garbage: ignored");
    CHECK(http_parse_range(NULL, 1000, &a, &b) == 0, "no header");

    /* multipart, fed in every chunk size */
    const char *ct = "multipart/form-data; boundary=\"----b0und\"";
    const char *body = "preamble\r\n------b0und\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n"
                       "------b0und\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d\\\"x.jsonl\"\r\n"
                       "Content-Type: application/jsonl\r\n\r\n{\"text\": \"a\\r\\n------b0un\"}\r\n\r\n"
                       "------b0und--\r\nepilogue";
    for (size_t chunk = 1; chunk <= strlen(body); chunk++) {
        MpLog l;
        memset(&l, 0, sizeof l);
        MultipartCallbacks cb = {on_begin, on_data, on_end, &l};
        Multipart *m = multipart_new(ct, &cb, &e);
        int bad = !m;
        for (size_t i = 0; m && i < strlen(body) && !bad; i += chunk)
            bad = multipart_feed(m, body + i, i + chunk <= strlen(body) ? chunk : strlen(body) - i, &e) != 0;
        bad |= !m || multipart_finish(m, &e) != 0;
        CHECK(!bad, "chunk %zu: parse: %s", chunk, e.msg);
        CHECK(l.n_parts == 2 && l.ended == 2 && !strcmp(l.name, "purpose"), "chunk %zu: 2 parts", chunk);
        CHECK(l.lens[0] == 9 && !memcmp(l.data[0], "fine-tune", 9), "chunk %zu: field value", chunk);
        const char *want = "{\"text\": \"a\\r\\n------b0un\"}\r\n";
        CHECK(l.lens[1] == strlen(want) && !memcmp(l.data[1], want, l.lens[1]), "chunk %zu: file bytes", chunk);
        CHECK(!strcmp(l.filename, "d\"x.jsonl"), "chunk %zu: filename %s", chunk, l.filename);
        multipart_free(m);
        if (check_failures) break;
    }
    MultipartCallbacks cb0 = {on_begin, on_data, on_end, NULL};
    CHECK(multipart_new("multipart/form-data", &cb0, &e) == NULL, "no boundary");
    CHECK(multipart_new("application/json", &cb0, &e) == NULL, "not multipart");
    MpLog l2;
    memset(&l2, 0, sizeof l2);
    MultipartCallbacks cb2 = {on_begin, on_data, on_end, &l2};
    Multipart *m2 = multipart_new("multipart/form-data; boundary=zz", &cb2, &e);
    const char *trunc = "--zz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc";
    CHECK(m2 && multipart_feed(m2, trunc, strlen(trunc), &e) == 0 && multipart_finish(m2, &e) == -1,
          "a body without its closing boundary is an error");
    multipart_free(m2);
    m2 = multipart_new("multipart/form-data; boundary=zz", &cb2, &e);
    const char *nohdr = "--zz\r\nX-Junk\r\n\r\nabc\r\n--zz--";
    CHECK(m2 && multipart_feed(m2, nohdr, strlen(nohdr), &e) == -1, "a malformed header line is an error");
    multipart_free(m2);
    return check_done("test_server_codecs");
}
