// reduce.c — reductions over the middle axis of an [outer, n, inner] view: sum, mean, max, min,
// argmax, argmin, variance and logsumexp.
//
// inner == 1 reduces contiguous rows with several independent lanes; inner > 1 reduces tiles of up
// to KILN_TILE adjacent columns at once, vectorised along the columns. Sums accumulate in double.
#include "kiln_cpu_internal.h"

/// sum_i (x[i] - c)^2 in double over KILN_LANES lanes: the second pass of the variance.
KILN_INLINE double kiln_sum_sq_dev_f64(const float *x, int64_t n, double c) {
    double lane[KILN_LANES] = {0};
    int64_t i = 0;
    for (; i + KILN_LANES <= n; i += KILN_LANES)
        for (int k = 0; k < KILN_LANES; k++) {
            const double d = x[i + k] - c;
            lane[k] += d * d;
        }
    double sum = 0;
    for (; i < n; i++) sum += (x[i] - c) * (x[i] - c);
    for (int k = 0; k < KILN_LANES; k++) sum += lane[k];
    return sum;
}

/// The first i with x[i] == v (with x[i] NaN when v is NaN), 0 if none. Blocks of KILN_LANES are
/// tested with a vectorisable "any match" before the matching block is scanned.
KILN_INLINE int64_t kiln_find_first(const float *x, int64_t n, float v) {
    const int nan = v != v;
    int64_t i = 0;
    for (; i + KILN_LANES <= n; i += KILN_LANES) {
        int hit = 0;
        for (int k = 0; k < KILN_LANES; k++) hit |= (x[i + k] == v) | (nan & (x[i + k] != x[i + k]));
        if (hit) break;
    }
    for (; i < n; i++)
        if (x[i] == v || (nan && x[i] != x[i])) return i;
    return 0;
}

/// The divisor n - correction of the variance, clamped at 0 (which then gives inf or NaN).
KILN_INLINE double kiln_variance_divisor(int64_t n, float correction) {
    const double d = (double)n - correction;
    return d > 0.0 ? d : 0.0;
}

/// The result of reducing zero elements.
KILN_INLINE float kiln_reduce_empty(int op) {
    switch (op) {
    case KILN_REDUCE_MEAN:
    case KILN_REDUCE_VARIANCE: return NAN;
    case KILN_REDUCE_MAX:
    case KILN_REDUCE_LOGSUMEXP: return -INFINITY;
    case KILN_REDUCE_MIN: return INFINITY;
    default: return 0.0f;
    }
}

/// Reduces one contiguous row x[0..n), n >= 1.
KILN_INLINE float reduce_row(int op, const float *x, int64_t n, float param) {
    switch (op) {
    case KILN_REDUCE_SUM: return (float)kiln_sum_f64(x, n);
    case KILN_REDUCE_MEAN: return (float)(kiln_sum_f64(x, n) / (double)n);
    case KILN_REDUCE_MAX: return kiln_max_f32(x, n);
    case KILN_REDUCE_MIN: return kiln_min_f32(x, n);
    case KILN_REDUCE_ARGMAX: return (float)kiln_find_first(x, n, kiln_max_f32(x, n));
    case KILN_REDUCE_ARGMIN: return (float)kiln_find_first(x, n, kiln_min_f32(x, n));
    case KILN_REDUCE_VARIANCE: {
        const double mean = kiln_sum_f64(x, n) / (double)n;
        return (float)(kiln_sum_sq_dev_f64(x, n, mean) / kiln_variance_divisor(n, param));
    }
    case KILN_REDUCE_LOGSUMEXP: {
        // Shift by the maximum unless it is infinite: then sum(e^x) is already 0 or +inf.
        const float m = kiln_max_f32(x, n);
        const float shift = isinf(m) ? 0.0f : m;
        return (float)(shift + log(kiln_sum_exp_f64(x, n, shift, NULL)));
    }
    default: return 0.0f;
    }
}

/// acc[i] = sum_j x[j * stride + i] for i < w, in double.
KILN_INLINE void kiln_cols_sum_f64(const float *x, int64_t n, int64_t stride, int64_t w,
                                   double *acc) {
    for (int64_t i = 0; i < w; i++) acc[i] = 0.0;
    for (int64_t j = 0; j < n; j++) {
        const float *row = x + j * stride;
        for (int64_t i = 0; i < w; i++) acc[i] += row[i];
    }
}

