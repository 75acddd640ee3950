/// Max, average, adaptive and global pooling over the last two dimensions of `[N, C, H, W]`, with
/// PyTorch's semantics and defaults (stride = kernel size), and their backward passes as public
/// functions (what autograd will call). Kernels: `PoolingKernels` (one pass over the input per output;
/// backward passes gather, so no output element is written twice).

/// A max pooling's output and the position of each maximum.
public struct MaxPoolOutput: Sendable {
    /// The pooled tensor `[N, C, OH, OW]`.
    public let output: Tensor
    /// For each output, the flat index `ih·W + iw` of its maximum within its input plane, stored as
    /// Float32 (exact: planes are limited to 2²⁴ elements), as PyTorch's `return_indices`.
    public let indices: Tensor
}

// MARK: - Max pooling

/// 2-D max pooling, as `torch.nn.functional.max_pool2d`:
/// `y[n, c, oh, ow] = max_{i < kH, j < kW} x[n, c, oh·s_h − p_h + i·d_h, ow·s_w − p_w + j·d_w]` over the taps
/// inside the input (padding never wins), NaN propagating;
/// `OH = ⌊(H + 2p_h − d_h(kH − 1) − 1)/s_h⌋ + 1` (⌈⌉ with `ceilMode`, the last window starting inside the
/// input or its left padding).
///
/// Shapes: input `[N, C, H, W]`, output `[N, C, OH, OW]`.
/// - Parameters:
///   - stride: nil (the default) is the kernel size, as PyTorch.
///   - padding: ≥ 0 and at most half the kernel size.
/// - Throws: `TensorError` naming `maxPool2d` for a bad rank or hyperparameter, or an empty output.
public func maxPool2d(_ input: Tensor, kernelSize: SpatialSize, stride: SpatialSize? = nil, padding: SpatialSize = 0,
                      dilation: SpatialSize = 1, ceilMode: Bool = false) throws -> Tensor {
    try maxPool2dWithIndices(input, kernelSize: kernelSize, stride: stride, padding: padding, dilation: dilation,
                             ceilMode: ceilMode).output
}

/// `maxPool2d` returning also the index of each maximum (what `maxPool2dBackward` needs).
public func maxPool2dWithIndices(_ input: Tensor, kernelSize: SpatialSize, stride: SpatialSize? = nil,
                                 padding: SpatialSize = 0, dilation: SpatialSize = 1,
                                 ceilMode: Bool = false) throws -> MaxPoolOutput {
    let d = try poolDescriptor(op: "maxPool2d", mode: .max, shape: input.shape, kernelSize: kernelSize, stride: stride,
                               padding: padding, dilation: dilation, ceilMode: ceilMode, countIncludePad: true)
    return try poolForward(input, d)
}

/// The gradient of max pooling: `∂L/∂x[n, c, e] = Σ g[n, c, o]` over the outputs o whose maximum is
/// element e (`indices[n, c, o] = e`); zero elsewhere.
///
/// Shapes: outputGradient and indices `[N, C, OH, OW]` (the forward's); `inputShape` `[N, C, H, W]`.
/// The hyperparameters must be the forward's.
/// - Throws: `TensorError` naming `maxPool2dBackward` for inconsistent shapes, backends or hyperparameters.
public func maxPool2dBackward(_ outputGradient: Tensor, indices: Tensor, inputShape: [Int], kernelSize: SpatialSize,
                              stride: SpatialSize? = nil, padding: SpatialSize = 0, dilation: SpatialSize = 1,
                              ceilMode: Bool = false) throws -> Tensor {
    let op = "maxPool2dBackward"
    let d = try poolDescriptor(op: op, mode: .max, shape: inputShape, kernelSize: kernelSize, stride: stride,
                               padding: padding, dilation: dilation, ceilMode: ceilMode, countIncludePad: true)
    return try poolBackward(op: op, outputGradient, indices: indices, inputShape: inputShape, d)
}

