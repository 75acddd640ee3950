import Foundation
import Kiln
import KilnTestSupport
import Testing

// LanguageModelBatches: targets are the inputs shifted by one, shapes on every backend, the
// documented seeded window starts (reimplemented here), per-epoch determinism, and evaluation
// windows that cover the stream in order.

/// The documented training starts, reimplemented: uniform in 0..<bound by Lemire's method on
/// 64-bit values of two Philox words (counter (w/4, 0, epoch, 0) for small w and epoch).
private func referenceStarts(count: Int, bound: UInt64, seed: UInt64, epoch: UInt32) -> [Int] {
    var words = [UInt32]()
    var next = 0
    func word() -> UInt32 {
        if next == words.count {
            let b = Philox.block(counter: (UInt32(words.count / 4), 0, epoch, 0), seed: seed)
            words += [b.0, b.1, b.2, b.3]
        }
        next += 1
        return words[next - 1]
    }
    return (0..<count).map { _ in
        while true {
            let x = UInt64(word()) << 32 | UInt64(word())
            let (high, low) = x.multipliedFullWidth(by: bound)
            if low >= (UInt64.max - bound + 1) % bound { return Int(high) }
        }
    }
}

/// A stream whose token at position p is p % modulus, so a window's values name its start.
private func stream(_ n: Int, modulus: Int = 1 << 24) -> [Int] { (0..<n).map { $0 % modulus } }

@Suite struct LanguageModelingBatchesTests {
    @Test(arguments: [(1000, 16, 4, 5), (17, 16, 3, 2), (300, 1, 7, 4), (64, 8, 1, 10)])
    func targetsAreInputsShiftedByOne(tokens n: Int, sequenceLength t: Int, batchSize b: Int, batches: Int) throws {
        let tokens = stream(n)
        let loader = try LanguageModelBatches(tokens: tokens, sequenceLength: t, batchSize: b,
                                              batchesPerEpoch: batches, seed: 9, on: CPUBackend.shared)
        #expect(loader.windowCount == n - t)
        let epoch = loader.epoch(2)
        #expect(epoch.count == batches)
        #expect(epoch.starts == loader.windowStarts(epoch: 2))
        var seen = 0
        for (index, batch) in epoch.enumerated() {
            #expect(batch.shape == [b, t])
            #expect(batch.inputValues.count == b * t && batch.targetValues.count == b * t)
            #expect(batch.starts == Array(epoch.starts[index * b..<(index + 1) * b]))
            for (row, start) in batch.starts.enumerated() {
                #expect(start >= 0 && start + t < n, "start \(start)")
                let input = Array(batch.inputValues[row * t..<(row + 1) * t])
                let target = Array(batch.targetValues[row * t..<(row + 1) * t])
                #expect(input == tokens[start..<start + t].map(Float.init))
                #expect(target == tokens[start + 1...start + t].map(Float.init))
                #expect(Array(input.dropFirst()) == Array(target.dropLast()))
            }
            #expect(try epoch.batch(index).starts == batch.starts)
            seen += 1
        }
        #expect(seen == batches)
    }

