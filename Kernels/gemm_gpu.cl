// gemm_gpu.cl: batched single-precision GEMM, GPU-style family (local-memory tiles, 2-D work-groups).
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
// or fma(beta, C, alpha*sum): the same operations as gemm_cpu.cl, so the families agree bit for bit on
// PoCL. beta == 0 never reads C (NaN in C does not leak out). Only the M x N entries of each C_b are
// written. Any M, N >= 1 and K >= 0 (K == 0 gives C = beta*C, or 0 when beta == 0); out-of-range
// entries of a tile are staged as zeros and never stored.
//
// How it works: a work-group of (TSN/WPTN) x (TSM/WPTM) work-items computes one TSM x TSN tile of C.
// For each k-slab of TSK it stages the TSM x TSK slab of op(A) and the TSK x TSN slab of op(B) in
// __local memory (loads arranged so neighbouring work-items read neighbouring addresses for either
// transpose), then each work-item accumulates its WPTM x WPTN outputs in private registers; its rows
// are tidm + w*(TSM/WPTM) and its columns tidn + w*(TSN/WPTN), so C stores are coalesced.
// On PoCL it is slow (barriers spill to memory): ~18 GFLOP/s at 1024^3 with the defaults, ~5 with
// 16 x 16 work-groups of 4 x 4. It is meant for GPUs; CPUs use gemm_cpu.cl.
//
// Kernel (no scratch buffers, one launch does everything):
//   gemm_tiled_f32(int M, int N, int K, float alpha, float beta,
//                  const float *A, long aOffset, long strideA, int lda, int transA,
//                  const float *B, long bOffset, long strideB, int ldb, int transB,
//                  float *C, long cOffset, long strideC, int ldc)
//   local size  (TSN/WPTN, TSM/WPTM, 1) = (8, 8, 1) by default             (required, exactly)
//   global size (ceilDiv(N, TSN) * (TSN/WPTN), ceilDiv(M, TSM) * (TSM/WPTM), batch)
//   with ceilDiv(x, y) = (x + y - 1) / y. Dimension 0 runs along N, so consecutive work-items touch
//   consecutive columns of B and C.
// Host call sequence: that one enqueue (M, N, batch >= 1; the host skips the call when any is 0).
//
// Build options: -cl-std=CL1.2 -cl-mad-enable -DTSM=.. -DTSN=.. -DTSK=.. -DWPTM=.. -DWPTN=..
// (never -cl-fast-relaxed-math or -cl-finite-math-only). The host computes the sizes above from the
// same values, so it passes all five. Constraints: TSM % WPTM == TSN % WPTN == 0, and the work-group
// size (TSM/WPTM)*(TSN/WPTN) must divide TSM*TSK and TSK*TSN and fit the device (<= 256 is safe).

#ifndef TSM
#define TSM 64 // rows of C per work-group
#endif
#ifndef TSN
#define TSN 64 // columns of C per work-group
#endif
#ifndef TSK
#define TSK 16 // depth of the k-slab staged in local memory
#endif
#ifndef WPTM
#define WPTM 8 // rows of C per work-item
#endif
#ifndef WPTN
#define WPTN 8 // columns of C per work-item
#endif
#ifndef LPAD
#define LPAD 1 // padding of each local row (avoids bank conflicts on the transposing stores)
#endif

#define RTSM (TSM / WPTM)     // work-items along M (local size, dimension 1)
#define RTSN (TSN / WPTN)     // work-items along N (local size, dimension 0)
#define WG_SIZE (RTSM * RTSN) // work-items per work-group

#if (TSM % WPTM) != 0 || (TSN % WPTN) != 0
#error "TSM must be a multiple of WPTM and TSN a multiple of WPTN"
#endif
#if ((TSM * TSK) % WG_SIZE) != 0 || ((TSK * TSN) % WG_SIZE) != 0
#error "the work-group size must divide TSM*TSK and TSK*TSN"
#endif

__kernel __attribute__((reqd_work_group_size(RTSN, RTSM, 1)))
void gemm_tiled_f32(int M, int N, int K, float alpha, float beta,
                    __global const float *restrict A, long aOffset, long strideA, int lda, int transA,
                    __global const float *restrict B, long bOffset, long strideB, int ldb, int transB,
                    __global float *restrict C, long cOffset, long strideC, int ldc) {
    __local float As[TSK][TSM + LPAD]; // As[k][i] = op(A)[m0 + i][k0 + k]
    __local float Bs[TSK][TSN + LPAD]; // Bs[k][j] = op(B)[k0 + k][n0 + j]

    const int tidn = get_local_id(0);
    const int tidm = get_local_id(1);
    const int tid = tidm * RTSN + tidn;
    const int n0 = get_group_id(0) * TSN;
    const int m0 = get_group_id(1) * TSM;
    const long b = get_global_id(2);
    __global const float *a = A + aOffset + b * strideA;
    __global const float *bm = B + bOffset + b * strideB;

    float acc[WPTM][WPTN];
#pragma unroll
    for (int wm = 0; wm < WPTM; ++wm)
#pragma unroll
        for (int wn = 0; wn < WPTN; ++wn)
            acc[wm][wn] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += TSK) {
        // Stage the slabs; the fastest-varying index follows the contiguous direction in memory.
#pragma unroll
        for (int t = 0; t < TSM * TSK / WG_SIZE; ++t) {
            const int l = tid + t * WG_SIZE;
            const int i = transA ? l % TSM : l / TSK;
            const int k = transA ? l / TSM : l % TSK;
            const int gi = m0 + i, gk = k0 + k;
            float v = 0.0f;
            if (gi < M && gk < K)
                v = transA ? a[(long)gk * lda + gi] : a[(long)gi * lda + gk];
            As[k][i] = v;
        }
#pragma unroll
        for (int t = 0; t < TSK * TSN / WG_SIZE; ++t) {
            const int l = tid + t * WG_SIZE;
            const int j = transB ? l / TSK : l % TSN;
            const int k = transB ? l % TSK : l / TSN;
            const int gj = n0 + j, gk = k0 + k;
            float v = 0.0f;
            if (gj < N && gk < K)
                v = transB ? bm[(long)gj * ldb + gk] : bm[(long)gk * ldb + gj];
            Bs[k][j] = v;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

#pragma unroll
        for (int k = 0; k < TSK; ++k) {
            float bReg[WPTN];
#pragma unroll
            for (int wn = 0; wn < WPTN; ++wn)
                bReg[wn] = Bs[k][tidn + wn * RTSN];
#pragma unroll
            for (int wm = 0; wm < WPTM; ++wm) {
                const float aReg = As[k][tidm + wm * RTSM];
#pragma unroll
                for (int wn = 0; wn < WPTN; ++wn)
                    acc[wm][wn] = fma(aReg, bReg[wn], acc[wm][wn]);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    __global float *c = C + cOffset + b * strideC;
#pragma unroll
    for (int wm = 0; wm < WPTM; ++wm) {
        const int gi = m0 + tidm + wm * RTSM;
#pragma unroll
        for (int wn = 0; wn < WPTN; ++wn) {
            const int gj = n0 + tidn + wn * RTSN;
            if (gi < M && gj < N) {
                __global float *p = c + (long)gi * ldc + gj;
                const float x = alpha * acc[wm][wn];
                *p = (beta == 0.0f) ? x : fma(beta, *p, x);
            }
        }
    }
}
