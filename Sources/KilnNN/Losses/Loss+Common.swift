import KilnCore

/// How a loss combines its per-element values, as PyTorch's `reduction` argument.
public enum LossReduction: Sendable, CaseIterable {
    /// The per-element (or per-sample) losses, unreduced.
    case none
    /// Their mean (a weighted mean where the loss has class weights, as PyTorch).
    case mean
    /// Their sum.
    case sum
}

/// Shared validation and reduction for the losses.
enum LossSupport {
    /// Σ l, mean l or l itself.
    static func reduce(_ l: Tensor, _ reduction: LossReduction) throws -> Tensor {
        switch reduction {
        case .none: return l
        case .sum: return try l.sum()
        case .mean: return try l.mean()
        }
    }

    /// Throws unless `a` and `b` have the same shape.
    static func sameShape(_ a: Tensor, _ b: Tensor, _ op: String, _ names: (String, String) = ("input", "target")) throws {
        guard a.shape == b.shape else {
            throw TensorError(.shapeMismatch, op: op,
                              "\(names.0) shape \(a.shape) differs from \(names.1) shape \(b.shape)")
        }
    }

    /// Throws unless `value` is finite and satisfies `ok`.
    static func check(_ ok: Bool, _ op: String, _ message: @autoclosure () -> String) throws {
        guard ok else { throw TensorError(.invalidArgument, op: op, message()) }
    }

    /// A scalar tensor on `like`'s backend.
    static func scalar(_ v: Float, like t: Tensor) throws -> Tensor {
        try Tensor.full([], value: v, on: t.backend)
    }

    /// Logits `[N, C, d…]` (or `[C]`) and class-index targets `[N, d…]` (or `[]`) flattened to
    /// `[M, C]` and `[M]`, with the targets checked to be integral and in `0..<C` or `ignoreIndex`.
    /// Returns the flattened pair and the targets' shape (the shape of `.none` results).
    static func classLayout(_ logits: Tensor, _ targets: Tensor, ignoreIndex: Int?, op: String)
        throws -> (logits: Tensor, targets: Tensor, shape: [Int], classes: Int) {
        guard logits.rank >= 1 else {
            throw TensorError(.shapeMismatch, op: op, "needs logits of rank ≥ 1, got shape \(logits.shape)")
        }
        let classAxis = logits.rank == 1 ? 0 : 1
        let classes = logits.shape[classAxis]
        var expected = logits.shape
        expected.remove(at: classAxis)
        guard targets.shape == expected else {
            throw TensorError(.shapeMismatch, op: op,
                              "class-index targets must have shape \(expected) for logits \(logits.shape), got \(targets.shape)")
        }
        guard classes > 0 else {
            throw TensorError(.invalidArgument, op: op, "needs at least one class, got logits \(logits.shape)")
        }
        for v in try targets.scalars() {
            let ignored = ignoreIndex.map { Float($0) == v } ?? false
            guard ignored || (v == v.rounded() && v >= 0 && v < Float(classes)) else {
                throw TensorError(.invalidArgument, op: op,
                                  "target \(v) is not a class index in 0..<\(classes)\(ignoreIndex.map { " or ignoreIndex \($0)" } ?? "")")
            }
        }
        // Move the class axis last: [N, d…, C] → [M, C].
        var moved = logits
        if logits.rank > 2 {
            var axes = Array(0..<logits.rank)
            axes.remove(at: 1)
            axes.append(1)
            moved = try logits.permuted(axes)
        }
        let m = expected.reduce(1, *)
        return (try moved.reshaped(to: [m, classes]), try targets.reshaped(to: [m]), expected, classes)
    }

    /// Checks an optional class-weight vector of length `classes`.
    static func classWeight(_ weight: Tensor?, classes: Int, op: String) throws {
        if let weight, weight.shape != [classes] {
            throw TensorError(.shapeMismatch, op: op, "class weight must have shape [\(classes)], got \(weight.shape)")
        }
    }
}
