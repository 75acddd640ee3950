import Foundation
import KilnCore

/// Apollo (Ma 2020, "Apollo: An Adaptive Parameter-wise Diagonal Quasi-Newton Method for
/// Nonconvex Stochastic Optimization"), as the author's PyTorch code (`optim/apollo.py`).
///
/// Per parameter, with step t (from 1), gradient g (plus λθ for L2 weight decay), the
/// bias-corrected gradient average m, the diagonal Hessian approximation B and the previous
/// update direction d (all zero at first):
///
///     α   = (1 − β)/(1 − βᵗ)
///     Δg  = g − m;   m ← m + α·Δg                      (so Δm = α·Δg; m is bias-corrected)
///     κ   = ‖d‖₄ + ε'                                  (ε' = ε/σ for the constant rebound, ε for belief)
///     B  ← B − (dᵀΔm + dᵀB d)/κ⁴ · d²                  (the weak secant condition, diagonal update)
///     D   = max(|B|, σ)                                 (constant rebound σ, the paper's rectification)
///         | max(|B|, ‖Δg‖∞) + ε/α                       (belief rebound)
///     d  ← m / D  (+ λθ or λ/mean(D)·θ for decoupled or stable weight decay)
///     θ  ← θ − ηₜ·d,   ηₜ = η₀ + (η − η₀)·(t − 1)/warmup for t ≤ warmup, else η
///
/// The seed (000) writes Apollo as θ −= η(αₜ + ‖gₜ‖²)⁻¹gₜ, a scalar simplification; Kiln follows
/// the published algorithm above. As the official code, κ divides d before squaring, so the
/// secant denominator is (‖d‖₄ + ε')⁴ ≈ ‖d‖₄⁴ (the paper writes ‖d‖₄⁴ + ε), and the constant
/// rebound uses ε' = ε/σ. σ = 0.01 is the paper's value (later revisions of the code use 1).
///
/// State (the official names): `"<i>.exp_avg_grad"` (m), `"<i>.approx_hessian"` (B),
/// `"<i>.update"` (d); scalars `"step"`, `"lr"`. One step counter serves all parameters;
/// parameters without a gradient are skipped. Three or four scalars per parameter and step are
/// read back to the host (‖d‖₄, the two secant sums, ‖Δg‖∞ for belief).
public final class Apollo: Optimizer {
    /// How the Hessian approximation is rectified.
    public enum Rebound: Sendable, Equatable {
        /// D = max(|B|, σ).
        case constant(Double)
        /// D = max(|B|, ‖Δg‖∞) + ε/α, scale-invariant.
        case belief
    }

    /// How weight decay λ enters.
    public enum WeightDecayMode: Sendable, Equatable {
        /// g ← g + λθ before the update (the official default for the constant rebound).
        case l2
        /// d ← d + λθ after preconditioning (the official default for belief).
        case decoupled
        /// d ← d + λ/mean(D)·θ.
        case stable
    }

    public let parameters: [Parameter]
    /// η after warmup.
    public var learningRate: Double
    /// β, the gradient averaging coefficient (default 0.9).
    public let beta: Double
    /// ε (default 1e-4).
    public let epsilon: Double
    public let rebound: Rebound
    /// Steps of linear warmup from `initialLearningRate` to `learningRate` (default 0).
    public let warmup: Int
    /// η₀, the learning rate at step 1 when `warmup` > 0.
    public let initialLearningRate: Double
    /// λ.
    public let weightDecay: Double
    public let weightDecayMode: WeightDecayMode
    public private(set) var stepCount = 0

    private var average: [Tensor?]
    private var hessian: [Tensor?]
    private var direction: [Tensor?]

    /// - Parameters:
    ///   - weightDecayMode: nil picks the official default (`.l2` for a constant rebound,
    ///     `.decoupled` for belief).
    /// - Throws: `TensorError(.invalidArgument)` for an empty parameter list, a negative or NaN
    ///   value, β outside [0, 1), σ ≤ 0, or `initialLearningRate` above `learningRate` with warmup.
    public init(parameters: [Parameter], learningRate: Double = 1e-2, beta: Double = 0.9, epsilon: Double = 1e-4,
                rebound: Rebound = .constant(0.01), warmup: Int = 0, initialLearningRate: Double = 1e-2,
                weightDecay: Double = 0, weightDecayMode: WeightDecayMode? = nil) throws {
        let check = SecondOrderCheck(op: "Apollo")
        try check.parameters(parameters)
        try check.nonNegative("learningRate", learningRate)
        try check.inRange("beta", beta, 0, 1)
        try check.nonNegative("epsilon", epsilon)
        if case .constant(let sigma) = rebound { try check.positive("rebound σ", sigma) }
        try check.atLeast("warmup", warmup, 0)
        try check.nonNegative("initialLearningRate", initialLearningRate)
        if warmup > 0 && initialLearningRate > learningRate {
            throw TensorError(.invalidArgument, op: "Apollo",
                              "initialLearningRate \(initialLearningRate) must be ≤ learningRate \(learningRate)")
        }
        try check.nonNegative("weightDecay", weightDecay)
        self.parameters = parameters
        self.learningRate = learningRate
        self.beta = beta
        self.epsilon = epsilon
        self.rebound = rebound
        self.warmup = warmup
        self.initialLearningRate = initialLearningRate
        self.weightDecay = weightDecay
        self.weightDecayMode = weightDecayMode ?? (rebound == .belief ? .decoupled : .l2)
        average = Array(repeating: nil, count: parameters.count)
        hessian = average
        direction = average
    }

