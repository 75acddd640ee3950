import Foundation
import KilnCore

/// Sets an optimizer's learning rate as training goes, as `torch.optim.lr_scheduler`.
///
/// Usage, as in PyTorch: make the scheduler after the optimizer. It takes the optimizer's rate as
/// its base η₀ and sets the rate of epoch 0 at once. Then, once per epoch (or per batch), call
/// `try optimizer.step()` and after it `try scheduler.step()`, which advances `lastEpoch` and sets
/// the rate of the next epoch.
///
/// The base is the rate the optimizer had before any scheduler changed it (PyTorch's
/// `initial_lr`), so the several schedulers made on one optimizer for `SequentialLR` or
/// `ChainedScheduler` share it. A rate set by hand on the optimizer since the last scheduler wrote
/// one becomes the base of the next scheduler made on it.
public protocol LearningRateScheduler: AnyObject {
    /// The optimizer whose `learningRate` it sets.
    var optimizer: any Optimizer { get }
    /// η₀: the rate the schedule scales (for CyclicLR, OneCycleLR and NoamLR, their own lowest or
    /// scale rate, since they ignore the optimizer's).
    var baseLearningRate: Double { get }
    /// `step()` calls since creation (PyTorch's `last_epoch`); 0 right after creation.
    var lastEpoch: Int { get }
    /// The rate it last set: the one the next `optimizer.step()` uses.
    var currentLearningRate: Double { get }
    /// Advances one epoch and sets the optimizer's rate for it.
    /// - Throws: `TensorError` naming the scheduler if the new rate is not finite and ≥ 0 (the
    ///   scheduler and the optimizer are then left unchanged).
    func step() throws
    /// The state a checkpoint stores: `last_epoch`, `base_lr`, `last_lr`, the scheduler's own
    /// counters, and its hyperparameters under PyTorch's names (`gamma`, `step_size`, ...).
    func stateDictionary() -> [String: Double]
    /// Restores a state from `stateDictionary()` of a scheduler of the same kind and
    /// hyperparameters, and sets the optimizer's rate to the saved `last_lr`, so training continues
    /// exactly as it would have. Validates everything before changing anything.
    /// - Throws: `TensorError` for a missing or unexpected key, a hyperparameter that differs from
    ///   this scheduler's, or a value out of range.
    func loadStateDictionary(_ state: [String: Double]) throws
}

/// A scheduler whose rate is a function of the step count alone: η(t) for t = `lastEpoch`.
///
/// `step()` sets the optimizer's rate to `learningRate(at: lastEpoch + 1)` outright (PyTorch's
/// closed form), so a rate set by hand lasts until the next `step()`. `SequentialLR` and
/// `ChainedScheduler` compose these.
public protocol ClosedFormScheduler: LearningRateScheduler {
    /// η(t), the rate for epoch `step` ≥ 0 (a negative step reads as 0). Pure: it neither sets the
    /// optimizer's rate nor moves `lastEpoch`.
    func learningRate(at step: Int) -> Double
}

// MARK: - Shared machinery

/// Throws `TensorError(.invalidArgument, op:, message)` unless `condition` holds.
func require(_ condition: Bool, _ op: String, _ message: @autoclosure () -> String) throws {
    if !condition { throw TensorError(.invalidArgument, op: op, message()) }
}

/// What PyTorch keeps as each parameter group's `initial_lr`: per optimizer, the rate it had before
/// a scheduler first wrote one, and the rate a scheduler wrote last. An optimizer whose rate no
/// longer equals the last one written was set by hand, and its current rate becomes its base.
final class LearningRateLedger: @unchecked Sendable {
    static let shared = LearningRateLedger()

    private struct Entry {
        weak var optimizer: (any Optimizer)?
        var initial: Double
        var lastWritten: Double
    }

    private let lock = NSLock()
    private var entries: [Entry] = []

    /// The base a new scheduler on `optimizer` takes.
    func base(of optimizer: any Optimizer) -> Double {
        lock.lock()
        defer { lock.unlock() }
        let rate = optimizer.learningRate
        if let e = entries.first(where: { $0.optimizer === optimizer }), e.lastWritten == rate {
            return e.initial
        }
        return rate
    }

    /// Sets `optimizer.learningRate = rate` and remembers it.
    func write(_ rate: Double, to optimizer: any Optimizer) {
        lock.lock()
        defer { lock.unlock() }
        entries.removeAll { $0.optimizer == nil }
        let before = optimizer.learningRate
        if let i = entries.firstIndex(where: { $0.optimizer === optimizer }) {
            if entries[i].lastWritten != before { entries[i].initial = before }
            entries[i].lastWritten = rate
        } else {
            entries.append(Entry(optimizer: optimizer, initial: before, lastWritten: rate))
        }
        optimizer.learningRate = rate
    }
}

