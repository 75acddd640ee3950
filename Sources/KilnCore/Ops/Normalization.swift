/// Layer, RMS, group, batch, instance and local response normalization, with PyTorch's semantics
/// and defaults, and their backward passes as public functions, which autograd records as the ops'
/// pullbacks (for the input, and for weight and bias when given).
///
/// Every op validates its input once and dispatches to the backend's fused kernels
/// (`NormalizationKernels`): statistics in Float32 by the corrected two-pass algorithm (see there),
/// accurate on rows of a million elements and on inputs with a large offset.

/// The output of a normalization and the statistics its backward pass needs.
public struct NormalizationOutput: Sendable {
    /// The normalized tensor, shaped as the input.
    public let output: Tensor
    /// The mean μ each element was centred with (nil for `rmsNorm`). Shapes: layer norm
    /// `input.shape` with the normalized dimensions set to 1 (as PyTorch); group norm `[N, groups]`;
    /// batch norm `[C]`; instance norm `[N, C]`.
    public let mean: Tensor?
    /// σ = 1/√(var + eps) (RMS: 1/√(mean(x²) + eps)), shaped as `mean`.
    public let inverseStandardDeviation: Tensor
    /// Batch and instance norm in training with running statistics: the updated running mean
    /// `(1 − momentum)·runningMean + momentum·μ` (the inputs are immutable, so this is a new tensor).
    public let runningMean: Tensor?
    /// The updated running variance `(1 − momentum)·runningVariance + momentum·var_unbiased`.
    public let runningVariance: Tensor?

    /// Bundles an output with its statistics (what the normalization ops return).
    public init(output: Tensor, mean: Tensor?, inverseStandardDeviation: Tensor, runningMean: Tensor? = nil,
                runningVariance: Tensor? = nil) {
        self.output = output
        self.mean = mean
        self.inverseStandardDeviation = inverseStandardDeviation
        self.runningMean = runningMean
        self.runningVariance = runningVariance
    }
}

/// The gradients a normalization's backward pass returns.
public struct NormalizationGradients: Sendable {
    /// ∂L/∂input, shaped as the input.
    public let input: Tensor
    /// ∂L/∂weight, shaped as the weight; nil when the forward had no weight.
    public let weight: Tensor?
    /// ∂L/∂bias, shaped as the bias; nil when the forward had no bias.
    public let bias: Tensor?
}

// MARK: - Layer norm

/// Layer normalization over the trailing dimensions `normalizedShape`, as `torch.nn.functional.layer_norm`:
/// `y = (x − μ)/√(var + eps)·weight + bias`, μ and the biased var taken over the last
/// `normalizedShape.count` dimensions of each row.
///
/// Shapes: input `[*, normalizedShape...]`, weight and bias `normalizedShape` (each optional).
/// Accumulates in Float32 (corrected two-pass); agrees with a Float64 reference within ~1e-5.
/// - Parameters:
///   - normalizedShape: the trailing dimensions to normalize over (at least one).
///   - eps: added to the variance; finite and ≥ 0 (PyTorch's default 1e-5).
/// - Returns: the normalized tensor, shaped as `input`.
/// - Throws: `TensorError` naming `layerNorm` for a shape that does not end in `normalizedShape`,
///   parameters of another shape or backend, or a NaN, infinite or negative eps.
public func layerNorm(_ input: Tensor, normalizedShape: [Int], weight: Tensor? = nil, bias: Tensor? = nil,
                      eps: Float = 1e-5) throws -> Tensor {
    try layerNormWithStatistics(input, normalizedShape: normalizedShape, weight: weight, bias: bias, eps: eps).output
}

/// `layerNorm` returning also the per-row mean μ and σ = 1/√(var + eps) (shape: `input.shape` with
/// the normalized dimensions set to 1), which `layerNormBackward` needs.
public func layerNormWithStatistics(_ input: Tensor, normalizedShape: [Int], weight: Tensor? = nil,
                                    bias: Tensor? = nil, eps: Float = 1e-5) throws -> NormalizationOutput {
    let plan = try RowNormPlan(op: "layerNorm", kind: .layer, input: input, normalizedShape: normalizedShape,
                               weight: weight, bias: bias, eps: eps)
    return try plan.forward(input, weight: weight, bias: bias)
}

