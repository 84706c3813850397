/* test_safetensors.c: the safetensors reader, writer, sharded models and the
 * bf16/f16 conversions.
 *
 * Malformed headers are built byte by byte in memory (and a few as files, for
 * st_open) so each rule of the format is shown to fail with its own message;
 * a mutation loop then feeds thousands of corrupted copies of a valid file to
 * st_parse and checks every accepted tensor lies inside the buffer. The
 * shared models, when present, are opened and spot-checked. */
#include <float.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "safetensors.h"

static char tmpdir[256];

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ------------------------------------------------------------ conversions */

static void test_bf16(void) {
    CHECK(f32_to_bf16(1.0f) == 0x3f80, "1.0 -> %04x", f32_to_bf16(1.0f));
    CHECK(f32_to_bf16(-2.0f) == 0xc000, "-2.0");
    CHECK(f32_to_bf16(-0.0f) == 0x8000, "-0.0");
    /* 1 + 2^-8 is halfway between 0x3f80 and 0x3f81: ties to even (down) */
    CHECK(f32_to_bf16(bitsf(0x3f808000)) == 0x3f80, "tie down to even: %04x", f32_to_bf16(bitsf(0x3f808000)));
    /* 0x3f818000 is halfway between 0x3f81 and 0x3f82: ties to even (up) */
    CHECK(f32_to_bf16(bitsf(0x3f818000)) == 0x3f82, "tie up to even: %04x", f32_to_bf16(bitsf(0x3f818000)));
    CHECK(f32_to_bf16(bitsf(0x3f808001)) == 0x3f81, "just above half rounds up");
    CHECK(f32_to_bf16(bitsf(0x3f807fff)) == 0x3f80, "just below half rounds down");
    CHECK(f32_to_bf16(FLT_MAX) == 0x7f80, "FLT_MAX rounds to inf: %04x", f32_to_bf16(FLT_MAX));
    CHECK(f32_to_bf16(INFINITY) == 0x7f80 && f32_to_bf16(-INFINITY) == 0xff80, "inf");
    uint16_t qn = f32_to_bf16(NAN);
    CHECK((qn & 0x7f80) == 0x7f80 && (qn & 0x7f), "NaN stays NaN: %04x", qn);
    /* a NaN whose payload lives only in the low 16 bits must not become inf */
    uint16_t ln = f32_to_bf16(bitsf(0x7f800001));
    CHECK((ln & 0x7f) != 0, "low-payload NaN stays NaN: %04x", ln);
    CHECK(bf16_to_f32(0x3f80) == 1.0f && bf16_to_f32(0x4049) == 3.140625f, "bf16 -> f32");
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7f80) == 0x7f80 && (h & 0x7f)) continue;  // NaN
        if (f32_to_bf16(bf16_to_f32((uint16_t)h)) != h) bad++;
    }
    CHECK(bad == 0, "%d bf16 values do not round-trip", bad);
    /* RNE property on random floats: the result is a nearest bf16, ties even */
    uint64_t s = 12345;
    int wrong = 0;
    for (int i = 0; i < 200000; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t u = (uint32_t)(s >> 32);
        float x = bitsf(u);
        if (!isfinite(x) || fabsf(x) > 3.38e38f) continue;
        uint16_t h = f32_to_bf16(x);
        double d = fabs((double)bf16_to_f32(h) - x);
        double dn = fabs((double)bf16_to_f32((uint16_t)(h + 1)) - x);
        double dp = fabs((double)bf16_to_f32((uint16_t)(h - 1)) - x);
        if (d > dn || d > dp || ((d == dn || d == dp) && (h & 1))) wrong++;
    }
    CHECK(wrong == 0, "%d random floats not rounded to nearest-even bf16", wrong);
}

