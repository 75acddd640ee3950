import Foundation
import KilnCore

/// Validates Adam-style (β1, β2, ε, weight decay) hyperparameters for `op`.
func checkMoments(_ op: String, _ betas: (Double, Double), epsilon: Double, weightDecay: Double) throws {
    try checkHyperparameter(op, "beta1", betas.0, atLeast: 0, below: 1)
    try checkHyperparameter(op, "beta2", betas.1, atLeast: 0, below: 1)
    try checkHyperparameter(op, "epsilon", epsilon, atLeast: 0)
    try checkHyperparameter(op, "weight decay", weightDecay, atLeast: 0)
}

/// Adam (Kingma & Ba 2015), AdamW (Loshchilov & Hutter 2019) and AMSGrad (Reddi et al. 2018);
/// PyTorch's `torch.optim.Adam` / `AdamW`, same defaults.
///
/// m ← β1m + (1 − β1)g; v ← β2v + (1 − β2)g²; v̂ = v (AMSGrad: v̂ ← max(v̂, v));
/// θ ← θ − η/(1 − β1ᵗ) · m / (√v̂/√(1 − β2ᵗ) + ε).
/// Weight decay λ is L2 (g ← g + λθ) for Adam, decoupled (θ ← (1 − ηλ)θ first) for AdamW.
/// Seed 004's Adam has no bias correction and ε inside the root; this is the published Adam.
public class Adam: FusedOptimizer {
    public let betas: (Double, Double)
    public let epsilon: Double
    public let weightDecay: Double
    public let amsgrad: Bool
    public let maximize: Bool
    /// Whether weight decay is decoupled (AdamW).
    public let decoupledWeightDecay: Bool

    public convenience init(_ parameters: [Parameter], learningRate: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999),
                            epsilon: Double = 1e-8, weightDecay: Double = 0, amsgrad: Bool = false,
                            maximize: Bool = false) throws {
        try self.init("Adam", parameters, learningRate: learningRate, betas: betas, epsilon: epsilon, weightDecay: weightDecay,
                      amsgrad: amsgrad, maximize: maximize, decoupled: false)
    }

    init(_ name: String, _ parameters: [Parameter], learningRate: Double, betas: (Double, Double), epsilon: Double,
         weightDecay: Double, amsgrad: Bool, maximize: Bool, decoupled: Bool) throws {
        try checkMoments(name, betas, epsilon: epsilon, weightDecay: weightDecay)
        self.betas = betas
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.amsgrad = amsgrad
        self.maximize = maximize
        decoupledWeightDecay = decoupled
        try super.init(name, parameters: parameters, learningRate: learningRate,
                       stateNames: amsgrad ? ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"] : ["exp_avg", "exp_avg_sq"])
    }

    override func update(_ index: Int, step t: Int) throws -> FusedUpdate {
        let (b1, b2) = betas
        let bc1 = 1 - pow(b1, Double(t)), bc2 = 1 - pow(b2, Double(t))
        return FusedUpdate(.adam, gradientSign: maximize ? -1 : 1,
                           l2: decoupledWeightDecay ? 0 : Float(weightDecay),
                           decay: decoupledWeightDecay ? Float(1 - learningRate * weightDecay) : 1,
                           [Float(b1), Float(b2), Float(learningRate / bc1), Float(1 / bc2.squareRoot()),
                            Float(epsilon), amsgrad ? 1 : 0])
    }
}

/// AdamW: Adam with decoupled weight decay θ ← (1 − ηλ)θ (default λ = 0.01, as PyTorch).
public final class AdamW: Adam {
    public init(_ parameters: [Parameter], learningRate: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999),
                epsilon: Double = 1e-8, weightDecay: Double = 1e-2, amsgrad: Bool = false, maximize: Bool = false) throws {
        try super.init("AdamW", parameters, learningRate: learningRate, betas: betas, epsilon: epsilon,
                       weightDecay: weightDecay, amsgrad: amsgrad, maximize: maximize, decoupled: true)
    }
}

/// AdaMax (Kingma & Ba 2015, §7.1; PyTorch's `torch.optim.Adamax`, same defaults):
/// m ← β1m + (1 − β1)g; u ← max(β2u, |g| + ε); θ ← θ − η/(1 − β1ᵗ)·m/u. g ← g + λθ first.
public final class Adamax: FusedOptimizer {
    public let betas: (Double, Double)
    public let epsilon: Double
    public let weightDecay: Double
    public let maximize: Bool

    public init(_ parameters: [Parameter], learningRate: Double = 2e-3, betas: (Double, Double) = (0.9, 0.999),
                epsilon: Double = 1e-8, weightDecay: Double = 0, maximize: Bool = false) throws {
        try checkMoments("Adamax", betas, epsilon: epsilon, weightDecay: weightDecay)
        self.betas = betas
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.maximize = maximize
        try super.init("Adamax", parameters: parameters, learningRate: learningRate, stateNames: ["exp_avg", "exp_inf"])
    }