/// The gradients of a scalar loss with respect to layer norm's input, weight and bias, given the
/// loss's gradient g = ∂L/∂y and the forward's `mean` and `inverseStandardDeviation` σ:
/// with `x̂ = (x − μ)·σ`, `ĝ = g·weight` and means over the n normalized elements of a row,
/// `∂L/∂x = σ·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))`, `∂L/∂weight = Σ_rows g·x̂`, `∂L/∂bias = Σ_rows g`.
///
/// Shapes: outputGradient as input `[*, normalizedShape...]`; mean and σ one value per row (any shape
/// with that many elements); weight and bias `normalizedShape` (pass the forward's, to get their
/// gradients). The exact mean is recomputed from the input with `mean` as the shift.
/// - Throws: `TensorError` naming `layerNormBackward` for inconsistent shapes or backends.
public func layerNormBackward(_ outputGradient: Tensor, input: Tensor, normalizedShape: [Int], mean: Tensor,
                              inverseStandardDeviation: Tensor, weight: Tensor? = nil,
                              bias: Tensor? = nil) throws -> NormalizationGradients {
    let plan = try RowNormPlan(op: "layerNormBackward", kind: .layer, input: input, normalizedShape: normalizedShape,
                               weight: weight, bias: bias, eps: 0)
    return try plan.backward(outputGradient, input: input, mean: mean, inverseStandardDeviation: inverseStandardDeviation,
                             weight: weight, bias: bias)
}

// MARK: - RMS norm

/// RMS normalization over the trailing dimensions, as `torch.nn.functional.rms_norm`:
/// `y = x/√(mean(x²) + eps)·weight`, the mean taken over the last `normalizedShape.count` dimensions.
///
/// Shapes: input `[*, normalizedShape...]`, weight `normalizedShape` (optional). No bias, as PyTorch.
/// - Parameters:
///   - eps: nil (the default) uses Float32's machine epsilon 2⁻²³ ≈ 1.19e-7, as PyTorch's `eps=None`.
/// - Throws: `TensorError` naming `rmsNorm` for bad shapes, backends or eps.
public func rmsNorm(_ input: Tensor, normalizedShape: [Int], weight: Tensor? = nil, eps: Float? = nil) throws -> Tensor {
    try rmsNormWithStatistics(input, normalizedShape: normalizedShape, weight: weight, eps: eps).output
}

/// `rmsNorm` returning also σ = 1/√(mean(x²) + eps) per row (shape: `input.shape` with the
/// normalized dimensions set to 1); `mean` is nil.
public func rmsNormWithStatistics(_ input: Tensor, normalizedShape: [Int], weight: Tensor? = nil,
                                  eps: Float? = nil) throws -> NormalizationOutput {
    let plan = try RowNormPlan(op: "rmsNorm", kind: .rms, input: input, normalizedShape: normalizedShape,
                               weight: weight, bias: nil, eps: eps ?? Float.ulpOfOne)
    return try plan.forward(input, weight: weight, bias: nil)
}

/// The gradients of RMS norm: with `x̂ = x·σ`, `ĝ = g·weight`, means over the n normalized elements,
/// `∂L/∂x = σ·(ĝ − x̂·mean(ĝ·x̂))` and `∂L/∂weight = Σ_rows g·x̂`.
///
/// Shapes as `layerNormBackward`; `inverseStandardDeviation` is the forward's σ.
/// - Throws: `TensorError` naming `rmsNormBackward` for inconsistent shapes or backends.
public func rmsNormBackward(_ outputGradient: Tensor, input: Tensor, normalizedShape: [Int],
                            inverseStandardDeviation: Tensor, weight: Tensor? = nil) throws -> NormalizationGradients {
    let plan = try RowNormPlan(op: "rmsNormBackward", kind: .rms, input: input, normalizedShape: normalizedShape,
                               weight: weight, bias: nil, eps: 0)
    return try plan.backward(outputGradient, input: input, mean: nil, inverseStandardDeviation: inverseStandardDeviation,
                             weight: weight, bias: nil)
}

// MARK: - Group norm

/// Group normalization, as `torch.nn.functional.group_norm`: the C channels of `[N, C, *]` are split
/// into `groups` groups of C/groups consecutive channels; each (sample, group) is normalized over all
/// its elements, `y = (x − μ)/√(var + eps)·weight[c] + bias[c]` (biased var).
///
/// Shapes: input `[N, C, *]` (rank ≥ 2), weight and bias `[C]` (each optional).
/// - Throws: `TensorError` naming `groupNorm` when `groups` < 1 or does not divide C, for parameters
///   of another shape or backend, or a bad eps.
public func groupNorm(_ input: Tensor, groups: Int, weight: Tensor? = nil, bias: Tensor? = nil,
                      eps: Float = 1e-5) throws -> Tensor {
    try groupNormWithStatistics(input, groups: groups, weight: weight, bias: bias, eps: eps).output
}

