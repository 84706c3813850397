/* test_model_config.c: config.json parsing, RoPE inverse frequencies and the
 * random model written by `lemo init-model tiny`.
 *
 * Configs are the shared models' own files (classic and transformers-5 forms)
 * plus inline copies of real published configs (Llama-3.1-8B, Mistral-7B,
 * Qwen2-0.5B, Mistral-Nemo's head_dim override). inv_freq is checked against
 * a second implementation written here from the transformers formulas
 * (using exp/log rather than pow) and against hand-computed values. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "model_config.h"
#include "safetensors.h"

int cmd_init_model(int argc, char **argv);

/* Reference: transformers' default / linear / llama3 inv_freq, in double. */
static double ref_inv_freq(int i, int hs, double theta, const char *type, double factor, double lo,
                           double hi, double orig) {
    double f = exp(-log(theta) * (2.0 * i) / hs);
    if (!strcmp(type, "linear")) return f / factor;
    if (!strcmp(type, "llama3")) {
        double wl = 2 * M_PI / f, lw = orig / lo, hw = orig / hi;
        double scaled = wl > lw ? f / factor : f;
        double smooth = (orig / wl - lo) / (hi - lo);
        double smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
        int medium = !(wl < hw) && !(wl > lw);
        return medium ? smoothed : scaled;
    }
    return f;
}

static int parse(const char *js, ModelConfig *c, Err *e) {
    memset(e, 0, sizeof *e);
    return model_config_parse(js, c, e);
}

static void test_shared_configs(void) {
    const char *sd = shared_dir();
    if (!sd) {
        fprintf(stderr, "note: shared models not found (set LEMO_SHARED); shared config checks skipped\n");
        return;
    }
    char dir[512];
    ModelConfig c;
    Err e = {0};
    snprintf(dir, sizeof dir, "%s/models/stories260K", sd);
    if (model_config_load(dir, &c, &e)) {
        CHECK(0, "stories260K config: %s", e.msg);
    } else {
        CHECK(c.family == FAMILY_LLAMA && !strcmp(c.model_type, "llama"), "family");
        CHECK(c.n_layers == 5 && c.hidden == 64 && c.n_heads == 8 && c.n_kv_heads == 4 && c.head_dim == 8,
              "stories sizes %d %d %d %d %d", c.n_layers, c.hidden, c.n_heads, c.n_kv_heads, c.head_dim);
        CHECK(c.ffn == 172 && c.vocab == 512 && c.max_pos == 512, "stories ffn/vocab/max_pos");
        CHECK(c.norm_eps == 1e-5f && c.rope_theta == 10000.0f && c.rope.type == ROPE_DEFAULT, "stories rope/eps");
        CHECK(c.tie_embeddings == 1 && c.qkv_bias == 0 && c.bos_id == 1 && c.eos_id == 2, "stories tie/bias/ids");
    }
    snprintf(dir, sizeof dir, "%s/models/refmodel-22m", sd);
    if (model_config_load(dir, &c, &e)) {
        CHECK(0, "refmodel-22m config: %s", e.msg);
    } else {
        CHECK(c.n_layers == 6 && c.hidden == 384 && c.n_heads == 6 && c.n_kv_heads == 2 && c.head_dim == 64,
              "refmodel sizes");
        CHECK(c.ffn == 1024 && c.vocab == 32000 && c.max_pos == 4096, "refmodel ffn/vocab/max_pos");
        CHECK(c.rope_theta == 10000.0f && c.rope.type == ROPE_DEFAULT, "refmodel rope_parameters: theta %g type %d",
              c.rope_theta, c.rope.type);
        CHECK(c.tie_embeddings == 1 && c.qkv_bias == 0 && c.bos_id == 1 && c.eos_id == 2, "refmodel tie/ids");
        float inv[32], ms = 0;
        model_rope_inv_freq(&c, NULL, inv, &ms);
        CHECK(ms == 1.0f, "mscale");
        CHECK(inv[0] == 1.0f, "inv[0] = 1");
        CHECK_CLOSE(inv[1], 0.7498942093324559, 0, 1e-7, "inv[1] = 10000^(-1/32): %.9g", inv[1]);
        CHECK_CLOSE(inv[31], 1.333521432163324e-4, 0, 1e-6, "inv[31] = 10000^(-62/64): %.9g", inv[31]);
        /* the scaling used to stretch it to 16K: linear x4 */
        RopeScaling lin = {ROPE_LINEAR, 4.0f, 0, 0, 0};
        float inv4[32];
        model_rope_inv_freq(&c, &lin, inv4, NULL);
        int bad = 0;
        for (int i = 0; i < 32; i++) bad += inv4[i] != (float)((double)ref_inv_freq(i, 64, 1e4, "default", 1, 0, 0, 0) / 4);
        CHECK(bad == 0, "override linear x4: %d differ", bad);
    }
    snprintf(dir, sizeof dir, "%s/models/nonexistent-model", sd);
    CHECK(model_config_load(dir, &c, &e) == -1 && strstr(e.msg, "nonexistent-model/config.json"),
          "missing config names the path: %s", e.msg);
}

