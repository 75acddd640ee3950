import Foundation
import Kiln
import KilnTestSupport
import Testing

/// Helpers shared by the positional-encoding and source-attention tests: test tensors, elementwise
/// checks, typed error checks, and gradient checks of autograd against central differences of a
/// Float64 oracle.
enum SequenceTesting {
    static func f64(_ t: Tensor) throws -> [Double] { try t.scalars().map(Double.init) }

    static func tensor(_ shape: [Int], seed: UInt64, on b: any Backend,
                       range: ClosedRange<Double> = -2...2) throws -> Tensor {
        try Tensor(testValues(shape.reduce(1, *), seed: seed, range: range), shape: shape, on: b)
    }

    static func check(_ actual: Tensor, _ expected: [Double], _ tol: Tolerance, _ what: String,
                      sourceLocation: SourceLocation = #_sourceLocation) throws {
        let m = mismatch(try actual.scalars(), expected, tolerance: tol)
        #expect(m == nil, "\(what): \(m ?? "")", sourceLocation: sourceLocation)
    }

    /// Expects `body` to throw a `TensorError` from `op` whose message contains every one of `mentions`.
    static func expectError(_ op: String, mentioning mentions: [String] = [], _ what: String,
                            sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
        do {
            try body()
            Issue.record("\(what): did not throw", sourceLocation: sourceLocation)
        } catch let e as TensorError {
            #expect(e.op == op, "\(what): \(e)", sourceLocation: sourceLocation)
            for m in mentions {
                #expect(e.message.contains(m), "\(what): '\(e.message)' does not mention \(m)",
                        sourceLocation: sourceLocation)
            }
        } catch {
            Issue.record("\(what): threw \(error)", sourceLocation: sourceLocation)
        }
    }

    /// The tolerance of an autograd gradient (Float32) against a Float64 central difference.
    static let gradientTolerance = Tolerance(absolute: 1e-4, relative: 1e-3)

    /// Autograd against central differences: `forward` computes y from `leaves` (tensors that require
    /// a gradient); `oracle` computes y in Float64 from the leaves' values. The loss is Σ r⊙y with
    /// fixed weights r, so every output element matters. Each leaf's gradient is compared with
    /// `(L(x + h·e_i) − L(x − h·e_i)) / 2h` of the oracle loss, h = 1e-6.
    static func gradientCheck(_ leaves: [(name: String, tensor: Tensor)], forward: () throws -> Tensor,
                              oracle: ([[Double]]) -> [Double], _ what: String,
                              tolerance: Tolerance = gradientTolerance,
                              sourceLocation: SourceLocation = #_sourceLocation) throws {
        let y = try forward()
        let r = testValues(y.count, seed: 4242, range: -1...1).map(Double.init)
        try (y * Tensor(r.map(Float.init), shape: y.shape, on: y.backend)).sum().backward()
        let values = try leaves.map { try f64($0.tensor) }
        func loss(_ v: [[Double]]) -> Double { zip(oracle(v), r).reduce(0) { $0 + $1.0 * $1.1 } }
        let h = 1e-6
        for (k, leaf) in leaves.enumerated() {
            var numeric = [Double](repeating: 0, count: values[k].count)
            var v = values
            for i in numeric.indices {
                v[k][i] = values[k][i] + h
                let up = loss(v)
                v[k][i] = values[k][i] - h
                let down = loss(v)
                v[k][i] = values[k][i]
                numeric[i] = (up - down) / (2 * h)
            }
            guard let g = leaf.tensor.gradient else {
                Issue.record("\(what): no gradient reached \(leaf.name)", sourceLocation: sourceLocation)
                continue
            }
            #expect(g.shape == leaf.tensor.shape, "\(what): gradient shape of \(leaf.name)", sourceLocation: sourceLocation)
            try check(g, numeric, tolerance, "\(what): ∂/∂\(leaf.name)", sourceLocation: sourceLocation)
        }
    }
}