/// out[i] = the index j of the first maximum (is_max) or minimum of x[j * stride + i], or of the
/// first NaN if the column has one.
KILN_INLINE void kiln_cols_arg(const float *x, int64_t n, int64_t stride, int64_t w, float *out,
                               int is_max) {
    float best[KILN_TILE];
    int64_t index[KILN_TILE];
    for (int64_t i = 0; i < w; i++) {
        best[i] = x[i];
        index[i] = 0;
    }
    for (int64_t j = 1; j < n; j++) {
        const float *row = x + j * stride;
        for (int64_t i = 0; i < w; i++) {
            const float v = row[i], b = best[i];
            const int better = (is_max ? v > b : v < b) | ((v != v) & (b == b));
            best[i] = better ? v : b;
            index[i] = better ? j : index[i];
        }
    }
    for (int64_t i = 0; i < w; i++) out[i] = (float)index[i];
}

/// Reduces the w <= KILN_TILE adjacent columns x[j * stride + i] (j < n, n >= 1) into out[0..w).
KILN_INLINE void reduce_cols(int op, const float *x, int64_t n, int64_t stride, int64_t w,
                             float *out, float param) {
    double acc[KILN_TILE];
    switch (op) {
    case KILN_REDUCE_SUM:
        kiln_cols_sum_f64(x, n, stride, w, acc);
        for (int64_t i = 0; i < w; i++) out[i] = (float)acc[i];
        break;
    case KILN_REDUCE_MEAN:
        kiln_cols_sum_f64(x, n, stride, w, acc);
        for (int64_t i = 0; i < w; i++) out[i] = (float)(acc[i] / (double)n);
        break;
    case KILN_REDUCE_MAX: kiln_cols_max(x, n, stride, w, out); break;
    case KILN_REDUCE_MIN: kiln_cols_min(x, n, stride, w, out); break;
    case KILN_REDUCE_ARGMAX: kiln_cols_arg(x, n, stride, w, out, 1); break;
    case KILN_REDUCE_ARGMIN: kiln_cols_arg(x, n, stride, w, out, 0); break;
    case KILN_REDUCE_VARIANCE: {
        double ss[KILN_TILE];
        kiln_cols_sum_f64(x, n, stride, w, acc);
        for (int64_t i = 0; i < w; i++) {
            acc[i] /= (double)n;
            ss[i] = 0.0;
        }
        for (int64_t j = 0; j < n; j++) {
            const float *row = x + j * stride;
            for (int64_t i = 0; i < w; i++) {
                const double d = row[i] - acc[i];
                ss[i] += d * d;
            }
        }
        const double divisor = kiln_variance_divisor(n, param);
        for (int64_t i = 0; i < w; i++) out[i] = (float)(ss[i] / divisor);
        break;
    }
    case KILN_REDUCE_LOGSUMEXP: {
        float shift[KILN_TILE];
        kiln_cols_max(x, n, stride, w, shift);
        for (int64_t i = 0; i < w; i++) {
            shift[i] = isinf(shift[i]) ? 0.0f : shift[i];
            acc[i] = 0.0;
        }
        for (int64_t j = 0; j < n; j++) {
            const float *row = x + j * stride;
            for (int64_t i = 0; i < w; i++) acc[i] += kiln_exp(row[i] - shift[i]);
        }
        for (int64_t i = 0; i < w; i++) out[i] = (float)(shift[i] + log(acc[i]));
        break;
    }
    default: break;
    }
}

KILN_INLINE void reduce_body(int op, const float *x, float *out, int64_t outer, int64_t n,
                             int64_t inner, float param) {
    if (n == 0) {
        const float empty = kiln_reduce_empty(op);
        for (int64_t i = 0; i < outer * inner; i++) out[i] = empty;
        return;
    }
    for (int64_t o = 0; o < outer; o++) {
        const float *xo = x + o * n * inner;
        float *oo = out + o * inner;
        if (inner == 1) {
            oo[0] = reduce_row(op, xo, n, param);
            continue;
        }
        for (int64_t i0 = 0; i0 < inner; i0 += KILN_TILE) {
            const int64_t w = inner - i0 < KILN_TILE ? inner - i0 : KILN_TILE;
            reduce_cols(op, xo + i0, n, inner, w, oo + i0, param);
        }
    }
}

KILN_MULTIVERSION(reduce, (int op, const float *x, float *out, int64_t outer, int64_t n,
                           int64_t inner, float param),
                  (op, x, out, outer, n, inner, param))

void kiln_reduce_f32(int op, const float *x, float *out, int64_t outer, int64_t n, int64_t inner,
                     float param) {
    KILN_DISPATCH(reduce, (op, x, out, outer, n, inner, param))
}
