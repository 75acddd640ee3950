// convolution.cl: the data movement around GEMM-lowered 2-D convolution (NCHW, Float32), shared by
// both kernel families (the GEMM itself is gemm_cpu.cl or gemm_gpu.cl, chosen by device type).
//
// Geometry arguments (int8 vectors, all sizes >= 1):
//   g0 = (C_in, H, W, C_out, OH, OW, kH, kW)
//   g1 = (strideH, strideW, padTop, padLeft, dilationH, dilationW, groups, 0)
// A tap of output position p = oh*OW + ow reads input row ih = oh*strideH - padTop + kh*dilationH and
// column iw = ow*strideW - padLeft + kw*dilationW; taps outside the input read zero.
//
// The im2col matrix of `images` consecutive images holds, for image i, row r = (ci*kH + kh)*kW + kw
// (R = C_in*kH*kW rows; group g owns rows [g*R/groups, (g+1)*R/groups)) and column t for position
// p0 + t (t < count): col[(i*R + r)*count + t]. One work-item per element; no tunables: these kernels
// stream memory, and both PoCL and GPUs run one-element work-items at memory speed.

/// col = im2col(x) for images [n0, n0 + images) and positions [p0, p0 + count).
/// Global size (count, R, images).
__kernel void conv_im2col_f32(__global const float *x, const long n0, const int8 g0, const int8 g1,
                              const int p0, const int count, __global float *col) {
    const int t = get_global_id(0), r = get_global_id(1), i = get_global_id(2);
    const int R = (int)get_global_size(1);
    const int kw = r % g0.s7, kh = (r / g0.s7) % g0.s6, ci = r / (g0.s7 * g0.s6);
    const int p = p0 + t, oh = p / g0.s5, ow = p % g0.s5;
    const int ih = oh * g1.s0 - g1.s2 + kh * g1.s4;
    const int iw = ow * g1.s1 - g1.s3 + kw * g1.s5;
    float v = 0.0f;
    if (ih >= 0 && ih < g0.s1 && iw >= 0 && iw < g0.s2)
        v = x[((n0 + i) * g0.s0 + ci) * (long)(g0.s1 * g0.s2) + ih * g0.s2 + iw];
    col[((long)i * R + r) * count + t] = v;
}

/// The adjoint of conv_im2col_f32: dx[n0 + i, ci, ih, iw] (+)= the sum of the col entries whose tap
/// reads it, over positions [p0, p0 + count). `accumulate` == 0 overwrites dx. Gathers, so no two
/// work-items write one element. Global size (W, H, images*C_in).
__kernel void conv_col2im_f32(__global const float *col, const long n0, const int8 g0, const int8 g1,
                              const int p0, const int count, const int accumulate, __global float *dx) {
    const int iw = get_global_id(0), ih = get_global_id(1), z = get_global_id(2);
    const int C = g0.s0, i = z / C, ci = z % C;
    const int R = C * g0.s6 * g0.s7;
    float sum = 0.0f;
    for (int kh = 0; kh < g0.s6; kh++) {
        const int nh = ih + g1.s2 - kh * g1.s4;
        if (nh < 0) break;
        if (nh % g1.s0) continue;
        const int oh = nh / g1.s0;
        if (oh >= g0.s4) continue;
        for (int kw = 0; kw < g0.s7; kw++) {
            const int nw = iw + g1.s3 - kw * g1.s5;
            if (nw < 0) break;
            if (nw % g1.s1) continue;
            const int ow = nw / g1.s1;
            if (ow >= g0.s5) continue;
            const int t = oh * g0.s5 + ow - p0;
            if (t < 0 || t >= count) continue;
            sum += col[((long)i * R + (ci * g0.s6 + kh) * g0.s7 + kw) * count + t];
        }
    }
    const long at = ((n0 + i) * C + ci) * (long)(g0.s1 * g0.s2) + ih * g0.s2 + iw;
    dx[at] = accumulate ? dx[at] + sum : sum;
}

/// y[plane, j] += bias[plane % channels]. Global size (count, planes).
__kernel void conv_add_bias_f32(__global float *y, __global const float *bias, const int channels) {
    const int j = get_global_id(0), plane = get_global_id(1);
    y[(long)plane * get_global_size(0) + j] += bias[plane % channels];
}
