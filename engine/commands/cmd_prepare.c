/* cmd_prepare.c: `lemo prepare`: LeMo's pattern predictors for one base model (DESIGN section
 * 8), trained offline on the frozen model, measured, and the keep schedule calibrated; progress
 * as JSON lines on stdout (start, step, recall, calibrate, done | error), as `lemo train` prints.
 *
 * 1. Windows. The data is packed into --context windows as for training (data.c); the first
 *    --train-windows train, the held-out ones (--eval-data, else the last --eval-windows of the
 *    stream, never trained on) measure recall.
 * 2. Targets. One dense forward per training window with a probe on every layer's normed input
 *    h (model.h): the probe keeps h (host, fp32) and the exact block matrix A of the layer's own
 *    pre-RoPE q, k (lemo_block_matrix), standardised per layer (minus its mean, over its standard
 *    deviation) so one SmoothL1 beta suits every layer and the loss weighs the deviations that
 *    rank blocks (divided by the mean alone, the loss fell to 2% of its start while the held-out
 *    recall stayed at random's). The base model runs once per window and
 *    the predictor steps then cycle over these windows: its forward is the costly part.
 * 3. Training: per step one window, every layer: predictor forward, SmoothL1 against A over the
 *    causal triangle (mean), backward, AdamW with betas 0.9/0.95 (the paper's) at --lr after 20
 *    warmup steps, constant after (the paper's schedule). The paper's lr 2e-5 is for 8192-wide
 *    networks over 400 steps on a 7B model; these are small and few steps are affordable on a
 *    CPU, so the default is 1e-3: on refmodel-22m at 1K tokens over 64 windows the loss fell
 *    from 0.43 to 0.25 by step 100 and little after (0.24 at 300).
 * 4. Calibration (the paper's Algorithm 1 in spirit): on --calib-windows training windows, the
 *    dense loss, then each layer alone at keep 0.8, 0.6, 0.4, 0.2 with every other layer dense,
 *    its blocks chosen by its predictor: the loss change is that layer's cost at that keep. A
 *    greedy then lowers one layer one level at a time, always the step of least loss increase
 *    per unit of keep given up, until the mean keep over all layers is at most --keep-mean. The
 *    costs are measured one layer at a time, so interactions between sparse layers are not in
 *    them.
 * 5. Recall on the held-out windows: per layer the share of the exact top-k blocks (block 0
 *    aside: both always keep it) the predicted top-k holds, at keep 0.4 and at the schedule's.
 *    A random choice expects (k-1)/(nb-1) of them.
 * 6. DIR/predictor.safetensors, then DIR/lemo.json (predictor.h), each atomically. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "backend_select.h"
#include "data.h"
#include "estimate.h"
#include "lemo.h"
#include "model.h"
#include "predictor.h"
#include "progress.h"
#include "tokenizer.h"

/* The flags, one row each: name, value kind, default (as text), help. */
enum { F_STR, F_INT, F_NUM };
typedef struct {
    const char *model, *data, *eval_data, *out, *device, *rope;
    long context, steps, seed, block, h1, h2, train_windows, eval_windows, calib_windows, log_every, fit_context;
    double keep_mean, lr, recall_keep;
} PrepArgs;
#define OFF(f) offsetof(PrepArgs, f)
static const struct { const char *name; int kind; size_t off; const char *def, *help; } flags[] = {
    {"--model", F_STR, OFF(model), NULL, "Hugging Face model directory (required)"},
    {"--data", F_STR, OFF(data), NULL, "JSONL dataset the windows are packed from (required)"},
    {"--out", F_STR, OFF(out), NULL, "folder to write predictor.safetensors and lemo.json into (required)"},
    {"--eval-data", F_STR, OFF(eval_data), "", "held-out JSONL for recall (default: the last --eval-windows of --data)"},
    {"--context", F_INT, OFF(context), "1024", "window length in tokens, a multiple of --block"},
    {"--fit-context", F_INT, OFF(fit_context), "0", "1: halve --context (down to two blocks) until the data gives held-out windows"},
    {"--steps", F_INT, OFF(steps), "200", "predictor training steps (one window, every layer)"},
    {"--lr", F_NUM, OFF(lr), "1e-3", "AdamW learning rate (betas 0.9, 0.95; 20 warmup steps)"},
    {"--keep-mean", F_NUM, OFF(keep_mean), "0.6", "mean attention keep over all layers the schedule meets"},
    {"--recall-keep", F_NUM, OFF(recall_keep), "0.4", "keep fraction the recall is measured at"},
    {"--seed", F_INT, OFF(seed), "42", "weight initialisation and window order"},
    {"--block", F_INT, OFF(block), "64", "tokens per block: 32, 64 or 128 (lemo.block of the jobs using it)"},
    {"--hidden1", F_INT, OFF(h1), "128", "first hidden width of each network"},
    {"--hidden2", F_INT, OFF(h2), "128", "second hidden width (the paper: block * head_dim)"},
    {"--train-windows", F_INT, OFF(train_windows), "32", "windows the predictors train on (held in host memory)"},
    {"--eval-windows", F_INT, OFF(eval_windows), "4", "held-out windows recall is measured on"},
    {"--calib-windows", F_INT, OFF(calib_windows), "2", "training windows the schedule is calibrated on"},
    {"--log-every", F_INT, OFF(log_every), "10", "a step line every N steps"},
    {"--rope-scaling", F_STR, OFF(rope), "", "override RoPE scaling, e.g. linear:4 (default: the model's)"},
    {"--device", F_STR, OFF(device), "auto", "auto, cpu or cuda"},
};
#define N_FLAGS (int)(sizeof flags / sizeof flags[0])

