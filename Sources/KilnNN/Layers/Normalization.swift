import KilnCore

/// A `num_batches_tracked` value as a step count: a non-negative integer.
private func batchCount(_ value: Tensor, layer: String) throws -> Int {
    let v = try value.item()
    guard v.isFinite, v >= 0, v.rounded() == v else {
        throw CheckpointError(.invalidArgument, context: layer, "num_batches_tracked must be a non-negative integer, got \(v)")
    }
    return Int(v)
}

/// Validates eps and momentum of a normalization layer.
private func checkNorm(eps: Float, momentum: Float? = nil, layer: String) throws {
    guard eps.isFinite, eps >= 0 else {
        throw TensorError(.invalidArgument, op: layer, "eps must be finite and ≥ 0, got \(eps)")
    }
    if let momentum, !(momentum >= 0 && momentum <= 1) {
        throw TensorError(.invalidArgument, op: layer, "momentum must lie in [0, 1], got \(momentum)")
    }
}

/// The shared state and forward pass of `BatchNorm1d` and `BatchNorm2d`.
private struct BatchNormCore {
    let features: Int
    let eps: Float
    let momentum: Float
    let weight: Parameter?
    let bias: Parameter?
    var runningMean: Tensor?
    var runningVariance: Tensor?
    var batchesTracked = 0

    init(features: Int, eps: Float, momentum: Float, affine: Bool, trackRunningStatistics: Bool, layer: String,
         on backend: any Backend) throws {
        try requirePositive(["features": features], layer: layer)
        try checkNorm(eps: eps, momentum: momentum, layer: layer)
        self.features = features
        self.eps = eps
        self.momentum = momentum
        weight = affine ? Parameter(try Tensor.ones([features], on: backend)) : nil
        bias = affine ? Parameter(try Tensor.zeros([features], on: backend)) : nil
        runningMean = trackRunningStatistics ? try Tensor.zeros([features], on: backend) : nil
        runningVariance = trackRunningStatistics ? try Tensor.ones([features], on: backend) : nil
    }

    var parameters: [(name: String, parameter: Parameter)] {
        (weight.map { [("weight", $0)] } ?? []) + (bias.map { [("bias", $0)] } ?? [])
    }

    /// PyTorch's buffers, with running statistics: `running_mean`, `running_var`, and
    /// `num_batches_tracked` as a Float32 scalar (shape `[]`, exact up to 2²⁴ steps).
    func buffers() throws -> [(name: String, tensor: Tensor)] {
        guard let mean = runningMean, let variance = runningVariance else { return [] }
        return [("running_mean", mean), ("running_var", variance),
                ("num_batches_tracked", try Tensor(scalar: Float(batchesTracked), on: mean.backend))]
    }

    /// Checks a buffer value (name and shape already checked by the loader) and returns its update.
    func bufferUpdate(_ name: String, _ value: Tensor, layer: String) throws -> (inout BatchNormCore) -> Void {
        switch name {
        case "running_mean" where runningMean != nil: return { $0.runningMean = value.detached() }
        case "running_var" where runningVariance != nil: return { $0.runningVariance = value.detached() }
        case "num_batches_tracked" where runningMean != nil:
            let count = try batchCount(value, layer: layer)
            return { $0.batchesTracked = count }
        default: throw CheckpointError(.unexpectedTensor, context: layer, "has no buffer named '\(name)'")
        }
    }

    mutating func forward(_ input: Tensor, training: Bool, ranks: [Int], layer: String) throws -> Tensor {
        guard ranks.contains(input.rank), input.shape[1] == features else {
            throw TensorError(.shapeMismatch, op: layer,
                              "expects an input of rank \(ranks.map(String.init).joined(separator: " or ")) with \(features) channels on axis 1, got \(input.shape)")
        }
        let useBatch = training || runningMean == nil
        let result = try batchNorm(input, runningMean: runningMean, runningVariance: runningVariance,
                                   weight: weight?.value, bias: bias?.value, training: useBatch,
                                   momentum: momentum, eps: eps)
        if training, let m = result.runningMean, let v = result.runningVariance {
            runningMean = m.detached()
            runningVariance = v.detached()
            batchesTracked += 1
        }
        return result.output
    }
}

