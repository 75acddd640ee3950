import KilnCore

// Variance-reduced optimizers for finite sums F(θ) = (1/n) Σᵢ fᵢ(θ): the objective type, the
// deterministic sampling they share, the gradient machinery (gradients at the current parameters
// or at a stored point) and SVRG. SARAH and SPIDER are in VarianceReduced+Recursive.swift, SAGA in
// VarianceReduced+SAGA.swift.

/// A finite-sum objective F(θ) = (1/n) Σᵢ fᵢ(θ) over `sampleCount` samples, for the
/// variance-reduced optimizers (`SVRG`, `SARAH`, `SPIDER`, `SAGA`).
///
/// `loss(indices)` returns the **mean** of fᵢ over `indices` (a repeated index counts twice) as a
/// one-element tensor computed from the parameters' current values with gradients recorded; the
/// optimizers zero the parameters' gradients, call it, run `backward()` and read the gradients.
/// To evaluate at a stored point they assign that point to the parameters and restore the values
/// afterwards, so the closure must read `parameter.value` each time it is called.
public struct FiniteSumObjective {
    /// n, the number of samples.
    public let sampleCount: Int
    /// The most samples one `loss` call receives when a full gradient is computed (nil: all n in
    /// one call). Larger sets are split into consecutive chunks whose gradients are averaged with
    /// weights |chunk|/n.
    public let maximumBatchSize: Int?
    /// The mean loss of the samples at the given indices, at the parameters' current values.
    public let loss: ([Int]) throws -> Tensor

    /// - Throws: `TensorError.invalidArgument` when `sampleCount` < 1 or `maximumBatchSize` < 1.
    public init(sampleCount: Int, maximumBatchSize: Int? = nil, loss: @escaping ([Int]) throws -> Tensor) throws {
        guard sampleCount >= 1, sampleCount <= Int(UInt32.max) else {
            throw TensorError(.invalidArgument, op: "FiniteSumObjective",
                              "sampleCount must lie in 1...\(UInt32.max), got \(sampleCount)")
        }
        if let m = maximumBatchSize, m < 1 {
            throw TensorError(.invalidArgument, op: "FiniteSumObjective", "maximumBatchSize must be ≥ 1, got \(m)")
        }
        self.sampleCount = sampleCount
        self.maximumBatchSize = maximumBatchSize
        self.loss = loss
    }

    /// The sample indices the variance-reduced optimizers draw for step `draw` (0-based step
    /// count): `count` indices uniform on 0..<`sampleCount`, with replacement.
    ///
    /// Index j comes from word j mod 4 of the Philox-4x32-10 block with key `seed` and counter
    /// (⌊j/4⌋, draw low 32 bits, draw high 32 bits, 0), mapped to ⌊w·n / 2³²⌋ (multiply-shift; the
    /// bias is below n/2³²). Host integer arithmetic only, so every backend draws the same indices.
    public static func sampledIndices(seed: UInt64, draw: Int, count: Int, sampleCount: Int) -> [Int] {
        let d = UInt64(truncatingIfNeeded: draw)
        let n = UInt64(Swift.max(sampleCount, 0))
        var out: [Int] = []
        out.reserveCapacity(Swift.max(count, 0))
        var block: (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)
        for j in 0..<Swift.max(count, 0) {
            if j % 4 == 0 {
                block = Philox.block(counter: (UInt32(truncatingIfNeeded: j / 4), UInt32(truncatingIfNeeded: d),
                                               UInt32(truncatingIfNeeded: d >> 32), 0), seed: seed)
            }
            let w: UInt32 = [block.0, block.1, block.2, block.3][j % 4]
            out.append(Int((UInt64(w) &* n) >> 32))
        }
        return out
    }
}

/// The gradient machinery the variance-reduced optimizers share. Vectors are per-parameter lists
/// of tensors shaped like the parameters (the concatenated parameter vector, kept in pieces).
final class FiniteSumEngine {
    let op: String
    let parameters: [Parameter]
    let objective: FiniteSumObjective
    let backend: any Backend

    init(op: String, parameters: [Parameter], objective: FiniteSumObjective) throws {
        guard let first = parameters.first else {
            throw TensorError(.invalidArgument, op: op, "needs at least one parameter")
        }
        for p in parameters where p.value.backend !== first.value.backend {
            throw TensorError(.backendMismatch, op: op,
                              "parameters live on different backends (\(first.value.backend.name) and \(p.value.backend.name))")
        }
        self.op = op
        self.parameters = parameters
        self.objective = objective
        backend = first.value.backend
    }

    var sampleCount: Int { objective.sampleCount }

    /// The parameters' current values (immutable: optimizer steps replace them).
    func values() -> [Tensor] { parameters.map { $0.value.detached() } }