static void test_f16(void) {
    CHECK(f32_to_f16(1.0f) == 0x3c00, "1.0 -> %04x", f32_to_f16(1.0f));
    CHECK(f32_to_f16(-2.0f) == 0xc000, "-2.0");
    CHECK(f32_to_f16(65504.0f) == 0x7bff, "max half");
    CHECK(f32_to_f16(65519.0f) == 0x7bff, "65519 rounds down to max");
    CHECK(f32_to_f16(65520.0f) == 0x7c00, "65520 ties to even = inf: %04x", f32_to_f16(65520.0f));
    CHECK(f32_to_f16(1e10f) == 0x7c00 && f32_to_f16(-1e10f) == 0xfc00, "overflow -> inf");
    CHECK(f32_to_f16(INFINITY) == 0x7c00 && f32_to_f16(-INFINITY) == 0xfc00, "inf");
    uint16_t n = f32_to_f16(NAN);
    CHECK((n & 0x7c00) == 0x7c00 && (n & 0x3ff), "NaN: %04x", n);
    CHECK(isnan(f16_to_f32(0x7e00)), "f16 NaN -> f32 NaN");
    CHECK(isinf(f16_to_f32(0x7c00)) && f16_to_f32(0xfc00) < 0, "f16 inf");
    /* subnormals: 2^-24 is the smallest */
    CHECK(f32_to_f16(ldexpf(1, -24)) == 0x0001, "2^-24 -> 0001: %04x", f32_to_f16(ldexpf(1, -24)));
    CHECK(f32_to_f16(ldexpf(1, -25)) == 0x0000, "2^-25 ties to even zero");
    CHECK(f32_to_f16(ldexpf(1.0001f, -25)) == 0x0001, "just above 2^-25 -> 0001");
    CHECK(f32_to_f16(ldexpf(3, -25)) == 0x0002, "3*2^-25 ties to even 2");
    CHECK(f32_to_f16(ldexpf(1023, -24)) == 0x03ff, "largest subnormal");
    CHECK(f32_to_f16(ldexpf(1, -14)) == 0x0400, "smallest normal");
    CHECK(f32_to_f16(ldexpf(2047, -25)) == 0x0400, "subnormal rounding carries into the normal range");
    CHECK(f32_to_f16(-ldexpf(5, -24)) == 0x8005, "negative subnormal");
    CHECK(f32_to_f16(1e-30f) == 0 && f32_to_f16(-1e-30f) == 0x8000, "underflow keeps sign");
    CHECK(f16_to_f32(0x0001) == ldexpf(1, -24), "0001 -> 2^-24");
    CHECK(f16_to_f32(0x03ff) == ldexpf(1023, -24), "03ff");
    CHECK(f16_to_f32(0x3555) == 0.333251953125f, "3555 -> 1/3-ish");
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;
        if (f32_to_f16(f16_to_f32((uint16_t)h)) != h) bad++;
    }
    CHECK(bad == 0, "%d f16 values do not round-trip", bad);
    uint64_t s = 99;
    int wrong = 0;
    for (int i = 0; i < 200000; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        /* spread over the f16 range and below it: exponent 2^-30 .. 2^16 */
        float x = ldexpf((float)((s >> 40) & 0xffffff) / 16777216.0f + 0.5f, (int)((s >> 20) % 46) - 30);
        if (s & 1) x = -x;
        if (fabsf(x) >= 65504.0f) continue;
        uint16_t h = f32_to_f16(x);
        double d = fabs((double)f16_to_f32(h) - x);
        double dn = fabs((double)f16_to_f32((uint16_t)(h + 1)) - x);
        double dp = (h & 0x7fff) ? fabs((double)f16_to_f32((uint16_t)(h - 1)) - x) : INFINITY;
        if (d > dn || d > dp || ((d == dn || d == dp) && (h & 1))) wrong++;
    }
    CHECK(wrong == 0, "%d random floats not rounded to nearest-even f16", wrong);
}

/* --------------------------------------------------------------- helpers */

/* Builds a file image: 8-byte size, header text, then `data_len` bytes of 0x11. */
static uint8_t *image(const char *hdr, size_t data_len, size_t *len) {
    size_t hn = strlen(hdr);
    *len = 8 + hn + data_len;
    uint8_t *b = malloc(*len);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hn >> (8 * i));
    memcpy(b + 8, hdr, hn);
    memset(b + 8 + hn, 0x11, data_len);
    return b;
}

