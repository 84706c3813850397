/* estimate.c: predict a job's peak memory and duration without running it
 * (`lemo estimate` and the service's dry run).
 *
 * Memory is model_plan's exact byte count for each category (the trainer allocates exactly
 * these, once; the attention backward's workspace, on CUDA its fp32 dQ accumulator, is part
 * of the plan) plus what the runtime itself holds: on the CPU the process baseline and the
 * tokenized dataset; on CUDA the context, the cuBLAS workspace and the ops' scratch block.
 * Each backend says its own sizes (BackendSizes: workspaces, scratch, runtime; CUDA's from
 * kernels/cuda/backend_cuda.h in plain C, so no GPU or CUDA library is needed here). With offloaded layer checkpoints their
 * pinned host memory is reported apart (host_bytes), not in the device peak, and must fit
 * this machine's memory too: `fits` and the largest context account for both. Time is the step's FLOPs
 * over a throughput: on the CPU measured here with a short sgemm; on CUDA the rates an H100
 * sustains for the linear layers and for our attention forward and backward. The largest context that fits is found by bisection on the plan.
 *
 * Several GPUs ("parallel", DESIGN section 11) are priced per GPU: the peak is one rank's, the
 * host holds every rank's process. Data parallel: each rank is a one-GPU job (whole windows),
 * plus NCCL's buffers. Context parallel: each rank plans S/N rows (activations, checkpoints,
 * the loss chunk; a LeMo layer its share of the kept blocks, re-dealt over the ranks), plus the
 * ring's buffers (ring_bytes) and NCCL's; the largest context is then the longest window whose
 * per-rank share fits, in steps of whole zigzag splits. */
#include "clock.h"
#include "estimate.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cuda/backend_cuda.h"  // cuda_backend_sizes: plain C, no GPU or CUDA library needed
#include "model.h"
#include "parallel.h"
#include "partition.h"

// CUDA rates in training, from `make bench` (bench/RESULTS.md, 2026-11-27): the linear layers
// through cuBLAS bf16 (H100), our attention forward and backward, both on wgmma (H200: the
// forward 651 / 590 TFLOP/s at 16K / 64K tokens, the backward 340 / 344)
#define CUDA_GEMM_FLOPS 600e12
#define CUDA_ATT_FWD_FLOPS 600e12
#define CUDA_ATT_BWD_FLOPS 340e12

// What an NCCL communicator holds on each GPU: per channel and peer its send/receive buffers
// (NCCL_BUFFSIZE 4 MiB for the Simple protocol, plus LL and LL128), up to 32 channels over
// NVLink, and the p2p channels of send/recv. Not measured yet (the multi-GPU run will): priced
// at 512 MiB per rank whenever a job has more than one.
#define NCCL_RUNTIME_BYTES ((size_t)512 << 20)

static double now_s(void) { return clock_mono_s(); }

/* Ranks a window is split over: parallel.gpus in context parallel, else 1. The mode must be
 * resolved (estimate_job resolves "auto" first; unresolved counts as whole windows). */
static int ctx_ranks(const JobConfig *jc) {
    return jc->parallel.mode == PAR_MODE_CONTEXT && jc->parallel.gpus > 1 ? jc->parallel.gpus : 1;
}