    /// ∇ of the mean loss over `indices` at the current values, per parameter. The gradient also
    /// stays accumulated in the parameters (zeroed first). A parameter the loss does not reach
    /// gets zeros.
    func gradient(_ indices: [Int]) throws -> [Tensor] {
        for p in parameters { p.zeroGradient() }
        _ = try LossEvaluation.backpropagate({ try objective.loss(indices) }, op: op)
        return try parameters.map { p in try p.gradient ?? Tensor.zeros(p.shape, on: backend) }
    }

    /// ∇ of the mean loss over `indices` at `point`; the parameters' values are restored afterwards
    /// (their gradients then hold this gradient).
    func gradient(_ indices: [Int], at point: [Tensor]) throws -> [Tensor] {
        let saved = values()
        try assign(point, keepingGradient: false)
        let result = Result { try gradient(indices) }
        try assign(saved, keepingGradient: true)
        return try result.get()
    }

    /// ∇F = (1/n) Σᵢ ∇fᵢ at the current values, in chunks of `objective.maximumBatchSize`; the
    /// parameters' gradients are set to it.
    func fullGradient() throws -> [Tensor] {
        let n = sampleCount
        let chunk = Swift.min(objective.maximumBatchSize ?? n, n)
        var total: [Tensor]? = nil
        if chunk == n {
            total = try gradient(Array(0..<n))
        } else {
            for start in stride(from: 0, to: n, by: chunk) {
                let indices = Array(start..<Swift.min(start + chunk, n))
                let weight = Float(Double(indices.count) / Double(n))
                let part = try withoutGradients { try gradient(indices).map { try $0 * weight } }
                total = try total.map { try combine($0, part) { try $0 + $1 } } ?? part
            }
        }
        let result = total!
        for (p, g) in zip(parameters, result) { try p.setGradient(g) }
        return result
    }

    /// Elementwise `f(a[k], b[k])` for every parameter piece, without recording gradients.
    func combine(_ a: [Tensor], _ b: [Tensor], _ f: (Tensor, Tensor) throws -> Tensor) throws -> [Tensor] {
        try withoutGradients { try zip(a, b).map { try f($0, $1) } }
    }

    /// ‖v‖₂ over all pieces (read back to the host).
    func norm(_ v: [Tensor]) throws -> Double {
        let squares = try withoutGradients { try v.map { try square($0).sum().item() } }
        return squares.reduce(0) { $0 + Double($1) }.squareRoot()
    }

    /// θ ← θ − η·d for every parameter with the fused `.sgd` rule; the accumulated gradients stay.
    func descend(_ direction: [Tensor], stepSize: Double) throws {
        let update = FusedUpdate(.sgd, [Float(stepSize)])
        let next = try withoutGradients {
            try zip(parameters, direction).map {
                try Tensor.fusedOptimizerUpdate(update, parameter: $0.value.detached(), gradient: $1, state: [])
            }
        }
        try assign(next, keepingGradient: true)
    }

    func assign(_ values: [Tensor], keepingGradient: Bool) throws {
        try withoutGradients {
            for (p, v) in zip(parameters, values) { try p.assign(v, keepingGradient: keepingGradient) }
        }
    }

    func requireLearningRate(_ rate: Double) throws { try checkHyperparameter(op, "learning rate", rate, above: 0) }
}

/// Stochastic variance-reduced gradient (Johnson & Zhang, "Accelerating Stochastic Gradient
/// Descent using Predictive Variance Reduction", NIPS 2013), with mini-batches.
///
/// Every `updateFrequency` steps (m; steps 0, m, 2m, …) it takes a snapshot θ̃ = θ and its full
/// gradient μ = ∇F(θ̃). Each step then draws a batch B (see `FiniteSumObjective.sampledIndices`,
/// draw = step count) and moves
///
///     v = ∇f_B(θ) − ∇f_B(θ̃) + μ,   θ ← θ − η·v,
///
/// where ∇f_B is the gradient of the batch-mean loss. On a snapshot step θ = θ̃, so v = μ exactly
/// and the batch is not evaluated (the paper's first inner step, w₁ = w₀ − η·μ̃). The snapshot is
/// the last inner iterate (the paper's option I). After `step()` the parameters' gradients hold
/// ∇f_B(θ) (∇F(θ) on a snapshot step) at the pre-step values. Cost per epoch of m = n/b steps:
/// n + 2·(m − 1)·b sample gradients. Memory: two parameter-sized vectors (θ̃ and μ).
public final class SVRG: Optimizer {
    public let parameters: [Parameter]
    /// η.
    public var learningRate: Double
    public private(set) var stepCount = 0
    /// b, the samples per stochastic gradient.
    public let batchSize: Int
    /// m, the steps between snapshots.
    public let updateFrequency: Int
    /// The key of the index stream.
    public private(set) var seed: UInt64
    /// The batch the last step drew (empty on a snapshot step).
    public private(set) var lastSampledIndices: [Int] = []

