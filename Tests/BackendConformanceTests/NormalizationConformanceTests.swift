import Foundation
import Kiln
import KilnTestSupport
import Testing

/// Which affine parameters a case passes.
enum NormAffine: String, Sendable { case none, weight, both }

/// Input values: uniform on [−2, 2], or with a large offset (mean 1e4, std ≈ 1e-2) to catch
/// cancellation in the variance.
func normInput(_ count: Int, seed: UInt64, offset: Bool) -> [Float] {
    offset ? testValues(count, seed: seed, range: -0.0173...0.0173).map { $0 + 10_000 }
           : testValues(count, seed: seed, range: -2...2)
}

/// Element errors allowed for gradients and sums whose size depends on the data: `relative` of the
/// largest expected magnitude, plus 1e-4 of each value.
func scaledTolerance(_ expected: [Double], _ relative: Double = 2e-5) -> Tolerance {
    Tolerance(absolute: relative * largestMagnitude(expected, floor: 1e-30), relative: 1e-4)
}

/// The tolerance of an input gradient: its terms σ·g·w (and σ·x̂·mean(g·w·x̂)) cancel, so the Float32
/// error scales with them, not with the result.
func inputGradientTolerance(_ g: [Float], _ w: [Float]?, _ sigma: [Double]) -> Tolerance {
    let terms = largestMagnitude(g.doubles) * largestMagnitude((w ?? [1]).doubles) * largestMagnitude(sigma)
    return Tolerance(absolute: 1e-5 * terms, relative: 1e-4)
}

/// Compares and records a failure that names the case and the quantity.
func expectClose(_ actual: Tensor?, _ expected: [Double], _ tolerance: Tolerance, _ what: String,
                 sourceLocation: SourceLocation = #_sourceLocation) throws {
    guard let actual else {
        Issue.record("\(what): missing", sourceLocation: sourceLocation)
        return
    }
    let problem = mismatch(try actual.scalars(), expected, tolerance: tolerance)
    #expect(problem == nil, "\(what): \(problem ?? "")", sourceLocation: sourceLocation)
}

struct RowNormCase: CustomStringConvertible, Sendable {
    let shape: [Int]
    /// How many trailing dimensions are normalized.
    let trailing: Int
    let affine: NormAffine
    var offset = false
    var description: String {
        "\(shape) over last \(trailing) affine:\(affine.rawValue)" + (offset ? " offset 1e4" : "")
    }
}

/// Rows of 1, 7, 4096 and 1,000,000 elements, two normalized dimensions, every affine combination,
/// large offsets, many rows, and outputs past the CPU backend's streaming-store threshold.
let rowNormCases: [RowNormCase] = [
    RowNormCase(shape: [1], trailing: 1, affine: .none),
    RowNormCase(shape: [4, 1], trailing: 1, affine: .both),
    RowNormCase(shape: [3, 7], trailing: 1, affine: .both),
    RowNormCase(shape: [2, 3, 4, 5], trailing: 2, affine: .weight),
    RowNormCase(shape: [5, 17], trailing: 1, affine: .none, offset: true),
    RowNormCase(shape: [5, 4096], trailing: 1, affine: .both),
    RowNormCase(shape: [3, 4096], trailing: 1, affine: .weight, offset: true),
    RowNormCase(shape: [1_000_000], trailing: 1, affine: .both),
    RowNormCase(shape: [1, 1_000_000], trailing: 1, affine: .none, offset: true),
    // Several threads' parameter-gradient accumulators, flushed every 32 rows.
    RowNormCase(shape: [67, 1000], trailing: 1, affine: .both),
    // Above the CPU backend's streaming-store threshold (2²² elements), rows not 64-byte aligned.
    RowNormCase(shape: [2, 2_100_001], trailing: 1, affine: .both),
]

struct GroupNormCase: CustomStringConvertible, Sendable {
    let shape: [Int]
    let groups: Int
    let affine: NormAffine
    var offset = false
    var description: String { "\(shape) groups \(groups) affine:\(affine.rawValue)" + (offset ? " offset 1e4" : "") }
}

let groupNormCases: [GroupNormCase] = [
    GroupNormCase(shape: [2, 6, 5], groups: 3, affine: .both),
    GroupNormCase(shape: [3, 4], groups: 2, affine: .weight),
    GroupNormCase(shape: [2, 4, 3, 3], groups: 1, affine: .both),
    GroupNormCase(shape: [2, 4, 7], groups: 4, affine: .none),
    GroupNormCase(shape: [2, 32, 1, 1], groups: 8, affine: .both),
    GroupNormCase(shape: [1, 8, 4096], groups: 2, affine: .both, offset: true),
    GroupNormCase(shape: [1, 4, 250_000], groups: 1, affine: .weight, offset: true),
    GroupNormCase(shape: [8, 16, 1000], groups: 4, affine: .both),
]

struct BatchNormCase: CustomStringConvertible, Sendable {
    let shape: [Int]
    let affine: NormAffine
    var offset = false
    var description: String { "\(shape) affine:\(affine.rawValue)" + (offset ? " offset 1e4" : "") }
}

/// [N, C] (spatial 1, across the 128-channel tiles), images, one channel of 10^6 elements, offsets.
let batchNormCases: [BatchNormCase] = [
    BatchNormCase(shape: [4, 3], affine: .both),
    BatchNormCase(shape: [3, 130], affine: .weight),
    BatchNormCase(shape: [7, 300], affine: .none, offset: true),
    BatchNormCase(shape: [5, 4, 1], affine: .both),
    BatchNormCase(shape: [2, 3, 5, 5], affine: .both),
    BatchNormCase(shape: [1, 2, 7], affine: .none),
    BatchNormCase(shape: [4, 2, 4096], affine: .both, offset: true),
    BatchNormCase(shape: [1, 1, 1_000_000], affine: .both, offset: true),
    // Above the streaming-store threshold, channel segments not 64-byte aligned.
    BatchNormCase(shape: [2, 2, 1_048_577], affine: .both),
]

@Suite("Normalization conformance")
struct NormalizationConformanceTests {
    // MARK: - Layer and RMS norm

