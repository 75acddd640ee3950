import Foundation
import Kiln
import KilnTestSupport
import Testing

// L-BFGS against a Float64 oracle of torch.optim.LBFGS (two-loop recursion of Nocedal & Wright
// Algorithm 7.4, strong Wolfe search of Algorithms 3.5–3.6), on every backend; the strong Wolfe
// conditions, convergence on Rosenbrock and an ill-conditioned quadratic, state and error cases.

private typealias T = SecondOrderTesting
private typealias Quadratic = SecondOrderTesting.Quadratic
private func d(_ v: [Float]) -> [Double] { v.map(Double.init) }
private func quadraticParameters(_ q: Quadratic, seed: UInt64, on b: any Backend) throws -> [Parameter] {
    try T.quadraticParameters(q, seed: seed, on: b)
}

/// Rosenbrock's function (1 − x₀)² + 100(x₁ − x₀²)².
private struct Rosenbrock: SecondOrderObjective {
    func value(_ x: [Double]) -> Double { (1 - x[0]) * (1 - x[0]) + 100 * (x[1] - x[0] * x[0]) * (x[1] - x[0] * x[0]) }
    func gradient(_ x: [Double]) -> [Double] {
        [-2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] * x[0]), 200 * (x[1] - x[0] * x[0])]
    }
    /// The Kiln loss over two one-element parameters.
    static func loss(_ u: Parameter, _ v: Parameter) throws -> Tensor {
        let a: Tensor = try square(1 - u.value)
        let c: Tensor = try square(v.value - square(u.value)) * 100
        return try (a + c).sum()
    }
}

/// x⁴/4 − x in one dimension, minimum at 1.
private struct QuarticLine: SecondOrderObjective {
    func value(_ x: [Double]) -> Double { x[0] * x[0] * x[0] * x[0] / 4 - x[0] }
    func gradient(_ x: [Double]) -> [Double] { [x[0] * x[0] * x[0] - 1] }
    static func loss(_ u: Parameter) throws -> Tensor {
        let fourth: Tensor = try square(square(u.value)).sum() * 0.25
        return try fourth - u.value.sum()
    }
}

/// L-BFGS without line search, as `torch.optim.LBFGS`, with Nocedal & Wright's two-loop recursion.
private struct LBFGSOracle {
    let f: any SecondOrderObjective
    var lr = 1.0, maxIterations = 4, toleranceGrad = 1e-7, toleranceChange = 1e-9, historySize = 100, strongWolfe = false
    var iterations = 0, d: [Double] = [], t = 0.0, s: [[Double]] = [], y: [[Double]] = [], rho: [Double] = []
    var h0 = 1.0, previousGradient: [Double] = [], previousLoss = 0.0
    /// Function evaluations over all steps.
    var totalEvaluations = 0

