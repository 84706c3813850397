/* test_model_grad.c: the whole model's backward against finite differences, on tiny random
 * models with LoRA on all seven targets: dense, with kept-index lists, with dropout, with and
 * without activation checkpointing; and the kept-index semantics of DESIGN section 8 step 4. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "model.h"
#include "tiny_model.h"

#define S 12

static char dir_llama[64], dir_qwen[64];

static Model *load(const char *dir, int checkpointing, float dropout) {
    LoraSpec spec = {2, 4.0f, dropout, {1, 1, 1, 1, 1, 1, 1}};
    return tiny_model_load(dir, S, &spec, checkpointing);
}

static int32_t in[S] = {1, 5, 9, 3, 17, 22, 8, 30, 2, 14, 6, 11};
static int32_t tg[S] = {5, 9, 3, 17, 22, 8, 30, 2, 14, 6, 11, -1};

static double loss_of(Model *m, const int *const *kept, const int *nk, int train) {
    long c;
    return model_step(m, in, tg, S, &(LemoSelect){LEMO_SEL_GIVEN, 0, kept, nk}, 0, train, 1.0f, 1234, &c);
}

/* Central differences on a sample of LoRA parameters vs the analytic gradient. */
static void fd_check(const char *what, Model *m, const int *const *kept, const int *nk, int train) {
    long c;
    float *g = tiny_step_grads(m, in, tg, S, kept, nk, train, 1234, &c);
    CHECK(c == S - 1, "%s: counted %ld targets", what, c);
    size_t n = m->n_lora;
    double gmax = 0;
    for (size_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(g[i]));
    CHECK(gmax > 1e-3, "%s: gradients are all ~0 (max %g)", what, gmax);
    int bad = tiny_fd_disagreements(m, g, in, tg, S, kept, nk, train, 1234, 80, 5, what);
    CHECK(bad == 0, "%s: %d of 80 sampled gradients disagree with finite differences", what, bad);
    free(g);
}

static void grads_of(Model *m, const int *const *kept, const int *nk, int train, float *g, double *loss) {
    long c;
    model_zero_grads(m);
    *loss = model_step(m, in, tg, S, &(LemoSelect){LEMO_SEL_GIVEN, 0, kept, nk}, 1, train, 1.0f, 1234, &c);
    m->be->copy_to_host(g, m->lora_grads, 4 * m->n_lora);
}