// MARK: - Average pooling

/// 2-D average pooling, as `torch.nn.functional.avg_pool2d`:
/// `y[n, c, oh, ow] = (Σ_{taps inside the input} x)/divisor`, the divisor being the window clipped to
/// the padded input `[−p, H + p)` with `countIncludePad` (PyTorch's default), else the number of taps
/// inside the input. Output size as `maxPool2d` (no dilation).
///
/// Shapes: input `[N, C, H, W]`, output `[N, C, OH, OW]`.
/// - Throws: `TensorError` naming `avgPool2d` for a bad rank or hyperparameter, or an empty output.
public func avgPool2d(_ input: Tensor, kernelSize: SpatialSize, stride: SpatialSize? = nil, padding: SpatialSize = 0,
                      ceilMode: Bool = false, countIncludePad: Bool = true) throws -> Tensor {
    let d = try poolDescriptor(op: "avgPool2d", mode: .average, shape: input.shape, kernelSize: kernelSize,
                               stride: stride, padding: padding, dilation: 1, ceilMode: ceilMode,
                               countIncludePad: countIncludePad)
    return try poolForward(input, d).output
}

/// The gradient of average pooling: `∂L/∂x[e] = Σ g[o]/divisor(o)` over the outputs o whose window holds e.
///
/// Shapes: outputGradient `[N, C, OH, OW]`; `inputShape` `[N, C, H, W]`; hyperparameters as the forward's.
/// - Throws: `TensorError` naming `avgPool2dBackward` for inconsistent shapes or hyperparameters.
public func avgPool2dBackward(_ outputGradient: Tensor, inputShape: [Int], kernelSize: SpatialSize,
                              stride: SpatialSize? = nil, padding: SpatialSize = 0, ceilMode: Bool = false,
                              countIncludePad: Bool = true) throws -> Tensor {
    let op = "avgPool2dBackward"
    let d = try poolDescriptor(op: op, mode: .average, shape: inputShape, kernelSize: kernelSize, stride: stride,
                               padding: padding, dilation: 1, ceilMode: ceilMode, countIncludePad: countIncludePad)
    return try poolBackward(op: op, outputGradient, indices: nil, inputShape: inputShape, d)
}

// MARK: - Adaptive and global pooling

/// Adaptive average pooling, as `torch.nn.functional.adaptive_avg_pool2d`: output row `oh` averages
/// input rows `⌊oh·H/OH⌋ ..< ⌈(oh+1)·H/OH⌉` (columns likewise).
///
/// Shapes: input `[N, C, H, W]`, output `[N, C, OH, OW]` with `outputSize` `[OH, OW]` (or one value).
/// - Throws: `TensorError` naming `adaptiveAvgPool2d` for a bad rank or an output size below 1.
public func adaptiveAvgPool2d(_ input: Tensor, outputSize: SpatialSize) throws -> Tensor {
    let d = try adaptiveDescriptor(op: "adaptiveAvgPool2d", mode: .average, shape: input.shape, outputSize: outputSize)
    return try poolForward(input, d).output
}

/// The gradient of adaptive average pooling: each output's gradient spread evenly over its window.
///
/// Shapes: outputGradient `[N, C, OH, OW]` (its last two sizes are the forward's `outputSize`);
/// `inputShape` `[N, C, H, W]`.
/// - Throws: `TensorError` naming `adaptiveAvgPool2dBackward` for inconsistent shapes.
public func adaptiveAvgPool2dBackward(_ outputGradient: Tensor, inputShape: [Int]) throws -> Tensor {
    let op = "adaptiveAvgPool2dBackward"
    let size = SpatialSize(Array(outputGradient.shape.suffix(2)))
    let d = try adaptiveDescriptor(op: op, mode: .average, shape: inputShape, outputSize: size)
    return try poolBackward(op: op, outputGradient, indices: nil, inputShape: inputShape, d)
}

