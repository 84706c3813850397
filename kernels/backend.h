/* backend.h: the table of compute ops the model and trainer are written against.
 *
 * One implementation per device: kernels/cpu (fp32, the reference and the
 * specification) and kernels/cuda (bf16 activations, fp32 accumulation).
 * Model code never touches device memory directly; it only passes pointers
 * that came from `alloc` back into these ops. So the same forward/backward
 * code runs on either device, and every CUDA op can be checked against its
 * CPU twin by calling both tables on the same inputs.
 *
 * Types. "act" pointers hold activations and frozen base weights in the
 * backend's activation dtype (`act_dtype`: fp32 on the CPU, bf16 on CUDA).
 * `float *` pointers are always fp32 on the device (LoRA master weights,
 * their grads, optimizer state, log-sum-exp, rstd). `int *` are int32 on the
 * device (token ids, positions, row indices).
 *
 * Dimension letters: S rows (tokens), C model width, NH query heads, NKV
 * key/value heads, HS head size, F MLP width, V vocabulary, R LoRA rank,
 * K/N the in/out width of a linear layer. Row-major everywhere; a linear
 * layer's weight is (N, K) as in PyTorch, so y = x W^T.
 *
 * Conventions: ops named *_backward ACCUMULATE (+=) into input gradients
 * unless the comment says "written"; this lets residual branches add up
 * without extra buffers. Ops may run asynchronously; `sync` waits. */
#ifndef LEMO_BACKEND_H
#define LEMO_BACKEND_H

#include "hash.h"
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { DT_F32 = 0, DT_BF16 = 1, DT_F16 = 2 };  // storage dtypes (disk and device)

typedef struct Backend Backend;
struct Backend {
    const char *name;   // "cpu" or "cuda"
    int act_dtype;      // DT_F32 or DT_BF16
    size_t act_size;    // bytes per act element

    /* --- memory --- */
    void *(*alloc)(size_t bytes);                               // zeroed, 256-byte aligned; NULL on failure
    void (*free)(void *p);
    void (*zero)(void *p, size_t bytes);
    void (*sync)(void);
    void (*copy_to_device)(void *dst, const void *src, size_t bytes);  // raw bytes
    void (*copy_to_host)(void *dst, const void *src, size_t bytes);
    void (*copy_device)(void *dst, const void *src, size_t bytes);
    /* host data of dtype src_dtype (DT_F32/DT_BF16/DT_F16) -> act dtype on the device */
    void (*upload_act)(void *dst, const void *src, int src_dtype, size_t n);
    /* act dtype on the device -> fp32 on the host */
    void (*download_act)(float *dst, const void *src, size_t n);
    /* bytes of device memory in use now by this process's backend (0 if unknown) */
    size_t (*mem_used)(void);

    /* --- ops --- */
    // out(S,C) = wte[tok[s]]; tok (S) int32, wte (V,C) act
    void (*embedding_forward)(void *out, const int *tok, const void *wte, int S, int C);

    // out(S,C) = in * rstd * w;  rstd(S) written (fp32); w (C) act
    void (*rmsnorm_forward)(void *out, float *rstd, const void *in, const void *w,
                            int S, int C, float eps);
    // din(S,C) += d/din given dout(S,C); w frozen (no dw)
    void (*rmsnorm_backward)(void *din, const void *dout, const void *in, const void *w,
                             const float *rstd, int S, int C);

    // out(S,N) = in(S,K) W(N,K)^T + bias(N) (bias may be NULL); accumulate!=0: out +=
    void (*matmul_forward)(void *out, const void *in, const void *w, const void *bias,
                           int S, int K, int N, int accumulate);
    // din(S,K) += dout(S,N) W(N,K)   (base weights are frozen: no dW, no dbias)
    void (*matmul_backward)(void *din, const void *dout, const void *w, int S, int K, int N);