/// Batch normalization over `[N, C]` or `[N, C, L]`, as `torch.nn.BatchNorm1d`:
/// `y = (x − μ_c)/√(var_c + eps)·weight[c] + bias[c]`.
///
/// Training: μ and the biased var over the batch (and L) of each channel; the running statistics
/// become `(1 − momentum)·running + momentum·batch` (the unbiased variance for `running_var`).
/// Evaluation: the running statistics. Parameters `weight` (ones) and `bias` (zeros); buffers
/// `runningMean` (`running_mean`, zeros) and `runningVariance` (`running_var`, ones), not parameters.
public final class BatchNorm1d: Module {
    public var isTraining = true
    private var core: BatchNormCore
    public var weight: Parameter? { core.weight }
    public var bias: Parameter? { core.bias }
    /// The `running_mean` buffer `[C]` (nil without running statistics).
    public var runningMean: Tensor? { core.runningMean }
    /// The `running_var` buffer `[C]`.
    public var runningVariance: Tensor? { core.runningVariance }
    /// The `num_batches_tracked` buffer: training steps taken.
    public var batchesTracked: Int { core.batchesTracked }

    /// - Throws: `TensorError` naming `BatchNorm1d` for features < 1, a bad eps or a momentum outside [0, 1].
    public init(features: Int, eps: Float = 1e-5, momentum: Float = 0.1, affine: Bool = true,
                trackRunningStatistics: Bool = true, on backend: any Backend) throws {
        core = try BatchNormCore(features: features, eps: eps, momentum: momentum, affine: affine,
                                 trackRunningStatistics: trackRunningStatistics, layer: "BatchNorm1d", on: backend)
    }

    public var ownParameters: [(name: String, parameter: Parameter)] { core.parameters }

    /// `running_mean`, `running_var`, `num_batches_tracked` (a Float32 scalar), with running statistics.
    public var ownBuffers: [(name: String, tensor: Tensor)] { get throws { try core.buffers() } }

    public func prepareBufferAssignment(_ name: String, to value: Tensor) throws -> () -> Void {
        let update = try core.bufferUpdate(name, value, layer: "BatchNorm1d")
        return { update(&self.core) }
    }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try core.forward(input, training: isTraining, ranks: [2, 3], layer: "BatchNorm1d")
    }
}

/// Batch normalization over `[N, C, H, W]`, as `torch.nn.BatchNorm2d`; see `BatchNorm1d`
/// (statistics per channel over N, H and W).
public final class BatchNorm2d: Module {
    public var isTraining = true
    private var core: BatchNormCore
    public var weight: Parameter? { core.weight }
    public var bias: Parameter? { core.bias }
    /// The `running_mean` buffer `[C]` (nil without running statistics).
    public var runningMean: Tensor? { core.runningMean }
    /// The `running_var` buffer `[C]`.
    public var runningVariance: Tensor? { core.runningVariance }
    /// The `num_batches_tracked` buffer: training steps taken.
    public var batchesTracked: Int { core.batchesTracked }

    /// - Throws: `TensorError` naming `BatchNorm2d` for features < 1, a bad eps or a momentum outside [0, 1].
    public init(features: Int, eps: Float = 1e-5, momentum: Float = 0.1, affine: Bool = true,
                trackRunningStatistics: Bool = true, on backend: any Backend) throws {
        core = try BatchNormCore(features: features, eps: eps, momentum: momentum, affine: affine,
                                 trackRunningStatistics: trackRunningStatistics, layer: "BatchNorm2d", on: backend)
    }

    public var ownParameters: [(name: String, parameter: Parameter)] { core.parameters }

    /// `running_mean`, `running_var`, `num_batches_tracked` (a Float32 scalar), with running statistics.
    public var ownBuffers: [(name: String, tensor: Tensor)] { get throws { try core.buffers() } }

    public func prepareBufferAssignment(_ name: String, to value: Tensor) throws -> () -> Void {
        let update = try core.bufferUpdate(name, value, layer: "BatchNorm2d")
        return { update(&self.core) }
    }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try core.forward(input, training: isTraining, ranks: [4], layer: "BatchNorm2d")
    }
}

