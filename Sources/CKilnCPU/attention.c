// attention.c — the tile math of the CPU flash attention: masking, the online softmax update with a
// vectorised exp2, dropout keep factors from Philox-4x32-10, the backward's dS = P∘(dP − D), and
// the tile GEMMs of the AVX-512 path (a broadcast kernel that reads its narrow operand in place,
// plus the block transpose it needs for S = Q·Kᵀ). Layouts and conventions are in
// include/kiln_attention.h; KilnCPU/CPUBackend+Attention.swift drives the tiles (and calls OpenBLAS
// for the GEMMs on CPUs without AVX-512).
//
// Every row is processed over its visible key interval [lo, hi) only (causal and window rules);
// entries outside it are written as 0 without exponentiating.
//
// The row kernels (max, exp2 and sum) exist twice: a portable body that clang vectorises for the
// AVX2 and scalar variants, and AVX-512 intrinsics (vscalefps builds 2^n, masked tails), which the
// AVX-512 variants call. ATTN_MULTIVERSION passes each body a constant `wide` flag that selects them.
#include "kiln_attention.h"
#include "kiln_cpu_internal.h"

#ifdef KILN_X86
#include <immintrin.h>
#endif

#define KILN_LOG2E 1.44269504088896341f
#define KILN_LN2 0.6931471805599453
/// Lanes of the row max / row sum accumulators (four AVX-512 registers: enough independent chains
/// to hide the latency of vmaxps/vaddps).
#define ATTN_LANES 64
/// Lanes of the fused exp2-and-sum loop (one AVX-512 register; the exponentials are the bottleneck).
#define ATTN_EXP_LANES 16
/// Rows of a tile whose maxima are found before their exponentials are taken.
#define ATTN_ROW_GROUP 64

/// 2^x, branch-free so that loops over it vectorise. x = n + f with n = round(x), |f| <= 1/2;
/// 2^f is Cephes' exp2f polynomial (degree 6, about 1 ulp), 2^n is built in the exponent bits.
/// x is clamped to [−127, 128]: x < −126.5 (−inf included) gives 0 (n = −127 has exponent bits 0),
/// 128 gives +inf. NaN propagates through the polynomial.
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
    for (; j < n; j++) lane[0] = x[j] > lane[0] ? x[j] : lane[0];
    // Fold the lanes in halves (vector operations, not a chain of scalar ones).
    for (int w = ATTN_LANES / 2; w >= 1; w /= 2)
        for (int k = 0; k < w; k++) lane[k] = lane[k + w] > lane[k] ? lane[k + w] : lane[k];
    return lane[0];
}

/// x[j] = 2^(x[j] − shift) for j < n; returns Σ_j x[j] (float lanes folded pairwise).
KILN_INLINE float attn_exp2_sum(float *x, int64_t n, float shift) {
    float lane[ATTN_EXP_LANES] = {0};
    int64_t j = 0;
    for (; j + ATTN_EXP_LANES <= n; j += ATTN_EXP_LANES)
        for (int k = 0; k < ATTN_EXP_LANES; k++) {
            const float e = kiln_exp2(x[j + k] - shift);
            x[j + k] = e;
            lane[k] += e;
        }
    for (int k = 0; j < n; j++, k++) {
        const float e = kiln_exp2(x[j] - shift);
        x[j] = e;
        lane[k] += e;
    }
    for (int w = ATTN_EXP_LANES / 2; w >= 1; w /= 2)
        for (int k = 0; k < w; k++) lane[k] += lane[k + w];
    return lane[0];
}

/// x[j] = 2^(x[j] − shift) for j < n.
KILN_INLINE void attn_exp2_shift(float *x, int64_t n, float shift) {
    KILN_VECTORIZE for (int64_t j = 0; j < n; j++) x[j] = kiln_exp2(x[j] - shift);
}

