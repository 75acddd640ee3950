/// Convolution (cross-correlation, as PyTorch's `conv1d`, `conv2d`, `conv_transpose2d`) in NCHW, and
/// the backward passes as public functions (what autograd will call).
///
/// Every op validates its input once, then dispatches to the backend's `ConvolutionKernels`
/// (CPU: im2col tiles + OpenBLAS sgemm, direct 1×1 and depthwise paths; OpenCL: im2col + the
/// backend's GEMM family). Accumulates in Float32; agrees with a Float64 reference within the GEMM
/// tolerance for depth `Cig·kH·kW`.

/// The gradients a convolution's backward pass returns.
public struct ConvolutionGradients: Sendable {
    /// ∂L/∂input, shaped as the input.
    public let input: Tensor
    /// ∂L/∂weight, shaped as the weight.
    public let weight: Tensor
    /// ∂L/∂bias `[C_out]`; nil when the forward had no bias.
    public let bias: Tensor?
}

// MARK: - conv2d

/// 2-D convolution, as `torch.nn.functional.conv2d`:
/// `y[n, co, oh, ow] = bias[co] + Σ_{ci ∈ group(co), kh, kw} x[n, ci, oh·s_h − p_h + kh·d_h, ow·s_w − p_w + kw·d_w]·w[co, ci − g·C_in/groups, kh, kw]`
/// with zero padding, and `OH = ⌊(H + 2p_h − d_h(kH − 1) − 1)/s_h⌋ + 1` (likewise OW).
///
/// Shapes: input `[N, C_in, H, W]`, weight `[C_out, C_in/groups, kH, kW]`, bias `[C_out]` (optional),
/// output `[N, C_out, OH, OW]`.
/// - Parameters:
///   - stride, dilation: ≥ 1, one value or `[h, w]`.
///   - padding: `≥ 0` per side (one value or `[h, w]`), `.valid`, or `.same` (stride 1 only; the odd
///     extra padding goes to the bottom/right, as PyTorch).
///   - groups: divides C_in and C_out; `groups == C_in` is a depthwise convolution.
/// - Throws: `TensorError` naming `conv2d` for bad ranks, shapes, backends or hyperparameters, or a
///   kernel larger than the padded input.
public func conv2d(_ input: Tensor, weight: Tensor, bias: Tensor? = nil, stride: SpatialSize = 1,
                   padding: ConvolutionPadding = 0, dilation: SpatialSize = 1, groups: Int = 1) throws -> Tensor {
    let plan = try ConvPlan(op: "conv2d", input: input, weight: weight, bias: bias, stride: stride, padding: padding,
                            dilation: dilation, groups: groups, dimensions: 2)
    let output = try plan.forward(input, weight: weight, bias: bias)
    return output.recording([input, weight] + (bias.map { [$0] } ?? [])) {
        [x = input.detached(), w = weight.detached(), b = bias?.detached()] g in
        let r = try conv2dBackward(g, input: x, weight: w, bias: b, stride: stride, padding: padding,
                                   dilation: dilation, groups: groups)
        return [r.input, r.weight, r.bias]
    }
}

/// The gradients of `conv2d` given the loss's gradient `g = ∂L/∂y`:
/// `∂L/∂x[n, ci, ih, iw] = Σ g[n, co, oh, ow]·w[co, ci − g·C_in/groups, kh, kw]` over the taps that read it,
/// `∂L/∂w[co, cig, kh, kw] = Σ_{n, oh, ow} g[n, co, oh, ow]·x[n, g·C_in/groups + cig, ih, iw]` (seed 003's
/// CNN backprop, general form), `∂L/∂bias[co] = Σ_{n, oh, ow} g[n, co, oh, ow]`.
///
/// Shapes: outputGradient `[N, C_out, OH, OW]` (as the forward's output); the hyperparameters must be
/// the forward's. Pass the forward's bias to get its gradient.
/// - Throws: `TensorError` naming `conv2dBackward` for inconsistent shapes, backends or hyperparameters.
public func conv2dBackward(_ outputGradient: Tensor, input: Tensor, weight: Tensor, bias: Tensor? = nil,
                           stride: SpatialSize = 1, padding: ConvolutionPadding = 0, dilation: SpatialSize = 1,
                           groups: Int = 1) throws -> ConvolutionGradients {
    let plan = try ConvPlan(op: "conv2dBackward", input: input, weight: weight, bias: bias, stride: stride,
                            padding: padding, dilation: dilation, groups: groups, dimensions: 2)
    return try plan.backward(outputGradient, input: input, weight: weight, bias: bias)
}

