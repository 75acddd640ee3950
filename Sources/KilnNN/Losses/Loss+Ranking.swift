import Foundation
import KilnCore

// Ranking, metric-learning, contrastive and angular-margin losses.

/// `‖a − b + eps‖_p` along the last axis, as `torch.nn.functional.pairwise_distance`.
/// - Throws: `TensorError` for shapes that do not broadcast or p ≤ 0.
public func pairwiseDistance(_ a: Tensor, _ b: Tensor, p: Float = 2, eps: Float = 1e-6) throws -> Tensor {
    try LossSupport.check(p > 0, "pairwiseDistance", "p must be > 0, got \(p)")
    let d: Tensor = try a - b + eps
    if p == 2 { return try sqrt(square(d).sum(alongAxes: [-1])) }
    if p == 1 { return try abs(d).sum(alongAxes: [-1]) }
    let powered: Tensor = try pow(abs(d), p).sum(alongAxes: [-1])
    return try pow(powered, 1 / p)
}

/// Hinge embedding loss, as `hinge_embedding_loss`: `ℓ = x` where y = 1 and `max(0, margin − x)`
/// where y = −1.
public func hingeEmbeddingLoss(input: Tensor, targets: Tensor, margin: Float = 1,
                               reduction: LossReduction = .mean) throws -> Tensor {
    try LossSupport.sameShape(input, targets, "hingeEmbeddingLoss")
    let one = try LossSupport.scalar(1, like: targets)
    let loss = try `where`(targets.equal(one), input, relu(margin - input))
    return try LossSupport.reduce(loss, reduction)
}

/// Margin ranking loss, as `margin_ranking_loss`: `ℓ = max(0, −y·(x₁ − x₂) + margin)`, y ∈ {−1, 1}
/// (y = 1: x₁ should rank higher).
public func marginRankingLoss(_ input1: Tensor, _ input2: Tensor, targets: Tensor, margin: Float = 0,
                              reduction: LossReduction = .mean) throws -> Tensor {
    try LossSupport.sameShape(input1, input2, "marginRankingLoss", ("input1", "input2"))
    try LossSupport.sameShape(input1, targets, "marginRankingLoss", ("input1", "targets"))
    let gap: Tensor = try (input1 - input2) * targets
    return try LossSupport.reduce(relu(margin - gap), reduction)
}

/// Triplet margin loss, as `triplet_margin_loss`: `ℓ = max(d(a, p) − d(a, n) + margin, 0)` with
/// `d = pairwiseDistance(·, ·, p, eps)`; `swap` uses `min(d(a, n), d(p, n))` (Balntas et al.).
/// - Parameters: anchor, positive, negative `[N, D]` or `[D]`.
/// - Throws: `TensorError` for mismatched shapes, margin ≤ 0 or p ≤ 0.
public func tripletMarginLoss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: Float = 1, p: Float = 2,
                              eps: Float = 1e-6, swap: Bool = false, reduction: LossReduction = .mean) throws -> Tensor {
    let op = "tripletMarginLoss"
    try LossSupport.sameShape(anchor, positive, op, ("anchor", "positive"))
    try LossSupport.sameShape(anchor, negative, op, ("anchor", "negative"))
    try LossSupport.check(margin > 0, op, "margin must be > 0, got \(margin)")
    let dPos = try pairwiseDistance(anchor, positive, p: p, eps: eps)
    var dNeg = try pairwiseDistance(anchor, negative, p: p, eps: eps)
    if swap { dNeg = try minimum(dNeg, pairwiseDistance(positive, negative, p: p, eps: eps)) }
    return try LossSupport.reduce(relu(dPos - dNeg + margin), reduction)
}

