import Foundation
import Kiln
import KilnTestSupport
import Testing

private typealias Oracle = TransformerOracle


private func values(_ count: Int, seed: UInt64, range: ClosedRange<Double> = -1...1) -> [Float] {
    testValues(count, seed: seed, range: range)
}

/// One multi-head attention configuration checked against the Float64 oracle.
struct MHACase: CustomStringConvertible, Sendable {
    enum MaskKind: Sendable { case none, additive, disallowed, allowed, disallowedPerHead }

    var name: String
    var batch = 2, target = 5, source = 5
    var embedDim = 8, heads = 2, kvHeads: Int? = nil
    var kdim: Int? = nil, vdim: Int? = nil
    var batchFirst = false
    var selfAttention = true
    var padding = false
    var mask = MaskKind.none
    var causal = false
    var unbatched = false

    var description: String { name }

    static let all: [MHACase] = [
        MHACase(name: "self, sequence-first"),
        MHACase(name: "self, batch-first", batchFirst: true),
        MHACase(name: "self, one head, odd sizes", batch: 3, target: 7, source: 7, embedDim: 5, heads: 1),
        MHACase(name: "key padding", padding: true),
        MHACase(name: "causal", causal: true),
        MHACase(name: "causal cross L<S", target: 3, source: 6, selfAttention: false, causal: true),
        MHACase(name: "additive [L, S] mask", mask: .additive),
        MHACase(name: "boolean disallowed [L, S] mask", batchFirst: true, mask: .disallowed),
        MHACase(name: "boolean allowed [L, S] mask", mask: .allowed),
        MHACase(name: "boolean [B·H, L, S] mask + padding + causal", padding: true, mask: .disallowedPerHead, causal: true),
        MHACase(name: "cross, kdim/vdim", target: 4, source: 6, kdim: 3, vdim: 7, selfAttention: false),
        MHACase(name: "cross, kdim/vdim, batch-first, padding", target: 4, source: 6, kdim: 6, vdim: 3,
                batchFirst: true, selfAttention: false, padding: true),
        MHACase(name: "GQA 4 heads / 2 kv heads", embedDim: 8, heads: 4, kvHeads: 2),
        MHACase(name: "GQA 4 heads / 1 kv head, cross, causal", target: 4, source: 6, embedDim: 8, heads: 4, kvHeads: 1,
                selfAttention: false, causal: true),
        MHACase(name: "unbatched, per-head mask", batch: 1, mask: .disallowedPerHead, unbatched: true),
    ]
}

/// Inputs, masks and the oracle's view of one case.
private struct MHAProblem {
    let layer: MultiHeadAttention
    let query: Tensor, key: Tensor, value: Tensor
    let padding: Tensor?
    let mask: MultiHeadAttention.Mask?
    /// Oracle inputs, batch-first.
    let q: [Double], k: [Double], v: [Double]
    let masks: TransformerOracle.Masks
    let config: TransformerOracle.AttentionConfig