    @Test("layerNorm and rmsNorm, forward and backward, against Float64", arguments: TestBackend.all, rowNormCases)
    func rowNorms(_ tb: TestBackend, _ c: RowNormCase) throws {
        let backend = tb.backend
        let total = c.shape.reduce(1, *)
        let normalizedShape = Array(c.shape.suffix(c.trailing))
        let count = normalizedShape.reduce(1, *), rows = total / count
        let x = normInput(total, seed: 11, offset: c.offset)
        let w = c.affine != .none ? testValues(count, seed: 12, range: 0.5...1.5) : nil
        let b = c.affine == .both ? testValues(count, seed: 13) : nil
        let g = testValues(total, seed: 14)
        let tx = try Tensor(x, shape: c.shape, on: backend)
        let tw = try w.map { try Tensor($0, shape: normalizedShape, on: backend) }
        let tbias = try b.map { try Tensor($0, shape: normalizedShape, on: backend) }
        let tg = try Tensor(g, shape: c.shape, on: backend)
        let layout = NormalizationOracle.Rows.layer(rows: rows, count: count)
        let statisticsShape = Array(c.shape.dropLast(c.trailing)) + [Int](repeating: 1, count: c.trailing)
        for rms in [false, true] {
            let name = "\(tb) \(rms ? "rmsNorm" : "layerNorm") \(c)"
            let eps = rms ? Double(Float.ulpOfOne) : 1e-5
            let expected = NormalizationOracle.rows(x.doubles, layout, weight: w?.doubles, bias: rms ? nil : b?.doubles,
                                                    eps: eps, rms: rms)
            let result = rms ? try rmsNormWithStatistics(tx, normalizedShape: normalizedShape, weight: tw)
                             : try layerNormWithStatistics(tx, normalizedShape: normalizedShape, weight: tw, bias: tbias)
            #expect(result.output.shape == c.shape, "\(name) output shape")
            #expect(result.inverseStandardDeviation.shape == statisticsShape, "\(name) statistics shape")
            try expectClose(result.output, expected.output, .reduction, "\(name) output")
            try expectClose(result.inverseStandardDeviation, expected.inverseStandardDeviation, .reduction, "\(name) σ")
            if rms {
                #expect(result.mean == nil, "\(name) has no mean")
            } else {
                try expectClose(result.mean, expected.mean, .reduction, "\(name) mean")
            }
            let plain = rms ? try rmsNorm(tx, normalizedShape: normalizedShape, weight: tw)
                            : try layerNorm(tx, normalizedShape: normalizedShape, weight: tw, bias: tbias)
            try expectClose(plain, expected.output, .reduction, "\(name) output (plain call)")

            let grads = rms
                ? try rmsNormBackward(tg, input: tx, normalizedShape: normalizedShape,
                                      inverseStandardDeviation: result.inverseStandardDeviation, weight: tw)
                : try layerNormBackward(tg, input: tx, normalizedShape: normalizedShape, mean: result.mean ?? tx,
                                        inverseStandardDeviation: result.inverseStandardDeviation, weight: tw, bias: tbias)
            let oracle = NormalizationOracle.rowsBackward(g.doubles, x.doubles, layout, weight: w?.doubles, eps: eps, rms: rms)
            try expectClose(grads.input, oracle.input, inputGradientTolerance(g, w, expected.inverseStandardDeviation),
                            "\(name) ∂input")
            #expect((grads.weight == nil) == (w == nil), "\(name) weight gradient present iff weight")
            if w != nil { try expectClose(grads.weight, oracle.weight, scaledTolerance(oracle.weight), "\(name) ∂weight") }
            if b != nil && !rms { try expectClose(grads.bias, oracle.bias, scaledTolerance(oracle.bias), "\(name) ∂bias") }
        }
    }

    // MARK: - Group norm

    @Test("groupNorm, forward and backward, against Float64", arguments: TestBackend.all, groupNormCases)
    func groupNorms(_ tb: TestBackend, _ c: GroupNormCase) throws {
        let backend = tb.backend
        let total = c.shape.reduce(1, *)
        let (n, channels) = (c.shape[0], c.shape[1])
        let spatial = c.shape[2...].reduce(1, *)
        let x = normInput(total, seed: 21, offset: c.offset)
        let w = c.affine != .none ? testValues(channels, seed: 22, range: 0.5...1.5) : nil
        let b = c.affine == .both ? testValues(channels, seed: 23) : nil
        let g = testValues(total, seed: 24)
        let tx = try Tensor(x, shape: c.shape, on: backend)
        let tw = try w.map { try Tensor($0, on: backend) }
        let tbias = try b.map { try Tensor($0, on: backend) }
        let layout = NormalizationOracle.Rows.group(batch: n, channels: channels, spatial: spatial, groups: c.groups)
        let expected = NormalizationOracle.rows(x.doubles, layout, weight: w?.doubles, bias: b?.doubles, eps: 1e-5)
        let name = "\(tb) groupNorm \(c)"
        let result = try groupNormWithStatistics(tx, groups: c.groups, weight: tw, bias: tbias)
        #expect(result.mean?.shape == [n, c.groups], "\(name) statistics shape")
        try expectClose(result.output, expected.output, .reduction, "\(name) output")
        try expectClose(result.mean, expected.mean, .reduction, "\(name) mean")
        try expectClose(result.inverseStandardDeviation, expected.inverseStandardDeviation, .reduction, "\(name) σ")
        try expectClose(try groupNorm(tx, groups: c.groups, weight: tw, bias: tbias), expected.output, .reduction,
                        "\(name) output (plain call)")
        let grads = try groupNormBackward(try Tensor(g, shape: c.shape, on: backend), input: tx, groups: c.groups,
                                          mean: result.mean ?? tx, inverseStandardDeviation: result.inverseStandardDeviation,
                                          weight: tw, bias: tbias)
        let oracle = NormalizationOracle.rowsBackward(g.doubles, x.doubles, layout, weight: w?.doubles, eps: 1e-5)
        try expectClose(grads.input, oracle.input, inputGradientTolerance(g, w, expected.inverseStandardDeviation),
                        "\(name) ∂input")
        if w != nil { try expectClose(grads.weight, oracle.weight, scaledTolerance(oracle.weight), "\(name) ∂weight") }
        if b != nil { try expectClose(grads.bias, oracle.bias, scaledTolerance(oracle.bias), "\(name) ∂bias") }
    }

