import Foundation
import Kiln
import KilnTestSupport
import Testing

// DataLoader: coverage of each epoch, reproducible seeded order, per-epoch reshuffling, dropLast and
// the last partial batch, and the batch tensors' shapes and contents.

/// `n` samples of shape [2, 3] whose values encode (sample, element), labels sample % 10.
private func loader(samples n: Int, batchSize: Int, shuffle: Bool = true, seed: UInt64 = 7,
                    dropLast: Bool = false) throws -> DataLoader {
    let inputs = (0..<n * 6).map { Float($0) }
    let labels = (0..<n).map { Float($0 % 10) }
    return try DataLoader(inputs: inputs, sampleShape: [2, 3], labels: labels, batchSize: batchSize,
                          shuffle: shuffle, seed: seed, dropLast: dropLast, on: CPUBackend.shared)
}

/// The documented order, reimplemented here: Fisher–Yates from the top, j by Lemire's method on
/// 64-bit values made of two Philox words (counter (w/4, 0, epoch, 0) for small w and epoch).
private func referenceOrder(n: Int, seed: UInt64, epoch: UInt32) -> [Int] {
    var words = [UInt32]()
    var nextWord = 0
    func word() -> UInt32 {
        if nextWord == words.count {
            let b = Philox.block(counter: (UInt32(words.count / 4), 0, epoch, 0), seed: seed)
            words += [b.0, b.1, b.2, b.3]
        }
        nextWord += 1
        return words[nextWord - 1]
    }
    var order = Array(0..<n)
    for i in stride(from: n - 1, to: 0, by: -1) {
        let bound = UInt64(i + 1)
        var j: UInt64
        while true {
            let x = UInt64(word()) << 32 | UInt64(word())
            let (high, low) = x.multipliedFullWidth(by: bound)
            // Reject the low products below 2^64 mod bound.
            if low >= (UInt64.max - bound + 1) % bound { j = high; break }
        }
        order.swapAt(i, Int(j))
    }
    return order
}

@Suite struct DataLoaderTests {
    @Test(arguments: [(10, 3), (10, 5), (10, 10), (10, 64), (1, 1), (97, 8)])
    func everySampleExactlyOncePerEpoch(samples: Int, batchSize: Int) throws {
        let l = try loader(samples: samples, batchSize: batchSize)
        #expect(l.count == (samples + batchSize - 1) / batchSize)
        for e in 0..<3 {
            var seen = [Int]()
            var batches = 0
            for batch in l.epoch(e) {
                batches += 1
                let (input, labels) = try batch.tensors()
                #expect(input.shape == [batch.count, 2, 3])
                #expect(labels.shape == [batch.count])
                let values = try input.scalars()
                let labelValues = try labels.scalars()
                for (k, index) in batch.indices.enumerated() {
                    #expect(Array(values[k * 6..<(k + 1) * 6]) == (0..<6).map { Float(index * 6 + $0) })
                    #expect(labelValues[k] == Float(index % 10))
                }
                seen += batch.indices
            }
            #expect(batches == l.count)
            #expect(seen.count == samples)
            #expect(seen.sorted() == Array(0..<samples), "epoch \(e)")
            #expect(seen == l.order(epoch: e))
        }
    }

