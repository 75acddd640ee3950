import KilnCore

/// A stack of `numLayers` encoder layers with an optional final LayerNorm, as
/// `torch.nn.TransformerEncoder`: `y = norm(layer_{N−1}(… layer_0(x)))`.
///
/// The layers come from `makeLayer(i)`, i = 0 ..< numLayers (PyTorch deep-copies one layer, so its
/// layers start equal; give each call its own seed for independent layers, or the same seed for
/// PyTorch's behaviour). Parameters: `layers.<i>.…` and `norm.weight`, `norm.bias` (PyTorch's names).
/// A pre-LN stack usually takes a final norm; a post-LN stack does not need one.
public final class TransformerEncoder: Module {
    public var isTraining = true
    public let layers: [TransformerEncoderLayer]
    /// The final normalization (`norm`), or nil.
    public let norm: LayerNorm?

    /// - Throws: `TensorError` naming `TransformerEncoder` for numLayers < 1, or a layer's own error.
    public init(numLayers: Int, norm: LayerNorm? = nil,
                makeLayer: (Int) throws -> TransformerEncoderLayer) throws {
        try requirePositive(["numLayers": numLayers], layer: "TransformerEncoder")
        layers = try (0..<numLayers).map(makeLayer)
        self.norm = norm
    }

    public var children: [(name: String, module: any Module)] {
        layers.enumerated().map { ("layers.\($0.offset)", $0.element as any Module) } + (norm.map { [("norm", $0)] } ?? [])
    }

    /// The stack without masks.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try self(input, mask: nil) }

    /// Every layer with the same masks; see `TransformerEncoderLayer`.
    public func callAsFunction(_ src: Tensor, mask: MultiHeadAttention.Mask? = nil, srcKeyPaddingMask: Tensor? = nil,
                               isCausal: Bool = false) throws -> Tensor {
        var x = src
        for layer in layers {
            x = try layer(x, srcMask: mask, srcKeyPaddingMask: srcKeyPaddingMask, isCausal: isCausal)
        }
        return try norm.map { try $0(x) } ?? x
    }
}

/// A stack of `numLayers` decoder layers with an optional final LayerNorm, as
/// `torch.nn.TransformerDecoder`: each layer attends to the same `memory`.
/// Parameters: `layers.<i>.…` and `norm.*` (PyTorch's names).
public final class TransformerDecoder: Module {
    public var isTraining = true
    public let layers: [TransformerDecoderLayer]
    /// The final normalization (`norm`), or nil.
    public let norm: LayerNorm?

    /// - Throws: `TensorError` naming `TransformerDecoder` for numLayers < 1, or a layer's own error.
    public init(numLayers: Int, norm: LayerNorm? = nil,
                makeLayer: (Int) throws -> TransformerDecoderLayer) throws {
        try requirePositive(["numLayers": numLayers], layer: "TransformerDecoder")
        layers = try (0..<numLayers).map(makeLayer)
        self.norm = norm
    }

    public var children: [(name: String, module: any Module)] {
        layers.enumerated().map { ("layers.\($0.offset)", $0.element as any Module) } + (norm.map { [("norm", $0)] } ?? [])
    }

    /// A decoder needs a memory: this one-input `Module` call always throws; call `decoder(tgt, memory:)`.
    /// - Throws: `TensorError` naming `TransformerDecoder`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        throw TensorError(.invalidArgument, op: "TransformerDecoder",
                          "needs the encoder output: call decoder(tgt, memory: memory)")
    }

    /// Every layer with the same memory and masks; see `TransformerDecoderLayer` (causal self-attention by default).
    public func callAsFunction(_ tgt: Tensor, memory: Tensor, tgtMask: MultiHeadAttention.Mask? = nil,
                               memoryMask: MultiHeadAttention.Mask? = nil, tgtKeyPaddingMask: Tensor? = nil,
                               memoryKeyPaddingMask: Tensor? = nil, tgtIsCausal: Bool = true,
                               memoryIsCausal: Bool = false) throws -> Tensor {
        var x = tgt
        for layer in layers {
            x = try layer(x, memory: memory, tgtMask: tgtMask, memoryMask: memoryMask,
                          tgtKeyPaddingMask: tgtKeyPaddingMask, memoryKeyPaddingMask: memoryKeyPaddingMask,
                          tgtIsCausal: tgtIsCausal, memoryIsCausal: memoryIsCausal)
        }
        return try norm.map { try $0(x) } ?? x
    }
}

