/* safetensors.c: the safetensors reader (mmap + full header validation), the
 * sharded-model view, the atomic writer and the bf16/f16 conversions.
 *
 * A model file comes from the user, so the header is checked completely before
 * any tensor pointer is handed out: after st_open succeeds, every StTensor's
 * [data, data + nbytes) lies inside the mapping and no two tensors share bytes.
 * The format is: 8-byte little-endian header length N, N bytes of JSON
 * ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
 * {str: str}}), then the data section; offsets are relative to the data
 * section. Parsing (st_parse) works on a byte buffer so the fuzzer can drive
 * it without files.
 *
 * The writer lays data out the way the reference implementation does (larger
 * element sizes first, then by name, contiguous, header padded with spaces to
 * a multiple of 8) so every tensor is naturally aligned when the file is
 * mapped, and readers that demand contiguous spans accept our files. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_HEADER_CAP (100u << 20)  // a header above 100 MB is not a real model

struct SafeFile {
    char *path;
    void *map;          // whole file, read-only
    size_t len;
    StTensor *t;        // n tensors, sorted by name
    int n;
};

/* One name -> tensor entry of a whole model (tensors live in their shard). */
typedef struct {
    const char *name;   // owned by the shard's StTensor
    const StTensor *t;
} ModelEntry;

struct SafeModel {
    SafeFile **shards;
    int n_shards;
    ModelEntry *ents;   // sorted by name
    int n_ents;
};

/* ---------------------------------------------------------------- dtypes */

size_t st_dtype_size(int dtype) {
    switch (dtype) {
    case DT_F32: return 4;
    case DT_BF16: return 2;
    case DT_F16: return 2;
    default: return 0;
    }
}

static const char *dtype_name(int dtype) {
    switch (dtype) {
    case DT_F32: return "F32";
    case DT_BF16: return "BF16";
    case DT_F16: return "F16";
    default: return "?";
    }
}

/* Maps a header dtype string to DT_*; returns -1 for a valid safetensors dtype
 * we do not load and -2 for a string that is no safetensors dtype at all. */
static int dtype_parse(const char *s) {
    if (!strcmp(s, "F32")) return DT_F32;
    if (!strcmp(s, "BF16")) return DT_BF16;
    if (!strcmp(s, "F16")) return DT_F16;
    static const char *other[] = {"BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64",
                                  "F64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3",
                                  "F6_E3M2", "C64"};
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        if (!strcmp(s, other[i])) return -1;
    return -2;
}

/* ------------------------------------------------------------ conversions */

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

/* Round to nearest, ties to even; NaN stays a (quiet) NaN; overflow gives inf. */
uint16_t f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* IEEE half -> single, exact for normals, subnormals, inf and NaN. */
float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13));  // inf / NaN
    if (exp == 0) {
        if (man == 0) return bits_f32(sign);
        float v = (float)man * (1.0f / 16777216.0f);  // man * 2^-24
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

/* IEEE single -> half, round to nearest even, including the subnormal range;
 * magnitudes that round above 65504 become inf. */
uint16_t f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u | (uint16_t)((a >> 13) & 0x3ffu);  // NaN
    if (a >= 0x47800000u) return sign | 0x7c00u;        // >= 65536 (and inf): inf
    if (a < 0x38800000u) {                              // below 2^-14: subnormal or zero
        if (a < 0x33000000u) return sign;               // below 2^-25: rounds to zero
        uint32_t e = a >> 23;                           // 102..112
        uint32_t m = (a & 0x7fffffu) | 0x800000u;       // 24-bit significand
        uint32_t shift = 126u - e;                      // 14..24: value = m * 2^(e-150), unit 2^-24
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return sign | (uint16_t)q;
    }
    /* normal: rebias exponent (127 -> 15) and round the 13 dropped bits */
    uint32_t r = a - 0x38000000u;
    r += 0xfffu + ((r >> 13) & 1u);
    if (r >= 0x0f800000u) return sign | 0x7c00u;
    return sign | (uint16_t)(r >> 13);
}

void st_to_f32(const StTensor *t, float *out) {
    const uint8_t *p = t->data;
    int64_t n = t->numel;
    if (t->dtype == DT_F32) {
        memcpy(out, p, (size_t)n * 4);
    } else if (t->dtype == DT_BF16) {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = bf16_to_f32(h);
        }
    } else if (t->dtype == DT_F16) {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = f16_to_f32(h);
        }
    }
}

