/* auth.c: API key creation and checking (see auth.h). */
#include "auth.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sha256.h"
#include "srv_util.h"

#define KEY_PREFIX "sk-lemo-"

/* hex sha256(salt_hex || key) */
static void auth_hash(const char *salt_hex, const char *key, char out[65]) {
    Sha256 s;
    uint8_t d[32];
    sha256_init(&s);
    sha256_update(&s, salt_hex, strlen(salt_hex));
    sha256_update(&s, key, strlen(key));
    sha256_final(&s, d);
    hex_encode(d, 32, out);
}

int auth_key_create(Db *db, const char *name, char *key_out, size_t cap, KeyRow *row, Err *e) {
    KeyRow k;
    memset(&k, 0, sizeof k);
    char id[ID_MAX], secret[ID_MAX];
    id_new("", id);
    id[16] = 0;
    id_new("", secret);
    uint8_t salt[16];
    random_bytes(salt, sizeof salt);
    hex_encode(salt, sizeof salt, k.salt);
    snprintf(k.id, sizeof k.id, "%s", id);
    snprintf(k.name, sizeof k.name, "%s", name ? name : "");
    if ((size_t)snprintf(key_out, cap, KEY_PREFIX "%s-%s", id, secret) >= cap) return err_set(e, "key buffer too small");
    auth_hash(k.salt, key_out, k.hash);
    k.created_at = now_s();
    if (db_key_insert(db, &k, e)) return -1;
    if (row) *row = k;
    return 0;
}

int auth_check(Server *srv, const char *authorization, int peer_loopback, char key_id[48], char *why, size_t cap) {
    Err e;
    key_id[0] = 0;
    int n = db_key_count_active(srv->db, &e);
    if (n < 0) { snprintf(why, cap, "cannot check the API key: %s", e.msg); return -1; }
    if (n == 0) {
        if (peer_loopback) return 0;
        snprintf(why, cap, "No API key is configured, so this server answers loopback clients only; "
                           "create a key with `lemo keys create`");
        return -1;
    }
    if (!authorization || strncasecmp(authorization, "Bearer ", 7)) {
        snprintf(why, cap, "Missing API key: send the header 'Authorization: Bearer KEY' "
                           "(create keys with `lemo keys create`)");
        return -1;
    }
    const char *key = authorization + 7;
    while (*key == ' ') key++;
    char id[ID_MAX] = "";
    if (!strncmp(key, KEY_PREFIX, strlen(KEY_PREFIX))) {
        const char *p = key + strlen(KEY_PREFIX), *dash = strchr(p, '-');
        if (dash && dash - p < (long)sizeof id) {
            memcpy(id, p, (size_t)(dash - p));
            id[dash - p] = 0;
        }
    }
    KeyRow k;
    if (!id[0] || db_key_get(srv->db, id, &k, &e) != 1 || k.revoked_at) {
        snprintf(why, cap, "Incorrect or revoked API key");
        return -1;
    }
    char h[65];
    auth_hash(k.salt, key, h);
    if (!bytes_equal_ct(h, k.hash, 64)) {
        snprintf(why, cap, "Incorrect or revoked API key");
        return -1;
    }
    if (k.last_used_at < now_s() - 60) db_key_touch(srv->db, id, &e);
    snprintf(key_id, 48, "%s", id);
    return 0;
}
