import KilnCore

/// Inverted dropout, as `torch.nn.Dropout`: in training, `y = x ⊙ m/(1 − p)` with
/// `m ~ Bernoulli(1 − p)` elementwise; in evaluation, `y = x`. With `p = 1` the output is zeros.
///
/// The mask of the k-th training call (k = 0, 1, ...) comes from the Philox stream of
/// `Initializer.derivedSeed(seed, stream: k)`, so a run is reproducible and identical on every
/// backend, and successive calls draw different masks. No parameters.
public final class Dropout: Module {
    public var isTraining = true
    /// The probability p of zeroing an element.
    public let probability: Float
    public let seed: UInt64
    /// Training calls made so far (the stream of the next mask).
    public private(set) var callCount: UInt64 = 0

    /// - Throws: `TensorError` naming `Dropout` for a probability outside [0, 1].
    public init(probability: Float = 0.5, seed: UInt64) throws {
        guard probability >= 0, probability <= 1 else {
            throw TensorError(.invalidArgument, op: "Dropout", "probability must lie in [0, 1], got \(probability)")
        }
        self.probability = probability
        self.seed = seed
    }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        guard isTraining, probability > 0 else { return input }
        if probability >= 1 { return try input * Float(0) }
        let stream = callCount
        callCount &+= 1
        let keep: Float = 1 - probability
        let mask = try Tensor.bernoulli(input.shape, probability: keep,
                                        seed: Initializer.derivedSeed(seed, stream: stream), on: input.backend)
        let scaled = try mask * (1 / keep)
        return try input * scaled
    }
}
