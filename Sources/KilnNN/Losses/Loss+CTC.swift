import KilnCore

// Connectionist temporal classification (Graves et al. 2006), as
// `torch.nn.functional.ctc_loss`, built from differentiable Tensor ops so autograd gives its gradient.

/// The CTC loss, as `torch.nn.functional.ctc_loss`:
/// `ℓₙ = −ln Σ_{π ∈ B⁻¹(yₙ)} Π_{t<Tₙ} P(π_t | xₙ)`, where B collapses repeated labels and then
/// removes blanks, Tₙ = `inputLengths[n]` and yₙ = `targets[n, 0..<targetLengths[n]]`.
///
/// Computed by the forward (alpha) recursion in log space over the extended label sequence
/// l′ = (blank, y₁, blank, y₂, …, y_S, blank) of length L = 2S + 1:
/// `α₀(0) = lp₀(blank)`, `α₀(1) = lp₀(y₁)`, and
/// `α_t(s) = logsumexp(α_{t−1}(s), α_{t−1}(s−1), α_{t−1}(s−2) if l′_s ≠ blank and l′_s ≠ l′_{s−2}) + lp_t(l′_s)`,
/// with `ℓₙ = −logsumexp(α_{T−1}(L−1), α_{T−1}(L−2))`. Each sample runs its own recursion
/// (O(T·L) small tensor ops), so this suits modest batches and lengths.
///
/// Unreachable states hold −1e30 instead of −∞, so that no gradient through log-sum-exp becomes
/// NaN (e^(−1e30 − m) is exactly 0 in Float); the log-probabilities themselves must be finite.
/// A sample whose target cannot be aligned (Tₙ < Sₙ + the number of adjacent repeated labels)
/// is detected up front and gives +∞, or 0 with `zeroInfinity` (with no gradient), as PyTorch.
/// `.mean` divides each loss by `max(Sₙ, 1)` and then averages over the batch, as PyTorch.
/// - Parameters:
///   - logProbabilities: `[T, N, C]` log-softmax outputs.
///   - targets: `[N, S]` class indices as integral Floats, padded past each target length.
///   - inputLengths: N lengths in `0...T`.
///   - targetLengths: N lengths in `0...S`.
///   - blank: the blank class, in `0..<C`; it may not appear in the targets.
///   - reduction: `.none` gives `[N]`.
///   - zeroInfinity: replace infinite losses (impossible alignments) by 0.
/// - Throws: `TensorError` naming `ctcLoss` for wrong shapes, lengths, blank or target values.
public func ctcLoss(logProbabilities: Tensor, targets: Tensor, inputLengths: [Int], targetLengths: [Int],
                    blank: Int = 0, reduction: LossReduction = .mean, zeroInfinity: Bool = false) throws -> Tensor {
    let op = "ctcLoss"
    guard logProbabilities.rank == 3 else {
        throw TensorError(.shapeMismatch, op: op,
                          "logProbabilities must have shape [T, N, C], got \(logProbabilities.shape)")
    }
    let steps = logProbabilities.shape[0], batch = logProbabilities.shape[1], classes = logProbabilities.shape[2]
    guard targets.rank == 2, targets.shape[0] == batch else {
        throw TensorError(.shapeMismatch, op: op,
                          "targets must have shape [\(batch), S] for logProbabilities \(logProbabilities.shape), got \(targets.shape)")
    }
    let maxTarget = targets.shape[1]
    guard inputLengths.count == batch, targetLengths.count == batch else {
        throw TensorError(.shapeMismatch, op: op,
                          "needs \(batch) input and target lengths, got \(inputLengths.count) and \(targetLengths.count)")
    }
    try LossSupport.check(batch > 0, op, "needs a batch of at least one sample, got shape \(logProbabilities.shape)")
    try LossSupport.check(blank >= 0 && blank < classes, op, "blank \(blank) is not a class index in 0..<\(classes)")
    for (n, t) in inputLengths.enumerated() {
        try LossSupport.check(t >= 0 && t <= steps, op, "inputLengths[\(n)] = \(t) is outside 0...\(steps)")
    }
    for (n, s) in targetLengths.enumerated() {
        try LossSupport.check(s >= 0 && s <= maxTarget, op, "targetLengths[\(n)] = \(s) is outside 0...\(maxTarget)")
    }
    let flatTargets = try targets.scalars()
    var labels = [[Int]]()
    for n in 0..<batch {
        var row = [Int]()
        for j in 0..<targetLengths[n] {
            let v = flatTargets[n * maxTarget + j]
            guard v == v.rounded(), v >= 0, v < Float(classes), Int(v) != blank else {
                throw TensorError(.invalidArgument, op: op,
                                  "targets[\(n), \(j)] = \(v) is not a non-blank class index in 0..<\(classes) (blank \(blank))")
            }
            row.append(Int(v))
        }
        labels.append(row)
    }

    let backend = logProbabilities.backend
    var losses = [Tensor]()
    for n in 0..<batch {
        let y = labels[n]
        let length = inputLengths[n]
        let repeats = zip(y, y.dropFirst()).filter { $0.0 == $0.1 }.count
        let loss: Tensor
        if y.count + repeats > length {
            // No alignment of length Tₙ collapses to yₙ.
            loss = try Tensor.full([], value: zeroInfinity ? 0 : .infinity, on: backend)
        } else if length == 0 {
            // Tₙ = Sₙ = 0: the empty path has probability 1.
            loss = try Tensor.zeros([], on: backend)
        } else {
            let sample: Tensor = try logProbabilities.sliced(axis: 1, start: n, end: n + 1)
                .sliced(axis: 0, start: 0, end: length).reshaped(to: [length, classes])
            loss = try ctcSampleLoss(sample, labels: y, blank: blank)
        }
        if reduction == .mean {
            losses.append(try loss / Float(Swift.max(y.count, 1)))
        } else {
            losses.append(loss)
        }
    }
    let all: Tensor = try Tensor.stacked(losses, axis: 0)
    return try LossSupport.reduce(all, reduction)
}

