// kiln_cpu_internal.h — what the CPU kernels share: the per-ISA multiversioning macros, a
// vectorisable e^x, and the row and column building blocks of the reductions and of softmax.
//
// Every helper here is forced inline, so it is compiled (and auto-vectorised) for the target of the
// function that calls it: one portable body serves the AVX-512, AVX2 and scalar variants.
#ifndef KILN_CPU_INTERNAL_H
#define KILN_CPU_INTERNAL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kiln_cpu.h"

#define KILN_INLINE static inline __attribute__((always_inline))

/// Vectorise the next loop without run-time alias checks. Only for elementwise loops, whose output
/// may alias an input exactly (never with an offset): an exact alias is safe to vectorise.
#define KILN_VECTORIZE _Pragma("clang loop vectorize(assume_safety)")

#if defined(__x86_64__) || defined(__i386__)
#define KILN_X86 1
#define KILN_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma")))
#define KILN_TARGET_AVX2 __attribute__((target("avx2,fma")))

/// Defines NAME_avx512, NAME_avx2 and NAME_scalar, each expanding the always-inline NAME_body.
#define KILN_MULTIVERSION(NAME, PARAMS, ARGS)                                                      \
    static KILN_TARGET_AVX512 void NAME##_avx512 PARAMS { NAME##_body ARGS; }                      \
    static KILN_TARGET_AVX2 void NAME##_avx2 PARAMS { NAME##_body ARGS; }                          \
    static void NAME##_scalar PARAMS { NAME##_body ARGS; }

/// Calls the variant of NAME chosen by kiln_cpu_isa().
#define KILN_DISPATCH(NAME, ARGS)                                                                  \
    switch (kiln_cpu_isa()) {                                                                      \
    case 2: NAME##_avx512 ARGS; break;                                                             \
    case 1: NAME##_avx2 ARGS; break;                                                               \
    default: NAME##_scalar ARGS; break;                                                            \
    }
#else
// Other architectures (arm64: NEON is baseline) build the portable body once.
#define KILN_MULTIVERSION(NAME, PARAMS, ARGS) static void NAME##_scalar PARAMS { NAME##_body ARGS; }
#define KILN_DISPATCH(NAME, ARGS) NAME##_scalar ARGS;
#endif

/// sqrtf without errno handling, so that it vectorises (sqrtf(x < 0) is NaN either way).
#if defined(__has_builtin)
#if __has_builtin(__builtin_elementwise_sqrt)
#define KILN_SQRTF(x) __builtin_elementwise_sqrt(x)
#endif
#endif
#ifndef KILN_SQRTF
#define KILN_SQRTF(x) sqrtf(x)
#endif

/// Lanes of the multi-accumulator row reductions (strict FP forbids the compiler to reassociate).
#define KILN_LANES 32
/// Columns handled together by the [outer, n, inner > 1] reductions and softmax.
#define KILN_TILE 256
/// Elements per stack buffer of the exp-and-sum loops.
#define KILN_CHUNK 1024

/// e^x, branch-free so that loops over it vectorise.
/// x = n ln2 + r with |r| <= ln2/2 (Cody–Waite split of ln2); e^r = 1 + r + r^2 P(r) with the
/// degree-5 P of Cephes' expf; 2^n is applied as two power-of-two factors 2^(n>>1) 2^(n-(n>>1)),
/// each a normal float, so that large x overflow to +inf and small x underflow gradually to 0.
/// NaN propagates (the clamps compare false). Relative error at most 8.5e-8 on [-87, 88]
/// (checked exhaustively against double exp for every ISA variant).
KILN_INLINE float kiln_exp(float x) {
    x = x < -110.0f ? -110.0f : x; // e^-110 rounds to 0
    x = x > 89.0f ? 89.0f : x;     // e^89 rounds to +inf
    // Adding 1.5 * 2^23 rounds x log2(e) to the integer n, left in the low mantissa bits of t.
    const float shifter = 0x1.8p23f;
    const float t = x * 1.44269504088896341f + shifter;
    const float nf = t - shifter;
    uint32_t tbits;
    memcpy(&tbits, &t, sizeof tbits);
    const int32_t n = (int32_t)(tbits - 0x4B400000u);
    const float r = (x - nf * 0.693359375f) - nf * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    const int32_t n1 = n >> 1, n2 = n - n1;
    const uint32_t b1 = ((uint32_t)n1 + 127u) << 23, b2 = ((uint32_t)n2 + 127u) << 23;
    float s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    return p * s1 * s2;
}

