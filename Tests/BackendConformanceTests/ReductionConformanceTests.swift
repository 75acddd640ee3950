import Kiln
import KilnTestSupport
import Testing

struct ReductionCase: CustomStringConvertible, Sendable {
    let shape: [Int]
    let axes: [Int]
    var description: String { "\(shape) axes \(axes)" }
}

/// Shapes with 1, primes, an empty reduced axis, non-adjacent axes and one long row.
let reductionCases: [ReductionCase] = [
    .init(shape: [1], axes: [0]), .init(shape: [7], axes: []), .init(shape: [3, 5], axes: [1]),
    .init(shape: [3, 5], axes: [0]), .init(shape: [3, 5], axes: [-1]), .init(shape: [2, 3, 4], axes: [0, 2]),
    .init(shape: [2, 3, 4], axes: [1]), .init(shape: [2, 3, 4], axes: [1, 2]), .init(shape: [5, 1, 17, 3], axes: [0, 3]),
    .init(shape: [4, 0, 3], axes: [1]), .init(shape: [2, 65_537], axes: [1]), .init(shape: [33, 31], axes: []),
]

@Suite("Reduction and softmax conformance")
struct ReductionConformanceTests {
    @Test("reductions against Float64", arguments: TestBackend.all, reductionCases)
    func reductions(_ tb: TestBackend, _ c: ReductionCase) throws {
        let x = testValues(c.shape.reduce(1, *), seed: 31, range: -3...3)
        let t = try Tensor(x, shape: c.shape, on: tb.backend)
        let emptyAxis = c.axes.contains { c.shape[$0 < 0 ? $0 + c.shape.count : $0] == 0 }
        for keep in [false, true] {
            var results: [(String, ReduceOp, Tensor)] = [
                ("sum", .sum, try t.sum(alongAxes: c.axes, keepingDimensions: keep)),
                ("mean", .mean, try t.mean(alongAxes: c.axes, keepingDimensions: keep)),
                ("variance", .variance, try t.variance(alongAxes: c.axes, keepingDimensions: keep)),
                ("logSumExp", .logSumExp, try t.logSumExp(alongAxes: c.axes, keepingDimensions: keep)),
            ]
            if !emptyAxis {
                results.append(("max", .max, try t.max(alongAxes: c.axes, keepingDimensions: keep)))
                results.append(("min", .min, try t.min(alongAxes: c.axes, keepingDimensions: keep)))
            }
            let reduced = Set((c.axes.isEmpty ? Array(c.shape.indices) : c.axes).map { $0 < 0 ? $0 + c.shape.count : $0 })
            let expectedShape = keep ? c.shape.enumerated().map { reduced.contains($0.offset) ? 1 : $0.element }
                                     : c.shape.enumerated().filter { !reduced.contains($0.offset) }.map(\.element)
            for (name, op, result) in results {
                #expect(result.shape == expectedShape, "\(tb) \(name) \(c) keep \(keep)")
                let expected = Oracle.reduce(op, x, c.shape, axes: c.axes)
                let problem = mismatch(try result.scalars(), expected, tolerance: .reduction)
                #expect(problem == nil, "\(tb) \(name) \(c) keep \(keep): \(problem ?? "")")
            }
        }
    }

    @Test("argmax and argmin: first extreme, NaN wins", arguments: TestBackend.all)
    func argExtremes(_ tb: TestBackend) throws {
        let x = try Tensor([1, 5, 5, 0, 0, 2, 3, .nan, 9], shape: [3, 3], on: tb.backend)
        #expect(try x.argmax(axis: 1).scalars() == [1, 2, 1])
        #expect(try x.argmin(axis: 1).scalars() == [0, 0, 1])
        #expect(try x.argmax(axis: 0).scalars() == [2, 2, 2])
        #expect(try x.argmax().scalars() == [7])
        #expect(try x.argmax(axis: 1, keepingDimensions: true).shape == [3, 1])
        for (shape, axis) in [([4, 65_537], 1), ([17, 3, 5], 0), ([2, 31, 3], 1)] {
            let values = testValues(shape.reduce(1, *), seed: 33)
            let t = try Tensor(values, shape: shape, on: tb.backend)
            for (op, result) in [(ReduceOp.argmax, try t.argmax(axis: axis)), (.argmin, try t.argmin(axis: axis))] {
                let expected = Oracle.reduce(op, values, shape, axes: [axis])
                #expect(mismatch(try result.scalars(), expected, tolerance: .exact) == nil, "\(tb) \(op) \(shape)")
            }
        }
    }