/* ----------------------------------------------------------------- parse */

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const StTensor *)a)->name, ((const StTensor *)b)->name);
}

static void tensors_free(StTensor *t, int n) {
    if (!t) return;
    for (int i = 0; i < n; i++) free(t[i].name);
    free(t);
}

/* Reads a JSON integer that must be >= 0 and (for dims/offsets) representable. */
static int json_nonneg(const json_t *v, int64_t *out) {
    if (!json_is_integer(v)) return -1;
    json_int_t x = json_integer_value(v);
    if (x < 0) return -1;
    *out = (int64_t)x;
    return 0;
}

/* Checks one tensor entry against the rules and fills t (data not yet set). */
static int parse_entry(const char *name, json_t *v, uint64_t data_len, StTensor *t,
                       uint64_t *begin_out, Err *e) {
    if (!json_is_object(v))
        return err_set_at(e, name, 0, "tensor %s: entry is not a JSON object", name);
    json_t *jd = json_object_get(v, "dtype");
    if (!jd) return err_set_at(e, name, 0, "tensor %s: missing dtype", name);
    if (!json_is_string(jd)) return err_set_at(e, name, 0, "tensor %s: dtype is not a string", name);
    const char *ds = json_string_value(jd);
    int dt = dtype_parse(ds);
    if (dt == -1)
        return err_set_at(e, name, 0, "unsupported dtype %s for tensor %s (lemo loads F32, BF16, F16)",
                          ds, name);
    if (dt < 0) return err_set_at(e, name, 0, "tensor %s: unknown dtype \"%.40s\"", name, ds);

    json_t *js = json_object_get(v, "shape");
    if (!js) return err_set_at(e, name, 0, "tensor %s: missing shape", name);
    if (!json_is_array(js)) return err_set_at(e, name, 0, "tensor %s: shape is not an array", name);
    size_t nd = json_array_size(js);
    if (nd > ST_MAX_DIMS)
        return err_set_at(e, name, 0, "tensor %s: %zu dims (at most %d)", name, nd, ST_MAX_DIMS);
    /* numel stays exact: bounded by 2^63/8 so numel * dtype size cannot overflow */
    int zero = 0, big = 0;
    t->ndim = (int)nd;
    for (size_t i = 0; i < nd; i++) {
        int64_t d;
        if (json_nonneg(json_array_get(js, i), &d))
            return err_set_at(e, name, 0, "tensor %s: shape[%zu] is not a non-negative integer", name, i);
        t->shape[i] = d;
        if (d == 0) zero = 1;
    }
    uint64_t numel = zero ? 0 : 1;
    for (size_t i = 0; i < nd && !zero && !big; i++) {
        uint64_t d = (uint64_t)t->shape[i];
        if (d > ((uint64_t)INT64_MAX / 8) / numel) big = 1;
        else numel *= d;
    }
    if (big) return err_set_at(e, name, 0, "tensor %s: shape is too large", name);

    json_t *jo = json_object_get(v, "data_offsets");
    if (!jo) return err_set_at(e, name, 0, "tensor %s: missing data_offsets", name);
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return err_set_at(e, name, 0, "tensor %s: data_offsets is not a [begin, end] pair", name);
    int64_t b, en;
    if (json_nonneg(json_array_get(jo, 0), &b) || json_nonneg(json_array_get(jo, 1), &en))
        return err_set_at(e, name, 0, "tensor %s: data_offsets are not non-negative integers", name);
    if (b > en)
        return err_set_at(e, name, 0, "tensor %s: data_offsets begin %lld > end %lld", name,
                          (long long)b, (long long)en);
    uint64_t want = numel * st_dtype_size(dt);
    if ((uint64_t)(en - b) != want)
        return err_set_at(e, name, 0,
                          "tensor %s: shape needs %llu bytes of %s but data_offsets span %lld bytes",
                          name, (unsigned long long)want, ds, (long long)(en - b));
    if ((uint64_t)en > data_len)
        return err_set_at(e, name, 0,
                          "tensor %s: data_offsets [%lld, %lld] lie outside the data section (%llu bytes)",
                          name, (long long)b, (long long)en, (unsigned long long)data_len);
    t->dtype = dt;
    t->numel = (int64_t)numel;
    t->nbytes = (size_t)want;
    *begin_out = (uint64_t)b;
    return 0;
}

