import KilnCore

/// Mini-batches for next-token prediction from one token stream, as tensors on a backend.
///
/// A window is `T + 1` consecutive tokens starting at `s`; its input row is `tokens[s..<s+T]` and
/// its target row `tokens[s+1...s+T]`, the same tokens shifted by one, so target `t` is the token
/// that follows input `t`. A batch stacks `B` windows into inputs `[B, T]` and targets `[B, T]`,
/// both token ids as Float (the class-index format of `crossEntropy(logits:targets:)`, and the
/// index format of `Embedding`).
///
/// - **Training** (`epoch(_:)`): `batchesPerEpoch` batches of `B` windows whose starts are drawn
///   independently and uniformly from `0...N − T − 1` (with replacement), from Philox with key
///   `seed` and the epoch number as stream (see `windowStarts(epoch:)`), so every epoch differs and
///   every run repeats.
/// - **Evaluation** (`evaluation()`): the non-overlapping windows starting at `0, T, 2T, …` in
///   order, `⌊(N − 1) / T⌋` of them, `B` to a batch (the last batch may hold fewer). Their input
///   rows, concatenated, are `tokens[0..<W·T]`, and every token from 1 to `W·T` is predicted once;
///   the `(N − 1) mod T` tokens after are not.
///
/// ```swift
/// let batches = try LanguageModelBatches(tokens: trainTokens, sequenceLength: 128, batchSize: 32,
///                                        batchesPerEpoch: 200, seed: 1, on: backend)
/// for batch in batches.epoch(epoch) {
///     let (input, targets) = try batch.tensors()              // [B, T], [B, T]
///     let logits = try model(input)                            // [B, T, V]
///     let loss = try crossEntropy(logits: logits.reshaped(to: [-1, V]),
///                                 targets: targets.reshaped(to: [-1]))
///     …
/// }
/// ```
public struct LanguageModelBatches: Sendable {
    /// T, the number of input (and target) tokens per row.
    public let sequenceLength: Int
    /// B, the number of windows per batch.
    public let batchSize: Int
    /// The number of training batches in each `epoch(_:)`.
    public let batchesPerEpoch: Int
    /// The Philox key of the training window starts.
    public let seed: UInt64
    /// Where batches are uploaded.
    public let backend: any Backend
    private let values: [Float]

    /// N, the number of tokens in the stream.
    public var tokenCount: Int { values.count }

    /// The number of distinct windows, `N − T`: the starts `0…N − T − 1`.
    public var windowCount: Int { values.count - sequenceLength }

    /// W, the number of evaluation windows: `⌊(N − 1) / T⌋`.
    public var evaluationWindowCount: Int { (values.count - 1) / sequenceLength }

    /// The number of evaluation batches: `⌈W / B⌉`.
    public var evaluationBatchCount: Int { (evaluationWindowCount + batchSize - 1) / batchSize }

    /// A loader over one token stream.
    /// - Parameters:
    ///   - tokens: the stream, token ids in `0..<2²⁴` (every one exact as a Float), at least `T + 1`.
    ///   - sequenceLength: T ≥ 1.
    ///   - batchSize: B ≥ 1.
    ///   - batchesPerEpoch: training batches per epoch, ≥ 1; `nil` takes `max(1, ⌊(N − 1) / (B·T)⌋)`,
    ///     about as many target tokens as the stream holds.
    ///   - seed: the Philox key of the training window starts.
    ///   - backend: where the batch tensors are created.
    /// - Throws: `DatasetError.invalidArgument` (context `LanguageModelBatches`) for T, B or
    ///   batchesPerEpoch below 1 (or a product B × batchesPerEpoch that overflows), a stream
    ///   shorter than `T + 1`, or a token outside `0..<2²⁴`.
    public init(tokens: [Int], sequenceLength: Int, batchSize: Int, batchesPerEpoch: Int? = nil,
                seed: UInt64 = 0, on backend: any Backend) throws {
        let context = "LanguageModelBatches"
        guard sequenceLength >= 1 else {
            throw DatasetError(.invalidArgument, context: context, "sequenceLength must be ≥ 1, got \(sequenceLength)")
        }
        guard batchSize >= 1 else {
            throw DatasetError(.invalidArgument, context: context, "batchSize must be ≥ 1, got \(batchSize)")
        }
        if let batchesPerEpoch, batchesPerEpoch < 1 {
            throw DatasetError(.invalidArgument, context: context, "batchesPerEpoch must be ≥ 1, got \(batchesPerEpoch)")
        }
        guard sequenceLength < Int.max, tokens.count >= sequenceLength + 1 else {
            throw DatasetError(.invalidArgument, context: context,
                               "a window of sequenceLength \(sequenceLength) needs \(sequenceLength) + 1 tokens, the stream has \(tokens.count)")
        }
        if let bad = tokens.firstIndex(where: { $0 < 0 || $0 >= 1 << 24 }) {
            throw DatasetError(.invalidArgument, context: context,
                               "token \(tokens[bad]) at offset \(bad) is outside 0..<2^24 (token ids must be exact as Float)")
        }
        if let batchesPerEpoch, batchesPerEpoch.multipliedReportingOverflow(by: batchSize).overflow {
            throw DatasetError(.invalidArgument, context: context,
                               "batchesPerEpoch \(batchesPerEpoch) × batchSize \(batchSize) windows is too many")
        }
        self.values = tokens.map { Float($0) }
        self.sequenceLength = sequenceLength
        self.batchSize = batchSize
        let (product, overflow) = batchSize.multipliedReportingOverflow(by: sequenceLength)
        self.batchesPerEpoch = batchesPerEpoch ?? (overflow ? 1 : max(1, (tokens.count - 1) / product))
        self.seed = seed
        self.backend = backend
    }

