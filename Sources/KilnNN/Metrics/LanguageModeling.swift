import Foundation
import KilnCore

// Language-model metrics and sampling on the host: perplexity from a mean cross-entropy, the
// unigram baseline a model must beat, and temperature / top-k sampling of the next token.
// Everything here is in Float64; logits come in as Float.

/// Perplexity, `exp(L)` for a mean cross-entropy `L` in nats per token (the `.mean` reduction
/// of `crossEntropy(logits:targets:)`): the size of a uniform choice that is as uncertain as the
/// model. 1 is a perfect model; a uniform guess over V tokens gives V.
///
/// Average the loss over tokens before taking `exp` (the exponential of a mean is not the mean of
/// exponentials): weight each batch's mean by its token count.
/// - Parameter meanCrossEntropy: L ≥ 0, in nats (natural logarithm).
/// - Returns: `exp(L)`, `+∞` for L = +∞ (or L above ≈ 709.78).
/// - Throws: `TensorError.invalidArgument` (op `perplexity`) for a negative or NaN loss.
public func perplexity(meanCrossEntropy: Double) throws -> Double {
    guard meanCrossEntropy >= 0 else {
        throw TensorError(.invalidArgument, op: "perplexity",
                          "meanCrossEntropy must be ≥ 0 (nats per token), got \(meanCrossEntropy)")
    }
    return exp(meanCrossEntropy)
}

/// How many times each token id occurs: `counts[i]` = the number of `i` in `tokens`.
/// - Throws: `TensorError.invalidArgument` (op `unigramCounts`) for a vocabulary size below 1 or
///   a token outside `0..<vocabularySize`.
public func unigramCounts(_ tokens: [Int], vocabularySize: Int) throws -> [Int] {
    guard vocabularySize >= 1 else {
        throw TensorError(.invalidArgument, op: "unigramCounts", "vocabularySize must be ≥ 1, got \(vocabularySize)")
    }
    var counts = [Int](repeating: 0, count: vocabularySize)
    for (offset, token) in tokens.enumerated() {
        guard token >= 0 && token < vocabularySize else {
            throw TensorError(.invalidArgument, op: "unigramCounts",
                              "token \(token) at offset \(offset) is outside 0..<\(vocabularySize)")
        }
        counts[token] += 1
    }
    return counts
}

/// The perplexity of the add-one-smoothed unigram model of the training tokens on the validation
/// tokens: the baseline a language model must beat (it knows the token frequencies and nothing
/// of context).
///
/// With training counts `n_c` over V tokens (N in all) and validation counts `m_c` (M in all),
/// the model is Laplace's add-one estimate `p_c = (n_c + 1) / (N + V)` — every token gets one
/// pseudo-count, so a token never seen in training still has probability `1 / (N + V)` and the
/// perplexity stays finite — and the result is
/// `exp(H)`, `H = −(1/M) Σ_c m_c · ln p_c`, the cross-entropy in nats per validation token.
/// Accumulates in Float64.
/// - Parameters:
///   - trainingCounts: `n_c ≥ 0`, one per token id (`V = trainingCounts.count ≥ 1`).
///   - validationCounts: `m_c ≥ 0`, one per token id, at least one positive.
/// - Throws: `TensorError.invalidArgument` (op `unigramPerplexity`) for count arrays that are
///   empty or of different lengths, a negative count, or no validation tokens.
public func unigramPerplexity(trainingCounts: [Int], validationCounts: [Int]) throws -> Double {
    let op = "unigramPerplexity"
    guard !trainingCounts.isEmpty, trainingCounts.count == validationCounts.count else {
        throw TensorError(.shapeMismatch, op: op,
                          "needs one training and one validation count per token, got \(trainingCounts.count) and \(validationCounts.count)")
    }
    guard trainingCounts.allSatisfy({ $0 >= 0 }), validationCounts.allSatisfy({ $0 >= 0 }) else {
        throw TensorError(.invalidArgument, op: op, "counts must be ≥ 0")
    }
    let validationTotal = validationCounts.reduce(0, +)
    guard validationTotal > 0 else {
        throw TensorError(.invalidArgument, op: op, "needs at least one validation token")
    }
    let denominator = Double(trainingCounts.reduce(0, +)) + Double(trainingCounts.count)
    var logLikelihood = 0.0
    for (n, m) in zip(trainingCounts, validationCounts) where m > 0 {
        logLikelihood += Double(m) * log((Double(n) + 1) / denominator)
    }
    return exp(-logLikelihood / Double(validationTotal))
}

