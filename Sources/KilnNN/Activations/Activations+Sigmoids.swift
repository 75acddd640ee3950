import Foundation
import KilnCore

// Sigmoid-, tanh- and softplus-shaped activations as functions. `sigmoid`, `tanh`, `softplus`
// (β = 1), `silu`, `gelu` (erf and tanh forms) and `erf` are KilnCore's ops and are used directly.

/// Softplus with PyTorch's β and threshold: f(x) = (1/β)·log(1 + e^(βx)), and x where βx > threshold
/// (`torch.nn.functional.softplus`; `softplus(x)` without labels is KilnCore's β = 1 form).
/// - Throws: `TensorError.invalidArgument` naming `softplus` for β ≤ 0 or non-finite values.
public func softplus(_ x: Tensor, beta: Float, threshold: Float = 20) throws -> Tensor {
    try requirePositive(beta, "beta", op: "softplus")
    try requireFinite(threshold, "threshold", op: "softplus")
    let bx: Tensor = try x * beta
    let smooth: Tensor = try softplus(bx) / beta
    return try Tensor.selecting(bx.greater(constant(threshold, like: x)), x, smooth)
}

/// Shifted softplus (SchNet, Schütt et al. 2017): f(x) = log(0.5eˣ + 0.5) = softplus(x) − log 2, so
/// f(0) = 0. The catalogue writes log(1 + e^(x − shift)); Kiln follows the published SchNet form.
public func shiftedSoftplus(_ x: Tensor) throws -> Tensor {
    try softplus(x) - Float(Foundation.log(2.0))
}

/// Log-sigmoid: f(x) = log σ(x) = −softplus(−x) (stable for large |x|).
public func logSigmoid(_ x: Tensor) throws -> Tensor { try -softplus(-x) }

/// Softsign (Elliott): f(x) = x/(1 + |x|).
public func softsign(_ x: Tensor) throws -> Tensor {
    let denominator: Tensor = try abs(x) + 1
    return try x / denominator
}

/// Swish: f(x) = x·σ(βx); β = 1 is SiLU (`silu`).
/// - Throws: `TensorError.invalidArgument` naming `swish` for a non-finite β.
public func swish(_ x: Tensor, beta: Float = 1) throws -> Tensor {
    try requireFinite(beta, "beta", op: "swish")
    let gate: Tensor = try sigmoid(x * beta)
    return try x * gate
}

/// Mish: f(x) = x·tanh(softplus(x)), as `torch.nn.functional.mish`.
public func mish(_ x: Tensor) throws -> Tensor { try x * tanh(softplus(x)) }

/// Hard sigmoid as PyTorch: f(x) = ReLU6(x + 3)/6 = clamp(x/6 + 1/2, 0, 1), gradient 1/6 on (−3, 3).
///
/// Seed 000 defines hard sigmoid as max(0, min(1, (x + 1)/2)) but uses ReLU6(x + 3)/6 inside its
/// hard swish (NOTES §5.9); Kiln follows PyTorch's `hardsigmoid` (the second form).
public func hardSigmoid(_ x: Tensor) throws -> Tensor {
    let shifted: Tensor = try x / 6 + 0.5
    return try clampOpen(shifted, lower: 0, upper: 1)
}

/// Hard swish: f(x) = x·ReLU6(x + 3)/6, as `torch.nn.functional.hardswish`: 0 for x ≤ −3, x for
/// x ≥ 3, x(x + 3)/6 between; gradient (2x + 3)/6 on [−3, 3], as PyTorch.
public func hardSwish(_ x: Tensor) throws -> Tensor {
    let u: Tensor = try clamp(x, min: -3, max: 3)
    let middle: Tensor = try u * (u + 3) / 6
    let upper: Tensor = try Tensor.selecting(x.greater(constant(3, like: x)), x, middle)
    return try Tensor.selecting(x.less(constant(-3, like: x)), constant(0, like: x), upper)
}

