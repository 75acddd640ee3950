/// Numerically stable softmax and log-softmax.
public protocol SoftmaxKernels {
    /// Softmax (or log-softmax when `logarithm`) over the middle axis of `[outer, count, inner]`.
    /// Subtracts the maximum of each slice before exponentiating.
    func softmax(_ x: any BackendBuffer, _ y: any BackendBuffer, outer: Int, count: Int, inner: Int,
                 logarithm: Bool) throws
}
