import Foundation
import Kiln
import KilnTestSupport
import Testing

// K-FAC, natural gradient and Newton's method against Float64 oracles written from the
// published algorithms, on every backend; convergence checks, error cases and state round trips.

private typealias T = SecondOrderTesting
private func d(_ v: [Float]) -> [Double] { v.map(Double.init) }
private func sigmoid(_ x: Double) -> Double { 1 / (1 + Foundation.exp(-x)) }

// MARK: - K-FAC on a two-layer linear network

/// y1 = x·W1ᵀ + b1 (Linear 3 → 4), y2 = y1·W2ᵀ (Linear 4 → 2, no bias), L = ½Σ(y2 − t)²/N.
private struct KFACProblem {
    static let n = 6
    static func batch(_ step: Int) -> (x: [Float], t: [Float]) {
        (testValues(n * 3, seed: 300 + UInt64(step)), testValues(n * 2, seed: 400 + UInt64(step)))
    }

    /// The K-FAC oracle: returns W1, b1, W2 after `steps` steps.
    static func oracle(w1 initialW1: [Double], b1 initialB1: [Double], w2 initialW2: [Double], steps: Int, lr: Double,
                       damping: Double, decay: Double, traceNorm: Bool, frequency: Int) -> [[Double]] {
        var (w1, b1, w2) = (initialW1, initialB1, initialW2)
        var a1 = [Double](), g1f = [Double](), a2 = [Double](), g2f = [Double]()
        var inv: [[Double]] = [[], [], [], []]
        let n = Double(Self.n)
        for step in 0..<steps {
            let (xf, tf) = batch(step)
            let x = d(xf), t = d(tf)
            var y1 = T.multiply(x, T.transpose(w1, 4, 3), Self.n, 3, 4)
            for r in 0..<Self.n { for j in 0..<4 { y1[r * 4 + j] += b1[j] } }
            let y2 = T.multiply(y1, T.transpose(w2, 2, 4), Self.n, 4, 2)
            let g2 = zip(y2, t).map { ($0 - $1) / n }
            let gradW2 = T.multiply(T.transpose(g2, Self.n, 2), y1, 2, Self.n, 4)
            let g1 = T.multiply(g2, w2, Self.n, 2, 4)
            let gradW1 = T.multiply(T.transpose(g1, Self.n, 4), x, 4, Self.n, 3)
            let gradB1 = (0..<4).map { j in (0..<Self.n).reduce(0.0) { $0 + g1[$1 * 4 + j] } }
            var xBar = [Double]()
            for r in 0..<Self.n { xBar += Array(x[(r * 3)..<(r * 3 + 3)]) + [1] }
            let batchA1 = T.multiply(T.transpose(xBar, Self.n, 4), xBar, 4, Self.n, 4).map { $0 / n }
            let batchG1 = T.multiply(T.transpose(g1, Self.n, 4), g1, 4, Self.n, 4).map { $0 * n }
            let batchA2 = T.multiply(T.transpose(y1, Self.n, 4), y1, 4, Self.n, 4).map { $0 / n }
            let batchG2 = T.multiply(T.transpose(g2, Self.n, 2), g2, 2, Self.n, 2).map { $0 * n }
            let rho = Swift.min(1 - 1 / Double(step + 1), decay)
            func average(_ old: [Double], _ new: [Double]) -> [Double] {
                old.isEmpty ? new : zip(old, new).map { rho * $0 + (1 - rho) * $1 }
            }
            (a1, g1f, a2, g2f) = (average(a1, batchA1), average(g1f, batchG1), average(a2, batchA2), average(g2f, batchG2))
            if step % frequency == 0 {
                func damped(_ a: [Double], _ g: [Double], _ na: Int, _ ng: Int) -> ([Double], [Double]) {
                    let ta = (0..<na).reduce(0.0) { $0 + a[$1 * na + $1] } / Double(na)
                    let tg = (0..<ng).reduce(0.0) { $0 + g[$1 * ng + $1] } / Double(ng)
                    let pi = traceNorm ? (ta / tg).squareRoot() : 1
                    let s = damping.squareRoot()
                    return (T.inverse(zip(a, T.identity(na)).map { $0 + pi * s * $1 }, na),
                            T.inverse(zip(g, T.identity(ng)).map { $0 + s / pi * $1 }, ng))
                }
                (inv[0], inv[1]) = damped(a1, g1f, 4, 4)
                (inv[2], inv[3]) = damped(a2, g2f, 4, 2)
            }
            var grad1 = [Double]()
            for i in 0..<4 { grad1 += Array(gradW1[(i * 3)..<(i * 3 + 3)]) + [gradB1[i]] }
            let delta1 = T.multiply(T.multiply(inv[1], grad1, 4, 4, 4), inv[0], 4, 4, 4)
            let delta2 = T.multiply(T.multiply(inv[3], gradW2, 2, 2, 4), inv[2], 2, 4, 4)
            for i in 0..<4 {
                for j in 0..<3 { w1[i * 3 + j] -= lr * delta1[i * 4 + j] }
                b1[i] -= lr * delta1[i * 4 + 3]
            }
            for i in w2.indices { w2[i] -= lr * delta2[i] }
        }
        return [w1, b1, w2]
    }