    init(_ c: MHACase, on backend: any Backend, seed: UInt64 = 11) throws {
        layer = try MultiHeadAttention(embedDim: c.embedDim, numHeads: c.heads, kdim: c.kdim, vdim: c.vdim,
                                       batchFirst: c.batchFirst, numKeyValueHeads: c.kvHeads, seed: seed, on: backend)
        try Oracle.randomizeParameters(layer, seed: seed)
        layer.eval()
        config = .init(embedDim: c.embedDim, heads: c.heads, kvHeads: c.kvHeads ?? c.heads, kdim: layer.kdim, vdim: layer.vdim)
        let (b, l, s) = (c.batch, c.target, c.source)
        // Batch-first data; the layer sees it in its own layout.
        let qb = values(b * l * c.embedDim, seed: seed + 1)
        let kb = c.selfAttention ? qb : values(b * s * layer.kdim, seed: seed + 2)
        let vb = c.selfAttention ? qb : values(b * s * layer.vdim, seed: seed + 3)
        func shaped(_ x: [Float], _ n: Int, _ f: Int) throws -> Tensor {
            if c.unbatched { return try Tensor(x, shape: [n, f], on: backend) }
            if c.batchFirst { return try Tensor(x, shape: [b, n, f], on: backend) }
            let swapped = Oracle.swapLeadingAxes(x.map(Double.init), b, n, f).map(Float.init)
            return try Tensor(swapped, shape: [n, b, f], on: backend)
        }
        query = try shaped(qb, l, c.embedDim)
        key = c.selfAttention ? query : try shaped(kb, s, layer.kdim)
        value = c.selfAttention ? query : try shaped(vb, s, layer.vdim)
        (q, k, v) = (qb.map(Double.init), kb.map(Double.init), vb.map(Double.init))

        var masks = TransformerOracle.Masks(isCausal: c.causal)
        if c.padding {
            // Batch 0 hides its last two keys, batch 1 its first.
            var pad = [Float](repeating: 0, count: b * s)
            pad[s - 1] = 1
            pad[s - 2] = 1
            if b > 1 { pad[s] = 1 }
            padding = try Tensor(pad, shape: c.unbatched ? [s] : [b, s], on: backend)
            masks.padding = pad.map(Double.init)
        } else {
            padding = nil
        }
        switch c.mask {
        case .none: mask = nil
        case .additive:
            let add = values(l * s, seed: seed + 4, range: -2...1)
            mask = .additive(try Tensor(add, shape: [l, s], on: backend))
            masks.attn = add.map(Double.init)
        case .disallowed, .allowed, .disallowedPerHead:
            let perHead = c.mask == .disallowedPerHead
            let count = (perHead ? b * c.heads : 1) * l * s
            // Hide about a third of the pairs, never a whole row.
            var hidden = values(count, seed: seed + 5, range: 0...1).map { $0 < 0.35 ? Float(1) : 0 }
            for r in 0..<(count / s) { hidden[r * s + (r % s)] = 0 }
            masks.attn = hidden.map { $0 != 0 ? -.infinity : 0 }
            masks.attnPerHead = perHead
            let shape = perHead ? [(c.unbatched ? 1 : b) * c.heads, l, s] : [l, s]
            if c.mask == .allowed {
                mask = .allowed(try Tensor(hidden.map { 1 - $0 }, shape: shape, on: backend))
            } else {
                mask = .disallowed(try Tensor(hidden, shape: shape, on: backend))
            }
        }
        self.masks = masks
    }

    /// The layer's output (in its layout) as batch-first values.
    func batchFirst(_ output: Tensor, _ c: MHACase) throws -> [Double] {
        let y = try output.scalars().map(Double.init)
        if c.unbatched || c.batchFirst { return y }
        return Oracle.swapLeadingAxes(y, c.target, c.batch, c.embedDim)
    }

    func oracle(_ c: MHACase, parameters: [String: [Double]]? = nil, keep: [Double]? = nil) throws
        -> (output: [Double], weights: [Double])
    {
        var m = masks
        m.keep = keep
        return Oracle.multiHeadAttention(try parameters ?? Oracle.parameters(layer), config, query: q, key: k, value: v,
                                         batch: c.batch, targetLength: c.target, sourceLength: c.source, masks: m)
    }
}

