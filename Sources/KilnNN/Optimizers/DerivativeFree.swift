import KilnCore

// Derivative-free optimizers over a loss closure evaluated at the parameters' current values:
// the shared machinery (the flattened parameter vector, loss evaluation, Philox sub-streams) and
// particle swarm optimisation. Evolution strategies and CMA-ES are in DerivativeFree+*.swift.

/// The Philox sub-streams the derivative-free optimizers draw from, so every backend (and a test
/// oracle) sees the same random numbers for a seed.
public enum DerivativeFreeRandom {
    /// `ParticleSwarm`'s initial positions (index 0).
    public static let swarmInitialization: UInt32 = 1
    /// `ParticleSwarm`'s r₁ of iteration t (index t).
    public static let swarmCognitive: UInt32 = 2
    /// `ParticleSwarm`'s r₂ of iteration t (index t).
    public static let swarmSocial: UInt32 = 3
    /// `EvolutionStrategies`' perturbations of generation t (index t).
    public static let evolutionNoise: UInt32 = 4
    /// `CMAES`' standard normal samples of generation g (index g).
    public static let cmaSamples: UInt32 = 5

    /// The Philox key of sub-stream `stream`, number `index`, of `seed`: words 0 (low half) and 1
    /// (high half) of the Philox-4x32-10 block with key `seed` and counter
    /// (index low 32 bits, index high 32 bits, stream, 0). Draws then use `Tensor.random` or
    /// `Philox.samples` with this key.
    public static func key(seed: UInt64, stream: UInt32, index: Int) -> UInt64 {
        let i = UInt64(truncatingIfNeeded: index)
        let w = Philox.block(counter: (UInt32(truncatingIfNeeded: i), UInt32(truncatingIfNeeded: i >> 32), stream, 0),
                             seed: seed)
        return UInt64(w.0) | UInt64(w.1) << 32
    }
}

/// The parameters as one flattened vector θ of P elements (parameter order, row-major within a
/// parameter), and the loss closure evaluated at candidate vectors.
final class DerivativeFreeEngine {
    let op: String
    let parameters: [Parameter]
    let loss: () throws -> Tensor
    let backend: any Backend
    let counts: [Int]
    /// P.
    let dimension: Int

    init(op: String, parameters: [Parameter], loss: @escaping () throws -> Tensor) throws {
        guard let first = parameters.first else {
            throw TensorError(.invalidArgument, op: op, "needs at least one parameter")
        }
        for p in parameters where p.value.backend !== first.value.backend {
            throw TensorError(.backendMismatch, op: op,
                              "parameters live on different backends (\(first.value.backend.name) and \(p.value.backend.name))")
        }
        counts = parameters.map { $0.value.count }
        dimension = counts.reduce(0, +)
        guard dimension > 0 else {
            throw TensorError(.invalidArgument, op: op, "the parameters hold no elements")
        }
        self.op = op
        self.parameters = parameters
        self.loss = loss
        backend = first.value.backend
    }

    /// θ: the parameters' values concatenated, [P].
    func flattened() throws -> Tensor {
        try withoutGradients { try Tensor.concatenated(parameters.map { $0.value.detached().flattened() }, axis: 0) }
    }

    /// Sets the parameters to the pieces of `vector` ([P]); gradients are kept.
    func assign(_ vector: Tensor) throws {
        try withoutGradients {
            let pieces = try vector.split(sizes: counts, axis: 0)
            let shaped = try zip(pieces, parameters).map { try $0.reshaped(to: $1.shape) }
            for (p, v) in zip(parameters, shaped) { try p.assign(v, keepingGradient: true) }
        }
    }

    /// The loss at `vector` ([P]), evaluated without recording gradients; NaN counts as +∞.
    func evaluate(_ vector: Tensor) throws -> Float {
        try assign(vector)
        let value = try withoutGradients { try loss() }
        guard value.count == 1 else {
            throw TensorError(.invalidArgument, op: op, "the loss closure must return one element, got shape \(value.shape)")
        }
        let v = try value.item()
        return v.isNaN ? .infinity : v
    }

