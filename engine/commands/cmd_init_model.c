/* cmd_init_model.c: `lemo init-model tiny DIR`, a small randomly initialized
 * LLaMA model folder in the Hugging Face layout.
 *
 * Tests, benchmarks and first runs need a model of any chosen size without a
 * download. The folder is what a user would fetch from a hub (config.json,
 * model.safetensors, tokenizer.json, tokenizer_config.json) so every loader
 * path is the real one; it is labelled random three times over so nobody
 * mistakes it for a trained model: "lemo_random_init": true in config.json, a
 * `lemo` entry in the safetensors metadata and a README.md.
 *
 * Weights: normal(0, 0.02) from a seeded generator (splitmix64 + Box-Muller),
 * RMSNorm weights 1, embeddings tied unless --untied. The same seed and flags
 * give byte-identical files.
 *
 * Tokenizer: a SentencePiece-style BPE in the Llama-2 form (the "▁" space
 * marker, 256 byte-fallback tokens, <unk>/<s>/</s>), with a few hundred pieces
 * built here deterministically from frequent English letter pairs and words;
 * each merge joins two pieces already in the vocabulary, which is what the
 * HF `tokenizers` BPE loader requires. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"

int cmd_init_model(int argc, char **argv);

#define SPACE_MARK "\xe2\x96\x81"  // "▁", SentencePiece's word-start marker

typedef struct {
    uint64_t seed;
    int layers, hidden, heads, kv_heads, ffn, max_pos;
    double rope_theta;
    int dtype;      // DT_*
    int untied;
    int force;
} InitOpts;

static const InitOpts init_defaults = {1, 2, 64, 4, 2, 192, 2048, 10000.0, DT_F32, 0, 0};

static void init_usage(FILE *f) {
    fprintf(f,
            "usage: lemo init-model tiny DIR [FLAGS]\n"
            "Writes a small randomly initialized LLaMA model folder (config.json, model.safetensors,\n"
            "tokenizer.json, tokenizer_config.json, README.md). The weights are random: the model is\n"
            "for tests and benchmarks, not for generating text.\n\n"
            "flags (default):\n"
            "  --seed N         random seed (%llu)\n"
            "  --layers N       decoder layers (%d)\n"
            "  --hidden N       hidden size (%d)\n"
            "  --heads N        attention heads (%d)\n"
            "  --kv-heads N     key/value heads, divides --heads (%d)\n"
            "  --ffn N          MLP intermediate size (%d)\n"
            "  --max-pos N      max_position_embeddings (%d)\n"
            "  --rope-theta X   RoPE base (%g)\n"
            "  --dtype T        weight dtype on disk: f32, bf16, f16 (f32)\n"
            "  --untied         write a separate lm_head.weight (embeddings are tied by default)\n"
            "  --force          overwrite a model already in DIR\n"
            "  --help           this text\n",
            (unsigned long long)init_defaults.seed, init_defaults.layers, init_defaults.hidden,
            init_defaults.heads, init_defaults.kv_heads, init_defaults.ffn, init_defaults.max_pos,
            init_defaults.rope_theta);
}

/* ------------------------------------------------------------------ RNG */

