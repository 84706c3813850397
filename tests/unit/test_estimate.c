/* test_estimate.c: the job estimate (engine/training/estimate.c) for a Llama-2-7B shape, from its
 * config.json alone (no weights). The device peak is the memory plan plus the runtime and
 * the ops' scratch, and the breakdown adds up to it; on CUDA the plan holds the attention
 * backward's workspace (its fp32 dQ accumulator, in the layers' dead MLP buffers), so the
 * ops' scratch block is only the fused loss's chunk; offloading moves the layer checkpoints
 * to host memory; the largest context that fits is the last multiple of 256 tokens whose
 * peak is within the budget. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cuda/backend_cuda.h"
#include "estimate.h"
#include "model.h"
#include "partition.h"
#include "tiny_model.h"

static char dir[64];

static size_t num(json_t *o, const char *path) {
    char buf[64];
    snprintf(buf, sizeof buf, "%s", path);
    char *dot = strchr(buf, '.');
    if (dot) {
        *dot = 0;
        o = json_object_get(o, buf);
        path = dot + 1;
    }
    json_t *v = json_object_get(o, path);
    CHECK(json_is_integer(v), "estimate has no integer %s", path);
    return v ? (size_t)json_integer_value(v) : 0;
}

/* The estimate of a LoRA r 8 q,k,v,o job of S tokens with checkpoints on the device or
 * offloaded, for `device` with mem bytes; NULL (and a failed check) on error. */
static json_t *estimate_host(int S, const char *memory, const char *device, size_t mem, size_t host) {
    char text[1024];
    snprintf(text, sizeof text,
             "{\"model\":\"%s\",\"train_file\":\"%s/train.jsonl\",\"output_dir\":\"%s/out\",\"context_length\":%d,"
             "\"max_steps\":1,\"lora\":{\"r\":8,\"alpha\":16,\"dropout\":0,\"target_modules\":[\"q_proj\",\"k_proj\","
             "\"v_proj\",\"o_proj\"]},\"memory\":%s}",
             dir, dir, dir, S, memory);
    JobConfig jc;
    Err e = {0};
    json_t *out = NULL;
    int rc = job_config_parse(text, &jc, &e);
    CHECK(rc == 0, "job config: %s", e.msg);
    if (!rc) rc = estimate_job(&jc, device, mem, host, 0, &out, &e);
    CHECK(rc == 0 && out, "estimate: %s", e.msg);
    return rc ? NULL : out;
}
static json_t *estimate_mem(int S, const char *memory, const char *device, size_t mem) {
    return estimate_host(S, memory, device, mem, 0);
}
static json_t *estimate(int S, int offload, const char *device, size_t mem) {
    return estimate_mem(S, offload ? "{\"checkpointing\":true,\"offload\":true}" : "{\"checkpointing\":true}", device,
                        mem);
}

/* Layers the estimate puts under activation policy `name` (memory_layers). */
static int layers_under(json_t *o, const char *name) {
    json_t *v = json_object_get(json_object_get(o, "memory_layers"), name);
    return v ? (int)json_integer_value(v) : 0;
}

/* memory.auto: on an 80 GiB device at 16K the long-context base (attention outputs offloaded,
 * when this host holds them) plus as many kept last layers as fit 90% of the device, one more
 * would not; a device too small for anything gets the most frugal policy and does not fit; the
 * CPU keeps every layer of a model that fits its memory. */