/// −ln p(y | x) for one sample: `lp` is `[T, C]` with T ≥ 1 and the target alignable in T steps.
private func ctcSampleLoss(_ lp: Tensor, labels y: [Int], blank: Int) throws -> Tensor {
    let unreachable: Float = -1e30
    var extended = [blank]
    for label in y { extended += [label, blank] }
    let width = extended.count
    let steps = lp.shape[0]
    let backend = lp.backend
    // lp_t(l′_s) for every t and s: [T, L].
    let emissions: Tensor = try lp.indexSelected(axis: 1, indices: extended)
    let rows: [Tensor] = try emissions.split(size: 1, axis: 0).map { try $0.reshaped(to: [width]) }
    // The skip s − 2 → s is allowed where l′_s is a label differing from l′_{s−2}.
    let skip: [Float] = (0..<width).map { s in
        s >= 2 && extended[s] != blank && extended[s] != extended[s - 2] ? 1 : 0
    }
    let skipAllowed = try Tensor(skip, shape: [width], on: backend)
    let floor = try Tensor.full([], value: unreachable, on: backend)

    func shifted(_ alpha: Tensor, by k: Int) throws -> Tensor {
        if k >= width { return try Tensor.full([width], value: unreachable, on: backend) }
        let pad = try Tensor.full([k], value: unreachable, on: backend)
        let kept: Tensor = try alpha.sliced(axis: 0, start: 0, end: width - k)
        return try Tensor.concatenated([pad, kept], axis: 0)
    }

    // α₀: only the first blank and the first label are reachable.
    let startMask: [Float] = (0..<width).map { $0 < 2 ? 1 : 0 }
    let start = try Tensor(startMask, shape: [width], on: backend)
    var alpha: Tensor = try Tensor.selecting(start, rows[0], floor)
    for t in 1..<steps {
        let stay: Tensor = alpha
        let step: Tensor = try shifted(alpha, by: 1)
        let skipped: Tensor = try Tensor.selecting(skipAllowed, shifted(alpha, by: 2), floor)
        let candidates: Tensor = try Tensor.stacked([stay, step, skipped], axis: 0)
        let merged: Tensor = try candidates.logSumExp(alongAxes: [0])
        alpha = try merged + rows[t]
    }
    let finals: Tensor = try alpha.sliced(axis: 0, start: Swift.max(width - 2, 0), end: width)
    let total: Tensor = try finals.logSumExp(alongAxes: [0])
    return try -total
}
