import KilnCore

// Classification losses over logits, probabilities and class indices. Class-index targets are
// Float tensors of integral values; logits are `[N, C]`, `[N, C, d…]` or `[C]` with the class axis
// at 1 (0 for rank 1), as PyTorch.

/// Cross-entropy from logits and class indices, as `torch.nn.functional.cross_entropy`:
/// `ℓᵢ = w_{yᵢ}·(log Σ_c e^{z_ic} − z_{i,yᵢ})`, fused: the log-sum-exp (which subtracts the row
/// maximum) minus the gathered target logit, with no softmax or log materialised, so it is exact for
/// logits of ±1e4 and its gradient is `softmax(z) − onehot(y)`.
///
/// With label smoothing ε the target is `(1 − ε)·onehot(y) + ε/C` (Szegedy et al.), computed as
/// `(1 − ε)·ℓᵢ + ε/C·Σ_c w_c·(lse_i − z_ic)`. `.mean` divides by `Σᵢ w_{yᵢ}` over non-ignored
/// targets (the count when unweighted), as PyTorch; ignored targets give 0 under `.none`.
/// - Parameters:
///   - logits: `[N, C]`, `[N, C, d…]` or `[C]`.
///   - targets: class indices `[N]`, `[N, d…]` or `[]`, integral values in `0..<C` or `ignoreIndex`.
///   - weight: class weights `[C]`.
///   - ignoreIndex: a target value that contributes nothing (PyTorch's −100).
///   - reduction: `.none` gives the targets' shape.
///   - labelSmoothing: ε in [0, 1].
/// - Throws: `TensorError` for mismatched shapes, a non-integral or out-of-range target, or ε outside [0, 1].
public func crossEntropy(logits: Tensor, targets: Tensor, weight: Tensor? = nil, ignoreIndex: Int = -100,
                         reduction: LossReduction = .mean, labelSmoothing: Float = 0) throws -> Tensor {
    let op = "crossEntropy"
    try LossSupport.check(labelSmoothing >= 0 && labelSmoothing <= 1, op,
                          "labelSmoothing must lie in [0, 1], got \(labelSmoothing)")
    let (z, t, shape, classes) = try LossSupport.classLayout(logits, targets, ignoreIndex: ignoreIndex, op: op)
    try LossSupport.classWeight(weight, classes: classes, op: op)
    let (keep, safe) = try maskedTargets(t, ignoreIndex: ignoreIndex)
    let m = t.count
    let lse: Tensor = try z.logSumExp(alongAxes: [1])
    let picked: Tensor = try z.gathered(axis: 1, indices: safe.reshaped(to: [m, 1])).reshaped(to: [m])
    var sampleWeight: Tensor = keep
    if let weight { sampleWeight = try weight.gathered(axis: 0, indices: safe) * keep }
    let nll: Tensor = try (lse - picked) * sampleWeight
    var loss = nll
    if labelSmoothing > 0 {
        // Σ_c w_c·(lse − z_c) = lse·Σw − Σ_c w_c z_c
        let smooth: Tensor
        if let weight {
            let weighted: Tensor = try (z * weight).sum(alongAxes: [1])
            let total: Tensor = try weight.sum()
            smooth = try lse * total - weighted
        } else {
            let rowSum: Tensor = try z.sum(alongAxes: [1])
            smooth = try lse * Float(classes) - rowSum
        }
        let masked: Tensor = try smooth * keep
        loss = try nll * (1 - labelSmoothing) + masked * (labelSmoothing / Float(classes))
    }
    switch reduction {
    case .none: return try loss.reshaped(to: shape)
    case .sum: return try loss.sum()
    case .mean: return try loss.sum() / sampleWeight.sum()
    }
}

