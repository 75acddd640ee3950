import KilnCore

/// AdaGrad (Duchi, Hazan & Singer 2011; PyTorch's `torch.optim.Adagrad`, same defaults).
///
/// g ← g + λθ; η_t = η / (1 + (t − 1)·lrDecay); r ← r + g²; θ ← θ − η_t·g / (√r + ε).
/// ε sits outside the root, as PyTorch and seeds 000/002 (seed 003 puts it inside).
public final class AdaGrad: FusedOptimizer {
    public let learningRateDecay: Double
    public let weightDecay: Double
    public let initialAccumulatorValue: Double
    public let epsilon: Double
    public let maximize: Bool

    public init(_ parameters: [Parameter], learningRate: Double = 1e-2, learningRateDecay: Double = 0,
                weightDecay: Double = 0, initialAccumulatorValue: Double = 0, epsilon: Double = 1e-10,
                maximize: Bool = false) throws {
        try checkHyperparameter("AdaGrad", "learning rate decay", learningRateDecay, atLeast: 0)
        try checkHyperparameter("AdaGrad", "weight decay", weightDecay, atLeast: 0)
        try checkHyperparameter("AdaGrad", "initial accumulator value", initialAccumulatorValue, atLeast: 0)
        try checkHyperparameter("AdaGrad", "epsilon", epsilon, atLeast: 0)
        self.learningRateDecay = learningRateDecay
        self.weightDecay = weightDecay
        self.initialAccumulatorValue = initialAccumulatorValue
        self.epsilon = epsilon
        self.maximize = maximize
        try super.init("AdaGrad", parameters: parameters, learningRate: learningRate, stateNames: ["sum"])
    }

    override func initialState(_ index: Int) throws -> [Tensor] {
        let p = parameters[index].value
        return [try Tensor.full(p.shape, value: Float(initialAccumulatorValue), on: p.backend)]
    }

    override func update(_ index: Int, step t: Int) throws -> FusedUpdate {
        let lr = learningRate / (1 + Double(t - 1) * learningRateDecay)
        return FusedUpdate(.adagrad, gradientSign: maximize ? -1 : 1, l2: Float(weightDecay), [Float(lr), Float(epsilon)])
    }
}

/// RMSProp (Hinton's lecture 6e; PyTorch's `torch.optim.RMSprop`, same defaults).
///
/// g ← g + λθ; r ← αr + (1 − α)g²; centered: ḡ ← αḡ + (1 − α)g and a = √(r − ḡ²) + ε, else
/// a = √r + ε; with momentum μ: b ← μb + g/a, θ ← θ − ηb; else θ ← θ − ηg/a.
/// Seed 004's "RMSProp = Adam with β1 = 0" holds without bias correction.
public final class RMSProp: FusedOptimizer {
    public let alpha: Double
    public let epsilon: Double
    public let weightDecay: Double
    public let momentum: Double
    public let centered: Bool
    public let maximize: Bool

    public init(_ parameters: [Parameter], learningRate: Double = 1e-2, alpha: Double = 0.99, epsilon: Double = 1e-8,
                weightDecay: Double = 0, momentum: Double = 0, centered: Bool = false, maximize: Bool = false) throws {
        try checkHyperparameter("RMSProp", "alpha", alpha, atLeast: 0, atMost: 1)
        try checkHyperparameter("RMSProp", "epsilon", epsilon, atLeast: 0)
        try checkHyperparameter("RMSProp", "weight decay", weightDecay, atLeast: 0)
        try checkHyperparameter("RMSProp", "momentum", momentum, atLeast: 0)
        self.alpha = alpha
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.momentum = momentum
        self.centered = centered
        self.maximize = maximize
        // The kernel's state slots are fixed: s0 square average, s1 gradient average, s2 momentum.
        let names = momentum > 0 ? ["square_avg", "grad_avg", "momentum_buffer"] : centered ? ["square_avg", "grad_avg"] : ["square_avg"]
        try super.init("RMSProp", parameters: parameters, learningRate: learningRate, stateNames: names)
    }

    override func update(_ index: Int, step t: Int) throws -> FusedUpdate {
        FusedUpdate(.rmsprop, gradientSign: maximize ? -1 : 1, l2: Float(weightDecay),
                    [Float(learningRate), Float(alpha), Float(epsilon), Float(momentum), centered ? 1 : 0])
    }
}

