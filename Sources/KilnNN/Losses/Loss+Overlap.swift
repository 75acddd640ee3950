import KilnCore

// Overlap (segmentation) losses and feature-space losses. The overlap losses sum over every axis
// but the first (one value per sample) and `reduction` combines the samples.

/// Soft Dice loss: `ℓᵢ = 1 − (2·Σ p·g + s)/(Σ p + Σ g + s)` per sample (seed 000, the Dice
/// coefficient); `squaredDenominator` gives the V-Net form `Σ p² + Σ g²` (Milletari et al. 2016,
/// seed 002), NOTES §5.20. s is a smoothing constant.
/// - Parameters: probabilities and targets `[N, …]`.
public func diceLoss(probabilities: Tensor, targets: Tensor, smooth: Float = 1, squaredDenominator: Bool = false,
                     reduction: LossReduction = .mean) throws -> Tensor {
    let op = "diceLoss"
    let axes = try overlapAxes(probabilities, targets, smooth, op)
    let intersection: Tensor = try (probabilities * targets).sum(alongAxes: axes)
    let p = squaredDenominator ? try square(probabilities) : probabilities
    let g = squaredDenominator ? try square(targets) : targets
    let denominator: Tensor = try p.sum(alongAxes: axes) + g.sum(alongAxes: axes) + smooth
    let score: Tensor = try (intersection * 2 + smooth) / denominator
    return try LossSupport.reduce(1 - score, reduction)
}

/// Tversky loss (Salehi et al. 2017): `ℓᵢ = 1 − (TP + s)/(TP + α·FP + β·FN + s)` per sample, with
/// `TP = Σ p·g`, `FP = Σ p·(1 − g)`, `FN = Σ (1 − p)·g`; α = β = ½ is Dice.
public func tverskyLoss(probabilities: Tensor, targets: Tensor, alpha: Float = 0.5, beta: Float = 0.5,
                        smooth: Float = 1, reduction: LossReduction = .mean) throws -> Tensor {
    let op = "tverskyLoss"
    let axes = try overlapAxes(probabilities, targets, smooth, op)
    try LossSupport.check(alpha >= 0 && beta >= 0, op, "alpha and beta must be ≥ 0, got \(alpha), \(beta)")
    let tp: Tensor = try (probabilities * targets).sum(alongAxes: axes)
    let fp: Tensor = try (probabilities * (1 - targets)).sum(alongAxes: axes)
    let fn: Tensor = try ((1 - probabilities) * targets).sum(alongAxes: axes)
    let denominator: Tensor = try tp + fp * alpha + fn * beta + smooth
    return try LossSupport.reduce(1 - (tp + smooth) / denominator, reduction)
}

/// Soft IoU (Jaccard) loss: `ℓᵢ = 1 − (Σ p·g + s)/(Σ p + Σ g − Σ p·g + s)` per sample.
public func iouLoss(probabilities: Tensor, targets: Tensor, smooth: Float = 1,
                    reduction: LossReduction = .mean) throws -> Tensor {
    let axes = try overlapAxes(probabilities, targets, smooth, "iouLoss")
    let intersection: Tensor = try (probabilities * targets).sum(alongAxes: axes)
    let union: Tensor = try probabilities.sum(alongAxes: axes) + targets.sum(alongAxes: axes) - intersection
    return try LossSupport.reduce(1 - (intersection + smooth) / (union + smooth), reduction)
}

private func overlapAxes(_ p: Tensor, _ g: Tensor, _ smooth: Float, _ op: String) throws -> [Int] {
    try LossSupport.sameShape(p, g, op, ("probabilities", "targets"))
    try LossSupport.check(p.rank >= 2, op, "needs [N, …] with rank ≥ 2, got \(p.shape)")
    try LossSupport.check(smooth >= 0, op, "smooth must be ≥ 0, got \(smooth)")
    return Array(1..<p.rank)
}

/// Perceptual (feature reconstruction) loss (Johnson et al. 2016):
/// `ℓ = Σ_l w_l·mean((Φ_l(x̂) − Φ_l(x))²)`, from feature maps the caller's network computes.
/// Always a scalar.
/// - Throws: `TensorError` for mismatched lists or shapes.
public func perceptualLoss(features: [Tensor], targetFeatures: [Tensor], layerWeights: [Float]? = nil) throws -> Tensor {
    let op = "perceptualLoss"
    try LossSupport.check(!features.isEmpty && features.count == targetFeatures.count
                          && (layerWeights?.count ?? features.count) == features.count, op,
                          "needs equally long, non-empty lists, got \(features.count), \(targetFeatures.count)")
    var total: Tensor? = nil
    for (l, (a, b)) in zip(features, targetFeatures).enumerated() {
        let term: Tensor = try mseLoss(input: a, targets: b) * (layerWeights?[l] ?? 1)
        total = try total.map { try $0 + term } ?? term
    }
    return try total ?? Tensor.zeros([], on: features[0].backend)
}