static const char *llama31 =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false, \"attention_dropout\": 0.0,"
    " \"bos_token_id\": 128000, \"eos_token_id\": [128001, 128008, 128009], \"hidden_act\": \"silu\","
    " \"hidden_size\": 4096, \"initializer_range\": 0.02, \"intermediate_size\": 14336,"
    " \"max_position_embeddings\": 131072, \"mlp_bias\": false, \"model_type\": \"llama\","
    " \"num_attention_heads\": 32, \"num_hidden_layers\": 32, \"num_key_value_heads\": 8,"
    " \"pretraining_tp\": 1, \"rms_norm_eps\": 1e-05, \"rope_scaling\": {\"factor\": 8.0,"
    " \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192,"
    " \"rope_type\": \"llama3\"}, \"rope_theta\": 500000.0, \"tie_word_embeddings\": false,"
    " \"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.43.0.dev0\", \"use_cache\": true,"
    " \"vocab_size\": 128256}";

static void test_llama3(void) {
    ModelConfig c;
    Err e;
    if (parse(llama31, &c, &e)) {
        CHECK(0, "llama3.1: %s", e.msg);
        return;
    }
    CHECK(c.hidden == 4096 && c.n_heads == 32 && c.n_kv_heads == 8 && c.head_dim == 128 && c.ffn == 14336,
          "llama3.1 sizes");
    CHECK(c.vocab == 128256 && c.max_pos == 131072 && c.rope_theta == 500000.0f, "llama3.1 vocab/pos/theta");
    CHECK(c.rope.type == ROPE_LLAMA3 && c.rope.factor == 8.0f && c.rope.low_freq_factor == 1.0f &&
          c.rope.high_freq_factor == 4.0f && c.rope.original_max_position == 8192, "llama3 scaling fields");
    CHECK(c.bos_id == 128000 && c.eos_id == 128001, "eos list -> first: %d", c.eos_id);
    CHECK(c.tie_embeddings == 0 && c.qkv_bias == 0, "untied, no bias");
    float inv[64], ms = 0;
    model_rope_inv_freq(&c, NULL, inv, &ms);
    CHECK(ms == 1.0f, "mscale 1");
    int bad = 0, n_hi = 0, n_lo = 0, n_mid = 0;
    for (int i = 0; i < 64; i++) {
        double r = ref_inv_freq(i, 128, 500000, "llama3", 8, 1, 4, 8192);
        if (fabs(inv[i] - r) > 2e-7 * r) bad++;
        double base = ref_inv_freq(i, 128, 500000, "default", 1, 0, 0, 0), wl = 2 * M_PI / base;
        if (wl < 2048) n_hi++, bad += inv[i] != (float)base;        // high frequencies untouched
        else if (wl > 8192) n_lo++, bad += fabs(inv[i] - base / 8) > 2e-7 * base / 8;  // low: / factor
        else n_mid++, bad += !(inv[i] < base && inv[i] > base / 8);  // band: in between
    }
    CHECK(bad == 0, "llama3 inv_freq: %d values differ from the reference", bad);
    CHECK(n_hi > 0 && n_lo > 0 && n_mid > 0, "all three bands exercised: %d %d %d", n_hi, n_lo, n_mid);
    /* hand values: inv[0] = 1 (wavelength 2 pi); inv[63] = 500000^(-126/128) / 8 */
    CHECK(inv[0] == 1.0f, "inv[0]");
    CHECK_CLOSE(inv[63], 3.068925988914511e-7, 0, 1e-6, "inv[63] = %.6g", inv[63]);
    /* i = 20: base 500000^(-40/128) = 0.0165604..., wavelength 379.4 < 2048: unchanged */
    CHECK_CLOSE(inv[20], 0.016560440080994446, 0, 1e-6, "inv[20] = %.7g", inv[20]);
    /* the same numbers in the transformers-5 spelling */
    const char *t5 =
        "{\"model_type\": \"llama\", \"hidden_size\": 4096, \"intermediate_size\": 14336, \"num_hidden_layers\": 32,"
        " \"num_attention_heads\": 32, \"num_key_value_heads\": 8, \"vocab_size\": 128256,"
        " \"rope_parameters\": {\"rope_theta\": 500000.0, \"rope_type\": \"llama3\", \"factor\": 8.0,"
        " \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}}";
    ModelConfig c5;
    CHECK(parse(t5, &c5, &e) == 0, "t5 llama3: %s", e.msg);
    float inv5[64];
    model_rope_inv_freq(&c5, NULL, inv5, NULL);
    CHECK(!memcmp(inv, inv5, sizeof inv), "rope_parameters gives the same inv_freq as rope_scaling");
    CHECK(c5.max_pos == 2048 && c5.norm_eps == 1e-6f, "llama defaults: max_pos %d eps %g", c5.max_pos, c5.norm_eps);
}

