import COpenCL
import KilnCore

/// Tunables of Kernels/normalization.cl: work-items per row / channel work-group, the elements each
/// loads at once, and how the parameter gradients of the row norms are summed.
enum NormalizationTunables {
    /// GPUs: 256 work-items per row, one float each per load (coalesced), local-memory tree reduction;
    /// parameter gradients by one work-item per parameter walking the rows (coalesced across parameters).
    static let gpuStyle = (localSize: 256, vector: 1)
    /// CPU drivers (PoCL): one work-item per row streaming `float16` loads (AVX-512 registers);
    /// parameter gradients as row-major partial sums over `rowsPerPartial` rows, then a reduction.
    static let cpuStyle = (localSize: 1, vector: 16)
    static let rowsPerPartial = 256

    /// Flag bits shared with the kernels.
    static let hasWeight: Int32 = 1, hasBias: Int32 = 2, rms: Int32 = 4, writeMean: Int32 = 8
    static let training: Int32 = 16, running: Int32 = 32, writeWeightGradient: Int32 = 64
    static let writeBiasGradient: Int32 = 128
}

extension OpenCLBackend {
    /// The work-group size and defines the backend's kernel family uses.
    private var normalizationConfiguration: (localSize: Int, defines: [String: String]) {
        let t = family == .cpuStyle ? NormalizationTunables.cpuStyle : NormalizationTunables.gpuStyle
        return (t.localSize, ["LOCAL_SIZE": "\(t.localSize)", "VEC": "\(t.vector)",
                              "ROWS_PER_PARTIAL": "\(NormalizationTunables.rowsPerPartial)"])
    }

    private func normalizationKernel(_ name: String) throws -> cl_kernel {
        try kernel("normalization", name, defines: normalizationConfiguration.defines)
    }

    /// Layer / RMS / group norm (`NormalizationKernels.rowNormalizationForward`): one work-group per row (`norm_rows_f32`).
    public func rowNormalizationForward(_ d: RowNormalizationDescriptor, input: any BackendBuffer,
                                        weight: (any BackendBuffer)?, bias: (any BackendBuffer)?,
                                        output: any BackendBuffer, mean: (any BackendBuffer)?,
                                        inverseStandardDeviation: any BackendBuffer) throws {
        let context = "opencl.rowNormalizationForward"
        let x = try clBuffer(input, context).mem
        let w = try weight.map { try clBuffer($0, context).mem }
        let b = try bias.map { try clBuffer($0, context).mem }
        let y = try clBuffer(output, context).mem
        let m = try mean.map { try clBuffer($0, context).mem }
        let s = try clBuffer(inverseStandardDeviation, context).mem
        try requireInt32(d.rows * d.count, d.rows * normalizationConfiguration.localSize, op: "rowNormalizationForward")
        var flags: Int32 = d.kind == .rms ? NormalizationTunables.rms : 0
        if w != nil { flags |= NormalizationTunables.hasWeight }
        if b != nil { flags |= NormalizationTunables.hasBias }
        if m != nil && d.kind == .layer { flags |= NormalizationTunables.writeMean }
        let local = normalizationConfiguration.localSize
        try launch(normalizationKernel("norm_rows_f32"), "norm_rows_f32", global: [d.rows * local], local: [local],
                   [.buffer(x), .buffer(w ?? x), .buffer(b ?? x), .buffer(y), .buffer(m ?? s), .buffer(s),
                    .int(Int32(d.groups)), .int(Int32(d.channelsPerGroup)), .int(Int32(d.spatial)), .float(d.eps),
                    .int(flags)])
    }

