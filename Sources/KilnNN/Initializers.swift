import KilnCore

/// Seeded weight initializers with the published definitions (and `torch.nn.init`'s conventions).
///
/// Every sampler draws from `Tensor.uniform/normal(..., seed:, on:)`, the Philox-4x32-10 stream of
/// `seed`, which gives the same bits on every backend: the same seed gives the same model on CPU and
/// OpenCL.
///
/// Fans follow `torch.nn.init._calculate_fan_in_and_fan_out`: for a weight of shape
/// `[d0, d1, k...]`, `fanIn = d1·Πk` and `fanOut = d0·Πk` (a Linear weight `[out, in]` has
/// `fanIn = in`; a Conv2d weight `[C_out, C_in/groups, kH, kW]` has `fanIn = C_in/groups·kH·kW`).
///
/// Seed 003 (NOTES.md §4 item 4) calls `N(0, 1/n_in)` "Xavier"; that is LeCun normal. Kiln follows
/// the published definitions: Glorot & Bengio (2010) use `fanIn + fanOut`, LeCun et al. (1998) `fanIn`.
public enum Initializer {
    /// The nonlinearity a gain is computed for, as `torch.nn.init.calculate_gain`.
    public enum Nonlinearity: Sendable, Equatable {
        case linear, conv1d, conv2d, conv3d, convTranspose1d, convTranspose2d, convTranspose3d, sigmoid
        case tanh, relu, selu
        /// Leaky ReLU with `negativeSlope` (PyTorch's default 0.01 when used by `calculate_gain`).
        case leakyReLU(negativeSlope: Float)
    }

    /// Which fan a Kaiming initializer preserves the variance of.
    public enum FanMode: Sendable, Equatable {
        /// Preserves the forward pass's variance (PyTorch's default).
        case fanIn
        /// Preserves the backward pass's variance.
        case fanOut
    }

    /// The recommended gain of `nonlinearity`, as `torch.nn.init.calculate_gain`: 1 for linear,
    /// convolutions and sigmoid; 5/3 for tanh; √2 for ReLU; √(2/(1 + slope²)) for leaky ReLU; 3/4 for SELU.
    public static func gain(_ nonlinearity: Nonlinearity) -> Float {
        switch nonlinearity {
        case .linear, .conv1d, .conv2d, .conv3d, .convTranspose1d, .convTranspose2d, .convTranspose3d, .sigmoid:
            return 1
        case .tanh: return 5.0 / 3.0
        case .relu: return Float(2.0.squareRoot())
        case .selu: return 0.75
        case .leakyReLU(let slope):
            let s = Double(slope)
            return Float((2.0 / (1.0 + s * s)).squareRoot())
        }
    }

    /// `(fanIn, fanOut)` of a weight shaped `[d0, d1, k...]`: `(d1·Πk, d0·Πk)`.
    /// - Throws: `TensorError` naming `Initializer.fans` for a shape of rank < 2 or with a zero dimension.
    public static func fans(of shape: [Int]) throws -> (fanIn: Int, fanOut: Int) {
        guard shape.count >= 2, shape.allSatisfy({ $0 > 0 }) else {
            throw TensorError(.invalidArgument, op: "Initializer.fans",
                              "needs a shape of rank ≥ 2 with positive dimensions, got \(shape)")
        }
        let receptive = shape.dropFirst(2).reduce(1, *)
        return (shape[1] * receptive, shape[0] * receptive)
    }

    /// A tensor filled with `value`.
    public static func constant(_ shape: [Int], value: Float, on backend: any Backend) throws -> Tensor {
        try Tensor.full(shape, value: value, on: backend)
    }

    /// LeCun uniform: `U(−√(3/fanIn), √(3/fanIn))`, variance `1/fanIn`.
    public static func lecunUniform(_ shape: [Int], seed: UInt64, on backend: any Backend) throws -> Tensor {
        let (fanIn, _) = try fans(of: shape)
        let bound = Float((3.0 / Double(fanIn)).squareRoot())
        return try Tensor.uniform(shape, low: -bound, high: bound, seed: seed, on: backend)
    }

    /// LeCun normal: `N(0, 1/fanIn)` (untruncated). This is what seed 003 calls "Xavier".
    public static func lecunNormal(_ shape: [Int], seed: UInt64, on backend: any Backend) throws -> Tensor {
        let (fanIn, _) = try fans(of: shape)
        let std = Float((1.0 / Double(fanIn)).squareRoot())
        return try Tensor.normal(shape, mean: 0, standardDeviation: std, seed: seed, on: backend)
    }