static void test_linear_and_default(void) {
    ModelConfig c;
    Err e;
    const char *lin =
        "{\"model_type\": \"llama\", \"hidden_size\": 256, \"intermediate_size\": 512, \"num_hidden_layers\": 2,"
        " \"num_attention_heads\": 4, \"vocab_size\": 1000, \"rope_theta\": 10000,"
        " \"rope_scaling\": {\"type\": \"linear\", \"factor\": 4}}";
    CHECK(parse(lin, &c, &e) == 0, "linear: %s", e.msg);
    CHECK(c.rope.type == ROPE_LINEAR && c.rope.factor == 4.0f && c.n_kv_heads == 4 && c.head_dim == 64,
          "linear fields, kv heads default to heads");
    float inv[32];
    model_rope_inv_freq(&c, NULL, inv, NULL);
    int bad = 0;
    for (int i = 0; i < 32; i++) bad += fabs(inv[i] - ref_inv_freq(i, 64, 1e4, "linear", 4, 0, 0, 0)) > 1e-7 * inv[i];
    CHECK(bad == 0, "linear inv_freq: %d differ", bad);
    CHECK(inv[0] == 0.25f, "linear inv[0] = 1/4: %g", inv[0]);
    /* override back to default */
    RopeScaling def = {ROPE_DEFAULT, 1, 0, 0, 0};
    model_rope_inv_freq(&c, &def, inv, NULL);
    CHECK(inv[0] == 1.0f && fabs(inv[16] - 0.01) < 1e-9, "default inv[16] = 10000^(-1/2) = 0.01: %.9g", inv[16]);
    const char *dflt =
        "{\"model_type\": \"llama\", \"hidden_size\": 256, \"intermediate_size\": 512, \"num_hidden_layers\": 2,"
        " \"num_attention_heads\": 4, \"vocab_size\": 1000, \"rope_scaling\": {\"rope_type\": \"default\"},"
        " \"max_position_embeddings\": 4096.0}";
    CHECK(parse(dflt, &c, &e) == 0 && c.rope.type == ROPE_DEFAULT && c.rope_theta == 10000.0f && c.max_pos == 4096,
          "explicit default, theta defaults to 1e4, integral real accepted: %s", e.msg);
    const char *null_scaling =
        "{\"model_type\": \"llama\", \"hidden_size\": 256, \"intermediate_size\": 512, \"num_hidden_layers\": 2,"
        " \"num_attention_heads\": 4, \"vocab_size\": 1000, \"rope_scaling\": null, \"head_dim\": null,"
        " \"attention_bias\": true, \"eos_token_id\": null}";
    CHECK(parse(null_scaling, &c, &e) == 0 && c.rope.type == ROPE_DEFAULT && c.head_dim == 64, "nulls: %s", e.msg);
    CHECK(c.qkv_bias == 1, "llama attention_bias=true -> qkv bias");
    CHECK(c.o_bias == 1, "llama attention_bias=true -> o_proj bias too (as HF LlamaAttention)");
    CHECK(c.eos_id == -1 && c.bos_id == -1, "absent ids are -1");
}

