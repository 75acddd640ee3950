// attention_cpu.cl: flash attention forward and backward, Float32, CPU-style family (PoCL and other
// CPU OpenCL drivers). The contract is KilnCore's `AttentionKernels`; this header restates it.
//
// Layouts (contiguous, row-major): Q [B, H, Sq, D], K [B, KVH, Sk, D], V [B, KVH, Sk, Dv],
// O [B, H, Sq, Dv], lse [B, H, Sq]; query head h reads key/value head h / (H / KVH).
// For query row i and key j:  s_ij = scale * q_i.k_j + mask_ij, where the mask is the optional additive
// mask (element (b, h, i, j) at mask[b*msB + h*msH + i*msI + j*msJ]; a stride is 0 where broadcast)
// plus -inf where j is not visible: causal hides j > i (top-left aligned), a window w > 0 also hides
// j <= i - w (and implies causal). p_ij = exp(s_ij - lse_i), lse_i = log sum_j exp(s_ij);
// o_i = sum_j p_ij * keep_ij / (1 - dropout) * v_j, keep_ij = 1 when unit_float(word n % 4 of Philox
// block n / 4) >= dropout, n = ((b*H + h)*Sq + i)*Sk + j, seed (seedLow, seedHigh). A row with no
// visible key gets o_i = 0 and lse_i = -inf. Backward: D_i = dO_i.O_i,
// dP_ij = keep_ij/(1 - dropout) dO_i.v_j, dS_ij = p_ij (dP_ij - D_i), dQ_i = scale sum_j dS_ij k_j,
// dK_j = scale sum_i dS_ij q_i, dV_j = sum_i p_ij keep_ij/(1 - dropout) dO_i, the sums for dK and dV
// running over the query heads that share key/value head.
//
// How it runs fast on a CPU: every operand is first copied into zero-padded panels (D and Dv padded to
// DP = HEAD_DIM and DVP = VALUE_DIM, multiples of 16; rows padded so no tile reads past a panel). The
// forward kernel's work-item (local size 1) owns QR query rows of one (b, h) and streams blocks of KB
// keys: an 8 x 32 register tile of float16 accumulators computes scores from K^T panels (16 keys are
// one vload16), the scores are scaled by scale*log2(e) so the softmax runs on exp2 over float16, the
// running max and sum are updated and the output rows (private float16 arrays) rescaled, then an
// 8 x 32 tile accumulates P*V. The output is divided by the sum once, at the end. Blocks wholly
// visible skip the per-element masking; causal and window runs skip invisible blocks. The backward
// recomputes P from lse: one kernel parallel over blocks of KC keys accumulates dK and dV (looping over
// every query row of every query head of its kv group, so no two work-items write the same output),
// one parallel over blocks of QR query rows accumulates dQ.
//
// Scores live in the log2 domain: t_ij = (q_i.k_j)*scaleLog2e + mask_ij*log2(e) (scaleLog2e =
// scale*log2(e)), p_ij = exp2(t_ij - m) with the running max m; the forward stores
// lse_i = (m_i + log2(l_i)) * ln(2). The backward's prep kernel stores L_i = lse_i*log2(e), or +inf for
// rows that are fully masked or padding, so p_ij = exp2(t_ij - L_i) is 0 there.
//
// Panels (Sqp = Sq rounded up to a multiple of QC, Skp = Sk rounded up to a multiple of KB; every
// padding entry is 0):
//   qp  [B*H, Sqp, DP]         rows of Q          dop [B*H, Sqp, DVP]   rows of dO
//   kp  [B*KVH, Skp, DP]       rows of K          vp  [B*KVH, Skp, DVP] rows of V
//   kt  [B*KVH, Skp/KB, DP, KB] K^T in blocks of KB keys: element (j, d) at ((j/KB)*DP + d)*KB + j%KB
//   vt  [B*KVH, Skp/KB, DVP, KB] V^T likewise
//   rowL, rowD [B*H, Sqp]      L_i and D_i of the backward (0 / +inf on padding rows)
//
// Host call sequence (B, H, Sq, Sk >= 1; local size (1, 1, 1) everywhere; one in-order queue, no
// events; ceilDiv(x, y) = (x + y - 1) / y):
//   forward:  1. attention_pack_rows_f32(Q -> qp)      2. attention_pack_transposed_f32(K -> kt)
//             3. attention_pack_rows_f32(V -> vp)      4. attention_forward_f32
//   backward: 1. attention_pack_rows_f32(Q -> qp)      2. attention_pack_transposed_f32(K -> kt)
//             3. attention_pack_rows_f32(K -> kp)      4. attention_pack_transposed_f32(V -> vt)
//             5. attention_backward_prep_f32           6. attention_backward_dq_f32
//             7. attention_backward_dkdv_f32
//   Empty sizes run none of these: B*H*Sq == 0 has nothing to write; Sk == 0 gives O = 0 and
//   lse = -inf, and zero gradients (the host fills them).
//
// Kernels (sizes int, strides long, in elements), with their global sizes:
//   attention_pack_rows_f32(const float *src, int rows, int cols, float *dst, int rowsPadded,
//                           int colsPadded)
//       global (ceilDiv(rowsPadded, PACK_ROWS), matrices): dst[m][r][c] = src[m][r][c] for r < rows,
//       c < cols, else 0 (src [m, rows, cols], dst [m, rowsPadded, colsPadded])
//   attention_pack_transposed_f32(const float *src, int rows, int cols, float *dst, int rowsPadded,
//                                 int colsPadded)
//       global (rowsPadded / KB, matrices): dst[m][r/KB][c][r%KB] = src[m][r][c], 0 outside
//   attention_forward_f32(qp, kt, vp, const float *mask, long msB, long msH, long msI, long msJ,
//                         int hasMask, float *O, float *lse, int H, int KVH, int Sq, int Sk, int Dv,
//                         float scaleLog2e, int causal, int window, float dropout, uint seedLow,
//                         uint seedHigh)
//       global (Sqp / QR, H, B)
//   attention_backward_prep_f32(const float *O, const float *dO, const float *lse, float *dop,
//                               float *rowL, float *rowD, int Sq, int Sqp, int Dv)
//       global (ceilDiv(Sqp, PACK_ROWS), B*H): packs dO, D_i = dO_i.O_i, L_i
//   attention_backward_dq_f32(qp, kt, kp, vt, dop, rowL, rowD, mask, msB, msH, msI, msJ, hasMask,
//                             float *dQ, int H, int KVH, int Sq, int Sk, int D, float scaleLog2e,
//                             float scale, int causal, int window, float dropout, uint seedLow,
//                             uint seedHigh)
//       global (Sqp / QR, H, B)
//   attention_backward_dkdv_f32(qp, kt, vt, dop, rowL, rowD, mask, msB, msH, msI, msJ, hasMask,
//                               float *dK, float *dV, int H, int KVH, int Sq, int Sk, int D, int Dv,
//                               float scaleLog2e, float scale, int causal, int window, float dropout,
//                               uint seedLow, uint seedHigh)
//       global (ceilDiv(Sk, KC), KVH, B)
// `causal` is 1 for causal or windowed attention; `window` is 0 or the window. Without a mask, `mask`
// must still be a valid buffer (any) and hasMask 0. The Philox functions (philox4x32_10, unit_float)
// come from random.cl, which the host prepends to this file.
//
// Build options: -cl-std=CL1.2 -cl-mad-enable -DHEAD_DIM=DP -DVALUE_DIM=DVP and the tunables below
// (the host computes Sqp, Skp and the global sizes from the same values; never -cl-fast-relaxed-math
// or -cl-finite-math-only: masks are -inf and NaN must propagate). Measured on PoCL 3.1 (2 Zen 5
// cores, AVX-512, POCL_AFFINITY=1) at B = 1, H = 8, Sq = Sk = 4096, D = Dv = 64 with the defaults
// below: forward ~108 ms (~320 GFLOP/s), causal ~57 ms; backward ~295 ms (dQ ~135, dK/dV ~165),
// causal ~155 ms. QR = 8, KB = 64 ran the forward in ~130 ms.

