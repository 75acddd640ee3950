// elementwise.c — unary maps y[i] = f(x[i]), binary maps y[i] = f(a[i], b[i]) with either input
// possibly a broadcast scalar, and the select y[i] = cond[i] != 0 ? a[i] : b[i].
//
// Simple ops are branch-free loops that clang vectorises for each ISA variant; ops that need libm
// (log, sin, erf, ...) run as scalar loops over it.
#include "kiln_cpu_internal.h"

/// 1 / (1 + e^-x) from e = e^-|x| (in (0, 1], so nothing overflows): 1/(1+e) for x >= 0, e/(1+e)
/// otherwise. sigmoid(-inf) = 0, sigmoid(+inf) = 1.
KILN_INLINE float kiln_sigmoid(float x) {
    const float e = kiln_exp(-fabsf(x));
    return (x >= 0.0f ? 1.0f : e) / (1.0f + e);
}

/// tanh x after Cephes' tanhf: x + x^3 P(x^2) with a degree-4 P for |x| <= 0.625, otherwise
/// 1 - 2 / (e^(2|x|) + 1); the sign is copied from x (odd function, keeps -0). About 1.3 ulp.
KILN_INLINE float kiln_tanh(float x) {
    const float a = fabsf(x), s = x * x;
    const float large = 1.0f - 2.0f / (kiln_exp(2.0f * a) + 1.0f);
    float p = -5.70498872745e-3f;
    p = p * s + 2.06390887954e-2f;
    p = p * s - 5.37397155531e-2f;
    p = p * s + 1.33314422036e-1f;
    p = p * s - 3.33332819422e-1f;
    const float small = (p * s) * a + a;
    return copysignf(a > 0.625f ? large : small, x);
}

/// x/2 (1 + tanh(u)) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): no cancellation for x < 0.
/// 2u is formed in double, since e^(2u) multiplies its relative error by |2u|.
KILN_INLINE float kiln_gelu_tanh(float x) {
    const double xd = x;
    const float z = (float)(xd * (1.5957691216057308 + 0.07135481627260025 * (xd * xd)));
    return x * kiln_sigmoid(z);
}

/// x/2 (1 + erf(x / sqrt 2)) = x/2 erfc(-x / sqrt 2), in double: no cancellation for x < 0.
KILN_INLINE float kiln_gelu_erf(float x) {
    return (float)(0.5 * x * erfc(-0.7071067811865476 * x));
}

/// ln(1 + e^x) = max(x, 0) + log1p(e^-|x|).
KILN_INLINE float kiln_softplus(float x) {
    return (x > 0.0f ? x : 0.0f) + log1pf(kiln_exp(-fabsf(x)));
}

/// min(max(x, lo), hi); both comparisons are false for NaN, which therefore passes through.
KILN_INLINE float kiln_clamp(float x, float lo, float hi) {
    const float low = x < lo ? lo : x;
    return low > hi ? hi : low;
}

/// Writes y[i] = EXPR for i < n, where EXPR is written in terms of the input element `v`.
/// KILN_MAP_VEC is for branch-free EXPR without libm calls, which clang then vectorises.
#define KILN_MAP(EXPR)                                                                             \
    for (int64_t i = 0; i < n; i++) {                                                              \
        const float v = x[i];                                                                      \
        y[i] = (EXPR);                                                                             \
    }
#define KILN_MAP_VEC(EXPR) KILN_VECTORIZE KILN_MAP(EXPR)