    /// One K-FAC step on batch `step`.
    static func kilnStep(_ kfac: KFAC, _ l1: Linear, _ l2: Linear, step: Int, on b: any Backend) throws {
        let (xf, tf) = batch(step)
        let x = try Tensor(xf, shape: [n, 3], on: b), t = try Tensor(tf, shape: [n, 2], on: b)
        kfac.zeroGradients()
        let y1 = try kfac.forward(l1, x)
        let y2 = try kfac.forward(l2, y1)
        let loss: Tensor = try square(y2 - t).sum() * Float(0.5 / Double(n))
        try loss.backward()
        try kfac.step()
    }
}

// MARK: - Logistic regression for the natural gradient and Newton

private struct Logistic {
    static let n = 8
    static let x = testValues(n * 3, seed: 500)
    static let y: [Float] = testValues(n, seed: 501).map { $0 >= 0 ? 1 : -1 }
    static let ridge = 0.1

    /// Per-sample loss softplus(−yₙ(xₙ·w + b)) (+ ½ridge‖w‖² when `regularised`).
    static func sampleLoss(_ w: Parameter, _ b: Parameter, _ i: Int, on backend: any Backend, regularised: Bool) throws -> Tensor {
        let xi = try Tensor(Array(x[(i * 3)..<(i * 3 + 3)]), shape: [1, 3], on: backend)
        let z: Tensor = try matmul(xi, w.value) + b.value
        var l: Tensor = try softplus(z * (-y[i])).sum()
        if regularised { l = try l + square(w.value).sum() * Float(0.5 * ridge) }
        return l
    }

    static func loss(_ w: Parameter, _ b: Parameter, on backend: any Backend, regularised: Bool) throws -> Tensor {
        let xs = try Tensor(x, shape: [n, 3], on: backend), ys = try Tensor(y, shape: [n], on: backend)
        let z: Tensor = try matmul(xs, w.value) + b.value
        var l: Tensor = try softplus(-(ys * z)).mean()
        if regularised { l = try l + square(w.value).sum() * Float(0.5 * ridge) }
        return l
    }

    /// Per-sample gradients sₙ of softplus(−yₙzₙ) w.r.t. (w, b).
    static func scores(_ theta: [Double]) -> [[Double]] {
        (0..<n).map { i in
            let xi = d(Array(x[(i * 3)..<(i * 3 + 3)])), yi = Double(y[i])
            let z = xi[0] * theta[0] + xi[1] * theta[1] + xi[2] * theta[2] + theta[3]
            let c = -yi * sigmoid(-yi * z)
            return xi.map { c * $0 } + [c]
        }
    }

    static func gradient(_ theta: [Double], regularised: Bool) -> [Double] {
        let s = scores(theta)
        return (0..<4).map { j in
            s.reduce(0.0) { $0 + $1[j] } / Double(n) + (regularised && j < 3 ? ridge * theta[j] : 0)
        }
    }

