import KilnCore

/// A lookup table, as `torch.nn.Embedding`: `y[..., :] = weight[index[...], :]`.
///
/// Shapes: indices `[*]` (integral values stored as Float, in `0 ..< count`), weight
/// `[count, dimension]`, output `[*, dimension]`. Initialisation as PyTorch: weight `N(0, 1)` from
/// `seed`; with `paddingIndex`, that row starts at zero and receives no gradient (its lookups are
/// multiplied by a zero mask). Parameter: `weight`.
public final class Embedding: Module {
    public var isTraining = true
    public let count: Int
    public let dimension: Int
    public let paddingIndex: Int?
    /// `[count, dimension]`.
    public let weight: Parameter

    /// - Throws: `TensorError` naming `Embedding` for sizes < 1 or a padding index out of range.
    public init(count: Int, dimension: Int, paddingIndex: Int? = nil, seed: UInt64, on backend: any Backend) throws {
        try requirePositive(["count": count, "dimension": dimension], layer: "Embedding")
        var resolved = paddingIndex
        if let p = paddingIndex {
            guard p >= -count, p < count else {
                throw TensorError(.invalidArgument, op: "Embedding", "paddingIndex \(p) is out of range for \(count) embeddings")
            }
            resolved = p < 0 ? p + count : p
        }
        self.count = count
        self.dimension = dimension
        self.paddingIndex = resolved
        var values = try Tensor.normal([count, dimension], seed: seed, on: backend).scalars()
        if let p = resolved { for j in 0..<dimension { values[p * dimension + j] = 0 } }
        weight = Parameter(try Tensor(values, shape: [count, dimension], on: backend))
    }

    public var ownParameters: [(name: String, parameter: Parameter)] { [("weight", weight)] }

    /// - Throws: `TensorError` naming `Embedding` for an index that is not an integer in `0 ..< count`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        let raw = try input.scalars()
        let indices = try raw.map { v -> Int in
            guard v == v.rounded(), v >= 0, v < Float(count) else {
                throw TensorError(.invalidArgument, op: "Embedding", "index \(v) is not an integer in 0..<\(count)")
            }
            return Int(v)
        }
        var rows = try weight.value.indexSelected(axis: 0, indices: indices)
        if let p = paddingIndex, indices.contains(p) {
            let mask = try Tensor(indices.map { $0 == p ? 0 : 1 }, shape: [indices.count, 1], on: input.backend)
            rows = try rows * mask
        }
        return try rows.reshaped(to: input.shape + [dimension])
    }
}