/// Cross-entropy from logits and class probabilities (soft targets), as PyTorch with a
/// probability target: `ℓ = −Σ_c w_c·q_c·log softmax(z)_c`, q smoothed to `(1 − ε)q + ε/C`.
/// `.mean` divides by the number of samples (not the weights), as PyTorch. The log-softmax
/// subtracts the row maximum.
/// - Parameters:
///   - logits: `[N, C, d…]` or `[C]`.
///   - targetProbabilities: the same shape as `logits`, rows summing to 1.
/// - Throws: `TensorError` for mismatched shapes or ε outside [0, 1].
public func crossEntropy(logits: Tensor, targetProbabilities: Tensor, weight: Tensor? = nil,
                         reduction: LossReduction = .mean, labelSmoothing: Float = 0) throws -> Tensor {
    let op = "crossEntropy"
    try LossSupport.sameShape(logits, targetProbabilities, op, ("logits", "targetProbabilities"))
    try LossSupport.check(labelSmoothing >= 0 && labelSmoothing <= 1, op,
                          "labelSmoothing must lie in [0, 1], got \(labelSmoothing)")
    try LossSupport.check(logits.rank >= 1, op, "needs logits of rank ≥ 1, got shape \(logits.shape)")
    let axis = logits.rank == 1 ? 0 : 1
    let classes = logits.shape[axis]
    try LossSupport.classWeight(weight, classes: classes, op: op)
    var q = targetProbabilities
    if labelSmoothing > 0 { q = try q * (1 - labelSmoothing) + labelSmoothing / Float(classes) }
    var terms: Tensor = try logSoftmax(logits, axis: axis) * q
    if let weight {
        var wShape = [Int](repeating: 1, count: logits.rank)
        wShape[axis] = classes
        terms = try terms * weight.reshaped(to: wShape)
    }
    let loss: Tensor = try -terms.sum(alongAxes: [axis])
    return try LossSupport.reduce(loss, reduction)
}

/// `(1 − ε)·y + ε/C`: one-hot or probability targets `[…, C]` smoothed along the last axis
/// (Szegedy et al. 2016).
/// - Throws: `TensorError` when ε is outside [0, 1].
public func labelSmoothed(_ targets: Tensor, epsilon: Float) throws -> Tensor {
    try LossSupport.check(epsilon >= 0 && epsilon <= 1 && targets.rank >= 1, "labelSmoothed",
                          "needs ε in [0, 1] and rank ≥ 1, got ε \(epsilon), shape \(targets.shape)")
    let classes = Float(targets.shape[targets.rank - 1])
    return try targets * (1 - epsilon) + epsilon / classes
}

/// Negative log-likelihood from log-probabilities, as `torch.nn.functional.nll_loss`:
/// `ℓᵢ = −w_{yᵢ}·x_{i,yᵢ}`; `.mean` divides by `Σ w_{yᵢ}` over non-ignored targets.
/// - Parameters:
///   - input: log-probabilities `[N, C]`, `[N, C, d…]` or `[C]`.
///   - targets: class indices of the input's shape without axis 1.
/// - Throws: `TensorError` for mismatched shapes or an out-of-range target.
public func nllLoss(input: Tensor, targets: Tensor, weight: Tensor? = nil, ignoreIndex: Int = -100,
                    reduction: LossReduction = .mean) throws -> Tensor {
    let op = "nllLoss"
    let (x, t, shape, classes) = try LossSupport.classLayout(input, targets, ignoreIndex: ignoreIndex, op: op)
    try LossSupport.classWeight(weight, classes: classes, op: op)
    let (keep, safe) = try maskedTargets(t, ignoreIndex: ignoreIndex)
    var sampleWeight: Tensor = keep
    if let weight { sampleWeight = try weight.gathered(axis: 0, indices: safe) * keep }
    let picked: Tensor = try x.gathered(axis: 1, indices: safe.reshaped(to: [t.count, 1])).reshaped(to: [t.count])
    let loss: Tensor = try -(picked * sampleWeight)
    switch reduction {
    case .none: return try loss.reshaped(to: shape)
    case .sum: return try loss.sum()
    case .mean: return try loss.sum() / sampleWeight.sum()
    }
}