static void usage(FILE *f) {
    fprintf(f, "usage: lemo prepare --model DIR --data FILE.jsonl --out DIR [flags]\n"
               "  Trains LeMo's pattern predictors on the frozen model, measures their recall on held-out\n"
               "  windows, calibrates the per-layer keep schedule; progress as JSON lines on stdout\n"
               "  (start, step, recall, calibrate, done | error).\n");
    for (int i = 0; i < N_FLAGS; i++)
        fprintf(f, "  %-16s %s%s%s%s\n", flags[i].name, flags[i].help, flags[i].def ? " (default: " : "",
                flags[i].def ? (flags[i].def[0] ? flags[i].def : "none") : "", flags[i].def ? ")" : "");
    fprintf(f, "  %-16s this text\n", "--help");
}

static int set_flag(PrepArgs *a, int i, const char *v) {
    char *p = (char *)a + flags[i].off, *end;
    if (flags[i].kind == F_STR) {
        *(const char **)p = v;
        return 0;
    }
    if (flags[i].kind == F_INT) {
        long n = strtol(v, &end, 10);
        if (*end || !*v || n < 0) return -1;
        *(long *)p = n;
    } else {
        double d = strtod(v, &end);
        if (*end || !*v || !(d > 0)) return -1;
        *(double *)p = d;
    }
    return 0;
}

static const float levels[] = {1.0f, 0.8f, 0.6f, 0.4f, 0.2f};  // the calibration's keep levels
#define N_LEVELS 5

/* What the probe does with each layer's h. */
enum { PROBE_COLLECT, PROBE_SELECT, PROBE_RECALL };
typedef struct {
    Model *m;
    const Backend *be;
    LemoPredictor *p;
    int mode, S, L, nb;
    float *w_dev;            // (L, n_w) predictor weights on the device
    void *sq, *sk;           // (S, NH*HS), (S, NKV*HS) act: pre-RoPE q, k
    float *A, *Ap;           // (tri) exact and predicted block matrices
    float *acts;             // the predictor forward's acts
    float *score, *score_p;  // (nb)
    int *idx;                // (S) a selection's rows
    void *sel_ws;
    // PROBE_COLLECT: window w's h and A of every layer
    int w;
    float *h_pool, *a_pool;  // (windows, L, S*C), (windows, L, tri) host
    // PROBE_SELECT: layer l's rows at each level
    int *kept;               // (L, N_LEVELS, S) host
    // PROBE_RECALL: hits and totals per layer, at the recall keep and the schedule's
    double hit[JOB_MAX_LAYERS], tot[JOB_MAX_LAYERS], hit_s[JOB_MAX_LAYERS], tot_s[JOB_MAX_LAYERS];
    float recall_keep;
} Probe;

