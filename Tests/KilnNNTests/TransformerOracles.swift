import Foundation
import Kiln
import KilnTestSupport
import Testing

// Float64 oracles for multi-head attention and the Transformer layers, written from the equations
// (Vaswani et al. 2017; PyTorch's nn.MultiheadAttention / nn.TransformerEncoderLayer conventions),
// independent of every backend and of the library's layers. Parameters come in as a dictionary by
// PyTorch name (a module's `namedParameters()`), so a finite-difference check can perturb any of them.

enum TransformerOracle {
    /// A module's parameters by dotted name, as Float64.
    static func parameters(_ m: any Module) throws -> [String: [Double]] {
        var out: [String: [Double]] = [:]
        for (name, p) in m.namedParameters() { out[name] = try p.value.scalars().map(Double.init) }
        return out
    }

    /// Replaces every parameter by test data in `range` (so biases and norms are non-trivial).
    static func randomizeParameters(_ m: any Module, seed: UInt64, range: ClosedRange<Double> = -0.5...0.5) throws {
        for (i, (_, p)) in m.namedParameters().enumerated() {
            try p.assign(Tensor(testValues(p.value.count, seed: seed &+ UInt64(i) &* 7919, range: range),
                                shape: p.shape, on: p.value.backend))
        }
    }

    /// `[d0, d1, rest]` → `[d1, d0, rest]` (the sequence-first ↔ batch-first swap).
    static func swapLeadingAxes(_ x: [Double], _ d0: Int, _ d1: Int, _ rest: Int) -> [Double] {
        var out = [Double](repeating: 0, count: x.count)
        for i in 0..<d0 { for j in 0..<d1 { for c in 0..<rest {
            out[(j * d0 + i) * rest + c] = x[(i * d1 + j) * rest + c]
        } } }
        return out
    }

    /// Rows `[n, in]` times `wᵀ` (`w` is `[out, in]`) plus `b`.
    static func linear(_ x: [Double], rows n: Int, _ w: [Double], out: Int, bias: [Double]?) -> [Double] {
        let inSize = w.count / out
        var y = [Double](repeating: 0, count: n * out)
        for r in 0..<n { for o in 0..<out {
            var acc = bias?[o] ?? 0
            for i in 0..<inSize { acc += x[r * inSize + i] * w[o * inSize + i] }
            y[r * out + o] = acc
        } }
        return y
    }

    /// The configuration of a multi-head attention for the oracle.
    struct AttentionConfig {
        var embedDim: Int
        var heads: Int
        var kvHeads: Int
        var kdim: Int
        var vdim: Int
    }

    /// The masks of one attention call, Float64: `padding` `[B, S]` (non-zero hides), `attn` additive
    /// `[L, S]` or (`attnPerHead`) `[B·H, L, S]`, the causal flag, and dropout keep factors `[B, H, L, S]`.
    struct Masks {
        var padding: [Double]? = nil
        var attn: [Double]? = nil
        var attnPerHead = false
        var isCausal = false
        var keep: [Double]? = nil
    }

