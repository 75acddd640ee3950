import KilnCore

// Gated units (GLU family), the softmax family beyond KilnCore's `softmax`, and the activations
// whose coefficients come from the input (FReLU, DyReLU).

/// Which activation gates a gated linear unit: value ⊙ act(gate).
public enum GateActivation: String, Sendable {
    /// GLU: σ(gate).
    case sigmoid
    /// ReGLU: max(0, gate).
    case relu
    /// GeGLU: GELU(gate), the exact erf form.
    case gelu
    /// SwiGLU: Swish₁(gate) = gate·σ(gate).
    case swish

    func apply(_ x: Tensor) throws -> Tensor {
        switch self {
        case .sigmoid: return try KilnCore.sigmoid(x)
        case .relu: return try KilnCore.relu(x)
        case .gelu: return try KilnCore.gelu(x)
        case .swish: return try KilnCore.silu(x)
        }
    }
}

/// value ⊙ act(gate), where value and gate are the first and second halves of `axis`, as
/// `torch.nn.functional.glu` (`[…, 2n, …] → […, n, …]`).
func gatedHalves(_ x: Tensor, axis: Int, _ activation: GateActivation, op: String) throws -> Tensor {
    let a = try resolvedAxis(axis, of: x, op: op)
    guard x.shape[a] % 2 == 0 else {
        throw TensorError(.shapeMismatch, op: op, "axis \(axis) of \(x.shape) must have an even size to halve")
    }
    let halves = try x.split(sizes: [x.shape[a] / 2, x.shape[a] / 2], axis: a)
    return try halves[0] * activation.apply(halves[1])
}

/// GLU: a ⊙ σ(b), with a, b the halves of `axis`, as `torch.nn.functional.glu` (axis −1).
/// The seed's σ(xW + b) ⊙ (xV + c) is this applied to the concatenated projections; see
/// `GatedLinearUnit` for the layer.
/// - Throws: `TensorError` naming `glu` for a bad axis or an odd size.
public func glu(_ x: Tensor, axis: Int = -1) throws -> Tensor { try gatedHalves(x, axis: axis, .sigmoid, op: "glu") }

/// ReGLU (Shazeer 2020): a ⊙ max(0, b), halves as `glu`.
public func reglu(_ x: Tensor, axis: Int = -1) throws -> Tensor { try gatedHalves(x, axis: axis, .relu, op: "reglu") }

/// GeGLU (Shazeer 2020): a ⊙ GELU(b) (erf form), halves as `glu`.
public func geglu(_ x: Tensor, axis: Int = -1) throws -> Tensor { try gatedHalves(x, axis: axis, .gelu, op: "geglu") }

/// SwiGLU (Shazeer 2020): a ⊙ Swish₁(b) = a ⊙ b·σ(b), halves as `glu`.
public func swiglu(_ x: Tensor, axis: Int = -1) throws -> Tensor { try gatedHalves(x, axis: axis, .swish, op: "swiglu") }

/// Softmin: softmin(x)ᵢ = e^(−xᵢ)/Σⱼ e^(−xⱼ) = softmax(−x) along `axis`, as `torch.nn.functional.softmin`.
public func softmin(_ x: Tensor, axis: Int = -1) throws -> Tensor { try softmax(-x, axis: axis) }

/// Sparsemax (Martins & Astudillo 2016): argmin over the simplex of ‖p − z‖², = max(z − τ, 0) along
/// `axis`, with τ = (Σ_{j∈S} zⱼ − 1)/|S| over the support S = {j : 1 + kⱼzⱼ > Σ_{i: zᵢ ≥ zⱼ} zᵢ},
/// kⱼ = |{i : zᵢ ≥ zⱼ}|.
///
/// Sort-free: the support test compares every pair of a row (`[…, n, n]` temporaries, O(n²) work
/// and memory per row), all in device ops. The gradient flows through τ with S held fixed, which is
/// the sparsemax Jacobian diag(s) − ssᵀ/|S|.
/// - Throws: `TensorError.badAxis` naming `sparsemax` for an axis out of range.
public func sparsemax(_ x: Tensor, axis: Int = -1) throws -> Tensor {
    let a = try resolvedAxis(axis, of: x, op: "sparsemax")
    let last = x.rank - 1
    let z: Tensor = a == last ? x : try x.transposed(a, last)
    let zc = z.detached()
    let zi: Tensor = try zc.unsqueezed(axis: -1)        // […, n(i), 1]
    let zj: Tensor = try zc.unsqueezed(axis: -2)        // […, 1, n(j)]
    let atLeast: Tensor = try zi.greaterEqual(zj)       // zᵢ ≥ zⱼ
    let k: Tensor = try atLeast.sum(alongAxes: [-2])
    let s: Tensor = try (atLeast * zi).sum(alongAxes: [-2])
    let support: Tensor = try (k * zc + 1).greater(s)
    let size: Tensor = try support.sum(alongAxes: [-1], keepingDimensions: true)
    let total: Tensor = try (support * z).sum(alongAxes: [-1], keepingDimensions: true)
    let tau: Tensor = try (total - 1) / size
    let p: Tensor = try relu(z - tau)
    return a == last ? p : try p.transposed(a, last)
}

/// Dynamic ReLU (Chen et al. 2020): f(x) = maxₖ (aₖ·x + bₖ) with per-sample, per-channel coefficients.
/// - Parameters:
///   - x: `[N, C, …]`.
///   - slopes, intercepts: `[N, C, K]` (`DyReLU` computes them from x with its hypernetwork).
/// - Throws: `TensorError.shapeMismatch` naming `dynamicReLU` for shapes that do not fit.
public func dynamicReLU(_ x: Tensor, slopes: Tensor, intercepts: Tensor) throws -> Tensor {
    guard x.rank >= 2, slopes.rank == 3, slopes.shape == intercepts.shape,
          slopes.shape[0] == x.shape[0], slopes.shape[1] == x.shape[1] else {
        throw TensorError(.shapeMismatch, op: "dynamicReLU",
                          "needs x [N, C, …] and slopes, intercepts [N, C, K]; got \(x.shape), \(slopes.shape), \(intercepts.shape)")
    }
    // Coefficients to [N, C, 1, …, 1, K]; x to [N, C, …, 1].
    let shape = Array(slopes.shape.prefix(2)) + [Int](repeating: 1, count: x.rank - 2) + [slopes.shape[2]]
    let a = try slopes.reshaped(to: shape), b = try intercepts.reshaped(to: shape)
    let lines: Tensor = try a * x.unsqueezed(axis: -1) + b
    return try lines.max(alongAxes: [-1])
}

/// FReLU (funnel ReLU, Ma et al. 2020): f(x) = max(x, T(x)), T(x) the depthwise k×k convolution
/// (stride 1, "same" padding) of x with `weight [C, 1, k, k]` and `bias [C]`.
///
/// The paper's T is the depthwise convolution followed by BatchNorm; Kiln's T is the convolution
/// alone (put a BatchNorm layer in T's place if wanted): simpler, and documented here.
/// - Throws: `TensorError` naming `conv2d` for shapes that do not fit.
public func funnelReLU(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
    guard x.rank == 4, weight.rank == 4, weight.shape[0] == x.shape[1], weight.shape[1] == 1 else {
        throw TensorError(.shapeMismatch, op: "funnelReLU",
                          "needs x [N, C, H, W] and weight [C, 1, k, k]; got \(x.shape) and \(weight.shape)")
    }
    let t: Tensor = try conv2d(x, weight: weight, bias: bias, padding: .same, groups: x.shape[1])
    return try maximum(x, t)
}
