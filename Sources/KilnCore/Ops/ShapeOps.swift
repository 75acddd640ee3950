/// Shape operations. Reshapes share storage; everything that needs strides (transpose, slicing,
/// broadcasting, concatenation) is materialised by the backend's strided-copy kernel.
extension Tensor {
    /// The same elements with a new shape; one size may be -1 and is inferred.
    public func reshaped(to newShape: [Int]) throws -> Tensor {
        let inferred = newShape.filter { $0 == -1 }.count
        guard inferred <= 1, newShape.allSatisfy({ $0 >= -1 }) else {
            throw TensorError(.invalidArgument, op: "reshaped",
                              "shape \(newShape) may hold one -1 and otherwise sizes ≥ 0")
        }
        var resolved = newShape
        if let i = newShape.firstIndex(of: -1) {
            let known = newShape.filter { $0 != -1 }.reduce(1, *)
            guard known > 0, count % known == 0 else {
                throw TensorError(.shapeMismatch, op: "reshaped",
                                  "cannot reshape \(shape) (\(count) elements) to \(newShape)")
            }
            resolved[i] = count / known
        }
        guard resolved.reduce(1, *) == count else {
            throw TensorError(.shapeMismatch, op: "reshaped",
                              "cannot reshape \(shape) (\(count) elements) to \(newShape)")
        }
        return view(resolved)
    }

    /// The same storage with another shape of as many elements; the gradient is reshaped back.
    func view(_ newShape: [Int]) -> Tensor {
        Tensor(shape: newShape, storage: storage, dtype: dtype).recording([self]) { [shape] g in
            [try g.reshaped(to: shape)]
        }
    }

    /// A rank-1 view of all elements.
    public func flattened() -> Tensor { view([count]) }

    /// A contiguous tensor of `shape` read from this one at `offset` with `strides`.
    func gatherStrided(shape outShape: [Int], offset: Int, strides: [Int]) throws -> Tensor {
        let out = try Tensor.empty(outShape, on: backend)
        let n = outShape.reduce(1, *)
        if n == 0 { return out }
        let (s, st) = Shape.coalesce(outShape, [strides, Shape.strides(of: outShape)])
        try Tensor.copy(StridedCopy(shape: s, sourceOffset: offset, sourceStrides: st[0],
                                    destinationOffset: 0, destinationStrides: st[1]),
                        from: storage.buffer, to: out.storage.buffer, on: backend)
        return out
    }

    /// A strided copy of any rank: layouts above `StridedCopy.maxRank` dimensions run as one
    /// kernel call per index of their leading dimensions.
    static func copy(_ layout: StridedCopy, from source: any BackendBuffer, to destination: any BackendBuffer,
                     on backend: any Backend) throws {
        guard layout.shape.count > StridedCopy.maxRank else {
            return try backend.copy(layout, from: source, to: destination)
        }
        for i in 0..<layout.shape[0] {
            try copy(StridedCopy(shape: Array(layout.shape.dropFirst()),
                                 sourceOffset: layout.sourceOffset + i * layout.sourceStrides[0],
                                 sourceStrides: Array(layout.sourceStrides.dropFirst()),
                                 destinationOffset: layout.destinationOffset + i * layout.destinationStrides[0],
                                 destinationStrides: Array(layout.destinationStrides.dropFirst())),
                     from: source, to: destination, on: backend)
        }
    }

    /// The dimensions reordered: result dimension i is this tensor's dimension `axes[i]`.
    public func permuted(_ axes: [Int]) throws -> Tensor {
        guard axes.count == rank else {
            throw TensorError(.badAxis, op: "permuted",
                              "needs \(rank) axes for shape \(shape), got \(axes)")
        }
        let normalized = try axes.map { try normalizedAxis($0, op: "permuted") }
        guard Set(normalized).count == rank else {
            throw TensorError(.badAxis, op: "permuted", "axes \(axes) are not a permutation of 0..<\(rank)")
        }
        if normalized == Array(0..<rank) { return self }
        let own = strides
        let result = try gatherStrided(shape: normalized.map { shape[$0] }, offset: 0,
                                       strides: normalized.map { own[$0] })
        // The gradient goes back through the inverse permutation.
        var inverse = [Int](repeating: 0, count: rank)
        for (i, axis) in normalized.enumerated() { inverse[axis] = i }
        return result.recording([self]) { g in [try g.permuted(inverse)] }
    }

