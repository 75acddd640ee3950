/// Reductions along any set of axes, and softmax / log-softmax along one axis.
extension Tensor {
    /// Reduces `axes` (all when empty) with `op`. Adjacent axes reduce in place; others are first
    /// moved to the end by one permutation.
    func reduced(_ op: ReduceOp, axes requested: [Int], keepingDimensions: Bool, correction: Float = 0,
                 name: String) throws -> Tensor {
        let axes = try normalizedAxes(requested, op: name)
        let keptShape = shape.enumerated().map { axes.contains($0.offset) ? 1 : $0.element }
        let outShape = keepingDimensions ? keptShape : shape.enumerated().filter { !axes.contains($0.offset) }.map(\.element)
        let contiguous = axes.last.map { $0 - axes[0] + 1 == axes.count } ?? true
        var source = self
        var (outer, n, inner) = (1, 1, 1)
        if contiguous, let first = axes.first, let last = axes.last {
            outer = shape[..<first].reduce(1, *)
            n = shape[first...last].reduce(1, *)
            inner = shape[(last + 1)...].reduce(1, *)
        } else {
            let kept = (0..<rank).filter { !axes.contains($0) }
            source = try permuted(kept + axes)
            outer = kept.map { shape[$0] }.reduce(1, *)
            n = axes.map { shape[$0] }.reduce(1, *)
        }
        let out = try Tensor.empty(outShape, on: backend)
        if outer * inner > 0 {
            try backend.reduce(op, source.storage.buffer, out.storage.buffer, outer: outer, count: n,
                               inner: inner, correction: correction)
        }
        if op == .argmax || op == .argmin { return out }  // piecewise constant: no gradient
        let x = self.detached(), y = out.detached()
        return out.recording([self]) { [shape] g in
            let spread = try g.reshaped(to: keptShape).broadcast(to: shape)
            let kept = try y.reshaped(to: keptShape)
            switch op {
            case .mean:
                // ∂mean/∂x = 1/n
                return [try spread * (1 / Float(Swift.max(n, 1)))]
            case .max, .min:
                // As torch.amax / amin: the gradient is shared equally among the entries equal to
                // the extreme (a NaN extreme gives NaN).
                let hits: Tensor = try x.equal(kept)
                let ties: Tensor = try hits.sum(alongAxes: axes, keepingDimensions: true)
                return [try spread * hits / ties]
            case .variance:
                // ∂var/∂x = 2(x − mean)/(n − correction)
                let centred: Tensor = try x - x.mean(alongAxes: axes, keepingDimensions: true)
                return [try spread * centred * (2 / (Float(n) - correction))]
            case .logSumExp:
                // ∂/∂x log Σ eˣ = e^(x − lse), the softmax over the reduced axes
                return [try spread * exp(x - kept)]
            default:
                // ∂Σx/∂x = 1: the gradient broadcast back over the reduced axes.
                return [spread]
            }
        }
    }

    /// Σ over `axes` (all when empty).
    public func sum(alongAxes axes: [Int] = [], keepingDimensions: Bool = false) throws -> Tensor {
        try reduced(.sum, axes: axes, keepingDimensions: keepingDimensions, name: "sum")
    }

    /// The mean over `axes` (all when empty); NaN for an empty reduction, as PyTorch.
    public func mean(alongAxes axes: [Int] = [], keepingDimensions: Bool = false) throws -> Tensor {
        try reduced(.mean, axes: axes, keepingDimensions: keepingDimensions, name: "mean")
    }

    /// The maximum over `axes` (all when empty); NaN propagates. The gradient is shared equally
    /// among tied maxima, as `torch.amax` (not `torch.max(dim)`, which picks one index).
    /// - Throws: `.invalidArgument` when a reduced axis is empty (no identity, as PyTorch).
    public func max(alongAxes axes: [Int] = [], keepingDimensions: Bool = false) throws -> Tensor {
        try requireNonEmpty(axes, op: "max")
        return try reduced(.max, axes: axes, keepingDimensions: keepingDimensions, name: "max")
    }

    /// The minimum over `axes` (all when empty); NaN propagates. The gradient is shared equally
    /// among tied minima, as `torch.amin`.
    public func min(alongAxes axes: [Int] = [], keepingDimensions: Bool = false) throws -> Tensor {
        try requireNonEmpty(axes, op: "min")
        return try reduced(.min, axes: axes, keepingDimensions: keepingDimensions, name: "min")
    }

    /// Σ(x − mean)² / (n − correction) over `axes`; `correction` 1 (the default, as
    /// `torch.var`) gives the unbiased estimate. Two-pass, so large offsets do not cancel.
    public func variance(alongAxes axes: [Int] = [], correction: Int = 1,
                         keepingDimensions: Bool = false) throws -> Tensor {
        guard correction >= 0 else {
            throw TensorError(.invalidArgument, op: "variance", "correction must be ≥ 0, got \(correction)")
        }
        return try reduced(.variance, axes: axes, keepingDimensions: keepingDimensions,
                           correction: Float(correction), name: "variance")
    }

