import KilnCore

// Schedules made of other closed-form schedules on one optimizer. The composite evaluates its
// children's `learningRate(at:)` and sets the rate itself: step only the composite (the children's
// `lastEpoch` stays where it was). Its state holds the children's under the prefixes "0.", "1.", ...

/// Runs schedule i from milestone i−1 on, restarted at its own epoch 0:
/// η(t) = η_k(t − m_(k−1)) with k the number of milestones ≤ t and m_(−1) = 0
/// (`torch.optim.lr_scheduler.SequentialLR`).
///
/// Example: ConstantLR(factor: 0.1, totalIters: 2) then ExponentialLR(gamma: 0.9) at milestone 2,
/// from 1, gives 0.1, 0.1, 1, 0.9, 0.81, ... PyTorch restarts a schedule without a
/// closed form from the rate the previous one left; Kiln's children all have one.
public final class SequentialLR: CompositeScheduler {
    /// The schedules, in the order they run.
    public let schedulers: [any ClosedFormScheduler]
    /// The epochs at which the next schedule takes over.
    public let milestones: [Int]
    var core: SchedulerCore

    /// - Throws: `TensorError` naming `SequentialLR` for no schedulers, a milestone count other than
    ///   schedulers − 1, milestones not ≥ 1 and strictly increasing, or schedulers on different optimizers.
    public init(schedulers: [any ClosedFormScheduler], milestones: [Int]) throws {
        try require(!schedulers.isEmpty, "SequentialLR", "needs at least one scheduler")
        try require(milestones.count == schedulers.count - 1, "SequentialLR",
                    "needs one milestone fewer than schedulers, got \(schedulers.count) schedulers and milestones \(milestones)")
        if !milestones.isEmpty { try checkMilestones(milestones, "SequentialLR") }
        try checkSameOptimizer(schedulers, "SequentialLR")
        self.schedulers = schedulers
        self.milestones = milestones
        core = try SchedulerCore("SequentialLR", schedulers[0].optimizer, base: schedulers[0].baseLearningRate)
        try begin()
    }

    public func learningRate(at step: Int) -> Double {
        let t = max(step, 0)
        let k = milestones.prefix { $0 <= t }.count
        return schedulers[k].learningRate(at: k == 0 ? t : t - milestones[k - 1])
    }

    var children: [any ClosedFormScheduler] { schedulers }
    var hyperparameters: [String: Double] {
        var h = ["schedulers": Double(schedulers.count)]
        for (i, m) in milestones.enumerated() { h["milestones.\(i)"] = Double(m) }
        return h
    }
    public var optimizer: any Optimizer { core.optimizer }
    public var baseLearningRate: Double { core.base }
    public var lastEpoch: Int { core.lastEpoch }
    public var currentLearningRate: Double { core.current }
    public func step() throws { try advance() }
    public func stateDictionary() -> [String: Double] { compositeState() }
    public func loadStateDictionary(_ state: [String: Double]) throws { try restoreComposite(state) }
}

/// Applies several schedules at once, multiplying their factors:
/// η(t) = η_1(t)·Π_(i≥2) η_i(t)/η_i,0, with η_i,0 schedule i's base rate
/// (`torch.optim.lr_scheduler.ChainedScheduler`).
///
/// For PyTorch's multiplicative schedules (ConstantLR, StepLR, MultiStepLR, ExponentialLR,
/// LinearLR, LambdaLR, MultiplicativeLR, cosine with η_min = 0 before T_max) this equals PyTorch's
/// chained result; for the additive ones (η_min ≠ 0, CyclicLR) it is the product defined here.
/// Example: ConstantLR(factor: 0.1, totalIters: 2) with ExponentialLR(gamma: 0.9) from 1 gives
/// 0.1, 0.09, 0.81, 0.729, ...
public final class ChainedScheduler: CompositeScheduler {
    /// The schedules whose factors multiply.
    public let schedulers: [any ClosedFormScheduler]
    var core: SchedulerCore

    /// - Throws: `TensorError` naming `ChainedScheduler` for no schedulers, schedulers on different
    ///   optimizers, or a base rate of 0 after the first (its factor would be undefined).
    public init(schedulers: [any ClosedFormScheduler]) throws {
        try require(!schedulers.isEmpty, "ChainedScheduler", "needs at least one scheduler")
        try checkSameOptimizer(schedulers, "ChainedScheduler")
        for (i, s) in schedulers.enumerated().dropFirst() {
            try require(s.baseLearningRate > 0, "ChainedScheduler",
                        "scheduler \(i) has base learning rate \(s.baseLearningRate); its factor η(t)/η₀ needs η₀ > 0")
        }
        self.schedulers = schedulers
        core = try SchedulerCore("ChainedScheduler", schedulers[0].optimizer, base: schedulers[0].baseLearningRate)
        try begin()
    }

    public func learningRate(at step: Int) -> Double {
        var rate = schedulers[0].learningRate(at: step)
        for s in schedulers.dropFirst() { rate *= s.learningRate(at: step) / s.baseLearningRate }
        return rate
    }

    var children: [any ClosedFormScheduler] { schedulers }
    var hyperparameters: [String: Double] { ["schedulers": Double(schedulers.count)] }
    public var optimizer: any Optimizer { core.optimizer }
    public var baseLearningRate: Double { core.base }
    public var lastEpoch: Int { core.lastEpoch }
    public var currentLearningRate: Double { core.current }
    public func step() throws { try advance() }
    public func stateDictionary() -> [String: Double] { compositeState() }
    public func loadStateDictionary(_ state: [String: Double]) throws { try restoreComposite(state) }
}

func checkSameOptimizer(_ schedulers: [any ClosedFormScheduler], _ op: String) throws {
    let optimizer = schedulers[0].optimizer
    for (i, s) in schedulers.enumerated() {
        try require(s.optimizer === optimizer, op, "scheduler \(i) sets another optimizer than scheduler 0")
    }
}

/// A closed-form scheduler made of others; saves and loads their states with its own.
protocol CompositeScheduler: CoreScheduler {
    var children: [any ClosedFormScheduler] { get }
}

extension CompositeScheduler {
    func compositeState() -> [String: Double] {
        var s = savedState()
        for (i, child) in children.enumerated() {
            for (key, value) in child.stateDictionary() { s["\(i).\(key)"] = value }
        }
        return s
    }

    /// Validates its own part, then loads the children in order, putting back those already
    /// loaded if a later one throws, then applies its own part.
    func restoreComposite(_ state: [String: Double]) throws {
        var own = [String: Double]()
        var parts = Array(repeating: [String: Double](), count: children.count)
        for (key, value) in state {
            if let dot = key.firstIndex(of: "."), let i = Int(key[..<dot]), String(i) == key[..<dot],
               children.indices.contains(i) {
                parts[i][String(key[key.index(after: dot)...])] = value
            } else {
                own[key] = value
            }
        }
        let v = try core.validated(own, hyperparameters)
        let before = children.map { $0.stateDictionary() }
        let rateBefore = core.optimizer.learningRate
        for (i, child) in children.enumerated() {
            do {
                try child.loadStateDictionary(parts[i])
            } catch {
                for j in 0..<i { try? children[j].loadStateDictionary(before[j]) }
                LearningRateLedger.shared.write(rateBefore, to: core.optimizer)
                throw error
            }
        }
        core.apply(v)
    }
}
