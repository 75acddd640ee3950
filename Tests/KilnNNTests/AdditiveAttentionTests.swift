import Foundation
import Kiln
import KilnTestSupport
import Testing

// Bahdanau (additive) and Luong (dot, general, concat) attention against Float64 oracles written
// from the papers' score functions, with masks (padding, a row that sees nothing), one-step queries,
// and gradients of every input and parameter checked by central differences of the oracles.

private typealias ST = SequenceTesting

// MARK: - Float64 oracle

/// The sizes of a source-attention problem: query [B, T, dq], key [B, S, dk], value [B, S, dv].
private struct Dims {
    let b, t, s, dq, dk, dv: Int
}

/// softmax over the visible entries of one row; all zeros when none is visible.
private func maskedSoftmax(_ e: [Double], _ keep: [Bool]) -> [Double] {
    guard let m = e.indices.filter({ keep[$0] }).map({ e[$0] }).max() else { return e.map { _ in 0 } }
    let ex = e.indices.map { keep[$0] ? Foundation.exp(e[$0] - m) : 0 }
    let z = ex.reduce(0, +)
    return ex.map { $0 / z }
}

/// Context Σ_s α_ts·v_s and weights α for `score(query vector, key vector)`, flattened as
/// context [B, T, dv] followed by weights [B, T, S].
private func sourceAttentionOracle(_ q: [Double], _ k: [Double], _ v: [Double], _ d: Dims, keep: [Bool]?,
                                   score: (ArraySlice<Double>, ArraySlice<Double>) -> Double) -> [Double] {
    var context = [Double](), weights = [Double]()
    for n in 0..<d.b {
        for t in 0..<d.t {
            let qv = q[((n * d.t + t) * d.dq)..<((n * d.t + t + 1) * d.dq)]
            let e = (0..<d.s).map { s in score(qv, k[((n * d.s + s) * d.dk)..<((n * d.s + s + 1) * d.dk)]) }
            let a = maskedSoftmax(e, (0..<d.s).map { keep?[(n * d.t + t) * d.s + $0] ?? true })
            weights += a
            context += (0..<d.dv).map { j in (0..<d.s).reduce(0.0) { $0 + a[$1] * v[(n * d.s + $1) * d.dv + j] } }
        }
    }
    return context + weights
}

private func dot(_ a: ArraySlice<Double>, _ b: ArraySlice<Double>) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }

/// W·x for W [rows, x.count] row-major.
private func apply(_ w: [Double], _ x: ArraySlice<Double>) -> [Double] {
    (0..<(w.count / x.count)).map { r in dot(w[(r * x.count)..<((r + 1) * x.count)], x) }
}

/// Bahdanau et al. (2015): e = vᵀ·tanh(W_q·q + W_k·k + b).
private func additiveScore(wq: [Double], wk: [Double], bias: [Double]?, v: [Double])
    -> (ArraySlice<Double>, ArraySlice<Double>) -> Double {
    { q, k in
        let pre = zip(apply(wq, q), apply(wk, k)).enumerated().map { $0.element.0 + $0.element.1 + (bias?[$0.offset] ?? 0) }
        return zip(v, pre).reduce(0) { $0 + $1.0 * Foundation.tanh($1.1) }
    }
}

/// Luong et al. (2015), eq. 8: dot hᵀh̄, general hᵀ·W·h̄, concat vᵀ·tanh(W·[h; h̄]).
private func luongScore(_ kind: LuongScore, weight: [Double]?, v: [Double]?)
    -> (ArraySlice<Double>, ArraySlice<Double>) -> Double {
    switch kind {
    case .dot:
        return { q, k in dot(q, k) }
    case .general:
        return { q, k in
            let wk = apply(weight!, k)                     // W·h̄, W [dq, dk]
            return dot(q, wk[...])
        }
    case .concat:
        return { q, k in
            let joined = Array(q) + Array(k)
            return zip(v!, apply(weight!, joined[...])).reduce(0) { $0 + $1.0 * Foundation.tanh($1.1) }
        }
    }
}

private let tolerance = Tolerance(absolute: 2e-5, relative: 1e-4)

/// The padding mask [2, 4]: batch 0 sees all four source positions, batch 1 the first two.
private let paddingMask: [Float] = [1, 1, 1, 1, 1, 1, 0, 0]
/// A [2, 3, 4] mask in which query 0 of batch 1 sees nothing.
private let rowMask: [Float] = [1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0,
                                0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 0, 1]

