import Foundation
import Kiln
import KilnTestSupport
import Testing

// Adafactor, Apollo and Shampoo against Float64 oracles written from the published algorithms
// (scalar loops), on every backend; plus a convergence check, error cases and state round trips.

private typealias T = SecondOrderTesting

/// A matrix, a rank-3 tensor (factored over its last two dimensions with a batch dimension),
/// a vector and a scalar.
private let shapes: [[Int]] = [[3, 4], [2, 3, 2], [5], []]
private func initialValues() -> [[Float]] {
    shapes.enumerated().map { testValues($1.reduce(1, *), seed: 10 + UInt64($0), range: -1...1) }
}
/// gradients[step][parameter]
private func gradientSequence(steps: Int, scale: Double = 1) -> [[[Float]]] {
    (0..<steps).map { t in
        shapes.enumerated().map { testValues($1.reduce(1, *), seed: 100 + UInt64(10 * t + $0), range: -scale...scale) }
    }
}
private func doubles(_ v: [[Float]]) -> [[Double]] { v.map { $0.map(Double.init) } }
private func d(_ v: [Float]) -> [Double] { v.map(Double.init) }

// MARK: - Oracles

/// Adafactor as PyTorch's `_single_tensor_adafactor`, in Float64.
private struct AdafactorOracle {
    var lr = 1e-2, decay = -0.8, eps1 = Double(Float.ulpOfOne), eps2 = 1e-3, d = 1.0, weightDecay = 0.0, maximize = false

    func run(_ initial: [[Double]], _ gradients: [[[Double]]]) -> [[Double]] {
        var theta = initial
        var row: [[Double]] = shapes.map { s in [Double](repeating: 0, count: s.count >= 2 ? s.reduce(1, *) / s.last! : 0) }
        var col: [[Double]] = shapes.map { s in [Double](repeating: 0, count: s.count >= 2 ? s.reduce(1, *) / s[s.count - 2] : 0) }
        var v: [[Double]] = shapes.map { [Double](repeating: 0, count: $0.reduce(1, *)) }
        for (step, gs) in gradients.enumerated() {
            let t = Double(step + 1)
            let w = Foundation.pow(t, decay)
            let rho = Swift.min(lr, 1 / t.squareRoot())
            for k in shapes.indices {
                let s = shapes[k], n = theta[k].count
                let g = maximize ? gs[k].map { -$0 } : gs[k]
                let rms = (theta[k].reduce(0) { $0 + $1 * $1 } / Double(n)).squareRoot()
                let alpha = Swift.max(eps2, rms) * rho
                if weightDecay != 0 { theta[k] = theta[k].map { $0 * (1 - lr * weightDecay) } }
                var vhat = [Double](repeating: 0, count: n)
                if s.count >= 2 {
                    let r = s[s.count - 2], c = s[s.count - 1], batches = n / (r * c)
                    for b in 0..<batches {
                        for i in 0..<r {
                            var m = 0.0
                            for j in 0..<c { m += g[(b * r + i) * c + j] * g[(b * r + i) * c + j] }
                            row[k][b * r + i] += w * (m / Double(c) - row[k][b * r + i])
                        }
                        for j in 0..<c {
                            var m = 0.0
                            for i in 0..<r { m += g[(b * r + i) * c + j] * g[(b * r + i) * c + j] }
                            col[k][b * c + j] += w * (m / Double(r) - col[k][b * c + j])
                        }
                        var rowMean = 0.0
                        for i in 0..<r { rowMean += row[k][b * r + i] / Double(r) }
                        for i in 0..<r {
                            for j in 0..<c { vhat[(b * r + i) * c + j] = row[k][b * r + i] * col[k][b * c + j] / Swift.max(rowMean, eps1) }
                        }
                    }
                } else {
                    for i in 0..<n { v[k][i] += w * (g[i] * g[i] - v[k][i]) }
                    vhat = v[k]
                }
                let u = (0..<n).map { g[$0] / Swift.max(vhat[$0], eps1 * eps1).squareRoot() }
                let rmsU = (u.reduce(0) { $0 + $1 * $1 } / Double(n)).squareRoot()
                let scale = alpha / Swift.max(1, rmsU / d)
                for i in 0..<n { theta[k][i] -= scale * u[i] }
            }
        }
        return theta
    }
}