/// `cos(x₁, x₂) = Σ x₁x₂ / √((Σx₁² + ε)(Σx₂² + ε))` along the last axis (ε = 1e-12, as PyTorch's
/// cosine embedding loss).
func cosineAlongLastAxis(_ a: Tensor, _ b: Tensor, eps: Float = 1e-12) throws -> Tensor {
    let dot: Tensor = try (a * b).sum(alongAxes: [-1])
    let na: Tensor = try square(a).sum(alongAxes: [-1]) + eps
    let nb: Tensor = try square(b).sum(alongAxes: [-1]) + eps
    return try dot / sqrt(na * nb)
}

/// Cosine embedding loss, as `cosine_embedding_loss`: `ℓ = 1 − cos(x₁, x₂)` where y = 1 and
/// `max(0, cos(x₁, x₂) − margin)` where y = −1.
/// - Parameters: inputs `[N, D]`, targets `[N]` of ±1.
public func cosineEmbeddingLoss(_ input1: Tensor, _ input2: Tensor, targets: Tensor, margin: Float = 0,
                                reduction: LossReduction = .mean) throws -> Tensor {
    let op = "cosineEmbeddingLoss"
    try LossSupport.sameShape(input1, input2, op, ("input1", "input2"))
    try LossSupport.check(input1.rank >= 1 && targets.shape == Array(input1.shape.dropLast()), op,
                          "targets must have shape \(Array(input1.shape.dropLast())), got \(targets.shape)")
    let c = try cosineAlongLastAxis(input1, input2)
    let one = try LossSupport.scalar(1, like: targets)
    let loss = try `where`(targets.equal(one), 1 - c, relu(c - margin))
    return try LossSupport.reduce(loss, reduction)
}

/// Contrastive loss (Hadsell, Chopra & LeCun 2006): `ℓ = ½·[y·d² + (1 − y)·max(0, margin − d)²]`
/// with `d = pairwiseDistance(x₁, x₂)` and y = 1 for a similar pair (as seed 002; Hadsell's paper
/// labels similar pairs 0).
public func contrastiveLoss(_ input1: Tensor, _ input2: Tensor, targets: Tensor, margin: Float = 1,
                            reduction: LossReduction = .mean) throws -> Tensor {
    let op = "contrastiveLoss"
    try LossSupport.sameShape(input1, input2, op, ("input1", "input2"))
    try LossSupport.check(input1.rank >= 1 && targets.shape == Array(input1.shape.dropLast()), op,
                          "targets must have shape \(Array(input1.shape.dropLast())), got \(targets.shape)")
    let d = try pairwiseDistance(input1, input2)
    let pull: Tensor = try targets * square(d)
    let push: Tensor = try (1 - targets) * square(relu(margin - d))
    return try LossSupport.reduce((pull + push) * 0.5, reduction)
}

/// Rows scaled to unit L2 norm, `x / max(‖x‖, 1e-12)`, as `torch.nn.functional.normalize`.
func l2Normalized(_ x: Tensor) throws -> Tensor {
    let norm: Tensor = try sqrt(square(x).sum(alongAxes: [-1], keepingDimensions: true))
    return try x / clamp(norm, min: 1e-12)
}

/// InfoNCE (van den Oord et al. 2018; CLIP/MoCo form): with unit-normalised query qᵢ and keys kⱼ,
/// `ℓᵢ = −log( e^{qᵢ·kᵢ/τ} / Σⱼ e^{qᵢ·kⱼ/τ} )`, the other rows' positives serving as negatives:
/// the fused `crossEntropy` of the `[N, N]` similarity logits against the diagonal.
/// - Parameters: query and positiveKeys `[N, D]`; τ the temperature.
/// - Throws: `TensorError` for shapes or τ ≤ 0.
public func infoNCELoss(query: Tensor, positiveKeys: Tensor, temperature: Float = 0.1,
                        reduction: LossReduction = .mean) throws -> Tensor {
    let op = "infoNCELoss"
    try LossSupport.sameShape(query, positiveKeys, op, ("query", "positiveKeys"))
    try LossSupport.check(query.rank == 2, op, "needs [N, D] inputs, got \(query.shape)")
    try LossSupport.check(temperature > 0, op, "temperature must be > 0, got \(temperature)")
    let logits: Tensor = try matmul(l2Normalized(query), l2Normalized(positiveKeys), transposeB: true) / temperature
    let labels = try Tensor.arange(to: Double(query.shape[0]), on: query.backend)
    return try crossEntropy(logits: logits, targets: labels, reduction: reduction)
}

