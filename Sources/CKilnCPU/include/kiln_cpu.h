// kiln_cpu.h — the CPU backend's C micro-kernels.
//
// Every kernel works on contiguous Float32 buffers with explicit sizes and already-validated
// arguments. Each public function dispatches at run time to an AVX-512, AVX2 or scalar variant
// (chosen once with __builtin_cpu_supports); no package-wide compiler flags are needed.
//
// Operation codes are shared with KilnCore (`UnaryOp`, `BinaryOp`, `ReduceOp`) and with the OpenCL
// kernels in Kernels/*.cl: keep the three lists in the same order.
#ifndef KILN_CPU_H
#define KILN_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "kiln_attention.h"
#include "kiln_normalization.h"
#include "kiln_optimizer.h"
#include "kiln_convolution.h"

#ifdef __cplusplus
extern "C" {
#endif

/// Unary elementwise operations: y[i] = f(x[i]; p0, p1).
typedef enum {
    KILN_UNARY_NEG = 0,        // -x
    KILN_UNARY_ABS = 1,        // |x|
    KILN_UNARY_SIGN = 2,       // -1, 0 or 1; NaN gives 0, as torch.sign
    KILN_UNARY_EXP = 3,        // e^x
    KILN_UNARY_EXPM1 = 4,      // e^x - 1, accurate near 0
    KILN_UNARY_LOG = 5,        // ln x
    KILN_UNARY_LOG1P = 6,      // ln(1 + x), accurate near 0
    KILN_UNARY_SQRT = 7,       // sqrt x
    KILN_UNARY_RSQRT = 8,      // 1 / sqrt x
    KILN_UNARY_SQUARE = 9,     // x * x
    KILN_UNARY_SIN = 10,       // sin x
    KILN_UNARY_COS = 11,       // cos x
    KILN_UNARY_TANH = 12,      // tanh x
    KILN_UNARY_SIGMOID = 13,   // 1 / (1 + e^-x), stable for large |x|
    KILN_UNARY_RELU = 14,      // max(x, 0)
    KILN_UNARY_GELU_ERF = 15,  // x/2 * (1 + erf(x / sqrt 2))
    KILN_UNARY_GELU_TANH = 16, // x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
    KILN_UNARY_SILU = 17,      // x * sigmoid(x)
    KILN_UNARY_SOFTPLUS = 18,  // ln(1 + e^x), stable: max(x,0) + log1p(e^-|x|)
    KILN_UNARY_ERF = 19,       // erf x
    KILN_UNARY_CLAMP = 20,     // min(max(x, p0), p1); NaN stays NaN
    KILN_UNARY_POW_SCALAR = 21,// x^p0 (powf semantics)
    KILN_UNARY_RECIPROCAL = 22,// 1 / x
    KILN_UNARY_FLOOR = 23,     // floor x
    KILN_UNARY_CEIL = 24,      // ceil x
    KILN_UNARY_ROUND = 25,     // round half to even (rintf), as torch.round
    KILN_UNARY_LEAKY_RELU = 26,// x >= 0 ? x : p0 * x
    KILN_UNARY_ELU = 27,       // x > 0 ? x : p0 * (e^x - 1)
    KILN_UNARY_TAN = 28,       // tan x
    KILN_UNARY_ADD_SCALAR = 29,// x + p0
    KILN_UNARY_MUL_SCALAR = 30,// x * p0
    KILN_UNARY_COUNT = 31
} kiln_unary_op;

/// Binary elementwise operations: y = f(a, b). Comparisons give 1.0 or 0.0.
typedef enum {
    KILN_BINARY_ADD = 0,
    KILN_BINARY_SUB = 1,
    KILN_BINARY_MUL = 2,
    KILN_BINARY_DIV = 3,
    KILN_BINARY_POW = 4,       // powf(a, b)
    KILN_BINARY_MAXIMUM = 5,   // NaN-propagating, as torch.maximum
    KILN_BINARY_MINIMUM = 6,   // NaN-propagating, as torch.minimum
    KILN_BINARY_EQUAL = 7,
    KILN_BINARY_NOT_EQUAL = 8,
    KILN_BINARY_LESS = 9,
    KILN_BINARY_LESS_EQUAL = 10,
    KILN_BINARY_GREATER = 11,
    KILN_BINARY_GREATER_EQUAL = 12,
    KILN_BINARY_COUNT = 13
} kiln_binary_op;

/// Reductions over the middle axis of an [outer, n, inner] view.
typedef enum {
    KILN_REDUCE_SUM = 0,
    KILN_REDUCE_MEAN = 1,
    KILN_REDUCE_MAX = 2,       // NaN-propagating
    KILN_REDUCE_MIN = 3,       // NaN-propagating
    KILN_REDUCE_ARGMAX = 4,    // index of the first maximum, written as a float
    KILN_REDUCE_ARGMIN = 5,    // index of the first minimum, written as a float
    KILN_REDUCE_VARIANCE = 6,  // two-pass: sum((x - mean)^2) / max(0, n - correction), correction = param
    KILN_REDUCE_LOGSUMEXP = 7, // m + log(sum(exp(x - m))), m = max; all -inf gives -inf
    KILN_REDUCE_COUNT = 8
} kiln_reduce_op;

/// The instruction set the dispatcher chose: 2 = AVX-512, 1 = AVX2 + FMA, 0 = scalar.
int kiln_cpu_isa(void);

/// Forces the dispatcher to a lower level (for tests); returns the level now in use.
/// Values above what the CPU supports are clamped.
int kiln_cpu_set_isa(int level);

/// y[i] = op(x[i]) for i in [0, n). x and y may alias exactly.
void kiln_unary_f32(int op, const float *x, float *y, int64_t n, float p0, float p1);

/// y[i] = op(a[i * aStride], b[i * bStride]) for i in [0, n); strides are 0 or 1.
/// y may alias a stride-1 input exactly.
void kiln_binary_f32(int op, const float *a, int64_t aStride, const float *b, int64_t bStride,
                     float *y, int64_t n);

/// y[i] = cond[i*cStride] != 0 ? a[i*aStride] : b[i*bStride]; strides are 0 or 1 (a NaN
/// condition counts as true). y may alias a stride-1 input exactly.
void kiln_where_f32(const float *cond, int64_t cStride, const float *a, int64_t aStride,
                    const float *b, int64_t bStride, float *y, int64_t n);

/// out[o * inner + i] = reduce_{j < n} x[(o * n + j) * inner + i]. `param` is the variance
/// correction (ignored by the other ops). n == 0: sum 0, mean NaN, max -inf, min +inf,
/// argmax/argmin 0, variance NaN, logsumexp -inf.
void kiln_reduce_f32(int op, const float *x, float *out, int64_t outer, int64_t n, int64_t inner,
                     float param);

/// Softmax (or log-softmax when `logarithm` != 0) over the middle axis of [outer, n, inner].
/// Subtracts the maximum first; a row of all -inf gives NaN as in PyTorch. y may alias x exactly.
void kiln_softmax_f32(const float *x, float *y, int64_t outer, int64_t n, int64_t inner,
                      int logarithm);

/// Runs `iterations` rounds of independent fused multiply-adds at the widest vector width the
/// dispatcher chose (12 accumulators, enough to cover the FMA latency); returns the floating-point
/// operations done. The caller times it (one call per core) to estimate the machine's peak.
/// `sink` receives a value that keeps the loop from being optimised away.
double kiln_fma_burn(int64_t iterations, float *sink);

#ifdef __cplusplus
}
#endif

#endif
