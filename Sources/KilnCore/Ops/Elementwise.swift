/// Elementwise ops. Binary ops broadcast with NumPy rules; comparisons give 1 or 0.
extension Tensor {
    /// y = op(x) elementwise. Every op records a pullback; at kinks the one-sided conventions of
    /// PyTorch hold (relu'(0) = abs'(0) = 0, leakyReLU'(0) = slope, elu'(0) = α, clamp passes the
    /// gradient for min ≤ x ≤ max), and piecewise-constant ops (sign, floor, ceil, round) give zero.
    public func applying(_ op: UnaryOp) throws -> Tensor {
        let out = try Tensor.empty(shape, on: backend)
        if count > 0 { try backend.unary(op, storage.buffer, out.storage.buffer, count: count) }
        let x = self.detached(), y = out.detached()
        return out.recording([self]) { g in [try Tensor.unaryPullback(op, g, x, y)] }
    }

    /// g·f'(x) for the unary op f, from x and y = f(x), built from elementwise ops on g's backend.
    private static func unaryPullback(_ op: UnaryOp, _ g: Tensor, _ x: Tensor, _ y: Tensor) throws -> Tensor {
        let zero = try Tensor.zeros([], on: g.backend)
        switch op {
        case .negate: return try -g
        case .addScalar: return g
        case .multiplyScalar(let c): return try g * c
        case .exp: return try g * y
        case .expm1: return try g * (y + 1)
        case .log: return try g / x
        case .log1p: return try g / (x + 1)
        case .square: return try g * x * 2
        case .sqrt: return try g / (y * 2)
        case .rsqrt:
            // d x^(−1/2) = −½·x^(−3/2) = −½·y³
            let cube: Tensor = try y * y * y
            return try g * cube * -0.5
        case .reciprocal: return try g * square(y) * -1
        case .sin: return try g * cos(x)
        case .cos: return try g * -sin(x)
        case .tan: return try g * (square(y) + 1)
        case .tanh: return try g * (1 - square(y))
        case .sigmoid: return try g * y * (1 - y)
        case .relu: return try g * x.greater(zero)
        case .abs: return try g * sign(x)
        case .sign, .floor, .ceil, .round: return try Tensor.zeros(g.shape, on: g.backend)
        case .erf:
            // 2/√π·e^(−x²)
            let bell: Tensor = try exp(square(x) * -1)
            return try g * bell * Float(2 / Double.pi.squareRoot())
        case .geluErf:
            // Φ(x) + x·φ(x), φ(x) = e^(−x²/2)/√(2π)
            let cdf: Tensor = try (erf(x * Float(1 / 2.0.squareRoot())) + 1) * 0.5
            let pdf: Tensor = try exp(square(x) * -0.5) * Float(1 / (2 * Double.pi).squareRoot())
            return try g * (cdf + x * pdf)
        case .geluTanh:
            // ½(1 + t) + ½x(1 − t²)·k(1 + 3·0.044715x²), t = tanh(k(x + 0.044715x³)), k = √(2/π)
            let k = Float((2 / Double.pi).squareRoot())
            let cubic: Tensor = try x + x * square(x) * 0.044715
            let t: Tensor = try tanh(cubic * k)
            let inner: Tensor = try (square(x) * Float(3 * 0.044715) + 1) * k
            let slope: Tensor = try x * (1 - square(t)) * inner
            return try g * ((t + 1) + slope) * 0.5
        case .silu:
            // σ(x)·(1 + x(1 − σ(x)))
            let s: Tensor = try sigmoid(x)
            return try g * s * (x * (1 - s) + 1)
        case .softplus: return try g * sigmoid(x)
        case .clamp(let lower, let upper):
            let inside: Tensor = try x.greaterEqual(Tensor.full([], value: lower, on: g.backend))
                * x.lessEqual(Tensor.full([], value: upper, on: g.backend))
            return try g * inside
        case .powScalar(let p):
            // p·x^(p−1); zero for p = 0, as PyTorch (no 0·∞ at x = 0).
            if p == 0 { return try Tensor.zeros(g.shape, on: g.backend) }
            return try g * pow(x, p - 1) * p
        case .leakyReLU(let slope):
            return try Tensor.selecting(x.greater(zero), g, g * slope)
        case .elu(let alpha):
            // α·eˣ = y + α for x ≤ 0
            return try Tensor.selecting(x.greater(zero), g, g * (y + alpha))
        }
    }