    /// log Σ eˣ over `axes`, computed as m + log Σ e^(x − m) with m the maximum.
    public func logSumExp(alongAxes axes: [Int] = [], keepingDimensions: Bool = false) throws -> Tensor {
        try reduced(.logSumExp, axes: axes, keepingDimensions: keepingDimensions, name: "logSumExp")
    }

    /// The index of the first maximum along `axis` (of the flattened tensor when nil), as Float
    /// values; NaN counts as the maximum, as PyTorch.
    public func argmax(axis: Int? = nil, keepingDimensions: Bool = false) throws -> Tensor {
        try argExtreme(.argmax, axis: axis, keepingDimensions: keepingDimensions, name: "argmax")
    }

    /// The index of the first minimum along `axis` (of the flattened tensor when nil), as Float values.
    public func argmin(axis: Int? = nil, keepingDimensions: Bool = false) throws -> Tensor {
        try argExtreme(.argmin, axis: axis, keepingDimensions: keepingDimensions, name: "argmin")
    }

    private func argExtreme(_ op: ReduceOp, axis: Int?, keepingDimensions: Bool, name: String) throws -> Tensor {
        guard let axis else {
            guard count > 0 else {
                throw TensorError(.invalidArgument, op: name, "cannot reduce an empty tensor of shape \(shape)")
            }
            let r = try flattened().reduced(op, axes: [0], keepingDimensions: false, name: name)
            return keepingDimensions ? try r.reshaped(to: shape.map { _ in 1 }) : r
        }
        try requireNonEmpty([axis], op: name)
        return try reduced(op, axes: [axis], keepingDimensions: keepingDimensions, name: name)
    }

    private func requireNonEmpty(_ axes: [Int], op: String) throws {
        let resolved = try normalizedAxes(axes, op: op)
        if let empty = resolved.first(where: { shape[$0] == 0 }) {
            throw TensorError(.invalidArgument, op: op,
                              "cannot reduce axis \(empty) of size 0 (shape \(shape)): the op has no identity")
        }
        if rank == 0 && count == 0 {
            throw TensorError(.invalidArgument, op: op, "cannot reduce an empty tensor")
        }
    }

    /// The [outer, n, inner] view of this tensor around `axis`.
    func splitAround(_ axis: Int) -> (outer: Int, n: Int, inner: Int) {
        (shape[..<axis].reduce(1, *), shape[axis], shape[(axis + 1)...].reduce(1, *))
    }
}

/// softmax(x)ᵢ = e^(xᵢ − m) / Σⱼ e^(xⱼ − m) along `axis`, m the maximum (numerically stable).
public func softmax(_ x: Tensor, axis: Int = -1) throws -> Tensor {
    try softmax(x, axis: axis, logarithm: false, op: "softmax")
}

/// log softmax(x)ᵢ = xᵢ − m − log Σⱼ e^(xⱼ − m) along `axis`.
public func logSoftmax(_ x: Tensor, axis: Int = -1) throws -> Tensor {
    try softmax(x, axis: axis, logarithm: true, op: "logSoftmax")
}

private func softmax(_ x: Tensor, axis: Int, logarithm: Bool, op: String) throws -> Tensor {
    // A rank-0 tensor is treated as one element, as PyTorch does.
    let a = x.rank == 0 ? 0 : try x.normalizedAxis(axis, op: op)
    let view = x.rank == 0 ? try x.reshaped(to: [1]) : x
    let (outer, n, inner) = view.splitAround(a)
    let out = try Tensor.empty(x.shape, on: x.backend)
    if x.count > 0 {
        try x.backend.softmax(x.storage.buffer, out.storage.buffer, outer: outer, count: n, inner: inner,
                              logarithm: logarithm)
    }
    // softmax: ∂x = y·(g − Σ g·y); log-softmax: ∂x = g − e^y·Σ g, the sums along the axis.
    return out.recording([x]) { [y = out.detached(), viewShape = view.shape] g in
        let gv = try g.reshaped(to: viewShape), yv = try y.reshaped(to: viewShape)
        let dx: Tensor
        if logarithm {
            let total: Tensor = try gv.sum(alongAxes: [a], keepingDimensions: true)
            dx = try gv - exp(yv) * total
        } else {
            let dot: Tensor = try (gv * yv).sum(alongAxes: [a], keepingDimensions: true)
            dx = try yv * (gv - dot)
        }
        return [try dx.reshaped(to: x.shape)]
    }
}