/// Bipolar sigmoid: f(x) = (1 − e^(−x))/(1 + e^(−x)) = tanh(x/2).
public func bipolarSigmoid(_ x: Tensor) throws -> Tensor { try tanh(x * 0.5) }

/// Gaussian activation: f(x) = exp(−x²).
public func gaussian(_ x: Tensor) throws -> Tensor { try exp(-square(x)) }

/// Tanh shrink: f(x) = x − tanh(x), as `torch.nn.functional.tanhshrink`.
public func tanhShrink(_ x: Tensor) throws -> Tensor { try x - tanh(x) }

/// LiSHT (Roy et al. 2019): f(x) = x·tanh(x).
public func lisht(_ x: Tensor) throws -> Tensor { try x * tanh(x) }

/// Serf (Nag et al. 2023): f(x) = x·erf(log(1 + eˣ)).
public func serf(_ x: Tensor) throws -> Tensor { try x * erf(softplus(x)) }

/// Snake (Ziyin et al. 2020): f(x) = x + (1/α)·sin²(αx).
/// - Parameters:
///   - alpha: the frequency α, broadcasting against x (`[1]` or `[C]` on axis 1); nonzero.
/// - Throws: `TensorError.shapeMismatch` naming `snake` when α does not fit x.
public func snake(_ x: Tensor, alpha: Tensor) throws -> Tensor {
    let a = try channelBroadcast(alpha, to: x, op: "snake")
    let wave: Tensor = try square(sin(x * a))
    return try x + wave / a
}

/// Snake with a fixed frequency α (default 1): f(x) = x + (1/α)·sin²(αx).
/// - Throws: `TensorError.invalidArgument` naming `snake` for α = 0 or a non-finite α.
public func snake(_ x: Tensor, alpha: Float = 1) throws -> Tensor {
    try requireFinite(alpha, "alpha", op: "snake")
    guard alpha != 0 else { throw TensorError(.invalidArgument, op: "snake", "alpha must not be 0, got \(alpha)") }
    let wave: Tensor = try square(sin(x * alpha))
    return try x + wave / alpha
}

/// ACON-C (Ma et al. 2021): f(x) = (p₁ − p₂)·x·σ(β(p₁ − p₂)x) + p₂·x.
/// - Parameters:
///   - p1, p2, beta: `[1]` or `[C]` (per channel on axis 1 of x), as the paper's `AconC`.
/// - Throws: `TensorError.shapeMismatch` naming `acon` when a parameter does not fit x.
public func acon(_ x: Tensor, p1: Tensor, p2: Tensor, beta: Tensor) throws -> Tensor {
    let a = try channelBroadcast(p1, to: x, op: "acon"), b = try channelBroadcast(p2, to: x, op: "acon")
    let bt = try channelBroadcast(beta, to: x, op: "acon")
    let dx: Tensor = try (a - b) * x
    let gate: Tensor = try sigmoid(bt * dx)
    return try dx * gate + b * x
}

/// Learnable sigmoid-like unit (catalogue `learnable_sigmoid_unit`): f(x) = 1/(1 + |βx|^γ)^(1/δ),
/// with β, γ, δ tensors that broadcast against x (learnable in `LearnableSigmoidUnit`).
public func learnableSigmoidUnit(_ x: Tensor, beta: Tensor, gamma: Tensor, delta: Tensor) throws -> Tensor {
    let base: Tensor = try pow(abs(beta * x), gamma) + 1
    let exponent: Tensor = try reciprocal(delta) * -1
    return try pow(base, exponent)
}

/// Max-sigmoid unit: f(x)ᵢ = maxⱼ σ(x[…, i·pieces + j]) = σ(maxout(x, pieces)) (σ is increasing).
/// `MaxSigmoidUnit` the layer adds the affine maps Wⱼx + bⱼ.
/// - Throws: `TensorError` naming `maxout` as `maxout`.
public func maxSigmoidUnit(_ x: Tensor, pieces: Int) throws -> Tensor { try sigmoid(maxout(x, pieces: pieces)) }