static int write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, n, f);
    fclose(f);
    return w == n ? 0 : -1;
}

/* Expects st_parse to fail with a message containing `want` (and the tensor name when given). */
static void expect_bad(const char *what, const char *hdr, size_t data_len, const char *want,
                       const char *tensor) {
    size_t len;
    uint8_t *b = image(hdr, data_len, &len);
    StTensor *t = NULL;
    int n = -1;
    Err e = {0};
    int rc = st_parse(b, len, &t, &n, &e);
    CHECK(rc == -1 && t == NULL && n == 0, "%s: accepted", what);
    CHECK(strstr(e.msg, want) != NULL, "%s: message \"%s\" lacks \"%s\"", what, e.msg, want);
    if (tensor) CHECK(strstr(e.msg, tensor) != NULL, "%s: message \"%s\" does not name %s", what, e.msg, tensor);
    free(b);
}

static void expect_good(const char *what, const char *hdr, size_t data_len, int want_n) {
    size_t len;
    uint8_t *b = image(hdr, data_len, &len);
    StTensor *t = NULL;
    int n = -1;
    Err e = {0};
    int rc = st_parse(b, len, &t, &n, &e);
    CHECK(rc == 0 && n == want_n, "%s: rc %d n %d (%s)", what, rc, n, e.msg);
    for (int i = 0; i < n; i++) free(t[i].name);
    free(t);
    free(b);
}

/* --------------------------------------------------------------- headers */