/* `__metadata__` must map strings to strings. */
static int check_metadata(json_t *v, Err *e) {
    if (!json_is_object(v))
        return err_set_at(e, "__metadata__", 0, "__metadata__ is not a JSON object");
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        if (!json_is_string(x))
            return err_set_at(e, "__metadata__", 0, "__metadata__ value for \"%.64s\" is not a string", k);
    }
    return 0;
}

typedef struct { uint64_t b, e; int i; } Span;

static int cmp_span(const void *a, const void *b) {
    const Span *x = a, *y = b;
    if (x->b != y->b) return x->b < y->b ? -1 : 1;
    return x->e < y->e ? -1 : x->e > y->e;
}

int st_parse(const uint8_t *buf, size_t len, StTensor **out, int *n_out, Err *e) {
    *out = NULL;
    *n_out = 0;
    if (len < 8) return err_set(e, "file is %zu bytes, too short for the 8-byte header size", len);
    uint64_t hn = 0;
    for (int i = 7; i >= 0; i--) hn = (hn << 8) | buf[i];
    if (hn > len - 8)
        return err_set(e, "header size %llu exceeds the file (%zu bytes after the size field)",
                       (unsigned long long)hn, len - 8);
    if (hn > ST_HEADER_CAP)
        return err_set(e, "header size %llu is above the %u-byte limit", (unsigned long long)hn,
                       ST_HEADER_CAP);
    json_error_t je;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hn, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (!root) return err_set(e, "header is not valid JSON: %s (at byte %d)", je.text, je.position);
    if (!json_is_object(root)) {
        json_decref(root);
        return err_set(e, "header is not a JSON object");
    }
    const uint8_t *data = buf + 8 + hn;
    uint64_t data_len = len - 8 - hn;
    size_t cap = json_object_size(root);
    StTensor *t = calloc(cap ? cap : 1, sizeof *t);
    Span *sp = calloc(cap ? cap : 1, sizeof *sp);
    int n = 0;
    if (!t || !sp) {
        err_set(e, "out of memory reading the header");
        goto fail;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__")) {
            if (check_metadata(v, e)) goto fail;
            continue;
        }
        if (!*key) {
            err_set(e, "a tensor has an empty name");
            goto fail;
        }
        uint64_t b = 0;
        if (parse_entry(key, v, data_len, &t[n], &b, e)) goto fail;
        t[n].name = strdup(key);
        if (!t[n].name) {
            err_set(e, "out of memory reading the header");
            goto fail;
        }
        t[n].data = data + b;
        sp[n] = (Span){b, b + t[n].nbytes, n};
        n++;
    }
    /* overlap: sort spans by begin; a non-empty span must start at or after the
     * furthest end seen so far (empty spans own no bytes) */
    qsort(sp, n, sizeof *sp, cmp_span);
    uint64_t reach = 0;
    int reach_i = -1;
    for (int i = 0; i < n; i++) {
        if (sp[i].e == sp[i].b) continue;
        if (reach_i >= 0 && sp[i].b < reach) {
            err_set_at(e, t[sp[i].i].name, 0, "tensor %s: data_offsets [%llu, %llu] overlap tensor %s",
                       t[sp[i].i].name, (unsigned long long)sp[i].b, (unsigned long long)sp[i].e,
                       t[reach_i].name);
            goto fail;
        }
        reach = sp[i].e;
        reach_i = sp[i].i;
    }
    free(sp);
    json_decref(root);
    qsort(t, n, sizeof *t, cmp_tensor_name);
    *out = t;
    *n_out = n;
    return 0;
fail:
    free(sp);
    tensors_free(t, n);
    json_decref(root);
    return -1;
}

/* ------------------------------------------------------------------ file */

