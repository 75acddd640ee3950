import Foundation
import Kiln
import KilnTestSupport
import Testing

/// One attention configuration.
struct AttentionCase: CustomStringConvertible, Sendable {
    enum MaskKind: String, Sendable { case none, additive, boolean, fullyMaskedRows }
    var batch = 1, heads = 2, kvHeads = 2, seqQ = 5, seqK = 5, headDim = 8, valueDim = 8
    var causal = false
    var window: Int? = nil
    var mask = MaskKind.none
    var dropout: Float = 0

    var description: String {
        "B\(batch) H\(heads)/\(kvHeads) Lq\(seqQ) Lk\(seqK) D\(headDim)/\(valueDim)"
            + (causal ? " causal" : "") + (window.map { " window\($0)" } ?? "")
            + (mask == .none ? "" : " mask:\(mask.rawValue)") + (dropout > 0 ? " dropout\(dropout)" : "")
    }
}

/// Seq 1, primes, the CPU tiles (256 × 512) and OpenCL blocks (8 × 64) ± 1, seqQ ≠ seqK, GQA,
/// causal, windows, both mask kinds, fully masked rows, dropout, and head dims from 1 to 256.
let attentionCases: [AttentionCase] = [
    AttentionCase(seqQ: 1, seqK: 1, headDim: 1, valueDim: 1),
    AttentionCase(seqQ: 1, seqK: 37, headDim: 3, valueDim: 5),
    AttentionCase(seqQ: 37, seqK: 1),
    AttentionCase(seqQ: 7, seqK: 9, causal: true),
    AttentionCase(seqQ: 13, seqK: 5, causal: true),
    AttentionCase(heads: 4, kvHeads: 2, seqQ: 9, seqK: 65, headDim: 16, valueDim: 16),
    AttentionCase(heads: 4, kvHeads: 1, seqQ: 63, seqK: 63, headDim: 64, valueDim: 64, causal: true),
    AttentionCase(seqQ: 40, seqK: 40, window: 7),
    AttentionCase(batch: 2, seqQ: 9, seqK: 70, mask: .additive),
    AttentionCase(batch: 2, seqQ: 11, seqK: 17, causal: true, mask: .boolean),
    AttentionCase(seqQ: 6, seqK: 10, mask: .fullyMaskedRows),
    AttentionCase(seqQ: 6, seqK: 10, causal: true, mask: .fullyMaskedRows),
    AttentionCase(seqQ: 33, seqK: 129, dropout: 0.3),
    AttentionCase(heads: 2, kvHeads: 1, seqQ: 17, seqK: 17, causal: true, dropout: 0.25),
    AttentionCase(heads: 1, kvHeads: 1, seqQ: 5, seqK: 11, headDim: 256, valueDim: 256),
    AttentionCase(heads: 1, kvHeads: 1, seqQ: 9, seqK: 12, headDim: 128, valueDim: 24),
    AttentionCase(heads: 1, kvHeads: 1, seqQ: 257, seqK: 513, headDim: 16, valueDim: 8),
    AttentionCase(heads: 1, kvHeads: 1, seqQ: 255, seqK: 511, headDim: 8, valueDim: 16, causal: true),
    AttentionCase(heads: 1, kvHeads: 1, seqQ: 131, seqK: 300, headDim: 32, valueDim: 32, window: 50),
]

/// The inputs of one case, as tensors on `backend` and as the oracle's Float64 arrays.
struct AttentionInputs {
    let query: Tensor, key: Tensor, value: Tensor, gradient: Tensor
    let mask: AttentionMask?
    let oracle: AttentionOracle.Inputs
    let descriptor: AttentionDescriptor
    let gradientValues: [Double]

