/* fsutil.c: crash-safe file helpers (see fsutil.h). */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fs_mkdirs(const char *path, Err *e) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return err_set(e, "path too long: %s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) && errno != EEXIST) return err_set(e, "cannot create %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) && errno != EEXIST) return err_set(e, "cannot create %s: %s", buf, strerror(errno));
    return 0;
}

int fs_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int fs_write_atomic(const char *path, const void *data, size_t n, Err *e) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return err_set(e, "cannot write %s: %s", tmp, strerror(errno));
    const char *p = data;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            close(fd);
            unlink(tmp);
            return err_set(e, "cannot write %s: %s", tmp, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    if (fsync(fd) || close(fd)) {
        unlink(tmp);
        return err_set(e, "cannot flush %s: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path)) {
        unlink(tmp);
        return err_set(e, "cannot rename %s: %s", tmp, strerror(errno));
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0; else strcpy(dir, ".");
    fs_fsync_dir(dir);
    return 0;
}

char *fs_read_all(const char *path, size_t *n, size_t max, Err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) { err_set(e, "cannot open %s: %s", path, strerror(errno)); return NULL; }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (len == cap) {
            if (cap >= max) { fclose(f); free(buf); err_set(e, "%s is larger than %zu bytes", path, max); return NULL; }
            cap = cap * 2 > max ? max : cap * 2;
            buf = realloc(buf, cap + 1);
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        if (!r) break;
        len += r;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); err_set(e, "cannot read %s", path); return NULL; }
    buf[len] = 0;
    if (n) *n = len;
    return buf;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}
int fs_remove_tree(const char *path) { return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

int fs_is_dir(const char *path) {
    struct stat st;
    return !stat(path, &st) && S_ISDIR(st.st_mode);
}