/// `groupNorm` returning also μ and σ per (sample, group), shaped `[N, groups]`.
public func groupNormWithStatistics(_ input: Tensor, groups: Int, weight: Tensor? = nil, bias: Tensor? = nil,
                                    eps: Float = 1e-5) throws -> NormalizationOutput {
    let plan = try RowNormPlan(op: "groupNorm", input: input, groups: groups, weight: weight, bias: bias, eps: eps)
    return try plan.forward(input, weight: weight, bias: bias)
}

/// The gradients of group norm: within each (sample, group) of n = (C/groups)·spatial elements,
/// with `x̂ = (x − μ)·σ` and `ĝ = g·weight[c]`, `∂L/∂x = σ·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))`;
/// `∂L/∂weight[c] = Σ_{n, spatial} g·x̂`, `∂L/∂bias[c] = Σ_{n, spatial} g`.
///
/// Shapes: outputGradient as input `[N, C, *]`; mean and σ `N·groups` values (the forward's).
/// - Throws: `TensorError` naming `groupNormBackward` for inconsistent shapes or backends.
public func groupNormBackward(_ outputGradient: Tensor, input: Tensor, groups: Int, mean: Tensor,
                              inverseStandardDeviation: Tensor, weight: Tensor? = nil,
                              bias: Tensor? = nil) throws -> NormalizationGradients {
    let plan = try RowNormPlan(op: "groupNormBackward", input: input, groups: groups, weight: weight, bias: bias, eps: 0)
    return try plan.backward(outputGradient, input: input, mean: mean, inverseStandardDeviation: inverseStandardDeviation,
                             weight: weight, bias: bias)
}

// MARK: - Batch norm

/// Batch normalization, as `torch.nn.functional.batch_norm`, over the channels of `[N, C, *]`:
/// `y = (x − μ_c)/√(var_c + eps)·weight[c] + bias[c]`.
///
/// Training: μ_c and the biased var_c over the N·spatial elements of channel c; when running
/// statistics are given they are updated as PyTorch does, `runningMean' = (1 − momentum)·runningMean
/// + momentum·μ` and `runningVariance' = (1 − momentum)·runningVariance + momentum·var·M/(M − 1)`
/// (unbiased, M = N·spatial), and returned as new tensors. Inference (`training: false`): μ and var
/// are the running statistics, which are then required.
///
/// Shapes: input `[N, C, *]` (rank ≥ 2), runningMean, runningVariance, weight and bias `[C]`.
/// - Parameters:
///   - momentum: in [0, 1] (PyTorch's default 0.1).
///   - eps: finite and ≥ 0 (default 1e-5).
/// - Returns: the output, μ and σ = 1/√(var + eps) per channel (`[C]`, what `batchNormBackward`
///   needs), and in training the updated running statistics (nil when none were given).
/// - Throws: `TensorError` naming `batchNorm` for bad shapes or backends, a missing running statistic,
///   training with one value per channel, or a bad eps or momentum.
public func batchNorm(_ input: Tensor, runningMean: Tensor? = nil, runningVariance: Tensor? = nil,
                      weight: Tensor? = nil, bias: Tensor? = nil, training: Bool = false, momentum: Float = 0.1,
                      eps: Float = 1e-5) throws -> NormalizationOutput {
    let op = "batchNorm"
    let plan = try ChannelNormPlan(op: op, input: input, weight: weight, bias: bias)
    try plan.checkRunning(input, runningMean, runningVariance, training: training, momentum: momentum, eps: eps)
    return try plan.forward(input, weight: weight, bias: bias, runningMean: runningMean,
                            runningVariance: runningVariance, training: training, momentum: momentum, eps: eps)
}

