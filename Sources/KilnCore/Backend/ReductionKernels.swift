/// Reductions over the middle axis of an `[outer, count, inner]` view.
public protocol ReductionKernels {
    /// out[o·inner + i] = reduce_{j < count} x[(o·count + j)·inner + i].
    /// `correction` is used by `.variance` only (divisor `count − correction`).
    func reduce(_ op: ReduceOp, _ x: any BackendBuffer, _ out: any BackendBuffer,
                outer: Int, count: Int, inner: Int, correction: Float) throws
}

/// Reduction ops. Codes match `kiln_reduce_op` in CKilnCPU and Kernels/reduction.cl.
public enum ReduceOp: Int32, Sendable, Equatable, CaseIterable {
    case sum = 0, mean, max, min, argmax, argmin, variance, logSumExp

    public var code: Int32 { rawValue }
}
