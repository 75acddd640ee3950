import Foundation
import KilnCore

/// K-FAC (Martens & Grosse 2015) for `Linear` layers: the Fisher block of a layer is approximated
/// by the Kronecker product A ⊗ G, so its inverse applied to the gradient is a pair of small solves.
///
/// For a layer y = W̄·ā with ā = [x, 1] (the 1 only when the layer has a bias) and W̄ = [W | b]:
///
///     A = E[ā·āᵀ]     over the rows of the captured inputs              [in(+1), in(+1)]
///     G = E[g̃·g̃ᵀ]    g̃ the per-example gradient w.r.t. y               [out, out]
///     ΔW̄ = (G + (√γ/π)·I)⁻¹ · (∇W̄ + λW̄) · (A + π√γ·I)⁻¹
///     W̄ ← W̄ − η·ΔW̄
///
/// With `batchAveraged` (the loss is a mean over the N rows, the usual case) the captured
/// gradients are ∂L/∂yₙ = g̃ₙ/N, so G = N·Σₙ gₙgₙᵀ; otherwise (a summed loss) G = Σₙ gₙgₙᵀ/N.
/// A and G are running averages: at the k-th statistics update X ← ρX + (1−ρ)X_batch with
/// ρ = min(1 − 1/k, `statisticsDecay`) (the paper's §5 schedule, so the first update is the batch
/// statistic itself). Damping is the paper's factored Tikhonov damping (§6.3): γ is split between
/// the factors with π = √((tr A/dim A)/(tr G/dim G)) (`.traceNorm`, π = 1 when a trace is 0) or
/// evenly with π = 1 (`.even`). The paper's adaptive γ and momentum/step-size rescaling by the
/// quadratic model are not implemented; η is fixed.
///
/// Usage: run each registered layer through `forward(_:_:)` (it records the input and attaches a
/// gradient hook to the output), then `loss.backward()`, then `step()`, which consumes the captured
/// statistics. A layer called several times before a step contributes all its rows. Layers
/// called directly (`layer(x)`) are not recorded; `step()` then reuses their running statistics.
///
/// The inverses (A + π√γI)⁻¹ and (G + √γ/π·I)⁻¹ are computed on the host in Float64 by Cholesky
/// (n³/3 work each, with n = inputSize + 1 and outputSize), every `inverseUpdateFrequency` steps,
/// and uploaded; the products with the gradient run on the backend. Layers up to a few thousand
/// units are practical. The seed (000) states F ≈ A ⊗ G and θ −= η·G⁻¹∇W A⁻¹, which this is.
///
/// State: `"<i>.A"`, `"<i>.G"`, `"<i>.A_inverse"`, `"<i>.G_inverse"` keyed by the index of the
/// layer's weight in `parameters`; scalars `"step"`, `"lr"`, `"<i>.statistics_count"`.
public final class KFAC: Optimizer {
    /// How the damping γ is split between the two factors.
    public enum DampingSplit: Sendable {
        /// π = √((tr A/dim A)/(tr G/dim G)) (Martens & Grosse §6.3).
        case traceNorm
        /// π = 1: A + √γ·I and G + √γ·I.
        case even
    }

    /// The layers, in order.
    public let layers: [Linear]
    /// Each layer's weight, then its bias when it has one.
    public let parameters: [Parameter]
    /// η (default 1e-3).
    public var learningRate: Double
    /// γ, Tikhonov damping (default 1e-3).
    public let damping: Double
    /// The cap on the running-average decay ρ (default 0.95).
    public let statisticsDecay: Double
    public let dampingSplit: DampingSplit
    /// Steps between recomputations of the factor inverses (default 1).
    public let inverseUpdateFrequency: Int
    /// λ, L2 weight decay added to the gradient.
    public let weightDecay: Double
    /// Whether the loss is a mean over the batch rows (default true).
    public let batchAveraged: Bool
    public private(set) var stepCount = 0