    override func update(_ index: Int, step t: Int) throws -> FusedUpdate {
        let bc1 = 1 - pow(betas.0, Double(t))
        return FusedUpdate(.adamax, gradientSign: maximize ? -1 : 1, l2: Float(weightDecay),
                           [Float(betas.0), Float(betas.1), Float(learningRate / bc1), Float(epsilon)])
    }
}

/// NAdam (Dozat 2016; PyTorch's `torch.optim.NAdam`, same defaults), with the momentum schedule
/// μ_t = β1(1 − ½·0.96^(tψ)) (ψ = momentum decay) and Π_t = μ_1⋯μ_t:
/// m, v as Adam; d = √(v/(1 − β2ᵗ)) + ε;
/// θ ← θ − η(1 − μ_t)/(1 − Π_t)·g/d − ημ_{t+1}/(1 − Π_t μ_{t+1})·m/d.
/// Seed 000's Nadam has no momentum schedule; this is the published algorithm.
public final class NAdam: FusedOptimizer {
    public let betas: (Double, Double)
    public let epsilon: Double
    public let weightDecay: Double
    public let momentumDecay: Double
    public let decoupledWeightDecay: Bool

    public init(_ parameters: [Parameter], learningRate: Double = 2e-3, betas: (Double, Double) = (0.9, 0.999),
                epsilon: Double = 1e-8, weightDecay: Double = 0, momentumDecay: Double = 4e-3,
                decoupledWeightDecay: Bool = false) throws {
        try checkMoments("NAdam", betas, epsilon: epsilon, weightDecay: weightDecay)
        try checkHyperparameter("NAdam", "momentum decay", momentumDecay, atLeast: 0)
        self.betas = betas
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.momentumDecay = momentumDecay
        self.decoupledWeightDecay = decoupledWeightDecay
        try super.init("NAdam", parameters: parameters, learningRate: learningRate, stateNames: ["exp_avg", "exp_avg_sq"])
    }

    /// μ_t of the momentum schedule.
    func mu(_ t: Int) -> Double { betas.0 * (1 - 0.5 * pow(0.96, Double(t) * momentumDecay)) }

    override func update(_ index: Int, step t: Int) throws -> FusedUpdate {
        var product = 1.0
        for k in 1...t { product *= mu(k) }
        let muNext = mu(t + 1)
        let bc2 = 1 - pow(betas.1, Double(t))
        let cg = learningRate * (1 - mu(t)) / (1 - product)
        let cm = learningRate * muNext / (1 - product * muNext)
        return FusedUpdate(.nadam, l2: decoupledWeightDecay ? 0 : Float(weightDecay),
                           decay: decoupledWeightDecay ? Float(1 - learningRate * weightDecay) : 1,
                           [Float(betas.0), Float(betas.1), Float(cg), Float(cm), Float(1 / bc2.squareRoot()), Float(epsilon)])
    }
}

/// RAdam (Liu et al. 2020; PyTorch's `torch.optim.RAdam`, same defaults): m, v as Adam;
/// ρ∞ = 2/(1 − β2) − 1, ρ_t = ρ∞ − 2tβ2ᵗ/(1 − β2ᵗ); when ρ_t > 5,
/// r_t = √((ρ_t − 4)(ρ_t − 2)ρ∞ / ((ρ∞ − 4)(ρ∞ − 2)ρ_t)) and
/// θ ← θ − η r_t · m/(1 − β1ᵗ) · √(1 − β2ᵗ)/(√v + ε); otherwise θ ← θ − η·m/(1 − β1ᵗ).
public final class RAdam: FusedOptimizer {
    public let betas: (Double, Double)
    public let epsilon: Double
    public let weightDecay: Double
    public let decoupledWeightDecay: Bool

    public init(_ parameters: [Parameter], learningRate: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999),
                epsilon: Double = 1e-8, weightDecay: Double = 0, decoupledWeightDecay: Bool = false) throws {
        try checkMoments("RAdam", betas, epsilon: epsilon, weightDecay: weightDecay)
        self.betas = betas
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.decoupledWeightDecay = decoupledWeightDecay
        try super.init("RAdam", parameters: parameters, learningRate: learningRate, stateNames: ["exp_avg", "exp_avg_sq"])
    }

    override func update(_ index: Int, step t: Int) throws -> FusedUpdate {
        let (b1, b2) = betas
        let bc1 = 1 - pow(b1, Double(t)), bc2 = 1 - pow(b2, Double(t))
        let rhoInf = 2 / (1 - b2) - 1
        let rho = rhoInf - 2 * Double(t) * pow(b2, Double(t)) / bc2
        let rectified = rho > 5
        let r = rectified ? ((rho - 4) * (rho - 2) * rhoInf / ((rhoInf - 4) * (rhoInf - 2) * rho)).squareRoot() : 1
        return FusedUpdate(.radam, l2: decoupledWeightDecay ? 0 : Float(weightDecay),
                           decay: decoupledWeightDecay ? Float(1 - learningRate * weightDecay) : 1,
                           [Float(b1), Float(b2), Float(learningRate * r / bc1), rectified ? 1 : 0,
                            Float(bc2.squareRoot()), Float(epsilon)])
    }
}

