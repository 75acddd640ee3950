import Foundation

/// What one pass over a data set measured.
public struct EpochSummary: Sendable {
    /// Mean cross-entropy over the samples.
    public var loss: Double
    /// Fraction of samples whose argmax prediction is the label.
    public var accuracy: Double
    public var samples: Int
    public var seconds: Double
    /// Samples per second.
    public var throughput: Double { Double(samples) / max(seconds, 1e-9) }
}

/// Progress inside a training epoch, reported after every batch.
public struct TrainingProgress: Sendable {
    public var batch: Int
    public var batches: Int
    /// Running mean loss and accuracy over the batches so far.
    public var loss: Double
    public var accuracy: Double
    public var samples: Int
    public var seconds: Double
    /// Estimated seconds left in the epoch at the throughput so far.
    public var secondsLeft: Double { seconds / Double(max(batch, 1)) * Double(batches - batch) }
}

/// Trains a classifier for one epoch of `loader`: for each batch, cross-entropy of
/// `model(input)` against the labels, `backward()`, `optimizer.step()`, `zeroGradients()`.
/// The model is put in training mode. `progress` is called after every batch.
public func trainClassifierEpoch(_ model: some Module, optimizer: any Optimizer, loader: DataLoader, epoch: Int,
                                 progress: ((TrainingProgress) -> Void)? = nil) throws -> EpochSummary {
    model.train()
    let start = Date()
    var lossSum = 0.0, correct = 0, seen = 0
    let batches = loader.epoch(epoch)
    for (i, batch) in batches.enumerated() {
        let (x, y) = try batch.tensors()
        optimizer.zeroGradients()
        let logits = try model(x)
        let loss = try crossEntropy(logits: logits, targets: y)
        try loss.backward()
        try optimizer.step()
        lossSum += Double(try loss.item()) * Double(batch.count)
        correct += try correctPredictions(logits, batch.labelValues)
        seen += batch.count
        progress?(TrainingProgress(batch: i + 1, batches: batches.count, loss: lossSum / Double(seen),
                                   accuracy: Double(correct) / Double(seen), samples: seen,
                                   seconds: Date().timeIntervalSince(start)))
    }
    return EpochSummary(loss: lossSum / Double(max(seen, 1)), accuracy: Double(correct) / Double(max(seen, 1)),
                        samples: seen, seconds: Date().timeIntervalSince(start))
}

/// Evaluates a classifier on every batch of `loader` in evaluation mode without recording
/// gradients: the mean cross-entropy, the accuracy and the confusion matrix.
public func evaluateClassifier(_ model: some Module, loader: DataLoader, classes: Int) throws
    -> (summary: EpochSummary, confusion: ConfusionMatrix)
{
    model.eval()
    defer { model.train() }
    let start = Date()
    var confusion = try ConfusionMatrix(classes: classes)
    var lossSum = 0.0, seen = 0
    try withoutGradients {
        for batch in loader.epoch(0) {
            let (x, y) = try batch.tensors()
            let logits = try model(x)
            lossSum += Double(try crossEntropy(logits: logits, targets: y).item()) * Double(batch.count)
            let predicted = try logits.argmax(axis: 1).scalars().map { Int($0) }
            try confusion.add(predicted: predicted, actual: batch.labelValues.map { Int($0) })
            seen += batch.count
        }
    }
    let summary = EpochSummary(loss: lossSum / Double(max(seen, 1)), accuracy: confusion.accuracy, samples: seen,
                               seconds: Date().timeIntervalSince(start))
    return (summary, confusion)
}

/// The number of rows of `logits` [B, classes] whose argmax equals the label.
private func correctPredictions(_ logits: Tensor, _ labels: [Float]) throws -> Int {
    let predicted = try withoutGradients { try logits.detached().argmax(axis: 1).scalars() }
    return zip(predicted, labels).filter { $0 == $1 }.count
}
