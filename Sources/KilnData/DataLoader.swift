import KilnCore

/// Mini-batches of an in-memory data set, as tensors on one backend.
///
/// Each epoch visits every sample once, in index order or, with `shuffle`, in a permutation that
/// depends only on `(seed, epoch)` (see `order(epoch:)`), so runs are reproducible on every
/// machine. Batches hold `batchSize` samples; the last one holds the remainder unless `dropLast`.
///
/// ```swift
/// let loader = try DataLoader(train, batchSize: 128, shuffle: true, seed: 7, on: backend)
/// for epoch in 0..<10 {
///     for batch in loader.epoch(epoch) {
///         let (input, labels) = try batch.tensors()   // [B, 1, 28, 28], [B]
///         let loss = try crossEntropy(logits: model(input), targets: labels)
///         …
///     }
/// }
/// ```
///
/// Iteration itself cannot throw (Swift's `for … in` has no throwing form for synchronous
/// sequences), so a batch is gathered on the host and uploaded by the throwing `tensors()`.
public struct DataLoader: Sendable {
    public let batchSize: Int
    public let shuffle: Bool
    public let seed: UInt64
    public let dropLast: Bool
    /// Where batches are uploaded.
    public let backend: any Backend
    /// The shape of one sample; an input batch is `[B] + sampleShape`.
    public let sampleShape: [Int]
    private let inputs: [Float]
    private let labels: [Float]
    private let sampleSize: Int

    /// The number of samples.
    public var sampleCount: Int { labels.count }

    /// Batches per epoch: `⌈samples / batchSize⌉`, or `⌊samples / batchSize⌋` with `dropLast`.
    public var count: Int {
        dropLast ? sampleCount / batchSize : (sampleCount + batchSize - 1) / batchSize
    }

    /// A loader over samples held as flat arrays.
    /// - Parameters:
    ///   - inputs: every sample, row-major `[N] + sampleShape`.
    ///   - sampleShape: the shape of one sample, e.g. `[1, 28, 28]`.
    ///   - labels: one value per sample (class indices as Float for `crossEntropy`).
    ///   - batchSize: samples per batch, ≥ 1.
    ///   - shuffle: visit samples in a seeded permutation, a new one each epoch.
    ///   - seed: the Philox key of the permutations.
    ///   - dropLast: leave out a last batch smaller than `batchSize`.
    ///   - backend: where the batch tensors are created.
    /// - Throws: `DatasetError.invalidArgument` (context `DataLoader`) for a batch size below 1,
    ///   a negative size in `sampleShape`, or `inputs` and `labels` of different sample counts.
    public init(inputs: [Float], sampleShape: [Int], labels: [Float], batchSize: Int,
                shuffle: Bool = false, seed: UInt64 = 0, dropLast: Bool = false,
                on backend: any Backend) throws {
        guard batchSize >= 1 else {
            throw DatasetError(.invalidArgument, context: "DataLoader", "batchSize must be ≥ 1, got \(batchSize)")
        }
        guard sampleShape.allSatisfy({ $0 >= 0 }) else {
            throw DatasetError(.invalidArgument, context: "DataLoader", "sampleShape \(sampleShape) has a negative size")
        }
        var size = 1
        for d in sampleShape {
            let (p, overflow) = size.multipliedReportingOverflow(by: d)
            guard !overflow else {
                throw DatasetError(.invalidArgument, context: "DataLoader", "sampleShape \(sampleShape) is too large")
            }
            size = p
        }
        let (expected, overflow) = labels.count.multipliedReportingOverflow(by: size)
        guard !overflow, inputs.count == expected else {
            throw DatasetError(.invalidArgument, context: "DataLoader",
                               "\(labels.count) labels with samples of shape \(sampleShape) need \(labels.count) × \(size) input values, got \(inputs.count)")
        }
        self.inputs = inputs
        self.labels = labels
        self.sampleShape = sampleShape
        self.sampleSize = size
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.seed = seed
        self.dropLast = dropLast
        self.backend = backend
    }

    /// A loader over an image data set: inputs `[B, C, H, W]`, labels `[B]`.
    public init(_ dataset: some ImageClassificationDataset, batchSize: Int, shuffle: Bool = false,
                seed: UInt64 = 0, dropLast: Bool = false, on backend: any Backend) throws {
        try self.init(inputs: dataset.images, sampleShape: dataset.imageShape, labels: dataset.labels,
                      batchSize: batchSize, shuffle: shuffle, seed: seed, dropLast: dropLast, on: backend)
    }

    /// The order in which epoch `epoch` visits the samples: `0..<sampleCount` without `shuffle`.
    ///
    /// With `shuffle`, a Fisher–Yates shuffle of `0..<n`: for `i` from `n − 1` down to 1, swap
    /// element `i` with element `j`, `j` uniform in `0...i`. The random words are Philox-4x32-10
    /// with key `seed`: word `w` is word `w % 4` of the block for counter
    /// `(w / 4 low 32 bits, w / 4 high 32 bits, epoch low 32 bits, epoch high 32 bits)`. Two
    /// consecutive words make a 64-bit value (the first in the high half), and `j` is drawn from
    /// it by Lemire's multiply-and-reject method, so it is exactly uniform.
    public func order(epoch: Int) -> [Int] {
        guard shuffle else { return Array(0..<sampleCount) }
        return philoxPermutation(sampleCount, seed: seed, stream: UInt64(bitPattern: Int64(epoch)))
    }

    /// The batches of epoch `epoch` (numbered from 0), in order.
    public func epoch(_ epoch: Int) -> Epoch {
        Epoch(loader: self, number: epoch, order: order(epoch: epoch))
    }

