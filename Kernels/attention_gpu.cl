// attention_gpu.cl: flash attention forward and backward, Float32, GPU-style family (work-groups with
// local-memory tiles). The contract is KilnCore's `AttentionKernels`, the same as attention_cpu.cl:
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
// How it works: a work-group of WG work-items owns WG consecutive query rows of one (b, h), one row per
// work-item, with the row's q and output accumulator in private arrays. For each tile of TILE keys
// the work-group stages K and V rows in __local memory (coalesced loads: consecutive work-items read
// consecutive floats), then every work-item computes its TILE scores (all work-items read the same
// local address at a time: a broadcast), updates its running max and sum (online softmax, exp2 with
// scale*log2(e) folded into the scores) and accumulates p*V. The backward recomputes p from lse: the
// dQ kernel is shaped like the forward (one query row per work-item, K and V tiles staged), the dK/dV
// kernel owns one key row per work-item and stages tiles of TILE query rows (q, dO, L, D) of every
// query head of its kv group, so no two work-items write the same output. Work-items past the last
// row take part in the loads and barriers only. On PoCL this family is slow (barriers spill the
// private arrays); it is meant for GPUs, CPUs use attention_cpu.cl.
//
// Kernels (sizes int, strides long, in elements; `causal` is 1 for causal or windowed attention and
// `window` is 0 or the window; without a mask, `mask` is any valid buffer and hasMask 0; scaleLog2e =
// scale*log2(e)):
//   attention_forward_gpu_f32(const float *Q, const float *K, const float *V, const float *mask,
//                             long msB, long msH, long msI, long msJ, int hasMask, float *O, float *lse,
//                             int H, int KVH, int Sq, int Sk, int D, int Dv, float scaleLog2e,
//                             int causal, int window, float dropout, uint seedLow, uint seedHigh)
//       local (WG, 1, 1), global (ceilDiv(Sq, WG)*WG, H, B)
//   attention_backward_prep_gpu_f32(const float *O, const float *dO, const float *lse, float *rowL,
//                                   float *rowD, int rows, int Dv)
//       any local size, global (rows) with rows = B*H*Sq: rowD = dO.O per row, rowL = lse*log2(e), or
//       +inf where lse is -inf (so p = exp2(t - L) is 0 on a fully masked row)
//   attention_backward_dq_gpu_f32(Q, K, V, dO, rowL, rowD, mask, msB, msH, msI, msJ, hasMask, float *dQ,
//                                 int H, int KVH, int Sq, int Sk, int D, int Dv, float scaleLog2e,
//                                 float scale, int causal, int window, float dropout, uint seedLow,
//                                 uint seedHigh)
//       local (WG, 1, 1), global (ceilDiv(Sq, WG)*WG, H, B)
//   attention_backward_dkdv_gpu_f32(Q, K, V, dO, rowL, rowD, mask, msB, msH, msI, msJ, hasMask,
//                                   float *dK, float *dV, int H, int KVH, int Sq, int Sk, int D, int Dv,
//                                   float scaleLog2e, float scale, int causal, int window, float dropout,
//                                   uint seedLow, uint seedHigh)
//       local (WG, 1, 1), global (ceilDiv(Sk, WG)*WG, KVH, B)
// Host call sequence (B, H, Sq, Sk >= 1; one in-order queue; scratch rowL, rowD of B*H*Sq floats):
//   forward:  attention_forward_gpu_f32
//   backward: attention_backward_prep_gpu_f32, attention_backward_dq_gpu_f32,
//             attention_backward_dkdv_gpu_f32
// The Philox functions (philox4x32_10, unit_float) come from random.cl, which the host prepends.
//
// Build options: -cl-std=CL1.2 -cl-mad-enable -DHEAD_DIM=.. -DVALUE_DIM=.. -DWG=.. -DTILE=.. (never
// -cl-fast-relaxed-math or -cl-finite-math-only: masks are -inf and NaN must propagate). Local memory:
// TILE*(HEAD_DIM + VALUE_DIM + 2) floats. On PoCL (2 Zen 5 cores) at B = 1, H = 8, Sq = Sk = 4096,
// D = Dv = 64, WG = 64, TILE = 32: forward ~2.8 s, backward ~17 s (attention_cpu.cl: ~0.11 s, ~0.3 s).

#ifndef HEAD_DIM
#define HEAD_DIM 64 // D rounded up to a multiple of 16 (private q and dQ rows, local K rows)
#endif
#ifndef VALUE_DIM
#define VALUE_DIM 64 // Dv rounded up to a multiple of 16 (private output rows, local V rows)
#endif
#ifndef WG
#define WG 64 // work-items per work-group: query rows (forward, dQ) or key rows (dK/dV)
#endif
#ifndef TILE
#define TILE 32 // keys (forward, dQ) or query rows (dK/dV) staged in local memory at a time
#endif

