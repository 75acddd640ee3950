import Foundation
import Kiln
import KilnTestSupport
import Testing

/// Every unary op with an input range inside its domain and a tolerance that fits it.
let unaryCases: [(op: UnaryOp, range: ClosedRange<Double>)] = [
    (.negate, -3...3), (.abs, -3...3), (.sign, -3...3), (.exp, -20...20), (.expm1, -1...1), (.log, 0.001...50),
    (.log1p, -0.9...5), (.sqrt, 0...50), (.rsqrt, 0.01...50), (.square, -3...3), (.sin, -6...6), (.cos, -6...6),
    (.tan, -1.4...1.4), (.tanh, -6...6), (.sigmoid, -30...30), (.relu, -3...3), (.geluErf, -5...5),
    (.geluTanh, -5...5), (.silu, -20...20), (.softplus, -30...30), (.erf, -3...3),
    (.clamp(min: -0.5, max: 1.25), -3...3), (.powScalar(2.5), 0...4), (.powScalar(-1.5), 0.1...4),
    (.reciprocal, 0.1...4), (.floor, -5...5), (.ceil, -5...5), (.round, -5...5), (.leakyReLU(slope: 0.1), -3...3),
    (.elu(alpha: 1.5), -5...5), (.addScalar(0.75), -3...3), (.multiplyScalar(-1.5), -3...3),
]

struct UnaryCase: CustomStringConvertible, Sendable {
    let op: UnaryOp
    let range: ClosedRange<Double>
    var description: String { "\(op)" }
}

/// Sizes: empty, 1, primes, SIMD widths ± 1, and one that spans several worker chunks.
let elementwiseSizes = [0, 1, 7, 15, 16, 17, 33, 1000, 70_001]

@Suite("Elementwise conformance")
struct ElementwiseConformanceTests {
    @Test("unary ops against Float64", arguments: TestBackend.all, unaryCases.map { UnaryCase(op: $0.op, range: $0.range) })
    func unary(_ tb: TestBackend, _ c: UnaryCase) throws {
        for n in elementwiseSizes {
            let x = testValues(n, seed: UInt64(n) + 11, range: c.range)
            let bufferX = try upload(x, to: tb.backend)
            let (y, intact) = try guardedOutput(on: tb.backend, count: n) { out in
                if n > 0 { try tb.backend.unary(c.op, bufferX, out, count: n) }
            }
            #expect(intact, "\(tb) \(c) n=\(n): wrote past the end")
            // Rounded-to-integer ops must be exact; the rest within the elementwise tolerance.
            let tolerance: Tolerance = [.floor, .ceil, .round, .sign, .negate, .abs, .relu].contains(c.op)
                ? .exact : .elementwise
            let expected = x.map { Oracle.unary(c.op, Double($0)) }
            let problem = mismatch(y, expected, tolerance: tolerance)
            #expect(problem == nil, "\(tb) \(c) n=\(n): \(problem ?? "")")
        }
    }

    @Test("special values: NaN, ±inf, 0", arguments: TestBackend.all)
    func specialValues(_ tb: TestBackend) throws {
        let x: [Float] = [.nan, .infinity, -.infinity, 0, -0.0, 100, -100]
        let t = try Tensor(x, on: tb.backend)
        func check(_ name: String, _ result: Tensor, _ expected: [Double]) throws {
            let problem = mismatch(try result.scalars(), expected, tolerance: .elementwise)
            #expect(problem == nil, "\(tb) \(name): \(problem ?? "")")
        }
        try check("relu", relu(t), [.nan, .infinity, 0, 0, 0, 100, 0])
        try check("clamp", clamp(t, min: -1, max: 1), [.nan, 1, -1, 0, 0, 1, -1])
        try check("sigmoid", sigmoid(t), [.nan, 1, 0, 0.5, 0.5, 1, 0])
        try check("softplus", softplus(t), [.nan, .infinity, 0, Foundation.log(2), Foundation.log(2), 100, 0])
        try check("exp", exp(t), [.nan, .infinity, 0, 1, 1, .infinity, 0])
        try check("log", log(t), [.nan, .infinity, .nan, -.infinity, -.infinity, Foundation.log(100), .nan])
        try check("sign", sign(t), [0, 1, -1, 0, 0, 1, -1])
        try check("tanh", tanh(t), [.nan, 1, -1, 0, 0, 1, -1])
        try check("silu", silu(t), [.nan, .infinity, .nan, 0, 0, 100, 0])
    }

