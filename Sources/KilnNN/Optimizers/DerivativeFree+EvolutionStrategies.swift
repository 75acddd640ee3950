import KilnCore

/// Natural evolution strategies as in OpenAI-ES (Salimans, Ho, Chen, Sidor & Sutskever, "Evolution
/// Strategies as a Scalable Alternative to Reinforcement Learning", 2017), for minimising a loss.
///
/// A generation draws K = `perturbationPairs` standard normal vectors εₖ ∈ ℝᴾ and evaluates the
/// antithetic (mirrored) pairs θ ± σεₖ, n = 2K evaluations. With fitness F = −loss the paper's
/// update (Algorithm 1, with mirrored sampling) is
///
///     θ ← θ + α/(nσ) · Σᵢ Fᵢ εᵢ = θ + α/(nσ) · Σₖ (F⁺ₖ − F⁻ₖ) εₖ,
///
/// a Monte-Carlo estimate of α·∇_θ E[F(θ + σε)]. The catalogue writes the same update in its
/// score-function form θ ← θ + α·(1/μ) Σₖ rₖ ∇_θ log π_θ(xₖ) with π_θ = N(θ, σ²I), where
/// ∇_θ log π_θ(x) = (x − θ)/σ² = ε/σ; Kiln follows the paper's normalisation 1/(nσ).
/// With `.centeredRanks` (the paper's fitness shaping) Fᵢ is replaced by its centred rank
/// rank(Fᵢ)/(n − 1) − ½ over the n values (rank 0 = worst, ties broken by evaluation order), which
/// makes the update invariant to monotone transformations of the loss and robust to outliers.
///
/// εₖ is row k of `Tensor.normal([K, P], seed: DerivativeFreeRandom.key(seed:stream:.evolutionNoise,
/// index: t))` on the parameters' backend (the same bits everywhere); evaluation order is θ + σε₀,
/// θ − σε₀, θ + σε₁, …. Σₖ wₖεₖ is one [1, K] × [K, P] matmul. The paper's optimiser is plain
/// gradient ascent; its Adam and weight-decay variants are not included. After `step()` the
/// parameters hold the new θ.
public final class EvolutionStrategies: Optimizer {
    /// How the fitness values weight the perturbations.
    public enum FitnessShaping: Sendable, Equatable {
        /// The raw fitness F = −loss (the catalogue's form). A non-finite loss makes `step()` throw.
        case none
        /// Centred ranks in [−½, ½]; +∞ and NaN losses rank worst.
        case centeredRanks
    }

    public let parameters: [Parameter]
    /// α, the step size.
    public var learningRate: Double
    public private(set) var stepCount = 0
    /// σ, the perturbation scale.
    public let noiseStandardDeviation: Double
    /// K; a generation evaluates 2K points.
    public let perturbationPairs: Int
    public let fitnessShaping: FitnessShaping
    public private(set) var seed: UInt64
    /// The losses of the last generation, in evaluation order (θ + σε₀, θ − σε₀, …).
    public private(set) var lastLosses: [Float] = []

    let engine: DerivativeFreeEngine

    /// - Parameters:
    ///   - loss: the loss at the parameters' current values, one element.
    ///   - learningRate: α > 0.
    ///   - noiseStandardDeviation: σ > 0 (the paper uses 0.02).
    ///   - perturbationPairs: K ≥ 1.
    ///   - seed: the Philox key.
    /// - Throws: `TensorError.invalidArgument` naming the invalid value.
    public init(parameters: [Parameter], loss: @escaping () throws -> Tensor, learningRate: Double,
                noiseStandardDeviation: Double = 0.02, perturbationPairs: Int = 16,
                fitnessShaping: FitnessShaping = .none, seed: UInt64 = 0) throws {
        engine = try DerivativeFreeEngine(op: "EvolutionStrategies", parameters: parameters, loss: loss)
        try engine.requireFinite(learningRate, "learning rate", positive: true)
        try engine.requireFinite(noiseStandardDeviation, "noiseStandardDeviation", positive: true)
        guard perturbationPairs >= 1 else {
            throw TensorError(.invalidArgument, op: "EvolutionStrategies", "perturbationPairs must be ≥ 1, got \(perturbationPairs)")
        }
        self.parameters = parameters
        self.learningRate = learningRate
        self.noiseStandardDeviation = noiseStandardDeviation
        self.perturbationPairs = perturbationPairs
        self.fitnessShaping = fitnessShaping
        self.seed = seed
    }

