import Foundation
import KilnCore

/// The strong Wolfe line search of `LBFGS` (Nocedal & Wright Algorithms 3.5 and 3.6, as PyTorch's
/// `_strong_wolfe`, a port of `lswolfe.lua`) and the optimizer's state dictionary.
extension LBFGS {
    struct LineSearchResult {
        var loss: Double
        var gradient: Tensor
        var step: Double
        var evaluations: Int
    }

    /// The minimiser over [min(x1, x2), max(x1, x2)] (or `bounds`) of the cubic interpolating
    /// f and f′ at x1 and x2; the midpoint of the bounds when the cubic has no minimum.
    static func cubicInterpolate(_ x1: Double, _ f1: Double, _ g1: Double, _ x2: Double, _ f2: Double, _ g2: Double,
                                 bounds: (Double, Double)? = nil) -> Double {
        let (lower, upper) = bounds ?? (x1 <= x2 ? (x1, x2) : (x2, x1))
        let d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
        let d2Squared = d1 * d1 - g1 * g2
        guard d2Squared >= 0 else { return (lower + upper) / 2 }
        let d2 = d2Squared.squareRoot()
        let minimum = x1 <= x2
            ? x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
            : x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return Swift.min(Swift.max(minimum, lower), upper)
    }

    /// The loss and flat gradient at start + t·d; the parameters are left at `start`.
    private func directionalEvaluate(start: Tensor, step t: Double, direction d: Tensor) throws -> (Double, Tensor) {
        try FlatParameters.assign(try start + d * Float(t), to: parameters)
        let result = try evaluate()
        try FlatParameters.assign(start, to: parameters)
        return result
    }

    /// A step length satisfying the strong Wolfe conditions f(x + td) ≤ f + c₁t·gᵀd and
    /// |∇f(x + td)ᵀd| ≤ −c₂·gᵀd (c₁ = 1e-4, c₂ = 0.9), by bracketing (Algorithm 3.5) then zooming
    /// with safeguarded cubic interpolation (Algorithm 3.6), at most 25 evaluations.
    func strongWolfe(start: Tensor, step initial: Double, direction d: Tensor, loss f: Double, gradient g: Tensor,
                     directionalDerivative gtd: Double, c1: Double = 1e-4, c2: Double = 0.9,
                     maxEvaluations: Int = 25) throws -> LineSearchResult {
        let dNorm = try Self.maxAbs(d)
        var t = initial
        var (fNew, gNew) = try directionalEvaluate(start: start, step: t, direction: d)
        var evaluations = 1
        var gtdNew = try FlatParameters.dot(gNew, d)
        var (tPrev, fPrev, gPrev, gtdPrev) = (0.0, f, g, gtd)
        var done = false
        var iteration = 0
        var bracket: [Double] = [], bracketF: [Double] = [], bracketG: [Tensor] = [], bracketGtd: [Double] = []
        while iteration < maxEvaluations {
            if fNew > f + c1 * t * gtd || (iteration > 1 && fNew >= fPrev) {
                (bracket, bracketF, bracketG, bracketGtd) = ([tPrev, t], [fPrev, fNew], [gPrev, gNew], [gtdPrev, gtdNew])
                break
            }
            if Swift.abs(gtdNew) <= -c2 * gtd {
                (bracket, bracketF, bracketG, bracketGtd) = ([t], [fNew], [gNew], [gtdNew])
                done = true
                break
            }
            if gtdNew >= 0 {
                (bracket, bracketF, bracketG, bracketGtd) = ([tPrev, t], [fPrev, fNew], [gPrev, gNew], [gtdPrev, gtdNew])
                break
            }
            // Extrapolate: a cubic step between 1.01·t − 0.01·t_prev and 10·t.
            let minStep = t + 0.01 * (t - tPrev), maxStep = t * 10
            let previous = t
            t = Self.cubicInterpolate(tPrev, fPrev, gtdPrev, t, fNew, gtdNew, bounds: (minStep, maxStep))
            (tPrev, fPrev, gPrev, gtdPrev) = (previous, fNew, gNew, gtdNew)
            (fNew, gNew) = try directionalEvaluate(start: start, step: t, direction: d)
            evaluations += 1
            gtdNew = try FlatParameters.dot(gNew, d)
            iteration += 1
        }
        if iteration == maxEvaluations {
            (bracket, bracketF, bracketG, bracketGtd) = ([0, t], [f, fNew], [g, gNew], [gtd, gtdNew])
        }

        // Zoom: shrink the bracket until a point satisfies the conditions.
        var insufficientProgress = false
        var (low, high) = bracketF[0] <= bracketF[bracketF.count - 1] ? (0, 1) : (1, 0)
        while !done && iteration < maxEvaluations {
            if Swift.abs(bracket[1] - bracket[0]) * dNorm < toleranceChange { break }
            t = Self.cubicInterpolate(bracket[0], bracketF[0], bracketGtd[0], bracket[1], bracketF[1], bracketGtd[1])
            // Keep t at least 10% of the bracket away from its ends when progress stalls.
            let (lo, hi) = (bracket.min()!, bracket.max()!)
            let margin = 0.1 * (hi - lo)
            if Swift.min(hi - t, t - lo) < margin {
                if insufficientProgress || t >= hi || t <= lo {
                    t = Swift.abs(t - hi) < Swift.abs(t - lo) ? hi - margin : lo + margin
                    insufficientProgress = false
                } else {
                    insufficientProgress = true
                }
            } else {
                insufficientProgress = false
            }
            (fNew, gNew) = try directionalEvaluate(start: start, step: t, direction: d)
            evaluations += 1
            gtdNew = try FlatParameters.dot(gNew, d)
            iteration += 1
            if fNew > f + c1 * t * gtd || fNew >= bracketF[low] {
                (bracket[high], bracketF[high], bracketG[high], bracketGtd[high]) = (t, fNew, gNew, gtdNew)
                (low, high) = bracketF[0] <= bracketF[1] ? (0, 1) : (1, 0)
            } else {
                if Swift.abs(gtdNew) <= -c2 * gtd {
                    done = true
                } else if gtdNew * (bracket[high] - bracket[low]) >= 0 {
                    (bracket[high], bracketF[high], bracketG[high], bracketGtd[high]) =
                        (bracket[low], bracketF[low], bracketG[low], bracketGtd[low])
                }
                (bracket[low], bracketF[low], bracketG[low], bracketGtd[low]) = (t, fNew, gNew, gtdNew)
            }
        }
        return LineSearchResult(loss: bracketF[low], gradient: bracketG[low], step: bracket[low], evaluations: evaluations)
    }