    @Test func startsFollowTheDocumentedPhiloxDraws() throws {
        for (n, t, seed, epoch) in [(1000, 16, UInt64(3), 0), (50, 7, 12345, 4), (5000, 100, 0, 1)] {
            let loader = try LanguageModelBatches(tokens: stream(n), sequenceLength: t, batchSize: 6,
                                                  batchesPerEpoch: 7, seed: seed, on: CPUBackend.shared)
            #expect(loader.windowStarts(epoch: epoch)
                    == referenceStarts(count: 42, bound: UInt64(n - t), seed: seed, epoch: UInt32(epoch)),
                    "n \(n), T \(t), seed \(seed), epoch \(epoch)")
        }
    }

    @Test func deterministicPerSeedAndEpoch() throws {
        func starts(seed: UInt64, epoch: Int) throws -> [Int] {
            try LanguageModelBatches(tokens: stream(10_000), sequenceLength: 32, batchSize: 8, batchesPerEpoch: 4,
                                     seed: seed, on: CPUBackend.shared).epoch(epoch).flatMap(\.starts)
        }
        #expect(try starts(seed: 1, epoch: 0) == starts(seed: 1, epoch: 0))
        #expect(try starts(seed: 1, epoch: 7) == starts(seed: 1, epoch: 7))
        #expect(try starts(seed: 1, epoch: 0) != starts(seed: 1, epoch: 1))
        #expect(try starts(seed: 1, epoch: 0) != starts(seed: 2, epoch: 0))
        #expect(try starts(seed: 1, epoch: 0).count == 32)
    }

    /// Every start in 0...N − T − 1 is drawn, about equally often (χ² with 9 degrees of freedom).
    @Test func startsAreUniformOverEveryWindow() throws {
        let loader = try LanguageModelBatches(tokens: stream(20), sequenceLength: 10, batchSize: 100,
                                              batchesPerEpoch: 50, seed: 4, on: CPUBackend.shared)
        let starts = loader.windowStarts(epoch: 0)
        var histogram = [Int](repeating: 0, count: 10)
        for s in starts { histogram[s] += 1 }
        let expected = Double(starts.count) / 10
        let chiSquare = histogram.reduce(0.0) { $0 + pow(Double($1) - expected, 2) / expected }
        #expect(histogram.allSatisfy { $0 > 0 })
        #expect(chiSquare < 27.88, "χ² \(chiSquare) for \(histogram) (0.1 % critical value 27.88)")
    }

    @Test(arguments: [(1000, 16, 4), (17, 16, 3), (100, 9, 5), (101, 10, 2), (2, 1, 1)])
    func evaluationCoversTheStreamInOrder(tokens n: Int, sequenceLength t: Int, batchSize b: Int) throws {
        let tokens = stream(n, modulus: 97)
        let loader = try LanguageModelBatches(tokens: tokens, sequenceLength: t, batchSize: b, seed: 1, on: CPUBackend.shared)
        let windows = (n - 1) / t
        #expect(loader.evaluationWindowCount == windows)
        #expect(loader.evaluationBatchCount == (windows + b - 1) / b)
        let evaluation = loader.evaluation()
        #expect(evaluation.count == loader.evaluationBatchCount)
        #expect(evaluation.starts == (0..<windows).map { $0 * t })
        var inputs = [Float]()
        var targets = [Float]()
        for (index, batch) in evaluation.enumerated() {
            let rows = index == evaluation.count - 1 ? windows - index * b : b
            #expect(batch.shape == [rows, t])
            inputs += batch.inputValues
            targets += batch.targetValues
        }
        #expect(inputs == tokens[0..<windows * t].map(Float.init))
        #expect(targets == tokens[1...windows * t].map(Float.init))
        // The evaluation pass does not depend on the seed or the epoch.
        let other = try LanguageModelBatches(tokens: tokens, sequenceLength: t, batchSize: b, seed: 99, on: CPUBackend.shared)
        #expect(other.evaluation().starts == evaluation.starts)
    }

    @Test func defaultBatchesPerEpochCoverTheStreamOnce() throws {
        let loader = try LanguageModelBatches(tokens: stream(10_001), sequenceLength: 100, batchSize: 10, on: CPUBackend.shared)
        #expect(loader.batchesPerEpoch == 10)
        let small = try LanguageModelBatches(tokens: stream(20), sequenceLength: 10, batchSize: 10, on: CPUBackend.shared)
        #expect(small.batchesPerEpoch == 1)
        #expect(small.epoch(0).count == 1)
    }

    @Test func invalidArguments() throws {
        let cpu = CPUBackend.shared
        let cases: [(String, () throws -> LanguageModelBatches)] = [
            ("T 0", { try LanguageModelBatches(tokens: stream(10), sequenceLength: 0, batchSize: 1, on: cpu) }),
            ("B 0", { try LanguageModelBatches(tokens: stream(10), sequenceLength: 2, batchSize: 0, on: cpu) }),
            ("batches 0", { try LanguageModelBatches(tokens: stream(10), sequenceLength: 2, batchSize: 1, batchesPerEpoch: 0, on: cpu) }),
            ("overflow", { try LanguageModelBatches(tokens: stream(10), sequenceLength: 2, batchSize: Int.max / 2, batchesPerEpoch: 3, on: cpu) }),
            ("short", { try LanguageModelBatches(tokens: stream(10), sequenceLength: 10, batchSize: 1, on: cpu) }),
            ("Int.max", { try LanguageModelBatches(tokens: stream(10), sequenceLength: .max, batchSize: 1, on: cpu) }),
            ("negative", { try LanguageModelBatches(tokens: [1, 2, -1, 3], sequenceLength: 2, batchSize: 1, on: cpu) }),
            ("2^24", { try LanguageModelBatches(tokens: [1, 2, 1 << 24, 3], sequenceLength: 2, batchSize: 1, on: cpu) }),
        ]
        for (name, make) in cases {
            let error = try #require(throws: DatasetError.self, "\(name)") { try make() }
            #expect(error.kind == .invalidArgument && error.context == "LanguageModelBatches", "\(name)")
        }
        // The boundary cases are accepted.
        _ = try LanguageModelBatches(tokens: [0, (1 << 24) - 1], sequenceLength: 1, batchSize: 1, on: cpu)
        let loader = try LanguageModelBatches(tokens: stream(10), sequenceLength: 9, batchSize: 2, batchesPerEpoch: 2, on: cpu)
        #expect(loader.windowStarts(epoch: 0).allSatisfy { $0 == 0 }, "one window: every start is 0")
        #expect(throws: DatasetError.self) { try loader.epoch(0).batch(2) }
        #expect(throws: DatasetError.self) { try loader.evaluation().batch(-1) }
    }

    /// The tensors land on each backend with shape [B, T] and feed Embedding and crossEntropy.
    @Test(arguments: TestBackend.all)
    func tensorsOnEveryBackend(_ testBackend: TestBackend) throws {
        #expect(TestBackend.openCLProblem == nil, "\(TestBackend.openCLProblem ?? "")")
        let backend = testBackend.backend
        let vocabularySize = 11
        let loader = try LanguageModelBatches(tokens: stream(200, modulus: vocabularySize), sequenceLength: 5,
                                              batchSize: 3, batchesPerEpoch: 2, seed: 8, on: backend)
        for batch in loader.epoch(1) {
            let (input, targets) = try batch.tensors()
            #expect(input.shape == [3, 5] && targets.shape == [3, 5])
            #expect(input.backend === backend && targets.backend === backend)
            #expect(try input.scalars() == batch.inputValues)
            #expect(try targets.scalars() == batch.targetValues)
            // Equal logits for every class: the loss is ln V.
            let logits = try Tensor.zeros([15, vocabularySize], on: backend)
            let loss = try crossEntropy(logits: logits, targets: targets.reshaped(to: [-1]))
            #expect(abs(try loss.item() - Float(log(Double(vocabularySize)))) < 1e-5)
        }
    }
}