    /// Swaps two axes.
    public func transposed(_ axis0: Int, _ axis1: Int) throws -> Tensor {
        let a = try normalizedAxis(axis0, op: "transposed")
        let b = try normalizedAxis(axis1, op: "transposed")
        var order = Array(0..<rank)
        order.swapAt(a, b)
        return try permuted(order)
    }

    /// Swaps the last two axes (a matrix transpose); rank 0 and 1 tensors are returned unchanged.
    public func transposed() throws -> Tensor {
        rank < 2 ? self : try transposed(-2, -1)
    }

    /// Removes `axis` (which must have size 1), or every size-1 axis when `axis` is nil.
    public func squeezed(axis: Int? = nil) throws -> Tensor {
        guard let axis else {
            return view(shape.filter { $0 != 1 })
        }
        let a = try normalizedAxis(axis, op: "squeezed")
        // Like PyTorch, squeezing an axis whose size is not 1 leaves the tensor unchanged.
        guard shape[a] == 1 else { return self }
        var s = shape
        s.remove(at: a)
        return view(s)
    }

    /// Inserts a size-1 axis at `axis` (−rank−1 ..< rank+1).
    public func unsqueezed(axis: Int) throws -> Tensor {
        let a = try normalizedAxis(axis, op: "unsqueezed", rank: rank + 1)
        var s = shape
        s.insert(1, at: a)
        return view(s)
    }

    /// This tensor broadcast (NumPy rules) to `target`, materialised.
    public func broadcast(to target: [Int]) throws -> Tensor {
        try Shape.validate(target, op: "broadcast")
        let result = try Shape.broadcast(shape, target, op: "broadcast")
        guard result == target else {
            throw TensorError(.shapeMismatch, op: "broadcast", "cannot broadcast shape \(shape) to \(target)")
        }
        if target == shape { return self }
        return try gatherStrided(shape: target, offset: 0, strides: Shape.broadcastStrides(shape, to: target))
            .recording([self]) { [shape] g in [try g.reducedToShape(shape)] }
    }

    /// `torch.expand`: like `broadcast(to:)`, and -1 keeps a size.
    public func expanded(to target: [Int]) throws -> Tensor {
        let offset = target.count - rank
        guard offset >= 0 else {
            throw TensorError(.shapeMismatch, op: "expanded", "cannot expand shape \(shape) to fewer dimensions \(target)")
        }
        let resolved = target.enumerated().map { i, s in s == -1 && i >= offset ? shape[i - offset] : s }
        return try broadcast(to: resolved)
    }

    /// Elements `start, start + step, …` below `end` along `axis` (negative start and end count
    /// from the end and are clamped, as Python slicing with a positive step).
    public func sliced(axis: Int, start: Int = 0, end: Int? = nil, step: Int = 1) throws -> Tensor {
        let a = try normalizedAxis(axis, op: "sliced")
        guard step > 0 else {
            throw TensorError(.invalidArgument, op: "sliced", "step must be positive, got \(step)")
        }
        let size = shape[a]
        func clamp(_ i: Int) -> Int { Swift.min(Swift.max(i < 0 ? i + size : i, 0), size) }
        let lo = clamp(start)
        let hi = clamp(end ?? size)
        let n = hi > lo ? (hi - lo + step - 1) / step : 0
        var outShape = shape
        outShape[a] = n
        var st = strides
        let offset = lo * st[a]
        st[a] *= step
        // The gradient is written back into zeros at the same offset and strides.
        return try gatherStrided(shape: outShape, offset: offset, strides: st)
            .recording([self]) { [shape] g in [try g.scatteredStrided(into: shape, offset: offset, strides: st)] }
    }

    /// Zeros of `outShape` with this tensor written at `offset` with `strides` (the adjoint of
    /// `gatherStrided` for a layout that touches each element at most once).
    func scatteredStrided(into outShape: [Int], offset: Int, strides: [Int]) throws -> Tensor {
        let out = try Tensor.zeros(outShape, on: backend)
        if count == 0 { return out }
        let (s, st) = Shape.coalesce(shape, [self.strides, strides])
        try Tensor.copy(StridedCopy(shape: s, sourceOffset: 0, sourceStrides: st[0],
                                    destinationOffset: offset, destinationStrides: st[1]),
                        from: storage.buffer, to: out.storage.buffer, on: backend)
        return out
    }

