import KilnCore

// Activations with parameters (and RReLU, whose training noise needs a per-call seed). Parameter
// names follow PyTorch (`weight`, `bias`) or the paper's reference code (`p1`, `p2`, `beta`, `alpha`).

/// Throws unless `value` is a positive count.
private func requireCount(_ value: Int, _ name: String, op: String) throws {
    guard value > 0 else { throw TensorError(.invalidArgument, op: op, "\(name) must be positive, got \(value)") }
}

/// PReLU layer: f(x) = x for x > 0, a·x otherwise, with `weight` a of shape `[numParameters]`
/// (1, or one per channel on axis 1), initialised to 0.25 as `torch.nn.PReLU`.
public final class PReLU: Module {
    public var isTraining = true
    /// The slopes a, `[numParameters]`.
    public let weight: Parameter
    /// - Throws: `TensorError.invalidArgument` naming `PReLU` for numParameters < 1 or a non-finite init.
    public init(numParameters: Int = 1, initialValue: Float = 0.25, on backend: any Backend) throws {
        try requireCount(numParameters, "numParameters", op: "PReLU")
        try requireFinite(initialValue, "initialValue", op: "PReLU")
        weight = Parameter(try Tensor.full([numParameters], value: initialValue, on: backend))
    }
    public var ownParameters: [(name: String, parameter: Parameter)] { [("weight", weight)] }
    /// Applies `prelu(input, weight:)`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try prelu(input, weight: weight.value) }
}

/// RReLU layer: f(x) = x for x ≥ 0, a·x otherwise; a ~ U(lower, upper) per element in training
/// (a fresh Philox stream per call: `seed`, `seed + 1`, …), (lower + upper)/2 in evaluation.
public final class RReLU: Module {
    public var isTraining = true
    /// The bounds of the training slope (PyTorch's 1/8 and 1/3).
    public let lower: Float, upper: Float
    /// The seed of the next training call.
    public private(set) var seed: UInt64
    /// - Throws: `TensorError.invalidArgument` naming `RReLU` unless lower ≤ upper, both finite.
    public init(lower: Float = 1.0 / 8, upper: Float = 1.0 / 3, seed: UInt64 = 0) throws {
        try requireFinite(lower, "lower", op: "RReLU")
        try requireFinite(upper, "upper", op: "RReLU")
        guard lower <= upper else { throw TensorError(.invalidArgument, op: "RReLU", "lower \(lower) must not exceed upper \(upper)") }
        self.lower = lower; self.upper = upper; self.seed = seed
    }
    /// Applies `rrelu`, advancing the seed in training.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        guard isTraining else { return try rrelu(input, lower: lower, upper: upper, training: false) }
        defer { seed &+= 1 }
        return try rrelu(input, lower: lower, upper: upper, training: true, seed: seed)
    }
}

/// APL layer: f(x) = max(0, x) + Σₛ aₛ·max(0, −x + bₛ) per feature of the last axis, with
/// `a`, `b` of shape `[hingeCount, featureCount]`. The paper leaves the initialisation open; Kiln
/// draws a ~ U(−0.2, 0.2) and b ~ U(−1, 1) from `seed` and `seed + 1`.
public final class APL: Module {
    public var isTraining = true
    /// Hinge weights aₛ and positions bₛ, `[hingeCount, featureCount]`.
    public let a: Parameter, b: Parameter
    /// - Throws: `TensorError.invalidArgument` naming `APL` for counts < 1.
    public init(hingeCount: Int = 2, featureCount: Int, seed: UInt64 = 0, on backend: any Backend) throws {
        try requireCount(hingeCount, "hingeCount", op: "APL")
        try requireCount(featureCount, "featureCount", op: "APL")
        a = Parameter(try Tensor.uniform([hingeCount, featureCount], low: -0.2, high: 0.2, seed: seed, on: backend))
        b = Parameter(try Tensor.uniform([hingeCount, featureCount], low: -1, high: 1, seed: seed &+ 1, on: backend))
    }
    public var ownParameters: [(name: String, parameter: Parameter)] { [("a", a), ("b", b)] }
    /// Applies `apl(input, a:, b:)` over the last axis.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try apl(input, a: a.value, b: b.value) }
}