    /* LoRA: out(S,N) += scale * (drop(in) A^T) B^T, A (R,K), B (N,R) fp32 masters.
     * t (S,R) fp32 is written (saved for backward). drop() is inverted dropout
     * with probability p whose keep/drop decision for element e of in (S*K
     * elements, row-major) is lora_dropout_keep(seed, e, p) (below), so a
     * recomputed forward and the backward see the same mask. p == 0: no dropout. */
    void (*lora_forward)(void *out, float *t, const void *in, const float *A, const float *B,
                         int S, int K, int N, int R, float scale, float p, uint64_t seed);
    /* din(S,K) += ..., dA(R,K) += ..., dB(N,R) += ...; dout (S,N) act */
    void (*lora_backward)(void *din, float *dA, float *dB, const void *dout, const void *in,
                          const float *t, const float *A, const float *B,
                          int S, int K, int N, int R, float scale, float p, uint64_t seed);

    /* RoPE in HF "rotate_half" layout: for head h, i < HS/2, angle = pos[s]*inv_freq[i]:
     * (x[i], x[i+HS/2]) -> (x[i] cos - x[i+HS/2] sin, x[i+HS/2] cos + x[i] sin),
     * then both multiplied by mscale (1 unless the scaling type has an attention factor).
     * x (S,NH,HS) in place; pos (S) int32 original positions; inv_freq (HS/2) fp32. */
    void (*rope_forward)(void *x, const int *pos, const float *inv_freq, int S, int NH, int HS,
                         float mscale);
    // dx in place: the transpose of rope_forward (rotation by -angle, times mscale)
    void (*rope_backward)(void *dx, const int *pos, const float *inv_freq, int S, int NH, int HS,
                          float mscale);

    /* Causal grouped-query attention over S rows in order (row s sees rows 0..s),
     * softmax scale 1/sqrt(HS); query head h uses kv head h / (NH/NKV).
     * q (S,NH,HS), k,v (S,NKV,HS), out (S,NH,HS) written, lse (NH,S) fp32 written
     * (natural-log log-sum-exp of the scaled scores). Memory O(S): tiles + online softmax. */
    void (*attention_forward)(void *out, float *lse, const void *q, const void *k, const void *v,
                              int S, int NH, int NKV, int HS);
    /* dq (S,NH,HS), dk, dv (S,NKV,HS): written (not accumulated). ws: the caller's workspace
     * of attention_bwd_ws_bytes(S, NH, NKV, HS) bytes (or more), 256-byte aligned, disjoint
     * from every other argument; its contents on entry do not matter and on exit are
     * undefined. The op keeps no S-sized scratch of its own, so the caller can place this one
     * in memory that is dead at that point of its step (the model: a layer's MLP buffers). */
    void (*attention_backward)(void *dq, void *dk, void *dv, const void *dout, const void *out,
                               const float *lse, const void *q, const void *k, const void *v,
                               int S, int NH, int NKV, int HS, void *ws);
    /* Bytes of workspace attention_backward needs for these shapes; nondecreasing in S, so
     * a workspace sized for the longest sequence serves every shorter one. */
    size_t (*attention_bwd_ws_bytes)(int S, int NH, int NKV, int HS);

    // out(n) = silu(gate) * up
    void (*swiglu_forward)(void *out, const void *gate, const void *up, size_t n);
    // dgate, dup (n) written
    void (*swiglu_backward)(void *dgate, void *dup, const void *dout, const void *gate,
                            const void *up, size_t n);

    // a(n) += b(n)
    void (*add_inplace)(void *a, const void *b, size_t n);
    // out(n,C) = in[idx[i]] (written); idx (n) int32 sorted row indices into in (S,C)
    void (*gather_rows)(void *out, const void *in, const int *idx, int n, int C);
    // out[idx[i]] += in(i)   (rows of out not in idx untouched)
    void (*scatter_add_rows)(void *out, const void *in, const int *idx, int n, int C);

