import KilnCore

/// A decoder-only (GPT-style) Transformer language model (Radford et al. 2018/2019):
/// `h_0 = dropout(E[tokens] + P)`, `h_{l+1} = block_l(h_l)` with pre-LN causal self-attention
/// blocks, `logits = LN(h_N)·W_outᵀ`.
///
/// Shapes: tokens `[B, T]` (integral ids stored as Float, `0 ..< vocabSize`, T ≤ maxLength with the
/// learned position embedding) or `[T]`; logits `[B, T, vocabSize]` or `[T, vocabSize]`. Position t's
/// logits depend on tokens 0…t only.
///
/// Positions (`PositionalEncoding`): a learned position embedding `[maxLength, dModel]` (GPT's,
/// the default), none, or any module that maps `[B, T, dModel]` embeddings to the same shape with its
/// encoding added (a sinusoidal or learned encoding module; rotary encodings act inside attention and
/// do not fit this hook).
///
/// Children and parameters: `token_embedding.weight` `[vocabSize, dModel]`,
/// `position_embedding.weight` `[maxLength, dModel]` (learned positions), `positional_encoding.…`
/// (a module), `layers.<i>.…` (`TransformerEncoderLayer`, pre-LN, batch-first, run causal), `norm.*`,
/// and `lm_head.weight` `[vocabSize, dModel]` unless the output projection is tied to the token
/// embedding (`tieWeights`, the default, as GPT-2). Initialisation as GPT-2 for the embeddings
/// (`N(0, 0.02²)`), PyTorch's defaults elsewhere; all seeded.
public final class TransformerLanguageModel: Module {
    /// How positions enter the model.
    public enum PositionalEncoding {
        /// A learned embedding `[maxLength, dModel]` added to the token embeddings.
        case learned
        /// No positional information beyond what the causal mask implies.
        case none
        /// A module mapping `[B, T, dModel]` to `[B, T, dModel]` with its encoding added; its parameters
        /// are the model's (`positional_encoding.…`).
        case module(any Module)
    }

    public var isTraining = true
    public let vocabSize: Int
    public let maxLength: Int
    public let dModel: Int
    public let tokenEmbedding: Embedding
    /// `position_embedding`, with `.learned` positions.
    public let positionEmbedding: Embedding?
    /// `positional_encoding`, with `.module` positions.
    public let positionalEncoding: (any Module)?
    /// Dropout on the summed embeddings.
    public let dropout: Dropout
    public let layers: [TransformerEncoderLayer]
    /// The final LayerNorm.
    public let norm: LayerNorm
    /// `lm_head`, nil when tied to the token embedding.
    public let lmHead: Linear?

