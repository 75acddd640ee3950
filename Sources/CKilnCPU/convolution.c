// convolution.c — im2col / col2im tiles, direct depthwise convolution, and 2-D pooling.
//
// The dense convolution's arithmetic runs in OpenBLAS (orchestrated from CPUBackend+Convolution.swift);
// these kernels move data around it. Each is written once as an always-inline body and compiled for
// AVX-512, AVX2 and scalar (KILN_MULTIVERSION), so the contiguous inner loops vectorise.
#include "kiln_cpu_internal.h"

/// The output columns [lo, hi) whose tap iw = ow*s - pad + off lies in [0, width).
KILN_INLINE void kiln_valid_range(int64_t width, int64_t s, int64_t pad, int64_t off, int64_t n, int64_t *lo,
                                  int64_t *hi) {
    const int64_t shift = pad - off; // iw = ow*s - shift
    int64_t a = shift <= 0 ? 0 : (shift + s - 1) / s;
    int64_t b = width - 1 + shift < 0 ? 0 : (width - 1 + shift) / s + 1;
    if (a > n) a = n;
    if (b > n) b = n;
    if (b < a) b = a;
    *lo = a;
    *hi = b;
}

// MARK: - im2col / col2im

/// Walks the output rows that [p0, p0 + count) covers; `ADD` selects col2im (dx += col).
#define KILN_IM2COL_WALK(ADD)                                                                      \
    const int64_t H = g->height, W = g->width, OW = g->out_width;                                  \
    const int64_t kH = g->kernel_h, kW = g->kernel_w, sH = g->stride_h, sW = g->stride_w;          \
    for (int64_t c = 0; c < channels; c++) {                                                       \
        for (int64_t kh = 0; kh < kH; kh++) {                                                      \
            for (int64_t kw = 0; kw < kW; kw++) {                                                  \
                float *row = (float *)col + ((c * kH + kh) * kW + kw) * count;                     \
                const int64_t offw = kw * g->dilation_w;                                           \
                int64_t lo, hi;                                                                    \
                kiln_valid_range(W, sW, g->pad_left, offw, OW, &lo, &hi);                          \
                int64_t p = p0;                                                                    \
                while (p < p0 + count) {                                                           \
                    const int64_t oh = p / OW, ow0 = p % OW;                                       \
                    const int64_t ow1 = (p0 + count - p) < (OW - ow0) ? ow0 + (p0 + count - p) : OW; \
                    float *out = row + (p - p0) - ow0;                                             \
                    const int64_t ih = oh * sH - g->pad_top + kh * g->dilation_h;                  \
                    const int64_t a = lo > ow0 ? lo : ow0, b = hi < ow1 ? hi : ow1;                \
                    if (ih >= 0 && ih < H && a < b) {                                              \
                        const float *src = x + (c * H + ih) * W - g->pad_left + offw;              \
                        if (ADD) {                                                                 \
                            float *dst = (float *)src;                                             \
                            if (sW == 1) {                                                         \
                                KILN_VECTORIZE for (int64_t ow = a; ow < b; ow++) dst[ow] += out[ow]; \
                            } else {                                                               \
                                for (int64_t ow = a; ow < b; ow++) dst[ow * sW] += out[ow];        \
                            }                                                                      \
                        } else {                                                                   \
                            for (int64_t ow = ow0; ow < a; ow++) out[ow] = 0;                      \
                            if (sW == 1) {                                                         \
                                memcpy(out + a, src + a, (size_t)(b - a) * sizeof(float));        \
                            } else {                                                               \
                                for (int64_t ow = a; ow < b; ow++) out[ow] = src[ow * sW];         \
                            }                                                                      \
                            for (int64_t ow = b; ow < ow1; ow++) out[ow] = 0;                      \
                        }                                                                          \
                    } else if (!(ADD)) {                                                           \
                        for (int64_t ow = ow0; ow < ow1; ow++) out[ow] = 0;                        \
                    }                                                                              \
                    p += ow1 - ow0;                                                                \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

KILN_INLINE void kiln_im2col_body(const kiln_conv_geometry *g, const float *x, int64_t channels, int64_t p0,
                                  int64_t count, float *col) {
    KILN_IM2COL_WALK(0)
}
KILN_MULTIVERSION(kiln_im2col, (const kiln_conv_geometry *g, const float *x, int64_t channels, int64_t p0,
                                int64_t count, float *col),
                  (g, x, channels, p0, count, col))

void kiln_im2col_f32(const kiln_conv_geometry *g, const float *x, int64_t channels, int64_t p0, int64_t count,
                     float *col) {
    KILN_DISPATCH(kiln_im2col, (g, x, channels, p0, count, col))
}

KILN_INLINE void kiln_col2im_body(const kiln_conv_geometry *g, const float *col, int64_t channels, int64_t p0,
                                  int64_t count, float *x) {
    KILN_IM2COL_WALK(1)
}
KILN_MULTIVERSION(kiln_col2im, (const kiln_conv_geometry *g, const float *col, int64_t channels, int64_t p0,
                                int64_t count, float *x),
                  (g, col, channels, p0, count, x))

void kiln_col2im_f32(const kiln_conv_geometry *g, const float *col, int64_t channels, int64_t p0, int64_t count,
                     float *dx) {
    KILN_DISPATCH(kiln_col2im, (g, col, channels, p0, count, dx))
}

// MARK: - Depthwise

KILN_INLINE void kiln_conv_depthwise_body(const kiln_conv_geometry *g, const float *x, const float *w,
                                          const float *bias, float *y, int64_t plane_lo, int64_t plane_hi) {
    const int64_t H = g->height, W = g->width, OH = g->out_height, OW = g->out_width;
    const int64_t C = g->in_channels, CO = g->out_channels, mult = CO / g->groups;
    for (int64_t plane = plane_lo; plane < plane_hi; plane++) {
        const int64_t n = plane / CO, co = plane % CO, ci = co / mult;
        const float *xp = x + (n * C + ci) * H * W;
        const float *wp = w + co * g->kernel_h * g->kernel_w;
        float *restrict yp = y + plane * OH * OW;
        const float b0 = bias ? bias[co] : 0.0f;
        for (int64_t i = 0; i < OH * OW; i++) yp[i] = b0;
        for (int64_t kh = 0; kh < g->kernel_h; kh++) {
            for (int64_t kw = 0; kw < g->kernel_w; kw++) {
                const float wv = wp[kh * g->kernel_w + kw];
                const int64_t offw = kw * g->dilation_w;
                int64_t lo, hi;
                kiln_valid_range(W, g->stride_w, g->pad_left, offw, OW, &lo, &hi);
                for (int64_t oh = 0; oh < OH; oh++) {
                    const int64_t ih = oh * g->stride_h - g->pad_top + kh * g->dilation_h;
                    if (ih < 0 || ih >= H) continue;
                    const float *restrict src = xp + ih * W - g->pad_left + offw;
                    float *restrict dst = yp + oh * OW;
                    if (g->stride_w == 1) {
                        for (int64_t ow = lo; ow < hi; ow++) dst[ow] += wv * src[ow];
                    } else {
                        for (int64_t ow = lo; ow < hi; ow++) dst[ow] += wv * src[ow * g->stride_w];
                    }
                }
            }
        }
    }
}
KILN_MULTIVERSION(kiln_conv_depthwise, (const kiln_conv_geometry *g, const float *x, const float *w,
                                        const float *bias, float *y, int64_t lo, int64_t hi),
                  (g, x, w, bias, y, lo, hi))

void kiln_conv_depthwise_f32(const kiln_conv_geometry *g, const float *x, const float *w, const float *bias,
                             float *y, int64_t plane_lo, int64_t plane_hi) {
    KILN_DISPATCH(kiln_conv_depthwise, (g, x, w, bias, y, plane_lo, plane_hi))
}

KILN_INLINE void kiln_conv_depthwise_bwd_input_body(const kiln_conv_geometry *g, const float *dy, const float *w,
                                                    const float *bias, float *dx, int64_t plane_lo,
                                                    int64_t plane_hi) {
    const int64_t H = g->height, W = g->width, OH = g->out_height, OW = g->out_width;
    const int64_t C = g->in_channels, CO = g->out_channels, mult = CO / g->groups;
    for (int64_t plane = plane_lo; plane < plane_hi; plane++) {
        const int64_t n = plane / C, ci = plane % C;
        float *restrict xp = dx + plane * H * W;
        const float b0 = bias ? bias[ci] : 0.0f;
        for (int64_t i = 0; i < H * W; i++) xp[i] = b0;
        for (int64_t co = ci * mult; co < (ci + 1) * mult; co++) {
            const float *restrict gp = dy + (n * CO + co) * OH * OW;
            const float *wp = w + co * g->kernel_h * g->kernel_w;
            for (int64_t kh = 0; kh < g->kernel_h; kh++) {
                for (int64_t kw = 0; kw < g->kernel_w; kw++) {
                    const float wv = wp[kh * g->kernel_w + kw];
                    const int64_t offw = kw * g->dilation_w;
                    int64_t lo, hi;
                    kiln_valid_range(W, g->stride_w, g->pad_left, offw, OW, &lo, &hi);
                    for (int64_t oh = 0; oh < OH; oh++) {
                        const int64_t ih = oh * g->stride_h - g->pad_top + kh * g->dilation_h;
                        if (ih < 0 || ih >= H) continue;
                        float *restrict dst = xp + ih * W - g->pad_left + offw;
                        const float *restrict src = gp + oh * OW;
                        if (g->stride_w == 1) {
                            for (int64_t ow = lo; ow < hi; ow++) dst[ow] += wv * src[ow];
                        } else {
                            for (int64_t ow = lo; ow < hi; ow++) dst[ow * g->stride_w] += wv * src[ow];
                        }
                    }
                }
            }
        }
    }
}
KILN_MULTIVERSION(kiln_conv_depthwise_bwd_input, (const kiln_conv_geometry *g, const float *dy, const float *w,
                                                  const float *bias, float *dx, int64_t lo, int64_t hi),
                  (g, dy, w, bias, dx, lo, hi))

void kiln_conv_depthwise_backward_input_f32(const kiln_conv_geometry *g, const float *dy, const float *w,
                                            const float *bias, float *dx, int64_t plane_lo, int64_t plane_hi) {
    KILN_DISPATCH(kiln_conv_depthwise_bwd_input, (g, dy, w, bias, dx, plane_lo, plane_hi))
}

/// Lane-wise partial sums so the reduction vectorises under strict floating point.
#define KILN_DW_LANES 64

KILN_INLINE void kiln_conv_depthwise_bwd_weight_body(const kiln_conv_geometry *g, const float *dy, const float *x,
                                                     float *dw, int64_t co_lo, int64_t co_hi) {
    const int64_t H = g->height, W = g->width, OH = g->out_height, OW = g->out_width;
    const int64_t C = g->in_channels, CO = g->out_channels, mult = CO / g->groups;
    for (int64_t co = co_lo; co < co_hi; co++) {
        const int64_t ci = co / mult;
        for (int64_t kh = 0; kh < g->kernel_h; kh++) {
            for (int64_t kw = 0; kw < g->kernel_w; kw++) {
                float acc[KILN_DW_LANES];
                for (int l = 0; l < KILN_DW_LANES; l++) acc[l] = 0;
                double total = 0;
                const int64_t offw = kw * g->dilation_w;
                int64_t lo, hi;
                kiln_valid_range(W, g->stride_w, g->pad_left, offw, OW, &lo, &hi);
                for (int64_t n = 0; n < g->batch; n++) {
                    const float *gp = dy + (n * CO + co) * OH * OW;
                    const float *xp = x + (n * C + ci) * H * W;
                    for (int64_t oh = 0; oh < OH; oh++) {
                        const int64_t ih = oh * g->stride_h - g->pad_top + kh * g->dilation_h;
                        if (ih < 0 || ih >= H) continue;
                        const float *src = xp + ih * W - g->pad_left + offw;
                        const float *gr = gp + oh * OW;
                        int64_t ow = lo;
                        if (g->stride_w == 1) {
                            for (; ow + KILN_DW_LANES <= hi; ow += KILN_DW_LANES)
                                for (int l = 0; l < KILN_DW_LANES; l++) acc[l] += gr[ow + l] * src[ow + l];
                        }
                        for (; ow < hi; ow++) total += (double)gr[ow] * src[ow * g->stride_w];
                    }
                }
                for (int l = 0; l < KILN_DW_LANES; l++) total += acc[l];
                dw[(co * g->kernel_h + kh) * g->kernel_w + kw] = (float)total;
            }
        }
    }
}
KILN_MULTIVERSION(kiln_conv_depthwise_bwd_weight, (const kiln_conv_geometry *g, const float *dy, const float *x,
                                                   float *dw, int64_t lo, int64_t hi),
                  (g, dy, x, dw, lo, hi))

void kiln_conv_depthwise_backward_weight_f32(const kiln_conv_geometry *g, const float *dy, const float *x,
                                             float *dw, int64_t co_lo, int64_t co_hi) {
    KILN_DISPATCH(kiln_conv_depthwise_bwd_weight, (g, dy, x, dw, co_lo, co_hi))
}

KILN_INLINE void kiln_add_channel_bias_body(float *y, const float *bias, int64_t planes, int64_t channels,
                                            int64_t count) {
    for (int64_t p = 0; p < planes; p++) {
        const float b = bias[p % channels];
        float *row = y + p * count;
        for (int64_t i = 0; i < count; i++) row[i] += b;
    }
}
KILN_MULTIVERSION(kiln_add_channel_bias, (float *y, const float *bias, int64_t planes, int64_t channels,
                                          int64_t count),
                  (y, bias, planes, channels, count))

void kiln_add_channel_bias_f32(float *y, const float *bias, int64_t planes, int64_t channels, int64_t count) {
    KILN_DISPATCH(kiln_add_channel_bias, (y, bias, planes, channels, count))
}

// MARK: - Pooling

/// The window of output `o` along one dimension: taps start + i*step for i < taps, and the average's
/// divisor factor. Fixed windows may extend into the padding (taps outside [0, n) are skipped).
KILN_INLINE void kiln_pool_window(int64_t adaptive, int64_t o, int64_t n, int64_t out, int64_t k, int64_t s,
                                  int64_t pad, int64_t d, int64_t include_pad, int64_t *start, int64_t *taps,
                                  int64_t *step, int64_t *divisor) {
    if (adaptive) {
        const int64_t a = (o * n) / out, b = ((o + 1) * n + out - 1) / out;
        *start = a;
        *taps = b - a;
        *step = 1;
        *divisor = b - a;
        return;
    }
    const int64_t a = o * s - pad;
    *start = a;
    *taps = k;
    *step = d;
    int64_t end = a + k < n + pad ? a + k : n + pad; // the average's window, clipped to the padded input
    const int64_t padded = end - a;
    const int64_t lo = a < 0 ? 0 : a, hi = end < n ? end : n;
    *divisor = include_pad ? padded : hi - lo;
}

void kiln_pool2d_f32(const kiln_pool_geometry *g, const float *x, float *y, float *indices, int64_t plane_lo,
                     int64_t plane_hi) {
    const int64_t H = g->height, W = g->width, OH = g->out_height, OW = g->out_width;
    for (int64_t p = plane_lo; p < plane_hi; p++) {
        const float *xp = x + p * H * W;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t hs, ht, hstep, hdiv;
            kiln_pool_window(g->adaptive, oh, H, OH, g->kernel_h, g->stride_h, g->pad_h, g->dilation_h,
                             g->count_include_pad, &hs, &ht, &hstep, &hdiv);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t ws, wt, wstep, wdiv;
                kiln_pool_window(g->adaptive, ow, W, OW, g->kernel_w, g->stride_w, g->pad_w, g->dilation_w,
                                 g->count_include_pad, &ws, &wt, &wstep, &wdiv);
                const int64_t o = p * OH * OW + oh * OW + ow;
                if (g->mode == 0) {
                    float best = -INFINITY;
                    int64_t at = -1;
                    for (int64_t i = 0; i < ht; i++) {
                        const int64_t ih = hs + i * hstep;
                        if (ih < 0 || ih >= H) continue;
                        for (int64_t j = 0; j < wt; j++) {
                            const int64_t iw = ws + j * wstep;
                            if (iw < 0 || iw >= W) continue;
                            const float v = xp[ih * W + iw];
                            // PyTorch's rule: the first valid tap, then any larger value or NaN.
                            if (at < 0 || v > best || isnan(v)) {
                                at = ih * W + iw;
                                best = v;
                            }
                        }
                    }
                    y[o] = best;
                    indices[o] = (float)at;
                } else {
                    double sum = 0;
                    for (int64_t i = 0; i < ht; i++) {
                        const int64_t ih = hs + i * hstep;
                        if (ih < 0 || ih >= H) continue;
                        for (int64_t j = 0; j < wt; j++) {
                            const int64_t iw = ws + j * wstep;
                            if (iw < 0 || iw >= W) continue;
                            sum += xp[ih * W + iw];
                        }
                    }
                    y[o] = (float)(sum / (double)(hdiv * wdiv));
                }
            }
        }
    }
}

/// The outputs whose window holds input position `i` along one dimension: [lo, hi) for adaptive windows;
/// for fixed windows the caller walks the taps.
KILN_INLINE void kiln_adaptive_range(int64_t i, int64_t n, int64_t out, int64_t *lo, int64_t *hi) {
    *lo = (i * out) / n;
    *hi = ((i + 1) * out + n - 1) / n;
    if (*hi > out) *hi = out;
}

void kiln_pool2d_backward_f32(const kiln_pool_geometry *g, const float *dy, const float *indices, float *dx,
                              int64_t plane_lo, int64_t plane_hi) {
    const int64_t H = g->height, W = g->width, OH = g->out_height, OW = g->out_width;
    for (int64_t p = plane_lo; p < plane_hi; p++) {
        const float *gp = dy + p * OH * OW;
        const float *ip = indices ? indices + p * OH * OW : 0;
        for (int64_t ih = 0; ih < H; ih++) {
            // The output rows that read ih.
            int64_t rlo = 0, rhi = 0;
            if (g->adaptive) {
                kiln_adaptive_range(ih, H, OH, &rlo, &rhi);
            }
            for (int64_t iw = 0; iw < W; iw++) {
                double sum = 0;
                const float self = (float)(ih * W + iw);
                int64_t clo = 0, chi = 0;
                if (g->adaptive) kiln_adaptive_range(iw, W, OW, &clo, &chi);
                // Walk (oh, ow) pairs: adaptive ranges, or fixed-window taps.
                int64_t oh_count = g->adaptive ? rhi - rlo : g->kernel_h;
                for (int64_t a = 0; a < oh_count; a++) {
                    int64_t oh;
                    if (g->adaptive) {
                        oh = rlo + a;
                    } else {
                        const int64_t num = ih + g->pad_h - a * g->dilation_h;
                        if (num < 0) break;
                        if (num % g->stride_h) continue;
                        oh = num / g->stride_h;
                        if (oh >= OH) continue;
                    }
                    int64_t ow_count = g->adaptive ? chi - clo : g->kernel_w;
                    for (int64_t b = 0; b < ow_count; b++) {
                        int64_t ow;
                        if (g->adaptive) {
                            ow = clo + b;
                        } else {
                            const int64_t num = iw + g->pad_w - b * g->dilation_w;
                            if (num < 0) break;
                            if (num % g->stride_w) continue;
                            ow = num / g->stride_w;
                            if (ow >= OW) continue;
                        }
                        const int64_t o = oh * OW + ow;
                        if (g->mode == 0) {
                            if (ip[o] == self) sum += gp[o];
                        } else {
                            int64_t s, t, st, hdiv, wdiv;
                            kiln_pool_window(g->adaptive, oh, H, OH, g->kernel_h, g->stride_h, g->pad_h,
                                             g->dilation_h, g->count_include_pad, &s, &t, &st, &hdiv);
                            kiln_pool_window(g->adaptive, ow, W, OW, g->kernel_w, g->stride_w, g->pad_w,
                                             g->dilation_w, g->count_include_pad, &s, &t, &st, &wdiv);
                            sum += (double)gp[o] / (double)(hdiv * wdiv);
                        }
                    }
                }
                dx[p * H * W + ih * W + iw] = (float)sum;
            }
        }
    }
}