    /// The exact Hessian of the regularised mean loss.
    static func hessian(_ theta: [Double]) -> [Double] {
        var h = [Double](repeating: 0, count: 16)
        for i in 0..<n {
            let xi = d(Array(x[(i * 3)..<(i * 3 + 3)])) + [1]
            let z = xi[0] * theta[0] + xi[1] * theta[1] + xi[2] * theta[2] + theta[3]
            let s = sigmoid(z), w = s * (1 - s) / Double(n)
            for a in 0..<4 { for c in 0..<4 { h[a * 4 + c] += w * xi[a] * xi[c] } }
        }
        for j in 0..<3 { h[j * 4 + j] += ridge }
        return h
    }

    static let initial: [Float] = [0.3, -0.2, 0.5, 0.1]
    static func parameters(on b: any Backend) throws -> (Parameter, Parameter) {
        (Parameter(try Tensor(Array(initial[0..<3]), shape: [3], on: b)), Parameter(try Tensor(scalar: initial[3], on: b)))
    }
}

private typealias Quadratic = SecondOrderTesting.Quadratic
private func quadraticParameters(_ q: Quadratic, seed: UInt64, on b: any Backend) throws -> [Parameter] {
    try T.quadraticParameters(q, seed: seed, on: b)
}

// MARK: - Tests

@Suite("Second-order optimizers: K-FAC, natural gradient, Newton")
struct OptimizerCurvatureTests {
    @Test("K-FAC matches the Float64 oracle on a two-layer linear network", arguments: TestBackend.all)
    func kfac(backend: TestBackend) throws {
        #expect(TestBackend.openCLProblem == nil, "\(TestBackend.openCLProblem ?? "")")
        let b = backend.backend
        let configurations: [(String, Double, Bool, Int)] = [("π split, decay 0.5", 0.5, true, 1),
                                                             ("even split, decay 0.95, inverses every 2", 0.95, false, 2)]
        for (name, decay, traceNorm, frequency) in configurations {
            let l1 = try Linear(inputSize: 3, outputSize: 4, seed: 1, on: b)
            let l2 = try Linear(inputSize: 4, outputSize: 2, bias: false, seed: 2, on: b)
            let start = try [l1.weight, l1.bias!, l2.weight].map { d(try $0.value.scalars()) }
            let kfac = try KFAC(layers: [l1, l2], learningRate: 0.5, damping: 1e-2, statisticsDecay: decay,
                                dampingSplit: traceNorm ? .traceNorm : .even, inverseUpdateFrequency: frequency)
            #expect(kfac.parameters.count == 3)
            for step in 0..<3 { try KFACProblem.kilnStep(kfac, l1, l2, step: step, on: b) }
            let want = KFACProblem.oracle(w1: start[0], b1: start[1], w2: start[2], steps: 3, lr: 0.5, damping: 1e-2,
                                          decay: decay, traceNorm: traceNorm, frequency: frequency)
            T.expectClose(try T.values(kfac.parameters), want, Tolerance(absolute: 1e-4, relative: 1e-3), "K-FAC \(name) on \(backend)")
        }
    }