static void test_families(void) {
    ModelConfig c;
    Err e;
    const char *qwen =
        "{\"architectures\": [\"Qwen2ForCausalLM\"], \"attention_dropout\": 0.0, \"bos_token_id\": 151643,"
        " \"eos_token_id\": 151643, \"hidden_act\": \"silu\", \"hidden_size\": 896, \"initializer_range\": 0.02,"
        " \"intermediate_size\": 4864, \"max_position_embeddings\": 32768, \"max_window_layers\": 24,"
        " \"model_type\": \"qwen2\", \"num_attention_heads\": 14, \"num_hidden_layers\": 24,"
        " \"num_key_value_heads\": 2, \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0,"
        " \"sliding_window\": 32768, \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\","
        " \"use_cache\": true, \"use_sliding_window\": false, \"vocab_size\": 151936}";
    CHECK(parse(qwen, &c, &e) == 0, "qwen2: %s", e.msg);
    CHECK(c.family == FAMILY_QWEN2 && c.qkv_bias == 1 && c.tie_embeddings == 1, "qwen2 family, biases, tied");
    CHECK(c.hidden == 896 && c.n_heads == 14 && c.n_kv_heads == 2 && c.head_dim == 64 && c.vocab == 151936,
          "qwen2 sizes");
    CHECK(c.rope_theta == 1e6f && c.norm_eps == 1e-6f && c.eos_id == 151643, "qwen2 theta/eps/eos");
    const char *qsw =
        "{\"model_type\": \"qwen2\", \"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 1,"
        " \"num_attention_heads\": 4, \"vocab_size\": 100, \"use_sliding_window\": true}";
    CHECK(parse(qsw, &c, &e) == -1 && !strcmp(e.param, "use_sliding_window"), "qwen2 sliding window refused");

    const char *mistral =
        "{\"architectures\": [\"MistralForCausalLM\"], \"bos_token_id\": 1, \"eos_token_id\": 2,"
        " \"hidden_act\": \"silu\", \"hidden_size\": 4096, \"initializer_range\": 0.02,"
        " \"intermediate_size\": 14336, \"max_position_embeddings\": 32768, \"model_type\": \"mistral\","
        " \"num_attention_heads\": 32, \"num_hidden_layers\": 32, \"num_key_value_heads\": 8,"
        " \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"sliding_window\": 4096,"
        " \"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\", \"vocab_size\": 32000}";
    CHECK(parse(mistral, &c, &e) == 0, "mistral: %s", e.msg);
    CHECK(c.family == FAMILY_MISTRAL && !strcmp(c.model_type, "mistral") && c.qkv_bias == 0, "mistral family");
    CHECK(c.o_bias == 0, "mistral has no o_proj bias");
    CHECK(c.sliding_window == 4096, "mistral v0.1 sliding window %d", c.sliding_window);
    CHECK(c.head_dim == 128 && c.n_kv_heads == 8 && c.max_pos == 32768 && c.tie_embeddings == 0, "mistral sizes");

    /* Mistral-Nemo: head_dim 128 while hidden/heads = 160 */
    const char *nemo =
        "{\"model_type\": \"mistral\", \"hidden_size\": 5120, \"head_dim\": 128, \"intermediate_size\": 14336,"
        " \"num_hidden_layers\": 40, \"num_attention_heads\": 32, \"num_key_value_heads\": 8,"
        " \"vocab_size\": 131072, \"rope_theta\": 1000000.0, \"max_position_embeddings\": 1024000}";
    CHECK(parse(nemo, &c, &e) == 0 && c.head_dim == 128 && c.hidden == 5120, "head_dim override: %s", e.msg);
    float inv[64];
    model_rope_inv_freq(&c, NULL, inv, NULL);
    CHECK_CLOSE(inv[32], 1e-3, 0, 1e-6, "theta 1e6, HS 128: inv[32] = 1e6^(-1/2) = 1e-3: %.9g", inv[32]);
    /* llama without tie_word_embeddings: HF default is untied */
    const char *untied =
        "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 1,"
        " \"num_attention_heads\": 4, \"vocab_size\": 100}";
    CHECK(parse(untied, &c, &e) == 0 && c.tie_embeddings == 0 && c.qkv_bias == 0, "llama default untied");
}

