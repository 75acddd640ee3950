// gemm_cpu.cl: batched single-precision GEMM, CPU-style family (PoCL and other CPU OpenCL drivers).
//
// Computes, for every batch b in [0, batch):
//     C_b = alpha * op(A_b) * op(B_b) + beta * C_b
// with op(A_b) of shape [M, K], op(B_b) of shape [K, N] and C_b of shape [M, N], all row-major Float32.
//   A_b starts at A + aOffset + b*strideA. transA == 0: A_b is stored [M, K] with row stride lda
//       (op(A)[i][k] = A_b[i*lda + k]); transA != 0: A_b is stored [K, M] with row stride lda
//       (op(A)[i][k] = A_b[k*lda + i]).
//   B_b starts at B + bOffset + b*strideB. transB == 0: stored [K, N], op(B)[k][j] = B_b[k*ldb + j];
//       transB != 0: stored [N, K], op(B)[k][j] = B_b[j*ldb + k].
//   C_b starts at C + cOffset + b*strideC and is stored [M, N] with row stride ldc.
// strideA or strideB may be 0 (the same A or B for every batch). Offsets and strides are in elements.
// Accumulates in Float32 with fused multiply-adds, k in increasing order, then C = alpha*sum (beta == 0)
// or fma(beta, C, alpha*sum): the same operations as gemm_gpu.cl, so the families agree bit for bit on
// PoCL. beta == 0 never reads C (NaN in C does not leak out). Only the M x N entries of each C_b are
// written, nothing between rows, between batches or past the end.
//
// How it runs fast on a CPU: op(A) and op(B) are first copied into zero-padded panels; then each
// work-item (local size 1) computes one MR x NR tile of C over the whole of K in MR*NR/16 private
// float16 accumulators (PoCL turns a float16 into one AVX-512 register, MR*NR/16 + NR/16 + 1 of the 32
// are live), streaming one A panel (broadcast loads) and one B panel (NR/16 vector loads per k).
// Cache blocking comes from the order of the tiles, not from splitting K: the product kernel visits
// tiles in groups of tile-rows whose A panels total at most A_GROUP_FLOATS (they stay in L3), with the
// tile-row index running fastest inside a group so consecutive work-items reuse one B panel from L2.
// (Splitting K into blocks of 256..1024 over several launches that accumulate into C was measured
// slower on PoCL: the extra passes over C cost more than they save.)
//
// Packed layouts (Kp = K rounded up to a multiple of KU; padding entries are zeros, adding nothing):
//   packedA: batch b at b*packedStrideA; panel p = rows [p*MR, p*MR + MR) of op(A) occupies MR*Kp floats
//       at p*MR*Kp: element (i = p*MR + r, k) at p*MR*Kp + k*MR + r. Rows >= M are zero.
//   packedB: batch b at b*packedStrideB; panel q = columns [q*NR, q*NR + NR) of op(B) occupies NR*Kp
//       floats at q*NR*Kp: element (k, j = q*NR + c) at q*NR*Kp + k*NR + c. Columns >= N are zero.
//
// Host call sequence (M, N, batch >= 1; every kernel uses local size (1, 1, 1); one in-order queue, no
// events needed; integer division rounds down, ceilDiv(x, y) = (x + y - 1) / y):
//   Mp = ceilDiv(M, MR)*MR;  Np = ceilDiv(N, NR)*NR;  Kp = ceilDiv(K, KU)*KU
//   aBatches = (strideA == 0) ? 1 : batch;  packedStrideA = (strideA == 0) ? 0 : Mp*Kp
//   bBatches = (strideB == 0) ? 1 : batch;  packedStrideB = (strideB == 0) ? 0 : Np*Kp
//   scratch buffers (read-write, not read back): packedA of aBatches*Mp*Kp floats,
//                                                packedB of bBatches*Np*Kp floats
//   1. gemm_pack_a_f32  global (ceilDiv(Kp, PACK_K), ceilDiv(Mp/MR, PACK_PANELS), aBatches)
//   2. gemm_pack_b_f32  global (ceilDiv(Kp, PACK_K), ceilDiv(Np/NR, PACK_PANELS), bBatches)
//   3. gemm_packed_f32  global (Mp/MR, Np/NR, batch)     (the global size must be exactly this)
//   K == 0 (C = beta*C): skip steps 1 and 2 and run step 3 with Kp = 0; it reads no panel, but its panel
//   arguments must still be valid buffers (any, e.g. a 1-float scratch).
//   The host computes these sizes from the same MR, NR, KU, PACK_K, PACK_PANELS it builds with, so it
//   passes all five as -D (A_GROUP_FLOATS only changes speed). The scratch buffers can be reused across
//   calls (grow-only); for a large batch the host may split the batch range into several sequences.
//
// Kernel arguments (int sizes and flags; offsets and strides are long, in elements):
//   gemm_pack_a_f32(const float *A, long aOffset, long strideA, int lda, int transA,
//                   int M, int K, int Kp, float *packedA, long packedStrideA)
//   gemm_pack_b_f32(const float *B, long bOffset, long strideB, int ldb, int transB,
//                   int N, int K, int Kp, float *packedB, long packedStrideB)
//   gemm_packed_f32(int M, int N, int Kp, float alpha, float beta,
//                   const float *packedA, long packedStrideA, const float *packedB, long packedStrideB,
//                   float *C, long cOffset, long strideC, int ldc)
//
// Build options: -cl-std=CL1.2 -cl-mad-enable -DMR=.. -DNR=.. -DKU=.. -DPACK_K=.. -DPACK_PANELS=..
// (never -cl-fast-relaxed-math or -cl-finite-math-only). Measured on PoCL 3.1 (2 Zen 5 cores, AVX-512),
// packing included: 420-450 GFLOP/s at M = N = K = 2048 and 4096, 0.96-1.03x OpenBLAS's AVX-512 sgemm.
// Without POCL_AFFINITY=1 some runs go at about half speed (PoCL's two worker threads apparently on
// one core); POCL_AFFINITY=1, which pins them, removed that in every measurement.