    private var capturedInputs: [[Tensor]]
    private var capturedGradients: [[Tensor]]
    private var factorA: [Tensor?]
    private var factorG: [Tensor?]
    private var inverseA: [Tensor?]
    private var inverseG: [Tensor?]
    private var statisticsCount: [Int]

    /// - Throws: `TensorError(.invalidArgument)` for no layers, a repeated layer, a negative or NaN
    ///   value, `statisticsDecay` outside [0, 1), or `inverseUpdateFrequency` < 1.
    public init(layers: [Linear], learningRate: Double = 1e-3, damping: Double = 1e-3, statisticsDecay: Double = 0.95,
                dampingSplit: DampingSplit = .traceNorm, inverseUpdateFrequency: Int = 1, weightDecay: Double = 0,
                batchAveraged: Bool = true) throws {
        let check = SecondOrderCheck(op: "KFAC")
        guard !layers.isEmpty else { throw TensorError(.invalidArgument, op: "KFAC", "needs at least one Linear layer") }
        try check.parameters(layers.flatMap { [$0.weight] + ($0.bias.map { [$0] } ?? []) })
        try check.nonNegative("learningRate", learningRate)
        try check.nonNegative("damping", damping)
        try check.inRange("statisticsDecay", statisticsDecay, 0, 1)
        try check.atLeast("inverseUpdateFrequency", inverseUpdateFrequency, 1)
        try check.nonNegative("weightDecay", weightDecay)
        self.layers = layers
        parameters = layers.flatMap { [$0.weight] + ($0.bias.map { [$0] } ?? []) }
        self.learningRate = learningRate
        self.damping = damping
        self.statisticsDecay = statisticsDecay
        self.dampingSplit = dampingSplit
        self.inverseUpdateFrequency = inverseUpdateFrequency
        self.weightDecay = weightDecay
        self.batchAveraged = batchAveraged
        capturedInputs = Array(repeating: [], count: layers.count)
        capturedGradients = capturedInputs
        factorA = Array(repeating: nil, count: layers.count)
        factorG = factorA
        inverseA = factorA
        inverseG = factorA
        statisticsCount = Array(repeating: 0, count: layers.count)
    }

    /// The index in `parameters` of layer `l`'s weight (its state key).
    func parameterIndex(ofLayer l: Int) -> Int {
        layers[..<l].reduce(0) { $0 + ($1.bias == nil ? 1 : 2) }
    }

    /// `layer(input)`, recording the input rows and hooking the output's gradient for the next
    /// `step()` when gradients are being recorded.
    /// - Throws: `TensorError(.invalidArgument)` when `layer` is not one of `layers`; the layer's
    ///   own errors for a bad input.
    public func forward(_ layer: Linear, _ input: Tensor) throws -> Tensor {
        guard let l = layers.firstIndex(where: { $0 === layer }) else {
            throw TensorError(.invalidArgument, op: "KFAC", "forward(_:_:) got a layer that is not registered")
        }
        let output = try layer(input)
        guard GradientMode.isRecording, output.requiresGradient else { return output }
        let rows = input.count / layer.inputSize
        capturedInputs[l].append(try input.detached().reshaped(to: [rows, layer.inputSize]))
        let outputSize = layer.outputSize
        return output.withGradientHook { [weak self] g in
            self?.capturedGradients[l].append(try g.reshaped(to: [rows, outputSize]))
        }
    }

    /// Forgets the inputs and gradients captured since the last step.
    public func discardCapturedStatistics() {
        for l in layers.indices {
            capturedInputs[l].removeAll()
            capturedGradients[l].removeAll()
        }
    }