/// (1 where the target is kept, the target with ignored entries replaced by class 0).
private func maskedTargets(_ t: Tensor, ignoreIndex: Int) throws -> (Tensor, Tensor) {
    let ignore = try LossSupport.scalar(Float(ignoreIndex), like: t)
    let keep: Tensor = try t.notEqual(ignore)
    let zero = try LossSupport.scalar(0, like: t)
    return (keep, try `where`(keep, t, zero))
}

/// Binary cross-entropy from probabilities, as `torch.nn.functional.binary_cross_entropy`:
/// `ℓ = −w·[y·log p + (1 − y)·log(1 − p)]`, each log clamped at −100 as PyTorch, so p = 0 or 1
/// gives a finite loss. Prefer `binaryCrossEntropyWithLogits` for stability.
/// - Parameters: probabilities and targets of one shape; `weight` broadcasts to it.
/// - Throws: `TensorError` for mismatched shapes.
public func binaryCrossEntropy(probabilities: Tensor, targets: Tensor, weight: Tensor? = nil,
                               reduction: LossReduction = .mean) throws -> Tensor {
    let op = "binaryCrossEntropy"
    try LossSupport.sameShape(probabilities, targets, op, ("probabilities", "targets"))
    let logP: Tensor = try clamp(log(probabilities), min: -100)
    let logQ: Tensor = try clamp(log(1 - probabilities), min: -100)
    var loss: Tensor = try -(targets * logP + (1 - targets) * logQ)
    if let weight { loss = try loss * weight }
    return try LossSupport.reduce(loss, reduction)
}

/// Binary cross-entropy from logits, as `binary_cross_entropy_with_logits`:
/// `ℓ = w·[(1 − y)·x + (1 + (pw − 1)·y)·softplus(−x)]`, which equals
/// `−w·[pw·y·log σ(x) + (1 − y)·log(1 − σ(x))]` and is stable for any |x| (softplus is
/// `max(x, 0) + log1p(e^{−|x|})`).
/// - Parameters:
///   - weight: broadcasts to the logits' shape.
///   - posWeight: the positive-class weight pw, broadcast along the last axis (`[C]`).
/// - Throws: `TensorError` for mismatched shapes.
public func binaryCrossEntropyWithLogits(logits: Tensor, targets: Tensor, weight: Tensor? = nil,
                                         reduction: LossReduction = .mean, posWeight: Tensor? = nil) throws -> Tensor {
    try LossSupport.sameShape(logits, targets, "binaryCrossEntropyWithLogits", ("logits", "targets"))
    let negative: Tensor = try softplus(-logits)
    var loss: Tensor
    if let posWeight {
        let logWeight: Tensor = try targets * (posWeight - 1) + 1
        loss = try (1 - targets) * logits + logWeight * negative
    } else {
        loss = try (1 - targets) * logits + negative
    }
    if let weight { loss = try loss * weight }
    return try LossSupport.reduce(loss, reduction)
}

/// Balanced (α-weighted) binary cross-entropy from logits (HED, Xie & Tu 2015):
/// `ℓ = −[α·y·log σ(x) + (1 − α)·(1 − y)·log(1 − σ(x))]`, computed with softplus (stable).
/// - Throws: `TensorError` for mismatched shapes or α outside [0, 1].
public func balancedBinaryCrossEntropyWithLogits(logits: Tensor, targets: Tensor, alpha: Float = 0.5,
                                                 reduction: LossReduction = .mean) throws -> Tensor {
    let op = "balancedBinaryCrossEntropyWithLogits"
    try LossSupport.sameShape(logits, targets, op, ("logits", "targets"))
    try LossSupport.check(alpha >= 0 && alpha <= 1, op, "alpha must lie in [0, 1], got \(alpha)")
    let pos: Tensor = try targets * softplus(-logits) * alpha
    let neg: Tensor = try (1 - targets) * softplus(logits) * (1 - alpha)
    return try LossSupport.reduce(pos + neg, reduction)
}

