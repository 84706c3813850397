/* lemo_predictor.c: LeMo's pattern predictors on the CPU (backend.h, "LeMo pattern
 * predictors"): the forward that turns a layer's normed input into the predicted block matrix,
 * its backward into the weights, and the SmoothL1 loss lemo prepare trains them with.
 *
 * Letters: nb = S / B blocks, NC = C / HS chunks a row is cut into, D = B * HS the input width,
 * R = nb * NC the rows both networks run over, H1, H2 the hidden widths.
 *
 * Layout. X row m*NC + c is block m's chunk c: its B rows' chunk-c vectors one after the
 * other. Rows of one block are adjacent, so each network's output (R, HS) read as (nb, NC*HS)
 * is one row per block, and A^[m,n] = sum_c q^[m,c] . k^[n,c] is the dot product of rows m and
 * n: A^ = Q^ K^T with no reshaping, and its backward two GEMMs. The shared weights make each
 * linear layer one sgemm over all R rows (OpenBLAS threads it).
 *
 * The triangle. Only m >= n is formed: it is all the block scores read (lemo_matrix_scores)
 * and all the exact target has. Its entries are dot products of NC*HS floats summed in a fixed
 * order in one thread each, so the result does not depend on the thread count.
 *
 * Shapes outside the contract end the process with a message, as in lemo.c. */
#include "cpu_ops.h"

#include "backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

static void pred_check(const char *op, int S, int C, int HS, int B, int H1, int H2) {
    if (B > 0 && HS > 0 && S > 0 && S % B == 0 && C % HS == 0 && H1 > 0 && H2 > 0) return;
    fprintf(stderr, "lemo: %s: S must be a multiple of B, C of HS, widths positive\n", op);
    fflush(stderr);
    exit(70);
}

/* The three weight matrices of network p (0: Q, 1: K) in a layer's packed w. */
static void pred_weights(const float *w, int p, int D, int HS, int H1, int H2, const float **W1,
                         const float **W2, const float **W3) {
    const float *b = w + (size_t)p * ((size_t)H1 * D + (size_t)H2 * H1 + (size_t)HS * H2);
    *W1 = b;
    *W2 = b + (size_t)H1 * D;
    *W3 = *W2 + (size_t)H2 * H1;
}

/* The acts of network p: Z1 (R, H1), Z2 (R, H2), Y (R, HS), after X (S*C). */
static float *pred_acts(float *acts, int p, size_t SC, size_t R, int HS, int H1, int H2) {
    return acts + SC + (size_t)p * R * ((size_t)H1 + H2 + HS);
}

static void relu(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void cpu_lemo_predictor_forward(float *A, float *acts, const void *hv, const float *w, int S, int C, int HS,
                                int B, int H1, int H2) {
    pred_check("lemo_predictor_forward", S, C, HS, B, H1, H2);
    const float *h = hv;  // (S, C)
    int nb = S / B, NC = C / HS, D = B * HS;
    size_t R = (size_t)nb * NC, SC = (size_t)S * C;
    float *X = acts;  // (R, D)
    for (int m = 0; m < nb; m++)
        for (int c = 0; c < NC; c++)
            for (int i = 0; i < B; i++)
                memcpy(X + ((size_t)m * NC + c) * D + (size_t)i * HS, h + ((size_t)m * B + i) * C + (size_t)c * HS,
                       sizeof(float) * HS);
    for (int p = 0; p < 2; p++) {
        const float *W1, *W2, *W3;
        pred_weights(w, p, D, HS, H1, H2, &W1, &W2, &W3);
        float *Z1 = pred_acts(acts, p, SC, R, HS, H1, H2), *Z2 = Z1 + R * H1, *Y = Z2 + R * H2;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, H1, D, 1.0f, X, D, W1, D, 0.0f, Z1, H1);
        relu(Z1, R * H1);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, H2, H1, 1.0f, Z1, H1, W2, H1, 0.0f, Z2, H2);
        relu(Z2, R * H2);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, HS, H2, 1.0f, Z2, H2, W3, H2, 0.0f, Y, HS);
    }
    const float *Yq = pred_acts(acts, 0, SC, R, HS, H1, H2) + R * (H1 + H2);  // (nb, NC*HS)
    const float *Yk = pred_acts(acts, 1, SC, R, HS, H1, H2) + R * (H1 + H2);
    int E = NC * HS;
