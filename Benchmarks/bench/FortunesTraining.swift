import ArgumentParser
import Foundation
import Kiln

/// `bench train --dataset fortunes` options: a character-level decoder-only Transformer.
struct LanguageModelOptions: ParsableArguments {
    @Option(name: .customLong("seq-len"), help: "Characters per training window (fortunes).")
    var sequenceLength: Int = 128
    @Option(name: .customLong("d-model"), help: "Model width (fortunes).")
    var dModel: Int = 128
    @Option(help: "Transformer blocks (fortunes).")
    var layers: Int = 4
    @Option(help: "Attention heads (fortunes).")
    var heads: Int = 4
    @Option(name: .customLong("batches-per-epoch"), help: "Training batches per epoch of random windows (fortunes).")
    var batchesPerEpoch: Int = 200
    @Option(name: .customLong("val-batches"), help: "Validation batches per evaluation (fortunes).")
    var validationBatches: Int = 20
    @Option(help: "Prompt of the generated sample (fortunes).")
    var prompt: String = "The "
    @Option(name: .customLong("sample-length"), help: "Characters to generate at the end (fortunes).")
    var sampleLength: Int = 300
    @Option(help: "Sampling temperature (fortunes).")
    var temperature: Float = 0.8
    @Option(name: .customLong("top-k"), help: "Sample among the k most likely characters (fortunes).")
    var topK: Int = 10

    func validate() throws {
        guard sequenceLength > 0, dModel > 0, layers > 0, heads > 0, batchesPerEpoch > 0, validationBatches > 0,
              sampleLength >= 0, topK > 0 else {
            throw ValidationError("--seq-len, --d-model, --layers, --heads, --batches-per-epoch, --val-batches and --top-k must be positive")
        }
        guard dModel % heads == 0 else { throw ValidationError("--d-model \(dModel) must be divisible by --heads \(heads)") }
        guard temperature.isFinite, temperature >= 0 else { throw ValidationError("--temperature must be ≥ 0") }
    }
}

extension TrainBench {
    /// Trains a character-level Transformer language model on the fortunes corpus on each chosen
    /// backend: progress (loss, tokens/s, ETA), validation perplexity per epoch against the unigram
    /// baseline, and a generated sample at the end.
    func runFortunes() throws {
        let loadStart = Date()
        let corpus = try FortunesCorpus()
        let (trainFortunes, validationFortunes) = try corpus.split(validationFraction: 0.1, seed: seed)
        let vocabulary = CharacterVocabulary(texts: corpus.fortunes + ["\n%\n"])
        let trainTokens = try vocabulary.encode(FortunesCorpus.text(of: trainFortunes))
        let validationTokens = try vocabulary.encode(FortunesCorpus.text(of: validationFortunes))
        let unigram = try unigramPerplexity(trainingTokens: trainTokens, validationTokens: validationTokens,
                                            vocabularySize: vocabulary.count)
        let (backends, cl) = try selectedBackends(backend, device: device)
        for line in MachineHeader.lines(openCL: cl) { emit(line) }
        emit(String(format: "fortunes: %d fortunes from %d files (%d train / %d validation), %d characters, vocabulary %d; loaded in %.2f s",
                    corpus.count, corpus.files.count, trainFortunes.count, validationFortunes.count,
                    trainTokens.count + validationTokens.count, vocabulary.count, Date().timeIntervalSince(loadStart)))
        emit(String(format: "unigram baseline: validation perplexity %.2f (add-one smoothed character frequencies of the training text)", unigram))
        var summaries: [String] = []
        for (name, b) in backends {
            summaries.append(try trainLanguageModel(on: b, name: name, vocabulary: vocabulary, trainTokens: trainTokens,
                                                    validationTokens: validationTokens, unigram: unigram))
        }
        emit("\nsummary")
        for s in summaries { emit(s) }
    }

