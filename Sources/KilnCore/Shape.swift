/// Shape arithmetic shared by the ops: strides, broadcasting, dimension coalescing.
public enum Shape {
    /// Row-major strides of `shape` in elements.
    public static func strides(of shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var running = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[i] = running
            running *= shape[i]
        }
        return strides
    }

    /// Throws unless every size is ≥ 0.
    public static func validate(_ shape: [Int], op: String) throws {
        if let bad = shape.first(where: { $0 < 0 }) {
            throw TensorError(.invalidArgument, op: op, "negative size \(bad) in shape \(shape)")
        }
    }

    /// The NumPy broadcast of two shapes: align on the right; sizes must match or be 1.
    public static func broadcast(_ a: [Int], _ b: [Int], op: String) throws -> [Int] {
        let rank = max(a.count, b.count)
        var out = [Int](repeating: 1, count: rank)
        for i in 0..<rank {
            let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
            let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
            if da == db || db == 1 {
                out[i] = da
            } else if da == 1 {
                out[i] = db
            } else {
                throw TensorError(.shapeMismatch, op: op,
                                  "shapes \(a) and \(b) cannot be broadcast together (dimension \(i): \(da) vs \(db))")
            }
        }
        return out
    }

    /// Strides that read a tensor of `shape` as if it had `target` shape (0 on broadcast dimensions).
    public static func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
        let own = strides(of: shape)
        let offset = target.count - shape.count
        return (0..<target.count).map { i in
            i < offset || shape[i - offset] == 1 ? 0 : own[i - offset]
        }
    }

    /// Merges adjacent dimensions that are contiguous in every stride list, drops size-1
    /// dimensions, and returns at least one dimension. An op over the result visits the same
    /// elements in the same order.
    public static func coalesce(_ shape: [Int], _ strides: [[Int]]) -> (shape: [Int], strides: [[Int]]) {
        var outShape: [Int] = []
        var outStrides: [[Int]] = strides.map { _ in [] }
        for d in 0..<shape.count where shape[d] != 1 {
            if let last = outShape.indices.last,
               strides.indices.allSatisfy({ outStrides[$0][last] == strides[$0][d] * shape[d] }) {
                outShape[last] *= shape[d]
                for s in strides.indices { outStrides[s][last] = strides[s][d] }
            } else {
                outShape.append(shape[d])
                for s in strides.indices { outStrides[s].append(strides[s][d]) }
            }
        }
        if outShape.isEmpty {
            return ([1], strides.map { _ in [0] })
        }
        return (outShape, outStrides)
    }
}