// MARK: - conv1d

/// 1-D convolution, as `torch.nn.functional.conv1d`:
/// `y[n, co, o] = bias[co] + Σ_{ci ∈ group(co), k} x[n, ci, o·s − p + k·d]·w[co, ci − g·C_in/groups, k]`,
/// `L_out = ⌊(L + 2p − d(K − 1) − 1)/s⌋ + 1`. Runs on the 2-D kernels with height 1.
///
/// Shapes: input `[N, C_in, L]`, weight `[C_out, C_in/groups, K]`, bias `[C_out]`, output `[N, C_out, L_out]`.
/// - Throws: `TensorError` naming `conv1d` (see `conv2d`).
public func conv1d(_ input: Tensor, weight: Tensor, bias: Tensor? = nil, stride: Int = 1,
                   padding: ConvolutionPadding = 0, dilation: Int = 1, groups: Int = 1) throws -> Tensor {
    let plan = try ConvPlan(op: "conv1d", input: input, weight: weight, bias: bias, stride: SpatialSize(stride),
                            padding: padding, dilation: SpatialSize(dilation), groups: groups, dimensions: 1)
    let output = try plan.forward(input, weight: weight, bias: bias)
    return output.recording([input, weight] + (bias.map { [$0] } ?? [])) {
        [x = input.detached(), w = weight.detached(), b = bias?.detached()] g in
        let r = try conv1dBackward(g, input: x, weight: w, bias: b, stride: stride, padding: padding,
                                   dilation: dilation, groups: groups)
        return [r.input, r.weight, r.bias]
    }
}

/// The gradients of `conv1d` (the formulas of `conv2dBackward` with height 1).
///
/// Shapes: outputGradient `[N, C_out, L_out]`; input, weight and bias as the forward's.
/// - Throws: `TensorError` naming `conv1dBackward` for inconsistent shapes, backends or hyperparameters.
public func conv1dBackward(_ outputGradient: Tensor, input: Tensor, weight: Tensor, bias: Tensor? = nil,
                           stride: Int = 1, padding: ConvolutionPadding = 0, dilation: Int = 1,
                           groups: Int = 1) throws -> ConvolutionGradients {
    let plan = try ConvPlan(op: "conv1dBackward", input: input, weight: weight, bias: bias, stride: SpatialSize(stride),
                            padding: padding, dilation: SpatialSize(dilation), groups: groups, dimensions: 1)
    return try plan.backward(outputGradient, input: input, weight: weight, bias: bias)
}

// MARK: - convTranspose2d

/// 2-D transposed convolution, as `torch.nn.functional.conv_transpose2d`: the input gradient of the
/// `conv2d` that maps `[N, C_out, OH, OW]` to `[N, C_in, H, W]` with the same weight,
/// `y[n, co, ih, iw] = bias[co] + Σ x[n, ci, oh, ow]·w[ci, co − g·C_out/groups, kh, kw]` over
/// `ih = oh·s_h − p_h + kh·d_h`, `iw = ow·s_w − p_w + kw·d_w`, and
/// `OH = (H − 1)·s_h − 2p_h + d_h(kH − 1) + outputPadding_h + 1` (likewise OW).
///
/// Shapes: input `[N, C_in, H, W]`, weight `[C_in, C_out/groups, kH, kW]` (PyTorch's layout),
/// bias `[C_out]`, output `[N, C_out, OH, OW]`.
/// - Parameters:
///   - outputPadding: extra rows/columns on the bottom/right, each < max(stride, dilation).
/// - Throws: `TensorError` naming `convTranspose2d` for bad shapes, backends or hyperparameters.
public func convTranspose2d(_ input: Tensor, weight: Tensor, bias: Tensor? = nil, stride: SpatialSize = 1,
                            padding: SpatialSize = 0, outputPadding: SpatialSize = 0, dilation: SpatialSize = 1,
                            groups: Int = 1) throws -> Tensor {
    let plan = try ConvTransposePlan(op: "convTranspose2d", input: input, weight: weight, bias: bias, stride: stride,
                                     padding: padding, outputPadding: outputPadding, dilation: dilation, groups: groups)
    let output = try Tensor.empty(plan.outputShape, on: input.backend)
    if output.count > 0 {
        try input.backend.convolution2DBackwardInput(plan.descriptor, outputGradient: input.storage.buffer,
                                                     weight: weight.storage.buffer, bias: bias?.storage.buffer,
                                                     inputGradient: output.storage.buffer)
    }
    return output.recording([input, weight] + (bias.map { [$0] } ?? [])) {
        [x = input.detached(), w = weight.detached(), b = bias?.detached()] g in
        let r = try convTranspose2dBackward(g, input: x, weight: w, bias: b, stride: stride, padding: padding,
                                            outputPadding: outputPadding, dilation: dilation, groups: groups)
        return [r.input, r.weight, r.bias]
    }
}

