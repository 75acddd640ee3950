import KilnCore

/// Multi-head attention, as `torch.nn.MultiheadAttention` (Vaswani et al. 2017):
/// `MHA(Q, K, V) = concat(head_1, …, head_h)·W_Oᵀ + b_O`, with
/// `head_i = softmax((Q·W_Q,iᵀ + b_Q,i)(K·W_K,iᵀ + b_K,i)ᵀ/√d + M)·(V·W_V,iᵀ + b_V,i)`, `d = embedDim/numHeads`.
///
/// Shapes (E = embedDim, L target length, S source length, B batch):
/// - `batchFirst == false` (PyTorch's default): query `[L, B, E]`, key `[S, B, kdim]`, value
///   `[S, B, vdim]`, output `[L, B, E]`; `batchFirst == true`: `[B, L, E]`, `[B, S, kdim]`,
///   `[B, S, vdim]`, `[B, L, E]`. Unbatched inputs `[L, E]`, `[S, kdim]`, `[S, vdim]` give `[L, E]`.
/// - `keyPaddingMask` `[B, S]` (unbatched `[S]`): a non-zero entry hides that key from every query
///   (PyTorch's boolean `key_padding_mask`, True = ignore).
/// - `attnMask` `[L, S]` or `[B·numHeads, L, S]` (unbatched `[L, S]` or `[numHeads, L, S]`); see `Mask`.
///
/// Self-attention passes one tensor as query, key and value; cross-attention passes the target as
/// query and the memory (source) as key and value, whose feature sizes may differ (`kdim`, `vdim`).
///
/// Parameters, PyTorch's names so its state dicts load: with `kdim == vdim == embedDim` (and no
/// grouped-query attention) the packed `in_proj_weight` `[3E, E]`, else `q_proj_weight` `[E, E]`,
/// `k_proj_weight` `[E_kv, kdim]` and `v_proj_weight` `[E_kv, vdim]`; `in_proj_bias` `[E + 2·E_kv]`
/// (rows q, k, v) and `out_proj.weight` `[E, E]`, `out_proj.bias` `[E]` with `bias`. Here
/// `E_kv = numKeyValueHeads·headDim` (= E without grouped-query attention). Initialisation as
/// PyTorch: Xavier-uniform in-projections (the packed matrix as one `[3E, E]` weight), zero
/// biases, `out_proj.weight` `U(−1/√E, 1/√E)`; all seeded.
///
/// Grouped-query attention (Ainslie et al. 2023), an extension of PyTorch's layer:
/// `numKeyValueHeads` (dividing `numHeads`) key/value heads, query head h using key/value head
/// `h / (numHeads/numKeyValueHeads)`; it always uses the separate projection weights.
///
/// The attention runs through `scaledDotProductAttention` (the flash kernels on every backend).
/// Differences from PyTorch: `isCausal` applies the causal mask itself (top-left aligned; combined
/// with `attnMask` when both are given) instead of being a hint about `attnMask`; a query row that
/// sees no key attends to nothing (zero heads, so the output row is `b_O`), never NaN; attention weights are computed only
/// when asked for (`needWeights`, default false here, true in PyTorch); `add_bias_kv` and
/// `add_zero_attn` are not supported.
public final class MultiHeadAttention: Module {
    /// An attention mask, `[L, S]` or `[B·numHeads, L, S]` (unbatched `[L, S]` or `[numHeads, L, S]`).
    public enum Mask: Sendable {
        /// Added to the scaled scores (−∞ hides a key): PyTorch's float `attn_mask`.
        case additive(Tensor)
        /// A non-zero entry hides that key from that query: PyTorch's boolean `attn_mask` of
        /// `nn.MultiheadAttention` (True = not allowed to attend).
        case disallowed(Tensor)
        /// A non-zero entry lets that query attend to that key, zeros hide it: the boolean convention of
        /// `F.scaled_dot_product_attention` and `AttentionMask.boolean`.
        case allowed(Tensor)

        var tensor: Tensor {
            switch self {
            case .additive(let t), .disallowed(let t), .allowed(let t): t
            }
        }

