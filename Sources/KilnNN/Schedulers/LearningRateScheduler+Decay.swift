import Foundation
import KilnCore

// Schedules that multiply the base rate η₀ by a factor of the epoch t.

/// η(t) = η₀·factor for t < totalIters, η₀ after (`torch.optim.lr_scheduler.ConstantLR`, same
/// defaults). `ConstantLR.fixed(_:)` is the fixed schedule η(t) = η₀.
public final class ConstantLR: CoreScheduler {
    /// The factor of the first totalIters epochs.
    public let factor: Double
    /// Epochs at the reduced rate.
    public let totalIters: Int
    var core: SchedulerCore

    /// - Throws: `TensorError` naming `ConstantLR` for a factor outside [0, 1] or totalIters < 0.
    public init(optimizer: any Optimizer, factor: Double = 1.0 / 3, totalIters: Int = 5) throws {
        try require(factor >= 0 && factor <= 1, "ConstantLR", "factor must lie in [0, 1], got \(factor)")
        try require(totalIters >= 0, "ConstantLR", "totalIters must be ≥ 0, got \(totalIters)")
        self.factor = factor
        self.totalIters = totalIters
        core = try SchedulerCore("ConstantLR", optimizer)
        try begin()
    }

    /// The fixed learning rate η(t) = η₀ (factor 1, totalIters 0).
    public static func fixed(_ optimizer: any Optimizer) throws -> ConstantLR {
        try ConstantLR(optimizer: optimizer, factor: 1, totalIters: 0)
    }

    public func learningRate(at step: Int) -> Double {
        step < totalIters ? core.base * factor : core.base
    }

    var hyperparameters: [String: Double] { ["factor": factor, "total_iters": Double(totalIters)] }
    public var optimizer: any Optimizer { core.optimizer }
    public var baseLearningRate: Double { core.base }
    public var lastEpoch: Int { core.lastEpoch }
    public var currentLearningRate: Double { core.current }
    public func step() throws { try advance() }
    public func stateDictionary() -> [String: Double] { savedState() }
    public func loadStateDictionary(_ state: [String: Double]) throws { try restore(state) }
}

/// Step decay: η(t) = η₀·γ^⌊t/stepSize⌋ (`torch.optim.lr_scheduler.StepLR`, γ = 0.1 by default).
/// StepLR(stepSize: 10) from 0.1 gives 0.1 for epochs 0–9, 0.01 for 10–19, ...
public final class StepLR: CoreScheduler {
    /// Epochs between decays.
    public let stepSize: Int
    /// The decay factor γ.
    public let gamma: Double
    var core: SchedulerCore

    /// - Throws: `TensorError` naming `StepLR` for stepSize < 1 or γ not finite and > 0.
    public init(optimizer: any Optimizer, stepSize: Int, gamma: Double = 0.1) throws {
        try require(stepSize >= 1, "StepLR", "stepSize must be ≥ 1, got \(stepSize)")
        try require(gamma.isFinite && gamma > 0, "StepLR", "gamma must be finite and > 0, got \(gamma)")
        self.stepSize = stepSize
        self.gamma = gamma
        core = try SchedulerCore("StepLR", optimizer)
        try begin()
    }

    public func learningRate(at step: Int) -> Double {
        core.base * pow(gamma, Double(max(step, 0) / stepSize))
    }

    var hyperparameters: [String: Double] { ["step_size": Double(stepSize), "gamma": gamma] }
    public var optimizer: any Optimizer { core.optimizer }
    public var baseLearningRate: Double { core.base }
    public var lastEpoch: Int { core.lastEpoch }
    public var currentLearningRate: Double { core.current }
    public func step() throws { try advance() }
    public func stateDictionary() -> [String: Double] { savedState() }
    public func loadStateDictionary(_ state: [String: Double]) throws { try restore(state) }
}

/// η(t) = η₀·γ^k with k the number of milestones ≤ t (`torch.optim.lr_scheduler.MultiStepLR`).
/// MultiStepLR(milestones: [30, 80]) from 0.05 gives 0.05 before epoch 30, 0.005 before 80, 0.0005 after.
public final class MultiStepLR: CoreScheduler {
    /// The epochs at which the rate decays, strictly increasing.
    public let milestones: [Int]
    /// The decay factor γ.
    public let gamma: Double
    var core: SchedulerCore

