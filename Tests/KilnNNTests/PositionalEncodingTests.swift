import Foundation
import Kiln
import KilnTestSupport
import Testing

// Positional encodings (sinusoidal, learned, rotary) and the ViT patch embedding against Float64
// oracles written from the papers' formulas, with RoPE's invariants (norm, relative position) and
// gradients checked by central differences of the oracles.

private typealias ST = SequenceTesting

// MARK: - Float64 oracles

/// PE[pos, 2i] = sin(pos / base^(2i/d)), PE[pos, 2i + 1] = cos(pos / base^(2i/d)) (Vaswani et al. 2017).
private func sinusoid(_ pos: Int, _ j: Int, _ d: Int, base: Double = 10000) -> Double {
    let twoI = Double(j - j % 2)
    let angle = Double(pos) / Foundation.pow(base, twoI / Double(d))
    return j % 2 == 0 ? Foundation.sin(angle) : Foundation.cos(angle)
}

private func sinusoidTable(_ positions: Range<Int>, _ d: Int) -> [Double] {
    positions.flatMap { p in (0..<d).map { sinusoid(p, $0, d) } }
}

/// RoPE (Su et al. 2021) on `x` `[rows, seq, d]`: the pair (a, b) of frequency θ_i = base^(−2i/d),
/// read as the complex number x_a + i·x_b, is multiplied by e^{i·pos·θ_i}. Interleaved pairs are
/// (2i, 2i + 1); half-split pairs are (i, i + d/2).
private func ropeOracle(_ x: [Double], seq: Int, d: Int, positions: [Int], interleaved: Bool,
                        base: Double = 10000) -> [Double] {
    var y = x
    for row in 0..<(x.count / (seq * d)) {
        for s in 0..<seq {
            for i in 0..<(d / 2) {
                let theta = Double(positions[s]) * Foundation.pow(base, -2 * Double(i) / Double(d))
                let (a, b) = interleaved ? (2 * i, 2 * i + 1) : (i, i + d / 2)
                let o = (row * seq + s) * d
                let (re, im) = (x[o + a], x[o + b])
                let (c, sn) = (Foundation.cos(theta), Foundation.sin(theta))
                y[o + a] = re * c - im * sn
                y[o + b] = re * sn + im * c
            }
        }
    }
    return y
}

/// x + rows[offset ..< offset + T] for `[B, T, d]` (batchFirst) or `[T, B, d]`.
private func addRows(_ x: [Double], _ table: [Double], shape: [Int], offset: Int, batchFirst: Bool) -> [Double] {
    let d = shape[2]
    var y = x
    for i in 0..<shape[0] { for j in 0..<shape[1] { for k in 0..<d {
        let t = batchFirst ? j : i
        y[(i * shape[1] + j) * d + k] += table[(offset + t) * d + k]
    } } }
    return y
}

private func dot(_ a: ArraySlice<Double>, _ b: ArraySlice<Double>) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }

@Suite("Positional encodings")
struct PositionalEncodingTests {
    @Test("sinusoidal table: formula, PE[0] = [0, 1, 0, 1, …], odd width, offsets, Float64 angles at large positions",
          arguments: TestBackend.all)
    func sinusoidalTable(_ tb: TestBackend) throws {
        let b = tb.backend
        let pe = try sinusoidalPositionalEncoding(length: 50, dModel: 16, on: b)
        #expect(pe.shape == [50, 16] && !pe.requiresGradient)
        try ST.check(pe, sinusoidTable(0..<50, 16), .elementwise, "PE 50×16")
        try ST.check(try pe.sliced(axis: 0, start: 0, end: 1), (0..<16).map { $0 % 2 == 0 ? 0 : 1 }, .exact, "PE[0]")
        // Column 0 is sin(pos) (frequency 1), column 1 cos(pos); the last pair has wavelength 2π·10000^(14/16).
        let p7 = try ST.f64(try pe.sliced(axis: 0, start: 7, end: 8))
        #expect(Swift.abs(p7[0] - Foundation.sin(7)) < 1e-7 && Swift.abs(p7[1] - Foundation.cos(7)) < 1e-7)
        #expect(Swift.abs(p7[14] - Foundation.sin(7 / Foundation.pow(10000, 14.0 / 16))) < 1e-7)
        // Each pair of PE[pos + k] is PE[pos]'s pair rotated by k·ω_i (the paper's linear-offset property).
        let all = try ST.f64(pe)
        for (pos, k) in [(3, 5), (20, 29), (0, 49)] { for i in 0..<8 {
            let w = 1 / Foundation.pow(10000, Double(2 * i) / 16)
            let (s0, c0) = (all[pos * 16 + 2 * i], all[pos * 16 + 2 * i + 1])
            let (s1, c1) = (all[(pos + k) * 16 + 2 * i], all[(pos + k) * 16 + 2 * i + 1])
            let rotated = (s0 * Foundation.cos(Double(k) * w) + c0 * Foundation.sin(Double(k) * w),
                           c0 * Foundation.cos(Double(k) * w) - s0 * Foundation.sin(Double(k) * w))
            #expect(Swift.abs(rotated.0 - s1) < 1e-6 && Swift.abs(rotated.1 - c1) < 1e-6, "PE[\(pos)+\(k)] pair \(i)")
        } }
        let odd = try sinusoidalPositionalEncoding(length: 9, dModel: 7, on: b)
        try ST.check(odd, sinusoidTable(0..<9, 7), .elementwise, "PE odd dModel 7 (last column a sine)")
        let shifted = try sinusoidalPositionalEncoding(length: 10, dModel: 16, offset: 40, on: b)
        try ST.check(shifted, Array(all[(40 * 16)...]), .exact, "PE rows 40..<50 by offset")
        // Angles near 1e5 rad: a Float32 angle would be off by up to ~4e-3.
        let far = try sinusoidalPositionalEncoding(length: 3, dModel: 8, offset: 100_003, on: b)
        try ST.check(far, sinusoidTable(100_003..<100_006, 8), Tolerance(absolute: 1e-7, relative: 0), "PE at 1e5")
        let base100 = try sinusoidalPositionalEncoding(length: 4, dModel: 6, base: 100, on: b)
        try ST.check(base100, (0..<4).flatMap { p in (0..<6).map { sinusoid(p, $0, 6, base: 100) } }, .elementwise, "base 100")
        #expect(try sinusoidalPositionalEncoding(length: 0, dModel: 4, on: b).shape == [0, 4])
        ST.expectError("sinusoidalPositionalEncoding", mentioning: ["-1"], "negative length") {
            _ = try sinusoidalPositionalEncoding(length: -1, dModel: 4, on: b)
        }
        ST.expectError("sinusoidalPositionalEncoding", mentioning: ["0"], "zero width") {
            _ = try sinusoidalPositionalEncoding(length: 3, dModel: 0, on: b)
        }
        ST.expectError("sinusoidalPositionalEncoding", mentioning: ["base", "0.0"], "zero base") {
            _ = try sinusoidalPositionalEncoding(length: 3, dModel: 4, base: 0, on: b)
        }
    }

