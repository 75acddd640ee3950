import KilnCore

/// Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay
/// (PyTorch's `torch.optim.SGD`, same defaults).
///
/// g ← g + λθ; with momentum μ: b ← μb + (1 − dampening)g (b = g at the first step), and the
/// step direction is g + μb (Nesterov) or b; θ ← θ − η·direction. Plain SGD is θ ← θ − ηg.
/// This "heavy-ball" form is seed 000's `v = βv + ∇L, θ −= ηv`; seed 001's `(1 − β)` scaling is
/// `dampening = β`. Nesterov here is Sutskever's reformulation, which evaluates the gradient at θ
/// rather than at θ − βv and is equivalent up to a change of variables.
public final class SGD: FusedOptimizer {
    public let momentum: Double
    public let dampening: Double
    public let weightDecay: Double
    public let nesterov: Bool
    public let maximize: Bool

    public init(_ parameters: [Parameter], learningRate: Double = 1e-3, momentum: Double = 0, dampening: Double = 0,
                weightDecay: Double = 0, nesterov: Bool = false, maximize: Bool = false) throws {
        try checkHyperparameter("SGD", "momentum", momentum, atLeast: 0)
        try checkHyperparameter("SGD", "dampening", dampening, atLeast: 0, atMost: 1)
        try checkHyperparameter("SGD", "weight decay", weightDecay, atLeast: 0)
        if nesterov && (momentum <= 0 || dampening != 0) {
            throw TensorError(.invalidArgument, op: "SGD",
                              "Nesterov momentum requires momentum > 0 and dampening 0, got momentum \(momentum), dampening \(dampening)")
        }
        self.momentum = momentum
        self.dampening = dampening
        self.weightDecay = weightDecay
        self.nesterov = nesterov
        self.maximize = maximize
        try super.init("SGD", parameters: parameters, learningRate: learningRate,
                       stateNames: momentum != 0 ? ["momentum_buffer"] : [])
    }

    override func update(_ index: Int, step t: Int) throws -> FusedUpdate {
        FusedUpdate(.sgd, gradientSign: maximize ? -1 : 1, l2: Float(weightDecay),
                    [Float(learningRate), Float(momentum), Float(dampening), nesterov ? 1 : 0, t == 1 ? 1 : 0])
    }
}

/// AccSGD (Kidambi, Netrapalli, Jain & Kakade 2018, "On the insufficiency of existing momentum
/// schemes for stochastic optimization"), as in the authors' PyTorch code: with the long step
/// η̄ = ηκ/c, α = 1 − c²ξ/κ, β = 1 − α and ζ = c/(c + β),
/// b ← β((1/β − 1)b − η̄g + θ) (b starts at θ), θ ← ζ(θ − ηg) + (1 − ζ)b.
///
/// Seed 000 writes AccSGD as a weighted sum over past iterates; this is the published recursion.
public final class AccSGD: FusedOptimizer {
    public let kappa: Double
    public let xi: Double
    public let smallConstant: Double
    public let weightDecay: Double

    public init(_ parameters: [Parameter], learningRate: Double, kappa: Double = 1000, xi: Double = 10,
                smallConstant: Double = 0.7, weightDecay: Double = 0) throws {
        try checkHyperparameter("AccSGD", "kappa", kappa, atLeast: 1)
        try checkHyperparameter("AccSGD", "xi", xi, atLeast: 0)
        try checkHyperparameter("AccSGD", "small constant", smallConstant, atLeast: 0, atMost: 1)
        try checkHyperparameter("AccSGD", "weight decay", weightDecay, atLeast: 0)
        let beta = smallConstant * smallConstant * xi / kappa
        guard beta > 0, beta < 1 else {
            throw TensorError(.invalidArgument, op: "AccSGD", "c²ξ/κ must lie in (0, 1), got \(beta)")
        }
        self.kappa = kappa
        self.xi = xi
        self.smallConstant = smallConstant
        self.weightDecay = weightDecay
        try super.init("AccSGD", parameters: parameters, learningRate: learningRate, stateNames: ["momentum_buffer"])
    }

    override func initialState(_ index: Int) throws -> [Tensor] { [try parameters[index].value.cloned()] }

    override func update(_ index: Int, step t: Int) throws -> FusedUpdate {
        let beta = smallConstant * smallConstant * xi / kappa
        let zeta = smallConstant / (smallConstant + beta)
        let longStep = learningRate * kappa / smallConstant
        return FusedUpdate(.accsgd, l2: Float(weightDecay),
                           [Float(learningRate), Float(longStep), Float(beta), Float(zeta)])
    }
}