/// The gradients of batch norm given the forward's per-channel `mean` and σ
/// (`inverseStandardDeviation`), x̂ = (x − μ_c)·σ_c and M = N·spatial. Training (batch statistics):
/// `∂L/∂x = weight[c]·σ_c·(g − mean(g) − x̂·mean(g·x̂))` over the channel; inference (running
/// statistics, constants): `∂L/∂x = g·weight[c]·σ_c`. `∂L/∂weight[c] = Σ g·x̂`, `∂L/∂bias[c] = Σ g`.
///
/// Shapes: outputGradient as input `[N, C, *]`; mean and σ `[C]`; weight and bias `[C]`.
/// - Throws: `TensorError` naming `batchNormBackward` for inconsistent shapes or backends.
public func batchNormBackward(_ outputGradient: Tensor, input: Tensor, mean: Tensor, inverseStandardDeviation: Tensor,
                              weight: Tensor? = nil, bias: Tensor? = nil, training: Bool = true) throws
    -> NormalizationGradients
{
    let plan = try ChannelNormPlan(op: "batchNormBackward", input: input, weight: weight, bias: bias)
    return try plan.backward(outputGradient, input: input, mean: mean, inverseStandardDeviation: inverseStandardDeviation,
                             weight: weight, bias: bias, training: training)
}

// MARK: - Instance norm

/// Instance normalization, as `torch.nn.functional.instance_norm`: each (sample, channel) of
/// `[N, C, *]` normalized over its spatial elements, `y = (x − μ)/√(var + eps)·weight[c] + bias[c]`.
///
/// With `useInputStatistics` (the default) μ and the biased var come from each instance; running
/// statistics, when given, are updated with the mean over the batch of the instance statistics
/// (unbiased variance), as PyTorch does. Without, the running statistics are used (then required).
/// Runs on the batch-norm kernels with the input viewed as `[1, N·C, spatial]`.
///
/// Shapes: input `[N, C, *]` (rank ≥ 3), runningMean, runningVariance, weight and bias `[C]`.
/// - Returns: the output, μ and σ shaped `[N, C]`, and the updated running statistics (`[C]`).
/// - Throws: `TensorError` naming `instanceNorm` for bad shapes or backends, one spatial element with
///   `useInputStatistics`, a missing running statistic, or a bad eps or momentum.
public func instanceNorm(_ input: Tensor, runningMean: Tensor? = nil, runningVariance: Tensor? = nil,
                         weight: Tensor? = nil, bias: Tensor? = nil, useInputStatistics: Bool = true,
                         momentum: Float = 0.1, eps: Float = 1e-5) throws -> NormalizationOutput {
    let op = "instanceNorm"
    let outer = try ChannelNormPlan(op: op, input: input, weight: weight, bias: bias, minimumRank: 3)
    try outer.checkRunning(input, runningMean, runningVariance, training: useInputStatistics, momentum: momentum,
                           eps: eps, valuesPerStatistic: outer.spatial)
    let (n, c) = (outer.batch, outer.channels)
    let view = try input.reshaped(to: [1, n * c, outer.spatial])
    let plan = try ChannelNormPlan(op: op, input: view, weight: nil, bias: nil)
    let result = try plan.forward(view, weight: try repeated(weight, n), bias: try repeated(bias, n),
                                  runningMean: try repeated(runningMean, n), runningVariance: try repeated(runningVariance, n),
                                  training: useInputStatistics, momentum: momentum, eps: eps)
    func averaged(_ t: Tensor?) throws -> Tensor? {
        guard let t, useInputStatistics else { return nil }
        return try t.reshaped(to: [n, c]).mean(alongAxes: [0])
    }
    return NormalizationOutput(output: try result.output.reshaped(to: input.shape),
                               mean: try result.mean?.reshaped(to: [n, c]),
                               inverseStandardDeviation: try result.inverseStandardDeviation.reshaped(to: [n, c]),
                               runningMean: try averaged(result.runningMean),
                               runningVariance: try averaged(result.runningVariance))
}

/// The gradients of instance norm given the forward's μ and σ (`[N, C]`): within each instance,
/// with x̂ = (x − μ)·σ, `∂L/∂x = weight[c]·σ·(g − mean(g) − x̂·mean(g·x̂))` (with
/// `useInputStatistics`; otherwise `g·weight[c]·σ`); `∂L/∂weight[c] = Σ_{n, spatial} g·x̂`,
/// `∂L/∂bias[c] = Σ_{n, spatial} g`.
/// - Throws: `TensorError` naming `instanceNormBackward` for inconsistent shapes or backends.
public func instanceNormBackward(_ outputGradient: Tensor, input: Tensor, mean: Tensor,
                                 inverseStandardDeviation: Tensor, weight: Tensor? = nil, bias: Tensor? = nil,
                                 useInputStatistics: Bool = true) throws -> NormalizationGradients {
    let op = "instanceNormBackward"
    let outer = try ChannelNormPlan(op: op, input: input, weight: weight, bias: bias, minimumRank: 3)
    let (n, c) = (outer.batch, outer.channels)
    guard outputGradient.shape == input.shape else {
        throw TensorError(.shapeMismatch, op: op, "outputGradient shape \(outputGradient.shape) differs from input shape \(input.shape)")
    }
    let view = try input.reshaped(to: [1, n * c, outer.spatial])
    let plan = try ChannelNormPlan(op: op, input: view, weight: nil, bias: nil)
    let g = try plan.backward(try outputGradient.reshaped(to: view.shape), input: view, mean: mean,
                              inverseStandardDeviation: inverseStandardDeviation, weight: try repeated(weight, n),
                              bias: try repeated(bias, n), training: useInputStatistics)
    func summed(_ t: Tensor?) throws -> Tensor? {
        try t.map { try $0.reshaped(to: [n, c]).sum(alongAxes: [0]) }
    }
    return NormalizationGradients(input: try g.input.reshaped(to: input.shape), weight: try summed(g.weight),
                                  bias: try summed(g.bias))
}