        /// The mask as additive values (0 or −∞ for the boolean forms), its shape kept.
        func additiveValues() throws -> Tensor {
            switch self {
            case .additive(let t): return t
            case .disallowed(let t):
                return try Tensor.selecting(t, Tensor.full([], value: -.infinity, on: t.backend),
                                            Tensor.zeros([], on: t.backend))
            case .allowed(let t):
                return try Tensor.selecting(t, Tensor.zeros([], on: t.backend),
                                            Tensor.full([], value: -.infinity, on: t.backend))
            }
        }
    }

    public var isTraining = true
    public let embedDim: Int
    public let numHeads: Int
    /// Key/value heads (grouped-query attention when fewer than `numHeads`).
    public let numKeyValueHeads: Int
    /// The feature size of the key input.
    public let kdim: Int
    /// The feature size of the value input.
    public let vdim: Int
    /// `embedDim / numHeads`, the size d of each head; scores are scaled by 1/√d.
    public let headDim: Int
    /// The probability of dropping an attention weight (training mode only).
    public let dropout: Float
    /// Inputs and outputs `[B, L, E]` when true, `[L, B, E]` when false.
    public let batchFirst: Bool
    public let seed: UInt64
    /// Training calls with dropout made so far (the stream of the next dropout seed).
    public private(set) var callCount: UInt64 = 0

    /// `in_proj_weight` `[3E, E]` (rows: query, key, value), when the projections are packed.
    public let inProjWeight: Parameter?
    /// `q_proj_weight` `[E, E]`, when not packed.
    public let qProjWeight: Parameter?
    /// `k_proj_weight` `[E_kv, kdim]`, when not packed.
    public let kProjWeight: Parameter?
    /// `v_proj_weight` `[E_kv, vdim]`, when not packed.
    public let vProjWeight: Parameter?
    /// `in_proj_bias` `[E + 2·E_kv]`, with `bias`.
    public let inProjBias: Parameter?
    /// `out_proj`: `Linear(E, E)`.
    public let outProj: Linear

    /// Whether the projections are the packed `in_proj_weight`.
    public var isPacked: Bool { inProjWeight != nil }

