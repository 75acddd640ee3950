import Foundation
import Kiln
import KilnTestSupport
import Testing

/// Reverse-mode autograd on every backend: gradients against Float64 analytic oracles, attention
/// through the flash backward, accumulation, and typed errors.
@Suite("Autograd")
struct AutogradTests {
    /// d/dx of each supported unary op, in Float64.
    static var unaryDerivatives: [(UnaryOp, ClosedRange<Double>, (Double) -> Double)] { [
        (.negate, -2...2, { _ in -1 }), (.addScalar(0.5), -2...2, { _ in 1 }),
        (.multiplyScalar(-3), -2...2, { _ in -3 }), (.exp, -2...2, { Foundation.exp($0) }),
        (.log, 0.2...3, { 1 / $0 }), (.square, -2...2, { 2 * $0 }), (.sqrt, 0.2...3, { 0.5 / $0.squareRoot() }),
        (.tanh, -2...2, { 1 - Foundation.tanh($0) * Foundation.tanh($0) }),
        (.sigmoid, -4...4, { let s = 1 / (1 + Foundation.exp(-$0)); return s * (1 - s) }),
        (.relu, -2...2, { $0 > 0 ? 1 : 0 }),
    ] }

    @Test("unary gradients: Σ w·f(x) gives w·f'(x)", arguments: TestBackend.all)
    func unary(_ tb: TestBackend) throws {
        for (op, range, derivative) in Self.unaryDerivatives {
            let xv = testValues(37, seed: 3, range: range), wv = testValues(37, seed: 4)
            let x = try Tensor(xv, on: tb.backend).requiringGradient()
            let w = try Tensor(wv, on: tb.backend)
            try (x.applying(op) * w).sum().backward()
            let expected = zip(xv, wv).map { derivative(Double($0)) * Double($1) }
            let got = try #require(x.gradient, "\(tb) \(op): no gradient")
            #expect(mismatch(try got.scalars(), expected, tolerance: .elementwise) == nil, "\(tb) \(op)")
        }
    }

    @Test("broadcast binary gradients are summed back to each input's shape", arguments: TestBackend.all)
    func binary(_ tb: TestBackend) throws {
        let av = testValues(12, seed: 5, range: 0.5...2), bv = testValues(5, seed: 6, range: 0.5...2)
        let wv = testValues(60, seed: 7)
        for op in [BinaryOp.add, .subtract, .multiply, .divide] {
            let a = try Tensor(av, shape: [3, 1, 4], on: tb.backend).requiringGradient()
            let b = try Tensor(bv, shape: [5, 1], on: tb.backend).requiringGradient()
            let w = try Tensor(wv, shape: [3, 5, 4], on: tb.backend)
            try (a.combining(b, op) * w).sum().backward()
            var da = [Double](repeating: 0, count: 12), db = [Double](repeating: 0, count: 5)
            for i in 0..<3 {
                for j in 0..<5 {
                    for k in 0..<4 {
                        let x = Double(av[i * 4 + k]), y = Double(bv[j]), g = Double(wv[(i * 5 + j) * 4 + k])
                        let (px, py): (Double, Double) = switch op {
                        case .add: (1, 1)
                        case .subtract: (1, -1)
                        case .multiply: (y, x)
                        default: (1 / y, -x / (y * y))
                        }
                        da[i * 4 + k] += g * px
                        db[j] += g * py
                    }
                }
            }
            #expect(mismatch(try #require(a.gradient).scalars(), da, tolerance: .reduction) == nil, "\(tb) \(op) da")
            #expect(mismatch(try #require(b.gradient).scalars(), db, tolerance: .reduction) == nil, "\(tb) \(op) db")
        }
    }

    @Test("matmul gradients with transposes and a broadcast batch", arguments: TestBackend.all)
    func matmulGradients(_ tb: TestBackend) throws {
        for (ta, tb2) in [(false, false), (true, false), (false, true), (true, true)] {
            let (m, n, k) = (5, 7, 3)
            let av = testValues(2 * m * k, seed: 8), bv = testValues(k * n, seed: 9), wv = testValues(2 * m * n, seed: 10)
            let a = try Tensor(av, shape: ta ? [2, k, m] : [2, m, k], on: tb.backend).requiringGradient()
            let b = try Tensor(bv, shape: tb2 ? [n, k] : [k, n], on: tb.backend).requiringGradient()
            let w = try Tensor(wv, shape: [2, m, n], on: tb.backend)
            try (matmul(a, b, transposeA: ta, transposeB: tb2, alpha: 0.5) * w).sum().backward()
            // Float64: op(A)' = α·W·op(B)ᵀ per batch; op(B)' = α·Σ_batches op(A)ᵀ·W.
            func opA(_ batch: Int, _ i: Int, _ p: Int) -> Double {
                Double(ta ? av[batch * m * k + p * m + i] : av[batch * m * k + i * k + p])
            }
            func opB(_ p: Int, _ j: Int) -> Double { Double(tb2 ? bv[j * k + p] : bv[p * n + j]) }
            var da = [Double](repeating: 0, count: av.count), db = [Double](repeating: 0, count: bv.count)
            for batch in 0..<2 {
                for i in 0..<m {
                    for j in 0..<n {
                        let g = 0.5 * Double(wv[batch * m * n + i * n + j])
                        for p in 0..<k {
                            da[batch * m * k + (ta ? p * m + i : i * k + p)] += g * opB(p, j)
                            db[tb2 ? j * k + p : p * n + j] += g * opA(batch, i, p)
                        }
                    }
                }
            }
            #expect(mismatch(try #require(a.gradient).scalars(), da, tolerance: .reduction) == nil, "\(tb) Aᵀ\(ta) Bᵀ\(tb2) dA")
            #expect(mismatch(try #require(b.gradient).scalars(), db, tolerance: .reduction) == nil, "\(tb) Aᵀ\(ta) Bᵀ\(tb2) dB")
        }
    }

