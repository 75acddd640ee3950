// pooling.cl: 2-D max and average pooling (fixed or adaptive windows), forward and backward, NCHW
// Float32, one work-item per output (forward) or per input element (backward, a gather: no atomics).
//
// Geometry arguments (int8 vectors):
//   g0 = (H, W, OH, OW, kH, kW, strideH, strideW)
//   g1 = (padH, padW, dilationH, dilationW, mode (0 max, 1 average), adaptive, countIncludePad, 0)
// Fixed window of output oh: taps oh*strideH - padH + i*dilationH, i < kH (outside the input skipped);
// adaptive: rows floor(oh*H/OH) ..< ceil((oh+1)*H/OH). Max propagates NaN (PyTorch: the first tap,
// then any larger value or NaN) and writes the flat index ih*W + iw as a float. The average divides by
// the window clipped to the padded input (countIncludePad) or by the taps inside the input; adaptive
// windows by their size. Both kernel families use these kernels (memory-bound; no tunables).

/// Start, tap count, step and divisor factor of output o's window along one dimension.
static void pool_window(int adaptive, int o, int n, int out, int k, int s, int pad, int d, int includePad,
                        int *start, int *taps, int *step, int *divisor) {
    if (adaptive) {
        const int a = (o * n) / out, b = ((o + 1) * n + out - 1) / out;
        *start = a; *taps = b - a; *step = 1; *divisor = b - a;
        return;
    }
    const int a = o * s - pad;
    const int end = min(a + k, n + pad);
    *start = a; *taps = k; *step = d;
    *divisor = includePad ? end - a : min(end, n) - max(a, 0);
}

/// Global size (OW, OH, planes).
__kernel void pool2d_f32(__global const float *x, __global float *y, __global float *indices, const int8 g0,
                         const int8 g1) {
    const int ow = get_global_id(0), oh = get_global_id(1), p = get_global_id(2);
    const int H = g0.s0, W = g0.s1;
    int hs, ht, hst, hd, ws, wt, wst, wd;
    pool_window(g1.s5, oh, H, g0.s2, g0.s4, g0.s6, g1.s0, g1.s2, g1.s6, &hs, &ht, &hst, &hd);
    pool_window(g1.s5, ow, W, g0.s3, g0.s5, g0.s7, g1.s1, g1.s3, g1.s6, &ws, &wt, &wst, &wd);
    __global const float *xp = x + (long)p * H * W;
    const long o = ((long)p * g0.s2 + oh) * g0.s3 + ow;
    if (g1.s4 == 0) {
        float best = -INFINITY;
        int at = -1;
        for (int i = 0; i < ht; i++) {
            const int ih = hs + i * hst;
            if (ih < 0 || ih >= H) continue;
            for (int j = 0; j < wt; j++) {
                const int iw = ws + j * wst;
                if (iw < 0 || iw >= W) continue;
                const float v = xp[ih * W + iw];
                if (at < 0 || v > best || isnan(v)) { at = ih * W + iw; best = v; }
            }
        }
        y[o] = best;
        indices[o] = (float)at;
    } else {
        float sum = 0.0f;
        for (int i = 0; i < ht; i++) {
            const int ih = hs + i * hst;
            if (ih < 0 || ih >= H) continue;
            for (int j = 0; j < wt; j++) {
                const int iw = ws + j * wst;
                if (iw >= 0 && iw < W) sum += xp[ih * W + iw];
            }
        }
        y[o] = sum / (float)(hd * wd);
    }
}

/// Global size (W, H, planes). `indices` is read only for max pooling.
__kernel void pool2d_backward_f32(__global const float *dy, __global const float *indices, __global float *dx,
                                  const int8 g0, const int8 g1) {
    const int iw = get_global_id(0), ih = get_global_id(1), p = get_global_id(2);
    const int H = g0.s0, W = g0.s1, OH = g0.s2, OW = g0.s3;
    const int adaptive = g1.s5;
    const float self = (float)(ih * W + iw);
    __global const float *gp = dy + (long)p * OH * OW;
    __global const float *ip = indices + (long)p * OH * OW;
    int rlo = 0, rn = g0.s4, clo = 0, cn = g0.s5;
    if (adaptive) {
        rlo = (ih * OH) / H; rn = min(((ih + 1) * OH + H - 1) / H, OH) - rlo;
        clo = (iw * OW) / W; cn = min(((iw + 1) * OW + W - 1) / W, OW) - clo;
    }
    float sum = 0.0f;
    for (int a = 0; a < rn; a++) {
        int oh = rlo + a;
        if (!adaptive) {
            const int num = ih + g1.s0 - a * g1.s2;
            if (num < 0) break;
            if (num % g0.s6) continue;
            oh = num / g0.s6;
            if (oh >= OH) continue;
        }
        for (int b = 0; b < cn; b++) {
            int ow = clo + b;
            if (!adaptive) {
                const int num = iw + g1.s1 - b * g1.s3;
                if (num < 0) break;
                if (num % g0.s7) continue;
                ow = num / g0.s7;
                if (ow >= OW) continue;
            }
            const int o = oh * OW + ow;
            if (g1.s4 == 0) {
                if (ip[o] == self) sum += gp[o];
            } else {
                int s, t, st, hd, wd;
                pool_window(adaptive, oh, H, OH, g0.s4, g0.s6, g1.s0, g1.s2, g1.s6, &s, &t, &st, &hd);
                pool_window(adaptive, ow, W, OW, g0.s5, g0.s7, g1.s1, g1.s3, g1.s6, &s, &t, &st, &wd);
                sum += gp[o] / (float)(hd * wd);
            }
        }
    }
    dx[((long)p * H + ih) * W + iw] = sum;
}
