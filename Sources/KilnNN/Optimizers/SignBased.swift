import KilnCore

/// Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"):
/// θ ← (1 − ηλ)θ − η·sign(β1m + (1 − β1)g); m ← β2m + (1 − β2)g.
///
/// Seed 000's Lion (m ← β1m + (1 − β1)sign(g), θ −= ηm) is a simplification; this is the
/// published algorithm with its defaults (η 1e-4, β (0.9, 0.99), decoupled weight decay).
public final class Lion: FusedOptimizer {
    public let betas: (Double, Double)
    public let weightDecay: Double
    public let maximize: Bool

    public init(_ parameters: [Parameter], learningRate: Double = 1e-4, betas: (Double, Double) = (0.9, 0.99),
                weightDecay: Double = 0, maximize: Bool = false) throws {
        try checkMoments("Lion", betas, epsilon: 0, weightDecay: weightDecay)
        self.betas = betas
        self.weightDecay = weightDecay
        self.maximize = maximize
        try super.init("Lion", parameters: parameters, learningRate: learningRate, stateNames: ["exp_avg"])
    }

    override func update(_ index: Int, step t: Int) throws -> FusedUpdate {
        FusedUpdate(.lion, gradientSign: maximize ? -1 : 1, decay: Float(1 - learningRate * weightDecay),
                    [Float(learningRate), Float(betas.0), Float(betas.1)])
    }
}

/// Sophia, the SophiaG variant of Liu et al. 2024 ("Sophia: A Scalable Stochastic Second-order
/// Optimizer"), as in the authors' code: m ← β1m + (1 − β1)g;
/// θ ← (1 − ηλ)θ − η·sign(m)·min(|m| / (ρ·B·h + ε), 1), where h is an EMA of a diagonal Hessian
/// estimate refreshed by `updateHessian()` every k steps (the paper uses k = 10).
///
/// Seed 000 divides by h + ε without the clip; the published algorithm clips per coordinate.
/// `updateHessian()` takes the Gauss–Newton–Bartlett estimate: call it after a backward pass of
/// the loss on labels *sampled from the model's own predictions*; it sets h ← β2h + (1 − β2)g⊙g.
/// `batchSize` is B (the number of examples or tokens behind that estimate).
public final class Sophia: FusedOptimizer {
    public let betas: (Double, Double)
    public let rho: Double
    public let weightDecay: Double
    public let epsilon: Double
    /// B in the clipped ratio; set it to the examples (tokens) per batch.
    public var batchSize: Int

    public init(_ parameters: [Parameter], learningRate: Double = 1e-4, betas: (Double, Double) = (0.965, 0.99),
                rho: Double = 0.04, weightDecay: Double = 0.1, epsilon: Double = 1e-15, batchSize: Int = 1) throws {
        try checkMoments("Sophia", betas, epsilon: epsilon, weightDecay: weightDecay)
        try checkHyperparameter("Sophia", "rho", rho, atLeast: 0)
        guard batchSize > 0 else {
            throw TensorError(.invalidArgument, op: "Sophia", "batch size must be > 0, got \(batchSize)")
        }
        self.betas = betas
        self.rho = rho
        self.weightDecay = weightDecay
        self.epsilon = epsilon
        self.batchSize = batchSize
        try super.init("Sophia", parameters: parameters, learningRate: learningRate, stateNames: ["exp_avg", "hessian"])
    }

    override func update(_ index: Int, step t: Int) throws -> FusedUpdate {
        FusedUpdate(.sophia, decay: Float(1 - learningRate * weightDecay),
                    [Float(learningRate), Float(betas.0), Float(rho * Double(batchSize)), Float(epsilon)])
    }

    /// h ← β2h + (1 − β2)·ĥ with ĥ = g⊙g from the parameters' current gradients (the
    /// Gauss–Newton–Bartlett estimator when the gradients come from sampled labels).
    public func updateHessian() throws {
        try updateHessian(estimates: parameters.map { p in try p.gradient.map { g in try g * g } })
    }

    /// h ← β2h + (1 − β2)·ĥ with caller-supplied diagonal estimates ĥ (e.g. Hutchinson's
    /// u⊙(Hu)), one per parameter, nil to skip a parameter.
    public func updateHessian(estimates: [Tensor?]) throws {
        guard estimates.count == parameters.count else {
            throw TensorError(.invalidArgument, op: "Sophia.updateHessian",
                              "needs one estimate per parameter (\(parameters.count)), got \(estimates.count)")
        }
        try withoutGradients {
            for (i, estimate) in estimates.enumerated() {
                guard let estimate else { continue }
                let state = try ensureState(i)
                _ = try Tensor.fusedOptimizerUpdate(FusedUpdate(.average, [Float(1 - betas.1)]),
                                                    parameter: estimate.detached(), gradient: estimate.detached(),
                                                    state: [state[1]])
            }
        }
    }
}