static void test_malformed(void) {
    Err e = {0};
    StTensor *t;
    int n;
    uint8_t small[5] = {1, 0, 0, 0, 0};
    CHECK(st_parse(small, 5, &t, &n, &e) == -1 && strstr(e.msg, "too short"), "truncated: %s", e.msg);
    CHECK(st_parse(small, 0, &t, &n, &e) == -1, "empty buffer");

    uint8_t beyond[16] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    CHECK(st_parse(beyond, 16, &t, &n, &e) == -1 && strstr(e.msg, "exceeds the file"), "size beyond: %s", e.msg);
    uint8_t huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    CHECK(st_parse(huge, 16, &t, &n, &e) == -1 && strstr(e.msg, "exceeds the file"), "size 2^64-1: %s", e.msg);

    expect_bad("non-JSON", "{\"a\": [1, 2", 0, "not valid JSON", NULL);
    expect_bad("garbage", "\x01\x02garbage", 0, "not valid JSON", NULL);
    expect_bad("non-object", "[1, 2, 3]", 0, "not a JSON object", NULL);
    expect_bad("string", "\"hello\"", 0, "not a JSON object", NULL);
    expect_bad("duplicate key",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "duplicate", NULL);
    expect_bad("entry not object", "{\"w\": 3}", 0, "not a JSON object", "w");
    expect_bad("unknown dtype", "{\"w.x\":{\"dtype\":\"F99\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
               "unknown dtype", "w.x");
    expect_bad("unsupported dtype", "{\"pos\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16,
               "unsupported dtype I64 for tensor pos", "pos");
    expect_bad("dtype not string", "{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
               "dtype is not a string", "w");
    expect_bad("missing dtype", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "missing dtype", "w");
    expect_bad("missing shape", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "missing shape", "w");
    expect_bad("shape not array", "{\"w\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4,
               "shape is not an array", "w");
    expect_bad("missing offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "missing data_offsets", "w");
    expect_bad("offsets one number", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
               "[begin, end] pair", "w");
    expect_bad("offsets float", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 4,
               "non-negative integers", "w");
    expect_bad("negative offset", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
               "non-negative integers", "w");
    expect_bad("begin > end", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8,
               "begin 8 > end 4", "w");
    expect_bad("shape/span mismatch", "{\"w\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
               "needs 6 bytes of BF16", "w");
    expect_bad("negative dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,4]}}", 4,
               "shape[1] is not a non-negative integer", "w");
    expect_bad("float dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,4]}}", 4,
               "shape[0]", "w");
    expect_bad("huge dims", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
               "\"data_offsets\":[0,4]}}", 4, "too large", "w");
    expect_bad("dims overflow to small",  // 2^32 * 2^32 wraps to 0 in 64-bit arithmetic
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0,
               "too large", "w");
    expect_bad("dim beyond int64", "{\"w\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],"
               "\"data_offsets\":[0,4]}}", 4, "not valid JSON", NULL);
    expect_bad("too many dims", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
               4, "9 dims", "w");
    expect_bad("span outside file", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12,
               "outside the data section", "w");
    expect_bad("span far outside", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1000000,1000004]}}",
               12, "outside the data section", "w");
    expect_bad("overlap",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap", "b");
    expect_bad("contained overlap",
               "{\"big\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
               "\"in\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[6,8]},"
               "\"z\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]}}", 20, "overlap", "in");
    expect_bad("same span twice",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "overlap", NULL);
    expect_bad("metadata not object", "{\"__metadata__\": [1]}", 0, "__metadata__ is not a JSON object", NULL);
    expect_bad("metadata value", "{\"__metadata__\": {\"k\": 1}}", 0, "value for \"k\" is not a string", NULL);
    expect_bad("empty name", "{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "empty name",
               NULL);

    expect_good("empty header object", "{}", 0, 0);
    expect_good("metadata only + padding", "{\"__metadata__\":{\"format\":\"pt\"}}        ", 0, 0);
    expect_good("scalar", "{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, 1);
    expect_good("zero-size inside another",  // an empty span owns no bytes
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[4,4]}}", 8, 2);
    expect_good("holes and trailing bytes", "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]}}", 16, 1);

    /* the same rules through st_open, on files */
    char p[512];
    snprintf(p, sizeof p, "%s/trunc.safetensors", tmpdir);
    write_file(p, small, 5);
    SafeFile *f = st_open(p, &e);
    CHECK(!f && strstr(e.msg, "too short") && strstr(e.msg, p), "st_open truncated: %s", e.msg);
    write_file(p, small, 0);
    f = st_open(p, &e);
    CHECK(!f && strstr(e.msg, "too short"), "st_open empty: %s", e.msg);
    snprintf(p, sizeof p, "%s/nope.safetensors", tmpdir);
    f = st_open(p, &e);
    CHECK(!f && strstr(e.msg, "cannot open"), "st_open missing: %s", e.msg);
    f = st_open(tmpdir, &e);
    CHECK(!f && strstr(e.msg, "not a regular file"), "st_open dir: %s", e.msg);
    /* a header above the 100 MB cap, in a sparse file large enough to hold it */
    snprintf(p, sizeof p, "%s/bighdr.safetensors", tmpdir);
    FILE *fp = fopen(p, "wb");
    uint64_t hn = (100ull << 20) + 8;
    uint8_t sz[8];
    for (int i = 0; i < 8; i++) sz[i] = (uint8_t)(hn >> (8 * i));
    fwrite(sz, 1, 8, fp);
    fclose(fp);
    CHECK(truncate(p, (off_t)(hn + 64)) == 0, "truncate");
    f = st_open(p, &e);
    CHECK(!f && strstr(e.msg, "limit"), "header cap: %s", e.msg);
    unlink(p);
}

/* Random byte flips, truncations and size-field edits of a valid file: st_parse
 * must never crash, and whatever it accepts must lie inside the buffer. */