    init(_ c: AttentionCase, on backend: any Backend, seed: UInt64 = 1) throws {
        let q = testValues(c.batch * c.heads * c.seqQ * c.headDim, seed: seed, range: -1.5...1.5)
        let k = testValues(c.batch * c.kvHeads * c.seqK * c.headDim, seed: seed + 1, range: -1.5...1.5)
        let v = testValues(c.batch * c.kvHeads * c.seqK * c.valueDim, seed: seed + 2)
        let g = testValues(c.batch * c.heads * c.seqQ * c.valueDim, seed: seed + 3)
        query = try Tensor(q, shape: [c.batch, c.heads, c.seqQ, c.headDim], on: backend)
        key = try Tensor(k, shape: [c.batch, c.kvHeads, c.seqK, c.headDim], on: backend)
        value = try Tensor(v, shape: [c.batch, c.kvHeads, c.seqK, c.valueDim], on: backend)
        gradient = try Tensor(g, shape: [c.batch, c.heads, c.seqQ, c.valueDim], on: backend)
        gradientValues = g.map(Double.init)
        var maskValues: [Double]?
        var maskShape: [Int] = []
        switch c.mask {
        case .none:
            mask = nil
        case .additive:
            // [seqQ, seqK], broadcast over batch and heads; some keys hidden with −∞.
            maskShape = [c.seqQ, c.seqK]
            let values = testValues(c.seqQ * c.seqK, seed: seed + 4, range: -2...1).enumerated()
                .map { $0.offset % 7 == 3 ? -Float.infinity : $0.element }
            maskValues = values.map(Double.init)
            mask = .additive(try Tensor(values, shape: maskShape, on: backend))
        case .boolean:
            // [batch, 1, 1, seqK]: a key-padding mask.
            maskShape = [c.batch, 1, 1, c.seqK]
            let keepValues = (0..<(c.batch * c.seqK)).map { Float(($0 % 5 == 4) ? 0 : 1) }
            maskValues = keepValues.map { $0 != 0 ? 0 : -.infinity }
            mask = .boolean(try Tensor(keepValues, shape: maskShape, on: backend))
        case .fullyMaskedRows:
            // Rows 0 and 3 see nothing.
            maskShape = [1, 1, c.seqQ, c.seqK]
            let values = (0..<(c.seqQ * c.seqK)).map { ($0 / c.seqK == 0 || $0 / c.seqK == 3) ? -Float.infinity : 0 }
            maskValues = values.map(Double.init)
            mask = .additive(try Tensor(values, shape: maskShape, on: backend))
        }
        let strides = maskValues == nil ? nil
            : Shape.broadcastStrides(maskShape, to: [c.batch, c.heads, c.seqQ, c.seqK])
        descriptor = AttentionDescriptor(batch: c.batch, heads: c.heads, kvHeads: c.kvHeads, seqQ: c.seqQ, seqK: c.seqK,
                                         headDim: c.headDim, valueDim: c.valueDim,
                                         scale: 1 / Float(c.headDim).squareRoot(), isCausal: c.causal,
                                         window: c.window ?? 0, maskStrides: strides, dropout: c.dropout, seed: 99)
        oracle = AttentionOracle.Inputs(query: q.map(Double.init), key: k.map(Double.init), value: v.map(Double.init),
                                        mask: maskValues)
    }

    func forward(_ c: AttentionCase, _ implementation: AttentionImplementation) throws -> AttentionResult {
        try scaledDotProductAttention(query: query, key: key, value: value, mask: mask, isCausal: c.causal,
                                      dropout: c.dropout, seed: 99, window: c.window, implementation: implementation)
    }

    func backward(_ c: AttentionCase, _ forward: AttentionResult, _ implementation: AttentionImplementation) throws
        -> AttentionGradients
    {
        try scaledDotProductAttentionBackward(query: query, key: key, value: value, output: forward.output,
                                              logSumExp: forward.logSumExp, outputGradient: gradient, mask: mask,
                                              isCausal: c.causal, dropout: c.dropout, seed: 99, window: c.window,
                                              implementation: implementation)
    }
}

let attentionTolerance = Tolerance(absolute: 2e-5, relative: 2e-4)

