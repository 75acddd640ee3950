import Foundation
import KilnCore

// Absolute positional encodings added to a sequence of model vectors: the fixed sinusoidal table of
// Vaswani et al. (2017) and a learned table (BERT, GPT-2). Both take `[batch, seq, dModel]`
// (`batchFirst`, the default), `[seq, batch, dModel]` or an unbatched `[seq, dModel]`, and an `offset`
// (the position of the first element) for incremental decoding.

/// The sinusoidal positional-encoding table of Vaswani et al. (2017), rows `offset ..< offset + length`:
/// `PE[pos, 2i] = sin(pos / base^(2i/dModel))`, `PE[pos, 2i + 1] = cos(pos / base^(2i/dModel))`.
///
/// Shape `[length, dModel]`. Each angle, sine and cosine is computed in Float64 from the integer
/// position and rounded once to Float32, so every element is within one Float32 ulp of the exact
/// value at any position (a Float32 angle would be off by ~4e-3 near position 1e5). Row 0 is `[0, 1, 0, 1, …]`. For an
/// odd `dModel` the last column is the sine of frequency `i = (dModel − 1)/2`, with no cosine
/// partner (PyTorch's tutorial requires an even `dModel`; the formula does not).
/// - Parameters:
///   - length: the number of positions (rows), ≥ 0.
///   - dModel: the encoding width, ≥ 1.
///   - offset: the first position, ≥ 0.
///   - base: the wavelength base, 10000 in the paper; finite and > 0.
/// - Returns: a constant tensor (no gradient) on `backend`.
/// - Throws: `TensorError` naming `sinusoidalPositionalEncoding` for a bad size, offset or base.
public func sinusoidalPositionalEncoding(length: Int, dModel: Int, offset: Int = 0, base: Double = 10000,
                                         on backend: any Backend) throws -> Tensor {
    let op = "sinusoidalPositionalEncoding"
    try requirePositive(["dModel": dModel], layer: op)
    guard length >= 0, offset >= 0 else {
        throw TensorError(.invalidArgument, op: op, "length and offset must be ≥ 0, got length \(length), offset \(offset)")
    }
    try checkBase(base, op: op)
    return try Tensor(sinusoidalTable(positions: offset..<(offset + length), dModel: dModel, base: base),
                      shape: [length, dModel], on: backend)
}

/// Rows `positions` of the sinusoidal table, row-major, computed in Float64.
func sinusoidalTable(positions: Range<Int>, dModel: Int, base: Double) -> [Float] {
    let d = Double(dModel)
    // 1 / base^(2i/d) for each pair i, shared by its sine and cosine columns.
    let denominators = stride(from: 0, to: dModel, by: 2).map { Foundation.pow(base, Double($0) / d) }
    var values = [Float](repeating: 0, count: positions.count * dModel)
    var k = 0
    for pos in positions {
        for j in 0..<dModel {
            let angle = Double(pos) / denominators[j / 2]
            values[k] = Float(j % 2 == 0 ? Foundation.sin(angle) : Foundation.cos(angle))
            k += 1
        }
    }
    return values
}

/// Checks a RoPE or sinusoidal base: finite and > 0.
func checkBase(_ base: Double, op: String) throws {
    guard base.isFinite, base > 0 else {
        throw TensorError(.invalidArgument, op: op, "base must be finite and > 0, got \(base)")
    }
}

/// Checks `input` against `[B, T, dModel]` / `[T, B, dModel]` / `[T, dModel]` and returns T.
private func sequenceLength(of input: Tensor, dModel: Int, batchFirst: Bool, op: String) throws -> Int {
    guard input.rank == 2 || input.rank == 3, input.shape[input.rank - 1] == dModel else {
        let layout = batchFirst ? "[batch, seq, \(dModel)]" : "[seq, batch, \(dModel)]"
        throw TensorError(.shapeMismatch, op: op, "expects input \(layout) or [seq, \(dModel)], got \(input.shape)")
    }
    return input.rank == 3 && batchFirst ? input.shape[1] : input.shape[0]
}

