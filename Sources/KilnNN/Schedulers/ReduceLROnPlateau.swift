import KilnCore

/// Cuts the rate when a metric stops improving (`torch.optim.lr_scheduler.ReduceLROnPlateau`,
/// same defaults). Call `step(metric:)` once per epoch with, say, the validation loss.
///
/// A metric a improves on the best b so far when a < b·(1 − threshold) (`min`, `relative`),
/// a < b − threshold (`min`, `absolute`), a > b·(1 + threshold) (`max`, `relative`) or
/// a > b + threshold (`max`, `absolute`); NaN never improves. After more than `patience` epochs
/// in a row without improvement, η ← max(η·factor, minLR), skipped when that changes η by no more
/// than eps; then for `cooldown` epochs bad epochs are not counted. It reads and cuts the
/// optimizer's current rate and does not change it when made.
public final class ReduceLROnPlateau: LearningRateScheduler {
    public enum Mode: Sendable, Equatable {
        /// Lower is better (a loss).
        case min
        /// Higher is better (an accuracy).
        case max
    }

    /// Whether threshold is a fraction of the best metric or an amount.
    public enum ThresholdMode: Sendable, Equatable {
        case relative, absolute
    }

    public let mode: Mode
    /// The factor of each cut.
    public let factor: Double
    /// Epochs without improvement tolerated before a cut.
    public let patience: Int
    /// How much better a metric must be to count as an improvement.
    public let threshold: Double
    public let thresholdMode: ThresholdMode
    /// Epochs after a cut during which bad epochs are not counted.
    public let cooldown: Int
    /// The floor of the rate.
    public let minLR: Double
    /// Cuts smaller than this are skipped.
    public let eps: Double
    public let optimizer: any Optimizer
    /// The optimizer's base rate when made (see `LearningRateScheduler`); not used by the rule.
    public private(set) var baseLearningRate: Double
    public private(set) var lastEpoch = 0
    public private(set) var currentLearningRate: Double
    /// The best metric so far (+∞ for `min`, −∞ for `max` before the first).
    public private(set) var best: Double
    /// Epochs in a row without improvement.
    public private(set) var badEpochs = 0
    /// Epochs of cooldown left.
    public private(set) var cooldownCounter = 0

    /// - Throws: `TensorError` naming `ReduceLROnPlateau` for factor outside (0, 1), patience or
    ///   cooldown < 0, threshold, minLR or eps not finite and ≥ 0, or an optimizer rate not finite
    ///   and ≥ 0.
    public init(optimizer: any Optimizer, mode: Mode = .min, factor: Double = 0.1, patience: Int = 10,
                threshold: Double = 1e-4, thresholdMode: ThresholdMode = .relative, cooldown: Int = 0,
                minLR: Double = 0, eps: Double = 1e-8) throws {
        let op = "ReduceLROnPlateau"
        try require(factor > 0 && factor < 1, op, "factor must lie in (0, 1), got \(factor)")
        try require(patience >= 0, op, "patience must be ≥ 0, got \(patience)")
        try require(threshold.isFinite && threshold >= 0, op, "threshold must be finite and ≥ 0, got \(threshold)")
        try require(cooldown >= 0, op, "cooldown must be ≥ 0, got \(cooldown)")
        try require(minLR.isFinite && minLR >= 0, op, "minLR must be finite and ≥ 0, got \(minLR)")
        try require(eps.isFinite && eps >= 0, op, "eps must be finite and ≥ 0, got \(eps)")
        let rate = optimizer.learningRate
        try require(rate.isFinite && rate >= 0, op, "the optimizer's learning rate must be finite and ≥ 0, got \(rate)")
        self.mode = mode
        self.factor = factor
        self.patience = patience
        self.threshold = threshold
        self.thresholdMode = thresholdMode
        self.cooldown = cooldown
        self.minLR = minLR
        self.eps = eps
        self.optimizer = optimizer
        baseLearningRate = LearningRateLedger.shared.base(of: optimizer)
        currentLearningRate = rate
        best = mode == .min ? .infinity : -.infinity
    }

    /// Whether `metric` improves on `best`.
    public func isImprovement(_ metric: Double) -> Bool {
        switch (mode, thresholdMode) {
        case (.min, .relative): return metric < best * (1 - threshold)
        case (.min, .absolute): return metric < best - threshold
        case (.max, .relative): return metric > best * (1 + threshold)
        case (.max, .absolute): return metric > best + threshold
        }
    }

    /// One epoch with its metric.
    public func step(metric: Double) {
        lastEpoch += 1
        if isImprovement(metric) {
            best = metric
            badEpochs = 0
        } else {
            badEpochs += 1
        }
        if cooldownCounter > 0 {
            cooldownCounter -= 1
            badEpochs = 0
        }
        if badEpochs > patience {
            let old = optimizer.learningRate
            let new = Swift.max(old * factor, minLR)
            if old - new > eps { LearningRateLedger.shared.write(new, to: optimizer) }
            cooldownCounter = cooldown
            badEpochs = 0
        }
        currentLearningRate = optimizer.learningRate
    }

    /// - Throws: `TensorError` always: this scheduler needs the metric, `step(metric:)`.
    public func step() throws {
        throw TensorError(.invalidArgument, op: "ReduceLROnPlateau", "step() needs the metric; call step(metric:)")
    }

    var hyperparameters: [String: Double] {
        ["mode": mode == .min ? 0 : 1, "factor": factor, "patience": Double(patience), "threshold": threshold,
         "threshold_mode": thresholdMode == .relative ? 0 : 1, "cooldown": Double(cooldown), "min_lr": minLR,
         "eps": eps]
    }

    /// Also `best`, `num_bad_epochs` and `cooldown_counter`.
    public func stateDictionary() -> [String: Double] {
        var s = hyperparameters
        s["last_epoch"] = Double(lastEpoch)
        s["base_lr"] = baseLearningRate
        s["last_lr"] = currentLearningRate
        s["best"] = best
        s["num_bad_epochs"] = Double(badEpochs)
        s["cooldown_counter"] = Double(cooldownCounter)
        return s
    }

    public func loadStateDictionary(_ state: [String: Double]) throws {
        let op = "ReduceLROnPlateau"
        let core = try SchedulerCore(op, optimizer, base: baseLearningRate)
        let v = try core.validated(state, hyperparameters, extraKeys: ["best", "num_bad_epochs", "cooldown_counter"])
        let best = state["best"]!
        try require(!best.isNaN, op, "best must not be NaN")
        let bad = try integer(state["num_bad_epochs"]!, "num_bad_epochs", op)
        let counter = try integer(state["cooldown_counter"]!, "cooldown_counter", op)
        try require(counter <= cooldown, op, "cooldown_counter \(counter) exceeds cooldown \(cooldown)")
        lastEpoch = v.epoch
        baseLearningRate = v.base
        currentLearningRate = v.last
        self.best = best
        badEpochs = bad
        cooldownCounter = counter
        LearningRateLedger.shared.write(v.last, to: optimizer)
    }
}