    /// Multi-head attention from the equations, batch-first: query `[B, L, E]`, key `[B, S, kdim]`,
    /// value `[B, S, vdim]`. Returns the output `[B, L, E]` and the attention weights `[B, H, L, S]`
    /// (after dropout). A row that sees no key gets zero weights.
    static func multiHeadAttention(_ p: [String: [Double]], prefix: String = "", _ c: AttentionConfig, query: [Double], key: [Double],
                   value: [Double], batch b: Int, targetLength l: Int, sourceLength s: Int,
                   masks: Masks = Masks()) -> (output: [Double], weights: [Double]) {
        let e = c.embedDim, d = c.embedDim / c.heads, ekv = c.kvHeads * d
        let wq: [Double], wk: [Double], wv: [Double]
        if let packed = p[prefix + "in_proj_weight"] {
            wq = Array(packed[0..<(e * e)])
            wk = Array(packed[(e * e)..<(2 * e * e)])
            wv = Array(packed[(2 * e * e)...])
        } else {
            wq = p[prefix + "q_proj_weight"]!
            wk = p[prefix + "k_proj_weight"]!
            wv = p[prefix + "v_proj_weight"]!
        }
        let bias = p[prefix + "in_proj_bias"]
        let bq = bias.map { Array($0[0..<e]) }
        let bk = bias.map { Array($0[e..<(e + ekv)]) }
        let bv = bias.map { Array($0[(e + ekv)...]) }
        let q = linear(query, rows: b * l, wq, out: e, bias: bq)
        let k = linear(key, rows: b * s, wk, out: ekv, bias: bk)
        let v = linear(value, rows: b * s, wv, out: ekv, bias: bv)
        var heads = [Double](repeating: 0, count: b * l * e)
        var weights = [Double](repeating: 0, count: b * c.heads * l * s)
        let scale = 1 / Double(d).squareRoot()
        for bi in 0..<b { for h in 0..<c.heads {
            let kh = h / (c.heads / c.kvHeads)
            for i in 0..<l {
                var scores = [Double](repeating: 0, count: s)
                for j in 0..<s {
                    var dot = 0.0
                    for x in 0..<d { dot += q[(bi * l + i) * e + h * d + x] * k[(bi * s + j) * ekv + kh * d + x] }
                    var score = dot * scale
                    if masks.isCausal && j > i { score = -.infinity }
                    if let pad = masks.padding, pad[bi * s + j] != 0 { score = -.infinity }
                    if let attn = masks.attn {
                        score += masks.attnPerHead ? attn[((bi * c.heads + h) * l + i) * s + j] : attn[i * s + j]
                    }
                    scores[j] = score
                }
                let m = scores.max() ?? -.infinity
                guard m > -.infinity else { continue }
                let z = scores.map { Foundation.exp($0 - m) }.reduce(0, +)
                for j in 0..<s {
                    let row = (bi * c.heads + h) * l + i
                    let w = Foundation.exp(scores[j] - m) / z * (masks.keep?[row * s + j] ?? 1)
                    weights[row * s + j] = w
                    for x in 0..<d { heads[(bi * l + i) * e + h * d + x] += w * v[(bi * s + j) * ekv + kh * d + x] }
                }
            }
        } }
        let out = linear(heads, rows: b * l, p[prefix + "out_proj.weight"]!, out: e, bias: p[prefix + "out_proj.bias"])
        return (out, weights)
    }

    /// Dropout keep factors of `scaledDotProductAttention` for `seed`: 0 or 1/(1 − p), `count` of them.
    static func attentionKeepFactors(seed: UInt64, probability: Float, count: Int) -> [Double] {
        Philox.samples(.uniform(low: 0, high: 1), seed: seed, count: count).map {
            $0 >= probability ? 1 / (1 - Double(probability)) : 0
        }
    }

    /// Layer normalization of rows of width `width`: `(x − μ)/√(var + eps)·w + b` (biased var).
    static func layerNorm(_ x: [Double], width: Int, weight: [Double]?, bias: [Double]?, eps: Double) -> [Double] {
        var y = x
        for r in 0..<(x.count / width) {
            let row = x[(r * width)..<((r + 1) * width)]
            let mean = row.reduce(0, +) / Double(width)
            let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(width)
            let inv = 1 / (variance + eps).squareRoot()
            for c in 0..<width {
                y[r * width + c] = (x[r * width + c] - mean) * inv * (weight?[c] ?? 1) + (bias?[c] ?? 0)
            }
        }
        return y
    }

    /// The position-wise feed-forward sublayer on rows `[n, dModel]` (parameters under `prefix`):
    /// relu/gelu: `W2·act(W1·x + b1) + b2`; swiglu: `W2·(silu(W1·x + b1) ⊙ (W3·x + b3)) + b2`.
    static func feedForward(_ p: [String: [Double]], prefix: String = "", _ x: [Double], rows n: Int, dModel: Int,
                           activation: TransformerActivation) -> [Double] {
        let w1 = p[prefix + "linear1.weight"]!
        let dff = w1.count / dModel
        var h = linear(x, rows: n, w1, out: dff, bias: p[prefix + "linear1.bias"])
        switch activation {
        case .relu: h = h.map { Swift.max($0, 0) }
        case .gelu: h = h.map { 0.5 * $0 * (1 + Foundation.erf($0 / 2.0.squareRoot())) }
        case .swiglu:
            let up = linear(x, rows: n, p[prefix + "linear3.weight"]!, out: dff, bias: p[prefix + "linear3.bias"])
            h = zip(h, up).map { g, u in g / (1 + Foundation.exp(-g)) * u }
        }
        return linear(h, rows: n, p[prefix + "linear2.weight"]!, out: dModel, bias: p[prefix + "linear2.bias"])
    }

    /// The configuration of a Transformer layer for the oracle.
    struct LayerConfig {
        var dModel: Int
        var heads: Int
        var activation: TransformerActivation
        var normFirst: Bool
        var eps = 1e-5

