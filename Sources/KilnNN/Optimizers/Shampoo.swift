import Foundation
import KilnCore

/// Shampoo (Gupta, Koren & Singer 2018, Algorithm 1): a Kronecker-factored full-matrix AdaGrad.
///
/// A parameter of rank ≥ 2 is seen as the matrix G = g reshaped to `[dim0, rest]` (m × n):
///
///     L ← L + G·Gᵀ,   R ← R + Gᵀ·G           (L₀ = εIₘ, R₀ = εIₙ)
///     W ← W − η·L^(−1/4)·G·R^(−1/4)
///
/// Vectors and scalars use the diagonal form (AdaGrad without ε in the denominator):
/// H ← H + g² (H₀ = ε), w ← w − η·g/√H; so does a matrix with a side longer than
/// `maxPreconditionerDimension` (the scalable variants of Anil et al. 2020 likewise leave large
/// dimensions unpreconditioned). With weight decay λ, g ← g + λθ first (L2, as
/// `torch-optimizer`'s Shampoo). The seed (000) writes an exponential average βG + (1−β)ggᵀ and a
/// generic preconditioner P; Kiln follows the paper's sums and inverse fourth roots.
///
/// The statistics L, R accumulate on the backend (matmuls) every step. The inverse roots are
/// computed on the host in Float64 by a cyclic Jacobi eigendecomposition M = V·diag(λ)·Vᵀ,
/// M^(−1/4) = V·diag(max(λ, ε)^(−1/4))·Vᵀ (λ ≥ ε in exact arithmetic; round-off can make small
/// eigenvalues smaller), and uploaded as Float32. That costs O(m³ + n³) host work and an
/// m² + n² transfer, so it is recomputed every `updateFrequency` steps (at steps 1, 1 + k, …) and
/// the stale roots reused in between. Dimensions up to a few hundred are cheap, 1024 (the default
/// `maxPreconditionerDimension`) takes seconds per root; the large-scale variants (blocking,
/// grafting, momentum) are not implemented.
///
/// State: `"<i>.left"`, `"<i>.right"`, `"<i>.left_inverse_root"`, `"<i>.right_inverse_root"` for
/// matrices, `"<i>.diagonal"` for vectors; scalars `"step"`, `"lr"`.
public final class Shampoo: Optimizer {
    public let parameters: [Parameter]
    /// η (default 0.1, as `torch-optimizer`).
    public var learningRate: Double
    /// ε, the initial diagonal of L, R and H (default 1e-4).
    public let epsilon: Double
    /// Steps between recomputations of the inverse roots (default 1: every step).
    public let updateFrequency: Int
    /// λ, L2 weight decay.
    public let weightDecay: Double
    /// The longest side a matrix preconditioner may have; larger parameters use the diagonal form
    /// (default 1024).
    public let maxPreconditionerDimension: Int
    public private(set) var stepCount = 0

    private var left: [Tensor?]
    private var right: [Tensor?]
    private var leftRoot: [Tensor?]
    private var rightRoot: [Tensor?]
    private var diagonal: [Tensor?]

    /// - Throws: `TensorError(.invalidArgument)` for an empty parameter list, a negative or NaN
    ///   learning rate or weight decay, ε ≤ 0, or `updateFrequency` or `maxPreconditionerDimension` < 1.
    public init(parameters: [Parameter], learningRate: Double = 1e-1, epsilon: Double = 1e-4,
                updateFrequency: Int = 1, weightDecay: Double = 0, maxPreconditionerDimension: Int = 1024) throws {
        let check = SecondOrderCheck(op: "Shampoo")
        try check.parameters(parameters)
        try check.nonNegative("learningRate", learningRate)
        try check.positive("epsilon", epsilon)
        try check.atLeast("updateFrequency", updateFrequency, 1)
        try check.nonNegative("weightDecay", weightDecay)
        try check.atLeast("maxPreconditionerDimension", maxPreconditionerDimension, 1)
        self.parameters = parameters
        self.learningRate = learningRate
        self.epsilon = epsilon
        self.updateFrequency = updateFrequency
        self.weightDecay = weightDecay
        self.maxPreconditionerDimension = maxPreconditionerDimension
        left = Array(repeating: nil, count: parameters.count)
        right = left
        leftRoot = left
        rightRoot = left
        diagonal = left
    }

    /// `[rows, columns]` of the matrix view of a rank ≥ 2 shape; nil for vectors, scalars and
    /// matrices with a side above `maxPreconditionerDimension` (diagonal form).
    func matrixShape(_ shape: [Int]) -> (rows: Int, columns: Int)? {
        guard shape.count >= 2 else { return nil }
        let (m, n) = (shape[0], shape.dropFirst().reduce(1, *))
        return m <= maxPreconditionerDimension && n <= maxPreconditionerDimension ? (m, n) : nil
    }