    /// Row `i` of a `[m, P]` matrix, as `[P]`.
    func row(_ matrix: Tensor, _ i: Int) throws -> Tensor {
        try withoutGradients { try matrix.sliced(axis: 0, start: i, end: i + 1).reshaped(to: [dimension]) }
    }

    /// A `[m, P]` matrix as one tensor per parameter, `[m] + shape`, keyed "<k>.<name>".
    func savedColumns(_ name: String, _ matrix: Tensor) throws -> [String: Tensor] {
        let m = matrix.shape[0]
        var out: [String: Tensor] = [:], offset = 0
        try withoutGradients {
            for (k, p) in parameters.enumerated() {
                out["\(k).\(name)"] = try matrix.sliced(axis: 1, start: offset, end: offset + counts[k])
                    .reshaped(to: [m] + p.shape).cloned()
                offset += counts[k]
            }
        }
        return out
    }

    /// The inverse of `savedColumns`: the pieces "<k>.<name>" joined into `[m, P]`.
    func loadedColumns(_ r: OptimizerStateReader, _ name: String, rows m: Int) throws -> Tensor {
        let pieces = try r.pieces(name, leading: [m], parameters: parameters, on: backend)
        return try withoutGradients {
            try Tensor.concatenated(zip(pieces, counts).map { try $0.reshaped(to: [m, $1]) }, axis: 1)
        }
    }

    /// Runs `body`; if it throws, the parameters get back the values they had before.
    func restoringOnError<R>(_ body: () throws -> R) throws -> R {
        let saved = parameters.map { $0.value.detached() }
        do {
            return try body()
        } catch {
            try withoutGradients {
                for (p, v) in zip(parameters, saved) { try p.assign(v, keepingGradient: true) }
            }
            throw error
        }
    }

    func requireFinite(_ value: Double, _ name: String, positive: Bool = false, nonNegative: Bool = false) throws {
        try checkHyperparameter(op, name, value, atLeast: nonNegative ? 0 : nil, above: positive ? 0 : nil)
    }
}

/// Particle swarm optimisation (Kennedy & Eberhart, "Particle swarm optimization", 1995), in the
/// inertia-weight form with Clerc's constriction values ω = 0.7298, c₁ = c₂ = 1.49618 and a
/// global-best topology.
///
/// Particle i has a position xᵢ, a velocity vᵢ and the best position pᵢ it has visited; g is the
/// best of all pᵢ. One `step()` is one synchronous swarm iteration:
///
///     vᵢ ← ω·vᵢ + c₁·r₁ ⊙ (pᵢ − xᵢ) + c₂·r₂ ⊙ (g − xᵢ),   xᵢ ← xᵢ + vᵢ,
///
/// then every particle is evaluated and pᵢ, g are updated (a particle improves on a strictly lower
/// loss; NaN never improves). r₁, r₂ are uniform on [0, 1) per particle and coordinate, from the
/// Philox sub-streams `DerivativeFreeRandom.swarmCognitive`/`.swarmSocial` (index t). With
/// `maximumVelocity` every velocity coordinate is clamped to ±vmax.
///
/// The first step also creates the swarm around the parameters' values θ₀: particle 0 sits at θ₀
/// and particle i > 0 at θ₀ + spread·u, u uniform on [−1, 1) (sub-stream `.swarmInitialization`,
/// index 0); velocities start at zero (Engelbrecht 2012) and all particles are evaluated. After
/// each step the parameters hold g. The swarm lives on the parameters' backend as [S, P] tensors.
public final class ParticleSwarm: Optimizer {
    public let parameters: [Parameter]
    /// Not used: PSO has no step size (ω, c₁, c₂ set the step). It is kept for the `Optimizer`
    /// protocol, and a scheduler that sets it has no effect.
    public var learningRate: Double = 1
    public private(set) var stepCount = 0
    /// S.
    public let swarmSize: Int
    /// ω.
    public let inertia: Double
    /// c₁.
    public let cognitiveCoefficient: Double
    /// c₂.
    public let socialCoefficient: Double
    /// The half-width of the initial box around θ₀.
    public let initialSpread: Double
    /// vmax, or nil for no clamping.
    public let maximumVelocity: Double?
    public private(set) var seed: UInt64
    /// The loss at each particle's best position (empty before the first step).
    public private(set) var personalBestLosses: [Float] = []
    /// The loss at g (+∞ before the first step).
    public var globalBestLoss: Float { personalBestLosses.min() ?? .infinity }

