extension Tensor {
    /// A copy of the values in a new buffer (cut from the graph): later in-place writes to either
    /// tensor's buffer do not reach the other.
    public func cloned() throws -> Tensor {
        let out = try Tensor.empty(shape, on: backend)
        if count > 0 {
            try backend.copy(StridedCopy(shape: [count], sourceOffset: 0, sourceStrides: [1],
                                         destinationOffset: 0, destinationStrides: [1]),
                             from: storage.buffer, to: out.storage.buffer)
        }
        return out
    }

    /// Applies one fused optimizer update (see `FusedUpdateRule`) and returns the new parameter,
    /// a fresh tensor (or `parameter` itself for rules that do not write it).
    ///
    /// The `state` tensors are updated **in place**: they must be buffers the caller owns
    /// (optimizers create them and hand out `cloned()` copies only). No gradient is recorded.
    /// - Throws: `TensorError` when shapes or backends differ, or when the rule needs more state
    ///   tensors or coefficients than given.
    public static func fusedOptimizerUpdate(_ update: FusedUpdate, parameter: Tensor, gradient: Tensor,
                                            state: [Tensor]) throws -> Tensor {
        let op = "fusedOptimizerUpdate(\(update.rule))"
        try parameter.requireSameBackend([gradient] + state, op: op)
        for t in [gradient] + state where t.shape != parameter.shape {
            throw TensorError(.shapeMismatch, op: op,
                              "gradient and state must have the parameter's shape \(parameter.shape), got \(t.shape)")
        }
        let needed = update.requiredStateCount
        guard state.count >= needed, state.count <= FusedUpdate.maxStates else {
            throw TensorError(.invalidArgument, op: op,
                              "needs \(needed) state tensors (at most \(FusedUpdate.maxStates)), got \(state.count)")
        }
        guard update.coefficients.count <= FusedUpdate.maxCoefficients else {
            throw TensorError(.invalidArgument, op: op,
                              "takes at most \(FusedUpdate.maxCoefficients) coefficients, got \(update.coefficients.count)")
        }
        let out = update.rule.writesParameter ? try Tensor.empty(parameter.shape, on: parameter.backend) : parameter.detached()
        guard parameter.count > 0 else { return out }
        try parameter.backend.optimizerUpdate(update, parameter: parameter.storage.buffer,
                                              gradient: gradient.storage.buffer, state: state.map(\.storage.buffer),
                                              newParameter: out.storage.buffer, count: parameter.count)
        return out
    }

    /// Replaces the accumulated gradient of this leaf (nil clears it), e.g. after clipping.
    /// - Throws: `.invalidArgument` when this tensor is not a leaf that requires a gradient, or
    ///   `.shapeMismatch` for a gradient of another shape.
    public func setGradient(_ newGradient: Tensor?) throws {
        guard let node = gradientNode, node.isLeaf else {
            throw TensorError(.invalidArgument, op: "setGradient", "only a leaf made with requiringGradient() holds a gradient")
        }
        if let g = newGradient {
            guard g.shape == shape else {
                throw TensorError(.shapeMismatch, op: "setGradient", "gradient shape \(g.shape) differs from \(shape)")
            }
            try requireSameBackend([g], op: "setGradient")
        }
        node.gradient = newGradient?.detached()
    }
}

extension FusedUpdate {
    /// The number of state buffers this update reads or writes.
    public var requiredStateCount: Int {
        let k = coefficients + [Float](repeating: 0, count: Swift.max(0, FusedUpdate.maxCoefficients - coefficients.count))
        switch rule {
        case .sgd: return k[1] != 0 ? 1 : 0
        case .rmsprop: return k[3] > 0 ? 3 : k[4] != 0 ? 2 : 1
        case .adam: return k[5] != 0 ? 3 : 2
        case .adabound: return k[6] != 0 ? 3 : 2
        case .adagrad, .lion, .accsgd, .lookahead, .average: return 1
        case .adadelta, .adamax, .nadam, .radam, .ftrl, .sophia: return 2
        case .madgrad, .lambDirection: return 3
        }
    }
}
