import KilnCore

/// The nonlinearity of a Transformer feed-forward sublayer.
public enum TransformerActivation: String, Sendable, CaseIterable {
    /// `max(0, x)`: PyTorch's default and the original Transformer's.
    case relu
    /// The exact GELU `x·Φ(x)` (erf form): PyTorch's `activation="gelu"`, BERT and GPT.
    case gelu
    /// SwiGLU (Shazeer 2020): `silu(W1·x + b1) ⊙ (W3·x + b3)`, a gated unit with a third matrix.
    case swiglu
}

/// The position-wise feed-forward sublayer of a Transformer, applied to each position alike:
/// `FFN(x) = W2·dropout(act(W1·x + b1)) + b2` (relu, gelu), or for SwiGLU
/// `FFN(x) = W2·dropout(silu(W1·x + b1) ⊙ (W3·x + b3)) + b2`.
///
/// Shapes: input and output `[*, dModel]`. Children (PyTorch's names inside
/// `nn.TransformerEncoderLayer`): `linear1` (`W1`, `[dimFeedforward, dModel]`; the gate for SwiGLU),
/// `dropout`, `linear2` (`W2`, `[dModel, dimFeedforward]`) and, for SwiGLU only, `linear3` (`W3`,
/// `[dimFeedforward, dModel]`, the value path; Llama's `w1`/`w3`/`w2` map to `linear1`/`linear3`/`linear2`).
/// SwiGLU uses `dimFeedforward` as given (no 2/3 rescaling). Linear layers initialise as PyTorch's.
public final class TransformerFeedForward: Module {
    public var isTraining = true
    public let dModel: Int
    public let dimFeedforward: Int
    public let activation: TransformerActivation
    public let linear1: Linear
    public let dropout: Dropout
    public let linear2: Linear
    /// The SwiGLU value projection (nil for relu and gelu).
    public let linear3: Linear?

    /// - Throws: `TensorError` naming `TransformerFeedForward` for sizes < 1 or a dropout outside [0, 1].
    public init(dModel: Int, dimFeedforward: Int = 2048, activation: TransformerActivation = .relu,
                dropout: Float = 0.1, bias: Bool = true, seed: UInt64, on backend: any Backend) throws {
        let op = "TransformerFeedForward"
        try requirePositive(["dModel": dModel, "dimFeedforward": dimFeedforward], layer: op)
        guard dropout >= 0, dropout <= 1 else {
            throw TensorError(.invalidArgument, op: op, "dropout must lie in [0, 1], got \(dropout)")
        }
        self.dModel = dModel
        self.dimFeedforward = dimFeedforward
        self.activation = activation
        linear1 = try Linear(inputSize: dModel, outputSize: dimFeedforward, bias: bias,
                             seed: Initializer.derivedSeed(seed, stream: 0), on: backend)
        self.dropout = try Dropout(probability: dropout, seed: Initializer.derivedSeed(seed, stream: 1))
        linear2 = try Linear(inputSize: dimFeedforward, outputSize: dModel, bias: bias,
                             seed: Initializer.derivedSeed(seed, stream: 2), on: backend)
        linear3 = activation == .swiglu
            ? try Linear(inputSize: dModel, outputSize: dimFeedforward, bias: bias,
                         seed: Initializer.derivedSeed(seed, stream: 3), on: backend)
            : nil
    }

    public var children: [(name: String, module: any Module)] {
        [("linear1", linear1), ("dropout", dropout), ("linear2", linear2)] + (linear3.map { [("linear3", $0)] } ?? [])
    }

    /// - Throws: `TensorError` naming `Linear` when the last dimension is not `dModel`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        let gate = try linear1(input)
        let hidden: Tensor
        switch activation {
        case .relu: hidden = try relu(gate)
        case .gelu: hidden = try gelu(gate)
        case .swiglu:
            guard let linear3 else {
                throw TensorError(.invalidArgument, op: "TransformerFeedForward", "SwiGLU needs linear3")
            }
            hidden = try silu(gate) * linear3(input)
        }
        return try linear2(dropout(hidden))
    }
}