/// Layer normalization, as `torch.nn.LayerNorm`: over the trailing `normalizedShape` dimensions,
/// `y = (x − μ)/√(var + eps)·weight + bias` (biased var).
///
/// Shapes: input `[*, normalizedShape...]`, weight (ones) and bias (zeros) `normalizedShape`.
/// Parameters: `weight`, `bias` (with `elementwiseAffine`).
public final class LayerNorm: Module {
    public var isTraining = true
    public let normalizedShape: [Int]
    public let eps: Float
    public let weight: Parameter?
    public let bias: Parameter?

    /// - Throws: `TensorError` naming `LayerNorm` for an empty shape or a size < 1, or a bad eps.
    public init(normalizedShape: [Int], eps: Float = 1e-5, elementwiseAffine: Bool = true, bias: Bool = true,
                on backend: any Backend) throws {
        guard !normalizedShape.isEmpty, normalizedShape.allSatisfy({ $0 > 0 }) else {
            throw TensorError(.invalidArgument, op: "LayerNorm", "normalizedShape must be non-empty and positive, got \(normalizedShape)")
        }
        try checkNorm(eps: eps, layer: "LayerNorm")
        self.normalizedShape = normalizedShape
        self.eps = eps
        weight = elementwiseAffine ? Parameter(try Tensor.ones(normalizedShape, on: backend)) : nil
        self.bias = elementwiseAffine && bias ? Parameter(try Tensor.zeros(normalizedShape, on: backend)) : nil
    }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        (weight.map { [("weight", $0)] } ?? []) + (bias.map { [("bias", $0)] } ?? [])
    }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try layerNorm(input, normalizedShape: normalizedShape, weight: weight?.value, bias: bias?.value, eps: eps)
    }
}

/// RMS normalization, as `torch.nn.RMSNorm`: `y = x/√(mean(x²) + eps)·weight` over the trailing
/// `normalizedShape` dimensions; eps nil is `Float.ulpOfOne` (PyTorch's `finfo(float32).eps`).
/// Parameter: `weight` (ones).
public final class RMSNorm: Module {
    public var isTraining = true
    public let normalizedShape: [Int]
    public let eps: Float?
    public let weight: Parameter?

    /// - Throws: `TensorError` naming `RMSNorm` for an empty shape or a size < 1, or a bad eps.
    public init(normalizedShape: [Int], eps: Float? = nil, elementwiseAffine: Bool = true,
                on backend: any Backend) throws {
        guard !normalizedShape.isEmpty, normalizedShape.allSatisfy({ $0 > 0 }) else {
            throw TensorError(.invalidArgument, op: "RMSNorm", "normalizedShape must be non-empty and positive, got \(normalizedShape)")
        }
        if let eps { try checkNorm(eps: eps, layer: "RMSNorm") }
        self.normalizedShape = normalizedShape
        self.eps = eps
        weight = elementwiseAffine ? Parameter(try Tensor.ones(normalizedShape, on: backend)) : nil
    }

    public var ownParameters: [(name: String, parameter: Parameter)] { weight.map { [("weight", $0)] } ?? [] }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try rmsNorm(input, normalizedShape: normalizedShape, weight: weight?.value, eps: eps)
    }
}

/// Group normalization, as `torch.nn.GroupNorm`: the C channels of `[N, C, *]` split into `groups`
/// groups, each normalized over its channels and spatial elements, then `·weight[c] + bias[c]`.
/// Parameters: `weight` (ones) and `bias` (zeros), `[C]`, with `affine`.
public final class GroupNorm: Module {
    public var isTraining = true
    public let groups: Int
    public let channels: Int
    public let eps: Float
    public let weight: Parameter?
    public let bias: Parameter?

    /// - Throws: `TensorError` naming `GroupNorm` for sizes < 1, groups not dividing channels, or a bad eps.
    public init(groups: Int, channels: Int, eps: Float = 1e-5, affine: Bool = true, on backend: any Backend) throws {
        try requirePositive(["groups": groups, "channels": channels], layer: "GroupNorm")
        guard channels % groups == 0 else {
            throw TensorError(.invalidArgument, op: "GroupNorm", "groups \(groups) must divide channels \(channels)")
        }
        try checkNorm(eps: eps, layer: "GroupNorm")
        self.groups = groups
        self.channels = channels
        self.eps = eps
        weight = affine ? Parameter(try Tensor.ones([channels], on: backend)) : nil
        bias = affine ? Parameter(try Tensor.zeros([channels], on: backend)) : nil
    }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        (weight.map { [("weight", $0)] } ?? []) + (bias.map { [("bias", $0)] } ?? [])
    }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        guard input.rank >= 2, input.shape[1] == channels else {
            throw TensorError(.shapeMismatch, op: "GroupNorm", "expects [N, \(channels), *], got \(input.shape)")
        }
        return try groupNorm(input, groups: groups, weight: weight?.value, bias: bias?.value, eps: eps)
    }
}

