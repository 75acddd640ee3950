// softmax.c — softmax y = e^(x - m) / sum e^(x - m) and log-softmax y = x - m - log(sum e^(x - m)),
// m = max x, over the middle axis of an [outer, n, inner] view.
//
// inner == 1 works on contiguous rows; inner > 1 on tiles of up to KILN_TILE adjacent columns,
// vectorised along the columns. Sums accumulate in double. y may alias x exactly.
#include "kiln_cpu_internal.h"

/// Softmax of one contiguous row of n elements.
KILN_INLINE void softmax_row(const float *x, float *y, int64_t n, int logarithm) {
    const float m = kiln_max_f32(x, n);
    if (logarithm) {
        const float log_sum = (float)log(kiln_sum_exp_f64(x, n, m, NULL));
        KILN_VECTORIZE for (int64_t i = 0; i < n; i++) y[i] = (x[i] - m) - log_sum;
    } else {
        const float inverse = (float)(1.0 / kiln_sum_exp_f64(x, n, m, y));
        KILN_VECTORIZE for (int64_t i = 0; i < n; i++) y[i] *= inverse;
    }
}

/// Softmax of the w <= KILN_TILE adjacent columns x[j * stride + i] (j < n), each on its own.
KILN_INLINE void softmax_cols(const float *x, float *y, int64_t n, int64_t stride, int64_t w,
                              int logarithm) {
    float m[KILN_TILE], scale[KILN_TILE];
    double sum[KILN_TILE];
    kiln_cols_max(x, n, stride, w, m);
    for (int64_t i = 0; i < w; i++) sum[i] = 0.0;
    if (logarithm) {
        for (int64_t j = 0; j < n; j++) {
            const float *row = x + j * stride;
            for (int64_t i = 0; i < w; i++) sum[i] += kiln_exp(row[i] - m[i]);
        }
        for (int64_t i = 0; i < w; i++) scale[i] = (float)log(sum[i]);
        for (int64_t j = 0; j < n; j++) {
            const float *row = x + j * stride;
            float *out = y + j * stride;
            KILN_VECTORIZE for (int64_t i = 0; i < w; i++) out[i] = (row[i] - m[i]) - scale[i];
        }
    } else {
        for (int64_t j = 0; j < n; j++) {
            const float *row = x + j * stride;
            float *out = y + j * stride;
            KILN_VECTORIZE for (int64_t i = 0; i < w; i++) {
                const float e = kiln_exp(row[i] - m[i]);
                out[i] = e;
                sum[i] += e;
            }
        }
        for (int64_t i = 0; i < w; i++) scale[i] = (float)(1.0 / sum[i]);
        for (int64_t j = 0; j < n; j++) {
            float *out = y + j * stride;
            for (int64_t i = 0; i < w; i++) out[i] *= scale[i];
        }
    }
}

KILN_INLINE void softmax_body(const float *x, float *y, int64_t outer, int64_t n, int64_t inner,
                              int logarithm) {
    if (n == 0) return;
    for (int64_t o = 0; o < outer; o++) {
        const float *xo = x + o * n * inner;
        float *yo = y + o * n * inner;
        if (inner == 1) {
            softmax_row(xo, yo, n, logarithm);
            continue;
        }
        for (int64_t i0 = 0; i0 < inner; i0 += KILN_TILE) {
            const int64_t w = inner - i0 < KILN_TILE ? inner - i0 : KILN_TILE;
            softmax_cols(xo + i0, yo + i0, n, inner, w, logarithm);
        }
    }
}

KILN_MULTIVERSION(softmax, (const float *x, float *y, int64_t outer, int64_t n, int64_t inner,
                            int logarithm),
                  (x, y, outer, n, inner, logarithm))

void kiln_softmax_f32(const float *x, float *y, int64_t outer, int64_t n, int64_t inner,
                      int logarithm) {
    KILN_DISPATCH(softmax, (x, y, outer, n, inner, logarithm))
}
