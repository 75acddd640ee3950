// memory.cl — data movement: fill, strided copy and gather by flat index.
//
// Layouts: contiguous float buffers; a strided copy visits every index tuple of `shape`
// (rank ≤ 8, row-major order) and moves src[srcOffset + Σ i·srcStrides] to
// dst[dstOffset + Σ i·dstStrides]. Strides may be 0 on the source (broadcast).
// Global size: one work-item per element; no local size needed.

// y[i] = value for i < n.
__kernel void fill_f32(__global float *y, const float value, const int n) {
    const int i = get_global_id(0);
    if (i < n) y[i] = value;
}

// The strided copy described above.
__kernel void copy_strided_f32(__global const float *src, const int srcOffset, const int8 srcStrides,
                               __global float *dst, const int dstOffset, const int8 dstStrides,
                               const int8 shape, const int rank, const int n) {
    const int i = get_global_id(0);
    if (i >= n) return;
    int s[8], ss[8], ds[8];
    vstore8(shape, 0, s);
    vstore8(srcStrides, 0, ss);
    vstore8(dstStrides, 0, ds);
    int rest = i;
    long from = srcOffset, to = dstOffset;
    for (int d = rank - 1; d >= 0; --d) {
        const int index = rest % s[d];
        rest /= s[d];
        from += (long)index * ss[d];
        to += (long)index * ds[d];
    }
    dst[to] = src[from];
}

// dst[i] = src[indices[i]] for i < n (indices already checked to lie in range).
__kernel void take_f32(__global const float *src, __global const int *indices, __global float *dst,
                       const int n) {
    const int i = get_global_id(0);
    if (i < n) dst[i] = src[indices[i]];
}
