import Foundation
import KilnCore

// Regression losses between an input (prediction) and a target of the same shape.

/// Mean squared error, as `mse_loss`: `ℓ = (x − y)²`.
/// - Throws: `TensorError` when the shapes differ.
public func mseLoss(input: Tensor, targets: Tensor, reduction: LossReduction = .mean) throws -> Tensor {
    try LossSupport.sameShape(input, targets, "mseLoss")
    return try LossSupport.reduce(square(input - targets), reduction)
}

/// Mean absolute error, as `l1_loss`: `ℓ = |x − y|` (gradient sign(x − y), 0 at a tie).
public func l1Loss(input: Tensor, targets: Tensor, reduction: LossReduction = .mean) throws -> Tensor {
    try LossSupport.sameShape(input, targets, "l1Loss")
    return try LossSupport.reduce(abs(input - targets), reduction)
}

/// Smooth L1, as `smooth_l1_loss`: `ℓ = 0.5·d²/β` for `|d| < β`, else `|d| − 0.5·β`, d = x − y;
/// β = 0 is the L1 loss.
/// - Throws: `TensorError` for mismatched shapes or β < 0.
public func smoothL1Loss(input: Tensor, targets: Tensor, reduction: LossReduction = .mean, beta: Float = 1) throws -> Tensor {
    let op = "smoothL1Loss"
    try LossSupport.sameShape(input, targets, op)
    try LossSupport.check(beta >= 0 && beta.isFinite, op, "beta must be finite and ≥ 0, got \(beta)")
    let d: Tensor = try abs(input - targets)
    if beta == 0 { return try LossSupport.reduce(d, reduction) }
    let quadratic: Tensor = try square(d) * (0.5 / beta)
    let linear: Tensor = try d - 0.5 * beta
    let inside: Tensor = try d.less(LossSupport.scalar(beta, like: d))
    return try LossSupport.reduce(`where`(inside, quadratic, linear), reduction)
}

/// Huber loss, as `huber_loss`: `ℓ = 0.5·d²` for `|d| < δ`, else `δ·(|d| − 0.5·δ)`, d = x − y.
/// - Throws: `TensorError` for mismatched shapes or δ ≤ 0.
public func huberLoss(input: Tensor, targets: Tensor, reduction: LossReduction = .mean, delta: Float = 1) throws -> Tensor {
    let op = "huberLoss"
    try LossSupport.sameShape(input, targets, op)
    try LossSupport.check(delta > 0 && delta.isFinite, op, "delta must be finite and > 0, got \(delta)")
    let d: Tensor = try abs(input - targets)
    let quadratic: Tensor = try square(d) * 0.5
    let linear: Tensor = try (d - 0.5 * delta) * delta
    let inside: Tensor = try d.less(LossSupport.scalar(delta, like: d))
    return try LossSupport.reduce(`where`(inside, quadratic, linear), reduction)
}

/// Log-cosh loss: `ℓ = log cosh(x − y)`, computed as `|d| + softplus(−2|d|) − log 2`, which does
/// not overflow for large |d|.
public func logCoshLoss(input: Tensor, targets: Tensor, reduction: LossReduction = .mean) throws -> Tensor {
    try LossSupport.sameShape(input, targets, "logCoshLoss")
    let d: Tensor = try abs(input - targets)
    let tail: Tensor = try softplus(d * -2)
    let loss: Tensor = try d + tail - Float(M_LN2)
    return try LossSupport.reduce(loss, reduction)
}

/// Quantile (pinball) loss: `ℓ = max(τ·e, (τ − 1)·e)`, e = y − x.
/// - Throws: `TensorError` for mismatched shapes or τ outside [0, 1].
public func quantileLoss(input: Tensor, targets: Tensor, quantile: Float = 0.5,
                         reduction: LossReduction = .mean) throws -> Tensor {
    let op = "quantileLoss"
    try LossSupport.sameShape(input, targets, op)
    try LossSupport.check(quantile >= 0 && quantile <= 1, op, "quantile must lie in [0, 1], got \(quantile)")
    let e: Tensor = try targets - input
    let loss: Tensor = try maximum(e * quantile, e * (quantile - 1))
    return try LossSupport.reduce(loss, reduction)
}