/// The state every closed-form scheduler keeps, and its stepping, saving and loading.
struct SchedulerCore {
    let op: String
    let optimizer: any Optimizer
    var base: Double
    var lastEpoch = 0
    var current: Double

    /// `base` nil takes the optimizer's base from the ledger.
    init(_ op: String, _ optimizer: any Optimizer, base: Double? = nil) throws {
        let b = base ?? LearningRateLedger.shared.base(of: optimizer)
        try require(b.isFinite && b >= 0, op, "the base learning rate must be finite and ≥ 0, got \(b)")
        self.op = op
        self.optimizer = optimizer
        self.base = b
        self.current = b
    }

    /// Validates `rate` as the rate of `epoch`, then sets it.
    mutating func commit(_ rate: Double, epoch: Int) throws {
        try require(rate.isFinite && rate >= 0, op,
                    "the learning rate for epoch \(epoch) is \(rate); it must be finite and ≥ 0")
        LearningRateLedger.shared.write(rate, to: optimizer)
        lastEpoch = epoch
        current = rate
    }

    func state(_ hyperparameters: [String: Double]) -> [String: Double] {
        var s = hyperparameters
        s["last_epoch"] = Double(lastEpoch)
        s["base_lr"] = base
        s["last_lr"] = current
        return s
    }

    /// Checks `state` against this scheduler: exactly the expected keys, equal hyperparameters,
    /// values in range. Returns (last_epoch, base_lr, last_lr).
    func validated(_ state: [String: Double], _ hyperparameters: [String: Double],
                   extraKeys: Set<String> = []) throws -> (epoch: Int, base: Double, last: Double) {
        let expected = Set(hyperparameters.keys).union(["last_epoch", "base_lr", "last_lr"]).union(extraKeys)
        let given = Set(state.keys)
        if let missing = expected.subtracting(given).sorted().first {
            throw TensorError(.invalidArgument, op: op, "the state has no \"\(missing)\"")
        }
        if let unexpected = given.subtracting(expected).sorted().first {
            throw TensorError(.invalidArgument, op: op, "the state has an unexpected key \"\(unexpected)\"")
        }
        for (key, value) in hyperparameters.sorted(by: { $0.key < $1.key }) where state[key]! != value {
            throw TensorError(.invalidArgument, op: op,
                              "the state was saved with \(key) \(state[key]!), this scheduler has \(value)")
        }
        let epoch = try integer(state["last_epoch"]!, "last_epoch", op)
        let base = state["base_lr"]!, last = state["last_lr"]!
        try require(base.isFinite && base >= 0, op, "base_lr must be finite and ≥ 0, got \(base)")
        try require(last.isFinite && last >= 0, op, "last_lr must be finite and ≥ 0, got \(last)")
        return (epoch, base, last)
    }

    /// Applies a validated state and sets the optimizer's rate to it.
    mutating func apply(_ v: (epoch: Int, base: Double, last: Double)) {
        lastEpoch = v.epoch
        base = v.base
        current = v.last
        LearningRateLedger.shared.write(v.last, to: optimizer)
    }
}

/// A state value that must be a whole number in 0...2⁵³.
func integer(_ value: Double, _ key: String, _ op: String) throws -> Int {
    try require(value >= 0 && value <= 9_007_199_254_740_992 && value.rounded() == value, op,
                "\(key) must be a whole number ≥ 0, got \(value)")
    return Int(value)
}

/// A closed-form scheduler built on `SchedulerCore`: the stepping, saving and loading they share.
protocol CoreScheduler: ClosedFormScheduler {
    var core: SchedulerCore { get set }
    /// Hyperparameters under PyTorch's names, saved with the state and checked on load.
    var hyperparameters: [String: Double] { get }
}

extension CoreScheduler {
    /// Sets the rate of epoch 0; the last line of every initialiser.
    func begin() throws {
        let rate = learningRate(at: 0)
        try core.commit(rate, epoch: 0)
    }

    func advance() throws {
        let next = core.lastEpoch + 1
        let rate = learningRate(at: next)
        try core.commit(rate, epoch: next)
    }

    func savedState() -> [String: Double] { core.state(hyperparameters) }

    func restore(_ state: [String: Double]) throws {
        let v = try core.validated(state, hyperparameters)
        core.apply(v)
    }
}
