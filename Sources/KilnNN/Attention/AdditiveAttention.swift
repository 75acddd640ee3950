import KilnCore

// Attention of a decoder state over a source sequence, as in the encoder–decoder RNNs that came
// before the Transformer: Bahdanau et al. (2015) additive scores and Luong et al. (2015) dot,
// general and concat scores. Both return the context Σ_s α_s·v_s and the weights α.
//
// Layout, shared by both layers (row vectors, as `Linear`):
//   query  [batch, queryLength, querySize], or [batch, querySize] for one decoder step
//   key    [batch, sourceLength, keySize]
//   value  [batch, sourceLength, valueSize]  (default: the key, the encoder annotations h_j)
//   mask   non-zero = attend; [batch, sourceLength] (a source padding mask) or any shape that
//          broadcasts to [batch, queryLength, sourceLength]
//   context [batch, queryLength, valueSize] and weights [batch, queryLength, sourceLength],
//          without the queryLength axis for a one-step query.

/// The validated operands of a source attention: the query as rank 3 and whether it was one step.
private struct SourceAttentionOperands {
    let query: Tensor
    let key: Tensor
    let value: Tensor
    let oneStep: Bool
}

/// Checks the shapes of a source attention against the layer's sizes (nil: any).
private func sourceOperands(query: Tensor, key: Tensor, value: Tensor?, querySize: Int?, keySize: Int?,
                            op: String) throws -> SourceAttentionOperands {
    let value = value ?? key
    guard query.rank == 2 || query.rank == 3, key.rank == 3, value.rank == 3 else {
        throw TensorError(.shapeMismatch, op: op,
                          "expects query [batch, (queryLength,) querySize], key [batch, sourceLength, keySize] and "
                            + "value [batch, sourceLength, valueSize], got \(query.shape), \(key.shape) and \(value.shape)")
    }
    let b = key.shape[0], s = key.shape[1]
    guard query.shape[0] == b, value.shape[0] == b, value.shape[1] == s else {
        throw TensorError(.shapeMismatch, op: op,
                          "batch and source lengths differ: query \(query.shape), key \(key.shape), value \(value.shape)")
    }
    let dq = query.shape[query.rank - 1], dk = key.shape[2]
    if let querySize, dq != querySize {
        throw TensorError(.shapeMismatch, op: op, "expects querySize \(querySize), got query \(query.shape)")
    }
    if let keySize, dk != keySize {
        throw TensorError(.shapeMismatch, op: op, "expects keySize \(keySize), got key \(key.shape)")
    }
    for t in [key, value] where t.backend !== query.backend {
        throw TensorError(.backendMismatch, op: op,
                          "query, key and value live on different backends (\(query.backend.name), \(t.backend.name))")
    }
    let q3 = query.rank == 2 ? try query.unsqueezed(axis: 1) : query
    return SourceAttentionOperands(query: q3, key: key, value: value, oneStep: query.rank == 2)
}

/// softmax over the source axis of `scores` `[B, T, S]` with `mask`, then the context.
///
/// Hidden positions are replaced by −Float.greatestFiniteMagnitude before the softmax (so they get
/// weight exactly 0 and no gradient), and a row that sees no position is multiplied by 0: zero
/// weights and context, never NaN.
private func attend(_ scores: Tensor, _ operands: SourceAttentionOperands, mask: Tensor?,
                    op: String) throws -> (context: Tensor, weights: Tensor) {
    var weights: Tensor
    if let mask {
        let (b, t, s) = (scores.shape[0], scores.shape[1], scores.shape[2])
        let m3 = mask.rank == 2 ? try mask.unsqueezed(axis: 1) : mask
        let fits = m3.rank == 3 && zip(m3.shape, [b, t, s]).allSatisfy { $0 == 1 || $0 == $1 }
        guard fits else {
            throw TensorError(.shapeMismatch, op: op,
                              "mask \(mask.shape) is neither [batch, sourceLength] = [\(b), \(s)] "
                                + "nor broadcastable to [\(b), \(t), \(s)]")
        }
        guard mask.backend === scores.backend else {
            throw TensorError(.backendMismatch, op: op,
                              "the mask lives on \(mask.backend.name), the scores on \(scores.backend.name)")
        }
        let zero = try Tensor.zeros([], on: scores.backend)
        let keep = try m3.notEqual(zero)
        let hidden = try Tensor.full([], value: -Float.greatestFiniteMagnitude, on: scores.backend)
        weights = try softmax(Tensor.selecting(keep, scores, hidden), axis: -1)
        let seesSomething: Tensor = try keep.max(alongAxes: [2], keepingDimensions: true)
        weights = try weights * seesSomething
    } else {
        weights = try softmax(scores, axis: -1)
    }
    var context = try matmul(weights, operands.value)
    if operands.oneStep {
        context = try context.squeezed(axis: 1)
        weights = try weights.squeezed(axis: 1)
    }
    return (context, weights)
}

