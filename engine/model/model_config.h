/* model_config.h: a Hugging Face config.json read into the numbers the engine needs.
 *
 * Families: llama, mistral, qwen2. Both config forms are accepted: the classic
 * top-level `rope_theta` + `rope_scaling`, and transformers-5 `rope_parameters`
 * ({rope_theta, rope_type, factor, ...}). Rope scaling types: default (none),
 * linear (position interpolation), llama3 (frequency-banded). */
#ifndef LEMO_MODEL_CONFIG_H
#define LEMO_MODEL_CONFIG_H

#include "err.h"

enum { ROPE_DEFAULT = 0, ROPE_LINEAR = 1, ROPE_LLAMA3 = 2 };
enum { FAMILY_LLAMA = 0, FAMILY_MISTRAL = 1, FAMILY_QWEN2 = 2 };

typedef struct {
    int type;                  // ROPE_*
    float factor;              // linear and llama3
    float low_freq_factor;     // llama3
    float high_freq_factor;    // llama3
    int original_max_position; // llama3 original_max_position_embeddings
} RopeScaling;

typedef struct {
    int family;                // FAMILY_*
    char model_type[32];       // as written in config.json
    int n_layers;              // L
    int hidden;                // C
    int n_heads;               // NH
    int n_kv_heads;            // NKV
    int head_dim;              // HS (config `head_dim`, else C/NH)
    int ffn;                   // F
    int vocab;                 // V
    int max_pos;               // max_position_embeddings
    float norm_eps;
    float rope_theta;
    RopeScaling rope;
    int tie_embeddings;
    int qkv_bias;              // qwen2 (and llama with attention_bias=true)
    int o_bias;                // llama with attention_bias=true: o_proj has a bias too
    int sliding_window;        // mistral's attention window in tokens, 0 = full attention
    int bos_id, eos_id;        // -1 if absent
} ModelConfig;

/* Reads DIR/config.json; errors name the key. */
int model_config_load(const char *model_dir, ModelConfig *c, Err *e);
/* Parses config.json text (used by the loader and tests). */
int model_config_parse(const char *json_text, ModelConfig *c, Err *e);
/* Fills inv_freq[HS/2] for RoPE given (possibly overriding) scaling; *mscale set to 1
 * unless the type scales attention. Matches transformers' rope init functions. */
void model_rope_inv_freq(const ModelConfig *c, const RopeScaling *override_or_null,
                         float *inv_freq, float *mscale);

#endif