#ifndef MR
#define MR 8 // rows of C per work-item (rows of an A panel); registers used: MR*NR/16 + NR/16 + 1
#endif
#ifndef NR
#define NR 32 // columns of C per work-item (columns of a B panel): 16 or 32
#endif
#ifndef KU
#define KU 8 // unroll of the k loop; Kp is K rounded up to a multiple of KU
#endif
#ifndef A_GROUP_FLOATS
#define A_GROUP_FLOATS (1 << 21) // A panels visited together (tile-rows * MR * Kp <= this, in floats)
#endif
#ifndef PACK_PANELS
#define PACK_PANELS 16 // panels packed by one work-item of the pack kernels
#endif
#ifndef PACK_K
#define PACK_K 64 // k values packed by one work-item of the pack kernels (a multiple of 16)
#endif

#define NV (NR / 16) // float16 vectors per row of a tile

#if (NR != 16) && (NR != 32)
#error "NR must be 16 or 32"
#endif
#if (PACK_K % 16) != 0
#error "PACK_K must be a multiple of 16"
#endif

// ---------------------------------------------------------------------------------------------------
// Packing

// Transposes 8 source rows of 16 consecutive k (row u at src + u*ld) into 16 panel rows of width W:
// dst[k*W + u] = src[u*ld + k] for k in [0, 16), u in [0, 8). Three butterfly stages of swizzles
// transpose each 8 x 8 half in registers; row i then holds panel rows k = i (.lo) and k = i + 8 (.hi).
void gemm_transpose_8x16(__global const float *src, long ld, __global float *dst, int W) {
    float16 x[8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
        x[i] = vload16(0, src + i * ld);
#pragma unroll
    for (int i = 0; i < 8; ++i)
        if (!(i & 4)) {
            const float16 a = x[i], b = x[i + 4];
            x[i] = (float16)(a.s0123, b.s0123, a.s89ab, b.s89ab);
            x[i + 4] = (float16)(a.s4567, b.s4567, a.scdef, b.scdef);
        }
#pragma unroll
    for (int i = 0; i < 8; ++i)
        if (!(i & 2)) {
            const float16 a = x[i], b = x[i + 2];
            x[i] = (float16)(a.s01, b.s01, a.s45, b.s45, a.s89, b.s89, a.scd, b.scd);
            x[i + 2] = (float16)(a.s23, b.s23, a.s67, b.s67, a.sab, b.sab, a.sef, b.sef);
        }
#pragma unroll
    for (int i = 0; i < 8; ++i)
        if (!(i & 1)) {
            const float16 a = x[i], b = x[i + 1];
            x[i] = (float16)(a.s0, b.s0, a.s2, b.s2, a.s4, b.s4, a.s6, b.s6,
                             a.s8, b.s8, a.sa, b.sa, a.sc, b.sc, a.se, b.se);
            x[i + 1] = (float16)(a.s1, b.s1, a.s3, b.s3, a.s5, b.s5, a.s7, b.s7,
                                 a.s9, b.s9, a.sb, b.sb, a.sd, b.sd, a.sf, b.sf);
        }
#pragma unroll
    for (int k = 0; k < 8; ++k) {
        vstore8(x[k].lo, 0, dst + k * W);
        vstore8(x[k].hi, 0, dst + (k + 8) * W);
    }
}

// Packs panel rows k in [k0, k1) of one panel of width W from a source where one panel column is
// contiguous in k: element (u, k) at src[u*ld + k], u < rows valid. dst is the panel start.
void gemm_pack_panel_transposing(__global const float *src, long ld, int W, int rows, int K,
                                 int k0, int k1, __global float *dst) {
    const int kFast = (rows >= W && W % 8 == 0) ? k0 + max(min(k1, K) - k0, 0) / 16 * 16 : k0;
    for (int k = k0; k < kFast; k += 16)
        for (int u = 0; u < W; u += 8)
            gemm_transpose_8x16(src + u * ld + k, ld, dst + (long)k * W + u, W);
    for (int k = kFast; k < k1; ++k)
        for (int u = 0; u < W; ++u)
            dst[(long)k * W + u] = (u < rows && k < K) ? src[u * ld + k] : 0.0f;
}

// Copies panel row k (W floats) of one panel: dst[u] = src[u] for u < W.
void gemm_copy_row(__global const float *src, __global float *dst, int W) {
    if (W % 16 == 0) {
        for (int u = 0; u < W; u += 16)
            vstore16(vload16(0, src + u), 0, dst + u);
    } else if (W % 8 == 0) {
        for (int u = 0; u < W; u += 8)
            vstore8(vload8(0, src + u), 0, dst + u);
    } else {
        for (int u = 0; u < W; ++u)
            dst[u] = src[u];
    }
}

// Packs panel rows k in [k0, k1) of `panels` consecutive panels of width W from a source where one
// panel row is contiguous: element (u, k) at src[k*ld + u], u < cols valid (counted from the first
// panel). Panel p starts at dst + p*W*Kp. Works in blocks of 16 k so the source rows, shared by the
// panels, stay in L1 while each panel is written contiguously.
void gemm_pack_panels_copying(__global const float *src, long ld, int W, int panels, int cols,
                              int K, int Kp, int k0, int k1, __global float *dst) {
    if (cols >= panels * W) {
        const int kFull = min(k1, K);
        for (int kb = k0; kb < kFull; kb += 16)
            for (int p = 0; p < panels; ++p)
                for (int k = kb; k < min(kb + 16, kFull); ++k)
                    gemm_copy_row(src + k * ld + p * W, dst + (long)p * W * Kp + (long)k * W, W);
        for (int p = 0; p < panels; ++p)
            for (int k = max(k0, kFull); k < k1; ++k)
                for (int u = 0; u < W; ++u)
                    dst[(long)p * W * Kp + (long)k * W + u] = 0.0f;
    } else {
        for (int p = 0; p < panels; ++p)
            for (int k = k0; k < k1; ++k)
                for (int u = 0; u < W; ++u)
                    dst[(long)p * W * Kp + (long)k * W + u] =
                        (p * W + u < cols && k < K) ? src[k * ld + p * W + u] : 0.0f;
    }
}

__kernel void gemm_pack_a_f32(__global const float *restrict A, long aOffset, long strideA,
                              int lda, int transA, int M, int K, int Kp,
                              __global float *restrict packedA, long packedStrideA) {
    const int k0 = get_global_id(0) * PACK_K;
    const int k1 = min(k0 + PACK_K, Kp);
    const int p0 = get_global_id(1) * PACK_PANELS;
    const int panels = min(PACK_PANELS, (M + MR - 1) / MR - p0);
    const long b = get_global_id(2);
    __global const float *a = A + aOffset + b * strideA;
    __global float *dst = packedA + b * packedStrideA + (long)p0 * MR * Kp;
    if (transA) {
        // op(A)[i][k] = a[k*lda + i]
        gemm_pack_panels_copying(a + p0 * MR, lda, MR, panels, M - p0 * MR, K, Kp, k0, k1, dst);
    } else {
        // op(A)[i][k] = a[i*lda + k]
        for (int p = 0; p < panels; ++p)
            gemm_pack_panel_transposing(a + (long)(p0 + p) * MR * lda, lda, MR, M - (p0 + p) * MR,
                                        K, k0, k1, dst + (long)p * MR * Kp);
    }
}

__kernel void gemm_pack_b_f32(__global const float *restrict B, long bOffset, long strideB,
                              int ldb, int transB, int N, int K, int Kp,
                              __global float *restrict packedB, long packedStrideB) {
    const int k0 = get_global_id(0) * PACK_K;
    const int k1 = min(k0 + PACK_K, Kp);
    const int q0 = get_global_id(1) * PACK_PANELS;
    const int panels = min(PACK_PANELS, (N + NR - 1) / NR - q0);
    const long b = get_global_id(2);
    __global const float *src = B + bOffset + b * strideB;
    __global float *dst = packedB + b * packedStrideB + (long)q0 * NR * Kp;
    if (!transB) {
        // op(B)[k][j] = src[k*ldb + j]
        gemm_pack_panels_copying(src + q0 * NR, ldb, NR, panels, N - q0 * NR, K, Kp, k0, k1, dst);
    } else {
        // op(B)[k][j] = src[j*ldb + k]
        for (int p = 0; p < panels; ++p)
            gemm_pack_panel_transposing(src + (long)(q0 + p) * NR * ldb, ldb, NR,
                                        N - (q0 + p) * NR, K, k0, k1, dst + (long)p * NR * Kp);
    }
}

// ---------------------------------------------------------------------------------------------------
// Tile product

__kernel void gemm_packed_f32(int M, int N, int Kp, float alpha, float beta,
                              __global const float *restrict packedA, long packedStrideA,
                              __global const float *restrict packedB, long packedStrideB,
                              __global float *restrict C, long cOffset, long strideC, int ldc) {
    // Visit tiles in groups of gm tile-rows (gm*MR*Kp <= A_GROUP_FLOATS): within a group the
    // tile-row runs fastest, so gm consecutive work-items reuse one B panel from L2 while the
    // group's A panels stay in L3. PoCL runs work-groups roughly in order of their linear index.
    const int tilesM = get_global_size(0);
    const int tilesN = get_global_size(1);
    const int lin = get_global_id(0) + get_global_id(1) * tilesM;
    const int gm = clamp(A_GROUP_FLOATS / (MR * max(Kp, 1)), 1, tilesM);
    const int firstM = lin / (gm * tilesN) * gm;
    const int groupRows = min(gm, tilesM - firstM);
    const int inGroup = lin - firstM * tilesN;
    const int tileM = firstM + inGroup % groupRows;
    const int tileN = inGroup / groupRows;
    const long b = get_global_id(2);
    __global const float *pa = packedA + b * packedStrideA + (long)tileM * Kp * MR;
    __global const float *pb = packedB + b * packedStrideB + (long)tileN * Kp * NR;

    float16 acc[MR * NV];
#pragma unroll
    for (int t = 0; t < MR * NV; ++t)
        acc[t] = (float16)0.0f;

    for (int k = 0; k < Kp; k += KU) {
#pragma unroll
        for (int u = 0; u < KU; ++u) {
            float16 bv[NV];
#pragma unroll
            for (int v = 0; v < NV; ++v)
                bv[v] = vload16(v, pb);
#pragma unroll
            for (int r = 0; r < MR; ++r) {
                const float16 av = (float16)pa[r];
#pragma unroll
                for (int v = 0; v < NV; ++v)
                    acc[r * NV + v] = fma(av, bv[v], acc[r * NV + v]);
            }
            pa += MR;
            pb += NR;
        }
    }

    const int i0 = tileM * MR;
    const int j0 = tileN * NR;
    __global float *c = C + cOffset + b * strideC + (long)i0 * ldc + j0;
    if (i0 + MR <= M && j0 + NR <= N) {
        if (beta == 0.0f) {
#pragma unroll
            for (int r = 0; r < MR; ++r)
#pragma unroll
                for (int v = 0; v < NV; ++v)
                    vstore16(alpha * acc[r * NV + v], v, c + (long)r * ldc);
        } else {
#pragma unroll
            for (int r = 0; r < MR; ++r)
#pragma unroll
                for (int v = 0; v < NV; ++v) {
                    __global float *row = c + (long)r * ldc;
                    vstore16(fma((float16)beta, vload16(v, row), alpha * acc[r * NV + v]), v, row);
                }
        }
    } else {
        float t[MR * NR];
#pragma unroll
        for (int r = 0; r < MR; ++r)
#pragma unroll
            for (int v = 0; v < NV; ++v)
                vstore16(acc[r * NV + v], r * NV + v, t);
        const int rows = min(MR, M - i0);
        const int cols = min(NR, N - j0);
        for (int r = 0; r < rows; ++r)
            for (int j = 0; j < cols; ++j) {
                const float x = alpha * t[r * NR + j];
                c[(long)r * ldc + j] = (beta == 0.0f) ? x : fma(beta, c[(long)r * ldc + j], x);
            }
    }
}
