/* trainer.c: one fine-tuning job, start to adapter (the body of `lemo train`).
 *
 * Data: the train file is tokenized and packed into context_length windows; the eval set is
 * the eval file, or a held-out share of the train documents (by a fixed hash of the
 * document index, so every run of the same file holds out the same documents).
 * Each optimizer step takes grad_accum windows in a seeded per-epoch shuffled order; the
 * loss is the mean over all counted targets of the step. AdamW with warmup + cosine and
 * global-norm clipping. Everything that decides the next step (LoRA params, AdamW state,
 * step, data cursor; dropout masks are a function of seed and step) is in the checkpoint,
 * so a resumed run repeats an uninterrupted one bit for bit on the CPU.
 * SIGTERM/SIGINT: the current step finishes, a checkpoint is written, "cancelled" is
 * printed and the process exits 0. */
#include "hash.h"
#include "clock.h"
#include "trainer.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend_select.h"
#include "checkpoint.h"
#include "data.h"
#include "estimate.h"
#include "fsutil.h"
#include "peft.h"
#include "predictor.h"
#include "progress.h"

static volatile sig_atomic_t stop_requested;
static void on_stop(int sig) { (void)sig; stop_requested = 1; }

static double now_s(void) { return clock_mono_s(); }

/* What the adapters name as their base model (adapter_config.json's base_model_name_or_path). */
static const char *base_name(const JobConfig *c) { return c->base_model_name[0] ? c->base_model_name : c->model; }

static uint64_t mix64(uint64_t z) { return hash_mix64(z); }

typedef struct { double fraction; int eval; } SplitCtx;

/* Document i is held out when its hash falls below the fraction. */
static int split_keep(size_t i, void *ctx) {
    const SplitCtx *s = ctx;
    double u = (double)(mix64(i * 0x9E3779B97F4A7C15ull + 0x5EED) >> 11) * (1.0 / 9007199254740992.0);
    return (u < s->fraction) == s->eval;
}

/* HF get_cosine_schedule_with_warmup, with an optional floor (min_lr_ratio). step is 0-based. */
double trainer_lr(const JobConfig *c, int step, int total) {
    int w = c->optim.warmup_steps;
    if (step < w) return c->optim.lr * (double)step / (double)(w > 0 ? w : 1);
    double p = (double)(step - w) / (double)(total - w > 0 ? total - w : 1);
    double f = 0.5 * (1.0 + cos(M_PI * p));
    double lo = c->optim.min_lr_ratio;
    return c->optim.lr * (lo + (1 - lo) * f);
}

/* Loads train and eval windows as the config says. */
static int load_data(const JobConfig *c, const Tokenizer *tok, Packed *train, Packed *eval, Err *e) {
    TokenStream ts = {0}, es = {0};
    int tmpl = data_pick_template(tok, c->chat_template);
    int rc = -1;
    if (c->eval_file[0]) {
        if (data_load_jsonl(c->train_file, tok, tmpl, NULL, NULL, &ts, e)) goto out;
        if (data_load_jsonl(c->eval_file, tok, tmpl, NULL, NULL, &es, e)) goto out;
    } else {
        SplitCtx tr = {c->eval_fraction, 0}, ev = {c->eval_fraction, 1};
        if (data_load_jsonl(c->train_file, tok, tmpl, split_keep, &tr, &ts, e)) goto out;
        if (c->eval_fraction > 0) {
            if (data_load_jsonl(c->train_file, tok, tmpl, split_keep, &ev, &es, e)) goto out;
            if (es.n_docs == 0)
                progress_log("warn", "no document fell into the %.0f%% held-out split (%zu documents): "
                             "eval loss is skipped; give an eval_file", c->eval_fraction * 100, ts.n_docs);
        }
    }
    if (data_pack(&ts, c->context_length, train, e)) {
        err_prefix(e, "train_file %s", c->train_file);
        goto out;
    }
    if (es.n && data_pack(&es, c->context_length, eval, e)) {
        err_prefix(e, "eval data");
        goto out;
    }
    rc = 0;
out:
    token_stream_free(&ts);
    token_stream_free(&es);
    return rc;
}