    private func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }

    /// The minimiser of the cubic through (a, fa, ga) and (b, fb, gb), clamped to [lo, hi]
    /// (Nocedal & Wright eq. 3.59); the midpoint when the cubic has no minimiser.
    private func cubic(_ a: Double, _ fa: Double, _ ga: Double, _ b: Double, _ fb: Double, _ gb: Double,
                       _ bounds: (Double, Double)? = nil) -> Double {
        let (lo, hi) = bounds ?? (Swift.min(a, b), Swift.max(a, b))
        let d1 = ga + gb - 3 * (fa - fb) / (a - b)
        let radicand = d1 * d1 - ga * gb
        if radicand < 0 { return (lo + hi) / 2 }
        let d2 = radicand.squareRoot() * (b >= a ? 1 : -1)
        let x = b - (b - a) * (gb + d2 - d1) / (gb - ga + 2 * d2)
        return Swift.min(Swift.max(x, lo), hi)
    }

    /// Strong Wolfe search (Nocedal & Wright Algorithms 3.5, 3.6; c₁ = 1e-4, c₂ = 0.9; PyTorch's
    /// bracket safeguards and 25-evaluation cap).
    private func wolfeSearch(_ x: [Double], _ t0: Double, _ d: [Double], _ f0: Double, _ g0: [Double], _ slope0: Double)
        -> (f: Double, g: [Double], t: Double, evaluations: Int) {
        let c1 = 1e-4, c2 = 0.9, cap = 25
        func phi(_ t: Double) -> (Double, [Double], Double) {
            let p = zip(x, d).map { $0 + t * $1 }
            let g = f.gradient(p)
            return (f.value(p), g, dot(g, d))
        }
        var t = t0, count = 1, iteration = 0
        var (fT, gT, sT) = phi(t)
        var (tPrev, fPrev, gPrev, sPrev) = (0.0, f0, g0, slope0)
        var br: [(t: Double, f: Double, g: [Double], s: Double)] = []
        var done = false
        while iteration < cap {
            if fT > f0 + c1 * t * slope0 || (iteration > 1 && fT >= fPrev) {
                br = [(tPrev, fPrev, gPrev, sPrev), (t, fT, gT, sT)]; break
            }
            if Swift.abs(sT) <= -c2 * slope0 { br = [(t, fT, gT, sT)]; done = true; break }
            if sT >= 0 { br = [(tPrev, fPrev, gPrev, sPrev), (t, fT, gT, sT)]; break }
            let next = cubic(tPrev, fPrev, sPrev, t, fT, sT, (t + 0.01 * (t - tPrev), 10 * t))
            (tPrev, fPrev, gPrev, sPrev) = (t, fT, gT, sT)
            t = next
            (fT, gT, sT) = phi(t)
            count += 1
            iteration += 1
        }
        if iteration == cap { br = [(0, f0, g0, slope0), (t, fT, gT, sT)] }
        var low = br[0].f <= br[br.count - 1].f ? 0 : 1
        var stalled = false
        while !done && iteration < cap {
            let span = Swift.abs(br[1].t - br[0].t)
            if span * d.map(Swift.abs).max()! < toleranceChange { break }
            var trial = cubic(br[0].t, br[0].f, br[0].s, br[1].t, br[1].f, br[1].s)
            let lo = Swift.min(br[0].t, br[1].t), hi = Swift.max(br[0].t, br[1].t), margin = 0.1 * (hi - lo)
            if Swift.min(hi - trial, trial - lo) < margin {
                if stalled || trial >= hi || trial <= lo {
                    trial = Swift.abs(trial - hi) < Swift.abs(trial - lo) ? hi - margin : lo + margin
                    stalled = false
                } else {
                    stalled = true
                }
            } else {
                stalled = false
            }
            t = trial
            (fT, gT, sT) = phi(t)
            count += 1
            iteration += 1
            if fT > f0 + c1 * t * slope0 || fT >= br[low].f {
                br[1 - low] = (t, fT, gT, sT)
                low = br[0].f <= br[1].f ? 0 : 1
            } else {
                if Swift.abs(sT) <= -c2 * slope0 {
                    done = true
                } else if sT * (br[1 - low].t - br[low].t) >= 0 {
                    br[1 - low] = br[low]
                }
                br[low] = (t, fT, gT, sT)
            }
        }
        return (br[low].f, br[low].g, br[low].t, count)
    }

    mutating func step(_ x: inout [Double]) {
        let maxEvaluations = maxIterations * 5 / 4
        var loss = f.value(x), g = f.gradient(x)
        var evaluations = 1
        totalEvaluations += 1
        if g.map(Swift.abs).max()! <= toleranceGrad { return }
        var k = 0
        while k < maxIterations {
            k += 1
            iterations += 1
            if iterations == 1 {
                d = g.map { -$0 }
                (s, y, rho, h0) = ([], [], [], 1)
            } else {
                let yk = zip(g, previousGradient).map { $0 - $1 }, sk = d.map { $0 * t }
                let ys = dot(yk, sk)
                if ys > 1e-10 {
                    if y.count == historySize { y.removeFirst(); s.removeFirst(); rho.removeFirst() }
                    y.append(yk); s.append(sk); rho.append(1 / ys)
                    h0 = ys / dot(yk, yk)
                }
                // Algorithm 7.4: r = H·g, direction −r.
                var q = g, alpha = [Double](repeating: 0, count: y.count)
                for i in stride(from: y.count - 1, through: 0, by: -1) {
                    alpha[i] = rho[i] * dot(s[i], q)
                    q = zip(q, y[i]).map { $0 - alpha[i] * $1 }
                }
                var r = q.map { h0 * $0 }
                for i in 0..<y.count {
                    let beta = rho[i] * dot(y[i], r)
                    r = zip(r, s[i]).map { $0 + (alpha[i] - beta) * $1 }
                }
                d = r.map { -$0 }
            }
            previousGradient = g
            previousLoss = loss
            t = iterations == 1 ? Swift.min(1, 1 / g.map(Swift.abs).reduce(0, +)) * lr : lr
            if dot(g, d) > -toleranceChange { break }
            var optimal = false
            if strongWolfe {
                let search = wolfeSearch(x, t, d, loss, g, dot(g, d))
                (loss, g, t) = (search.f, search.g, search.t)
                evaluations += search.evaluations
                totalEvaluations += search.evaluations
                x = zip(x, d).map { $0 + t * $1 }
                optimal = g.map(Swift.abs).max()! <= toleranceGrad
            } else {
                x = zip(x, d).map { $0 + t * $1 }
                if k != maxIterations {
                    loss = f.value(x)
                    g = f.gradient(x)
                    evaluations += 1
                    totalEvaluations += 1
                    optimal = g.map(Swift.abs).max()! <= toleranceGrad
                }
            }
            if k == maxIterations || evaluations >= maxEvaluations || optimal { break }
            if d.map({ Swift.abs($0 * t) }).max()! <= toleranceChange { break }
            if Swift.abs(loss - previousLoss) < toleranceChange { break }
        }
    }
}