/// Sigmoid focal loss (Lin et al. 2017), as `torchvision.ops.sigmoid_focal_loss`:
/// `ℓ = α_t·(1 − p_t)^γ·BCE(x, y)` with `p = σ(x)`, `p_t = p·y + (1 − p)(1 − y)`,
/// `α_t = α·y + (1 − α)(1 − y)`; `alpha: nil` drops α_t (seed 000's form, NOTES §5.20). The BCE
/// term is computed from logits (stable). Kiln defaults to `.mean`, torchvision to `none`.
/// - Throws: `TensorError` for mismatched shapes, γ < 0 or α outside [0, 1].
public func sigmoidFocalLoss(logits: Tensor, targets: Tensor, alpha: Float? = 0.25, gamma: Float = 2,
                             reduction: LossReduction = .mean) throws -> Tensor {
    let op = "sigmoidFocalLoss"
    try LossSupport.sameShape(logits, targets, op, ("logits", "targets"))
    try LossSupport.check(gamma >= 0, op, "gamma must be ≥ 0, got \(gamma)")
    let p: Tensor = try sigmoid(logits)
    let ce = try binaryCrossEntropyWithLogits(logits: logits, targets: targets, reduction: .none)
    let pt: Tensor = try p * targets + (1 - p) * (1 - targets)
    var loss: Tensor = gamma == 0 ? ce : try ce * pow(1 - pt, gamma)
    if let alpha {
        try LossSupport.check(alpha >= 0 && alpha <= 1, op, "alpha must lie in [0, 1], got \(alpha)")
        let at: Tensor = try targets * alpha + (1 - targets) * (1 - alpha)
        loss = try loss * at
    }
    return try LossSupport.reduce(loss, reduction)
}

/// Multi-class focal loss over softmax: `ℓᵢ = −α·(1 − p_{i,yᵢ})^γ·log p_{i,yᵢ}`, `log p` from the fused
/// `crossEntropy` (stable). `α` is a constant factor (seed 002; 000 has none, NOTES §5.20).
/// - Throws: `TensorError` as `crossEntropy`, or for γ < 0.
public func focalLoss(logits: Tensor, targets: Tensor, alpha: Float = 1, gamma: Float = 2,
                      reduction: LossReduction = .mean) throws -> Tensor {
    try LossSupport.check(gamma >= 0, "focalLoss", "gamma must be ≥ 0, got \(gamma)")
    let ce = try crossEntropy(logits: logits, targets: targets, reduction: .none)
    let pt: Tensor = try exp(-ce)
    let loss: Tensor = try ce * pow(1 - pt, gamma) * alpha
    return try LossSupport.reduce(loss, reduction)
}

/// Multi-class margin loss, as `multi_margin_loss`:
/// `ℓᵢ = Σ_{j≠yᵢ} w_{yᵢ}·max(0, margin − x_{i,yᵢ} + x_ij)^p / C`, p ∈ {1, 2}.
/// - Parameters: input `[N, C]` or `[C]`; targets class indices `[N]` or `[]`; weight `[C]`.
/// - Throws: `TensorError` for shapes, targets, or p ∉ {1, 2}.
public func multiMarginLoss(input: Tensor, targets: Tensor, p: Int = 1, margin: Float = 1, weight: Tensor? = nil,
                            reduction: LossReduction = .mean) throws -> Tensor {
    let op = "multiMarginLoss"
    try LossSupport.check(p == 1 || p == 2, op, "p must be 1 or 2, got \(p)")
    try LossSupport.check(input.rank <= 2, op, "needs input [N, C] or [C], got \(input.shape)")
    let (x, t, shape, classes) = try LossSupport.classLayout(input, targets, ignoreIndex: nil, op: op)
    try LossSupport.classWeight(weight, classes: classes, op: op)
    let m = t.count
    let column: Tensor = try t.reshaped(to: [m, 1])
    let picked: Tensor = try x.gathered(axis: 1, indices: column)
    var hinge: Tensor = try relu(x - picked + margin)
    if p == 2 { hinge = try square(hinge) }
    let classIndex = try Tensor.arange(to: Double(classes), on: x.backend)
    let others: Tensor = try column.notEqual(classIndex)
    var perSample: Tensor = try (hinge * others).sum(alongAxes: [1]) / Float(classes)
    if let weight { perSample = try perSample * weight.gathered(axis: 0, indices: t) }
    return try LossSupport.reduce(perSample.reshaped(to: shape), reduction)
}