SafeFile *st_open(const char *path, Err *e) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err_set(e, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        err_set(e, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    size_t len = (size_t)sb.st_size;
    if (len < 8) {
        err_set(e, "%s: file is %zu bytes, too short for the 8-byte header size", path, len);
        close(fd);
        return NULL;
    }
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        err_set(e, "%s: mmap failed: %s", path, strerror(errno));
        return NULL;
    }
    SafeFile *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        munmap(map, len);
        err_set(e, "%s: out of memory", path);
        return NULL;
    }
    f->map = map;
    f->len = len;
    if (st_parse(map, len, &f->t, &f->n, e)) {
        err_prefix(e, "%s", path);
        st_close(f);
        return NULL;
    }
    return f;
}

void st_close(SafeFile *f) {
    if (!f) return;
    tensors_free(f->t, f->n);
    if (f->map) munmap(f->map, f->len);
    free(f->path);
    free(f);
}

int st_count(const SafeFile *f) { return f->n; }

const StTensor *st_tensor(const SafeFile *f, int i) {
    return (i >= 0 && i < f->n) ? &f->t[i] : NULL;
}

const StTensor *st_find(const SafeFile *f, const char *name) {
    StTensor key = {.name = (char *)name};
    return bsearch(&key, f->t, f->n, sizeof *f->t, cmp_tensor_name);
}

/* ----------------------------------------------------------------- model */

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const ModelEntry *)a)->name, ((const ModelEntry *)b)->name);
}

void st_model_close(SafeModel *m) {
    if (!m) return;
    for (int i = 0; i < m->n_shards; i++) st_close(m->shards[i]);
    free(m->shards);
    free(m->ents);
    free(m);
}

/* Reads model.safetensors.index.json: opens every shard named in weight_map
 * once and binds each listed tensor to its shard's entry. */
static int model_open_index(SafeModel *m, const char *dir, const char *ipath, Err *e) {
    json_error_t je;
    json_t *root = json_load_file(ipath, JSON_REJECT_DUPLICATES, &je);
    if (!root) return err_set(e, "%s: line %d: invalid JSON: %s", ipath, je.line, je.text);
    int rc = -1;
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        err_set_at(e, "weight_map", 0, "%s: weight_map is missing, not an object or empty", ipath);
        goto out;
    }
    size_t nw = json_object_size(wm);
    m->shards = calloc(nw, sizeof *m->shards);
    m->ents = calloc(nw, sizeof *m->ents);
    const char **shard_names = calloc(nw, sizeof *shard_names);
    if (!m->shards || !m->ents || !shard_names) {
        free(shard_names);
        err_set(e, "out of memory");
        goto out;
    }
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) {
        if (!json_is_string(v)) {
            err_set_at(e, name, 0, "%s: weight_map[\"%s\"] is not a file name", ipath, name);
            goto out_names;
        }
        const char *sn = json_string_value(v);
        if (!*sn || strchr(sn, '/') || !strcmp(sn, ".") || !strcmp(sn, "..")) {
            err_set_at(e, name, 0, "%s: weight_map[\"%s\"] = \"%s\" is not a plain file name", ipath,
                       name, sn);
            goto out_names;
        }
        int s = 0;
        while (s < m->n_shards && strcmp(shard_names[s], sn)) s++;
        if (s == m->n_shards) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", dir, sn);
            Err se;
            m->shards[s] = st_open(p, &se);
            if (!m->shards[s]) {
                err_set_at(e, name, 0, "%s: shard for tensor %s: %s", ipath, name, se.msg);
                goto out_names;
            }
            shard_names[s] = sn;
            m->n_shards++;
        }
        const StTensor *t = st_find(m->shards[s], name);
        if (!t) {
            err_set_at(e, name, 0, "%s: tensor %s is listed in shard %s but absent from it", ipath,
                       name, sn);
            goto out_names;
        }
        m->ents[m->n_ents++] = (ModelEntry){t->name, t};
    }
    qsort(m->ents, m->n_ents, sizeof *m->ents, cmp_entry);
    rc = 0;
out_names:
    free(shard_names);
out:
    json_decref(root);
    return rc;
}