/// `vᵀ·tanh(q·W_qᵀ + k·W_kᵀ + b)` for every (query, key) pair: `[B, T, S]`.
private func additiveScores(query: Tensor, key: Tensor, queryWeight: Tensor, keyWeight: Tensor,
                            bias: Tensor?, v: Tensor) throws -> Tensor {
    var projectedQuery = try matmul(query, queryWeight, transposeB: true)    // [B, T, H]
    if let bias { projectedQuery = try projectedQuery + bias }
    let projectedKey = try matmul(key, keyWeight, transposeB: true)           // [B, S, H]
    let hidden: Tensor = try projectedQuery.unsqueezed(axis: 2) + projectedKey.unsqueezed(axis: 1)  // [B, T, S, H]
    return try matmul(tanh(hidden), v)                                        // [B, T, S]
}

/// Additive attention (Bahdanau, Cho & Bengio 2015, "Neural Machine Translation by Jointly Learning
/// to Align and Translate", appendix A.1.2):
/// `e_ts = vᵀ·tanh(W_q·q_t + W_k·k_s (+ b))`, `α_t = softmax_s(e_t)` over the visible source
/// positions, `c_t = Σ_s α_ts·v_s`.
///
/// Shapes: see the layout at the top of this file; `W_q` `[hiddenSize, querySize]`, `W_k`
/// `[hiddenSize, keySize]`, `v` `[hiddenSize]`, `b` `[hiddenSize]`. The paper has no bias (the
/// default); with `bias: true` one bias `b` is added inside the tanh (biases on both projections, as
/// in PyTorch's seq2seq tutorial, add up to one; a bias on the score cancels in the softmax).
/// Initialisation as `torch.nn.Linear`: `W_q`, `b` `U(±1/√querySize)`, `W_k` `U(±1/√keySize)`,
/// `v` `U(±1/√hiddenSize)`, each from its own stream of `seed`. Parameters: `query_weight`,
/// `key_weight`, `bias` (optional), `v`. The `[B, T, S, hiddenSize]` pre-activation is materialised.
public final class AdditiveAttention: Module {
    public var isTraining = true
    public let querySize: Int
    public let keySize: Int
    public let hiddenSize: Int
    /// W_q: `[hiddenSize, querySize]`.
    public let queryWeight: Parameter
    /// W_k: `[hiddenSize, keySize]`.
    public let keyWeight: Parameter
    /// b: `[hiddenSize]`, or nil (the paper's form).
    public let bias: Parameter?
    /// v: `[hiddenSize]`.
    public let v: Parameter

