import KilnCore

// SARAH and SPIDER: the recursive gradient estimator v_t = ∇f_B(θ_t) − ∇f_B(θ_{t−1}) + v_{t−1},
// restarted from a full (or large-batch) gradient at a fixed period.

/// The state both recursive estimators carry: the previous iterate θ_{t−1} and the estimate v_{t−1}.
struct RecursiveGradientState {
    var previous: [Tensor]?
    var estimate: [Tensor]?

    /// One step: a refresh (`refreshIndices` nil: the full gradient) or the recursive update on
    /// `batch`; returns v_t. Commits nothing: the caller stores `previous`/`estimate` after the
    /// parameter update succeeded.
    static func estimate(_ engine: FiniteSumEngine, refresh: Bool, refreshIndices: [Int]?, batch: [Int],
                         previous: [Tensor]?, estimate: [Tensor]?) throws -> [Tensor] {
        if !refresh, let previous, let estimate {
            let old = try engine.gradient(batch, at: previous)
            let current = try engine.gradient(batch)
            return try engine.combine(try engine.combine(current, old) { try $0 - $1 }, estimate) { try $0 + $1 }
        }
        if let refreshIndices { return try engine.gradient(refreshIndices) }
        return try engine.fullGradient()
    }

    func saved(into tensors: inout [String: Tensor]) throws {
        if let previous, let estimate {
            tensors.merge(try OptimizerStateReader.pieceEntries("previous", previous)) { $1 }
            tensors.merge(try OptimizerStateReader.pieceEntries("estimate", estimate)) { $1 }
        }
    }

    static func loaded(_ r: OptimizerStateReader, step: Int, engine: FiniteSumEngine) throws -> RecursiveGradientState {
        guard r.has("previous") || r.has("estimate") || step > 0 else { return RecursiveGradientState() }
        return RecursiveGradientState(previous: try r.pieces("previous", parameters: engine.parameters, on: engine.backend),
                                      estimate: try r.pieces("estimate", parameters: engine.parameters, on: engine.backend))
    }
}

/// SARAH, the StochAstic Recursive grAdient algoritHm (Nguyen, Liu, Scheinberg & Takáč, ICML 2017),
/// with mini-batches.
///
/// Every `innerLoopLength` steps (m; steps 0, m, 2m, …) it restarts with the full gradient
/// v = ∇F(θ); other steps draw a batch B (`FiniteSumObjective.sampledIndices`, draw = step count)
/// and use the recursive estimate
///
///     v_t = ∇f_B(θ_t) − ∇f_B(θ_{t−1}) + v_{t−1},   θ_{t+1} = θ_t − η·v_t.
///
/// The outer iterate is the last inner one (the paper's practical choice; its analysis picks a
/// random inner iterate). After `step()` the parameters' gradients hold ∇f_B(θ_t) (∇F on a
/// restart). Memory: two parameter-sized vectors (θ_{t−1} and v).
public final class SARAH: Optimizer {
    public let parameters: [Parameter]
    /// η.
    public var learningRate: Double
    public private(set) var stepCount = 0
    /// b, the samples per recursive step.
    public let batchSize: Int
    /// m, the steps between full-gradient restarts.
    public let innerLoopLength: Int
    public private(set) var seed: UInt64
    /// The batch the last step drew (empty on a restart).
    public private(set) var lastSampledIndices: [Int] = []

    let engine: FiniteSumEngine
    private var state = RecursiveGradientState()

    /// - Parameters:
    ///   - learningRate: η > 0.
    ///   - batchSize: b ≥ 1 (default 1).
    ///   - innerLoopLength: m ≥ 1; nil gives one epoch, max(1, ⌊n / b⌋).
    ///   - seed: the Philox key of the sample indices.
    /// - Throws: `TensorError.invalidArgument` naming the invalid value.
    public init(parameters: [Parameter], objective: FiniteSumObjective, learningRate: Double,
                batchSize: Int = 1, innerLoopLength: Int? = nil, seed: UInt64 = 0) throws {
        engine = try FiniteSumEngine(op: "SARAH", parameters: parameters, objective: objective)
        try engine.requireLearningRate(learningRate)
        guard batchSize >= 1 else { throw TensorError(.invalidArgument, op: "SARAH", "batchSize must be ≥ 1, got \(batchSize)") }
        if let m = innerLoopLength, m < 1 {
            throw TensorError(.invalidArgument, op: "SARAH", "innerLoopLength must be ≥ 1, got \(m)")
        }
        self.parameters = parameters
        self.learningRate = learningRate
        self.batchSize = batchSize
        self.innerLoopLength = innerLoopLength ?? Swift.max(1, objective.sampleCount / batchSize)
        self.seed = seed
    }