/// NT-Xent (SimCLR, Chen et al. 2020): for the 2N views z = [z₁; z₂] normalised, with sᵢⱼ = zᵢ·zⱼ/τ,
/// `ℓᵢ = −log( e^{s_{i,j(i)}} / Σ_{k≠i} e^{s_ik} )`, j(i) the other view of sample i; `.mean`
/// averages over the 2N anchors. Self-similarities are masked with −∞ before the log-sum-exp.
/// - Parameters: the two views `[N, D]`; τ the temperature.
public func ntXentLoss(_ view1: Tensor, _ view2: Tensor, temperature: Float = 0.5,
                       reduction: LossReduction = .mean) throws -> Tensor {
    let op = "ntXentLoss"
    try LossSupport.sameShape(view1, view2, op, ("view1", "view2"))
    try LossSupport.check(view1.rank == 2, op, "needs [N, D] inputs, got \(view1.shape)")
    try LossSupport.check(temperature > 0, op, "temperature must be > 0, got \(temperature)")
    let n = view1.shape[0]
    let z = try l2Normalized(Tensor.concatenated([view1, view2], axis: 0))
    let sim: Tensor = try matmul(z, z, transposeB: true) / temperature
    let eye = try Tensor.eye(2 * n, on: z.backend)
    let masked = try `where`(eye, LossSupport.scalar(-.infinity, like: z), sim)
    let labels = try Tensor((0..<(2 * n)).map { Float($0 < n ? $0 + n : $0 - n) }, on: z.backend)
    return try crossEntropy(logits: masked, targets: labels, reduction: reduction)
}

/// ArcFace (Deng et al. 2019): `ℓᵢ = CE(s·[cos(θ_{yᵢ} + m) at yᵢ, cos θⱼ elsewhere], yᵢ)` from the
/// cosines `cos θ = x̂·Ŵ` the caller computes (normalised features times normalised class weights).
/// `cos(θ + m) = cos θ·cos m − sin θ·sin m` with `sin θ = √(max(1 − cos²θ, 1e-7))`; no easy-margin
/// fallback. The softmax cross-entropy is the fused one.
/// - Parameters: cosines `[N, C]` in [−1, 1]; targets class indices `[N]`.
public func arcFaceLoss(cosines: Tensor, targets: Tensor, scale: Float = 64, margin: Float = 0.5,
                        reduction: LossReduction = .mean) throws -> Tensor {
    try angularMarginLoss(cosines, targets, scale: scale, op: "arcFaceLoss") { c in
        let sine: Tensor = try sqrt(clamp(1 - square(c), min: 1e-7))
        return try c * Float(Foundation.cos(Double(margin))) - sine * Float(Foundation.sin(Double(margin)))
    }.reduced(reduction)
}

/// CosFace / AM-Softmax (Wang et al. 2018): `ℓᵢ = CE(s·[cos θ_{yᵢ} − m at yᵢ, cos θⱼ elsewhere], yᵢ)`.
/// - Parameters: cosines `[N, C]`; targets class indices `[N]`.
public func cosFaceLoss(cosines: Tensor, targets: Tensor, scale: Float = 64, margin: Float = 0.35,
                        reduction: LossReduction = .mean) throws -> Tensor {
    try angularMarginLoss(cosines, targets, scale: scale, op: "cosFaceLoss") { c in try c - margin }
        .reduced(reduction)
}