@Suite("Multi-head attention")
struct MultiHeadAttentionTests {
    @Test("against the Float64 oracle: masks, causal, cross, kdim/vdim, GQA, layouts",
          arguments: TestBackend.all, MHACase.all)
    func againstOracle(_ tb: TestBackend, _ c: MHACase) throws {
        let problem = try MHAProblem(c, on: tb.backend)
        let (y, weights) = try problem.layer.forward(problem.query, problem.key, problem.value,
                                                     keyPaddingMask: problem.padding, attnMask: problem.mask,
                                                     isCausal: c.causal, needWeights: true, averageAttnWeights: false)
        let expectedShape = c.unbatched ? [c.target, c.embedDim]
            : c.batchFirst ? [c.batch, c.target, c.embedDim] : [c.target, c.batch, c.embedDim]
        #expect(y.shape == expectedShape, "\(c) on \(tb)")
        let expected = try problem.oracle(c)
        let actual = try problem.batchFirst(y, c)
        let m = mismatch(actual.map(Float.init), expected.output, tolerance: Oracle.tolerance)
        #expect(m == nil, "\(c) on \(tb): \(m ?? "")")
        let w = try #require(weights)
        #expect(w.shape == (c.unbatched ? [c.heads, c.target, c.source] : [c.batch, c.heads, c.target, c.source]))
        try Oracle.expectClose(w, expected.weights, Oracle.tolerance, "\(c) weights on \(tb)")
        // The plain call gives the same output; averaged weights are the head mean.
        let plain = try problem.layer(problem.query, problem.key, problem.value, keyPaddingMask: problem.padding,
                                      attnMask: problem.mask, isCausal: c.causal)
        #expect(try plain.scalars() == y.scalars(), "\(c) on \(tb): callAsFunction and forward differ")
        let averaged = try #require(try problem.layer.forward(
            problem.query, problem.key, problem.value, keyPaddingMask: problem.padding, attnMask: problem.mask,
            isCausal: c.causal, needWeights: true).weights)
        var mean = [Double](repeating: 0, count: c.batch * c.target * c.source)
        let per = c.target * c.source
        for b in 0..<c.batch { for h in 0..<c.heads { for r in 0..<per {
            mean[b * per + r] += expected.weights[(b * c.heads + h) * per + r] / Double(c.heads)
        } } }
        try Oracle.expectClose(averaged, mean, Oracle.tolerance, "\(c) averaged weights on \(tb)")
    }

    @Test("sequence-first and batch-first layouts give the same attention", arguments: TestBackend.all)
    func layouts(_ tb: TestBackend) throws {
        let b = tb.backend
        let seqFirst = try MultiHeadAttention(embedDim: 6, numHeads: 3, seed: 5, on: b)
        let batchFirst = try MultiHeadAttention(embedDim: 6, numHeads: 3, batchFirst: true, seed: 5, on: b)
        let x = try Tensor(values(2 * 4 * 6, seed: 3), shape: [2, 4, 6], on: b)
        let y1 = try batchFirst(x)
        let y2 = try seqFirst(x.permuted([1, 0, 2])).permuted([1, 0, 2])
        #expect(mismatch(try y1.scalars(), try y2.scalars().map(Double.init), tolerance: .elementwise) == nil)
    }

    @Test("PyTorch parameter names, shapes and initialisation", arguments: TestBackend.all)
    func parametersAndInit(_ tb: TestBackend) throws {
        let b = tb.backend
        let packed = try MultiHeadAttention(embedDim: 16, numHeads: 4, seed: 1, on: b)
        #expect(packed.namedParameters().map(\.name) == ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"])
        #expect(packed.namedParameters().map(\.parameter.shape) == [[48, 16], [48], [16, 16], [16]])
        #expect(packed.isPacked && packed.headDim == 4)
        let w = try packed.inProjWeight!.value.scalars()
        let xavier = (6.0 / Double(16 + 48)).squareRoot()
        #expect(w.allSatisfy { Double(Swift.abs($0)) <= xavier } && Double(w.map { Swift.abs($0) }.max()!) > 0.8 * xavier,
                "in_proj_weight is Xavier-uniform over [3E, E]")
        #expect(try packed.inProjBias!.value.scalars().allSatisfy { $0 == 0 })
        #expect(try packed.outProj.bias!.value.scalars().allSatisfy { $0 == 0 })
        let outW = try packed.outProj.weight.value.scalars()
        #expect(outW.allSatisfy { Swift.abs($0) <= 0.25 } && outW.contains { $0 != 0 })

        let cross = try MultiHeadAttention(embedDim: 8, numHeads: 2, bias: false, kdim: 3, vdim: 5, seed: 1, on: b)
        #expect(cross.namedParameters().map(\.name) == ["q_proj_weight", "k_proj_weight", "v_proj_weight", "out_proj.weight"])
        #expect(cross.namedParameters().map(\.parameter.shape) == [[8, 8], [8, 3], [8, 5], [8, 8]])

        let gqa = try MultiHeadAttention(embedDim: 8, numHeads: 4, numKeyValueHeads: 2, seed: 1, on: b)
        #expect(gqa.namedParameters().map(\.name) == ["q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias",
                                                       "out_proj.weight", "out_proj.bias"])
        #expect(gqa.namedParameters().map(\.parameter.shape) == [[8, 8], [4, 8], [4, 8], [16], [8, 8], [8]])

        // The same seed gives the same layer; a PyTorch-named state dict loads.
        let twin = try MultiHeadAttention(embedDim: 16, numHeads: 4, seed: 1, on: b)
        #expect(try twin.inProjWeight!.value.scalars() == w)
        let other = try MultiHeadAttention(embedDim: 16, numHeads: 4, seed: 2, on: b)
        try other.loadStateDictionary(packed.stateDictionary())
        #expect(try other.inProjWeight!.value.scalars() == w)
    }

    @Test("gradients of inputs and parameters match finite differences of the oracle",
          arguments: TestBackend.all, [
              MHACase(name: "cross kdim/vdim, padding, causal", batch: 2, target: 3, source: 4, embedDim: 4, heads: 2,
                      kdim: 3, vdim: 5, selfAttention: false, padding: true, causal: true),
              MHACase(name: "self, packed, additive mask", batch: 2, target: 3, source: 3, embedDim: 4, heads: 2,
                      batchFirst: true, mask: .additive),
              MHACase(name: "GQA 4/2, cross", batch: 1, target: 3, source: 4, embedDim: 8, heads: 4, kvHeads: 2,
                      selfAttention: false),
          ])
    func gradients(_ tb: TestBackend, _ c: MHACase) throws {
        let backend = tb.backend
        let problem = try MHAProblem(c, on: backend)
        let (b, l, s) = (c.batch, c.target, c.source)
        // Fresh leaves for the inputs (self-attention: one leaf used three times).
        let query = problem.query.requiringGradient()
        let key = c.selfAttention ? query : problem.key.requiringGradient()
        let value = c.selfAttention ? query : problem.value.requiringGradient()
        let y = try problem.layer(query, key, value, keyPaddingMask: problem.padding, attnMask: problem.mask,
                                  isCausal: c.causal)
        let r = values(y.count, seed: 77)
        try (y * Tensor(r, shape: y.shape, on: backend)).sum().backward()
        // r in the oracle's batch-first order.
        let rb = c.batchFirst ? r.map(Double.init) : Oracle.swapLeadingAxes(r.map(Double.init), l, b, c.embedDim)
        let params = try Oracle.parameters(problem.layer)
        func loss(_ p: [String: [Double]], _ q: [Double], _ k: [Double], _ v: [Double]) -> Double {
            var m = problem.masks
            m.keep = nil
            let out = Oracle.multiHeadAttention(p, problem.config, query: q, key: k, value: v, batch: b,
                                                targetLength: l, sourceLength: s, masks: m).output
            return zip(out, rb).map(*).reduce(0, +)
        }
        let h = 1e-6
        let tol = Tolerance(absolute: 5e-4, relative: 5e-4)
        func difference(_ perturb: (Double) -> Double) -> Double { (perturb(h) - perturb(-h)) / (2 * h) }
        for (name, p) in problem.layer.namedParameters() {
            let base = params[name]!
            let fd = base.indices.map { i in
                difference { d in
                    var moved = params
                    moved[name]![i] += d
                    return loss(moved, problem.q, problem.k, problem.v)
                }
            }
            let g = try #require(p.gradient, "\(name) got no gradient (\(c) on \(tb))")
            try Oracle.expectClose(g, fd, tol, "d/d\(name) (\(c) on \(tb))")
        }
        // Input gradients, in the layer's layout.
        func inputFD(_ which: Int, features f: Int, length n: Int) -> [Double] {
            let base = [problem.q, problem.k, problem.v][which]
            let fd = base.indices.map { i in
                difference { d in
                    var xs = [problem.q, problem.k, problem.v]
                    if c.selfAttention { for j in 0..<3 { xs[j][i] += d } } else { xs[which][i] += d }
                    return loss(params, xs[0], xs[1], xs[2])
                }
            }
            return c.batchFirst ? fd : Oracle.swapLeadingAxes(fd, b, n, f)
        }
        try Oracle.expectClose(try #require(query.gradient), inputFD(0, features: c.embedDim, length: l), tol,
                               "d/dquery (\(c) on \(tb))")
        if !c.selfAttention {
            try Oracle.expectClose(try #require(key.gradient), inputFD(1, features: problem.layer.kdim, length: s), tol,
                                   "d/dkey (\(c) on \(tb))")
            try Oracle.expectClose(try #require(value.gradient), inputFD(2, features: problem.layer.vdim, length: s), tol,
                                   "d/dvalue (\(c) on \(tb))")
        }
    }

    @Test("attention dropout: training only, the Philox stream of dropoutSeed(forCall:), same weights",
          arguments: TestBackend.all)
    func dropout(_ tb: TestBackend) throws {
        let backend = tb.backend
        let c = MHACase(name: "dropout", batch: 2, target: 6, source: 6, embedDim: 8, heads: 2, batchFirst: true)
        let problem = try MHAProblem(c, on: backend)
        let layer = try MultiHeadAttention(embedDim: 8, numHeads: 2, dropout: 0.3, batchFirst: true, seed: 11, on: backend)
        try layer.loadStateDictionary(problem.layer.stateDictionary())
        layer.eval()
        let evaluated = try layer(problem.query)
        try Oracle.expectClose(evaluated, try problem.oracle(c).output, Oracle.tolerance, "eval mode drops nothing on \(tb)")
        #expect(layer.callCount == 0)
        layer.train()
        let (y, w) = try layer.forward(problem.query, problem.query, problem.query, needWeights: true,
                                       averageAttnWeights: false)
        #expect(layer.callCount == 1)
        let keep = Oracle.attentionKeepFactors(seed: layer.dropoutSeed(forCall: 0), probability: 0.3,
                                               count: c.batch * c.heads * c.target * c.source)
        #expect(keep.contains(0) && keep.contains { $0 > 1 })
        let expected = try problem.oracle(c, keep: keep)
        try Oracle.expectClose(y, expected.output, Oracle.tolerance, "training output with dropout on \(tb)")
        try Oracle.expectClose(try #require(w), expected.weights, Oracle.tolerance, "dropped weights on \(tb)")
        let second = try layer(problem.query)
        #expect(layer.callCount == 2)
        #expect(try second.scalars() != y.scalars(), "successive training calls draw different masks")
    }

    @Test("invalid configurations and masks throw TensorError naming MultiHeadAttention", arguments: TestBackend.all)
    func errors(_ tb: TestBackend) throws {
        let b = tb.backend
        func expectError(_ fragment: String, sourceLocation: SourceLocation = #_sourceLocation,
                         _ body: () throws -> Void) {
            do {
                try body()
                Issue.record("expected an error mentioning '\(fragment)'", sourceLocation: sourceLocation)
            } catch let error as TensorError {
                let text = "\(error)"
                #expect(text.contains("MultiHeadAttention") && text.contains(fragment), "\(text)",
                        sourceLocation: sourceLocation)
            } catch {
                Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
            }
        }
        expectError("embedDim 10 is not divisible by numHeads 3") {
            _ = try MultiHeadAttention(embedDim: 10, numHeads: 3, seed: 0, on: b)
        }
        expectError("numKeyValueHeads 3 does not divide numHeads 4") {
            _ = try MultiHeadAttention(embedDim: 8, numHeads: 4, numKeyValueHeads: 3, seed: 0, on: b)
        }
        expectError("dropout must lie in [0, 1), got 1.0") {
            _ = try MultiHeadAttention(embedDim: 8, numHeads: 2, dropout: 1, seed: 0, on: b)
        }
        expectError("embedDim must be ≥ 1, got 0") { _ = try MultiHeadAttention(embedDim: 0, numHeads: 1, seed: 0, on: b) }
        let layer = try MultiHeadAttention(embedDim: 4, numHeads: 2, seed: 0, on: b)
        let x = try Tensor.zeros([3, 2, 4], on: b)  // [L, B, E]
        expectError("attnMask must have shape [L, S] = [3, 3] or [B·numHeads, L, S] = [4, 3, 3], got [3, 4]") {
            _ = try layer(x, x, x, attnMask: .additive(Tensor.zeros([3, 4], on: b)))
        }
        expectError("keyPaddingMask must have shape [B, S] = [2, 3], got [3, 2]") {
            _ = try layer(x, x, x, keyPaddingMask: Tensor.zeros([3, 2], on: b))
        }
        expectError("embedDim 4, kdim 4 and vdim 4") { _ = try layer(Tensor.zeros([3, 2, 5], on: b)) }
        expectError("need one batch size") {
            let k = try Tensor.zeros([3, 1, 4], on: b)
            _ = try layer(x, k, k)
        }
        expectError("rank 3 (batched) or 2 (unbatched)") { _ = try layer(Tensor.zeros([4], on: b)) }
    }
}