/// Apollo as the author's code, written with the secant update in its unnormalised form
/// B −= (dᵀΔm + dᵀBd)/(‖d‖₄ + ε')⁴ · d².
private struct ApolloOracle {
    enum Rebound { case constant(Double), belief }
    enum Decay { case l2, decoupled, stable }
    var lr = 1e-2, beta = 0.9, eps = 1e-4, rebound = Rebound.constant(0.01), warmup = 0, initialLR = 1e-2
    var weightDecay = 0.0, decay = Decay.l2

    func run(_ initial: [[Double]], steps: Int, gradient: ([[Double]]) -> [[Double]]) -> [[Double]] {
        var theta = initial
        var m = initial.map { [Double](repeating: 0, count: $0.count) }
        var hessian = m, d = m
        for step in 0..<steps {
            let gs = gradient(theta)
            let lrNow = step < warmup ? initialLR + (lr - initialLR) * Double(step) / Double(warmup) : lr
            let t = Double(step + 1)
            let alpha = (1 - beta) / (1 - Foundation.pow(beta, t))
            for k in theta.indices {
                let n = theta[k].count
                var g = gs[k]
                if decay == .l2 { for i in 0..<n { g[i] += weightDecay * theta[k][i] } }
                let deltaG = (0..<n).map { g[$0] - m[k][$0] }
                let (bound, epsPrime): (Double, Double)
                switch rebound {
                case .constant(let s): (bound, epsPrime) = (s, eps / s)
                case .belief: (bound, epsPrime) = (deltaG.map(Swift.abs).max()!, eps)
                }
                let deltaM = deltaG.map { alpha * $0 }
                for i in 0..<n { m[k][i] += deltaM[i] }
                let norm4 = Foundation.pow(d[k].reduce(0) { $0 + $1 * $1 * $1 * $1 }, 0.25)
                let kappa4 = Foundation.pow(norm4 + epsPrime, 4)
                var dTdm = 0.0, dTBd = 0.0
                for i in 0..<n { dTdm += d[k][i] * deltaM[i]; dTBd += d[k][i] * hessian[k][i] * d[k][i] }
                for i in 0..<n { hessian[k][i] -= (dTdm + dTBd) / kappa4 * d[k][i] * d[k][i] }
                var denominator = hessian[k].map { Swift.max(Swift.abs($0), bound) }
                if case .belief = rebound { denominator = denominator.map { $0 + eps / alpha } }
                for i in 0..<n { d[k][i] = m[k][i] / denominator[i] }
                if decay != .l2 && weightDecay != 0 {
                    let lambda = decay == .stable ? weightDecay / (denominator.reduce(0, +) / Double(n)) : weightDecay
                    for i in 0..<n { d[k][i] += lambda * theta[k][i] }
                }
                for i in 0..<n { theta[k][i] -= lrNow * d[k][i] }
            }
        }
        return theta
    }
}

/// Shampoo (Gupta et al. 2018, Algorithm 1) with inverse fourth roots by Denman–Beavers.
private struct ShampooOracle {
    var lr = 0.1, eps = 1e-4, frequency = 1, weightDecay = 0.0, maxDimension = 1024

    func run(_ initial: [[Double]], _ gradients: [[[Double]]]) -> [[Double]] {
        var theta = initial
        var left: [[Double]] = [], right: [[Double]] = [], leftRoot: [[Double]] = [], rightRoot: [[Double]] = []
        var h: [[Double]] = []
        for s in shapes {
            var (m, n) = s.count >= 2 ? (s[0], s.dropFirst().reduce(1, *)) : (0, 0)
            if m > maxDimension || n > maxDimension { (m, n) = (0, 0) }
            left.append(T.identity(m).map { $0 * eps })
            right.append(T.identity(n).map { $0 * eps })
            leftRoot.append([]); rightRoot.append([])
            h.append([Double](repeating: eps, count: s.reduce(1, *)))
        }
        for (step, gs) in gradients.enumerated() {
            for k in shapes.indices {
                let s = shapes[k]
                let g = zip(gs[k], theta[k]).map { $0 + weightDecay * $1 }
                if s.count >= 2 && s[0] <= maxDimension && g.count / s[0] <= maxDimension {
                    let m = s[0], n = g.count / m
                    let gt = T.transpose(g, m, n)
                    left[k] = zip(left[k], T.multiply(g, gt, m, n, m)).map(+)
                    right[k] = zip(right[k], T.multiply(gt, g, n, m, n)).map(+)
                    if step % frequency == 0 {
                        leftRoot[k] = T.inverseFourthRoot(left[k], m)
                        rightRoot[k] = T.inverseFourthRoot(right[k], n)
                    }
                    let update = T.multiply(T.multiply(leftRoot[k], g, m, m, n), rightRoot[k], m, n, n)
                    for i in update.indices { theta[k][i] -= lr * update[i] }
                } else {
                    for i in g.indices {
                        h[k][i] += g[i] * g[i]
                        theta[k][i] -= lr * g[i] / h[k][i].squareRoot()
                    }
                }
            }
        }
        return theta
    }
}

