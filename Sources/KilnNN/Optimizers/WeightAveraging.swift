import KilnCore

/// Running averages of parameter values, updated by a fused pass per tensor
/// (a ← a + w·(θ − a)). The averages live in `averages`; `copyToParameters()` loads them into
/// the model, e.g. for evaluation.
public class ParameterAverage {
    public let parameters: [Parameter]
    /// The averaged values, one per parameter (copies of θ until the first `update()`).
    public private(set) var averages: [Tensor]
    /// The number of `update()` calls so far.
    public private(set) var updateCount = 0
    let name: String
    /// The weight w of the update that makes the `n`-th average.
    let weight: (_ n: Int) -> Double

    init(_ name: String, parameters: [Parameter], weight: @escaping (_ n: Int) -> Double) throws {
        guard !parameters.isEmpty else { throw TensorError(.invalidArgument, op: name, "got an empty parameter list") }
        self.name = name
        self.parameters = parameters
        self.weight = weight
        averages = try parameters.map { try $0.value.cloned() }
    }

    /// Folds the current parameter values into the averages.
    public func update() throws {
        let w = Float(weight(updateCount + 1))
        try withoutGradients {
            for (p, a) in zip(parameters, averages) {
                _ = try Tensor.fusedOptimizerUpdate(FusedUpdate(.average, [w]), parameter: p.value.detached(),
                                                    gradient: p.value.detached(), state: [a])
            }
        }
        updateCount += 1
    }

    /// Sets every parameter to its average (copies; later updates do not move the parameters).
    public func copyToParameters() throws {
        for (p, a) in zip(parameters, averages) { try p.assign(try a.cloned()) }
    }

    /// The averages keyed `"<index>.average"`, and `"update_count"`.
    public func stateDictionary() throws -> OptimizerState {
        var out = OptimizerState(scalars: ["update_count": Double(updateCount)])
        for (i, a) in averages.enumerated() { out.tensors["\(i).average"] = try a.cloned() }
        return out
    }

    /// Restores `stateDictionary()`; validates every entry first.
    public func loadStateDictionary(_ saved: OptimizerState) throws {
        let op = "\(name).loadStateDictionary"
        let reader = OptimizerStateReader(op: op, state: saved)
        let n = try reader.count("update_count")
        let loaded = try parameters.enumerated().map { i, p in
            try reader.tensor("\(i).average", shape: p.shape, on: p.value.backend)
        }
        guard saved.tensors.count == parameters.count else {
            throw TensorError(.invalidArgument, op: op, "expected \(parameters.count) averages, got \(saved.tensors.count)")
        }
        averages = loaded
        updateCount = n
    }
}

/// An exponential moving average of the weights: θ_ema ← mθ_ema + (1 − m)θ (seed 002), as
/// `torch.optim.swa_utils.AveragedModel` with an EMA: the first `update()` copies θ.
public final class ExponentialMovingAverage: ParameterAverage {
    public let decay: Double

    public init(_ parameters: [Parameter], decay: Double = 0.999) throws {
        try checkHyperparameter("ExponentialMovingAverage", "decay", decay, atLeast: 0, atMost: 1)
        self.decay = decay
        try super.init("ExponentialMovingAverage", parameters: parameters) { n in n == 1 ? 1 : 1 - decay }
    }
}

/// Stochastic weight averaging (Izmailov et al. 2018): the equal average
/// θ̄ = (1/M) Σ θ_t of the parameters at every `update()` (seed 000), kept as
/// θ̄ ← θ̄ + (θ − θ̄)/n. Models with batch normalization need their running statistics
/// recomputed for θ̄ (one pass over the training data in train mode) before evaluation.
public final class StochasticWeightAveraging: ParameterAverage {
    public init(_ parameters: [Parameter]) throws {
        try super.init("StochasticWeightAveraging", parameters: parameters) { n in 1 / Double(n) }
    }
}

/// Lookahead (Zhang, Lucas, Hinton & Ba 2019): the inner ("fast") optimizer takes k steps, then
/// the slow weights move toward the fast ones, φ ← φ + α(θ − φ), and θ ← φ.
public final class Lookahead: Optimizer {
    public let inner: any Optimizer
    public let k: Int
    public let alpha: Double
    /// The slow weights φ.
    public private(set) var slowWeights: [Tensor]
    public private(set) var stepCount = 0

    public init(_ inner: any Optimizer, k: Int = 5, alpha: Double = 0.5) throws {
        guard k >= 1 else { throw TensorError(.invalidArgument, op: "Lookahead", "k must be ≥ 1, got \(k)") }
        try checkHyperparameter("Lookahead", "alpha", alpha, atLeast: 0, atMost: 1)
        self.inner = inner
        self.k = k
        self.alpha = alpha
        slowWeights = try inner.parameters.map { try $0.value.cloned() }
    }

    public var parameters: [Parameter] { inner.parameters }

    public var learningRate: Double {
        get { inner.learningRate }
        set { inner.learningRate = newValue }
    }

    public func step() throws {
        try inner.step()
        stepCount += 1
        guard stepCount % k == 0 else { return }
        try withoutGradients {
            for (p, slow) in zip(parameters, slowWeights) {
                let theta = p.value.detached()
                let synced = try Tensor.fusedOptimizerUpdate(FusedUpdate(.lookahead, [Float(alpha)]),
                                                             parameter: theta, gradient: theta, state: [slow])
                try p.assign(synced, keepingGradient: true)
            }
        }
    }

    /// The inner optimizer's state under `inner.`, the slow weights as `"<index>.slow"`.
    public func stateDictionary() throws -> OptimizerState {
        let innerState = try inner.stateDictionary()
        var out = OptimizerState(scalars: ["lookahead_step": Double(stepCount)])
        for (key, t) in innerState.tensors { out.tensors["inner.\(key)"] = t }
        for (key, v) in innerState.scalars { out.scalars["inner.\(key)"] = v }
        for (i, s) in slowWeights.enumerated() { out.tensors["\(i).slow"] = try s.cloned() }
        return out
    }

    public func loadStateDictionary(_ saved: OptimizerState) throws {
        let reader = OptimizerStateReader(op: "Lookahead.loadStateDictionary", state: saved)
        let n = try reader.count("lookahead_step")
        let slow = try parameters.enumerated().map { i, p in try reader.tensor("\(i).slow", shape: p.shape, on: p.value.backend) }
        var innerState = OptimizerState()
        for (key, t) in saved.tensors where key.hasPrefix("inner.") { innerState.tensors[String(key.dropFirst(6))] = t }
        for (key, v) in saved.scalars where key.hasPrefix("inner.") { innerState.scalars[String(key.dropFirst(6))] = v }
        try inner.loadStateDictionary(innerState)
        slowWeights = slow
        stepCount = n
    }
}