private func keep(padding: [Float], t: Int) -> [Bool] {
    (0..<2).flatMap { n in (0..<t).flatMap { _ in (0..<4).map { padding[n * 4 + $0] != 0 } } }
}

/// Context and weights flattened and joined, so one gradient check covers both outputs.
private func joined(_ r: (context: Tensor, weights: Tensor)) throws -> Tensor {
    try Tensor.concatenated([r.context.flattened(), r.weights.flattened()], axis: 0)
}

@Suite("Additive and Luong attention")
struct AdditiveAttentionTests {
    @Test("AdditiveAttention: vᵀtanh(W_q q + W_k k) scores, softmax over source, context; names and init",
          arguments: TestBackend.all)
    func additive(_ tb: TestBackend) throws {
        let b = tb.backend
        let d = Dims(b: 2, t: 3, s: 4, dq: 5, dk: 6, dv: 3)
        let layer = try AdditiveAttention(querySize: 5, keySize: 6, hiddenSize: 7, seed: 1, on: b)
        #expect(layer.namedParameters().map(\.name) == ["query_weight", "key_weight", "v"])
        #expect(layer.queryWeight.shape == [7, 5] && layer.keyWeight.shape == [7, 6] && layer.v.shape == [7])
        #expect(try ST.f64(layer.queryWeight.value).allSatisfy { Swift.abs($0) <= 1 / 5.0.squareRoot() })
        #expect(try ST.f64(layer.keyWeight.value).allSatisfy { Swift.abs($0) <= 1 / 6.0.squareRoot() })
        #expect(try ST.f64(layer.v.value).allSatisfy { Swift.abs($0) <= 1 / 7.0.squareRoot() })
        #expect(try layer.queryWeight.value.scalars().prefix(7) != layer.keyWeight.value.scalars().prefix(7))
        let biased = try AdditiveAttention(querySize: 5, keySize: 6, hiddenSize: 7, bias: true, seed: 1, on: b)
        #expect(biased.namedParameters().map(\.name) == ["query_weight", "key_weight", "bias", "v"] && biased.parameterCount == 35 + 42 + 14)

        let q = try ST.tensor([2, 3, 5], seed: 2, on: b), k = try ST.tensor([2, 4, 6], seed: 3, on: b)
        let v = try ST.tensor([2, 4, 3], seed: 4, on: b)
        let (qs, ks, vs) = (try ST.f64(q), try ST.f64(k), try ST.f64(v))
        for l in [layer, biased] {
            let score = additiveScore(wq: try ST.f64(l.queryWeight.value), wk: try ST.f64(l.keyWeight.value),
                                      bias: try l.bias.map { try ST.f64($0.value) }, v: try ST.f64(l.v.value))
            let r = try l(query: q, key: k, value: v)
            #expect(r.context.shape == [2, 3, 3] && r.weights.shape == [2, 3, 4])
            try ST.check(try joined(r), sourceAttentionOracle(qs, ks, vs, d, keep: nil, score: score), tolerance,
                         "additive (bias \(l.bias != nil))")
            let masked = try l(query: q, key: k, value: v, mask: try Tensor(paddingMask, shape: [2, 4], on: b))
            try ST.check(try joined(masked), sourceAttentionOracle(qs, ks, vs, d, keep: keep(padding: paddingMask, t: 3), score: score),
                         tolerance, "additive, padding mask [B, S]")
        }
        // A rank-3 mask with a row that sees nothing: zero weights and context there, not NaN.
        let score = additiveScore(wq: try ST.f64(layer.queryWeight.value), wk: try ST.f64(layer.keyWeight.value), bias: nil,
                                  v: try ST.f64(layer.v.value))
        let r = try layer(query: q, key: k, value: v, mask: try Tensor(rowMask, shape: [2, 3, 4], on: b))
        let expected = sourceAttentionOracle(qs, ks, vs, d, keep: rowMask.map { $0 != 0 }, score: score)
        try ST.check(try joined(r), expected, tolerance, "additive, [B, T, S] mask with an empty row")
        let w = try ST.f64(r.weights), ctx = try ST.f64(r.context)
        #expect(w[12..<16].allSatisfy { $0 == 0 } && ctx[9..<12].allSatisfy { $0 == 0 })
        for row in [0, 1, 2, 4, 5] { #expect(Swift.abs(w[(row * 4)..<(row * 4 + 4)].reduce(0, +) - 1) < 1e-6) }
        // A mask broadcast over the batch ([1, T, S]) and a one-step query [B, dq].
        let shared = try layer(query: q, key: k, value: v, mask: try Tensor(Array(rowMask[0..<12]), shape: [1, 3, 4], on: b))
        try ST.check(try joined(shared), sourceAttentionOracle(qs, ks, vs, d, keep: (rowMask[0..<12] + rowMask[0..<12]).map { $0 != 0 },
                                                               score: score), tolerance, "additive, [1, T, S] mask")
        let step = try layer(query: try q.sliced(axis: 1, start: 1, end: 2).squeezed(axis: 1), key: k)
        #expect(step.context.shape == [2, 6] && step.weights.shape == [2, 4])
        let stepQ: [Double] = Array(qs[5..<10]) + Array(qs[20..<25])  // query 1 of each batch
        try ST.check(try joined(step), sourceAttentionOracle(stepQ, ks, ks, Dims(b: 2, t: 1, s: 4, dq: 5, dk: 6, dv: 6), keep: nil,
                                                             score: score), tolerance, "one-step query, value = key")
    }

    @Test("AdditiveAttention gradients of query, key, value and every parameter by central differences",
          arguments: TestBackend.all)
    func additiveGradients(_ tb: TestBackend) throws {
        let b = tb.backend
        let d = Dims(b: 2, t: 3, s: 4, dq: 3, dk: 4, dv: 2)
        let layer = try AdditiveAttention(querySize: 3, keySize: 4, hiddenSize: 3, bias: true, seed: 5, on: b)
        let q = try ST.tensor([2, 3, 3], seed: 6, on: b).requiringGradient()
        let k = try ST.tensor([2, 4, 4], seed: 7, on: b).requiringGradient()
        let v = try ST.tensor([2, 4, 2], seed: 8, on: b).requiringGradient()
        let mask = try Tensor(rowMask, shape: [2, 3, 4], on: b)
        let keepRows = rowMask.map { $0 != 0 }
        try ST.gradientCheck([("query", q), ("key", k), ("value", v), ("query_weight", layer.queryWeight.value),
                              ("key_weight", layer.keyWeight.value), ("bias", layer.bias!.value), ("v", layer.v.value)],
                             forward: { try joined(try layer(query: q, key: k, value: v, mask: mask)) },
                             oracle: { x in
                                 sourceAttentionOracle(x[0], x[1], x[2], d, keep: keepRows,
                                                       score: additiveScore(wq: x[3], wk: x[4], bias: x[5], v: x[6]))
                             }, "AdditiveAttention")
        // The query row that sees nothing gets an exact zero gradient (no NaN from the hidden row).
        let gq = try ST.f64(try #require(q.gradient))
        #expect(gq[9..<12].allSatisfy { $0 == 0 }, "∂/∂query of the empty row: \(gq[9..<12])")
    }

    @Test("LuongAttention: dot, general and concat scores, masks and gradients by central differences",
          arguments: TestBackend.all)
    func luong(_ tb: TestBackend) throws {
        let b = tb.backend
        let cases: [(LuongScore, Int, Int)] = [(.dot, 4, 4), (.general, 3, 4), (.concat(hiddenSize: 5), 3, 4)]
        for (kind, dq, dk) in cases {
            let d = Dims(b: 2, t: 3, s: 4, dq: dq, dk: dk, dv: 2)
            let layer = try LuongAttention(score: kind, querySize: dq, keySize: dk, seed: 9, on: b)
            switch kind {
            case .dot: #expect(layer.namedParameters().isEmpty)
            case .general:
                #expect(layer.namedParameters().map(\.name) == ["weight"] && layer.weight?.shape == [dq, dk])
                #expect(try ST.f64(layer.weight!.value).allSatisfy { Swift.abs($0) <= 1 / Double(dq).squareRoot() })
            case .concat:
                #expect(layer.namedParameters().map(\.name) == ["weight", "v"] && layer.weight?.shape == [5, dq + dk])
                #expect(layer.v?.shape == [5])
            }
            let q = try ST.tensor([2, 3, dq], seed: 10, on: b).requiringGradient()
            let k = try ST.tensor([2, 4, dk], seed: 11, on: b).requiringGradient()
            let v = try ST.tensor([2, 4, 2], seed: 12, on: b).requiringGradient()
            let mask = try Tensor(paddingMask, shape: [2, 4], on: b)
            let keepRows = keep(padding: paddingMask, t: 3)
            let (qs, ks, vs) = (try ST.f64(q), try ST.f64(k), try ST.f64(v))
            let w = try layer.weight.map { try ST.f64($0.value) }, vv = try layer.v.map { try ST.f64($0.value) }
            try ST.check(try joined(try layer(query: q, key: k, value: v)),
                         sourceAttentionOracle(qs, ks, vs, d, keep: nil, score: luongScore(kind, weight: w, v: vv)),
                         tolerance, "Luong \(kind)")
            var leaves: [(name: String, tensor: Tensor)] = [("query", q), ("key", k), ("value", v)]
            leaves += layer.namedParameters().map { ($0.name, $0.parameter.value) }
            try ST.gradientCheck(leaves, forward: { try joined(try layer(query: q, key: k, value: v, mask: mask)) },
                                 oracle: { x in
                                     sourceAttentionOracle(x[0], x[1], x[2], d, keep: keepRows,
                                                           score: luongScore(kind, weight: x.count > 3 ? x[3] : nil,
                                                                             v: x.count > 4 ? x[4] : nil))
                                 }, "Luong \(kind)")
        }
        // Dot attention of one query equal to a key, scaled up, puts its weight on that key; self-attention call.
        let layer = try LuongAttention(score: .dot, querySize: 3, keySize: 3, seed: 0, on: b)
        let keys = try Tensor([1, 0, 0, 0, 1, 0, 0, 0, 1], shape: [1, 3, 3], on: b)
        let r = try layer(query: try Tensor([0, 20, 0], shape: [1, 3], on: b), key: keys)
        #expect(try r.weights.scalars()[1] > 0.999999 && r.weights.shape == [1, 3])
        #expect(try layer(keys).shape == [1, 3, 3])
    }

    @Test("errors name the layer and the values", arguments: TestBackend.all)
    func errors(_ tb: TestBackend) throws {
        let b = tb.backend
        let layer = try AdditiveAttention(querySize: 3, keySize: 4, hiddenSize: 5, seed: 0, on: b)
        let q = try ST.tensor([2, 3, 3], seed: 1, on: b), k = try ST.tensor([2, 4, 4], seed: 2, on: b)
        ST.expectError("AdditiveAttention", mentioning: ["hiddenSize", "0"], "hiddenSize 0") {
            _ = try AdditiveAttention(querySize: 3, keySize: 4, hiddenSize: 0, seed: 0, on: b)
        }
        ST.expectError("AdditiveAttention", mentioning: ["querySize 3", "[2, 3, 4]"], "query width") {
            _ = try layer(query: try ST.tensor([2, 3, 4], seed: 1, on: b), key: k)
        }
        ST.expectError("AdditiveAttention", mentioning: ["keySize 4", "[2, 4, 3]"], "key width") {
            _ = try layer(query: q, key: try ST.tensor([2, 4, 3], seed: 1, on: b))
        }
        ST.expectError("AdditiveAttention", mentioning: ["[2, 5, 2]"], "value length") {
            _ = try layer(query: q, key: k, value: try ST.tensor([2, 5, 2], seed: 1, on: b))
        }
        ST.expectError("AdditiveAttention", mentioning: ["[3, 3, 3]"], "batch") {
            _ = try layer(query: try ST.tensor([3, 3, 3], seed: 1, on: b), key: k)
        }
        ST.expectError("AdditiveAttention", mentioning: ["[2, 3]", "[2, 4]"], "mask shape") {
            _ = try layer(query: q, key: k, mask: try Tensor.ones([2, 3], on: b))
        }
        ST.expectError("AdditiveAttention", mentioning: ["[2, 2, 4]"], "rank-3 mask shape") {
            _ = try layer(query: q, key: k, mask: try Tensor.ones([2, 2, 4], on: b))
        }
        ST.expectError("AdditiveAttention", mentioning: ["[4]"], "rank-1 key") {
            _ = try layer(query: q, key: try ST.tensor([4], seed: 1, on: b))
        }
        ST.expectError("LuongAttention", mentioning: ["3", "4"], "dot needs equal sizes") {
            _ = try LuongAttention(score: .dot, querySize: 3, keySize: 4, seed: 0, on: b)
        }
        ST.expectError("LuongAttention", mentioning: ["hiddenSize", "0"], "concat hiddenSize 0") {
            _ = try LuongAttention(score: .concat(hiddenSize: 0), querySize: 3, keySize: 4, seed: 0, on: b)
        }
        let general = try LuongAttention(score: .general, querySize: 3, keySize: 4, seed: 0, on: b)
        ST.expectError("LuongAttention", mentioning: ["keySize 4"], "Luong key width") {
            _ = try general(query: q, key: try ST.tensor([2, 4, 5], seed: 1, on: b))
        }
    }
}