// MARK: - Tests

@Suite("Second-order optimizers: Adafactor, Apollo, Shampoo")
struct OptimizerSecondOrderTests {
    @Test("Adafactor matches the Float64 oracle (PyTorch parameterisation)", arguments: TestBackend.all)
    func adafactor(backend: TestBackend) throws {
        #expect(TestBackend.openCLProblem == nil, "\(TestBackend.openCLProblem ?? "")")
        let grads = gradientSequence(steps: 4)
        let configurations: [(String, AdafactorOracle, ([Parameter]) throws -> Adafactor)] = [
            ("defaults", AdafactorOracle(), { try Adafactor(parameters: $0) }),
            ("lr 0.8 (ρₜ = 1/√t from t = 2), λ 0.1, d 0.5, ε₁ 1e-3, maximize",
             AdafactorOracle(lr: 0.8, eps1: 1e-3, d: 0.5, weightDecay: 0.1, maximize: true),
             { try Adafactor(parameters: $0, learningRate: 0.8, epsilon1: 1e-3, clipThreshold: 0.5, weightDecay: 0.1,
                             maximize: true) }),
            ("β̂₂ decay −0.5, ε₂ 0.5", AdafactorOracle(decay: -0.5, eps2: 0.5),
             { try Adafactor(parameters: $0, beta2Decay: -0.5, epsilon2: 0.5) }),
        ]
        for (name, oracle, make) in configurations {
            let opt = try make(try T.parameters(shapes, initialValues(), on: backend.backend))
            try T.run(opt, gradients: grads)
            let want = oracle.run(doubles(initialValues()), grads.map(doubles))
            T.expectClose(try T.values(opt.parameters), want, Tolerance(absolute: 1e-5, relative: 1e-4),
                          "Adafactor \(name) on \(backend)")
            #expect(opt.stepCount == 4)
        }
    }

    @Test("Apollo matches the Float64 oracle (official code) on a diagonal quadratic", arguments: TestBackend.all)
    func apollo(backend: TestBackend) throws {
        // g = h ⊙ θ − c with curvatures h ∈ [0.5, 4]: B grows past the rebound bound, so the
        // secant update decides the steps.
        let h = shapes.enumerated().map { d(testValues($1.reduce(1, *), seed: 50 + UInt64($0), range: 0.5...4)) }
        let c = shapes.enumerated().map { d(testValues($1.reduce(1, *), seed: 60 + UInt64($0))) }
        func gradient(_ theta: [[Double]]) -> [[Double]] {
            theta.indices.map { k in theta[k].indices.map { h[k][$0] * theta[k][$0] - c[k][$0] } }
        }
        let configurations: [(String, ApolloOracle, ([Parameter]) throws -> Apollo)] = [
            ("defaults", ApolloOracle(), { try Apollo(parameters: $0) }),
            ("lr 0.5, σ 0.5, L2 0.01, warmup 3",
             ApolloOracle(lr: 0.5, rebound: .constant(0.5), warmup: 3, initialLR: 0.01, weightDecay: 0.01),
             { try Apollo(parameters: $0, learningRate: 0.5, rebound: .constant(0.5), warmup: 3, initialLearningRate: 0.01,
                          weightDecay: 0.01) }),
            ("lr 0.3, ε 0.1, belief, decoupled 0.01",
             ApolloOracle(lr: 0.3, eps: 0.1, rebound: .belief, weightDecay: 0.01, decay: .decoupled),
             { try Apollo(parameters: $0, learningRate: 0.3, epsilon: 0.1, rebound: .belief, weightDecay: 0.01) }),
            ("lr 0.2, stable decay 0.1, β 0.5", ApolloOracle(lr: 0.2, beta: 0.5, weightDecay: 0.1, decay: .stable),
             { try Apollo(parameters: $0, learningRate: 0.2, beta: 0.5, weightDecay: 0.1, weightDecayMode: .stable) }),
        ]
        for (name, oracle, make) in configurations {
            let opt = try make(try T.parameters(shapes, initialValues(), on: backend.backend))
            for _ in 0..<6 {
                let g = gradient(doubles(try T.values(opt.parameters)))
                try T.run(opt, gradients: [g.map { $0.map(Float.init) }])
            }
            let want = oracle.run(doubles(initialValues()), steps: 6, gradient: gradient)
            T.expectClose(try T.values(opt.parameters), want, Tolerance(absolute: 1e-4, relative: 1e-3),
                          "Apollo \(name) on \(backend)")
        }
    }

