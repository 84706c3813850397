/* auth.h: API keys (`lemo keys`) and the check every /v1 request passes.
 *
 * A key is "sk-lemo-ID-SECRET": ID (16 characters) finds the row, and only
 * sha256(salt || key) with a random per-key salt is stored, so the database never holds a
 * usable key; the key itself is shown once, at creation. With no active key the server
 * serves loopback clients only (and binds to loopback at start). */
#ifndef LEMO_AUTH_H
#define LEMO_AUTH_H

#include <stddef.h>

#include "db.h"
#include "err.h"
#include "server.h"

/* Creates a key: stores its hash, writes the key (shown once) into key_out. */
int auth_key_create(Db *db, const char *name, char *key_out, size_t cap, KeyRow *row, Err *e);
/* Checks an Authorization header value. 0 = allowed (key_id set, "" when no keys exist);
 * -1 = refused with the reason in why. */
int auth_check(Server *srv, const char *authorization, int peer_loopback, char key_id[48], char *why, size_t cap);

#endif
