import Foundation
import KilnCore

/// The Transformer ("Noam") schedule of "Attention Is All You Need" (seed 003):
/// η(s) = factor·d_model^−0.5·min(s^−0.5, s·warmup^−1.5), stepped once per batch.
///
/// s counts optimizer steps from 1: `learningRate(at: t)` is η(t + 1), so the rate set when the
/// scheduler is made (t = 0) is that of the first optimizer step, s = 1, and s = 0 (0^−0.5 = ∞)
/// never occurs. η rises linearly for the first `warmupSteps` steps, peaks at s = warmup
/// (t = warmup − 1) with factor·d_model^−0.5·warmup^−0.5, then decays as s^−0.5.
///
/// Sets the rate outright, ignoring the optimizer's (the Annotated Transformer's `LambdaLR` over an
/// optimizer rate of 1 gives the same, except that it counts s from max(t, 1)).
/// `baseLearningRate` is the scale factor·d_model^−0.5.
public final class NoamLR: CoreScheduler {
    /// d_model.
    public let modelSize: Int
    /// The optimizer step at which the rate peaks.
    public let warmupSteps: Int
    /// The overall scale.
    public let factor: Double
    var core: SchedulerCore

    /// - Parameter modelSize: d_model.
    /// - Throws: `TensorError` naming `NoamLR` for modelSize < 1, warmupSteps < 1, or factor not
    ///   finite and > 0.
    public init(optimizer: any Optimizer, modelSize: Int, warmupSteps: Int = 4000, factor: Double = 1) throws {
        try require(modelSize >= 1, "NoamLR", "modelSize must be ≥ 1, got \(modelSize)")
        try require(warmupSteps >= 1, "NoamLR", "warmupSteps must be ≥ 1, got \(warmupSteps)")
        try require(factor.isFinite && factor > 0, "NoamLR", "factor must be finite and > 0, got \(factor)")
        self.modelSize = modelSize
        self.warmupSteps = warmupSteps
        self.factor = factor
        core = try SchedulerCore("NoamLR", optimizer, base: factor / Double(modelSize).squareRoot())
        try begin()
    }

    public func learningRate(at step: Int) -> Double {
        let s = Double(max(step, 0)) + 1
        let w = Double(warmupSteps)
        let decay: Double = 1 / s.squareRoot()
        let warm: Double = s / (w * w.squareRoot())
        return core.base * min(decay, warm)
    }

    var hyperparameters: [String: Double] {
        ["model_size": Double(modelSize), "warmup": Double(warmupSteps), "factor": factor]
    }
    public var optimizer: any Optimizer { core.optimizer }
    public var baseLearningRate: Double { core.base }
    public var lastEpoch: Int { core.lastEpoch }
    public var currentLearningRate: Double { core.current }
    public func step() throws { try advance() }
    public func stateDictionary() -> [String: Double] { savedState() }
    public func loadStateDictionary(_ state: [String: Double]) throws { try restore(state) }
}

extension SequentialLR {
    /// Linear warmup, then `schedule`: η(t) = η_s·(s + (1 − s)·t/T_w) for t < T_w = `steps`, then
    /// `schedule.learningRate(at: t − T_w)`, where η_s = `schedule.learningRate(at: 0)` (so the ramp
    /// ends where the schedule starts) and s = `startFactor`.
    ///
    /// The default s = 0 is the seeds' warmup η₀·t/T_w (Hugging Face's
    /// `get_linear_schedule_with_warmup`); PyTorch's `LinearLR` default is 1/3. A `LinearLR` and a
    /// `SequentialLR` with milestone T_w, as in PyTorch.
    /// - Throws: `TensorError` naming `LinearLR` for steps < 1 or s outside [0, 1].
    public static func linearWarmup(steps: Int, startFactor: Double = 0,
                                    then schedule: any ClosedFormScheduler) throws -> SequentialLR {
        let warmup = try LinearLR(optimizer: schedule.optimizer, startFactor: startFactor, endFactor: 1,
                                  totalIters: steps, base: schedule.learningRate(at: 0))
        return try SequentialLR(schedulers: [warmup, schedule], milestones: [steps])
    }
}