/// Adadelta (Zeiler 2012; PyTorch's `torch.optim.Adadelta`, same defaults).
///
/// g ← g + λθ; E[g²] ← ρE[g²] + (1 − ρ)g²; Δ = √(E[Δ²] + ε)/√(E[g²] + ε)·g;
/// E[Δ²] ← ρE[Δ²] + (1 − ρ)Δ²; θ ← θ − ηΔ.
public final class Adadelta: FusedOptimizer {
    public let rho: Double
    public let epsilon: Double
    public let weightDecay: Double
    public let maximize: Bool

    public init(_ parameters: [Parameter], learningRate: Double = 1.0, rho: Double = 0.9, epsilon: Double = 1e-6,
                weightDecay: Double = 0, maximize: Bool = false) throws {
        try checkHyperparameter("Adadelta", "rho", rho, atLeast: 0, atMost: 1)
        try checkHyperparameter("Adadelta", "epsilon", epsilon, atLeast: 0)
        try checkHyperparameter("Adadelta", "weight decay", weightDecay, atLeast: 0)
        self.rho = rho
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.maximize = maximize
        try super.init("Adadelta", parameters: parameters, learningRate: learningRate, stateNames: ["square_avg", "acc_delta"])
    }

    override func update(_ index: Int, step t: Int) throws -> FusedUpdate {
        FusedUpdate(.adadelta, gradientSign: maximize ? -1 : 1, l2: Float(weightDecay),
                    [Float(learningRate), Float(rho), Float(epsilon)])
    }
}

/// MADGRAD (Defazio & Jelassi 2021), as in the authors' PyTorch code: λ_t = η√t;
/// s ← s + λ_t g; ν ← ν + λ_t g²; z = θ₀ − s/(∛ν + ε); θ ← (1 − c)θ + cz with c = 1 − momentum
/// (θ = z without momentum). g ← g + λθ first (coupled weight decay).
public final class MADGRAD: FusedOptimizer {
    public let momentum: Double
    public let weightDecay: Double
    public let epsilon: Double

    public init(_ parameters: [Parameter], learningRate: Double = 1e-2, momentum: Double = 0.9,
                weightDecay: Double = 0, epsilon: Double = 1e-6) throws {
        try checkHyperparameter("MADGRAD", "momentum", momentum, atLeast: 0, below: 1)
        try checkHyperparameter("MADGRAD", "weight decay", weightDecay, atLeast: 0)
        try checkHyperparameter("MADGRAD", "epsilon", epsilon, atLeast: 0)
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.epsilon = epsilon
        try super.init("MADGRAD", parameters: parameters, learningRate: learningRate, stateNames: ["x0", "s", "grad_sum_sq"])
    }

    override func initialState(_ index: Int) throws -> [Tensor] {
        let p = parameters[index].value
        return [try p.cloned(), try Tensor.zeros(p.shape, on: p.backend), try Tensor.zeros(p.shape, on: p.backend)]
    }

    override func update(_ index: Int, step t: Int) throws -> FusedUpdate {
        let lambda = learningRate * Double(t).squareRoot()
        return FusedUpdate(.madgrad, l2: Float(weightDecay),
                           [Float(lambda), Float(epsilon), Float(1 - momentum), momentum != 0 ? 1 : 0])
    }
}

/// FTRL-Proximal (McMahan et al. 2013, "Ad click prediction: a view from the trenches",
/// Algorithm 1) with per-coordinate learning rates:
/// σ = (√(n + g²) − √n)/α; z ← z + g − σθ; n ← n + g²;
/// θ = 0 if |z| ≤ λ1, else −(z − sign(z)λ1) / ((β + √n)/α + λ2). `learningRate` is α.
///
/// The catalogue's arg-min form is this closed-form per-coordinate solution.
public final class FTRL: FusedOptimizer {
    public let beta: Double
    public let l1: Double
    public let l2: Double

    public init(_ parameters: [Parameter], learningRate: Double = 0.1, beta: Double = 1, l1: Double = 0,
                l2: Double = 0) throws {
        try checkHyperparameter("FTRL", "beta", beta, atLeast: 0)
        try checkHyperparameter("FTRL", "l1", l1, atLeast: 0)
        try checkHyperparameter("FTRL", "l2", l2, atLeast: 0)
        self.beta = beta
        self.l1 = l1
        self.l2 = l2
        try super.init("FTRL", parameters: parameters, learningRate: learningRate, stateNames: ["z", "n"])
    }

    override func update(_ index: Int, step t: Int) throws -> FusedUpdate {
        guard learningRate > 0 else {
            throw TensorError(.invalidArgument, op: "FTRL", "the learning rate α must be > 0, got \(learningRate)")
        }
        return FusedUpdate(.ftrl, [Float(learningRate), Float(beta), Float(l1), Float(l2)])
    }
}