#pragma omp parallel for schedule(dynamic, 4)
    for (int m = 0; m < nb; m++)
        for (int n = 0; n <= m; n++) {
            const float *a = Yq + (size_t)m * E, *b = Yk + (size_t)n * E;
            float s = 0.0f;
            for (int e = 0; e < E; e++) s += a[e] * b[e];
            A[(size_t)m * (m + 1) / 2 + n] = s;
        }
}

void cpu_lemo_predictor_backward(float *dw, const float *dA, const float *acts, const float *w, int S, int C,
                                 int HS, int B, int H1, int H2, float *ws) {
    pred_check("lemo_predictor_backward", S, C, HS, B, H1, H2);
    int nb = S / B, NC = C / HS, D = B * HS, E = NC * HS;
    size_t R = (size_t)nb * NC, SC = (size_t)S * C;
    float *dF = ws;                               // (nb, nb) dA, zero above the diagonal
    float *dY[2] = {dF + (size_t)nb * nb, NULL};  // (R, HS) = (nb, E) each
    dY[1] = dY[0] + R * HS;
    float *dZ2 = dY[1] + R * HS, *dZ1 = dZ2 + R * H2;  // (R, H2), (R, H1)
    for (int m = 0; m < nb; m++)
        for (int n = 0; n < nb; n++) dF[(size_t)m * nb + n] = n <= m ? dA[(size_t)m * (m + 1) / 2 + n] : 0.0f;
    const float *X = acts;
    const float *Y[2];
    for (int p = 0; p < 2; p++) Y[p] = pred_acts((float *)acts, p, SC, R, HS, H1, H2) + R * (H1 + H2);
    // A^ = Yq Yk^T over the triangle: dYq = dF Yk, dYk = dF^T Yq
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, E, nb, 1.0f, dF, nb, Y[1], E, 0.0f, dY[0], E);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nb, E, nb, 1.0f, dF, nb, Y[0], E, 0.0f, dY[1], E);
    size_t half = (size_t)H1 * D + (size_t)H2 * H1 + (size_t)HS * H2;
    for (int p = 0; p < 2; p++) {
        const float *W1, *W2, *W3;
        pred_weights(w, p, D, HS, H1, H2, &W1, &W2, &W3);
        float *dW1 = dw + p * half, *dW2 = dW1 + (size_t)H1 * D, *dW3 = dW2 + (size_t)H2 * H1;
        const float *Z1 = pred_acts((float *)acts, p, SC, R, HS, H1, H2), *Z2 = Z1 + R * H1;
        // Y = Z2 W3^T: dW3 += dY^T Z2, dZ2 = dY W3, through the relu (Z2 > 0 where it passed)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, HS, H2, (int)R, 1.0f, dY[p], HS, Z2, H2, 1.0f, dW3, H2);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, H2, HS, 1.0f, dY[p], HS, W3, H2, 0.0f, dZ2, H2);
        for (size_t i = 0; i < R * H2; i++) dZ2[i] = Z2[i] > 0.0f ? dZ2[i] : 0.0f;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, H2, H1, (int)R, 1.0f, dZ2, H2, Z1, H1, 1.0f, dW2, H1);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, H1, H2, 1.0f, dZ2, H2, W2, H1, 0.0f, dZ1, H1);
        for (size_t i = 0; i < R * H1; i++) dZ1[i] = Z1[i] > 0.0f ? dZ1[i] : 0.0f;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, H1, D, (int)R, 1.0f, dZ1, H1, X, D, 1.0f, dW1, D);
    }
}

double cpu_lemo_smooth_l1(float *d, const float *p, const float *t, size_t n, float beta, float scale) {
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        float x = p[i] - t[i], ax = fabsf(x);
        if (ax < beta) {
            sum += 0.5 * (double)x * x / beta;
            d[i] = scale * x / beta;
        } else {
            sum += (double)ax - 0.5 * beta;
            d[i] = x > 0 ? scale : -scale;
        }
    }
    return sum;
}
