import COpenCL
import KilnCore

/// Tunables of the two attention kernel families (the `-D` values each file is built with, besides
/// HEAD_DIM and VALUE_DIM).
enum AttentionTunables {
    /// Kernels/attention_cpu.cl: QR query rows per work-item streaming blocks of KB keys (forward, dQ);
    /// KC keys per work-item stepping through QC query rows (dK/dV); PACK_ROWS rows per packing item.
    static let cpuStyle = (qr: 16, kb: 128, kc: 32, qc: 32, packRows: 16)

    /// Kernels/attention_gpu.cl: work-groups of WG work-items, one query (or key) row each, staging
    /// TILE keys (or query rows) at a time in local memory; TILE (at most maxTile) shrinks with the
    /// padded dims so the tiles take at most localFloats floats, within the 32 KiB of local memory
    /// every OpenCL 1.2 GPU has.
    static let gpuStyle = (wg: 64, maxTile: 64, localFloats: 7680)

    /// `x` rounded up to a multiple of 16, at least 16: the padded head and value dims.
    static func paddedDim(_ x: Int) -> Int { Swift.max(16, (x + 15) / 16 * 16) }

    static func cpuDefines(_ d: AttentionDescriptor) -> [String: String] {
        let t = cpuStyle
        return ["HEAD_DIM": "\(paddedDim(d.headDim))", "VALUE_DIM": "\(paddedDim(d.valueDim))", "QR": "\(t.qr)",
                "KB": "\(t.kb)", "KC": "\(t.kc)", "QC": "\(t.qc)", "PACK_ROWS": "\(t.packRows)"]
    }

    /// Keys (or query rows) per local-memory tile: a power of two, TILE*(DP + DVP + 2) floats.
    static func gpuTile(_ d: AttentionDescriptor) -> Int {
        let width = paddedDim(d.headDim) + paddedDim(d.valueDim) + 2
        var tile = gpuStyle.maxTile
        while tile > 1 && tile * width > gpuStyle.localFloats { tile /= 2 }
        return tile
    }

    static func gpuDefines(_ d: AttentionDescriptor) -> [String: String] {
        ["HEAD_DIM": "\(paddedDim(d.headDim))", "VALUE_DIM": "\(paddedDim(d.valueDim))",
         "WG": "\(gpuStyle.wg)", "TILE": "\(gpuTile(d))"]
    }
}

/// The buffers and arguments every attention kernel shares.
private struct AttentionCall {
    let d: AttentionDescriptor
    let query: cl_mem, key: cl_mem, value: cl_mem
    /// The mask, or any valid buffer when there is none (then `hasMask` is 0).
    let mask: cl_mem
    let hasMask: Bool

    var maskArguments: [KernelArgument] {
        let s = d.maskStrides ?? [0, 0, 0, 0]
        return [.buffer(mask), .long(s[0]), .long(s[1]), .long(s[2]), .long(s[3]), .int(hasMask ? 1 : 0)]
    }

    /// causal, window, dropout, seed low, seed high.
    var optionArguments: [KernelArgument] {
        // A window wider than seqQ hides nothing more than causal does: clamped, it fits an int.
        [.int(d.isCausal || d.window > 0 ? 1 : 0), .int(Int32(Swift.min(d.window, d.seqQ + 1))), .float(d.dropout),
         .int(Int32(bitPattern: UInt32(truncatingIfNeeded: d.seed))),
         .int(Int32(bitPattern: UInt32(truncatingIfNeeded: d.seed >> 32)))]
    }

    var scaleLog2e: Float { Float(Double(d.scale) * 1.4426950408889634) }
}

extension OpenCLBackend: AttentionKernels {
    public func attentionForward(_ d: AttentionDescriptor, query: any BackendBuffer, key: any BackendBuffer,
                                 value: any BackendBuffer, mask: (any BackendBuffer)?, output: any BackendBuffer,
                                 logSumExp: any BackendBuffer) throws {
        let op = "opencl.attentionForward"
        let call = try attentionCall(d, query, key, value, mask, op: op)
        let o = try clBuffer(output, op)
        let lse = try clBuffer(logSumExp, op)
        let rows = d.batch * d.heads * d.seqQ
        try requireCapacity(o, rows * d.valueDim, "output", op: op)
        try requireCapacity(lse, rows, "logSumExp", op: op)
        if rows == 0 { return }
        if d.seqK == 0 {
            // No key at all: every row is fully masked.
            if d.valueDim > 0 { try fill(output, value: 0, count: rows * d.valueDim) }
            try fill(logSumExp, value: -.infinity, count: rows)
            return
        }
        switch family {
        case .cpuStyle: try attentionForwardCPUStyle(call, o.mem, lse.mem)
        case .gpuStyle: try attentionForwardGPUStyle(call, o.mem, lse.mem)
        }
    }