/// ACON-C layer (Ma et al. 2021, `AconC`): (p₁ − p₂)·x·σ(β(p₁ − p₂)x) + p₂·x per channel (axis 1),
/// p₁, p₂ ~ N(0, 1) from `seed`, `seed + 1` and β = 1, as the reference code.
public final class ACON: Module {
    public var isTraining = true
    /// `[channels]` each.
    public let p1: Parameter, p2: Parameter, beta: Parameter
    /// - Throws: `TensorError.invalidArgument` naming `ACON` for channels < 1.
    public init(channels: Int, seed: UInt64 = 0, on backend: any Backend) throws {
        try requireCount(channels, "channels", op: "ACON")
        p1 = Parameter(try Tensor.normal([channels], seed: seed, on: backend))
        p2 = Parameter(try Tensor.normal([channels], seed: seed &+ 1, on: backend))
        beta = Parameter(try Tensor.ones([channels], on: backend))
    }
    public var ownParameters: [(name: String, parameter: Parameter)] { [("p1", p1), ("p2", p2), ("beta", beta)] }
    /// Applies `acon`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try acon(input, p1: p1.value, p2: p2.value, beta: beta.value)
    }
}

/// Snake layer: x + (1/α)·sin²(αx) with a learnable `alpha` per channel (axis 1), initialised to
/// `initialAlpha` (1, as BigVGAN's `Snake`).
public final class Snake: Module {
    public var isTraining = true
    /// The frequencies α, `[channels]`.
    public let alpha: Parameter
    /// - Throws: `TensorError.invalidArgument` naming `Snake` for channels < 1 or α₀ = 0.
    public init(channels: Int = 1, initialAlpha: Float = 1, on backend: any Backend) throws {
        try requireCount(channels, "channels", op: "Snake")
        try requireFinite(initialAlpha, "initialAlpha", op: "Snake")
        guard initialAlpha != 0 else { throw TensorError(.invalidArgument, op: "Snake", "initialAlpha must not be 0") }
        alpha = Parameter(try Tensor.full([channels], value: initialAlpha, on: backend))
    }
    public var ownParameters: [(name: String, parameter: Parameter)] { [("alpha", alpha)] }
    /// Applies `snake(input, alpha:)`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try snake(input, alpha: alpha.value) }
}

/// Learnable sigmoid-like unit: 1/(1 + |βx|^γ)^(1/δ) with scalar parameters `beta`, `gamma`,
/// `delta` (`[1]`), initialised to 1, 2, 1.
public final class LearnableSigmoidUnit: Module {
    public var isTraining = true
    /// `[1]` each.
    public let beta: Parameter, gamma: Parameter, delta: Parameter
    /// - Throws: `TensorError.invalidArgument` naming `LearnableSigmoidUnit` for δ = 0 or non-finite values.
    public init(beta b: Float = 1, gamma g: Float = 2, delta d: Float = 1, on backend: any Backend) throws {
        for (v, n) in [(b, "beta"), (g, "gamma"), (d, "delta")] { try requireFinite(v, n, op: "LearnableSigmoidUnit") }
        guard d != 0 else { throw TensorError(.invalidArgument, op: "LearnableSigmoidUnit", "delta must not be 0") }
        beta = Parameter(try Tensor.full([1], value: b, on: backend))
        gamma = Parameter(try Tensor.full([1], value: g, on: backend))
        delta = Parameter(try Tensor.full([1], value: d, on: backend))
    }
    public var ownParameters: [(name: String, parameter: Parameter)] { [("beta", beta), ("gamma", gamma), ("delta", delta)] }
    /// Applies `learnableSigmoidUnit`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try learnableSigmoidUnit(input, beta: beta.value, gamma: gamma.value, delta: delta.value)
    }
}