/* The exact A of layer l from its normed input h: q, k as its own projections make them (base
 * weights, no adapter: the model is frozen), pre-RoPE. */
static void exact_matrix(Probe *x, int l, const void *h) {
    const ModelConfig *c = &x->m->cfg;
    const LayerWeights *w = &x->m->layers[l];
    int C = c->hidden, Q = c->n_heads * c->head_dim, KV = c->n_kv_heads * c->head_dim;
    x->be->matmul_forward(x->sq, h, w->wq, w->bq, x->S, C, Q, 0);
    x->be->matmul_forward(x->sk, h, w->wk, w->bk, x->S, C, KV, 0);
    x->be->lemo_block_matrix(x->A, x->sq, x->sk, x->S, c->n_heads, c->n_kv_heads, c->head_dim, x->p->block);
}

static void predict_scores(Probe *x, int l, const void *h) {
    const ModelConfig *c = &x->m->cfg;
    LemoPredictor *p = x->p;
    x->be->lemo_predictor_forward(x->Ap, x->acts, h, x->w_dev + (size_t)l * p->n_w, x->S, c->hidden, c->head_dim,
                                  p->block, p->h1, p->h2);
    x->be->lemo_matrix_scores(x->score_p, x->Ap, x->nb);
}

/* The top k blocks of score as a block mask (host, nb). */
static void top_blocks(Probe *x, const float *score, int k, unsigned char *mask) {
    int B = x->p->block;
    int *rows = malloc(sizeof(int) * (size_t)k * B);
    x->be->lemo_select_blocks(x->idx, score, x->nb, k, B, x->sel_ws);
    x->be->copy_to_host(rows, x->idx, sizeof(int) * (size_t)k * B);
    memset(mask, 0, (size_t)x->nb);
    for (int i = 0; i < k; i++) mask[rows[(size_t)i * B] / B] = 1;
    free(rows);
}

static void probe(void *ctx, int l, const void *h, int S) {
    Probe *x = ctx;
    const Backend *be = x->be;
    size_t SC = (size_t)S * x->m->cfg.hidden, tri = lemo_tri_size(x->nb);
    if (x->mode == PROBE_COLLECT) {
        be->download_act(x->h_pool + ((size_t)x->w * x->L + l) * SC, h, SC);
        exact_matrix(x, l, h);
        be->copy_to_host(x->a_pool + ((size_t)x->w * x->L + l) * tri, x->A, sizeof(float) * tri);
        return;
    }
    predict_scores(x, l, h);
    if (x->mode == PROBE_SELECT) {
        for (int v = 1; v < N_LEVELS; v++) {
            int k = lemo_blocks_kept(levels[v], x->nb), B = x->p->block;
            be->lemo_select_blocks(x->idx, x->score_p, x->nb, k, B, x->sel_ws);
            be->copy_to_host(x->kept + ((size_t)l * N_LEVELS + v) * S, x->idx, sizeof(int) * (size_t)k * B);
        }
        return;
    }
    exact_matrix(x, l, h);
    be->lemo_matrix_scores(x->score, x->A, x->nb);
    unsigned char *me = malloc((size_t)x->nb), *mp = malloc((size_t)x->nb);
    for (int pass = 0; pass < 2; pass++) {
        float keep = pass == 0 ? x->recall_keep : x->p->keep[l];
        if (pass == 1 && keep >= 1.0f) break;  // a dense layer selects nothing
        int k = lemo_blocks_kept(keep, x->nb);
        if (k < 2) continue;
        top_blocks(x, x->score, k, me);
        top_blocks(x, x->score_p, k, mp);
        int hit = 0;
        for (int b = 1; b < x->nb; b++) hit += me[b] && mp[b];
        if (pass == 0) x->hit[l] += hit, x->tot[l] += k - 1;
        else x->hit_s[l] += hit, x->tot_s[l] += k - 1;
    }
    free(me), free(mp);
}