    @Test("K-FAC equals the exact natural-gradient step when the statistics factor exactly", arguments: TestBackend.all)
    func kfacIsNaturalGradient(backend: TestBackend) throws {
        // Inputs {xᵢ} × output gradients {cⱼ}, all pairs, with L = mean cₙ·yₙ: the empirical Fisher of
        // the per-example gradients vec(cₙāₙᵀ) is exactly A ⊗ G, so undamped K-FAC is F⁻¹∇L.
        let b = backend.backend
        let xs = testValues(4 * 2, seed: 600), cs = testValues(3 * 2, seed: 601)
        var rows: [Float] = [], grads: [Float] = []
        for i in 0..<4 { for j in 0..<3 { rows += xs[(i * 2)..<(i * 2 + 2)]; grads += cs[(j * 2)..<(j * 2 + 2)] } }
        let n = 12
        let x = try Tensor(rows, shape: [n, 2], on: b), c = try Tensor(grads, shape: [n, 2], on: b)

        let layer = try Linear(inputSize: 2, outputSize: 2, seed: 3, on: b)
        let start = try [layer.weight, layer.bias!].map { try $0.value.scalars() }
        let kfac = try KFAC(layers: [layer], learningRate: 1, damping: 0)
        let y = try kfac.forward(layer, x)
        let loss: Tensor = try (y * c).sum() * Float(1.0 / Double(n))
        try loss.backward()
        try kfac.step()

        let other = try Linear(inputSize: 2, outputSize: 2, seed: 3, on: b)
        let natural = try NaturalGradient(parameters: [other.weight, other.bias!], learningRate: 1, damping: 0) {
            try NaturalGradient.perSampleGradients(of: [other.weight, other.bias!], sampleCount: n) { k in
                try (other(x.sliced(axis: 0, start: k, end: k + 1)) * c.sliced(axis: 0, start: k, end: k + 1)).sum()
            }
        }
        let full: Tensor = try (other(x) * c).sum() * Float(1.0 / Double(n))
        try full.backward()
        try natural.step()

        // Float64: F = (1/N)Σ sₙsₙᵀ over θ = (W row-major, b), sₙ = (cₙ ⊗ [xₙ, 1]) reordered.
        var fisher = [Double](repeating: 0, count: 36), gradient = [Double](repeating: 0, count: 6)
        for k in 0..<n {
            let xk = d(Array(rows[(k * 2)..<(k * 2 + 2)])), ck = d(Array(grads[(k * 2)..<(k * 2 + 2)]))
            let s = [ck[0] * xk[0], ck[0] * xk[1], ck[1] * xk[0], ck[1] * xk[1], ck[0], ck[1]]
            for i in 0..<6 {
                gradient[i] += s[i] / Double(n)
                for j in 0..<6 { fisher[i * 6 + j] += s[i] * s[j] / Double(n) }
            }
        }
        let step = T.solve(fisher, gradient)
        let theta = d(start[0] + start[1])
        let want = [Array(zip(theta[0..<4], step[0..<4]).map { $0 - $1 }), Array(zip(theta[4...], step[4...]).map { $0 - $1 })]
        let tolerance = Tolerance(absolute: 2e-4, relative: 1e-3)
        T.expectClose(try T.values(kfac.parameters), want, tolerance, "K-FAC vs F⁻¹∇L on \(backend)")
        T.expectClose(try T.values(natural.parameters), want, tolerance, "natural gradient vs F⁻¹∇L on \(backend)")
    }

    @Test("natural gradient matches the Float64 oracle on logistic regression", arguments: TestBackend.all)
    func naturalGradient(backend: TestBackend) throws {
        let b = backend.backend
        let (w, bias) = try Logistic.parameters(on: b)
        let opt = try NaturalGradient(parameters: [w, bias], learningRate: 0.5, damping: 1e-3) {
            try NaturalGradient.perSampleGradients(of: [w, bias], sampleCount: Logistic.n) {
                try Logistic.sampleLoss(w, bias, $0, on: b, regularised: false)
            }
        }
        var theta = d(Logistic.initial)
        for _ in 0..<3 {
            opt.zeroGradients()
            try Logistic.loss(w, bias, on: b, regularised: false).backward()
            let gradientBefore = try w.gradient!.scalars()
            try opt.step()
            #expect(try w.gradient!.scalars() == gradientBefore, "the accumulated gradient is kept")
            let s = Logistic.scores(theta)
            var f = T.identity(4).map { $0 * 1e-3 }
            for sn in s { for i in 0..<4 { for j in 0..<4 { f[i * 4 + j] += sn[i] * sn[j] / Double(Logistic.n) } } }
            let step = T.solve(f, Logistic.gradient(theta, regularised: false))
            theta = zip(theta, step).map { $0 - 0.5 * $1 }
        }
        T.expectClose(try T.values(opt.parameters), [Array(theta[0..<3]), [theta[3]]], Tolerance(absolute: 1e-4, relative: 1e-3),
                      "natural gradient on \(backend)")
    }

