import Foundation
import Kiln
import KilnTestSupport
import Testing

private typealias Oracle = TransformerOracle

private func values(_ count: Int, seed: UInt64, range: ClosedRange<Double> = -1...1) -> [Float] {
    testValues(count, seed: seed, range: range)
}

/// Batch-first values `[B, T, F]` as a tensor in the layer's layout (`[T, B, F]` unless batch-first).
private func layout(_ x: [Float], batch b: Int, length t: Int, features f: Int, batchFirst: Bool,
                    on backend: any Backend) throws -> Tensor {
    if batchFirst { return try Tensor(x, shape: [b, t, f], on: backend) }
    let swapped = Oracle.swapLeadingAxes(x.map(Double.init), b, t, f).map(Float.init)
    return try Tensor(swapped, shape: [t, b, f], on: backend)
}

/// A layer output in its layout as batch-first values.
private func batchFirstValues(_ y: Tensor, batchFirst: Bool) throws -> [Double] {
    let v = try y.scalars().map(Double.init)
    return batchFirst ? v : Oracle.swapLeadingAxes(v, y.shape[0], y.shape[1], y.shape[2])
}

/// One Transformer layer configuration.
struct LayerCase: CustomStringConvertible, Sendable {
    var activation: TransformerActivation
    var normFirst: Bool
    var batchFirst: Bool
    var padding = false

    var description: String {
        "\(normFirst ? "pre-LN" : "post-LN") \(activation)\(batchFirst ? " batch-first" : "")\(padding ? " padding" : "")"
    }

    static let all: [LayerCase] = [
        LayerCase(activation: .relu, normFirst: false, batchFirst: false),
        LayerCase(activation: .relu, normFirst: true, batchFirst: true),
        LayerCase(activation: .gelu, normFirst: false, batchFirst: true, padding: true),
        LayerCase(activation: .gelu, normFirst: true, batchFirst: false),
        LayerCase(activation: .swiglu, normFirst: false, batchFirst: false),
        LayerCase(activation: .swiglu, normFirst: true, batchFirst: true, padding: true),
    ]
}

@Suite("Transformer layers")
struct TransformerTests {
    static let (batch, length, source, dModel, heads, feedforward) = (2, 5, 4, 8, 2, 12)

    static func encoderLayer(_ c: LayerCase, seed: UInt64 = 21, on b: any Backend) throws -> TransformerEncoderLayer {
        let layer = try TransformerEncoderLayer(dModel: dModel, nHead: heads, dimFeedforward: feedforward,
                                                activation: c.activation, batchFirst: c.batchFirst,
                                                normFirst: c.normFirst, seed: seed, on: b)
        try Oracle.randomizeParameters(layer, seed: seed)
        layer.eval()
        return layer
    }

    private static func config(_ c: LayerCase) -> Oracle.LayerConfig {
        Oracle.LayerConfig(dModel: dModel, heads: heads, activation: c.activation, normFirst: c.normFirst)
    }

    @Test("encoder layer against the Float64 oracle (eval mode)", arguments: TestBackend.all, LayerCase.all)
    func encoderLayerAgainstOracle(_ tb: TestBackend, _ c: LayerCase) throws {
        let (b, t, d) = (Self.batch, Self.length, Self.dModel)
        let layer = try Self.encoderLayer(c, on: tb.backend)
        let x = values(b * t * d, seed: 3)
        var masks = Oracle.Masks()
        var padding: Tensor?
        if c.padding {
            var pad = [Float](repeating: 0, count: b * t)
            pad[t - 1] = 1
            pad[t + 1] = 1
            padding = try Tensor(pad, shape: [b, t], on: tb.backend)
            masks.padding = pad.map(Double.init)
        }
        let y = try layer(layout(x, batch: b, length: t, features: d, batchFirst: c.batchFirst, on: tb.backend),
                          srcKeyPaddingMask: padding)
        let expected = Oracle.encoderLayer(try Oracle.parameters(layer), Self.config(c), x.map(Double.init),
                                           batch: b, length: t, masks: masks)
        let m = mismatch(try batchFirstValues(y, batchFirst: c.batchFirst).map(Float.init), expected,
                         tolerance: Oracle.tolerance)
        #expect(m == nil, "\(c) on \(tb): \(m ?? "")")
    }

