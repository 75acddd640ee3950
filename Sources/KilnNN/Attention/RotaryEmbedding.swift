import Foundation
import KilnCore

// Rotary positional embedding (RoPE, Su et al. 2021, "RoFormer"): each pair of components of a
// query or key vector at position m is rotated by the angle m·θ_i, θ_i = base^(−2i/D), so that
// ⟨R_m q, R_n k⟩ depends on m and n only through m − n.

/// Which components of a `headDim`-vector RoPE rotates together.
public enum RotaryPairing: String, Sendable, CaseIterable {
    /// Pairs `(x_{2i}, x_{2i+1})`, `i = 0 ..< D/2`: the paper's form (Su et al. 2021, eq. 34) and the
    /// seed catalogue's; RoFormer, GPT-J and Meta's reference LLaMA code (a complex view of adjacent
    /// pairs).
    case interleaved
    /// Pairs `(x_i, x_{i + D/2})`, `i = 0 ..< D/2` ("rotate_half"): GPT-NeoX and Hugging Face's LLaMA.
    /// It is the interleaved form with the components permuted (evens first, then odds), so the two
    /// agree once the projection weights are permuted the same way; they are not interchangeable on
    /// the same weights.
    case halfSplit
}

/// Rotates `x` by RoPE at `positions`: for pair `(a, b)` of frequency `θ_i = base^(−2i/D)` at
/// position `p`, `y_a = x_a·cos(pθ_i) − x_b·sin(pθ_i)`, `y_b = x_b·cos(pθ_i) + x_a·sin(pθ_i)`.
///
/// Shapes: `x` `[…, seq, D]`, typically `[batch, heads, seq, headDim]`, with `D` even; `positions`
/// holds one position per `seq` index, shared by the leading axes; the result has `x`'s shape. Which
/// components pair up is `pairing` (default: the paper's interleaved pairs). The angles, sines and
/// cosines are computed in Float64 from the integer positions and rounded once to Float32 (no angle
/// error at large positions); the rotation itself is `x ⊙ cos + partner(x) ⊙ ±sin` in Kiln ops, so it
/// is differentiable with respect to `x` (the pullback is the inverse rotation). Each rotation is
/// orthogonal: the norm of every pair, hence of every vector, is preserved, and
/// `⟨rope(q, m), rope(k, n)⟩ = ⟨rope(q, m + s), rope(k, n + s)⟩` for any shift s.
/// - Parameters:
///   - positions: integer positions (any sign), `positions.count == seq`.
///   - base: 10000 in the paper (LLaMA 3 uses 500000); finite and > 0.
/// - Throws: `TensorError` naming `applyRotaryEmbedding` for a rank < 2, an odd or zero `D`, a
///   position count other than `seq`, or a bad base.
public func applyRotaryEmbedding(_ x: Tensor, positions: [Int], base: Double = 10000,
                                 pairing: RotaryPairing = .interleaved) throws -> Tensor {
    try applyRotary(x, positions: positions, base: base, pairing: pairing, op: "applyRotaryEmbedding")
}

private func applyRotary(_ x: Tensor, positions: [Int], base: Double, pairing: RotaryPairing,
                         op: String) throws -> Tensor {
    guard x.rank >= 2 else {
        throw TensorError(.shapeMismatch, op: op, "expects input [..., seq, headDim], got shape \(x.shape)")
    }
    let t = x.shape[x.rank - 2], d = x.shape[x.rank - 1]
    guard d > 0, d % 2 == 0 else {
        throw TensorError(.invalidArgument, op: op, "headDim must be even and ≥ 2, got \(d)")
    }
    guard positions.count == t else {
        throw TensorError(.shapeMismatch, op: op,
                          "needs one position per sequence index: \(positions.count) positions for seq \(t)")
    }
    try checkBase(base, op: op)
    if x.count == 0 { return x }
    let half = d / 2
    let inverseFrequencies = (0..<half).map { Foundation.pow(base, -2 * Double($0) / Double(d)) }
    // cos[t, j] and the signed sin[t, j] of the angle of j's pair; the partner of j is j's other half.
    var cosines = [Float](repeating: 0, count: t * d), sines = [Float](repeating: 0, count: t * d)
    for (row, p) in positions.enumerated() {
        for i in 0..<half {
            let angle = Double(p) * inverseFrequencies[i]
            let c = Float(Foundation.cos(angle)), s = Float(Foundation.sin(angle))
            let (a, b) = pairing == .interleaved ? (2 * i, 2 * i + 1) : (i, i + half)
            cosines[row * d + a] = c
            cosines[row * d + b] = c
            sines[row * d + a] = -s
            sines[row * d + b] = s
        }
    }
    let cosTable = try Tensor(cosines, shape: [t, d], on: x.backend)
    let sinTable = try Tensor(sines, shape: [t, d], on: x.backend)
    let partner: Tensor
    switch pairing {
    case .interleaved:
        let pairs = try x.reshaped(to: Array(x.shape.dropLast()) + [half, 2])
        let even = try pairs.sliced(axis: -1, start: 0, end: 1), odd = try pairs.sliced(axis: -1, start: 1, end: 2)
        partner = try Tensor.concatenated([odd, even], axis: -1).reshaped(to: x.shape)
    case .halfSplit:
        let first = try x.sliced(axis: -1, start: 0, end: half), second = try x.sliced(axis: -1, start: half, end: d)
        partner = try Tensor.concatenated([second, first], axis: -1)
    }
    let rotatedCos: Tensor = try x * cosTable
    let rotatedSin: Tensor = try partner * sinTable
    return try rotatedCos + rotatedSin
}