static uint64_t rng_next(uint64_t *s) {  // splitmix64
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Fills x[n] with normal(0, std) draws (Box-Muller, both outputs used). */
static void rng_normal(uint64_t *s, float *x, size_t n, double std) {
    for (size_t i = 0; i < n; i += 2) {
        double u1 = ((rng_next(s) >> 11) + 1.0) * (1.0 / 9007199254740993.0);  // (0, 1]
        double u2 = (rng_next(s) >> 11) * (1.0 / 9007199254740992.0);          // [0, 1)
        double r = sqrt(-2.0 * log(u1)) * std;
        x[i] = (float)(r * cos(2.0 * M_PI * u2));
        if (i + 1 < n) x[i + 1] = (float)(r * sin(2.0 * M_PI * u2));
    }
}

/* ------------------------------------------------------------ tokenizer */

typedef struct {
    char **piece;   // vocabulary pieces in id order
    int n, cap;
    char **merge;   // "left right", in rank order
    int nm, capm;
} Vocab;

static const char *tok_chars_lower = "etaoinshrdlcumwfgypbvkjxqz";
static const char *tok_chars_upper = "ETAOINSHRDLCUMWFGYPBVKJXQZ";
static const char *tok_chars_other = "0123456789.,!?'\"-:;()";

static const char *tok_pairs[] = {
    "th", "he", "in", "er", "an", "re", "on", "at", "en", "nd", "ti", "es", "or", "te", "of", "ed",
    "is", "it", "al", "ar", "st", "to", "nt", "ng", "se", "ha", "as", "ou", "io", "le", "ve", "co",
    "me", "de", "hi", "ri", "ro", "ic", "ne", "ea", "ra", "ce", "li", "ch", "ll", "be", "ma", "si",
    "om", "ur", "ing", "ion", "tion", "ly", "est", "ent", "ers", "ted", "ous", "ive", "ble", "ment",
    "ness"};

/* Frequent words; each becomes the piece "▁word". */
static const char *tok_words[] = {
    "the", "and", "to", "of", "in", "is", "it", "that", "was", "he", "for", "on", "are", "with",
    "as", "his", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by", "not", "but",
    "what", "all", "were", "we", "when", "your", "can", "said", "there", "use", "an", "each",
    "which", "she", "do", "how", "their", "if", "will", "up", "other", "about", "out", "many",
    "then", "them", "these", "so", "some", "her", "would", "make", "like", "him", "into", "time",
    "has", "look", "two", "more", "write", "go", "see", "number", "no", "way", "could", "people",
    "my", "than", "first", "water", "been", "call", "who", "its", "now", "find", "long", "down",
    "day", "did", "get", "come", "made", "may", "part", "over", "new", "take", "only", "little",
    "work", "know", "place", "year", "live", "me", "back", "give", "most", "very", "after",
    "thing", "our", "just", "name", "good", "man", "think", "say", "great", "where", "help",
    "through", "much", "before", "line", "right", "too", "old", "any", "same", "tell", "boy",
    "came", "want", "show", "also", "around", "three", "small", "put", "end", "does", "another",
    "well", "large", "must", "big", "even", "such", "because", "here", "why", "went", "men",
    "read", "need", "home", "us", "try", "hand", "again", "play", "away", "house", "mother",
    "found", "still", "should", "world", "upon", "girl", "named", "loved", "friend", "happy",
    "saw", "The", "It", "He", "She", "They", "In", "There", "When", "Once", "One", "This", "We"};

static int vocab_push(char ***arr, int *n, int *cap, const char *s) {
    if (*n == *cap) {
        int nc = *cap ? 2 * *cap : 256;
        char **na = realloc(*arr, (size_t)nc * sizeof *na);
        if (!na) return -1;
        *arr = na;
        *cap = nc;
    }
    if (!((*arr)[*n] = strdup(s))) return -1;
    (*n)++;
    return 0;
}

static int vocab_has(const Vocab *v, const char *s) {
    for (int i = 0; i < v->n; i++)
        if (!strcmp(v->piece[i], s)) return 1;
    return 0;
}

/* Byte length of the unit (character) starting at s: "▁" or one ASCII byte. */
static size_t unit_len(const char *s) { return strncmp(s, SPACE_MARK, 3) ? 1 : 3; }

/* Adds piece p (>= 2 units) with one merge, first making any missing prefix.
 * The merge splits p where both halves are already pieces, preferring the
 * longest left half; failing that, p = p[:-1] + last unit. `has_char` pieces
 * (single units) are assumed present. */
static int vocab_add_piece(Vocab *v, const char *p) {
    if (vocab_has(v, p)) return 0;
    size_t len = strlen(p), cuts[64];
    int nc = 0;
    for (size_t i = unit_len(p); i < len && nc < 64; i += unit_len(p + i)) cuts[nc++] = i;
    if (nc == 0) return 0;  // single unit: a base character, added at the end
    char left[256], merge[520];
    for (int k = nc - 1; k >= 0; k--) {
        snprintf(left, sizeof left, "%.*s", (int)cuts[k], p);
        const char *right = p + cuts[k];
        int lhas = k == 0 || vocab_has(v, left);
        int rhas = unit_len(right) == strlen(right) || vocab_has(v, right);
        if (lhas && rhas) {
            snprintf(merge, sizeof merge, "%s %s", left, right);
            return vocab_push(&v->merge, &v->nm, &v->capm, merge) ||
                   vocab_push(&v->piece, &v->n, &v->cap, p);
        }
    }
    snprintf(left, sizeof left, "%.*s", (int)cuts[nc - 1], p);
    if (vocab_add_piece(v, left)) return -1;
    snprintf(merge, sizeof merge, "%s %s", left, p + cuts[nc - 1]);
    return vocab_push(&v->merge, &v->nm, &v->capm, merge) || vocab_push(&v->piece, &v->n, &v->cap, p);
}

/* Builds the whole vocabulary: specials, byte tokens, merged pieces, base characters. */
static int vocab_build(Vocab *v) {
    char buf[64];
    const char *specials[] = {"<unk>", "<s>", "</s>"};
    for (int i = 0; i < 3; i++)
        if (vocab_push(&v->piece, &v->n, &v->cap, specials[i])) return -1;
    for (int b = 0; b < 256; b++) {
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        if (vocab_push(&v->piece, &v->n, &v->cap, buf)) return -1;
    }
    for (const char *c = tok_chars_lower; *c; c++) {
        snprintf(buf, sizeof buf, SPACE_MARK "%c", *c);
        if (vocab_add_piece(v, buf)) return -1;
    }
    for (size_t i = 0; i < sizeof tok_pairs / sizeof *tok_pairs; i++)
        if (vocab_add_piece(v, tok_pairs[i])) return -1;
    for (const char *c = tok_chars_upper; *c; c++) {
        snprintf(buf, sizeof buf, SPACE_MARK "%c", *c);
        if (vocab_add_piece(v, buf)) return -1;
    }
    for (size_t i = 0; i < sizeof tok_words / sizeof *tok_words; i++) {
        snprintf(buf, sizeof buf, SPACE_MARK "%s", tok_words[i]);
        if (vocab_add_piece(v, buf)) return -1;
    }
    if (vocab_push(&v->piece, &v->n, &v->cap, SPACE_MARK)) return -1;
    const char *sets[] = {tok_chars_lower, tok_chars_upper, tok_chars_other};
    for (int s = 0; s < 3; s++)
        for (const char *c = sets[s]; *c; c++) {
            snprintf(buf, sizeof buf, "%c", *c);
            if (vocab_push(&v->piece, &v->n, &v->cap, buf)) return -1;
        }
    return 0;
}

static void vocab_free(Vocab *v) {
    for (int i = 0; i < v->n; i++) free(v->piece[i]);
    for (int i = 0; i < v->nm; i++) free(v->merge[i]);
    free(v->piece);
    free(v->merge);
}

/* The tokenizer.json document, shaped like a Llama-2 / SentencePiece export. */
static json_t *tokenizer_json(const Vocab *v) {
    json_t *added = json_array();
    for (int i = 0; i < 3; i++)
        json_array_append_new(added, json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", i, "content",
                                               v->piece[i], "single_word", 0, "lstrip", 0, "rstrip", 0,
                                               "normalized", 0, "special", 1));
    json_t *normalizer = json_pack(
        "{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}, s:s}]}", "type", "Sequence", "normalizers", "type",
        "Prepend", "prepend", SPACE_MARK, "type", "Replace", "pattern", "String", " ", "content", SPACE_MARK);
    json_t *post = json_pack(
        "{s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}], s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}, {s:{s:s, s:i}}, "
        "{s:{s:s, s:i}}], s:{s:{s:s, s:[i], s:[s]}}}",
        "type", "TemplateProcessing",
        "single", "SpecialToken", "id", "<s>", "type_id", 0, "Sequence", "id", "A", "type_id", 0,
        "pair", "SpecialToken", "id", "<s>", "type_id", 0, "Sequence", "id", "A", "type_id", 0,
        "SpecialToken", "id", "<s>", "type_id", 1, "Sequence", "id", "B", "type_id", 1,
        "special_tokens", "<s>", "id", "<s>", "ids", 1, "tokens", "<s>");
    json_t *decoder = json_pack(
        "{s:s, s:[{s:s, s:{s:s}, s:s}, {s:s}, {s:s}, {s:s, s:s, s:i, s:i}]}", "type", "Sequence",
        "decoders", "type", "Replace", "pattern", "String", SPACE_MARK, "content", " ", "type",
        "ByteFallback", "type", "Fuse", "type", "Strip", "content", " ", "start", 1, "stop", 0);
    json_t *vocab = json_object();
    for (int i = 0; i < v->n; i++) json_object_set_new(vocab, v->piece[i], json_integer(i));
    json_t *merges = json_array();
    for (int i = 0; i < v->nm; i++) json_array_append_new(merges, json_string(v->merge[i]));
    json_t *model = json_pack("{s:s, s:n, s:s, s:n, s:n, s:b, s:b, s:b, s:o, s:o}", "type", "BPE",
                              "dropout", "unk_token", "<unk>", "continuing_subword_prefix",
                              "end_of_word_suffix", "fuse_unk", 1, "byte_fallback", 1, "ignore_merges", 0,
                              "vocab", vocab, "merges", merges);
    return json_pack("{s:s, s:n, s:n, s:o, s:o, s:n, s:o, s:o, s:o}", "version", "1.0", "truncation",
                     "padding", "added_tokens", added, "normalizer", normalizer, "pre_tokenizer",
                     "post_processor", post, "decoder", decoder, "model", model);
}