    @Test("binary ops with broadcasting", arguments: TestBackend.all, BinaryOp.allCases)
    func binary(_ tb: TestBackend, _ op: BinaryOp) throws {
        let shapes: [([Int], [Int])] = [([0], [0]), ([1], [1]), ([7], [7]), ([70_001], [70_001]), ([3, 5], [5]),
                                        ([3, 1], [1, 4]), ([2, 3, 4], [3, 1]), ([2, 1, 4, 1], [3, 1, 5]),
                                        ([5, 1, 33], [5, 17, 1]), ([], [4, 3]), ([2, 0, 3], [1, 3])]
        for (sa, sb) in shapes {
            let range: ClosedRange<Double> = op == .pow ? 0.1...3 : -3...3
            var a = testValues(sa.reduce(1, *), seed: 21, range: range)
            let b = testValues(sb.reduce(1, *), seed: 22, range: op == .divide ? 0.5...3 : range)
            // Equal entries so the comparisons see ties.
            if a.count > 2 && b.count > 2 { a[1] = b[1] }
            let out = try Tensor(a, shape: sa, on: tb.backend).combining(Tensor(b, shape: sb, on: tb.backend), op)
            let outShape = try Shape.broadcast(sa, sb, op: "test")
            #expect(out.shape == outShape)
            // +, −, × are correctly rounded everywhere: compare with the Float64 result rounded to
            // Float32. OpenCL allows 2.5 ulp for ÷ and more for pow.
            let expected = Oracle.binary(op, a, sa, b, sb, outShape: outShape).map { Double(Float($0)) }
            let tolerance: Tolerance = op == .pow || op == .divide ? .elementwise : .exact
            let problem = mismatch(try out.scalars(), expected, tolerance: tolerance)
            #expect(problem == nil, "\(tb) \(op) \(sa) ⊕ \(sb): \(problem ?? "")")
        }
    }

    @Test("binary kernel leaves the guard region alone", arguments: TestBackend.all)
    func binaryGuard(_ tb: TestBackend) throws {
        let a = try upload(testValues(35, seed: 1), to: tb.backend)
        let b = try upload(testValues(7, seed: 2), to: tb.backend)
        let (values, intact) = try guardedOutput(on: tb.backend, count: 35) { out in
            try tb.backend.binary(.multiply, BroadcastGeometry(shape: [5, 7], strides: [[7, 1], [0, 1]]), a, b, out)
        }
        #expect(intact)
        #expect(values.count == 35)
    }

    @Test("NaN propagates through maximum and minimum", arguments: TestBackend.all)
    func nanMaximum(_ tb: TestBackend) throws {
        let a = try Tensor([.nan, 1, 2], on: tb.backend)
        let b = try Tensor([0, .nan, 3], on: tb.backend)
        let mx = try maximum(a, b).scalars()
        let mn = try minimum(a, b).scalars()
        #expect(mx[0].isNaN && mx[1].isNaN && mx[2] == 3)
        #expect(mn[0].isNaN && mn[1].isNaN && mn[2] == 2)
    }

    @Test("where with broadcasting", arguments: TestBackend.all)
    func select(_ tb: TestBackend) throws {
        let condition = try Tensor([1, 0, 0, 1, 1, 0], shape: [2, 3], on: tb.backend)
        let a = try Tensor([10, 20, 30], on: tb.backend)
        let b = try Tensor(scalar: -1, on: tb.backend)
        let out = try `where`(condition, a, b)
        #expect(out.shape == [2, 3])
        #expect(try out.scalars() == [10, -1, -1, 10, 20, -1])
        let (big, intact) = try guardedOutput(on: tb.backend, count: 6) { buffer in
            try tb.backend.select(BroadcastGeometry(shape: [2, 3], strides: [[3, 1], [0, 1], [0, 0]]),
                                  condition: condition.storage.buffer, a.storage.buffer, b.storage.buffer, buffer)
        }
        #expect(intact)
        #expect(big == [10, -1, -1, 10, 20, -1])
    }

    @Test("scalar operators", arguments: TestBackend.all)
    func scalarOperators(_ tb: TestBackend) throws {
        let x = try Tensor([1, 2, 4], on: tb.backend)
        #expect(try (x + 1).scalars() == [2, 3, 5])
        #expect(try (x - 1).scalars() == [0, 1, 3])
        #expect(try (x * 2).scalars() == [2, 4, 8])
        #expect(try (x / 2).scalars() == [0.5, 1, 2])
        #expect(try (8 / x).scalars() == [8, 4, 2])
        #expect(try (1 - x).scalars() == [0, -1, -3])
        #expect(try (-x).scalars() == [-1, -2, -4])
    }
}