    /// Joins tensors along an existing `axis`; all other sizes must match.
    public static func concatenated(_ tensors: [Tensor], axis: Int) throws -> Tensor {
        guard let first = tensors.first else {
            throw TensorError(.invalidArgument, op: "concatenated", "needs at least one tensor")
        }
        try first.requireSameBackend(tensors, op: "concatenated")
        let a = try first.normalizedAxis(axis, op: "concatenated")
        for t in tensors {
            var s = t.shape, f = first.shape
            guard s.count == f.count else {
                throw TensorError(.shapeMismatch, op: "concatenated",
                                  "all tensors need rank \(f.count), got shape \(t.shape)")
            }
            s[a] = 0
            f[a] = 0
            guard s == f else {
                throw TensorError(.shapeMismatch, op: "concatenated",
                                  "shapes \(first.shape) and \(t.shape) differ outside axis \(axis)")
            }
        }
        var outShape = first.shape
        outShape[a] = tensors.reduce(0) { $0 + $1.shape[a] }
        let out = try Tensor.empty(outShape, on: first.backend)
        let outStrides = Shape.strides(of: outShape)
        var position = 0
        for t in tensors {
            if t.count > 0 {
                let (s, st) = Shape.coalesce(t.shape, [t.strides, outStrides])
                try copy(StridedCopy(shape: s, sourceOffset: 0, sourceStrides: st[0],
                                     destinationOffset: position * outStrides[a], destinationStrides: st[1]),
                         from: t.storage.buffer, to: out.storage.buffer, on: first.backend)
            }
            position += t.shape[a]
        }
        // Each input's gradient is its slice of the result's.
        let sizes = tensors.map { $0.shape[a] }
        return out.recording(tensors) { g in try g.split(sizes: sizes, axis: a).map { $0 } }
    }

    /// Joins tensors of one shape along a new `axis`.
    public static func stacked(_ tensors: [Tensor], axis: Int = 0) throws -> Tensor {
        guard let first = tensors.first else {
            throw TensorError(.invalidArgument, op: "stacked", "needs at least one tensor")
        }
        for t in tensors where t.shape != first.shape {
            throw TensorError(.shapeMismatch, op: "stacked",
                              "all tensors need shape \(first.shape), got \(t.shape)")
        }
        let a = try first.normalizedAxis(axis, op: "stacked", rank: first.rank + 1)
        return try concatenated(tensors.map { try $0.unsqueezed(axis: a) }, axis: a)
    }

    /// Splits along `axis` into pieces of the given sizes, which must add up to the axis size.
    public func split(sizes: [Int], axis: Int) throws -> [Tensor] {
        let a = try normalizedAxis(axis, op: "split")
        guard sizes.allSatisfy({ $0 >= 0 }), sizes.reduce(0, +) == shape[a] else {
            throw TensorError(.shapeMismatch, op: "split",
                              "sizes \(sizes) must be ≥ 0 and add up to \(shape[a]), the size of axis \(axis)")
        }
        var start = 0
        return try sizes.map { size in
            defer { start += size }
            return try sliced(axis: a, start: start, end: start + size)
        }
    }

    /// Splits along `axis` into pieces of `size` (the last may be smaller), as `torch.split`.
    public func split(size: Int, axis: Int) throws -> [Tensor] {
        let a = try normalizedAxis(axis, op: "split")
        guard size > 0 else {
            throw TensorError(.invalidArgument, op: "split", "piece size must be positive, got \(size)")
        }
        let total = shape[a]
        let sizes = stride(from: 0, to: total, by: size).map { Swift.min(size, total - $0) }
        return try split(sizes: sizes.isEmpty ? [0] : sizes, axis: a)
    }

    /// The entries `indices` along `axis` (negative indices count from the end), as
    /// `torch.index_select`.
    public func indexSelected(axis: Int, indices: [Int]) throws -> Tensor {
        let a = try normalizedAxis(axis, op: "indexSelected")
        let size = shape[a]
        let resolved = try indices.map { i -> Int in
            guard i >= -size && i < size else {
                throw TensorError(.invalidArgument, op: "indexSelected",
                                  "index \(i) is out of range for axis \(axis) of size \(size)")
            }
            return i < 0 ? i + size : i
        }
        let outer = shape[..<a].reduce(1, *)
        let inner = shape[(a + 1)...].reduce(1, *)
        var flat = [Int32]()
        flat.reserveCapacity(outer * resolved.count * inner)
        for o in 0..<outer {
            for i in resolved {
                let base = (o * size + i) * inner
                for j in 0..<inner { flat.append(Int32(base + j)) }
            }
        }
        var outShape = shape
        outShape[a] = resolved.count
        return try take(flat, shape: outShape, op: "indexSelected")
    }

