import Foundation
import Kiln
import KilnTestSupport
import Testing

// Perplexity and the unigram baseline against hand-computed values; next-token sampling: greedy
// cases, the inverse-CDF layout, frequencies against softmax(z/τ) over the top k, and errors.

/// softmax(z/τ) over the k largest logits (lower id first among equals), zero elsewhere: the
/// distribution sampleNextToken should draw from, computed independently in Float64.
private func expectedProbabilities(_ logits: [Float], temperature: Double, topK: Int) -> [Double] {
    let kept = Set(logits.indices.sorted { (logits[$0], -$0) > (logits[$1], -$1) }.prefix(topK))
    let z = logits.map(Double.init)
    let m = kept.map { z[$0] }.max()!
    let w = z.indices.map { kept.contains($0) ? exp((z[$0] - m) / temperature) : 0 }
    let total = w.reduce(0, +)
    return w.map { $0 / total }
}

/// Deterministic uniforms in [0, 1) (SplitMix64), independent of Kiln's generators.
private func uniforms(_ count: Int, seed: UInt64) -> [Double] {
    var state = seed
    return (0..<count).map { _ in
        state = state &+ 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Double(z >> 11) * 0x1p-53
    }
}

@Suite struct LanguageModelingTests {
    // MARK: - Perplexity

    @Test func perplexityIsTheExponentialOfTheLoss() throws {
        #expect(try perplexity(meanCrossEntropy: 0) == 1)
        #expect(abs(try perplexity(meanCrossEntropy: log(50.0)) - 50) < 1e-12)
        #expect(abs(try perplexity(meanCrossEntropy: 1) - 2.718281828459045) < 1e-15)
        #expect(try perplexity(meanCrossEntropy: .infinity) == .infinity)
        for bad in [-1e-9, -1, Double.nan] {
            let error = try #require(throws: TensorError.self) { try perplexity(meanCrossEntropy: bad) }
            #expect(error.op == "perplexity" && error.kind == .invalidArgument)
        }
    }

    /// A model whose logits are uniform has perplexity V; Kiln's crossEntropy agrees.
    @Test func uniformLogitsHavePerplexityV() throws {
        let backend = CPUBackend.shared
        let logits = try Tensor.zeros([12, 37], on: backend)
        let targets = try Tensor((0..<12).map { Float($0 * 3) }, shape: [12], on: backend)
        let loss = try crossEntropy(logits: logits, targets: targets).item()
        #expect(abs(try perplexity(meanCrossEntropy: Double(loss)) - 37) < 37 * 1e-6)
    }

    // MARK: - Unigram baseline

