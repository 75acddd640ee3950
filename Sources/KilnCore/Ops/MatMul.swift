/// Matrix products with PyTorch's `matmul` semantics.

/// The matrix product of `a` and `b`, as `torch.matmul`: 1-D operands are promoted to a row
/// (`a`) or column (`b`) vector and the added dimension removed; leading batch dimensions
/// broadcast. `[…, m, k] × […, k, n] → […, m, n]`. Accumulates in Float32.
/// - Throws: `TensorError.shapeMismatch` when the inner sizes differ or batches do not broadcast.
public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false,
                   alpha: Float = 1) throws -> Tensor {
    try a.requireSameBackend([b], op: "matmul")
    guard a.rank >= 1, b.rank >= 1 else {
        throw TensorError(.shapeMismatch, op: "matmul",
                          "needs operands of rank ≥ 1, got shapes \(a.shape) and \(b.shape)")
    }
    guard !(transposeA && a.rank < 2), !(transposeB && b.rank < 2) else {
        throw TensorError(.invalidArgument, op: "matmul", "a transposed operand needs rank ≥ 2")
    }
    let left = a.rank == 1 ? try a.unsqueezed(axis: 0) : a
    let right = b.rank == 1 ? try b.unsqueezed(axis: 1) : b
    let (m, ka) = transposeA ? (left.shape[left.rank - 1], left.shape[left.rank - 2])
                             : (left.shape[left.rank - 2], left.shape[left.rank - 1])
    let (kb, n) = transposeB ? (right.shape[right.rank - 1], right.shape[right.rank - 2])
                             : (right.shape[right.rank - 2], right.shape[right.rank - 1])
    guard ka == kb else {
        throw TensorError(.shapeMismatch, op: "matmul",
                          "inner sizes differ: \(a.shape)\(transposeA ? "ᵀ" : "") × \(b.shape)\(transposeB ? "ᵀ" : "") (\(ka) vs \(kb))")
    }
    let batchA = Array(left.shape.dropLast(2))
    let batchB = Array(right.shape.dropLast(2))
    let batch = try Shape.broadcast(batchA, batchB, op: "matmul")
    let batchCount = batch.reduce(1, *)
    // An operand whose batch holds one matrix is broadcast with stride 0; others are expanded.
    func operand(_ t: Tensor, _ own: [Int]) throws -> (Tensor, Bool) {
        let ownCount = own.reduce(1, *)
        if ownCount == 1 { return (t, true) }
        if own.count == batch.count && own == batch { return (t, false) }
        return (try t.broadcast(to: batch + t.shape.suffix(2)), false)
    }
    let (lhs, broadcastA) = try operand(left, batchA)
    let (rhs, broadcastB) = try operand(right, batchB)
    var outShape = batch + [m, n]
    let out: Tensor
    if ka == 0 {
        out = try Tensor.zeros(outShape, on: a.backend)
    } else {
        out = try Tensor.empty(outShape, on: a.backend)
        if batchCount * m * n > 0 {
            let descriptor = GEMMDescriptor(batch: batchCount, m: m, n: n, k: ka, transposeA: transposeA,
                                            transposeB: transposeB, alpha: alpha, beta: 0,
                                            broadcastA: broadcastA, broadcastB: broadcastB)
            try a.backend.gemm(descriptor, a: lhs.storage.buffer, b: rhs.storage.buffer, c: out.storage.buffer)
        }
    }
    let promotedShape = outShape
    if a.rank == 1 { outShape.remove(at: outShape.count - 2) }
    if b.rank == 1 { outShape.removeLast() }
    // op(A)' = α·g·op(B)ᵀ and op(B)' = α·op(A)ᵀ·g, transposed back when stored transposed, summed
    // over broadcast batch dimensions.
    return try out.reshaped(to: outShape).recording([a, b]) { [left = left.detached(), right = right.detached()] g in
        let grad = try g.reshaped(to: promotedShape)
        var dLeft = try matmul(grad, right, transposeB: !transposeB, alpha: alpha)
        if transposeA { dLeft = try dLeft.transposed() }
        var dRight = try matmul(left, grad, transposeA: !transposeA, alpha: alpha)
        if transposeB { dRight = try dRight.transposed() }
        return [try dLeft.reducedToShape(left.shape).reshaped(to: a.shape),
                try dRight.reducedToShape(right.shape).reshaped(to: b.shape)]
    }
}