/// The encoder–decoder Transformer (Vaswani et al. 2017), as `torch.nn.Transformer`:
/// `decoder(tgt, memory: encoder(src))`, both stacks ending in a LayerNorm.
///
/// Defaults are the paper's base model: `dModel = 512`, `nHead = 8`, 6 + 6 layers,
/// `dimFeedforward = 2048`, `dropout = 0.1`, ReLU, post-LN. As PyTorch, every parameter of rank > 1
/// is then re-initialised Xavier-uniform (seeded); biases and norms keep their initial values.
/// Inputs are embeddings (add token embeddings and positional encodings before calling it); shapes
/// `[S, B, dModel]` and `[T, B, dModel]`, or batch-first. Parameters: `encoder.layers.<i>.…`,
/// `encoder.norm.*`, `decoder.layers.<i>.…`, `decoder.norm.*` (PyTorch's names).
public final class Transformer: Module {
    public var isTraining = true
    public let encoder: TransformerEncoder
    public let decoder: TransformerDecoder

    /// - Throws: `TensorError` naming the layer for invalid sizes or hyperparameters.
    public init(dModel: Int = 512, nHead: Int = 8, numEncoderLayers: Int = 6, numDecoderLayers: Int = 6,
                dimFeedforward: Int = 2048, dropout: Float = 0.1, activation: TransformerActivation = .relu,
                layerNormEps: Float = 1e-5, batchFirst: Bool = false, normFirst: Bool = false, bias: Bool = true,
                seed: UInt64, on backend: any Backend) throws {
        let encoderSeed = Initializer.derivedSeed(seed, stream: 0)
        let decoderSeed = Initializer.derivedSeed(seed, stream: 1)
        encoder = try TransformerEncoder(
            numLayers: numEncoderLayers,
            norm: try LayerNorm(normalizedShape: [dModel], eps: layerNormEps, bias: bias, on: backend)
        ) { i in
            try TransformerEncoderLayer(dModel: dModel, nHead: nHead, dimFeedforward: dimFeedforward, dropout: dropout,
                                        activation: activation, layerNormEps: layerNormEps, batchFirst: batchFirst,
                                        normFirst: normFirst, bias: bias,
                                        seed: Initializer.derivedSeed(encoderSeed, stream: UInt64(i)), on: backend)
        }
        decoder = try TransformerDecoder(
            numLayers: numDecoderLayers,
            norm: try LayerNorm(normalizedShape: [dModel], eps: layerNormEps, bias: bias, on: backend)
        ) { i in
            try TransformerDecoderLayer(dModel: dModel, nHead: nHead, dimFeedforward: dimFeedforward, dropout: dropout,
                                        activation: activation, layerNormEps: layerNormEps, batchFirst: batchFirst,
                                        normFirst: normFirst, bias: bias,
                                        seed: Initializer.derivedSeed(decoderSeed, stream: UInt64(i)), on: backend)
        }
        let xavierSeed = Initializer.derivedSeed(seed, stream: 2)
        for (i, (_, p)) in namedParameters().enumerated() where p.shape.count > 1 {
            try p.assign(Initializer.xavierUniform(p.shape, seed: Initializer.derivedSeed(xavierSeed, stream: UInt64(i)),
                                                   on: backend))
        }
    }

    public var children: [(name: String, module: any Module)] { [("encoder", encoder), ("decoder", decoder)] }

    /// The model needs a source and a target: this one-input `Module` call always throws; call
    /// `model(src, tgt)`.
    /// - Throws: `TensorError` naming `Transformer`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        throw TensorError(.invalidArgument, op: "Transformer", "needs a source and a target: call model(src, tgt)")
    }

    /// `decoder(tgt, memory: encoder(src))` with the masks of each; the target self-attention is causal
    /// by default (see `TransformerDecoderLayer`).
    public func callAsFunction(_ src: Tensor, _ tgt: Tensor, srcMask: MultiHeadAttention.Mask? = nil,
                               tgtMask: MultiHeadAttention.Mask? = nil, memoryMask: MultiHeadAttention.Mask? = nil,
                               srcKeyPaddingMask: Tensor? = nil, tgtKeyPaddingMask: Tensor? = nil,
                               memoryKeyPaddingMask: Tensor? = nil, srcIsCausal: Bool = false,
                               tgtIsCausal: Bool = true, memoryIsCausal: Bool = false) throws -> Tensor {
        let memory = try encoder(src, mask: srcMask, srcKeyPaddingMask: srcKeyPaddingMask, isCausal: srcIsCausal)
        return try decoder(tgt, memory: memory, tgtMask: tgtMask, memoryMask: memoryMask,
                           tgtKeyPaddingMask: tgtKeyPaddingMask, memoryKeyPaddingMask: memoryKeyPaddingMask,
                           tgtIsCausal: tgtIsCausal, memoryIsCausal: memoryIsCausal)
    }
}