#ifdef KILN_X86
/// 16 lanes of 2^x: n = round(x), f = x − n, the same degree-6 polynomial as kiln_exp2 for 2^f,
/// and vscalefps for p·2^n (which underflows gradually to 0 and overflows to +inf by itself).
/// x is clamped to [−150, 128] so that −inf gives 0 (2^−150 rounds to 0) and +inf gives +inf;
/// NaN propagates (vmaxps/vminps return their second operand when one is NaN).
static inline KILN_TARGET_AVX512 __m512 attn_exp2_v16(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(-150.0f), x);
    x = _mm512_min_ps(_mm512_set1_ps(128.0f), x);
    const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(x, n);
    __m512 p = _mm512_set1_ps(1.535336188319500e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.339887440266574e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618437357674640e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550332471162809e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402264791363012e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931472028550421e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/// The mask of the first `n` (< 16) lanes.
static inline KILN_TARGET_AVX512 __mmask16 attn_tail_mask(int64_t n) {
    return (__mmask16)((1u << n) - 1u);
}

/// max_j x[j] over n entries (−inf when n == 0), four accumulators.
static inline KILN_TARGET_AVX512 float attn_row_max_avx512(const float *x, int64_t n) {
    const __m512 lowest = _mm512_set1_ps(-INFINITY);
    __m512 m0 = lowest, m1 = lowest, m2 = lowest, m3 = lowest;
    int64_t j = 0;
    for (; j + 64 <= n; j += 64) {
        m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + j));
        m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + j + 16));
        m2 = _mm512_max_ps(m2, _mm512_loadu_ps(x + j + 32));
        m3 = _mm512_max_ps(m3, _mm512_loadu_ps(x + j + 48));
    }
    for (; j + 16 <= n; j += 16) m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + j));
    if (j < n) m1 = _mm512_max_ps(m1, _mm512_mask_loadu_ps(lowest, attn_tail_mask(n - j), x + j));
    return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
}

/// x[j] = 2^(x[j] − shift) for j < n; returns Σ_j x[j].
static inline KILN_TARGET_AVX512 float attn_exp2_sum_avx512(float *x, int64_t n, float shift) {
    const __m512 m = _mm512_set1_ps(shift);
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) {
        const __m512 e0 = attn_exp2_v16(_mm512_sub_ps(_mm512_loadu_ps(x + j), m));
        const __m512 e1 = attn_exp2_v16(_mm512_sub_ps(_mm512_loadu_ps(x + j + 16), m));
        _mm512_storeu_ps(x + j, e0);
        _mm512_storeu_ps(x + j + 16, e1);
        s0 = _mm512_add_ps(s0, e0);
        s1 = _mm512_add_ps(s1, e1);
    }
    for (; j < n; j += 16) {
        const __mmask16 k = n - j >= 16 ? (__mmask16)0xFFFF : attn_tail_mask(n - j);
        const __m512 e = attn_exp2_v16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), m));
        _mm512_mask_storeu_ps(x + j, k, e);
        s0 = _mm512_mask_add_ps(s0, k, s0, e);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

/// x[j] = 2^(x[j] − shift) for j < n.
static inline KILN_TARGET_AVX512 void attn_exp2_shift_avx512(float *x, int64_t n, float shift) {
    const __m512 m = _mm512_set1_ps(shift);
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) {
        const __m512 e0 = attn_exp2_v16(_mm512_sub_ps(_mm512_loadu_ps(x + j), m));
        const __m512 e1 = attn_exp2_v16(_mm512_sub_ps(_mm512_loadu_ps(x + j + 16), m));
        _mm512_storeu_ps(x + j, e0);
        _mm512_storeu_ps(x + j + 16, e1);
    }
    for (; j < n; j += 16) {
        const __mmask16 k = n - j >= 16 ? (__mmask16)0xFFFF : attn_tail_mask(n - j);
        _mm512_mask_storeu_ps(x + j, k, attn_exp2_v16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), m)));
    }
}