/* sgemm rate of this machine, from a ~0.2 s probe (what the CPU trainer spends its time in). */
static double cpu_flops(void) {
    int n = 384;
    float *a = calloc((size_t)n * n, 4), *b = calloc((size_t)n * n, 4), *c = calloc((size_t)n * n, 4);
    for (int i = 0; i < n * n; i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
    int reps = 0;
    double t0 = now_s(), t;
    do {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        reps++;
    } while ((t = now_s() - t0) < 0.2);
    free(a); free(b); free(c);
    return 2.0 * n * n * n * reps / t;
}

/* FLOPs of one training window of S tokens (forward, the recompute before each layer's
 * backward, backward of inputs and LoRA; no base-weight gradients), split into the GEMM part
 * and attention, which run at different rates. The recompute skips the down projection
 * unless a down_proj adapter needs it, and with ACT_OFFLOAD_ATT the attention forward; a
 * kept layer (ACT_KEEP) is not recomputed. A LeMo layer keeping n of the S rows runs its
 * q, k, v, o projections over n rows and attention over n; with exact scores its first
 * forward adds the q, k projections of all S rows and the causal half of their QK^T
 * (the scoring kernel, priced at the attention forward's rate). */
typedef struct { double gemm, att_fwd, att_bwd; } StepFlops;
static StepFlops step_flops(const ModelConfig *c, double S, const ActPolicy *act, const LemoSpec *z,
                            int down_adapter) {
    double C = c->hidden, Q = (double)c->n_heads * c->head_dim, KV = (double)c->n_kv_heads * c->head_dim;
    double mlp = 2 * S * 3 * C * c->ffn, head = 2 * S * C * c->vocab;
    StepFlops f = {2 * head, 0, 0};
    for (int l = 0; l < c->n_layers; l++) {
        double n = lemo_rows(z, l, (int)S);
        double lin = 2 * n * (C * Q * 2 + C * KV * 2) + mlp;  // this layer's linear layers
        double att = 2 * 2 * n * (n / 2) * Q;                 // QK^T and PV over the causal half
        f.gemm += 2 * lin;
        f.att_fwd += att;
        f.att_bwd += 2.5 * att;
        if (n < S && z->scores == LEMO_SCORES_EXACT) {
            f.gemm += 2 * S * C * (Q + KV);
            f.att_fwd += 2 * S * (S / 2) * Q;
        }
        int p = act_layer(act, l);
        // with MLP tiles the backward recomputes gate and up of every tile (and the down
        // adapter's product) and the recompute skips the MLP: the same FLOPs for a recomputed
        // layer, 2 GEMMs more for a kept one
        if (act_tiles(act) > 1) f.gemm += 4 * S * C * c->ffn;
        if (p == ACT_KEEP) continue;
        f.gemm += lin - (act_tiles(act) > 1 ? mlp : down_adapter ? 0 : 2 * S * C * c->ffn);
        if (p != ACT_OFFLOAD_ATT) f.att_fwd += att;
    }
    return f;
}

/* Seconds of one window. The CPU runs GEMMs through OpenBLAS at ~0.9 of the probed sgemm rate
 * and attention (blocked sgemm + online softmax) at ~0.35 of it (kernels/cpu/attention.c, measured on
 * refmodel-22m shapes); CUDA at the rates measured for each part (3-7% under the measured
 * Llama-2-7B-shape steps at 4K-64K tokens on an H200: elementwise ops are not counted). */
static double window_seconds(const ModelConfig *c, double S, const ActPolicy *act, const LemoSpec *z,
                             int down_adapter, int cuda, double cpu_rate) {
    StepFlops f = step_flops(c, S, act, z, down_adapter);
    if (cuda) return f.gemm / CUDA_GEMM_FLOPS + f.att_fwd / CUDA_ATT_FWD_FLOPS + f.att_bwd / CUDA_ATT_BWD_FLOPS;
    return f.gemm / (0.9 * cpu_rate) + (f.att_fwd + f.att_bwd) / (0.35 * cpu_rate);
}

/* The backend's scratch beside the plan (Backend.scratch_bytes) for this job's LoRA. */
static size_t scratch_for(const ModelConfig *mc, const LoraSpec *l, int S, const BackendSizes *bs) {
    int K[JOB_MAX_TARGETS], N[JOB_MAX_TARGETS], n = 0;
    int C = mc->hidden, Q = mc->n_heads * mc->head_dim, KV = mc->n_kv_heads * mc->head_dim, F = mc->ffn;
    const int ins[JOB_MAX_TARGETS] = {C, C, C, Q, C, C, F}, outs[JOB_MAX_TARGETS] = {Q, KV, KV, C, F, F, C};
    for (int t = 0; t < JOB_MAX_TARGETS; t++)
        if (l->targets[t]) K[n] = ins[t], N[n++] = outs[t];
    return bs->scratch_bytes(S, mc->vocab, l->r, n, K, N, l->dropout);
}

/* The job's LeMo schedule for this model (dense when the config's layer count is off: the
 * estimate then prices the dense job, and the trainer names the error). */
static LemoSpec lemo_for(const ModelConfig *mc, const JobConfig *jc) {
    LemoSpec z;
    Err e;
    if (lemo_resolve_planned(&jc->lemo, mc->n_layers, &z, &e)) {
        LemoConfig off = jc->lemo;
        off.on = 0;
        lemo_resolve(&off, mc->n_layers, &z, &e);
    }
    return z;
}

/* Context parallel over N ranks, a window of S rows: the schedule one rank plans with at its
 * S / N rows. A sparse layer's kb kept blocks (of the whole window: the top-k is global) are
 * re-dealt zigzag over the kept list in whole blocks, so a rank holds at most the largest
 * share, par_max_rows of the kept rows; its keep fraction becomes that share over its own
 * S / N rows (lemo_rows then gives exactly those rows). Dense layers stay dense. */
static LemoSpec lemo_rank(const LemoSpec *z, int S, int N) {
    LemoSpec r = *z;
    if (!z->on || N == 1) return r;
    int nb_local = S / N / z->block;
    for (int l = 0; l < z->n_layers; l++) {
        int kept = lemo_rows(z, l, S);
        if (kept >= S) continue;
        ParSplit p = par_split(PAR_ZIGZAG, kept, N, z->block);
        int blocks = par_max_rows(&p) / z->block;
        r.keep[l] = blocks >= nb_local ? 1.0f : (float)blocks / (float)nb_local;
    }
    return r;
}

/* The most rows one rank's attention holds in a window of S rows split over N: over every
 * layer, or (sparse) over the layers that keep less than all (0 when none does). */
static int rank_att_rows(const LemoSpec *z, const LemoSpec *zr, int n_layers, int S, int N, int sparse) {
    int m = 0;
    for (int l = 0; l < n_layers; l++) {
        if (sparse && lemo_rows(z, l, S) >= S) continue;
        int n = lemo_rows(zr, l, S / N);
        m = n > m ? n : m;
    }
    return m;
}

/* Context parallel's buffers beside a rank's plan, for attention over n rows a rank, shared by
 * the layers (one runs at a time). The forward (and the recompute): the K/V shard attended to
 * and the one arriving (2 x (k, v) of n rows), the merged output in fp32 (n x NH*HS) with its
 * log-sum-exp and the arriving partial's (2 x NH x n fp32), and one shard's partial output
 * (act). The backward: the two K/V shards again, with the dK/dV accumulators that travel with
 * them (2 x (dk, dv) in fp32; dQ is the plan's attention workspace). The larger of the two,
 * plus, for LeMo's sparse layers (nk kept rows a rank), the re-deal's send and receive buffers
 * of the kept rows of h (2 x nk x C). Priced beside the plan: carving them from a layer's dead
 * MLP buffers, as the attention backward's set is, would save part of it. */
static size_t ring_bytes(const ModelConfig *mc, int n, int nk, size_t act) {
    size_t kv = (size_t)n * mc->n_kv_heads * mc->head_dim, q = (size_t)n * mc->n_heads * mc->head_dim;
    size_t fwd = 2 * (2 * kv * act) + q * 4 + 2 * (size_t)mc->n_heads * n * 4 + q * act;
    size_t bwd = 2 * (2 * kv * act) + 2 * (2 * kv * 4);
    return (fwd > bwd ? fwd : bwd) + 2 * (size_t)nk * mc->hidden * act;
}

/* The plan for S tokens on the CPU (fp32) or CUDA (bf16), with that backend's workspaces
 * (CUDA's from backend_cuda.h, without loading the backend). */
static BackendSizes sizes_for(int cuda) { return cuda ? cuda_backend_sizes() : backend_sizes(backend_cpu()); }
static void plan_for(const ModelConfig *mc, const LoraSpec *spec, const JobConfig *jc, const ActPolicy *act, int S,
                     int cuda, MemPlan *p) {
    BackendSizes bs = sizes_for(cuda);
    int N = ctx_ranks(jc);
    LemoSpec z = lemo_for(mc, jc), zr = lemo_rank(&z, S, N);
    model_plan(mc, S / N, spec, act, &zr, &bs, p);  // one rank's rows (S itself on one GPU)
}

/* A rank's bytes beside its plan and the backend's own: NCCL's buffers with several GPUs, and
 * in context parallel the ring's (0 on one GPU). *ring gets the ring's share. */
static size_t parallel_bytes(const ModelConfig *mc, const JobConfig *jc, int S, int cuda, size_t *ring) {
    int N = ctx_ranks(jc);
    *ring = 0;
    if (N > 1) {
        LemoSpec z = lemo_for(mc, jc), zr = lemo_rank(&z, S, N);
        *ring = ring_bytes(mc, rank_att_rows(&z, &zr, mc->n_layers, S, N, 0),
                           z.on ? rank_att_rows(&z, &zr, mc->n_layers, S, N, 1) : 0, sizes_for(cuda).act_size);
    }
    return *ring + (jc->parallel.gpus > 1 ? NCCL_RUNTIME_BYTES : 0);
}

/* LeMo predictor scores: the fp32 weights of the sparse layers' predictors, on the device
 * beside the model (lemo_predictor_upload: a dense layer's are never read). */
static size_t predictor_bytes(const ModelConfig *mc, const JobConfig *jc) {
    LemoSpec z = lemo_for(mc, jc);
    if (!z.on || z.scores != LEMO_SCORES_PREDICTOR) return 0;
    return sizeof(float) * (size_t)lemo_sparse_layers(&z) *
           lemo_predictor_weights(z.block, mc->head_dim, z.pred_h1, z.pred_h2);
}

static size_t peak_for(const ModelConfig *mc, const JobConfig *jc, int S, int cuda, size_t data_bytes) {
    LoraSpec spec = {jc->lora.r, jc->lora.alpha, jc->lora.dropout, {0}};
    memcpy(spec.targets, jc->lora.targets, sizeof spec.targets);
    MemPlan p;
    plan_for(mc, &spec, jc, &jc->act, S, cuda, &p);
    // on the CPU the offloaded checkpoints live in the same memory as everything else
    BackendSizes bs = sizes_for(cuda);
    size_t ring;
    return p.total + scratch_for(mc, &spec, S / ctx_ranks(jc), &bs) + bs.runtime_bytes + predictor_bytes(mc, jc) +
           parallel_bytes(mc, jc, S, cuda, &ring) + (cuda ? 0 : data_bytes + p.host);
}

/* Host bytes a CUDA job holds besides the device: pinned offloaded checkpoints and the packed
 * dataset (0 on the CPU, where both count in peak_for); with several GPUs every rank's process
 * holds its own. */
static size_t host_for(const ModelConfig *mc, const JobConfig *jc, int S, int cuda, size_t data_bytes) {
    if (!cuda) return 0;
    LoraSpec spec = {jc->lora.r, jc->lora.alpha, jc->lora.dropout, {0}};
    memcpy(spec.targets, jc->lora.targets, sizeof spec.targets);
    MemPlan p;
    plan_for(mc, &spec, jc, &jc->act, S, cuda, &p);
    return (p.host + data_bytes + backend_cpu()->runtime_bytes) * (size_t)jc->parallel.gpus;
}

/* memory.auto: the fastest policy, layer by layer, that fits. A base policy for every layer:
 * the first, fastest first, whose peak fits the device budget and whose pinned host bytes fit
 * the host's; then as many of the last layers kept (ACT_KEEP: no recompute) as fit within
 * AUTO_KEEP_SHARE of the device memory, leaving room for fragmentation and other processes.
 * On CUDA offloading the attention outputs beats recomputing them (the recompute then skips
 * the attention forward; H200, bench/RESULTS.md: +2% at 4K tokens, +6% at 16K, +10% at 32K,
 * +13% at 64K); below AUTO_OFFLOAD_ATT_MIN tokens, not measured, recomputing comes first.
 * On the CPU offloading only moves bytes within the same memory: recompute or keep. From
 * AUTO_TILE_ROWS * 2 tokens the same search runs with the MLP in tiles of AUTO_TILE_ROWS rows
 * too (a kept layer then holds one tile of gate, up and SwiGLU outputs, not all rows; it costs
 * a kept layer two GEMMs more), and the tiles are taken when only they fit, or when they let
 * more layers be kept and the estimated step is faster for it. Returns 1 when the policy fits, 0 when nothing does (then the most
 * frugal base, for the error the load will give). */
#define AUTO_OFFLOAD_ATT_MIN 4096
#define AUTO_KEEP_SHARE 0.9
#define AUTO_TILE_ROWS 4096
static int auto_policy_tiles(const ModelConfig *mc, const JobConfig *jc, int S, int cuda, size_t device_mem,
                             size_t host_budget, size_t data_bytes, int tiles, ActPolicy *out, int *kept);
static int auto_policy(const ModelConfig *mc, const JobConfig *jc, int S, int cuda, size_t device_mem,
                       size_t host_budget, size_t data_bytes, ActPolicy *out) {
    int rows = S / ctx_ranks(jc);  // a rank's rows: the MLP tiles cut those
    int k1 = 0, kt = 0, tiles = (rows + AUTO_TILE_ROWS - 1) / AUTO_TILE_ROWS;
    int fits = auto_policy_tiles(mc, jc, S, cuda, device_mem, host_budget, data_bytes, 1, out, &k1);
    if (tiles < 2) return fits;
    ActPolicy tiled;
    int fits_t = auto_policy_tiles(mc, jc, S, cuda, device_mem, host_budget, data_bytes, tiles, &tiled, &kt);
    // the faster of the two by the estimate's step time (the CPU's rate is common to both)
    LemoSpec z = lemo_for(mc, jc);
    int down = jc->lora.targets[TARGET_DOWN];
    if (fits_t && (!fits || (kt > k1 && window_seconds(mc, S, &tiled, &z, down, cuda, 1e12) <
                                            window_seconds(mc, S, out, &z, down, cuda, 1e12)))) {
        *out = tiled;
        return 1;
    }
    return fits;
}

/* Layer order for auto's per-layer choices: LeMo's sparse layers first (smallest activations
 * to keep, cheapest attention to recompute), the last ones first among equals. */
static int auto_order(const ModelConfig *mc, const JobConfig *jc, int S, int order[JOB_MAX_LAYERS]) {
    LemoSpec z = lemo_for(mc, jc);
    int k = 0, L = mc->n_layers;
    for (int sparse = 1; sparse >= 0; sparse--)
        for (int l = L - 1; l >= 0; l--)
            if ((lemo_rows(&z, l, S) < S) == sparse) order[k++] = l;
    return k;
}

/* `base` for every layer but the first n of `order`, which take `other`. */
static ActPolicy act_mix(int L, int base, int other, const int *order, int n, int tiles) {
    ActPolicy a = {.all = base, .n = L, .mlp_tiles = tiles};
    for (int l = 0; l < L; l++) a.layer[l] = (unsigned char)base;
    for (int i = 0; i < n; i++) a.layer[order[i]] = (unsigned char)other;
    return a;
}

static int auto_policy_tiles(const ModelConfig *mc, const JobConfig *jc, int S, int cuda, size_t device_mem,
                             size_t host_budget, size_t data_bytes, int tiles, ActPolicy *out, int *kept) {
    static const int long_ctx[] = {ACT_OFFLOAD_ATT, ACT_RECOMPUTE, ACT_OFFLOAD};
    static const int short_ctx[] = {ACT_RECOMPUTE, ACT_OFFLOAD_ATT, ACT_OFFLOAD};
    static const int cpu[] = {ACT_RECOMPUTE};
    const int *bases = !cuda ? cpu : S >= AUTO_OFFLOAD_ATT_MIN ? long_ctx : short_ctx;
    int n_bases = cuda ? 3 : 1, L = mc->n_layers;
    size_t budget = (size_t)(device_mem * 0.95);
    int order[JOB_MAX_LAYERS];
    auto_order(mc, jc, S, order);
    JobConfig t = *jc;
    int found = 0;
    *kept = 0;
    for (int i = 0; i < n_bases && !found; i++) {
        t.act = act_uniform(bases[i]);
        t.act.mlp_tiles = tiles;
        found = peak_for(mc, &t, S, cuda, data_bytes) <= budget && host_for(mc, &t, S, cuda, data_bytes) <= host_budget;
    }
    // Past what one policy for every layer fits (checkpoints on the device fill it, offloaded
    // ones fill the host): offload some layers and keep the others' checkpoints on the device.
    // Each layer moved to the device frees host memory and takes device memory, so the fewest
    // moved that let the host hold the rest, if the device then holds them, fits; sparse layers
    // move first, their attention forward being the cheapest to recompute.
    for (int i = 0; cuda && !found && i < 2; i++) {
        int off = i == 0 ? ACT_OFFLOAD_ATT : ACT_OFFLOAD;
        int lo = 1, hi = L - 1;  // moved layers: the fewest whose host bytes fit
        while (lo < hi) {
            int n = (lo + hi) / 2;
            t.act = act_mix(L, off, ACT_RECOMPUTE, order, n, tiles);
            if (host_for(mc, &t, S, cuda, data_bytes) <= host_budget) hi = n;
            else lo = n + 1;
        }
        t.act = act_mix(L, off, ACT_RECOMPUTE, order, lo, tiles);
        found = host_for(mc, &t, S, cuda, data_bytes) <= host_budget && peak_for(mc, &t, S, cuda, data_bytes) <= budget;
    }
    if (!found) {
        *out = act_uniform(bases[n_bases - 1]);
        out->mlp_tiles = tiles;
        return 0;
    }
    // kept layers only add device memory (and free host memory): the largest count that fits,
    // taken in the same order
    ActPolicy base = t.act;
    size_t keep_budget = (size_t)(device_mem * AUTO_KEEP_SHARE);
    int lo = 0, hi = L;
    while (lo < hi) {
        int n = (lo + hi + 1) / 2;
        t.act = base;
        if (!t.act.n) t.act = act_mix(L, base.all, base.all, order, 0, tiles);
        for (int i = 0; i < n; i++) t.act.layer[order[i]] = ACT_KEEP;
        if (peak_for(mc, &t, S, cuda, data_bytes) <= keep_budget) lo = n;
        else hi = n - 1;
    }
    *out = base;
    if (lo > 0) {
        if (!out->n) *out = act_mix(L, base.all, base.all, order, 0, tiles);
        for (int i = 0; i < lo; i++) out->layer[order[i]] = ACT_KEEP;
    }
    *kept = lo;
    return 1;
}

/* The first GPU's memory in bytes from nvidia-smi (what: "total" or "free"), 0 without one. */
static size_t cuda_mem_query(const char *what) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "nvidia-smi --query-gpu=memory.%s --format=csv,noheader,nounits 2>/dev/null", what);
    FILE *f = popen(cmd, "r");
    if (!f) return 0;
    unsigned long mib = 0;
    if (fscanf(f, "%lu", &mib) != 1) mib = 0;
    pclose(f);
    return (size_t)mib << 20;
}
static size_t cuda_device_mem(void) { return cuda_mem_query("total"); }