/// The gradients of `convTranspose2d` given `g = ∂L/∂y`: `∂L/∂x = conv2d(g, w)` (same stride, padding,
/// dilation, groups), `∂L/∂w[ci, cog, kh, kw] = Σ_{n, oh, ow} x[n, ci, oh, ow]·g[n, g·C_out/groups + cog, ih, iw]`,
/// `∂L/∂bias[co] = Σ_{n, ih, iw} g[n, co, ih, iw]`.
///
/// Shapes: outputGradient `[N, C_out, OH, OW]` (the forward's output); the rest as the forward's.
/// - Throws: `TensorError` naming `convTranspose2dBackward` for inconsistent shapes, backends or hyperparameters.
public func convTranspose2dBackward(_ outputGradient: Tensor, input: Tensor, weight: Tensor, bias: Tensor? = nil,
                                    stride: SpatialSize = 1, padding: SpatialSize = 0,
                                    outputPadding: SpatialSize = 0, dilation: SpatialSize = 1,
                                    groups: Int = 1) throws -> ConvolutionGradients {
    let op = "convTranspose2dBackward"
    let plan = try ConvTransposePlan(op: op, input: input, weight: weight, bias: bias, stride: stride,
                                     padding: padding, outputPadding: outputPadding, dilation: dilation, groups: groups)
    try checkGradient(outputGradient, shape: plan.outputShape, input: input, op: op)
    let backend = input.backend
    let dx = try Tensor.empty(input.shape, on: backend)
    let dw = try Tensor.empty(weight.shape, on: backend)
    let d = plan.descriptor
    if d.batch == 0 {
        try backend.fill(dw.storage.buffer, value: 0, count: dw.count)
    } else {
        try backend.convolution2DForward(d, input: outputGradient.storage.buffer, weight: weight.storage.buffer,
                                         bias: nil, output: dx.storage.buffer)
        try backend.convolution2DBackwardWeight(d, outputGradient: input.storage.buffer,
                                                input: outputGradient.storage.buffer, weightGradient: dw.storage.buffer)
    }
    let db = bias == nil ? nil : try outputGradient.sum(alongAxes: [0, 2, 3])
    return ConvolutionGradients(input: dx, weight: dw, bias: db)
}

// MARK: - Validation and dispatch

/// Throws unless `gradient` has `shape` and lives on `input`'s backend.
private func checkGradient(_ gradient: Tensor, shape: [Int], input: Tensor, op: String) throws {
    try input.requireSameBackend([gradient], op: op)
    guard gradient.shape == shape else {
        throw TensorError(.shapeMismatch, op: op, "outputGradient must have the forward output's shape \(shape), got \(gradient.shape)")
    }
}

/// Throws unless input `[N, C_in, *spatial]` and weight `[C_out, C_in/groups, *kernel]` have rank
/// `2 + dimensions`, positive channel and spatial sizes, and groups dividing both channel counts.
private func checkConvolutionOperands(op: String, input: Tensor, weight: Tensor, bias: Tensor?, groups: Int,
                                      dimensions: Int, inputChannels: Int, weightInputChannels: Int,
                                      outputChannels: Int) throws {
    try input.requireSameBackend([weight] + (bias.map { [$0] } ?? []), op: op)
    guard groups >= 1 else {
        throw TensorError(.invalidArgument, op: op, "groups must be ≥ 1, got \(groups)")
    }
    guard input.shape.dropFirst().allSatisfy({ $0 >= 1 }), weight.shape.allSatisfy({ $0 >= 1 }) else {
        throw TensorError(.invalidArgument, op: op,
                          "needs channel, spatial and kernel sizes ≥ 1, got input \(input.shape) and weight \(weight.shape)")
    }
    guard inputChannels % groups == 0, outputChannels % groups == 0 else {
        throw TensorError(.invalidArgument, op: op,
                          "groups \(groups) must divide the input channels \(inputChannels) and the output channels \(outputChannels)")
    }
    guard weightInputChannels * groups == inputChannels else {
        throw TensorError(.shapeMismatch, op: op,
                          "weight \(weight.shape) expects \(weightInputChannels * groups) input channels (\(weightInputChannels) per group × \(groups) groups), input \(input.shape) has \(inputChannels)")
    }
    if let bias, bias.shape != [outputChannels] {
        throw TensorError(.shapeMismatch, op: op, "bias must have shape [\(outputChannels)], got \(bias.shape)")
    }
}

