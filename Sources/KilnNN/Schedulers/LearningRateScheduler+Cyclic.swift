import Foundation
import KilnCore

// Schedules that set the rate outright between bounds of their own, ignoring the optimizer's rate.
// Both are usually stepped once per batch.

/// Cyclical learning rate (Smith 2017; `torch.optim.lr_scheduler.CyclicLR`, same defaults):
/// η rises linearly from baseLR to maxLR over stepSizeUp steps, falls back over stepSizeDown,
/// and repeats. With cycle c = ⌊1 + t/(up + down)⌋ (from 1) the amplitude (maxLR − baseLR) is
/// scaled by 1 (`triangular`), 1/2^(c−1) (`triangular2`) or γ^t (`expRange`).
///
/// Sets the optimizer's rate to baseLR when made. PyTorch's momentum cycling is left out: the
/// `Optimizer` protocol has no momentum.
public final class CyclicLR: CoreScheduler {
    /// The amplitude scale: 1, 1/2^(c−1), or γ^t.
    public enum Mode: Sendable, Equatable {
        case triangular, triangular2, expRange
    }

    /// The top of the cycle (baseLR, the bottom, is `baseLearningRate`).
    public let maxLR: Double
    /// Steps from baseLR up to maxLR.
    public let stepSizeUp: Int
    /// Steps from maxLR back down to baseLR.
    public let stepSizeDown: Int
    /// How the amplitude shrinks from cycle to cycle.
    public let mode: Mode
    /// The `expRange` decay per step.
    public let gamma: Double
    var core: SchedulerCore

    /// - Parameters:
    ///   - stepSizeDown: nil for stepSizeUp (a symmetric triangle).
    ///   - gamma: the `expRange` decay per step.
    /// - Throws: `TensorError` naming `CyclicLR` for rates not finite and ≥ 0, maxLR < baseLR,
    ///   step sizes < 1, or γ not finite and > 0.
    public init(optimizer: any Optimizer, baseLR: Double, maxLR: Double, stepSizeUp: Int = 2000,
                stepSizeDown: Int? = nil, mode: Mode = .triangular, gamma: Double = 1) throws {
        let down = stepSizeDown ?? stepSizeUp
        try require(baseLR.isFinite && baseLR >= 0, "CyclicLR", "baseLR must be finite and ≥ 0, got \(baseLR)")
        try require(maxLR.isFinite && maxLR >= baseLR, "CyclicLR",
                    "maxLR must be finite and ≥ baseLR \(baseLR), got \(maxLR)")
        try require(stepSizeUp >= 1, "CyclicLR", "stepSizeUp must be ≥ 1, got \(stepSizeUp)")
        try require(down >= 1, "CyclicLR", "stepSizeDown must be ≥ 1, got \(down)")
        try require(gamma.isFinite && gamma > 0, "CyclicLR", "gamma must be finite and > 0, got \(gamma)")
        self.maxLR = maxLR
        self.stepSizeUp = stepSizeUp
        self.stepSizeDown = down
        self.mode = mode
        self.gamma = gamma
        core = try SchedulerCore("CyclicLR", optimizer, base: baseLR)
        try begin()
    }

    public func learningRate(at step: Int) -> Double {
        let t = Double(max(step, 0))
        let total = Double(stepSizeUp + stepSizeDown)
        let upFraction: Double = Double(stepSizeUp) / total
        let cycle: Double = (1 + t / total).rounded(.down)
        let x: Double = 1 + t / total - cycle
        let scale: Double = x <= upFraction ? x / upFraction : (x - 1) / (upFraction - 1)
        let height: Double = (maxLR - core.base) * scale
        switch mode {
        case .triangular: return core.base + height
        case .triangular2: return core.base + height / pow(2, cycle - 1)
        case .expRange: return core.base + height * pow(gamma, t)
        }
    }

    var hyperparameters: [String: Double] {
        let m: Double = mode == .triangular ? 0 : mode == .triangular2 ? 1 : 2
        return ["max_lr": maxLR, "step_size_up": Double(stepSizeUp), "step_size_down": Double(stepSizeDown),
                "mode": m, "gamma": gamma]
    }
    public var optimizer: any Optimizer { core.optimizer }
    public var baseLearningRate: Double { core.base }
    public var lastEpoch: Int { core.lastEpoch }
    public var currentLearningRate: Double { core.current }
    public func step() throws { try advance() }
    public func stateDictionary() -> [String: Double] { savedState() }
    public func loadStateDictionary(_ state: [String: Double]) throws { try restore(state) }
}