    /// Gathers the samples `indices` into one batch.
    fileprivate func gather(_ indices: ArraySlice<Int>) -> Batch {
        let b = indices.count
        let size = sampleSize
        var batchInputs = [Float](repeating: 0, count: b * size)
        var batchLabels = [Float](repeating: 0, count: b)
        inputs.withUnsafeBufferPointer { source in
            batchInputs.withUnsafeMutableBufferPointer { destination in
                guard size > 0, let s = source.baseAddress, let d = destination.baseAddress else { return }
                for (k, index) in indices.enumerated() {
                    (d + k * size).update(from: s + index * size, count: size)
                }
            }
        }
        for (k, index) in indices.enumerated() { batchLabels[k] = labels[index] }
        return Batch(indices: Array(indices), inputValues: batchInputs, labelValues: batchLabels,
                     inputShape: [b] + sampleShape, backend: backend)
    }

    /// One epoch's batches: a sequence of `count` batches covering every sample once
    /// (all but the remainder with `dropLast`).
    public struct Epoch: Sequence, Sendable {
        public let loader: DataLoader
        /// The epoch number the order was drawn for.
        public let number: Int
        /// The sample order of this epoch (`loader.order(epoch: number)`).
        public let order: [Int]

        /// The number of batches.
        public var count: Int { loader.count }
        public var underestimatedCount: Int { loader.count }

        /// Batch `index` of this epoch.
        /// - Throws: `DatasetError.invalidArgument` for an index outside `0..<count`.
        public func batch(_ index: Int) throws -> Batch {
            guard index >= 0 && index < count else {
                throw DatasetError(.invalidArgument, context: "DataLoader",
                                   "batch index \(index) is out of range for \(count) batches")
            }
            return loader.gather(samples(ofBatch: index))
        }

        /// The positions in `order` that batch `index` takes.
        fileprivate func samples(ofBatch index: Int) -> ArraySlice<Int> {
            let start = index * loader.batchSize
            return order[start..<Swift.min(start + loader.batchSize, order.count)]
        }

        public func makeIterator() -> Iterator { Iterator(epoch: self) }

        public struct Iterator: IteratorProtocol {
            let epoch: Epoch
            var index = 0

            public mutating func next() -> Batch? {
                guard index < epoch.count else { return nil }
                defer { index += 1 }
                return epoch.loader.gather(epoch.samples(ofBatch: index))
            }
        }
    }

    /// One batch, gathered on the host: the sample indices, their values and labels.
    public struct Batch: Sendable {
        /// Which samples, in batch order.
        public let indices: [Int]
        /// The inputs, row-major `inputShape`.
        public let inputValues: [Float]
        /// One label per sample.
        public let labelValues: [Float]
        /// `[B] + sampleShape`.
        public let inputShape: [Int]
        /// Where `tensors()` creates the tensors.
        public let backend: any Backend

        /// The number of samples.
        public var count: Int { indices.count }

        /// The batch as tensors on the loader's backend: `input` of `inputShape` and `labels`
        /// `[B]` (class indices as Float, as `crossEntropy(logits:targets:)` takes them).
        /// Each call uploads anew.
        /// - Throws: the backend's error when it cannot allocate or upload.
        public func tensors() throws -> (input: Tensor, labels: Tensor) {
            (try Tensor(inputValues, shape: inputShape, on: backend),
             try Tensor(labelValues, shape: [labelValues.count], on: backend))
        }
    }
}

/// A Fisher–Yates permutation of `0..<n` driven by `PhiloxWords(seed:stream:)`: for `i` from
/// `n − 1` down to 1, swap element `i` with element `j`, `j` uniform in `0...i`.
func philoxPermutation(_ n: Int, seed: UInt64, stream: UInt64) -> [Int] {
    var order = Array(0..<n)
    var words = PhiloxWords(seed: seed, stream: stream)
    var i = n - 1
    while i > 0 {
        order.swapAt(i, Int(words.uniform(below: UInt64(i + 1))))
        i -= 1
    }
    return order
}

/// A stream of 32-bit words from Philox-4x32-10: word `w` is word `w % 4` of the block for
/// counter `(w / 4 low, w / 4 high, stream low, stream high)` with key `seed`.
struct PhiloxWords {
    let seed: UInt64
    let stream: UInt64
    private var block: UInt64 = 0
    private var words: (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)
    private var used = 4

    init(seed: UInt64, stream: UInt64) {
        self.seed = seed
        self.stream = stream
    }

    mutating func next() -> UInt32 {
        if used == 4 {
            words = Philox.block(counter: (UInt32(truncatingIfNeeded: block), UInt32(truncatingIfNeeded: block >> 32),
                                           UInt32(truncatingIfNeeded: stream), UInt32(truncatingIfNeeded: stream >> 32)),
                                 seed: seed)
            block &+= 1
            used = 0
        }
        defer { used += 1 }
        switch used {
        case 0: return words.0
        case 1: return words.1
        case 2: return words.2
        default: return words.3
        }
    }

    /// Two words as one 64-bit value, the first in the high half.
    mutating func next64() -> UInt64 {
        let high = UInt64(next())
        return high << 32 | UInt64(next())
    }

    /// Exactly uniform in `0..<bound` (bound ≥ 1) by Lemire's method: the high word of
    /// `x · bound`, rejecting the `2⁶⁴ mod bound` low products that would bias it.
    mutating func uniform(below bound: UInt64) -> UInt64 {
        var product = next64().multipliedFullWidth(by: bound)
        if product.low < bound {
            let threshold = (0 &- bound) % bound
            while product.low < threshold {
                product = next64().multipliedFullWidth(by: bound)
            }
        }
        return product.high
    }
}