/// The row kernels of the variant: AVX-512 intrinsics when `wide`, else the portable bodies
/// (compiled for the caller's target). `wide` is a constant in every variant, so the other branch
/// folds away.
#define ATTN_ROW_MAX(wide, x, n) ((wide) ? attn_row_max_avx512(x, n) : attn_row_max(x, n))
#define ATTN_EXP2_SUM(wide, x, n, shift) \
    ((wide) ? attn_exp2_sum_avx512(x, n, shift) : attn_exp2_sum(x, n, shift))
#define ATTN_EXP2_SHIFT(wide, x, n, shift) \
    ((wide) ? attn_exp2_shift_avx512(x, n, shift) : attn_exp2_shift(x, n, shift))

/// As KILN_MULTIVERSION, with the `wide` flag as the body's first argument: 1 for AVX-512.
#define ATTN_UNPACK(...) __VA_ARGS__
#define ATTN_MULTIVERSION(NAME, PARAMS, ARGS)                                                      \
    static KILN_TARGET_AVX512 void NAME##_avx512 PARAMS { NAME##_body(1, ATTN_UNPACK ARGS); }      \
    static KILN_TARGET_AVX2 void NAME##_avx2 PARAMS { NAME##_body(0, ATTN_UNPACK ARGS); }          \
    static void NAME##_scalar PARAMS { NAME##_body(0, ATTN_UNPACK ARGS); }
#else
#define ATTN_ROW_MAX(wide, x, n) attn_row_max(x, n)
#define ATTN_EXP2_SUM(wide, x, n, shift) attn_exp2_sum(x, n, shift)
#define ATTN_EXP2_SHIFT(wide, x, n, shift) attn_exp2_shift(x, n, shift)
#define ATTN_UNPACK(...) __VA_ARGS__
#define ATTN_MULTIVERSION(NAME, PARAMS, ARGS)                                                      \
    static void NAME##_scalar PARAMS { NAME##_body(0, ATTN_UNPACK ARGS); }
#endif

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

KILN_INLINE void softmax_step_body(int wide, const kiln_attention_tile *t, float *s, int64_t lds,
                                   float *row_max, float *row_sum, float *out, int64_t ldo,
                                   int64_t value_dim) {
    const float p_drop = t->dropout;
    const float keep_scale = p_drop > 0.0f ? 1.0f / (1.0f - p_drop) : 1.0f;
    float keep[ATTN_PHILOX_BLOCKS * 4];
    // Two passes over each group of rows: all the maxima first, then all the exponentials, so
    // that the exp2 stream of one row is not held up by the max reduction of the next.
    int64_t lo[ATTN_ROW_GROUP], hi[ATTN_ROW_GROUP];
    float shift[ATTN_ROW_GROUP], alpha[ATTN_ROW_GROUP];
    for (int64_t r0 = 0; r0 < t->rows; r0 += ATTN_ROW_GROUP) {
        const int64_t n = t->rows - r0 < ATTN_ROW_GROUP ? t->rows - r0 : ATTN_ROW_GROUP;
        for (int64_t g = 0; g < n; g++) {
            const int64_t r = r0 + g;
            float *row = s + r * lds;
            attn_visible(t, r, &lo[g], &hi[g]);
            if (t->mask && lo[g] < hi[g])
                attn_add_mask(row, t->mask + r * t->mask_row_stride, t->mask_col_stride, lo[g], hi[g]);
            const float tile_max = ATTN_ROW_MAX(wide, row + lo[g], hi[g] - lo[g]);
            const float m_old = row_max[r];
            const float m_new = tile_max > m_old ? tile_max : m_old;
            // Nothing finite seen yet: every visible entry is −inf and 2^(−inf − 0) = 0.
            shift[g] = m_new == -INFINITY ? 0.0f : m_new;
            alpha[g] = kiln_exp2(m_old - shift[g]);
            row_max[r] = m_new;
        }
        for (int64_t g = 0; g < n; g++) {
            const int64_t r = r0 + g;
            float *row = s + r * lds;
            attn_zero_outside(row, t->cols, lo[g], hi[g]);
            const float sum = ATTN_EXP2_SUM(wide, row + lo[g], hi[g] - lo[g], shift[g]);
            row_sum[r] = row_sum[r] * alpha[g] + sum;
            if (alpha[g] != 1.0f) {
                float *o = out + r * ldo;
                const float a = alpha[g];
                KILN_VECTORIZE for (int64_t v = 0; v < value_dim; v++) o[v] *= a;
            }
            if (p_drop > 0.0f) {
                const uint64_t first = t->dropout_index + (uint64_t)(r * t->dropout_row_stride);
                for (int64_t c0 = lo[g]; c0 < hi[g]; c0 += ATTN_PHILOX_BLOCKS * 4) {
                    const int64_t len =
                        hi[g] - c0 < ATTN_PHILOX_BLOCKS * 4 ? hi[g] - c0 : ATTN_PHILOX_BLOCKS * 4;
                    attn_keep_factors(t->seed, first + (uint64_t)c0, len, p_drop, keep_scale, keep);
                    KILN_VECTORIZE for (int64_t c = 0; c < len; c++) row[c0 + c] *= keep[c];
                }
            }
        }
    }
}