    /// Xavier/Glorot uniform (Glorot & Bengio 2010), as `torch.nn.init.xavier_uniform_`:
    /// `U(−a, a)` with `a = gain·√(6/(fanIn + fanOut))`.
    /// - Throws: `TensorError` for a bad shape or a negative or non-finite gain.
    public static func xavierUniform(_ shape: [Int], gain: Float = 1, seed: UInt64,
                                     on backend: any Backend) throws -> Tensor {
        try checkGain(gain, op: "Initializer.xavierUniform")
        let (fanIn, fanOut) = try fans(of: shape)
        let bound = Float(Double(gain) * (6.0 / Double(fanIn + fanOut)).squareRoot())
        return try Tensor.uniform(shape, low: -bound, high: bound, seed: seed, on: backend)
    }

    /// Xavier/Glorot normal, as `torch.nn.init.xavier_normal_`: `N(0, σ²)` with
    /// `σ = gain·√(2/(fanIn + fanOut))`.
    /// - Throws: `TensorError` for a bad shape or a negative or non-finite gain.
    public static func xavierNormal(_ shape: [Int], gain: Float = 1, seed: UInt64,
                                    on backend: any Backend) throws -> Tensor {
        try checkGain(gain, op: "Initializer.xavierNormal")
        let (fanIn, fanOut) = try fans(of: shape)
        let std = Float(Double(gain) * (2.0 / Double(fanIn + fanOut)).squareRoot())
        return try Tensor.normal(shape, mean: 0, standardDeviation: std, seed: seed, on: backend)
    }

    /// He/Kaiming uniform (He et al. 2015), as `torch.nn.init.kaiming_uniform_`:
    /// `U(−b, b)` with `b = gain·√(3/fan)`, `gain = gain(nonlinearity)`, where a leaky ReLU uses
    /// slope `a` (PyTorch's `a` argument; `a = √5` gives `b = 1/√fanIn`, PyTorch's Linear/Conv default).
    public static func kaimingUniform(_ shape: [Int], a: Float = 0, mode: FanMode = .fanIn,
                                      nonlinearity: Nonlinearity = .leakyReLU(negativeSlope: 0), seed: UInt64,
                                      on backend: any Backend) throws -> Tensor {
        let std = try kaimingStandardDeviation(shape, a: a, mode: mode, nonlinearity: nonlinearity,
                                               op: "Initializer.kaimingUniform")
        let bound = Float(3.0.squareRoot() * std)
        return try Tensor.uniform(shape, low: -bound, high: bound, seed: seed, on: backend)
    }

    /// He/Kaiming normal, as `torch.nn.init.kaiming_normal_`: `N(0, σ²)` with `σ = gain/√fan`.
    public static func kaimingNormal(_ shape: [Int], a: Float = 0, mode: FanMode = .fanIn,
                                     nonlinearity: Nonlinearity = .leakyReLU(negativeSlope: 0), seed: UInt64,
                                     on backend: any Backend) throws -> Tensor {
        let std = try kaimingStandardDeviation(shape, a: a, mode: mode, nonlinearity: nonlinearity,
                                               op: "Initializer.kaimingNormal")
        return try Tensor.normal(shape, mean: 0, standardDeviation: Float(std), seed: seed, on: backend)
    }

