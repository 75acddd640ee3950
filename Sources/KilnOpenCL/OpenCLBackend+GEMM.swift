import COpenCL
import KilnCore

/// Tunables of the two GEMM kernel families (the `-D` values each file is built with).
enum GEMMTunables {
    /// Kernels/gemm_cpu.cl: MR×NR register tile per work-item, k unroll KU; each packing work-item
    /// packs PACK_K k values of PACK_PANELS panels.
    static let cpuStyle = (mr: 8, nr: 32, ku: 8, packK: 64, packPanels: 16)

    /// Kernels/gemm_gpu.cl: TSM×TSN tile of C per work-group of (TSN/WPTN)×(TSM/WPTM) work-items,
    /// k-slabs of TSK in local memory, WPTM×WPTN outputs per work-item.
    static let gpuStyle = (tsm: 64, tsn: 64, tsk: 16, wptm: 8, wptn: 8)

    static var gpuDefines: [String: String] {
        ["TSM": "\(gpuStyle.tsm)", "TSN": "\(gpuStyle.tsn)", "TSK": "\(gpuStyle.tsk)",
         "WPTM": "\(gpuStyle.wptm)", "WPTN": "\(gpuStyle.wptn)"]
    }

    static var cpuDefines: [String: String] {
        ["MR": "\(cpuStyle.mr)", "NR": "\(cpuStyle.nr)", "KU": "\(cpuStyle.ku)",
         "PACK_K": "\(cpuStyle.packK)", "PACK_PANELS": "\(cpuStyle.packPanels)"]
    }
}

extension OpenCLBackend {
    public func gemm(_ d: GEMMDescriptor, a: any BackendBuffer, b: any BackendBuffer, c: any BackendBuffer) throws {
        let ba = try clBuffer(a, "opencl.gemm")
        let bb = try clBuffer(b, "opencl.gemm")
        let bc = try clBuffer(c, "opencl.gemm")
        try requireInt32(d.m, d.n, d.k, d.batch, op: "gemm")
        if d.m == 0 || d.n == 0 || d.batch == 0 { return }
        switch family {
        case .cpuStyle: try gemmPacked(d, ba.mem, bb.mem, bc.mem)
        case .gpuStyle: try gemmTiled(d, ba.mem, bb.mem, bc.mem)
        }
    }

    /// The CPU-style family: pack op(A) and op(B) into zero-padded panels, then one work-item per
    /// MR×NR tile of C (the call sequence documented in Kernels/gemm_cpu.cl).
    private func gemmPacked(_ d: GEMMDescriptor, _ a: cl_mem, _ b: cl_mem, _ c: cl_mem) throws {
        let t = GEMMTunables.cpuStyle
        let defines = GEMMTunables.cpuDefines
        func roundUp(_ x: Int, _ m: Int) -> Int { (x + m - 1) / m * m }
        let mp = roundUp(d.m, t.mr), np = roundUp(d.n, t.nr), kp = roundUp(d.k, t.ku)
        let aBatches = d.strideA == 0 ? 1 : d.batch
        let bBatches = d.strideB == 0 ? 1 : d.batch
        let packedStrideA = d.strideA == 0 ? 0 : mp * kp
        let packedStrideB = d.strideB == 0 ? 0 : np * kp
        let packedA = try pool.allocate(count: Swift.max(1, aBatches * mp * kp))
        let packedB = try pool.allocate(count: Swift.max(1, bBatches * np * kp))
        if kp > 0 {
            try launch(kernel("gemm_cpu", "gemm_pack_a_f32", defines: defines), "gemm_pack_a_f32",
                       global: [(kp + t.packK - 1) / t.packK, (mp / t.mr + t.packPanels - 1) / t.packPanels, aBatches], local: [1, 1, 1],
                       [.buffer(a), .long(d.aOffset), .long(d.strideA), .int(Int32(d.lda)), .int(d.transposeA ? 1 : 0),
                        .int(Int32(d.m)), .int(Int32(d.k)), .int(Int32(kp)), .buffer(packedA.mem), .long(packedStrideA)])
            try launch(kernel("gemm_cpu", "gemm_pack_b_f32", defines: defines), "gemm_pack_b_f32",
                       global: [(kp + t.packK - 1) / t.packK, (np / t.nr + t.packPanels - 1) / t.packPanels, bBatches], local: [1, 1, 1],
                       [.buffer(b), .long(d.bOffset), .long(d.strideB), .int(Int32(d.ldb)), .int(d.transposeB ? 1 : 0),
                        .int(Int32(d.n)), .int(Int32(d.k)), .int(Int32(kp)), .buffer(packedB.mem), .long(packedStrideB)])
        }
        try launch(kernel("gemm_cpu", "gemm_packed_f32", defines: defines), "gemm_packed_f32",
                   global: [mp / t.mr, np / t.nr, d.batch], local: [1, 1, 1],
                   [.int(Int32(d.m)), .int(Int32(d.n)), .int(Int32(kp)), .float(d.alpha), .float(d.beta),
                    .buffer(packedA.mem), .long(packedStrideA), .buffer(packedB.mem), .long(packedStrideB),
                    .buffer(c), .long(d.cOffset), .long(d.strideC), .int(Int32(d.ldc))])
    }

    /// The GPU-style family: one launch, local-memory tiles (Kernels/gemm_gpu.cl).
    private func gemmTiled(_ d: GEMMDescriptor, _ a: cl_mem, _ b: cl_mem, _ c: cl_mem) throws {
        let t = GEMMTunables.gpuStyle
        let local = [t.tsn / t.wptn, t.tsm / t.wptm, 1]
        let global = [(d.n + t.tsn - 1) / t.tsn * local[0], (d.m + t.tsm - 1) / t.tsm * local[1], d.batch]
        try launch(kernel("gemm_gpu", "gemm_tiled_f32", defines: GEMMTunables.gpuDefines), "gemm_tiled_f32",
                   global: global, local: local,
                   [.int(Int32(d.m)), .int(Int32(d.n)), .int(Int32(d.k)), .float(d.alpha), .float(d.beta),
                    .buffer(a), .long(d.aOffset), .long(d.strideA), .int(Int32(d.lda)), .int(d.transposeA ? 1 : 0),
                    .buffer(b), .long(d.bOffset), .long(d.strideB), .int(Int32(d.ldb)), .int(d.transposeB ? 1 : 0),
                    .buffer(c), .long(d.cOffset), .long(d.strideC), .int(Int32(d.ldc))])
    }
}
