/* sha256.c: SHA-256, HMAC-SHA256 and base64 from libcrypto (OpenSSL 3, already in the
 * process through libcurl), the hex encoding and the file digest around them (sha256.h). */
#include "sha256.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

/* An allocation failure inside libcrypto leaves no digest to give: the server cannot go on
 * answering with a wrong ETag or key check, so it stops, as on any out-of-memory abort. */
static void crypto_fatal(const char *what) {
    fprintf(stderr, "lemo: libcrypto: %s failed\n", what);
    abort();
}

void sha256_init(Sha256 *s) {
    s->ctx = EVP_MD_CTX_new();
    if (!s->ctx || EVP_DigestInit_ex(s->ctx, EVP_sha256(), NULL) != 1) crypto_fatal("SHA-256 init");
}

void sha256_update(Sha256 *s, const void *data, size_t n) {
    if (n && EVP_DigestUpdate(s->ctx, data, n) != 1) crypto_fatal("SHA-256 update");
}

void sha256_final(Sha256 *s, uint8_t out[32]) {
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(s->ctx, out, &len) != 1 || len != 32) crypto_fatal("SHA-256 final");
    EVP_MD_CTX_free(s->ctx);
    s->ctx = NULL;
}

void sha256_digest(const void *data, size_t n, uint8_t out[32]) {
    unsigned int len = 0;
    if (EVP_Digest(data, n, out, &len, EVP_sha256(), NULL) != 1 || len != 32) crypto_fatal("SHA-256");
}

void hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len, uint8_t out[32]) {
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key, (int)key_len, msg, msg_len, out, &len) || len != 32) crypto_fatal("HMAC-SHA256");
}

void hex_encode(const uint8_t *in, size_t n, char *out) {
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) { out[2 * i] = d[in[i] >> 4]; out[2 * i + 1] = d[in[i] & 15]; }
    out[2 * n] = 0;
}

void base64_encode(const uint8_t *in, size_t n, char *out) { EVP_EncodeBlock((unsigned char *)out, in, (int)n); }

int sha256_file_hex(const char *path, char out[65]) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    Sha256 s;
    sha256_init(&s);
    static __thread uint8_t buf[1 << 16];
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0) sha256_update(&s, buf, (size_t)r);
    close(fd);
    uint8_t d[32];
    sha256_final(&s, d);  // frees the context on the error path too
    if (r < 0) return -1;
    hex_encode(d, 32, out);
    return 0;
}

int bytes_equal_ct(const void *a, const void *b, size_t n) { return CRYPTO_memcmp(a, b, n) == 0; }
