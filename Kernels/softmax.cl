// softmax.cl — softmax and log-softmax over the middle axis of an [outer, n, inner] tensor.
//
// y_j = e^(x_j - m) / Σ_k e^(x_k - m) with m = max_k x_k (numerically stable), or
// log y_j = x_j - m - log Σ_k e^(x_k - m). A slice of all -inf gives NaN, as PyTorch.
// Global size: outer·inner work-items, each owning one slice.

#define AT(j) x[base + (long)(j) * inner]

__kernel void softmax_f32(__global const float *x, __global float *y, const int outer, const int n,
                          const int inner, const int logarithm) {
    const int gid = get_global_id(0);
    if (gid >= outer * inner) return;
    const long base = (long)(gid / inner) * n * inner + gid % inner;
    float m = -INFINITY;
    for (int j = 0; j < n; ++j) m = fmax(m, AT(j));
    float sum = 0.0f;
    for (int j = 0; j < n; ++j) sum += exp(AT(j) - m);
    if (logarithm) {
        const float shift = m + log(sum);
        for (int j = 0; j < n; ++j) y[base + (long)j * inner] = AT(j) - shift;
    } else {
        const float scale = 1.0f / sum;
        for (int j = 0; j < n; ++j) y[base + (long)j * inner] = exp(AT(j) - m) * scale;
    }
}
