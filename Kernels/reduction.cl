// reduction.cl — reductions over the middle axis of an [outer, n, inner] float tensor.
//
// Op codes match KilnCore's ReduceOp: 0 sum, 1 mean, 2 max, 3 min, 4 argmax, 5 argmin,
// 6 variance (two-pass, divisor max(0, n - correction)), 7 logsumexp (m + log Σ e^(x - m)).
// Sums are compensated (Kahan), so long rows keep Float32 accuracy; the compensation stops once the
// running sum is infinite, so ±inf terms give ±inf (+inf with -inf gives NaN), as a plain sum does.
// max/min propagate NaN; argmax/argmin return the first extreme index as a float, a NaN counting as the extreme.
// Empty rows (n == 0): sum 0, mean NaN, max -inf, min +inf, arg 0, variance NaN, logsumexp -inf.
// Global size: outer·inner work-items, each reducing one slice.

#define AT(j) x[base + (long)(j) * inner]

// Σ_j x_j with Kahan compensation.
float kahan_sum(__global const float *x, const long base, const int n, const int inner) {
    float sum = 0.0f, carry = 0.0f;
    for (int j = 0; j < n; ++j) {
        const float y = AT(j) - carry;
        const float t = sum + y;
        carry = isfinite(t) ? (t - sum) - y : 0.0f;  // an infinite sum stays infinite, not NaN
        sum = t;
    }
    return sum;
}

__kernel void reduce_f32(__global const float *x, __global float *out, const int outer, const int n,
                         const int inner, const int op, const float correction) {
    const int gid = get_global_id(0);
    if (gid >= outer * inner) return;
    const int o = gid / inner, i = gid % inner;
    const long base = (long)o * n * inner + i;
    float result;
    switch (op) {
    case 0: result = kahan_sum(x, base, n, inner); break;
    case 1: result = n == 0 ? NAN : kahan_sum(x, base, n, inner) / (float)n; break;
    case 2:
    case 3: {
        float m = op == 2 ? -INFINITY : INFINITY;
        for (int j = 0; j < n; ++j) {
            const float v = AT(j);
            if (isnan(v)) { m = v; break; }
            m = op == 2 ? fmax(m, v) : fmin(m, v);
        }
        result = m;
        break;
    }
    case 4:
    case 5: {
        int best = 0;
        float m = n > 0 ? AT(0) : 0.0f;
        for (int j = 1; j < n && !isnan(m); ++j) {
            const float v = AT(j);
            if (isnan(v) || (op == 4 ? v > m : v < m)) { m = v; best = j; }
        }
        result = (float)best;
        break;
    }
    case 6: {
        if (n == 0) { result = NAN; break; }
        const float mean = kahan_sum(x, base, n, inner) / (float)n;
        float sum = 0.0f, carry = 0.0f;
        for (int j = 0; j < n; ++j) {
            const float d = AT(j) - mean;
            const float y = d * d - carry;
            const float t = sum + y;
            carry = isfinite(t) ? (t - sum) - y : 0.0f;  // an infinite sum stays infinite, not NaN
            sum = t;
        }
        result = sum / fmax((float)n - correction, 0.0f);  // divisor max(0, n - c), as torch.var
        break;
    }
    case 7: {
        float m = -INFINITY;
        for (int j = 0; j < n; ++j) m = fmax(m, AT(j));
        if (isinf(m)) { result = m; break; }  // all -inf gives -inf; any +inf gives +inf
        float sum = 0.0f, carry = 0.0f;
        for (int j = 0; j < n; ++j) {
            const float y = exp(AT(j) - m) - carry;
            const float t = sum + y;
            carry = isfinite(t) ? (t - sum) - y : 0.0f;  // an infinite sum stays infinite, not NaN
            sum = t;
        }
        result = m + log(sum);
        break;
    }
    default: result = NAN;
    }
    out[gid] = result;
}
