import Foundation
import KilnCore

/// L-BFGS (Nocedal & Wright, *Numerical Optimization*, Algorithm 7.4 and 7.5), as PyTorch's
/// `torch.optim.LBFGS`: each `step()` runs up to `maxIterations` quasi-Newton iterations on the
/// loss that `closure` computes.
///
/// All parameters are seen as one flat vector x (P values). Per iteration, with gradient g:
///
///     (first iteration ever)  d = −g,  t = min(1, 1/‖g‖₁)·η
///     (later)  y = g − g_prev, s = t·d; when yᵀs > 1e-10 the pair joins the history (at most
///              `historySize`, oldest dropped) and H₀ = yᵀs/yᵀy; d = −H·g by the two-loop
///              recursion over the history; t = η
///     stop when gᵀd > −toleranceChange; otherwise x ← x + t·d (with `.strongWolfe`, t from the
///     line search, Algorithms 3.5–3.6 with cubic interpolation, c₁ = 1e-4, c₂ = 0.9, at most 25
///     evaluations), then re-evaluate the loss and gradient
///     stop after `maxIterations`, after `maxEvaluations` closure calls in this step, when
///     max|g| ≤ toleranceGrad, when max|t·d| ≤ toleranceChange, or when the loss changed by less
///     than toleranceChange
///
/// The closure computes the loss (one element) from the parameters' current values; the optimizer
/// zeroes the gradients, runs the closure with gradient recording on and back-propagates it
/// itself (PyTorch's closures call `zero_grad()` and `backward()`; Kiln's must not). Dot products
/// and norms run on the backend over the concatenated flattened gradients and are read back as
/// Float64 scalars; the recursion's vectors stay on the backend. Without a line search, as
/// PyTorch, the last iteration does not re-evaluate the loss.
///
/// State (global, as PyTorch's, which keeps it under parameter 0): tensors `"0.d"`,
/// `"0.prev_flat_grad"`, `"0.old_dirs.<k>"` (y) and `"0.old_stps.<k>"` (s); scalars `"t"`,
/// `"H_diag"`, `"prev_loss"`, `"n_iter"`, `"func_evals"`, `"history"` (the pair count), `"ro.<k>"`
/// (1/yᵀs), `"step"`, `"lr"`.
public final class LBFGS: Optimizer {
    /// The step-length rule.
    public enum LineSearch: Sendable {
        /// A fixed step t = η (the first iteration ever scales it by min(1, 1/‖g‖₁)).
        case none
        /// The strong Wolfe conditions by bracketing and cubic-interpolation zoom.
        case strongWolfe
    }

    public let parameters: [Parameter]
    /// η (default 1).
    public var learningRate: Double
    /// Iterations per `step()` (default 20).
    public let maxIterations: Int
    /// Closure evaluations per `step()` (default maxIterations·5/4).
    public let maxEvaluations: Int
    /// First-order optimality tolerance on max|g| (default 1e-7).
    public let toleranceGrad: Double
    /// Tolerance on loss and parameter changes (default 1e-9).
    public let toleranceChange: Double
    /// The number of (s, y) pairs kept (default 100).
    public let historySize: Int
    public let lineSearch: LineSearch
    public internal(set) var stepCount = 0
    /// The loss at the start of the last `step()` (PyTorch's return value).
    public private(set) var lastLoss: Double?
    /// Closure evaluations over all steps.
    public internal(set) var evaluationCount = 0
    /// Iterations over all steps.
    public internal(set) var iterationCount = 0

    let closure: () throws -> Tensor
    var direction: Tensor?
    var stepLength = 0.0
    var oldDirections: [Tensor] = []
    var oldSteps: [Tensor] = []
    var inverseCurvatures: [Double] = []
    var hessianDiagonal = 1.0
    var previousGradient: Tensor?
    var previousLoss: Double?

    /// - Throws: `TensorError(.invalidArgument)` for an empty or repeated parameter list, a
    ///   negative or NaN rate or tolerance, or counts < 1; `.backendMismatch` when the parameters
    ///   live on several backends.
    public init(parameters: [Parameter], learningRate: Double = 1, maxIterations: Int = 20, maxEvaluations: Int? = nil,
                toleranceGrad: Double = 1e-7, toleranceChange: Double = 1e-9, historySize: Int = 100,
                lineSearch: LineSearch = .none, closure: @escaping () throws -> Tensor) throws {
        let check = SecondOrderCheck(op: "LBFGS")
        try check.parameters(parameters, sameBackend: true)
        try check.nonNegative("learningRate", learningRate)
        try check.atLeast("maxIterations", maxIterations, 1)
        let evaluations = maxEvaluations ?? maxIterations * 5 / 4
        try check.atLeast("maxEvaluations", evaluations, 1)
        try check.nonNegative("toleranceGrad", toleranceGrad)
        try check.nonNegative("toleranceChange", toleranceChange)
        try check.atLeast("historySize", historySize, 1)
        self.parameters = parameters
        self.learningRate = learningRate
        self.maxIterations = maxIterations
        self.maxEvaluations = evaluations
        self.toleranceGrad = toleranceGrad
        self.toleranceChange = toleranceChange
        self.historySize = historySize
        self.lineSearch = lineSearch
        self.closure = closure
    }