    public func step() throws {
        try engine.requireLearningRate(learningRate)
        let t = stepCount
        let refresh = t % innerLoopLength == 0
        let batch = refresh ? [] : FiniteSumObjective.sampledIndices(seed: seed, draw: t, count: batchSize,
                                                                     sampleCount: engine.sampleCount)
        let point = engine.values()
        let v = try RecursiveGradientState.estimate(engine, refresh: refresh, refreshIndices: nil, batch: batch,
                                                    previous: state.previous, estimate: state.estimate)
        try engine.descend(v, stepSize: learningRate)
        state = RecursiveGradientState(previous: point, estimate: v)
        lastSampledIndices = batch
        stepCount += 1
    }

    /// Scalars "step", "lr", "batch_size", "inner_loop_length", "sample_count", "seed_low",
    /// "seed_high"; tensors "<k>.previous" (θ_{t−1}) and "<k>.estimate" (v_{t−1}) after a step.
    public func stateDictionary() throws -> OptimizerState {
        var scalars: [String: Double] = ["step": Double(stepCount), "lr": learningRate, "batch_size": Double(batchSize),
                                         "inner_loop_length": Double(innerLoopLength),
                                         "sample_count": Double(engine.sampleCount)]
        scalars.merge(OptimizerStateReader.seedEntries(seed)) { $1 }
        var tensors: [String: Tensor] = [:]
        try state.saved(into: &tensors)
        return OptimizerState(tensors: tensors, scalars: scalars)
    }

    /// Restores a state from `stateDictionary()`; batch size, loop length and sample count must match.
    /// - Throws: `TensorError` for a missing, non-finite or mismatched entry; nothing changes then.
    public func loadStateDictionary(_ s: OptimizerState) throws {
        let r = OptimizerStateReader(op: "SARAH", state: s)
        let step = try r.integer("step")
        let lr = try r.learningRate(positive: true)
        _ = try r.integer("batch_size", minimum: 1, expected: batchSize)
        _ = try r.integer("inner_loop_length", minimum: 1, expected: innerLoopLength)
        _ = try r.integer("sample_count", minimum: 1, expected: engine.sampleCount)
        let newSeed = try r.seed()
        let loaded = try RecursiveGradientState.loaded(r, step: step, engine: engine)
        stepCount = step
        learningRate = lr
        seed = newSeed
        state = loaded
        lastSampledIndices = []
    }
}

/// SPIDER-SFO, Stochastic Path-Integrated Differential EstimatoR with first-order oracles (Fang,
/// Li, Lin & Zhang, "SPIDER: Near-Optimal Non-Convex Optimization via Stochastic Path Integrated
/// Differential Estimator", NeurIPS 2018).
///
/// Every `refreshInterval` steps (q; steps 0, q, 2q, …) the estimate is refreshed with the full
/// gradient, or with the gradient of a batch of `refreshBatchSize` samples (S₁) drawn with
/// replacement; other steps draw a batch of `batchSize` samples (S₂) and update
///
///     v_k = ∇f_{S₂}(θ_k) − ∇f_{S₂}(θ_{k−1}) + v_{k−1},   θ_{k+1} = θ_k − η_k·v_k.
///
/// The step size follows the catalogue's constant form η_k = η by default (`.constant`, which makes
/// the method SARAH with period q). `.normalized(radius:)` is the paper's Option II,
/// η_k = min(ε/(L·n₀·‖v_k‖), 1/(2L·n₀)): here η_k = min(radius/‖v_k‖, η), so `learningRate` plays
/// 1/(2L·n₀) and `radius` ε/(L·n₀); each step is then at most `radius` long. The paper's Option I
/// (stop when ‖v‖ ≤ 2ε̃) is a stopping rule left to the caller (`lastStepSize`, `lastEstimateNorm`).
/// Defaults follow the paper's finite-sum setting with n₀ = 1: b = q = ⌈√n⌉ and a full refresh.
public final class SPIDER: Optimizer {
    /// How η_k is chosen.
    public enum StepRule: Sendable, Equatable {
        /// η_k = η (the catalogue's form).
        case constant
        /// η_k = min(radius/‖v_k‖, η) (the paper's normalised Option II); η when v_k = 0.
        case normalized(radius: Double)
    }

    public let parameters: [Parameter]
    /// η (the bound 1/(2L·n₀) of the normalised rule).
    public var learningRate: Double
    public private(set) var stepCount = 0
    /// |S₂|, the samples per recursive step.
    public let batchSize: Int
    /// q, the steps between refreshes.
    public let refreshInterval: Int
    /// |S₁|, the samples of a refresh; nil for the full gradient.
    public let refreshBatchSize: Int?
    public let stepRule: StepRule
    public private(set) var seed: UInt64
    /// The batch the last step drew (S₁ or S₂; empty for a full refresh).
    public private(set) var lastSampledIndices: [Int] = []
    /// η_k of the last step.
    public private(set) var lastStepSize: Double = 0
    /// ‖v_k‖ of the last step (computed only for the normalised rule; 0 otherwise).
    public private(set) var lastEstimateNorm: Double = 0

    let engine: FiniteSumEngine
    private var state = RecursiveGradientState()

