/// The storage behind a tensor: one backend buffer, shared by value copies of the tensor.
public final class TensorStorage: @unchecked Sendable {
    public let backend: any Backend
    public let buffer: any BackendBuffer

    public init(backend: any Backend, buffer: any BackendBuffer) {
        self.backend = backend
        self.buffer = buffer
    }
}

/// An n-dimensional array of Float32 values on one backend.
///
/// `Tensor` is a value type: a shape, a dtype and a reference to immutable, contiguous, row-major
/// storage. Operations return new tensors. A tensor lives on exactly one backend; mixing backends
/// in one op throws `TensorError` of kind `.backendMismatch` (copy explicitly with `to(_:)`).
public struct Tensor: Sendable, CustomStringConvertible {
    /// The size of each dimension, outermost first.
    public let shape: [Int]
    /// The element type (Float32).
    public let dtype: DType
    public let storage: TensorStorage
    /// The autograd record: set on leaves that require a gradient and on results of recorded ops.
    public internal(set) var gradientNode: GradientNode?

    /// Wraps an existing buffer that holds at least `shape.reduce(1, *)` elements.
    public init(shape: [Int], storage: TensorStorage, dtype: DType = .float32) {
        self.shape = shape
        self.storage = storage
        self.dtype = dtype
    }

    /// The backend that owns the storage.
    public var backend: any Backend { storage.backend }
    /// The number of dimensions.
    public var rank: Int { shape.count }
    /// The number of elements.
    public var count: Int { shape.reduce(1, *) }
    /// Row-major strides in elements.
    public var strides: [Int] { Shape.strides(of: shape) }

    /// The values in row-major order; waits for queued work on the backend.
    public func scalars() throws -> [Float] {
        if count == 0 { return [] }
        return try backend.download(storage.buffer, count: count)
    }

    /// The single value of a one-element tensor.
    public func item() throws -> Float {
        guard count == 1 else {
            throw TensorError(.invalidArgument, op: "item",
                              "needs a tensor with one element, got shape \(shape)")
        }
        return try scalars()[0]
    }

    /// A copy of this tensor on `backend` (the same tensor when it is already there).
    public func to(_ backend: any Backend) throws -> Tensor {
        if backend === self.backend { return self }
        return try Tensor(try scalars(), shape: shape, on: backend)
    }

    public var description: String {
        let values = (try? scalars()).map { v in
            v.count <= 16 ? "\(v)" : "\(Array(v.prefix(16))) …"
        } ?? "<unreadable>"
        return "Tensor(shape: \(shape), backend: \(backend.name), \(values))"
    }
}

extension Tensor {
    /// A new uninitialised tensor of `shape` on `backend` (for ops and backends to fill).
    public static func empty(_ shape: [Int], on backend: any Backend) throws -> Tensor {
        let n = shape.reduce(1, *)
        return Tensor(shape: shape, storage: TensorStorage(backend: backend,
                                                           buffer: try backend.allocate(count: n)))
    }

    /// A tensor holding `values` with `shape` (row-major).
    /// - Throws: `TensorError.invalidArgument` when the counts differ or a size is negative.
    public init(_ values: [Float], shape: [Int], on backend: any Backend) throws {
        try Shape.validate(shape, op: "Tensor")
        let n = shape.reduce(1, *)
        guard n == values.count else {
            throw TensorError(.invalidArgument, op: "Tensor",
                              "shape \(shape) needs \(n) values, got \(values.count)")
        }
        let buffer = n == 0 ? try backend.allocate(count: 0) : try backend.upload(values)
        self.init(shape: shape, storage: TensorStorage(backend: backend, buffer: buffer))
    }

    /// A rank-1 tensor holding `values`.
    public init(_ values: [Float], on backend: any Backend) throws {
        try self.init(values, shape: [values.count], on: backend)
    }

    /// A rank-0 tensor holding `value`.
    public init(scalar value: Float, on backend: any Backend) throws {
        try self.init([value], shape: [], on: backend)
    }
}

/// Shared checks used by every op before it dispatches.
extension Tensor {
    /// Throws `.backendMismatch` unless every tensor lives on this tensor's backend.
    @usableFromInline
    func requireSameBackend(_ others: [Tensor], op: String) throws {
        for other in others where other.backend !== backend {
            throw TensorError(.backendMismatch, op: op,
                              "tensors live on different backends (\(backend.name) and \(other.backend.name)); copy one with to(_:)")
        }
    }

    /// Normalises `axis` (negative counts from the end) or throws `.badAxis`.
    @usableFromInline
    func normalizedAxis(_ axis: Int, op: String, rank: Int? = nil) throws -> Int {
        let r = rank ?? self.rank
        guard axis >= -r && axis < r else {
            throw TensorError(.badAxis, op: op,
                              "axis \(axis) is out of range for a rank-\(r) tensor of shape \(shape)")
        }
        return axis < 0 ? axis + r : axis
    }

    /// Normalised, sorted, duplicate-free axes; an empty list means every axis.
    @usableFromInline
    func normalizedAxes(_ axes: [Int], op: String) throws -> [Int] {
        if axes.isEmpty { return Array(0..<rank) }
        var seen = Set<Int>()
        for axis in axes {
            let a = try normalizedAxis(axis, op: op)
            guard seen.insert(a).inserted else {
                throw TensorError(.badAxis, op: op, "axis \(axis) appears more than once in \(axes)")
            }
        }
        return seen.sorted()
    }
}