    @Test("Shampoo matches the Float64 oracle (inverse fourth roots by Denman–Beavers)", arguments: TestBackend.all)
    func shampoo(backend: TestBackend) throws {
        let grads = gradientSequence(steps: 4)
        let configurations: [(String, ShampooOracle, ([Parameter]) throws -> Shampoo)] = [
            ("ε 1e-2", ShampooOracle(eps: 1e-2), { try Shampoo(parameters: $0, epsilon: 1e-2) }),
            ("ε 0.1, roots every 2 steps, λ 0.1", ShampooOracle(lr: 0.05, eps: 0.1, frequency: 2, weightDecay: 0.1),
             { try Shampoo(parameters: $0, learningRate: 0.05, epsilon: 0.1, updateFrequency: 2, weightDecay: 0.1) }),
            ("sides above 5 use the diagonal form", ShampooOracle(eps: 1e-2, maxDimension: 5),
             { try Shampoo(parameters: $0, epsilon: 1e-2, maxPreconditionerDimension: 5) }),
        ]
        for (name, oracle, make) in configurations {
            let opt = try make(try T.parameters(shapes, initialValues(), on: backend.backend))
            try T.run(opt, gradients: grads)
            let want = oracle.run(doubles(initialValues()), grads.map(doubles))
            T.expectClose(try T.values(opt.parameters), want, Tolerance(absolute: 1e-4, relative: 1e-3),
                          "Shampoo \(name) on \(backend)")
        }
    }

    @Test("Adafactor, Apollo and Shampoo reduce a least-squares loss", arguments: TestBackend.all)
    func convergence(backend: TestBackend) throws {
        // L = ½‖W·X − Y‖²/N for W [3, 4] and a vector bias-like parameter, gradients by autograd.
        let b = backend.backend
        let x = try Tensor(testValues(4 * 8, seed: 7), shape: [4, 8], on: b)
        let y = try Tensor(testValues(3 * 8, seed: 8), shape: [3, 8], on: b)
        func loss(_ w: Parameter, _ v: Parameter) throws -> Tensor {
            let residual: Tensor = try matmul(w.value, x) + v.value.unsqueezed(axis: 1) - y
            return try square(residual).mean() * 0.5
        }
        let makers: [(String, Int, ([Parameter]) throws -> any Optimizer)] = [
            ("Adafactor", 200, { try Adafactor(parameters: $0, learningRate: 0.05) }),
            ("Apollo", 200, { try Apollo(parameters: $0, learningRate: 0.01, warmup: 10, initialLearningRate: 0.001) }),
            ("Shampoo", 200, { try Shampoo(parameters: $0, learningRate: 0.05) }),
        ]
        for (name, steps, make) in makers {
            let w = Parameter(try Tensor.zeros([3, 4], on: b)), v = Parameter(try Tensor.zeros([3], on: b))
            let opt = try make([w, v])
            let start = try loss(w, v).item()
            for _ in 0..<steps {
                opt.zeroGradients()
                try loss(w, v).backward()
                try opt.step()
            }
            let end = try withoutGradients { try loss(w, v).item() }
            // The least-squares optimum of this data is ≈ 0.25 of the start; demand most of the way.
            #expect(end < 0.5 * start, "\(name) on \(backend): loss \(start) → \(end)")
            #expect(end.isFinite)
        }
    }

