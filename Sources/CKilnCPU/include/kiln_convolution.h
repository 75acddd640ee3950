// kiln_convolution.h — the CPU backend's convolution and pooling micro-kernels.
//
// Layouts are NCHW, contiguous. Convolution taps read input row `oh*stride_h - pad_top + kh*dilation_h`
// (columns likewise); taps outside the input read zero. The GEMM work itself runs in OpenBLAS; these
// kernels build and scatter im2col tiles, and run the direct depthwise paths and pooling.
#ifndef KILN_CONVOLUTION_H
#define KILN_CONVOLUTION_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The sizes of a 2-D convolution (Convolution2DDescriptor in KilnCore).
typedef struct {
    int64_t batch, in_channels, height, width;
    int64_t out_channels, out_height, out_width;
    int64_t kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w, groups;
} kiln_conv_geometry;

/// Writes the im2col tile of `channels` consecutive input planes starting at `x` (each height×width):
/// col[(c*kernel_h + kh)*kernel_w + kw][t] = x[c][ih][iw] for output position p = p0 + t, t < count
/// (oh = p / out_width, ow = p % out_width), zero where the tap falls in the padding.
void kiln_im2col_f32(const kiln_conv_geometry *g, const float *x, int64_t channels, int64_t p0, int64_t count,
                     float *col);

/// The adjoint of kiln_im2col_f32: adds every col entry into the input element its tap reads
/// (entries that read padding are dropped). Not thread-safe for overlapping planes.
void kiln_col2im_f32(const kiln_conv_geometry *g, const float *col, int64_t channels, int64_t p0, int64_t count,
                     float *dx);

/// Depthwise convolution (one input channel per group) for output planes [plane_lo, plane_hi) of
/// [batch, out_channels]: y = bias + Σ taps. `bias` may be NULL.
void kiln_conv_depthwise_f32(const kiln_conv_geometry *g, const float *x, const float *w, const float *bias,
                             float *y, int64_t plane_lo, int64_t plane_hi);

/// Depthwise input gradient for input planes [plane_lo, plane_hi) of [batch, in_channels]
/// (overwrites dx; adds bias[plane % in_channels] when `bias` is not NULL).
void kiln_conv_depthwise_backward_input_f32(const kiln_conv_geometry *g, const float *dy, const float *w,
                                            const float *bias, float *dx, int64_t plane_lo, int64_t plane_hi);

/// Depthwise weight gradient for output channels [co_lo, co_hi) (overwrites dw).
void kiln_conv_depthwise_backward_weight_f32(const kiln_conv_geometry *g, const float *dy, const float *x,
                                             float *dw, int64_t co_lo, int64_t co_hi);

/// y[c] += bias[c] over [planes, count] with planes cycling through `channels` biases.
void kiln_add_channel_bias_f32(float *y, const float *bias, int64_t planes, int64_t channels, int64_t count);

/// The sizes and mode of a 2-D pooling (Pooling2DDescriptor in KilnCore). mode 0 = max, 1 = average.
typedef struct {
    int64_t mode, adaptive, planes, height, width, out_height, out_width;
    int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, count_include_pad;
} kiln_pool_geometry;

/// Pools planes [plane_lo, plane_hi); `indices` (max only) receives ih*width + iw as a float.
void kiln_pool2d_f32(const kiln_pool_geometry *g, const float *x, float *y, float *indices, int64_t plane_lo,
                     int64_t plane_hi);

/// Gathers the input gradient of planes [plane_lo, plane_hi) (overwrites dx).
void kiln_pool2d_backward_f32(const kiln_pool_geometry *g, const float *dy, const float *indices, float *dx,
                              int64_t plane_lo, int64_t plane_hi);

#ifdef __cplusplus
}
#endif

#endif
