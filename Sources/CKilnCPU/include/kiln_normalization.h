// kiln_normalization.h — the CPU backend's fused normalization kernels, forward and backward.
//
// Layouts (contiguous, row-major Float32):
//   rows:     `rows` rows of n = group_channels * spatial elements (layer, RMS and group norm). Row r
//             belongs to group r % groups; element j of row r uses the affine parameter
//             p = (r % groups) * group_channels + j / spatial. Layer/RMS norm: groups = 1,
//             group_channels = n, spatial = 1.
//   channels: [batch, channels, spatial] (batch and instance norm); statistics per channel over the
//             batch * spatial elements x[(b * channels + c) * spatial + s].
//
// Statistics: the corrected two-pass algorithm. m = Σx/n (Float32 lanes within blocks of 4096
// elements, blocks added in double), then δ = Σ(x − m)/n and var = Σ(x − m)²/n − δ² over the data
// again (from cache); the mean is m + δ and every output uses (x − m) − δ, which stays exact for
// inputs with a large offset. Backward kernels take the forward's mean as m and recompute δ.
//
// Every function handles the row (or channel, or unit) range [begin, end) so that the caller can split
// the work over threads; ranges of different calls never write the same output.
#ifndef KILN_NORMALIZATION_H
#define KILN_NORMALIZATION_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Layer / group (rms == 0) or RMS (rms != 0) normalization of rows [row_begin, row_end):
///   y = ((x − μ)·σ)·w[p] + b[p],  σ = 1/√(var + eps)        (rms: y = x·σ·w[p], σ = 1/√(Σx²/n + eps))
/// weight and bias may be NULL (1 and 0). mean (NULL to skip; unused for RMS) and rstd receive μ and σ
/// at index r. n = group_channels * spatial >= 1. `streaming` != 0 writes y with non-temporal stores
/// (for outputs much larger than the caches).
void kiln_norm_rows_f32(const float *x, const float *weight, const float *bias, float *y, float *mean,
                        float *rstd, int64_t row_begin, int64_t row_end, int64_t groups,
                        int64_t group_channels, int64_t spatial, float eps, int rms, int streaming);

/// Backward of kiln_norm_rows_f32 for rows [row_begin, row_end), given the forward's mean (NULL for
/// RMS) and rstd σ: with x̂ = (x − μ)σ, ĝ = dy·w[p] and means over the row,
///   dx = σ·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))          (rms: σ·(ĝ − x̂·mean(ĝ·x̂)))
/// and adds Σ dy·x̂ into dweight[p] and Σ dy into dbias[p] (double accumulators of
/// groups * group_channels entries; either may be NULL). `scratch` holds 2 * groups * group_channels
/// floats (used only when spatial == 1 and an accumulator is given). `streaming` as above, for dx.
void kiln_norm_rows_backward_f32(const float *x, const float *dy, const float *weight, const float *mean,
                                 const float *rstd, float *dx, double *dweight, double *dbias, float *scratch,
                                 int64_t row_begin, int64_t row_end, int64_t groups, int64_t group_channels,
                                 int64_t spatial, int rms, int streaming);

/// Batch-style normalization of channels [channel_begin, channel_end) of [batch, channels, spatial]:
///   y = (x − μ_c)·σ_c·w[c] + b[c]
/// training != 0: μ_c and the biased var_c over the channel's batch·spatial (M >= 2) elements,
/// σ_c = 1/√(var_c + eps); when running_mean and running_var are given, writes
///   new_running_mean[c] = (1 − momentum)·running_mean[c] + momentum·μ_c
///   new_running_var[c]  = (1 − momentum)·running_var[c] + momentum·var_c·M/(M − 1).
/// training == 0: μ_c = running_mean[c], σ_c = 1/√(running_var[c] + eps). Always writes mean[c] = μ_c,
/// rstd[c] = σ_c. weight, bias may be NULL. `streaming` as above (ignored when spatial == 1).
void kiln_norm_channels_f32(const float *x, const float *weight, const float *bias, const float *running_mean,
                            const float *running_var, float *y, float *mean, float *rstd,
                            float *new_running_mean, float *new_running_var, int64_t batch, int64_t channels,
                            int64_t spatial, int64_t channel_begin, int64_t channel_end, float eps,
                            float momentum, int training, int streaming);

/// Backward of kiln_norm_channels_f32 for channels [channel_begin, channel_end), given its mean and
/// rstd: x̂ = (x − μ_c)σ_c; training: dx = w[c]·σ_c·(dy − mean(dy) − x̂·mean(dy·x̂)) over the
/// channel; otherwise dx = dy·w[c]·σ_c. Writes dweight[c] = Σ dy·x̂ and dbias[c] = Σ dy (either may be
/// NULL). `streaming` as above, for dx.
void kiln_norm_channels_backward_f32(const float *x, const float *dy, const float *weight, const float *mean,
                                     const float *rstd, float *dx, float *dweight, float *dbias, int64_t batch,
                                     int64_t channels, int64_t spatial, int64_t channel_begin,
                                     int64_t channel_end, int training, int streaming);

/// Spatial positions handled together by the local response norm kernels (one "unit" is one batch
/// index × one tile of up to this many positions).
#define KILN_LRN_TILE 64

/// Local response normalization of units [unit_begin, unit_end) of [batch, channels, spatial], unit u
/// covering batch index u / T and positions [(u % T)·KILN_LRN_TILE, +KILN_LRN_TILE) with
/// T = ceil(spatial / KILN_LRN_TILE):
///   y = x / D^β,  D_c = k + (α/size)·Σ_{c' ∈ [c − size/2, c + (size − 1)/2] ∩ [0, C)} x_{c'}².
void kiln_lrn_f32(const float *x, float *y, int64_t batch, int64_t channels, int64_t spatial, int64_t size,
                  float alpha, float beta, float k, int64_t unit_begin, int64_t unit_end);

/// Backward of kiln_lrn_f32 for the same units:
///   dx_j = dy_j·D_j^(−β) − (2αβ/size)·x_j·Σ_{c ∈ [j − (size − 1)/2, j + size/2] ∩ [0, C)} dy_c·x_c·D_c^(−β−1).
/// `scratch` has the size of x (it holds dy_c·x_c·D_c^(−β−1)).
void kiln_lrn_backward_f32(const float *x, const float *dy, float *dx, float *scratch, int64_t batch,
                           int64_t channels, int64_t spatial, int64_t size, float alpha, float beta, float k,
                           int64_t unit_begin, int64_t unit_end);

#ifdef __cplusplus
}
#endif

#endif