    @Test("state round trip: save after 2 steps, load into a fresh optimizer, continue identically",
          arguments: TestBackend.all)
    func roundTrip(backend: TestBackend) throws {
        let grads = gradientSequence(steps: 5)
        let initial = zip(shapes, initialValues()).map { (shape: $0, values: $1) }
        let makers: [(String, ([Parameter]) throws -> any Optimizer)] = [
            ("Adafactor", { try Adafactor(parameters: $0, learningRate: 0.3) }),
            ("Apollo", { try Apollo(parameters: $0, rebound: .belief, warmup: 3, initialLearningRate: 1e-3) }),
            ("Shampoo", { try Shampoo(parameters: $0, updateFrequency: 3) }),
        ]
        for (name, make) in makers {
            try T.expectRoundTrip(initial: initial, on: backend.backend, first: 2, second: 3, make: make) { opt, t in
                try T.run(opt, gradients: [grads[t]])
            }
            // The saved tensors are copies: stepping after saving leaves them unchanged.
            let opt = try make(try T.parameters(shapes, initialValues(), on: backend.backend))
            try T.run(opt, gradients: [grads[0]])
            let state = try opt.stateDictionary()
            let before = try state.tensors.mapValues { try $0.scalars() }
            try T.run(opt, gradients: [grads[1]])
            #expect(try state.tensors.mapValues { try $0.scalars() } == before, "\(name): saved state changed")
            #expect(state.scalars["step"] == 1 && state.scalars["lr"] != nil, "\(name)")
        }
    }

    @Test("bad hyperparameters and states throw TensorError naming the optimizer")
    func errors() throws {
        let b = CPUBackend.shared
        let ps = { try T.parameters(shapes, initialValues(), on: b) }
        T.expectError("Adafactor", "no parameters") { _ = try Adafactor(parameters: []) }
        T.expectError("Adafactor", "NaN lr") { _ = try Adafactor(parameters: try ps(), learningRate: .nan) }
        T.expectError("Adafactor", "beta2Decay > 0") { _ = try Adafactor(parameters: try ps(), beta2Decay: 0.5) }
        T.expectError("Adafactor", "negative ε₂") { _ = try Adafactor(parameters: try ps(), epsilon2: -1) }
        T.expectError("Adafactor", "d = 0") { _ = try Adafactor(parameters: try ps(), clipThreshold: 0) }
        T.expectError("Adafactor", "repeated parameter") {
            let p = try ps()
            _ = try Adafactor(parameters: [p[0], p[0]])
        }
        T.expectError("Apollo", "β = 1") { _ = try Apollo(parameters: try ps(), beta: 1) }
        T.expectError("Apollo", "σ = 0") { _ = try Apollo(parameters: try ps(), rebound: .constant(0)) }
        T.expectError("Apollo", "negative warmup") { _ = try Apollo(parameters: try ps(), warmup: -1) }
        T.expectError("Apollo", "init lr above lr") {
            _ = try Apollo(parameters: try ps(), learningRate: 0.01, warmup: 5, initialLearningRate: 0.1)
        }
        T.expectError("Apollo", "infinite weight decay") { _ = try Apollo(parameters: try ps(), weightDecay: .infinity) }
        T.expectError("Shampoo", "ε = 0") { _ = try Shampoo(parameters: try ps(), epsilon: 0) }
        T.expectError("Shampoo", "update frequency 0") { _ = try Shampoo(parameters: try ps(), updateFrequency: 0) }
        T.expectError("Shampoo", "negative lr") { _ = try Shampoo(parameters: try ps(), learningRate: -1) }

        // A bad state changes nothing.
        let grads = gradientSequence(steps: 2)
        let shampoo = try Shampoo(parameters: try ps())
        try T.run(shampoo, gradients: grads)
        var state = try shampoo.stateDictionary()
        state.tensors["0.left"] = try Tensor.zeros([2, 2], on: b)
        state.scalars["step"] = 7
        T.expectError("Shampoo", "wrong shape") { try shampoo.loadStateDictionary(state) }
        #expect(shampoo.stepCount == 2)
        state = try shampoo.stateDictionary()
        state.tensors["0.right"] = nil
        T.expectError("Shampoo", "partial matrix state") { try shampoo.loadStateDictionary(state) }
        let adafactor = try Adafactor(parameters: try ps())
        T.expectError("Adafactor", "missing step") { try adafactor.loadStateDictionary(OptimizerState()) }
        T.expectError("Adafactor", "fractional step") {
            try adafactor.loadStateDictionary(OptimizerState(scalars: ["step": 1.5]))
        }
        let apollo = try Apollo(parameters: try ps())
        try T.run(apollo, gradients: grads)
        state = try apollo.stateDictionary()
        state.tensors["1.update"] = nil
        state.scalars["lr"] = 5
        T.expectError("Apollo", "partial state") { try apollo.loadStateDictionary(state) }
        #expect(apollo.learningRate == 1e-2)
        state = try apollo.stateDictionary()
        state.scalars["lr"] = -1
        T.expectError("Apollo", "negative lr in state") { try apollo.loadStateDictionary(state) }
    }
}