    /// The row norms' backward (`NormalizationKernels.rowNormalizationBackward`): one work-group per row for the input gradient, then the parameter gradients per parameter (GPU style) or as row-major partial sums (CPU style).
    public func rowNormalizationBackward(_ d: RowNormalizationDescriptor, outputGradient: any BackendBuffer,
                                         input: any BackendBuffer, weight: (any BackendBuffer)?,
                                         mean: (any BackendBuffer)?, inverseStandardDeviation: any BackendBuffer,
                                         inputGradient: any BackendBuffer, weightGradient: (any BackendBuffer)?,
                                         biasGradient: (any BackendBuffer)?) throws {
        let context = "opencl.rowNormalizationBackward"
        let x = try clBuffer(input, context).mem
        let g = try clBuffer(outputGradient, context).mem
        let w = try weight.map { try clBuffer($0, context).mem }
        let m = try mean.map { try clBuffer($0, context).mem }
        let s = try clBuffer(inverseStandardDeviation, context).mem
        let dx = try clBuffer(inputGradient, context).mem
        let dw = try weightGradient.map { try clBuffer($0, context).mem }
        let db = try biasGradient.map { try clBuffer($0, context).mem }
        try requireInt32(d.rows * d.count, d.rows * normalizationConfiguration.localSize, op: "rowNormalizationBackward")
        var flags: Int32 = d.kind == .rms ? NormalizationTunables.rms : 0
        if w != nil { flags |= NormalizationTunables.hasWeight }
        let parameters = dw != nil || db != nil
        // The rows' δ = Σ(x − m)/n, for the parameter gradients.
        let delta = parameters && d.kind == .layer ? try pool.allocate(count: d.rows) : nil
        if delta != nil { flags |= NormalizationTunables.writeMean }
        let local = normalizationConfiguration.localSize
        try launch(normalizationKernel("norm_rows_backward_f32"), "norm_rows_backward_f32", global: [d.rows * local],
                   local: [local],
                   [.buffer(x), .buffer(g), .buffer(w ?? x), .buffer(m ?? s), .buffer(s), .buffer(dx),
                    .buffer(delta?.mem ?? dx), .int(Int32(d.groups)), .int(Int32(d.channelsPerGroup)),
                    .int(Int32(d.spatial)), .int(flags)])
        guard parameters else { return }
        if dw != nil { flags |= NormalizationTunables.writeWeightGradient }
        if db != nil { flags |= NormalizationTunables.writeBiasGradient }
        if family == .gpuStyle {
            try launch(normalizationKernel("norm_rows_params_f32"), "norm_rows_params_f32", global: [d.parameterCount],
                       [.buffer(x), .buffer(g), .buffer(m ?? s), .buffer(delta?.mem ?? s), .buffer(s),
                        .buffer(dw ?? dx), .buffer(db ?? dx), .int(Int32(d.rows)), .int(Int32(d.groups)),
                        .int(Int32(d.channelsPerGroup)), .int(Int32(d.spatial)), .int(flags)])
            return
        }
        let partials = (d.rows + NormalizationTunables.rowsPerPartial - 1) / NormalizationTunables.rowsPerPartial
        try requireInt32(partials * 2 * d.parameterCount, op: "rowNormalizationBackward")
        let partial = try pool.allocate(count: partials * 2 * d.parameterCount)
        try launch(normalizationKernel("norm_rows_params_partial_f32"), "norm_rows_params_partial_f32",
                   global: [partials],
                   [.buffer(x), .buffer(g), .buffer(m ?? s), .buffer(delta?.mem ?? s), .buffer(s), .buffer(partial.mem),
                    .int(Int32(d.rows)), .int(Int32(d.groups)), .int(Int32(d.channelsPerGroup)),
                    .int(Int32(d.spatial)), .int(flags)])
        try launch(normalizationKernel("norm_rows_params_reduce_f32"), "norm_rows_params_reduce_f32",
                   global: [d.parameterCount],
                   [.buffer(partial.mem), .buffer(dw ?? dx), .buffer(db ?? dx), .int(Int32(partials)),
                    .int(Int32(d.parameterCount)), .int(flags)])
    }

    /// Batch / instance norm (`NormalizationKernels.channelNormalizationForward`): one work-group per channel (`norm_channels_f32`), or one work-item per channel when spatial is 1 (`norm_columns_f32`).
    public func channelNormalizationForward(_ d: ChannelNormalizationDescriptor, input: any BackendBuffer,
                                            weight: (any BackendBuffer)?, bias: (any BackendBuffer)?,
                                            runningMean: (any BackendBuffer)?, runningVariance: (any BackendBuffer)?,
                                            output: any BackendBuffer, mean: any BackendBuffer,
                                            inverseStandardDeviation: any BackendBuffer,
                                            updatedRunningMean: (any BackendBuffer)?,
                                            updatedRunningVariance: (any BackendBuffer)?) throws {
        let context = "opencl.channelNormalizationForward"
        let x = try clBuffer(input, context).mem
        let w = try weight.map { try clBuffer($0, context).mem }
        let b = try bias.map { try clBuffer($0, context).mem }
        let rm = try runningMean.map { try clBuffer($0, context).mem }
        let rv = try runningVariance.map { try clBuffer($0, context).mem }
        let y = try clBuffer(output, context).mem
        let m = try clBuffer(mean, context).mem
        let s = try clBuffer(inverseStandardDeviation, context).mem
        let nm = try updatedRunningMean.map { try clBuffer($0, context).mem }
        let nv = try updatedRunningVariance.map { try clBuffer($0, context).mem }
        let local = normalizationConfiguration.localSize
        try requireInt32(d.channels * d.reducedCount, d.channels * local, op: "channelNormalizationForward")
        var flags: Int32 = d.training ? NormalizationTunables.training : 0
        if w != nil { flags |= NormalizationTunables.hasWeight }
        if b != nil { flags |= NormalizationTunables.hasBias }
        if d.training, rm != nil, rv != nil, nm != nil, nv != nil { flags |= NormalizationTunables.running }
        let common: [KernelArgument] = [.buffer(x), .buffer(w ?? x), .buffer(b ?? x), .buffer(rm ?? x), .buffer(rv ?? x),
                                        .buffer(y), .buffer(m), .buffer(s), .buffer(nm ?? m), .buffer(nv ?? s)]
        if d.spatial == 1 {
            try launch(normalizationKernel("norm_columns_f32"), "norm_columns_f32", global: [d.channels],
                       common + [.int(Int32(d.batch)), .int(Int32(d.channels)), .float(d.eps), .float(d.momentum),
                                 .int(flags)])
        } else {
            try launch(normalizationKernel("norm_channels_f32"), "norm_channels_f32", global: [d.channels * local],
                       local: [local],
                       common + [.int(Int32(d.batch)), .int(Int32(d.channels)), .int(Int32(d.spatial)), .float(d.eps),
                                 .float(d.momentum), .int(flags)])
        }
    }