static void test_mutations(const uint8_t *good, size_t len) {
    uint8_t *b = malloc(len);
    uint64_t s = 7;
    int accepted = 0, outside = 0;
    for (int it = 0; it < 4000; it++) {
        memcpy(b, good, len);
        size_t l = len;
        int k = 1 + it % 4;
        for (int j = 0; j < k; j++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = (size_t)(s >> 33) % len;
            switch ((s >> 20) % 4) {
            case 0: b[pos] ^= (uint8_t)(1u << ((s >> 8) % 8)); break;
            case 1: b[pos] = (uint8_t)(s >> 12); break;
            case 2: l = pos; break;
            case 3: b[(s >> 14) % 8] = (uint8_t)(s >> 24); break;
            }
        }
        StTensor *t;
        int n;
        Err e;
        if (st_parse(b, l, &t, &n, &e) == 0) {
            accepted++;
            for (int i = 0; i < n; i++) {
                const uint8_t *d = t[i].data;
                if (d < b || d + t[i].nbytes > b + l) outside++;
                free(t[i].name);
            }
            free(t);
        }
    }
    CHECK(outside == 0, "%d accepted tensors point outside the buffer", outside);
    CHECK(accepted < 4000, "every mutation was accepted (%d)", accepted);
    free(b);
}

/* ----------------------------------------------------------- round trip */