    let engine: FiniteSumEngine
    private var snapshot: [Tensor]?
    private var snapshotGradient: [Tensor]?

    /// - Parameters:
    ///   - learningRate: η > 0.
    ///   - batchSize: b ≥ 1 (default 1, the paper's single-sample form).
    ///   - updateFrequency: m ≥ 1; nil gives one epoch, max(1, ⌊n / b⌋) (the paper uses 2n for
    ///     convex problems).
    ///   - seed: the Philox key of the sample indices.
    /// - Throws: `TensorError.invalidArgument` naming the invalid value; `.backendMismatch` when
    ///   the parameters live on several backends.
    public init(parameters: [Parameter], objective: FiniteSumObjective, learningRate: Double,
                batchSize: Int = 1, updateFrequency: Int? = nil, seed: UInt64 = 0) throws {
        engine = try FiniteSumEngine(op: "SVRG", parameters: parameters, objective: objective)
        try engine.requireLearningRate(learningRate)
        guard batchSize >= 1 else { throw TensorError(.invalidArgument, op: "SVRG", "batchSize must be ≥ 1, got \(batchSize)") }
        if let m = updateFrequency, m < 1 {
            throw TensorError(.invalidArgument, op: "SVRG", "updateFrequency must be ≥ 1, got \(m)")
        }
        self.parameters = parameters
        self.learningRate = learningRate
        self.batchSize = batchSize
        self.updateFrequency = updateFrequency ?? Swift.max(1, objective.sampleCount / batchSize)
        self.seed = seed
    }

    public func step() throws {
        try engine.requireLearningRate(learningRate)
        let t = stepCount
        if let snapshot, let mu = snapshotGradient, t % updateFrequency != 0 {
            let indices = FiniteSumObjective.sampledIndices(seed: seed, draw: t, count: batchSize,
                                                            sampleCount: engine.sampleCount)
            let atSnapshot = try engine.gradient(indices, at: snapshot)
            let current = try engine.gradient(indices)
            let v = try engine.combine(try engine.combine(current, atSnapshot) { try $0 - $1 }, mu) { try $0 + $1 }
            try engine.descend(v, stepSize: learningRate)
            lastSampledIndices = indices
        } else {
            let point = engine.values()
            let mu = try engine.fullGradient()
            try engine.descend(mu, stepSize: learningRate)
            snapshot = point
            snapshotGradient = mu
            lastSampledIndices = []
        }
        stepCount += 1
    }

    /// Scalars "step", "lr", "batch_size", "update_frequency", "sample_count", "seed_low",
    /// "seed_high"; tensors "<k>.snapshot" (θ̃) and "<k>.snapshot_gradient" (μ) once a snapshot exists.
    public func stateDictionary() throws -> OptimizerState {
        var scalars: [String: Double] = ["step": Double(stepCount), "lr": learningRate, "batch_size": Double(batchSize),
                                         "update_frequency": Double(updateFrequency),
                                         "sample_count": Double(engine.sampleCount)]
        scalars.merge(OptimizerStateReader.seedEntries(seed)) { $1 }
        var tensors: [String: Tensor] = [:]
        if let snapshot, let snapshotGradient {
            tensors.merge(try OptimizerStateReader.pieceEntries("snapshot", snapshot)) { $1 }
            tensors.merge(try OptimizerStateReader.pieceEntries("snapshot_gradient", snapshotGradient)) { $1 }
        }
        return OptimizerState(tensors: tensors, scalars: scalars)
    }

    /// Restores a state from `stateDictionary()`; the batch size, update frequency and sample count
    /// must match this optimizer's.
    /// - Throws: `TensorError` for a missing, non-finite or mismatched entry; nothing changes then.
    public func loadStateDictionary(_ state: OptimizerState) throws {
        let r = OptimizerStateReader(op: "SVRG", state: state)
        let step = try r.integer("step")
        let lr = try r.learningRate(positive: true)
        _ = try r.integer("batch_size", minimum: 1, expected: batchSize)
        _ = try r.integer("update_frequency", minimum: 1, expected: updateFrequency)
        _ = try r.integer("sample_count", minimum: 1, expected: engine.sampleCount)
        let newSeed = try r.seed()
        var point: [Tensor]? = nil, mu: [Tensor]? = nil
        if r.has("snapshot") || r.has("snapshot_gradient") || step > 0 {
            point = try r.pieces("snapshot", parameters: parameters, on: engine.backend)
            mu = try r.pieces("snapshot_gradient", parameters: parameters, on: engine.backend)
        }
        stepCount = step
        learningRate = lr
        seed = newSeed
        snapshot = point
        snapshotGradient = mu
        lastSampledIndices = []
    }
}
