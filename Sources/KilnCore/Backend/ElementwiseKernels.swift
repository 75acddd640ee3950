/// Elementwise maps with NumPy broadcasting.
public protocol ElementwiseKernels {
    /// y[i] = op(x[i]) for i < count.
    func unary(_ op: UnaryOp, _ x: any BackendBuffer, _ y: any BackendBuffer, count: Int) throws
    /// out[i] = op(a[Σ i·aStrides], b[Σ i·bStrides]) over `geometry.shape` (output contiguous).
    func binary(_ op: BinaryOp, _ geometry: BroadcastGeometry, _ a: any BackendBuffer,
                _ b: any BackendBuffer, _ out: any BackendBuffer) throws
    /// out = condition != 0 ? a : b, broadcast over `geometry.shape`.
    func select(_ geometry: BroadcastGeometry, condition: any BackendBuffer, _ a: any BackendBuffer,
                _ b: any BackendBuffer, _ out: any BackendBuffer) throws
}

/// The output shape and the input strides (0 where broadcast) of a broadcast elementwise op,
/// with adjacent dimensions already coalesced. At most `StridedCopy.maxRank` dimensions.
public struct BroadcastGeometry: Sendable, Equatable {
    public var shape: [Int]
    /// One stride list per input, each with `shape.count` entries.
    public var strides: [[Int]]

    public init(shape: [Int], strides: [[Int]]) {
        self.shape = shape
        self.strides = strides
    }

    public var count: Int { shape.reduce(1, *) }
}

/// Unary elementwise ops. The raw codes match `kiln_unary_op` in CKilnCPU and Kernels/elementwise.cl.
public enum UnaryOp: Sendable, Equatable {
    case negate, abs, sign, exp, expm1, log, log1p, sqrt, rsqrt, square, sin, cos, tanh, sigmoid
    case relu, geluErf, geluTanh, silu, softplus, erf
    case clamp(min: Float, max: Float)
    case powScalar(Float)
    case reciprocal, floor, ceil, round
    case leakyReLU(slope: Float)
    case elu(alpha: Float)
    case tan
    case addScalar(Float)
    case multiplyScalar(Float)

    /// The op code shared with the C and OpenCL kernels.
    public var code: Int32 {
        switch self {
        case .negate: 0
        case .abs: 1
        case .sign: 2
        case .exp: 3
        case .expm1: 4
        case .log: 5
        case .log1p: 6
        case .sqrt: 7
        case .rsqrt: 8
        case .square: 9
        case .sin: 10
        case .cos: 11
        case .tanh: 12
        case .sigmoid: 13
        case .relu: 14
        case .geluErf: 15
        case .geluTanh: 16
        case .silu: 17
        case .softplus: 18
        case .erf: 19
        case .clamp: 20
        case .powScalar: 21
        case .reciprocal: 22
        case .floor: 23
        case .ceil: 24
        case .round: 25
        case .leakyReLU: 26
        case .elu: 27
        case .tan: 28
        case .addScalar: 29
        case .multiplyScalar: 30
        }
    }

    /// The two scalar parameters passed to the kernels (p0, p1).
    public var parameters: (Float, Float) {
        switch self {
        case .clamp(let lo, let hi): (lo, hi)
        case .powScalar(let p), .leakyReLU(let p), .elu(let p), .addScalar(let p),
             .multiplyScalar(let p): (p, 0)
        default: (0, 0)
        }
    }
}

/// Binary elementwise ops. Comparisons give 1 or 0. Codes match `kiln_binary_op`.
public enum BinaryOp: Int32, Sendable, Equatable, CaseIterable {
    case add = 0, subtract, multiply, divide, pow, maximum, minimum
    case equal, notEqual, less, lessEqual, greater, greaterEqual

    public var code: Int32 { rawValue }
}