@Suite("Attention conformance")
struct AttentionConformanceTests {
    @Test("forward and backward against the Float64 oracle", arguments: TestBackend.all, attentionCases)
    func againstOracle(_ tb: TestBackend, _ c: AttentionCase) throws {
        let x = try AttentionInputs(c, on: tb.backend)
        let expected = AttentionOracle.forward(x.descriptor, x.oracle)
        let grads = AttentionOracle.backward(x.descriptor, x.oracle, outputGradient: x.gradientValues)
        for implementation in [AttentionImplementation.flash, .naive] {
            let label = "\(tb) \(c) \(implementation)"
            let result = try x.forward(c, implementation)
            let out = try result.output.scalars()
            #expect(!out.contains { $0.isNaN }, "\(label): NaN in the output")
            #expect(mismatch(out, expected.output, tolerance: attentionTolerance) == nil,
                    "\(label) output: \(mismatch(out, expected.output, tolerance: attentionTolerance) ?? "")")
            let lse = try result.logSumExp.scalars()
            #expect(mismatch(lse, expected.logSumExp, tolerance: attentionTolerance) == nil,
                    "\(label) logSumExp: \(mismatch(lse, expected.logSumExp, tolerance: attentionTolerance) ?? "")")
            let g = try x.backward(c, result, implementation)
            for (name, got, want) in [("dQ", g.query, grads.query), ("dK", g.key, grads.key), ("dV", g.value, grads.value)] {
                let values = try got.scalars()
                let problem = mismatch(values, want, tolerance: attentionTolerance)
                #expect(problem == nil, "\(label) \(name): \(problem ?? "")")
            }
        }
    }

    /// The oracle's gradients against central differences of the oracle's forward, all in Float64.
    @Test("oracle gradients match finite differences", arguments: [
        AttentionCase(heads: 2, kvHeads: 1, seqQ: 4, seqK: 6, headDim: 3, valueDim: 2, causal: true),
        AttentionCase(seqQ: 5, seqK: 3, headDim: 2, valueDim: 3, mask: .additive, dropout: 0.3),
        AttentionCase(seqQ: 6, seqK: 6, headDim: 2, valueDim: 2, window: 2),
    ])
    func finiteDifferences(_ c: AttentionCase) throws {
        let x = try AttentionInputs(c, on: CPUBackend.shared)
        let d = x.descriptor
        let analytic = AttentionOracle.backward(d, x.oracle, outputGradient: x.gradientValues)
        func loss(_ inputs: AttentionOracle.Inputs) -> Double {
            zip(AttentionOracle.forward(d, inputs).output, x.gradientValues).map(*).reduce(0, +)
        }
        let h = 1e-6
        for (name, path, grad) in [("query", \AttentionOracle.Inputs.query, analytic.query),
                                   ("key", \AttentionOracle.Inputs.key, analytic.key),
                                   ("value", \AttentionOracle.Inputs.value, analytic.value)] {
            for i in x.oracle[keyPath: path].indices {
                var plus = x.oracle, minus = x.oracle
                plus[keyPath: path][i] += h
                minus[keyPath: path][i] -= h
                let numeric = (loss(plus) - loss(minus)) / (2 * h)
                #expect(Swift.abs(numeric - grad[i]) <= 1e-6 + 1e-5 * Swift.abs(numeric), "\(c) d\(name)[\(i)]: \(grad[i]) vs \(numeric)")
            }
        }
    }

    /// FlashAttention's accuracy rule: the flash kernel's error is at most twice the naive
    /// Float32 path's, both measured against Float64.
    @Test("flash error ≤ 2 × naive error", arguments: TestBackend.all)
    func flashAccuracy(_ tb: TestBackend) throws {
        let c = AttentionCase(heads: 2, kvHeads: 2, seqQ: 200, seqK: 600, headDim: 64, valueDim: 64, causal: true)
        let x = try AttentionInputs(c, on: tb.backend, seed: 7)
        let expected = AttentionOracle.forward(x.descriptor, x.oracle).output
        func error(_ implementation: AttentionImplementation) throws -> Double {
            let out = try x.forward(c, implementation).output.scalars()
            return zip(out, expected).map { Swift.abs(Double($0) - $1) }.max() ?? 0
        }
        let flash = try error(.flash), naive = try error(.naive)
        #expect(flash <= 2 * naive, "\(tb): flash error \(flash) vs naive \(naive)")
    }

    @Test("dropout drops the same entries on every backend, at the requested rate")
    func dropoutAgreement() throws {
        let c = AttentionCase(heads: 1, kvHeads: 1, seqQ: 64, seqK: 200, headDim: 8, valueDim: 8, dropout: 0.4)
        var outputs: [(String, [Float])] = []
        for tb in TestBackend.all {
            let x = try AttentionInputs(c, on: tb.backend)
            outputs.append((tb.name, try x.forward(c, .flash).output.scalars()))
        }
        for (name, values) in outputs.dropFirst() {
            #expect(mismatch(values, outputs[0].1.map(Double.init), tolerance: attentionTolerance) == nil,
                    "\(name) differs from \(outputs[0].0)")
        }
        let keep = Philox.samples(.uniform(low: 0, high: 1), seed: 99, count: 64 * 200).filter { $0 >= 0.4 }.count
        #expect(Swift.abs(Double(keep) / Double(64 * 200) - 0.6) < 0.02)
    }

    @Test("empty sequences: zero output, −∞ logsumexp and zero gradients", arguments: TestBackend.all)
    func emptySequences(_ tb: TestBackend) throws {
        for (seqQ, seqK) in [(5, 0), (0, 7)] {
            let q = try Tensor(testValues(2 * seqQ * 8, seed: 1), shape: [1, 2, seqQ, 8], on: tb.backend)
            let k = try Tensor(testValues(2 * seqK * 8, seed: 2), shape: [1, 2, seqK, 8], on: tb.backend)
            let v = try Tensor(testValues(2 * seqK * 8, seed: 3), shape: [1, 2, seqK, 8], on: tb.backend)
            let r = try scaledDotProductAttention(query: q, key: k, value: v, implementation: .flash)
            #expect(try r.output.scalars().allSatisfy { $0 == 0 }, "\(tb) Lq\(seqQ) Lk\(seqK)")
            #expect(try r.logSumExp.scalars().allSatisfy { $0 == -.infinity })
            // Leave NaN-filled buffers in the pool, so gradient elements left unwritten would show.
            var garbage = try (0..<6).map { _ in try Tensor.full([100], value: .nan, on: tb.backend) }
            garbage += try (0..<6).map { _ in try Tensor.full([10], value: .nan, on: tb.backend) }
            garbage.removeAll()
            let g = try scaledDotProductAttentionBackward(
                query: q, key: k, value: v, output: r.output, logSumExp: r.logSumExp,
                outputGradient: Tensor.ones(r.output.shape, on: tb.backend), implementation: .flash)
            for t in [g.query, g.key, g.value] {
                #expect(try t.scalars().allSatisfy { $0 == 0 }, "\(tb) Lq\(seqQ) Lk\(seqK): \(t.shape)")
            }
        }
    }

    @Test("invalid arguments throw typed errors")
    func errors() throws {
        let b = CPUBackend.shared
        let q = try Tensor.zeros([1, 4, 5, 8], on: b)
        let k = try Tensor.zeros([1, 3, 5, 8], on: b)
        #expect(throws: TensorError.self) { try scaledDotProductAttention(query: q, key: k, value: k) }
        let k2 = try Tensor.zeros([1, 2, 5, 7], on: b)
        #expect(throws: TensorError.self) { try scaledDotProductAttention(query: q, key: k2, value: k2) }
        let good = try Tensor.zeros([1, 2, 5, 8], on: b)
        #expect(throws: TensorError.self) { try scaledDotProductAttention(query: q, key: good, value: good, dropout: 1) }
        #expect(throws: TensorError.self) { try scaledDotProductAttention(query: q, key: good, value: good, dropout: .nan) }
        #expect(throws: TensorError.self) { try scaledDotProductAttention(query: q, key: good, value: good, window: 0) }
        let badMask = try Tensor.zeros([3, 5], on: b)
        #expect(throws: TensorError.self) {
            try scaledDotProductAttention(query: q, key: good, value: good, mask: .additive(badMask))
        }
        do {
            _ = try scaledDotProductAttention(query: q, key: k, value: k)
        } catch let error as TensorError {
            #expect(error.description.contains("scaledDotProductAttention"))
            #expect(error.description.contains("3") && error.description.contains("4"))
        }
    }
}