    /// ηₜ for the step about to be taken (`stepCount` steps done so far).
    var currentLearningRate: Double {
        stepCount < warmup
            ? (learningRate - initialLearningRate) * Double(stepCount) / Double(warmup) + initialLearningRate
            : learningRate
    }

    /// One Apollo step for every parameter with a gradient.
    public func step() throws {
        let lr = currentLearningRate
        stepCount += 1
        let alpha = (1 - beta) / (1 - Foundation.pow(beta, Double(stepCount)))
        try withoutGradients {
            for (i, p) in parameters.enumerated() {
                guard let rawGradient = p.gradient, p.value.count > 0 else { continue }
                let b = p.value.backend
                let theta = p.value.detached()
                var g = rawGradient.detached()
                if weightDecay != 0 && weightDecayMode == .l2 { g = try g + theta * Float(weightDecay) }
                let m0 = try average[i] ?? Tensor.zeros(p.shape, on: b)
                let hessian0 = try hessian[i] ?? Tensor.zeros(p.shape, on: b)
                let d0 = try direction[i] ?? Tensor.zeros(p.shape, on: b)

                let deltaGradient: Tensor = try g - m0
                let bound: Double, eps: Double
                switch rebound {
                case .constant(let sigma): (bound, eps) = (sigma, epsilon / sigma)
                case .belief: (bound, eps) = (Double(try abs(deltaGradient).max().item()), epsilon)
                }
                let m: Tensor = try m0 + deltaGradient * Float(alpha)

                let norm4 = Foundation.pow(Double(try pow(d0, 4).sum().item()), 0.25)
                let kappa = norm4 + eps
                let dn: Tensor = try d0 / Float(kappa)
                let vSquared: Tensor = try square(dn)
                let secant = Double(try (deltaGradient * dn).sum().item()) / kappa
                let curvature = Double(try (hessian0 * vSquared).sum().item())
                let correction = -alpha * secant - curvature
                let newHessian: Tensor = try hessian0 + vSquared * Float(correction)

                let denominator: Tensor
                switch rebound {
                case .constant: denominator = try clamp(abs(newHessian), min: Float(bound))
                case .belief: denominator = try clamp(abs(newHessian), min: Float(bound)) + Float(epsilon / alpha)
                }
                var d: Tensor = try m / denominator
                if weightDecay != 0 && weightDecayMode != .l2 {
                    let lambda = weightDecayMode == .stable
                        ? weightDecay / Double(try denominator.mean().item()) : weightDecay
                    d = try d + theta * Float(lambda)
                }
                let stepTensor: Tensor = try d * Float(lr)
                try p.assign(try theta - stepTensor, keepingGradient: true)
                average[i] = m
                hessian[i] = newHessian
                direction[i] = d
            }
        }
    }

    public func stateDictionary() throws -> OptimizerState {
        var state = OptimizerState(scalars: ["step": Double(stepCount), "lr": learningRate])
        for i in parameters.indices {
            if let m = average[i] { state.tensors["\(i).exp_avg_grad"] = try m.cloned() }
            if let h = hessian[i] { state.tensors["\(i).approx_hessian"] = try h.cloned() }
            if let d = direction[i] { state.tensors["\(i).update"] = try d.cloned() }
        }
        return state
    }

    /// Restores `stateDictionary()` output; a parameter's three tensors are all present or all absent.
    public func loadStateDictionary(_ state: OptimizerState) throws {
        let reader = OptimizerStateReader(op: "Apollo", state: state)
        let step = try reader.count("step")
        let lr = try reader.learningRate(default: learningRate)
        var averages = average, hessians = hessian, directions = direction
        let names = ["exp_avg_grad", "approx_hessian", "update"]
        for (i, p) in parameters.enumerated() {
            let present = names.map { reader.hasTensor("\(i).\($0)") }
            guard present.allSatisfy({ $0 == present[0] }) else {
                throw TensorError(.invalidArgument, op: "Apollo",
                                  "state for parameter \(i) must hold all or none of \(names)")
            }
            let loaded = try names.map { present[0] ? try reader.tensor("\(i).\($0)", shape: p.shape, on: p.value.backend) : nil }
            (averages[i], hessians[i], directions[i]) = (loaded[0], loaded[1], loaded[2])
        }
        stepCount = step
        learningRate = lr
        average = averages
        hessian = hessians
        direction = directions
    }
}