/* Each bad config must fail and name the key in both param and message. */
static void expect_key(const char *what, const char *js, const char *key, const char *msg_part) {
    ModelConfig c;
    Err e;
    int rc = parse(js, &c, &e);
    CHECK(rc == -1, "%s: accepted", what);
    CHECK(!strcmp(e.param, key), "%s: param \"%s\" != \"%s\" (%s)", what, e.param, key, e.msg);
    CHECK(strstr(e.msg, key) != NULL, "%s: message does not name %s: %s", what, key, e.msg);
    if (msg_part) CHECK(strstr(e.msg, msg_part) != NULL, "%s: message lacks \"%s\": %s", what, msg_part, e.msg);
}

#define BASE "\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, \"vocab_size\": 100"

static void test_bad(void) {
    expect_key("gpt2", "{\"model_type\": \"gpt2\", " BASE ", \"num_attention_heads\": 4}", "model_type", "gpt2");
    expect_key("no model_type", "{" BASE ", \"num_attention_heads\": 4}", "model_type", NULL);
    expect_key("missing hidden", "{\"model_type\": \"llama\", \"intermediate_size\": 128, \"num_hidden_layers\": 2,"
               " \"vocab_size\": 100, \"num_attention_heads\": 4}", "hidden_size", "missing");
    expect_key("zero heads", "{\"model_type\": \"llama\", " BASE ", \"num_attention_heads\": 0}",
               "num_attention_heads", "positive");
    expect_key("negative vocab", "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
               " \"num_hidden_layers\": 2, \"vocab_size\": -5, \"num_attention_heads\": 4}", "vocab_size", "positive");
    expect_key("string layers", "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
               " \"num_hidden_layers\": \"2\", \"vocab_size\": 100, \"num_attention_heads\": 4}",
               "num_hidden_layers", "not a number");
    expect_key("fractional", "{\"model_type\": \"llama\", \"hidden_size\": 64.5, \"intermediate_size\": 128,"
               " \"num_hidden_layers\": 2, \"vocab_size\": 100, \"num_attention_heads\": 4}", "hidden_size",
               "not an integer");
    expect_key("heads do not divide", "{\"model_type\": \"llama\", " BASE ", \"num_attention_heads\": 5}",
               "num_attention_heads", "divide");
    expect_key("kv heads do not divide",
               "{\"model_type\": \"llama\", " BASE ", \"num_attention_heads\": 4, \"num_key_value_heads\": 3}",
               "num_key_value_heads", "divide");
    expect_key("odd head_dim", "{\"model_type\": \"llama\", " BASE ", \"num_attention_heads\": 4, \"head_dim\": 15}",
               "head_dim", "even");
    expect_key("rope yarn", "{\"model_type\": \"llama\", " BASE ", \"num_attention_heads\": 4,"
               " \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}}", "rope_scaling.rope_type", "yarn");
    expect_key("rope dynamic (type)", "{\"model_type\": \"llama\", " BASE ", \"num_attention_heads\": 4,"
               " \"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2}}", "rope_scaling.type", "dynamic");
    expect_key("rope_parameters longrope", "{\"model_type\": \"llama\", " BASE ", \"num_attention_heads\": 4,"
               " \"rope_parameters\": {\"rope_theta\": 10000, \"rope_type\": \"longrope\"}}",
               "rope_parameters.rope_type", "longrope");
    expect_key("linear without factor", "{\"model_type\": \"llama\", " BASE ", \"num_attention_heads\": 4,"
               " \"rope_scaling\": {\"type\": \"linear\"}}", "rope_scaling.factor", "missing");
    expect_key("linear negative factor", "{\"model_type\": \"llama\", " BASE ", \"num_attention_heads\": 4,"
               " \"rope_scaling\": {\"type\": \"linear\", \"factor\": -2}}", "rope_scaling.factor", "> 0");
    expect_key("llama3 missing low", "{\"model_type\": \"llama\", " BASE ", \"num_attention_heads\": 4,"
               " \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, \"high_freq_factor\": 4,"
               " \"original_max_position_embeddings\": 8192}}", "rope_scaling.low_freq_factor", "missing");
    expect_key("llama3 high <= low", "{\"model_type\": \"llama\", " BASE ", \"num_attention_heads\": 4,"
               " \"rope_parameters\": {\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 4,"
               " \"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192}}",
               "rope_parameters.high_freq_factor", "above");
    expect_key("rope_scaling not object", "{\"model_type\": \"llama\", " BASE ", \"num_attention_heads\": 4,"
               " \"rope_scaling\": 4}", "rope_scaling", "not an object");
    expect_key("theta zero", "{\"model_type\": \"llama\", " BASE ", \"num_attention_heads\": 4, \"rope_theta\": 0}",
               "rope_theta", "> 0");
    expect_key("gelu", "{\"model_type\": \"llama\", " BASE ", \"num_attention_heads\": 4, \"hidden_act\": \"gelu\"}",
               "hidden_act", "silu");
    expect_key("mlp bias", "{\"model_type\": \"llama\", " BASE ", \"num_attention_heads\": 4, \"mlp_bias\": true}",
               "mlp_bias", NULL);
    expect_key("tie not bool", "{\"model_type\": \"llama\", " BASE ", \"num_attention_heads\": 4,"
               " \"tie_word_embeddings\": \"yes\"}", "tie_word_embeddings", NULL);
    expect_key("eos string", "{\"model_type\": \"llama\", " BASE ", \"num_attention_heads\": 4,"
               " \"eos_token_id\": \"</s>\"}", "eos_token_id", NULL);
    expect_key("eps negative", "{\"model_type\": \"llama\", " BASE ", \"num_attention_heads\": 4,"
               " \"rms_norm_eps\": -1}", "rms_norm_eps", NULL);
    ModelConfig c;
    Err e;
    CHECK(parse("{\"model_type\": \"llama\",\n \"hidden_size\": 64,\n oops}", &c, &e) == -1 && e.line == 3 &&
          strstr(e.msg, "line 3"), "invalid JSON names the line: %ld %s", e.line, e.msg);
    CHECK(parse("[1]", &c, &e) == -1 && strstr(e.msg, "not a JSON object"), "array config: %s", e.msg);
}