int main(void) {
    strcpy(dir_llama, "/tmp/lemo-tiny-llama-XXXXXX");
    strcpy(dir_qwen, "/tmp/lemo-tiny-qwen-XXXXXX");
    if (!mkdtemp(dir_llama) || !mkdtemp(dir_qwen)) return 1;
    TinySpec llama = {2, 16, 4, 2, 4, 24, 32, 1, 0, 1, 0.3f};  // with attention_bias: q/k/v/o biases
    TinySpec qwen = {2, 16, 4, 1, 6, 20, 32, 0, 1, 0, 0.3f};
    if (tiny_model_write(dir_llama, &llama, 11) || tiny_model_write(dir_qwen, &qwen, 12)) return 1;

    int keep1[] = {0, 2, 3, 6, 7, 9, 11};
    const int *kept[2] = {NULL, keep1};
    int nk[2] = {S, 7};

    // 1. dense, checkpointing, Llama (tied embeddings)
    Model *m = load(dir_llama, 1, 0);
    fd_check("llama dense", m, NULL, NULL, 0);
    fd_check("llama kept", m, kept, nk, 0);

    // 2. the full kept list reproduces dense bit for bit (loss and gradients)
    int all[S];
    for (int i = 0; i < S; i++) all[i] = i;
    const int *full[2] = {all, all};
    int nfull[2] = {S, S};
    float *g1 = malloc(4 * m->n_lora), *g2 = malloc(4 * m->n_lora);
    double l1, l2;
    grads_of(m, NULL, NULL, 0, g1, &l1);
    grads_of(m, full, nfull, 0, g2, &l2);
    CHECK(l1 == l2, "full kept list loss %.9g != dense %.9g", l2, l1);
    CHECK(!memcmp(g1, g2, 4 * m->n_lora), "full kept list gradients differ from dense");

    // 3. checkpointing (recompute) and keep-all give identical results
    Model *m2 = load(dir_llama, 0, 0);
    grads_of(m2, kept, nk, 0, g1, &l1);
    grads_of(m, kept, nk, 0, g2, &l2);
    CHECK(l1 == l2, "checkpointing changes the loss: %.9g vs %.9g", l1, l2);
    CHECK(!memcmp(g1, g2, 4 * m->n_lora), "checkpointing changes the gradients");
    model_free(m2);
    free(g1);
    free(g2);
    model_free(m);

    // 4. Qwen2 shape (q/k/v biases, untied head, HS 6, NKV 1), dropout on, kept lists, no checkpointing
    m = load(dir_qwen, 0, 0.25f);
    fd_check("qwen2 dropout dense", m, NULL, NULL, 1);
    fd_check("qwen2 dropout kept", m, kept, nk, 1);
    double a = loss_of(m, NULL, NULL, 1), b = loss_of(m, NULL, NULL, 0);
    CHECK(a != b, "dropout has no effect (train %.9g == eval %.9g)", a, b);
    model_free(m);

    // 5. semantics on a one-layer model: an eliminated token is neither query nor key, kept
    //    tokens attend among themselves at their original positions (RoPE is relative, so
    //    keeping the suffix 3..S-1 equals a dense run on that suffix alone)
    char dir1[64] = "/tmp/lemo-tiny-one-XXXXXX";
    if (!mkdtemp(dir1)) return 1;
    TinySpec one = {1, 16, 4, 2, 4, 24, 32, 1, 0, 0, 0.3f};
    tiny_model_write(dir1, &one, 13);
    m = load(dir1, 1, 0);
    int suffix[S - 3];
    for (int i = 0; i < S - 3; i++) suffix[i] = i + 3;
    const int *ks[1] = {suffix};
    int nks[1] = {S - 3};
    for (int pos = 3; pos < S - 1; pos++) {
        int32_t t1[S];
        for (int i = 0; i < S; i++) t1[i] = i == pos ? tg[i] : -1;
        long c;
        double lk = model_step(m, in, t1, S, &(LemoSelect){LEMO_SEL_GIVEN, 0, ks, nks}, 0, 0, 1, 0, &c);
        double ld = model_step(m, in + 3, t1 + 3, S - 3, NULL, 0, 0, 1, 0, &c);
        CHECK_CLOSE(lk, ld, 2e-5, 2e-5, "kept suffix row %d: %.7f vs dense suffix %.7f", pos, lk, ld);
    }
    // changing an eliminated token (row 1, not kept) must not change any kept row's loss
    int keep_odd[] = {0, 2, 4, 6, 8, 10};
    const int *ko[1] = {keep_odd};
    int nko[1] = {6};
    for (int pos = 2; pos < S - 1; pos += 2) {
        int32_t t1[S], in2[S];
        memcpy(in2, in, sizeof in2);
        in2[1] = (in[1] + 7) % 32;
        for (int i = 0; i < S; i++) t1[i] = i == pos ? tg[i] : -1;
        long c;
        double la = model_step(m, in, t1, S, &(LemoSelect){LEMO_SEL_GIVEN, 0, ko, nko}, 0, 0, 1, 0, &c);
        double lb = model_step(m, in2, t1, S, &(LemoSelect){LEMO_SEL_GIVEN, 0, ko, nko}, 0, 0, 1, 0, &c);
        CHECK(la == lb, "kept row %d sees eliminated token 1: %.9g vs %.9g", pos, la, lb);
        double da = model_step(m, in, t1, S, NULL, 0, 0, 1, 0, &c);
        double db = model_step(m, in2, t1, S, NULL, 0, 0, 1, 0, &c);
        CHECK(da != db, "dense row %d should see token 1", pos);
    }
    model_free(m);
    tiny_model_remove(dir_llama), tiny_model_remove(dir_qwen), tiny_model_remove(dir1);
    return check_done("test_model_grad");
}
