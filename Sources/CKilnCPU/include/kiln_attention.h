// kiln_attention.h — the tile math of the CPU flash attention (forward and backward).
//
// The Swift orchestration (KilnCPU/CPUBackend+Attention.swift) walks the tiles; these kernels do
// everything between the tile GEMMs on one score tile of `rows` query rows × `cols` keys (masking,
// the online softmax update, the exponentials, dropout and dS = P∘(dP − D)), and, with AVX-512, the
// tile GEMMs themselves (kiln_attention_gemm_f32, kiln_attention_transpose_f32).
//
// Scores arrive in the base-2 domain: the caller folds scale·log2(e) into the GEMM's alpha, so a
// tile holds s2_ij = log2(e)·scale·q_i·k_j, and the kernels add log2(e)·mask_ij. Probabilities are
// then p_ij = 2^(s2_ij − m2_i) with m2 the running row maximum, and the natural logsumexp is
// lse_i = ln2·m2_i + ln l_i.
#ifndef KILN_ATTENTION_H
#define KILN_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Where a score tile lies and which of its entries are hidden or dropped.
///
/// Local row r, column c is query `query0 + r` and key `key0 + c`. Key j is visible from query i
/// unless `causal` and j > i, or `window` > 0 and j <= i − window (the window implies causal).
/// `mask` (NULL for none) points at the additive mask entry of (query0, key0); entry (r, c) is
/// `mask[r * mask_row_stride + c * mask_col_stride]` (strides may be 0). With `dropout` p > 0,
/// entry (r, c) is kept when the Philox-4x32-10 uniform of flat index
/// `dropout_index + r * dropout_row_stride + c` for key `seed` is >= p, and kept entries are scaled
/// by 1/(1 − p).
typedef struct kiln_attention_tile {
    int64_t rows;
    int64_t cols;
    int64_t query0;
    int64_t key0;
    int32_t causal;
    int64_t window;
    const float *mask;
    int64_t mask_row_stride;
    int64_t mask_col_stride;
    float dropout;
    uint64_t seed;
    uint64_t dropout_index;
    int64_t dropout_row_stride;
} kiln_attention_tile;

/// One online-softmax step of the forward pass on the tile s (leading dimension lds), in place.
///
/// Adds the mask, then per row i: m' = max(m_i, max_j s_ij), p_ij = 2^(s_ij − m'),
/// l_i = 2^(m_i − m')·l_i + Σ_j p_ij (without dropout), out_i *= 2^(m_i − m') (out: value_dim
/// columns, leading dimension ldo; skipped when the factor is 1), m_i = m'. s then holds
/// p_ij·keep_ij/(1 − p), ready for out += s·V. Hidden entries give p = 0; a row with nothing
/// visible so far keeps m = −inf, l = 0. Start with m = −inf, l = 0 and out = 0.
void kiln_attention_softmax_step_f32(const kiln_attention_tile *tile, float *s, int64_t lds,
                                     float *row_max, float *row_sum, float *out, int64_t ldo,
                                     int64_t value_dim);

/// Ends the forward pass of `rows` rows: out_i /= l_i and lse_i = ln2·m_i + ln l_i; a row with
/// l_i = 0 (no visible key) gets out_i = 0 and lse_i = −inf.
void kiln_attention_finish_f32(int64_t rows, const float *row_max, const float *row_sum, float *out,
                               int64_t ldo, int64_t value_dim, float *lse);

/// The backward pass's probabilities, in place: s_ij ← p_ij = 2^(s_ij + log2(e)·mask_ij −
/// log2(e)·lse_i), 0 where hidden or where lse_i = −inf. With dropout (tile->dropout > 0) also
/// writes keep_ij/(1 − p) to `keep` and p_ij·keep_ij/(1 − p) to `dropped` (both leading
/// dimension ldk); otherwise neither is touched (may be NULL).
void kiln_attention_probabilities_f32(const kiln_attention_tile *tile, float *s, int64_t lds,
                                      const float *lse, float *keep, float *dropped, int64_t ldk);

/// dS = P∘(dP∘K − D) in place over p (leading dimension ldp): p_ij ← p_ij·(dp_ij·k_ij − d_i), with
/// k the keep factors of kiln_attention_probabilities_f32 (leading dimension ldk), or 1 when keep
/// is NULL.
void kiln_attention_score_gradient_f32(int64_t rows, int64_t cols, float *p, int64_t ldp,
                                       const float *dp, int64_t lddp, const float *keep,
                                       int64_t ldk, const float *d);

/// d_i = Σ_c a_ic·b_ic over `dim` columns for `rows` contiguous rows (the backward's
/// D = rowsum(dO∘O)), accumulated in double.
void kiln_attention_row_dot_f32(int64_t rows, int64_t dim, const float *a, const float *b,
                                float *d);

/// C = beta·C + alpha·A·B for C [m × n] and B [k × n] row-major (leading dimensions ldc, ldb) and
/// A read through strides, A(r, kk) = a[r·a_row_stride + kk·a_k_stride]: a row-major tile
/// (stride ld, 1) or a transposed one (1, ld). B is read in place, without packing, and each A
/// element is broadcast against 64-column panels of B, which suits the attention tiles, where the
/// big operand (P or dS) is A and B (V, dO, K or Q rows) is narrow. Fast in the AVX-512 variant
/// (the one to use; with AVX2 or scalar prefer OpenBLAS); beta = 0 does not read C.
void kiln_attention_gemm_f32(int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                             int64_t a_row_stride, int64_t a_k_stride, const float *b, int64_t ldb,
                             float beta, float *c, int64_t ldc);

/// dst[c·ldd + r] = src[r·lds + c] for r < rows, c < cols: the [rows × cols] block src transposed
/// (used to lay a key or value block out as [dim × keys] for kiln_attention_gemm_f32).
void kiln_attention_transpose_f32(int64_t rows, int64_t cols, const float *src, int64_t lds,
                                  float *dst, int64_t ldd);

/// y[i] = 2^x[i] by the attention kernels' vectorised exp2 (for tests): within 1 ulp for
/// x in [−126, 127] (0.95 ulp with FMA, 1.23 without; checked exhaustively), −inf gives 0, +inf
/// and x ≥ 128 give +inf, NaN stays NaN. Below 2^−126 the AVX-512 variant returns subnormals; the
/// others flush x < −126.5 to 0.
void kiln_attention_exp2_f32(const float *x, float *y, int64_t n);

/// keep[i] = 1 when the Philox uniform of flat index first + i for `seed` is >= p, else 0
/// (for tests: the dropout keep mask as KilnCore's Philox.unitFloat gives it).
void kiln_attention_dropout_keep_f32(uint64_t seed, uint64_t first, int64_t n, float p,
                                     float *keep);

#ifdef __cplusplus
}
#endif

#endif