/// A validated convolution: the kernel descriptor and the output shape.
private struct ConvPlan {
    let op: String
    let descriptor: Convolution2DDescriptor
    let outputShape: [Int]

    init(op: String, input: Tensor, weight: Tensor, bias: Tensor?, stride: SpatialSize, padding: ConvolutionPadding,
         dilation: SpatialSize, groups: Int, dimensions: Int) throws {
        let rank = dimensions + 2
        guard input.rank == rank, weight.rank == rank else {
            let layout = dimensions == 1 ? "[N, C, L]" : "[N, C, H, W]"
            throw TensorError(.shapeMismatch, op: op,
                              "needs an input \(layout) and a weight of rank \(rank), got input \(input.shape) and weight \(weight.shape)")
        }
        try checkConvolutionOperands(op: op, input: input, weight: weight, bias: bias, groups: groups,
                                     dimensions: dimensions, inputChannels: input.shape[1],
                                     weightInputChannels: weight.shape[1], outputChannels: weight.shape[0])
        let s = try stride.expanded(to: dimensions, op: op, name: "stride", minimum: 1)
        let dl = try dilation.expanded(to: dimensions, op: op, name: "dilation", minimum: 1)
        let spatial = Array(input.shape.suffix(dimensions)), kernel = Array(weight.shape.suffix(dimensions))
        var before = [Int](repeating: 0, count: dimensions), after = before
        switch padding {
        case .valid: break
        case .explicit(let p):
            before = try p.expanded(to: dimensions, op: op, name: "padding", minimum: 0)
            after = before
        case .same:
            guard s.allSatisfy({ $0 == 1 }) else {
                throw TensorError(.invalidArgument, op: op, "padding \"same\" needs stride 1, got stride \(stride)")
            }
            for i in 0..<dimensions {
                let total = dl[i] * (kernel[i] - 1)
                before[i] = total / 2
                after[i] = total - total / 2
            }
        }
        var out = [Int]()
        for i in 0..<dimensions {
            let o = outputLength(spatial[i], kernel[i], s[i], before[i], after[i], dl[i], false)
            guard o >= 1 else {
                throw TensorError(.invalidArgument, op: op,
                                  "the dilated kernel \(kernel) (dilation \(dl)) is larger than the padded input \(spatial) (padding \(before)/\(after))")
            }
            out.append(o)
        }
        // 1-D runs as 2-D with height 1.
        let h = dimensions == 2 ? 0 : -1
        func at(_ a: [Int], _ i: Int, _ one: Int) -> Int { i < 0 ? one : a[i] }
        self.op = op
        descriptor = Convolution2DDescriptor(
            batch: input.shape[0], inputChannels: input.shape[1], inputHeight: at(spatial, h, 1),
            inputWidth: spatial[dimensions - 1], outputChannels: weight.shape[0], outputHeight: at(out, h, 1),
            outputWidth: out[dimensions - 1], kernelHeight: at(kernel, h, 1), kernelWidth: kernel[dimensions - 1],
            strideHeight: at(s, h, 1), strideWidth: s[dimensions - 1], padTop: at(before, h, 0),
            padLeft: before[dimensions - 1], dilationHeight: at(dl, h, 1), dilationWidth: dl[dimensions - 1],
            groups: groups)
        outputShape = [input.shape[0], weight.shape[0]] + out
    }

    func forward(_ input: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
        let output = try Tensor.empty(outputShape, on: input.backend)
        if output.count > 0 {
            try input.backend.convolution2DForward(descriptor, input: input.storage.buffer, weight: weight.storage.buffer,
                                                   bias: bias?.storage.buffer, output: output.storage.buffer)
        }
        return output
    }