    /* Fused LM head + cross-entropy, in row chunks so (S,V) logits never exist.
     * logits_s = x_s W^T (W (V,C) act); target (S) int32, -1 = no loss on that row.
     * Returns sum over counted rows of -log softmax(logits_s)[target_s] (fp64 on host)
     * and stores the number of counted rows in *count. If dx != NULL, dx (S,C) is
     * WRITTEN with grad_scale * d(sum)/dx. If correct != NULL, *correct = the counted rows
     * whose argmax logit is the target (a tie goes to the lowest index, on every backend),
     * the numerator of the mean token accuracy: the logits exist only here, chunk by chunk. */
    double (*lm_head_ce)(void *dx, long *count, long *correct, const void *x, const void *w, const int *target,
                         int S, int C, int V, float grad_scale);

    /* --- LeMo token selection (DESIGN section 8 steps 2-3) ---
     * Blocks of B consecutive rows; S = nb * B. Exact block scores from a layer's pre-RoPE
     * q (S,NH,HS) and k (S,NKV,HS), act dtype. For block pairs m >= n:
     *   A[m,n] = max over rows i of block m, j of block n with i >= j (causal) of
     *            sum over heads h of relu(q[i,h] . k[j, h / (NH/NKV)]) / NH
     * (no 1/sqrt(HS): a common factor changes no ranking; never an (S,S) matrix). score (nb)
     * fp32 WRITTEN: score[n] = sum_{m >= n} A[m,n] + sum_{m < n} A[n,m] (block n as the key
     * of later queries plus as the query of earlier keys). ws: lemo_scores_ws_bytes(S, B)
     * bytes of the caller's, 256-byte aligned, contents undefined on entry and exit. */
    void (*lemo_block_scores)(float *score, const void *q, const void *k, int S, int NH, int NKV, int HS,
                              int B, void *ws);
    size_t (*lemo_scores_ws_bytes)(int S, int B);
    /* The random control: score (nb) fp32 WRITTEN, score[n] = lemo_random_score(seed, n). */
    void (*lemo_random_scores)(float *score, int nb, uint64_t seed);
    /* Top-k blocks: idx (k * B) int32 WRITTEN with the rows of the k blocks of highest score,
     * in ascending order; block 0 (the attention sink) is always one of them; equal scores
     * rank the lower block first and NaN ranks below everything. 1 <= k <= nb. score is
     * read only. ws: lemo_select_ws_bytes(nb) bytes of the caller's, as above. The result
     * stays on the device: no host round trip. */
    void (*lemo_select_blocks)(int *idx, const float *score, int nb, int k, int B, void *ws);
    size_t (*lemo_select_ws_bytes)(int nb);

