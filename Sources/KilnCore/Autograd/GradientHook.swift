/// Gradient hooks: an identity op whose pullback shows the gradient to a callback.
extension Tensor {
    /// The same values (sharing storage), recorded as an identity op whose pullback calls
    /// `hook(g)` with the gradient `g` that reaches this tensor in `backward()` (this tensor's
    /// shape, summed over every use of the result) and passes `g` through unchanged, as PyTorch's
    /// `Tensor.register_hook` with a hook that returns nothing.
    ///
    /// When recording is off or this tensor does not require a gradient, the result is this tensor
    /// and the hook is never called. The hook runs inside `backward()` with recording off; an error
    /// it throws ends the backward pass with that error. K-FAC uses it to capture the gradient with
    /// respect to a layer's output.
    public func withGradientHook(_ hook: @escaping (Tensor) throws -> Void) -> Tensor {
        recording([self]) { g in
            try hook(g)
            return [g]
        }
    }
}
