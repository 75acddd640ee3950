import KilnCore

// Piecewise-linear and rectifying activations as functions. `relu`, `leakyReLU` and `elu` are
// KilnCore's ops and are used directly. At kinks the gradients follow PyTorch.

/// The binary (Heaviside) step: f(x) = 1 for x > 0, `valueAtZero` for x = 0, 0 for x < 0.
///
/// The seeds disagree at 0 (000: `x > 0`, 001: `z ≥ 0`); Kiln follows the published Heaviside
/// step θ(0) = 1, as seed 001, by default; pass `valueAtZero: 0` for seed 000's form. Piecewise
/// constant: the gradient is zero (no gradient is recorded).
/// - Throws: `TensorError.invalidArgument` naming `binaryStep` for a non-finite `valueAtZero`.
public func binaryStep(_ x: Tensor, valueAtZero: Float = 1) throws -> Tensor {
    try requireFinite(valueAtZero, "valueAtZero", op: "binaryStep")
    let zero = try constant(0, like: x)
    let atZero: Tensor = try x.equal(zero) * valueAtZero
    return try x.greater(zero) + atZero
}

/// The identity activation: f(x) = x (the same tensor, gradient 1).
public func identity(_ x: Tensor) throws -> Tensor { x }

/// ReLU6: f(x) = min(max(0, x), 6), as `torch.nn.functional.relu6` (= hardtanh(x, 0, 6); the
/// gradient is 1 on (0, 6) and 0 elsewhere, including the kinks).
public func relu6(_ x: Tensor) throws -> Tensor { try clampOpen(x, lower: 0, upper: 6) }

/// Hard tanh: f(x) = max(min(x, maxValue), minValue), as `torch.nn.functional.hardtanh`;
/// the gradient is 1 on (minValue, maxValue) and 0 elsewhere.
/// - Throws: `TensorError.invalidArgument` naming `hardTanh` unless minValue ≤ maxValue, both finite.
public func hardTanh(_ x: Tensor, minValue: Float = -1, maxValue: Float = 1) throws -> Tensor {
    try requireFinite(minValue, "minValue", op: "hardTanh")
    try requireFinite(maxValue, "maxValue", op: "hardTanh")
    guard minValue <= maxValue else {
        throw TensorError(.invalidArgument, op: "hardTanh",
                          "minValue \(minValue) must not exceed maxValue \(maxValue)")
    }
    return try clampOpen(x, lower: minValue, upper: maxValue)
}

/// PReLU: f(x) = x for x > 0, a·x otherwise, as `torch.nn.functional.prelu`.
/// - Parameters:
///   - weight: the slopes a, `[1]` (shared) or `[C]` (one per channel on axis 1 of x).
/// - Throws: `TensorError.shapeMismatch` naming `prelu` when `[C]` does not match axis 1.
public func prelu(_ x: Tensor, weight: Tensor) throws -> Tensor {
    let a = try channelBroadcast(weight, to: x, op: "prelu")
    let negative: Tensor = try x * a
    return try Tensor.selecting(x.greater(constant(0, like: x)), x, negative)
}

/// SELU: f(x) = λ·(x for x > 0, α(eˣ − 1) otherwise) with PyTorch's constants
/// α = 1.6732632423543772, λ = 1.0507009873554805 (seed 001 rounds them to 1.673 and 1.051).
public func selu(_ x: Tensor) throws -> Tensor {
    let alpha: Float = 1.6732632423543772848170429916717
    let scale: Float = 1.0507009873554804934193349852946
    let e: Tensor = try elu(x, alpha: alpha)
    return try e * scale
}

/// CELU: f(x) = max(0, x) + min(0, α(exp(x/α) − 1)), as `torch.nn.functional.celu`
/// (gradient 1 at x = 0).
/// - Throws: `TensorError.invalidArgument` naming `celu` for α = 0 or non-finite α.
public func celu(_ x: Tensor, alpha: Float = 1) throws -> Tensor {
    try requireFinite(alpha, "alpha", op: "celu")
    guard alpha != 0 else { throw TensorError(.invalidArgument, op: "celu", "alpha must not be 0, got \(alpha)") }
    let zero = try constant(0, like: x)
    let nonPositive: Tensor = try minimum(x, zero)   // keeps exp finite in the unselected branch
    let scaled: Tensor = try nonPositive / alpha
    let negative: Tensor = try expm1(scaled) * alpha
    return try Tensor.selecting(x.greater(zero), x, negative)
}