    /// The running A and G of layer `l` with its captured rows folded in.
    private func updatedStatistics(_ l: Int) throws -> (a: Tensor, g: Tensor) {
        let layer = layers[l]
        let b = layer.weight.value.backend
        var x = try Tensor.concatenated(capturedInputs[l], axis: 0)
        let g = try Tensor.concatenated(capturedGradients[l], axis: 0)
        let n = Float(x.shape[0]), ng = Float(g.shape[0])
        if layer.bias != nil { x = try Tensor.concatenated([x, Tensor.ones([x.shape[0], 1], on: b)], axis: 1) }
        let batchA: Tensor = try matmul(x, x, transposeA: true, alpha: 1 / n)
        let batchG: Tensor = try matmul(g, g, transposeA: true, alpha: batchAveraged ? ng : 1 / ng)
        let rho = Float(Swift.min(1 - 1 / Double(statisticsCount[l] + 1), statisticsDecay))
        guard let a0 = factorA[l], let g0 = factorG[l], rho > 0 else { return (batchA, batchG) }
        return (try a0 * rho + batchA * (1 - rho), try g0 * rho + batchG * (1 - rho))
    }

    /// (M + shift·I)⁻¹ on the host by Cholesky.
    private func dampedInverse(_ m: Tensor, shift: Double, layer l: Int, factor: String) throws -> Tensor {
        let n = m.shape[0]
        var values = try m.scalars().map(Double.init)
        for i in 0..<n { values[i * n + i] += shift }
        guard let inverse = HostLinearAlgebra.inverse(ofPositiveDefinite: values, n: n) else {
            throw TensorError(.invalidArgument, op: "KFAC",
                              "factor \(factor) of layer \(l) plus damping is not positive definite; increase damping (now \(damping))")
        }
        return try Tensor(inverse.map(Float.init), shape: [n, n], on: m.backend)
    }

    private func trace(_ m: Tensor) throws -> Double {
        let n = m.shape[0]
        let v = try m.scalars()
        return (0..<n).reduce(0.0) { $0 + Double(v[$1 * n + $1]) }
    }

    /// Updates the statistics from the captured rows, refreshes the inverses when due, and applies
    /// ΔW̄ = G⁻¹(∇W̄ + λW̄)A⁻¹ to every layer whose weight has a gradient.
    /// - Throws: `TensorError(.invalidArgument)` when a layer went through `forward(_:_:)` but no
    ///   gradient reached its output, or has no statistics at all, or a damped factor is not
    ///   positive definite. Nothing is changed then.
    public func step() throws {
        for l in layers.indices where capturedInputs[l].isEmpty != capturedGradients[l].isEmpty
            || (capturedInputs[l].isEmpty && factorA[l] == nil && layers[l].weight.gradient != nil) {
            let problem = capturedGradients[l].isEmpty && !capturedInputs[l].isEmpty
                ? "went through forward(_:_:) but no gradient reached its output; call backward() before step()"
                : "has no statistics; run it through forward(_:_:) before backward()"
            throw TensorError(.invalidArgument, op: "KFAC", "layer \(l) \(problem)")
        }
        try withoutGradients {
            // Everything that can fail is computed before anything changes.
            var (a, g, aInverse, gInverse, counts) = (factorA, factorG, inverseA, inverseG, statisticsCount)
            for l in layers.indices where !capturedInputs[l].isEmpty {
                (a[l], g[l]) = try updatedStatistics(l)
                counts[l] += 1
            }
            let refresh = stepCount % inverseUpdateFrequency == 0
            for l in layers.indices {
                guard let al = a[l], let gl = g[l], refresh || aInverse[l] == nil || gInverse[l] == nil else { continue }
                var pi = 1.0
                if dampingSplit == .traceNorm {
                    let ta = try trace(al) / Double(al.shape[0]), tg = try trace(gl) / Double(gl.shape[0])
                    if ta > 0 && tg > 0 && ta.isFinite && tg.isFinite { pi = (ta / tg).squareRoot() }
                }
                let root = damping.squareRoot()
                aInverse[l] = try dampedInverse(al, shift: pi * root, layer: l, factor: "A")
                gInverse[l] = try dampedInverse(gl, shift: root / pi, layer: l, factor: "G")
            }
            (factorA, factorG, inverseA, inverseG, statisticsCount) = (a, g, aInverse, gInverse, counts)
            discardCapturedStatistics()
            stepCount += 1
            for (l, layer) in layers.enumerated() {
                guard let weightGradient = layer.weight.gradient, let aInv = inverseA[l], let gInv = inverseG[l] else {
                    continue
                }
                var gradient = weightGradient.detached()
                var current = layer.weight.value.detached()
                if let bias = layer.bias {
                    let biasGradient = try (bias.gradient ?? Tensor.zeros(bias.shape, on: bias.value.backend)).detached()
                    gradient = try Tensor.concatenated([gradient, biasGradient.unsqueezed(axis: 1)], axis: 1)
                    current = try Tensor.concatenated([current, bias.value.detached().unsqueezed(axis: 1)], axis: 1)
                }
                if weightDecay != 0 { gradient = try gradient + current * Float(weightDecay) }
                let delta: Tensor = try matmul(matmul(gInv, gradient), aInv, alpha: Float(learningRate))
                let updated: Tensor = try current - delta
                let inputSize = layer.inputSize
                try layer.weight.assign(try updated.sliced(axis: 1, start: 0, end: inputSize), keepingGradient: true)
                if let bias = layer.bias {
                    try bias.assign(try updated.sliced(axis: 1, start: inputSize, end: inputSize + 1).reshaped(to: bias.shape),
                                    keepingGradient: true)
                }
            }
        }
    }

