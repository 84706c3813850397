/* cmd_eval.c: `lemo eval`: mean next-token cross-entropy of a model (+ LoRA adapter).
 *
 * --text FILE: the file is tokenized as one document (with the tokenizer's BOS) and its
 * first N tokens are scored the way HF transformers scores model(ids, labels=ids): the
 * N-1 next-token predictions inside the window. --data FILE.jsonl: the dataset is packed
 * into N-token windows exactly as for training and every window is scored. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_select.h"
#include "data.h"
#include "fsutil.h"
#include "model.h"
#include "peft.h"
#include "safetensors.h"
#include "tokenizer.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: lemo eval --model DIR (--text FILE | --data FILE.jsonl) [flags]\n"
            "  Prints {\"loss\": mean next-token cross-entropy, \"tokens\": tokens used, ...}.\n"
            "  --model DIR        Hugging Face model directory (required)\n"
            "  --adapter DIR      PEFT LoRA adapter to apply (default: none)\n"
            "  --text FILE        score the first --context tokens of this text file\n"
            "  --data FILE.jsonl  score a dataset packed into --context windows\n"
            "  --context N        window length in tokens (default: 2048)\n"
            "  --max-windows N    with --data, score at most N windows (default: all)\n"
            "  --rope-scaling T:F override RoPE scaling, e.g. linear:4 (default: the model's)\n"
            "  --device D         auto, cpu or cuda (default: auto)\n"
            "  --save-logits FILE with --text, also write the window's logits (S, V) fp32 as\n"
            "                     safetensors tensor \"logits\" (for parity checks; default: off)\n"
            "  --help             this text\n");
}

static int eval_window(Model *m, const int32_t *in, const int32_t *tg, int S, double *sum, long *cnt) {
    long c = 0;
    *sum += model_step(m, in, tg, S, NULL, 0, 0, 0, 0, &c);
    *cnt += c;
    return 0;
}

/* logits (S, V) = final-norm output x lm_head^T, from the forward that just ran. */
static int save_logits(const Model *m, int S, const char *path, Err *e) {
    int C = m->cfg.hidden, V = m->cfg.vocab;
    float *x = malloc(sizeof(float) * (size_t)S * C), *w = malloc(sizeof(float) * (size_t)V * C);
    float *z = malloc(sizeof(float) * (size_t)S * V);
    m->be->download_act(x, m->xf, (size_t)S * C);
    m->be->download_act(w, m->lm_head, (size_t)V * C);
    for (int s = 0; s < S; s++)
        for (int v = 0; v < V; v++) {
            double acc = 0;
            for (int c = 0; c < C; c++) acc += (double)x[(size_t)s * C + c] * w[(size_t)v * C + c];
            z[(size_t)s * V + v] = (float)acc;
        }
    StWriter *st = st_writer_new();
    int64_t shape[2] = {S, V};
    int rc = st_writer_add(st, "logits", DT_F32, z, 2, shape, e) || st_writer_save(st, path, e) ? -1 : 0;
    st_writer_free(st);
    free(x); free(w); free(z);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *text = NULL, *data = NULL, *device = "auto", *rope = NULL;
    const char *logits_out = NULL;
    long context = 2048, max_windows = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        int takes = !strcmp(a, "--model") || !strcmp(a, "--adapter") || !strcmp(a, "--text") ||
                    !strcmp(a, "--data") || !strcmp(a, "--context") || !strcmp(a, "--device") ||
                    !strcmp(a, "--max-windows") || !strcmp(a, "--rope-scaling") || !strcmp(a, "--save-logits");
        if (!takes || !v) {
            fprintf(stderr, "lemo eval: %s '%s'\n", takes ? "missing value for" : "unknown flag", a);
            usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--adapter")) adapter = v;
        else if (!strcmp(a, "--text")) text = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--rope-scaling")) rope = v;
        else if (!strcmp(a, "--save-logits")) logits_out = v;
        else {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || n < 2 || n > (1 << 22)) { fprintf(stderr, "lemo eval: %s must be an integer >= 2\n", a); return 2; }
            if (!strcmp(a, "--context")) context = n; else max_windows = n;
        }
    }
    if (!model || (!text == !data)) {
        fprintf(stderr, "lemo eval: --model and exactly one of --text or --data are required\n");
        usage(stderr);
        return 2;
    }
    RopeScaling rs = {0}, *rsp = NULL;
    if (rope) {
        char type[16];
        float factor;
        if (sscanf(rope, "%15[a-z0-9]:%f", type, &factor) != 2 || factor < 1 || strcmp(type, "linear")) {
            fprintf(stderr, "lemo eval: --rope-scaling must look like linear:FACTOR with FACTOR >= 1\n");
            return 2;
        }
        rs.type = ROPE_LINEAR;
        rs.factor = factor;
        rsp = &rs;
    }

    Err e = {0};
    int rc = 1;
    Tokenizer *tok = NULL;
    Model *m = NULL;
    int32_t *ids = NULL;
    Packed pk = {0};
    TokenStream ts = {0};
    char path[4200];
    const Backend *be = backend_select(device, &e);
    if (!be) goto fail;
    snprintf(path, sizeof path, "%s/tokenizer.json", model);
    if (!(tok = tokenizer_load(path, &e))) goto fail;

    int S;
    if (text) {
        size_t len, n;
        char *buf = fs_read_all(text, &len, (size_t)1 << 31, &e);
        if (!buf) goto fail;
        int erc = tokenizer_encode(tok, buf, len, 1, &ids, &n, &e);
        free(buf);
        if (erc) { err_prefix(&e, "%s", text); goto fail; }
        if (n < 2) { err_set(&e, "%s: fewer than 2 tokens", text); goto fail; }
        S = n < (size_t)context ? (int)n : (int)context;
    } else {
        if (data_load_jsonl(data, tok, data_pick_template(tok, TEMPLATE_AUTO), NULL, NULL, &ts, &e)) goto fail;
        if (data_pack(&ts, (int)context, &pk, &e)) goto fail;
        S = (int)context;
    }

    LoraSpec spec = {1, 1, 0, {0}};
    if (adapter && peft_read_spec(adapter, &spec, &e)) goto fail;
    if (!(m = model_load(be, model, rsp, S, &spec, &(ActPolicy){.all = ACT_RECOMPUTE}, NULL, 0, &e))) goto fail;
    if (adapter && peft_load(m, adapter, &e)) goto fail;  // without one the spec has no targets

    double sum = 0;
    long cnt = 0;
    json_t *out = json_object();
    if (text) {
        int32_t *tg = malloc(sizeof(int32_t) * S);
        for (int i = 0; i < S; i++) tg[i] = i + 1 < S ? ids[i + 1] : -1;
        eval_window(m, ids, tg, S, &sum, &cnt);
        free(tg);
        if (logits_out && save_logits(m, S, logits_out, &e)) goto fail;
        json_object_set_new(out, "tokens", json_integer(S));
    } else {
        size_t nw = max_windows > 0 && (size_t)max_windows < pk.n ? (size_t)max_windows : pk.n;
        for (size_t w = 0; w < nw; w++) eval_window(m, pk.inputs + w * S, pk.targets + w * S, S, &sum, &cnt);
        json_object_set_new(out, "tokens", json_integer((json_int_t)nw * S));
        json_object_set_new(out, "windows", json_integer((json_int_t)nw));
    }
    json_object_set_new(out, "loss", cnt ? json_real(sum / cnt) : json_null());
    json_object_set_new(out, "predicted_tokens", json_integer(cnt));
    json_object_set_new(out, "device", json_string(be->name));
    char *s = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    puts(s);
    free(s);
    json_decref(out);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "lemo eval: %s\n", e.msg);
done:
    free(ids);
    packed_free(&pk);
    token_stream_free(&ts);
    model_free(m);
    tokenizer_free(tok);
    return rc;
}