/// AdaBound / AMSBound (Luo et al. 2019), as in the authors' PyTorch code: m, v as Adam;
/// the final rate η* = finalLR·η/η₀ follows learning-rate changes; bounds
/// η*(1 − 1/(γt + 1)) ≤ η_t ≤ η*(1 + 1/(γt)); θ ← θ − clip(η√(1 − β2ᵗ)/(1 − β1ᵗ)/(√v̂ + ε))·m.
public final class AdaBound: FusedOptimizer {
    public let betas: (Double, Double)
    public let finalLearningRate: Double
    public let gamma: Double
    public let epsilon: Double
    public let weightDecay: Double
    public let amsbound: Bool
    /// The learning rate at construction (η₀).
    public let baseLearningRate: Double

    public init(_ parameters: [Parameter], learningRate: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999),
                finalLearningRate: Double = 0.1, gamma: Double = 1e-3, epsilon: Double = 1e-8,
                weightDecay: Double = 0, amsbound: Bool = false) throws {
        try checkMoments("AdaBound", betas, epsilon: epsilon, weightDecay: weightDecay)
        try checkHyperparameter("AdaBound", "final learning rate", finalLearningRate, atLeast: 0)
        try checkHyperparameter("AdaBound", "gamma", gamma, atLeast: 0, below: 1)
        guard learningRate > 0 else {
            throw TensorError(.invalidArgument, op: "AdaBound", "the learning rate must be > 0, got \(learningRate)")
        }
        self.betas = betas
        self.finalLearningRate = finalLearningRate
        self.gamma = gamma
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.amsbound = amsbound
        baseLearningRate = learningRate
        try super.init("AdaBound", parameters: parameters, learningRate: learningRate,
                       stateNames: amsbound ? ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"] : ["exp_avg", "exp_avg_sq"])
    }

    override func update(_ index: Int, step t: Int) throws -> FusedUpdate {
        let (b1, b2) = betas
        let bc1 = 1 - pow(b1, Double(t)), bc2 = 1 - pow(b2, Double(t))
        let final = finalLearningRate * learningRate / baseLearningRate
        let lower = final * (1 - 1 / (gamma * Double(t) + 1))
        let upper = final * (1 + 1 / (gamma * Double(t)))
        return FusedUpdate(.adabound, l2: Float(weightDecay),
                           [Float(b1), Float(b2), Float(learningRate * bc2.squareRoot() / bc1), Float(epsilon),
                            Float(lower), Float(upper), amsbound ? 1 : 0])
    }
}

/// LAMB (You et al. 2020, Algorithm 2): r = m̂/(√v̂ + ε) + λθ with bias-corrected moments, then a
/// layer-wise trust ratio: θ ← θ − η·(‖θ‖/‖r‖)·r (ratio 1 when either norm is 0).
///
/// Two passes per parameter: the fused kernel writes r and the moments, then the two norms (one
/// host read for both) scale the step.
public final class LAMB: FusedOptimizer {
    public let betas: (Double, Double)
    public let epsilon: Double
    public let weightDecay: Double

    public init(_ parameters: [Parameter], learningRate: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999),
                epsilon: Double = 1e-6, weightDecay: Double = 0) throws {
        try checkMoments("LAMB", betas, epsilon: epsilon, weightDecay: weightDecay)
        self.betas = betas
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        try super.init("LAMB", parameters: parameters, learningRate: learningRate, stateNames: ["exp_avg", "exp_avg_sq", "update"])
    }

    override func update(_ index: Int, step t: Int) throws -> FusedUpdate {
        let (b1, b2) = betas
        let bc1 = 1 - pow(b1, Double(t)), bc2 = 1 - pow(b2, Double(t))
        return FusedUpdate(.lambDirection, [Float(b1), Float(b2), Float(1 / bc1), Float(1 / bc2), Float(epsilon), Float(weightDecay)])
    }

    override func finish(_ index: Int, step t: Int, result: Tensor, state: [Tensor]) throws -> Tensor {
        let theta = parameters[index].value.detached(), r = state[2]
        let squares = try Tensor.concatenated([try (theta * theta).sum().reshaped(to: [1]),
                                               try (r * r).sum().reshaped(to: [1])], axis: 0).scalars()
        let thetaNorm = Double(squares[0]).squareRoot(), rNorm = Double(squares[1]).squareRoot()
        let trust = thetaNorm > 0 && rNorm > 0 ? thetaNorm / rNorm : 1
        let step: Tensor = try r * Float(learningRate * trust)
        return try theta - step
    }
}