    /// out = op(self, other) with broadcasting.
    public func combining(_ other: Tensor, _ op: BinaryOp) throws -> Tensor {
        let name = "\(op)"
        try requireSameBackend([other], op: name)
        let outShape = try Shape.broadcast(shape, other.shape, op: name)
        let out = try Tensor.empty(outShape, on: backend)
        if out.count == 0 { return out }
        let geometry = try Tensor.geometry(outShape, [shape, other.shape], op: name)
        try backend.binary(op, geometry, storage.buffer, other.storage.buffer, out.storage.buffer)
        return out.recording([self, other]) { [a = self.detached(), b = other.detached()] g in
            switch op {
            case .add: [try g.reducedToShape(a.shape), try g.reducedToShape(b.shape)]
            case .subtract: [try g.reducedToShape(a.shape), try (-g).reducedToShape(b.shape)]
            case .multiply: [try (g * b).reducedToShape(a.shape), try (g * a).reducedToShape(b.shape)]
            case .divide: [try (g / b).reducedToShape(a.shape), try (-(g * a) / (b * b)).reducedToShape(b.shape)]
            case .pow: try Tensor.powPullback(g, a, b)
            case .maximum, .minimum: try Tensor.extremumPullback(g, a, b, maximum: op == .maximum)
            default: [nil, nil]  // comparisons: piecewise constant
            }
        }
    }

    /// The gradients of aᵇ, as PyTorch: ∂/∂a = b·a^(b−1) (zero where b = 0) and ∂/∂b = aᵇ·ln a
    /// (zero where a = 0 and b ≥ 0; NaN where a < 0, as ln a).
    private static func powPullback(_ g: Tensor, _ a: Tensor, _ b: Tensor) throws -> [Tensor?] {
        let zero = try Tensor.zeros([], on: g.backend)
        let power: Tensor = try pow(a, b)
        let lowered: Tensor = try pow(a, b - 1) * b
        let da: Tensor = try Tensor.selecting(b.equal(zero), zero, g * lowered)
        let atZero: Tensor = try a.equal(zero) * b.greaterEqual(zero)
        let db: Tensor = try Tensor.selecting(atZero, zero, g * power * log(a))
        return [try da.reducedToShape(a.shape), try db.reducedToShape(b.shape)]
    }

    /// The gradients of max(a, b) or min(a, b), as PyTorch: the winner takes g, a tie splits it
    /// equally, and a NaN passes it to both inputs.
    private static func extremumPullback(_ g: Tensor, _ a: Tensor, _ b: Tensor, maximum: Bool) throws -> [Tensor?] {
        let half: Tensor = try a.equal(b) * 0.5
        let aLoses: Tensor = maximum ? try a.less(b) : try a.greater(b)
        let bLoses: Tensor = maximum ? try a.greater(b) : try a.less(b)
        let da: Tensor = try g * (1 - (aLoses + half))
        let db: Tensor = try g * (1 - (bLoses + half))
        return [try da.reducedToShape(a.shape), try db.reducedToShape(b.shape)]
    }

    /// The coalesced broadcast geometry of `inputs` read as `outShape`.
    static func geometry(_ outShape: [Int], _ inputs: [[Int]], op: String) throws -> BroadcastGeometry {
        let strides = inputs.map { Shape.broadcastStrides($0, to: outShape) } + [Shape.strides(of: outShape)]
        let (s, st) = Shape.coalesce(outShape, strides)
        guard s.count <= StridedCopy.maxRank else {
            throw TensorError(.invalidArgument, op: op,
                              "broadcasting needs at most \(StridedCopy.maxRank) non-mergeable dimensions, got \(s.count) for shape \(outShape)")
        }
        return BroadcastGeometry(shape: s, strides: Array(st.dropLast()))
    }