/// Wing loss (Feng et al. 2018): `ℓ = w·ln(1 + |d|/ε)` for `|d| < w`, else `|d| − C`,
/// `C = w − w·ln(1 + w/ε)`, d = x − y.
/// - Throws: `TensorError` for mismatched shapes, w ≤ 0 or ε ≤ 0.
public func wingLoss(input: Tensor, targets: Tensor, width: Float = 10, curvature: Float = 2,
                     reduction: LossReduction = .mean) throws -> Tensor {
    let op = "wingLoss"
    try LossSupport.sameShape(input, targets, op)
    try LossSupport.check(width > 0 && curvature > 0, op, "width and curvature must be > 0, got \(width), \(curvature)")
    let d: Tensor = try abs(input - targets)
    let c = width - width * Foundation.log(1 + width / curvature)
    let near: Tensor = try log1p(d / curvature) * width
    let far: Tensor = try d - c
    let inside: Tensor = try d.less(LossSupport.scalar(width, like: d))
    return try LossSupport.reduce(`where`(inside, near, far), reduction)
}

/// Correntropy (Welsch) loss: `ℓ = 1 − exp(−d²/(2σ²))`, d = x − y.
/// - Throws: `TensorError` for mismatched shapes or σ ≤ 0.
public func correntropyLoss(input: Tensor, targets: Tensor, sigma: Float = 1,
                            reduction: LossReduction = .mean) throws -> Tensor {
    let op = "correntropyLoss"
    try LossSupport.sameShape(input, targets, op)
    try LossSupport.check(sigma > 0, op, "sigma must be > 0, got \(sigma)")
    let z: Tensor = try square(input - targets) * (-1 / (2 * sigma * sigma))
    return try LossSupport.reduce(1 - exp(z), reduction)
}

/// Poisson negative log-likelihood, as `poisson_nll_loss`: `ℓ = eˣ − y·x` when `logInput`, else
/// `x − y·log(x + eps)`; `full` adds Stirling's term `y·log y − y + ½·log(2πy)` where y > 1.
/// - Throws: `TensorError` for mismatched shapes or eps ≤ 0.
public func poissonNLLLoss(input: Tensor, targets: Tensor, logInput: Bool = true, full: Bool = false,
                           eps: Float = 1e-8, reduction: LossReduction = .mean) throws -> Tensor {
    let op = "poissonNLLLoss"
    try LossSupport.sameShape(input, targets, op)
    try LossSupport.check(eps > 0, op, "eps must be > 0, got \(eps)")
    var loss: Tensor
    if logInput {
        loss = try exp(input) - targets * input
    } else {
        let logRate: Tensor = try log(input + eps)
        loss = try input - targets * logRate
    }
    if full {
        let one = try LossSupport.scalar(1, like: targets)
        let safe: Tensor = try maximum(targets, one)
        let logY: Tensor = try log(safe)
        let half: Tensor = try log(safe * Float(2 * Double.pi)) * 0.5
        let stirling: Tensor = try safe * logY - safe + half
        loss = try loss + `where`(targets.greater(one), stirling, LossSupport.scalar(0, like: targets))
    }
    return try LossSupport.reduce(loss, reduction)
}

/// Gaussian negative log-likelihood, as `gaussian_nll_loss`:
/// `ℓ = ½·(log max(σ², eps) + (x − y)²/max(σ², eps))` (+ ½·log 2π when `full`). `variance` broadcasts
/// to the input (one fewer trailing dimension is allowed, as PyTorch). Below eps the clamp stops
/// the variance gradient (PyTorch clamps in place under no_grad and passes it on).
/// - Throws: `TensorError` for shapes, a negative variance, or eps ≤ 0.
public func gaussianNLLLoss(input: Tensor, targets: Tensor, variance: Tensor, full: Bool = false, eps: Float = 1e-6,
                            reduction: LossReduction = .mean) throws -> Tensor {
    let op = "gaussianNLLLoss"
    try LossSupport.sameShape(input, targets, op)
    try LossSupport.check(eps > 0, op, "eps must be > 0, got \(eps)")
    var v = variance
    if v.rank == input.rank - 1 && Array(input.shape.dropLast()) == v.shape { v = try v.unsqueezed(axis: -1) }
    _ = try Shape.broadcast(input.shape, v.shape, op: op)
    let values = try v.scalars()
    try LossSupport.check(!values.contains(where: { $0 < 0 }), op, "variance has negative entries")
    let clamped: Tensor = try clamp(v, min: eps)
    let quad: Tensor = try square(input - targets) / clamped
    var loss: Tensor = try (log(clamped) + quad) * 0.5
    if full { loss = try loss + Float(0.5 * Foundation.log(2 * Double.pi)) }
    return try LossSupport.reduce(loss, reduction)
}