    func backward(_ outputGradient: Tensor, input: Tensor, weight: Tensor, bias: Tensor?) throws -> ConvolutionGradients {
        try checkGradient(outputGradient, shape: outputShape, input: input, op: op)
        let backend = input.backend
        let dx = try Tensor.empty(input.shape, on: backend)
        let dw = try Tensor.empty(weight.shape, on: backend)
        if descriptor.batch == 0 {
            try backend.fill(dw.storage.buffer, value: 0, count: dw.count)
        } else {
            try backend.convolution2DBackwardInput(descriptor, outputGradient: outputGradient.storage.buffer,
                                                   weight: weight.storage.buffer, bias: nil, inputGradient: dx.storage.buffer)
            try backend.convolution2DBackwardWeight(descriptor, outputGradient: outputGradient.storage.buffer,
                                                    input: input.storage.buffer, weightGradient: dw.storage.buffer)
        }
        let axes = outputShape.count == 3 ? [0, 2] : [0, 2, 3]
        let db = bias == nil ? nil : try outputGradient.sum(alongAxes: axes)
        return ConvolutionGradients(input: dx, weight: dw, bias: db)
    }
}

/// A validated transposed convolution, as the descriptor of the convolution it transposes.
private struct ConvTransposePlan {
    let descriptor: Convolution2DDescriptor
    let outputShape: [Int]

    init(op: String, input: Tensor, weight: Tensor, bias: Tensor?, stride: SpatialSize, padding: SpatialSize,
         outputPadding: SpatialSize, dilation: SpatialSize, groups: Int) throws {
        guard input.rank == 4, weight.rank == 4 else {
            throw TensorError(.shapeMismatch, op: op,
                              "needs an input [N, C_in, H, W] and a weight [C_in, C_out/groups, kH, kW], got input \(input.shape) and weight \(weight.shape)")
        }
        guard groups >= 1 else { throw TensorError(.invalidArgument, op: op, "groups must be ≥ 1, got \(groups)") }
        let outputChannels = weight.shape[1] * groups
        // The transposed weight's first axis is the input channels: check it as a convolution from
        // C_out to C_in would be (weight [C_in, C_out/groups, kH, kW]).
        guard weight.shape[0] == input.shape[1] else {
            throw TensorError(.shapeMismatch, op: op,
                              "weight \(weight.shape) must have \(input.shape[1]) (the input channels) as its first dimension")
        }
        try input.requireSameBackend(bias.map { [$0] } ?? [], op: op)
        try checkConvolutionOperands(op: op, input: input, weight: weight, bias: nil, groups: groups, dimensions: 2,
                                     inputChannels: outputChannels, weightInputChannels: weight.shape[1],
                                     outputChannels: input.shape[1])
        if let bias, bias.shape != [outputChannels] {
            throw TensorError(.shapeMismatch, op: op, "bias must have shape [\(outputChannels)], got \(bias.shape)")
        }
        let s = try stride.expanded(to: 2, op: op, name: "stride", minimum: 1)
        let p = try padding.expanded(to: 2, op: op, name: "padding", minimum: 0)
        let op2 = try outputPadding.expanded(to: 2, op: op, name: "outputPadding", minimum: 0)
        let dl = try dilation.expanded(to: 2, op: op, name: "dilation", minimum: 1)
        var out = [Int]()
        for i in 0..<2 {
            guard op2[i] < Swift.max(s[i], dl[i]) else {
                throw TensorError(.invalidArgument, op: op,
                                  "outputPadding \(outputPadding) must be smaller than the stride \(stride) or the dilation \(dilation)")
            }
            let o = (input.shape[2 + i] - 1) * s[i] - 2 * p[i] + dl[i] * (weight.shape[2 + i] - 1) + op2[i] + 1
            guard o >= 1 else {
                throw TensorError(.invalidArgument, op: op, "the output size \(o) is below 1 (input \(input.shape), padding \(padding))")
            }
            out.append(o)
        }
        descriptor = Convolution2DDescriptor(
            batch: input.shape[0], inputChannels: outputChannels, inputHeight: out[0], inputWidth: out[1],
            outputChannels: input.shape[1], outputHeight: input.shape[2], outputWidth: input.shape[3],
            kernelHeight: weight.shape[2], kernelWidth: weight.shape[3], strideHeight: s[0], strideWidth: s[1],
            padTop: p[0], padLeft: p[1], dilationHeight: dl[0], dilationWidth: dl[1], groups: groups)
        outputShape = [input.shape[0], outputChannels] + out
    }
}
