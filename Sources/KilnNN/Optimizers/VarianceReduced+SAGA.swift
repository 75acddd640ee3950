import KilnCore

/// SAGA (Defazio, Bach & Lacoste-Julien, "SAGA: A Fast Incremental Gradient Method With Support
/// for Non-Strongly Convex Composite Objectives", NIPS 2014), without the proximal operator.
///
/// It keeps a table of the last gradient αⱼ = ∇fⱼ(φⱼ) seen for every sample j and their mean ᾱ.
/// The first step fills the table at θ₀ (φⱼ = θ₀, the paper's initialisation: n single-sample
/// gradients). Each step draws one index j (`FiniteSumObjective.sampledIndices` with count 1,
/// draw = step count) and moves
///
///     g = ∇fⱼ(θ),   v = g − αⱼ + ᾱ,   θ ← θ − η·v,   ᾱ ← ᾱ + (g − αⱼ)/n,   αⱼ ← g.
///
/// Memory: the table holds n × P floats (P = all parameters' elements) plus ᾱ — n times the
/// model, so SAGA suits linear models and small networks. ᾱ is updated incrementally in Float32
/// and recomputed from the table every n steps, which bounds its rounding drift. After `step()`
/// the parameters' gradients hold ∇fⱼ at the pre-step values. The mini-batch variant is not
/// provided (the published method uses one sample).
public final class SAGA: Optimizer {
    public let parameters: [Parameter]
    /// η (the paper's γ; 1/(3L) in its analysis).
    public var learningRate: Double
    public private(set) var stepCount = 0
    public private(set) var seed: UInt64
    /// The sample the last step drew.
    public private(set) var lastSampledIndices: [Int] = []

    let engine: FiniteSumEngine
    /// table[j][k]: the stored gradient of sample j for parameter k.
    private var table: [[Tensor]]?
    private var tableMean: [Tensor]?

    /// - Parameters:
    ///   - learningRate: η > 0.
    ///   - seed: the Philox key of the sample indices.
    /// - Throws: `TensorError.invalidArgument` naming the invalid value.
    public init(parameters: [Parameter], objective: FiniteSumObjective, learningRate: Double, seed: UInt64 = 0) throws {
        engine = try FiniteSumEngine(op: "SAGA", parameters: parameters, objective: objective)
        try engine.requireLearningRate(learningRate)
        self.parameters = parameters
        self.learningRate = learningRate
        self.seed = seed
    }

    public func step() throws {
        try engine.requireLearningRate(learningRate)
        let n = engine.sampleCount
        var rows: [[Tensor]], mean: [Tensor]
        if let table, let tableMean {
            rows = table
            mean = tableMean
        } else {
            rows = try (0..<n).map { try engine.gradient([$0]) }
            mean = try exactMean(rows)
        }
        let t = stepCount
        let j = FiniteSumObjective.sampledIndices(seed: seed, draw: t, count: 1, sampleCount: n)[0]
        let g = try engine.gradient([j])
        let change = try engine.combine(g, rows[j]) { try $0 - $1 }
        let v = try engine.combine(change, mean) { try $0 + $1 }
        try engine.descend(v, stepSize: learningRate)
        rows[j] = g
        if (t + 1) % n == 0 {
            mean = try exactMean(rows)
        } else {
            let scale = Float(1 / Double(n))
            mean = try engine.combine(mean, change) { try $0 + $1 * scale }
        }
        table = rows
        tableMean = mean
        lastSampledIndices = [j]
        stepCount += 1
    }

    /// (1/n) Σⱼ αⱼ, summed in sample order.
    private func exactMean(_ rows: [[Tensor]]) throws -> [Tensor] {
        let scale = Float(1 / Double(rows.count))
        return try withoutGradients {
            try (0..<engine.parameters.count).map { k in
                var sum = rows[0][k]
                for row in rows.dropFirst() { sum = try sum + row[k] }
                return try sum * scale
            }
        }
    }

    /// Scalars "step", "lr", "sample_count", "seed_low", "seed_high"; once the table exists,
    /// tensors "<k>.gradient_table" ([n] + the parameter's shape) and "<k>.gradient_mean".
    public func stateDictionary() throws -> OptimizerState {
        var scalars: [String: Double] = ["step": Double(stepCount), "lr": learningRate,
                                         "sample_count": Double(engine.sampleCount)]
        scalars.merge(OptimizerStateReader.seedEntries(seed)) { $1 }
        var tensors: [String: Tensor] = [:]
        if let table, let tableMean {
            let stacked = try withoutGradients {
                try (0..<parameters.count).map { k in try Tensor.stacked(table.map { $0[k] }, axis: 0) }
            }
            tensors.merge(try OptimizerStateReader.pieceEntries("gradient_table", stacked)) { $1 }
            tensors.merge(try OptimizerStateReader.pieceEntries("gradient_mean", tableMean)) { $1 }
        }
        return OptimizerState(tensors: tensors, scalars: scalars)
    }

    /// Restores a state from `stateDictionary()`; the sample count must match.
    /// - Throws: `TensorError` for a missing, non-finite or mismatched entry; nothing changes then.
    public func loadStateDictionary(_ state: OptimizerState) throws {
        let r = OptimizerStateReader(op: "SAGA", state: state)
        let step = try r.integer("step")
        let lr = try r.learningRate(positive: true)
        let n = try r.integer("sample_count", minimum: 1, expected: engine.sampleCount)
        let newSeed = try r.seed()
        var rows: [[Tensor]]? = nil, mean: [Tensor]? = nil
        if r.has("gradient_table") || r.has("gradient_mean") || step > 0 {
            let stacked = try r.pieces("gradient_table", leading: [n], parameters: parameters, on: engine.backend)
            mean = try r.pieces("gradient_mean", parameters: parameters, on: engine.backend)
            let columns = try withoutGradients {
                try zip(stacked, parameters).map { s, p in
                    try s.split(size: 1, axis: 0).map { try $0.reshaped(to: p.shape) }
                }
            }
            rows = (0..<n).map { j in columns.map { $0[j] } }
        }
        stepCount = step
        learningRate = lr
        seed = newSeed
        table = rows
        tableMean = mean
        lastSampledIndices = []
    }
}
