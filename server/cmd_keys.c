/* cmd_keys.c: `lemo keys create|list|revoke`: API keys of a data directory. A key is printed
 * once, at creation (only its salted hash is stored). The running server sees changes at once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fsutil.h"
#include "auth.h"
#include "db.h"
#include "srv_util.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: lemo keys create [--name NAME] [--data-dir DIR]\n"
            "       lemo keys list [--data-dir DIR]\n"
            "       lemo keys revoke KEY_ID [--data-dir DIR]\n"
            "  create prints the new key once on stdout; with any key present, every /v1 request\n"
            "  needs 'Authorization: Bearer KEY'.\n"
            "  --data-dir DIR   the server's data directory (default ./data)\n"
            "  --name NAME      a label for the key (default \"\")\n"
            "  --help           this text\n");
}

static void fmt_time(long long t, char *out, size_t cap) {
    if (!t) { snprintf(out, cap, "-"); return; }
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int cmd_keys(int argc, char **argv) {
    const char *data_dir = "./data", *name = "", *action = NULL, *id = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--data-dir") && i + 1 < argc) { data_dir = argv[++i]; continue; }
        if (!strcmp(a, "--name") && i + 1 < argc) { name = argv[++i]; continue; }
        if (a[0] == '-') { fprintf(stderr, "lemo keys: unknown flag '%s'\n", a); usage(stderr); return 2; }
        if (!action) action = a;
        else if (!id) id = a;
        else { fprintf(stderr, "lemo keys: unexpected argument '%s'\n", a); usage(stderr); return 2; }
    }
    if (!action || (strcmp(action, "create") && strcmp(action, "list") && strcmp(action, "revoke")) ||
        (!strcmp(action, "revoke") != (id != NULL))) {
        usage(stderr);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/lemo.db", data_dir);
    if (strcmp(action, "create")) {
        FILE *f = fopen(path, "rb");
        if (!f) { fprintf(stderr, "lemo keys: no database at %s (wrong --data-dir?)\n", path); return 1; }
        fclose(f);
    } else {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "%s", data_dir);
        if (fs_mkdirs(cmd, NULL)) { fprintf(stderr, "lemo keys: cannot create %s\n", data_dir); return 1; }
    }
    Err e = {0};
    Db *db = db_open(path, &e);
    if (!db) { fprintf(stderr, "lemo keys: %s\n", e.msg); return 1; }
    int rc = 0;
    if (!strcmp(action, "create")) {
        char key[128];
        KeyRow k;
        if (auth_key_create(db, name, key, sizeof key, &k, &e)) { fprintf(stderr, "lemo keys: %s\n", e.msg); rc = 1; }
        else {
            printf("%s\n", key);
            fprintf(stderr, "lemo keys: created key %s%s%s%s; it is shown only now: store it safely\n", k.id,
                    name[0] ? " (" : "", name, name[0] ? ")" : "");
        }
    } else if (!strcmp(action, "list")) {
        KeyRow *rows;
        int n;
        if (db_key_list(db, &rows, &n, &e)) { fprintf(stderr, "lemo keys: %s\n", e.msg); rc = 1; }
        else {
            printf("%-18s %-22s %-22s %-22s %s\n", "ID", "CREATED", "LAST USED", "REVOKED", "NAME");
            for (int i = 0; i < n; i++) {
                char c[32], u[32], r[32];
                fmt_time(rows[i].created_at, c, sizeof c);
                fmt_time(rows[i].last_used_at, u, sizeof u);
                fmt_time(rows[i].revoked_at, r, sizeof r);
                printf("%-18s %-22s %-22s %-22s %s\n", rows[i].id, c, u, r, rows[i].name);
            }
            free(rows);
        }
    } else {
        int ch = db_key_revoke(db, id, &e);
        if (ch < 0) { fprintf(stderr, "lemo keys: %s\n", e.msg); rc = 1; }
        else if (ch == 0) { fprintf(stderr, "lemo keys: no active key with id '%s'\n", id); rc = 1; }
        else fprintf(stderr, "lemo keys: revoked %s\n", id);
    }
    db_close(db);
    return rc;
}