SafeModel *st_model_open(const char *model_dir, Err *e) {
    SafeModel *m = calloc(1, sizeof *m);
    if (!m) {
        err_set(e, "out of memory");
        return NULL;
    }
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors", model_dir);
    if (access(p, F_OK) == 0) {
        m->shards = calloc(1, sizeof *m->shards);
        if (!m->shards || !(m->shards[0] = st_open(p, e))) goto fail;
        m->n_shards = 1;
        SafeFile *f = m->shards[0];
        m->ents = calloc(f->n ? f->n : 1, sizeof *m->ents);
        if (!m->ents) {
            err_set(e, "out of memory");
            goto fail;
        }
        for (int i = 0; i < f->n; i++) m->ents[i] = (ModelEntry){f->t[i].name, &f->t[i]};
        m->n_ents = f->n;  // already sorted by name
        return m;
    }
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", model_dir);
    if (access(p, F_OK) == 0) {
        if (model_open_index(m, model_dir, p, e)) goto fail;
        return m;
    }
    err_set(e, "%s: no model.safetensors or model.safetensors.index.json", model_dir);
fail:
    st_model_close(m);
    return NULL;
}

const StTensor *st_model_find(const SafeModel *m, const char *name) {
    ModelEntry key = {name, NULL};
    const ModelEntry *r = bsearch(&key, m->ents, m->n_ents, sizeof *m->ents, cmp_entry);
    return r ? r->t : NULL;
}

/* ---------------------------------------------------------------- writer */

typedef struct {
    char *name;
    int dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    void *bytes;        // converted data
    size_t nbytes;
    uint64_t off;       // set at save
} WEntry;

struct StWriter {
    WEntry *ents;
    int n, cap;
    json_t *meta;       // __metadata__ (string -> string), NULL if none
};

StWriter *st_writer_new(void) { return calloc(1, sizeof(StWriter)); }

void st_writer_free(StWriter *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->ents[i].name);
        free(w->ents[i].bytes);
    }
    free(w->ents);
    json_decref(w->meta);
    free(w);
}

int st_writer_add(StWriter *w, const char *name, int out_dtype, const float *data, int ndim,
                  const int64_t *shape, Err *e) {
    if (!name || !*name || !strcmp(name, "__metadata__"))
        return err_set(e, "safetensors writer: invalid tensor name \"%s\"", name ? name : "");
    if (!st_dtype_size(out_dtype))
        return err_set_at(e, name, 0, "safetensors writer: tensor %s: unknown dtype %d", name, out_dtype);
    if (ndim < 0 || ndim > ST_MAX_DIMS)
        return err_set_at(e, name, 0, "safetensors writer: tensor %s: %d dims (0..%d)", name, ndim,
                          ST_MAX_DIMS);
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->ents[i].name, name))
            return err_set_at(e, name, 0, "safetensors writer: tensor %s added twice", name);
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] && numel > ((uint64_t)1 << 40) / (uint64_t)shape[i]))
            return err_set_at(e, name, 0, "safetensors writer: tensor %s: bad shape[%d] = %lld", name,
                              i, (long long)shape[i]);
        numel *= (uint64_t)shape[i];
    }
    if (w->n == w->cap) {
        int nc = w->cap ? 2 * w->cap : 64;
        WEntry *ne = realloc(w->ents, (size_t)nc * sizeof *ne);
        if (!ne) return err_set(e, "safetensors writer: out of memory");
        w->ents = ne;
        w->cap = nc;
    }
    WEntry *we = &w->ents[w->n];
    memset(we, 0, sizeof *we);
    we->nbytes = numel * st_dtype_size(out_dtype);
    we->bytes = malloc(we->nbytes ? we->nbytes : 1);
    we->name = strdup(name);
    if (!we->bytes || !we->name) {
        free(we->bytes);
        free(we->name);
        return err_set(e, "safetensors writer: out of memory for tensor %s", name);
    }
    we->dtype = out_dtype;
    we->ndim = ndim;
    for (int i = 0; i < ndim; i++) we->shape[i] = shape[i];
    if (out_dtype == DT_F32) {
        if (numel) memcpy(we->bytes, data, numel * 4);
    } else {
        uint16_t *o = we->bytes;
        for (uint64_t i = 0; i < numel; i++)
            o[i] = out_dtype == DT_BF16 ? f32_to_bf16(data[i]) : f32_to_f16(data[i]);
    }
    w->n++;
    return 0;
}

int st_writer_meta(StWriter *w, const char *key, const char *value, Err *e) {
    if (!w->meta && !(w->meta = json_object())) return err_set(e, "safetensors writer: out of memory");
    json_t *s = json_string(value);
    if (!s || json_object_set_new(w->meta, key, s))
        return err_set_at(e, key, 0, "safetensors writer: metadata %s is not valid UTF-8", key);
    return 0;
}