/// Thresholded ReLU: f(x) = x for x > θ, 0 otherwise (Keras `ThresholdedReLU`, default θ = 1;
/// PyTorch's `nn.Threshold(θ, 0)`).
/// - Throws: `TensorError.invalidArgument` naming `thresholdedReLU` for a non-finite θ.
public func thresholdedReLU(_ x: Tensor, threshold: Float = 1) throws -> Tensor {
    try requireFinite(threshold, "threshold", op: "thresholdedReLU")
    return try Tensor.selecting(x.greater(constant(threshold, like: x)), x, constant(0, like: x))
}

/// Hard shrink: f(x) = x for |x| > λ, 0 otherwise, as `torch.nn.functional.hardshrink` (λ = 0.5).
/// - Throws: `TensorError.invalidArgument` naming `hardShrink` unless λ is finite and ≥ 0.
public func hardShrink(_ x: Tensor, lambda: Float = 0.5) throws -> Tensor {
    try requirePositive(lambda, "lambda", op: "hardShrink", allowZero: true)
    return try Tensor.selecting(abs(x).greater(constant(lambda, like: x)), x, constant(0, like: x))
}

/// Soft shrink (soft thresholding): f(x) = sign(x)·max(|x| − λ, 0) = x − clamp(x, −λ, λ), as
/// `torch.nn.functional.softshrink` (λ = 0.5; gradient 0 on [−λ, λ]).
/// - Throws: `TensorError.invalidArgument` naming `softShrink` unless λ is finite and ≥ 0.
public func softShrink(_ x: Tensor, lambda: Float = 0.5) throws -> Tensor {
    try requirePositive(lambda, "lambda", op: "softShrink", allowZero: true)
    return try x - clamp(x, min: -lambda, max: lambda)
}

/// RReLU: f(x) = x for x ≥ 0, a·x otherwise, as `torch.nn.functional.rrelu`. In training a is
/// drawn per element from U(lower, upper) with the Philox stream of `seed` (the same on every
/// backend); in evaluation a = (lower + upper)/2.
/// - Throws: `TensorError.invalidArgument` naming `rrelu` unless lower ≤ upper, both finite.
public func rrelu(_ x: Tensor, lower: Float = 1.0 / 8, upper: Float = 1.0 / 3, training: Bool = false,
                  seed: UInt64 = 0) throws -> Tensor {
    try requireFinite(lower, "lower", op: "rrelu")
    try requireFinite(upper, "upper", op: "rrelu")
    guard lower <= upper else {
        throw TensorError(.invalidArgument, op: "rrelu", "lower \(lower) must not exceed upper \(upper)")
    }
    guard training else { return try leakyReLU(x, negativeSlope: (lower + upper) / 2) }
    let slopes = try Tensor.uniform(x.shape, low: lower, high: upper, seed: seed, on: x.backend)
    let negative: Tensor = try x * slopes
    return try Tensor.selecting(x.greaterEqual(constant(0, like: x)), x, negative)
}

/// CReLU: [max(0, x), max(0, −x)] concatenated along `axis` (TensorFlow's `crelu`, axis −1), so
/// that axis doubles in size.
/// - Throws: `TensorError.badAxis` naming `crelu` for an axis out of range.
public func crelu(_ x: Tensor, axis: Int = -1) throws -> Tensor {
    let a = try resolvedAxis(axis, of: x, op: "crelu")
    return try Tensor.concatenated([relu(x), relu(-x)], axis: a)
}