    @Test("SinusoidalPositionalEncoding: x + PE in both layouts, offsets, identity gradient, dropout, errors",
          arguments: TestBackend.all)
    func sinusoidalLayer(_ tb: TestBackend) throws {
        let b = tb.backend
        let layer = try SinusoidalPositionalEncoding(dModel: 8, maxLength: 20, on: b)
        let buffers = try layer.namedBuffers()
        #expect(layer.namedParameters().isEmpty && buffers.isEmpty)
        let table = sinusoidTable(0..<20, 8)
        let x = try ST.tensor([2, 5, 8], seed: 1, on: b)
        let xs = try ST.f64(x)
        try ST.check(try layer(x), addRows(xs, table, shape: [2, 5, 8], offset: 0, batchFirst: true), .elementwise, "[B, T, d]")
        try ST.check(try layer(x, offset: 15), addRows(xs, table, shape: [2, 5, 8], offset: 15, batchFirst: true),
                     .elementwise, "[B, T, d] offset 15 (last rows)")
        let seqFirst = try SinusoidalPositionalEncoding(dModel: 8, maxLength: 20, batchFirst: false, on: b)
        try ST.check(try seqFirst(x, offset: 2), addRows(xs, table, shape: [2, 5, 8], offset: 2, batchFirst: false),
                     .elementwise, "[T, B, d] offset 2")
        let x2 = try ST.tensor([5, 8], seed: 2, on: b)
        try ST.check(try layer(x2, offset: 1), zip(try ST.f64(x2), table[8...]).map { $0 + $1 }, .elementwise, "[T, d]")
        // Incremental decoding: one step at offset t equals row t of the whole sequence.
        let whole = try ST.f64(try layer(x))
        let step = try layer(try x.sliced(axis: 1, start: 3, end: 4), offset: 3)
        try ST.check(step, (0..<2).flatMap { n in whole[(n * 40 + 24)..<(n * 40 + 32)] }, .exact, "step at offset 3")
        // The gradient with respect to the input is the identity.
        let leaf = x.requiringGradient()
        let r = try ST.tensor([2, 5, 8], seed: 3, on: b)
        try (try layer(leaf, offset: 4) * r).sum().backward()
        try ST.check(try #require(leaf.gradient), try ST.f64(r), .exact, "∂/∂x")

        let dropped = try SinusoidalPositionalEncoding(dModel: 8, maxLength: 20, dropout: 0.5, seed: 9, on: b)
        #expect(dropped.children.map(\.name) == ["dropout"])
        let clean = addRows(xs, table, shape: [2, 5, 8], offset: 0, batchFirst: true)
        let trained = try ST.f64(try dropped(x))
        let zeros = trained.filter { $0 == 0 }.count
        #expect(zeros > 16 && zeros < 64, "p = 0.5 drops about half of 80: \(zeros)")
        for (y, c) in zip(trained, clean) where y != 0 {
            #expect(Swift.abs(y - 2 * c) <= 1e-5 * (1 + Swift.abs(c)), "kept elements are scaled by 1/(1 − p)")
        }
        dropped.eval()
        try ST.check(try dropped(x), clean, .elementwise, "eval: no dropout")

        ST.expectError("SinusoidalPositionalEncoding", mentioning: ["18..<23", "maxLength 20"], "past maxLength") {
            _ = try layer(x, offset: 18)
        }
        ST.expectError("SinusoidalPositionalEncoding", mentioning: ["-1"], "negative offset") { _ = try layer(x, offset: -1) }
        ST.expectError("SinusoidalPositionalEncoding", mentioning: ["[2, 5, 6]"], "width") {
            _ = try layer(try ST.tensor([2, 5, 6], seed: 1, on: b))
        }
        ST.expectError("SinusoidalPositionalEncoding", mentioning: ["dModel", "0"], "dModel 0") {
            _ = try SinusoidalPositionalEncoding(dModel: 0, on: b)
        }
        ST.expectError("SinusoidalPositionalEncoding", mentioning: ["1.5"], "dropout 1.5") {
            _ = try SinusoidalPositionalEncoding(dModel: 4, dropout: 1.5, on: b)
        }
        ST.expectError("SinusoidalPositionalEncoding", mentioning: ["-3.0"], "negative base") {
            _ = try SinusoidalPositionalEncoding(dModel: 4, base: -3, on: b)
        }
    }

    @Test("LearnedPositionalEmbedding: N(0, 1) seeded weight, x + E[pos], gradients by central differences",
          arguments: TestBackend.all)
    func learnedEmbedding(_ tb: TestBackend) throws {
        let b = tb.backend
        let layer = try LearnedPositionalEmbedding(maxLength: 6, dModel: 4, seed: 5, on: b)
        #expect(layer.namedParameters().map(\.name) == ["weight"] && layer.weight.shape == [6, 4] && layer.parameterCount == 24)
        let again = try LearnedPositionalEmbedding(maxLength: 6, dModel: 4, seed: 5, on: b)
        let other = try LearnedPositionalEmbedding(maxLength: 6, dModel: 4, seed: 6, on: b)
        #expect(try layer.weight.value.scalars() == again.weight.value.scalars())
        #expect(try layer.weight.value.scalars() != other.weight.value.scalars())
        let big = try ST.f64(try LearnedPositionalEmbedding(maxLength: 100, dModel: 100, seed: 1, on: b).weight.value)
        let mean = big.reduce(0, +) / 1e4, variance = big.reduce(0) { $0 + $1 * $1 } / 1e4 - mean * mean
        #expect(Swift.abs(mean) < 0.05 && Swift.abs(variance - 1) < 0.06, "N(0, 1): mean \(mean), var \(variance)")

        let w = try ST.f64(layer.weight.value)
        let x = try ST.tensor([2, 3, 4], seed: 7, on: b)
        try ST.check(try layer(x, offset: 2), addRows(try ST.f64(x), w, shape: [2, 3, 4], offset: 2, batchFirst: true),
                     .elementwise, "x + E[2..<5]")
        let seqFirst = try LearnedPositionalEmbedding(maxLength: 6, dModel: 4, batchFirst: false, seed: 5, on: b)
        try ST.check(try seqFirst(x, offset: 1), addRows(try ST.f64(x), w, shape: [2, 3, 4], offset: 1, batchFirst: false),
                     .elementwise, "[T, B, d] + E[1..<3]")
        // ∂/∂E[p] sums the output gradient over the batch at position p; rows 0, 1 and 5 get zero.
        let leaf = x.requiringGradient()
        try ST.gradientCheck([("weight", layer.weight.value), ("input", leaf)], forward: { try layer(leaf, offset: 2) },
                             oracle: { v in addRows(v[1], v[0], shape: [2, 3, 4], offset: 2, batchFirst: true) },
                             "LearnedPositionalEmbedding")
        let g = try ST.f64(try #require(layer.weight.gradient))
        #expect(g[0..<8].allSatisfy { $0 == 0 } && g[20..<24].allSatisfy { $0 == 0 })

        ST.expectError("LearnedPositionalEmbedding", mentioning: ["4..<7", "maxLength 6"], "past maxLength") {
            _ = try layer(x, offset: 4)
        }
        ST.expectError("LearnedPositionalEmbedding", mentioning: ["maxLength", "0"], "maxLength 0") {
            _ = try LearnedPositionalEmbedding(maxLength: 0, dModel: 4, seed: 0, on: b)
        }
        ST.expectError("LearnedPositionalEmbedding", mentioning: ["[3, 5]"], "width") {
            _ = try layer(try ST.tensor([3, 5], seed: 1, on: b))
        }
    }

    @Test("RoPE against the complex-rotation oracle, for both pairings, with positions and offsets",
          arguments: TestBackend.all, RotaryPairing.allCases)
    func ropeOracleMatch(_ tb: TestBackend, _ pairing: RotaryPairing) throws {
        let b = tb.backend
        let interleaved = pairing == .interleaved
        let x = try ST.tensor([2, 3, 5, 8], seed: 11, on: b)
        let xs = try ST.f64(x)
        let positions = [0, 1, 7, 2, 1000]
        let y = try applyRotaryEmbedding(x, positions: positions, pairing: pairing)
        #expect(y.shape == x.shape)
        let tol = Tolerance(absolute: 2e-6, relative: 1e-5)
        try ST.check(y, ropeOracle(xs, seq: 5, d: 8, positions: positions, interleaved: interleaved), tol, "RoPE \(pairing)")
        // Position 0 is the identity; at position 1 the first pair turns by θ_0 = 1 rad.
        let ys = try ST.f64(y)
        #expect(Array(ys[0..<8]) == Array(xs[0..<8]), "position 0 leaves the vector unchanged")
        let (a, c) = interleaved ? (8, 9) : (8, 12)
        #expect(Swift.abs(ys[a] - (xs[a] * Foundation.cos(1) - xs[c] * Foundation.sin(1))) < 1e-6)
        // The layer uses offset ..< offset + seq; a one-token step at offset t equals row t.
        let rope = try RotaryEmbedding(headDim: 8, pairing: pairing)
        #expect(rope.namedParameters().isEmpty)
        let (q, k) = try rope(query: x, key: try x.sliced(axis: 2, start: 0, end: 2), offset: 3)
        try ST.check(q, ropeOracle(xs, seq: 5, d: 8, positions: [3, 4, 5, 6, 7], interleaved: interleaved), tol, "query offset 3")
        #expect(k.shape == [2, 3, 2, 8])
        let whole = try ST.f64(try rope(x))
        let last = try ST.f64(try rope(try x.sliced(axis: 2, start: 4, end: 5), offset: 4))
        for row in 0..<6 {
            #expect(Array(last[(row * 8)..<(row * 8 + 8)]) == Array(whole[((row * 5 + 4) * 8)..<((row * 5 + 4) * 8 + 8)]),
                    "incremental step at offset 4, row \(row)")
        }
        // LLaMA 3's base 500000 and a 3-D input [heads, seq, D].
        let x3 = try ST.tensor([2, 3, 4], seed: 12, on: b)
        try ST.check(try applyRotaryEmbedding(x3, positions: [5, 9, 40], base: 500_000, pairing: pairing),
                     ropeOracle(try ST.f64(x3), seq: 3, d: 4, positions: [5, 9, 40], interleaved: interleaved, base: 500_000),
                     tol, "base 500000")
    }

    @Test("RoPE preserves norms; qᵀk after rotation depends only on the relative offset; half-split = permuted interleaved",
          arguments: TestBackend.all)
    func ropeProperties(_ tb: TestBackend) throws {
        let b = tb.backend
        let d = 16
        for pairing in RotaryPairing.allCases {
            let x = try ST.tensor([3, 7, d], seed: 21, on: b)
            let xs = try ST.f64(x)
            let ys = try ST.f64(try applyRotaryEmbedding(x, positions: [0, 3, 9, 50, 51, 400, 12345], pairing: pairing))
            for v in 0..<21 {
                let range = (v * d)..<(v * d + d)
                let before = dot(xs[range], xs[range]).squareRoot(), after = dot(ys[range], ys[range]).squareRoot()
                #expect(Swift.abs(before - after) <= 1e-5 * before, "\(pairing): norm of vector \(v): \(before) → \(after)")
            }
            // ⟨R_m q, R_n k⟩ = ⟨R_{m+s} q, R_{n+s} k⟩, and it changes with m − n.
            let q = try ST.tensor([1, 1, 1, d], seed: 22, on: b), k = try ST.tensor([1, 1, 1, d], seed: 23, on: b)
            func score(_ m: Int, _ n: Int) throws -> Double {
                let rq = try ST.f64(try applyRotaryEmbedding(q, positions: [m], pairing: pairing))
                let rk = try ST.f64(try applyRotaryEmbedding(k, positions: [n], pairing: pairing))
                return dot(rq[...], rk[...])
            }
            for (m, n) in [(0, 3), (5, 2), (17, 17), (100, 37)] {
                let reference = try score(m, n)
                for s in [1, 7, 1000] {
                    let shifted = try score(m + s, n + s)
                    #expect(Swift.abs(shifted - reference) <= 2e-5 * (1 + Swift.abs(reference)),
                            "\(pairing): q·k at (\(m), \(n)) = \(reference), shifted by \(s): \(shifted)")
                }
                #expect(Swift.abs(try score(m, n + 1) - reference) > 1e-3, "\(pairing): q·k depends on m − n")
            }
        }
        // Half-split RoPE is interleaved RoPE on the components reordered as (x_0, x_{d/2}, x_1, x_{d/2+1}, …).
        let x = try ST.tensor([2, 4, d], seed: 24, on: b)
        let xs = try ST.f64(x)
        let positions = [2, 0, 31, 7]
        var woven = xs
        for v in 0..<8 { for i in 0..<(d / 2) {
            woven[v * d + 2 * i] = xs[v * d + i]
            woven[v * d + 2 * i + 1] = xs[v * d + i + d / 2]
        } }
        let wovenTensor = try Tensor(woven.map(Float.init), shape: [2, 4, d], on: b)
        let viaInterleaved = try ST.f64(try applyRotaryEmbedding(wovenTensor, positions: positions, pairing: .interleaved))
        var unwoven = viaInterleaved
        for v in 0..<8 { for i in 0..<(d / 2) {
            unwoven[v * d + i] = viaInterleaved[v * d + 2 * i]
            unwoven[v * d + i + d / 2] = viaInterleaved[v * d + 2 * i + 1]
        } }
        try ST.check(try applyRotaryEmbedding(x, positions: positions, pairing: .halfSplit), unwoven, .exact,
                     "half-split = un-permute ∘ interleaved ∘ permute")
    }

