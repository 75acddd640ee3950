import Foundation
import KilnCore

/// Newton's method for small parameter counts: θ ← θ − η·(H + μI)⁻¹·∇L.
///
/// `closure` computes the loss; each `step()` zeroes the gradients, evaluates it with gradient
/// recording on, back-propagates, and reads ∇L (all parameters flattened, P values). H is
/// `hessian()` when given (a `[P, P]` tensor in the flattened order), otherwise central differences
/// of the gradient: column j = (∇L(θ + hⱼeⱼ) − ∇L(θ − hⱼeⱼ))/(2hⱼ), hⱼ = `finiteDifferenceStep`·max(1, |θⱼ|),
/// 2P more evaluations, then symmetrised. In Float32 the gradient's round-off ε·|∇L| makes the
/// difference error about ε·|∇L|/h, and the truncation error is h²·∂³L/6; the default h = 5e-3
/// (≈ ∛ε of Float32) balances them, and on a quadratic (no truncation error) one step lands on
/// the minimum to within that round-off.
///
/// The system (H + μI)·d = ∇L is solved on the host in Float64 by Cholesky (P³/3 work), so P up to
/// a few thousand is practical (each finite-difference column costs a forward and backward pass).
/// When H + μI is not positive definite, `step()` throws, or with `levenbergFallback` raises μ
/// (starting at max(μ, 1e-8·max(1, max|Hᵢᵢ|)), ×10 each try, at most 40 tries) until it is, as
/// Levenberg–Marquardt damping. The seed (000) writes θ ← θ − H⁻¹∇L, which is η = 1, μ = 0.
///
/// After a step the parameters' gradients hold ∇L at the old θ; `lastLoss` is the loss there.
/// State: scalars `"step"`, `"lr"`.
public final class NewtonMethod: Optimizer {
    public let parameters: [Parameter]
    /// η (default 1).
    public var learningRate: Double
    /// μ, added to H's diagonal (default 0).
    public let damping: Double
    /// The relative central-difference step (default 5e-3).
    public let finiteDifferenceStep: Double
    /// Whether a Hessian that is not positive definite after damping gets more damping (true) or
    /// makes `step()` throw (false, the default).
    public let levenbergFallback: Bool
    public private(set) var stepCount = 0
    /// The loss at the start of the last step.
    public private(set) var lastLoss: Double?
    /// The damping the last step used (μ, or the raised value of the Levenberg fallback).
    public private(set) var lastDamping: Double?

    private let closure: () throws -> Tensor
    private let hessian: (() throws -> Tensor)?

    /// - Parameters:
    ///   - hessian: returns H `[P, P]` at the current parameters; nil for finite differences.
    ///   - closure: computes the loss (one element) from the parameters' current values.
    /// - Throws: `TensorError(.invalidArgument)` for an empty or repeated parameter list, a
    ///   negative or NaN learning rate or damping, or a finite-difference step ≤ 0;
    ///   `.backendMismatch` when the parameters live on several backends.
    public init(parameters: [Parameter], learningRate: Double = 1, damping: Double = 0,
                finiteDifferenceStep: Double = 5e-3, levenbergFallback: Bool = false,
                hessian: (() throws -> Tensor)? = nil, closure: @escaping () throws -> Tensor) throws {
        let check = SecondOrderCheck(op: "NewtonMethod")
        try check.parameters(parameters, sameBackend: true)
        try check.nonNegative("learningRate", learningRate)
        try check.nonNegative("damping", damping)
        try check.positive("finiteDifferenceStep", finiteDifferenceStep)
        self.parameters = parameters
        self.learningRate = learningRate
        self.damping = damping
        self.finiteDifferenceStep = finiteDifferenceStep
        self.levenbergFallback = levenbergFallback
        self.hessian = hessian
        self.closure = closure
    }

    /// ∇L at the parameters' current values, flattened, and the loss.
    private func gradient() throws -> (loss: Double, gradient: [Double]) {
        for p in parameters { p.zeroGradient() }
        let loss = Double(try LossEvaluation.backpropagate(closure, op: "NewtonMethod").item())
        return (loss, try FlatParameters.gradient(parameters).scalars().map(Double.init))
    }

