import Foundation

/// Progress inside a language-model training epoch, reported after every batch.
public struct LanguageModelProgress: Sendable {
    public var batch: Int
    public var batches: Int
    /// Running mean cross-entropy per token (nats).
    public var loss: Double
    public var tokens: Int
    public var seconds: Double
    /// Tokens per second so far.
    public var throughput: Double { Double(tokens) / max(seconds, 1e-9) }
    /// Estimated seconds left in the epoch.
    public var secondsLeft: Double { seconds / Double(max(batch, 1)) * Double(batches - batch) }
}

/// Mean next-token cross-entropy of `model(input)` (logits [B, T, V]) against `targets` [B, T].
public func languageModelLoss(_ model: some Module, input: Tensor, targets: Tensor) throws -> Tensor {
    let logits = try model(input)
    let vocabulary = logits.shape[logits.rank - 1]
    return try crossEntropy(logits: logits.reshaped(to: [targets.count, vocabulary]),
                            targets: targets.reshaped(to: [targets.count]))
}

/// One epoch of next-token training: for each batch, the mean cross-entropy, `backward()`,
/// clipping of the global gradient norm to `clipNorm` (seed 003 uses 1.0; nil: no clipping),
/// `optimizer.step()`, then `afterStep` (e.g. a per-step learning-rate schedule's `step()`).
/// Returns the mean loss per token, the tokens and the seconds.
public func trainLanguageModelEpoch(_ model: some Module, optimizer: any Optimizer, batches: LanguageModelBatches,
                                    epoch: Int, clipNorm: Double? = 1.0, afterStep: (() throws -> Void)? = nil,
                                    progress: ((LanguageModelProgress) -> Void)? = nil) throws -> LanguageModelProgress {
    model.train()
    let start = Date()
    let windows = batches.epoch(epoch)
    var lossSum = 0.0, tokens = 0
    var last = LanguageModelProgress(batch: 0, batches: windows.count, loss: .nan, tokens: 0, seconds: 0)
    for (i, batch) in windows.enumerated() {
        let (x, y) = try batch.tensors()
        optimizer.zeroGradients()
        let loss = try languageModelLoss(model, input: x, targets: y)
        try loss.backward()
        if let clipNorm { try clipGradientNorm(optimizer.parameters, maxNorm: clipNorm) }
        try optimizer.step()
        try afterStep?()
        lossSum += Double(try loss.item()) * Double(y.count)
        tokens += y.count
        last = LanguageModelProgress(batch: i + 1, batches: windows.count, loss: lossSum / Double(tokens), tokens: tokens,
                                     seconds: Date().timeIntervalSince(start))
        progress?(last)
    }
    return last
}

/// The mean next-token cross-entropy per token over the evaluation windows of `batches` (the
/// first `maxBatches` of them when given), in evaluation mode without gradients.
public func evaluateLanguageModel(_ model: some Module, batches: LanguageModelBatches, maxBatches: Int? = nil) throws
    -> (loss: Double, tokens: Int)
{
    model.eval()
    defer { model.train() }
    var lossSum = 0.0, tokens = 0
    try withoutGradients {
        for (i, batch) in batches.evaluation().enumerated() {
            if let maxBatches, i >= maxBatches { break }
            let (x, y) = try batch.tensors()
            lossSum += Double(try languageModelLoss(model, input: x, targets: y).item()) * Double(y.count)
            tokens += y.count
        }
    }
    return (lossSum / Double(max(tokens, 1)), tokens)
}

/// Samples `count` tokens after `prompt` from a causal language model whose `model(tokens [1, T])`
/// gives logits [1, T, V]: each step runs the model on the last `contextLength` tokens and draws
/// the next from the last position's logits with `sampleNextToken` (temperature, top-k), using
/// uniform numbers from Philox with `seed` (the same text on every backend, up to ties).
public func generateTokens(_ model: some Module, prompt: [Int], count: Int, contextLength: Int,
                           temperature: Float = 1, topK: Int? = nil, seed: UInt64 = 0,
                           on backend: any Backend) throws -> [Int] {
    guard !prompt.isEmpty, count >= 0, contextLength >= 1 else {
        throw TensorError(.invalidArgument, op: "generateTokens",
                          "needs a non-empty prompt, count ≥ 0 and contextLength ≥ 1; got \(prompt.count) tokens, count \(count), contextLength \(contextLength)")
    }
    model.eval()
    defer { model.train() }
    let uniforms = try Tensor.uniform([max(count, 1)], seed: seed, on: CPUBackend.shared).scalars()
    var tokens = prompt
    try withoutGradients {
        for step in 0..<count {
            let context = Array(tokens.suffix(contextLength))
            let input = try Tensor(context.map(Float.init), shape: [1, context.count], on: backend)
            let logits = try model(input)
            let vocabulary = logits.shape[logits.rank - 1]
            let last = try logits.reshaped(to: [context.count, vocabulary]).sliced(axis: 0, start: context.count - 1)
            let next = try sampleNextToken(logits: try last.scalars(), temperature: temperature, topK: topK,
                                           random: Double(uniforms[step]))
            tokens.append(next)
        }
    }
    return Array(tokens.dropFirst(prompt.count))
}
