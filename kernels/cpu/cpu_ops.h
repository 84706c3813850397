/* cpu_ops.h: the CPU backend's ops, one family per file, gathered into the
 * Backend table by backend_cpu.c.
 *
 * Every op here is fp32 (act = float) and deterministic: the same inputs give
 * bit-identical outputs run to run, because each output element is computed by
 * exactly one thread in a fixed order (static or disjoint partitions, no atomics,
 * no reductions whose order depends on thread timing). Matmuls go to OpenBLAS
 * sgemm, which threads itself; the loops over rows/heads use OpenMP. Only attention
 * calls sgemm inside its OpenMP loops (on small blocks), and it sets OpenBLAS to one
 * thread around them, so the two thread pools never nest.
 *
 * Ops that need scratch memory allocate it per call (except the attention backward's
 * S-sized scratch and the LeMo ops' nb-sized scratch, which the caller provides); on the
 * (practically impossible) failure of such an allocation they fill their written
 * outputs with NaN, so the failure surfaces as a non-finite loss instead of silent
 * garbage. */
#ifndef LEMO_CPU_OPS_H
#define LEMO_CPU_OPS_H

#include <stddef.h>
#include <stdint.h>

/* loss.c: the scratch the ops hold beside the memory plan */
size_t cpu_scratch_bytes(int S, int V, int R, int n, const int *K, const int *N, float p);

/* rows.c */
void cpu_embedding_forward(void *out, const int *tok, const void *wte, int S, int C);
void cpu_add_inplace(void *a, const void *b, size_t n);
void cpu_gather_rows(void *out, const void *in, const int *idx, int n, int C);
void cpu_scatter_add_rows(void *out, const void *in, const int *idx, int n, int C);

/* norm.c */
void cpu_rmsnorm_forward(void *out, float *rstd, const void *in, const void *w,
                         int S, int C, float eps);
void cpu_rmsnorm_backward(void *din, const void *dout, const void *in, const void *w,
                          const float *rstd, int S, int C);

/* matmul.c */
void cpu_matmul_forward(void *out, const void *in, const void *w, const void *bias,
                        int S, int K, int N, int accumulate);
void cpu_matmul_backward(void *din, const void *dout, const void *w, int S, int K, int N);

/* lora.c */
void cpu_lora_forward(void *out, float *t, const void *in, const float *A, const float *B,
                      int S, int K, int N, int R, float scale, float p, uint64_t seed);
void cpu_lora_backward(void *din, float *dA, float *dB, const void *dout, const void *in,
                       const float *t, const float *A, const float *B,
                       int S, int K, int N, int R, float scale, float p, uint64_t seed);

/* rope.c */
void cpu_rope_forward(void *x, const int *pos, const float *inv_freq, int S, int NH, int HS,
                      float mscale);
void cpu_rope_backward(void *dx, const int *pos, const float *inv_freq, int S, int NH, int HS,
                       float mscale);

/* attention.c */
void cpu_attention_forward(void *out, float *lse, const void *q, const void *k, const void *v,
                           int S, int NH, int NKV, int HS);
void cpu_attention_backward(void *dq, void *dk, void *dv, const void *dout, const void *out,
                            const float *lse, const void *q, const void *k, const void *v,
                            int S, int NH, int NKV, int HS, void *work);
size_t cpu_attention_bwd_ws_bytes(int S, int NH, int NKV, int HS);

/* attention_partial.c: ring attention's pieces (context parallel): query rows against one K/V
 * shard, causal by global positions, and the log-sum-exp merge of such partials (fp32) */
void cpu_attention_partial_forward(float *out, float *lse, const void *q, const int *qpos, int nq, const void *k,
                                   const void *v, const int *kpos, int nk, int NH, int NKV, int HS);
void cpu_attention_merge(float *out, float *lse, const float *pout, const float *plse, int nq, int NH, int HS);
void cpu_attention_rowdot(float *D, const void *dout, const void *out, int n, int NH, int HS);
void cpu_attention_partial_backward(float *dq, float *dk, float *dv, const void *dout, const float *lse,
                                    const float *D, const void *q, const int *qpos, int nq, const void *k,
                                    const void *v, const int *kpos, int nk, int NH, int NKV, int HS);

/* lemo.c: LeMo's block scores and top-k block selection */
void cpu_lemo_block_scores(float *score, const void *q, const void *k, int S, int NH, int NKV,
                           int HS, int B, void *ws);
size_t cpu_lemo_scores_ws_bytes(int S, int B);
void cpu_lemo_random_scores(float *score, int nb, uint64_t seed);
void cpu_lemo_select_blocks(int *idx, const float *score, int nb, int k, int B, void *ws);
size_t cpu_lemo_select_ws_bytes(int nb);
void cpu_lemo_block_matrix(float *A, const void *q, const void *k, int S, int NH, int NKV, int HS, int B);
void cpu_lemo_matrix_scores(float *score, const float *A, int nb);
/* lemo_predictor.c: LeMo's pattern predictors (forward, backward, their SmoothL1 loss) */
void cpu_lemo_predictor_forward(float *A, float *acts, const void *h, const float *w, int S, int C, int HS,
                                int B, int H1, int H2);
void cpu_lemo_predictor_backward(float *dw, const float *dA, const float *acts, const float *w, int S, int C,
                                 int HS, int B, int H1, int H2, float *ws);
double cpu_lemo_smooth_l1(float *d, const float *p, const float *t, size_t n, float beta, float scale);

/* swiglu.c */
void cpu_swiglu_forward(void *out, const void *gate, const void *up, size_t n);
void cpu_swiglu_backward(void *dgate, void *dup, const void *dout, const void *gate,
                         const void *up, size_t n);

/* loss.c */
double cpu_lm_head_ce(void *dx, long *count, long *correct, const void *x, const void *w, const int *target,
                      int S, int C, int V, float grad_scale);

/* optim.c */
double cpu_sumsq(const float *g, size_t n);
void cpu_scale(float *g, size_t n, float s);
void cpu_adamw(float *p, const float *g, float *m, float *v, size_t n,
               float lr, float b1, float b2, float eps, float wd, int t);

/* Fills x(n) with NaN: the visible result of an op whose scratch allocation failed. */
void cpu_fill_nan(float *x, size_t n);

#endif
