import Foundation
import Kiln
import KilnTestSupport
import Testing

/// A CI-sized run of `bench train --dataset fortunes`: a small character-level decoder-only
/// Transformer trained on part of the fortunes corpus; its validation perplexity must fall well
/// below the unigram baseline (what character frequencies alone achieve).
@Suite("Fortunes language model (CI-sized)")
struct FortunesLanguageModelTests {
    @Test("validation perplexity falls well below the unigram baseline; sampling is deterministic",
          arguments: TestBackend.all)
    func trainSmallModel(_ tb: TestBackend) throws {
        let b = tb.backend
        let corpus = try FortunesCorpus()
        let (train, validation) = try corpus.split(validationFraction: 0.1, seed: 7)
        let vocabulary = CharacterVocabulary(texts: corpus.fortunes + ["\n%\n"])
        let trainTokens = try vocabulary.encode(FortunesCorpus.text(of: Array(train.prefix(3000))))
        let validationTokens = try vocabulary.encode(FortunesCorpus.text(of: Array(validation.prefix(300))))
        let unigram = try unigramPerplexity(trainingTokens: trainTokens, validationTokens: validationTokens,
                                            vocabularySize: vocabulary.count)
        let model = try TransformerLanguageModel(vocabSize: vocabulary.count, maxLength: 32, dModel: 64, nHead: 4,
                                                 numLayers: 2, dropout: 0, seed: 1, on: b)
        let optimizer = try AdamW(model.parameters(), learningRate: 3e-3, weightDecay: 0.01)
        let batches = try LanguageModelBatches(tokens: trainTokens, sequenceLength: 32, batchSize: 16,
                                               batchesPerEpoch: 150, seed: 3, on: b)
        let evaluation = try LanguageModelBatches(tokens: validationTokens, sequenceLength: 32, batchSize: 32, on: b)
        let (before, _) = try evaluateLanguageModel(model, batches: evaluation, maxBatches: 4)
        let summary = try trainLanguageModelEpoch(model, optimizer: optimizer, batches: batches, epoch: 0)
        let (after, tokens) = try evaluateLanguageModel(model, batches: evaluation, maxBatches: 4)
        let ppl = try perplexity(meanCrossEntropy: after)
        #expect(tokens == 4 * 32 * 32)
        #expect(summary.tokens == 150 * 16 * 32)
        #expect(try perplexity(meanCrossEntropy: before) > 0.8 * Double(vocabulary.count) / 2,
                "an untrained model is near uniform over \(vocabulary.count) characters")
        #expect(ppl < 0.6 * unigram, "validation perplexity \(ppl) vs unigram baseline \(unigram)")
        let prompt = try vocabulary.encode("The ")
        let a = try generateTokens(model, prompt: prompt, count: 20, contextLength: 32, temperature: 0.8, topK: 5, seed: 9, on: b)
        let c = try generateTokens(model, prompt: prompt, count: 20, contextLength: 32, temperature: 0.8, topK: 5, seed: 9, on: b)
        #expect(a == c && a.count == 20)
        #expect(a.allSatisfy { (0..<vocabulary.count).contains($0) })
    }
}
