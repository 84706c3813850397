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