/// Checks that `input` lives on the backend of the layer's `state`.
func requireBackend(of input: Tensor, matching state: Tensor, op: String) throws {
    guard input.backend === state.backend else {
        throw TensorError(.backendMismatch, op: op,
                          "the input lives on \(input.backend.name), the layer on \(state.backend.name); copy it with to(_:)")
    }
}

/// Checks that positions `offset ..< offset + length` lie in `0 ..< maxLength`.
private func checkPositions(offset: Int, length: Int, maxLength: Int, op: String) throws {
    guard offset >= 0 else {
        throw TensorError(.invalidArgument, op: op, "offset must be ≥ 0, got \(offset)")
    }
    guard offset + length <= maxLength else {
        throw TensorError(.invalidArgument, op: op,
                          "positions \(offset)..<\(offset + length) go beyond maxLength \(maxLength)")
    }
}

/// `input + rows`, rows `[T, dModel]` broadcast over the batch axis of either layout.
private func addingRows(_ input: Tensor, _ rows: Tensor, batchFirst: Bool) throws -> Tensor {
    input.rank == 3 && !batchFirst ? try input + rows.unsqueezed(axis: 1) : try input + rows
}

/// Checks a dropout probability and makes the layer (nil for p = 0).
private func makeDropout(_ probability: Float, seed: UInt64, op: String) throws -> Dropout? {
    guard probability >= 0, probability <= 1 else {
        throw TensorError(.invalidArgument, op: op, "dropout must lie in [0, 1], got \(probability)")
    }
    return probability > 0 ? try Dropout(probability: probability, seed: seed) : nil
}

/// Fixed sinusoidal positional encoding (Vaswani et al. 2017, §3.5), as the PyTorch tutorial's
/// `PositionalEncoding`: `y = dropout(x + PE[offset ..< offset + T])`.
///
/// `PE` is `sinusoidalPositionalEncoding(length: maxLength, dModel:base:)`, built once (Float64, then
/// rounded) and kept on the backend as a constant; it has no parameters and is not a checkpoint
/// buffer, since it is a function of the hyperparameters. Shapes: input `[batch, seq, dModel]` with
/// `batchFirst` (the default, as Kiln's attention), `[seq, batch, dModel]` without (the PyTorch
/// tutorial's layout), or `[seq, dModel]`; output the input's shape. The gradient with respect to the
/// input is the identity (times the dropout mask). Dropout, when `dropout > 0`, is the child `dropout`
/// and is active only in training mode.
public final class SinusoidalPositionalEncoding: Module {
    public var isTraining = true
    public let dModel: Int
    public let maxLength: Int
    public let base: Double
    public let batchFirst: Bool
    /// `[maxLength, dModel]`, constant.
    public let table: Tensor
    /// Applied after the addition, or nil for no dropout.
    public let dropout: Dropout?

    /// - Parameters:
    ///   - dModel: the model width, ≥ 1.
    ///   - maxLength: the number of positions the table holds (PyTorch's tutorial: 5000).
    ///   - base: 10000 in the paper.
    ///   - batchFirst: true for `[batch, seq, dModel]` input, false for `[seq, batch, dModel]`.
    ///   - dropout: the probability of `Dropout` after the addition (the paper uses 0.1).
    ///   - seed: the dropout masks' seed.
    /// - Throws: `TensorError` naming `SinusoidalPositionalEncoding` for sizes < 1, a base that is not
    ///   finite and > 0, or a dropout outside [0, 1].
    public init(dModel: Int, maxLength: Int = 5000, base: Double = 10000, batchFirst: Bool = true,
                dropout: Float = 0, seed: UInt64 = 0, on backend: any Backend) throws {
        let op = "SinusoidalPositionalEncoding"
        try requirePositive(["dModel": dModel, "maxLength": maxLength], layer: op)
        try checkBase(base, op: op)
        self.dropout = try makeDropout(dropout, seed: seed, op: op)
        self.dModel = dModel
        self.maxLength = maxLength
        self.base = base
        self.batchFirst = batchFirst
        table = try Tensor(sinusoidalTable(positions: 0..<maxLength, dModel: dModel, base: base),
                           shape: [maxLength, dModel], on: backend)
    }