/// The Gram matrix of feature maps `[N, C, H, W]` (or `[N, C, L]`): `G = F·Fᵀ/(C·H·W)`, F `[N, C, HW]`
/// (Gatys et al., normalised as Johnson et al.). Returns `[N, C, C]`.
public func gramMatrix(_ features: Tensor) throws -> Tensor {
    try LossSupport.check(features.rank >= 3, "gramMatrix", "needs [N, C, …], got \(features.shape)")
    let n = features.shape[0], c = features.shape[1]
    let spatial = features.count / Swift.max(n * c, 1)
    let f = try features.reshaped(to: [n, c, spatial])
    return try matmul(f, f, transposeB: true) / Float(c * spatial)
}

/// Style loss: `ℓ = Σ_l w_l·‖G(Φ_l(x̂)) − G(Φ_l(x))‖²_F` summed over the batch, with `gramMatrix`.
public func styleLoss(features: [Tensor], targetFeatures: [Tensor], layerWeights: [Float]? = nil) throws -> Tensor {
    let op = "styleLoss"
    try LossSupport.check(!features.isEmpty && features.count == targetFeatures.count
                          && (layerWeights?.count ?? features.count) == features.count, op,
                          "needs equally long, non-empty lists, got \(features.count), \(targetFeatures.count)")
    var total: Tensor? = nil
    for (l, (a, b)) in zip(features, targetFeatures).enumerated() {
        try LossSupport.sameShape(a, b, op, ("features", "targetFeatures"))
        let d: Tensor = try gramMatrix(a) - gramMatrix(b)
        let term: Tensor = try square(d).sum() * (layerWeights?[l] ?? 1)
        total = try total.map { try $0 + term } ?? term
    }
    return try total ?? Tensor.zeros([], on: features[0].backend)
}

/// Cycle-consistency loss (CycleGAN, Zhu et al. 2017): `ℓ = λ·(mean|F(G(x)) − x| + mean|G(F(y)) − y|)`.
public func cycleConsistencyLoss(reconstructedX: Tensor, x: Tensor, reconstructedY: Tensor, y: Tensor,
                                 lambda: Float = 10) throws -> Tensor {
    let a = try l1Loss(input: reconstructedX, targets: x)
    let b = try l1Loss(input: reconstructedY, targets: y)
    return try (a + b) * lambda
}

/// Time-averaged sequence cross-entropy: `ℓᵢ = (1/T)·Σ_t CE(z_it, y_it)` for logits `[N, T, C]` and
/// class indices `[N, T]` (the fused `crossEntropy`), reduced over the batch.
public func sequenceCrossEntropy(logits: Tensor, targets: Tensor, reduction: LossReduction = .mean) throws -> Tensor {
    try LossSupport.check(logits.rank == 3, "sequenceCrossEntropy", "needs logits [N, T, C], got \(logits.shape)")
    let perStep = try crossEntropy(logits: logits.transposed(1, 2), targets: targets, reduction: .none)
    return try LossSupport.reduce(perStep.mean(alongAxes: [1]), reduction)
}

/// Masked-language-model loss (BERT): `ℓ = −(1/|M|)·Σ_{i∈M} log P(xᵢ | x_{∖M})`, the fused
/// `crossEntropy` of logits `[N, T, V]` against tokens `[N, T]` at the positions where `mask` `[N, T]`
/// is 1 (the others are ignored). Choosing M (15 %, 80/10/10) is the data pipeline's job.
public func maskedLanguageModelLoss(logits: Tensor, targets: Tensor, mask: Tensor,
                                    reduction: LossReduction = .mean) throws -> Tensor {
    let op = "maskedLanguageModelLoss"
    try LossSupport.check(logits.rank == 3 && targets.shape == Array(logits.shape.prefix(2)) && mask.shape == targets.shape,
                          op, "needs logits [N, T, V], targets and mask [N, T], got \(logits.shape), \(targets.shape), \(mask.shape)")
    let zero = try LossSupport.scalar(0, like: mask)
    let ignore = try LossSupport.scalar(-100, like: targets)
    let masked = try `where`(mask.notEqual(zero), targets, ignore)
    return try crossEntropy(logits: logits.transposed(1, 2), targets: masked, ignoreIndex: -100, reduction: reduction)
}