    @Test("variance with a large offset does not cancel; correction", arguments: TestBackend.all)
    func varianceOffset(_ tb: TestBackend) throws {
        let x = testValues(4096, seed: 35, range: -0.02...0.02).map { $0 + 10_000 }
        let t = try Tensor(x, on: tb.backend)
        for correction in [0, 1] {
            let v = try t.variance(correction: correction).item()
            let expected = Oracle.reduce(.variance, x.map(Double.init), correction: Double(correction))
            #expect(mismatch([v], [expected], tolerance: Tolerance(absolute: 0, relative: 1e-3)) == nil,
                    "\(tb) correction \(correction): \(v) vs \(expected)")
        }
    }

    @Test("sum of a million elements stays accurate", arguments: TestBackend.all)
    func longSum(_ tb: TestBackend) throws {
        let x = testValues(1_000_000, seed: 36, range: 0...1)
        let s = try Tensor(x, on: tb.backend).sum().item()
        let expected = x.reduce(0.0) { $0 + Double($1) }
        #expect(mismatch([s], [expected], tolerance: Tolerance(absolute: 0, relative: 1e-5)) == nil, "\(tb): \(s) vs \(expected)")
    }

    @Test("softmax and log-softmax along every axis", arguments: TestBackend.all)
    func softmaxes(_ tb: TestBackend) throws {
        let cases: [([Int], Int)] = [([1], 0), ([7], 0), ([3, 5], 1), ([3, 5], 0), ([2, 3, 4], 1), ([2, 3, 4], -1),
                                     ([4, 1000], 1), ([2, 17, 33], 0), ([2, 0, 3], 2)]
        for (shape, axis) in cases {
            let x = testValues(shape.reduce(1, *), seed: 41, range: -30...30)
            let t = try Tensor(x, shape: shape, on: tb.backend)
            for logarithm in [false, true] {
                let y = logarithm ? try logSoftmax(t, axis: axis) : try softmax(t, axis: axis)
                let expected = Oracle.softmax(x, shape, axis: axis, logarithm: logarithm)
                let problem = mismatch(try y.scalars(), expected, tolerance: .reduction)
                #expect(problem == nil, "\(tb) \(logarithm ? "logSoftmax" : "softmax") \(shape) axis \(axis): \(problem ?? "")")
            }
        }
        // Large logits do not overflow; -inf entries get probability 0.
        let big = try softmax(Tensor([1000, 1001, -.infinity], on: tb.backend))
        let expected = Oracle.softmax([1000, 1001, -.infinity], [3], axis: 0, logarithm: false)
        #expect(mismatch(try big.scalars(), expected, tolerance: .reduction) == nil)
    }

    @Test("softmax kernel leaves the guard region alone", arguments: TestBackend.all)
    func softmaxGuard(_ tb: TestBackend) throws {
        let x = try upload(testValues(3 * 17, seed: 5), to: tb.backend)
        let (values, intact) = try guardedOutput(on: tb.backend, count: 51) { out in
            try tb.backend.softmax(x, out, outer: 3, count: 17, inner: 1, logarithm: false)
        }
        #expect(intact)
        #expect(mismatch(values, Oracle.softmax(testValues(51, seed: 5), [3, 17], axis: 1, logarithm: false),
                         tolerance: .reduction) == nil)
        let (sums, intact2) = try guardedOutput(on: tb.backend, count: 3) { out in
            try tb.backend.reduce(.sum, x, out, outer: 3, count: 17, inner: 1, correction: 0)
        }
        #expect(intact2)
        #expect(sums.count == 3)
    }

    @Test("sums with infinities: +inf stays +inf, +inf − inf is NaN", arguments: TestBackend.all)
    func infiniteSums(_ tb: TestBackend) throws {
        let x = try Tensor([.infinity, 1, 2, 3, -.infinity, 5, 1, 2], shape: [2, 4], on: tb.backend)
        let sums = try x.sum(alongAxes: [1]).scalars()
        #expect(sums[0] == .infinity && sums[1] == -.infinity, "\(tb): \(sums)")
        #expect(try x.mean(alongAxes: [1]).scalars()[0] == .infinity)
        #expect(try x.sum().item().isNaN)
        #expect(try x.logSumExp(alongAxes: [1]).scalars()[0] == .infinity)
    }
}
