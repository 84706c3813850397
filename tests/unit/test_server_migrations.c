/* test_server_migrations.c: the migrations compiled into the binary (db_migrations.c) are
 * byte-identical to the .sql files of migrations/, in order, none missing; and a fresh database migrates,
 * records each version once, and reopens without reapplying. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "check.h"
#include "db.h"
#include "srv_util.h"

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void) {
    DIR *d = opendir("migrations");
    CHECK(d != NULL, "migrations/ is readable from the repo root");
    char *names[256];
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) && n < 256) {
        size_t l = strlen(de->d_name);
        if (l > 4 && !strcmp(de->d_name + l - 4, ".sql")) names[n++] = strdup(de->d_name);
    }
    if (d) closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_names);
    CHECK(n == db_migration_count, "%d files in migrations/, %d compiled in", n, db_migration_count);
    for (int i = 0; i < n && i < db_migration_count; i++) {
        CHECK(!strcmp(names[i], db_migration_names[i]), "migration %d: file %s, compiled %s", i, names[i],
              db_migration_names[i]);
        char p[512];
        snprintf(p, sizeof p, "migrations/%s", names[i]);
        size_t len;
        char *txt = fs_read_all(p, &len, 1 << 20, NULL);
        CHECK(txt && len == strlen(db_migration_sql[i]) && !memcmp(txt, db_migration_sql[i], len),
              "%s is byte-identical to its compiled copy (file %zu bytes, compiled %zu)", names[i], txt ? len : 0,
              strlen(db_migration_sql[i]));
        CHECK(atoi(names[i]) == i + 1, "%s is numbered %d", names[i], i + 1);
        free(txt);
        free(names[i]);
    }

    char dir[] = "/tmp/lemo-mig-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "temp dir");
    char path[256];
    snprintf(path, sizeof path, "%s/lemo.db", dir);
    Err e = {0};
    for (int round = 0; round < 2; round++) {
        Db *db = db_open(path, &e);
        CHECK(db != NULL, "open round %d: %s", round, e.msg);
        if (!db) break;
        KeyRow *k;
        int nk;
        CHECK(db_key_list(db, &k, &nk, &e) == 0 && nk == 0, "schema usable");
        free(k);
        db_close(db);
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "sqlite3 -batch '%s' 'SELECT count(*), max(version) FROM schema_migrations' 2>/dev/null", path);
    FILE *p = popen(cmd, "r");
    char out[64] = "";
    if (p) { if (!fgets(out, sizeof out, p)) out[0] = 0; pclose(p); }
    if (out[0]) {
        char want[64];
        snprintf(want, sizeof want, "%d|%d\n", db_migration_count, db_migration_count);
        CHECK(!strcmp(out, want), "each migration recorded once: %s", out);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cleanup");
    return check_done("test_server_migrations");
}