static void auto_policy_checks(size_t mem) {
    json_t *a = estimate_mem(16384, "{\"auto\":true}", "cuda", mem);
    if (!a) return;
    int keep = layers_under(a, "keep"), oa = layers_under(a, "offload_attention"), rec = layers_under(a, "recompute");
    size_t host_mem = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    json_t *o = estimate_mem(16384, "{\"checkpointing\":true,\"offload\":true,\"offload_attention\":true}", "cuda", mem);
    int oa_fits = o && num(o, "host_bytes") + ((size_t)1 << 30) < host_mem * 0.9;
    CHECK(keep > 0 && keep + (oa_fits ? oa : rec) == 32,
          "auto at 16K on 80 GiB: %d keep, %d offload_attention, %d recompute (host holds the attention outputs: %d)", keep,
          oa, rec, oa_fits);
    // untiled, one more kept layer (its activations, less the tile it would use anyway) would
    // pass 90% of the device; with MLP tiles every layer may fit
    int tiles = (int)num(a, "mlp_tiles");
    size_t peak = num(a, "peak_bytes"), set = (size_t)16384 * 2 * (2 * 4096 + 4 * 4096 + 3 * 11008);
    CHECK(peak <= mem * 0.9 && (keep == 32 || peak + set + 16384 * 4096 * 2 > mem * 0.9),
          "auto at 16K: peak %.2f GiB should fill 90%% of %.0f GiB within one layer's activations (%d kept, %d tiles)",
          peak / 1073741824.0, mem / 1073741824.0, keep, tiles);
    CHECK(json_is_true(json_object_get(a, "fits")), "auto at 16K should fit 80 GiB");
    // auto's pick is at least as fast by the estimate as every uniform policy that fits
    static const char *const uniform[] = {"{\"checkpointing\":true}", "{\"checkpointing\":true,\"mlp_tiles\":4}",
                                          "{\"checkpointing\":true,\"offload\":true,\"offload_attention\":true}"};
    for (int i = 0; i < 3; i++) {
        json_t *u = estimate_mem(16384, uniform[i], "cuda", mem);
        if (u && json_is_true(json_object_get(u, "fits")))
            CHECK(json_number_value(json_object_get(a, "est_seconds")) <= json_number_value(json_object_get(u, "est_seconds")),
                  "auto (%d kept, %d tiles) is slower by the estimate than %s", keep, tiles, uniform[i]);
        json_decref(u);
    }
    json_decref(a);
    json_decref(o);

    json_t *small = estimate_mem(16384, "{\"auto\":true}", "cuda", (size_t)14 << 30);
    CHECK(small && layers_under(small, "offload") == 32 && json_is_false(json_object_get(small, "fits")),
          "auto on a 14 GiB device: the most frugal policy, not fitting");
    json_decref(small);

    json_t *cpu = estimate_mem(1024, "{\"auto\":true}", "cpu", (size_t)1 << 40);
    CHECK(cpu && layers_under(cpu, "keep") == 32, "auto on the CPU with a terabyte: every layer kept (%d)",
          cpu ? layers_under(cpu, "keep") : -1);
    json_decref(cpu);
}

/* memory.auto past what one policy for every layer fits: at 256K tokens on an 80 GiB device
 * with a 64 GiB host the checkpoints of all layers fill the device (2 GiB each) and the
 * offloaded ones would fill the host; auto offloads some and keeps the others' on the device,
 * within both, and the largest context is past 256K. */
static void auto_mixed_checks(void) {
    size_t dev = (size_t)80 << 30, host = (size_t)64 << 30;
    const char *uniform[] = {"{\"checkpointing\":true}", "{\"checkpointing\":true,\"offload\":true,\"mlp_tiles\":64}"};
    for (int i = 0; i < 2; i++) {
        json_t *u = estimate_host(262144, uniform[i], "cuda", dev, host);
        CHECK(u && json_is_false(json_object_get(u, "fits")), "256K with %s should not fit 80 GiB + 64 GiB", uniform[i]);
        json_decref(u);
    }
    json_t *a = estimate_host(262144, "{\"auto\":true}", "cuda", dev, host);
    if (!a) return;
    int rec = layers_under(a, "recompute"), off = layers_under(a, "offload") + layers_under(a, "offload_attention");
    CHECK(rec > 0 && off > 0 && rec + off + layers_under(a, "keep") == 32,
          "auto at 256K: %d recompute, %d offloaded, %d keep", rec, off, layers_under(a, "keep"));
    CHECK(json_is_true(json_object_get(a, "fits")) && num(a, "peak_bytes") <= dev * 0.95 && num(a, "host_bytes") <= host * 0.9,
          "auto at 256K: peak %.1f GiB, host %.1f GiB should fit", num(a, "peak_bytes") / 1073741824.0,
          num(a, "host_bytes") / 1073741824.0);
    int max = (int)num(a, "max_context_length");
    CHECK(max >= 262144, "auto's largest context %d should reach 256K", max);
    json_t *at = estimate_host(max, "{\"auto\":true}", "cuda", dev, host);
    json_t *past = estimate_host(max + 256, "{\"auto\":true}", "cuda", dev, host);
    CHECK(at && past && json_is_true(json_object_get(at, "fits")) && json_is_false(json_object_get(past, "fits")),
          "auto fits its largest context %d and not 256 tokens more", max);
    json_decref(at);
    json_decref(past);
    json_decref(a);
}