#ifndef HEAD_DIM
#define HEAD_DIM 64 // DP: the head dimension D rounded up to a multiple of 16
#endif
#ifndef VALUE_DIM
#define VALUE_DIM 64 // DVP: the value dimension Dv rounded up to a multiple of 16
#endif
#ifndef QR
#define QR 16 // query rows per work-item of the forward and dQ kernels (a multiple of 8)
#endif
#ifndef KB
#define KB 128 // keys per block of the forward and dQ kernels, and the width of the kt, vt panels
#endif
#ifndef KC
#define KC 32 // keys per work-item of the dK/dV kernel (a multiple of 16 dividing KB)
#endif
#ifndef QC
#define QC 32 // query rows per step of the dK/dV kernel (a multiple of QR); Sqp is a multiple of it
#endif
#ifndef PACK_ROWS
#define PACK_ROWS 16 // rows per work-item of attention_pack_rows_f32 and attention_backward_prep_f32
#endif

#define DP HEAD_DIM
#define DVP VALUE_DIM
#define LOG2E 1.44269504088896341f
#define LN2 0.693147180559945309f

#if (DP % 16) != 0 || (DVP % 16) != 0
#error "HEAD_DIM and VALUE_DIM must be multiples of 16"
#endif
#if (QR % 8) != 0 || (KB % 16) != 0 || (KC % 16) != 0 || (KB % KC) != 0 || (QC % QR) != 0
#error "QR must be a multiple of 8, KB and KC multiples of 16 with KC dividing KB, QC a multiple of QR"
#endif