/* Data layout order: larger elements first (alignment), then by name. */
static int cmp_layout(const void *a, const void *b) {
    const WEntry *x = *(WEntry *const *)a, *y = *(WEntry *const *)b;
    size_t sx = st_dtype_size(x->dtype), sy = st_dtype_size(y->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_wname(const void *a, const void *b) {
    return strcmp((*(WEntry *const *)a)->name, (*(WEntry *const *)b)->name);
}

static int write_all(int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n) {
        ssize_t k = write(fd, b, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Builds the header text (keys: __metadata__ first, then tensors by name),
 * padded with spaces to a multiple of 8. Offsets come from the layout order. */
static char *writer_header(StWriter *w, WEntry **by_name, size_t *len_out) {
    json_t *root = json_object();
    if (!root) return NULL;
    if (w->meta) json_object_set(root, "__metadata__", w->meta);
    for (int i = 0; i < w->n; i++) {
        WEntry *we = by_name[i];
        json_t *shape = json_array();
        for (int d = 0; d < we->ndim; d++) json_array_append_new(shape, json_integer(we->shape[d]));
        json_t *ent = json_pack("{s:s, s:o, s:[I,I]}", "dtype", dtype_name(we->dtype), "shape", shape,
                                "data_offsets", (json_int_t)we->off, (json_int_t)(we->off + we->nbytes));
        if (!ent || json_object_set_new(root, we->name, ent)) {
            json_decref(root);
            return NULL;
        }
    }
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!s) return NULL;
    size_t n = strlen(s), padded = (n + 7) & ~(size_t)7;
    char *h = realloc(s, padded + 1);
    if (!h) {
        free(s);
        return NULL;
    }
    memset(h + n, ' ', padded - n);
    h[padded] = 0;
    *len_out = padded;
    return h;
}

int st_writer_save(StWriter *w, const char *path, Err *e) {
    WEntry **lay = malloc((size_t)(w->n ? w->n : 1) * sizeof *lay);
    WEntry **byname = malloc((size_t)(w->n ? w->n : 1) * sizeof *byname);
    if (!lay || !byname) {
        free(lay);
        free(byname);
        return err_set(e, "%s: out of memory", path);
    }
    for (int i = 0; i < w->n; i++) lay[i] = byname[i] = &w->ents[i];
    qsort(lay, w->n, sizeof *lay, cmp_layout);
    qsort(byname, w->n, sizeof *byname, cmp_wname);
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        lay[i]->off = off;
        off += lay[i]->nbytes;
    }
    size_t hlen = 0;
    char *hdr = writer_header(w, byname, &hlen);
    free(byname);
    if (!hdr) {
        free(lay);
        return err_set(e, "%s: cannot build the header (out of memory or invalid UTF-8 name)", path);
    }
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    int fd = -1, rc = -1;
    if (!tmp) {
        err_set(e, "%s: out of memory", path);
        goto out;
    }
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0) {
        err_set(e, "%s: cannot create a temporary file beside it: %s", path, strerror(errno));
        goto out;
    }
    uint8_t sz[8];
    for (int i = 0; i < 8; i++) sz[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    int bad = write_all(fd, sz, 8) || write_all(fd, hdr, hlen);
    for (int i = 0; i < w->n && !bad; i++) bad = write_all(fd, lay[i]->bytes, lay[i]->nbytes);
    if (bad || fchmod(fd, 0644) || fsync(fd)) {
        err_set(e, "%s: write failed: %s", tmp, strerror(errno));
        goto out;
    }
    if (close(fd)) {
        fd = -1;
        err_set(e, "%s: close failed: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path)) {
        err_set(e, "%s: rename from %s failed: %s", path, tmp, strerror(errno));
        goto out;
    }
    /* make the rename itself durable */
    char *slash = strrchr(tmp, '/');
    if (slash) *slash = 0;
    int dfd = open(slash ? (slash == tmp ? "/" : tmp) : ".", O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(tmp);
    tmp = NULL;
    rc = 0;
out:
    if (fd >= 0) close(fd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    free(hdr);
    free(lay);
    return rc;
}