    public var children: [(name: String, module: any Module)] { dropout.map { [("dropout", $0)] } ?? [] }

    /// `dropout(x + PE[0 ..< T])`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try self(input, offset: 0) }

    /// `dropout(x + PE[offset ..< offset + T])`: the input's first element is at position `offset`
    /// (incremental decoding feeds one step at a time with the number of steps already decoded).
    /// - Throws: `TensorError` naming `SinusoidalPositionalEncoding` for an input of another layout
    ///   or width, a negative offset, `offset + T > maxLength`, or an input on another backend.
    public func callAsFunction(_ input: Tensor, offset: Int) throws -> Tensor {
        let op = "SinusoidalPositionalEncoding"
        let t = try sequenceLength(of: input, dModel: dModel, batchFirst: batchFirst, op: op)
        try checkPositions(offset: offset, length: t, maxLength: maxLength, op: op)
        try requireBackend(of: input, matching: table, op: op)
        let y = try addingRows(input, try table.sliced(axis: 0, start: offset, end: offset + t),
                               batchFirst: batchFirst)
        return try dropout.map { try $0(y) } ?? y
    }
}

/// Learned absolute positional embeddings (BERT, GPT-2, ViT): `y = x + E[offset ..< offset + T]`.
///
/// `E` is a `[maxLength, dModel]` parameter named `weight` (the state name of an `nn.Embedding` of
/// positions), initialised `N(0, 1)` from `seed` as `torch.nn.Embedding`. Shapes as
/// `SinusoidalPositionalEncoding`: input `[batch, seq, dModel]` (`batchFirst`, the default),
/// `[seq, batch, dModel]` or `[seq, dModel]`; output the input's shape. The gradient of `E[p]` is
/// the sum of the output gradient over the batch at position p; rows not used receive zero.
public final class LearnedPositionalEmbedding: Module {
    public var isTraining = true
    public let maxLength: Int
    public let dModel: Int
    public let batchFirst: Bool
    /// `[maxLength, dModel]`.
    public let weight: Parameter

    /// - Throws: `TensorError` naming `LearnedPositionalEmbedding` for sizes < 1.
    public init(maxLength: Int, dModel: Int, batchFirst: Bool = true, seed: UInt64, on backend: any Backend) throws {
        try requirePositive(["maxLength": maxLength, "dModel": dModel], layer: "LearnedPositionalEmbedding")
        self.maxLength = maxLength
        self.dModel = dModel
        self.batchFirst = batchFirst
        weight = Parameter(try Tensor.normal([maxLength, dModel], seed: seed, on: backend))
    }

    public var ownParameters: [(name: String, parameter: Parameter)] { [("weight", weight)] }

    /// `x + E[0 ..< T]`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try self(input, offset: 0) }

    /// `x + E[offset ..< offset + T]`.
    /// - Throws: `TensorError` naming `LearnedPositionalEmbedding` for an input of another layout or
    ///   width, a negative offset, `offset + T > maxLength`, or an input on another backend.
    public func callAsFunction(_ input: Tensor, offset: Int) throws -> Tensor {
        let op = "LearnedPositionalEmbedding"
        let t = try sequenceLength(of: input, dModel: dModel, batchFirst: batchFirst, op: op)
        try checkPositions(offset: offset, length: t, maxLength: maxLength, op: op)
        try requireBackend(of: input, matching: weight.value, op: op)
        return try addingRows(input, try weight.value.sliced(axis: 0, start: offset, end: offset + t),
                              batchFirst: batchFirst)
    }
}