    @Test("Newton's method matches the Float64 oracle (finite-difference and supplied Hessians)", arguments: TestBackend.all)
    func newton(backend: TestBackend) throws {
        let b = backend.backend
        for supplied in [false, true] {
            let (w, bias) = try Logistic.parameters(on: b)
            let hessian: (() throws -> Tensor)? = supplied ? {
                let theta = try d(w.value.scalars() + bias.value.scalars())
                return try Tensor(Logistic.hessian(theta).map(Float.init), shape: [4, 4], on: b)
            } : nil
            let opt = try NewtonMethod(parameters: [w, bias], learningRate: 0.8, damping: 1e-2, hessian: hessian) {
                try Logistic.loss(w, bias, on: b, regularised: true)
            }
            var theta = d(Logistic.initial)
            for _ in 0..<3 {
                try opt.step()
                var h = Logistic.hessian(theta)
                for i in 0..<4 { h[i * 4 + i] += 1e-2 }
                let step = T.solve(h, Logistic.gradient(theta, regularised: true))
                theta = zip(theta, step).map { $0 - 0.8 * $1 }
            }
            let tolerance = supplied ? Tolerance(absolute: 2e-5, relative: 1e-4) : Tolerance(absolute: 2e-4, relative: 2e-3)
            T.expectClose(try T.values(opt.parameters), [Array(theta[0..<3]), [theta[3]]], tolerance,
                          "Newton (\(supplied ? "supplied" : "finite-difference") Hessian) on \(backend)")
            #expect(opt.lastLoss != nil && opt.stepCount == 3)
        }
    }

    @Test("Newton's method solves a quadratic in one step; an indefinite Hessian throws or gets Levenberg damping",
          arguments: TestBackend.all)
    func newtonQuadratic(backend: TestBackend) throws {
        let b = backend.backend
        let q = Quadratic(n: 5, seed: 700)
        let ps = try quadraticParameters(q, seed: 702, on: b)
        let opt = try NewtonMethod(parameters: ps) { try q.loss(ps) }
        try opt.step()
        let want = q.minimiser
        T.expectClose(try T.values(ps), [Array(want[0..<2]), Array(want[2...])], Tolerance(absolute: 1e-3, relative: 1e-3),
                      "Newton on a quadratic on \(backend)")

        let saddle = Parameter(try Tensor([0.5, 0.5], on: b))
        let loss = { () throws -> Tensor in
            let sq: Tensor = try square(saddle.value) * Tensor([1, -1], on: b)
            return try sq.sum()
        }
        let strict = try NewtonMethod(parameters: [saddle], closure: loss)
        T.expectError("NewtonMethod", "indefinite Hessian") { try strict.step() }
        #expect(try saddle.value.scalars() == [0.5, 0.5], "a failed step leaves the parameters")
        let levenberg = try NewtonMethod(parameters: [saddle], levenbergFallback: true, closure: loss)
        try levenberg.step()
        #expect((levenberg.lastDamping ?? 0) > 2, "damping \(levenberg.lastDamping ?? 0) must exceed the negative curvature 2")
        let v = try saddle.value.scalars()
        #expect(v[0] < 0.5 && v[1] > 0.5, "the damped step descends: \(v)")
    }

    @Test("state round trips: K-FAC, natural gradient and Newton", arguments: TestBackend.all)
    func roundTrip(backend: TestBackend) throws {
        let b = backend.backend
        // K-FAC: two networks from the same seeds.
        func network() throws -> (Linear, Linear, KFAC) {
            let l1 = try Linear(inputSize: 3, outputSize: 4, seed: 1, on: b)
            let l2 = try Linear(inputSize: 4, outputSize: 2, bias: false, seed: 2, on: b)
            return (l1, l2, try KFAC(layers: [l1, l2], learningRate: 0.3, damping: 1e-2, inverseUpdateFrequency: 2))
        }
        let (a1, a2, reference) = try network()
        let (b1, b2, resumed) = try network()
        for step in 0..<2 { try KFACProblem.kilnStep(reference, a1, a2, step: step, on: b) }
        for (p, r) in zip(resumed.parameters, reference.parameters) { try p.assign(try r.value.cloned()) }
        try resumed.loadStateDictionary(try reference.stateDictionary())
        for step in 2..<5 {
            try KFACProblem.kilnStep(reference, a1, a2, step: step, on: b)
            try KFACProblem.kilnStep(resumed, b1, b2, step: step, on: b)
        }
        #expect(try T.values(reference.parameters) == T.values(resumed.parameters), "K-FAC resumed run differs on \(backend)")

        let q = Quadratic(n: 5, seed: 1000)
        let x0 = testValues(5, seed: 1002, range: -3...3)
        let initial = [(shape: [2], values: Array(x0[0..<2])), (shape: [3], values: Array(x0[2...]))]
        try T.expectRoundTrip(initial: initial, on: b, first: 2, second: 1, make: { ps in
            try NewtonMethod(parameters: ps, learningRate: 0.5) { try q.loss(ps) }
        }, advance: { opt, _ in try opt.step() })
        try T.expectRoundTrip(initial: initial, on: b, first: 2, second: 1, make: { ps in
            try NaturalGradient(parameters: ps, learningRate: 0.1, damping: 0.1) {
                try NaturalGradient.perSampleGradients(of: ps, sampleCount: 3) { k in try q.loss(ps) * Float(k + 1) }
            }
        }, advance: { opt, _ in
            opt.zeroGradients()
            try q.loss(opt.parameters).backward()
            try opt.step()
        })
    }