    @Test func unigramBaselineByHand() throws {
        // Training counts (3, 1, 0): N = 4, V = 3, add-one p = (4/7, 2/7, 1/7). Validation
        // tokens 0, 1, 2, 0: H = −(2 ln 4/7 + ln 2/7 + ln 1/7) / 4, exp H = (7⁴ / (4·4·2·1))^¼.
        let expected = pow(2401.0 / 32, 0.25)
        #expect(abs(try unigramPerplexity(trainingCounts: [3, 1, 0], validationCounts: [2, 1, 1]) - expected) < 1e-12)
        #expect(abs(try unigramPerplexity(trainingTokens: [0, 1, 0, 0], validationTokens: [0, 1, 2, 0],
                                          vocabularySize: 3) - expected) < 1e-12)
        // No training tokens: the uniform 1/V, perplexity V.
        #expect(abs(try unigramPerplexity(trainingCounts: [0, 0, 0, 0, 0], validationCounts: [1, 0, 3, 0, 2]) - 5) < 1e-12)
        // Validation only sees token 1, p = (5 + 1)/(10 + 2): perplexity 2.
        #expect(abs(try unigramPerplexity(trainingCounts: [5, 5], validationCounts: [0, 9]) - 2) < 1e-12)
        // Large equal streams: close to exp(entropy) of the distribution (1/2, 1/4, 1/4) = 2^1.5.
        let big = try unigramPerplexity(trainingCounts: [2_000_000, 1_000_000, 1_000_000], validationCounts: [2, 1, 1])
        #expect(abs(big - pow(2, 1.5)) < 1e-5)
        #expect(try unigramCounts([2, 0, 2, 3], vocabularySize: 4) == [1, 0, 2, 1])
    }

    @Test func unigramErrors() {
        #expect(throws: TensorError.self) { try unigramPerplexity(trainingCounts: [1, 2], validationCounts: [1]) }
        #expect(throws: TensorError.self) { try unigramPerplexity(trainingCounts: [], validationCounts: []) }
        #expect(throws: TensorError.self) { try unigramPerplexity(trainingCounts: [1, -1], validationCounts: [1, 1]) }
        #expect(throws: TensorError.self) { try unigramPerplexity(trainingCounts: [1, 1], validationCounts: [0, 0]) }
        #expect(throws: TensorError.self) { try unigramPerplexity(trainingTokens: [0], validationTokens: [3], vocabularySize: 3) }
        #expect(throws: TensorError.self) { try unigramPerplexity(trainingTokens: [-1], validationTokens: [0], vocabularySize: 3) }
        #expect(throws: TensorError.self) { try unigramCounts([], vocabularySize: 0) }
    }

    // MARK: - Sampling

    @Test func greedyCases() throws {
        let logits: [Float] = [0.5, 2, -1, 2, 1.9]
        for u in [0, 0.3, 0.999999] {
            #expect(try sampleNextToken(logits: logits, temperature: 0, random: u) == 1, "ties go to the lower id")
            #expect(try sampleNextToken(logits: logits, temperature: 5, topK: 1, random: u) == 1)
            #expect(try sampleNextToken(logits: [3, -.infinity, 4], temperature: 0, random: u) == 2)
        }
        // Only one finite logit: always it.
        #expect(try sampleNextToken(logits: [-.infinity, 0, -.infinity], random: 0.99) == 1)
    }

    @Test func inverseCDFLayout() throws {
        // p = (1/2, 1/2): [0, 0.5) → 0, [0.5, 1) → 1.
        #expect(try sampleNextToken(logits: [1, 1], random: 0) == 0)
        #expect(try sampleNextToken(logits: [1, 1], random: 0.4999) == 0)
        #expect(try sampleNextToken(logits: [1, 1], random: 0.5) == 1)
        #expect(try sampleNextToken(logits: [1, 1], random: 0.9999) == 1)
        // p ∝ (1, e, 1) laid out in id order, not by size.
        let e = M_E
        #expect(try sampleNextToken(logits: [0, 1, 0], random: 0.99 / (2 + e)) == 0)
        #expect(try sampleNextToken(logits: [0, 1, 0], random: 1.01 / (2 + e)) == 1)
        #expect(try sampleNextToken(logits: [0, 1, 0], random: (1 + e + 0.01) / (2 + e)) == 2)
        // top-k 2 of (0, 1, 0.5): tokens 1 and 2 with p ∝ (e, e^0.5); token 0 never.
        let p1 = e / (e + exp(0.5))
        #expect(try sampleNextToken(logits: [0, 1, 0.5], topK: 2, random: 0) == 1)
        #expect(try sampleNextToken(logits: [0, 1, 0.5], topK: 2, random: p1 - 1e-9) == 1)
        #expect(try sampleNextToken(logits: [0, 1, 0.5], topK: 2, random: p1 + 1e-9) == 2)
    }

    /// On a regular grid of M uniforms the inverse CDF gives each token M·pᵢ draws to within one.
    @Test(arguments: [(Float(1), nil as Int?), (0.7, 3), (2.5, nil), (1, 6), (0.25, 2), (1, 100)])
    func gridFrequenciesMatchTheSoftmax(temperature: Float, topK: Int?) throws {
        let logits: [Float] = [0.3, -1.2, 2.0, 0.9, 2.0, -0.4]
        let p = expectedProbabilities(logits, temperature: Double(temperature), topK: min(topK ?? 6, 6))
        let m = 20_000
        var counts = [Int](repeating: 0, count: logits.count)
        for j in 0..<m {
            counts[try sampleNextToken(logits: logits, temperature: temperature, topK: topK, random: (Double(j) + 0.5) / Double(m))] += 1
        }
        for i in logits.indices {
            #expect(abs(Double(counts[i]) - Double(m) * p[i]) <= 1, "token \(i): \(counts[i]) draws, expected \(Double(m) * p[i])")
        }
    }

    /// With a fixed pseudo-random uniform sequence the frequencies pass a χ² test against the
    /// softmax probabilities (0.1 % critical value for the degrees of freedom).
    @Test(arguments: [(Float(1), nil as Int?, 20.52), (0.8, 4, 16.27), (3, 2, 10.83)])
    func randomFrequenciesPassChiSquare(temperature: Float, topK: Int?, critical: Double) throws {
        let logits: [Float] = [1.0, 0.2, -0.5, 1.6, 0.0, 0.7]
        let p = expectedProbabilities(logits, temperature: Double(temperature), topK: topK ?? 6)
        let draws = uniforms(30_000, seed: 21)
        var counts = [Int](repeating: 0, count: logits.count)
        for u in draws { counts[try sampleNextToken(logits: logits, temperature: temperature, topK: topK, random: u)] += 1 }
        var chiSquare = 0.0
        for i in logits.indices {
            if p[i] == 0 {
                #expect(counts[i] == 0, "token \(i) is outside the top k")
            } else {
                let expected = Double(draws.count) * p[i]
                chiSquare += pow(Double(counts[i]) - expected, 2) / expected
            }
        }
        #expect(chiSquare < critical, "χ² \(chiSquare), counts \(counts), probabilities \(p)")
    }

    @Test func samplingErrors() throws {
        let cases: [(String, () throws -> Int)] = [
            ("empty", { try sampleNextToken(logits: [], random: 0.5) }),
            ("NaN logit", { try sampleNextToken(logits: [0, .nan], random: 0.5) }),
            ("+∞ logit", { try sampleNextToken(logits: [0, .infinity], random: 0.5) }),
            ("all −∞", { try sampleNextToken(logits: [-.infinity, -.infinity], random: 0.5) }),
            ("negative temperature", { try sampleNextToken(logits: [0, 1], temperature: -0.1, random: 0.5) }),
            ("infinite temperature", { try sampleNextToken(logits: [0, 1], temperature: .infinity, random: 0.5) }),
            ("NaN temperature", { try sampleNextToken(logits: [0, 1], temperature: .nan, random: 0.5) }),
            ("topK 0", { try sampleNextToken(logits: [0, 1], topK: 0, random: 0.5) }),
            ("random 1", { try sampleNextToken(logits: [0, 1], random: 1) }),
            ("random < 0", { try sampleNextToken(logits: [0, 1], random: -0.01) }),
            ("random NaN", { try sampleNextToken(logits: [0, 1], random: .nan) }),
        ]
        for (name, call) in cases {
            let error = try #require(throws: TensorError.self, "\(name)") { try call() }
            #expect(error.op == "sampleNextToken" && error.kind == .invalidArgument, "\(name)")
        }
    }
}
