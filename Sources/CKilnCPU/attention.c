// attention.c — the tile math of the CPU flash attention: masking, the online softmax update with a
// vectorised exp2, dropout keep factors from Philox-4x32-10, and the backward's dS = P∘(dP − D).
// Layouts and conventions are in include/kiln_attention.h; the GEMMs between these steps are
// OpenBLAS calls made by KilnCPU/CPUBackend+Attention.swift.
//
// Every row is processed over its visible key interval [lo, hi) only (causal and window rules);
// entries outside it are written as 0 without exponentiating.
#include "kiln_attention.h"
#include "kiln_cpu_internal.h"

#define KILN_LOG2E 1.44269504088896341f
#define KILN_LN2 0.6931471805599453
/// Lanes of the row max / row sum accumulators.
#define ATTN_LANES 32

/// 2^x, branch-free so that loops over it vectorise. x = n + f with n = round(x), |f| <= 1/2;
/// 2^f is Cephes' exp2f polynomial (degree 6, about 1 ulp), 2^n is built in the exponent bits.
/// x is clamped to [−127, 128]: below −127 (−inf included) the result is 0 (n = −127 has exponent
/// bits 0), 128 gives +inf. NaN propagates through the polynomial.
KILN_INLINE float kiln_exp2(float x) {
    x = x < -127.0f ? -127.0f : x;
    x = x > 128.0f ? 128.0f : x;
    // Adding 1.5 * 2^23 rounds x to the integer n, left in the low mantissa bits of t.
    const float shifter = 0x1.8p23f;
    const float t = x + shifter;
    const float nf = t - shifter;
    uint32_t tbits;
    memcpy(&tbits, &t, sizeof tbits);
    const int32_t n = (int32_t)(tbits - 0x4B400000u);
    const float f = x - nf;
    float p = 1.535336188319500e-4f;
    p = p * f + 1.339887440266574e-3f;
    p = p * f + 9.618437357674640e-3f;
    p = p * f + 5.550332471162809e-2f;
    p = p * f + 2.402264791363012e-1f;
    p = p * f + 6.931472028550421e-1f;
    p = p * f + 1.0f;
    const uint32_t bits = (uint32_t)(n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/// max_j x[j] over n entries (−inf when n == 0); plain compares, NaN is not propagated.
KILN_INLINE float attn_row_max(const float *x, int64_t n) {
    float lane[ATTN_LANES];
    for (int k = 0; k < ATTN_LANES; k++) lane[k] = -INFINITY;
    int64_t j = 0;
    for (; j + ATTN_LANES <= n; j += ATTN_LANES)
        for (int k = 0; k < ATTN_LANES; k++) lane[k] = x[j + k] > lane[k] ? x[j + k] : lane[k];
    float m = -INFINITY;
    for (; j < n; j++) m = x[j] > m ? x[j] : m;
    for (int k = 0; k < ATTN_LANES; k++) m = lane[k] > m ? lane[k] : m;
    return m;
}

/// Σ_j x[j] over n entries, in ATTN_LANES float lanes combined in double.
KILN_INLINE float attn_row_sum(const float *x, int64_t n) {
    float lane[ATTN_LANES] = {0};
    int64_t j = 0;
    for (; j + ATTN_LANES <= n; j += ATTN_LANES)
        for (int k = 0; k < ATTN_LANES; k++) lane[k] += x[j + k];
    double sum = 0;
    for (; j < n; j++) sum += x[j];
    for (int k = 0; k < ATTN_LANES; k++) sum += lane[k];
    return (float)sum;
}

/// The visible key interval [lo, hi) of local row r of the tile (lo >= hi: nothing visible).
KILN_INLINE void attn_visible(const kiln_attention_tile *t, int64_t r, int64_t *lo, int64_t *hi) {
    int64_t first = 0, end = t->cols;
    const int64_t i = t->query0 + r;
    if (t->causal || t->window > 0) {
        // j <= i  ⇔  c <= i − key0
        const int64_t last = i - t->key0;
        end = last + 1 < end ? last + 1 : end;
    }
    if (t->window > 0) {
        // j > i − window  ⇔  c >= i − window + 1 − key0
        const int64_t start = i - t->window + 1 - t->key0;
        first = start > first ? start : first;
    }
    if (end < 0) end = 0;
    if (first > end) first = end;
    *lo = first;
    *hi = end;
}

/// row[c] += log2(e)·mask[c·stride] for c in [lo, hi).
KILN_INLINE void attn_add_mask(float *row, const float *mask, int64_t stride, int64_t lo, int64_t hi) {
    if (stride == 1) {
        KILN_VECTORIZE for (int64_t c = lo; c < hi; c++) row[c] += KILN_LOG2E * mask[c];
    } else if (stride == 0) {
        const float v = KILN_LOG2E * mask[0];
        KILN_VECTORIZE for (int64_t c = lo; c < hi; c++) row[c] += v;
    } else {
        for (int64_t c = lo; c < hi; c++) row[c] += KILN_LOG2E * mask[c * stride];
    }
}

/// x[c] = 0 for c in [0, lo) and [hi, n).
KILN_INLINE void attn_zero_outside(float *x, int64_t n, int64_t lo, int64_t hi) {
    if (lo > 0) memset(x, 0, (size_t)lo * sizeof(float));
    if (hi < n) memset(x + hi, 0, (size_t)(n - hi) * sizeof(float));
}

// MARK: - Philox-4x32-10

/// Ten Philox-4x32 rounds on the counter (c0, c1, c2, c3) with key (k0, k1), as
/// KilnCore's Philox.block; returns the four output words in c.
KILN_INLINE void attn_philox(uint32_t c[4], uint32_t k0, uint32_t k1) {
    uint32_t c0 = c[0], c1 = c[1], c2 = c[2], c3 = c[3];
    for (int round = 0; round < 10; round++) {
        const uint64_t p0 = (uint64_t)0xD2511F53u * c0;
        const uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
        const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        const uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    c[0] = c0;
    c[1] = c1;
    c[2] = c2;
    c[3] = c3;
}

/// Philox blocks per chunk of the keep-factor loop (4 words each).
#define ATTN_PHILOX_BLOCKS 256

/// keep[c] = (unitFloat(word of flat index first + c) >= p) ? scale : 0 for c < n, where
/// unitFloat(w) = (w >> 8)·2^−24 and the word of index x is word x % 4 of the block of counter
/// (x/4 low 32 bits, x/4 high 32 bits, 0, 0).
KILN_INLINE void attn_keep_factors(uint64_t seed, uint64_t first, int64_t n, float p, float scale,
                                   float *keep) {
    const uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    // The words of blocks [block0, block0 + count), one array per word (vectorises over blocks).
    uint32_t w0[ATTN_PHILOX_BLOCKS], w1[ATTN_PHILOX_BLOCKS], w2[ATTN_PHILOX_BLOCKS],
        w3[ATTN_PHILOX_BLOCKS];
    int64_t c = 0;
    while (c < n) {
        const uint64_t x0 = first + (uint64_t)c;
        const uint64_t block0 = x0 >> 2;
        const int64_t offset = (int64_t)(x0 & 3);
        int64_t len = (int64_t)ATTN_PHILOX_BLOCKS * 4 - offset;
        len = n - c < len ? n - c : len;
        const int64_t count = (offset + len + 3) >> 2;
        for (int64_t b = 0; b < count; b++) {
            const uint64_t block = block0 + (uint64_t)b;
            uint32_t w[4] = {(uint32_t)block, (uint32_t)(block >> 32), 0, 0};
            attn_philox(w, k0, k1);
            w0[b] = w[0];
            w1[b] = w[1];
            w2[b] = w[2];
            w3[b] = w[3];
        }
        for (int64_t e = 0; e < len; e++) {
            const int64_t x = offset + e;
            const int64_t b = x >> 2;
            const int word = (int)(x & 3);
            const uint32_t bits = word == 0 ? w0[b] : word == 1 ? w1[b] : word == 2 ? w2[b] : w3[b];
            const float u = (float)(bits >> 8) * 0x1p-24f;
            keep[c + e] = u >= p ? scale : 0.0f;
        }
        c += len;
    }
}

// MARK: - Forward

KILN_INLINE void softmax_step_body(const kiln_attention_tile *t, float *s, int64_t lds,
                                   float *row_max, float *row_sum, float *out, int64_t ldo,
                                   int64_t value_dim) {
    const float p_drop = t->dropout;
    const float keep_scale = p_drop > 0.0f ? 1.0f / (1.0f - p_drop) : 1.0f;
    float keep[ATTN_PHILOX_BLOCKS * 4];
    for (int64_t r = 0; r < t->rows; r++) {
        float *row = s + r * lds;
        int64_t lo, hi;
        attn_visible(t, r, &lo, &hi);
        if (t->mask && lo < hi)
            attn_add_mask(row, t->mask + r * t->mask_row_stride, t->mask_col_stride, lo, hi);
        const float tile_max = attn_row_max(row + lo, hi - lo);
        const float m_old = row_max[r];
        const float m_new = tile_max > m_old ? tile_max : m_old;
        // Nothing finite seen yet: every visible entry is −inf and 2^(−inf − 0) = 0.
        const float m_use = m_new == -INFINITY ? 0.0f : m_new;
        attn_zero_outside(row, t->cols, lo, hi);
        KILN_VECTORIZE for (int64_t c = lo; c < hi; c++) row[c] = kiln_exp2(row[c] - m_use);
        const float sum = attn_row_sum(row + lo, hi - lo);
        const float alpha = kiln_exp2(m_old - m_use);
        row_sum[r] = row_sum[r] * alpha + sum;
        row_max[r] = m_new;
        if (alpha != 1.0f) {
            float *o = out + r * ldo;
            KILN_VECTORIZE for (int64_t v = 0; v < value_dim; v++) o[v] *= alpha;
        }
        if (p_drop > 0.0f) {
            const uint64_t first = t->dropout_index + (uint64_t)(r * t->dropout_row_stride);
            for (int64_t c0 = lo; c0 < hi; c0 += ATTN_PHILOX_BLOCKS * 4) {
                const int64_t len = hi - c0 < ATTN_PHILOX_BLOCKS * 4 ? hi - c0 : ATTN_PHILOX_BLOCKS * 4;
                attn_keep_factors(t->seed, first + (uint64_t)c0, len, p_drop, keep_scale, keep);
                KILN_VECTORIZE for (int64_t c = 0; c < len; c++) row[c0 + c] *= keep[c];
            }
        }
    }
}

KILN_MULTIVERSION(softmax_step,
                  (const kiln_attention_tile *t, float *s, int64_t lds, float *row_max,
                   float *row_sum, float *out, int64_t ldo, int64_t value_dim),
                  (t, s, lds, row_max, row_sum, out, ldo, value_dim))

void kiln_attention_softmax_step_f32(const kiln_attention_tile *tile, float *s, int64_t lds,
                                     float *row_max, float *row_sum, float *out, int64_t ldo,
                                     int64_t value_dim) {
    KILN_DISPATCH(softmax_step, (tile, s, lds, row_max, row_sum, out, ldo, value_dim))
}

KILN_INLINE void finish_body(int64_t rows, const float *row_max, const float *row_sum, float *out,
                             int64_t ldo, int64_t value_dim, float *lse) {
    for (int64_t r = 0; r < rows; r++) {
        float *o = out + r * ldo;
        const float l = row_sum[r];
        if (!(l > 0.0f) || row_max[r] == -INFINITY) {
            memset(o, 0, (size_t)value_dim * sizeof(float));
            lse[r] = -INFINITY;
            continue;
        }
        const float inverse = 1.0f / l;
        KILN_VECTORIZE for (int64_t v = 0; v < value_dim; v++) o[v] *= inverse;
        lse[r] = (float)((double)row_max[r] * KILN_LN2 + log((double)l));
    }
}

KILN_MULTIVERSION(finish,
                  (int64_t rows, const float *row_max, const float *row_sum, float *out,
                   int64_t ldo, int64_t value_dim, float *lse),
                  (rows, row_max, row_sum, out, ldo, value_dim, lse))

void kiln_attention_finish_f32(int64_t rows, const float *row_max, const float *row_sum, float *out,
                               int64_t ldo, int64_t value_dim, float *lse) {
    KILN_DISPATCH(finish, (rows, row_max, row_sum, out, ldo, value_dim, lse))
}

// MARK: - Backward

KILN_INLINE void probabilities_body(const kiln_attention_tile *t, float *s, int64_t lds,
                                    const float *lse, float *keep, float *dropped, int64_t ldk) {
    const float p_drop = t->dropout;
    const float keep_scale = p_drop > 0.0f ? 1.0f / (1.0f - p_drop) : 1.0f;
    for (int64_t r = 0; r < t->rows; r++) {
        float *row = s + r * lds;
        int64_t lo, hi;
        attn_visible(t, r, &lo, &hi);
        if (lse[r] == -INFINITY) lo = hi = 0; // no visible key at all: p = 0
        if (t->mask && lo < hi)
            attn_add_mask(row, t->mask + r * t->mask_row_stride, t->mask_col_stride, lo, hi);
        const float shift = KILN_LOG2E * lse[r];
        attn_zero_outside(row, t->cols, lo, hi);
        KILN_VECTORIZE for (int64_t c = lo; c < hi; c++) row[c] = kiln_exp2(row[c] - shift);
        if (p_drop > 0.0f) {
            float *k = keep + r * ldk, *d = dropped + r * ldk;
            const uint64_t first = t->dropout_index + (uint64_t)(r * t->dropout_row_stride);
            attn_zero_outside(k, t->cols, lo, hi);
            attn_zero_outside(d, t->cols, lo, hi);
            if (lo < hi) attn_keep_factors(t->seed, first + (uint64_t)lo, hi - lo, p_drop, keep_scale, k + lo);
            KILN_VECTORIZE for (int64_t c = lo; c < hi; c++) d[c] = row[c] * k[c];
        }
    }
}

KILN_MULTIVERSION(probabilities,
                  (const kiln_attention_tile *t, float *s, int64_t lds, const float *lse,
                   float *keep, float *dropped, int64_t ldk),
                  (t, s, lds, lse, keep, dropped, ldk))

void kiln_attention_probabilities_f32(const kiln_attention_tile *tile, float *s, int64_t lds,
                                      const float *lse, float *keep, float *dropped, int64_t ldk) {
    KILN_DISPATCH(probabilities, (tile, s, lds, lse, keep, dropped, ldk))
}

KILN_INLINE void score_gradient_body(int64_t rows, int64_t cols, float *p, int64_t ldp,
                                     const float *dp, int64_t lddp, const float *keep, int64_t ldk,
                                     const float *d) {
    for (int64_t r = 0; r < rows; r++) {
        float *pr = p + r * ldp;
        const float *dpr = dp + r * lddp;
        const float dr = d[r];
        if (keep) {
            const float *kr = keep + r * ldk;
            KILN_VECTORIZE for (int64_t c = 0; c < cols; c++) pr[c] = pr[c] * (dpr[c] * kr[c] - dr);
        } else {
            KILN_VECTORIZE for (int64_t c = 0; c < cols; c++) pr[c] = pr[c] * (dpr[c] - dr);
        }
    }
}

KILN_MULTIVERSION(score_gradient,
                  (int64_t rows, int64_t cols, float *p, int64_t ldp, const float *dp, int64_t lddp,
                   const float *keep, int64_t ldk, const float *d),
                  (rows, cols, p, ldp, dp, lddp, keep, ldk, d))

void kiln_attention_score_gradient_f32(int64_t rows, int64_t cols, float *p, int64_t ldp,
                                       const float *dp, int64_t lddp, const float *keep,
                                       int64_t ldk, const float *d) {
    KILN_DISPATCH(score_gradient, (rows, cols, p, ldp, dp, lddp, keep, ldk, d))
}

KILN_INLINE void row_dot_body(int64_t rows, int64_t dim, const float *a, const float *b, float *d) {
    for (int64_t r = 0; r < rows; r++) {
        const float *ar = a + r * dim, *br = b + r * dim;
        double lane[8] = {0};
        int64_t c = 0;
        for (; c + 8 <= dim; c += 8)
            for (int k = 0; k < 8; k++) lane[k] += (double)ar[c + k] * (double)br[c + k];
        double sum = 0;
        for (; c < dim; c++) sum += (double)ar[c] * (double)br[c];
        for (int k = 0; k < 8; k++) sum += lane[k];
        d[r] = (float)sum;
    }
}

KILN_MULTIVERSION(row_dot, (int64_t rows, int64_t dim, const float *a, const float *b, float *d),
                  (rows, dim, a, b, d))

void kiln_attention_row_dot_f32(int64_t rows, int64_t dim, const float *a, const float *b,
                                float *d) {
    KILN_DISPATCH(row_dot, (rows, dim, a, b, d))
}

// MARK: - Test entry points

KILN_INLINE void attn_exp2_body(const float *x, float *y, int64_t n) {
    KILN_VECTORIZE for (int64_t i = 0; i < n; i++) y[i] = kiln_exp2(x[i]);
}

KILN_MULTIVERSION(attn_exp2, (const float *x, float *y, int64_t n), (x, y, n))

void kiln_attention_exp2_f32(const float *x, float *y, int64_t n) { KILN_DISPATCH(attn_exp2, (x, y, n)) }

KILN_INLINE void dropout_keep_body(uint64_t seed, uint64_t first, int64_t n, float p, float *keep) {
    attn_keep_factors(seed, first, n, p, 1.0f, keep);
}

KILN_MULTIVERSION(dropout_keep, (uint64_t seed, uint64_t first, int64_t n, float p, float *keep),
                  (seed, first, n, p, keep))

void kiln_attention_dropout_keep_f32(uint64_t seed, uint64_t first, int64_t n, float p,
                                     float *keep) {
    KILN_DISPATCH(dropout_keep, (seed, first, n, p, keep))
}