    @Test("RoPE gradients by central differences; errors name the op and values", arguments: TestBackend.all)
    func ropeGradientsAndErrors(_ tb: TestBackend) throws {
        let b = tb.backend
        for pairing in RotaryPairing.allCases {
            let x = try ST.tensor([2, 3, 6], seed: 31, on: b).requiringGradient()
            try ST.gradientCheck([("x", x)], forward: { try applyRotaryEmbedding(x, positions: [4, 0, 19], pairing: pairing) },
                                 oracle: { ropeOracle($0[0], seq: 3, d: 6, positions: [4, 0, 19], interleaved: pairing == .interleaved) },
                                 "RoPE \(pairing)")
        }
        let x = try ST.tensor([1, 2, 4, 8], seed: 32, on: b)
        ST.expectError("RotaryEmbedding", mentioning: ["even", "7"], "odd headDim") { _ = try RotaryEmbedding(headDim: 7) }
        ST.expectError("RotaryEmbedding", mentioning: ["0"], "zero headDim") { _ = try RotaryEmbedding(headDim: 0) }
        ST.expectError("RotaryEmbedding", mentioning: ["base", "0.0"], "zero base") { _ = try RotaryEmbedding(headDim: 8, base: 0) }
        ST.expectError("RotaryEmbedding", mentioning: ["maxLength", "0"], "maxLength 0") {
            _ = try RotaryEmbedding(headDim: 8, maxLength: 0)
        }
        let rope = try RotaryEmbedding(headDim: 8, maxLength: 10)
        ST.expectError("RotaryEmbedding", mentioning: ["8..<12", "maxLength 10"], "past maxLength") { _ = try rope(x, offset: 8) }
        ST.expectError("RotaryEmbedding", mentioning: ["-2"], "negative offset") { _ = try rope(x, offset: -2) }
        ST.expectError("RotaryEmbedding", mentioning: ["[1, 2, 4, 6]"], "wrong headDim") {
            _ = try rope(try ST.tensor([1, 2, 4, 6], seed: 1, on: b))
        }
        ST.expectError("applyRotaryEmbedding", mentioning: ["even", "5"], "odd D") {
            _ = try applyRotaryEmbedding(try ST.tensor([2, 5], seed: 1, on: b), positions: [0, 1])
        }
        ST.expectError("applyRotaryEmbedding", mentioning: ["3 positions", "seq 4"], "position count") {
            _ = try applyRotaryEmbedding(x, positions: [0, 1, 2])
        }
        ST.expectError("applyRotaryEmbedding", mentioning: ["[8]"], "rank 1") {
            _ = try applyRotaryEmbedding(try ST.tensor([8], seed: 1, on: b), positions: [0])
        }
        ST.expectError("applyRotaryEmbedding", mentioning: ["nan"], "NaN base") {
            _ = try applyRotaryEmbedding(x, positions: [0, 1, 2, 3], base: .nan)
        }
    }