    func trainLanguageModel(on backend: any Backend, name: String, vocabulary: CharacterVocabulary, trainTokens: [Int],
                            validationTokens: [Int], unigram: Double) throws -> String {
        let o = language
        let model = try TransformerLanguageModel(vocabSize: vocabulary.count, maxLength: o.sequenceLength, dModel: o.dModel,
                                                 nHead: o.heads, numLayers: o.layers, dropout: 0.1, seed: seed, on: backend)
        let optimizer = try AdamW(model.parameters(), learningRate: lr, betas: (0.9, 0.95), weightDecay: 0.01)
        let totalSteps = epochCount * o.batchesPerEpoch
        let warmup = min(100, max(1, totalSteps / 10))
        let schedule = try SequentialLR.linearWarmup(steps: warmup, startFactor: 0.01,
                                                     then: CosineAnnealingLR(optimizer: optimizer, tMax: totalSteps - warmup,
                                                                             etaMin: lr / 10))
        let train = try LanguageModelBatches(tokens: trainTokens, sequenceLength: o.sequenceLength, batchSize: batch,
                                             batchesPerEpoch: o.batchesPerEpoch, seed: seed, on: backend)
        let validation = try LanguageModelBatches(tokens: validationTokens, sequenceLength: o.sequenceLength,
                                                  batchSize: batch, on: backend)
        emit("\n[\(name)] \(backend.deviceName): decoder-only Transformer, \(o.layers) layers, d_model \(o.dModel), \(o.heads) heads, context \(o.sequenceLength), \(model.parameterCount) parameters; AdamW lr \(lr) (warm-up \(warmup) steps, cosine), batch \(batch), clip 1.0, \(epochCount) epoch(s) × \(o.batchesPerEpoch) batches")
        let interactive = isatty(1) != 0
        var tokensPerSecond: [Double] = []
        var lastPerplexity = Double.nan
        for epoch in 0..<epochCount {
            var lastPrint = Date.distantPast
            let p = try trainLanguageModelEpoch(model, optimizer: optimizer, batches: train, epoch: epoch, clipNorm: 1.0,
                                                afterStep: { try schedule.step() }) { p in
                let now = Date()
                guard p.batch == p.batches || now.timeIntervalSince(lastPrint) >= (interactive ? 0.5 : 10) else { return }
                lastPrint = now
                let line = String(format: "[%@] epoch %d/%d  batch %d/%d  loss %.4f  %.0f tokens/s  ETA %.0f s",
                                  name, epoch + 1, epochCount, p.batch, p.batches, p.loss, p.throughput, p.secondsLeft)
                emit(interactive ? "\r" + line : line, newline: !interactive)
            }
            if interactive { emit("") }
            tokensPerSecond.append(p.throughput)
            let (loss, tokens) = try evaluateLanguageModel(model, batches: validation, maxBatches: o.validationBatches)
            lastPerplexity = try perplexity(meanCrossEntropy: loss)
            emit(String(format: "[%@] epoch %d: train loss %.4f (perplexity %.2f), validation loss %.4f, perplexity %.2f on %d characters (unigram %.2f), %.1f s, %.0f tokens/s",
                        name, epoch + 1, p.loss, exp(p.loss), loss, lastPerplexity, tokens, unigram, p.seconds, p.throughput))
        }
        let prompt = try vocabulary.encode(o.prompt, unknown: .skip)
        let sample = try generateTokens(model, prompt: prompt.isEmpty ? [0] : prompt, count: o.sampleLength,
                                        contextLength: o.sequenceLength, temperature: o.temperature, topK: o.topK,
                                        seed: seed, on: backend)
        emit("[\(name)] sample (temperature \(o.temperature), top-k \(o.topK)):\n\(o.prompt)\(try vocabulary.decode(sample))\n")
        let url = URL(fileURLWithPath: checkpointPath(backend: name))
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Checkpoint.save(model: model, optimizer: optimizer, metadata: ["dataset": dataset], to: url)
        emit("[\(name)] checkpoint written to \(url.path)")
        let meanThroughput = tokensPerSecond.reduce(0, +) / Double(tokensPerSecond.count)
        return String(format: "%-7@ validation perplexity %.2f after %d epoch(s) (unigram baseline %.2f), %.0f tokens/s, %@",
                      name, lastPerplexity, epochCount, unigram, meanThroughput, backend.deviceName)
    }
}