static void test_roundtrip(void) {
    enum { A = 7, B = 5 };
    float x[A * B], y[3] = {1.5f, -2.25f, 1e-6f}, sc = 3.0f;
    for (int i = 0; i < A * B; i++) x[i] = sinf((float)i * 0.7f) * (float)(i + 1) * 0.37f;
    const int dts[3] = {DT_F32, DT_BF16, DT_F16};
    const char *dname[3] = {"F32", "BF16", "F16"};
    for (int di = 0; di < 3; di++) {
        int dt = dts[di];
        StWriter *w = st_writer_new();
        Err e = {0};
        int64_t s2[2] = {A, B}, s1[1] = {3}, s0[1] = {0}, sz[2] = {4, 0};
        CHECK(st_writer_add(w, "model.zeta.weight", dt, x, 2, s2, &e) == 0, "add: %s", e.msg);
        CHECK(st_writer_add(w, "alpha", dt, y, 1, s1, &e) == 0, "add: %s", e.msg);
        CHECK(st_writer_add(w, "scalar", dt, &sc, 0, s0, &e) == 0, "add scalar: %s", e.msg);
        CHECK(st_writer_add(w, "empty", dt, NULL, 2, sz, &e) == 0, "add empty: %s", e.msg);
        CHECK(st_writer_add(w, "f32.always", DT_F32, y, 1, s1, &e) == 0, "add mixed: %s", e.msg);
        CHECK(st_writer_add(w, "alpha", dt, y, 1, s1, &e) == -1 && strstr(e.msg, "twice"), "dup: %s", e.msg);
        CHECK(st_writer_add(w, "__metadata__", dt, y, 1, s1, &e) == -1, "reserved name");
        int64_t neg[1] = {-3};
        CHECK(st_writer_add(w, "neg", dt, y, 1, neg, &e) == -1 && strstr(e.msg, "shape"), "neg dim: %s", e.msg);
        CHECK(st_writer_meta(w, "format", "pt", &e) == 0, "meta");
        CHECK(st_writer_meta(w, "note", "round \"trip\" ▁", &e) == 0, "meta utf8");
        char p[512];
        snprintf(p, sizeof p, "%s/rt_%s.safetensors", tmpdir, dname[di]);
        CHECK(st_writer_save(w, p, &e) == 0, "save %s: %s", dname[di], e.msg);
        st_writer_free(w);

        /* the raw file: header 8-aligned and space padded, spans contiguous from 0 */
        FILE *f = fopen(p, "rb");
        uint8_t sz8[8];
        CHECK(f && fread(sz8, 1, 8, f) == 8, "read size");
        uint64_t hn = 0;
        for (int i = 7; i >= 0; i--) hn = (hn << 8) | sz8[i];
        char *h = calloc(1, hn + 1);
        CHECK(fread(h, 1, hn, f) == hn, "read header");
        fseek(f, 0, SEEK_END);
        long flen = ftell(f);
        fclose(f);
        CHECK(hn % 8 == 0, "header size %llu not a multiple of 8", (unsigned long long)hn);
        CHECK(strstr(h, "\"__metadata__\"") == h + 1, "metadata first: %.40s", h);
        json_t *root = json_loads(h, 0, NULL);
        CHECK(root != NULL, "header parses");
        uint64_t total = 0;
        const char *k, *prev = "";
        json_t *v;
        int sorted = 1;
        json_object_foreach(root, k, v) {
            if (!strcmp(k, "__metadata__")) continue;
            json_t *o = json_object_get(v, "data_offsets");
            total += json_integer_value(json_array_get(o, 1)) - json_integer_value(json_array_get(o, 0));
            if (strcmp(prev, k) > 0) sorted = 0;
            prev = k;
        }
        CHECK(sorted, "header keys not sorted");
        CHECK(total == (uint64_t)flen - 8 - hn, "spans %llu bytes != data section %llu (holes)",
              (unsigned long long)total, (unsigned long long)(flen - 8 - hn));
        json_decref(root);
        free(h);

        SafeFile *sf = st_open(p, &e);
        CHECK(sf != NULL, "open %s: %s", p, e.msg);
        if (!sf) continue;
        CHECK(st_count(sf) == 5, "count %d", st_count(sf));
        const StTensor *t = st_find(sf, "model.zeta.weight");
        CHECK(t && t->dtype == dt && t->ndim == 2 && t->shape[0] == A && t->shape[1] == B && t->numel == A * B,
              "zeta meta");
        CHECK(t && t->nbytes == (size_t)(A * B) * st_dtype_size(dt), "nbytes");
        CHECK(t && ((uintptr_t)t->data % st_dtype_size(dt)) == 0, "data aligned");
        if (t) {
            float out[A * B];
            st_to_f32(t, out);
            int bad = 0;
            for (int i = 0; i < A * B; i++) {
                float want = dt == DT_F32 ? x[i] : dt == DT_BF16 ? bf16_to_f32(f32_to_bf16(x[i]))
                                                                 : f16_to_f32(f32_to_f16(x[i]));
                if (fbits(out[i]) != fbits(want)) bad++;
            }
            CHECK(bad == 0, "%s: %d values differ after round trip", dname[di], bad);
        }
        const StTensor *s = st_find(sf, "scalar");
        CHECK(s && s->ndim == 0 && s->numel == 1, "scalar");
        if (s) {
            float o;
            st_to_f32(s, &o);
            CHECK(o == 3.0f, "scalar value %g", o);
        }
        const StTensor *em = st_find(sf, "empty");
        CHECK(em && em->numel == 0 && em->nbytes == 0 && em->shape[0] == 4, "empty tensor");
        const StTensor *m = st_find(sf, "f32.always");
        CHECK(m && m->dtype == DT_F32 && ((uintptr_t)m->data % 4) == 0, "f32 tensor aligned among 2-byte ones");
        CHECK(st_find(sf, "missing") == NULL, "absent name");
        CHECK(st_tensor(sf, 0) && !strcmp(st_tensor(sf, 0)->name, "alpha"), "tensors sorted by name");
        CHECK(st_tensor(sf, 5) == NULL && st_tensor(sf, -1) == NULL, "index out of range");
        st_close(sf);
    }
    /* no temp files left behind */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c tmp >/dev/null", tmpdir);
    CHECK(system(cmd) != 0, "a temporary file was left in %s", tmpdir);
    /* saving into a folder that does not exist fails cleanly */
    StWriter *w = st_writer_new();
    Err e;
    char p[512];
    snprintf(p, sizeof p, "%s/no/such/dir/x.safetensors", tmpdir);
    CHECK(st_writer_save(w, p, &e) == -1 && strstr(e.msg, "temporary"), "save to missing dir: %s", e.msg);
    st_writer_free(w);
}

/* ------------------------------------------------------------- sharded */

static void save_shard(const char *dir, const char *name, const char **tn, int n, float base) {
    StWriter *w = st_writer_new();
    Err e;
    for (int i = 0; i < n; i++) {
        float d[6];
        for (int j = 0; j < 6; j++) d[j] = base + (float)(i * 10 + j);
        int64_t sh[2] = {2, 3};
        st_writer_add(w, tn[i], DT_BF16, d, 2, sh, &e);
    }
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    CHECK(st_writer_save(w, p, &e) == 0, "save shard %s: %s", name, e.msg);
    st_writer_free(w);
}

