/* safetensors.h: read (mmap, validated) and write safetensors files.
 *
 * Reading maps the file and checks the header against the format rules before
 * any tensor is touched: 8-byte little-endian header size within the file, the
 * header is a JSON object, every entry has a known dtype, a shape whose element
 * count times the dtype size equals its byte span, spans lie inside the data
 * section and do not overlap. `__metadata__` (string -> string) is allowed.
 * Sharded models (model.safetensors.index.json) open as one SafeModel. */
#ifndef LEMO_SAFETENSORS_H
#define LEMO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"  // DT_F32, DT_BF16, DT_F16
#include "err.h"

#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    int dtype;                 // DT_F32 / DT_BF16 / DT_F16
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const void *data;          // points into the mapping
    size_t nbytes;
} StTensor;

typedef struct SafeFile SafeFile;

SafeFile *st_open(const char *path, Err *e);                // NULL + e on any violation
/* Validate a header held in memory (the whole file image buf[0..len)); used by st_open and the fuzzer. */
int st_parse(const uint8_t *buf, size_t len, StTensor **out, int *n_out, Err *e);
void st_close(SafeFile *f);
int st_count(const SafeFile *f);
const StTensor *st_tensor(const SafeFile *f, int i);
const StTensor *st_find(const SafeFile *f, const char *name);  // NULL if absent

/* A whole model: one file or shards listed by model.safetensors.index.json. */
typedef struct SafeModel SafeModel;
SafeModel *st_model_open(const char *model_dir, Err *e);
void st_model_close(SafeModel *m);
const StTensor *st_model_find(const SafeModel *m, const char *name);

size_t st_dtype_size(int dtype);
/* Converts t's data (any dtype) to fp32 into out (t->numel floats). */
void st_to_f32(const StTensor *t, float *out);

/* Writing: collect fp32 tensors (converted to out_dtype on write), then save atomically
 * (temp file + fsync + rename). Data is copied at add time. */
typedef struct StWriter StWriter;
StWriter *st_writer_new(void);
int st_writer_add(StWriter *w, const char *name, int out_dtype, const float *data,
                  int ndim, const int64_t *shape, Err *e);
int st_writer_meta(StWriter *w, const char *key, const char *value, Err *e);  // __metadata__
int st_writer_save(StWriter *w, const char *path, Err *e);
void st_writer_free(StWriter *w);

/* bf16/f16 <-> f32 (round-to-nearest-even for f32 -> bf16). */
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

#endif
