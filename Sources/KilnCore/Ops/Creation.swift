/// Tensor creation on an explicit backend. The `Kiln` module adds `Device`-based overloads.
extension Tensor {
    /// A tensor of `shape` filled with `value`.
    public static func full(_ shape: [Int], value: Float, on backend: any Backend) throws -> Tensor {
        try Shape.validate(shape, op: "full")
        let t = try Tensor.empty(shape, on: backend)
        if t.count > 0 { try backend.fill(t.storage.buffer, value: value, count: t.count) }
        return t
    }

    /// A tensor of `shape` filled with zeros.
    public static func zeros(_ shape: [Int], on backend: any Backend) throws -> Tensor {
        try full(shape, value: 0, on: backend)
    }

    /// A tensor of `shape` filled with ones.
    public static func ones(_ shape: [Int], on backend: any Backend) throws -> Tensor {
        try full(shape, value: 1, on: backend)
    }

    /// `[start, start + step, …]` up to but excluding `end`, as `torch.arange`:
    /// ⌈(end − start) / step⌉ elements, element i = start + i·step (computed in Float64).
    public static func arange(from start: Double = 0, to end: Double, step: Double = 1,
                              on backend: any Backend) throws -> Tensor {
        guard step != 0, step.isFinite, start.isFinite, end.isFinite else {
            throw TensorError(.invalidArgument, op: "arange",
                              "needs finite start, end and a non-zero step, got start \(start), end \(end), step \(step)")
        }
        let n = Swift.max(0, Int(((end - start) / step).rounded(.up)))
        return try Tensor((0..<n).map { Float(start + Double($0) * step) }, on: backend)
    }

    /// `count` evenly spaced values from `start` to `end` inclusive, as `torch.linspace`.
    public static func linspace(from start: Double, to end: Double, count: Int,
                                on backend: any Backend) throws -> Tensor {
        guard count >= 0, start.isFinite, end.isFinite else {
            throw TensorError(.invalidArgument, op: "linspace",
                              "needs finite ends and count ≥ 0, got start \(start), end \(end), count \(count)")
        }
        let step = count > 1 ? (end - start) / Double(count - 1) : 0
        // Like PyTorch, the second half counts back from `end` so both ends are exact.
        let values = (0..<count).map { i -> Float in
            i < count / 2 ? Float(start + Double(i) * step) : Float(end - Double(count - 1 - i) * step)
        }
        return try Tensor(values, on: backend)
    }

    /// The `rows × columns` matrix with ones on the diagonal (`columns` defaults to `rows`).
    public static func eye(_ rows: Int, columns: Int? = nil, on backend: any Backend) throws -> Tensor {
        let cols = columns ?? rows
        guard rows >= 0, cols >= 0 else {
            throw TensorError(.invalidArgument, op: "eye", "sizes must be ≥ 0, got \(rows) × \(cols)")
        }
        var values = [Float](repeating: 0, count: rows * cols)
        for i in 0..<Swift.min(rows, cols) { values[i * cols + i] = 1 }
        return try Tensor(values, shape: [rows, cols], on: backend)
    }

    /// Samples of `distribution` from the Philox-4x32-10 stream of `seed` (the same bits on
    /// every backend).
    public static func random(_ shape: [Int], _ distribution: RandomDistribution, seed: UInt64,
                              on backend: any Backend) throws -> Tensor {
        try Shape.validate(shape, op: "random")
        switch distribution {
        case .uniform(let low, let high):
            guard low.isFinite, high.isFinite, low <= high else {
                throw TensorError(.invalidArgument, op: "uniform",
                                  "needs finite low ≤ high, got low \(low), high \(high)")
            }
        case .normal(let mean, let std):
            guard mean.isFinite, std.isFinite, std >= 0 else {
                throw TensorError(.invalidArgument, op: "normal",
                                  "needs a finite mean and standard deviation ≥ 0, got mean \(mean), std \(std)")
            }
        case .bernoulli(let p):
            guard p >= 0, p <= 1 else {
                throw TensorError(.invalidArgument, op: "bernoulli",
                                  "probability must lie in [0, 1], got \(p)")
            }
        }
        let t = try Tensor.empty(shape, on: backend)
        if t.count > 0 { try backend.random(distribution, seed: seed, t.storage.buffer, count: t.count) }
        return t
    }

    /// Uniform samples on [low, high).
    public static func uniform(_ shape: [Int], low: Float = 0, high: Float = 1, seed: UInt64,
                               on backend: any Backend) throws -> Tensor {
        try random(shape, .uniform(low: low, high: high), seed: seed, on: backend)
    }

    /// Normal samples with `mean` and `standardDeviation`.
    public static func normal(_ shape: [Int], mean: Float = 0, standardDeviation: Float = 1,
                              seed: UInt64, on backend: any Backend) throws -> Tensor {
        try random(shape, .normal(mean: mean, standardDeviation: standardDeviation), seed: seed, on: backend)
    }

    /// Bernoulli samples: 1 with `probability`, else 0.
    public static func bernoulli(_ shape: [Int], probability: Float, seed: UInt64,
                                 on backend: any Backend) throws -> Tensor {
        try random(shape, .bernoulli(probability: probability), seed: seed, on: backend)
    }
}