static double now_s(void) { return clock_mono_s(); }

/* The greedy of the file comment: cur[l] indexes levels; returns the mean keep reached. */
static double schedule_greedy(const double *delta, int L, double target, int *cur) {
    double sum = 0;
    for (int l = 0; l < L; l++) cur[l] = 0, sum += levels[0];
    while (sum / L > target + 1e-9) {
        int best = -1;
        double best_cost = INFINITY;
        for (int l = 0; l < L; l++) {
            if (cur[l] + 1 >= N_LEVELS) continue;
            double dk = levels[cur[l]] - levels[cur[l] + 1];
            double cost = (delta[l * N_LEVELS + cur[l] + 1] - delta[l * N_LEVELS + cur[l]]) / dk;
            if (cost < best_cost) best_cost = cost, best = l;
        }
        if (best < 0) break;
        sum -= levels[cur[best]] - levels[cur[best] + 1];
        cur[best]++;
    }
    return sum / L;
}

static int prepare_run(const PrepArgs *a, Err *e) {
    int rc = -1;
    Tokenizer *tok = NULL;
    Model *m = NULL;
    LemoPredictor *p = NULL;
    TokenStream ts = {0}, es = {0};
    Packed pk = {0}, ek = {0};
    Probe x = {0};
    float *dev[12] = {0};
    int ndev = 0;
    json_t *extra = NULL;
    double t0 = now_s();
    char path[4200];
    int S = (int)a->context, B = (int)a->block;
    if (B != 32 && B != 64 && B != 128) return err_set_at(e, "--block", 0, "--block must be 32, 64 or 128, got %d", B);
    if (S < 2 * B || S % B) return err_set_at(e, "--context", 0, "--context (%d) must be a multiple of --block (%d), "
                                              "at least two blocks", S, B);
    if (a->keep_mean > 1 || a->keep_mean < levels[N_LEVELS - 1])
        return err_set_at(e, "--keep-mean", 0, "--keep-mean must be in [%.1f, 1], got %g", levels[N_LEVELS - 1],
                          a->keep_mean);
    if (a->recall_keep >= 1) return err_set_at(e, "--recall-keep", 0, "--recall-keep must be below 1");
    if (a->train_windows < 1 || a->eval_windows < 1 || a->steps < 1 || a->h1 < 1 || a->h2 < 1)
        return err_set(e, "--train-windows, --eval-windows, --steps, --hidden1 and --hidden2 must be at least 1");
    RopeScaling rs = {0}, *rsp = NULL;
    if (a->rope[0]) {
        char type[16];
        float factor;
        if (sscanf(a->rope, "%15[a-z0-9]:%f", type, &factor) != 2 || factor < 1 || strcmp(type, "linear"))
            return err_set_at(e, "--rope-scaling", 0, "--rope-scaling must look like linear:FACTOR with FACTOR >= 1");
        rs.type = ROPE_LINEAR, rs.factor = factor, rsp = &rs;
    }
    const Backend *be = backend_select(a->device, e);
    if (!be) return -1;
    snprintf(path, sizeof path, "%s/tokenizer.json", a->model);
    if (!(tok = tokenizer_load(path, e))) goto out;
    int tmpl = data_pick_template(tok, TEMPLATE_AUTO);
    if (data_load_jsonl(a->data, tok, tmpl, NULL, NULL, &ts, e) || data_pack(&ts, S, &pk, e)) goto out;
    /* a small dataset at a long context gives one window or none: the predictors are per
     * block, so shorter windows train them as well (the trained context is recorded) */
    while (a->fit_context && !a->eval_data[0] && pk.n < 2 && S / 2 >= 2 * B && (S / 2) % B == 0) {
        packed_free(&pk);
        progress_log("info", "prepare: %s gives fewer than 2 windows of %d tokens: preparing at %d", a->data, S, S / 2);
        S /= 2;
        if (data_pack(&ts, S, &pk, e)) goto out;
    }
    size_t n_train = (size_t)a->train_windows, n_eval = (size_t)a->eval_windows;
    const int32_t *ev_in, *ev_tg;
    if (a->eval_data[0]) {
        if (data_load_jsonl(a->eval_data, tok, tmpl, NULL, NULL, &es, e) || data_pack(&es, S, &ek, e)) goto out;
        if (n_eval > ek.n) n_eval = ek.n;
        if (n_train > pk.n) n_train = pk.n;
        ev_in = ek.inputs, ev_tg = ek.targets;
    } else {
        if (pk.n < 2) {
            err_set_at(e, "--data", 0, "%s gives %zu window of %d tokens: recall needs held-out windows (more data, "
                       "a shorter --context or --eval-data)", a->data, pk.n, S);
            goto out;
        }
        if (n_eval > pk.n / 2) n_eval = pk.n / 2;
        if (n_train > pk.n - n_eval) n_train = pk.n - n_eval;
        ev_in = pk.inputs + (pk.n - n_eval) * S, ev_tg = pk.targets + (pk.n - n_eval) * S;
    }
    size_t n_calib = (size_t)a->calib_windows < n_train ? (size_t)a->calib_windows : n_train;

    ModelConfig mc;
    if (model_config_load(a->model, &mc, e)) goto out;
    int h1 = (int)a->h1, h2 = (int)a->h2;
    if (!(p = lemo_predictor_new(a->model, &mc, B, h1, h2, (uint64_t)a->seed, e))) goto out;
    p->context = S;
    LoraSpec spec = {1, 1, 0, {0}};  // no adapter: the frozen base model
    if (!(m = model_load(be, a->model, rsp, S, &spec, &(ActPolicy){.all = ACT_RECOMPUTE}, NULL, 0, e))) goto out;
    int L = mc.n_layers, C = mc.hidden, HS = mc.head_dim, nb = S / B;
    size_t tri = lemo_tri_size(nb), SC = (size_t)S * C, nw = p->n_w;
    /* the training windows' inputs stay in host memory (fp32, every layer): a large model at a
     * long context holds gigabytes a window, so take the windows half the free memory holds */
    size_t per_window = sizeof(float) * (SC + tri) * L, budget = estimate_host_available() / 2;
    if (n_train * per_window > budget) {
        size_t fit = budget / per_window ? budget / per_window : 1;
        progress_log("warn", "prepare: %zu windows of %d tokens would hold %.1f GiB of layer inputs; %zu fit in half "
                     "the free host memory (%.1f GiB): training on %zu", n_train, S,
                     (double)(n_train * per_window) / 1073741824.0, fit, (double)budget / 1073741824.0, fit);
        n_train = fit;
        if (n_calib > n_train) n_calib = n_train;
    }
    progress_emit(PROGRESS_START, json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:I, s:I, s:I}", "model", a->model,
                                     "context", S, "block", B, "in", B * HS, "hidden1", h1, "hidden2", h2, "out", HS,
                                     "train_windows", (json_int_t)n_train, "eval_windows", (json_int_t)n_eval,
                                     "params", (json_int_t)(nw * L)));

    // device buffers: fp32 ones in dev[] (freed together), the act ones apart
    size_t sizes[] = {nw * L, nw * L, nw * L, nw * L, tri, tri, tri, lemo_predictor_acts(S, C, HS, B, h1, h2),
                      lemo_predictor_bwd_ws(S, C, HS, B, h1, h2), (size_t)nb, (size_t)nb, (size_t)S};
    for (; ndev < 12; ndev++)
        if (!(dev[ndev] = be->alloc(sizeof(float) * sizes[ndev]))) {
            err_set(e, "out of device memory for the predictor's training buffers");
            goto out;
        }
    float *w_dev = dev[0], *g_dev = dev[1], *m_dev = dev[2], *v_dev = dev[3];
    float *dA = dev[6], *bws = dev[8];
    void *hdev = be->alloc(be->act_size * SC), *sq = be->alloc(be->act_size * (size_t)S * mc.n_heads * HS);
    void *sk = be->alloc(be->act_size * (size_t)S * mc.n_kv_heads * HS), *sel_ws = be->alloc(be->lemo_select_ws_bytes(nb));
    float *h_pool = malloc(sizeof(float) * SC * L * n_train), *a_pool = malloc(sizeof(float) * tri * L * n_train);
    int *kept = malloc(sizeof(int) * (size_t)L * N_LEVELS * S);
    if (!hdev || !sq || !sk || !sel_ws || !h_pool || !a_pool || !kept) {
        err_set(e, "out of memory for %zu training windows of %d tokens (%.0f MiB of host memory): fewer "
                "--train-windows", n_train, S, (double)sizeof(float) * (SC + tri) * L * n_train / 1048576);
        be->free(hdev), be->free(sq), be->free(sk), be->free(sel_ws), free(h_pool), free(a_pool), free(kept);
        goto out;
    }
    be->copy_to_device(w_dev, p->w, sizeof(float) * nw * L);
    x = (Probe){.m = m, .be = be, .p = p, .S = S, .L = L, .nb = nb, .w_dev = w_dev, .sq = sq, .sk = sk,
                .A = dev[4], .Ap = dev[5], .acts = dev[7], .score = dev[9], .score_p = dev[10], .idx = (int *)dev[11],
                .sel_ws = sel_ws, .h_pool = h_pool, .a_pool = a_pool, .kept = kept,
                .recall_keep = (float)a->recall_keep};
    m->probe = probe, m->probe_ctx = &x;

    // 2. the targets
    x.mode = PROBE_COLLECT;
    long cnt;
    for (size_t w = 0; w < n_train; w++) {
        x.w = (int)w;
        model_step(m, pk.inputs + w * S, pk.targets + w * S, S, NULL, 0, 0, 0, 0, &cnt);
    }
    be->sync();
    // each layer's targets standardised: (A - mean) / std over its training windows, so the
    // loss weighs the deviations that rank blocks, not the common level (which ranks none)
    double scale[JOB_MAX_LAYERS], shift[JOB_MAX_LAYERS];
    for (int l = 0; l < L; l++) {
        double s = 0, s2 = 0, n = (double)tri * n_train;
        for (size_t w = 0; w < n_train; w++)
            for (size_t i = 0; i < tri; i++) {
                double v = a_pool[(w * L + l) * tri + i];
                s += v, s2 += v * v;
            }
        shift[l] = s / n;
        scale[l] = sqrt(fmax(s2 / n - shift[l] * shift[l], 0));
        if (!(scale[l] > 0)) scale[l] = 1;
        for (size_t w = 0; w < n_train; w++)
            for (size_t i = 0; i < tri; i++)
                a_pool[(w * L + l) * tri + i] = (float)((a_pool[(w * L + l) * tri + i] - shift[l]) / scale[l]);
    }
    progress_log("info", "prepare: exact block matrices of %zu windows x %d layers (%.1f s)", n_train, L, now_s() - t0);

    // 3. training
    size_t *order = malloc(sizeof(size_t) * n_train);
    double last = NAN;
    for (long step = 0; step < a->steps; step++) {
        if (step % (long)n_train == 0) data_shuffle_order(n_train, (uint64_t)a->seed, (uint64_t)(step / n_train), order);
        size_t w = order[step % n_train];
        float lr = (float)(a->lr * (step < 20 ? (step + 1) / 20.0 : 1.0));
        double loss = 0;
        be->zero(g_dev, sizeof(float) * nw * L);
        for (int l = 0; l < L; l++) {
            be->upload_act(hdev, h_pool + (w * L + l) * SC, DT_F32, SC);
            be->copy_to_device(x.A, a_pool + (w * L + l) * tri, sizeof(float) * tri);
            float *wl = w_dev + (size_t)l * nw;
            be->lemo_predictor_forward(x.Ap, x.acts, hdev, wl, S, C, HS, B, h1, h2);
            loss += be->lemo_smooth_l1(dA, x.Ap, x.A, tri, 1.0f, 1.0f / (float)tri) / (double)tri;
            be->lemo_predictor_backward(g_dev + (size_t)l * nw, dA, x.acts, wl, S, C, HS, B, h1, h2, bws);
        }
        be->adamw(w_dev, g_dev, m_dev, v_dev, nw * L, lr, 0.9f, 0.95f, 1e-8f, 0.0f, (int)step + 1);
        last = loss / L;
        if ((step + 1) % a->log_every == 0 || step == 0 || step + 1 == a->steps)
            progress_emit(PROGRESS_STEP, json_pack("{s:I, s:f, s:f, s:f}", "step", (json_int_t)step + 1, "loss", last, "lr",
                                            (double)lr, "elapsed_s", now_s() - t0));
    }
    free(order);
    be->copy_to_host(p->w, w_dev, sizeof(float) * nw * L);

    // 4. calibration
    double delta[JOB_MAX_LAYERS * N_LEVELS] = {0}, dense_loss = 0;
    for (size_t w = 0; w < n_calib; w++) {
        const int32_t *in = pk.inputs + w * S, *tg = pk.targets + w * S;
        x.mode = PROBE_SELECT;
        double l0 = model_step(m, in, tg, S, NULL, 0, 0, 0, 0, &cnt) / (double)cnt;
        dense_loss += l0 / n_calib;
        m->probe = NULL;
        for (int l = 0; l < L; l++)
            for (int v = 1; v < N_LEVELS; v++) {
                const int *klist[JOB_MAX_LAYERS] = {0};
                int nk[JOB_MAX_LAYERS] = {0};
                klist[l] = kept + ((size_t)l * N_LEVELS + v) * S;
                nk[l] = lemo_blocks_kept(levels[v], nb) * B;
                LemoSelect sel = {LEMO_SEL_GIVEN, 0, klist, nk};
                double lv = model_step(m, in, tg, S, &sel, 0, 0, 0, 0, &cnt) / (double)cnt;
                delta[l * N_LEVELS + v] += (lv - l0) / n_calib;
            }
        m->probe = probe;
    }
    int cur[JOB_MAX_LAYERS];
    double mean_keep = schedule_greedy(delta, L, a->keep_mean, cur);
    for (int l = 0; l < L; l++) p->keep[l] = levels[cur[l]];
    p->has_schedule = 1;
    json_t *dl = json_array();
    for (int l = 0; l < L; l++) {
        json_t *r = json_array();
        for (int v = 0; v < N_LEVELS; v++) json_array_append_new(r, json_real(delta[l * N_LEVELS + v]));
        json_array_append_new(dl, r);
    }
    json_t *lv = json_array(), *kp = json_array();
    for (int v = 0; v < N_LEVELS; v++) json_array_append_new(lv, json_real(levels[v]));
    for (int l = 0; l < L; l++) json_array_append_new(kp, json_real(p->keep[l]));
    progress_emit(PROGRESS_CALIBRATE, json_pack("{s:O, s:O, s:O, s:f, s:f, s:I}", "levels", lv, "loss_deltas", dl, "keep",
                                         kp, "mean_keep", mean_keep, "dense_loss", dense_loss, "windows",
                                         (json_int_t)n_calib));

    // 5. recall on held-out windows
    x.mode = PROBE_RECALL;
    for (size_t w = 0; w < n_eval; w++) model_step(m, ev_in + w * S, ev_tg + w * S, S, NULL, 0, 0, 0, 0, &cnt);
    double sum = 0;
    int k = lemo_blocks_kept((float)a->recall_keep, nb);
    json_t *rc_l = json_array(), *rc_s = json_array();
    for (int l = 0; l < L; l++) {
        p->recall[l] = x.tot[l] > 0 ? (float)(x.hit[l] / x.tot[l]) : NAN;
        sum += p->recall[l];
        json_array_append_new(rc_l, json_real(p->recall[l]));
        json_array_append_new(rc_s, x.tot_s[l] > 0 ? json_real(x.hit_s[l] / x.tot_s[l]) : json_null());
    }
    p->recall_mean = (float)(sum / L);
    double random_recall = k > 1 ? (double)(k - 1) / (nb - 1) : NAN;
    progress_emit(PROGRESS_RECALL, json_pack("{s:f, s:O, s:O, s:f, s:f, s:i, s:I}", "keep", a->recall_keep, "recall", rc_l,
                                      "recall_schedule", rc_s, "mean", (double)p->recall_mean, "random", random_recall,
                                      "blocks", nb, "windows", (json_int_t)n_eval));

    // 6. the folder
    json_t *ts_j = json_array(), *tm_j = json_array();
    for (int l = 0; l < L; l++) json_array_append_new(ts_j, json_real(scale[l]));
    for (int l = 0; l < L; l++) json_array_append_new(tm_j, json_real(shift[l]));
    extra = json_pack("{s:f, s:o, s:f, s:{s:o, s:o, s:f, s:f, s:I}, s:{s:I, s:f, s:f, s:I, s:o, s:o}}",
                      "recall_keep", a->recall_keep, "recall_schedule", rc_s, "random_recall", random_recall,
                      "calibration", "levels", lv, "loss_deltas", dl, "dense_loss", dense_loss, "mean_keep", mean_keep,
                      "windows", (json_int_t)n_calib,
                      "training", "steps", (json_int_t)a->steps, "lr", a->lr, "final_loss", last, "windows",
                      (json_int_t)n_train, "target_std", ts_j, "target_mean", tm_j);
    json_decref(kp);
    json_decref(rc_l);
    if (lemo_predictor_save(p, a->out, extra, e)) goto out_bufs;
    progress_emit(PROGRESS_DONE, json_pack("{s:s, s:f, s:f, s:f}", "out", a->out, "recall_mean", (double)p->recall_mean,
                                    "mean_keep", mean_keep, "elapsed_s", now_s() - t0));
    rc = 0;