    // MARK: - Batch norm

    @Test("batchNorm, training and inference, forward and backward, against Float64",
          arguments: TestBackend.all, batchNormCases)
    func batchNorms(_ tb: TestBackend, _ c: BatchNormCase) throws {
        let backend = tb.backend
        let total = c.shape.reduce(1, *)
        let (n, channels) = (c.shape[0], c.shape[1])
        let spatial = c.shape[2...].reduce(1, *)
        let x = normInput(total, seed: 31, offset: c.offset)
        let w = c.affine != .none ? testValues(channels, seed: 32, range: 0.5...1.5) : nil
        let b = c.affine == .both ? testValues(channels, seed: 33) : nil
        let rm = testValues(channels, seed: 34, range: -0.5...0.5).map { c.offset ? $0 + 10_000 : $0 }
        let rv = testValues(channels, seed: 35, range: 0.5...2)
        let g = testValues(total, seed: 36)
        let tx = try Tensor(x, shape: c.shape, on: backend)
        let tw = try w.map { try Tensor($0, on: backend) }
        let tbias = try b.map { try Tensor($0, on: backend) }
        let trm = try Tensor(rm, on: backend), trv = try Tensor(rv, on: backend)
        let tg = try Tensor(g, shape: c.shape, on: backend)
        for training in [true, false] {
            let name = "\(tb) batchNorm \(c) \(training ? "training" : "inference")"
            let expected = NormalizationOracle.batchNorm(x.doubles, batch: n, channels: channels, spatial: spatial,
                                                         weight: w?.doubles, bias: b?.doubles, runningMean: rm.doubles,
                                                         runningVariance: rv.doubles, training: training,
                                                         momentum: 0.1, eps: 1e-5)
            let result = try batchNorm(tx, runningMean: trm, runningVariance: trv, weight: tw, bias: tbias,
                                       training: training)
            try expectClose(result.output, expected.output, .reduction, "\(name) output")
            try expectClose(result.mean, expected.mean, .reduction, "\(name) mean")
            try expectClose(result.inverseStandardDeviation, expected.inverseStandardDeviation, .reduction, "\(name) σ")
            if training {
                try expectClose(result.runningMean, expected.runningMean ?? [], .reduction, "\(name) running mean")
                try expectClose(result.runningVariance, expected.runningVariance ?? [], .reduction, "\(name) running variance")
                let untracked = try batchNorm(tx, weight: tw, bias: tbias, training: true)
                #expect(untracked.runningMean == nil && untracked.runningVariance == nil, "\(name) no running statistics")
                try expectClose(untracked.output, expected.output, .reduction, "\(name) output without running statistics")
            } else {
                #expect(result.runningMean == nil, "\(name) inference returns no running statistics")
            }
            let grads = try batchNormBackward(tg, input: tx, mean: result.mean ?? tx,
                                              inverseStandardDeviation: result.inverseStandardDeviation,
                                              weight: tw, bias: tbias, training: training)
            let oracle = NormalizationOracle.batchNormBackward(g.doubles, x.doubles, batch: n, channels: channels,
                                                               spatial: spatial, weight: w?.doubles, runningMean: rm.doubles,
                                                               runningVariance: rv.doubles, training: training, eps: 1e-5)
            try expectClose(grads.input, oracle.input, inputGradientTolerance(g, w, expected.inverseStandardDeviation),
                            "\(name) ∂input")
            if w != nil { try expectClose(grads.weight, oracle.weight, scaledTolerance(oracle.weight), "\(name) ∂weight") }
            if b != nil { try expectClose(grads.bias, oracle.bias, scaledTolerance(oracle.bias), "\(name) ∂bias") }
        }
    }

    @Test("batchNorm running statistics over several training steps", arguments: TestBackend.all)
    func runningStatistics(_ tb: TestBackend) throws {
        let backend = tb.backend
        for shape in [[6, 5], [3, 4, 2, 3]] {
            let channels = shape[1], spatial = shape[2...].reduce(1, *)
            var oracleMean = [Double](repeating: 0, count: channels), oracleVariance = [Double](repeating: 1, count: channels)
            var runningMean = try Tensor.zeros([channels], on: backend)
            var runningVariance = try Tensor.ones([channels], on: backend)
            for step in 0..<5 {
                let x = testValues(shape.reduce(1, *), seed: 40 + UInt64(step), range: -1...3).map { $0 * Float(step + 1) }
                let momentum: Float = step == 3 ? 0.5 : 0.1
                let r = try batchNorm(Tensor(x, shape: shape, on: backend), runningMean: runningMean,
                                      runningVariance: runningVariance, training: true, momentum: momentum)
                let e = NormalizationOracle.batchNorm(x.doubles, batch: shape[0], channels: channels, spatial: spatial,
                                                      weight: nil, bias: nil, runningMean: oracleMean,
                                                      runningVariance: oracleVariance, training: true,
                                                      momentum: Double(momentum), eps: 1e-5)
                oracleMean = e.runningMean ?? []
                oracleVariance = e.runningVariance ?? []
                runningMean = try #require(r.runningMean)
                runningVariance = try #require(r.runningVariance)
                try expectClose(runningMean, oracleMean, .reduction, "\(tb) \(shape) step \(step) running mean")
                try expectClose(runningVariance, oracleVariance, .reduction, "\(tb) \(shape) step \(step) running variance")
            }
            // Inference with the accumulated statistics.
            let x = testValues(shape.reduce(1, *), seed: 49)
            let r = try batchNorm(Tensor(x, shape: shape, on: backend), runningMean: runningMean,
                                  runningVariance: runningVariance, training: false)
            let e = NormalizationOracle.batchNorm(x.doubles, batch: shape[0], channels: channels, spatial: spatial,
                                                  weight: nil, bias: nil, runningMean: oracleMean,
                                                  runningVariance: oracleVariance, training: false, momentum: 0, eps: 1e-5)
            try expectClose(r.output, e.output, .reduction, "\(tb) \(shape) inference after training")
        }
    }

