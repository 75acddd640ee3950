// elementwise.cl — unary and broadcast binary / select maps over float tensors.
//
// Op codes match KilnCore's UnaryOp / BinaryOp and CKilnCPU's kiln_unary_op / kiln_binary_op.
// Broadcast kernels read inputs with per-dimension strides (0 on broadcast dimensions) over an
// output `shape` of rank ≤ 8 that is contiguous. Global size: one work-item per output element.

// y = op(x; p0, p1). NaN propagates through relu, clamp and the other piecewise ops.
float unary_op(const int op, const float x, const float p0, const float p1) {
    switch (op) {
    case 0: return -x;
    case 1: return fabs(x);
    case 2: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);  // NaN gives 0, as torch.sign
    case 3: return exp(x);
    case 4: return expm1(x);
    case 5: return log(x);
    case 6: return log1p(x);
    case 7: return sqrt(x);
    case 8: return rsqrt(x);
    case 9: return x * x;
    case 10: return sin(x);
    case 11: return cos(x);
    case 12: return tanh(x);
    case 13: {  // sigmoid, never exponentiating a positive number
        const float e = exp(-fabs(x));
        return x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    }
    case 14: return x < 0.0f ? 0.0f : x;
    case 15: return 0.5f * x * (1.0f + erf(x * M_SQRT1_2_F));
    case 16: {
        const float inner = 0.7978845608028654f * (x + 0.044715f * x * x * x);
        return 0.5f * x * (1.0f + tanh(inner));
    }
    case 17: {
        const float e = exp(-fabs(x));
        return x * (x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e));
    }
    case 18: return fmax(x, 0.0f) + log1p(exp(-fabs(x)));
    case 19: return erf(x);
    case 20: return isnan(x) ? x : fmin(fmax(x, p0), p1);
    case 21: return pow(x, p0);
    case 22: return 1.0f / x;
    case 23: return floor(x);
    case 24: return ceil(x);
    case 25: return rint(x);
    case 26: return x >= 0.0f ? x : p0 * x;
    case 27: return x > 0.0f ? x : p0 * expm1(x);
    case 28: return tan(x);
    case 29: return x + p0;
    case 30: return x * p0;
    default: return NAN;
    }
}

// out = op(a, b); comparisons give 1 or 0; maximum and minimum propagate NaN.
float binary_op(const int op, const float a, const float b) {
    switch (op) {
    case 0: return a + b;
    case 1: return a - b;
    case 2: return a * b;
    case 3: return a / b;
    case 4: return pow(a, b);
    case 5: return (isnan(a) || isnan(b)) ? NAN : fmax(a, b);
    case 6: return (isnan(a) || isnan(b)) ? NAN : fmin(a, b);
    case 7: return a == b ? 1.0f : 0.0f;
    case 8: return a != b ? 1.0f : 0.0f;
    case 9: return a < b ? 1.0f : 0.0f;
    case 10: return a <= b ? 1.0f : 0.0f;
    case 11: return a > b ? 1.0f : 0.0f;
    case 12: return a >= b ? 1.0f : 0.0f;
    default: return NAN;
    }
}

// y[i] = op(x[i]) for i < n.
__kernel void unary_f32(__global const float *x, __global float *y, const int n, const int op,
                        const float p0, const float p1) {
    const int i = get_global_id(0);
    if (i < n) y[i] = unary_op(op, x[i], p0, p1);
}

// out[i] = op(a[..], b[..]) with broadcast strides.
__kernel void binary_f32(__global const float *a, __global const float *b, __global float *out,
                         const int8 shape, const int8 aStrides, const int8 bStrides, const int rank,
                         const int n, const int op) {
    const int i = get_global_id(0);
    if (i >= n) return;
    int s[8], sa[8], sb[8];
    vstore8(shape, 0, s);
    vstore8(aStrides, 0, sa);
    vstore8(bStrides, 0, sb);
    int rest = i, ia = 0, ib = 0;
    for (int d = rank - 1; d >= 0; --d) {
        const int index = rest % s[d];
        rest /= s[d];
        ia += index * sa[d];
        ib += index * sb[d];
    }
    out[i] = binary_op(op, a[ia], b[ib]);
}

// out[i] = cond[..] != 0 ? a[..] : b[..] with broadcast strides.
__kernel void select_f32(__global const float *cond, __global const float *a, __global const float *b,
                         __global float *out, const int8 shape, const int8 cStrides, const int8 aStrides,
                         const int8 bStrides, const int rank, const int n) {
    const int i = get_global_id(0);
    if (i >= n) return;
    int s[8], sc[8], sa[8], sb[8];
    vstore8(shape, 0, s);
    vstore8(cStrides, 0, sc);
    vstore8(aStrides, 0, sa);
    vstore8(bStrides, 0, sb);
    int rest = i, ic = 0, ia = 0, ib = 0;
    for (int d = rank - 1; d >= 0; --d) {
        const int index = rest % s[d];
        rest /= s[d];
        ic += index * sc[d];
        ia += index * sa[d];
        ib += index * sb[d];
    }
    out[i] = cond[ic] != 0.0f ? a[ia] : b[ib];
}