/// `[C]` repeated `n` times to `[n·C]` (nil stays nil).
private func repeated(_ t: Tensor?, _ n: Int) throws -> Tensor? {
    guard let t else { return nil }
    return try t.reshaped(to: [1, t.count]).broadcast(to: [n, t.count]).reshaped(to: [n * t.count])
}

// MARK: - Local response norm

/// Local response normalization across channels, as `torch.nn.functional.local_response_norm`:
/// `y[n, c, *] = x[n, c, *] / (k + (alpha/size)·Σ_{c'} x[n, c', *]²)^beta` over the `size` channels
/// `c' ∈ [c − size/2, c + (size − 1)/2]` (zero outside `[0, C)`: alpha is divided by `size` even at
/// the borders, as PyTorch's zero-padded average).
///
/// Shapes: input `[N, C, *]` (rank ≥ 3), output likewise.
/// - Parameters:
///   - size: channels in the window, ≥ 1.
///   - alpha, beta, k: finite (PyTorch's defaults 1e-4, 0.75, 1).
/// - Throws: `TensorError` naming `localResponseNorm` for a rank below 3, size < 1 or a non-finite
///   hyperparameter.
public func localResponseNorm(_ input: Tensor, size: Int, alpha: Float = 1e-4, beta: Float = 0.75,
                              k: Float = 1) throws -> Tensor {
    let d = try lrnDescriptor(op: "localResponseNorm", input: input, size: size, alpha: alpha, beta: beta, k: k)
    let out = try Tensor.empty(input.shape, on: input.backend)
    if input.count > 0 {
        try input.backend.localResponseNormalizationForward(d, input: input.storage.buffer, output: out.storage.buffer)
    }
    return out.recording([input]) { [x = input.detached()] g in
        [try localResponseNormBackward(g, input: x, size: size, alpha: alpha, beta: beta, k: k)]
    }
}

/// The gradient of local response norm with respect to its input: with
/// `D_c = k + (alpha/size)·Σ_{c' ∈ window(c)} x_{c'}²`,
/// `∂L/∂x_j = g_j·D_j^(−beta) − (2·alpha·beta/size)·x_j·Σ_{c : j ∈ window(c)} g_c·x_c·D_c^(−beta−1)`.
///
/// Shapes: outputGradient and input `[N, C, *]`. The hyperparameters must be the forward's.
/// - Throws: `TensorError` naming `localResponseNormBackward` for bad shapes, backends or hyperparameters.
public func localResponseNormBackward(_ outputGradient: Tensor, input: Tensor, size: Int, alpha: Float = 1e-4,
                                      beta: Float = 0.75, k: Float = 1) throws -> Tensor {
    let op = "localResponseNormBackward"
    let d = try lrnDescriptor(op: op, input: input, size: size, alpha: alpha, beta: beta, k: k)
    try input.requireSameBackend([outputGradient], op: op)
    guard outputGradient.shape == input.shape else {
        throw TensorError(.shapeMismatch, op: op, "outputGradient shape \(outputGradient.shape) differs from input shape \(input.shape)")
    }
    let out = try Tensor.empty(input.shape, on: input.backend)
    if input.count > 0 {
        try input.backend.localResponseNormalizationBackward(
            d, input: input.storage.buffer, outputGradient: outputGradient.storage.buffer, inputGradient: out.storage.buffer)
    }
    return out
}

