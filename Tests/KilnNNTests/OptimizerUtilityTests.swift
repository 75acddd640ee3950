import Foundation
import Kiln
import KilnTestSupport
import Testing

/// Weight averaging, Lookahead, gradient clipping and accumulation against Float64 references.
@Suite("Optimizer utilities")
struct OptimizerUtilityTests {
    static let tolerance = Tolerance(absolute: 1e-6, relative: 1e-5)

    /// The parameter values of step `k` of a scripted trajectory.
    static func values(_ n: Int, _ k: Int) -> [Float] { testValues(n, seed: 500 + UInt64(k)) }

    @Test("EMA and SWA averages follow θ_ema ← mθ_ema + (1 − m)θ and the equal mean", arguments: TestBackend.all)
    func averages(_ tb: TestBackend) throws {
        let b = tb.backend
        let p = Parameter(try Tensor(Self.values(9, 0), shape: [3, 3], on: b))
        let ema = try ExponentialMovingAverage([p], decay: 0.9)
        let swa = try StochasticWeightAveraging([p])
        var emaRef = [Double](repeating: 0, count: 9), sum = [Double](repeating: 0, count: 9)
        for k in 1...5 {
            let v = Self.values(9, k).map(Double.init)
            try p.assign(try Tensor(v.map(Float.init), shape: [3, 3], on: b))
            try ema.update()
            try swa.update()
            emaRef = k == 1 ? v : zip(emaRef, v).map { 0.9 * $0 + 0.1 * $1 }
            sum = zip(sum, v).map(+)
            #expect(mismatch(try ema.averages[0].scalars(), emaRef, tolerance: Self.tolerance) == nil, "EMA, update \(k)")
            #expect(mismatch(try swa.averages[0].scalars(), sum.map { $0 / Double(k) }, tolerance: Self.tolerance) == nil,
                    "SWA, update \(k)")
        }
        #expect(swa.updateCount == 5)
        try swa.copyToParameters()
        #expect(mismatch(try p.value.scalars(), sum.map { $0 / 5 }, tolerance: Self.tolerance) == nil)
        let saved = try ema.stateDictionary()
        let fresh = try ExponentialMovingAverage([p], decay: 0.9)
        try fresh.loadStateDictionary(saved)
        #expect(try fresh.averages[0].scalars() == ema.averages[0].scalars())
        #expect(throws: TensorError.self) { try ExponentialMovingAverage([p], decay: 1.5) }
    }

    @Test("Lookahead: k inner SGD steps, then φ ← φ + α(θ − φ), θ ← φ", arguments: TestBackend.all)
    func lookahead(_ tb: TestBackend) throws {
        let b = tb.backend
        let start = Self.values(6, 0)
        let p = Parameter(try Tensor(start, on: b))
        let opt = try Lookahead(try SGD([p], learningRate: 0.1), k: 3, alpha: 0.5)
        var theta = start.map(Double.init), slow = theta
        for step in 1...7 {
            let g = testValues(6, seed: 700 + UInt64(step))
            try p.setGradient(try Tensor(g, on: b))
            try opt.step()
            theta = zip(theta, g).map { $0 - 0.1 * Double($1) }
            if step % 3 == 0 {
                slow = zip(slow, theta).map { $0 + 0.5 * ($1 - $0) }
                theta = slow
            }
            #expect(mismatch(try p.value.scalars(), theta, tolerance: Self.tolerance) == nil, "step \(step)")
        }
        #expect(opt.learningRate == 0.1)
        opt.learningRate = 0.05
        #expect(opt.inner.learningRate == 0.05)
        #expect(throws: TensorError.self) { try Lookahead(try SGD([p]), k: 0) }
    }

    @Test("clipGradientNorm: the total 2-, 1- and ∞-norm and the scaled gradients", arguments: TestBackend.all)
    func clipNorm(_ tb: TestBackend) throws {
        let b = tb.backend
        let g0 = testValues(5, seed: 1), g1 = testValues(12, seed: 2)
        for normType in [2.0, 1.0, 3.0, Double.infinity] {
            let p0 = Parameter(try Tensor.zeros([5], on: b)), p1 = Parameter(try Tensor.zeros([3, 4], on: b))
            let unused = Parameter(try Tensor.zeros([2], on: b))
            try p0.setGradient(try Tensor(g0, on: b))
            try p1.setGradient(try Tensor(g1, shape: [3, 4], on: b))
            let all = (g0 + g1).map { abs(Double($0)) }
            let expected = normType == .infinity ? all.max()! : pow(all.reduce(0) { $0 + pow($1, normType) }, 1 / normType)
            let maxNorm = expected / 4
            let total = try clipGradientNorm([p0, p1, unused], maxNorm: maxNorm, normType: normType)
            #expect(abs(total - expected) <= 1e-5 * expected, "norm \(normType): \(total) vs \(expected)")
            let scale = maxNorm / (expected + 1e-6)
            #expect(mismatch(try p0.gradient!.scalars(), g0.map { Double($0) * scale }, tolerance: Self.tolerance) == nil)
            #expect(mismatch(try p1.gradient!.scalars(), g1.map { Double($0) * scale }, tolerance: Self.tolerance) == nil)
            #expect(unused.gradient == nil)
            // Below the threshold nothing changes.
            let before = try p0.gradient!.scalars()
            _ = try clipGradientNorm([p0], maxNorm: 1e6, normType: normType)
            #expect(try p0.gradient!.scalars() == before)
        }
        let p = Parameter(try Tensor.zeros([2], on: b))
        try p.setGradient(try Tensor([.nan, 1], on: b))
        #expect(throws: TensorError.self) { try clipGradientNorm([p], maxNorm: 1, errorIfNonfinite: true) }
        #expect(throws: TensorError.self) { try clipGradientNorm([p], maxNorm: -1) }
        #expect(throws: TensorError.self) { try clipGradientNorm([p], maxNorm: 1, normType: 0) }
    }

    @Test("clipGradientValue clamps each element to [−c, c]", arguments: TestBackend.all)
    func clipValue(_ tb: TestBackend) throws {
        let b = tb.backend
        let g = testValues(10, seed: 3)
        let p = Parameter(try Tensor.zeros([10], on: b))
        try p.setGradient(try Tensor(g, on: b))
        try clipGradientValue([p], clipValue: 0.5)
        #expect(mismatch(try p.gradient!.scalars(), g.map { min(max(Double($0), -0.5), 0.5) }, tolerance: .exact) == nil)
        #expect(throws: TensorError.self) { try clipGradientValue([p], clipValue: .nan) }
    }

    /// Least squares on 8 rows: the loss of rows `range`, mean-reduced over those rows.
    static func loss(_ w: Parameter, rows: Range<Int>, on b: any Backend) throws -> Tensor {
        let x = try Tensor(testValues(8 * 3, seed: 40), shape: [8, 3], on: b).sliced(axis: 0, start: rows.lowerBound, end: rows.upperBound)
        let y = try Tensor(testValues(8, seed: 41), shape: [8, 1], on: b).sliced(axis: 0, start: rows.lowerBound, end: rows.upperBound)
        let r: Tensor = try matmul(x, w.value) - y
        let squared: Tensor = try r * r
        return try squared.mean()
    }

    @Test("gradient accumulation over 4 micro-batches of 2 equals one step on the batch of 8", arguments: TestBackend.all)
    func accumulation(_ tb: TestBackend) throws {
        let b = tb.backend
        let start = testValues(3, seed: 42)
        let full = Parameter(try Tensor(start, shape: [3, 1], on: b))
        let fullOpt = try SGD([full], learningRate: 0.1, momentum: 0.9)
        let micro = Parameter(try Tensor(start, shape: [3, 1], on: b))
        let microOpt = try GradientAccumulation(try SGD([micro], learningRate: 0.1, momentum: 0.9), microBatches: 4)
        for _ in 0..<3 {
            fullOpt.zeroGradients()
            try Self.loss(full, rows: 0..<8, on: b).backward()
            try fullOpt.step()
            for k in 0..<4 {
                try Self.loss(micro, rows: (2 * k)..<(2 * k + 2), on: b).backward()
                try microOpt.step()
                microOpt.zeroGradients()  // deferred until the 4th micro-batch
            }
        }
        #expect(microOpt.stepCount == 3)
        let expected = try full.value.scalars().map(Double.init)
        #expect(mismatch(try micro.value.scalars(), expected, tolerance: Tolerance(absolute: 1e-6, relative: 1e-5)) == nil)
        #expect(throws: TensorError.self) { try GradientAccumulation(fullOpt, microBatches: 0) }
    }
}