@Suite("L-BFGS")
struct OptimizerLBFGSTests {
    @Test("L-BFGS without line search matches the Float64 oracle across steps", arguments: TestBackend.all)
    func lbfgs(backend: TestBackend) throws {
        let b = backend.backend
        let q = Quadratic(n: 5, seed: 800)
        for history in [100, 2] {
            let ps = try quadraticParameters(q, seed: 802, on: b)
            var x = try d(T.values(ps).flatMap { $0 })
            let opt = try LBFGS(parameters: ps, maxIterations: 4, historySize: history) { try q.loss(ps) }
            var oracle = LBFGSOracle(f: q, historySize: history)
            for call in 0..<2 {
                try opt.step()
                oracle.step(&x)
                T.expectClose(try T.values(ps), [Array(x[0..<2]), Array(x[2...])], Tolerance(absolute: 1e-4, relative: 1e-4),
                              "L-BFGS history \(history), step() \(call + 1) on \(backend)")
            }
            #expect(opt.iterationCount == oracle.iterations && opt.evaluationCount == oracle.totalEvaluations,
                    "iterations \(opt.iterationCount) vs \(oracle.iterations), evaluations \(opt.evaluationCount) vs \(oracle.totalEvaluations)")
        }
    }

    @Test("L-BFGS with the strong Wolfe line search matches the Float64 oracle", arguments: TestBackend.all)
    func lbfgsStrongWolfeOracle(backend: TestBackend) throws {
        let b = backend.backend
        // A quartic term makes the cubic interpolation inexact, so the zoom phase runs; η = 30
        // overshoots and brackets at once, η = 0.05 extrapolates first.
        let q = Quadratic(n: 5, seed: 850, quartic: 0.5)
        for lr in [1.0, 0.05, 30] {
            let ps = try quadraticParameters(q, seed: 852, on: b)
            var x = try d(T.values(ps).flatMap { $0 })
            let opt = try LBFGS(parameters: ps, learningRate: lr, maxIterations: 3, lineSearch: .strongWolfe) { try q.loss(ps) }
            var oracle = LBFGSOracle(f: q, lr: lr, maxIterations: 3, strongWolfe: true)
            for call in 0..<2 {
                try opt.step()
                oracle.step(&x)
                T.expectClose(try T.values(ps), [Array(x[0..<2]), Array(x[2...])], Tolerance(absolute: 1e-4, relative: 1e-4),
                              "L-BFGS strong Wolfe η \(lr), step() \(call + 1) on \(backend)")
            }
            #expect(opt.iterationCount == oracle.iterations && opt.evaluationCount == oracle.totalEvaluations,
                    "iterations \(opt.iterationCount) vs \(oracle.iterations), evaluations \(opt.evaluationCount) vs \(oracle.totalEvaluations)")
        }
        // Rosenbrock's valley makes the zoom phase shrink brackets over several trials.
        let u = Parameter(try Tensor([-1.2], on: b)), v = Parameter(try Tensor([1], on: b))
        let opt = try LBFGS(parameters: [u, v], maxIterations: 6, lineSearch: .strongWolfe) { try Rosenbrock.loss(u, v) }
        var oracle = LBFGSOracle(f: Rosenbrock(), maxIterations: 6, strongWolfe: true)
        var x = [-1.2, 1.0]
        for call in 0..<2 {
            try opt.step()
            oracle.step(&x)
            T.expectClose([try u.value.scalars(), try v.value.scalars()], [[x[0]], [x[1]]], Tolerance(absolute: 1e-4, relative: 1e-3),
                          "L-BFGS strong Wolfe on Rosenbrock, step() \(call + 1) on \(backend)")
        }
        #expect(opt.evaluationCount == oracle.totalEvaluations, "evaluations \(opt.evaluationCount) vs \(oracle.totalEvaluations)")

        // A first trial 1000 times too long: the zoom's cubic steps land near the bracket ends and
        // its safeguards move them.
        let w = Parameter(try Tensor([0], on: b))
        let line = try LBFGS(parameters: [w], learningRate: 1000, maxIterations: 3, lineSearch: .strongWolfe) {
            try QuarticLine.loss(w)
        }
        var lineOracle = LBFGSOracle(f: QuarticLine(), lr: 1000, maxIterations: 3, strongWolfe: true)
        var y = [0.0]
        try line.step()
        lineOracle.step(&y)
        T.expectClose([try w.value.scalars()], [y], Tolerance(absolute: 1e-4, relative: 1e-3), "L-BFGS strong Wolfe, long first trial, on \(backend)")
        #expect(line.evaluationCount == lineOracle.totalEvaluations, "evaluations \(line.evaluationCount) vs \(lineOracle.totalEvaluations)")
    }

    @Test("L-BFGS with the strong Wolfe line search: the conditions hold, and it minimises Rosenbrock and an ill-conditioned quadratic",
          arguments: TestBackend.all)
    func lbfgsStrongWolfe(backend: TestBackend) throws {
        let b = backend.backend
        // One iteration from x0: d = −g0, and the accepted t satisfies the strong Wolfe conditions.
        let q = Quadratic(n: 5, seed: 900)
        let ps = try quadraticParameters(q, seed: 902, on: b)
        let x0 = try d(T.values(ps).flatMap { $0 })
        // η = 0.01 makes the first trial step far too short, so the search must extrapolate.
        let single = try LBFGS(parameters: ps, learningRate: 0.01, maxIterations: 1, lineSearch: .strongWolfe) { try q.loss(ps) }
        try single.step()
        let x1 = try d(T.values(ps).flatMap { $0 })
        let g0 = q.gradient(x0), direction = g0.map { -$0 }
        let t = zip(x1, x0).map { $0 - $1 }.enumerated().reduce(0.0) { $0 + $1.element * direction[$1.offset] }
            / direction.reduce(0) { $0 + $1 * $1 }
        let gtd = zip(g0, direction).reduce(0) { $0 + $1.0 * $1.1 }
        let gtdNew = zip(q.gradient(x1), direction).reduce(0) { $0 + $1.0 * $1.1 }
        #expect(t > 0)
        #expect(q.value(x1) <= q.value(x0) + 1e-4 * t * gtd + 1e-5, "sufficient decrease")
        #expect(Swift.abs(gtdNew) <= 0.9 * Swift.abs(gtd) + 1e-4, "curvature condition: \(gtdNew) vs \(gtd)")
        #expect(t > 0.02 * Swift.min(1, 1 / g0.map(Swift.abs).reduce(0, +)), "extrapolated beyond the first trial: t = \(t)")
        #expect(single.evaluationCount > 2, "the line search evaluated \(single.evaluationCount) times")

        // Rosenbrock from (−1.2, 1).
        let u = Parameter(try Tensor([-1.2], on: b)), v = Parameter(try Tensor([1], on: b))
        let rosenbrock = try LBFGS(parameters: [u, v], maxIterations: 100, lineSearch: .strongWolfe) {
            try Rosenbrock.loss(u, v)
        }
        for _ in 0..<3 { try rosenbrock.step() }
        let uv = try [u.value.item(), v.value.item()]
        #expect(Swift.abs(uv[0] - 1) < 5e-3 && Swift.abs(uv[1] - 1) < 1e-2, "Rosenbrock on \(backend): \(uv)")

        // A diagonal quadratic with condition number 1000.
        let ill = Quadratic(n: 6, seed: 910, diagonal: [1, 3, 10, 30, 100, 1000])
        let ips = try quadraticParameters(ill, seed: 912, on: b)
        let illOpt = try LBFGS(parameters: ips, maxIterations: 50, lineSearch: .strongWolfe) { try ill.loss(ips) }
        try illOpt.step()
        let want = ill.minimiser
        T.expectClose(try T.values(ips), [Array(want[0..<3]), Array(want[3...])], Tolerance(absolute: 1e-3, relative: 1e-3),
                      "ill-conditioned quadratic on \(backend)")
    }

    @Test("state round trips with both line searches", arguments: TestBackend.all)
    func roundTrip(backend: TestBackend) throws {
        let q = T.Quadratic(n: 5, seed: 1000)
        let x0 = testValues(5, seed: 1002, range: -3...3)
        let initial = [(shape: [2], values: Array(x0[0..<2])), (shape: [3], values: Array(x0[2...]))]
        for search in [LBFGS.LineSearch.none, .strongWolfe] {
            try T.expectRoundTrip(initial: initial, on: backend.backend, first: 1, second: 2, make: { ps in
                try LBFGS(parameters: ps, maxIterations: 2, historySize: 2, lineSearch: search) { try q.loss(ps) }
            }, advance: { opt, _ in try opt.step() })
        }
    }

    @Test("bad hyperparameters and states throw TensorError naming LBFGS")
    func errors() throws {
        let b = CPUBackend.shared
        let w = Parameter(try Tensor([1, 2, 3, 4], on: b))
        let other = Parameter(try Tensor.zeros([2], on: b))
        T.expectError("LBFGS", "maxIterations 0") { _ = try LBFGS(parameters: [w], maxIterations: 0) { try w.value.sum() } }
        T.expectError("LBFGS", "history 0") { _ = try LBFGS(parameters: [w], historySize: 0) { try w.value.sum() } }
        T.expectError("LBFGS", "NaN tolerance") { _ = try LBFGS(parameters: [w], toleranceGrad: .nan) { try w.value.sum() } }
        T.expectError("LBFGS", "repeated parameter") { _ = try LBFGS(parameters: [w, other, w]) { try w.value.sum() } }
        let lbfgs = try LBFGS(parameters: [w, other]) { try square(w.value).sum() + square(other.value).sum() }
        try lbfgs.step()
        var state = try lbfgs.stateDictionary()
        #expect(state.tensors["0.d"]?.shape == [6] && state.scalars["n_iter"] != nil)
        state.tensors["0.d"] = nil
        state.scalars["step"] = 9
        T.expectError("LBFGS", "missing direction") { try lbfgs.loadStateDictionary(state) }
        #expect(lbfgs.stepCount == 1)
        state = try lbfgs.stateDictionary()
        state.tensors["0.prev_flat_grad"] = try Tensor.zeros([5], on: b)
        T.expectError("LBFGS", "wrong gradient length") { try lbfgs.loadStateDictionary(state) }
    }
}
