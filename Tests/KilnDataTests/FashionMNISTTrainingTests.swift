import Foundation
import Kiln
import KilnTestSupport
import Testing

/// A CI-sized run of `bench train`: seed 003's CNN with Adam on the first 2,000 Fashion-MNIST
/// training images for one epoch, evaluated on the first 1,000 test images. Chance is 10%.
@Suite("Fashion-MNIST training (CI-sized)")
struct FashionMNISTTrainingTests {
    @Test("the loss falls and test accuracy beats chance by a wide margin; the checkpoint reloads",
          arguments: TestBackend.all)
    func trainSubset(_ tb: TestBackend) throws {
        let b = tb.backend
        let train = try FashionMNIST(split: .train, limit: 2000, normalization: FashionMNIST.normalization)
        let test = try FashionMNIST(split: .test, limit: 1000, normalization: FashionMNIST.normalization)
        let model = try convolutionalClassifier(inputChannels: 1, imageSize: (28, 28), channels: [8, 16], hidden: 64,
                                                classes: 10, seed: 3, on: b)
        let optimizer = try Adam(model.parameters(), learningRate: 2e-3)
        let loader = try DataLoader(train, batchSize: 50, shuffle: true, seed: 1, on: b)
        var losses: [Double] = []
        let summary = try trainClassifierEpoch(model, optimizer: optimizer, loader: loader, epoch: 0) { p in
            losses.append(p.loss * Double(p.samples))
        }
        // Per-batch losses from the running sums.
        let perBatch = zip(losses, [0] + losses.dropLast()).map { ($0 - $1) / 50 }
        let first = perBatch.prefix(5).reduce(0, +) / 5, last = perBatch.suffix(5).reduce(0, +) / 5
        #expect(first > 2.0, "an untrained 10-class model starts near ln 10 ≈ 2.30, got \(first)")
        #expect(last < 0.5 * first, "loss over the last 5 batches \(last) vs the first 5 \(first)")
        #expect(summary.samples == 2000)
        let testLoader = try DataLoader(test, batchSize: 250, on: b)
        let (result, confusion) = try evaluateClassifier(model, loader: testLoader, classes: 10)
        #expect(confusion.total == 1000)
        #expect(result.accuracy > 0.6, "test accuracy \(result.accuracy) after one epoch on 2,000 images")

        let url = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-fmnist-\(tb.name)-\(UUID()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try Checkpoint.save(model: model, optimizer: optimizer, to: url)
        let reloaded = try convolutionalClassifier(inputChannels: 1, imageSize: (28, 28), channels: [8, 16], hidden: 64,
                                                   classes: 10, seed: 99, on: b)
        let reloadedOptimizer = try Adam(reloaded.parameters(), learningRate: 2e-3)
        _ = try Checkpoint.load(into: reloaded, optimizer: reloadedOptimizer, from: url)
        #expect(reloadedOptimizer.stepCount == optimizer.stepCount)
        let (again, _) = try evaluateClassifier(reloaded, loader: testLoader, classes: 10)
        #expect(again.accuracy == result.accuracy)
    }

    @Test("the confusion matrix counts (true, predicted) pairs; accuracy, precision and recall")
    func confusionMatrix() throws {
        var m = try ConfusionMatrix(classes: 3)
        try m.add(predicted: [0, 1, 2, 2, 1, 0], actual: [0, 1, 1, 2, 1, 2])
        #expect(m.counts == [[1, 0, 0], [0, 2, 1], [1, 0, 1]])
        #expect(m.accuracy == 4.0 / 6.0)
        #expect(m.recall(1) == 2.0 / 3.0)
        #expect(m.precision(2) == 0.5)
        let logits = try Tensor([3, 1, 0, 0, 5, 1], shape: [2, 3], on: CPUBackend.shared)
        try m.add(logits: logits, labels: try Tensor([0, 2], on: CPUBackend.shared))
        #expect(m.counts[0][0] == 2 && m.counts[2][1] == 1)
        #expect(throws: TensorError.self) { try m.add(predicted: [3], actual: [0]) }
        #expect(m.formatted(classNames: ["a", "b", "c"]).contains("recall"))
    }
}