#define DP HEAD_DIM
#define DVP VALUE_DIM
#define LOG2E 1.44269504088896341f
#define LN2 0.693147180559945309f

// From random.cl (prepended by the host).
uint4 philox4x32_10(uint4 c, uint k0, uint k1);
float unit_float(const uint bits);

// keepScale when the Philox uniform of flat index n is >= dropout, else 0.
inline float attn_keep(const ulong n, const float dropout, const float keepScale, const uint seedLow,
                       const uint seedHigh) {
    const ulong blk = n / 4;
    const uint4 w = philox4x32_10((uint4)((uint)blk, (uint)(blk >> 32), 0u, 0u), seedLow, seedHigh);
    const uint t = (uint)(n & 3);
    const uint bits = t == 0 ? w.x : t == 1 ? w.y : t == 2 ? w.z : w.w;
    return unit_float(bits) >= dropout ? keepScale : 0.0f;
}

inline bool attn_visible(const int i, const int j, const int Sk, const int causal, const int window) {
    return j < Sk && (!causal || j <= i) && (window <= 0 || j > i - window);
}

// Stages rows [j0, j0 + TILE) of a [rows, cols] matrix into tile[TILE][W], zero outside.
inline void attn_stage(__local float *tile, const int W, __global const float *restrict src, const int rows,
                       const int cols, const int j0) {
    for (int x = get_local_id(0); x < TILE * W; x += WG) {
        const int t = x / W, c = x % W;
        const int j = j0 + t;
        tile[x] = (j < rows && c < cols) ? src[(long)j * cols + c] : 0.0f;
    }
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void attention_forward_gpu_f32(__global const float *restrict Q, __global const float *restrict K,
                               __global const float *restrict V, __global const float *restrict mask,
                               const long msB, const long msH, const long msI, const long msJ, const int hasMask,
                               __global float *restrict O, __global float *restrict lse, const int H, const int KVH,
                               const int Sq, const int Sk, const int D, const int Dv, const float scaleLog2e,
                               const int causal, const int window, const float dropout, const uint seedLow,
                               const uint seedHigh) {
    __local float kTile[TILE * DP];
    __local float vTile[TILE * DVP];
    const int i = get_global_id(0);
    const int h = get_global_id(1);
    const int b = get_global_id(2);
    const int kvh = h / (H / KVH);
    const int iFirst = get_group_id(0) * WG;
    const int iLast = min(iFirst + WG, Sq) - 1;
    const bool active = i < Sq;
    const long row = (long)(b * H + h) * Sq + i;
    __global const float *kHead = K + (long)(b * KVH + kvh) * Sk * D;
    __global const float *vHead = V + (long)(b * KVH + kvh) * Sk * Dv;
    const long maskRow = b * msB + h * msH + (long)i * msI;
    const float keepScale = 1.0f / (1.0f - dropout);

    float q[DP], o[DVP];
    for (int c = 0; c < DP; ++c)
        q[c] = (active && c < D) ? Q[row * D + c] * scaleLog2e : 0.0f;
    for (int c = 0; c < DVP; ++c)
        o[c] = 0.0f;
    float m = -INFINITY, l = 0.0f;

    const int jBegin = window > 0 ? max(0, iFirst - window + 1) : 0;
    const int jEnd = causal ? min(Sk, iLast + 1) : Sk;
    for (int j0 = jBegin; j0 < jEnd; j0 += TILE) {
        barrier(CLK_LOCAL_MEM_FENCE);
        attn_stage(kTile, DP, kHead, Sk, D, j0);
        attn_stage(vTile, DVP, vHead, Sk, Dv, j0);
        barrier(CLK_LOCAL_MEM_FENCE);
        if (!active)
            continue;
        float s[TILE];
        float blockMax = -INFINITY;
        for (int t = 0; t < TILE; ++t) {
            const int j = j0 + t;
            float x = -INFINITY;
            if (attn_visible(i, j, Sk, causal, window)) {
                float dot = 0.0f;
                for (int c = 0; c < DP; ++c)
                    dot = fma(q[c], kTile[t * DP + c], dot);
                x = hasMask ? fma(mask[maskRow + (long)j * msJ], LOG2E, dot) : dot;
            }
            s[t] = x;
            blockMax = fmax(blockMax, x);
        }
        const float mNew = fmax(m, blockMax);
        const float mSafe = mNew == -INFINITY ? 0.0f : mNew;
        const float alpha = exp2(m - mSafe);
        m = mNew;
        l *= alpha;
        for (int c = 0; c < DVP; ++c)
            o[c] *= alpha;
        for (int t = 0; t < TILE; ++t) {
            float p = exp2(s[t] - mSafe);
            l += p;
            if (dropout > 0.0f && p != 0.0f)
                p *= attn_keep((ulong)row * (ulong)Sk + (ulong)(j0 + t), dropout, 1.0f, seedLow, seedHigh);
            for (int c = 0; c < DVP; ++c)
                o[c] = fma(p, vTile[t * DVP + c], o[c]);
        }
    }
    if (!active)
        return;
    const float inv = l > 0.0f ? keepScale / l : 0.0f;
    for (int c = 0; c < Dv; ++c)
        O[row * Dv + c] = o[c] * inv;
    lse[row] = l > 0.0f ? (m + log2(l)) * LN2 : -INFINITY;
}

__kernel void attention_backward_prep_gpu_f32(__global const float *restrict O, __global const float *restrict dO,
                                              __global const float *restrict lse, __global float *restrict rowL,
                                              __global float *restrict rowD, const int rows, const int Dv) {
    const int r = get_global_id(0);
    if (r >= rows)
        return;
    float dot = 0.0f;
    for (int c = 0; c < Dv; ++c)
        dot = fma(dO[(long)r * Dv + c], O[(long)r * Dv + c], dot);
    rowD[r] = dot;
    const float x = lse[r];
    rowL[r] = x == -INFINITY ? INFINITY : x * LOG2E;
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void attention_backward_dq_gpu_f32(__global const float *restrict Q, __global const float *restrict K,
                                   __global const float *restrict V, __global const float *restrict dO,
                                   __global const float *restrict rowL, __global const float *restrict rowD,
                                   __global const float *restrict mask, const long msB, const long msH,
                                   const long msI, const long msJ, const int hasMask, __global float *restrict dQ,
                                   const int H, const int KVH, const int Sq, const int Sk, const int D, const int Dv,
                                   const float scaleLog2e, const float scale, const int causal, const int window,
                                   const float dropout, const uint seedLow, const uint seedHigh) {
    __local float kTile[TILE * DP];
    __local float vTile[TILE * DVP];
    const int i = get_global_id(0);
    const int h = get_global_id(1);
    const int b = get_global_id(2);
    const int kvh = h / (H / KVH);
    const int iFirst = get_group_id(0) * WG;
    const int iLast = min(iFirst + WG, Sq) - 1;
    const bool active = i < Sq;
    const long row = (long)(b * H + h) * Sq + i;
    __global const float *kHead = K + (long)(b * KVH + kvh) * Sk * D;
    __global const float *vHead = V + (long)(b * KVH + kvh) * Sk * Dv;
    const long maskRow = b * msB + h * msH + (long)i * msI;
    const float keepScale = 1.0f / (1.0f - dropout);

    float q[DP], g[DVP], acc[DP];
    for (int c = 0; c < DP; ++c) {
        q[c] = (active && c < D) ? Q[row * D + c] * scaleLog2e : 0.0f;
        acc[c] = 0.0f;
    }
    for (int c = 0; c < DVP; ++c)
        g[c] = (active && c < Dv) ? dO[row * Dv + c] : 0.0f;
    const float L = active ? rowL[row] : INFINITY;
    const float Di = active ? rowD[row] : 0.0f;

    const int jBegin = window > 0 ? max(0, iFirst - window + 1) : 0;
    const int jEnd = causal ? min(Sk, iLast + 1) : Sk;
    for (int j0 = jBegin; j0 < jEnd; j0 += TILE) {
        barrier(CLK_LOCAL_MEM_FENCE);
        attn_stage(kTile, DP, kHead, Sk, D, j0);
        attn_stage(vTile, DVP, vHead, Sk, Dv, j0);
        barrier(CLK_LOCAL_MEM_FENCE);
        if (!active)
            continue;
        for (int t = 0; t < TILE; ++t) {
            const int j = j0 + t;
            if (!attn_visible(i, j, Sk, causal, window))
                continue;
            float dot = 0.0f;
            for (int c = 0; c < DP; ++c)
                dot = fma(q[c], kTile[t * DP + c], dot);
            const float x = hasMask ? fma(mask[maskRow + (long)j * msJ], LOG2E, dot) : dot;
            const float p = exp2(x - L);
            float dp = 0.0f;
            for (int c = 0; c < DVP; ++c)
                dp = fma(g[c], vTile[t * DVP + c], dp);
            if (dropout > 0.0f)
                dp *= attn_keep((ulong)row * (ulong)Sk + (ulong)j, dropout, keepScale, seedLow, seedHigh);
            const float ds = p * (dp - Di);
            for (int c = 0; c < DP; ++c)
                acc[c] = fma(ds, kTile[t * DP + c], acc[c]);
        }
    }
    if (!active)
        return;
    for (int c = 0; c < D; ++c)
        dQ[row * D + c] = acc[c] * scale;
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void attention_backward_dkdv_gpu_f32(__global const float *restrict Q, __global const float *restrict K,
                                     __global const float *restrict V, __global const float *restrict dO,
                                     __global const float *restrict rowL, __global const float *restrict rowD,
                                     __global const float *restrict mask, const long msB, const long msH,
                                     const long msI, const long msJ, const int hasMask, __global float *restrict dK,
                                     __global float *restrict dV, const int H, const int KVH, const int Sq,
                                     const int Sk, const int D, const int Dv, const float scaleLog2e,
                                     const float scale, const int causal, const int window, const float dropout,
                                     const uint seedLow, const uint seedHigh) {
    __local float qTile[TILE * DP];
    __local float gTile[TILE * DVP];
    __local float lTile[TILE];
    __local float dTile[TILE];
    const int j = get_global_id(0);
    const int kvh = get_global_id(1);
    const int b = get_global_id(2);
    const int group = H / KVH;
    const int jFirst = get_group_id(0) * WG;
    const int jLast = min(jFirst + WG, Sk) - 1;
    const bool active = j < Sk;
    const long keyRow = (long)(b * KVH + kvh) * Sk + j;
    const float keepScale = 1.0f / (1.0f - dropout);

    float k[DP], v[DVP], dk[DP], dv[DVP];
    for (int c = 0; c < DP; ++c) {
        k[c] = (active && c < D) ? K[keyRow * D + c] * scaleLog2e : 0.0f;
        dk[c] = 0.0f;
    }
    for (int c = 0; c < DVP; ++c) {
        v[c] = (active && c < Dv) ? V[keyRow * Dv + c] : 0.0f;
        dv[c] = 0.0f;
    }

    // Query rows that see some key of the work-group: i >= jFirst when causal, i < jLast + window.
    const int iBegin = causal ? min(jFirst, Sq) : 0;
    const int iEnd = window > 0 ? min(Sq, jLast + window) : Sq;
    for (int h = kvh * group; h < (kvh + 1) * group; ++h) {
        const long rowBase = (long)(b * H + h) * Sq;
        const long maskBase = b * msB + h * msH + (long)j * msJ;
        for (int i0 = iBegin; i0 < iEnd; i0 += TILE) {
            barrier(CLK_LOCAL_MEM_FENCE);
            attn_stage(qTile, DP, Q + rowBase * D, Sq, D, i0);
            attn_stage(gTile, DVP, dO + rowBase * Dv, Sq, Dv, i0);
            for (int t = get_local_id(0); t < TILE; t += WG) {
                lTile[t] = i0 + t < Sq ? rowL[rowBase + i0 + t] : INFINITY;
                dTile[t] = i0 + t < Sq ? rowD[rowBase + i0 + t] : 0.0f;
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            if (!active)
                continue;
            for (int t = 0; t < TILE; ++t) {
                const int i = i0 + t;
                if (i >= Sq || !attn_visible(i, j, Sk, causal, window))
                    continue;
                float dot = 0.0f;
                for (int c = 0; c < DP; ++c)
                    dot = fma(qTile[t * DP + c], k[c], dot);
                const float x = hasMask ? fma(mask[maskBase + (long)i * msI], LOG2E, dot) : dot;
                const float p = exp2(x - lTile[t]);
                float dp = 0.0f;
                for (int c = 0; c < DVP; ++c)
                    dp = fma(gTile[t * DVP + c], v[c], dp);
                const float keep = dropout > 0.0f
                    ? attn_keep((ulong)(rowBase + i) * (ulong)Sk + (ulong)j, dropout, keepScale, seedLow, seedHigh)
                    : 1.0f;
                const float ds = p * (dp * keep - dTile[t]);
                const float pk = p * keep;
                for (int c = 0; c < DVP; ++c)
                    dv[c] = fma(pk, gTile[t * DVP + c], dv[c]);
                for (int c = 0; c < DP; ++c)
                    dk[c] = fma(ds, qTile[t * DP + c], dk[c]);
            }
        }
    }
    if (!active)
        return;
    for (int c = 0; c < D; ++c)
        dK[keyRow * D + c] = dk[c] * scale;
    for (int c = 0; c < Dv; ++c)
        dV[keyRow * Dv + c] = dv[c];
}
