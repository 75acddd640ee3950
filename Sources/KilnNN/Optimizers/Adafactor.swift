import Foundation
import KilnCore

/// Adafactor (Shazeer & Stern 2018), parameterised as PyTorch's `torch.optim.Adafactor`: Adam-like
/// steps without first moments, with a factored second moment for matrices.
///
/// For step t (counted from 1), gradient g (−g with `maximize`) and parameter θ with n elements:
///
///     β̂₂ₜ  = 1 − t^(beta2Decay)              (the weight of the new statistics: t^(beta2Decay))
///     ρₜ   = min(η, 1/√t)                     (relative step)
///     αₜ   = max(ε₂, RMS(θ))·ρₜ               (RMS(x) = ‖x‖₂/√n, of θ before the step)
///     θ   ← θ·(1 − η·λ)                       (decoupled weight decay, when λ ≠ 0)
///     rank ≥ 2 (factored over the last two dimensions, leading dimensions kept):
///       R ← R + t^(beta2Decay)·(mean_cols(g²) − R)          R: [..., rows, 1]
///       C ← C + t^(beta2Decay)·(mean_rows(g²) − C)          C: [..., 1, cols]
///       V̂ = (R·C) / max(mean_rows(R), ε₁)
///     rank ≤ 1:  V ← V + t^(beta2Decay)·(g² − V),  V̂ = V
///     U = g / √max(V̂, ε₁²)
///     θ ← θ − αₜ / max(1, RMS(U)/d) · U
///
/// The seed (000) gives a simplified form (θ −= η·m/(√(R·C) + ε) with a fixed β₂ and first
/// moments); Kiln follows the published algorithm in PyTorch's form instead: relative step
/// sizes, the decay schedule β̂₂ₜ = 1 − t^(−0.8), parameter scaling by RMS(θ) and update
/// clipping. As PyTorch (and unlike the paper, which adds ε₁ = 1e-30 to g²), ε₁ clamps the
/// variance estimate at ε₁² and the row-mean normaliser at ε₁; its default is the Float32
/// machine epsilon (PyTorch's `eps=(None, 1e-3)`). There is no first moment (β₁), as PyTorch.
///
/// State (PyTorch's names): `"<i>.row_var"`, `"<i>.col_var"` for rank ≥ 2, `"<i>.variance"`
/// otherwise; scalars `"step"`, `"lr"`. One step counter serves all parameters; a parameter
/// without a gradient is skipped (its state is unchanged). RMS(θ) and RMS(U) are read back to the
/// host, two synchronisations per parameter and step.
public final class Adafactor: Optimizer {
    public let parameters: [Parameter]
    /// η, the cap on the relative step ρₜ (PyTorch `lr`, default 1e-2).
    public var learningRate: Double
    /// The exponent c of β̂₂ₜ = 1 − t^c (≤ 0; PyTorch `beta2_decay`, default −0.8).
    public let beta2Decay: Double
    /// ε₁, the variance floor (its square clamps V̂).
    public let epsilon1: Double
    /// ε₂, the floor of RMS(θ) in the step size.
    public let epsilon2: Double
    /// d, the update-clipping threshold on RMS(U).
    public let clipThreshold: Double
    /// λ, decoupled weight decay (θ ← θ(1 − ηλ)).
    public let weightDecay: Double
    /// Ascends instead of descending.
    public let maximize: Bool
    public private(set) var stepCount = 0

    private var rowVariance: [Tensor?]
    private var columnVariance: [Tensor?]
    private var variance: [Tensor?]

    /// - Parameters:
    ///   - epsilon1: ε₁; nil is the Float32 machine epsilon (≈ 1.19e-7), as PyTorch.
    /// - Throws: `TensorError(.invalidArgument)` for an empty or repeated parameter list, a
    ///   negative or NaN learning rate, ε or weight decay, `beta2Decay` > 0, or `clipThreshold` ≤ 0.
    public init(parameters: [Parameter], learningRate: Double = 1e-2, beta2Decay: Double = -0.8,
                epsilon1: Double? = nil, epsilon2: Double = 1e-3, clipThreshold: Double = 1,
                weightDecay: Double = 0, maximize: Bool = false) throws {
        let check = SecondOrderCheck(op: "Adafactor")
        try check.parameters(parameters)
        try check.nonNegative("learningRate", learningRate)
        try check.finite("beta2Decay", beta2Decay)
        guard beta2Decay <= 0 else {
            throw TensorError(.invalidArgument, op: "Adafactor", "beta2Decay must be ≤ 0, got \(beta2Decay)")
        }
        let eps1 = epsilon1 ?? Double(Float.ulpOfOne)
        try check.nonNegative("epsilon1", eps1)
        try check.nonNegative("epsilon2", epsilon2)
        try check.positive("clipThreshold", clipThreshold)
        try check.nonNegative("weightDecay", weightDecay)
        self.parameters = parameters
        self.learningRate = learningRate
        self.beta2Decay = beta2Decay
        self.epsilon1 = eps1
        self.epsilon2 = epsilon2
        self.clipThreshold = clipThreshold
        self.weightDecay = weightDecay
        self.maximize = maximize
        rowVariance = Array(repeating: nil, count: parameters.count)
        columnVariance = rowVariance
        variance = rowVariance
    }