/// A gated linear unit layer (Dauphin et al. 2017; Shazeer 2020): f(x) = (xVᵀ + c) ⊙ act(xWᵀ + b),
/// `[…, inputSize] → […, outputSize]`. act σ is GLU, ReLU ReGLU, GELU GeGLU, Swish SwiGLU. The
/// projections `gate` (W, b) and `value` (V, c) are initialised as `torch.nn.Linear`
/// (U(−1/√in, 1/√in)) from seeds `seed`, `seed + 2`; names `gate.weight`, `gate.bias`, `value.…`.
public final class GatedLinearUnit: Module {
    public var isTraining = true
    /// The gate's activation.
    public let activation: GateActivation
    let gate: AffineProjection, value: AffineProjection
    /// - Throws: `TensorError.invalidArgument` naming `GatedLinearUnit` for sizes < 1.
    public init(inputSize: Int, outputSize: Int, activation: GateActivation = .sigmoid, bias: Bool = true,
                seed: UInt64 = 0, on backend: any Backend) throws {
        self.activation = activation
        gate = try AffineProjection(inputSize: inputSize, outputSize: outputSize, bias: bias, seed: seed,
                                    on: backend, op: "GatedLinearUnit")
        value = try AffineProjection(inputSize: inputSize, outputSize: outputSize, bias: bias, seed: seed &+ 2,
                                     on: backend, op: "GatedLinearUnit")
    }
    public var children: [(name: String, module: any Module)] { [("gate", gate), ("value", value)] }
    /// value(x) ⊙ act(gate(x)).
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try value(input) * activation.apply(gate(input))
    }
}

/// Maxout layer: f(x)ᵢ = maxⱼ (wᵢⱼᵀx + bᵢⱼ), j < pieces, `[…, inputSize] → […, outputSize]`; one
/// projection `linear` to outputSize·pieces units (grouped consecutively), initialised as `nn.Linear`.
public final class Maxout: Module {
    public var isTraining = true
    /// The number of affine pieces per output.
    public let pieces: Int
    let linear: AffineProjection
    /// - Throws: `TensorError.invalidArgument` naming `Maxout` for sizes or pieces < 1.
    public init(inputSize: Int, outputSize: Int, pieces: Int = 2, seed: UInt64 = 0, on backend: any Backend) throws {
        try requireCount(pieces, "pieces", op: "Maxout")
        try requireCount(outputSize, "outputSize", op: "Maxout")
        self.pieces = pieces
        linear = try AffineProjection(inputSize: inputSize, outputSize: outputSize * pieces, bias: true, seed: seed,
                                      on: backend, op: "Maxout")
    }
    public var children: [(name: String, module: any Module)] { [("linear", linear)] }
    /// maxout(linear(x), pieces).
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try maxout(linear(input), pieces: pieces) }
}

/// Max-sigmoid unit layer: f(x)ᵢ = maxⱼ σ(Wᵢⱼx + bᵢⱼ), as `Maxout` followed by σ.
public final class MaxSigmoidUnit: Module {
    public var isTraining = true
    /// The number of sigmoid pieces per output.
    public let pieces: Int
    let linear: AffineProjection
    /// - Throws: `TensorError.invalidArgument` naming `MaxSigmoidUnit` for sizes or pieces < 1.
    public init(inputSize: Int, outputSize: Int, pieces: Int = 2, seed: UInt64 = 0, on backend: any Backend) throws {
        try requireCount(pieces, "pieces", op: "MaxSigmoidUnit")
        try requireCount(outputSize, "outputSize", op: "MaxSigmoidUnit")
        self.pieces = pieces
        linear = try AffineProjection(inputSize: inputSize, outputSize: outputSize * pieces, bias: true, seed: seed,
                                      on: backend, op: "MaxSigmoidUnit")
    }
    public var children: [(name: String, module: any Module)] { [("linear", linear)] }
    /// σ(maxout(linear(x), pieces)).
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try maxSigmoidUnit(linear(input), pieces: pieces) }
}