// From random.cl (prepended by the host).
uint4 philox4x32_10(uint4 c, uint k0, uint k1);
float unit_float(const uint bits);

// ---------------------------------------------------------------------------------------------------
// Register tiles

// out[r*ldo + c] = mul * sum_{d < depth} a[r*lda + d] * b[d*ldb + c] for r < 8, c < 16*nv (nv 1 or 2):
// a product with the right operand's columns contiguous (a K^T or V^T panel).
inline void attn_tile_abt(__global const float *restrict a, const int lda, __global const float *restrict b,
                          const int ldb, const int depth, const int nv, const float mul, float *out,
                          const int ldo) {
    float16 acc[16];
#pragma unroll
    for (int t = 0; t < 16; ++t)
        acc[t] = (float16)0.0f;
#pragma unroll 4
    for (int d = 0; d < depth; ++d) {
        const float16 b0 = vload16(0, b + d * ldb);
        const float16 b1 = nv > 1 ? vload16(1, b + d * ldb) : (float16)0.0f;
#pragma unroll
        for (int r = 0; r < 8; ++r) {
            const float16 ar = (float16)a[r * lda + d];
            acc[2 * r] = fma(ar, b0, acc[2 * r]);
            if (nv > 1)
                acc[2 * r + 1] = fma(ar, b1, acc[2 * r + 1]);
        }
    }
#pragma unroll
    for (int r = 0; r < 8; ++r) {
        vstore16(mul * acc[2 * r], 0, out + r * ldo);
        if (nv > 1)
            vstore16(mul * acc[2 * r + 1], 1, out + r * ldo);
    }
}

// acc[r*ldacc + v] += sum_{k < count} a[r*ars + k*aks] * b[k*ldb + 16*v ...] for r < 8, v < nv:
// accumulates an 8 x 16*nv tile held in private memory.
inline void attn_tile_acc(const float *a, const int ars, const int aks, __global const float *restrict b,
                          const int ldb, const int count, const int nv, float16 *accMem, const int ldacc) {
    float16 acc[16];
#pragma unroll
    for (int r = 0; r < 8; ++r) {
        acc[2 * r] = accMem[r * ldacc];
        acc[2 * r + 1] = nv > 1 ? accMem[r * ldacc + 1] : (float16)0.0f;
    }
#pragma unroll 4
    for (int k = 0; k < count; ++k) {
        const float16 b0 = vload16(0, b + k * ldb);
        const float16 b1 = nv > 1 ? vload16(1, b + k * ldb) : (float16)0.0f;
#pragma unroll
        for (int r = 0; r < 8; ++r) {
            const float16 ar = (float16)a[r * ars + k * aks];
            acc[2 * r] = fma(ar, b0, acc[2 * r]);
            if (nv > 1)
                acc[2 * r + 1] = fma(ar, b1, acc[2 * r + 1]);
        }
    }
#pragma unroll
    for (int r = 0; r < 8; ++r) {
        accMem[r * ldacc] = acc[2 * r];
        if (nv > 1)
            accMem[r * ldacc + 1] = acc[2 * r + 1];
    }
}

// ---------------------------------------------------------------------------------------------------
// Masking and dropout

// Whether a rows x cols block of scores starting at (i0, j0) needs per-element masking.
inline bool attn_block_needs_mask(const int i0, const int rows, const int j0, const int cols, const int Sq,
                                  const int Sk, const int hasMask, const int causal, const int window) {
    const int iLast = min(i0 + rows, Sq) - 1;
    return hasMask || j0 + cols > Sk || i0 + rows > Sq || (causal && j0 + cols - 1 > i0)
        || (window > 0 && j0 <= iLast - window);
}