private func lrnDescriptor(op: String, input: Tensor, size: Int, alpha: Float, beta: Float,
                           k: Float) throws -> LocalResponseNormalizationDescriptor {
    guard input.rank >= 3 else {
        throw TensorError(.shapeMismatch, op: op, "needs an input of rank ≥ 3 [N, C, *], got shape \(input.shape)")
    }
    guard size >= 1 else {
        throw TensorError(.invalidArgument, op: op, "size must be ≥ 1, got \(size)")
    }
    guard alpha.isFinite, beta.isFinite, k.isFinite else {
        throw TensorError(.invalidArgument, op: op, "alpha, beta and k must be finite, got alpha \(alpha), beta \(beta), k \(k)")
    }
    return LocalResponseNormalizationDescriptor(batch: input.shape[0], channels: input.shape[1],
                                                spatial: input.shape[2...].reduce(1, *), size: size,
                                                alpha: alpha, beta: beta, k: k)
}

// MARK: - Validation and dispatch

/// `output` recording the pullback of a normalization with respect to `input` and, when given,
/// `weight` and `bias`; `backward` gets the output gradient and the detached inputs.
private func record(_ output: Tensor, _ input: Tensor, _ weight: Tensor?, _ bias: Tensor?,
                    _ backward: @escaping (Tensor, Tensor, Tensor?, Tensor?) throws -> NormalizationGradients) -> Tensor {
    let x = input.detached(), w = weight?.detached(), b = bias?.detached()
    return output.recording([input] + [weight, bias].compactMap { $0 }) { g in
        let grads = try backward(g, x, w, b)
        return [grads.input] + (weight == nil ? [] : [grads.weight]) + (bias == nil ? [] : [grads.bias])
    }
}

/// Throws unless eps is finite and ≥ 0.
private func checkEps(_ eps: Float, op: String) throws {
    guard eps.isFinite, eps >= 0 else {
        throw TensorError(.invalidArgument, op: op, "eps must be finite and ≥ 0, got \(eps)")
    }
}

/// Throws unless `t` (when given) has `shape` and lives on `input`'s backend.
private func checkParameter(_ t: Tensor?, _ name: String, shape: [Int], input: Tensor, op: String) throws {
    guard let t else { return }
    try input.requireSameBackend([t], op: op)
    guard t.shape == shape else {
        throw TensorError(.shapeMismatch, op: op, "\(name) must have shape \(shape), got \(t.shape)")
    }
}

/// A validated layer, RMS or group norm: the kernel descriptor and the statistics' shape.
private struct RowNormPlan {
    let op: String
    let descriptor: RowNormalizationDescriptor
    let statisticsShape: [Int]

    /// Layer or RMS norm over the trailing `normalizedShape`.
    init(op: String, kind: RowNormalizationDescriptor.Kind, input: Tensor, normalizedShape: [Int],
         weight: Tensor?, bias: Tensor?, eps: Float) throws {
        try checkEps(eps, op: op)
        let k = normalizedShape.count
        guard k >= 1, k <= input.rank, Array(input.shape.suffix(k)) == normalizedShape else {
            throw TensorError(.shapeMismatch, op: op,
                              "normalizedShape \(normalizedShape) must be non-empty and match the trailing dimensions of input shape \(input.shape)")
        }
        try checkParameter(weight, "weight", shape: normalizedShape, input: input, op: op)
        try checkParameter(bias, "bias", shape: normalizedShape, input: input, op: op)
        let count = normalizedShape.reduce(1, *)
        let leading = Array(input.shape.dropLast(k))
        self.op = op
        descriptor = RowNormalizationDescriptor(kind: kind, rows: leading.reduce(1, *), channelsPerGroup: count, eps: eps)
        statisticsShape = leading + [Int](repeating: 1, count: k)
    }

    /// Group norm of `[N, C, *]`.
    init(op: String, input: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Float) throws {
        try checkEps(eps, op: op)
        guard input.rank >= 2 else {
            throw TensorError(.shapeMismatch, op: op, "needs an input of rank ≥ 2 [N, C, *], got shape \(input.shape)")
        }
        let (n, c) = (input.shape[0], input.shape[1])
        guard groups >= 1, c % groups == 0 else {
            throw TensorError(.invalidArgument, op: op, "groups must be ≥ 1 and divide the \(c) channels, got \(groups)")
        }
        try checkParameter(weight, "weight", shape: [c], input: input, op: op)
        try checkParameter(bias, "bias", shape: [c], input: input, op: op)
        self.op = op
        descriptor = RowNormalizationDescriptor(kind: .layer, rows: n * groups, groups: groups,
                                                channelsPerGroup: c / groups, spatial: input.shape[2...].reduce(1, *),
                                                eps: eps)
        statisticsShape = [n, groups]
    }