/// The 1cycle policy (Smith & Topin; `torch.optim.lr_scheduler.OneCycleLR`, same defaults),
/// stepped once per batch for totalSteps batches.
///
/// From η_init = maxLR/divFactor it anneals up to maxLR by step pctStart·T − 1, then down to
/// η_init/finalDivFactor at step T − 1 (T = totalSteps). With `threePhase` it comes down to η_init
/// by step 2·pctStart·T − 2 and then to η_init/finalDivFactor. Each phase anneals from a to b by
/// b + (a − b)·(1 + cos(π·p))/2 (`cosine`) or a + (b − a)·p (`linear`), p the fraction of the phase
/// done. Sets the optimizer's rate to η_init when made; `baseLearningRate` is η_init.
public final class OneCycleLR: CoreScheduler {
    /// How each phase goes from its start rate to its end rate.
    public enum AnnealStrategy: Sendable, Equatable {
        case cosine, linear
    }

    /// The peak rate.
    public let maxLR: Double
    /// T, the batches of the whole run.
    public let totalSteps: Int
    /// The fraction of T spent rising.
    public let pctStart: Double
    public let annealStrategy: AnnealStrategy
    /// η_init = maxLR/divFactor.
    public let divFactor: Double
    /// The final rate is η_init/finalDivFactor.
    public let finalDivFactor: Double
    /// Whether it comes back down to η_init before the final descent.
    public let threePhase: Bool
    var core: SchedulerCore
    /// (last step, rate at its start, rate at its end) of each phase.
    private let phases: [(end: Double, from: Double, to: Double)]

    /// - Throws: `TensorError` naming `OneCycleLR` for maxLR not finite and ≥ 0, totalSteps < 1,
    ///   pctStart outside [0, 1], or a div factor not finite and > 0.
    public init(optimizer: any Optimizer, maxLR: Double, totalSteps: Int, pctStart: Double = 0.3,
                annealStrategy: AnnealStrategy = .cosine, divFactor: Double = 25, finalDivFactor: Double = 1e4,
                threePhase: Bool = false) throws {
        try require(maxLR.isFinite && maxLR >= 0, "OneCycleLR", "maxLR must be finite and ≥ 0, got \(maxLR)")
        try require(totalSteps >= 1, "OneCycleLR", "totalSteps must be ≥ 1, got \(totalSteps)")
        try require(pctStart >= 0 && pctStart <= 1, "OneCycleLR", "pctStart must lie in [0, 1], got \(pctStart)")
        try require(divFactor.isFinite && divFactor > 0, "OneCycleLR", "divFactor must be finite and > 0, got \(divFactor)")
        try require(finalDivFactor.isFinite && finalDivFactor > 0, "OneCycleLR",
                    "finalDivFactor must be finite and > 0, got \(finalDivFactor)")
        self.maxLR = maxLR
        self.totalSteps = totalSteps
        self.pctStart = pctStart
        self.annealStrategy = annealStrategy
        self.divFactor = divFactor
        self.finalDivFactor = finalDivFactor
        self.threePhase = threePhase
        let initial: Double = maxLR / divFactor
        let lowest: Double = initial / finalDivFactor
        let up: Double = pctStart * Double(totalSteps) - 1
        let last = Double(totalSteps - 1)
        phases = threePhase
            ? [(up, initial, maxLR), (2 * pctStart * Double(totalSteps) - 2, maxLR, initial), (last, initial, lowest)]
            : [(up, initial, maxLR), (last, maxLR, lowest)]
        core = try SchedulerCore("OneCycleLR", optimizer, base: initial)
        try begin()
    }

    /// The rate of step `step`; from totalSteps − 1 on it stays at η_init/finalDivFactor (PyTorch
    /// runs the last phase's curve on, which turns negative for `linear`, but only for the rate
    /// `step()` sets after the last batch).
    public func learningRate(at step: Int) -> Double {
        let t = Double(max(step, 0))
        var start = 0.0
        for (i, phase) in phases.enumerated() {
            if t <= phase.end || i == phases.count - 1 {
                let span: Double = phase.end - start
                let p: Double = span > 0 ? Swift.min((t - start) / span, 1) : 1
                switch annealStrategy {
                case .cosine: return cosineAnneal(from: phase.from, to: phase.to, p)
                case .linear: return phase.from + (phase.to - phase.from) * p
                }
            }
            start = phase.end
        }
        return core.current
    }

    /// - Throws: `TensorError` naming `OneCycleLR` past totalSteps steps (as PyTorch).
    public func step() throws {
        try require(core.lastEpoch < totalSteps, "OneCycleLR",
                    "tried to step \(core.lastEpoch + 1) times; totalSteps is \(totalSteps)")
        try advance()
    }

    var hyperparameters: [String: Double] {
        ["max_lr": maxLR, "total_steps": Double(totalSteps), "pct_start": pctStart,
         "anneal_strategy": annealStrategy == .cosine ? 0 : 1, "div_factor": divFactor,
         "final_div_factor": finalDivFactor, "three_phase": threePhase ? 1 : 0]
    }
    public var optimizer: any Optimizer { core.optimizer }
    public var baseLearningRate: Double { core.base }
    public var lastEpoch: Int { core.lastEpoch }
    public var currentLearningRate: Double { core.current }
    public func stateDictionary() -> [String: Double] { savedState() }
    public func loadStateDictionary(_ state: [String: Double]) throws { try restore(state) }
}