static long count_targets(const int32_t *t, int S) {
    long n = 0;
    for (int i = 0; i < S; i++) n += t[i] >= 0;
    return n;
}

/* Mean loss over the first eval_windows eval windows; NAN when there are none. *accuracy:
 * the share of their targets whose argmax logit is the target. */
static double run_eval(Model *m, const Packed *ev, int max_windows, long *tokens, double *accuracy) {
    double sum = 0;
    long cnt = 0, hit = 0;
    size_t n = ev->n < (size_t)max_windows ? ev->n : (size_t)max_windows;
    for (size_t w = 0; w < n; w++) {
        long c = 0;
        sum += model_step(m, ev->inputs + w * ev->S, ev->targets + w * ev->S, ev->S, NULL, 0, 0, 0, 0, &c);
        cnt += c;
        hit += m->n_correct;
    }
    *tokens = cnt;
    *accuracy = cnt ? (double)hit / cnt : NAN;
    return cnt ? sum / cnt : NAN;
}

/* The eval line; eval_full says whether its windows were all of the held-out set (the
 * server reports such a loss as OpenAI's full_valid_loss too). */
static void emit_eval(Model *m, const Packed *ev, const JobConfig *c, int step, double *out) {
    if (!ev->n) return;
    long tokens;
    double acc, l = run_eval(m, ev, c->eval_windows, &tokens, &acc);
    *out = l;
    json_t *o = json_pack("{s:i, s:f, s:I, s:b}", "step", step, "eval_loss", l, "eval_tokens", (json_int_t)tokens,
                          "eval_full", ev->n <= (size_t)c->eval_windows);
    json_object_set_new(o, "eval_accuracy", isnan(acc) ? json_null() : json_real(acc));
    progress_emit(PROGRESS_EVAL, o);
}

static int save_checkpoint(Model *m, const JobConfig *c, const TrainState *st, Err *e) {
    char path[4300];
    if (checkpoint_save(m, c->output_dir, base_name(c), st, path, sizeof path, e)) return -1;
    progress_emit(PROGRESS_CHECKPOINT, json_pack("{s:i, s:s}", "step", st->step, "path", path));
    return 0;
}

/* Writes the final adapter to OUTPUT/.tmp-adapter and renames it to OUTPUT/adapter, so the
 * adapter folder is either the complete new one or absent: a full disk or a kill mid-export
 * never leaves a torn adapter to be served. An adapter already there (a run killed after its
 * export, resumed from the last checkpoint) is replaced by the same bytes. */
static int export_adapter(Model *m, const JobConfig *c, char *dst, size_t cap, Err *e) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/.tmp-adapter", c->output_dir);
    snprintf(dst, cap, "%s/adapter", c->output_dir);
    fs_remove_tree(tmp);
    if (peft_save(m, tmp, base_name(c), e)) { fs_remove_tree(tmp); return -1; }
    fs_remove_tree(dst);
    if (rename(tmp, dst)) {
        err_set(e, "cannot move the adapter into %s: %s", dst, strerror(errno));
        fs_remove_tree(tmp);
        return -1;
    }
    fs_fsync_dir(c->output_dir);
    return 0;
}