KILN_INLINE void unary_body(int op, const float *x, float *y, int64_t n, float p0, float p1) {
    switch (op) {
    case KILN_UNARY_NEG: KILN_MAP_VEC(-v); break;
    case KILN_UNARY_ABS: KILN_MAP_VEC(fabsf(v)); break;
    case KILN_UNARY_SIGN: KILN_MAP_VEC(v > 0.0f ? 1.0f : v < 0.0f ? -1.0f : 0.0f); break;  /* NaN gives 0, as torch.sign */
    case KILN_UNARY_EXP: KILN_MAP_VEC(kiln_exp(v)); break;
    case KILN_UNARY_EXPM1: KILN_MAP(expm1f(v)); break;
    case KILN_UNARY_LOG: KILN_MAP(logf(v)); break;
    case KILN_UNARY_LOG1P: KILN_MAP(log1pf(v)); break;
    case KILN_UNARY_SQRT: KILN_MAP_VEC(KILN_SQRTF(v)); break;
    case KILN_UNARY_RSQRT: KILN_MAP_VEC(1.0f / KILN_SQRTF(v)); break;
    case KILN_UNARY_SQUARE: KILN_MAP_VEC(v * v); break;
    case KILN_UNARY_SIN: KILN_MAP(sinf(v)); break;
    case KILN_UNARY_COS: KILN_MAP(cosf(v)); break;
    case KILN_UNARY_TANH: KILN_MAP_VEC(kiln_tanh(v)); break;
    case KILN_UNARY_SIGMOID: KILN_MAP_VEC(kiln_sigmoid(v)); break;
    case KILN_UNARY_RELU: KILN_MAP_VEC(v < 0.0f ? 0.0f : v); break;
    case KILN_UNARY_GELU_ERF: KILN_MAP(kiln_gelu_erf(v)); break;
    case KILN_UNARY_GELU_TANH: KILN_MAP_VEC(kiln_gelu_tanh(v)); break;
    case KILN_UNARY_SILU: KILN_MAP_VEC(v * kiln_sigmoid(v)); break;
    case KILN_UNARY_SOFTPLUS: KILN_MAP(kiln_softplus(v)); break;
    case KILN_UNARY_ERF: KILN_MAP(erff(v)); break;
    case KILN_UNARY_CLAMP: KILN_MAP_VEC(kiln_clamp(v, p0, p1)); break;
    case KILN_UNARY_POW_SCALAR:
        if (p0 == 2.0f) {
            KILN_MAP_VEC(v * v);
        } else {
            KILN_MAP(powf(v, p0));
        }
        break;
    case KILN_UNARY_RECIPROCAL: KILN_MAP_VEC(1.0f / v); break;
    case KILN_UNARY_FLOOR: KILN_MAP_VEC(floorf(v)); break;
    case KILN_UNARY_CEIL: KILN_MAP_VEC(ceilf(v)); break;
    case KILN_UNARY_ROUND: KILN_MAP_VEC(rintf(v)); break;
    case KILN_UNARY_LEAKY_RELU: KILN_MAP_VEC(v >= 0.0f ? v : p0 * v); break;
    case KILN_UNARY_ELU: KILN_MAP(v > 0.0f ? v : p0 * expm1f(v)); break;
    case KILN_UNARY_TAN: KILN_MAP(tanf(v)); break;
    case KILN_UNARY_ADD_SCALAR: KILN_MAP_VEC(v + p0); break;
    case KILN_UNARY_MUL_SCALAR: KILN_MAP_VEC(v * p0); break;
    default: break;
    }
}

KILN_MULTIVERSION(unary, (int op, const float *x, float *y, int64_t n, float p0, float p1),
                  (op, x, y, n, p0, p1))

void kiln_unary_f32(int op, const float *x, float *y, int64_t n, float p0, float p1) {
    KILN_DISPATCH(unary, (op, x, y, n, p0, p1))
}

KILN_INLINE float kiln_bin_add(float a, float b) { return a + b; }
KILN_INLINE float kiln_bin_sub(float a, float b) { return a - b; }
KILN_INLINE float kiln_bin_mul(float a, float b) { return a * b; }
KILN_INLINE float kiln_bin_div(float a, float b) { return a / b; }
KILN_INLINE float kiln_bin_eq(float a, float b) { return a == b ? 1.0f : 0.0f; }
KILN_INLINE float kiln_bin_ne(float a, float b) { return a != b ? 1.0f : 0.0f; }
KILN_INLINE float kiln_bin_lt(float a, float b) { return a < b ? 1.0f : 0.0f; }
KILN_INLINE float kiln_bin_le(float a, float b) { return a <= b ? 1.0f : 0.0f; }
KILN_INLINE float kiln_bin_gt(float a, float b) { return a > b ? 1.0f : 0.0f; }
KILN_INLINE float kiln_bin_ge(float a, float b) { return a >= b ? 1.0f : 0.0f; }

/// Writes y[i] = F(a[i], b[i]) for i < n with a separate loop for each stride pattern, so that a
/// broadcast input is a loop-invariant scalar. VECTORIZE is KILN_VECTORIZE, or
/// empty for an F that calls libm.
#define KILN_BINARY_LOOPS(F, VECTORIZE)                                                            \
    if (aStride != 0 && bStride != 0) {                                                            \
        VECTORIZE for (int64_t i = 0; i < n; i++) y[i] = F(a[i], b[i]);                            \
    } else if (aStride != 0) {                                                                     \
        const float bv = b[0];                                                                     \
        VECTORIZE for (int64_t i = 0; i < n; i++) y[i] = F(a[i], bv);                              \
    } else if (bStride != 0) {                                                                     \
        const float av = a[0];                                                                     \
        VECTORIZE for (int64_t i = 0; i < n; i++) y[i] = F(av, b[i]);                              \
    } else {                                                                                       \
        const float yv = F(a[0], b[0]);                                                            \
        for (int64_t i = 0; i < n; i++) y[i] = yv;                                                 \
    }