/* The host memory available now (MemAvailable: free plus what the kernel can reclaim), else
 * the physical memory. */
size_t estimate_host_available(void) {
    size_t phys = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE), kib = 0;
    FILE *f = fopen("/proc/meminfo", "r");
    char line[128];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %zu kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib ? kib << 10 : phys;
}

/* Host bytes of the job's data: the packed windows (8 bytes a token, ~1 token per 4 bytes of
 * JSONL) and the loaded tokenizer, ~10x its tokenizer.json (merges and vocabulary tables:
 * refmodel-22m's 1.8 MB file holds 18 MB resident, measured on 2026-12-04). */
static size_t data_bytes_for(const JobConfig *jc, size_t file_bytes) {
    char tp[JOB_PATH_MAX + 32];
    struct stat st;
    snprintf(tp, sizeof tp, "%s/tokenizer.json", jc->model);
    size_t tok = stat(tp, &st) ? 0 : (size_t)st.st_size * 10;
    return (size_t)(file_bytes / 4.0 * 8) + tok;
}

int estimate_auto_policy(JobConfig *jc, int cuda, Err *e) {
    ModelConfig mc;
    if (model_config_load(jc->model, &mc, e)) return -1;
    // what is free now, not the card's total: another process may hold part of it (our own
    // context, if already made, is counted twice: on the safe side)
    size_t device_mem = cuda ? cuda_mem_query("free") : (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    if (!device_mem) return err_set_at(e, "memory.auto", 0, "memory.auto: cannot read the device's memory (nvidia-smi)");
    struct stat st;
    size_t data_bytes = data_bytes_for(jc, stat(jc->train_file, &st) ? 0 : (size_t)st.st_size);
    // likewise the host's available memory, not its total (files in /dev/shm, other jobs)
    size_t host_budget = (size_t)(estimate_host_available() * 0.9);
    auto_policy(&mc, jc, jc->context_length, cuda, device_mem, host_budget, data_bytes, &jc->act);
    return 0;
}

int estimate_job(const JobConfig *jc_in, const char *device, size_t device_mem, size_t host_mem, int flags,
                 json_t **out, Err *e) {
    ModelConfig mc;
    if (model_config_load(jc_in->model, &mc, e) || act_policy_check(&jc_in->act, mc.n_layers, e)) return -1;
    JobConfig auto_jc, fit_jc_auto;  // memory.auto: the chosen policy; its pick at each length tried
    JobConfig par_jc;                // several GPUs: the config with its mode resolved
    const JobConfig *jc = jc_in;
    int cuda = !strcmp(device, "cuda") || (!strcmp(device, "auto") && cuda_device_mem() > 0);
    int gpus = jc_in->parallel.gpus;
    // the machine priced may be another (device_mem): only the backend is checked here
    if (gpus > 1 && parallel_check_runtime(jc_in, gpus, cuda, e)) return -1;
    const char *mem_source = "given";
    if (!device_mem) {
        device_mem = cuda ? cuda_device_mem() : (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
        mem_source = cuda ? "nvidia-smi" : "physical memory";
        if (!device_mem) return err_set_at(e, "device", 0, "no CUDA device found to estimate for");
    }
    // tokens of the dataset: ~1 token per 4 bytes of JSONL text; the packed windows hold 8 bytes
    // per token (input and target ids) on the host while training
    struct stat st;
    if (stat(jc->train_file, &st)) return err_set_at(e, "train_file", 0, "train_file %s not found", jc->train_file);
    double data_tokens = (double)st.st_size / 4.0;
    size_t data_bytes = data_bytes_for(jc, (size_t)st.st_size);

    int S = jc->context_length;
    // the budget leaves 5% headroom for fragmentation and other processes; on CUDA the host
    // must also hold the offloaded checkpoints (pinned) with 10% left for everything else
    size_t budget = (size_t)(device_mem * 0.95);
    if (!host_mem) host_mem = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    size_t host_budget = (size_t)(host_mem * 0.9);
    // several GPUs: the mode auto picks, from whether a window fits one GPU on its own
    par_jc = *jc_in;
    if (gpus > 1) {
        int fits_one = 1;
        if (jc_in->parallel.mode == PAR_MODE_AUTO) {
            JobConfig one = *jc_in;
            one.parallel.mode = PAR_MODE_DATA;
            if (one.act_auto) auto_policy(&mc, jc_in, S, cuda, device_mem, host_budget, data_bytes, &one.act);
            fits_one = peak_for(&mc, &one, S, cuda, data_bytes) <= budget &&
                       host_for(&mc, &one, S, cuda, data_bytes) <= host_budget;
        }
        int mode = parallel_resolve_mode(jc_in, fits_one, e);
        if (mode < 0) return -1;
        par_jc.parallel.mode = mode;
    }
    jc_in = jc = &par_jc;
    if (jc_in->act_auto) {
        auto_jc = fit_jc_auto = *jc_in;
        auto_policy(&mc, jc_in, S, cuda, device_mem, host_budget, data_bytes, &auto_jc.act);
        jc = &auto_jc;
    }
    size_t peak = peak_for(&mc, jc, S, cuda, data_bytes), host = host_for(&mc, jc, S, cuda, data_bytes);
    // lengths tried: multiples of 256 tokens, in context parallel of a whole zigzag split too
    int N = ctx_ranks(jc), step = 256;
    if (N > 1) {
        int split = 2 * N * parallel_unit_rows(jc->lemo.on, jc->lemo.block);
        while (step % split) step += 256;  // the least common multiple
    }
    int lo = 0, hi = (1 << 30) / step;
    while (lo < hi) {  // the largest such length that fits both
        int mid = (lo + hi + 1) / 2, fits;
        if (jc_in->act_auto) {  // what memory.auto would pick at that length
            fits = auto_policy(&mc, jc_in, mid * step, cuda, device_mem, host_budget, data_bytes, &fit_jc_auto.act);
            fits = fits && peak_for(&mc, &fit_jc_auto, mid * step, cuda, data_bytes) <= budget;
        } else {
            fits = peak_for(&mc, jc_in, mid * step, cuda, data_bytes) <= budget &&
                   host_for(&mc, jc_in, mid * step, cuda, data_bytes) <= host_budget;
        }
        if (fits) lo = mid;
        else hi = mid - 1;
    }
    double windows = floor(data_tokens / S);
    if (windows < 1) windows = 1;
    double steps = jc->max_steps ? jc->max_steps : ceil(jc->epochs * windows / jc->grad_accum);
    double tokens = steps * jc->grad_accum * S;
    LemoSpec z = lemo_for(&mc, jc);
    // several GPUs: data parallel runs ceil(G / N) windows a rank per step; context parallel
    // splits each window's work N ways (zigzag balances attention). Communication is taken as
    // hidden behind the compute (the all-reduce behind the backward, the ring behind attention)
    double per_window = jc->grad_accum;
    if (gpus > 1) per_window = N > 1 ? jc->grad_accum / (double)N : ceil((double)jc->grad_accum / gpus);
    double secs = flags & ESTIMATE_MEMORY_ONLY
                      ? 0
                      : steps * per_window * window_seconds(&mc, S, &jc->act, &z, jc->lora.targets[TARGET_DOWN],
                                                            cuda, cuda ? 0 : cpu_flops());

    LoraSpec spec = {jc->lora.r, jc->lora.alpha, jc->lora.dropout, {0}};
    memcpy(spec.targets, jc->lora.targets, sizeof spec.targets);
    MemPlan p;
    plan_for(&mc, &spec, jc, &jc->act, S, cuda, &p);
    BackendSizes bs = sizes_for(cuda);
    *out = json_pack(
        "{s:s, s:I, s:s, s:I, s:b, s:I, s:b, s:i, s:i, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:I, s:I, s:f, s:f, "
        "s:f}",
        "device", cuda ? "cuda" : "cpu", "device_mem_bytes", (json_int_t)device_mem, "device_mem_source",
        mem_source, "peak_bytes", (json_int_t)peak, "device_fits", peak <= budget, "host_mem_bytes",
        (json_int_t)host_mem, "fits", peak <= budget && host <= host_budget, "context_length", S,
        "max_context_length", lo * step, "breakdown", "weights", (json_int_t)p.weights, "lora_and_optimizer",
        (json_int_t)p.lora, "layer_checkpoints", (json_int_t)p.checkpoints, "activations",
        (json_int_t)(p.activations + p.grads), "loss_chunk", (json_int_t)(p.loss + scratch_for(&mc, &spec, S / N, &bs)),
        "tokens_and_data", (json_int_t)(p.tokens + (cuda ? 0 : data_bytes)), "runtime",
        (json_int_t)bs.runtime_bytes, "host_bytes", (json_int_t)p.host,
        "tokens", (json_int_t)tokens, "steps", steps, "est_seconds", secs, "tokens_per_s", secs > 0 ? tokens / secs : 0.0);
    if (flags & ESTIMATE_MEMORY_ONLY)
        for (const char *const *k = (const char *const[]){"tokens", "steps", "est_seconds", "tokens_per_s", NULL}; *k; k++)
            json_object_del(*out, *k);
    // how many layers follow each activation policy (memory.layers may mix them)
    int per[ACT_N] = {0};
    for (int l = 0; l < mc.n_layers; l++) per[act_layer(&jc->act, l)]++;
    json_t *ml = json_object();
    for (int a = 0; a < ACT_N; a++)
        if (per[a]) json_object_set_new(ml, act_names[a], json_integer(per[a]));
    json_object_set_new(*out, "memory_layers", ml);
    json_object_set_new(*out, "mlp_tiles", json_integer(act_tiles(&jc->act)));
    if (gpus > 1) {  // one GPU's share: the peak above is per GPU
        size_t ring, par = parallel_bytes(&mc, jc, S, cuda, &ring);
        json_t *bd = json_object_get(*out, "breakdown");
        json_object_set_new(bd, "nccl", json_integer((json_int_t)(par - ring)));
        if (N > 1) json_object_set_new(bd, "context_ring", json_integer((json_int_t)ring));
        json_object_set_new(*out, "parallel",
                            json_pack("{s:i, s:s, s:i, s:I, s:I}", "gpus", gpus, "mode",
                                      parallel_mode_names[jc->parallel.mode], "rows_per_gpu", S / N,
                                      "per_gpu_peak_bytes", (json_int_t)peak, "host_bytes_all_gpus", (json_int_t)host));
    }
    size_t pb = predictor_bytes(&mc, jc);
    if (pb) json_object_set_new(json_object_get(*out, "breakdown"), "lemo_predictor", json_integer((json_int_t)pb));
    if (z.on) {  // LeMo: the share of tokens each layer's attention keeps
        json_t *kf = json_array();
        for (int l = 0; l < mc.n_layers; l++) json_array_append_new(kf, json_real((double)lemo_rows(&z, l, S) / S));
        json_t *lo = json_pack("{s:s, s:i, s:o}", "scores", lemo_score_names[z.scores], "block", z.block,
                               "kept_fraction", kf);
        if (z.scores == LEMO_SCORES_PREDICTOR) {
            // not prepared yet: priced with prepare's default widths (and, for keep "auto", the
            // default schedule: the calibrated one is chosen by the preparation)
            json_object_set_new(lo, "predictor", json_string(z.pending ? "pending" : "ready"));
            if (z.pending && jc->lemo.keep_auto) json_object_set_new(lo, "schedule", json_string("default until prepared"));
        }
        json_object_set_new(*out, "lemo", lo);
    }
    return 0;
}