    /// The Philox key of generation t's perturbations.
    public static func noiseSeed(seed: UInt64, generation t: Int) -> UInt64 {
        DerivativeFreeRandom.key(seed: seed, stream: DerivativeFreeRandom.evolutionNoise, index: t)
    }

    /// The weights wₖ of εₖ in Σₖ wₖεₖ for losses in evaluation order: F⁺ₖ − F⁻ₖ with F the raw or
    /// shaped fitness.
    public static func pairWeights(losses: [Float], shaping: FitnessShaping) -> [Double] {
        let n = losses.count
        var fitness = losses.map { -Double($0) }
        if shaping == .centeredRanks {
            // Ascending fitness: NaN (as −∞) first, ties by evaluation order.
            let order = (0..<n).sorted { a, b in
                let fa = fitness[a].isNaN ? -Double.infinity : fitness[a]
                let fb = fitness[b].isNaN ? -Double.infinity : fitness[b]
                return fa < fb || (fa == fb && a < b)
            }
            var ranks = [Double](repeating: 0, count: n)
            for (r, i) in order.enumerated() { ranks[i] = Double(r) / Double(Swift.max(n - 1, 1)) - 0.5 }
            fitness = ranks
        }
        return stride(from: 0, to: n, by: 2).map { fitness[$0] - fitness[$0 + 1] }
    }

    public func step() throws {
        try engine.requireFinite(learningRate, "learning rate", positive: true)
        let k = perturbationPairs, p = engine.dimension, sigma = noiseStandardDeviation
        let losses = try engine.restoringOnError { () -> [Float] in
            try withoutGradients {
                let theta = try engine.flattened()
                let noise = try Tensor.normal([k, p], seed: Self.noiseSeed(seed: seed, generation: stepCount), on: engine.backend)
                var losses: [Float] = []
                for i in 0..<k {
                    let offset: Tensor = try engine.row(noise, i) * Float(sigma)
                    losses.append(try engine.evaluate(try theta + offset))
                    losses.append(try engine.evaluate(try theta - offset))
                }
                if fitnessShaping == .none, let bad = losses.firstIndex(where: { !$0.isFinite }) {
                    throw TensorError(.invalidArgument, op: "EvolutionStrategies",
                                      "the loss at perturbation \(bad) is \(losses[bad]); use .centeredRanks to rank non-finite losses last")
                }
                let weights = Self.pairWeights(losses: losses, shaping: fitnessShaping)
                let w = try Tensor(weights.map { Float($0) }, shape: [1, k], on: engine.backend)
                let direction = try matmul(w, noise).reshaped(to: [p])
                let scale = Float(learningRate / (Double(2 * k) * sigma))
                let moved: Tensor = try direction * scale
                try engine.assign(try theta + moved)
                return losses
            }
        }
        lastLosses = losses
        stepCount += 1
    }

    /// Scalars "step", "lr", "noise_std", "perturbation_pairs", "fitness_shaping" (0 none, 1 centred
    /// ranks), "seed_low", "seed_high". θ itself is the parameters'.
    public func stateDictionary() throws -> OptimizerState {
        var scalars: [String: Double] = ["step": Double(stepCount), "lr": learningRate, "noise_std": noiseStandardDeviation,
                                         "perturbation_pairs": Double(perturbationPairs),
                                         "fitness_shaping": fitnessShaping == .none ? 0 : 1]
        scalars.merge(OptimizerStateReader.seedEntries(seed)) { $1 }
        return OptimizerState(scalars: scalars)
    }

    /// Restores a state from `stateDictionary()`; σ, K and the shaping must match.
    /// - Throws: `TensorError` for a missing, non-finite or mismatched entry; nothing changes then.
    public func loadStateDictionary(_ state: OptimizerState) throws {
        let r = OptimizerStateReader(op: "EvolutionStrategies", state: state)
        let step = try r.integer("step")
        let lr = try r.learningRate(positive: true)
        guard try r.scalar("noise_std") == noiseStandardDeviation else {
            throw TensorError(.invalidArgument, op: "EvolutionStrategies",
                              "state noise_std \(state.scalars["noise_std"]!) differs from this optimizer's \(noiseStandardDeviation)")
        }
        _ = try r.integer("perturbation_pairs", minimum: 1, expected: perturbationPairs)
        _ = try r.integer("fitness_shaping", expected: fitnessShaping == .none ? 0 : 1)
        let newSeed = try r.seed()
        stepCount = step
        learningRate = lr
        seed = newSeed
        lastLosses = []
    }
}
