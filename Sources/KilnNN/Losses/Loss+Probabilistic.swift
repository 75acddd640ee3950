import Foundation
import KilnCore

// Divergences, distillation, generative-model and ordinal / re-weighted classification losses.

/// Kullback–Leibler divergence, as `kl_div`: the input holds log-probabilities x and
/// `ℓ = y·(log y − x)` (0 where y = 0), or `eʸ·(y − x)` when `logTarget`. PyTorch's `batchmean`
/// is `.sum` divided by the batch size.
/// - Throws: `TensorError` when the shapes differ.
public func kullbackLeiblerDivergence(input: Tensor, targets: Tensor, reduction: LossReduction = .mean,
                                      logTarget: Bool = false) throws -> Tensor {
    try LossSupport.sameShape(input, targets, "kullbackLeiblerDivergence")
    let loss: Tensor
    if logTarget {
        loss = try exp(targets) * (targets - input)
    } else {
        let zero = try LossSupport.scalar(0, like: targets)
        let positive: Tensor = try targets.greater(zero)
        let one = try LossSupport.scalar(1, like: targets)
        let logY: Tensor = try log(`where`(positive, targets, one))
        loss = try `where`(positive, targets * (logY - input), zero)
    }
    return try LossSupport.reduce(loss, reduction)
}

/// KL(N(μ, σ²) ‖ N(0, 1)) in closed form (the VAE regulariser, Kingma & Welling):
/// `ℓ = −½·Σⱼ (1 + log σⱼ² − μⱼ² − σⱼ²)` summed over the last (latent) axis, from the log-variance.
/// - Parameters: mean and logVariance `[…, D]`; `.none` gives one value per sample `[…]`.
public func gaussianKLDivergence(mean: Tensor, logVariance: Tensor, reduction: LossReduction = .mean) throws -> Tensor {
    try LossSupport.sameShape(mean, logVariance, "gaussianKLDivergence", ("mean", "logVariance"))
    try LossSupport.check(mean.rank >= 1, "gaussianKLDivergence", "needs rank ≥ 1, got \(mean.shape)")
    let inner: Tensor = try logVariance + 1 - square(mean) - exp(logVariance)
    let perSample: Tensor = try inner.sum(alongAxes: [-1]) * -0.5
    return try LossSupport.reduce(perSample, reduction)
}

/// Knowledge distillation (Hinton et al. 2015):
/// `ℓᵢ = α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1 − α)·CE(s, yᵢ)`, the KL summed over classes;
/// without targets only the KL term (times α). The T² keeps the soft gradients' scale; its
/// gradient in s is `α·T·(softmax(s/T) − softmax(t/T))` (seed 004). Log-softmaxes are stable.
/// - Parameters: student and teacher logits `[N, C]`, targets class indices `[N]` or nil.
/// - Throws: `TensorError` for shapes, T ≤ 0 or α outside [0, 1].
public func distillationLoss(studentLogits: Tensor, teacherLogits: Tensor, targets: Tensor? = nil,
                             temperature: Float = 4, alpha: Float = 0.5, reduction: LossReduction = .mean) throws -> Tensor {
    let op = "distillationLoss"
    try LossSupport.sameShape(studentLogits, teacherLogits, op, ("studentLogits", "teacherLogits"))
    try LossSupport.check(studentLogits.rank == 2, op, "needs [N, C] logits, got \(studentLogits.shape)")
    try LossSupport.check(temperature > 0, op, "temperature must be > 0, got \(temperature)")
    try LossSupport.check(alpha >= 0 && alpha <= 1, op, "alpha must lie in [0, 1], got \(alpha)")
    let logQ = try logSoftmax(studentLogits / temperature, axis: 1)
    let logP = try logSoftmax(teacherLogits.detached() / temperature, axis: 1)
    let kl: Tensor = try (exp(logP) * (logP - logQ)).sum(alongAxes: [1])
    var loss: Tensor = try kl * (alpha * temperature * temperature)
    if let targets {
        let ce = try crossEntropy(logits: studentLogits, targets: targets, reduction: .none)
        loss = try loss + ce * (1 - alpha)
    }
    return try LossSupport.reduce(loss, reduction)
}

/// Non-saturating GAN generator loss (Goodfellow et al. 2014): `ℓ = −log D(G(z)) = softplus(−x)`
/// from the discriminator's logits x on generated samples (stable).
public func ganGeneratorLoss(fakeLogits: Tensor, reduction: LossReduction = .mean) throws -> Tensor {
    try LossSupport.reduce(softplus(-fakeLogits), reduction)
}

/// GAN discriminator loss: `−E[log D(x)] − E[log(1 − D(G(z)))] = E[softplus(−r)] + E[softplus(f)]`
/// from logits r on real and f on generated samples; each term is reduced separately and the two
/// added (`.none` adds them elementwise and needs broadcastable shapes).
public func ganDiscriminatorLoss(realLogits: Tensor, fakeLogits: Tensor, reduction: LossReduction = .mean) throws -> Tensor {
    let real = try LossSupport.reduce(softplus(-realLogits), reduction)
    let fake = try LossSupport.reduce(softplus(fakeLogits), reduction)
    return try real + fake
}