    func forward(_ input: Tensor, weight: Tensor?, bias: Tensor?) throws -> NormalizationOutput {
        let backend = input.backend
        let d = descriptor
        let output = try Tensor.empty(input.shape, on: backend)
        let mean = d.kind == .layer ? try Tensor.empty(statisticsShape, on: backend) : nil
        let sigma = try Tensor.empty(statisticsShape, on: backend)
        if d.rows > 0 {
            if d.count == 0 {
                // Statistics of nothing, as PyTorch: NaN.
                if let mean { try backend.fill(mean.storage.buffer, value: .nan, count: d.rows) }
                try backend.fill(sigma.storage.buffer, value: .nan, count: d.rows)
            } else {
                try input.backend.rowNormalizationForward(
                    d, input: input.storage.buffer, weight: weight?.storage.buffer, bias: bias?.storage.buffer,
                    output: output.storage.buffer, mean: mean?.storage.buffer,
                    inverseStandardDeviation: sigma.storage.buffer)
            }
        }
        return NormalizationOutput(output: record(output, input, weight, bias) { g, x, w, b in
            try self.backward(g, input: x, mean: mean, inverseStandardDeviation: sigma, weight: w, bias: b)
        }, mean: mean, inverseStandardDeviation: sigma)
    }

    func backward(_ outputGradient: Tensor, input: Tensor, mean: Tensor?, inverseStandardDeviation: Tensor,
                  weight: Tensor?, bias: Tensor?) throws -> NormalizationGradients {
        let d = descriptor
        try input.requireSameBackend([outputGradient, inverseStandardDeviation] + (mean.map { [$0] } ?? []), op: op)
        guard outputGradient.shape == input.shape else {
            throw TensorError(.shapeMismatch, op: op, "outputGradient shape \(outputGradient.shape) differs from input shape \(input.shape)")
        }
        for (name, t) in [("mean", mean), ("inverseStandardDeviation", inverseStandardDeviation)] {
            if let t, t.count != d.rows {
                throw TensorError(.shapeMismatch, op: op,
                                  "\(name) needs one value per normalized row (\(d.rows), shape \(statisticsShape)), got shape \(t.shape)")
            }
        }
        let backend = input.backend
        let dx = try Tensor.empty(input.shape, on: backend)
        let dw = try weight.map { try Tensor.zeros($0.shape, on: backend) }
        let db = try bias.map { try Tensor.zeros($0.shape, on: backend) }
        if d.rows > 0 && d.count > 0 {
            try input.backend.rowNormalizationBackward(
                d, outputGradient: outputGradient.storage.buffer, input: input.storage.buffer,
                weight: weight?.storage.buffer, mean: mean?.storage.buffer,
                inverseStandardDeviation: inverseStandardDeviation.storage.buffer, inputGradient: dx.storage.buffer,
                weightGradient: dw?.storage.buffer, biasGradient: db?.storage.buffer)
        }
        return NormalizationGradients(input: dx, weight: dw, bias: db)
    }
}

/// A validated batch-style normalization of `[N, C, *]` viewed as `[N, C, spatial]`.
private struct ChannelNormPlan {
    let op: String
    let batch: Int
    let channels: Int
    let spatial: Int

    init(op: String, input: Tensor, weight: Tensor?, bias: Tensor?, minimumRank: Int = 2) throws {
        guard input.rank >= minimumRank else {
            throw TensorError(.shapeMismatch, op: op,
                              "needs an input of rank ≥ \(minimumRank) [N, C, *], got shape \(input.shape)")
        }
        self.op = op
        batch = input.shape[0]
        channels = input.shape[1]
        spatial = input.shape[2...].reduce(1, *)
        try checkParameter(weight, "weight", shape: [channels], input: input, op: op)
        try checkParameter(bias, "bias", shape: [channels], input: input, op: op)
    }