    /// `condition != 0 ? a : b` elementwise with broadcasting of all three, as `torch.where`.
    public static func selecting(_ condition: Tensor, _ a: Tensor, _ b: Tensor) throws -> Tensor {
        try condition.requireSameBackend([a, b], op: "where")
        let outShape = try Shape.broadcast(Shape.broadcast(condition.shape, a.shape, op: "where"), b.shape, op: "where")
        let out = try Tensor.empty(outShape, on: a.backend)
        if out.count == 0 { return out }
        let geometry = try geometry(outShape, [condition.shape, a.shape, b.shape], op: "where")
        try a.backend.select(geometry, condition: condition.storage.buffer, a.storage.buffer,
                             b.storage.buffer, out.storage.buffer)
        return out.recording([a, b]) { [c = condition.detached(), a = a.detached(), b = b.detached()] g in
            let zero = try Tensor.zeros([], on: g.backend)
            return [try Tensor.selecting(c, g, zero).reducedToShape(a.shape),
                    try Tensor.selecting(c, zero, g).reducedToShape(b.shape)]
        }
    }
}

// MARK: - Unary functions

/// −x
public func negate(_ x: Tensor) throws -> Tensor { try x.applying(.negate) }
/// |x|
public func abs(_ x: Tensor) throws -> Tensor { try x.applying(.abs) }
/// −1, 0 or 1 by the sign of x; NaN gives 0, as `torch.sign` does.
public func sign(_ x: Tensor) throws -> Tensor { try x.applying(.sign) }
/// eˣ
public func exp(_ x: Tensor) throws -> Tensor { try x.applying(.exp) }
/// eˣ − 1, accurate near 0.
public func expm1(_ x: Tensor) throws -> Tensor { try x.applying(.expm1) }
/// ln x (−inf at 0, NaN below).
public func log(_ x: Tensor) throws -> Tensor { try x.applying(.log) }
/// ln(1 + x), accurate near 0.
public func log1p(_ x: Tensor) throws -> Tensor { try x.applying(.log1p) }
/// √x
public func sqrt(_ x: Tensor) throws -> Tensor { try x.applying(.sqrt) }
/// 1/√x
public func rsqrt(_ x: Tensor) throws -> Tensor { try x.applying(.rsqrt) }
/// x²
public func square(_ x: Tensor) throws -> Tensor { try x.applying(.square) }
/// 1/x
public func reciprocal(_ x: Tensor) throws -> Tensor { try x.applying(.reciprocal) }
/// sin x
public func sin(_ x: Tensor) throws -> Tensor { try x.applying(.sin) }
/// cos x
public func cos(_ x: Tensor) throws -> Tensor { try x.applying(.cos) }
/// tan x
public func tan(_ x: Tensor) throws -> Tensor { try x.applying(.tan) }
/// tanh x
public func tanh(_ x: Tensor) throws -> Tensor { try x.applying(.tanh) }
/// σ(x) = 1/(1 + e⁻ˣ), stable for large |x|.
public func sigmoid(_ x: Tensor) throws -> Tensor { try x.applying(.sigmoid) }
/// max(x, 0) (NaN propagates).
public func relu(_ x: Tensor) throws -> Tensor { try x.applying(.relu) }
/// x ≥ 0 ? x : slope·x (PyTorch's default slope 0.01).
public func leakyReLU(_ x: Tensor, negativeSlope: Float = 0.01) throws -> Tensor {
    try x.applying(.leakyReLU(slope: negativeSlope))
}
/// x > 0 ? x : α(eˣ − 1).
public func elu(_ x: Tensor, alpha: Float = 1) throws -> Tensor { try x.applying(.elu(alpha: alpha)) }

/// How `gelu` evaluates Φ.
public enum GELUApproximation: Sendable {
    /// x·Φ(x) = x/2·(1 + erf(x/√2)) (PyTorch's default `approximate='none'`).
    case none
    /// x/2·(1 + tanh(√(2/π)(x + 0.044715x³))) (`approximate='tanh'`).
    case tanh
}

/// GELU, exact (erf) or tanh form.
public func gelu(_ x: Tensor, approximation: GELUApproximation = .none) throws -> Tensor {
    try x.applying(approximation == .none ? .geluErf : .geluTanh)
}
/// SiLU (swish): x·σ(x).
public func silu(_ x: Tensor) throws -> Tensor { try x.applying(.silu) }
/// softplus: ln(1 + eˣ), computed as max(x, 0) + ln(1 + e^−|x|).
public func softplus(_ x: Tensor) throws -> Tensor { try x.applying(.softplus) }
/// The error function.
public func erf(_ x: Tensor) throws -> Tensor { try x.applying(.erf) }
/// ⌊x⌋
public func floor(_ x: Tensor) throws -> Tensor { try x.applying(.floor) }
/// ⌈x⌉
public func ceil(_ x: Tensor) throws -> Tensor { try x.applying(.ceil) }
/// x rounded half to even, as `torch.round`.
public func round(_ x: Tensor) throws -> Tensor { try x.applying(.round) }