    /// - Parameters:
    ///   - dimFeedforward: nil: 4·dModel.
    ///   - tieWeights: the output projection is the token embedding matrix.
    /// - Throws: `TensorError` naming `TransformerLanguageModel` (or the layer at fault) for sizes < 1,
    ///   `dModel` not divisible by `nHead`, or a bad dropout or eps.
    public init(vocabSize: Int, maxLength: Int, dModel: Int, nHead: Int, numLayers: Int, dimFeedforward: Int? = nil,
                dropout: Float = 0.1, activation: TransformerActivation = .gelu, layerNormEps: Float = 1e-5,
                tieWeights: Bool = true, positionalEncoding: PositionalEncoding = .learned, seed: UInt64,
                on backend: any Backend) throws {
        let op = "TransformerLanguageModel"
        try requirePositive(["vocabSize": vocabSize, "maxLength": maxLength, "dModel": dModel, "nHead": nHead,
                             "numLayers": numLayers], layer: op)
        self.vocabSize = vocabSize
        self.maxLength = maxLength
        self.dModel = dModel
        tokenEmbedding = try Embedding(count: vocabSize, dimension: dModel, seed: seed, on: backend)
        try tokenEmbedding.weight.assign(Tensor.normal([vocabSize, dModel], standardDeviation: 0.02,
                                                       seed: Initializer.derivedSeed(seed, stream: 0), on: backend))
        switch positionalEncoding {
        case .learned:
            let table = try Embedding(count: maxLength, dimension: dModel, seed: seed, on: backend)
            try table.weight.assign(Tensor.normal([maxLength, dModel], standardDeviation: 0.02,
                                                  seed: Initializer.derivedSeed(seed, stream: 1), on: backend))
            positionEmbedding = table
            self.positionalEncoding = nil
        case .none:
            positionEmbedding = nil
            self.positionalEncoding = nil
        case .module(let m):
            positionEmbedding = nil
            self.positionalEncoding = m
        }
        self.dropout = try Dropout(probability: dropout, seed: Initializer.derivedSeed(seed, stream: 2))
        let layerSeed = Initializer.derivedSeed(seed, stream: 3)
        layers = try (0..<numLayers).map { i in
            try TransformerEncoderLayer(dModel: dModel, nHead: nHead, dimFeedforward: dimFeedforward ?? 4 * dModel,
                                        dropout: dropout, activation: activation, layerNormEps: layerNormEps,
                                        batchFirst: true, normFirst: true,
                                        seed: Initializer.derivedSeed(layerSeed, stream: UInt64(i)), on: backend)
        }
        norm = try LayerNorm(normalizedShape: [dModel], eps: layerNormEps, on: backend)
        lmHead = tieWeights ? nil : try Linear(inputSize: dModel, outputSize: vocabSize, bias: false,
                                               seed: Initializer.derivedSeed(seed, stream: 4), on: backend)
    }

    public var children: [(name: String, module: any Module)] {
        var out: [(name: String, module: any Module)] = [("token_embedding", tokenEmbedding)]
        if let positionEmbedding { out.append(("position_embedding", positionEmbedding)) }
        if let positionalEncoding { out.append(("positional_encoding", positionalEncoding)) }
        out.append(("dropout", dropout))
        out += layers.enumerated().map { ("layers.\($0.offset)", $0.element as any Module) }
        out.append(("norm", norm))
        if let lmHead { out.append(("lm_head", lmHead)) }
        return out
    }

    /// Whether the output projection is the token embedding.
    public var isTied: Bool { lmHead == nil }

    /// The next-token logits of every position.
    /// - Throws: `TensorError` naming `TransformerLanguageModel` for tokens not of rank 1 or 2, a
    ///   sequence longer than `maxLength` (learned positions), or `Embedding` for a bad id.
    public func callAsFunction(_ tokens: Tensor) throws -> Tensor {
        let op = "TransformerLanguageModel"
        guard tokens.rank == 1 || tokens.rank == 2 else {
            throw TensorError(.shapeMismatch, op: op, "expects tokens [B, T] or [T], got \(tokens.shape)")
        }
        let batched = tokens.rank == 2
        let ids = batched ? tokens : try tokens.unsqueezed(axis: 0)
        let length = ids.shape[1]
        var x = try tokenEmbedding(ids)  // [B, T, dModel]
        if let positionEmbedding {
            guard length <= maxLength else {
                throw TensorError(.invalidArgument, op: op,
                                  "sequence length \(length) exceeds maxLength \(maxLength) of the learned position embedding")
            }
            x = try x + positionEmbedding.weight.value.sliced(axis: 0, start: 0, end: length)
        }
        if let positionalEncoding { x = try positionalEncoding(x) }
        x = try dropout(x)
        for layer in layers { x = try layer(x, srcMask: nil, isCausal: true) }
        x = try norm(x)
        let logits: Tensor
        if let lmHead {
            logits = try lmHead(x)
        } else {
            let (b, t) = (x.shape[0], x.shape[1])
            logits = try matmul(x.reshaped(to: [b * t, dModel]), tokenEmbedding.weight.value, transposeB: true)
                .reshaped(to: [b, t, vocabSize])
        }
        return batched ? logits : try logits.squeezed(axis: 0)
    }
}