/* ------------------------------------------------------------ init-model */

static int run_init(const char *dir, const char *a, const char *b, const char *c2, const char *d) {
    char *argv[12];
    int n = 0;
    argv[n++] = "init-model";
    argv[n++] = "tiny";
    argv[n++] = (char *)dir;
    const char *extra[] = {a, b, c2, d};
    for (int i = 0; i < 4; i++)
        if (extra[i]) argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    return cmd_init_model(n, argv);
}

static long file_bytes(const char *path, unsigned char **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc((size_t)n + 1);
    if (fread(*out, 1, (size_t)n, f) != (size_t)n) n = -1;
    fclose(f);
    return n;
}

static void test_init_model(void) {
    char tmp[] = "/tmp/lemo_test_init_XXXXXX";
    if (!mkdtemp(tmp)) {
        CHECK(0, "mkdtemp");
        return;
    }
    char d1[600], d2[600], d3[600], d4[600], p[700];
    snprintf(d1, sizeof d1, "%s/a", tmp);
    snprintf(d2, sizeof d2, "%s/b", tmp);
    snprintf(d3, sizeof d3, "%s/c", tmp);
    snprintf(d4, sizeof d4, "%s/d", tmp);

    char *help[] = {"init-model", "--help", NULL};
    CHECK(cmd_init_model(2, help) == 0, "--help exits 0");
    CHECK(run_init(d1, "--bogus", NULL, NULL, NULL) == 2, "wrong flag exits 2");
    CHECK(run_init(d1, "--layers", "0", NULL, NULL) == 2, "--layers 0 refused");
    CHECK(run_init(d1, "--heads", "3", NULL, NULL) == 2, "heads not dividing hidden refused");
    CHECK(run_init(d1, "--dtype", "f8", NULL, NULL) == 2, "bad dtype refused");
    char *nopos[] = {"init-model", "tiny", NULL};
    CHECK(cmd_init_model(2, nopos) == 2, "missing DIR");
    char *preset[] = {"init-model", "huge", d1, NULL};
    CHECK(cmd_init_model(3, preset) == 2, "unknown preset");
    CHECK(access(d1, F_OK) != 0, "nothing written on a refused command");

    CHECK(run_init(d1, "--seed", "7", "--layers=3", NULL) == 0, "init-model a");
    CHECK(run_init(d2, "--seed", "7", "--layers=3", NULL) == 0, "init-model b (same seed)");
    CHECK(run_init(d3, "--seed", "8", "--layers=3", NULL) == 0, "init-model c (other seed)");
    CHECK(run_init(d1, "--seed", "7", NULL, NULL) == 1, "refuses to overwrite without --force");
    CHECK(run_init(d4, "--untied", "--dtype", "bf16", "--force") == 0, "init-model d (untied bf16)");

    ModelConfig c;
    Err e = {0};
    CHECK(model_config_load(d1, &c, &e) == 0, "config loads: %s", e.msg);
    CHECK(c.family == FAMILY_LLAMA && c.n_layers == 3 && c.hidden == 64 && c.n_heads == 4 && c.n_kv_heads == 2 &&
          c.head_dim == 16 && c.ffn == 192 && c.tie_embeddings == 1 && c.bos_id == 1 && c.eos_id == 2,
          "config values");
    unsigned char *cfg = NULL;
    snprintf(p, sizeof p, "%s/config.json", d1);
    CHECK(file_bytes(p, &cfg) > 0 && strstr((char *)cfg, "\"lemo_random_init\": true"), "labelled random");
    free(cfg);
    snprintf(p, sizeof p, "%s/README.md", d1);
    CHECK(file_bytes(p, &cfg) > 0 && strstr((char *)cfg, "random"), "README says random");
    free(cfg);

    SafeModel *m = st_model_open(d1, &e);
    CHECK(m != NULL, "weights load: %s", e.msg);
    if (m) {
        const StTensor *emb = st_model_find(m, "model.embed_tokens.weight");
        CHECK(emb && emb->dtype == DT_F32 && emb->shape[0] == c.vocab && emb->shape[1] == 64, "embed (V, C)");
        const StTensor *k = st_model_find(m, "model.layers.2.self_attn.k_proj.weight");
        CHECK(k && k->shape[0] == 32 && k->shape[1] == 64, "k_proj (NKV*HS, C)");
        const StTensor *dn = st_model_find(m, "model.layers.0.mlp.down_proj.weight");
        CHECK(dn && dn->shape[0] == 64 && dn->shape[1] == 192, "down_proj (C, F)");
        CHECK(st_model_find(m, "lm_head.weight") == NULL && st_model_find(m, "model.layers.3.mlp.up_proj.weight") == NULL,
              "tied, 3 layers");
        const StTensor *nw = st_model_find(m, "model.layers.1.post_attention_layernorm.weight");
        const StTensor *fn = st_model_find(m, "model.norm.weight");
        CHECK(nw && fn, "norms present");
        if (nw && fn) {
            float a[64], b[64];
            st_to_f32(nw, a);
            st_to_f32(fn, b);
            int ones = 1;
            for (int i = 0; i < 64; i++) ones &= a[i] == 1.0f && b[i] == 1.0f;
            CHECK(ones, "norm weights are 1");
        }
        if (emb) {
            float *x = malloc((size_t)emb->numel * sizeof *x);
            st_to_f32(emb, x);
            double s = 0, s2 = 0;
            for (int64_t i = 0; i < emb->numel; i++) s += x[i], s2 += (double)x[i] * x[i];
            double mean = s / emb->numel, sd = sqrt(s2 / emb->numel - mean * mean);
            CHECK(fabs(mean) < 0.002 && fabs(sd - 0.02) < 0.001, "embed ~ normal(0, 0.02): mean %g std %g", mean, sd);
            free(x);
        }
        st_model_close(m);
    }
    unsigned char *ba, *bb, *bc;
    char pa[700], pb[700], pc[700];
    snprintf(pa, sizeof pa, "%s/model.safetensors", d1);
    snprintf(pb, sizeof pb, "%s/model.safetensors", d2);
    snprintf(pc, sizeof pc, "%s/model.safetensors", d3);
    long na = file_bytes(pa, &ba), nb = file_bytes(pb, &bb), nc = file_bytes(pc, &bc);
    CHECK(na > 0 && na == nb && !memcmp(ba, bb, (size_t)na), "same seed, same bytes");
    CHECK(na == nc && memcmp(ba, bc, (size_t)na), "another seed, other weights");
    free(ba), free(bb), free(bc);

    m = st_model_open(d4, &e);
    CHECK(model_config_load(d4, &c, &e) == 0 && c.tie_embeddings == 0, "untied config");
    const StTensor *lm = m ? st_model_find(m, "lm_head.weight") : NULL;
    CHECK(lm && lm->dtype == DT_BF16 && lm->shape[0] == c.vocab, "untied bf16 lm_head");
    st_model_close(m);

    /* tokenizer.json: every merge joins two pieces into a third, all in the vocab */
    snprintf(p, sizeof p, "%s/tokenizer.json", d1);
    json_t *tok = json_load_file(p, 0, NULL);
    CHECK(tok != NULL, "tokenizer.json parses");
    if (tok) {
        json_t *model = json_object_get(tok, "model");
        json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
        CHECK((int)json_object_size(vocab) == c.vocab, "vocab %zu == config vocab %d", json_object_size(vocab), c.vocab);
        CHECK(json_array_size(merges) >= 200, "a few hundred merges: %zu", json_array_size(merges));
        CHECK(json_integer_value(json_object_get(vocab, "<0x00>")) == 3 &&
              json_integer_value(json_object_get(vocab, "<0xFF>")) == 258 &&
              json_integer_value(json_object_get(vocab, "</s>")) == 2, "specials and byte tokens");
        CHECK(json_object_get(vocab, "\xe2\x96\x81") && json_object_get(vocab, "\xe2\x96\x81the"), "space mark, ▁the");
        int bad = 0;
        size_t i;
        json_t *mv;
        json_array_foreach(merges, i, mv) {
            const char *s = json_string_value(mv), *sp = s ? strchr(s, ' ') : NULL;
            if (!sp) { bad++; continue; }
            char l[128], r[128], lr[256];
            snprintf(l, sizeof l, "%.*s", (int)(sp - s), s);
            snprintf(r, sizeof r, "%s", sp + 1);
            snprintf(lr, sizeof lr, "%s%s", l, r);
            if (!json_object_get(vocab, l) || !json_object_get(vocab, r) || !json_object_get(vocab, lr)) bad++;
        }
        CHECK(bad == 0, "%d merges refer to pieces outside the vocab", bad);
        CHECK(json_is_true(json_object_get(model, "byte_fallback")), "byte fallback");
        const char *sd = shared_dir();
        char sp[600];
        snprintf(sp, sizeof sp, "%s/models/stories260K/tokenizer.json", sd ? sd : "/nonexistent");
        json_t *ref = sd ? json_load_file(sp, 0, NULL) : NULL;
        if (ref) {
            const char *keys[] = {"normalizer", "pre_tokenizer", "post_processor", "decoder", "added_tokens"};
            for (int k = 0; k < 5; k++)
                CHECK(json_equal(json_object_get(tok, keys[k]), json_object_get(ref, keys[k])) ||
                      (json_is_null(json_object_get(tok, keys[k])) && json_is_null(json_object_get(ref, keys[k]))),
                      "%s has the Llama-2 form", keys[k]);
            json_decref(ref);
        } else {
            fprintf(stderr, "note: stories260K tokenizer not found; Llama-2 form comparison skipped\n");
        }
        json_decref(tok);
    }
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmp);
}

int main(void) {
    test_shared_configs();
    test_llama3();
    test_linear_and_default();
    test_families();
    test_bad();
    test_init_model();
    return check_done("test_model_config");
}
