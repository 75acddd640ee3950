import Foundation
import KilnCore

/// Cosine annealing: η(t) = η_min + (η₀ − η_min)·(1 + cos(πt/T))/2 with T = tMax
/// (`torch.optim.lr_scheduler.CosineAnnealingLR`, closed form; the seeds' cosine decay).
///
/// η falls from η₀ at t = 0 to η_min at t = T. Past T the cosine goes on, so η rises again
/// towards η₀ at 2T, as in PyTorch; to hold η_min, follow it with `ConstantLR` in a `SequentialLR`.
public final class CosineAnnealingLR: CoreScheduler {
    /// T, the epochs from η₀ down to η_min.
    public let tMax: Int
    /// η_min, the lowest rate.
    public let etaMin: Double
    var core: SchedulerCore

    /// - Throws: `TensorError` naming `CosineAnnealingLR` for tMax < 1 or η_min not finite and ≥ 0.
    public init(optimizer: any Optimizer, tMax: Int, etaMin: Double = 0) throws {
        try require(tMax >= 1, "CosineAnnealingLR", "tMax must be ≥ 1, got \(tMax)")
        try require(etaMin.isFinite && etaMin >= 0, "CosineAnnealingLR", "etaMin must be finite and ≥ 0, got \(etaMin)")
        self.tMax = tMax
        self.etaMin = etaMin
        core = try SchedulerCore("CosineAnnealingLR", optimizer)
        try begin()
    }

    public func learningRate(at step: Int) -> Double {
        cosineAnneal(from: core.base, to: etaMin, Double(max(step, 0)) / Double(tMax))
    }

    var hyperparameters: [String: Double] { ["T_max": Double(tMax), "eta_min": etaMin] }
    public var optimizer: any Optimizer { core.optimizer }
    public var baseLearningRate: Double { core.base }
    public var lastEpoch: Int { core.lastEpoch }
    public var currentLearningRate: Double { core.current }
    public func step() throws { try advance() }
    public func stateDictionary() -> [String: Double] { savedState() }
    public func loadStateDictionary(_ state: [String: Double]) throws { try restore(state) }
}

/// end + (start − end)·(1 + cos(π·fraction))/2: start at fraction 0, end at 1.
func cosineAnneal(from start: Double, to end: Double, _ fraction: Double) -> Double {
    let c: Double = 1 + cos(Double.pi * fraction)
    return end + (start - end) * c / 2
}

/// SGDR, cosine annealing with warm restarts (Loshchilov & Hutter;
/// `torch.optim.lr_scheduler.CosineAnnealingWarmRestarts`):
/// η(t) = η_min + (η₀ − η_min)·(1 + cos(π·T_cur/T_i))/2.
///
/// Cycle i lasts T_i = T₀·T_mult^i epochs; T_cur counts the epochs since the last restart. With
/// T₀ = 10 and T_mult = 2, η restarts at η₀ at epochs 10, 30, 70, ...
public final class CosineAnnealingWarmRestarts: CoreScheduler {
    /// T₀, the length of the first cycle.
    public let t0: Int
    /// T_mult, the growth of each cycle over the last.
    public let tMult: Int
    /// η_min, the lowest rate.
    public let etaMin: Double
    var core: SchedulerCore

    /// - Throws: `TensorError` naming `CosineAnnealingWarmRestarts` for t0 < 1, tMult < 1 or
    ///   η_min not finite and ≥ 0.
    public init(optimizer: any Optimizer, t0: Int, tMult: Int = 1, etaMin: Double = 0) throws {
        let op = "CosineAnnealingWarmRestarts"
        try require(t0 >= 1, op, "t0 must be ≥ 1, got \(t0)")
        try require(tMult >= 1, op, "tMult must be ≥ 1, got \(tMult)")
        try require(etaMin.isFinite && etaMin >= 0, op, "etaMin must be finite and ≥ 0, got \(etaMin)")
        self.t0 = t0
        self.tMult = tMult
        self.etaMin = etaMin
        core = try SchedulerCore(op, optimizer)
        try begin()
    }

    /// (T_cur, T_i) at epoch `step`.
    func cycle(at step: Int) -> (current: Int, length: Int) {
        var t = max(step, 0)
        if tMult == 1 { return (t % t0, t0) }
        var length = t0
        while t >= length {
            t -= length
            let (next, overflow) = length.multipliedReportingOverflow(by: tMult)
            length = overflow ? Int.max : next
        }
        return (t, length)
    }

    public func learningRate(at step: Int) -> Double {
        let (current, length) = cycle(at: step)
        return cosineAnneal(from: core.base, to: etaMin, Double(current) / Double(length))
    }

    var hyperparameters: [String: Double] { ["T_0": Double(t0), "T_mult": Double(tMult), "eta_min": etaMin] }
    public var optimizer: any Optimizer { core.optimizer }
    public var baseLearningRate: Double { core.base }
    public var lastEpoch: Int { core.lastEpoch }
    public var currentLearningRate: Double { core.current }
    public func step() throws { try advance() }
    public func stateDictionary() -> [String: Double] { savedState() }
    public func loadStateDictionary(_ state: [String: Double]) throws { try restore(state) }
}