    public func attentionBackward(_ d: AttentionDescriptor, query: any BackendBuffer, key: any BackendBuffer,
                                  value: any BackendBuffer, mask: (any BackendBuffer)?, output: any BackendBuffer,
                                  logSumExp: any BackendBuffer, outputGradient: any BackendBuffer,
                                  queryGradient: any BackendBuffer, keyGradient: any BackendBuffer,
                                  valueGradient: any BackendBuffer) throws {
        let op = "opencl.attentionBackward"
        let call = try attentionCall(d, query, key, value, mask, op: op)
        let rows = d.batch * d.heads * d.seqQ
        let o = try clBuffer(output, op)
        let lse = try clBuffer(logSumExp, op)
        let g = try clBuffer(outputGradient, op)
        let dq = try clBuffer(queryGradient, op)
        let dk = try clBuffer(keyGradient, op)
        let dv = try clBuffer(valueGradient, op)
        for (buffer, count, name) in [(o, rows * d.valueDim, "output"), (lse, rows, "logSumExp"),
                                      (g, rows * d.valueDim, "outputGradient"), (dq, rows * d.headDim, "queryGradient"),
                                      (dk, d.batch * d.kvHeads * d.seqK * d.headDim, "keyGradient"),
                                      (dv, d.batch * d.kvHeads * d.seqK * d.valueDim, "valueGradient")] {
            try requireCapacity(buffer, count, name, op: op)
        }
        if rows * d.seqK == 0 {
            // Nothing attends to anything: every gradient is zero.
            let counts = [rows * d.headDim, d.batch * d.kvHeads * d.seqK * d.headDim,
                          d.batch * d.kvHeads * d.seqK * d.valueDim]
            for (buffer, count) in zip([queryGradient, keyGradient, valueGradient], counts) where count > 0 {
                try fill(buffer, value: 0, count: count)
            }
            return
        }
        switch family {
        case .cpuStyle: try attentionBackwardCPUStyle(call, o.mem, lse.mem, g.mem, dq.mem, dk.mem, dv.mem)
        case .gpuStyle: try attentionBackwardGPUStyle(call, o.mem, lse.mem, g.mem, dq.mem, dk.mem, dv.mem)
        }
    }