/* The estimate of the same job with `extra` keys (",\"parallel\":{...}" and the like) on a CUDA
 * device of mem bytes; NULL with err_param set when it fails. */
static char err_param[128];
static json_t *estimate_extra(int S, const char *extra, size_t mem) {
    char text[1400];
    snprintf(text, sizeof text,
             "{\"model\":\"%s\",\"train_file\":\"%s/train.jsonl\",\"output_dir\":\"%s/out\",\"context_length\":%d,"
             "\"max_steps\":1,\"lora\":{\"r\":8,\"alpha\":16,\"dropout\":0,\"target_modules\":[\"q_proj\",\"k_proj\","
             "\"v_proj\",\"o_proj\"]}%s}",
             dir, dir, dir, S, extra);
    JobConfig jc;
    Err e = {0};
    json_t *out = NULL;
    err_param[0] = 0;
    if (job_config_parse(text, &jc, &e) || estimate_job(&jc, "cuda", mem, (size_t)1 << 40, ESTIMATE_MEMORY_ONLY, &out, &e)) {
        snprintf(err_param, sizeof err_param, "%s", e.param);
        return NULL;
    }
    return out;
}

/* Several GPUs, priced per GPU. Context parallel: the peak falls with N and the largest context
 * grows about N-fold (the weights stay whole on every GPU, so a little less); data parallel:
 * the one-GPU peak plus NCCL's buffers, the same largest context (within them). */