// Applies visibility (-inf) and the additive mask (times log2 e) to t[r*ldt + c], rows i0 + r < i0 + rows,
// keys j0 + c < j0 + cols. Rows at or past Sq become -inf too. Row i sees the block columns [lo, hi).
inline void attn_mask_block(float *t, const int ldt, const int i0, const int rows, const int j0, const int cols,
                            const int Sq, const int Sk, const int causal, const int window,
                            __global const float *restrict mask, const long maskBase, const long msI,
                            const long msJ, const int hasMask) {
    for (int r = 0; r < rows; ++r) {
        const int i = i0 + r;
        const int lo = window > 0 ? clamp(i - window + 1 - j0, 0, cols) : 0;
        const int hi = i >= Sq ? lo : clamp(min(Sk, causal ? i + 1 : Sk) - j0, lo, cols);
        float *tr = t + r * ldt;
        for (int c = 0; c < cols; ++c)
            tr[c] = c >= lo && c < hi ? tr[c] : -INFINITY;
        if (hasMask) {
            __global const float *m = mask + maskBase + i * msI + j0 * msJ;
            for (int c = lo; c < hi; ++c)
                tr[c] = fma(m[c * msJ], LOG2E, tr[c]);
        }
    }
}

// keep[c] = keepScale or 0 for keys j0 + c, c < count, of the row whose flat index of key 0 is rowBase.
inline void attn_keep_row(float *keep, const int count, const ulong rowBase, const int j0, const float dropout,
                          const float keepScale, const uint seedLow, const uint seedHigh) {
    if (count <= 0)
        return;
    const ulong n0 = rowBase + (ulong)j0;
    const ulong n1 = n0 + (ulong)count;
    for (ulong blk = n0 / 4; blk * 4 < n1; ++blk) {
        const uint4 w = philox4x32_10((uint4)((uint)blk, (uint)(blk >> 32), 0u, 0u), seedLow, seedHigh);
        const float u[4] = {unit_float(w.x), unit_float(w.y), unit_float(w.z), unit_float(w.w)};
#pragma unroll
        for (int t = 0; t < 4; ++t) {
            const ulong n = blk * 4 + (ulong)t;
            if (n >= n0 && n < n1)
                keep[n - n0] = u[t] >= dropout ? keepScale : 0.0f;
        }
    }
}

// The first key block (a multiple of KB) and the end of the keys visible from rows [i0, i1).
inline int2 attn_key_range(const int i0, const int i1, const int Sk, const int causal, const int window) {
    const int end = causal ? min(Sk, i1) : Sk;
    const int begin = window > 0 ? max(0, i0 - window + 1) / KB * KB : 0;
    return (int2)(begin, end);
}

// ---------------------------------------------------------------------------------------------------
// Packing

__kernel void attention_pack_rows_f32(__global const float *restrict src, const int rows, const int cols,
                                      __global float *restrict dst, const int rowsPadded, const int colsPadded) {
    const int r0 = get_global_id(0) * PACK_ROWS;
    const long m = get_global_id(1);
    __global const float *s = src + m * rows * cols;
    __global float *d = dst + m * rowsPadded * colsPadded;
    for (int r = r0; r < min(r0 + PACK_ROWS, rowsPadded); ++r) {
        if (r < rows && cols == colsPadded) {
            for (int c = 0; c < cols; c += 16)
                vstore16(vload16(0, s + (long)r * cols + c), 0, d + (long)r * colsPadded + c);
        } else {
            for (int c = 0; c < colsPadded; ++c)
                d[(long)r * colsPadded + c] = (r < rows && c < cols) ? s[(long)r * cols + c] : 0.0f;
        }
    }
}

__kernel void attention_pack_transposed_f32(__global const float *restrict src, const int rows, const int cols,
                                            __global float *restrict dst, const int rowsPadded,
                                            const int colsPadded) {
    const int r0 = get_global_id(0) * KB;
    const long m = get_global_id(1);
    __global const float *s = src + m * rows * cols;
    __global float *d = dst + m * rowsPadded * colsPadded + (long)r0 * colsPadded;
    for (int c = 0; c < colsPadded; ++c)
        for (int t = 0; t < KB; ++t) {
            const int r = r0 + t;
            d[c * KB + t] = (r < rows && c < cols) ? s[(long)r * cols + c] : 0.0f;
        }
}

// ---------------------------------------------------------------------------------------------------
// Forward