    @Test("decoder layer against the Float64 oracle (eval mode, causal self-attention)",
          arguments: TestBackend.all, LayerCase.all)
    func decoderLayerAgainstOracle(_ tb: TestBackend, _ c: LayerCase) throws {
        let (b, t, s, d) = (Self.batch, Self.length, Self.source, Self.dModel)
        let layer = try TransformerDecoderLayer(dModel: d, nHead: Self.heads, dimFeedforward: Self.feedforward,
                                                activation: c.activation, batchFirst: c.batchFirst,
                                                normFirst: c.normFirst, seed: 31, on: tb.backend)
        try Oracle.randomizeParameters(layer, seed: 31)
        layer.eval()
        let target = values(b * t * d, seed: 4), memory = values(b * s * d, seed: 5)
        var memoryPadding: Tensor?
        var pad: [Double]?
        if c.padding {
            var p = [Float](repeating: 0, count: b * s)
            p[0] = 1
            p[2 * s - 1] = 1
            memoryPadding = try Tensor(p, shape: [b, s], on: tb.backend)
            pad = p.map(Double.init)
        }
        let y = try layer(layout(target, batch: b, length: t, features: d, batchFirst: c.batchFirst, on: tb.backend),
                          memory: layout(memory, batch: b, length: s, features: d, batchFirst: c.batchFirst, on: tb.backend),
                          memoryKeyPaddingMask: memoryPadding)
        let expected = Oracle.decoderLayer(try Oracle.parameters(layer), Self.config(c), target.map(Double.init),
                                           memory: memory.map(Double.init), batch: b, targetLength: t, sourceLength: s,
                                           memoryPadding: pad)
        let m = mismatch(try batchFirstValues(y, batchFirst: c.batchFirst).map(Float.init), expected,
                         tolerance: Oracle.tolerance)
        #expect(m == nil, "\(c) on \(tb): \(m ?? "")")
        // Without the causal mask the output differs (the default is causal).
        let unmasked = try layer(layout(target, batch: b, length: t, features: d, batchFirst: c.batchFirst, on: tb.backend),
                                 memory: layout(memory, batch: b, length: s, features: d, batchFirst: c.batchFirst,
                                                on: tb.backend),
                                 memoryKeyPaddingMask: memoryPadding, tgtIsCausal: false)
        let nonCausal = Oracle.decoderLayer(try Oracle.parameters(layer), Self.config(c), target.map(Double.init),
                                            memory: memory.map(Double.init), batch: b, targetLength: t, sourceLength: s,
                                            causal: false, memoryPadding: pad)
        try #expect(mismatch(batchFirstValues(unmasked, batchFirst: c.batchFirst).map(Float.init), nonCausal,
                             tolerance: Oracle.tolerance) == nil, "tgtIsCausal: false on \(tb)")
        #expect(mismatch(try y.scalars(), try unmasked.scalars().map(Double.init), tolerance: Oracle.tolerance) != nil)
    }

    @Test("input gradients of encoder and decoder layers match finite differences of the oracle",
          arguments: TestBackend.all, [LayerCase(activation: .gelu, normFirst: false, batchFirst: true),
                                       LayerCase(activation: .swiglu, normFirst: true, batchFirst: true)])
    func gradients(_ tb: TestBackend, _ c: LayerCase) throws {
        let backend = tb.backend
        let (b, t, s, d) = (1, 3, 2, 4)
        let encoder = try TransformerEncoderLayer(dModel: d, nHead: 2, dimFeedforward: 6, activation: c.activation,
                                                  batchFirst: true, normFirst: c.normFirst, seed: 41, on: backend)
        let decoder = try TransformerDecoderLayer(dModel: d, nHead: 2, dimFeedforward: 6, activation: c.activation,
                                                  batchFirst: true, normFirst: c.normFirst, seed: 42, on: backend)
        for m in [encoder, decoder] as [any Module] {
            try Oracle.randomizeParameters(m, seed: 43)
            m.eval()
        }
        let config = Oracle.LayerConfig(dModel: d, heads: 2, activation: c.activation, normFirst: c.normFirst)
        let x = values(b * t * d, seed: 6).map(Double.init), mem = values(b * s * d, seed: 7).map(Double.init)
        let r = values(b * t * d, seed: 8).map(Double.init)
        let h = 1e-6, tol = Tolerance(absolute: 5e-4, relative: 5e-4)
        func fd(_ base: [Double], _ f: ([Double]) -> [Double]) -> [Double] {
            base.indices.map { i in
                var up = base, down = base
                up[i] += h
                down[i] -= h
                return zip(f(up), r).map(*).reduce(0, +) / (2 * h) - zip(f(down), r).map(*).reduce(0, +) / (2 * h)
            }
        }
        let rt = try Tensor(r.map(Float.init), shape: [b, t, d], on: backend)
        // Encoder.
        let pe = try Oracle.parameters(encoder)
        let xe = try Tensor(x.map(Float.init), shape: [b, t, d], on: backend).requiringGradient()
        try (encoder(xe) * rt).sum().backward()
        try Oracle.expectClose(try #require(xe.gradient),
                               fd(x) { Oracle.encoderLayer(pe, config, $0, batch: b, length: t) }, tol,
                               "encoder d/dx \(c) on \(tb)")
        // Decoder: target and memory.
        let pd = try Oracle.parameters(decoder)
        let xd = try Tensor(x.map(Float.init), shape: [b, t, d], on: backend).requiringGradient()
        let md = try Tensor(mem.map(Float.init), shape: [b, s, d], on: backend).requiringGradient()
        try (decoder(xd, memory: md) * rt).sum().backward()
        try Oracle.expectClose(try #require(xd.gradient),
                               fd(x) { Oracle.decoderLayer(pd, config, $0, memory: mem, batch: b, targetLength: t,
                                                           sourceLength: s) }, tol, "decoder d/dtgt \(c) on \(tb)")
        try Oracle.expectClose(try #require(md.gradient),
                               fd(mem) { Oracle.decoderLayer(pd, config, x, memory: $0, batch: b, targetLength: t,
                                                             sourceLength: s) }, tol, "decoder d/dmemory \(c) on \(tb)")
        for (name, p) in encoder.namedParameters() + decoder.namedParameters() {
            #expect(p.gradient?.shape == p.shape, "no gradient reached \(name) (\(c) on \(tb))")
        }
    }

    @Test("encoder: invariant to batch order, equivariant to token permutation (no positions)",
          arguments: TestBackend.all)
    func encoderSymmetries(_ tb: TestBackend) throws {
        let backend = tb.backend
        let (b, t, d) = (3, 6, Self.dModel)
        let encoder = try TransformerEncoder(numLayers: 2, norm: try LayerNorm(normalizedShape: [d], on: backend)) { i in
            try TransformerEncoderLayer(dModel: d, nHead: Self.heads, dimFeedforward: 16, activation: .gelu,
                                        batchFirst: true, normFirst: i == 0, seed: UInt64(50 + i), on: backend)
        }
        encoder.eval()
        let x = values(b * t * d, seed: 9)
        let y = try encoder(Tensor(x, shape: [b, t, d], on: backend)).scalars()
        func permuted(_ v: [Float], batches: [Int], tokens: [Int]) -> [Float] {
            var out = [Float]()
            for bi in batches { for ti in tokens { out += v[((bi * t + ti) * d)..<((bi * t + ti + 1) * d)] } }
            return out
        }
        let batchOrder = [2, 0, 1], tokenOrder = [3, 5, 0, 4, 1, 2]
        let yb = try encoder(Tensor(permuted(x, batches: batchOrder, tokens: Array(0..<t)), shape: [b, t, d], on: backend))
        let expectedB = permuted(y, batches: batchOrder, tokens: Array(0..<t)).map(Double.init)
        #expect(mismatch(try yb.scalars(), expectedB, tolerance: .reduction) == nil, "batch order on \(tb)")
        let yt = try encoder(Tensor(permuted(x, batches: Array(0..<b), tokens: tokenOrder), shape: [b, t, d], on: backend))
        let expectedT = permuted(y, batches: Array(0..<b), tokens: tokenOrder).map(Double.init)
        #expect(mismatch(try yt.scalars(), expectedT, tolerance: .reduction) == nil, "token permutation on \(tb)")
        // A causal encoder is not permutation-equivariant: the check can fail.
        let yc = try encoder(Tensor(permuted(x, batches: Array(0..<b), tokens: tokenOrder), shape: [b, t, d], on: backend),
                             isCausal: true)
        #expect(mismatch(try yc.scalars(), expectedT, tolerance: .reduction) != nil)
    }

    @Test("encoder and decoder stacks against the oracle; PyTorch names", arguments: TestBackend.all)
    func stacks(_ tb: TestBackend) throws {
        let backend = tb.backend
        let (b, t, s, d) = (Self.batch, Self.length, Self.source, Self.dModel)
        let encoder = try TransformerEncoder(numLayers: 2, norm: try LayerNorm(normalizedShape: [d], on: backend)) { i in
            try TransformerEncoderLayer(dModel: d, nHead: Self.heads, dimFeedforward: Self.feedforward,
                                        seed: UInt64(60 + i), on: backend)
        }
        let decoder = try TransformerDecoder(numLayers: 2) { i in
            try TransformerDecoderLayer(dModel: d, nHead: Self.heads, dimFeedforward: Self.feedforward,
                                        activation: .swiglu, normFirst: true, seed: UInt64(70 + i), on: backend)
        }
        #expect(encoder.namedParameters().map(\.name).first == "layers.0.self_attn.in_proj_weight")
        #expect(encoder.namedParameters().map(\.name).suffix(2) == ["norm.weight", "norm.bias"])
        #expect(decoder.namedParameters().map(\.name).last == "layers.1.norm3.bias")
        for m in [encoder, decoder] as [any Module] {
            try Oracle.randomizeParameters(m, seed: 61)
            m.eval()
        }
        let src = values(b * s * d, seed: 10), tgt = values(b * t * d, seed: 11)
        let memory = try encoder(layout(src, batch: b, length: s, features: d, batchFirst: false, on: backend))
        let out = try decoder(layout(tgt, batch: b, length: t, features: d, batchFirst: false, on: backend),
                              memory: memory)
        let pe = try Oracle.parameters(encoder), pd = try Oracle.parameters(decoder)
        let encConfig = Oracle.LayerConfig(dModel: d, heads: Self.heads, activation: .relu, normFirst: false)
        let decConfig = Oracle.LayerConfig(dModel: d, heads: Self.heads, activation: .swiglu, normFirst: true)
        var mem = src.map(Double.init)
        for i in 0..<2 { mem = Oracle.encoderLayer(pe, prefix: "layers.\(i).", encConfig, mem, batch: b, length: s) }
        mem = Oracle.layerNorm(mem, width: d, weight: pe["norm.weight"], bias: pe["norm.bias"], eps: 1e-5)
        var y = tgt.map(Double.init)
        for i in 0..<2 {
            y = Oracle.decoderLayer(pd, prefix: "layers.\(i).", decConfig, y, memory: mem, batch: b, targetLength: t,
                                    sourceLength: s)
        }
        #expect(mismatch(try batchFirstValues(memory, batchFirst: false).map(Float.init), mem,
                         tolerance: Oracle.tolerance) == nil, "encoder stack on \(tb)")
        #expect(mismatch(try batchFirstValues(out, batchFirst: false).map(Float.init), y,
                         tolerance: Oracle.tolerance) == nil, "decoder stack on \(tb)")
    }

    @Test("PyTorch parameter names and counts; the paper's base layer has 3,152,384 parameters",
          arguments: TestBackend.all)
    func parameterNames(_ tb: TestBackend) throws {
        let b = tb.backend
        let base = try TransformerEncoderLayer(dModel: 512, nHead: 8, seed: 1, on: b)
        #expect(base.namedParameters().map(\.name) == [
            "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight", "self_attn.out_proj.bias",
            "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
            "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
        ])
        #expect(base.parameterCount == 3_152_384)
        #expect(base.feedForward.linear1.weight.shape == [2048, 512] && base.dModel == 512)
        let decoder = try TransformerDecoderLayer(dModel: 8, nHead: 2, dimFeedforward: 16, activation: .swiglu, seed: 1, on: b)
        #expect(decoder.namedParameters().map(\.name) == [
            "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight", "self_attn.out_proj.bias",
            "multihead_attn.in_proj_weight", "multihead_attn.in_proj_bias", "multihead_attn.out_proj.weight",
            "multihead_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
            "linear3.weight", "linear3.bias", "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
            "norm3.weight", "norm3.bias",
        ])
        // A PyTorch-named state dict round-trips into a fresh layer.
        let other = try TransformerDecoderLayer(dModel: 8, nHead: 2, dimFeedforward: 16, activation: .swiglu, seed: 2, on: b)
        try other.loadStateDictionary(decoder.stateDictionary())
        #expect(try other.feedForward.linear3!.weight.value.scalars() == decoder.feedForward.linear3!.weight.value.scalars())
    }

    @Test("nn.Transformer: decoder(tgt, encoder(src)), final norms, Xavier init of matrices", arguments: TestBackend.all)
    func encoderDecoderModel(_ tb: TestBackend) throws {
        let backend = tb.backend
        let (b, t, s, d) = (2, 4, 3, 8)
        let model = try Transformer(dModel: d, nHead: 2, numEncoderLayers: 1, numDecoderLayers: 2, dimFeedforward: 12,
                                    batchFirst: true, seed: 3, on: backend)
        model.eval()
        let names = model.namedParameters().map(\.name)
        #expect(names.first == "encoder.layers.0.self_attn.in_proj_weight")
        #expect(names.contains("encoder.norm.weight") && names.contains("decoder.layers.1.multihead_attn.out_proj.bias")
                && names.last == "decoder.norm.bias")
        for (name, p) in model.namedParameters() where p.shape.count > 1 {
            let bound = (6.0 / Double(p.shape[0] + p.shape[1])).squareRoot()
            #expect(try p.value.scalars().allSatisfy { Double(Swift.abs($0)) <= bound }, "\(name) is Xavier-uniform")
        }
        let src = try Tensor(values(b * s * d, seed: 12), shape: [b, s, d], on: backend)
        let tgt = try Tensor(values(b * t * d, seed: 13), shape: [b, t, d], on: backend)
        let y = try model(src, tgt)
        #expect(y.shape == [b, t, d])
        let expected = try model.decoder(tgt, memory: model.encoder(src))
        #expect(try y.scalars() == expected.scalars())
        do {
            _ = try model(src)
            Issue.record("a one-input call must throw")
        } catch let error as TensorError {
            #expect(error.op == "Transformer")
        }
    }

    @Test("causal masking: changing future tokens leaves earlier outputs unchanged (decoder, LM)",
          arguments: TestBackend.all)
    func causality(_ tb: TestBackend) throws {
        let backend = tb.backend
        let (b, t, s, d) = (2, 6, 3, Self.dModel)
        let decoder = try TransformerDecoder(numLayers: 2, norm: try LayerNorm(normalizedShape: [d], on: backend)) { i in
            try TransformerDecoderLayer(dModel: d, nHead: Self.heads, dimFeedforward: 16, activation: .gelu,
                                        batchFirst: true, normFirst: i == 1, seed: UInt64(80 + i), on: backend)
        }
        decoder.eval()
        let memory = try Tensor(values(b * s * d, seed: 14), shape: [b, s, d], on: backend)
        var tgt = values(b * t * d, seed: 15)
        let y1 = try decoder(Tensor(tgt, shape: [b, t, d], on: backend), memory: memory).scalars()
        let cut = 3
        for bi in 0..<b { for i in (cut * d)..<(t * d) { tgt[bi * t * d + i] += 0.7 } }
        let y2 = try decoder(Tensor(tgt, shape: [b, t, d], on: backend), memory: memory).scalars()
        for bi in 0..<b {
            let early = (bi * t * d)..<((bi * t + cut) * d), late = ((bi * t + cut) * d)..<((bi + 1) * t * d)
            #expect(mismatch(Array(y2[early]), y1[early].map(Double.init), tolerance: .elementwise) == nil,
                    "decoder positions < \(cut) changed on \(tb)")
            #expect(mismatch(Array(y2[late]), y1[late].map(Double.init), tolerance: .reduction) != nil,
                    "decoder positions ≥ \(cut) must change")
        }

        let lm = try TransformerLanguageModel(vocabSize: 11, maxLength: 8, dModel: d, nHead: Self.heads, numLayers: 2,
                                              seed: 5, on: backend)
        lm.eval()
        var tokens: [Float] = [1, 4, 7, 2, 9, 3, 0, 5, 5, 8, 6, 10]
        let l1 = try lm(Tensor(tokens, shape: [2, 6], on: backend))
        #expect(l1.shape == [2, 6, 11])
        tokens[4] = 0
        tokens[11] = 1
        let l2 = try lm(Tensor(tokens, shape: [2, 6], on: backend)).scalars()
        let v = 11
        let a = try l1.scalars()
        #expect(mismatch(Array(l2[0..<(4 * v)]), a[0..<(4 * v)].map(Double.init), tolerance: .elementwise) == nil,
                "LM logits before the changed token changed on \(tb)")
        #expect(mismatch(Array(l2[(6 * v)..<(11 * v)]), a[(6 * v)..<(11 * v)].map(Double.init), tolerance: .elementwise) == nil)
        #expect(mismatch(Array(l2[(4 * v)..<(5 * v)]), a[(4 * v)..<(5 * v)].map(Double.init), tolerance: .reduction) != nil)
    }

    @Test("language model: logits shape, tied/untied head, oracle, positions, gradients", arguments: TestBackend.all)
    func languageModel(_ tb: TestBackend) throws {
        let backend = tb.backend
        let (v, maxT, d, h) = (13, 7, 8, 2)
        let tied = try TransformerLanguageModel(vocabSize: v, maxLength: maxT, dModel: d, nHead: h, numLayers: 2,
                                                dimFeedforward: 12, seed: 9, on: backend)
        #expect(tied.isTied && tied.namedParameters().map(\.name).prefix(2) == ["token_embedding.weight",
                                                                              "position_embedding.weight"])
        #expect(tied.namedParameters().map(\.name).last == "norm.bias")
        #expect(tied.namedParameters().contains { $0.name == "layers.1.self_attn.in_proj_weight" })
        let emb = try tied.tokenEmbedding.weight.value.scalars()
        let std = (emb.map { Double($0 * $0) }.reduce(0, +) / Double(emb.count)).squareRoot()
        #expect(std > 0.012 && std < 0.03, "GPT-2 embedding init N(0, 0.02²), got std \(std)")
        let untied = try TransformerLanguageModel(vocabSize: v, maxLength: maxT, dModel: d, nHead: h, numLayers: 1,
                                                  tieWeights: false, positionalEncoding: .none, seed: 9, on: backend)
        #expect(!untied.isTied && untied.namedParameters().last?.name == "lm_head.weight"
                && untied.namedParameters().last?.parameter.shape == [v, d])
        #expect(!untied.namedParameters().contains { $0.name.hasPrefix("position_embedding") })

        // Against the oracle: embeddings + positions, pre-LN causal GELU blocks, final LN, tied head.
        try Oracle.randomizeParameters(tied, seed: 90)
        tied.eval()
        let (b, t) = (2, 5)
        let ids: [Float] = [0, 3, 12, 5, 5, 7, 1, 2, 11, 4]
        let logits = try tied(Tensor(ids, shape: [b, t], on: backend))
        #expect(logits.shape == [b, t, v])
        let p = try Oracle.parameters(tied)
        let table = p["token_embedding.weight"]!, positions = p["position_embedding.weight"]!
        var x = [Double]()
        for bi in 0..<b { for ti in 0..<t { for c in 0..<d {
            x.append(table[Int(ids[bi * t + ti]) * d + c] + positions[ti * d + c])
        } } }
        let config = Oracle.LayerConfig(dModel: d, heads: h, activation: .gelu, normFirst: true)
        for i in 0..<2 {
            x = Oracle.encoderLayer(p, prefix: "layers.\(i).", config, x, batch: b, length: t,
                                    masks: Oracle.Masks(isCausal: true))
        }
        x = Oracle.layerNorm(x, width: d, weight: p["norm.weight"], bias: p["norm.bias"], eps: 1e-5)
        let expected = Oracle.linear(x, rows: b * t, table, out: v, bias: nil)
        try Oracle.expectClose(logits, expected, Oracle.tolerance, "LM logits on \(tb)")
        // Unbatched tokens give [T, V], the first row of the batch.
        let single = try tied(Tensor(Array(ids[0..<t]), shape: [t], on: backend))
        #expect(single.shape == [t, v])
        try Oracle.expectClose(single, Array(expected[0..<(t * v)]), Oracle.tolerance, "unbatched LM on \(tb)")

        // A custom positional-encoding module is a child and is applied.
        let shift = Lambda("shift") { try $0 + Float(0.5) }
        let custom = try TransformerLanguageModel(vocabSize: v, maxLength: maxT, dModel: d, nHead: h, numLayers: 1,
                                                  positionalEncoding: .module(shift), seed: 9, on: backend)
        #expect(custom.children.contains { $0.name == "positional_encoding" })
        custom.eval()
        let plain = try TransformerLanguageModel(vocabSize: v, maxLength: maxT, dModel: d, nHead: h, numLayers: 1,
                                                 positionalEncoding: .none, seed: 9, on: backend)
        plain.eval()
        let tokens = try Tensor(Array(ids[0..<t]), shape: [1, t], on: backend)
        #expect(try custom(tokens).scalars() != plain(tokens).scalars())

        // Training: dropout is active, a cross-entropy loss reaches every parameter.
        let trainee = try TransformerLanguageModel(vocabSize: v, maxLength: maxT, dModel: d, nHead: h, numLayers: 2,
                                                   dimFeedforward: 12, dropout: 0.2, seed: 9, on: backend)
        let input = try Tensor(ids, shape: [b, t], on: backend)
        let train1 = try trainee(input)
        trainee.eval()
        let eval1 = try trainee(input), eval2 = try trainee(input)
        #expect(try eval1.scalars() == eval2.scalars() && train1.scalars() != eval1.scalars())
        trainee.train()
        let flat = try trainee(input).reshaped(to: [b * t, v])
        let targets = try Tensor(ids.map { Float((Int($0) + 1) % v) }, shape: [b * t], on: backend)
        try crossEntropy(logits: flat, targets: targets).backward()
        for (name, param) in trainee.namedParameters() {
            #expect(param.gradient?.shape == param.shape, "no gradient reached \(name) on \(tb)")
        }
    }

    @Test("invalid configurations and inputs throw TensorError naming the layer", arguments: TestBackend.all)
    func errors(_ tb: TestBackend) throws {
        let b = tb.backend
        func expectError(_ op: String, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation,
                         _ body: () throws -> Void) {
            do {
                try body()
                Issue.record("expected \(op): …\(fragment)…", sourceLocation: sourceLocation)
            } catch let error as TensorError {
                #expect(error.op == op && error.message.contains(fragment), "\(error)", sourceLocation: sourceLocation)
            } catch {
                Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
            }
        }
        expectError("TransformerEncoderLayer", "dModel 10 is not divisible by nHead 4") {
            _ = try TransformerEncoderLayer(dModel: 10, nHead: 4, seed: 0, on: b)
        }
        expectError("TransformerDecoderLayer", "dropout must lie in [0, 1), got 1.5") {
            _ = try TransformerDecoderLayer(dModel: 8, nHead: 2, dropout: 1.5, seed: 0, on: b)
        }
        expectError("TransformerEncoderLayer", "dimFeedforward must be ≥ 1, got 0") {
            _ = try TransformerEncoderLayer(dModel: 8, nHead: 2, dimFeedforward: 0, seed: 0, on: b)
        }
        expectError("TransformerEncoder", "numLayers must be ≥ 1, got 0") {
            _ = try TransformerEncoder(numLayers: 0) { _ in try TransformerEncoderLayer(dModel: 8, nHead: 2, seed: 0, on: b) }
        }
        let decoder = try TransformerDecoderLayer(dModel: 8, nHead: 2, dimFeedforward: 8, seed: 0, on: b)
        expectError("TransformerDecoderLayer", "needs the encoder output") { _ = try decoder(Tensor.zeros([3, 1, 8], on: b)) }
        let encoder = try TransformerEncoderLayer(dModel: 8, nHead: 2, dimFeedforward: 8, seed: 0, on: b)
        expectError("MultiHeadAttention", "attnMask must have shape [L, S] = [3, 3]") {
            _ = try encoder(Tensor.zeros([3, 2, 8], on: b), srcMask: .disallowed(Tensor.zeros([2, 3], on: b)))
        }
        let lm = try TransformerLanguageModel(vocabSize: 5, maxLength: 4, dModel: 8, nHead: 2, numLayers: 1, seed: 0, on: b)
        expectError("TransformerLanguageModel", "sequence length 6 exceeds maxLength 4") {
            _ = try lm(Tensor.zeros([1, 6], on: b))
        }
        expectError("TransformerLanguageModel", "expects tokens [B, T] or [T], got [1, 2, 3]") {
            _ = try lm(Tensor.zeros([1, 2, 3], on: b))
        }
        expectError("Embedding", "index 5.0 is not an integer in 0..<5") { _ = try lm(Tensor([5], shape: [1], on: b)) }
    }
}