    /// Checks what the kernels rely on (the front end has validated the rest) and gathers the buffers.
    private func attentionCall(_ d: AttentionDescriptor, _ query: any BackendBuffer, _ key: any BackendBuffer,
                               _ value: any BackendBuffer, _ mask: (any BackendBuffer)?, op: String) throws
        -> AttentionCall
    {
        let sizes = [d.batch, d.heads, d.kvHeads, d.seqQ, d.seqK, d.headDim, d.valueDim, d.window]
        let headsFit = d.kvHeads > 0 ? d.heads % d.kvHeads == 0 : d.heads == 0
        let maskFits = mask == nil ? d.maskStrides == nil : d.maskStrides?.count == 4
        guard sizes.allSatisfy({ $0 >= 0 }), headsFit, maskFits, d.dropout >= 0 && d.dropout < 1 else {
            throw BackendError(.unsupported, context: op,
                               "invalid attention descriptor \(d) (mask given: \(mask != nil))")
        }
        // Sizes, and every index the kernels form inside one (batch, head), are 32-bit; offsets into whole
        // tensors are 64-bit. Products saturate, so absurd sizes throw here rather than overflow.
        func product(_ factors: Int...) -> Int {
            factors.reduce(1) { a, b in
                let (p, overflow) = a.multipliedReportingOverflow(by: b)
                return overflow ? Int.max : p
            }
        }
        try requireInt32(d.batch, d.heads, d.kvHeads, d.seqQ, d.seqK, d.headDim, d.valueDim, op: "attention")
        let dp = AttentionTunables.paddedDim(d.headDim), dvp = AttentionTunables.paddedDim(d.valueDim)
        let t = AttentionTunables.cpuStyle
        let sqp = (d.seqQ + t.qc - 1) / t.qc * t.qc, skp = (d.seqK + t.kb - 1) / t.kb * t.kb
        let width = Swift.max(dp, dvp)
        try requireInt32(product(d.batch, d.heads, sqp, width), product(d.batch, d.kvHeads, skp, width),
                         d.seqQ + d.seqK + 1, op: "attention")
        let q = try clBuffer(query, op)
        let k = try clBuffer(key, op)
        let v = try clBuffer(value, op)
        let m = try mask.map { try clBuffer($0, op) }
        try requireCapacity(q, d.batch * d.heads * d.seqQ * d.headDim, "query", op: op)
        try requireCapacity(k, d.batch * d.kvHeads * d.seqK * d.headDim, "key", op: op)
        try requireCapacity(v, d.batch * d.kvHeads * d.seqK * d.valueDim, "value", op: op)
        if let m, let strides = d.maskStrides, d.batch * d.heads * d.seqQ * d.seqK > 0 {
            guard strides.allSatisfy({ $0 >= 0 }) else {
                throw BackendError(.unsupported, context: op, "negative mask strides \(strides)")
            }
            let last = zip([d.batch, d.heads, d.seqQ, d.seqK], strides).map { product($0 - 1, $1) }
                .reduce(0) { $0 > Int.max - $1 ? Int.max : $0 + $1 }
            try requireCapacity(m, last == Int.max ? last : last + 1, "mask", op: op)
        }
        return AttentionCall(d: d, query: q.mem, key: k.mem, value: v.mem, mask: (m ?? q).mem, hasMask: m != nil)
    }

    /// Throws unless `buffer` holds at least `count` elements (the kernels would write past it).
    private func requireCapacity(_ buffer: OpenCLBuffer, _ count: Int, _ name: String, op: String) throws {
        if buffer.capacity < count {
            throw BackendError(.unsupported, context: op,
                               "\(name) buffer holds \(buffer.capacity) elements, needs \(count)")
        }
    }

    // MARK: - CPU style (Kernels/attention_cpu.cl)

    /// The padded sizes of the CPU-style panels: (Sqp, Skp, DP, DVP).
    private func cpuPanels(_ d: AttentionDescriptor) -> (sqp: Int, skp: Int, dp: Int, dvp: Int) {
        let t = AttentionTunables.cpuStyle
        return ((d.seqQ + t.qc - 1) / t.qc * t.qc, (d.seqK + t.kb - 1) / t.kb * t.kb,
                AttentionTunables.paddedDim(d.headDim), AttentionTunables.paddedDim(d.valueDim))
    }

    /// Copies `matrices` row-major [rows, cols] matrices into zero-padded [rowsPadded, colsPadded] ones.
    private func packRows(_ defines: [String: String], _ src: cl_mem, matrices: Int, rows: Int, cols: Int,
                          rowsPadded: Int, colsPadded: Int) throws -> OpenCLBuffer {
        let t = AttentionTunables.cpuStyle
        let dst = try pool.allocate(count: Swift.max(1, matrices * rowsPadded * colsPadded))
        try launch(kernel("attention_cpu", "attention_pack_rows_f32", defines: defines), "attention_pack_rows_f32",
                   global: [(rowsPadded + t.packRows - 1) / t.packRows, matrices], local: [1, 1],
                   [.buffer(src), .int(Int32(rows)), .int(Int32(cols)), .buffer(dst.mem), .int(Int32(rowsPadded)),
                    .int(Int32(colsPadded))])
        return dst
    }

    /// Copies `matrices` row-major [rows, cols] matrices into transposed panels of KB rows.
    private func packTransposed(_ defines: [String: String], _ src: cl_mem, matrices: Int, rows: Int, cols: Int,
                                rowsPadded: Int, colsPadded: Int) throws -> OpenCLBuffer {
        let t = AttentionTunables.cpuStyle
        let dst = try pool.allocate(count: Swift.max(1, matrices * rowsPadded * colsPadded))
        try launch(kernel("attention_cpu", "attention_pack_transposed_f32", defines: defines),
                   "attention_pack_transposed_f32", global: [rowsPadded / t.kb, matrices], local: [1, 1],
                   [.buffer(src), .int(Int32(rows)), .int(Int32(cols)), .buffer(dst.mem), .int(Int32(rowsPadded)),
                    .int(Int32(colsPadded))])
        return dst
    }