/* ---------------------------------------------------------------- files */

/* Writes text to DIR/name through a temp file + rename, so a reader never sees half a file. */
static int write_text(const char *dir, const char *name, const char *text) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        fprintf(stderr, "init-model: cannot write %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    size_t n = strlen(text);
    int bad = fwrite(text, 1, n, f) != n;
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path)) {
        fprintf(stderr, "init-model: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* json -> DIR/name (2-space indent, trailing newline); takes ownership of j. */
static int write_json(const char *dir, const char *name, json_t *j) {
    if (!j) {
        fprintf(stderr, "init-model: out of memory building %s\n", name);
        return -1;
    }
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    json_decref(j);
    if (!s) return -1;
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) {
        free(s);
        return -1;
    }
    t[n] = '\n';
    t[n + 1] = 0;
    int rc = write_text(dir, name, t);
    free(t);
    return rc;
}

/* Adds one tensor: normal(0, 0.02) or all ones. Data is [shape[0] * shape[1]] (or [shape[0]]). */
static int add_tensor(StWriter *w, const InitOpts *o, uint64_t *rng, const char *name, int ndim,
                      int64_t d0, int64_t d1, int ones) {
    int64_t shape[2] = {d0, d1};
    size_t n = (size_t)d0 * (size_t)(ndim == 2 ? d1 : 1);
    float *x = malloc(n * sizeof *x);
    if (!x) {
        fprintf(stderr, "init-model: out of memory for %s\n", name);
        return -1;
    }
    if (ones)
        for (size_t i = 0; i < n; i++) x[i] = 1.0f;
    else
        rng_normal(rng, x, n, 0.02);
    Err e;
    int rc = st_writer_add(w, name, o->dtype, x, ndim, shape, &e);
    free(x);
    if (rc) fprintf(stderr, "init-model: %s\n", e.msg);
    return rc;
}

/* model.safetensors in HF LLaMA names:
 *   model.embed_tokens.weight (V, C); per layer l: self_attn.{q,o}_proj (C, C),
 *   {k,v}_proj (NKV*HS, C), mlp.{gate,up}_proj (F, C), down_proj (C, F), two norms (C);
 *   model.norm.weight (C); lm_head.weight (V, C) only when untied. */
static int write_weights(const char *dir, const InitOpts *o, int vocab) {
    StWriter *w = st_writer_new();
    if (!w) return -1;
    uint64_t rng = o->seed;
    int C = o->hidden, F = o->ffn, KV = o->kv_heads * (o->hidden / o->heads);
    char nm[128];
    int rc = add_tensor(w, o, &rng, "model.embed_tokens.weight", 2, vocab, C, 0);
    for (int l = 0; l < o->layers && !rc; l++) {
        const struct { const char *n; int ndim; int64_t d0, d1; int ones; } t[] = {
            {"self_attn.q_proj.weight", 2, C, C, 0}, {"self_attn.k_proj.weight", 2, KV, C, 0},
            {"self_attn.v_proj.weight", 2, KV, C, 0}, {"self_attn.o_proj.weight", 2, C, C, 0},
            {"mlp.gate_proj.weight", 2, F, C, 0},     {"mlp.up_proj.weight", 2, F, C, 0},
            {"mlp.down_proj.weight", 2, C, F, 0},     {"input_layernorm.weight", 1, C, 0, 1},
            {"post_attention_layernorm.weight", 1, C, 0, 1}};
        for (size_t i = 0; i < sizeof t / sizeof *t && !rc; i++) {
            snprintf(nm, sizeof nm, "model.layers.%d.%s", l, t[i].n);
            rc = add_tensor(w, o, &rng, nm, t[i].ndim, t[i].d0, t[i].d1, t[i].ones);
        }
    }
    if (!rc) rc = add_tensor(w, o, &rng, "model.norm.weight", 1, C, 0, 1);
    if (!rc && o->untied) rc = add_tensor(w, o, &rng, "lm_head.weight", 2, vocab, C, 0);
    Err e;
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    if (!rc) rc = st_writer_meta(w, "format", "pt", &e) ||
                  st_writer_meta(w, "lemo", "random init, normal(0, 0.02), not trained", &e) ||
                  st_writer_meta(w, "lemo_seed", seed, &e);
    if (!rc) {
        char path[4096];
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        rc = st_writer_save(w, path, &e);
        if (rc) fprintf(stderr, "init-model: %s\n", e.msg);
    }
    st_writer_free(w);
    return rc;
}

static json_t *config_json(const InitOpts *o, int vocab) {
    static const char *dt[] = {"float32", "bfloat16", "float16"};
    json_t *c = json_object();
    json_object_set_new(c, "architectures", json_pack("[s]", "LlamaForCausalLM"));
    json_object_set_new(c, "model_type", json_string("llama"));
    json_object_set_new(c, "hidden_size", json_integer(o->hidden));
    json_object_set_new(c, "intermediate_size", json_integer(o->ffn));
    json_object_set_new(c, "num_hidden_layers", json_integer(o->layers));
    json_object_set_new(c, "num_attention_heads", json_integer(o->heads));
    json_object_set_new(c, "num_key_value_heads", json_integer(o->kv_heads));
    json_object_set_new(c, "head_dim", json_integer(o->hidden / o->heads));
    json_object_set_new(c, "vocab_size", json_integer(vocab));
    json_object_set_new(c, "max_position_embeddings", json_integer(o->max_pos));
    json_object_set_new(c, "rms_norm_eps", json_real(1e-5));
    json_object_set_new(c, "rope_theta", json_real(o->rope_theta));
    json_object_set_new(c, "hidden_act", json_string("silu"));
    json_object_set_new(c, "initializer_range", json_real(0.02));
    json_object_set_new(c, "tie_word_embeddings", json_boolean(!o->untied));
    json_object_set_new(c, "attention_bias", json_false());
    json_object_set_new(c, "mlp_bias", json_false());
    json_object_set_new(c, "bos_token_id", json_integer(1));
    json_object_set_new(c, "eos_token_id", json_integer(2));
    json_object_set_new(c, "torch_dtype", json_string(dt[o->dtype]));
    json_object_set_new(c, "lemo_random_init", json_true());
    json_object_set_new(c, "lemo_seed", json_integer((json_int_t)o->seed));
    return c;
}

static json_t *tokenizer_config_json(const InitOpts *o) {
    return json_pack("{s:b, s:b, s:s, s:s, s:s, s:s, s:i, s:b, s:b}", "add_bos_token", 1, "add_eos_token", 0,
                     "bos_token", "<s>", "eos_token", "</s>", "unk_token", "<unk>", "tokenizer_class",
                     "LlamaTokenizer", "model_max_length", o->max_pos, "legacy", 1,
                     "clean_up_tokenization_spaces", 0);
}

static int write_readme(const char *dir, const InitOpts *o, int vocab, long long params) {
    static const char *dt[] = {"F32", "BF16", "F16"};
    char text[2048];
    snprintf(text, sizeof text,
             "# Random LLaMA model (not trained)\n\n"
             "This folder was written by `lemo init-model tiny`. Its weights are **random**\n"
             "(normal(0, 0.02), RMSNorm weights 1, seed %llu); it has learned nothing and its\n"
             "outputs are noise. It exists to exercise loaders, training and benchmarks at a chosen size.\n"
             "`config.json` carries `\"lemo_random_init\": true`.\n\n"
             "| | |\n| --- | --- |\n"
             "| layers | %d |\n| hidden | %d |\n| heads / kv heads | %d / %d |\n| ffn | %d |\n"
             "| vocab | %d |\n| max positions | %d |\n| rope theta | %g |\n| dtype | %s |\n"
             "| embeddings | %s |\n| parameters | %lld |\n\n"
             "The tokenizer is a small SentencePiece-style BPE (byte fallback, Llama-2 layout) built from\n"
             "common English letter pairs and words; it round-trips any text through byte fallback.\n",
             (unsigned long long)o->seed, o->layers, o->hidden, o->heads, o->kv_heads, o->ffn, vocab,
             o->max_pos, o->rope_theta, dt[o->dtype], o->untied ? "untied" : "tied", params);
    return write_text(dir, "README.md", text);
}

/* ---------------------------------------------------------------- flags */

static int parse_int_flag(const char *flag, const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "init-model: %s wants an integer in [%ld, %ld], got \"%s\"\n", flag, lo, hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* Parses argv into o; returns 0 ok, 1 for --help, -1 on a bad flag. dir gets the positional DIR. */
static int init_parse(int argc, char **argv, InitOpts *o, const char **preset, const char **dir) {
    *o = init_defaults;
    *preset = *dir = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        if (strncmp(a, "--", 2)) {
            if (!*preset) *preset = a;
            else if (!*dir) *dir = a;
            else {
                fprintf(stderr, "init-model: unexpected argument \"%s\"\n", a);
                return -1;
            }
            continue;
        }
        if (!strcmp(a, "--untied")) { o->untied = 1; continue; }
        if (!strcmp(a, "--force")) { o->force = 1; continue; }
        /* the rest take a value: --flag V or --flag=V */
        char name[64];
        const char *val = NULL, *eq = strchr(a, '=');
        if (eq) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
            val = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", a);
        }
        static const char *valued[] = {"--seed", "--layers", "--hidden", "--heads", "--kv-heads",
                                       "--ffn", "--max-pos", "--rope-theta", "--dtype"};
        int known = 0;
        for (size_t k = 0; k < sizeof valued / sizeof *valued; k++) known |= !strcmp(name, valued[k]);
        if (!known) {
            fprintf(stderr, "init-model: unknown flag %s\n", name);
            return -1;
        }
        if (!eq) {
            if (i + 1 >= argc) {
                fprintf(stderr, "init-model: %s needs a value\n", a);
                return -1;
            }
            val = argv[++i];
        }
        int rc = 0;
        if (!strcmp(name, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(val, &end, 10);
            if (errno || *end || end == val || val[0] == '-' || s > (1ull << 53)) {
                fprintf(stderr, "init-model: --seed wants a non-negative integer, got \"%s\"\n", val);
                rc = -1;
            }
            o->seed = s;
        } else if (!strcmp(name, "--layers")) rc = parse_int_flag(name, val, 1, 1024, &o->layers);
        else if (!strcmp(name, "--hidden")) rc = parse_int_flag(name, val, 2, 65536, &o->hidden);
        else if (!strcmp(name, "--heads")) rc = parse_int_flag(name, val, 1, 1024, &o->heads);
        else if (!strcmp(name, "--kv-heads")) rc = parse_int_flag(name, val, 1, 1024, &o->kv_heads);
        else if (!strcmp(name, "--ffn")) rc = parse_int_flag(name, val, 1, 262144, &o->ffn);
        else if (!strcmp(name, "--max-pos")) rc = parse_int_flag(name, val, 1, 1 << 24, &o->max_pos);
        else if (!strcmp(name, "--rope-theta")) {
            char *end;
            o->rope_theta = strtod(val, &end);
            if (*end || end == val || !(o->rope_theta > 0) || !isfinite(o->rope_theta)) {
                fprintf(stderr, "init-model: --rope-theta wants a positive number, got \"%s\"\n", val);
                rc = -1;
            }
        } else if (!strcmp(name, "--dtype")) {
            if (!strcmp(val, "f32")) o->dtype = DT_F32;
            else if (!strcmp(val, "bf16")) o->dtype = DT_BF16;
            else if (!strcmp(val, "f16")) o->dtype = DT_F16;
            else {
                fprintf(stderr, "init-model: --dtype wants f32, bf16 or f16, got \"%s\"\n", val);
                rc = -1;
            }
        }
        if (rc) return -1;
    }
    return 0;
}

/* Checks the shape rules a loader will apply, so a written model always loads. */
static int init_validate(const InitOpts *o) {
    if (o->hidden % o->heads) {
        fprintf(stderr, "init-model: --heads %d does not divide --hidden %d\n", o->heads, o->hidden);
        return -1;
    }
    if (o->heads % o->kv_heads) {
        fprintf(stderr, "init-model: --kv-heads %d does not divide --heads %d\n", o->kv_heads, o->heads);
        return -1;
    }
    if ((o->hidden / o->heads) % 2) {
        fprintf(stderr, "init-model: head size %d (hidden / heads) must be even for RoPE\n",
                o->hidden / o->heads);
        return -1;
    }
    return 0;
}

int cmd_init_model(int argc, char **argv) {
    InitOpts o;
    const char *preset, *dir;
    int pr = init_parse(argc, argv, &o, &preset, &dir);
    if (pr == 1) {
        init_usage(stdout);
        return 0;
    }
    if (pr < 0) {
        init_usage(stderr);
        return 2;
    }
    if (!preset || !dir) {
        fprintf(stderr, "init-model: need a preset and a folder\n");
        init_usage(stderr);
        return 2;
    }
    if (strcmp(preset, "tiny")) {
        fprintf(stderr, "init-model: unknown preset \"%s\" (the preset is: tiny)\n", preset);
        return 2;
    }
    if (init_validate(&o)) return 2;

    Vocab v = {0};
    if (vocab_build(&v)) {
        fprintf(stderr, "init-model: out of memory building the tokenizer\n");
        vocab_free(&v);
        return 1;
    }
    int V = v.n, C = o.hidden, KV = o.kv_heads * (o.hidden / o.heads);
    long long per_layer = 2LL * C * C + 2LL * KV * C + 3LL * o.ffn * C + 2LL * C;
    long long params = (long long)V * C * (o.untied ? 2 : 1) + (long long)o.layers * per_layer + C;
    if (params > 2000000000LL) {
        fprintf(stderr, "init-model: %lld parameters is more than this command writes (2e9)\n", params);
        vocab_free(&v);
        return 2;
    }

    if (mkdir(dir, 0755) && errno != EEXIST) {
        fprintf(stderr, "init-model: cannot create %s: %s\n", dir, strerror(errno));
        vocab_free(&v);
        return 1;
    }
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/config.json", dir);
    if (!o.force && access(probe, F_OK) == 0) {
        fprintf(stderr, "init-model: %s already holds a model (use --force to overwrite)\n", dir);
        vocab_free(&v);
        return 1;
    }
    int rc = write_weights(dir, &o, V) || write_json(dir, "tokenizer.json", tokenizer_json(&v)) ||
             write_json(dir, "tokenizer_config.json", tokenizer_config_json(&o)) ||
             write_readme(dir, &o, V, params) || write_json(dir, "config.json", config_json(&o, V));
    vocab_free(&v);
    if (rc) return 1;
    printf("wrote %s: random LLaMA, %d layers, hidden %d, %d/%d heads, ffn %d, vocab %d, %lld parameters, seed %llu\n",
           dir, o.layers, C, o.heads, o.kv_heads, o.ffn, V, params, (unsigned long long)o.seed);
    return 0;
}