    @Test func sameSeedSameOrderOtherEpochOrSeedOtherOrder() throws {
        let a = try loader(samples: 1000, batchSize: 32, seed: 42)
        let b = try loader(samples: 1000, batchSize: 32, seed: 42)
        let c = try loader(samples: 1000, batchSize: 32, seed: 43)
        #expect(a.order(epoch: 0) == b.order(epoch: 0))
        #expect(a.order(epoch: 5) == b.order(epoch: 5))
        #expect(a.epoch(3).map(\.indices) == b.epoch(3).map(\.indices))
        #expect(a.order(epoch: 0) != a.order(epoch: 1))
        #expect(a.order(epoch: 1) != a.order(epoch: 2))
        #expect(a.order(epoch: 0) != c.order(epoch: 0))
        #expect(a.order(epoch: 0) != Array(0..<1000))
        // Pinned to the documented algorithm, so the order is the same on every machine and release.
        for (n, seed, epoch) in [(1000, UInt64(42), 0), (1000, 42, 1), (17, 0, 0), (2, 5, 9)] {
            let l = try loader(samples: n, batchSize: 4, seed: seed)
            #expect(l.order(epoch: epoch) == referenceOrder(n: n, seed: seed, epoch: UInt32(epoch)),
                    "n \(n) seed \(seed) epoch \(epoch)")
        }
    }

    @Test func withoutShuffleTheOrderIsTheIndexOrder() throws {
        let l = try loader(samples: 23, batchSize: 5, shuffle: false)
        #expect(l.order(epoch: 0) == Array(0..<23))
        #expect(l.order(epoch: 4) == Array(0..<23))
        #expect(l.epoch(0).map(\.indices) == [Array(0..<5), Array(5..<10), Array(10..<15), Array(15..<20), Array(20..<23)])
    }

    /// Each of the 6 orders of 3 samples is about equally likely over 6,000 epochs.
    @Test func permutationsAreRoughlyUniform() throws {
        let l = try loader(samples: 3, batchSize: 3)
        var counts = [[Int]: Int]()
        for e in 0..<6000 { counts[l.order(epoch: e), default: 0] += 1 }
        #expect(counts.count == 6)
        for (order, count) in counts {
            #expect(count > 850 && count < 1150, "order \(order) drawn \(count) times of 6000")
        }
    }

    @Test func dropLastAndThePartialLastBatch() throws {
        let keep = try loader(samples: 10, batchSize: 4)
        #expect(keep.count == 3)
        #expect(keep.epoch(0).map(\.count) == [4, 4, 2])
        #expect(try keep.epoch(0).batch(2).tensors().input.shape == [2, 2, 3])

        let drop = try loader(samples: 10, batchSize: 4, dropLast: true)
        #expect(drop.count == 2)
        let batches = Array(drop.epoch(1))
        #expect(batches.map(\.count) == [4, 4])
        #expect(Set(batches.flatMap(\.indices)).count == 8)
        #expect(batches.flatMap(\.indices) == Array(drop.order(epoch: 1).prefix(8)))

        let exact = try loader(samples: 12, batchSize: 4, dropLast: true)
        #expect(exact.count == 3)
        let small = try loader(samples: 3, batchSize: 4, dropLast: true)
        #expect(small.count == 0)
        #expect(Array(small.epoch(0)).isEmpty)
        let none = try loader(samples: 0, batchSize: 4)
        #expect(none.count == 0)
        #expect(Array(none.epoch(0)).isEmpty)
    }

    @Test func invalidArgumentsThrow() throws {
        #expect(throws: DatasetError.self) { try loader(samples: 10, batchSize: 0) }
        #expect(throws: DatasetError.self) {
            try DataLoader(inputs: [1, 2, 3], sampleShape: [2], labels: [0, 1], batchSize: 1, on: CPUBackend.shared)
        }
        #expect(throws: DatasetError.self) {
            try DataLoader(inputs: [], sampleShape: [-1], labels: [], batchSize: 1, on: CPUBackend.shared)
        }
        let l = try loader(samples: 10, batchSize: 4)
        #expect(throws: DatasetError.self) { try l.epoch(0).batch(3) }
        #expect(throws: DatasetError.self) { try l.epoch(0).batch(-1) }
    }

    /// Labels come out in the format crossEntropy takes, on every backend.
    @Test(arguments: TestBackend.all)
    func batchesFeedCrossEntropy(_ testBackend: TestBackend) throws {
        let backend = testBackend.backend
        let inputs = (0..<8 * 4).map { Float($0 % 7) / 7 }
        let labels: [Float] = [0, 1, 2, 0, 1, 2, 0, 1]
        let l = try DataLoader(inputs: inputs, sampleShape: [4], labels: labels, batchSize: 3, shuffle: true,
                               seed: 1, on: backend)
        for batch in l.epoch(0) {
            let (input, targets) = try batch.tensors()
            #expect(input.backend === backend)
            let logits = try matmul(input, Tensor.ones([4, 3], on: backend))
            let loss = try crossEntropy(logits: logits, targets: targets)
            // Equal logits per row: the loss is ln 3.
            #expect(abs(try loss.item() - Float(log(3.0))) < 1e-5)
        }
    }
}
