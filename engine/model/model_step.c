/* model_step.c: one window through the model: the embedding, each layer's forward (its kept
 * rows chosen there, by the LeMo schedule, or given), the fused LM head and loss, and the
 * backward with each layer's recompute; layer inputs and attention outputs copied to and from
 * host memory on the side stream as the activation policy says (model_internal.h). */
#include <stdlib.h>

#include "model_internal.h"

double model_step(Model *m, const int32_t *inputs, const int32_t *targets, int S, const LemoSelect *sel,
                  int backward, int train, float grad_scale, uint64_t dropout_seed, long *count) {
    const Backend *be = m->be;
    const ModelConfig *c = &m->cfg;
    int C = c->hidden, L = c->n_layers;
    size_t as = be->act_size, SC = (size_t)S * C;
    if (S > m->S_max) abort();  // callers size the model for their longest window

    be->copy_to_device(m->tok_in, inputs, 4 * (size_t)S);
    be->copy_to_device(m->tok_tgt, targets, 4 * (size_t)S);
    // each layer's kept rows: all of them (iota), a given list, or the schedule's choice,
    // made in the layer's forward below (select[l] blocks) and reused by its recompute and
    // backward; a forward-only step runs every layer in buffers of S rows
    const int *idx[L];
    int n[L], select[L];
    int sched = sel && sel->mode == LEMO_SEL_SCHEDULE && m->lemo.on && S % m->lemo.block == 0;
    for (int l = 0; l < L; l++) {
        int *kl = m->kept + (size_t)l * m->S_max;
        select[l] = 0;
        n[l] = S;
        idx[l] = m->iota;
        if (sel && sel->mode == LEMO_SEL_GIVEN && sel->kept && sel->kept[l]) {
            if (sel->n_kept[l] > (backward ? m->rows[l] : S) || sel->n_kept[l] < 1) abort();  // a caller's bug
            n[l] = sel->n_kept[l];
            idx[l] = kl;
            be->copy_to_device(kl, sel->kept[l], 4 * (size_t)n[l]);
        } else if (sched && lemo_rows(&m->lemo, l, S) < S) {
            n[l] = lemo_rows(&m->lemo, l, S);
            select[l] = n[l] / m->lemo.block;
            idx[l] = kl;
        }
        m->n_kept[l] = n[l];
    }
    // a forward-only step attends densely where the layer's own buffers are too small: in
    // their dense view (eval_acts) or, where that does not fit, the shared set
    int fwd_only = !backward;

    // layer j's input on the device (j == L: the final residual) and on the host; with
    // ACT_OFFLOAD_ATT layer j's attention output and lse in device pair j % 2 and on the host
    const ActPolicy *act = &m->act;
    char *host = m->host_resid;
#define XIN(j) ((char *)m->xin[j])
#define XHOST(j) (host + m->host_off[2 * (j)])
#define IN_SLOT(j) input_in_slot(act, L, j)
#define TO_HOST(j) input_to_host(act, L, j)
#define ATT_HOST(j) att_to_host(act, L, j)
    size_t att_b = as * (size_t)c->n_heads * c->head_dim;
#define HATT(j) (host + m->host_off[2 * (j) + 1])
#define HLSE(j) (HATT(j) + align256(att_b * (size_t)m->rows[j]))
    // the shared activations use the pair in turn when any layer offloads its attention output
    int att_pair = m->att_buf[1] != NULL;
#define ROTATES(l) (att_pair && act->layer[l] != ACT_KEEP)
    be->embedding_forward(XIN(0), m->tok_in, m->wte, S, C);
    if (backward && TO_HOST(0)) be->copy_async(XHOST(0), XIN(0), SC * as, 0);
    for (int l = 0; l < L; l++) {
        LayerCtx x = {m, l, train, dropout_seed, select[l], sel ? sel->seed : 0};
        LayerActs *a = m->layer_acts[l];
        if (fwd_only && n[l] > m->rows[l])
            a = m->eval_acts[a - m->acts].h ? &m->eval_acts[a - m->acts] : &m->acts[m->n_acts - 1];
        if (IN_SLOT(l + 1)) be->copy_wait((l + 1) % 2);  // the slot written here (layer l-1's input) is out
        if (ROTATES(l)) {
            a->att = m->att_buf[l % 2], a->lse = m->lse_buf[l % 2];
            be->copy_wait(2 + l % 2);  // layer l-2's attention output has left this pair
        }
        double t0 = model_profile_mark(m);
        model_layer_forward(&x, a, XIN(l), XIN(l + 1), idx[l], n[l], S);
        if (m->profile_clock) m->profile[3 * l] += model_profile_mark(m) - t0;
        if (backward && l + 1 < L && TO_HOST(l + 1)) be->copy_async(XHOST(l + 1), XIN(l + 1), SC * as, (l + 1) % 2);
        if (backward && ATT_HOST(l)) {
            be->copy_async(HATT(l), a->att, att_b * n[l], 2 + l % 2);
            be->copy_async(HLSE(l), a->lse, 4 * (size_t)c->n_heads * n[l], 2 + l % 2);
        }
    }
    const void *xL = XIN(L);
    // xf, dxf are dok, dh2: the last layer's forward is done with dok, and nothing writes
    // either until the final rmsnorm backward below has read them
    be->rmsnorm_forward(m->xf, m->rstdf, xL, m->final_norm, S, C, c->norm_eps);
    double loss = be->lm_head_ce(backward ? m->dxf : NULL, count, &m->n_correct, m->xf, m->lm_head, m->tok_tgt, S, C, c->vocab,
                                 grad_scale);
    if (!backward) return loss;

    be->zero(m->dx, as * SC);
    be->rmsnorm_backward(m->dx, m->dxf, xL, m->final_norm, m->rstdf, S, C);
    for (int l = L - 1; l >= 0; l--) {
        LayerCtx x = {m, l, train, dropout_seed, 0, 0};  // the recompute reuses idx[l]: no rescoring
        LayerActs *a = m->layer_acts[l];
        // bring layer l-1's input (and attention output) into the slot (pair) layer l+1, the
        // final norm or the forward is done with, while this layer computes; then wait for
        // this layer's own (layer L-1's are still on the device)
        if (l >= 1 && TO_HOST(l - 1)) be->copy_async(XIN(l - 1), XHOST(l - 1), SC * as, (l - 1) % 2);
        if (IN_SLOT(l)) be->copy_wait(l % 2);
        if (l >= 1 && ATT_HOST(l - 1)) {
            be->copy_async(m->att_buf[(l - 1) % 2], HATT(l - 1), att_b * n[l - 1], 2 + (l - 1) % 2);
            be->copy_async(m->lse_buf[(l - 1) % 2], HLSE(l - 1), 4 * (size_t)c->n_heads * n[l - 1], 2 + (l - 1) % 2);
        }
        if (ROTATES(l)) {
            be->copy_wait(2 + l % 2);
            a->att = m->att_buf[l % 2], a->lse = m->lse_buf[l % 2];
        }
        const void *xin = XIN(l);
        // recompute (its output unused, dh2 when it is formed): the forward writes only a's
        // buffers, dok and dh2, all dead here (the final norm's xf, dxf, or layer l+1's dL/dh,
        // dL/dhk and attention set, all consumed)
        double t0 = model_profile_mark(m);
        if (act->layer[l] != ACT_KEEP) model_layer_forward(&x, a, xin, NULL, idx[l], n[l], S);
        double t1 = model_profile_mark(m);
        model_layer_backward(&x, a, xin, idx[l], n[l], S);
        if (m->profile_clock) m->profile[3 * l + 1] += t1 - t0, m->profile[3 * l + 2] += model_profile_mark(m) - t1;
    }
#undef XIN
#undef XHOST
#undef IN_SLOT
#undef TO_HOST
#undef ATT_HOST
#undef HATT
#undef HLSE
#undef ROTATES
    be->sync();
    return loss;
}