/// FReLU layer: max(x, T(x)), T a depthwise k×k convolution (`weight [C, 1, k, k]`, `bias [C]`,
/// initialised as `torch.nn.Conv2d`: U(±1/√(k²))) on `[N, C, H, W]`; see `funnelReLU` (no BatchNorm).
public final class FReLU: Module {
    public var isTraining = true
    /// `[channels, 1, k, k]` and `[channels]`.
    public let weight: Parameter, bias: Parameter
    /// - Throws: `TensorError.invalidArgument` naming `FReLU` for channels or kernelSize < 1.
    public init(channels: Int, kernelSize: Int = 3, seed: UInt64 = 0, on backend: any Backend) throws {
        try requireCount(channels, "channels", op: "FReLU")
        try requireCount(kernelSize, "kernelSize", op: "FReLU")
        let bound = 1 / Float(kernelSize * kernelSize).squareRoot()
        weight = Parameter(try Tensor.uniform([channels, 1, kernelSize, kernelSize], low: -bound, high: bound,
                                              seed: seed, on: backend))
        bias = Parameter(try Tensor.uniform([channels], low: -bound, high: bound, seed: seed &+ 1, on: backend))
    }
    public var ownParameters: [(name: String, parameter: Parameter)] { [("weight", weight), ("bias", bias)] }
    /// Applies `funnelReLU`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try funnelReLU(input, weight: weight.value, bias: bias.value)
    }
}

/// DyReLU-B (Chen et al. 2020, channel-wise): f(x) = maxₖ (aₖ·x + bₖ) per sample and channel, the
/// coefficients from a hypernetwork on the spatial mean of x: θ = 2σ(fc2(relu(fc1(mean x)))) − 1,
/// aₖ = 1·θ_a,k + [1, 0, …]ₖ, bₖ = 0.5·θ_b,k (the paper's λ_a = 1, λ_b = 0.5, α₁ = 1, other α, β = 0).
/// fc1: C → C/reduction, fc2: → 2·K·C, initialised as `nn.Linear`. Input `[N, C, …]`.
public final class DyReLU: Module {
    public var isTraining = true
    /// Channels C and pieces K.
    public let channels: Int, pieces: Int
    let fc1: AffineProjection, fc2: AffineProjection
    /// - Throws: `TensorError.invalidArgument` naming `DyReLU` for counts < 1.
    public init(channels: Int, reduction: Int = 4, pieces: Int = 2, seed: UInt64 = 0, on backend: any Backend) throws {
        try requireCount(channels, "channels", op: "DyReLU")
        try requireCount(reduction, "reduction", op: "DyReLU")
        try requireCount(pieces, "pieces", op: "DyReLU")
        self.channels = channels; self.pieces = pieces
        let hidden = Swift.max(channels / reduction, 1)
        fc1 = try AffineProjection(inputSize: channels, outputSize: hidden, bias: true, seed: seed, on: backend, op: "DyReLU")
        fc2 = try AffineProjection(inputSize: hidden, outputSize: 2 * pieces * channels, bias: true, seed: seed &+ 2,
                                   on: backend, op: "DyReLU")
    }
    public var children: [(name: String, module: any Module)] { [("fc1", fc1), ("fc2", fc2)] }
    /// The slopes and intercepts `[N, C, K]` for `input`.
    public func coefficients(_ input: Tensor) throws -> (slopes: Tensor, intercepts: Tensor) {
        guard input.rank >= 2, input.shape[1] == channels else {
            throw TensorError(.shapeMismatch, op: "DyReLU", "needs input [N, \(channels), …], got \(input.shape)")
        }
        let pooled: Tensor = input.rank == 2 ? input : try input.mean(alongAxes: Array(2..<input.rank))
        let hidden: Tensor = try relu(fc1(pooled))
        let theta: Tensor = try sigmoid(fc2(hidden)) * 2 - 1
        let n = input.shape[0]
        let parts = try theta.reshaped(to: [n, channels, 2 * pieces]).split(sizes: [pieces, pieces], axis: 2)
        var offsets = [Float](repeating: 0, count: pieces)
        offsets[0] = 1
        let base = try Tensor(offsets, shape: [pieces], on: input.backend)
        let slopes: Tensor = try parts[0] + base
        let intercepts: Tensor = try parts[1] * 0.5
        return (slopes, intercepts)
    }
    /// Applies `dynamicReLU` with the hypernetwork's coefficients.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        let (a, b) = try coefficients(input)
        return try dynamicReLU(input, slopes: a, intercepts: b)
    }
}