/// Multi-label one-versus-all loss, as `multilabel_soft_margin_loss`:
/// `ℓᵢ = −(1/C)·Σ_c w_c·[y_ic·log σ(x_ic) + (1 − y_ic)·log σ(−x_ic)]`, via softplus (stable).
/// - Parameters: input and targets `[N, C]`; weight `[C]`.
public func multiLabelSoftMarginLoss(input: Tensor, targets: Tensor, weight: Tensor? = nil,
                                     reduction: LossReduction = .mean) throws -> Tensor {
    let op = "multiLabelSoftMarginLoss"
    try LossSupport.sameShape(input, targets, op)
    try LossSupport.check(input.rank >= 1, op, "needs rank ≥ 1, got \(input.shape)")
    var terms = try binaryCrossEntropyWithLogits(logits: input, targets: targets, reduction: .none)
    if let weight { terms = try terms * weight }
    let loss: Tensor = try terms.mean(alongAxes: [-1])
    return try LossSupport.reduce(loss, reduction)
}

/// Two-class logistic loss, as `soft_margin_loss`: `ℓ = log(1 + e^{−y·x})` = softplus(−y·x), y ∈ {−1, 1}.
public func softMarginLoss(input: Tensor, targets: Tensor, reduction: LossReduction = .mean) throws -> Tensor {
    try LossSupport.sameShape(input, targets, "softMarginLoss")
    let margin: Tensor = try input * targets
    return try LossSupport.reduce(softplus(-margin), reduction)
}

/// Hinge loss for labels y ∈ {−1, 1}: `ℓ = w·max(0, margin − y·f)` (SVM, margin 1), with optional
/// per-sample weights w (the weighted hinge loss).
public func hingeLoss(scores: Tensor, targets: Tensor, margin: Float = 1, weight: Tensor? = nil,
                      reduction: LossReduction = .mean) throws -> Tensor {
    try LossSupport.sameShape(scores, targets, "hingeLoss", ("scores", "targets"))
    let yf: Tensor = try scores * targets
    var loss: Tensor = try relu(margin - yf)
    if let weight { loss = try loss * weight }
    return try LossSupport.reduce(loss, reduction)
}

/// Squared hinge loss, y ∈ {−1, 1}: `ℓ = max(0, margin − y·f)²`.
public func squaredHingeLoss(scores: Tensor, targets: Tensor, margin: Float = 1,
                             reduction: LossReduction = .mean) throws -> Tensor {
    try LossSupport.sameShape(scores, targets, "squaredHingeLoss", ("scores", "targets"))
    let yf: Tensor = try scores * targets
    return try LossSupport.reduce(square(relu(margin - yf)), reduction)
}

/// Exponential loss (AdaBoost), y ∈ {−1, 1}: `ℓ = e^{−y·f}`.
public func exponentialLoss(scores: Tensor, targets: Tensor, reduction: LossReduction = .mean) throws -> Tensor {
    try LossSupport.sameShape(scores, targets, "exponentialLoss", ("scores", "targets"))
    let yf: Tensor = try scores * targets
    return try LossSupport.reduce(exp(-yf), reduction)
}

/// 0-1 loss: `ℓ = 1{ŷ ≠ y}` elementwise (compare class indices or labels). Piecewise constant:
/// its gradient is zero, so it is a metric rather than a training loss.
public func zeroOneLoss(predictions: Tensor, targets: Tensor, reduction: LossReduction = .mean) throws -> Tensor {
    try LossSupport.sameShape(predictions, targets, "zeroOneLoss", ("predictions", "targets"))
    return try LossSupport.reduce(predictions.notEqual(targets), reduction)
}
