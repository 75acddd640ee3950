import Foundation

/// `unstacked(axis:)`: the pieces of a tensor along one axis, with a backward pass that assembles
/// all pieces' gradients once.
extension Tensor {
    /// The slices along `axis`, each without that axis, as `torch.unbind`: `[d0, …, n, …] → n` tensors.
    ///
    /// Each piece is a copy of its own elements only. Unlike `n` calls of `sliced`, whose backward
    /// passes each write into a zero tensor of the full shape (O(n·count) for all of them), the pieces
    /// share one gradient node: their gradients are collected and stacked once into a gradient of this
    /// tensor's shape (zeros for pieces no loss depends on), so a time loop over a length-T sequence
    /// back-propagates in O(count). Recurrent layers use it for the per-step input projections.
    /// - Throws: `TensorError.badAxis` for an axis out of range.
    public func unstacked(axis: Int = 0) throws -> [Tensor] {
        let a = try normalizedAxis(axis, op: "unstacked")
        let n = shape[a]
        var pieceShape = shape
        pieceShape.remove(at: a)
        let own = strides
        var pieceStrides = own
        pieceStrides.remove(at: a)
        let pieces = try (0..<n).map { i in
            try gatherStrided(shape: pieceShape, offset: i * own[a], strides: pieceStrides)
        }
        guard GradientMode.isRecording, requiresGradient else { return pieces }
        // The hub is this tensor behind one node whose pullback hands back the collected gradients;
        // each piece's pullback stores its gradient and passes the hub a scalar token, so the hub runs
        // (once, after every piece, by the reverse topological order) whenever some piece was reached.
        let collector = UnstackedGradients(count: n)
        let hub = Tensor(shape: shape, storage: storage, dtype: dtype).recording([self]) { [shape] g in
            [try collector.assemble(shape: shape, axis: a, on: g.backend)]
        }
        return pieces.enumerated().map { i, piece in
            piece.recording([hub]) { g in
                try collector.store(g, at: i)
                return [try Tensor.zeros([], on: g.backend)]
            }
        }
    }
}

/// The gradients of the pieces of one `unstacked` call during a backward pass.
private final class UnstackedGradients: @unchecked Sendable {
    private var pieces: [Tensor?]
    private let lock = NSLock()

    init(count: Int) { pieces = Array(repeating: nil, count: count) }

    func store(_ g: Tensor, at i: Int) throws {
        try lock.withLock { pieces[i] = try pieces[i].map { try $0 + g } ?? g }
    }

    /// The stacked gradient (zeros for pieces that received none); clears the collected pieces so
    /// the next backward pass through the same graph starts empty.
    func assemble(shape: [Int], axis: Int, on backend: any Backend) throws -> Tensor {
        let collected: [Tensor?] = lock.withLock {
            defer { pieces = Array(repeating: nil, count: pieces.count) }
            return pieces
        }
        var pieceShape = shape
        pieceShape.remove(at: axis)
        let parts = try collected.map { try $0 ?? Tensor.zeros(pieceShape, on: backend) }
        guard !parts.isEmpty else { return try Tensor.zeros(shape, on: backend) }
        return try Tensor.stacked(parts, axis: axis)
    }
}