    /// - Parameters:
    ///   - kdim, vdim: the key and value feature sizes (nil: `embedDim`).
    ///   - numKeyValueHeads: nil: `numHeads` (standard multi-head attention).
    ///   - dropout: the probability of dropping an attention weight in training, in [0, 1).
    ///   - seed: the initial weights and the dropout streams.
    /// - Throws: `TensorError` naming `MultiHeadAttention` for sizes < 1, `embedDim` not divisible by
    ///   `numHeads`, `numKeyValueHeads` not dividing `numHeads`, or a dropout outside [0, 1).
    public init(embedDim: Int, numHeads: Int, dropout: Float = 0, bias: Bool = true, kdim: Int? = nil,
                vdim: Int? = nil, batchFirst: Bool = false, numKeyValueHeads: Int? = nil, seed: UInt64,
                on backend: any Backend) throws {
        let op = "MultiHeadAttention"
        let kvHeads = numKeyValueHeads ?? numHeads
        try requirePositive(["embedDim": embedDim, "numHeads": numHeads, "kdim": kdim ?? embedDim,
                             "vdim": vdim ?? embedDim, "numKeyValueHeads": kvHeads], layer: op)
        guard embedDim % numHeads == 0 else {
            throw TensorError(.invalidArgument, op: op, "embedDim \(embedDim) is not divisible by numHeads \(numHeads)")
        }
        guard numHeads % kvHeads == 0 else {
            throw TensorError(.invalidArgument, op: op,
                              "numKeyValueHeads \(kvHeads) does not divide numHeads \(numHeads)")
        }
        guard dropout >= 0, dropout < 1 else {
            throw TensorError(.invalidArgument, op: op, "dropout must lie in [0, 1), got \(dropout)")
        }
        self.embedDim = embedDim
        self.numHeads = numHeads
        self.numKeyValueHeads = kvHeads
        self.kdim = kdim ?? embedDim
        self.vdim = vdim ?? embedDim
        self.headDim = embedDim / numHeads
        self.dropout = dropout
        self.batchFirst = batchFirst
        self.seed = seed
        let kvEmbed = kvHeads * headDim
        func xavier(_ shape: [Int], stream: UInt64) throws -> Parameter {
            Parameter(try Initializer.xavierUniform(shape, seed: Initializer.derivedSeed(seed, stream: stream), on: backend))
        }
        if self.kdim == embedDim, self.vdim == embedDim, kvHeads == numHeads {
            inProjWeight = try xavier([3 * embedDim, embedDim], stream: 0)
            (qProjWeight, kProjWeight, vProjWeight) = (nil, nil, nil)
        } else {
            inProjWeight = nil
            qProjWeight = try xavier([embedDim, embedDim], stream: 0)
            kProjWeight = try xavier([kvEmbed, self.kdim], stream: 1)
            vProjWeight = try xavier([kvEmbed, self.vdim], stream: 2)
        }
        inProjBias = bias ? Parameter(try Tensor.zeros([embedDim + 2 * kvEmbed], on: backend)) : nil
        outProj = try Linear(inputSize: embedDim, outputSize: embedDim, bias: bias,
                             seed: Initializer.derivedSeed(seed, stream: 3), on: backend)
        if let b = outProj.bias { try b.assign(Tensor.zeros([embedDim], on: backend)) }
    }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        var out: [(name: String, parameter: Parameter)] = []
        if let inProjWeight { out.append(("in_proj_weight", inProjWeight)) }
        if let qProjWeight, let kProjWeight, let vProjWeight {
            out += [("q_proj_weight", qProjWeight), ("k_proj_weight", kProjWeight), ("v_proj_weight", vProjWeight)]
        }
        if let inProjBias { out.append(("in_proj_bias", inProjBias)) }
        return out
    }

    public var children: [(name: String, module: any Module)] { [("out_proj", outProj)] }

    /// The seed of the attention-dropout stream of the k-th training call (k = 0, 1, …):
    /// `Initializer.derivedSeed(Initializer.derivedSeed(seed, stream: 4), stream: k)`.
    public func dropoutSeed(forCall k: UInt64) -> UInt64 {
        Initializer.derivedSeed(Initializer.derivedSeed(seed, stream: 4), stream: k)
    }

    /// Self-attention: `input` is query, key and value.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try forward(input, input, input).output
    }

    /// The attention output; see `forward`.
    public func callAsFunction(_ query: Tensor, _ key: Tensor, _ value: Tensor, keyPaddingMask: Tensor? = nil,
                               attnMask: Mask? = nil, isCausal: Bool = false) throws -> Tensor {
        try forward(query, key, value, keyPaddingMask: keyPaddingMask, attnMask: attnMask, isCausal: isCausal).output
    }

    /// The attention output and, with `needWeights`, the attention weights, as PyTorch's `forward`.
    ///
    /// In training mode with `dropout > 0` each attention weight is dropped with probability
    /// `dropout` (the rest scaled by 1/(1 − dropout)) from the Philox stream of
    /// `dropoutSeed(forCall: callCount)`, identically on every backend; evaluation mode drops nothing.
    /// - Parameters:
    ///   - keyPaddingMask: `[B, S]` (unbatched `[S]`); non-zero hides the key.
    ///   - attnMask: `[L, S]` or `[B·numHeads, L, S]` (unbatched `[L, S]` or `[numHeads, L, S]`).
    ///   - isCausal: hides key j from query i when j > i (top-left aligned when L ≠ S).
    ///   - needWeights: also return the attention weights, computed by a second, materialised
    ///     softmax (O(L·S) memory per head) with the same masks and dropout.
    ///   - averageAttnWeights: the weights averaged over heads, `[B, L, S]` (unbatched `[L, S]`);
    ///     false: per head, `[B, numHeads, L, S]` (unbatched `[numHeads, L, S]`).
    /// - Returns: the output (`[L, B, E]`, `[B, L, E]` or `[L, E]` as the query) and the weights
    ///   (nil unless `needWeights`).
    /// - Throws: `TensorError` naming `MultiHeadAttention` and the shapes for inputs or masks that do not fit.
    public func forward(_ query: Tensor, _ key: Tensor, _ value: Tensor, keyPaddingMask: Tensor? = nil,
                        attnMask: Mask? = nil, isCausal: Bool = false, needWeights: Bool = false,
                        averageAttnWeights: Bool = true) throws -> (output: Tensor, weights: Tensor?) {
        let op = "MultiHeadAttention"
        let batched = query.rank == 3
        guard query.rank == 3 || query.rank == 2, key.rank == query.rank, value.rank == query.rank else {
            throw TensorError(.shapeMismatch, op: op,
                              "query, key and value need rank 3 (batched) or 2 (unbatched) alike, got \(query.shape), \(key.shape) and \(value.shape)")
        }
        guard query.shape.last == embedDim, key.shape.last == kdim, value.shape.last == vdim else {
            throw TensorError(.shapeMismatch, op: op,
                              "expects feature sizes embedDim \(embedDim), kdim \(kdim) and vdim \(vdim); got query \(query.shape), key \(key.shape) and value \(value.shape)")
        }
        // Everything in [B, seq, features] from here on.
        func batchMajor(_ t: Tensor) throws -> Tensor {
            batched ? (batchFirst ? t : try t.permuted([1, 0, 2])) : try t.unsqueezed(axis: 0)
        }
        let q = try batchMajor(query), k = try batchMajor(key), v = try batchMajor(value)
        let (b, l, s) = (q.shape[0], q.shape[1], k.shape[1])
        guard k.shape[0] == b, v.shape[0] == b, v.shape[1] == s else {
            throw TensorError(.shapeMismatch, op: op,
                              "query \(query.shape), key \(key.shape) and value \(value.shape) need one batch size, and key and value one length (batchFirst: \(batchFirst))")
        }
        let mask = try combinedMask(keyPaddingMask: keyPaddingMask, attnMask: attnMask, batched: batched,
                                    batch: b, targetLength: l, sourceLength: s)

        let (qp, kp, vp) = try project(q, k, v, sameInput: Self.isSameTensor(query, key) && Self.isSameTensor(key, value))
        let qh = try qp.reshaped(to: [b, l, numHeads, headDim]).permuted([0, 2, 1, 3])
        let kh = try kp.reshaped(to: [b, s, numKeyValueHeads, headDim]).permuted([0, 2, 1, 3])
        let vh = try vp.reshaped(to: [b, s, numKeyValueHeads, headDim]).permuted([0, 2, 1, 3])

        let p: Float = isTraining ? dropout : 0
        var dropSeed: UInt64 = 0
        if p > 0 {
            dropSeed = dropoutSeed(forCall: callCount)
            callCount &+= 1
        }
        let attended = try scaledDotProductAttention(query: qh, key: kh, value: vh, mask: mask.map { .additive($0) },
                                                     isCausal: isCausal, dropout: p, seed: dropSeed).output
        let merged = try attended.permuted([0, 2, 1, 3]).reshaped(to: [b, l, embedDim])
        let projected = try outProj(merged)
        let output = batched ? (batchFirst ? projected : try projected.permuted([1, 0, 2]))
                             : try projected.squeezed(axis: 0)
        guard needWeights else { return (output, nil) }
        var weights = try attentionWeights(query: qh, key: kh, mask: mask, isCausal: isCausal, dropout: p, seed: dropSeed)
        if averageAttnWeights { weights = try weights.mean(alongAxes: [1]) }
        return (output, batched ? weights : try weights.squeezed(axis: 0))
    }

    // MARK: - Pieces of the forward pass

    /// True when `a` and `b` are the same tensor (storage, shape and autograd record).
    private static func isSameTensor(_ a: Tensor, _ b: Tensor) -> Bool {
        a.storage === b.storage && a.shape == b.shape && a.gradientNode === b.gradientNode
    }

    /// `x·Wᵀ + b` over the last axis of `[B, n, in]`.
    private static func linear(_ x: Tensor, _ w: Tensor, _ bias: Tensor?) throws -> Tensor {
        let (batch, n, inSize) = (x.shape[0], x.shape[1], x.shape[2])
        var y = try matmul(x.reshaped(to: [batch * n, inSize]), w, transposeB: true)
        if let bias { y = try y + bias }
        return try y.reshaped(to: [batch, n, w.shape[0]])
    }

    /// The query, key and value projections `[B, L, E]`, `[B, S, E_kv]`, `[B, S, E_kv]`; one GEMM
    /// with the packed weight when query, key and value are one tensor.
    private func project(_ q: Tensor, _ k: Tensor, _ v: Tensor, sameInput: Bool) throws -> (Tensor, Tensor, Tensor) {
        let kvEmbed = numKeyValueHeads * headDim
        let sizes = [embedDim, kvEmbed, kvEmbed]
        let biases = try inProjBias.map { try $0.value.split(sizes: sizes, axis: 0) }
        if let packed = inProjWeight?.value {
            if sameInput {
                let qkv = try Self.linear(q, packed, inProjBias?.value)
                let parts = try qkv.split(sizes: sizes, axis: 2)
                return (parts[0], parts[1], parts[2])
            }
            let w = try packed.split(sizes: sizes, axis: 0)
            return (try Self.linear(q, w[0], biases?[0]), try Self.linear(k, w[1], biases?[1]),
                    try Self.linear(v, w[2], biases?[2]))
        }
        guard let wq = qProjWeight?.value, let wk = kProjWeight?.value, let wv = vProjWeight?.value else {
            throw TensorError(.invalidArgument, op: "MultiHeadAttention", "has no projection weights")
        }
        return (try Self.linear(q, wq, biases?[0]), try Self.linear(k, wk, biases?[1]),
                try Self.linear(v, wv, biases?[2]))
    }

    /// The key-padding and attention masks as one additive mask broadcastable to `[B, H, L, S]`
    /// (nil when neither is given).
    private func combinedMask(keyPaddingMask: Tensor?, attnMask: Mask?, batched: Bool, batch: Int,
                              targetLength l: Int, sourceLength s: Int) throws -> Tensor? {
        let op = "MultiHeadAttention"
        var total: Tensor?
        if let padding = keyPaddingMask {
            let expected = batched ? [batch, s] : [s]
            guard padding.shape == expected else {
                throw TensorError(.shapeMismatch, op: op,
                                  "keyPaddingMask must have shape \(batched ? "[B, S]" : "[S]") = \(expected), got \(padding.shape)")
            }
            let hidden = try MultiHeadAttention.Mask.disallowed(padding.detached()).additiveValues()
            total = try hidden.reshaped(to: [batch, 1, 1, s])
        }
        if let attnMask {
            let m = attnMask.tensor
            let perHead = batched ? batch * numHeads : numHeads
            let values = try attnMask.additiveValues()
            let shaped: Tensor
            if m.shape == [l, s] {
                shaped = try values.reshaped(to: [1, 1, l, s])
            } else if m.shape == [perHead, l, s] {
                shaped = try values.reshaped(to: [batch, numHeads, l, s])
            } else {
                let form = batched ? "[B·numHeads, L, S] = \([perHead, l, s])" : "[numHeads, L, S] = \([perHead, l, s])"
                throw TensorError(.shapeMismatch, op: op,
                                  "attnMask must have shape [L, S] = \([l, s]) or \(form), got \(m.shape)")
            }
            total = try total.map { try $0 + shaped } ?? shaped
        }
        return total
    }

    /// The attention weights `[B, H, L, S]` by the materialised formula: `softmax(QKᵀ/√d + M)`
    /// with zeros for a row that sees no key, then the dropout of `scaledDotProductAttention`
    /// (the same Philox stream, so they are the weights the output used).
    private func attentionWeights(query: Tensor, key: Tensor, mask: Tensor?, isCausal: Bool, dropout: Float,
                                  seed: UInt64) throws -> Tensor {
        let backend = query.backend
        let (b, l, s) = (query.shape[0], query.shape[2], key.shape[2])
        var keys = key
        if numKeyValueHeads != numHeads {
            let group = numHeads / numKeyValueHeads
            keys = try key.reshaped(to: [b, numKeyValueHeads, 1, s, headDim])
                .broadcast(to: [b, numKeyValueHeads, group, s, headDim])
                .reshaped(to: [b, numHeads, s, headDim])
        }
        var scores = try matmul(query, keys, transposeB: true, alpha: 1 / Float(headDim).squareRoot())
        if isCausal {
            var hidden = [Float](repeating: 0, count: l * s)
            for i in 0..<l { for j in 0..<s where j > i { hidden[i * s + j] = -.infinity } }
            scores = try scores + Tensor(hidden, shape: [l, s], on: backend)
        }
        if let mask { scores = try scores + mask }
        let lse = try scores.logSumExp(alongAxes: [-1], keepingDimensions: true)
        let visible = try lse.greater(Tensor.full([], value: -.infinity, on: backend))
        let shift = try Tensor.selecting(visible, lse, Tensor.zeros([], on: backend))
        let weights = try exp(scores - shift)
        guard dropout > 0 else { return weights }
        let uniform = try Tensor.uniform([b, numHeads, l, s], seed: seed, on: backend)
        let keep = try uniform.greaterEqual(Tensor.full([], value: dropout, on: backend)) * (1 / (1 - dropout))
        return try weights * keep
    }
}