ATTN_MULTIVERSION(softmax_step,
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

KILN_INLINE void probabilities_body(int wide, const kiln_attention_tile *t, float *s, int64_t lds,
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
        ATTN_EXP2_SHIFT(wide, row + lo, hi - lo, shift);
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

ATTN_MULTIVERSION(probabilities,
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

// MARK: - Broadcast GEMM

/// C = beta·C + alpha·A·B for C [m × n] and B [k × n] row-major and A read through strides
/// (A(r, kk) = a[r·ars + kk·aks]), so that A may be a tile or a transposed tile. Plain loops; the
/// AVX-512 variant below is the fast one.
KILN_INLINE void attn_gemm_portable(int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                                    int64_t ars, int64_t aks, const float *b, int64_t ldb,
                                    float beta, float *c, int64_t ldc) {
    for (int64_t r = 0; r < m; r++) {
        float *cr = c + r * ldc;
        if (beta == 0.0f)
            memset(cr, 0, (size_t)n * sizeof(float));
        else if (beta != 1.0f)
            KILN_VECTORIZE for (int64_t j = 0; j < n; j++) cr[j] *= beta;
        for (int64_t kk = 0; kk < k; kk++) {
            const float av = alpha * a[r * ars + kk * aks];
            const float *br = b + kk * ldb;
            KILN_VECTORIZE for (int64_t j = 0; j < n; j++) cr[j] += av * br[j];
        }
    }
}

#ifdef KILN_X86
/// Rows and 16-float vectors of the register tile of the AVX-512 kernel: 6 × 4 accumulators.
#define ATTN_GEMM_ROWS 6
#define ATTN_GEMM_VECTORS 4

/// One register tile: C[R × up to 16·NV] = beta·C + alpha·Σ_kk A(r, kk)·B[kk, :]; the last vector
/// of each row is masked by `last`. R and NV are constants after inlining.
static inline __attribute__((always_inline)) KILN_TARGET_AVX512 void
attn_gemm_tile_avx512(const int R, const int NV, int64_t k, const float *a, int64_t ars, int64_t aks,
                      const float *b, int64_t ldb, float *c, int64_t ldc, float alpha, float beta,
                      __mmask16 last) {
    __m512 acc[ATTN_GEMM_ROWS][ATTN_GEMM_VECTORS];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    for (int64_t kk = 0; kk < k; kk++) {
        __m512 bv[ATTN_GEMM_VECTORS];
        const float *br = b + kk * ldb;
        for (int v = 0; v < NV; v++)
            bv[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(last, br + 16 * v) : _mm512_loadu_ps(br + 16 * v);
        for (int r = 0; r < R; r++) {
            const __m512 av = _mm512_set1_ps(a[r * ars + kk * aks]);
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    const __m512 al = _mm512_set1_ps(alpha), be = _mm512_set1_ps(beta);
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) {
            float *p = c + r * ldc + 16 * v;
            const __mmask16 mask = v == NV - 1 ? last : (__mmask16)0xFFFF;
            __m512 x = _mm512_mul_ps(al, acc[r][v]);
            if (beta != 0.0f) x = _mm512_fmadd_ps(be, _mm512_maskz_loadu_ps(mask, p), x);
            _mm512_mask_storeu_ps(p, mask, x);
        }
}

/// The AVX-512 broadcast GEMM: 64-column panels of B (read in place, no packing), 6-row strips
/// of A whose elements are broadcast. Measured ~240 GFLOP/s on one Zen 5 core for the attention
/// tiles (OpenBLAS, which packs both operands: ~205).
static KILN_TARGET_AVX512 void attn_gemm_avx512(int64_t m, int64_t n, int64_t k, float alpha,
                                                const float *a, int64_t ars, int64_t aks,
                                                const float *b, int64_t ldb, float beta, float *c,
                                                int64_t ldc) {
    for (int64_t c0 = 0; c0 < n; c0 += 16 * ATTN_GEMM_VECTORS) {
        const int64_t width = n - c0 < 16 * ATTN_GEMM_VECTORS ? n - c0 : 16 * ATTN_GEMM_VECTORS;
        const int nv = (int)((width + 15) / 16);
        const __mmask16 last = width % 16 == 0 ? (__mmask16)0xFFFF : attn_tail_mask(width % 16);
        for (int64_t r0 = 0; r0 < m; r0 += ATTN_GEMM_ROWS) {
            const int rows = m - r0 < ATTN_GEMM_ROWS ? (int)(m - r0) : ATTN_GEMM_ROWS;
            const float *ap = a + r0 * ars;
            const float *bp = b + c0;
            float *cp = c + r0 * ldc + c0;
#define ATTN_GEMM_CASE(R, NV)                                                                      \
    case R * 8 + NV:                                                                               \
        attn_gemm_tile_avx512(R, NV, k, ap, ars, aks, bp, ldb, cp, ldc, alpha, beta, last);       \
        break;
#define ATTN_GEMM_ROW_CASES(R)                                                                     \
    ATTN_GEMM_CASE(R, 1) ATTN_GEMM_CASE(R, 2) ATTN_GEMM_CASE(R, 3) ATTN_GEMM_CASE(R, 4)
            switch (rows * 8 + nv) {
                ATTN_GEMM_ROW_CASES(1)
                ATTN_GEMM_ROW_CASES(2)
                ATTN_GEMM_ROW_CASES(3)
                ATTN_GEMM_ROW_CASES(4)
                ATTN_GEMM_ROW_CASES(5)
                ATTN_GEMM_ROW_CASES(6)
            default: break;
            }
#undef ATTN_GEMM_ROW_CASES
#undef ATTN_GEMM_CASE
        }
    }
}
#endif

KILN_INLINE void gemm_body(int wide, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                           int64_t ars, int64_t aks, const float *b, int64_t ldb, float beta,
                           float *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
#ifdef KILN_X86
    if (wide && k > 0) {
        attn_gemm_avx512(m, n, k, alpha, a, ars, aks, b, ldb, beta, c, ldc);
        return;
    }
#endif
    (void)wide;
    attn_gemm_portable(m, n, k, alpha, a, ars, aks, b, ldb, beta, c, ldc);
}

ATTN_MULTIVERSION(gemm,
                  (int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t ars,
                   int64_t aks, const float *b, int64_t ldb, float beta, float *c, int64_t ldc),
                  (m, n, k, alpha, a, ars, aks, b, ldb, beta, c, ldc))

void kiln_attention_gemm_f32(int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                             int64_t a_row_stride, int64_t a_k_stride, const float *b, int64_t ldb,
                             float beta, float *c, int64_t ldc) {
    KILN_DISPATCH(gemm, (m, n, k, alpha, a, a_row_stride, a_k_stride, b, ldb, beta, c, ldc))
}

// MARK: - Transpose

#ifdef KILN_X86
/// Transposes the 16 × 16 block held in r[0..15] (row i in r[i]) in place: two rounds of
/// in-lane unpacks/shuffles (4 × 4 blocks inside each 128-bit lane), then two of 128-bit lane
/// shuffles.
static inline __attribute__((always_inline)) KILN_TARGET_AVX512 void attn_transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // r[4i + k], lane L: rows 4i .. 4i + 3 of column 4L + k.
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int k = 0; k < 4; k++) {
        t[k] = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88);
        t[4 + k] = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xDD);
        t[8 + k] = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88);
        t[12 + k] = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xDD);
    }
    // r[c] = column c.
    for (int k = 0; k < 4; k++) {
        r[k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0x88);
        r[8 + k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0xDD);
        r[4 + k] = _mm512_shuffle_f32x4(t[4 + k], t[12 + k], 0x88);
        r[12 + k] = _mm512_shuffle_f32x4(t[4 + k], t[12 + k], 0xDD);
    }
}