    /// The window starts of training epoch `epoch`, batch by batch: `batchesPerEpoch × B` values,
    /// batch `b` taking `[b·B, (b + 1)·B)`.
    ///
    /// Start `i` is uniform in `0..<N − T`, drawn by Lemire's multiply-and-reject method from the
    /// 64-bit values of Philox-4x32-10 with key `seed` and stream `epoch` (the word stream of
    /// `DataLoader`: word `w` is word `w % 4` of the block for counter `(w / 4 low, w / 4 high,
    /// epoch low, epoch high)`, two words to a value, the first in the high half).
    public func windowStarts(epoch: Int) -> [Int] {
        var words = PhiloxWords(seed: seed, stream: UInt64(bitPattern: Int64(epoch)))
        let bound = UInt64(windowCount)
        return (0..<batchesPerEpoch * batchSize).map { _ in Int(words.uniform(below: bound)) }
    }

    /// The training batches of epoch `epoch` (numbered from 0): `batchesPerEpoch` batches of B
    /// random windows.
    public func epoch(_ epoch: Int) -> Windows {
        Windows(batches: self, starts: windowStarts(epoch: epoch))
    }

    /// The evaluation batches: the windows at `0, T, 2T, …, (W − 1)·T` in order, B to a batch.
    public func evaluation() -> Windows {
        Windows(batches: self, starts: (0..<evaluationWindowCount).map { $0 * sequenceLength })
    }

    /// Gathers the windows at `starts` into one batch.
    fileprivate func gather(_ starts: ArraySlice<Int>) -> Batch {
        let t = sequenceLength
        var inputs = [Float]()
        var targets = [Float]()
        inputs.reserveCapacity(starts.count * t)
        targets.reserveCapacity(starts.count * t)
        for start in starts {
            inputs += values[start..<start + t]
            targets += values[start + 1...start + t]
        }
        return Batch(starts: Array(starts), inputValues: inputs, targetValues: targets,
                     sequenceLength: t, backend: backend)
    }

    /// A sequence of batches over a list of window starts, B to a batch in order: one training
    /// epoch or the evaluation pass.
    public struct Windows: Sequence, Sendable {
        public let batches: LanguageModelBatches
        /// Every window start, in batch order.
        public let starts: [Int]

        /// The number of batches, `⌈starts / B⌉`.
        public var count: Int { (starts.count + batches.batchSize - 1) / batches.batchSize }
        public var underestimatedCount: Int { count }

        /// Batch `index`.
        /// - Throws: `DatasetError.invalidArgument` for an index outside `0..<count`.
        public func batch(_ index: Int) throws -> Batch {
            guard index >= 0 && index < count else {
                throw DatasetError(.invalidArgument, context: "LanguageModelBatches",
                                   "batch index \(index) is out of range for \(count) batches")
            }
            return batches.gather(starts(ofBatch: index))
        }

        fileprivate func starts(ofBatch index: Int) -> ArraySlice<Int> {
            let first = index * batches.batchSize
            return starts[first..<Swift.min(first + batches.batchSize, starts.count)]
        }

        public func makeIterator() -> Iterator { Iterator(windows: self) }

        public struct Iterator: IteratorProtocol {
            let windows: Windows
            var index = 0

            public mutating func next() -> Batch? {
                guard index < windows.count else { return nil }
                defer { index += 1 }
                return windows.batches.gather(windows.starts(ofBatch: index))
            }
        }
    }

    /// One batch, gathered on the host.
    public struct Batch: Sendable {
        /// The start of each window in the stream, row by row.
        public let starts: [Int]
        /// `tokens[s..<s+T]` for each start, row-major `[B, T]`.
        public let inputValues: [Float]
        /// `tokens[s+1...s+T]` for each start, row-major `[B, T]`.
        public let targetValues: [Float]
        /// T.
        public let sequenceLength: Int
        /// Where `tensors()` creates the tensors.
        public let backend: any Backend

        /// The number of windows (rows).
        public var count: Int { starts.count }
        /// `[B, T]`.
        public var shape: [Int] { [starts.count, sequenceLength] }

        /// The batch as tensors on the loader's backend: `input` and `targets`, both `[B, T]`
        /// token ids as Float. Each call uploads anew.
        /// - Throws: the backend's error when it cannot allocate or upload.
        public func tensors() throws -> (input: Tensor, targets: Tensor) {
            (try Tensor(inputValues, shape: shape, on: backend),
             try Tensor(targetValues, shape: shape, on: backend))
        }
    }
}