    /// `torch.gather`: out[i][j][k] = self[i][index[i][j][k]][k] for axis 1, and so on. `index`
    /// holds integral values, has this tensor's rank, and is no larger on the other axes.
    public func gathered(axis: Int, indices index: Tensor) throws -> Tensor {
        let a = try normalizedAxis(axis, op: "gathered")
        try requireSameBackend([index], op: "gathered")
        guard index.rank == rank,
              (0..<rank).allSatisfy({ $0 == a || index.shape[$0] <= shape[$0] }) else {
            throw TensorError(.shapeMismatch, op: "gathered",
                              "index shape \(index.shape) must have rank \(rank) and fit in \(shape) outside axis \(axis)")
        }
        let values = try index.scalars()
        let own = strides
        let indexStrides = index.strides
        var flat = [Int32](repeating: 0, count: values.count)
        for (n, v) in values.enumerated() {
            guard v == v.rounded(), v >= -Float(shape[a]), v < Float(shape[a]) else {
                throw TensorError(.invalidArgument, op: "gathered",
                                  "index \(v) is out of range for axis \(axis) of size \(shape[a])")
            }
            var offset = 0
            var rest = n
            for d in 0..<rank {
                let coordinate = rest / indexStrides[d]
                rest %= indexStrides[d]
                let c = d == a ? (v < 0 ? Int(v) + shape[a] : Int(v)) : coordinate
                offset += c * own[d]
            }
            flat[n] = Int32(offset)
        }
        return try take(flat, shape: index.shape, op: "gathered")
    }

    /// A tensor of `shape` whose element i is this tensor's element `flat[i]`.
    /// The gradient adds each element of the result's gradient back at its source, so repeated
    /// indices accumulate.
    func take(_ flat: [Int32], shape outShape: [Int], op: String) throws -> Tensor {
        guard count <= Int(Int32.max), flat.count < Int(Int32.max) else {
            throw TensorError(.invalidArgument, op: op, "tensors over 2³¹ elements are not supported")
        }
        let out = try Tensor.empty(outShape, on: backend)
        if !flat.isEmpty { try backend.take(flat, from: storage.buffer, to: out.storage.buffer) }
        return out.recording([self]) { [shape, count] g in
            [try g.flattened().scatterAdded(flat, count: count).reshaped(to: shape)]
        }
    }

    /// The adjoint of `take`: a rank-1 tensor of `count` zeros to which element i of this rank-1
    /// tensor is added at `flat[i]` (repeated indices accumulate).
    ///
    /// Built from gathers, with no scatter kernel: the distinct destinations U are found on the host;
    /// round r gathers, for each of them, its r-th source (or a zero past the end), and the rounds are
    /// summed; one last gather spreads U's sums over the zeros. The cost is O(count + K·|U|) for K the
    /// largest number of repeats of one index.
    func scatterAdded(_ flat: [Int32], count: Int) throws -> Tensor {
        let zero = try Tensor.zeros([1], on: backend)
        guard !flat.isEmpty else { return try Tensor.zeros([count], on: backend) }
        // sources[u]: the positions of this tensor that add into destination u.
        var slot = [Int32: Int]()
        var destinations: [Int32] = [], sources: [[Int32]] = []
        for (i, d) in flat.enumerated() {
            if let u = slot[d] {
                sources[u].append(Int32(i))
            } else {
                slot[d] = destinations.count
                destinations.append(d)
                sources.append([Int32(i)])
            }
        }
        let padded = try Tensor.concatenated([self, zero], axis: 0)
        let sentinel = Int32(flat.count)
        var sums: Tensor? = nil
        for round in 0..<(sources.map(\.count).max() ?? 0) {
            let picks = sources.map { round < $0.count ? $0[round] : sentinel }
            let part = try padded.take(picks, shape: [picks.count], op: "scatterAdded")
            sums = try sums.map { try $0 + part } ?? part
        }
        guard let sums else { return try Tensor.zeros([count], on: backend) }
        let spread = (0..<count).map { slot[Int32($0)].map(Int32.init) ?? Int32(destinations.count) }
        return try Tensor.concatenated([sums, zero], axis: 0).take(spread, shape: [count], op: "scatterAdded")
    }
}