/// Checks the hyperparameters shared by the encoder and decoder layers.
private func checkLayer(dModel: Int, nHead: Int, dimFeedforward: Int, dropout: Float, layerNormEps: Float,
                        op: String) throws {
    try requirePositive(["dModel": dModel, "nHead": nHead, "dimFeedforward": dimFeedforward], layer: op)
    guard dModel % nHead == 0 else {
        throw TensorError(.invalidArgument, op: op, "dModel \(dModel) is not divisible by nHead \(nHead)")
    }
    guard dropout >= 0, dropout < 1 else {
        throw TensorError(.invalidArgument, op: op, "dropout must lie in [0, 1), got \(dropout)")
    }
    guard layerNormEps.isFinite, layerNormEps >= 0 else {
        throw TensorError(.invalidArgument, op: op, "layerNormEps must be finite and ≥ 0, got \(layerNormEps)")
    }
}

/// A Transformer encoder layer, as `torch.nn.TransformerEncoderLayer` (Vaswani et al. 2017):
/// self-attention then the feed-forward sublayer, each with dropout, a residual connection and
/// LayerNorm.
///
/// - Post-LN (`normFirst == false`, the original and PyTorch's default):
///   `x = norm1(x + dropout1(SA(x)))`, `x = norm2(x + dropout2(FFN(x)))`.
/// - Pre-LN (`normFirst == true`, GPT-2 and most current models):
///   `x = x + dropout1(SA(norm1(x)))`, `x = x + dropout2(FFN(norm2(x)))`.
///
/// Seed 003 calls its encoder "pre-normalization" but writes the post-LN formula
/// `LayerNorm(x + Sublayer(x))` (NOTES.md §5 item 3); Kiln offers both and defaults to post-LN,
/// as PyTorch and the paper. The paper's base model is `dModel = 512`, `nHead = 8`,
/// `dimFeedforward = 2048` (= 4·dModel), `dropout = 0.1`, 6 layers.
///
/// Shapes: `[S, B, dModel]` (`batchFirst == false`, PyTorch's default), `[B, S, dModel]`
/// (`batchFirst == true`) or unbatched `[S, dModel]`. Parameters (PyTorch's names, so its state
/// dicts load): `self_attn.in_proj_weight`, `self_attn.in_proj_bias`, `self_attn.out_proj.weight`,
/// `self_attn.out_proj.bias`, `linear1.*`, `linear2.*` (`linear3.*` with SwiGLU), `norm1.*`, `norm2.*`.
public final class TransformerEncoderLayer: Module {
    /// The mode; `feedForward`'s children are this layer's, and its own flag follows this one.
    public var isTraining = true { didSet { feedForward.isTraining = isTraining } }
    public let dModel: Int
    public let nHead: Int
    public let normFirst: Bool
    public let batchFirst: Bool
    /// `self_attn`.
    public let selfAttn: MultiHeadAttention
    /// `linear1`, `dropout`, `linear2` (and `linear3`), listed under this layer as PyTorch does.
    public let feedForward: TransformerFeedForward
    public let norm1: LayerNorm
    public let norm2: LayerNorm
    public let dropout1: Dropout
    public let dropout2: Dropout

    /// - Parameters:
    ///   - dropout: the probability used by every dropout of the layer (attention weights, the
    ///     feed-forward hidden layer and both residual branches), in [0, 1).
    ///   - seed: the initial weights and every dropout stream.
    /// - Throws: `TensorError` naming `TransformerEncoderLayer` for sizes < 1, `dModel` not divisible
    ///   by `nHead`, a dropout outside [0, 1) or a bad eps.
    public init(dModel: Int, nHead: Int, dimFeedforward: Int = 2048, dropout: Float = 0.1,
                activation: TransformerActivation = .relu, layerNormEps: Float = 1e-5, batchFirst: Bool = false,
                normFirst: Bool = false, bias: Bool = true, seed: UInt64, on backend: any Backend) throws {
        try checkLayer(dModel: dModel, nHead: nHead, dimFeedforward: dimFeedforward, dropout: dropout,
                       layerNormEps: layerNormEps, op: "TransformerEncoderLayer")
        self.dModel = dModel
        self.nHead = nHead
        self.normFirst = normFirst
        self.batchFirst = batchFirst
        selfAttn = try MultiHeadAttention(embedDim: dModel, numHeads: nHead, dropout: dropout, bias: bias,
                                          batchFirst: batchFirst, seed: Initializer.derivedSeed(seed, stream: 0),
                                          on: backend)
        feedForward = try TransformerFeedForward(dModel: dModel, dimFeedforward: dimFeedforward, activation: activation,
                                                 dropout: dropout, bias: bias,
                                                 seed: Initializer.derivedSeed(seed, stream: 1), on: backend)
        norm1 = try LayerNorm(normalizedShape: [dModel], eps: layerNormEps, bias: bias, on: backend)
        norm2 = try LayerNorm(normalizedShape: [dModel], eps: layerNormEps, bias: bias, on: backend)
        dropout1 = try Dropout(probability: dropout, seed: Initializer.derivedSeed(seed, stream: 2))
        dropout2 = try Dropout(probability: dropout, seed: Initializer.derivedSeed(seed, stream: 3))
    }