/// `unigramPerplexity(trainingCounts:validationCounts:)` of two token streams.
/// - Throws: `TensorError.invalidArgument` for a vocabulary size below 1, a token outside
///   `0..<vocabularySize` or no validation tokens.
public func unigramPerplexity(trainingTokens: [Int], validationTokens: [Int], vocabularySize: Int) throws -> Double {
    try unigramPerplexity(trainingCounts: unigramCounts(trainingTokens, vocabularySize: vocabularySize),
                          validationCounts: unigramCounts(validationTokens, vocabularySize: vocabularySize))
}

/// Draws the next token from a language model's logits for one position, by inverse-CDF sampling
/// of `softmax(logits / temperature)` restricted to the `topK` largest logits.
///
/// The kept tokens are the k largest logits (ties broken towards the lower id); their
/// probabilities `p_i = exp((z_i − z_max)/τ) / Σ_kept exp((z_j − z_max)/τ)` (the maximum
/// subtracted, in Float64) are laid out in ascending id order on [0, 1), and the token whose
/// interval holds `random` is returned: the first kept `i` with `random < Σ_{j ≤ i} p_j`. With
/// `random` uniform in [0, 1) each token comes with probability `p_i`; the same `random` always
/// gives the same token. Temperature 0, and `topK` 1, return the argmax (the lowest id among
/// equal maxima) whatever `random` is. Logits of `−∞` (masked tokens) get probability 0.
/// - Parameters:
///   - logits: `[V]`, one per token id; finite or `−∞`, at least one finite.
///   - temperature: τ ≥ 0 and finite; below 1 sharpens, above 1 flattens, 0 is greedy.
///   - topK: keep the k ≥ 1 largest logits; `nil` (or k ≥ V) keeps all.
///   - random: a uniform draw in [0, 1), e.g. `Philox.unitFloat` of a Philox word.
/// - Returns: a token id in `0..<V`.
/// - Throws: `TensorError.invalidArgument` (op `sampleNextToken`) for empty logits, a NaN or `+∞`
///   logit, no finite logit, a negative or non-finite temperature, `topK` below 1, or `random`
///   outside [0, 1).
public func sampleNextToken(logits: [Float], temperature: Float = 1, topK: Int? = nil, random: Double) throws -> Int {
    let op = "sampleNextToken"
    guard !logits.isEmpty else { throw TensorError(.invalidArgument, op: op, "logits are empty") }
    if let bad = logits.firstIndex(where: { $0.isNaN || $0 == .infinity }) {
        throw TensorError(.invalidArgument, op: op, "logit \(bad) is \(logits[bad]); logits must be finite or −∞")
    }
    guard logits.contains(where: { $0.isFinite }) else {
        throw TensorError(.invalidArgument, op: op, "every logit is −∞; nothing can be sampled")
    }
    guard temperature >= 0, temperature.isFinite else {
        throw TensorError(.invalidArgument, op: op, "temperature must be finite and ≥ 0, got \(temperature)")
    }
    if let topK, topK < 1 { throw TensorError(.invalidArgument, op: op, "topK must be ≥ 1, got \(topK)") }
    guard random >= 0, random < 1 else {
        throw TensorError(.invalidArgument, op: op, "random must be a uniform draw in [0, 1), got \(random)")
    }

    // Highest logit first, lower id first among equals.
    var ranked = Array(logits.indices)
    ranked.sort { logits[$0] != logits[$1] ? logits[$0] > logits[$1] : $0 < $1 }
    let k = min(topK ?? logits.count, logits.count)
    if temperature == 0 || k == 1 { return ranked[0] }

    let kept = ranked.prefix(k).sorted()
    let maximum = Double(logits[ranked[0]])
    let tau = Double(temperature)
    let weights = kept.map { exp((Double(logits[$0]) - maximum) / tau) }
    let threshold = random * weights.reduce(0, +)
    var cumulative = 0.0
    for (token, weight) in zip(kept, weights) {
        cumulative += weight
        if threshold < cumulative { return token }
    }
    // Rounding left `threshold` at the total: the last token with a positive weight.
    return weights.lastIndex { $0 > 0 }.map { kept[$0] } ?? ranked[0]
}