    @Test("VisionPatchEmbedding: conv patches = linear projection of flattened patches, CLS token, position embedding",
          arguments: TestBackend.all)
    func visionPatchEmbedding(_ tb: TestBackend) throws {
        let b = tb.backend
        let (n, c, h, w, ph, pw, e) = (2, 3, 8, 6, 4, 3, 5)
        let vit = try VisionPatchEmbedding(imageSize: [h, w], patchSize: [ph, pw], inputChannels: c, embedDim: e, seed: 3, on: b)
        #expect(vit.patchCount == 4)
        #expect(vit.namedParameters().map(\.name) == ["class_token", "pos_embedding", "conv_proj.weight", "conv_proj.bias"])
        #expect(vit.parameterCount == e + 5 * e + e * c * ph * pw + e)
        #expect(try ST.f64(try #require(vit.classToken).value).allSatisfy { $0 == 0 }, "class token starts at zero")
        let pos0 = try ST.f64(vit.positionEmbedding.value)
        #expect(pos0.allSatisfy { Swift.abs($0) < 0.1 } && pos0.contains { $0 != 0 }, "pos_embedding ~ N(0, 0.02²)")
        // Non-trivial class token and position embedding so the oracle sees them.
        try vit.classToken!.assign(try ST.tensor([1, 1, e], seed: 40, on: b))
        try vit.positionEmbedding.assign(try ST.tensor([1, 5, e], seed: 41, on: b))
        let x = try ST.tensor([n, c, h, w], seed: 42, on: b).requiringGradient()

        // x_p·E for the patches in row-major grid order, each flattened channel-major (c, row, column).
        func oracle(_ v: [[Double]]) -> [Double] {
            let (cls, pos, weight, bias, image) = (v[0], v[1], v[2], v[3], v[4])
            var out = [Double]()
            for s in 0..<n {
                out += (0..<e).map { cls[$0] + pos[$0] }
                for gy in 0..<(h / ph) { for gx in 0..<(w / pw) {
                    let patch = (0..<c).flatMap { ch in (0..<ph).flatMap { u in (0..<pw).map { q in
                        image[((s * c + ch) * h + gy * ph + u) * w + gx * pw + q] } } }
                    let token = 1 + gy * (w / pw) + gx
                    for o in 0..<e {
                        let row = weight[(o * patch.count)..<((o + 1) * patch.count)]
                        out.append(dot(row, patch[...]) + bias[o] + pos[token * e + o])
                    }
                } }
            }
            return out
        }
        let y = try vit(x)
        #expect(y.shape == [n, 5, e])
        let leaves: [(name: String, tensor: Tensor)] = [("class_token", vit.classToken!.value), ("pos_embedding", vit.positionEmbedding.value),
                                                        ("conv_proj.weight", vit.projection.weight.value),
                                                        ("conv_proj.bias", vit.projection.bias!.value), ("input", x)]
        try ST.check(y, oracle(try leaves.map { try ST.f64($0.tensor) }), .gemm(k: c * ph * pw), "ViT tokens")
        try ST.gradientCheck(leaves, forward: { try vit(x) }, oracle: oracle, "VisionPatchEmbedding")

        let noClass = try VisionPatchEmbedding(imageSize: 4, patchSize: 2, inputChannels: 1, embedDim: 3, classToken: false, seed: 1, on: b)
        #expect(noClass.namedParameters().map(\.name) == ["pos_embedding", "conv_proj.weight", "conv_proj.bias"])
        #expect(try noClass(try ST.tensor([2, 1, 4, 4], seed: 1, on: b)).shape == [2, 4, 3])
        ST.expectError("VisionPatchEmbedding", mentioning: ["[4, 3]", "[8, 7]"], "patch does not divide") {
            _ = try VisionPatchEmbedding(imageSize: [8, 7], patchSize: [4, 3], inputChannels: 3, embedDim: 5, seed: 0, on: b)
        }
        ST.expectError("VisionPatchEmbedding", mentioning: ["[2, 3, 8, 8]"], "image size") {
            _ = try vit(try ST.tensor([2, 3, 8, 8], seed: 1, on: b))
        }
    }
}