/// max(a, b) that returns NaN when either is NaN (keeps a on ties).
KILN_INLINE float kiln_max_nan(float a, float b) { return (b > a || b != b) ? b : a; }

/// min(a, b) that returns NaN when either is NaN (keeps a on ties).
KILN_INLINE float kiln_min_nan(float a, float b) { return (b < a || b != b) ? b : a; }

/// sum_i x[i], accumulated in double over KILN_LANES lanes.
KILN_INLINE double kiln_sum_f64(const float *x, int64_t n) {
    double lane[KILN_LANES] = {0};
    int64_t i = 0;
    for (; i + KILN_LANES <= n; i += KILN_LANES)
        for (int k = 0; k < KILN_LANES; k++) lane[k] += x[i + k];
    double sum = 0;
    for (; i < n; i++) sum += x[i];
    for (int k = 0; k < KILN_LANES; k++) sum += lane[k];
    return sum;
}

/// max_i x[i] (is_max) or min_i x[i], NaN if any x[i] is NaN; -inf or +inf when n == 0.
/// The lanes use plain compare-and-select (a single vmaxps/vminps) and note NaNs on the side.
KILN_INLINE float kiln_extreme_f32(const float *x, int64_t n, int is_max) {
    float lane[KILN_LANES];
    int32_t nan[KILN_LANES];
    for (int k = 0; k < KILN_LANES; k++) {
        lane[k] = is_max ? -INFINITY : INFINITY;
        nan[k] = 0;
    }
    int64_t i = 0;
    for (; i + KILN_LANES <= n; i += KILN_LANES)
        for (int k = 0; k < KILN_LANES; k++) {
            const float v = x[i + k];
            lane[k] = (is_max ? v > lane[k] : v < lane[k]) ? v : lane[k];
            nan[k] |= v != v;
        }
    float m = is_max ? -INFINITY : INFINITY;
    for (; i < n; i++) m = is_max ? kiln_max_nan(m, x[i]) : kiln_min_nan(m, x[i]);
    int32_t any_nan = 0;
    for (int k = 0; k < KILN_LANES; k++) {
        m = is_max ? kiln_max_nan(m, lane[k]) : kiln_min_nan(m, lane[k]);
        any_nan |= nan[k];
    }
    return any_nan ? NAN : m;
}

/// max_i x[i] (NaN if any x[i] is NaN); -inf when n == 0.
KILN_INLINE float kiln_max_f32(const float *x, int64_t n) { return kiln_extreme_f32(x, n, 1); }

/// min_i x[i] (NaN if any x[i] is NaN); +inf when n == 0.
KILN_INLINE float kiln_min_f32(const float *x, int64_t n) { return kiln_extreme_f32(x, n, 0); }

/// sum_i e^(x[i] - shift) in double. When `out` is not NULL the exponentials are stored there too
/// (out may alias x exactly).
KILN_INLINE double kiln_sum_exp_f64(const float *x, int64_t n, float shift, float *out) {
    float buffer[KILN_CHUNK];
    double sum = 0;
    for (int64_t i0 = 0; i0 < n; i0 += KILN_CHUNK) {
        const int64_t len = n - i0 < KILN_CHUNK ? n - i0 : KILN_CHUNK;
        float *e = out ? out + i0 : buffer;
        KILN_VECTORIZE for (int64_t i = 0; i < len; i++) e[i] = kiln_exp(x[i0 + i] - shift);
        sum += kiln_sum_f64(e, len);
    }
    return sum;
}

/// m[i] = max_j x[j * stride + i] for i < w (NaN-propagating): the column maxima of a tile.
KILN_INLINE void kiln_cols_max(const float *x, int64_t n, int64_t stride, int64_t w, float *m) {
    for (int64_t i = 0; i < w; i++) m[i] = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        const float *row = x + j * stride;
        for (int64_t i = 0; i < w; i++) m[i] = kiln_max_nan(m[i], row[i]);
    }
}

/// m[i] = min_j x[j * stride + i] for i < w (NaN-propagating): the column minima of a tile.
KILN_INLINE void kiln_cols_min(const float *x, int64_t n, int64_t stride, int64_t w, float *m) {
    for (int64_t i = 0; i < w; i++) m[i] = INFINITY;
    for (int64_t j = 0; j < n; j++) {
        const float *row = x + j * stride;
        for (int64_t i = 0; i < w; i++) m[i] = kiln_min_nan(m[i], row[i]);
    }
}

#endif