    // MARK: - Instance norm

    @Test("instanceNorm with and without running statistics, forward and backward", arguments: TestBackend.all)
    func instanceNorms(_ tb: TestBackend) throws {
        let backend = tb.backend
        let cases: [([Int], NormAffine, Bool)] = [([2, 3, 7], .both, false), ([3, 2, 2, 3], .weight, false),
                                                  ([1, 2, 4096], .none, true), ([2, 2, 65_537], .both, false)]
        for (shape, affine, offset) in cases {
            let (n, channels) = (shape[0], shape[1])
            let spatial = shape[2...].reduce(1, *)
            let x = normInput(shape.reduce(1, *), seed: 51, offset: offset)
            let w = affine != .none ? testValues(channels, seed: 52, range: 0.5...1.5) : nil
            let b = affine == .both ? testValues(channels, seed: 53) : nil
            let rm = testValues(channels, seed: 54, range: -0.5...0.5), rv = testValues(channels, seed: 55, range: 0.5...2)
            let g = testValues(shape.reduce(1, *), seed: 56)
            let tx = try Tensor(x, shape: shape, on: backend)
            let tw = try w.map { try Tensor($0, on: backend) }
            let tbias = try b.map { try Tensor($0, on: backend) }
            for useInput in [true, false] {
                let name = "\(tb) instanceNorm \(shape) affine:\(affine.rawValue) \(useInput ? "input" : "running") statistics"
                let e = NormalizationOracle.instanceNorm(x.doubles, batch: n, channels: channels, spatial: spatial,
                                                         weight: w?.doubles, bias: b?.doubles, runningMean: rm.doubles,
                                                         runningVariance: rv.doubles, useInputStatistics: useInput,
                                                         momentum: 0.1, eps: 1e-5)
                let r = try instanceNorm(tx, runningMean: Tensor(rm, on: backend), runningVariance: Tensor(rv, on: backend),
                                         weight: tw, bias: tbias, useInputStatistics: useInput)
                #expect(r.mean?.shape == [n, channels], "\(name) statistics shape")
                try expectClose(r.output, e.output, .reduction, "\(name) output")
                try expectClose(r.mean, e.mean, .reduction, "\(name) mean")
                try expectClose(r.inverseStandardDeviation, e.inverseStandardDeviation, .reduction, "\(name) σ")
                if useInput {
                    try expectClose(r.runningMean, e.runningMean ?? [], .reduction, "\(name) running mean")
                    try expectClose(r.runningVariance, e.runningVariance ?? [], .reduction, "\(name) running variance")
                }
                let grads = try instanceNormBackward(try Tensor(g, shape: shape, on: backend), input: tx, mean: r.mean ?? tx,
                                                     inverseStandardDeviation: r.inverseStandardDeviation, weight: tw,
                                                     bias: tbias, useInputStatistics: useInput)
                let o = NormalizationOracle.instanceNormBackward(g.doubles, x.doubles, batch: n, channels: channels,
                                                                 spatial: spatial, weight: w?.doubles, runningMean: rm.doubles,
                                                                 runningVariance: rv.doubles, useInputStatistics: useInput,
                                                                 eps: 1e-5)
                try expectClose(grads.input, o.input, inputGradientTolerance(g, w, e.inverseStandardDeviation),
                                "\(name) ∂input")
                if w != nil { try expectClose(grads.weight, o.weight, scaledTolerance(o.weight), "\(name) ∂weight") }
                if b != nil { try expectClose(grads.bias, o.bias, scaledTolerance(o.bias), "\(name) ∂bias") }
            }
            let plain = try instanceNorm(tx, weight: tw, bias: tbias)
            #expect(plain.runningMean == nil, "\(tb) instanceNorm \(shape) without running statistics returns none")
        }
    }

    // MARK: - Local response norm

    @Test("localResponseNorm forward and backward against Float64", arguments: TestBackend.all)
    func localResponseNorms(_ tb: TestBackend) throws {
        let backend = tb.backend
        // (shape, size, alpha, beta, k): PyTorch's defaults, even and odd windows, size 1, a window wider
        // than the channels, β other than 0.75, and more positions than one CPU tile (64).
        let cases: [([Int], Int, Float, Float, Float)] = [
            ([2, 7, 5], 3, 1e-4, 0.75, 1), ([2, 7, 5], 3, 0.5, 0.75, 1), ([1, 5, 3, 3], 2, 0.8, 0.75, 2),
            ([2, 4, 6], 1, 0.3, 0.75, 1), ([1, 3, 70], 9, 0.9, 0.6, 1.5), ([2, 16, 65], 5, 0.4, 0.75, 1),
            ([1, 6, 1], 4, 1.2, 1.1, 0.5),
        ]
        for (shape, size, alpha, beta, k) in cases {
            let name = "\(tb) localResponseNorm \(shape) size \(size) α \(alpha) β \(beta) k \(k)"
            let (n, channels) = (shape[0], shape[1])
            let spatial = shape[2...].reduce(1, *)
            let x = testValues(shape.reduce(1, *), seed: 61, range: -3...3)
            let g = testValues(shape.reduce(1, *), seed: 62)
            let tx = try Tensor(x, shape: shape, on: backend)
            let y = try localResponseNorm(tx, size: size, alpha: alpha, beta: beta, k: k)
            let e = NormalizationOracle.localResponseNorm(x.doubles, batch: n, channels: channels, spatial: spatial,
                                                          size: size, alpha: Double(alpha), beta: Double(beta), k: Double(k))
            try expectClose(y, e, .reduction, "\(name) output")
            let dx = try localResponseNormBackward(try Tensor(g, shape: shape, on: backend), input: tx, size: size,
                                                   alpha: alpha, beta: beta, k: k)
            let de = NormalizationOracle.localResponseNormBackward(g.doubles, x.doubles, batch: n, channels: channels,
                                                                   spatial: spatial, size: size, alpha: Double(alpha),
                                                                   beta: Double(beta), k: Double(k))
            try expectClose(dx, de, scaledTolerance(de), "\(name) ∂input")
        }
    }

