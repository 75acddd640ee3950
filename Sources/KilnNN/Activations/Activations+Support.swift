import KilnCore

// Shared helpers of the activation functions and layers: hyperparameter validation, constants on
// a tensor's backend, PyTorch's open-interval clamp, channel broadcasting and a Linear-style projection.

/// Throws unless `value` is finite, naming the op and the hyperparameter.
func requireFinite(_ value: Float, _ name: String, op: String) throws {
    guard value.isFinite else {
        throw TensorError(.invalidArgument, op: op, "\(name) must be finite, got \(value)")
    }
}

/// Throws unless `value` is finite and > 0 (or ≥ 0 with `allowZero`).
func requirePositive(_ value: Float, _ name: String, op: String, allowZero: Bool = false) throws {
    guard value.isFinite, allowZero ? value >= 0 : value > 0 else {
        throw TensorError(.invalidArgument, op: op,
                          "\(name) must be finite and \(allowZero ? "≥ 0" : "> 0"), got \(value)")
    }
}

/// A rank-0 constant on `x`'s backend.
func constant(_ value: Float, like x: Tensor) throws -> Tensor {
    try Tensor.full([], value: value, on: x.backend)
}

/// min(max(x, lower), upper) with PyTorch's `hardtanh` gradient: 1 strictly inside (lower, upper),
/// 0 on and outside the bounds (`clamp` itself passes the gradient on the bounds).
func clampOpen(_ x: Tensor, lower: Float, upper: Float) throws -> Tensor {
    let lo = try constant(lower, like: x), hi = try constant(upper, like: x)
    let upperCut: Tensor = try Tensor.selecting(x.greaterEqual(hi), hi, x)
    return try Tensor.selecting(x.lessEqual(lo), lo, upperCut)
}

/// Resolves `axis` against `x`'s rank, throwing `badAxis` naming `op`.
func resolvedAxis(_ axis: Int, of x: Tensor, op: String) throws -> Int {
    let a = axis < 0 ? axis + x.rank : axis
    guard a >= 0, a < x.rank else {
        throw TensorError(.badAxis, op: op, "axis \(axis) is out of range for a rank-\(x.rank) tensor")
    }
    return a
}

/// A per-channel parameter `[C]` (or one value `[1]`) reshaped to broadcast along axis 1 of `x`
/// (`[1, C, 1, …]`), PyTorch's channel convention for PReLU; a rank-0/1 input has no channel axis.
func channelBroadcast(_ p: Tensor, to x: Tensor, op: String) throws -> Tensor {
    if p.count == 1 { return try p.reshaped(to: []) }
    guard x.rank >= 2, p.rank == 1, x.shape[1] == p.count else {
        throw TensorError(.shapeMismatch, op: op,
                          "a parameter of shape \(p.shape) needs an input with \(p.count) channels on axis 1, got \(x.shape)")
    }
    var s = [Int](repeating: 1, count: x.rank)
    s[1] = p.count
    return try p.reshaped(to: s)
}

/// x·Wᵀ + b over the last axis, as `torch.nn.functional.linear`. `[…, in] → […, out]`.
func affine(_ x: Tensor, weight: Tensor, bias: Tensor?, op: String) throws -> Tensor {
    guard x.rank >= 1, weight.rank == 2, x.shape[x.rank - 1] == weight.shape[1] else {
        throw TensorError(.shapeMismatch, op: op,
                          "input \(x.shape) does not fit a weight of shape \(weight.shape) (needs last axis \(weight.shape.last ?? 0))")
    }
    let y: Tensor = try matmul(x, weight, transposeB: true)
    guard let bias else { return y }
    return try y + bias
}

/// A Linear-style projection (`weight [out, in]`, `bias [out]`) initialised as PyTorch's
/// `nn.Linear`: both from U(−1/√in, 1/√in). Internal: the gated, maxout and DyReLU layers hold it
/// as a child so their checkpoint names read `gate.weight`, `gate.bias`, …
final class AffineProjection: Module {
    var isTraining = true
    let weight: Parameter
    let bias: Parameter?

    init(inputSize: Int, outputSize: Int, bias hasBias: Bool, seed: UInt64, on backend: any Backend, op: String) throws {
        guard inputSize > 0, outputSize > 0 else {
            throw TensorError(.invalidArgument, op: op,
                              "inputSize and outputSize must be positive, got \(inputSize) and \(outputSize)")
        }
        let bound = 1 / Float(inputSize).squareRoot()
        weight = Parameter(try Tensor.uniform([outputSize, inputSize], low: -bound, high: bound, seed: seed, on: backend))
        bias = hasBias
            ? Parameter(try Tensor.uniform([outputSize], low: -bound, high: bound, seed: seed &+ 1, on: backend)) : nil
    }

    var ownParameters: [(name: String, parameter: Parameter)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    func callAsFunction(_ input: Tensor) throws -> Tensor {
        try affine(input, weight: weight.value, bias: bias?.value, op: "linear")
    }
}