    /// - Throws: `TensorError` naming `AdditiveAttention` for a size < 1.
    public init(querySize: Int, keySize: Int, hiddenSize: Int, bias: Bool = false, seed: UInt64,
                on backend: any Backend) throws {
        try requirePositive(["querySize": querySize, "keySize": keySize, "hiddenSize": hiddenSize],
                            layer: "AdditiveAttention")
        self.querySize = querySize
        self.keySize = keySize
        self.hiddenSize = hiddenSize
        let queryBound = 1 / Double(querySize).squareRoot()
        queryWeight = try uniformParameter([hiddenSize, querySize], bound: queryBound,
                                           seed: Initializer.derivedSeed(seed, stream: 0), on: backend)
        keyWeight = try uniformParameter([hiddenSize, keySize], bound: 1 / Double(keySize).squareRoot(),
                                         seed: Initializer.derivedSeed(seed, stream: 1), on: backend)
        v = try uniformParameter([hiddenSize], bound: 1 / Double(hiddenSize).squareRoot(),
                                 seed: Initializer.derivedSeed(seed, stream: 2), on: backend)
        self.bias = bias ? try uniformParameter([hiddenSize], bound: queryBound,
                                                seed: Initializer.derivedSeed(seed, stream: 3), on: backend) : nil
    }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        [("query_weight", queryWeight), ("key_weight", keyWeight)] + (bias.map { [("bias", $0)] } ?? []) + [("v", v)]
    }

    /// The context and attention weights of `query` over the source `key`/`value`.
    /// - Parameters:
    ///   - value: the vectors averaged; nil uses `key` (the paper's annotations h_j).
    ///   - mask: non-zero = attend (see the file's layout notes); nil attends everywhere.
    /// - Returns: `context` `[B, (T,) valueSize]` and `weights` `[B, (T,) S]`, each row summing to 1
    ///   (0 for a row with no visible position).
    /// - Throws: `TensorError` naming `AdditiveAttention` for shapes that do not fit or tensors on
    ///   different backends.
    public func callAsFunction(query: Tensor, key: Tensor, value: Tensor? = nil,
                               mask: Tensor? = nil) throws -> (context: Tensor, weights: Tensor) {
        let op = "AdditiveAttention"
        let operands = try sourceOperands(query: query, key: key, value: value, querySize: querySize,
                                          keySize: keySize, op: op)
        try requireBackend(of: query, matching: v.value, op: op)
        let scores = try additiveScores(query: operands.query, key: operands.key, queryWeight: queryWeight.value,
                                        keyWeight: keyWeight.value, bias: bias?.value, v: v.value)
        return try attend(scores, operands, mask: mask, op: op)
    }

    /// Self-attention: the context of `input` `[B, T, size]` over itself (query = key = value; needs
    /// `querySize == keySize`).
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try self(query: input, key: input).context
    }
}

/// A Luong attention score function (Luong, Pham & Manning 2015, "Effective Approaches to
/// Attention-based Neural Machine Translation", §3.1, eq. 8).
public enum LuongScore: Sendable, Equatable {
    /// `score(h_t, h̄_s) = h_tᵀ·h̄_s` (no parameters; querySize = keySize).
    case dot
    /// `score(h_t, h̄_s) = h_tᵀ·W_a·h̄_s`, `W_a` `[querySize, keySize]`.
    case general
    /// `score(h_t, h̄_s) = v_aᵀ·tanh(W_a·[h_t; h̄_s])`, `W_a` `[hiddenSize, querySize + keySize]`.
    case concat(hiddenSize: Int)
}

/// Global attention of Luong et al. (2015): `e_ts = score(q_t, k_s)` (dot, general or concat),
/// `α_t = softmax_s(e_t)` over the visible source positions, `c_t = Σ_s α_ts·v_s`.
///
/// Shapes: see the layout at the top of this file. Scores are not scaled (the paper's form; divide
/// the query by √d for scaled dot scores). Luong's attentional state `h̃_t = tanh(W_c·[c_t; h_t])` is
/// left to the decoder (a `Linear` on the concatenation). Parameters: none (`dot`); `weight` = `W_a`
/// `[querySize, keySize]` (`general`, initialised `U(±1/√querySize)` as OpenNMT's `linear_in`,
/// whose weight is `W_aᵀ`); `weight` = `W_a` `[hiddenSize, querySize + keySize]` and `v` = `v_a`
/// `[hiddenSize]` (`concat`, `U(±1/√(querySize + keySize))` and `U(±1/√hiddenSize)`). The concat score
/// is computed as `vᵀ·tanh(W_a[:, :querySize]·q + W_a[:, querySize:]·k)`, equal to the paper's.
public final class LuongAttention: Module {
    public var isTraining = true
    public let score: LuongScore
    public let querySize: Int
    public let keySize: Int
    /// `W_a`, or nil for `dot`.
    public let weight: Parameter?
    /// `v_a` `[hiddenSize]` for `concat`, else nil.
    public let v: Parameter?