    /// A (semi-)orthogonal matrix (Saxe et al. 2014), as `torch.nn.init.orthogonal_`: the weight
    /// viewed as `[rows = shape[0], cols = Π shape[1...]]` is `gain·Q` from the QR decomposition of a
    /// standard normal matrix (of its transpose when rows < cols), with Q's columns multiplied by
    /// `sign(diag R)` so the distribution is uniform (Haar). QR is Householder's, in Float64 on the host.
    /// Rows (or columns, when rows < cols) are orthonormal: `QᵀQ = I` to ~1e-6.
    /// - Throws: `TensorError` for a shape of rank < 2, a zero dimension or a bad gain.
    public static func orthogonal(_ shape: [Int], gain: Float = 1, seed: UInt64,
                                  on backend: any Backend) throws -> Tensor {
        let op = "Initializer.orthogonal"
        try checkGain(gain, op: op)
        guard shape.count >= 2, shape.allSatisfy({ $0 > 0 }) else {
            throw TensorError(.invalidArgument, op: op, "needs a shape of rank ≥ 2 with positive dimensions, got \(shape)")
        }
        let rows = shape[0], cols = shape.dropFirst().reduce(1, *)
        let sample = try Tensor.normal([rows * cols], seed: seed, on: backend).scalars().map(Double.init)
        // The tall matrix A [m, n], m ≥ n, row-major: the sample, or its transpose when rows < cols.
        let transpose = rows < cols
        let (m, n) = transpose ? (cols, rows) : (rows, cols)
        var a = [Double](repeating: 0, count: m * n)
        for i in 0..<rows {
            for j in 0..<cols {
                if transpose { a[j * n + i] = sample[i * cols + j] } else { a[i * n + j] = sample[i * cols + j] }
            }
        }
        let q = householderQ(a, m: m, n: n)
        var out = [Float](repeating: 0, count: rows * cols)
        for i in 0..<rows {
            for j in 0..<cols {
                let v = transpose ? q[j * n + i] : q[i * n + j]
                out[i * cols + j] = Float(Double(gain) * v)
            }
        }
        return try Tensor(out, shape: shape, on: backend)
    }

    /// A seed for the `stream`-th tensor of a layer seeded with `seed` (SplitMix64 of both), so a
    /// layer's weight and bias, and neighbouring layers' seeds, draw from unrelated Philox streams.
    public static func derivedSeed(_ seed: UInt64, stream: UInt64) -> UInt64 {
        var z = seed &+ (stream &+ 1) &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    // MARK: - Helpers

    private static func checkGain(_ gain: Float, op: String) throws {
        guard gain.isFinite, gain >= 0 else {
            throw TensorError(.invalidArgument, op: op, "gain must be finite and ≥ 0, got \(gain)")
        }
    }

    private static func kaimingStandardDeviation(_ shape: [Int], a: Float, mode: FanMode, nonlinearity: Nonlinearity,
                                                 op: String) throws -> Double {
        guard a.isFinite else { throw TensorError(.invalidArgument, op: op, "a must be finite, got \(a)") }
        let (fanIn, fanOut) = try fans(of: shape)
        let fan = mode == .fanIn ? fanIn : fanOut
        let g: Float
        if case .leakyReLU = nonlinearity { g = gain(.leakyReLU(negativeSlope: a)) } else { g = gain(nonlinearity) }
        return Double(g) / Double(fan).squareRoot()
    }

    /// Q [m, n] (m ≥ n, row-major) of the thin QR decomposition of `a` by Householder reflections,
    /// with each column multiplied by sign(R_jj) (+1 for a zero diagonal).
    static func householderQ(_ input: [Double], m: Int, n: Int) -> [Double] {
        var r = input
        var vs: [[Double]] = []
        var signs = [Double](repeating: 1, count: n)
        for k in 0..<n {
            var v = [Double](repeating: 0, count: m)
            var norm = 0.0
            for i in k..<m { v[i] = r[i * n + k]; norm += v[i] * v[i] }
            norm = norm.squareRoot()
            let alpha = v[k] >= 0 ? -norm : norm
            v[k] -= alpha
            var vv = 0.0
            for i in k..<m { vv += v[i] * v[i] }
            if vv > 0 {
                for j in k..<n {
                    var dot = 0.0
                    for i in k..<m { dot += v[i] * r[i * n + j] }
                    let f = 2 * dot / vv
                    for i in k..<m { r[i * n + j] -= f * v[i] }
                }
            }
            vs.append(vv > 0 ? v : [])
            signs[k] = r[k * n + k] < 0 ? -1 : 1
        }
        // Q = H_0 H_1 ... H_{n-1} applied to the first n columns of the identity.
        var q = [Double](repeating: 0, count: m * n)
        for j in 0..<n { q[j * n + j] = 1 }
        for k in stride(from: n - 1, through: 0, by: -1) {
            let v = vs[k]
            guard !v.isEmpty else { continue }
            var vv = 0.0
            for i in k..<m { vv += v[i] * v[i] }
            for j in 0..<n {
                var dot = 0.0
                for i in k..<m { dot += v[i] * q[i * n + j] }
                let f = 2 * dot / vv
                for i in k..<m { q[i * n + j] -= f * v[i] }
            }
        }
        for i in 0..<m { for j in 0..<n { q[i * n + j] *= signs[j] } }
        return q
    }
}