/// Adaptive max pooling, as `torch.nn.functional.adaptive_max_pool2d`: the maximum over the adaptive
/// windows of `adaptiveAvgPool2d`, NaN propagating.
/// - Throws: `TensorError` naming `adaptiveMaxPool2d` for a bad rank or an output size below 1.
public func adaptiveMaxPool2d(_ input: Tensor, outputSize: SpatialSize) throws -> Tensor {
    try adaptiveMaxPool2dWithIndices(input, outputSize: outputSize).output
}

/// `adaptiveMaxPool2d` returning also the index of each maximum within its input plane.
public func adaptiveMaxPool2dWithIndices(_ input: Tensor, outputSize: SpatialSize) throws -> MaxPoolOutput {
    let d = try adaptiveDescriptor(op: "adaptiveMaxPool2d", mode: .max, shape: input.shape, outputSize: outputSize)
    return try poolForward(input, d)
}

/// The gradient of adaptive max pooling (as `maxPool2dBackward`, given the forward's indices).
/// - Throws: `TensorError` naming `adaptiveMaxPool2dBackward` for inconsistent shapes or backends.
public func adaptiveMaxPool2dBackward(_ outputGradient: Tensor, indices: Tensor, inputShape: [Int]) throws -> Tensor {
    let op = "adaptiveMaxPool2dBackward"
    let size = SpatialSize(Array(outputGradient.shape.suffix(2)))
    let d = try adaptiveDescriptor(op: op, mode: .max, shape: inputShape, outputSize: size)
    return try poolBackward(op: op, outputGradient, indices: indices, inputShape: inputShape, d)
}

/// Global average pooling: `y[n, c, 0, 0] = mean_{h, w} x[n, c, h, w]` (`adaptiveAvgPool2d` to 1×1,
/// PyTorch's `AdaptiveAvgPool2d(1)`). Shapes: input `[N, C, H, W]`, output `[N, C, 1, 1]`.
/// - Throws: `TensorError` naming `adaptiveAvgPool2d` for a bad rank.
public func globalAvgPool2d(_ input: Tensor) throws -> Tensor {
    try adaptiveAvgPool2d(input, outputSize: 1)
}

/// The gradient of global average pooling: `∂L/∂x[n, c, h, w] = g[n, c, 0, 0]/(H·W)`.
/// - Throws: `TensorError` naming `adaptiveAvgPool2dBackward` for inconsistent shapes.
public func globalAvgPool2dBackward(_ outputGradient: Tensor, inputShape: [Int]) throws -> Tensor {
    try adaptiveAvgPool2dBackward(outputGradient, inputShape: inputShape)
}

// MARK: - Validation and dispatch

/// Throws unless `shape` is `[N, C, H, W]` with H, W ≥ 1 and N, C ≥ 0, planes within Float32 indices.
private func checkPoolInput(_ shape: [Int], op: String) throws {
    guard shape.count == 4, shape[0] >= 0, shape[1] >= 0, shape[2] >= 1, shape[3] >= 1 else {
        throw TensorError(.shapeMismatch, op: op, "needs an input [N, C, H, W] with H, W ≥ 1, got shape \(shape)")
    }
    guard shape[2] * shape[3] <= 1 << 24 else {
        throw TensorError(.invalidArgument, op: op,
                          "a plane of \(shape[2])×\(shape[3]) exceeds 2^24 elements (indices are stored as Float32)")
    }
}