    public func stateDictionary() throws -> OptimizerState {
        var state = OptimizerState(scalars: [
            "step": Double(stepCount), "lr": learningRate, "n_iter": Double(iterationCount),
            "func_evals": Double(evaluationCount), "history": Double(oldDirections.count),
            "t": stepLength, "H_diag": hessianDiagonal,
        ])
        if let previousLoss { state.scalars["prev_loss"] = previousLoss }
        if let direction { state.tensors["0.d"] = try direction.cloned() }
        if let previousGradient { state.tensors["0.prev_flat_grad"] = try previousGradient.cloned() }
        for k in oldDirections.indices {
            state.tensors["0.old_dirs.\(k)"] = try oldDirections[k].cloned()
            state.tensors["0.old_stps.\(k)"] = try oldSteps[k].cloned()
            state.scalars["ro.\(k)"] = inverseCurvatures[k]
        }
        return state
    }

    /// Restores `stateDictionary()` output. After at least one iteration (`"n_iter"` > 0) the
    /// direction, previous gradient and loss, step length and every history pair must be present.
    public func loadStateDictionary(_ state: OptimizerState) throws {
        let reader = OptimizerStateReader(op: "LBFGS", state: state)
        let b = parameters[0].value.backend
        let n = FlatParameters.count(parameters)
        let step = try reader.count("step")
        let lr = try reader.learningRate(default: learningRate)
        let iterations = try reader.count("n_iter")
        let evaluations = try reader.count("func_evals")
        let history = try reader.count("history")
        guard history <= historySize else {
            throw TensorError(.invalidArgument, op: "LBFGS", "state holds \(history) pairs, more than historySize \(historySize)")
        }
        var d: Tensor? = nil, previous: Tensor? = nil, previousLossValue: Double? = nil
        var t = 0.0, diagonal = 1.0
        var dirs: [Tensor] = [], steps: [Tensor] = [], ro: [Double] = []
        if iterations > 0 {
            d = try reader.tensor("0.d", shape: [n], on: b)
            previous = try reader.tensor("0.prev_flat_grad", shape: [n], on: b)
            previousLossValue = try reader.scalar("prev_loss")
            t = try reader.scalar("t")
            diagonal = try reader.scalar("H_diag")
            for k in 0..<history {
                dirs.append(try reader.tensor("0.old_dirs.\(k)", shape: [n], on: b))
                steps.append(try reader.tensor("0.old_stps.\(k)", shape: [n], on: b))
                ro.append(try reader.scalar("ro.\(k)"))
            }
        }
        stepCount = step
        learningRate = lr
        iterationCount = iterations
        evaluationCount = evaluations
        (direction, previousGradient, previousLoss, stepLength, hessianDiagonal) = (d, previous, previousLossValue, t, diagonal)
        (oldDirections, oldSteps, inverseCurvatures) = (dirs, steps, ro)
    }
}
