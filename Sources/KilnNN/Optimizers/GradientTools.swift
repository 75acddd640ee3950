import Foundation
import KilnCore

/// Scales all gradients by min(1, maxNorm/(‖g‖ + 10⁻⁶)), where ‖g‖ is the `normType`-norm of
/// all gradients together (seed 000/003's clipping by global norm; `torch.nn.utils.clip_grad_norm_`).
/// Returns ‖g‖ before clipping. `normType` may be `.infinity` (max |g|). Parameters without a
/// gradient are skipped.
/// - Throws: `.invalidArgument` for a non-finite or negative `maxNorm`, a `normType` ≤ 0, or, with
///   `errorIfNonfinite`, a NaN or infinite total norm.
@discardableResult
public func clipGradientNorm(_ parameters: [Parameter], maxNorm: Double, normType: Double = 2,
                             errorIfNonfinite: Bool = false) throws -> Double {
    try checkHyperparameter("clipGradientNorm", "max norm", maxNorm, atLeast: 0)
    guard normType > 0, !normType.isNaN else {
        throw TensorError(.invalidArgument, op: "clipGradientNorm", "norm type must be > 0, got \(normType)")
    }
    let gradients = parameters.compactMap { p in p.gradient.map { (p, $0) } }
    guard !gradients.isEmpty else { return 0 }
    // One partial per gradient on its backend, then a single read back to the host.
    let total: Double = try withoutGradients {
        let first = gradients[0].1.backend
        let partials: [Tensor] = try gradients.compactMap { _, g in
            guard g.count > 0 else { return nil }
            let part: Tensor
            if normType == .infinity {
                part = try abs(g).max()
            } else if normType == 2 {
                part = try (g * g).sum()
            } else {
                part = try pow(try abs(g), Float(normType)).sum()
            }
            return try part.reshaped(to: [1]).to(first)
        }
        guard !partials.isEmpty else { return 0 }
        let parts = try Tensor.concatenated(partials, axis: 0).scalars().map(Double.init)
        if normType == .infinity { return parts.max() ?? 0 }
        let sum = parts.reduce(0, +)
        return normType == 2 ? sum.squareRoot() : pow(sum, 1 / normType)
    }
    if errorIfNonfinite && !total.isFinite {
        throw TensorError(.invalidArgument, op: "clipGradientNorm",
                          "the total \(normType)-norm of the gradients is \(total); pass errorIfNonfinite: false to clip anyway")
    }
    let coefficient = maxNorm / (total + 1e-6)
    if coefficient < 1 || coefficient.isNaN {
        try withoutGradients {
            for (p, g) in gradients { try p.setGradient(try g * Float(coefficient)) }
        }
    }
    return total
}

/// Clamps every gradient element to [−clipValue, clipValue] (seed 002;
/// `torch.nn.utils.clip_grad_value_`). NaN stays NaN.
public func clipGradientValue(_ parameters: [Parameter], clipValue: Double) throws {
    try checkHyperparameter("clipGradientValue", "clip value", clipValue, atLeast: 0)
    try withoutGradients {
        for p in parameters {
            guard let g = p.gradient else { continue }
            try p.setGradient(try clamp(g, min: Float(-clipValue), max: Float(clipValue)))
        }
    }
}

/// Gradient accumulation (seed 002): G = Σ_{i=1..N} G_i over N micro-batches, then one step of
/// the inner optimizer.
///
/// Call `loss.backward()` and `step()` after every micro-batch, and `zeroGradients()` as usual:
/// the gradients sum across micro-batches (`backward()` accumulates) and are cleared only after
/// the N-th micro-batch, when the inner optimizer steps. With `average` the summed gradient is
/// divided by N first, so N micro-batches of size B give the step of one batch of N·B under a
/// mean-reduced loss.
public final class GradientAccumulation: Optimizer {
    public let inner: any Optimizer
    public let microBatches: Int
    public let average: Bool
    /// Micro-batches accumulated since the last inner step.
    public private(set) var pendingMicroBatches = 0

    public init(_ inner: any Optimizer, microBatches: Int, average: Bool = true) throws {
        guard microBatches >= 1 else {
            throw TensorError(.invalidArgument, op: "GradientAccumulation", "micro-batches must be ≥ 1, got \(microBatches)")
        }
        self.inner = inner
        self.microBatches = microBatches
        self.average = average
    }

    public var parameters: [Parameter] { inner.parameters }
    public var learningRate: Double {
        get { inner.learningRate }
        set { inner.learningRate = newValue }
    }
    /// Inner optimizer steps taken.
    public var stepCount: Int { inner.stepCount }

    public func step() throws {
        pendingMicroBatches += 1
        guard pendingMicroBatches == microBatches else { return }
        if average && microBatches > 1 {
            try withoutGradients {
                for p in parameters {
                    if let g = p.gradient { try p.setGradient(try g * Float(1 / Double(microBatches))) }
                }
            }
        }
        try inner.step()
    }

    /// Clears the gradients only after the inner optimizer has stepped.
    public func zeroGradients() {
        guard pendingMicroBatches == microBatches else { return }
        pendingMicroBatches = 0
        for p in parameters { p.zeroGradient() }
    }

    public func stateDictionary() throws -> OptimizerState {
        var s = try inner.stateDictionary()
        s.scalars["pending_micro_batches"] = Double(pendingMicroBatches)
        return s
    }

    public func loadStateDictionary(_ saved: OptimizerState) throws {
        var s = saved
        let pending = s.scalars.removeValue(forKey: "pending_micro_batches") ?? 0
        guard pending >= 0, pending < Double(microBatches), pending == pending.rounded() else {
            throw TensorError(.invalidArgument, op: "GradientAccumulation.loadStateDictionary",
                              "pending micro-batches must be a whole number in 0..<\(microBatches), got \(pending)")
        }
        try inner.loadStateDictionary(s)
        pendingMicroBatches = Int(pending)
    }
}