    let engine: DerivativeFreeEngine
    private var positions: Tensor?
    private var velocities: Tensor?
    private var personalBests: Tensor?

    /// - Parameters:
    ///   - loss: the loss at the parameters' current values, one element.
    ///   - swarmSize: S ≥ 1.
    ///   - inertia: ω, finite ≥ 0; `cognitiveCoefficient` c₁, `socialCoefficient` c₂: finite ≥ 0.
    ///   - initialSpread: finite > 0.
    ///   - maximumVelocity: finite > 0, or nil.
    ///   - seed: the Philox key.
    /// - Throws: `TensorError.invalidArgument` naming the invalid value.
    public init(parameters: [Parameter], loss: @escaping () throws -> Tensor, swarmSize: Int = 20,
                inertia: Double = 0.7298, cognitiveCoefficient: Double = 1.49618, socialCoefficient: Double = 1.49618,
                initialSpread: Double = 1, maximumVelocity: Double? = nil, seed: UInt64 = 0) throws {
        engine = try DerivativeFreeEngine(op: "ParticleSwarm", parameters: parameters, loss: loss)
        guard swarmSize >= 1 else {
            throw TensorError(.invalidArgument, op: "ParticleSwarm", "swarmSize must be ≥ 1, got \(swarmSize)")
        }
        try engine.requireFinite(inertia, "inertia", nonNegative: true)
        try engine.requireFinite(cognitiveCoefficient, "cognitiveCoefficient", nonNegative: true)
        try engine.requireFinite(socialCoefficient, "socialCoefficient", nonNegative: true)
        try engine.requireFinite(initialSpread, "initialSpread", positive: true)
        if let v = maximumVelocity { try engine.requireFinite(v, "maximumVelocity", positive: true) }
        self.parameters = parameters
        self.swarmSize = swarmSize
        self.inertia = inertia
        self.cognitiveCoefficient = cognitiveCoefficient
        self.socialCoefficient = socialCoefficient
        self.initialSpread = initialSpread
        self.maximumVelocity = maximumVelocity
        self.seed = seed
    }

    public func step() throws {
        let s = swarmSize, p = engine.dimension, t = stepCount
        try engine.restoringOnError {
            try withoutGradients {
                var x: Tensor, v: Tensor, best: Tensor, bestLoss: [Float]
                if let positions, let velocities, let personalBests {
                    (x, v, best, bestLoss) = (positions, velocities, personalBests, personalBestLosses)
                } else {
                    let theta = try engine.flattened().reshaped(to: [1, p])
                    let u = try Tensor.uniform([s, p], low: -1, high: 1, seed: key(DerivativeFreeRandom.swarmInitialization, 0),
                                               on: engine.backend)
                    let spread: Tensor = try u * Float(initialSpread)
                    let scattered: Tensor = try theta + spread
                    x = try Tensor.concatenated([theta, try scattered.sliced(axis: 0, start: 1)], axis: 0)
                    v = try Tensor.zeros([s, p], on: engine.backend)
                    best = x
                    bestLoss = try (0..<s).map { try engine.evaluate(try engine.row(x, $0)) }
                }
                let r1 = try Tensor.uniform([s, p], seed: key(DerivativeFreeRandom.swarmCognitive, t), on: engine.backend)
                let r2 = try Tensor.uniform([s, p], seed: key(DerivativeFreeRandom.swarmSocial, t), on: engine.backend)
                let leader = argmin(bestLoss)
                let g = try best.sliced(axis: 0, start: leader, end: leader + 1)
                let keep: Tensor = try v * Float(inertia)
                let towardOwn: Tensor = try r1 * (best - x) * Float(cognitiveCoefficient)
                let towardSwarm: Tensor = try r2 * (g - x) * Float(socialCoefficient)
                var newV: Tensor = try keep + towardOwn + towardSwarm
                if let vmax = maximumVelocity { newV = try clamp(newV, min: Float(-vmax), max: Float(vmax)) }
                let newX: Tensor = try x + newV
                let losses = try (0..<s).map { try engine.evaluate(try engine.row(newX, $0)) }
                let improved = (0..<s).map { losses[$0] < bestLoss[$0] }
                let mask = try Tensor(improved.map { $0 ? 1 : 0 }, shape: [s, 1], on: engine.backend)
                let newBest = try Tensor.selecting(mask, newX, best)
                let newBestLoss = (0..<s).map { improved[$0] ? losses[$0] : bestLoss[$0] }
                try engine.assign(try engine.row(newBest, argmin(newBestLoss)))
                positions = newX
                velocities = newV
                personalBests = newBest
                personalBestLosses = newBestLoss
            }
        }
        stepCount += 1
    }