    /* --- LeMo pattern predictors (DESIGN section 8 step 2, predicted scores; lemo prepare) ---
     * Block matrices are lower triangles, nb*(nb+1)/2 fp32, A[m,n] (m >= n) at m*(m+1)/2 + n.
     * lemo_block_matrix: the exact A of lemo_block_scores (same q, k, same definition), WRITTEN
     * instead of reduced: the predictors' training target.
     * lemo_matrix_scores: score (nb) WRITTEN, score[n] = sum_{m >= n} A[m,n] + sum_{m < n} A[n,m]
     * (summed in double, m ascending), the reduction lemo_block_scores applies to its A.
     *
     * A predictor (one layer): a Q and a K network, each x -> relu(x W1^T) -> relu(. W2^T) -> . W3^T,
     * no biases, over each block's chunks: h (S, C) act, viewed as C/HS contiguous chunks of HS;
     * block m's input for chunk c is its B rows' chunk-c vectors concatenated (D = B*HS), the
     * weights shared across chunks. w: fp32 [Wq1 (H1,D), Wq2 (H2,H1), Wq3 (HS,H2), Wk1, Wk2,
     * Wk3 alike], lemo_predictor_weights(B, HS, H1, H2) floats. q^, k^ (nb, C/HS, HS);
     * A^[m,n] = sum over chunks c of q^[m,c] . k^[n,c].
     * lemo_predictor_forward: A (triangle) WRITTEN with A^; acts (lemo_predictor_acts(S, C, HS,
     * B, H1, H2) fp32) WRITTEN with what the backward reads: X (nb*C/HS, D) rows m*(C/HS)+c,
     * then per network (Q, then K) Z1 (R, H1), Z2 (R, H2) after relu and the output (R, HS),
     * R = nb*C/HS. At run time acts is a workspace.
     * lemo_predictor_backward: dw (as w) ACCUMULATED with d(sum dA . A^)/dw from the forward's
     * acts (no input gradient: the base model is frozen); ws: lemo_predictor_bwd_ws(S, C, HS,
     * B, H1, H2) fp32 of the caller's, contents undefined on entry and exit.
     * lemo_smooth_l1: returns sum_i smoothl1(p[i] - t[i]) with beta (0.5 d^2/beta within beta,
     * |d| - beta/2 past it; fp64 on host) and WRITES d[i] = scale * its derivative in p[i]. */
    void (*lemo_block_matrix)(float *A, const void *q, const void *k, int S, int NH, int NKV, int HS, int B);
    void (*lemo_matrix_scores)(float *score, const float *A, int nb);
    void (*lemo_predictor_forward)(float *A, float *acts, const void *h, const float *w, int S, int C, int HS,
                                   int B, int H1, int H2);
    void (*lemo_predictor_backward)(float *dw, const float *dA, const float *acts, const float *w, int S, int C,
                                    int HS, int B, int H1, int H2, float *ws);
    double (*lemo_smooth_l1)(float *d, const float *p, const float *t, size_t n, float beta, float scale);

    /* --- what the memory plan adds for the backend itself (lemo estimate) ---
     * scratch_bytes: the device scratch the ops hold beside the plan for a window of S rows,
     * vocabulary V and LoRA rank R on n adapted linear layers of widths K[i] -> N[i] (with LoRA
     * dropout p); runtime_bytes: what the backend holds once loaded (CUDA: its context and
     * cuBLAS's workspace; CPU: the process, libraries and OpenBLAS's buffers). */
    size_t (*scratch_bytes)(int S, int V, int R, int n, const int *K, const int *N, float p);
    size_t runtime_bytes;

    /* --- fp32 optimizer-side ops (LoRA parameters) --- */
    double (*sumsq)(const float *g, size_t n);      // sum of squares, fp64 on host
    void (*scale)(float *g, size_t n, float s);      // g *= s
    /* AdamW (decoupled weight decay, bias correction with step t >= 1):
     * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
     * p -= lr * ( (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps) + wd p ) */
    void (*adamw)(float *p, const float *g, float *m, float *v, size_t n,
                  float lr, float b1, float b2, float eps, float wd, int t);

    /* --- host staging with copies that overlap compute (layer checkpoints offloaded) ---
     * host_alloc: page-locked host memory the async copies can use (contents undefined;
     * NULL on failure); the CPU backend gives plain memory. copy_async copies bytes
     * (device <-> host, either way) once every op issued before it has finished, on a
     * side stream (one: copies run in issue order), and returns at once; the copy is named by a ticket in
     * [0, BACKEND_COPY_TICKETS). copy_wait(ticket): every op issued after it waits for
     * the last copy started under that ticket (none started: no wait). The CPU backend
     * copies at once and its copy_wait does nothing. */
    void *(*host_alloc)(size_t bytes);
    void (*host_free)(void *p);
    void (*copy_async)(void *dst, const void *src, size_t bytes, int ticket);
    void (*copy_wait)(int ticket);
};

#define BACKEND_COPY_TICKETS 4

