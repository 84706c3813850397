/* sha256.h: SHA-256 (FIPS 180-4), HMAC-SHA256 (RFC 2104) and the encodings the server
 * needs around them (hex for ETags and key hashes, base64 for webhook signatures), for
 * adapter ETags, hashed API keys and signed webhooks. libcrypto computes them (sha256.c):
 * an audited implementation with the CPU's SHA extensions, where the one written here from
 * the standard ran at 0.18 GB/s (bench/RESULTS.md). */
#ifndef LEMO_SHA256_H
#define LEMO_SHA256_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    void *ctx;          // libcrypto's EVP_MD_CTX, from sha256_init until sha256_final
} Sha256;

void sha256_init(Sha256 *s);
void sha256_update(Sha256 *s, const void *data, size_t n);
void sha256_final(Sha256 *s, uint8_t out[32]);
/* One-shot digest of a buffer. */
void sha256_digest(const void *data, size_t n, uint8_t out[32]);
/* HMAC-SHA256 of msg under key. */
void hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len, uint8_t out[32]);
/* Lowercase hex of n bytes into out (2n+1 bytes, NUL-terminated). */
void hex_encode(const uint8_t *in, size_t n, char *out);
/* Standard base64 with padding into out (4*ceil(n/3)+1 bytes). */
void base64_encode(const uint8_t *in, size_t n, char *out);
/* SHA-256 of a whole file as hex (65 bytes); -1 if it cannot be read. */
int sha256_file_hex(const char *path, char out[65]);
/* Constant-time comparison of two equal-length buffers: 1 if equal. */
int bytes_equal_ct(const void *a, const void *b, size_t n);

#endif