/// SphereFace / A-Softmax (Liu et al. 2017): logits `‖x‖·cos θⱼ`, the target's replaced by
/// `‖x‖·ψ(θ)`, `ψ(θ) = (−1)ᵏ·cos(mθ) − 2k` for θ ∈ [kπ/m, (k+1)π/m] (monotone), cos(mθ) from the
/// Chebyshev polynomial T_m(cos θ). Class weights are normalised (‖W_j‖ = 1, as the paper), so
/// the catalogue's ‖W_j‖ factors are 1. The softmax cross-entropy is the fused one.
/// - Parameters: features `[N, D]`, classWeights `[C, D]`, targets `[N]`, integer margin m ≥ 1.
public func sphereFaceLoss(features: Tensor, classWeights: Tensor, targets: Tensor, margin: Int = 4,
                           reduction: LossReduction = .mean) throws -> Tensor {
    let op = "sphereFaceLoss"
    try LossSupport.check(margin >= 1 && margin <= 8, op, "margin must be an integer in 1…8, got \(margin)")
    try LossSupport.check(features.rank == 2 && classWeights.rank == 2 && features.shape[1] == classWeights.shape[1],
                          op, "needs features [N, D] and classWeights [C, D], got \(features.shape), \(classWeights.shape)")
    let norms: Tensor = try sqrt(square(features).sum(alongAxes: [1], keepingDimensions: true))
    let cosines: Tensor = try matmul(l2Normalized(features), l2Normalized(classWeights), transposeB: true)
    let per = try angularMarginLoss(cosines, targets, scale: 1, op: op, rowScale: norms) { c in
        // T_m(c) by the recurrence T_{k+1} = 2c·T_k − T_{k−1}.
        var previous: Tensor = try Tensor.ones([], on: c.backend) * 1
        var current = c
        if margin == 1 { return c }
        for _ in 1..<margin {
            let next: Tensor = try c * current * 2 - previous
            previous = current
            current = next
        }
        // k = #{j ∈ 1..<m : cos θ ≤ cos(jπ/m)}; ψ = (−1)ᵏ T_m − 2k.
        var k: Tensor = try Tensor.zeros([], on: c.backend) * 1
        for j in 1..<margin {
            let bound = try LossSupport.scalar(Float(Foundation.cos(Double(j) * Double.pi / Double(margin))), like: c)
            k = try k + c.lessEqual(bound)
        }
        let signFlip: Tensor = try 1 - (k - floor(k * 0.5) * 2) * 2
        return try signFlip * current - k * 2
    }
    return try per.reduced(reduction)
}

/// Per-sample cross-entropy of `scale·rowScale·cosines` with the target column replaced by
/// `marginFn(target cosine)`.
private func angularMarginLoss(_ cosines: Tensor, _ targets: Tensor, scale: Float, op: String, rowScale: Tensor? = nil,
                               _ marginFn: (Tensor) throws -> Tensor) throws -> Tensor {
    try LossSupport.check(cosines.rank == 2 && targets.shape == [cosines.shape[0]], op,
                          "needs cosines [N, C] and targets [N], got \(cosines.shape), \(targets.shape)")
    try LossSupport.check(scale > 0, op, "scale must be > 0, got \(scale)")
    let (c, t, _, classes) = try LossSupport.classLayout(cosines, targets, ignoreIndex: nil, op: op)
    let column: Tensor = try t.reshaped(to: [t.count, 1])
    let picked: Tensor = try c.gathered(axis: 1, indices: column)
    let isTarget: Tensor = try column.equal(Tensor.arange(to: Double(classes), on: c.backend))
    var logits: Tensor = try `where`(isTarget, marginFn(picked), c) * scale
    if let rowScale { logits = try logits * rowScale }
    return try crossEntropy(logits: logits, targets: t, reduction: .none)
}

extension Tensor {
    /// This per-element loss reduced as `reduction` says.
    func reduced(_ reduction: LossReduction) throws -> Tensor { try LossSupport.reduce(self, reduction) }
}