/// min(max(x, min), max); NaN propagates.
/// - Throws: `TensorError.invalidArgument` when a bound is NaN or min > max.
public func clamp(_ x: Tensor, min lower: Float = -.infinity, max upper: Float = .infinity) throws -> Tensor {
    guard !lower.isNaN, !upper.isNaN, lower <= upper else {
        throw TensorError(.invalidArgument, op: "clamp", "needs min ≤ max, got min \(lower), max \(upper)")
    }
    return try x.applying(.clamp(min: lower, max: upper))
}

/// xᵖ elementwise (C `powf` semantics).
public func pow(_ x: Tensor, _ exponent: Float) throws -> Tensor { try x.applying(.powScalar(exponent)) }

// MARK: - Binary functions

/// aᵇ elementwise with broadcasting.
public func pow(_ a: Tensor, _ b: Tensor) throws -> Tensor { try a.combining(b, .pow) }
/// max(a, b) elementwise with broadcasting; NaN propagates.
public func maximum(_ a: Tensor, _ b: Tensor) throws -> Tensor { try a.combining(b, .maximum) }
/// min(a, b) elementwise with broadcasting; NaN propagates.
public func minimum(_ a: Tensor, _ b: Tensor) throws -> Tensor { try a.combining(b, .minimum) }
/// condition != 0 ? a : b with broadcasting, as `torch.where`.
public func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor) throws -> Tensor {
    try Tensor.selecting(condition, a, b)
}

extension Tensor {
    /// 1 where a == b, else 0.
    public func equal(_ other: Tensor) throws -> Tensor { try combining(other, .equal) }
    /// 1 where a != b, else 0.
    public func notEqual(_ other: Tensor) throws -> Tensor { try combining(other, .notEqual) }
    /// 1 where a < b, else 0.
    public func less(_ other: Tensor) throws -> Tensor { try combining(other, .less) }
    /// 1 where a ≤ b, else 0.
    public func lessEqual(_ other: Tensor) throws -> Tensor { try combining(other, .lessEqual) }
    /// 1 where a > b, else 0.
    public func greater(_ other: Tensor) throws -> Tensor { try combining(other, .greater) }
    /// 1 where a ≥ b, else 0.
    public func greaterEqual(_ other: Tensor) throws -> Tensor { try combining(other, .greaterEqual) }
}

// MARK: - Operators

extension Tensor {
    public static func + (a: Tensor, b: Tensor) throws -> Tensor { try a.combining(b, .add) }
    public static func - (a: Tensor, b: Tensor) throws -> Tensor { try a.combining(b, .subtract) }
    public static func * (a: Tensor, b: Tensor) throws -> Tensor { try a.combining(b, .multiply) }
    public static func / (a: Tensor, b: Tensor) throws -> Tensor { try a.combining(b, .divide) }
    public static prefix func - (x: Tensor) throws -> Tensor { try x.applying(.negate) }

    public static func + (a: Tensor, b: Float) throws -> Tensor { try a.applying(.addScalar(b)) }
    public static func - (a: Tensor, b: Float) throws -> Tensor { try a.applying(.addScalar(-b)) }
    public static func * (a: Tensor, b: Float) throws -> Tensor { try a.applying(.multiplyScalar(b)) }
    public static func / (a: Tensor, b: Float) throws -> Tensor {
        try a.combining(Tensor.full([], value: b, on: a.backend), .divide)
    }
    public static func + (a: Float, b: Tensor) throws -> Tensor { try b.applying(.addScalar(a)) }
    public static func * (a: Float, b: Tensor) throws -> Tensor { try b.applying(.multiplyScalar(a)) }
    public static func - (a: Float, b: Tensor) throws -> Tensor {
        try Tensor.full([], value: a, on: b.backend).combining(b, .subtract)
    }
    public static func / (a: Float, b: Tensor) throws -> Tensor {
        try Tensor.full([], value: a, on: b.backend).combining(b, .divide)
    }
}