    /// Zeroes the gradients, evaluates and back-propagates the closure: (loss, flat gradient).
    func evaluate() throws -> (Double, Tensor) {
        for p in parameters { p.zeroGradient() }
        let loss = Double(try LossEvaluation.backpropagate(closure, op: "LBFGS").item())
        evaluationCount += 1
        return (loss, try FlatParameters.gradient(parameters))
    }

    static func maxAbs(_ x: Tensor) throws -> Double { Double(try abs(x).max().item()) }

    /// −H·g by the two-loop recursion (Nocedal & Wright Algorithm 7.4) with H₀ = `hessianDiagonal`·I.
    func twoLoopDirection(_ g: Tensor) throws -> Tensor {
        var q: Tensor = try -g
        var alphas = [Double](repeating: 0, count: oldDirections.count)
        for i in oldDirections.indices.reversed() {
            alphas[i] = try FlatParameters.dot(oldSteps[i], q) * inverseCurvatures[i]
            q = try q - oldDirections[i] * Float(alphas[i])
        }
        var r: Tensor = try q * Float(hessianDiagonal)
        for i in oldDirections.indices {
            let beta = try FlatParameters.dot(oldDirections[i], r) * inverseCurvatures[i]
            r = try r + oldSteps[i] * Float(alphas[i] - beta)
        }
        return r
    }

    /// Up to `maxIterations` L-BFGS iterations.
    /// - Throws: `TensorError(.invalidArgument)` when the closure does not return a one-element
    ///   loss that depends on the parameters.
    public func step() throws {
        stepCount += 1
        var (loss, flatGradient) = try evaluate()
        lastLoss = loss
        var currentEvaluations = 1
        if try Self.maxAbs(flatGradient) <= toleranceGrad { return }
        try withoutGradients {
            var iteration = 0
            while iteration < maxIterations {
                iteration += 1
                iterationCount += 1
                var d: Tensor
                if iterationCount == 1 {
                    d = try -flatGradient
                    (oldDirections, oldSteps, inverseCurvatures, hessianDiagonal) = ([], [], [], 1)
                } else {
                    let y: Tensor = try flatGradient - previousGradient!
                    let s: Tensor = try direction! * Float(stepLength)
                    let ys = try FlatParameters.dot(y, s)
                    if ys > 1e-10 {
                        if oldDirections.count == historySize {
                            oldDirections.removeFirst()
                            oldSteps.removeFirst()
                            inverseCurvatures.removeFirst()
                        }
                        oldDirections.append(y)
                        oldSteps.append(s)
                        inverseCurvatures.append(1 / ys)
                        hessianDiagonal = ys / (try FlatParameters.dot(y, y))
                    }
                    d = try twoLoopDirection(flatGradient)
                }
                previousGradient = flatGradient
                previousLoss = loss
                var t = iterationCount == 1
                    ? Swift.min(1, 1 / Double(try abs(flatGradient).sum().item())) * learningRate : learningRate
                let gtd = try FlatParameters.dot(flatGradient, d)
                direction = d
                stepLength = t
                if gtd > -toleranceChange { break }

                var evaluations = 0
                var optimal = false
                switch lineSearch {
                case .strongWolfe:
                    let start = try FlatParameters.values(parameters)
                    let result = try strongWolfe(start: start, step: t, direction: d, loss: loss,
                                                 gradient: flatGradient, directionalDerivative: gtd)
                    (loss, flatGradient, t, evaluations) = (result.loss, result.gradient, result.step, result.evaluations)
                    try FlatParameters.assign(try start + d * Float(t), to: parameters)
                    optimal = try Self.maxAbs(flatGradient) <= toleranceGrad
                case .none:
                    try FlatParameters.add(d, scale: t, to: parameters)
                    if iteration != maxIterations {
                        (loss, flatGradient) = try LossEvaluation.recording { try evaluate() }
                        optimal = try Self.maxAbs(flatGradient) <= toleranceGrad
                        evaluations = 1
                    }
                }
                stepLength = t
                currentEvaluations += evaluations
                if iteration == maxIterations || currentEvaluations >= maxEvaluations || optimal { break }
                if try Self.maxAbs(d) * Swift.abs(t) <= toleranceChange { break }
                if Swift.abs(loss - (previousLoss ?? loss)) < toleranceChange { break }
            }
        }
    }
}