__kernel void attention_forward_f32(__global const float *restrict qp, __global const float *restrict kt,
                                    __global const float *restrict vp, __global const float *restrict mask,
                                    const long msB, const long msH, const long msI, const long msJ,
                                    const int hasMask, __global float *restrict out, __global float *restrict lse,
                                    const int H, const int KVH, const int Sq, const int Sk, const int Dv,
                                    const float scaleLog2e, const int causal, const int window,
                                    const float dropout, const uint seedLow, const uint seedHigh) {
    const int i0 = get_global_id(0) * QR;
    const int h = get_global_id(1);
    const int b = get_global_id(2);
    const int kvh = h / (H / KVH);
    const int Sqp = (Sq + QC - 1) / QC * QC;
    const int Skp = (Sk + KB - 1) / KB * KB;
    __global const float *q = qp + ((long)(b * H + h) * Sqp + i0) * DP;
    __global const float *ktHead = kt + (long)(b * KVH + kvh) * Skp * DP;
    __global const float *vpHead = vp + (long)(b * KVH + kvh) * Skp * DVP;
    const long maskBase = b * msB + h * msH;
    const float keepScale = 1.0f / (1.0f - dropout);

    float m[QR], l[QR];
    float16 o[QR * (DVP / 16)];
    float t[QR * KB];
    float keep[KB];
#pragma unroll
    for (int r = 0; r < QR; ++r) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    for (int x = 0; x < QR * (DVP / 16); ++x)
        o[x] = (float16)0.0f;

    const int2 range = attn_key_range(i0, min(i0 + QR, Sq), Sk, causal, window);
    for (int j0 = range.x; j0 < range.y; j0 += KB) {
        // Scores t = (q.k) * scale * log2 e, 8 rows x 32 keys at a time.
        __global const float *kBlock = ktHead + (long)j0 * DP;
        for (int r0 = 0; r0 < QR; r0 += 8)
#pragma unroll
            for (int c0 = 0; c0 < KB; c0 += 32)
                attn_tile_abt(q + r0 * DP, DP, kBlock + c0, KB, DP, KB - c0 >= 32 ? 2 : 1, scaleLog2e,
                              t + r0 * KB + c0, KB);
        if (attn_block_needs_mask(i0, QR, j0, KB, Sq, Sk, hasMask, causal, window))
            attn_mask_block(t, KB, i0, QR, j0, KB, Sq, Sk, causal, window, mask, maskBase, msI, msJ, hasMask);

        // Online softmax: new running max, p = exp2(t - max), rescale of the sum and the output rows.
        for (int r = 0; r < QR; ++r) {
            float *tr = t + r * KB;
            float16 mx = vload16(0, tr);
#pragma unroll
            for (int v = 1; v < KB / 16; ++v)
                mx = fmax(mx, vload16(v, tr));
            const float8 m8 = fmax(mx.lo, mx.hi);
            const float4 m4 = fmax(m8.lo, m8.hi);
            const float2 m2 = fmax(m4.lo, m4.hi);
            const float mNew = fmax(m[r], fmax(m2.x, m2.y));
            const float mSafe = mNew == -INFINITY ? 0.0f : mNew;
            const float alpha = exp2(m[r] - mSafe);
            float16 sum = (float16)0.0f;
#pragma unroll
            for (int v = 0; v < KB / 16; ++v) {
                const float16 p = exp2(vload16(v, tr) - mSafe);
                sum += p;
                vstore16(p, v, tr);
            }
            const float8 s8 = sum.lo + sum.hi;
            const float4 s4 = s8.lo + s8.hi;
            const float2 s2 = s4.lo + s4.hi;
            l[r] = l[r] * alpha + (s2.x + s2.y);
            m[r] = mNew;
            if (alpha != 1.0f)
                for (int v = 0; v < DVP / 16; ++v)
                    o[r * (DVP / 16) + v] *= alpha;
            if (dropout > 0.0f && i0 + r < Sq) {
                const int count = min(KB, Sk - j0);
                attn_keep_row(keep, count, ((ulong)(b * H + h) * Sq + (ulong)(i0 + r)) * (ulong)Sk, j0, dropout,
                              1.0f, seedLow, seedHigh);
                for (int c = 0; c < count; ++c)
                    tr[c] *= keep[c];
            }
        }

        // o += p * V, 8 rows x 32 value columns at a time.
        __global const float *vBlock = vpHead + (long)j0 * DVP;
        for (int r0 = 0; r0 < QR; r0 += 8)
#pragma unroll
            for (int c0 = 0; c0 < DVP; c0 += 32)
                attn_tile_acc(t + r0 * KB, KB, 1, vBlock + c0, DVP, KB, DVP - c0 >= 32 ? 2 : 1,
                              o + r0 * (DVP / 16) + c0 / 16, DVP / 16);
    }

    // o / l (times 1/(1 - dropout)), lse = (m + log2 l) ln 2; a row with l == 0 saw no key.
    for (int r = 0; r < QR && i0 + r < Sq; ++r) {
        const long row = (long)(b * H + h) * Sq + i0 + r;
        const float inv = l[r] > 0.0f ? keepScale / l[r] : 0.0f;
        lse[row] = l[r] > 0.0f ? (m[r] + log2(l[r])) * LN2 : -INFINITY;
        __global float *dst = out + row * Dv;
        if (Dv == DVP) {
            for (int v = 0; v < DVP / 16; ++v)
                vstore16(o[r * (DVP / 16) + v] * inv, v, dst);
        } else {
            float tmp[DVP];
            for (int v = 0; v < DVP / 16; ++v)
                vstore16(o[r * (DVP / 16) + v] * inv, v, tmp);
            for (int c = 0; c < Dv; ++c)
                dst[c] = tmp[c];
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Backward

__kernel void attention_backward_prep_f32(__global const float *restrict O, __global const float *restrict dO,
                                          __global const float *restrict lse, __global float *restrict dop,
                                          __global float *restrict rowL, __global float *restrict rowD,
                                          const int Sq, const int Sqp, const int Dv) {
    const int r0 = get_global_id(0) * PACK_ROWS;
    const long bh = get_global_id(1);
    for (int i = r0; i < min(r0 + PACK_ROWS, Sqp); ++i) {
        __global float *d = dop + (bh * Sqp + i) * DVP;
        if (i < Sq) {
            const long row = bh * Sq + i;
            float dot = 0.0f;
            for (int c = 0; c < Dv; ++c) {
                const float g = dO[row * Dv + c];
                dot = fma(g, O[row * Dv + c], dot);
                d[c] = g;
            }
            for (int c = Dv; c < DVP; ++c)
                d[c] = 0.0f;
            const float x = lse[row];
            rowL[bh * Sqp + i] = x == -INFINITY ? INFINITY : x * LOG2E;
            rowD[bh * Sqp + i] = dot;
        } else {
            for (int c = 0; c < DVP; ++c)
                d[c] = 0.0f;
            rowL[bh * Sqp + i] = INFINITY;
            rowD[bh * Sqp + i] = 0.0f;
        }
    }
}

// Turns a rows x cols block of scores t (log2 domain) and dP into p and dS:
// p = exp2(t - L_i), dS = p * (dP * keep - D_i) into dp; with dropout p becomes p * keep.
inline void attn_backward_block(float *t, float *dp, const int ld, const int i0, const int rows, const int j0,
                                const int cols, __global const float *restrict rowL,
                                __global const float *restrict rowD, const long rowBase, const int Sq,
                                const int Sk, const long flatBase, const float dropout, const float keepScale,
                                const uint seedLow, const uint seedHigh, float *keep) {
    for (int r = 0; r < rows; ++r) {
        const float L = rowL[rowBase + i0 + r];
        const float Di = rowD[rowBase + i0 + r];
        float *tr = t + r * ld;
        float *dr = dp + r * ld;
        if (dropout > 0.0f && i0 + r < Sq) {
            const int count = min(cols, Sk - j0);
            attn_keep_row(keep, count, (ulong)(flatBase + (long)(i0 + r) * Sk), j0, dropout, keepScale,
                          seedLow, seedHigh);
            for (int c = 0; c < cols; ++c) {
                const float p = exp2(tr[c] - L);
                const float k = c < count ? keep[c] : 0.0f;
                dr[c] = p * (dr[c] * k - Di);
                tr[c] = p * k;
            }
        } else {
#pragma unroll
            for (int v = 0; v < cols / 16; ++v) {
                const float16 p = exp2(vload16(v, tr) - L);
                vstore16(p * (vload16(v, dr) - Di), v, dr);
                vstore16(p, v, tr);
            }
        }
    }
}

__kernel void attention_backward_dq_f32(__global const float *restrict qp, __global const float *restrict kt,
                                        __global const float *restrict kp, __global const float *restrict vt,
                                        __global const float *restrict dop, __global const float *restrict rowL,
                                        __global const float *restrict rowD, __global const float *restrict mask,
                                        const long msB, const long msH, const long msI, const long msJ,
                                        const int hasMask, __global float *restrict dQ, const int H, const int KVH,
                                        const int Sq, const int Sk, const int D, const float scaleLog2e,
                                        const float scale, const int causal, const int window, const float dropout,
                                        const uint seedLow, const uint seedHigh) {
    const int i0 = get_global_id(0) * QR;
    const int h = get_global_id(1);
    const int b = get_global_id(2);
    const int kvh = h / (H / KVH);
    const int Sqp = (Sq + QC - 1) / QC * QC;
    const int Skp = (Sk + KB - 1) / KB * KB;
    const long rowBase = (long)(b * H + h) * Sqp;
    __global const float *q = qp + (rowBase + i0) * DP;
    __global const float *g = dop + (rowBase + i0) * DVP;
    __global const float *ktHead = kt + (long)(b * KVH + kvh) * Skp * DP;
    __global const float *kpHead = kp + (long)(b * KVH + kvh) * Skp * DP;
    __global const float *vtHead = vt + (long)(b * KVH + kvh) * Skp * DVP;
    const long maskBase = b * msB + h * msH;
    const long flatBase = (long)(b * H + h) * Sq * Sk;
    const float keepScale = 1.0f / (1.0f - dropout);

    float16 acc[QR * (DP / 16)];
    float t[QR * KB], dp[QR * KB], keep[KB];
    for (int x = 0; x < QR * (DP / 16); ++x)
        acc[x] = (float16)0.0f;

    const int2 range = attn_key_range(i0, min(i0 + QR, Sq), Sk, causal, window);
    for (int j0 = range.x; j0 < range.y; j0 += KB) {
        __global const float *kBlock = ktHead + (long)j0 * DP;
        __global const float *vBlock = vtHead + (long)j0 * DVP;
        for (int r0 = 0; r0 < QR; r0 += 8)
#pragma unroll
            for (int c0 = 0; c0 < KB; c0 += 32) {
                const int nv = KB - c0 >= 32 ? 2 : 1;
                attn_tile_abt(q + r0 * DP, DP, kBlock + c0, KB, DP, nv, scaleLog2e, t + r0 * KB + c0, KB);
                attn_tile_abt(g + r0 * DVP, DVP, vBlock + c0, KB, DVP, nv, 1.0f, dp + r0 * KB + c0, KB);
            }
        if (attn_block_needs_mask(i0, QR, j0, KB, Sq, Sk, hasMask, causal, window))
            attn_mask_block(t, KB, i0, QR, j0, KB, Sq, Sk, causal, window, mask, maskBase, msI, msJ, hasMask);
        attn_backward_block(t, dp, KB, i0, QR, j0, KB, rowL, rowD, rowBase, Sq, Sk, flatBase, dropout, keepScale,
                            seedLow, seedHigh, keep);
        // dQ += dS * K, 8 rows x 32 columns at a time.
        __global const float *kRows = kpHead + (long)j0 * DP;
        for (int r0 = 0; r0 < QR; r0 += 8)
#pragma unroll
            for (int c0 = 0; c0 < DP; c0 += 32)
                attn_tile_acc(dp + r0 * KB, KB, 1, kRows + c0, DP, KB, DP - c0 >= 32 ? 2 : 1,
                              acc + r0 * (DP / 16) + c0 / 16, DP / 16);
    }

    for (int r = 0; r < QR && i0 + r < Sq; ++r) {
        __global float *dst = dQ + ((long)(b * H + h) * Sq + i0 + r) * D;
        if (D == DP) {
            for (int v = 0; v < DP / 16; ++v)
                vstore16(acc[r * (DP / 16) + v] * scale, v, dst);
        } else {
            float tmp[DP];
            for (int v = 0; v < DP / 16; ++v)
                vstore16(acc[r * (DP / 16) + v] * scale, v, tmp);
            for (int c = 0; c < D; ++c)
                dst[c] = tmp[c];
        }
    }
}

__kernel void attention_backward_dkdv_f32(__global const float *restrict qp, __global const float *restrict kt,
                                          __global const float *restrict vt, __global const float *restrict dop,
                                          __global const float *restrict rowL, __global const float *restrict rowD,
                                          __global const float *restrict mask, const long msB, const long msH,
                                          const long msI, const long msJ, const int hasMask,
                                          __global float *restrict dK, __global float *restrict dV, const int H,
                                          const int KVH, const int Sq, const int Sk, const int D, const int Dv,
                                          const float scaleLog2e, const float scale, const int causal,
                                          const int window, const float dropout, const uint seedLow,
                                          const uint seedHigh) {
    const int j0 = get_global_id(0) * KC;
    const int kvh = get_global_id(1);
    const int b = get_global_id(2);
    if (j0 >= Sk)
        return;
    const int group = H / KVH;
    const int Sqp = (Sq + QC - 1) / QC * QC;
    const int Skp = (Sk + KB - 1) / KB * KB;
    // Key j of the block sits in panel column (j0 % KB) + (j - j0) of panel j0 / KB.
    const long panel = (long)(j0 / KB) * KB;
    const int col = j0 % KB;
    __global const float *kBlock = kt + (long)(b * KVH + kvh) * Skp * DP + panel * DP + col;
    __global const float *vBlock = vt + (long)(b * KVH + kvh) * Skp * DVP + panel * DVP + col;
    const float keepScale = 1.0f / (1.0f - dropout);

    float16 dk[KC * (DP / 16)], dv[KC * (DVP / 16)];
    float t[QC * KC], dp[QC * KC], keep[KC];
    for (int x = 0; x < KC * (DP / 16); ++x)
        dk[x] = (float16)0.0f;
    for (int x = 0; x < KC * (DVP / 16); ++x)
        dv[x] = (float16)0.0f;

    // Query rows that see some key of [j0, j0 + KC): i >= j0 when causal, i < jLast + window.
    const int jLast = min(j0 + KC, Sk) - 1;
    const int iBegin = causal ? min(j0, Sq) / QR * QR : 0;
    const int iEnd = window > 0 ? min(Sq, jLast + window) : Sq;
    for (int h = kvh * group; h < (kvh + 1) * group; ++h) {
        const long rowBase = (long)(b * H + h) * Sqp;
        const long maskBase = b * msB + h * msH;
        const long flatBase = (long)(b * H + h) * Sq * Sk;
        for (int i0 = iBegin; i0 < iEnd; i0 += QC) {
            const int rows = min(QC, (iEnd - i0 + QR - 1) / QR * QR);
            __global const float *q = qp + (rowBase + i0) * DP;
            __global const float *g = dop + (rowBase + i0) * DVP;
            for (int r0 = 0; r0 < rows; r0 += 8)
#pragma unroll
                for (int c0 = 0; c0 < KC; c0 += 32) {
                    const int nv = KC - c0 >= 32 ? 2 : 1;
                    attn_tile_abt(q + r0 * DP, DP, kBlock + c0, KB, DP, nv, scaleLog2e, t + r0 * KC + c0, KC);
                    attn_tile_abt(g + r0 * DVP, DVP, vBlock + c0, KB, DVP, nv, 1.0f, dp + r0 * KC + c0, KC);
                }
            if (attn_block_needs_mask(i0, rows, j0, KC, Sq, Sk, hasMask, causal, window))
                attn_mask_block(t, KC, i0, rows, j0, KC, Sq, Sk, causal, window, mask, maskBase, msI, msJ,
                                hasMask);
            attn_backward_block(t, dp, KC, i0, rows, j0, KC, rowL, rowD, rowBase, Sq, Sk, flatBase, dropout,
                                keepScale, seedLow, seedHigh, keep);
            // dV += P^T dO and dK += dS^T Q, 8 keys x 32 columns at a time.
            for (int k0 = 0; k0 < KC; k0 += 8) {
#pragma unroll
                for (int c0 = 0; c0 < DVP; c0 += 32)
                    attn_tile_acc(t + k0, 1, KC, g + c0, DVP, rows, DVP - c0 >= 32 ? 2 : 1,
                                  dv + k0 * (DVP / 16) + c0 / 16, DVP / 16);
#pragma unroll
                for (int c0 = 0; c0 < DP; c0 += 32)
                    attn_tile_acc(dp + k0, 1, KC, q + c0, DP, rows, DP - c0 >= 32 ? 2 : 1,
                                  dk + k0 * (DP / 16) + c0 / 16, DP / 16);
            }
        }
    }

    for (int r = 0; r < KC && j0 + r < Sk; ++r) {
        const long row = (long)(b * KVH + kvh) * Sk + j0 + r;
        float tk[DP], tv[DVP];
        for (int v = 0; v < DP / 16; ++v)
            vstore16(dk[r * (DP / 16) + v] * scale, v, tk);
        for (int v = 0; v < DVP / 16; ++v)
            vstore16(dv[r * (DVP / 16) + v], v, tv);
        for (int c = 0; c < D; ++c)
            dK[row * D + c] = tk[c];
        for (int c = 0; c < Dv; ++c)
            dV[row * Dv + c] = tv[c];
    }
}
