/* tar.c: ustar writer (see tar.h). Layout per member: a 512-byte header, the data padded to a
 * multiple of 512; the archive ends with two zero blocks. */
#include "tar.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sha256.h"

/* Writes n bytes to fd and into the running digest. */
static int tar_put(int fd, Sha256 *s, const void *p, size_t n) {
    const char *c = p;
    sha256_update(s, p, n);
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Fills a ustar header block for a regular file. */
static void tar_header(unsigned char h[512], const char *name, long long size, long long mtime) {
    memset(h, 0, 512);
    snprintf((char *)h, 100, "%s", name);
    memcpy(h + 100, "0000644", 8);
    memcpy(h + 108, "0000000", 8);
    memcpy(h + 116, "0000000", 8);
    snprintf((char *)h + 124, 12, "%011llo", size);
    snprintf((char *)h + 136, 12, "%011llo", mtime);
    h[156] = '0';
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
}

int tar_write_files(const char *out_path, const char *const *names, const char *const *paths, int n,
                    char sha_hex[65], Err *e) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", out_path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return err_set(e, "cannot create %s: %s", tmp, strerror(errno));
    Sha256 s;
    sha256_init(&s);
    int full = 0;
    static const unsigned char zeros[1024];
    unsigned char h[512], buf[65536];
    for (int i = 0; i < n; i++) {
        if (strlen(names[i]) >= 100) { err_set(e, "tar member name too long: %s", names[i]); goto fail; }
        int in = open(paths[i], O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (in < 0 || fstat(in, &st) || !S_ISREG(st.st_mode)) {
            err_set(e, "cannot read %s", paths[i]);
            if (in >= 0) close(in);
            goto fail;
        }
        tar_header(h, names[i], (long long)st.st_size, (long long)st.st_mtime);
        if (tar_put(fd, &s, h, 512)) { close(in); goto wfail; }
        long long left = st.st_size;
        while (left > 0) {
            ssize_t r = read(in, buf, left < (long long)sizeof buf ? (size_t)left : sizeof buf);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) { close(in); err_set(e, "%s changed while being archived", paths[i]); goto fail; }
            if (tar_put(fd, &s, buf, (size_t)r)) { close(in); goto wfail; }
            left -= r;
        }
        close(in);
        size_t pad = (size_t)((512 - st.st_size % 512) % 512);
        if (pad && tar_put(fd, &s, zeros, pad)) goto wfail;
    }
    if (tar_put(fd, &s, zeros, 1024)) goto wfail;
    if (fsync(fd) || close(fd)) { fd = -1; goto wfail; }
    fd = -1;
    if (rename(tmp, out_path)) { err_set(e, "cannot rename %s: %s", tmp, strerror(errno)); goto fail; }
    uint8_t d[32];
    sha256_final(&s, d);
    hex_encode(d, 32, sha_hex);
    return 0;
wfail:
    full = errno == ENOSPC || errno == EDQUOT || errno == EFBIG;
    err_set(e, "cannot write %s: %s", tmp, strerror(errno));
fail:
    if (fd >= 0) close(fd);
    unlink(tmp);
    uint8_t unused[32];
    sha256_final(&s, unused);  // frees the digest's context
    return full ? -2 : -1;
}