private func poolDescriptor(op: String, mode: Pooling2DDescriptor.Mode, shape: [Int], kernelSize: SpatialSize,
                            stride: SpatialSize?, padding: SpatialSize, dilation: SpatialSize, ceilMode: Bool,
                            countIncludePad: Bool) throws -> Pooling2DDescriptor {
    try checkPoolInput(shape, op: op)
    let k = try kernelSize.expanded(to: 2, op: op, name: "kernelSize", minimum: 1)
    let s = try (stride ?? kernelSize).expanded(to: 2, op: op, name: "stride", minimum: 1)
    let p = try padding.expanded(to: 2, op: op, name: "padding", minimum: 0)
    let dl = try dilation.expanded(to: 2, op: op, name: "dilation", minimum: 1)
    guard p[0] <= k[0] / 2, p[1] <= k[1] / 2 else {
        throw TensorError(.invalidArgument, op: op, "padding \(padding) must be at most half the kernel size \(kernelSize)")
    }
    let oh = outputLength(shape[2], k[0], s[0], p[0], p[0], dl[0], ceilMode)
    let ow = outputLength(shape[3], k[1], s[1], p[1], p[1], dl[1], ceilMode)
    guard oh >= 1, ow >= 1 else {
        throw TensorError(.invalidArgument, op: op,
                          "the output would be \(oh)×\(ow): kernel \(kernelSize) (dilation \(dilation)) does not fit input \(shape[2])×\(shape[3]) with padding \(padding)")
    }
    return Pooling2DDescriptor(mode: mode, planes: shape[0] * shape[1], inputHeight: shape[2], inputWidth: shape[3],
                               outputHeight: oh, outputWidth: ow, kernelHeight: k[0], kernelWidth: k[1],
                               strideHeight: s[0], strideWidth: s[1], padHeight: p[0], padWidth: p[1],
                               dilationHeight: dl[0], dilationWidth: dl[1], countIncludePad: countIncludePad)
}

private func adaptiveDescriptor(op: String, mode: Pooling2DDescriptor.Mode, shape: [Int],
                                outputSize: SpatialSize) throws -> Pooling2DDescriptor {
    try checkPoolInput(shape, op: op)
    let o = try outputSize.expanded(to: 2, op: op, name: "outputSize", minimum: 1)
    return Pooling2DDescriptor(mode: mode, adaptive: true, planes: shape[0] * shape[1], inputHeight: shape[2],
                               inputWidth: shape[3], outputHeight: o[0], outputWidth: o[1])
}

private func poolForward(_ input: Tensor, _ d: Pooling2DDescriptor) throws -> MaxPoolOutput {
    let shape = [input.shape[0], input.shape[1], d.outputHeight, d.outputWidth]
    let output = try Tensor.empty(shape, on: input.backend)
    let indices = try Tensor.empty(d.mode == .max ? shape : [0], on: input.backend)
    if d.planes > 0 {
        try input.backend.pooling2DForward(d, input: input.storage.buffer, output: output.storage.buffer,
                                           indices: d.mode == .max ? indices.storage.buffer : nil)
    }
    // The pullback is the pooling backward: a scatter through the kept indices (max) or the window
    // weights (average).
    let recorded = output.recording([input]) { [shape = input.shape, kept = indices] g in
        [try poolBackward(op: "pooling gradient", g, indices: d.mode == .max ? kept : nil, inputShape: shape, d)]
    }
    return MaxPoolOutput(output: recorded, indices: indices)
}

private func poolBackward(op: String, _ outputGradient: Tensor, indices: Tensor?, inputShape: [Int],
                          _ d: Pooling2DDescriptor) throws -> Tensor {
    let shape = [inputShape[0], inputShape[1], d.outputHeight, d.outputWidth]
    try outputGradient.requireSameBackend(indices.map { [$0] } ?? [], op: op)
    guard outputGradient.shape == shape else {
        throw TensorError(.shapeMismatch, op: op, "outputGradient must have shape \(shape), got \(outputGradient.shape)")
    }
    if let indices, indices.shape != shape {
        throw TensorError(.shapeMismatch, op: op, "indices must have shape \(shape), got \(indices.shape)")
    }
    let dx = try Tensor.empty(inputShape, on: outputGradient.backend)
    if d.planes > 0 {
        try outputGradient.backend.pooling2DBackward(d, outputGradient: outputGradient.storage.buffer,
                                                     indices: indices?.storage.buffer, inputGradient: dx.storage.buffer)
    }
    return dx
}