    public var children: [(name: String, module: any Module)] {
        [("self_attn", selfAttn)] + feedForward.children
            + [("norm1", norm1), ("norm2", norm2), ("dropout1", dropout1), ("dropout2", dropout2)]
    }

    /// The layer without masks.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try self(input, srcMask: nil) }

    /// - Parameters:
    ///   - srcMask: the self-attention mask, `[S, S]` or `[B·nHead, S, S]` (see `MultiHeadAttention.Mask`).
    ///   - srcKeyPaddingMask: `[B, S]`, non-zero hides that position.
    ///   - isCausal: position i attends only to positions ≤ i.
    /// - Throws: `TensorError` naming `MultiHeadAttention` for inputs or masks that do not fit.
    public func callAsFunction(_ src: Tensor, srcMask: MultiHeadAttention.Mask? = nil, srcKeyPaddingMask: Tensor? = nil,
                               isCausal: Bool = false) throws -> Tensor {
        func sa(_ x: Tensor) throws -> Tensor {
            try dropout1(selfAttn(x, x, x, keyPaddingMask: srcKeyPaddingMask, attnMask: srcMask, isCausal: isCausal))
        }
        var x = src
        if normFirst {
            x = try x + sa(norm1(x))
            x = try x + dropout2(feedForward(norm2(x)))
        } else {
            x = try norm1(x + sa(x))
            x = try norm2(x + dropout2(feedForward(x)))
        }
        return x
    }
}

/// A Transformer decoder layer, as `torch.nn.TransformerDecoderLayer` (Vaswani et al. 2017): masked
/// self-attention, cross-attention on the encoder output (`memory`), then the feed-forward
/// sublayer, each with dropout, a residual connection and LayerNorm.
///
/// - Post-LN (`normFirst == false`): `x = norm1(x + SA(x))`, `x = norm2(x + CA(x, mem))`,
///   `x = norm3(x + FFN(x))`.
/// - Pre-LN (`normFirst == true`): `x = x + SA(norm1(x))`, `x = x + CA(norm2(x), mem)`,
///   `x = x + FFN(norm3(x))`.
///
/// The self-attention is causal by default (`tgtIsCausal: true`): position i sees targets ≤ i, the
/// decoder of the paper. PyTorch's layer is unmasked unless given `tgt_mask`; pass
/// `tgtIsCausal: false` for that. Shapes: target `[T, B, dModel]`, memory `[S, B, dModel]`
/// (`batchFirst`: `[B, T, dModel]`, `[B, S, dModel]`). Parameters (PyTorch's names):
/// `self_attn.*`, `multihead_attn.*`, `linear1.*`, `linear2.*` (`linear3.*` with SwiGLU),
/// `norm1.*`, `norm2.*`, `norm3.*`.
public final class TransformerDecoderLayer: Module {
    /// The mode; `feedForward`'s children are this layer's, and its own flag follows this one.
    public var isTraining = true { didSet { feedForward.isTraining = isTraining } }
    public let dModel: Int
    public let nHead: Int
    public let normFirst: Bool
    public let batchFirst: Bool
    /// `self_attn`.
    public let selfAttn: MultiHeadAttention
    /// `multihead_attn`: the cross-attention on the memory.
    public let multiheadAttn: MultiHeadAttention
    public let feedForward: TransformerFeedForward
    public let norm1: LayerNorm
    public let norm2: LayerNorm
    public let norm3: LayerNorm
    public let dropout1: Dropout
    public let dropout2: Dropout
    public let dropout3: Dropout