/// Instance normalization, as `torch.nn.InstanceNorm1d/2d/3d` (any input `[N, C, *]` of rank ≥ 3):
/// each (sample, channel) normalized over its spatial elements. PyTorch's defaults: no affine
/// parameters and no running statistics. With `trackRunningStatistics`, training updates the
/// `runningMean`/`runningVariance` buffers and evaluation uses them. Parameters `weight`, `bias` with `affine`.
public final class InstanceNorm: Module {
    public var isTraining = true
    public let features: Int
    public let eps: Float
    public let momentum: Float
    public let weight: Parameter?
    public let bias: Parameter?
    /// The `running_mean` buffer `[C]`, with `trackRunningStatistics`.
    public private(set) var runningMean: Tensor?
    /// The `running_var` buffer `[C]`, with `trackRunningStatistics`.
    public private(set) var runningVariance: Tensor?
    /// The `num_batches_tracked` buffer, with `trackRunningStatistics`: kept for PyTorch's state
    /// dictionaries and, as in PyTorch, never incremented by the forward pass.
    public private(set) var batchesTracked = 0

    /// - Throws: `TensorError` naming `InstanceNorm` for features < 1, a bad eps or momentum.
    public init(features: Int, eps: Float = 1e-5, momentum: Float = 0.1, affine: Bool = false,
                trackRunningStatistics: Bool = false, on backend: any Backend) throws {
        try requirePositive(["features": features], layer: "InstanceNorm")
        try checkNorm(eps: eps, momentum: momentum, layer: "InstanceNorm")
        self.features = features
        self.eps = eps
        self.momentum = momentum
        weight = affine ? Parameter(try Tensor.ones([features], on: backend)) : nil
        bias = affine ? Parameter(try Tensor.zeros([features], on: backend)) : nil
        runningMean = trackRunningStatistics ? try Tensor.zeros([features], on: backend) : nil
        runningVariance = trackRunningStatistics ? try Tensor.ones([features], on: backend) : nil
    }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        (weight.map { [("weight", $0)] } ?? []) + (bias.map { [("bias", $0)] } ?? [])
    }

    /// `running_mean`, `running_var`, `num_batches_tracked` (a Float32 scalar), with running statistics.
    public var ownBuffers: [(name: String, tensor: Tensor)] {
        get throws {
            guard let mean = runningMean, let variance = runningVariance else { return [] }
            return [("running_mean", mean), ("running_var", variance),
                    ("num_batches_tracked", try Tensor(scalar: Float(batchesTracked), on: mean.backend))]
        }
    }

    public func prepareBufferAssignment(_ name: String, to value: Tensor) throws -> () -> Void {
        switch name {
        case "running_mean" where runningMean != nil: return { self.runningMean = value.detached() }
        case "running_var" where runningVariance != nil: return { self.runningVariance = value.detached() }
        case "num_batches_tracked" where runningMean != nil:
            let count = try batchCount(value, layer: "InstanceNorm")
            return { self.batchesTracked = count }
        default: throw CheckpointError(.unexpectedTensor, context: "InstanceNorm", "has no buffer named '\(name)'")
        }
    }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        guard input.rank >= 3, input.shape[1] == features else {
            throw TensorError(.shapeMismatch, op: "InstanceNorm", "expects [N, \(features), *] of rank ≥ 3, got \(input.shape)")
        }
        let useInput = isTraining || runningMean == nil
        let result = try instanceNorm(input, runningMean: runningMean, runningVariance: runningVariance,
                                      weight: weight?.value, bias: bias?.value, useInputStatistics: useInput,
                                      momentum: momentum, eps: eps)
        if useInput, let m = result.runningMean, let v = result.runningVariance {
            runningMean = m.detached()
            runningVariance = v.detached()
        }
        return result.output
    }
}
