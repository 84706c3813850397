/* hash.h: the tree's one hash, header-only so host and device code share it bit for bit.
 *
 * hash_mix64 is splitmix64's finalizer: the seeds and streams (LoRA A initialisation, dropout
 * masks, LeMo's random scores and layer seeds, the data shuffle, predictor initialisation) all
 * pass through it, so a value drawn on the CPU is the value drawn on the GPU. hash_fnv1a64 is
 * FNV-1a 64 for byte strings (a model's identity, a predictor's weights file, the tokenizer's
 * string maps); neither is a cryptographic hash (sha256.h in the server is). */
#ifndef LEMO_HASH_H
#define LEMO_HASH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define LEMO_HOST_DEVICE __host__ __device__  // the CUDA kernels use the very same functions
#else
#define LEMO_HOST_DEVICE
#endif

#define HASH_GOLDEN 0x9E3779B97F4A7C15ull      // splitmix64's increment
#define HASH_FNV_OFFSET 0xcbf29ce484222325ull  // FNV-1a 64's offset basis

static inline LEMO_HOST_DEVICE uint64_t hash_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* splitmix64: the next value of the stream whose state is *s. */
static inline uint64_t hash_splitmix(uint64_t *s) { return hash_mix64(*s += HASH_GOLDEN); }

/* FNV-1a 64 of n bytes, continuing from h (HASH_FNV_OFFSET to start). */
static inline uint64_t hash_fnv1a64(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

#endif