        var attention: AttentionConfig {
            AttentionConfig(embedDim: dModel, heads: heads, kvHeads: heads, kdim: dModel, vdim: dModel)
        }
    }

    private static func add(_ a: [Double], _ b: [Double]) -> [Double] { zip(a, b).map(+) }

    /// A Transformer encoder layer in evaluation mode, batch-first `[B, T, dModel]`:
    /// post-LN `x = LN1(x + SA(x)); x = LN2(x + FFN(x))`, pre-LN `x = x + SA(LN1(x)); x = x + FFN(LN2(x))`.
    static func encoderLayer(_ p: [String: [Double]], prefix: String = "", _ c: LayerConfig, _ input: [Double],
                            batch b: Int, length t: Int, masks: Masks = Masks()) -> [Double] {
        let d = c.dModel, n = b * t
        func norm(_ x: [Double], _ name: String) -> [Double] {
            layerNorm(x, width: d, weight: p[prefix + name + ".weight"], bias: p[prefix + name + ".bias"], eps: c.eps)
        }
        func sa(_ x: [Double]) -> [Double] {
            multiHeadAttention(p, prefix: prefix + "self_attn.", c.attention, query: x, key: x, value: x, batch: b,
                      targetLength: t, sourceLength: t, masks: masks).output
        }
        func ff(_ x: [Double]) -> [Double] {
            feedForward(p, prefix: prefix, x, rows: n, dModel: d, activation: c.activation)
        }
        var x = input
        if c.normFirst {
            x = add(x, sa(norm(x, "norm1")))
            x = add(x, ff(norm(x, "norm2")))
        } else {
            x = norm(add(x, sa(x)), "norm1")
            x = norm(add(x, ff(x)), "norm2")
        }
        return x
    }

    /// A Transformer decoder layer in evaluation mode, batch-first: target `[B, T, dModel]`, memory
    /// `[B, S, dModel]`; causal self-attention (when `causal`), cross-attention on the memory, FFN, each
    /// with a residual and LayerNorm (post-LN or pre-LN).
    static func decoderLayer(_ p: [String: [Double]], prefix: String = "", _ c: LayerConfig, _ target: [Double],
                            memory: [Double], batch b: Int, targetLength t: Int, sourceLength s: Int,
                            causal: Bool = true, memoryPadding: [Double]? = nil) -> [Double] {
        let d = c.dModel, n = b * t
        func norm(_ x: [Double], _ name: String) -> [Double] {
            layerNorm(x, width: d, weight: p[prefix + name + ".weight"], bias: p[prefix + name + ".bias"], eps: c.eps)
        }
        func sa(_ x: [Double]) -> [Double] {
            multiHeadAttention(p, prefix: prefix + "self_attn.", c.attention, query: x, key: x, value: x, batch: b,
                      targetLength: t, sourceLength: t, masks: Masks(isCausal: causal)).output
        }
        func ca(_ x: [Double]) -> [Double] {
            multiHeadAttention(p, prefix: prefix + "multihead_attn.", c.attention, query: x, key: memory, value: memory, batch: b,
                      targetLength: t, sourceLength: s, masks: Masks(padding: memoryPadding)).output
        }
        func ff(_ x: [Double]) -> [Double] {
            feedForward(p, prefix: prefix, x, rows: n, dModel: d, activation: c.activation)
        }
        var x = target
        if c.normFirst {
            x = add(x, sa(norm(x, "norm1")))
            x = add(x, ca(norm(x, "norm2")))
            x = add(x, ff(norm(x, "norm3")))
        } else {
            x = norm(add(x, sa(x)), "norm1")
            x = norm(add(x, ca(x)), "norm2")
            x = norm(add(x, ff(x)), "norm3")
        }
        return x
    }

    /// Checks `actual` against `expected` elementwise; the message names `what`.
    static func expectClose(_ actual: Tensor, _ expected: [Double], _ tolerance: Tolerance, _ what: String,
                     sourceLocation: SourceLocation = #_sourceLocation) throws {
        let m = mismatch(try actual.scalars(), expected, tolerance: tolerance)
        #expect(m == nil, "\(what): \(m ?? "")", sourceLocation: sourceLocation)
    }

    /// The tolerance of a Float32 attention/Transformer forward pass against its Float64 oracle.
    static let tolerance = Tolerance(absolute: 2e-4, relative: 2e-4)
}