    /// - Throws: `TensorError` naming `LuongAttention` for sizes < 1 or a `dot` score with
    ///   `querySize ≠ keySize`.
    public init(score: LuongScore, querySize: Int, keySize: Int, seed: UInt64, on backend: any Backend) throws {
        let op = "LuongAttention"
        try requirePositive(["querySize": querySize, "keySize": keySize], layer: op)
        self.score = score
        self.querySize = querySize
        self.keySize = keySize
        switch score {
        case .dot:
            guard querySize == keySize else {
                throw TensorError(.invalidArgument, op: op,
                                  "the dot score needs querySize = keySize, got \(querySize) and \(keySize)")
            }
            weight = nil
            v = nil
        case .general:
            weight = try uniformParameter([querySize, keySize], bound: 1 / Double(querySize).squareRoot(),
                                          seed: Initializer.derivedSeed(seed, stream: 0), on: backend)
            v = nil
        case .concat(let hiddenSize):
            try requirePositive(["hiddenSize": hiddenSize], layer: op)
            weight = try uniformParameter([hiddenSize, querySize + keySize],
                                          bound: 1 / Double(querySize + keySize).squareRoot(),
                                          seed: Initializer.derivedSeed(seed, stream: 0), on: backend)
            v = try uniformParameter([hiddenSize], bound: 1 / Double(hiddenSize).squareRoot(),
                                     seed: Initializer.derivedSeed(seed, stream: 1), on: backend)
        }
    }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        (weight.map { [("weight", $0)] } ?? []) + (v.map { [("v", $0)] } ?? [])
    }

    /// The context and attention weights of `query` over the source `key`/`value`.
    /// - Parameters:
    ///   - value: the vectors averaged; nil uses `key` (Luong's source states h̄_s).
    ///   - mask: non-zero = attend (see the file's layout notes); nil attends everywhere.
    /// - Returns: `context` `[B, (T,) valueSize]` and `weights` `[B, (T,) S]`.
    /// - Throws: `TensorError` naming `LuongAttention` for shapes that do not fit or tensors on
    ///   different backends.
    public func callAsFunction(query: Tensor, key: Tensor, value: Tensor? = nil,
                               mask: Tensor? = nil) throws -> (context: Tensor, weights: Tensor) {
        let op = "LuongAttention"
        let operands = try sourceOperands(query: query, key: key, value: value, querySize: querySize,
                                          keySize: keySize, op: op)
        if let weight { try requireBackend(of: query, matching: weight.value, op: op) }
        let scores: Tensor
        // The initialiser made `weight` for general and concat, and `v` for concat.
        switch (score, weight?.value, v?.value) {
        case (.general, let w?, _):
            let projected = try matmul(operands.query, w)                         // [B, T, keySize]
            scores = try matmul(projected, operands.key, transposeB: true)
        case (.concat, let w?, let vector?):
            let wq = try w.sliced(axis: 1, start: 0, end: querySize)
            let wk = try w.sliced(axis: 1, start: querySize, end: querySize + keySize)
            scores = try additiveScores(query: operands.query, key: operands.key, queryWeight: wq, keyWeight: wk,
                                        bias: nil, v: vector)
        default:
            scores = try matmul(operands.query, operands.key, transposeB: true)
        }
        return try attend(scores, operands, mask: mask, op: op)
    }

    /// Self-attention: the context of `input` `[B, T, size]` over itself (needs `querySize == keySize`).
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try self(query: input, key: input).context
    }
}