    /// M^(−1/4) of a symmetric positive-definite `[n, n]` tensor, in Float64 on the host.
    func inverseFourthRoot(_ m: Tensor) throws -> Tensor {
        let n = m.shape[0]
        let values = try m.scalars().map(Double.init)
        let root = HostLinearAlgebra.symmetricPower(values, n: n, exponent: -0.25, floor: epsilon)
        return try Tensor(root.map(Float.init), shape: [n, n], on: m.backend)
    }

    /// One Shampoo step for every parameter with a gradient.
    public func step() throws {
        stepCount += 1
        let refresh = (stepCount - 1) % updateFrequency == 0
        try withoutGradients {
            for (i, p) in parameters.enumerated() {
                guard let rawGradient = p.gradient, p.value.count > 0 else { continue }
                let b = p.value.backend
                let theta = p.value.detached()
                var g = rawGradient.detached()
                if weightDecay != 0 { g = try g + theta * Float(weightDecay) }
                let update: Tensor
                if let (m, n) = matrixShape(p.shape) {
                    let gm = try g.reshaped(to: [m, n])
                    let l0 = try left[i] ?? Tensor.eye(m, on: b) * Float(epsilon)
                    let r0 = try right[i] ?? Tensor.eye(n, on: b) * Float(epsilon)
                    let l: Tensor = try l0 + matmul(gm, gm, transposeB: true)
                    let r: Tensor = try r0 + matmul(gm, gm, transposeA: true)
                    let lRoot = refresh || leftRoot[i] == nil ? try inverseFourthRoot(l) : leftRoot[i]!
                    let rRoot = refresh || rightRoot[i] == nil ? try inverseFourthRoot(r) : rightRoot[i]!
                    update = try matmul(matmul(lRoot, gm), rRoot).reshaped(to: p.shape)
                    (left[i], right[i], leftRoot[i], rightRoot[i]) = (l, r, lRoot, rRoot)
                } else {
                    let h0 = try diagonal[i] ?? Tensor.full(p.shape, value: Float(epsilon), on: b)
                    let h: Tensor = try h0 + square(g)
                    update = try g * rsqrt(h)
                    diagonal[i] = h
                }
                let scaled: Tensor = try update * Float(learningRate)
                try p.assign(try theta - scaled, keepingGradient: true)
            }
        }
    }

    public func stateDictionary() throws -> OptimizerState {
        var state = OptimizerState(scalars: ["step": Double(stepCount), "lr": learningRate])
        for i in parameters.indices {
            let named: [(String, Tensor?)] = [("left", left[i]), ("right", right[i]), ("left_inverse_root", leftRoot[i]),
                                              ("right_inverse_root", rightRoot[i]), ("diagonal", diagonal[i])]
            for case let (name, t?) in named { state.tensors["\(i).\(name)"] = try t.cloned() }
        }
        return state
    }

    /// Restores `stateDictionary()` output; a matrix parameter's four tensors are all present or
    /// all absent.
    public func loadStateDictionary(_ state: OptimizerState) throws {
        let reader = OptimizerStateReader(op: "Shampoo", state: state)
        let step = try reader.count("step")
        let lr = try reader.learningRate(default: learningRate)
        var l = left, r = right, lRoot = leftRoot, rRoot = rightRoot, h = diagonal
        for (i, p) in parameters.enumerated() {
            let b = p.value.backend
            if let (m, n) = matrixShape(p.shape) {
                let names = ["left", "right", "left_inverse_root", "right_inverse_root"]
                let present = names.map { reader.hasTensor("\(i).\($0)") }
                guard present.allSatisfy({ $0 == present[0] }) else {
                    throw TensorError(.invalidArgument, op: "Shampoo",
                                      "state for parameter \(i) must hold all or none of \(names)")
                }
                let shapes = [[m, m], [n, n], [m, m], [n, n]]
                let loaded = try zip(names, shapes).map { name, shape in
                    present[0] ? try reader.tensor("\(i).\(name)", shape: shape, on: b) : nil
                }
                (l[i], r[i], lRoot[i], rRoot[i]) = (loaded[0], loaded[1], loaded[2], loaded[3])
            } else {
                h[i] = reader.hasTensor("\(i).diagonal") ? try reader.tensor("\(i).diagonal", shape: p.shape, on: b) : nil
            }
        }
        stepCount = step
        learningRate = lr
        (left, right, leftRoot, rightRoot, diagonal) = (l, r, lRoot, rRoot, h)
    }
}