    @Test("bad hyperparameters, calls and states throw TensorError naming the optimizer")
    func errors() throws {
        let b = CPUBackend.shared
        let l1 = try Linear(inputSize: 3, outputSize: 4, seed: 1, on: b)
        let l2 = try Linear(inputSize: 4, outputSize: 2, seed: 2, on: b)
        T.expectError("KFAC", "no layers") { _ = try KFAC(layers: []) }
        T.expectError("KFAC", "repeated layer") { _ = try KFAC(layers: [l1, l1]) }
        T.expectError("KFAC", "negative damping") { _ = try KFAC(layers: [l1], damping: -1) }
        T.expectError("KFAC", "decay 1") { _ = try KFAC(layers: [l1], statisticsDecay: 1) }
        T.expectError("KFAC", "inverse frequency 0") { _ = try KFAC(layers: [l1], inverseUpdateFrequency: 0) }
        let kfac = try KFAC(layers: [l1])
        let x = try Tensor(testValues(6, seed: 1), shape: [2, 3], on: b)
        T.expectError("KFAC", "unregistered layer") { _ = try kfac.forward(l2, try l1(x)) }
        _ = try kfac.forward(l1, x)
        T.expectError("KFAC", "forward without backward") { try kfac.step() }
        kfac.discardCapturedStatistics()
        try l1(x).sum().backward()
        T.expectError("KFAC", "gradients but no statistics") { try kfac.step() }
        #expect(kfac.stepCount == 0)
        let singular = try KFAC(layers: [l1], damping: 0)
        l1.zeroGradients()
        try singular.forward(l1, x).sum().backward()
        T.expectError("KFAC", "singular factor without damping") { try singular.step() }
        #expect(singular.stepCount == 0)

        let w = Parameter(try Tensor([1, 2, 3, 4], on: b))
        T.expectError("NaturalGradient", "negative damping") {
            _ = try NaturalGradient(parameters: [w], damping: -1) { try Tensor.zeros([1, 4], on: b) }
        }
        let badShape = try NaturalGradient(parameters: [w]) { try Tensor.zeros([2, 3], on: b) }
        T.expectError("NaturalGradient", "wrong score shape") { try badShape.step() }
        let rankOne = try NaturalGradient(parameters: [w], damping: 0) { try Tensor([1, 0, 0, 0], shape: [1, 4], on: b) }
        T.expectError("NaturalGradient", "singular Fisher") { try rankOne.step() }
        T.expectError("NaturalGradient", "sample count 0") {
            _ = try NaturalGradient.perSampleGradients(of: [w], sampleCount: 0) { _ in try w.value.sum() }
        }

        T.expectError("NewtonMethod", "zero FD step") {
            _ = try NewtonMethod(parameters: [w], finiteDifferenceStep: 0) { try w.value.sum() }
        }
        let vectorLoss = try NewtonMethod(parameters: [w]) { w.value }
        T.expectError("NewtonMethod", "non-scalar loss") { try vectorLoss.step() }
        let constant = try NewtonMethod(parameters: [w]) { try Tensor(scalar: 1, on: b) }
        T.expectError("NewtonMethod", "loss independent of the parameters") { try constant.step() }
        let badHessian = try NewtonMethod(parameters: [w], hessian: { try Tensor.eye(3, on: b) }) { try square(w.value).sum() }
        T.expectError("NewtonMethod", "wrong Hessian shape") { try badHessian.step() }
    }
}