    /// - Throws: `TensorError` naming `TransformerDecoderLayer` for sizes < 1, `dModel` not divisible
    ///   by `nHead`, a dropout outside [0, 1) or a bad eps.
    public init(dModel: Int, nHead: Int, dimFeedforward: Int = 2048, dropout: Float = 0.1,
                activation: TransformerActivation = .relu, layerNormEps: Float = 1e-5, batchFirst: Bool = false,
                normFirst: Bool = false, bias: Bool = true, seed: UInt64, on backend: any Backend) throws {
        try checkLayer(dModel: dModel, nHead: nHead, dimFeedforward: dimFeedforward, dropout: dropout,
                       layerNormEps: layerNormEps, op: "TransformerDecoderLayer")
        self.dModel = dModel
        self.nHead = nHead
        self.normFirst = normFirst
        self.batchFirst = batchFirst
        selfAttn = try MultiHeadAttention(embedDim: dModel, numHeads: nHead, dropout: dropout, bias: bias,
                                          batchFirst: batchFirst, seed: Initializer.derivedSeed(seed, stream: 0),
                                          on: backend)
        multiheadAttn = try MultiHeadAttention(embedDim: dModel, numHeads: nHead, dropout: dropout, bias: bias,
                                               batchFirst: batchFirst, seed: Initializer.derivedSeed(seed, stream: 1),
                                               on: backend)
        feedForward = try TransformerFeedForward(dModel: dModel, dimFeedforward: dimFeedforward, activation: activation,
                                                 dropout: dropout, bias: bias,
                                                 seed: Initializer.derivedSeed(seed, stream: 2), on: backend)
        norm1 = try LayerNorm(normalizedShape: [dModel], eps: layerNormEps, bias: bias, on: backend)
        norm2 = try LayerNorm(normalizedShape: [dModel], eps: layerNormEps, bias: bias, on: backend)
        norm3 = try LayerNorm(normalizedShape: [dModel], eps: layerNormEps, bias: bias, on: backend)
        dropout1 = try Dropout(probability: dropout, seed: Initializer.derivedSeed(seed, stream: 3))
        dropout2 = try Dropout(probability: dropout, seed: Initializer.derivedSeed(seed, stream: 4))
        dropout3 = try Dropout(probability: dropout, seed: Initializer.derivedSeed(seed, stream: 5))
    }

    public var children: [(name: String, module: any Module)] {
        [("self_attn", selfAttn), ("multihead_attn", multiheadAttn)] + feedForward.children
            + [("norm1", norm1), ("norm2", norm2), ("norm3", norm3),
               ("dropout1", dropout1), ("dropout2", dropout2), ("dropout3", dropout3)]
    }

    /// A decoder layer needs a memory: this one-input `Module` call always throws; call
    /// `layer(tgt, memory:)`.
    /// - Throws: `TensorError` naming `TransformerDecoderLayer`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        throw TensorError(.invalidArgument, op: "TransformerDecoderLayer",
                          "needs the encoder output: call layer(tgt, memory: memory)")
    }

    /// - Parameters:
    ///   - memory: the encoder output, in the target's layout.
    ///   - tgtMask, memoryMask: extra self- and cross-attention masks (`[T, T]`, `[T, S]`, or per head).
    ///   - tgtKeyPaddingMask, memoryKeyPaddingMask: `[B, T]`, `[B, S]`; non-zero hides the position.
    ///   - tgtIsCausal: causal self-attention (default true; see the type's notes).
    ///   - memoryIsCausal: causal cross-attention (top-left aligned).
    /// - Throws: `TensorError` naming `MultiHeadAttention` for inputs or masks that do not fit.
    public func callAsFunction(_ tgt: Tensor, memory: Tensor, tgtMask: MultiHeadAttention.Mask? = nil,
                               memoryMask: MultiHeadAttention.Mask? = nil, tgtKeyPaddingMask: Tensor? = nil,
                               memoryKeyPaddingMask: Tensor? = nil, tgtIsCausal: Bool = true,
                               memoryIsCausal: Bool = false) throws -> Tensor {
        func sa(_ x: Tensor) throws -> Tensor {
            try dropout1(selfAttn(x, x, x, keyPaddingMask: tgtKeyPaddingMask, attnMask: tgtMask, isCausal: tgtIsCausal))
        }
        func ca(_ x: Tensor) throws -> Tensor {
            try dropout2(multiheadAttn(x, memory, memory, keyPaddingMask: memoryKeyPaddingMask, attnMask: memoryMask,
                                       isCausal: memoryIsCausal))
        }
        var x = tgt
        if normFirst {
            x = try x + sa(norm1(x))
            x = try x + ca(norm2(x))
            x = try x + dropout3(feedForward(norm3(x)))
        } else {
            x = try norm1(x + sa(x))
            x = try norm2(x + ca(x))
            x = try norm3(x + dropout3(feedForward(x)))
        }
        return x
    }
}