/// ISRU: f(x) = x/√(1 + αx²) (Carlile et al. 2017, α = 1).
/// - Throws: `TensorError.invalidArgument` naming `isru` unless α is finite and ≥ 0.
public func isru(_ x: Tensor, alpha: Float = 1) throws -> Tensor {
    try requirePositive(alpha, "alpha", op: "isru", allowZero: true)
    let denominator: Tensor = try square(x) * alpha + 1
    return try x * rsqrt(denominator)
}

/// ISRLU: f(x) = x for x ≥ 0, x/√(1 + αx²) otherwise (α = 1).
/// - Throws: `TensorError.invalidArgument` naming `isrlu` unless α is finite and ≥ 0.
public func isrlu(_ x: Tensor, alpha: Float = 1) throws -> Tensor {
    try requirePositive(alpha, "alpha", op: "isrlu", allowZero: true)
    let zero = try constant(0, like: x)
    let negative: Tensor = try isru(minimum(x, zero), alpha: alpha)
    return try Tensor.selecting(x.greaterEqual(zero), x, negative)
}

/// APL (adaptive piecewise linear, Agostinelli et al. 2015): f(x) = max(0, x) + Σₛ aₛ·max(0, −x + bₛ).
/// - Parameters:
///   - a, b: `[S, …]`, hinge s in row s; the rest broadcasts against x's trailing axes (e.g. `[S, features]`).
/// - Throws: `TensorError.shapeMismatch` naming `apl` when a and b differ or do not broadcast.
public func apl(_ x: Tensor, a: Tensor, b: Tensor) throws -> Tensor {
    guard a.shape == b.shape, a.rank >= 1 else {
        throw TensorError(.shapeMismatch, op: "apl", "a \(a.shape) and b \(b.shape) must share a shape [S, …]")
    }
    guard a.rank - 1 <= x.rank else {
        throw TensorError(.shapeMismatch, op: "apl", "a and b \(a.shape) have more feature axes than x \(x.shape)")
    }
    // [S, …] → [S, 1, …, 1, …] so the feature axes align with x's trailing axes.
    let aligned = [a.shape[0]] + [Int](repeating: 1, count: x.rank - (a.rank - 1)) + Array(a.shape.dropFirst())
    let hinges: Tensor = try relu(b.reshaped(to: aligned) - x.unsqueezed(axis: 0))
    let weighted: Tensor = try a.reshaped(to: aligned) * hinges
    return try relu(x) + weighted.sum(alongAxes: [0])
}

/// Bent identity: f(x) = (√(x² + 1) − 1)/2 + x.
public func bentIdentity(_ x: Tensor) throws -> Tensor {
    let root: Tensor = try sqrt(square(x) + 1)
    let bend: Tensor = try (root - 1) * 0.5
    return try bend + x
}

/// SQNL (square non-linearity): 1 for x > 2, x − x²/4 on [0, 2], x + x²/4 on [−2, 0), −1 for x < −2,
/// computed as u − u·|u|/4 with u = clamp(x, −2, 2).
public func sqnl(_ x: Tensor) throws -> Tensor {
    let u: Tensor = try clamp(x, min: -2, max: 2)
    let bend: Tensor = try u * abs(u) * 0.25
    return try u - bend
}

/// Maxout (Goodfellow et al. 2013) over groups of `pieces` consecutive units of the last axis:
/// f(x)ᵢ = maxⱼ x[…, i·pieces + j], `[…, n·pieces] → […, n]`. The gradient goes to the maximum
/// (split equally on ties). `Maxout` the layer adds the affine maps wⱼᵀx + bⱼ.
/// - Throws: `TensorError` naming `maxout` for pieces < 1 or a last axis not divisible by pieces.
public func maxout(_ x: Tensor, pieces: Int) throws -> Tensor {
    guard pieces >= 1, x.rank >= 1, x.shape[x.rank - 1] % pieces == 0 else {
        throw TensorError(.invalidArgument, op: "maxout",
                          "the last axis of \(x.shape) must be a multiple of pieces \(pieces) ≥ 1")
    }
    let grouped = try x.reshaped(to: Array(x.shape.dropLast()) + [x.shape[x.rank - 1] / pieces, pieces])
    return try grouped.max(alongAxes: [-1])
}