KILN_INLINE void binary_body(int op, const float *a, int64_t aStride, const float *b,
                             int64_t bStride, float *y, int64_t n) {
    if (n == 0) return;
    switch (op) {
    case KILN_BINARY_ADD: KILN_BINARY_LOOPS(kiln_bin_add, KILN_VECTORIZE) break;
    case KILN_BINARY_SUB: KILN_BINARY_LOOPS(kiln_bin_sub, KILN_VECTORIZE) break;
    case KILN_BINARY_MUL: KILN_BINARY_LOOPS(kiln_bin_mul, KILN_VECTORIZE) break;
    case KILN_BINARY_DIV: KILN_BINARY_LOOPS(kiln_bin_div, KILN_VECTORIZE) break;
    case KILN_BINARY_POW: KILN_BINARY_LOOPS(powf, ) break;
    case KILN_BINARY_MAXIMUM: KILN_BINARY_LOOPS(kiln_max_nan, KILN_VECTORIZE) break;
    case KILN_BINARY_MINIMUM: KILN_BINARY_LOOPS(kiln_min_nan, KILN_VECTORIZE) break;
    case KILN_BINARY_EQUAL: KILN_BINARY_LOOPS(kiln_bin_eq, KILN_VECTORIZE) break;
    case KILN_BINARY_NOT_EQUAL: KILN_BINARY_LOOPS(kiln_bin_ne, KILN_VECTORIZE) break;
    case KILN_BINARY_LESS: KILN_BINARY_LOOPS(kiln_bin_lt, KILN_VECTORIZE) break;
    case KILN_BINARY_LESS_EQUAL: KILN_BINARY_LOOPS(kiln_bin_le, KILN_VECTORIZE) break;
    case KILN_BINARY_GREATER: KILN_BINARY_LOOPS(kiln_bin_gt, KILN_VECTORIZE) break;
    case KILN_BINARY_GREATER_EQUAL: KILN_BINARY_LOOPS(kiln_bin_ge, KILN_VECTORIZE) break;
    default: break;
    }
}

KILN_MULTIVERSION(binary, (int op, const float *a, int64_t aStride, const float *b,
                           int64_t bStride, float *y, int64_t n),
                  (op, a, aStride, b, bStride, y, n))

void kiln_binary_f32(int op, const float *a, int64_t aStride, const float *b, int64_t bStride,
                     float *y, int64_t n) {
    KILN_DISPATCH(binary, (op, a, aStride, b, bStride, y, n))
}

/// Writes y[i] = cond != 0 ? a : b for one stride pattern (each stride 0 or 1). Both a and b are
/// loaded unconditionally, which lets the loop vectorise as a blend.
#define KILN_WHERE_LOOP(CS, AS, BS)                                                                \
    KILN_VECTORIZE for (int64_t i = 0; i < n; i++) {                                               \
        const float av = a[i * (AS)], bv = b[i * (BS)];                                            \
        y[i] = cond[i * (CS)] != 0.0f ? av : bv;                                                   \
    }

KILN_INLINE void where_body(const float *cond, int64_t cStride, const float *a, int64_t aStride,
                            const float *b, int64_t bStride, float *y, int64_t n) {
    switch ((cStride != 0) << 2 | (aStride != 0) << 1 | (bStride != 0)) {
    case 0: KILN_WHERE_LOOP(0, 0, 0) break;
    case 1: KILN_WHERE_LOOP(0, 0, 1) break;
    case 2: KILN_WHERE_LOOP(0, 1, 0) break;
    case 3: KILN_WHERE_LOOP(0, 1, 1) break;
    case 4: KILN_WHERE_LOOP(1, 0, 0) break;
    case 5: KILN_WHERE_LOOP(1, 0, 1) break;
    case 6: KILN_WHERE_LOOP(1, 1, 0) break;
    default: KILN_WHERE_LOOP(1, 1, 1) break;
    }
}

KILN_MULTIVERSION(where, (const float *cond, int64_t cStride, const float *a, int64_t aStride,
                          const float *b, int64_t bStride, float *y, int64_t n),
                  (cond, cStride, a, aStride, b, bStride, y, n))

void kiln_where_f32(const float *cond, int64_t cStride, const float *a, int64_t aStride,
                    const float *b, int64_t bStride, float *y, int64_t n) {
    KILN_DISPATCH(where, (cond, cStride, a, aStride, b, bStride, y, n))
}