/// The AVX-512 transpose: 16 × 16 blocks in registers, the ragged edges element by element.
static KILN_TARGET_AVX512 void attn_transpose_avx512(int64_t rows, int64_t cols, const float *src,
                                                     int64_t lds, float *dst, int64_t ldd) {
    const int64_t rows16 = rows & ~(int64_t)15, cols16 = cols & ~(int64_t)15;
    for (int64_t r0 = 0; r0 < rows16; r0 += 16)
        for (int64_t c0 = 0; c0 < cols16; c0 += 16) {
            __m512 block[16];
            for (int i = 0; i < 16; i++) block[i] = _mm512_loadu_ps(src + (r0 + i) * lds + c0);
            attn_transpose16(block);
            for (int i = 0; i < 16; i++) _mm512_storeu_ps(dst + (c0 + i) * ldd + r0, block[i]);
        }
    for (int64_t r = 0; r < rows; r++) {
        const int64_t c_start = r < rows16 ? cols16 : 0;
        for (int64_t c = c_start; c < cols; c++) dst[c * ldd + r] = src[r * lds + c];
    }
}
#endif

KILN_INLINE void transpose_body(int wide, int64_t rows, int64_t cols, const float *src, int64_t lds,
                                float *dst, int64_t ldd) {
#ifdef KILN_X86
    if (wide) {
        attn_transpose_avx512(rows, cols, src, lds, dst, ldd);
        return;
    }
#endif
    (void)wide;
    // 16 × 16 blocks, so that both sides stay in cache lines.
    for (int64_t c0 = 0; c0 < cols; c0 += 16) {
        const int64_t c1 = cols - c0 < 16 ? cols : c0 + 16;
        for (int64_t r0 = 0; r0 < rows; r0 += 16) {
            const int64_t r1 = rows - r0 < 16 ? rows : r0 + 16;
            for (int64_t c = c0; c < c1; c++)
                for (int64_t r = r0; r < r1; r++) dst[c * ldd + r] = src[r * lds + c];
        }
    }
}

ATTN_MULTIVERSION(transpose,
                  (int64_t rows, int64_t cols, const float *src, int64_t lds, float *dst, int64_t ldd),
                  (rows, cols, src, lds, dst, ldd))

void kiln_attention_transpose_f32(int64_t rows, int64_t cols, const float *src, int64_t lds,
                                  float *dst, int64_t ldd) {
    KILN_DISPATCH(transpose, (rows, cols, src, lds, dst, ldd))
}

// MARK: - Test entry points

KILN_INLINE void attn_exp2_body(int wide, const float *x, float *y, int64_t n) {
    if (x != y) memcpy(y, x, (size_t)n * sizeof(float));
    ATTN_EXP2_SHIFT(wide, y, n, 0.0f);
}

ATTN_MULTIVERSION(attn_exp2, (const float *x, float *y, int64_t n), (x, y, n))

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