    @Test("attention gradients through the flash and naive backward", arguments: TestBackend.all)
    func attention(_ tb: TestBackend) throws {
        let c = AttentionCase(heads: 4, kvHeads: 2, seqQ: 19, seqK: 23, headDim: 8, valueDim: 8, causal: true, dropout: 0.2)
        let x = try AttentionInputs(c, on: tb.backend)
        let expected = AttentionOracle.backward(x.descriptor, x.oracle, outputGradient: x.gradientValues)
        for implementation in [AttentionImplementation.flash, .naive] {
            let q = x.query.requiringGradient(), k = x.key.requiringGradient(), v = x.value.requiringGradient()
            let out = try scaledDotProductAttention(query: q, key: k, value: v, isCausal: true, dropout: 0.2, seed: 99,
                                                    implementation: implementation).output
            try (out * x.gradient).sum().backward()
            for (name, leaf, want) in [("dQ", q, expected.query), ("dK", k, expected.key), ("dV", v, expected.value)] {
                let problem = mismatch(try #require(leaf.gradient).scalars(), want, tolerance: attentionTolerance)
                #expect(problem == nil, "\(tb) \(implementation) \(name): \(problem ?? "")")
            }
        }
    }

    @Test("chain rule, reuse of a tensor, accumulation, mean, reshape and permute", arguments: TestBackend.all)
    func chain(_ tb: TestBackend) throws {
        let xv: [Float] = [0.5, -1, 2, 3, -0.25, 1.5]
        let x = try Tensor(xv, shape: [2, 3], on: tb.backend).requiringGradient()
        // y = mean(tanh(xᵀ)·x-reshaped + x²): uses x three times.
        let left: Tensor = try tanh(x.transposed()).reshaped(to: [6])
        let right: Tensor = try x.permuted([1, 0]).flattened()
        let product: Tensor = try left * right
        let y: Tensor = try (product + square(x).flattened()).mean()
        try y.backward()
        // d/dx_i of (tanh(x_i)·x_i + x_i²)/6 = (tanh'(x_i)·x_i + tanh(x_i) + 2x_i)/6
        let expected = xv.map { value -> Double in
            let v = Double(value)
            let t: Double = Foundation.tanh(v)
            let slope: Double = (1 - t * t) * v
            return (slope + t + 2 * v) / 6
        }
        #expect(mismatch(try #require(x.gradient).scalars(), expected, tolerance: .elementwise) == nil, "\(tb)")
        try y.backward()
        #expect(mismatch(try #require(x.gradient).scalars(), expected.map { 2 * $0 }, tolerance: .elementwise) == nil,
                "\(tb): a second backward accumulates")
        x.zeroGradient()
        #expect(x.gradient == nil)
    }

    @Test("Float32 finite differences agree with autograd on a small network", arguments: TestBackend.all)
    func finiteDifferences(_ tb: TestBackend) throws {
        let xv = testValues(12, seed: 11), wv = testValues(8, seed: 12), bv = testValues(2, seed: 13)
        func loss(_ x: [Float]) throws -> Tensor {
            let t = try Tensor(x, shape: [3, 4], on: tb.backend).requiringGradient()
            let w = try Tensor(wv, shape: [4, 2], on: tb.backend), b = try Tensor(bv, on: tb.backend)
            return try sigmoid(matmul(t, w) + b).sum()
        }
        let x = try Tensor(xv, shape: [3, 4], on: tb.backend).requiringGradient()
        let w = try Tensor(wv, shape: [4, 2], on: tb.backend), b = try Tensor(bv, on: tb.backend)
        try sigmoid(matmul(x, w) + b).sum().backward()
        let analytic = try #require(x.gradient).scalars()
        let h: Float = 1e-2
        for i in 0..<12 {
            var plus = xv, minus = xv
            plus[i] += h
            minus[i] -= h
            let numeric = (Double(try loss(plus).item()) - Double(try loss(minus).item())) / Double(2 * h)
            #expect(Swift.abs(numeric - Double(analytic[i])) < 2e-3, "\(tb) x[\(i)]: \(analytic[i]) vs \(numeric)")
        }
    }

    @Test("errors: no gradient to take, no seed, an op without a gradient yet")
    func errors() throws {
        let b = CPUBackend.shared
        let plain = try Tensor([1, 2], on: b)
        #expect(throws: TensorError.self) { try plain.sum().backward() }
        let x = try Tensor([1, 2], on: b).requiringGradient()
        #expect(throws: TensorError.self) { try (x * 2).backward() }
        // An attention mask has no gradient: a mask that requires one throws.
        let q = try Tensor.zeros([1, 1, 2, 4], on: b)
        let mask = try Tensor.zeros([2, 2], on: b).requiringGradient()
        #expect(throws: TensorError.self) {
            _ = try scaledDotProductAttention(query: q, key: q, value: q, mask: .additive(mask))
        }
        // Inside withoutGradients nothing is recorded and nothing throws.
        let y = try withoutGradients { try softmax(x) }
        #expect(!y.requiresGradient)
        #expect(try !(x * 2).detached().requiresGradient)
    }
}
