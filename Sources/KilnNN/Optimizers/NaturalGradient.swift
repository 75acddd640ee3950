import Foundation
import KilnCore

/// Natural gradient descent (Amari 1998) with the empirical Fisher, for small models:
///
///     F = (1/N)·Σₙ sₙ·sₙᵀ,   sₙ = ∇θ log p(xₙ | θ)  (per-sample score, all parameters flattened)
///     θ ← θ − η·(F + λI)⁻¹·∇L
///
/// ∇L is the parameters' accumulated gradient (`loss.backward()` before `step()`, as other
/// optimizers). The scores come from `sampleGradients`, called once per step, which returns an
/// `[N, P]` tensor whose rows are the flattened per-sample gradients in `parameters` order
/// (row signs do not matter: F uses outer products, so per-sample loss gradients −sₙ serve as well).
/// `NaturalGradient.perSampleGradients(of:sampleCount:_:)` builds that matrix by one backward
/// pass per sample.
///
/// F = SᵀS/N is formed on the backend (a `[P, P]` matmul), then (F + λI)·d = ∇L is solved on the
/// host in Float64 by Cholesky (P³/3 work, P² values transferred), so P up to a few thousand is
/// practical. The seed (000) writes F = E[∇log p ∇log pᵀ] with the expectation under the model;
/// the empirical Fisher over the supplied samples is what Kiln computes.
///
/// State: scalars `"step"`, `"lr"` (F is recomputed every step).
public final class NaturalGradient: Optimizer {
    public let parameters: [Parameter]
    /// η (default 1e-2).
    public var learningRate: Double
    /// λ, added to F's diagonal (default 1e-3).
    public let damping: Double
    public private(set) var stepCount = 0
    private let sampleGradients: () throws -> Tensor

    /// - Throws: `TensorError(.invalidArgument)` for an empty or repeated parameter list, or a
    ///   negative or NaN learning rate or damping; `.backendMismatch` when the parameters live on
    ///   several backends.
    public init(parameters: [Parameter], learningRate: Double = 1e-2, damping: Double = 1e-3,
                sampleGradients: @escaping () throws -> Tensor) throws {
        let check = SecondOrderCheck(op: "NaturalGradient")
        try check.parameters(parameters, sameBackend: true)
        try check.nonNegative("learningRate", learningRate)
        try check.nonNegative("damping", damping)
        self.parameters = parameters
        self.learningRate = learningRate
        self.damping = damping
        self.sampleGradients = sampleGradients
    }

    /// The `[sampleCount, P]` matrix of per-sample gradients ∇θ ℓₙ of `parameters` (flattened and
    /// concatenated in order), one backward pass of `sampleLoss(n)` per sample. The parameters'
    /// accumulated gradients are restored afterwards.
    /// - Throws: `TensorError(.invalidArgument)` for a sample loss of more than one element or one
    ///   that does not depend on the parameters.
    public static func perSampleGradients(of parameters: [Parameter], sampleCount: Int,
                                          _ sampleLoss: (Int) throws -> Tensor) throws -> Tensor {
        guard sampleCount >= 1, !parameters.isEmpty else {
            throw TensorError(.invalidArgument, op: "NaturalGradient",
                              "perSampleGradients needs parameters and sampleCount ≥ 1, got \(sampleCount)")
        }
        let saved = parameters.map(\.gradient)
        defer { for (p, g) in zip(parameters, saved) { try? p.setGradient(g) } }
        var rows: [Tensor] = []
        for n in 0..<sampleCount {
            for p in parameters { p.zeroGradient() }
            _ = try LossEvaluation.backpropagate({ try sampleLoss(n) }, op: "NaturalGradient")
            rows.append(try FlatParameters.gradient(parameters).unsqueezed(axis: 0))
        }
        return try withoutGradients { try Tensor.concatenated(rows, axis: 0) }
    }

    /// One natural-gradient step.
    /// - Throws: `TensorError(.invalidArgument)` when the scores are not `[N, P]` on the parameters'
    ///   backend, or F + λI is not positive definite (raise the damping); nothing changes then.
    public func step() throws {
        let b = parameters[0].value.backend
        let p = FlatParameters.count(parameters)
        let scores = try sampleGradients().detached()
        guard scores.rank == 2, scores.shape[1] == p, scores.shape[0] >= 1 else {
            throw TensorError(.invalidArgument, op: "NaturalGradient",
                              "sampleGradients must return [N, \(p)] with N ≥ 1, got \(scores.shape)")
        }
        guard scores.backend === b else {
            throw TensorError(.backendMismatch, op: "NaturalGradient", "sampleGradients returned a tensor on another backend")
        }
        try withoutGradients {
            let fisher = try matmul(scores, scores, transposeA: true, alpha: 1 / Float(scores.shape[0]))
            var f = try fisher.scalars().map(Double.init)
            for i in 0..<p { f[i * p + i] += damping }
            guard let l = HostLinearAlgebra.cholesky(HostLinearAlgebra.symmetrised(f, n: p), n: p) else {
                throw TensorError(.invalidArgument, op: "NaturalGradient",
                                  "F + λI is not positive definite; increase damping (now \(damping))")
            }
            let gradient = try FlatParameters.gradient(parameters).scalars().map(Double.init)
            let direction = HostLinearAlgebra.choleskySolve(l, n: p, gradient)
            stepCount += 1
            try FlatParameters.add(try Tensor(direction.map(Float.init), on: b), scale: -learningRate, to: parameters)
        }
    }

    public func stateDictionary() throws -> OptimizerState {
        OptimizerState(scalars: ["step": Double(stepCount), "lr": learningRate])
    }

    public func loadStateDictionary(_ state: OptimizerState) throws {
        let reader = OptimizerStateReader(op: "NaturalGradient", state: state)
        let step = try reader.count("step")
        learningRate = try reader.learningRate(default: learningRate)
        stepCount = step
    }
}
