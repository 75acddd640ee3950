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

    /// Checks `actual` against `expected` elementwise; the message names `what`.
    static func expectClose(_ actual: Tensor, _ expected: [Double], _ tolerance: Tolerance, _ what: String,
                     sourceLocation: SourceLocation = #_sourceLocation) throws {
        let m = mismatch(try actual.scalars(), expected, tolerance: tolerance)
        #expect(m == nil, "\(what): \(m ?? "")", sourceLocation: sourceLocation)
    }

    /// The tolerance of a Float32 attention/Transformer forward pass against its Float64 oracle.
    static let tolerance = Tolerance(absolute: 2e-4, relative: 2e-4)
}