    /// Pack Q, K^T and V, then one work-item per QR query rows (the sequence in attention_cpu.cl).
    private func attentionForwardCPUStyle(_ c: AttentionCall, _ o: cl_mem, _ lse: cl_mem) throws {
        let d = c.d
        let t = AttentionTunables.cpuStyle
        let defines = AttentionTunables.cpuDefines(d)
        let p = cpuPanels(d)
        let qp = try packRows(defines, c.query, matrices: d.batch * d.heads, rows: d.seqQ, cols: d.headDim,
                              rowsPadded: p.sqp, colsPadded: p.dp)
        let kt = try packTransposed(defines, c.key, matrices: d.batch * d.kvHeads, rows: d.seqK, cols: d.headDim,
                                    rowsPadded: p.skp, colsPadded: p.dp)
        let vp = try packRows(defines, c.value, matrices: d.batch * d.kvHeads, rows: d.seqK, cols: d.valueDim,
                              rowsPadded: p.skp, colsPadded: p.dvp)
        let name = "attention_forward_f32"
        try launch(kernel("attention_cpu", name, defines: defines), name,
                   global: [p.sqp / t.qr, d.heads, d.batch], local: [1, 1, 1],
                   [.buffer(qp.mem), .buffer(kt.mem), .buffer(vp.mem)] + c.maskArguments
                       + [.buffer(o), .buffer(lse), .int(Int32(d.heads)), .int(Int32(d.kvHeads)), .int(Int32(d.seqQ)),
                          .int(Int32(d.seqK)), .int(Int32(d.valueDim)), .float(c.scaleLog2e)] + c.optionArguments)
    }

    /// Pack Q, K^T, K, V^T and dO (with L and D per row), then the dQ and dK/dV kernels.
    private func attentionBackwardCPUStyle(_ c: AttentionCall, _ o: cl_mem, _ lse: cl_mem, _ g: cl_mem,
                                           _ dq: cl_mem, _ dk: cl_mem, _ dv: cl_mem) throws {
        let d = c.d
        let t = AttentionTunables.cpuStyle
        let defines = AttentionTunables.cpuDefines(d)
        let p = cpuPanels(d)
        let bh = d.batch * d.heads, bkv = d.batch * d.kvHeads
        let qp = try packRows(defines, c.query, matrices: bh, rows: d.seqQ, cols: d.headDim, rowsPadded: p.sqp,
                              colsPadded: p.dp)
        let kt = try packTransposed(defines, c.key, matrices: bkv, rows: d.seqK, cols: d.headDim, rowsPadded: p.skp,
                                    colsPadded: p.dp)
        let kp = try packRows(defines, c.key, matrices: bkv, rows: d.seqK, cols: d.headDim, rowsPadded: p.skp,
                              colsPadded: p.dp)
        let vt = try packTransposed(defines, c.value, matrices: bkv, rows: d.seqK, cols: d.valueDim,
                                    rowsPadded: p.skp, colsPadded: p.dvp)
        let dop = try pool.allocate(count: bh * p.sqp * p.dvp)
        let rowL = try pool.allocate(count: bh * p.sqp)
        let rowD = try pool.allocate(count: bh * p.sqp)
        let prep = "attention_backward_prep_f32"
        try launch(kernel("attention_cpu", prep, defines: defines), prep,
                   global: [(p.sqp + t.packRows - 1) / t.packRows, bh], local: [1, 1],
                   [.buffer(o), .buffer(g), .buffer(lse), .buffer(dop.mem), .buffer(rowL.mem), .buffer(rowD.mem),
                    .int(Int32(d.seqQ)), .int(Int32(p.sqp)), .int(Int32(d.valueDim))])
        let sizes: [KernelArgument] = [.int(Int32(d.heads)), .int(Int32(d.kvHeads)), .int(Int32(d.seqQ)),
                                       .int(Int32(d.seqK)), .int(Int32(d.headDim))]
        let dqName = "attention_backward_dq_f32"
        try launch(kernel("attention_cpu", dqName, defines: defines), dqName,
                   global: [p.sqp / t.qr, d.heads, d.batch], local: [1, 1, 1],
                   [.buffer(qp.mem), .buffer(kt.mem), .buffer(kp.mem), .buffer(vt.mem), .buffer(dop.mem),
                    .buffer(rowL.mem), .buffer(rowD.mem)] + c.maskArguments + [.buffer(dq)] + sizes
                       + [.float(c.scaleLog2e), .float(d.scale)] + c.optionArguments)
        let dkdvName = "attention_backward_dkdv_f32"
        try launch(kernel("attention_cpu", dkdvName, defines: defines), dkdvName,
                   global: [(d.seqK + t.kc - 1) / t.kc, d.kvHeads, d.batch], local: [1, 1, 1],
                   [.buffer(qp.mem), .buffer(kt.mem), .buffer(vt.mem), .buffer(dop.mem), .buffer(rowL.mem),
                    .buffer(rowD.mem)] + c.maskArguments + [.buffer(dk), .buffer(dv)] + sizes
                       + [.int(Int32(d.valueDim)), .float(c.scaleLog2e), .float(d.scale)] + c.optionArguments)
    }