    /// The channel norms' backward (`NormalizationKernels.channelNormalizationBackward`): as the forward (`norm_channels_backward_f32`, `norm_columns_backward_f32`).
    public func channelNormalizationBackward(_ d: ChannelNormalizationDescriptor, outputGradient: any BackendBuffer,
                                             input: any BackendBuffer, weight: (any BackendBuffer)?,
                                             mean: any BackendBuffer, inverseStandardDeviation: any BackendBuffer,
                                             inputGradient: any BackendBuffer, weightGradient: (any BackendBuffer)?,
                                             biasGradient: (any BackendBuffer)?) throws {
        let context = "opencl.channelNormalizationBackward"
        let x = try clBuffer(input, context).mem
        let g = try clBuffer(outputGradient, context).mem
        let w = try weight.map { try clBuffer($0, context).mem }
        let m = try clBuffer(mean, context).mem
        let s = try clBuffer(inverseStandardDeviation, context).mem
        let dx = try clBuffer(inputGradient, context).mem
        let dw = try weightGradient.map { try clBuffer($0, context).mem }
        let db = try biasGradient.map { try clBuffer($0, context).mem }
        let local = normalizationConfiguration.localSize
        try requireInt32(d.channels * d.reducedCount, d.channels * local, op: "channelNormalizationBackward")
        var flags: Int32 = d.training ? NormalizationTunables.training : 0
        if w != nil { flags |= NormalizationTunables.hasWeight }
        if dw != nil { flags |= NormalizationTunables.writeWeightGradient }
        if db != nil { flags |= NormalizationTunables.writeBiasGradient }
        let common: [KernelArgument] = [.buffer(x), .buffer(g), .buffer(w ?? x), .buffer(m), .buffer(s), .buffer(dx),
                                        .buffer(dw ?? dx), .buffer(db ?? dx), .int(Int32(d.batch)),
                                        .int(Int32(d.channels))]
        if d.spatial == 1 {
            try launch(normalizationKernel("norm_columns_backward_f32"), "norm_columns_backward_f32",
                       global: [d.channels], common + [.int(flags)])
        } else {
            try launch(normalizationKernel("norm_channels_backward_f32"), "norm_channels_backward_f32",
                       global: [d.channels * local], local: [local], common + [.int(Int32(d.spatial)), .int(flags)])
        }
    }

    /// Local response norm (`NormalizationKernels.localResponseNormalizationForward`): one work-item per (batch, position) (`lrn_f32`).
    public func localResponseNormalizationForward(_ d: LocalResponseNormalizationDescriptor, input: any BackendBuffer,
                                                  output: any BackendBuffer) throws {
        let context = "opencl.localResponseNormalizationForward"
        let x = try clBuffer(input, context).mem
        let y = try clBuffer(output, context).mem
        try requireInt32(d.batch * d.channels * d.spatial, d.size, op: "localResponseNormalizationForward")
        try launch(normalizationKernel("lrn_f32"), "lrn_f32", global: [d.batch * d.spatial],
                   [.buffer(x), .buffer(y), .int(Int32(d.batch)), .int(Int32(d.channels)), .int(Int32(d.spatial)),
                    .int(Int32(d.size)), .float(d.alpha), .float(d.beta), .float(d.k)])
    }

    /// Local response norm's backward (`NormalizationKernels.localResponseNormalizationBackward`): one work-item per (batch, position) with a scratch buffer (`lrn_backward_f32`).
    public func localResponseNormalizationBackward(_ d: LocalResponseNormalizationDescriptor,
                                                   input: any BackendBuffer, outputGradient: any BackendBuffer,
                                                   inputGradient: any BackendBuffer) throws {
        let context = "opencl.localResponseNormalizationBackward"
        let x = try clBuffer(input, context).mem
        let g = try clBuffer(outputGradient, context).mem
        let dx = try clBuffer(inputGradient, context).mem
        try requireInt32(d.batch * d.channels * d.spatial, d.size, op: "localResponseNormalizationBackward")
        let scratch = try pool.allocate(count: d.batch * d.channels * d.spatial)
        try launch(normalizationKernel("lrn_backward_f32"), "lrn_backward_f32", global: [d.batch * d.spatial],
                   [.buffer(x), .buffer(g), .buffer(dx), .buffer(scratch.mem), .int(Int32(d.batch)),
                    .int(Int32(d.channels)), .int(Int32(d.spatial)), .int(Int32(d.size)), .float(d.alpha),
                    .float(d.beta), .float(d.k)])
    }
}