static void write_index(const char *dir, const char *weight_map) {
    char p[512], txt[2048];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    snprintf(txt, sizeof txt, "{\"metadata\": {\"total_size\": 72}, \"weight_map\": %s}", weight_map);
    write_file(p, txt, strlen(txt));
}

static void test_sharded(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/sharded", tmpdir);
    mkdir(dir, 0755);
    Err e = {0};
    SafeModel *m = st_model_open(dir, &e);
    CHECK(!m && strstr(e.msg, "no model.safetensors"), "empty dir: %s", e.msg);

    const char *s1[] = {"model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight"};
    const char *s2[] = {"model.layers.1.mlp.up_proj.weight", "model.norm.weight", "extra.unlisted"};
    save_shard(dir, "model-00001-of-00002.safetensors", s1, 2, 0.0f);
    save_shard(dir, "model-00002-of-00002.safetensors", s2, 3, 100.0f);
    write_index(dir, "{\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\","
                     "\"model.layers.0.mlp.up_proj.weight\": \"model-00001-of-00002.safetensors\","
                     "\"model.layers.1.mlp.up_proj.weight\": \"model-00002-of-00002.safetensors\","
                     "\"model.norm.weight\": \"model-00002-of-00002.safetensors\"}");
    m = st_model_open(dir, &e);
    CHECK(m != NULL, "sharded open: %s", e.msg);
    if (m) {
        const StTensor *a = st_model_find(m, "model.layers.0.mlp.up_proj.weight");
        const StTensor *b = st_model_find(m, "model.norm.weight");
        CHECK(a && a->dtype == DT_BF16 && a->shape[0] == 2 && a->shape[1] == 3, "shard 1 tensor");
        CHECK(b != NULL, "shard 2 tensor");
        if (a && b) {
            float fa[6], fb[6];
            st_to_f32(a, fa);
            st_to_f32(b, fb);
            CHECK(fa[0] == 10.0f && fa[5] == 15.0f, "shard 1 values %g %g", fa[0], fa[5]);
            CHECK(fb[0] == 110.0f && fb[2] == 112.0f, "shard 2 values %g %g", fb[0], fb[2]);
        }
        CHECK(st_model_find(m, "model.embed_tokens.weight") != NULL, "embed");
        CHECK(st_model_find(m, "extra.unlisted") == NULL, "tensor not in weight_map is not part of the model");
        CHECK(st_model_find(m, "nope") == NULL, "absent");
        st_model_close(m);
    }

    write_index(dir, "{\"model.norm.weight\": \"model-00003-of-00002.safetensors\"}");
    m = st_model_open(dir, &e);
    CHECK(!m && strstr(e.msg, "model-00003-of-00002.safetensors") && strstr(e.msg, "cannot open"),
          "missing shard: %s", e.msg);
    write_index(dir, "{\"model.final.weight\": \"model-00001-of-00002.safetensors\"}");
    m = st_model_open(dir, &e);
    CHECK(!m && strstr(e.msg, "model.final.weight") && strstr(e.msg, "absent"), "absent tensor: %s", e.msg);
    CHECK(!strcmp(e.param, "model.final.weight"), "param names the tensor: %s", e.param);
    write_index(dir, "{\"w\": \"../sharded/model-00001-of-00002.safetensors\"}");
    m = st_model_open(dir, &e);
    CHECK(!m && strstr(e.msg, "plain file name"), "path in shard name: %s", e.msg);
    write_index(dir, "{}");
    m = st_model_open(dir, &e);
    CHECK(!m && strstr(e.msg, "weight_map"), "empty weight_map: %s", e.msg);
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    write_file(p, "{\"weight_map\": {", 16);
    m = st_model_open(dir, &e);
    CHECK(!m && strstr(e.msg, "invalid JSON"), "bad index JSON: %s", e.msg);

    /* model.safetensors wins when both are present, like transformers */
    const char *one[] = {"single.weight"};
    save_shard(dir, "model.safetensors", one, 1, 7.0f);
    m = st_model_open(dir, &e);
    CHECK(m && st_model_find(m, "single.weight") && !st_model_find(m, "model.norm.weight"),
          "model.safetensors preferred: %s", m ? "" : e.msg);
    st_model_close(m);
}