/// Ordinal (cumulative) cross-entropy: logits `[N, K−1]` give `P(y ≤ k) = σ(x_k)` and
/// `ℓᵢ = −Σ_{k<K−1} [1{yᵢ ≤ k}·log σ(x_ik) + 1{yᵢ > k}·log(1 − σ(x_ik))]`, from logits (stable).
/// - Parameters: targets ordinal classes `[N]` in `0..<K`.
public func ordinalCrossEntropy(logits: Tensor, targets: Tensor, reduction: LossReduction = .mean) throws -> Tensor {
    let op = "ordinalCrossEntropy"
    try LossSupport.check(logits.rank == 2 && targets.shape == [logits.shape[0]], op,
                          "needs logits [N, K−1] and targets [N], got \(logits.shape), \(targets.shape)")
    let thresholds = logits.shape[1]
    for v in try targets.scalars() {
        try LossSupport.check(v == v.rounded() && v >= 0 && v <= Float(thresholds), op,
                              "target \(v) is not a class in 0…\(thresholds)")
    }
    let ks = try Tensor.arange(to: Double(thresholds), on: logits.backend)
    let atMost: Tensor = try targets.reshaped(to: [targets.count, 1]).lessEqual(ks)
    let terms = try binaryCrossEntropyWithLogits(logits: logits, targets: atMost, reduction: .none)
    return try LossSupport.reduce(terms.sum(alongAxes: [1]), reduction)
}

/// Class-balanced weights (Cui et al. 2019): `w_c = (1 − β)/(1 − β^{n_c})`, normalised to sum to C.
/// - Throws: `TensorError` for β outside [0, 1) or a count ≤ 0.
public func classBalancedWeights(samplesPerClass: [Int], beta: Float = 0.9999, on backend: any Backend) throws -> Tensor {
    let op = "classBalancedWeights"
    try LossSupport.check(beta >= 0 && beta < 1, op, "beta must lie in [0, 1), got \(beta)")
    try LossSupport.check(!samplesPerClass.isEmpty && samplesPerClass.allSatisfy { $0 > 0 }, op,
                          "needs positive counts, got \(samplesPerClass)")
    let raw = samplesPerClass.map { (1 - Double(beta)) / (1 - Foundation.pow(Double(beta), Double($0))) }
    let total = raw.reduce(0, +)
    return try Tensor(raw.map { Float($0 / total * Double(raw.count)) }, on: backend)
}

/// Class-balanced sigmoid loss (Cui et al. 2019): `ℓᵢ = Σ_c β_{yᵢ}·BCE(x_ic, onehot(yᵢ)_c)` with
/// `β = classBalancedWeights(samplesPerClass, beta)`, from logits (stable).
/// - Parameters: logits `[N, C]`, targets class indices `[N]`.
public func classBalancedLoss(logits: Tensor, targets: Tensor, samplesPerClass: [Int], beta: Float = 0.9999,
                              reduction: LossReduction = .mean) throws -> Tensor {
    let op = "classBalancedLoss"
    try LossSupport.check(logits.rank == 2 && samplesPerClass.count == logits.shape[1], op,
                          "needs logits [N, C] with C = samplesPerClass.count, got \(logits.shape), \(samplesPerClass.count)")
    let (z, t, _, classes) = try LossSupport.classLayout(logits, targets, ignoreIndex: nil, op: op)
    let w = try classBalancedWeights(samplesPerClass: samplesPerClass, beta: beta, on: logits.backend)
    let oneHot: Tensor = try t.reshaped(to: [t.count, 1]).equal(Tensor.arange(to: Double(classes), on: z.backend))
    let bce = try binaryCrossEntropyWithLogits(logits: z, targets: oneHot, reduction: .none)
    let sampleWeight: Tensor = try w.gathered(axis: 0, indices: t)
    return try LossSupport.reduce(bce.sum(alongAxes: [1]) * sampleWeight, reduction)
}

/// GHM-C loss (Li, Liu & Wang 2019, as mmdetection without momentum): with gradient norm
/// `g = |σ(x) − y|` split into `bins` equal bins, each element weighs `βᵢ = N / (n_{b(i)}·M)` (n_b the
/// count in its bin, M the number of non-empty bins) and `ℓᵢ = βᵢ·BCE(xᵢ, yᵢ)`; `.mean` is `Σℓ/N`.
/// The weights are computed on the host and carry no gradient.
public func ghmcLoss(logits: Tensor, targets: Tensor, bins: Int = 10, reduction: LossReduction = .mean) throws -> Tensor {
    let op = "ghmcLoss"
    try LossSupport.sameShape(logits, targets, op, ("logits", "targets"))
    try LossSupport.check(bins >= 1, op, "bins must be ≥ 1, got \(bins)")
    let x = try logits.scalars(), y = try targets.scalars()
    let index = zip(x, y).map { xi, yi -> Int in
        let g = Swift.abs(1 / (1 + Foundation.exp(-Double(xi))) - Double(yi))
        return Swift.min(Int(g * Double(bins)), bins - 1)
    }
    var counts = [Int](repeating: 0, count: bins)
    for b in index { counts[b] += 1 }
    let nonEmpty = Double(counts.filter { $0 > 0 }.count)
    let n = Double(x.count)
    let weights = try Tensor(index.map { Float(n / (Double(counts[$0]) * nonEmpty)) }, shape: logits.shape, on: logits.backend)
    let loss = try binaryCrossEntropyWithLogits(logits: logits, targets: targets, weight: weights, reduction: .none)
    return try LossSupport.reduce(loss, reduction)
}