    /// - Throws: `TensorError` naming `MultiStepLR` for milestones that are empty, not ≥ 1 or not
    ///   strictly increasing (PyTorch sorts and counts repeats; Kiln asks for them in order), or γ
    ///   not finite and > 0.
    public init(optimizer: any Optimizer, milestones: [Int], gamma: Double = 0.1) throws {
        try checkMilestones(milestones, "MultiStepLR")
        try require(gamma.isFinite && gamma > 0, "MultiStepLR", "gamma must be finite and > 0, got \(gamma)")
        self.milestones = milestones
        self.gamma = gamma
        core = try SchedulerCore("MultiStepLR", optimizer)
        try begin()
    }

    public func learningRate(at step: Int) -> Double {
        let passed = milestones.prefix { $0 <= step }.count
        return core.base * pow(gamma, Double(passed))
    }

    var hyperparameters: [String: Double] {
        var h = ["gamma": gamma, "milestones": Double(milestones.count)]
        for (i, m) in milestones.enumerated() { h["milestones.\(i)"] = Double(m) }
        return h
    }
    public var optimizer: any Optimizer { core.optimizer }
    public var baseLearningRate: Double { core.base }
    public var lastEpoch: Int { core.lastEpoch }
    public var currentLearningRate: Double { core.current }
    public func step() throws { try advance() }
    public func stateDictionary() -> [String: Double] { savedState() }
    public func loadStateDictionary(_ state: [String: Double]) throws { try restore(state) }
}

/// Milestones must be non-empty, ≥ 1 and strictly increasing.
func checkMilestones(_ milestones: [Int], _ op: String) throws {
    try require(!milestones.isEmpty, op, "milestones must not be empty")
    try require(milestones[0] >= 1, op, "milestones must be ≥ 1, got \(milestones)")
    try require(zip(milestones, milestones.dropFirst()).allSatisfy { $0 < $1 }, op,
                "milestones must be strictly increasing, got \(milestones)")
}

/// Exponential decay: η(t) = η₀·γ^t (`torch.optim.lr_scheduler.ExponentialLR`).
public final class ExponentialLR: CoreScheduler {
    /// The decay factor γ per epoch.
    public let gamma: Double
    var core: SchedulerCore

    /// - Throws: `TensorError` naming `ExponentialLR` for γ not finite and > 0.
    public init(optimizer: any Optimizer, gamma: Double) throws {
        try require(gamma.isFinite && gamma > 0, "ExponentialLR", "gamma must be finite and > 0, got \(gamma)")
        self.gamma = gamma
        core = try SchedulerCore("ExponentialLR", optimizer)
        try begin()
    }

    public func learningRate(at step: Int) -> Double { core.base * pow(gamma, Double(max(step, 0))) }

    var hyperparameters: [String: Double] { ["gamma": gamma] }
    public var optimizer: any Optimizer { core.optimizer }
    public var baseLearningRate: Double { core.base }
    public var lastEpoch: Int { core.lastEpoch }
    public var currentLearningRate: Double { core.current }
    public func step() throws { try advance() }
    public func stateDictionary() -> [String: Double] { savedState() }
    public func loadStateDictionary(_ state: [String: Double]) throws { try restore(state) }
}

/// Linear warmup or cool-down: η(t) = η₀·(s + (e − s)·min(t, T)/T) with start factor s, end
/// factor e and T = totalIters (`torch.optim.lr_scheduler.LinearLR`, same defaults s = 1/3,
/// e = 1, T = 5). s = 0 gives the seeds' warmup η₀·t/T; e < s cools down.
///
/// PyTorch asks for s in (0, 1] because its recursive form divides by the previous factor; Kiln
/// uses the closed form and also takes s = 0.
public final class LinearLR: CoreScheduler {
    /// s, the factor at epoch 0.
    public let startFactor: Double
    /// e, the factor from epoch totalIters on.
    public let endFactor: Double
    /// T, the epochs of the ramp.
    public let totalIters: Int
    var core: SchedulerCore

    /// - Throws: `TensorError` naming `LinearLR` for a factor outside [0, 1] or totalIters < 1.
    public convenience init(optimizer: any Optimizer, startFactor: Double = 1.0 / 3, endFactor: Double = 1,
                            totalIters: Int = 5) throws {
        try self.init(optimizer: optimizer, startFactor: startFactor, endFactor: endFactor,
                      totalIters: totalIters, base: nil)
    }

