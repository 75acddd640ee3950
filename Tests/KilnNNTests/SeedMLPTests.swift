import Foundation
import Kiln
import KilnTestSupport
import Testing

/// Seed 003's from-scratch 3-layer MLP (NOTES.md §4 items 1–2): tanh → tanh → softmax with
/// cross-entropy, trained by plain gradient descent with α = 0.1. The seed writes `Z = XW + b`
/// with W `[n_in, n_out]`; Kiln's Linear stores PyTorch's `[out, in]`, so `Z = XWᵀ + b`,
/// `dW = dZᵀ·A` and `dA_prev = dZ·W`.
@Suite("Seed 003 MLP")
struct SeedMLPTests {
    static let (m, n0, n1, n2, classes) = (60, 2, 12, 10, 3)

    /// Three 2-D clusters around (−1, 0), (1, 0) and (0, 1.5), 20 points each, and one-hot labels.
    static func toyProblem(on b: any Backend) throws -> (x: Tensor, y: Tensor, labels: [Int]) {
        let centres: [(Double, Double)] = [(-1, 0), (1, 0), (0, 1.5)]
        let noise = testValues(2 * m, seed: 2024, range: -0.5...0.5)
        var xs = [Float](), ys = [Float](), labels = [Int]()
        for i in 0..<m {
            let c = i % classes
            xs += [Float(centres[c].0) + noise[2 * i], Float(centres[c].1) + noise[2 * i + 1]]
            ys += (0..<classes).map { $0 == c ? 1 : 0 }
            labels.append(c)
        }
        return (try Tensor(xs, shape: [m, n0], on: b), try Tensor(ys, shape: [m, classes], on: b), labels)
    }

    static func model(on b: any Backend) throws -> Sequential {
        Sequential(try Linear(inputSize: n0, outputSize: n1, seed: 31, on: b), Lambda("tanh") { try tanh($0) },
                   try Linear(inputSize: n1, outputSize: n2, seed: 32, on: b), Lambda("tanh") { try tanh($0) },
                   try Linear(inputSize: n2, outputSize: classes, seed: 33, on: b))
    }

    /// `L = −(1/m)·Σ_i Σ_k Y[i, k]·log softmax(Z3)[i, k]`.
    static func loss(_ net: Sequential, _ x: Tensor, _ y: Tensor) throws -> Tensor {
        let logP = try logSoftmax(try net(x), axis: -1)
        let total = try (logP * y).sum()
        return try total * Float(-1.0 / Double(m))
    }