static void parallel_checks(void) {
    size_t mem = (size_t)80 << 30;
    const int S = 65536;
    json_t *one = estimate_extra(S, "", mem);
    if (!one) { CHECK(0, "one-GPU estimate: %s", err_param); return; }
    size_t peak1 = num(one, "peak_bytes"), max1 = num(one, "max_context_length");
    CHECK(!json_object_get(one, "parallel") && !json_object_get(json_object_get(one, "breakdown"), "nccl"),
          "one GPU: no parallel part");
    size_t prev = peak1, max_prev = max1;
    for (int N = 2; N <= 8; N *= 2) {
        char x[200];
        snprintf(x, sizeof x, ",\"parallel\":{\"gpus\":%d,\"mode\":\"context\"}", N);
        json_t *c = estimate_extra(S, x, mem);
        if (!c) { CHECK(0, "context over %d: %s", N, err_param); continue; }
        size_t peak = num(c, "peak_bytes"), mx = num(c, "max_context_length");
        json_t *par = json_object_get(c, "parallel");
        CHECK(par && !strcmp(json_string_value(json_object_get(par, "mode")), "context") &&
                  num(par, "rows_per_gpu") == (size_t)S / N && num(par, "per_gpu_peak_bytes") == peak,
              "context over %d: parallel part", N);
        CHECK(peak < prev, "context over %d: per-GPU peak %.2f GiB not below %.2f GiB", N, peak / 1073741824.0,
              prev / 1073741824.0);
        double grow = (double)mx / max1;
        CHECK(grow >= 0.75 * N && grow <= 1.0 * N, "context over %d: largest context %zu, %.2fx one GPU's %zu", N, mx,
              grow, max1);
        CHECK(mx > max_prev && mx % (2 * N * 64) == 0, "context over %d: largest context %zu", N, mx);
        // the activations, checkpoints and loss chunk are one rank's rows; the ring and NCCL beside them
        const char *parts[] = {"weights", "lora_and_optimizer", "layer_checkpoints", "activations", "loss_chunk",
                               "tokens_and_data", "runtime", "nccl", "context_ring"};
        size_t sum = 0;
        char key[64];
        for (int i = 0; i < 9; i++) {
            snprintf(key, sizeof key, "breakdown.%s", parts[i]);
            sum += num(c, key);
        }
        CHECK(sum == peak, "context over %d: breakdown sums to %zu, peak %zu", N, sum, peak);
        json_t *rows = estimate_extra(S / N, "", mem);  // one GPU at S / N rows: the same plan
        if (rows) {
            size_t ring = num(c, "breakdown.context_ring"), kv = (size_t)(S / N) * 4096;
            CHECK(num(c, "breakdown.layer_checkpoints") == num(rows, "breakdown.layer_checkpoints") &&
                      num(c, "breakdown.activations") == num(rows, "breakdown.activations"),
                  "context over %d: a rank plans S/N rows", N);
            // the backward's set, the larger: two K/V shards in bf16 with their fp32 dK/dV
            CHECK(ring == 2 * 2 * kv * 2 + 2 * 2 * kv * 4,
                  "context over %d: ring buffers %zu", N, ring);
            CHECK(peak == num(rows, "peak_bytes") + ring + num(c, "breakdown.nccl"), "context over %d: peak", N);
            json_decref(rows);
        }
        fprintf(stderr, "7B, 64K over %d GPUs (context): %.2f GiB a GPU, largest context %zu (%.2fx)\n", N,
                peak / 1073741824.0, mx, grow);
        prev = peak, max_prev = mx;
        json_decref(c);

        // data parallel: each rank a one-GPU job, plus NCCL
        snprintf(x, sizeof x, ",\"grad_accum\":%d,\"parallel\":{\"gpus\":%d,\"mode\":\"data\"}", N, N);
        json_t *d = estimate_extra(S, x, mem);
        if (!d) { CHECK(0, "data over %d: %s", N, err_param); continue; }
        size_t nccl = num(d, "breakdown.nccl"), dmax = num(d, "max_context_length");
        CHECK(nccl > 0 && num(d, "peak_bytes") == peak1 + nccl && !json_object_get(json_object_get(d, "breakdown"), "context_ring"),
              "data over %d: peak %zu, one GPU %zu + NCCL %zu", N, num(d, "peak_bytes"), peak1, nccl);
        CHECK(dmax <= max1 && dmax + 8192 >= max1, "data over %d: largest context %zu, one GPU %zu", N, dmax, max1);
        json_decref(d);
    }
    json_decref(one);

    // LeMo in context parallel: every layer kept (memory keep), so the sparse layers' kept
    // rows show in the plan; a rank plans its share of the kept blocks (410 of 1024 at 64K,
    // re-dealt in whole blocks over 8 chunks: at most 103 a rank of its 256), not all of them,
    // plus the re-deal's buffers of those rows
    const char *keep = ",\"memory\":{\"checkpointing\":false}";
    char x1[200], x4[200], xd[200];
    snprintf(x1, sizeof x1, "%s,\"lemo\":{\"keep\":0.4}", keep);
    snprintf(x4, sizeof x4, "%s,\"lemo\":{\"keep\":0.4},\"parallel\":{\"gpus\":4,\"mode\":\"context\"}", keep);
    snprintf(xd, sizeof xd, "%s,\"parallel\":{\"gpus\":4,\"mode\":\"context\"}", keep);
    json_t *l1 = estimate_extra(S, x1, mem), *l4 = estimate_extra(S, x4, mem), *d4 = estimate_extra(S, xd, mem);
    json_t *lq = estimate_extra(S / 4, x1, mem);  // one GPU at S/4 rows keeping 0.4 of them
    if (l1 && l4 && d4 && lq) {
        size_t a1 = num(l1, "breakdown.activations"), a4 = num(l4, "breakdown.activations");
        size_t ad = num(d4, "breakdown.activations"), aq = num(lq, "breakdown.activations");
        CHECK(a4 < ad && a4 < a1 / 3 && a4 > aq,
              "LeMo over 4 GPUs: a rank's activations %zu below dense's %zu and a quarter of one GPU's %zu, above the "
              "0.4 of S/4 rows' %zu (the largest share of 410 blocks is 103 of 256)", a4, ad, a1, aq);
        ParSplit redeal = par_split(PAR_ZIGZAG, 410 * 64, 4, 64);
        CHECK(par_max_rows(&redeal) == 103 * 64, "410 blocks over 4 ranks: %d rows at most", par_max_rows(&redeal));
        CHECK(num(l4, "breakdown.context_ring") == num(d4, "breakdown.context_ring") + 2 * (size_t)103 * 64 * 4096 * 2,
              "LeMo over 4 GPUs: the ring plus the re-deal of 103 blocks of h");
    } else {
        CHECK(0, "LeMo estimates: %s", err_param);
    }
    json_decref(l1), json_decref(l4), json_decref(d4), json_decref(lq);

    // auto: context when a window does not fit one GPU, data when it does and the step has a
    // window per GPU
    json_t *a = estimate_extra(262144, ",\"grad_accum\":4,\"parallel\":{\"gpus\":4}", mem);
    json_t *b = estimate_extra(4096, ",\"grad_accum\":4,\"parallel\":{\"gpus\":4}", mem);
    CHECK(a && !strcmp(json_string_value(json_object_get(json_object_get(a, "parallel"), "mode")), "context") &&
              json_is_true(json_object_get(a, "fits")),
          "auto at 256K over 4 GPUs: context, fitting");
    CHECK(b && !strcmp(json_string_value(json_object_get(json_object_get(b, "parallel"), "mode")), "data"),
          "auto at 4K over 4 GPUs with 4 windows a step: data");
    json_decref(a), json_decref(b);
    // offloaded checkpoints: every rank's pinned memory counts on the host
    json_t *o = estimate_extra(S, ",\"memory\":{\"offload\":true},\"parallel\":{\"gpus\":4,\"mode\":\"context\"}", mem);
    CHECK(o && num(json_object_get(o, "parallel"), "host_bytes_all_gpus") >= 4 * num(o, "host_bytes"),
          "four ranks' offloads on the host");
    json_decref(o);
    // on the CPU several GPUs are an error naming the field
    char text[600];
    snprintf(text, sizeof text, "{\"model\":\"%s\",\"train_file\":\"%s/train.jsonl\",\"output_dir\":\"%s/out\","
             "\"grad_accum\":2,\"parallel\":{\"gpus\":2}}", dir, dir, dir);
    JobConfig jc;
    Err e = {0};
    json_t *out = NULL;
    CHECK(job_config_parse(text, &jc, &e) == 0 && estimate_job(&jc, "cpu", mem, 0, ESTIMATE_MEMORY_ONLY, &out, &e) == -1 &&
              !strcmp(e.param, "parallel.gpus"),
          "2 GPUs estimated on the CPU: %s", e.msg);
    json_decref(out);
}