    /// `base` nil takes the optimizer's.
    init(optimizer: any Optimizer, startFactor: Double, endFactor: Double, totalIters: Int, base: Double?) throws {
        try require(startFactor >= 0 && startFactor <= 1, "LinearLR", "startFactor must lie in [0, 1], got \(startFactor)")
        try require(endFactor >= 0 && endFactor <= 1, "LinearLR", "endFactor must lie in [0, 1], got \(endFactor)")
        try require(totalIters >= 1, "LinearLR", "totalIters must be ≥ 1, got \(totalIters)")
        self.startFactor = startFactor
        self.endFactor = endFactor
        self.totalIters = totalIters
        core = try SchedulerCore("LinearLR", optimizer, base: base)
        try begin()
    }

    public func learningRate(at step: Int) -> Double {
        let t = Double(min(max(step, 0), totalIters))
        let f: Double = startFactor + (endFactor - startFactor) * t / Double(totalIters)
        return core.base * f
    }

    var hyperparameters: [String: Double] {
        ["start_factor": startFactor, "end_factor": endFactor, "total_iters": Double(totalIters)]
    }
    public var optimizer: any Optimizer { core.optimizer }
    public var baseLearningRate: Double { core.base }
    public var lastEpoch: Int { core.lastEpoch }
    public var currentLearningRate: Double { core.current }
    public func step() throws { try advance() }
    public func stateDictionary() -> [String: Double] { savedState() }
    public func loadStateDictionary(_ state: [String: Double]) throws { try restore(state) }
}

/// η(t) = η₀·λ(t) for a closure λ (`torch.optim.lr_scheduler.LambdaLR`). λ should be a pure
/// function of the epoch; it is not saved with the state.
public final class LambdaLR: CoreScheduler {
    /// λ: epoch → factor of η₀.
    public let factor: (Int) -> Double
    var core: SchedulerCore

    /// - Throws: `TensorError` naming `LambdaLR` if η₀·λ(0) is not finite and ≥ 0 (and `step()`
    ///   throws likewise for a later epoch).
    public init(optimizer: any Optimizer, factor: @escaping (Int) -> Double) throws {
        self.factor = factor
        core = try SchedulerCore("LambdaLR", optimizer)
        try begin()
    }

    public func learningRate(at step: Int) -> Double { core.base * factor(max(step, 0)) }

    var hyperparameters: [String: Double] { [:] }
    public var optimizer: any Optimizer { core.optimizer }
    public var baseLearningRate: Double { core.base }
    public var lastEpoch: Int { core.lastEpoch }
    public var currentLearningRate: Double { core.current }
    public func step() throws { try advance() }
    public func stateDictionary() -> [String: Double] { savedState() }
    public func loadStateDictionary(_ state: [String: Double]) throws { try restore(state) }
}

/// η(t) = η(t−1)·λ(t), η(0) = η₀, that is η₀·λ(1)·λ(2)···λ(t) multiplied in that order
/// (`torch.optim.lr_scheduler.MultiplicativeLR`). λ should be a pure function of the epoch.
///
/// `learningRate(at:)` continues from the last epoch it evaluated, so stepping costs one λ call
/// per epoch; an earlier epoch is recomputed from η₀.
public final class MultiplicativeLR: CoreScheduler {
    /// λ: epoch → factor of the previous epoch's rate.
    public let factor: (Int) -> Double
    var core: SchedulerCore
    private var memo: (epoch: Int, rate: Double)

    /// - Throws: `TensorError` naming `MultiplicativeLR` for a base rate not finite and ≥ 0.
    public init(optimizer: any Optimizer, factor: @escaping (Int) -> Double) throws {
        self.factor = factor
        core = try SchedulerCore("MultiplicativeLR", optimizer)
        memo = (0, core.base)
        try begin()
    }

    public func learningRate(at step: Int) -> Double {
        let t = max(step, 0)
        if t < memo.epoch { memo = (0, core.base) }
        var rate = memo.rate
        var k = memo.epoch
        while k < t {
            k += 1
            rate *= factor(k)
        }
        memo = (t, rate)
        return rate
    }

    var hyperparameters: [String: Double] { [:] }
    public var optimizer: any Optimizer { core.optimizer }
    public var baseLearningRate: Double { core.base }
    public var lastEpoch: Int { core.lastEpoch }
    public var currentLearningRate: Double { core.current }
    public func step() throws { try advance() }
    public func stateDictionary() -> [String: Double] { savedState() }
    public func loadStateDictionary(_ state: [String: Double]) throws {
        try restore(state)
        memo = (core.lastEpoch, core.current)
    }
}