    /// - Parameters:
    ///   - learningRate: η > 0.
    ///   - batchSize: |S₂| ≥ 1; nil gives ⌈√n⌉.
    ///   - refreshInterval: q ≥ 1; nil gives ⌈√n⌉.
    ///   - refreshBatchSize: |S₁| ≥ 1, or nil for the full gradient.
    ///   - stepRule: `.constant` or `.normalized(radius:)` with a finite radius > 0.
    ///   - seed: the Philox key of the sample indices.
    /// - Throws: `TensorError.invalidArgument` naming the invalid value.
    public init(parameters: [Parameter], objective: FiniteSumObjective, learningRate: Double,
                batchSize: Int? = nil, refreshInterval: Int? = nil, refreshBatchSize: Int? = nil,
                stepRule: StepRule = .constant, seed: UInt64 = 0) throws {
        engine = try FiniteSumEngine(op: "SPIDER", parameters: parameters, objective: objective)
        try engine.requireLearningRate(learningRate)
        let root = Int(Double(objective.sampleCount).squareRoot().rounded(.up))
        let b = batchSize ?? root, q = refreshInterval ?? root
        guard b >= 1 else { throw TensorError(.invalidArgument, op: "SPIDER", "batchSize must be ≥ 1, got \(b)") }
        guard q >= 1 else { throw TensorError(.invalidArgument, op: "SPIDER", "refreshInterval must be ≥ 1, got \(q)") }
        if let s = refreshBatchSize, s < 1 {
            throw TensorError(.invalidArgument, op: "SPIDER", "refreshBatchSize must be ≥ 1, got \(s)")
        }
        if case .normalized(let radius) = stepRule, !(radius.isFinite && radius > 0) {
            throw TensorError(.invalidArgument, op: "SPIDER", "the normalized step radius must be finite and positive, got \(radius)")
        }
        self.parameters = parameters
        self.learningRate = learningRate
        self.batchSize = b
        self.refreshInterval = q
        self.refreshBatchSize = refreshBatchSize
        self.stepRule = stepRule
        self.seed = seed
    }

    public func step() throws {
        try engine.requireLearningRate(learningRate)
        let t = stepCount
        let refresh = t % refreshInterval == 0
        let n = engine.sampleCount
        let refreshIndices = refresh ? refreshBatchSize.map {
            FiniteSumObjective.sampledIndices(seed: seed, draw: t, count: $0, sampleCount: n)
        } : nil
        let batch = refresh ? [] : FiniteSumObjective.sampledIndices(seed: seed, draw: t, count: batchSize, sampleCount: n)
        let point = engine.values()
        let v = try RecursiveGradientState.estimate(engine, refresh: refresh, refreshIndices: refreshIndices, batch: batch,
                                                    previous: state.previous, estimate: state.estimate)
        var eta = learningRate, norm = 0.0
        if case .normalized(let radius) = stepRule {
            norm = try engine.norm(v)
            if norm > 0 { eta = Swift.min(radius / norm, learningRate) }
        }
        try engine.descend(v, stepSize: eta)
        state = RecursiveGradientState(previous: point, estimate: v)
        lastSampledIndices = refreshIndices ?? batch
        lastStepSize = eta
        lastEstimateNorm = norm
        stepCount += 1
    }

    /// Scalars "step", "lr", "batch_size", "refresh_interval", "refresh_batch_size" (0: full),
    /// "sample_count", "seed_low", "seed_high"; tensors "<k>.previous" and "<k>.estimate".
    public func stateDictionary() throws -> OptimizerState {
        var scalars: [String: Double] = ["step": Double(stepCount), "lr": learningRate, "batch_size": Double(batchSize),
                                         "refresh_interval": Double(refreshInterval),
                                         "refresh_batch_size": Double(refreshBatchSize ?? 0),
                                         "sample_count": Double(engine.sampleCount)]
        scalars.merge(OptimizerStateReader.seedEntries(seed)) { $1 }
        var tensors: [String: Tensor] = [:]
        try state.saved(into: &tensors)
        return OptimizerState(tensors: tensors, scalars: scalars)
    }

    /// Restores a state from `stateDictionary()`; batch sizes, interval and sample count must match.
    /// - Throws: `TensorError` for a missing, non-finite or mismatched entry; nothing changes then.
    public func loadStateDictionary(_ s: OptimizerState) throws {
        let r = OptimizerStateReader(op: "SPIDER", state: s)
        let step = try r.integer("step")
        let lr = try r.learningRate(positive: true)
        _ = try r.integer("batch_size", minimum: 1, expected: batchSize)
        _ = try r.integer("refresh_interval", minimum: 1, expected: refreshInterval)
        _ = try r.integer("refresh_batch_size", expected: refreshBatchSize ?? 0)
        _ = try r.integer("sample_count", minimum: 1, expected: engine.sampleCount)
        let newSeed = try r.seed()
        let loaded = try RecursiveGradientState.loaded(r, step: step, engine: engine)
        stepCount = step
        learningRate = lr
        seed = newSeed
        state = loaded
        lastSampledIndices = []
    }
}