/// Tweedie deviance loss for 1 < p < 2 (as LightGBM/XGBoost `tweedie`):
/// `ℓ = −y·μ^{1−p}/(1 − p) + μ^{2−p}/(2 − p)`, with μ = eˣ when `logInput` (else μ = x).
/// The catalogue writes `−[y·log μ − μ^{1−p}/(1−p)]`, which is not the Tweedie likelihood; Kiln
/// follows the published form.
/// - Throws: `TensorError` for mismatched shapes or p outside (1, 2).
public func tweedieLoss(input: Tensor, targets: Tensor, power: Float = 1.5, logInput: Bool = true,
                        reduction: LossReduction = .mean) throws -> Tensor {
    let op = "tweedieLoss"
    try LossSupport.sameShape(input, targets, op)
    try LossSupport.check(power > 1 && power < 2, op, "power must lie in (1, 2), got \(power)")
    let a: Tensor, b: Tensor
    if logInput {
        a = try exp(input * (1 - power))
        b = try exp(input * (2 - power))
    } else {
        a = try pow(input, 1 - power)
        b = try pow(input, 2 - power)
    }
    let first: Tensor = try targets * a * (-1 / (1 - power))
    let loss: Tensor = try first + b * (1 / (2 - power))
    return try LossSupport.reduce(loss, reduction)
}

/// Student's t negative log-likelihood with location x, scale s and ν degrees of freedom:
/// `ℓ = −log Γ((ν+1)/2) + log Γ(ν/2) + ½·log(νπ) + log s + (ν+1)/2·log(1 + ((y − x)/s)²/ν)`.
/// `scale` broadcasts to the input (1 when nil).
/// - Throws: `TensorError` for mismatched shapes or ν ≤ 0.
public func studentTNLLLoss(input: Tensor, targets: Tensor, degreesOfFreedom nu: Float = 1, scale: Tensor? = nil,
                            reduction: LossReduction = .mean) throws -> Tensor {
    let op = "studentTNLLLoss"
    try LossSupport.sameShape(input, targets, op)
    try LossSupport.check(nu > 0 && nu.isFinite, op, "degreesOfFreedom must be finite and > 0, got \(nu)")
    let n = Double(nu)
    let constant = Float(-lgamma((n + 1) / 2) + lgamma(n / 2) + 0.5 * Foundation.log(n * Double.pi))
    var z: Tensor = try targets - input
    if let scale { z = try z / scale }
    let tail: Tensor = try log1p(square(z) / nu) * ((nu + 1) / 2)
    var loss: Tensor = try tail + constant
    if let scale { loss = try loss + log(scale) }
    return try LossSupport.reduce(loss, reduction)
}

/// Time-averaged sequence MSE: `ℓᵢ = (1/T)·Σ_t ‖y_it − x_it‖²` for `[N, T, D]` (or `[N, T]`),
/// reduced over the batch.
/// - Throws: `TensorError` for mismatched shapes or rank < 2.
public func sequenceMSELoss(input: Tensor, targets: Tensor, reduction: LossReduction = .mean) throws -> Tensor {
    let op = "sequenceMSELoss"
    try LossSupport.sameShape(input, targets, op)
    try LossSupport.check(input.rank >= 2, op, "needs [N, T, …], got \(input.shape)")
    let sq: Tensor = try square(input - targets)
    var perStep = sq
    if input.rank > 2 { perStep = try sq.sum(alongAxes: Array(2..<input.rank)) }
    return try LossSupport.reduce(perStep.mean(alongAxes: [1]), reduction)
}