out_bufs:
    be->free(hdev), be->free(sq), be->free(sk), be->free(sel_ws);
    free(h_pool), free(a_pool), free(kept);
out:
    json_decref(extra);
    for (int i = 0; i < ndev; i++) be->free(dev[i]);
    model_free(m);
    lemo_predictor_free(p);
    packed_free(&pk), packed_free(&ek);
    token_stream_free(&ts), token_stream_free(&es);
    tokenizer_free(tok);
    return rc;
}

int cmd_prepare(int argc, char **argv) {
    PrepArgs a = {0};
    for (int i = 0; i < N_FLAGS; i++)
        if (flags[i].def) set_flag(&a, i, flags[i].def);
    a.eval_data = "", a.rope = "";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        int f = -1;
        for (int j = 0; j < N_FLAGS; j++)
            if (!strcmp(argv[i], flags[j].name)) f = j;
        if (f < 0 || i + 1 >= argc) {
            fprintf(stderr, "lemo prepare: %s '%s'\n", f < 0 ? "unknown flag" : "missing value for", argv[i]);
            usage(stderr);
            return 2;
        }
        if (set_flag(&a, f, argv[++i])) {
            fprintf(stderr, "lemo prepare: %s must be a %s, got '%s'\n", flags[f].name,
                    flags[f].kind == F_INT ? "non-negative integer" : "positive number", argv[i]);
            return 2;
        }
    }
    if (!a.model || !a.data || !a.out) {
        fprintf(stderr, "lemo prepare: --model, --data and --out are required\n");
        usage(stderr);
        return 2;
    }
    Err e = {0};
    if (prepare_run(&a, &e)) {
        progress_emit(PROGRESS_ERROR, json_pack("{s:s, s:s, s:s}", "code", e.param[0] ? "invalid_input" : "prepare_failed",
                                         "message", e.msg, "param", e.param));
        fprintf(stderr, "lemo prepare: %s\n", e.msg);
        return 1;
    }
    return 0;
}