    // MARK: - Guard regions

    @Test("normalization kernels leave the guard region alone", arguments: TestBackend.all)
    func guardRegions(_ tb: TestBackend) throws {
        let backend = tb.backend
        let kernels = backend
        // Rows: 5 rows of 37 elements (group norm layout: 2 groups of 37 = 1 channel × 37? use layer).
        let rows = 5, count = 37
        let x = testValues(rows * count, seed: 71), g = testValues(rows * count, seed: 72)
        let w = testValues(count, seed: 73, range: 0.5...1.5), b = testValues(count, seed: 74)
        let bx = try upload(x, to: backend), bg = try upload(g, to: backend)
        let bw = try upload(w, to: backend), bb = try upload(b, to: backend)
        let d = RowNormalizationDescriptor(kind: .layer, rows: rows, channelsPerGroup: count, eps: 1e-5)
        let layout = NormalizationOracle.Rows.layer(rows: rows, count: count)
        let expected = NormalizationOracle.rows(x.doubles, layout, weight: w.doubles, bias: b.doubles, eps: 1e-5)
        let mean = try backend.allocate(count: rows), sigma = try backend.allocate(count: rows)
        let out = try backend.allocate(count: rows * count)
        for target in 0..<3 {
            let (values, intact) = try guardedOutput(on: backend, count: target == 0 ? rows * count : rows) { guarded in
                try kernels.rowNormalizationForward(d, input: bx, weight: bw, bias: bb, output: target == 0 ? guarded : out,
                                                    mean: target == 1 ? guarded : mean,
                                                    inverseStandardDeviation: target == 2 ? guarded : sigma)
            }
            #expect(intact, "\(tb) row forward output \(target) guard")
            let reference = [expected.output, expected.mean, expected.inverseStandardDeviation][target]
            #expect(mismatch(values, reference, tolerance: .reduction) == nil, "\(tb) row forward output \(target)")
        }
        let grads = NormalizationOracle.rowsBackward(g.doubles, x.doubles, layout, weight: w.doubles, eps: 1e-5)
        let dx = try backend.allocate(count: rows * count), dw = try backend.allocate(count: count)
        let db = try backend.allocate(count: count)
        for target in 0..<3 {
            let (values, intact) = try guardedOutput(on: backend, count: target == 0 ? rows * count : count) { guarded in
                try kernels.rowNormalizationBackward(d, outputGradient: bg, input: bx, weight: bw, mean: mean,
                                                     inverseStandardDeviation: sigma,
                                                     inputGradient: target == 0 ? guarded : dx,
                                                     weightGradient: target == 1 ? guarded : dw,
                                                     biasGradient: target == 2 ? guarded : db)
            }
            #expect(intact, "\(tb) row backward output \(target) guard")
            let reference = [grads.input, grads.weight, grads.bias][target]
            #expect(mismatch(values, reference, tolerance: scaledTolerance(reference)) == nil, "\(tb) row backward output \(target)")
        }

        // Channels: [3, 5, 7] in training with running statistics, then backward.
        let (n, channels, spatial) = (3, 5, 7)
        let cx = testValues(n * channels * spatial, seed: 75), cg = testValues(n * channels * spatial, seed: 76)
        let cw = testValues(channels, seed: 77, range: 0.5...1.5), cb = testValues(channels, seed: 78)
        let rm = testValues(channels, seed: 79), rv = testValues(channels, seed: 80, range: 0.5...2)
        let bcx = try upload(cx, to: backend), bcg = try upload(cg, to: backend), bcw = try upload(cw, to: backend)
        let bcb = try upload(cb, to: backend), brm = try upload(rm, to: backend), brv = try upload(rv, to: backend)
        let cd = ChannelNormalizationDescriptor(batch: n, channels: channels, spatial: spatial, eps: 1e-5, training: true)
        let ce = NormalizationOracle.batchNorm(cx.doubles, batch: n, channels: channels, spatial: spatial, weight: cw.doubles,
                                               bias: cb.doubles, runningMean: rm.doubles, runningVariance: rv.doubles,
                                               training: true, momentum: 0.1, eps: 1e-5)
        let cy = try backend.allocate(count: cx.count), cm = try backend.allocate(count: channels)
        let cs = try backend.allocate(count: channels), nm = try backend.allocate(count: channels)
        let nv = try backend.allocate(count: channels)
        for target in 0..<5 {
            let (values, intact) = try guardedOutput(on: backend, count: target == 0 ? cx.count : channels) { guarded in
                try kernels.channelNormalizationForward(cd, input: bcx, weight: bcw, bias: bcb, runningMean: brm,
                                                        runningVariance: brv, output: target == 0 ? guarded : cy,
                                                        mean: target == 1 ? guarded : cm,
                                                        inverseStandardDeviation: target == 2 ? guarded : cs,
                                                        updatedRunningMean: target == 3 ? guarded : nm,
                                                        updatedRunningVariance: target == 4 ? guarded : nv)
            }
            #expect(intact, "\(tb) channel forward output \(target) guard")
            let reference = [ce.output, ce.mean, ce.inverseStandardDeviation, ce.runningMean ?? [], ce.runningVariance ?? []][target]
            #expect(mismatch(values, reference, tolerance: .reduction) == nil, "\(tb) channel forward output \(target)")
        }
        let cgrads = NormalizationOracle.batchNormBackward(cg.doubles, cx.doubles, batch: n, channels: channels,
                                                           spatial: spatial, weight: cw.doubles, runningMean: nil,
                                                           runningVariance: nil, training: true, eps: 1e-5)
        let cdx = try backend.allocate(count: cx.count), cdw = try backend.allocate(count: channels)
        let cdb = try backend.allocate(count: channels)
        for target in 0..<3 {
            let (values, intact) = try guardedOutput(on: backend, count: target == 0 ? cx.count : channels) { guarded in
                try kernels.channelNormalizationBackward(cd, outputGradient: bcg, input: bcx, weight: bcw, mean: cm,
                                                         inverseStandardDeviation: cs,
                                                         inputGradient: target == 0 ? guarded : cdx,
                                                         weightGradient: target == 1 ? guarded : cdw,
                                                         biasGradient: target == 2 ? guarded : cdb)
            }
            #expect(intact, "\(tb) channel backward output \(target) guard")
            let reference = [cgrads.input, cgrads.weight, cgrads.bias][target]
            #expect(mismatch(values, reference, tolerance: scaledTolerance(reference)) == nil, "\(tb) channel backward output \(target)")
        }

        // Local response norm.
        let ld = LocalResponseNormalizationDescriptor(batch: n, channels: channels, spatial: spatial, size: 3, alpha: 0.5,
                                                      beta: 0.75, k: 1)
        let (ly, lyIntact) = try guardedOutput(on: backend, count: cx.count) { guarded in
            try kernels.localResponseNormalizationForward(ld, input: bcx, output: guarded)
        }
        #expect(lyIntact, "\(tb) LRN forward guard")
        #expect(mismatch(ly, NormalizationOracle.localResponseNorm(cx.doubles, batch: n, channels: channels, spatial: spatial,
                                                                    size: 3, alpha: 0.5, beta: 0.75, k: 1),
                         tolerance: .reduction) == nil, "\(tb) LRN forward")
        let (ldx, ldxIntact) = try guardedOutput(on: backend, count: cx.count) { guarded in
            try kernels.localResponseNormalizationBackward(ld, input: bcx, outputGradient: bcg, inputGradient: guarded)
        }
        #expect(ldxIntact, "\(tb) LRN backward guard")
        let lde = NormalizationOracle.localResponseNormBackward(cg.doubles, cx.doubles, batch: n, channels: channels,
                                                                spatial: spatial, size: 3, alpha: 0.5, beta: 0.75, k: 1)
        #expect(mismatch(ldx, lde, tolerance: scaledTolerance(lde)) == nil, "\(tb) LRN backward")
    }

    // MARK: - Edge cases and errors

    @Test("empty tensors, constant rows and NaN propagation", arguments: TestBackend.all)
    func edgeCases(_ tb: TestBackend) throws {
        let backend = tb.backend
        let empty = try layerNorm(Tensor.zeros([0, 5], on: backend), normalizedShape: [5])
        #expect(empty.shape == [0, 5])
        // A constant row has variance 0: the output is the bias (PyTorch gives the same).
        let constant = try layerNorm(Tensor.full([2, 9], value: 3.25, on: backend), normalizedShape: [9],
                                     bias: Tensor(testValues(9, seed: 81), on: backend))
        #expect(mismatch(try constant.scalars(), (testValues(9, seed: 81) + testValues(9, seed: 81)).doubles,
                         tolerance: .elementwise) == nil, "\(tb) constant rows")
        // A NaN makes its whole row (channel) NaN, as in PyTorch; other rows are unaffected.
        var values = testValues(2 * 33, seed: 82)
        values[40] = .nan
        let withNaN = try Tensor(values, shape: [2, 33], on: backend)
        for (name, y) in [("layerNorm", try layerNorm(withNaN, normalizedShape: [33])),
                          ("rmsNorm", try rmsNorm(withNaN, normalizedShape: [33])),
                          ("batchNorm", try batchNorm(withNaN.reshaped(to: [2, 3, 11]), training: true).output
                              .reshaped(to: [2, 33]))] {
            let v = try y.scalars()
            let nan = name == "batchNorm" ? Array(0..<11) + Array(33..<44) : Array(33..<66)
            let nanSet = Set(nan)
            // batchNorm: element 40 is sample 1, channel 0, so channel 0 of both samples is NaN.
            let nanIntact = nan.allSatisfy { v[$0].isNaN }
            let othersFinite = v.indices.allSatisfy { nanSet.contains($0) || v[$0].isFinite }
            #expect(nanIntact, "\(tb) \(name): the NaN's row (channel) is NaN")
            #expect(othersFinite, "\(tb) \(name): the other rows (channels) are finite")
        }
        let lrnEmpty = try localResponseNorm(Tensor.zeros([2, 0, 3], on: backend), size: 3)
        #expect(lrnEmpty.shape == [2, 0, 3])
        let bnEmpty = try batchNorm(Tensor.zeros([0, 3], on: backend), runningMean: Tensor.zeros([3], on: backend),
                                    runningVariance: Tensor.ones([3], on: backend))
        #expect(bnEmpty.output.shape == [0, 3])
    }

    @Test("typed errors for bad shapes, eps, momentum and arguments")
    func errors() throws {
        let cpu = CPUBackend.shared
        let x = try Tensor(testValues(24, seed: 91), shape: [2, 3, 4], on: cpu)
        func expectError(_ kind: TensorError.Kind, _ op: String, _ body: () throws -> Any,
                         sourceLocation: SourceLocation = #_sourceLocation) {
            do {
                _ = try body()
                Issue.record("\(op): expected a \(kind) error", sourceLocation: sourceLocation)
            } catch let error as TensorError {
                #expect(error.kind == kind && error.op == op, "\(error)", sourceLocation: sourceLocation)
            } catch {
                Issue.record("\(op): unexpected \(error)", sourceLocation: sourceLocation)
            }
        }
        expectError(.shapeMismatch, "layerNorm") { try layerNorm(x, normalizedShape: [3]) }
        expectError(.shapeMismatch, "layerNorm") { try layerNorm(x, normalizedShape: []) }
        expectError(.shapeMismatch, "layerNorm") { try layerNorm(x, normalizedShape: [1, 2, 3, 4]) }
        expectError(.shapeMismatch, "layerNorm") { try layerNorm(x, normalizedShape: [4], weight: Tensor.ones([3], on: cpu)) }
        expectError(.invalidArgument, "layerNorm") { try layerNorm(x, normalizedShape: [4], eps: .nan) }
        expectError(.invalidArgument, "layerNorm") { try layerNorm(x, normalizedShape: [4], eps: -1) }
        expectError(.invalidArgument, "rmsNorm") { try rmsNorm(x, normalizedShape: [4], eps: .infinity) }
        expectError(.shapeMismatch, "layerNormBackward") {
            try layerNormBackward(Tensor.ones([2, 3], on: cpu), input: x, normalizedShape: [4], mean: Tensor.ones([6], on: cpu),
                                  inverseStandardDeviation: Tensor.ones([6], on: cpu))
        }
        expectError(.shapeMismatch, "layerNormBackward") {
            try layerNormBackward(x, input: x, normalizedShape: [4], mean: Tensor.ones([5], on: cpu),
                                  inverseStandardDeviation: Tensor.ones([6], on: cpu))
        }
        expectError(.invalidArgument, "groupNorm") { try groupNorm(x, groups: 2) }
        expectError(.invalidArgument, "groupNorm") { try groupNorm(x, groups: 0) }
        expectError(.shapeMismatch, "groupNorm") { try groupNorm(Tensor.ones([3], on: cpu), groups: 1) }
        expectError(.shapeMismatch, "groupNorm") { try groupNorm(x, groups: 3, bias: Tensor.ones([4], on: cpu)) }
        expectError(.invalidArgument, "batchNorm") { try batchNorm(x, training: false) }
        expectError(.invalidArgument, "batchNorm") { try batchNorm(x, training: true, momentum: 1.5) }
        expectError(.invalidArgument, "batchNorm") { try batchNorm(x, training: true, momentum: .nan) }
        expectError(.invalidArgument, "batchNorm") { try batchNorm(x, training: true, momentum: -0.1) }
        expectError(.invalidArgument, "batchNorm") { try batchNorm(x, training: true, eps: .nan) }
        expectError(.invalidArgument, "batchNorm") { try batchNorm(x, runningMean: Tensor.zeros([3], on: cpu), training: true) }
        expectError(.shapeMismatch, "batchNorm") {
            try batchNorm(x, runningMean: Tensor.zeros([4], on: cpu), runningVariance: Tensor.ones([4], on: cpu), training: true)
        }
        expectError(.invalidArgument, "batchNorm") { try batchNorm(Tensor.ones([1, 3], on: cpu), training: true) }
        expectError(.shapeMismatch, "batchNorm") { try batchNorm(Tensor.ones([3], on: cpu), training: true) }
        expectError(.invalidArgument, "instanceNorm") { try instanceNorm(Tensor.ones([2, 3, 1], on: cpu)) }
        expectError(.shapeMismatch, "instanceNorm") { try instanceNorm(Tensor.ones([2, 3], on: cpu)) }
        expectError(.invalidArgument, "instanceNorm") { try instanceNorm(x, useInputStatistics: false) }
        expectError(.shapeMismatch, "batchNormBackward") {
            try batchNormBackward(x, input: x, mean: Tensor.zeros([4], on: cpu), inverseStandardDeviation: Tensor.ones([3], on: cpu))
        }
        expectError(.invalidArgument, "localResponseNorm") { try localResponseNorm(x, size: 0) }
        expectError(.invalidArgument, "localResponseNorm") { try localResponseNorm(x, size: 2, beta: .nan) }
        expectError(.shapeMismatch, "localResponseNorm") { try localResponseNorm(Tensor.ones([2, 3], on: cpu), size: 2) }
        expectError(.shapeMismatch, "localResponseNormBackward") {
            try localResponseNormBackward(Tensor.ones([2, 3, 5], on: cpu), input: x, size: 2)
        }
        if let cl = TestBackend.firstOpenCL {
            let w = try Tensor.ones([4], on: cl.backend)
            expectError(.backendMismatch, "layerNorm") { try layerNorm(x, normalizedShape: [4], weight: w) }
            let rm = try Tensor.zeros([3], on: cl.backend)
            expectError(.backendMismatch, "batchNorm") {
                try batchNorm(x, runningMean: rm, runningVariance: Tensor.ones([3], on: cpu), training: true)
            }
        }
    }

    // MARK: - The oracle's gradients against finite differences

    @Test("oracle gradients match central finite differences of the oracle forward passes")
    func oracleGradients() throws {
        func check(_ analytic: [Double], _ numeric: [Double], _ what: String,
                   sourceLocation: SourceLocation = #_sourceLocation) {
            let problem = mismatch(analytic.map { Float($0) }, numeric,
                                   tolerance: Tolerance(absolute: 1e-6 * largestMagnitude(numeric), relative: 1e-5))
            #expect(problem == nil, "\(what): \(problem ?? "")", sourceLocation: sourceLocation)
        }
        let eps = 1e-5
        // Layer, RMS and group norm with affine parameters.
        for (layout, name) in [(NormalizationOracle.Rows.layer(rows: 3, count: 5), "layer"),
                               (NormalizationOracle.Rows.group(batch: 2, channels: 4, spatial: 3, groups: 2), "group")] {
            for rms in name == "layer" ? [false, true] : [false] {
                let total = layout.rows * layout.count
                let x = testValues(total, seed: 101).doubles, g = testValues(total, seed: 102).doubles
                let w = testValues(layout.parameterCount, seed: 103, range: 0.5...1.5).doubles
                let b = testValues(layout.parameterCount, seed: 104).doubles
                let a = NormalizationOracle.rowsBackward(g, x, layout, weight: w, eps: eps, rms: rms)
                let label = rms ? "rms" : name
                check(a.input, NormalizationOracle.finiteDifference(x, g) {
                    NormalizationOracle.rows($0, layout, weight: w, bias: b, eps: eps, rms: rms).output
                }, "\(label) ∂input")
                check(a.weight, NormalizationOracle.finiteDifference(w, g) {
                    NormalizationOracle.rows(x, layout, weight: $0, bias: b, eps: eps, rms: rms).output
                }, "\(label) ∂weight")
                check(a.bias, NormalizationOracle.finiteDifference(b, g) {
                    NormalizationOracle.rows(x, layout, weight: w, bias: $0, eps: eps, rms: rms).output
                }, "\(label) ∂bias")
            }
        }
        // Batch norm, training and inference; instance norm.
        let (n, c, s) = (3, 2, 4)
        let x = testValues(n * c * s, seed: 105).doubles, g = testValues(n * c * s, seed: 106).doubles
        let w = testValues(c, seed: 107, range: 0.5...1.5).doubles, b = testValues(c, seed: 108).doubles
        let rm = testValues(c, seed: 109).doubles, rv = testValues(c, seed: 110, range: 0.5...2).doubles
        for training in [true, false] {
            let a = NormalizationOracle.batchNormBackward(g, x, batch: n, channels: c, spatial: s, weight: w,
                                                          runningMean: rm, runningVariance: rv, training: training, eps: eps)
            func forward(_ x: [Double], _ w: [Double], _ b: [Double]) -> [Double] {
                NormalizationOracle.batchNorm(x, batch: n, channels: c, spatial: s, weight: w, bias: b, runningMean: rm,
                                              runningVariance: rv, training: training, momentum: 0.1, eps: eps).output
            }
            check(a.input, NormalizationOracle.finiteDifference(x, g) { forward($0, w, b) }, "batch \(training) ∂input")
            check(a.weight, NormalizationOracle.finiteDifference(w, g) { forward(x, $0, b) }, "batch \(training) ∂weight")
            check(a.bias, NormalizationOracle.finiteDifference(b, g) { forward(x, w, $0) }, "batch \(training) ∂bias")
            let ai = NormalizationOracle.instanceNormBackward(g, x, batch: n, channels: c, spatial: s, weight: w,
                                                              runningMean: rm, runningVariance: rv,
                                                              useInputStatistics: training, eps: eps)
            func instance(_ x: [Double], _ w: [Double], _ b: [Double]) -> [Double] {
                NormalizationOracle.instanceNorm(x, batch: n, channels: c, spatial: s, weight: w, bias: b, runningMean: rm,
                                                 runningVariance: rv, useInputStatistics: training, momentum: 0.1,
                                                 eps: eps).output
            }
            check(ai.input, NormalizationOracle.finiteDifference(x, g) { instance($0, w, b) }, "instance \(training) ∂input")
            check(ai.weight, NormalizationOracle.finiteDifference(w, g) { instance(x, $0, b) }, "instance \(training) ∂weight")
            check(ai.bias, NormalizationOracle.finiteDifference(b, g) { instance(x, w, $0) }, "instance \(training) ∂bias")
        }
        // Local response norm, odd and even windows.
        for size in [3, 2, 6] {
            let (ln, lc, ls) = (2, 5, 3)
            let lx = testValues(ln * lc * ls, seed: 111, range: -3...3).doubles, lg = testValues(ln * lc * ls, seed: 112).doubles
            let analytic = NormalizationOracle.localResponseNormBackward(lg, lx, batch: ln, channels: lc, spatial: ls,
                                                                         size: size, alpha: 0.7, beta: 0.75, k: 1.5)
            check(analytic, NormalizationOracle.finiteDifference(lx, lg) {
                NormalizationOracle.localResponseNorm($0, batch: ln, channels: lc, spatial: ls, size: size, alpha: 0.7,
                                                      beta: 0.75, k: 1.5)
            }, "LRN size \(size) ∂input")
        }
    }

    // MARK: - CPU SIMD levels

    @Test("CPU normalization kernels at every SIMD level")
    func simdLevels() throws {
        let backend = CPUBackend.shared
        let original = CPUBackend.forceSIMDLevel(2)
        defer { CPUBackend.forceSIMDLevel(original) }
        for requested in [0, 1, 2] {
            let level = CPUBackend.forceSIMDLevel(requested)
            let x = normInput(7 * 301, seed: 121, offset: requested == 1)
            let w = testValues(301, seed: 122, range: 0.5...1.5), b = testValues(301, seed: 123)
            let g = testValues(7 * 301, seed: 124)
            let tx = try Tensor(x, shape: [7, 301], on: backend)
            let tw = try Tensor(w, on: backend), tbias = try Tensor(b, on: backend)
            let r = try layerNormWithStatistics(tx, normalizedShape: [301], weight: tw, bias: tbias)
            let layout = NormalizationOracle.Rows.layer(rows: 7, count: 301)
            let expected = NormalizationOracle.rows(x.doubles, layout, weight: w.doubles, bias: b.doubles, eps: 1e-5)
            try expectClose(r.output, expected.output, .reduction, "level \(level) layerNorm")
            let grads = try layerNormBackward(try Tensor(g, shape: [7, 301], on: backend), input: tx, normalizedShape: [301],
                                              mean: r.mean ?? tx, inverseStandardDeviation: r.inverseStandardDeviation,
                                              weight: tw, bias: tbias)
            let o = NormalizationOracle.rowsBackward(g.doubles, x.doubles, layout, weight: w.doubles, eps: 1e-5)
            try expectClose(grads.input, o.input, inputGradientTolerance(g, w, expected.inverseStandardDeviation), "level \(level) layerNorm ∂input")
            try expectClose(grads.weight, o.weight, scaledTolerance(o.weight), "level \(level) layerNorm ∂weight")
            let bx = testValues(3 * 5 * 33, seed: 125)
            let bn = try batchNorm(Tensor(bx, shape: [3, 5, 33], on: backend), training: true)
            try expectClose(bn.output, NormalizationOracle.batchNorm(bx.doubles, batch: 3, channels: 5, spatial: 33, weight: nil,
                                                                     bias: nil, runningMean: nil, runningVariance: nil,
                                                                     training: true, momentum: 0.1, eps: 1e-5).output,
                            .reduction, "level \(level) batchNorm")
            let lx = testValues(2 * 6 * 70, seed: 126)
            try expectClose(try localResponseNorm(Tensor(lx, shape: [2, 6, 70], on: backend), size: 3, alpha: 0.5),
                            NormalizationOracle.localResponseNorm(lx.doubles, batch: 2, channels: 6, spatial: 70, size: 3,
                                                                  alpha: 0.5, beta: 0.75, k: 1),
                            .reduction, "level \(level) localResponseNorm")
        }
    }
}