/* ------------------------------------------------------- shared models */

static void test_shared(void) {
    const char *sd = shared_dir();
    if (!sd) {
        fprintf(stderr, "note: shared models not found (set LEMO_SHARED); real-file checks skipped\n");
        return;
    }
    char dir[512];
    Err e = {0};
    snprintf(dir, sizeof dir, "%s/models/refmodel-22m", sd);
    SafeModel *m = st_model_open(dir, &e);
    if (!m) {
        fprintf(stderr, "note: %s not loadable (%s); skipped\n", dir, e.msg);
    } else {
        const StTensor *q = st_model_find(m, "model.layers.0.self_attn.q_proj.weight");
        CHECK(q && q->dtype == DT_BF16 && q->ndim == 2 && q->shape[0] == 384 && q->shape[1] == 384,
              "refmodel q_proj BF16 [384,384]");
        const StTensor *k = st_model_find(m, "model.layers.5.self_attn.k_proj.weight");
        CHECK(k && k->shape[0] == 128 && k->shape[1] == 384, "refmodel k_proj [128,384]");
        const StTensor *emb = st_model_find(m, "model.embed_tokens.weight");
        CHECK(emb && emb->shape[0] == 32000 && emb->shape[1] == 384, "refmodel embed [32000,384]");
        CHECK(st_model_find(m, "lm_head.weight") == NULL, "refmodel is tied: no lm_head");
        const StTensor *nrm = st_model_find(m, "model.norm.weight");
        CHECK(nrm && nrm->numel == 384, "final norm");
        if (nrm) {
            float v[384];
            st_to_f32(nrm, v);
            double s = 0;
            int finite = 1;
            for (int i = 0; i < 384; i++) s += v[i], finite &= isfinite(v[i]) != 0;
            CHECK(finite && s / 384 > 0.05 && s / 384 < 20, "norm weights look trained: mean %g", s / 384);
        }
        st_model_close(m);
        snprintf(dir, sizeof dir, "%s/models/refmodel-22m/model.safetensors", sd);
        SafeFile *f = st_open(dir, &e);
        CHECK(f && st_count(f) == 56, "refmodel has 56 tensors: %d", f ? st_count(f) : -1);
        st_close(f);
    }
    snprintf(dir, sizeof dir, "%s/models/stories260K", sd);
    m = st_model_open(dir, &e);
    if (!m) {
        fprintf(stderr, "note: %s not loadable (%s); skipped\n", dir, e.msg);
    } else {
        const StTensor *emb = st_model_find(m, "model.embed_tokens.weight");
        CHECK(emb && emb->dtype == DT_F32 && emb->shape[0] == 512 && emb->shape[1] == 64, "stories embed");
        const StTensor *k = st_model_find(m, "model.layers.4.self_attn.k_proj.weight");
        CHECK(k && k->shape[0] == 32 && k->shape[1] == 64, "stories k_proj [32,64]");
        const StTensor *d = st_model_find(m, "model.layers.0.mlp.down_proj.weight");
        CHECK(d && d->shape[0] == 64 && d->shape[1] == 172, "stories down_proj [64,172]");
        st_model_close(m);
    }
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lemo_test_st_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_bf16();
    test_f16();
    test_malformed();
    test_roundtrip();
    test_sharded();
    {
        char p[512];
        snprintf(p, sizeof p, "%s/rt_F16.safetensors", tmpdir);
        FILE *f = fopen(p, "rb");
        if (f) {
            uint8_t buf[4096];
            size_t n = fread(buf, 1, sizeof buf, f);
            fclose(f);
            test_mutations(buf, n);
        }
    }
    test_shared();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_done("test_safetensors");
}