/// Rotary positional embedding (Su et al. 2021) for the queries and keys of attention, as a layer.
///
/// Applies `applyRotaryEmbedding` with positions `offset ..< offset + seq`. Shapes: `[…, seq, headDim]`,
/// typically `[batch, heads, seq, headDim]`, both before `scaledDotProductAttention`. No parameters;
/// the tables are recomputed in Float64 per call (they depend only on positions, `headDim` and
/// `base`). With a `maxLength`, positions past it throw, as a learned table would. `pairing`
/// chooses the paper's interleaved pairs (default) or the "rotate_half" split of GPT-NeoX/LLaMA (see
/// `RotaryPairing`).
public final class RotaryEmbedding: Module {
    public var isTraining = true
    public let headDim: Int
    public let base: Double
    public let pairing: RotaryPairing
    /// The number of positions allowed, or nil for no limit.
    public let maxLength: Int?

    /// - Throws: `TensorError` naming `RotaryEmbedding` for an odd or non-positive `headDim`, a base that
    ///   is not finite and > 0, or a `maxLength` < 1.
    public init(headDim: Int, base: Double = 10000, pairing: RotaryPairing = .interleaved,
                maxLength: Int? = nil) throws {
        let op = "RotaryEmbedding"
        guard headDim > 0, headDim % 2 == 0 else {
            throw TensorError(.invalidArgument, op: op, "headDim must be even and ≥ 2, got \(headDim)")
        }
        try checkBase(base, op: op)
        if let maxLength { try requirePositive(["maxLength": maxLength], layer: op) }
        self.headDim = headDim
        self.base = base
        self.pairing = pairing
        self.maxLength = maxLength
    }

    /// `x` rotated at positions `0 ..< seq`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try self(input, offset: 0) }

    /// `x` rotated at positions `offset ..< offset + seq` (with a KV cache: `offset` = the number of
    /// tokens already cached).
    /// - Throws: `TensorError` naming `RotaryEmbedding` for a last dimension other than `headDim`, a
    ///   negative offset, or positions past `maxLength`.
    public func callAsFunction(_ input: Tensor, offset: Int) throws -> Tensor {
        let op = "RotaryEmbedding"
        guard input.rank >= 2, input.shape[input.rank - 1] == headDim else {
            throw TensorError(.shapeMismatch, op: op, "expects input [..., seq, \(headDim)], got \(input.shape)")
        }
        let t = input.shape[input.rank - 2]
        guard offset >= 0 else {
            throw TensorError(.invalidArgument, op: op, "offset must be ≥ 0, got \(offset)")
        }
        if let maxLength, offset + t > maxLength {
            throw TensorError(.invalidArgument, op: op,
                              "positions \(offset)..<\(offset + t) go beyond maxLength \(maxLength)")
        }
        return try applyRotary(input, positions: Array(offset..<(offset + t)), base: base, pairing: pairing, op: op)
    }

    /// Query and key rotated at positions `offset ..< offset + seq` of their own sequence lengths.
    /// - Throws: as `callAsFunction(_:offset:)`.
    public func callAsFunction(query: Tensor, key: Tensor, offset: Int = 0) throws -> (query: Tensor, key: Tensor) {
        (try self(query, offset: offset), try self(key, offset: offset))
    }
}