    public func stateDictionary() throws -> OptimizerState {
        var state = OptimizerState(scalars: ["step": Double(stepCount), "lr": learningRate])
        for l in layers.indices {
            let i = parameterIndex(ofLayer: l)
            state.scalars["\(i).statistics_count"] = Double(statisticsCount[l])
            let named: [(String, Tensor?)] = [("A", factorA[l]), ("G", factorG[l]), ("A_inverse", inverseA[l]),
                                              ("G_inverse", inverseG[l])]
            for case let (name, t?) in named { state.tensors["\(i).\(name)"] = try t.cloned() }
        }
        return state
    }

    /// Restores `stateDictionary()` output; a layer's four factors are all present or all absent.
    /// Captured inputs and gradients are not part of the state and are discarded.
    public func loadStateDictionary(_ state: OptimizerState) throws {
        let reader = OptimizerStateReader(op: "KFAC", state: state)
        let step = try reader.count("step")
        let lr = try reader.learningRate(default: learningRate)
        var a = factorA, g = factorG, aInv = inverseA, gInv = inverseG, counts = statisticsCount
        let names = ["A", "G", "A_inverse", "G_inverse"]
        for (l, layer) in layers.enumerated() {
            let i = parameterIndex(ofLayer: l)
            let b = layer.weight.value.backend
            counts[l] = state.scalars["\(i).statistics_count"] == nil ? 0 : try reader.count("\(i).statistics_count")
            let present = names.map { reader.hasTensor("\(i).\($0)") }
            guard present.allSatisfy({ $0 == present[0] }) else {
                throw TensorError(.invalidArgument, op: "KFAC", "state for layer \(l) must hold all or none of \(names)")
            }
            let na = layer.inputSize + (layer.bias == nil ? 0 : 1), ng = layer.outputSize
            let shapes = [[na, na], [ng, ng], [na, na], [ng, ng]]
            let loaded = try zip(names, shapes).map { name, shape in
                present[0] ? try reader.tensor("\(i).\(name)", shape: shape, on: b) : nil
            }
            (a[l], g[l], aInv[l], gInv[l]) = (loaded[0], loaded[1], loaded[2], loaded[3])
        }
        stepCount = step
        learningRate = lr
        (factorA, factorG, inverseA, inverseG, statisticsCount) = (a, g, aInv, gInv, counts)
        discardCapturedStatistics()
    }
}