    /// Whether parameter shape `shape` has a factored second moment.
    static func isFactored(_ shape: [Int]) -> Bool { shape.count >= 2 }

    static func rowShape(_ s: [Int]) -> [Int] { Array(s.dropLast()) + [1] }
    static func columnShape(_ s: [Int]) -> [Int] { Array(s.dropLast(2)) + [1, s[s.count - 1]] }

    /// RMS(x) = ‖x‖₂/√n, on the host.
    static func rms(_ x: Tensor) throws -> Double {
        let sumSquares = Double(try square(x).sum().item())
        return (sumSquares / Double(x.count)).squareRoot()
    }

    /// One Adafactor step for every parameter with a gradient.
    public func step() throws {
        stepCount += 1
        let t = Double(stepCount)
        let newWeight = Foundation.pow(t, beta2Decay)
        let rho = Swift.min(learningRate, 1 / t.squareRoot())
        try withoutGradients {
            for (i, p) in parameters.enumerated() {
                guard let rawGradient = p.gradient, p.value.count > 0 else { continue }
                let theta = p.value.detached()
                let g: Tensor = maximize ? try -rawGradient.detached() : rawGradient.detached()
                let alpha = Swift.max(epsilon2, try Self.rms(theta)) * rho
                var updated = theta
                if weightDecay != 0 { updated = try theta * Float(1 - learningRate * weightDecay) }
                let g2: Tensor = try square(g)
                let w = Float(newWeight)
                let estimate: Tensor
                if Self.isFactored(p.shape) {
                    let r0 = try rowVariance[i] ?? Tensor.zeros(Self.rowShape(p.shape), on: theta.backend)
                    let c0 = try columnVariance[i] ?? Tensor.zeros(Self.columnShape(p.shape), on: theta.backend)
                    let rowMean: Tensor = try g2.mean(alongAxes: [-1], keepingDimensions: true)
                    let columnMean: Tensor = try g2.mean(alongAxes: [-2], keepingDimensions: true)
                    let r: Tensor = try r0 + (rowMean - r0) * w
                    let c: Tensor = try c0 + (columnMean - c0) * w
                    let normaliser: Tensor = try clamp(r.mean(alongAxes: [-2], keepingDimensions: true),
                                                       min: Float(epsilon1))
                    estimate = try matmul(r, c) / normaliser
                    rowVariance[i] = r
                    columnVariance[i] = c
                } else {
                    let v0 = try variance[i] ?? Tensor.zeros(p.shape, on: theta.backend)
                    let v: Tensor = try v0 + (g2 - v0) * w
                    estimate = v
                    variance[i] = v
                }
                let update: Tensor = try rsqrt(clamp(estimate, min: Float(epsilon1 * epsilon1))) * g
                let denominator = Swift.max(1, try Self.rms(update) / clipThreshold)
                let scaled: Tensor = try update * Float(alpha / denominator)
                try p.assign(try updated - scaled, keepingGradient: true)
            }
        }
    }

    public func stateDictionary() throws -> OptimizerState {
        var state = OptimizerState(scalars: ["step": Double(stepCount), "lr": learningRate])
        for i in parameters.indices {
            if let r = rowVariance[i] { state.tensors["\(i).row_var"] = try r.cloned() }
            if let c = columnVariance[i] { state.tensors["\(i).col_var"] = try c.cloned() }
            if let v = variance[i] { state.tensors["\(i).variance"] = try v.cloned() }
        }
        return state
    }

    /// Restores `stateDictionary()` output. A parameter's statistics may be absent (never
    /// stepped); present ones must have the right shapes.
    public func loadStateDictionary(_ state: OptimizerState) throws {
        let reader = OptimizerStateReader(op: "Adafactor", state: state)
        let step = try reader.count("step")
        let lr = try reader.learningRate(default: learningRate)
        var rows = rowVariance, columns = columnVariance, variances = variance
        for (i, p) in parameters.enumerated() {
            let b = p.value.backend
            if Self.isFactored(p.shape) {
                let hasRow = reader.hasTensor("\(i).row_var"), hasColumn = reader.hasTensor("\(i).col_var")
                guard hasRow == hasColumn else {
                    throw TensorError(.invalidArgument, op: "Adafactor",
                                      "state holds only one of \"\(i).row_var\" and \"\(i).col_var\"")
                }
                rows[i] = hasRow ? try reader.tensor("\(i).row_var", shape: Self.rowShape(p.shape), on: b) : nil
                columns[i] = hasColumn ? try reader.tensor("\(i).col_var", shape: Self.columnShape(p.shape), on: b) : nil
            } else {
                variances[i] = reader.hasTensor("\(i).variance")
                    ? try reader.tensor("\(i).variance", shape: p.shape, on: b) : nil
            }
        }
        stepCount = step
        learningRate = lr
        rowVariance = rows
        columnVariance = columns
        variance = variances
    }
}
