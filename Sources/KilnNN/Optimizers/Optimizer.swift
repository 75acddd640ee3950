import KilnCore

/// An optimizer's saveable state: per-parameter tensors and scalar settings.
///
/// Tensor keys are `"<parameter index>.<name>"` (e.g. `"0.exp_avg"`, PyTorch's state names where
/// PyTorch has the optimizer); scalar keys name step counters and hyperparameters (`"step"`,
/// `"lr"`). Checkpoints store the tensors as safetensors entries and the scalars as metadata.
public struct OptimizerState: Sendable {
    public var tensors: [String: Tensor]
    public var scalars: [String: Double]

    public init(tensors: [String: Tensor] = [:], scalars: [String: Double] = [:]) {
        self.tensors = tensors
        self.scalars = scalars
    }
}

/// Updates parameters from their accumulated gradients.
///
/// Usage, as in PyTorch: `loss.backward()`, then `try optimizer.step()`, then
/// `optimizer.zeroGradients()`. Optimizers that need to re-evaluate the loss (L-BFGS, Newton,
/// variance-reduced and derivative-free methods) take the closure that computes it when they are
/// made, so every optimizer steps with `step()`.
public protocol Optimizer: AnyObject {
    /// The parameters it updates, in order; state keys use these indices.
    var parameters: [Parameter] { get }
    /// The step size η. Learning-rate schedulers set it.
    var learningRate: Double { get set }
    /// Steps taken so far.
    var stepCount: Int { get }
    /// One update.
    func step() throws
    /// A copy of the optimizer's state (tensors are copies the optimizer no longer writes).
    func stateDictionary() throws -> OptimizerState
    /// Restores a state from `stateDictionary()`. Validates everything before changing anything.
    func loadStateDictionary(_ state: OptimizerState) throws
    /// Forgets every parameter's accumulated gradient (`GradientAccumulation` defers this).
    func zeroGradients()
}

extension Optimizer {
    public func zeroGradients() {
        for p in parameters { p.zeroGradient() }
    }
}