    private func key(_ stream: UInt32, _ index: Int) -> UInt64 {
        DerivativeFreeRandom.key(seed: seed, stream: stream, index: index)
    }

    /// The first index of the smallest value.
    private func argmin(_ values: [Float]) -> Int {
        values.indices.min { values[$0] < values[$1] || (values[$0] == values[$1] && $0 < $1) } ?? 0
    }

    /// Scalars "step", "lr", "swarm_size", "seed_low", "seed_high", "personal_best_loss.<i>";
    /// once the swarm exists, tensors "<k>.positions", "<k>.velocities", "<k>.personal_best"
    /// ([S] + the parameter's shape).
    public func stateDictionary() throws -> OptimizerState {
        var scalars: [String: Double] = ["step": Double(stepCount), "lr": learningRate, "swarm_size": Double(swarmSize)]
        scalars.merge(OptimizerStateReader.seedEntries(seed)) { $1 }
        var tensors: [String: Tensor] = [:]
        if let positions, let velocities, let personalBests {
            tensors.merge(try engine.savedColumns("positions", positions)) { $1 }
            tensors.merge(try engine.savedColumns("velocities", velocities)) { $1 }
            tensors.merge(try engine.savedColumns("personal_best", personalBests)) { $1 }
            for (i, l) in personalBestLosses.enumerated() { scalars["personal_best_loss.\(i)"] = Double(l) }
        }
        return OptimizerState(tensors: tensors, scalars: scalars)
    }

    /// Restores a state from `stateDictionary()`; the swarm size must match. The parameters are
    /// not changed (they are saved with the model).
    /// - Throws: `TensorError` for a missing, non-finite or mismatched entry; nothing changes then.
    public func loadStateDictionary(_ state: OptimizerState) throws {
        let r = OptimizerStateReader(op: "ParticleSwarm", state: state)
        let step = try r.integer("step")
        guard let lr = state.scalars["lr"], !lr.isNaN else {
            throw TensorError(.invalidArgument, op: "ParticleSwarm", "state has no valid scalar \"lr\"")
        }
        _ = try r.integer("swarm_size", minimum: 1, expected: swarmSize)
        let newSeed = try r.seed()
        var swarm: (Tensor, Tensor, Tensor, [Float])? = nil
        if r.has("positions") || r.has("velocities") || r.has("personal_best") || step > 0 {
            let x = try engine.loadedColumns(r, "positions", rows: swarmSize)
            let v = try engine.loadedColumns(r, "velocities", rows: swarmSize)
            let b = try engine.loadedColumns(r, "personal_best", rows: swarmSize)
            let losses = try (0..<swarmSize).map { i -> Float in
                guard let l = state.scalars["personal_best_loss.\(i)"], !l.isNaN else {
                    throw TensorError(.invalidArgument, op: "ParticleSwarm", "state has no valid scalar \"personal_best_loss.\(i)\"")
                }
                return Float(l)
            }
            swarm = (x, v, b, losses)
        }
        stepCount = step
        learningRate = lr
        seed = newSeed
        positions = swarm?.0
        velocities = swarm?.1
        personalBests = swarm?.2
        personalBestLosses = swarm?.3 ?? []
    }
}