    @Test("autograd's gradients equal the seed's hand-derived backprop (Float64)", arguments: TestBackend.all)
    func gradientsMatchHandDerived(_ tb: TestBackend) throws {
        let b = tb.backend
        let (x, y, _) = try Self.toyProblem(on: b)
        let net = try Self.model(on: b)
        let loss = try Self.loss(net, x, y)
        try loss.backward()
        let p = try net.parameters().map { try $0.value.scalars().map(Double.init) }
        let (w1, b1, w2, b2, w3, b3) = (p[0], p[1], p[2], p[3], p[4], p[5])
        let xs = try x.scalars().map(Double.init), ys = try y.scalars().map(Double.init)
        let (m, n0, n1, n2, nc) = (Self.m, Self.n0, Self.n1, Self.n2, Self.classes)
        /// Z = A·Wᵀ + b with W [out, in].
        func affine(_ a: [Double], _ w: [Double], _ bias: [Double], _ nIn: Int, _ nOut: Int) -> [Double] {
            (0..<(m * nOut)).map { idx in
                let (i, o) = (idx / nOut, idx % nOut)
                return bias[o] + (0..<nIn).reduce(0) { $0 + a[i * nIn + $1] * w[o * nIn + $1] }
            }
        }
        let a1 = affine(xs, w1, b1, n0, n1).map(Foundation.tanh)
        let a2 = affine(a1, w2, b2, n1, n2).map(Foundation.tanh)
        let z3 = affine(a2, w3, b3, n2, nc)
        var probabilities = [Double](repeating: 0, count: m * nc)
        var expectedLoss = 0.0
        for i in 0..<m {
            let row = z3[(i * nc)..<(i * nc + nc)], top = row.max() ?? 0
            let denom = row.reduce(0) { $0 + Foundation.exp($1 - top) }
            for k in 0..<nc {
                probabilities[i * nc + k] = Foundation.exp(z3[i * nc + k] - top) / denom
                expectedLoss -= ys[i * nc + k] * Foundation.log(probabilities[i * nc + k]) / Double(m)
            }
        }
        // The seed's formulas: dZ3 = (P − Y)/m, dW = dZᵀA (PyTorch layout), db = Σ_i dZ,
        // dA_prev = dZ·W, dZ = dA ⊙ (1 − A²).
        let dz3 = zip(probabilities, ys).map { ($0 - $1) / Double(m) }
        func dW(_ dz: [Double], _ a: [Double], _ nIn: Int, _ nOut: Int) -> [Double] {
            (0..<(nOut * nIn)).map { idx in
                let (o, k) = (idx / nIn, idx % nIn)
                return (0..<m).reduce(0) { $0 + dz[$1 * nOut + o] * a[$1 * nIn + k] }
            }
        }
        func db(_ dz: [Double], _ nOut: Int) -> [Double] {
            (0..<nOut).map { o in (0..<m).reduce(0) { $0 + dz[$1 * nOut + o] } }
        }
        func dAPrev(_ dz: [Double], _ w: [Double], _ nIn: Int, _ nOut: Int) -> [Double] {
            (0..<(m * nIn)).map { idx in
                let (i, k) = (idx / nIn, idx % nIn)
                return (0..<nOut).reduce(0) { $0 + dz[i * nOut + $1] * w[$1 * nIn + k] }
            }
        }
        let dz2 = zip(dAPrev(dz3, w3, n2, nc), a2).map { $0 * (1 - $1 * $1) }
        let dz1 = zip(dAPrev(dz2, w2, n1, n2), a1).map { $0 * (1 - $1 * $1) }
        let expected: [(String, [Double])] = [
            ("0.weight", dW(dz1, xs, n0, n1)), ("0.bias", db(dz1, n1)),
            ("2.weight", dW(dz2, a1, n1, n2)), ("2.bias", db(dz2, n2)),
            ("4.weight", dW(dz3, a2, n2, nc)), ("4.bias", db(dz3, nc)),
        ]
        #expect(net.namedParameters().map(\.name) == expected.map(\.0))
        let tolerance = Tolerance(absolute: 2e-6, relative: 1e-4)
        #expect(mismatch([try loss.item()], [expectedLoss], tolerance: .reduction) == nil, "loss on \(tb)")
        for ((name, parameter), (_, grad)) in zip(net.namedParameters(), expected) {
            let g = try #require(parameter.gradient, "\(name) has no gradient on \(tb)")
            let m = mismatch(try g.scalars(), grad, tolerance: tolerance)
            #expect(m == nil, "\(name) on \(tb): \(m ?? "")")
            #expect(grad.contains { Swift.abs($0) > 1e-4 }, "\(name): the oracle gradient is not trivially zero")
        }
    }

    @Test("gradient descent with α = 0.1 drives the loss down and fits the clusters", arguments: TestBackend.all)
    func trains(_ tb: TestBackend) throws {
        let b = tb.backend
        let (x, y, labels) = try Self.toyProblem(on: b)
        let net = try Self.model(on: b)
        let alpha: Float = 0.1
        var losses = [Float]()
        for _ in 0..<300 {
            net.zeroGradients()
            let loss = try Self.loss(net, x, y)
            losses.append(try loss.item())
            try loss.backward()
            try withoutGradients {
                for p in net.parameters() {
                    guard let g = p.gradient else { continue }
                    let step = try g * alpha
                    try p.assign(try p.value - step)
                }
            }
        }
        let first = losses[0], last = losses[losses.count - 1]
        #expect(first > 0.9, "starts near ln 3, got \(first)")
        #expect(last < 0.25 * first, "loss \(first) → \(last) on \(tb)")
        let predictions = try withoutGradients { try net(x).argmax(axis: 1).scalars() }
        let correct = zip(predictions, labels).filter { Int($0) == $1 }.count
        #expect(correct >= 57, "\(correct)/60 correct on \(tb)")
    }
}