    /// Checks eps, momentum and the running statistics (`[C]`, on `input`'s backend) for a forward
    /// pass; training needs more than one value per statistic (`valuesPerStatistic`, N·spatial by default).
    func checkRunning(_ input: Tensor, _ runningMean: Tensor?, _ runningVariance: Tensor?, training: Bool,
                      momentum: Float, eps: Float, valuesPerStatistic: Int? = nil) throws {
        try checkEps(eps, op: op)
        try checkParameter(runningMean, "runningMean", shape: [channels], input: input, op: op)
        try checkParameter(runningVariance, "runningVariance", shape: [channels], input: input, op: op)
        guard momentum.isFinite, momentum >= 0, momentum <= 1 else {
            throw TensorError(.invalidArgument, op: op, "momentum must lie in [0, 1], got \(momentum)")
        }
        guard (runningMean == nil) == (runningVariance == nil) else {
            throw TensorError(.invalidArgument, op: op, "runningMean and runningVariance must be given together")
        }
        if !training && runningMean == nil {
            throw TensorError(.invalidArgument, op: op,
                              "inference (no batch statistics) needs runningMean and runningVariance")
        }
        if training && (valuesPerStatistic ?? batch * spatial) <= 1 {
            throw TensorError(.invalidArgument, op: op, valuesPerStatistic == nil
                ? "training needs more than 1 value per channel, got \(batch * spatial) in input shape \(input.shape)"
                : "input statistics need more than 1 spatial element, got \(spatial) in input shape \(input.shape)")
        }
    }

    func forward(_ input: Tensor, weight: Tensor?, bias: Tensor?, runningMean: Tensor?, runningVariance: Tensor?,
                 training: Bool, momentum: Float, eps: Float) throws -> NormalizationOutput {
        let backend = input.backend
        let shape = [channels]
        let d = ChannelNormalizationDescriptor(batch: batch, channels: channels, spatial: spatial, eps: eps,
                                               momentum: momentum, training: training)
        let output = try Tensor.empty(input.shape, on: backend)
        let mean = try Tensor.empty(shape, on: backend)
        let sigma = try Tensor.empty(shape, on: backend)
        let updates = training && runningMean != nil
        let newMean = updates ? try Tensor.empty(shape, on: backend) : nil
        let newVariance = updates ? try Tensor.empty(shape, on: backend) : nil
        if channels > 0 {
            try input.backend.channelNormalizationForward(
                d, input: input.storage.buffer, weight: weight?.storage.buffer, bias: bias?.storage.buffer,
                runningMean: runningMean?.storage.buffer, runningVariance: runningVariance?.storage.buffer,
                output: output.storage.buffer, mean: mean.storage.buffer, inverseStandardDeviation: sigma.storage.buffer,
                updatedRunningMean: newMean?.storage.buffer, updatedRunningVariance: newVariance?.storage.buffer)
        }
        // Inference treats the running statistics as constants (no gradient reaches them).
        let recorded = record(output, input, weight, bias) { g, x, w, b in
            try self.backward(g, input: x, mean: mean, inverseStandardDeviation: sigma, weight: w, bias: b,
                              training: training)
        }
        return NormalizationOutput(output: recorded, mean: mean, inverseStandardDeviation: sigma,
                                   runningMean: newMean, runningVariance: newVariance)
    }

    func backward(_ outputGradient: Tensor, input: Tensor, mean: Tensor, inverseStandardDeviation: Tensor,
                  weight: Tensor?, bias: Tensor?, training: Bool) throws -> NormalizationGradients {
        try input.requireSameBackend([outputGradient, mean, inverseStandardDeviation], op: op)
        guard outputGradient.shape == input.shape else {
            throw TensorError(.shapeMismatch, op: op, "outputGradient shape \(outputGradient.shape) differs from input shape \(input.shape)")
        }
        for (name, t) in [("mean", mean), ("inverseStandardDeviation", inverseStandardDeviation)] where t.count != channels {
            throw TensorError(.shapeMismatch, op: op, "\(name) needs one value per channel (\(channels)), got shape \(t.shape)")
        }
        let backend = input.backend
        let d = ChannelNormalizationDescriptor(batch: batch, channels: channels, spatial: spatial, eps: 0,
                                               training: training)
        let dx = try Tensor.empty(input.shape, on: backend)
        let dw = try weight.map { try Tensor.zeros($0.shape, on: backend) }
        let db = try bias.map { try Tensor.zeros($0.shape, on: backend) }
        if channels > 0 && batch * spatial > 0 {
            try input.backend.channelNormalizationBackward(
                d, outputGradient: outputGradient.storage.buffer, input: input.storage.buffer,
                weight: weight?.storage.buffer, mean: mean.storage.buffer,
                inverseStandardDeviation: inverseStandardDeviation.storage.buffer, inputGradient: dx.storage.buffer,
                weightGradient: dw?.storage.buffer, biasGradient: db?.storage.buffer)
        }
        return NormalizationGradients(input: dx, weight: dw, bias: db)
    }
}