    // MARK: - GPU style (Kernels/attention_gpu.cl)

    /// One work-item per query row, K and V tiles staged in local memory (Kernels/attention_gpu.cl).
    private func attentionForwardGPUStyle(_ c: AttentionCall, _ o: cl_mem, _ lse: cl_mem) throws {
        let d = c.d
        let wg = AttentionTunables.gpuStyle.wg
        let name = "attention_forward_gpu_f32"
        try launch(kernel("attention_gpu", name, defines: AttentionTunables.gpuDefines(d)), name,
                   global: [d.seqQ, d.heads, d.batch], local: [wg, 1, 1],
                   [.buffer(c.query), .buffer(c.key), .buffer(c.value)] + c.maskArguments
                       + [.buffer(o), .buffer(lse)] + gpuSizes(d) + [.float(c.scaleLog2e)] + c.optionArguments)
    }

    /// D and L per row, then the dQ kernel (one query row per work-item) and the dK/dV kernel (one key
    /// row per work-item).
    private func attentionBackwardGPUStyle(_ c: AttentionCall, _ o: cl_mem, _ lse: cl_mem, _ g: cl_mem,
                                           _ dq: cl_mem, _ dk: cl_mem, _ dv: cl_mem) throws {
        let d = c.d
        let wg = AttentionTunables.gpuStyle.wg
        let defines = AttentionTunables.gpuDefines(d)
        let rows = d.batch * d.heads * d.seqQ
        let rowL = try pool.allocate(count: rows)
        let rowD = try pool.allocate(count: rows)
        let prep = "attention_backward_prep_gpu_f32"
        try launch(kernel("attention_gpu", prep, defines: defines), prep, global: [rows],
                   [.buffer(o), .buffer(g), .buffer(lse), .buffer(rowL.mem), .buffer(rowD.mem), .int(Int32(rows)),
                    .int(Int32(d.valueDim))])
        let common: [KernelArgument] = [.buffer(c.query), .buffer(c.key), .buffer(c.value), .buffer(g),
                                        .buffer(rowL.mem), .buffer(rowD.mem)] + c.maskArguments
        let tail: [KernelArgument] = gpuSizes(d) + [.float(c.scaleLog2e), .float(d.scale)] + c.optionArguments
        let dqName = "attention_backward_dq_gpu_f32"
        try launch(kernel("attention_gpu", dqName, defines: defines), dqName,
                   global: [d.seqQ, d.heads, d.batch], local: [wg, 1, 1], common + [.buffer(dq)] + tail)
        let dkdvName = "attention_backward_dkdv_gpu_f32"
        try launch(kernel("attention_gpu", dkdvName, defines: defines), dkdvName,
                   global: [d.seqK, d.kvHeads, d.batch], local: [wg, 1, 1], common + [.buffer(dk), .buffer(dv)] + tail)
    }

    /// H, KVH, Sq, Sk, D, Dv.
    private func gpuSizes(_ d: AttentionDescriptor) -> [KernelArgument] {
        [.int(Int32(d.heads)), .int(Int32(d.kvHeads)), .int(Int32(d.seqQ)), .int(Int32(d.seqK)),
         .int(Int32(d.headDim)), .int(Int32(d.valueDim))]
    }
}