    /// H by central differences of the gradient; the parameters are restored afterwards.
    private func finiteDifferenceHessian(count n: Int) throws -> [Double] {
        let original = parameters.map { $0.value.detached() }
        let values = try parameters.map { try $0.value.scalars() }
        defer { for (p, v) in zip(parameters, original) { try? p.assign(v) } }
        var h = [Double](repeating: 0, count: n * n)
        var column = 0
        for (k, p) in parameters.enumerated() {
            for j in values[k].indices {
                let x = Double(values[k][j])
                let step = finiteDifferenceStep * Swift.max(1, Swift.abs(x))
                // The step actually taken in Float32.
                let plusValue = Float(x + step), minusValue = Float(x - step)
                var columns: [[Double]] = []
                for v in [plusValue, minusValue] {
                    var perturbed = values[k]
                    perturbed[j] = v
                    try p.assign(try Tensor(perturbed, shape: p.shape, on: p.value.backend))
                    columns.append(try gradient().gradient)
                }
                try p.assign(original[k])
                let width = Double(plusValue) - Double(minusValue)
                for i in 0..<n { h[i * n + column] = (columns[0][i] - columns[1][i]) / width }
                column += 1
            }
        }
        return HostLinearAlgebra.symmetrised(h, n: n)
    }

    /// One (damped) Newton step.
    /// - Throws: `TensorError(.invalidArgument)` for a closure that does not return a one-element
    ///   loss depending on the parameters, a `hessian()` result that is not `[P, P]`, or (without
    ///   the Levenberg fallback) H + μI that is not positive definite. The parameters are unchanged then.
    public func step() throws {
        let n = FlatParameters.count(parameters)
        let b = parameters[0].value.backend
        let (loss, g) = try gradient()
        let gradientTensor = try FlatParameters.gradient(parameters)
        var h: [Double]
        if let hessian {
            let m = try LossEvaluation.recording { try hessian() }
            guard m.shape == [n, n] else {
                throw TensorError(.invalidArgument, op: "NewtonMethod", "hessian() must return [\(n), \(n)], got \(m.shape)")
            }
            h = HostLinearAlgebra.symmetrised(try m.scalars().map(Double.init), n: n)
        } else {
            h = try finiteDifferenceHessian(count: n)
            // Put back the gradient at θ that the differences overwrote.
            for (p, piece) in zip(parameters, try FlatParameters.split(gradientTensor, like: parameters)) {
                try p.setGradient(piece)
            }
        }
        var mu = damping
        var factor: [Double]? = nil
        let scale = Swift.max(1, (0..<n).map { Swift.abs(h[$0 * n + $0]) }.max() ?? 0)
        for attempt in 0..<(levenbergFallback ? 41 : 1) {
            if attempt == 1 { mu = Swift.max(mu, 1e-8 * scale) } else if attempt > 1 { mu *= 10 }
            var damped = h
            for i in 0..<n { damped[i * n + i] += mu }
            factor = HostLinearAlgebra.cholesky(damped, n: n)
            if factor != nil { break }
        }
        guard let l = factor else {
            throw TensorError(.invalidArgument, op: "NewtonMethod",
                              "the Hessian plus damping \(mu) is not positive definite; raise damping or use levenbergFallback")
        }
        let direction = HostLinearAlgebra.choleskySolve(l, n: n, g)
        try withoutGradients {
            try FlatParameters.add(try Tensor(direction.map(Float.init), on: b), scale: -learningRate, to: parameters)
        }
        stepCount += 1
        lastLoss = loss
        lastDamping = mu
    }

    public func stateDictionary() throws -> OptimizerState {
        OptimizerState(scalars: ["step": Double(stepCount), "lr": learningRate])
    }

    public func loadStateDictionary(_ state: OptimizerState) throws {
        let reader = OptimizerStateReader(op: "NewtonMethod", state: state)
        let step = try reader.count("step")
        learningRate = try reader.learningRate(default: learningRate)
        stepCount = step
    }
}