/* What the memory plan needs of a backend without running it: its activation size and the
 * workspace sizes of the ops that take a caller's workspace. backend_sizes() reads them off
 * a loaded table; the estimate fills them for CUDA from kernels/cuda/backend_cuda.h without
 * loading that backend. */
typedef struct {
    size_t act_size;
    size_t (*attention_bwd_ws_bytes)(int S, int NH, int NKV, int HS);
    size_t (*lemo_scores_ws_bytes)(int S, int B);
    size_t (*lemo_select_ws_bytes)(int nb);
    size_t (*scratch_bytes)(int S, int V, int R, int n, const int *K, const int *N, float p);
    size_t runtime_bytes;
} BackendSizes;
static inline BackendSizes backend_sizes(const Backend *be) {
    BackendSizes s = {be->act_size,           be->attention_bwd_ws_bytes, be->lemo_scores_ws_bytes,
                      be->lemo_select_ws_bytes, be->scratch_bytes,         be->runtime_bytes};
    return s;
}

/* The dropout mask shared by every backend: keep element e with probability 1-p.
 * A splitmix64 hash of (seed, e) compared against p; pure, so it can be recomputed
 * anywhere (forward, recompute, backward, CPU or GPU) and give the same mask. */
static inline LEMO_HOST_DEVICE int lora_dropout_keep(uint64_t seed, uint64_t e, float p) {
    uint64_t z = hash_mix64(seed + HASH_GOLDEN * (e + 1));
    return (float)(z >> 40) * (1.0f / 16777216.0f) >= p;
}

/* LeMo's random block score (the control of DESIGN section 8 step 2): a splitmix64 hash of
 * (seed, block) as a float in [0, 1), shared by every backend so that CPU and GPU pick the
 * same blocks. */
static inline LEMO_HOST_DEVICE float lemo_random_score(uint64_t seed, uint64_t block) {
    uint64_t z = hash_mix64(seed ^ (0xA0761D6478BD642Full * (block + 1)));
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

/* Sizes of the LeMo predictor ops' buffers, in fp32 elements (the same on every backend). */
static inline size_t lemo_tri_size(int nb) { return nb > 0 ? (size_t)nb * (nb + 1) / 2 : 0; }
static inline size_t lemo_predictor_weights(int B, int HS, int H1, int H2) {
    return 2 * ((size_t)H1 * B * HS + (size_t)H2 * H1 + (size_t)HS * H2);
}
static inline size_t lemo_predictor_acts(int S, int C, int HS, int B, int H1, int H2) {
    size_t R = (size_t)(S / B) * (C / HS);
    return (size_t)S * C + 2 * R * ((size_t)H1 + H2 + HS);
}
/* The backward's workspace: the full (nb, nb) dA, the outputs' gradients (R, HS) of both
 * networks, and dZ2 (R, H2), dZ1 (R, H1) of the one being differentiated. */
static inline size_t lemo_predictor_bwd_ws(int S, int C, int HS, int B, int H1, int H2) {
    size_t nb = (size_t)(S / B), R = nb * (C / HS);
    return nb * nb + R * (2 * (size_t)HS + H1 + H2);
}

/* The seed under which lora_dropout_keep(seed', e) == lora_dropout_keep(seed, first + e): the
 * masks of a slice of rows that starts at element `first` of the whole tensor (the hash adds
 * 0x9E3779B97F4A7C15 per element), so an op run over row tiles draws the whole tensor's mask. */
static inline LEMO_HOST_DEVICE uint64_t lora_dropout_seed_at(uint64_t seed, uint64_t first) {
    return seed + 0x9E3779B97F4A7C15ull * first;
}

const Backend *backend_cpu(void);
/* The CUDA table, or NULL with *why when no device answers. Defined by kernels/cuda (built as
 * liblemo_cuda.so); the engine reaches it through backend_select(), which loads that library. */
const Backend *backend_cuda(const char **why);

#ifdef __cplusplus
}
#endif

#endif