int trainer_run(const JobConfig *c, Err *e) {
    int rc = -1;
    Tokenizer *tok = NULL;
    Model *m = NULL;
    LemoPredictor *pred = NULL;
    float *pred_dev = NULL;
    Packed train = {0}, ev = {0};
    size_t *order = NULL;
    char path[4200];

    struct sigaction sa = {0};
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    if (fs_mkdirs(c->output_dir, e)) return -1;
    const Backend *be = backend_select(c->device, e);
    if (!be) return -1;
    snprintf(path, sizeof path, "%s/tokenizer.json", c->model);
    if (!(tok = tokenizer_load(path, e))) goto out;
    double t0 = now_s();
    if (load_data(c, tok, &train, &ev, e)) goto out;
    if (train.n == 0) { err_set_at(e, "train_file", 0, "train_file %s yields no training window", c->train_file); goto out; }
    progress_log("info", "data: %zu train windows, %zu eval windows of %d tokens (%.1f s)", train.n, ev.n,
                 c->context_length, now_s() - t0);

    LoraSpec spec = {c->lora.r, c->lora.alpha, c->lora.dropout, {0}};
    memcpy(spec.targets, c->lora.targets, sizeof spec.targets);
    const ActPolicy *act = &c->act;
    JobConfig planned;
    if (c->parallel.gpus > 1) {  // the config, layouts and estimate exist; the ranks' training does not yet
        err_set_at(e, "parallel.gpus", 0, "'parallel.gpus' %d: training one job on several GPUs is not built yet; "
                   "use 1 (lemo estimate prices %d)", c->parallel.gpus, c->parallel.gpus);
        goto out;
    }
    if (c->act_auto) {  // memory.auto: the fastest policy that fits this device, said in the log
        planned = *c;
        if (estimate_auto_policy(&planned, !strcmp(be->name, "cuda"), e)) goto out;
        act = &planned.act;
    }
    ModelConfig mc;
    LemoSpec lemo;
    if (model_config_load(c->model, &mc, e) || lemo_resolve(&c->lemo, mc.n_layers, &lemo, e)) goto out;
    // predictor scores: checked against this model and block before the model loads
    if (lemo.on && lemo.scores == LEMO_SCORES_PREDICTOR &&
        !(pred = lemo_predictor_load(c->lemo.predictor, c->model, &mc, lemo.block, "lemo.predictor", e)))
        goto out;
    if (!(m = model_load(be, c->model, c->has_rope_scaling ? &c->rope_scaling : NULL, c->context_length, &spec,
                         act, &lemo, c->seed, e)))
        goto out;
    if (pred) {  // the weights on the device for the step's scoring (model_layer.c)
        size_t bytes;
        if (!(pred_dev = lemo_predictor_upload(be, pred, &m->lemo, &bytes, e))) goto out;
        // named by its model, not its folder: the line reaches a service's events
        progress_log("info", "lemo: the predictor of %s (blocks of %d, trained at %d tokens, held-out recall %.3f)%s",
                     pred->model_name, pred->block, pred->context, (double)pred->recall_mean,
                     c->lemo.keep_auto ? ", its calibrated schedule" : "");
    }
    if (lemo.on) {  // what each layer's attention keeps, said once
        char what[400] = "";
        int n = 0, sparse = 0;
        for (int l = 0; l < mc.n_layers && n < (int)sizeof what - 16; l++) {
            n += snprintf(what + n, sizeof what - n, "%s%.2f", l ? " " : "", (double)m->rows[l] / c->context_length);
            sparse += m->rows[l] < c->context_length;
        }
        progress_log("info", "lemo: %s scores, blocks of %d tokens, %d of %d layers sparse; kept fraction per layer: %s",
                     lemo_score_names[lemo.scores], lemo.block, sparse, mc.n_layers, what);
    }
    if (c->act_auto) {
        int per[ACT_N] = {0};
        for (int l = 0; l < m->cfg.n_layers; l++) per[m->act.layer[l]]++;
        char what[200] = "";
        for (int a = ACT_N - 1, n = 0; a >= 0; a--)
            if (per[a]) n += snprintf(what + n, sizeof what - n, "%s%d %s", n ? ", " : "", per[a], act_names[a]);
        progress_log("info", "memory: auto picked %s layers%s", what,
                     per[ACT_KEEP] ? " (the last ones keep their activations: no recompute there)" : "");
    }

    TrainState st = {0};
    st.n_windows = train.n;
    st.seed = c->seed;
    st.total_steps = c->max_steps ? c->max_steps : (int)ceil(c->epochs * (double)train.n / c->grad_accum);
    if (st.total_steps < 1) st.total_steps = 1;
    char ckpt[4300] = "";
    if (!strcmp(c->resume_from, "auto")) {
        if (checkpoint_latest(c->output_dir, ckpt, sizeof ckpt)) ckpt[0] = 0;
    } else if (c->resume_from[0]) {
        snprintf(ckpt, sizeof ckpt, "%s", c->resume_from);
    }
    if (ckpt[0]) {
        TrainState saved;
        // resume_from auto: an unreadable checkpoint (a torn disk, a damaged file) falls back to
        // the one before it, and says so; one that loads but was made with other data or seed
        // is an error below, not a fallback
        while (checkpoint_load(m, ckpt, &saved, e)) {
            char prev[4300];
            const char *base = strrchr(ckpt, '/');
            long bad = base && !strncmp(base, "/step-", 6) ? atol(base + 6) : -1;
            if (strcmp(c->resume_from, "auto") || bad < 0 || checkpoint_latest_before(c->output_dir, bad, prev, sizeof prev))
                goto out;
            progress_log("warn", "checkpoint %s cannot be read (%s): resuming from %s, the one before it", ckpt, e->msg,
                         prev);
            snprintf(ckpt, sizeof ckpt, "%s", prev);
        }
        if (saved.n_windows != train.n || saved.seed != c->seed) {
            err_set_at(e, "resume_from", 0, "checkpoint %s was made with other data or seed", ckpt);
            goto out;
        }
        saved.total_steps = st.total_steps;
        st = saved;
        progress_log("info", "resumed from step %d (%s)", st.step, ckpt);
    }
    progress_emit(PROGRESS_START, json_pack("{s:i, s:i, s:I, s:I, s:I, s:s, s:i, s:I}", "total_steps", st.total_steps,
                                     "step", st.step, "train_windows", (json_int_t)train.n, "eval_windows",
                                     (json_int_t)ev.n, "trainable_params", (json_int_t)m->n_lora, "device",
                                     be->name, "context_length", c->context_length, "planned_bytes",
                                     (json_int_t)m->plan.total));

    order = malloc(sizeof(size_t) * train.n);
    data_shuffle_order(train.n, c->seed, st.epoch, order);
    double last_loss = NAN, last_eval = NAN, t_start = now_s();
    long long tokens_at_start = st.tokens;
    int last_ckpt = ckpt[0] ? st.step : -1;
    if (!ckpt[0] && c->eval_every) emit_eval(m, &ev, c, 0, &last_eval);  // the baseline of the eval curve
    while (st.step < st.total_steps && !stop_requested) {
        double ts = now_s();
        int step = st.step + 1;
        double lr = trainer_lr(c, st.step, st.total_steps);
        // windows of this step and their target count (for a mean over the whole step)
        size_t win[c->grad_accum];
        long total = 0;
        for (int i = 0; i < c->grad_accum; i++) {
            if (st.pos == train.n) {
                st.epoch++;
                st.pos = 0;
                data_shuffle_order(train.n, c->seed, st.epoch, order);
            }
            win[i] = order[st.pos++];
            total += count_targets(train.targets + win[i] * train.S, train.S);
        }
        model_zero_grads(m);
        double sum = 0;
        long hit = 0;
        for (int i = 0; i < c->grad_accum && total > 0; i++) {
            long cnt;
            uint64_t dseed = mix64(c->seed ^ mix64((uint64_t)step * 4096 + i));
            // LeMo picks each layer's blocks inside the step; random scores draw from this
            // window's seed, a function of the run's lemo seed, the step and the window
            LemoSelect sel = {LEMO_SEL_SCHEDULE, mix64(c->lemo.seed ^ mix64((uint64_t)step * 4096 + i) ^ 0x4C654D6Full), NULL, NULL};
            sum += model_step(m, train.inputs + win[i] * train.S, train.targets + win[i] * train.S, train.S, &sel, 1,
                              1, 1.0f / (float)total, dseed, &cnt);
            hit += m->n_correct;
        }
        double gnorm = sqrt(be->sumsq(m->lora_grads, m->n_lora));
        if (c->optim.grad_clip > 0 && gnorm > c->optim.grad_clip)
            be->scale(m->lora_grads, m->n_lora, (float)(c->optim.grad_clip / gnorm));
        be->adamw(m->lora_params, m->lora_grads, m->adam_m, m->adam_v, m->n_lora, (float)lr, c->optim.beta1,
                  c->optim.beta2, c->optim.eps, c->optim.weight_decay, step);
        be->sync();
        st.step = step;
        st.tokens += (long long)c->grad_accum * train.S;
        last_loss = total ? sum / total : NAN;
        double dt = now_s() - ts, el = now_s() - t_start;
        json_t *o = json_pack("{s:i, s:i, s:f, s:f, s:f, s:I, s:f, s:f, s:I, s:f}", "step", step, "total_steps",
                              st.total_steps, "loss", last_loss, "lr", lr, "grad_norm", gnorm, "tokens",
                              (json_int_t)st.tokens, "tokens_per_s", (double)c->grad_accum * train.S / dt,
                              "avg_tokens_per_s", (double)(st.tokens - tokens_at_start) / el, "mem_bytes",
                              (json_int_t)be->mem_used(), "elapsed_s", el);
        if (!strcmp(be->name, "cuda")) json_object_set_new(o, "gpu_mem_bytes", json_integer((json_int_t)be->mem_used()));
        // the share of the step's targets the model already predicted (argmax), before this update
        json_object_set_new(o, "accuracy", total ? json_real((double)hit / total) : json_null());
        if (lemo.on) {  // the share of tokens each layer's attention kept (DESIGN section 6)
            json_t *kf = json_array();
            for (int l = 0; l < m->cfg.n_layers; l++)
                json_array_append_new(kf, json_real((double)m->n_kept[l] / train.S));
            json_object_set_new(o, "kept_fraction", kf);
        }
        progress_emit(PROGRESS_STEP, o);
        if (c->eval_every && step % c->eval_every == 0 && step < st.total_steps) emit_eval(m, &ev, c, step, &last_eval);
        if (c->checkpoint_every && step % c->checkpoint_every == 0 && step < st.total_steps) {
            if (save_checkpoint(m, c, &st, e)) goto out;
            last_ckpt = step;
        }
    }
    if (stop_requested && st.step < st.total_steps) {
        if (last_ckpt != st.step && save_checkpoint(m, c, &st, e)) goto out;
        snprintf(path, sizeof path, "%s/checkpoints/step-%d", c->output_dir, st.step);
        progress_emit(PROGRESS_CANCELLED, json_pack("{s:i, s:s}", "step", st.step, "checkpoint", path));
        rc = 0;
        goto out;
    }
    emit_eval(m, &ev, c, st.step, &last_eval);
    if (last_ckpt != st.step && save_checkpoint(m, c, &st, e)) goto out;
    if (export_adapter(m, c, path, sizeof path, e)) goto out;
    json_t *done = json_pack("{s:i, s:s, s:I}", "step", st.step, "adapter_dir", path, "tokens", (json_int_t)st.tokens);
    json_object_set_new(done, "train_loss", isnan(last_loss) ? json_null() : json_real(last_loss));
    json_object_set_new(done, "eval_loss", isnan(last_eval) ? json_null() : json_real(last_eval));
    progress_emit(PROGRESS_DONE, done);
    rc = 0;
out:
    free(order);
    packed_free(&train);
    packed_free(&ev);
    if (pred_dev) be->free(pred_dev);
    lemo_predictor_free(pred);
    model_free(m);
    tokenizer_free(tok);
    return rc;
}