int main(void) {
    strcpy(dir, "/tmp/lemo-estimate-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    if (llama7b_config_write(dir)) return 1;
    char path[128];
    snprintf(path, sizeof path, "%s/train.jsonl", dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 100; i++) fputs("{\"text\":\"a line of training text for the estimate\"}\n", f);
    fclose(f);
    ModelConfig mc;
    Err e = {0};
    CHECK(model_config_load(dir, &mc, &e) == 0, "config: %s", e.msg);

    size_t mem = (size_t)80 << 30;
    LoraSpec spec = {8, 16, 0, {1, 1, 1, 1, 0, 0, 0}};
    size_t prev_peak = 0;
    for (int S = 4096; S <= 65536; S *= 4) {
        json_t *ck = estimate(S, 0, "cuda", mem), *of = estimate(S, 1, "cuda", mem);
        if (!ck || !of) break;
        size_t peak = num(ck, "peak_bytes");
        const char *parts[] = {"weights", "lora_and_optimizer", "layer_checkpoints", "activations", "loss_chunk",
                               "tokens_and_data", "runtime"};
        size_t sum = 0;
        char key[64];
        for (int i = 0; i < 7; i++) {
            snprintf(key, sizeof key, "breakdown.%s", parts[i]);
            sum += num(ck, key);
        }
        CHECK(sum == peak, "S %d: breakdown sums to %zu, peak %zu", S, sum, peak);
        CHECK(peak > prev_peak, "S %d: peak %zu not above the shorter context's", S, peak);
        prev_peak = peak;

        // the plan carries the attention workspace; the gradient block is dx, dh2, dok
        MemPlan p;
        BackendSizes cuda_sizes = cuda_backend_sizes();
        model_plan(&mc, S, &spec, &(ActPolicy){.all = ACT_RECOMPUTE}, NULL, &cuda_sizes, &p);
        CHECK(p.attn_in_mlp && p.grads == (size_t)3 * S * mc.hidden * 2, "S %d: gradient block %zu bytes", S, p.grads);
        CHECK(num(ck, "breakdown.activations") == p.activations + p.grads, "S %d: activations %zu, plan %zu", S,
              num(ck, "breakdown.activations"), p.activations + p.grads);
        // the scratch block: the loss chunk (fp32 logits + bf16 dlogits of <= 256 MiB, S row
        // losses) with cuda_scratch's 1.25x headroom, in MiB; no (S, NH, HS) fp32 accumulator
        size_t scratch = num(ck, "breakdown.loss_chunk") - p.loss;
        size_t rows = ((size_t)256 << 20) / ((size_t)mc.vocab * 6) / 64 * 64;
        size_t chunk = rows * mc.vocab * 6 + 4 * (size_t)S;
        CHECK(scratch >= chunk && scratch <= chunk + chunk / 4 + ((size_t)2 << 20), "S %d: scratch %zu for a %zu chunk",
              S, scratch, chunk);
        CHECK(S < 65536 || scratch < (size_t)S * mc.n_heads * mc.head_dim * 4,
              "S %d: scratch %zu still holds the dQ accumulator", S, scratch);

        // offloading: L-1 layer inputs in host memory, two slots on the device against L (the
        // final residual of a recomputed last layer lives in its activations)
        size_t slot = (size_t)S * mc.hidden * 2;
        CHECK(num(of, "host_bytes") == (size_t)(mc.n_layers - 1) * slot, "S %d: host bytes %zu", S,
              num(of, "host_bytes"));
        CHECK(peak - num(of, "peak_bytes") == (size_t)(mc.n_layers - 2) * slot, "S %d: offload saves %zu bytes", S,
              peak - num(of, "peak_bytes"));
        fprintf(stderr, "7B, S %6d: peak %.2f GiB, offloaded %.2f GiB\n", S, peak / 1073741824.0,
                num(of, "peak_bytes") / 1073741824.0);
        json_decref(ck);
        json_decref(of);
    }

    // the largest context that fits: its own estimate fits the 95% budget, 256 more does not
    json_t *o = estimate(4096, 0, "cuda", mem);
    int max_ctx = o ? (int)num(o, "max_context_length") : 0;
    json_decref(o);
    CHECK(max_ctx > 65536, "80 GiB: largest context %d", max_ctx);
    json_t *at = estimate(max_ctx, 0, "cuda", mem), *over = estimate(max_ctx + 256, 0, "cuda", mem);
    CHECK(at && json_is_true(json_object_get(at, "fits")), "context %d should fit", max_ctx);
    CHECK(over && json_is_false(json_object_get(over, "fits")), "context %d should not fit", max_ctx + 256);
    json_decref(at);
    json_decref(over);

    // offloaded on CUDA the pinned checkpoints must fit this machine's memory as well: with a
    // device of a petabyte the host is what limits the context
    size_t host_mem = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    size_t slot = (size_t)65536 * mc.hidden * 2, huge = (size_t)1 << 50;
    int big = (int)((host_mem / ((size_t)(mc.n_layers - 1) * (slot / 65536)) + 65536) / 256 * 256);
    json_t *hb = estimate(big, 1, "cuda", huge);
    if (hb) {
        CHECK(num(hb, "host_mem_bytes") == host_mem, "host memory %zu, this machine has %zu", num(hb, "host_mem_bytes"),
              host_mem);
        CHECK(json_is_true(json_object_get(hb, "device_fits")), "context %d: a petabyte device should fit", big);
        CHECK(num(hb, "host_bytes") > host_mem && json_is_false(json_object_get(hb, "fits")),
              "context %d needs %zu host bytes of %zu: must not fit", big, num(hb, "host_bytes"), host_mem);
        int hmax = (int)num(hb, "max_context_length");
        json_t *at2 = estimate(hmax, 1, "cuda", huge);
        CHECK(hmax > 0 && hmax < big && at2 && json_is_true(json_object_get(at2, "fits")) &&
                  num(at2, "host_bytes") <= host_mem,
              "largest offloaded context %d should fit this host", hmax);
        json_decref(at2);
        json_decref(hb);
    }

    auto_policy_checks(mem);
    auto_mixed_checks();
    parallel_checks();

    // the CPU plans fp32 with its own (NH, S) attention workspace, and counts the dataset
    json_t *cpu = estimate(4096, 0, "cpu", mem);
    if (cpu) {
        MemPlan p;
        BackendSizes cpu_sizes = backend_sizes(backend_cpu());
        model_plan(&mc, 4096, &spec, &(ActPolicy){.all = ACT_RECOMPUTE}, NULL, &cpu_sizes, &p);
        CHECK(num(cpu, "peak_bytes") > p.total, "cpu peak %zu below its plan %zu", num(cpu, "peak_bytes"), p.total);
        CHECK(num(cpu, "breakdown.activations") == p.activations + p.grads, "cpu activations %zu",
              num(cpu, "breakdown.activations"));
        json_decref(cpu);
    }

    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/train.jsonl", dir);
    unlink(path);
    rmdir(dir);
    return check_done("test_estimate");
}
