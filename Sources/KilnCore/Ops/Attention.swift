/// Scaled dot-product attention: validation, the automatic flash/naive choice, and the naive path
/// (materialised scores) built from the backend's GEMM, reduction and elementwise kernels.

/// An attention mask broadcastable to `[batch, heads, seqQ, seqK]`.
public enum AttentionMask: Sendable {
    /// Added to the scaled scores (−∞ hides a key), as a float `attn_mask` in PyTorch.
    case additive(Tensor)
    /// Non-zero entries take part in attention, zeros are hidden, as a boolean `attn_mask` in PyTorch.
    case boolean(Tensor)

    var tensor: Tensor {
        switch self {
        case .additive(let t), .boolean(let t): t
        }
    }
}

/// Which attention algorithm runs.
public enum AttentionImplementation: String, Sendable, CaseIterable {
    /// Flash, except for problems of at most `attentionNaiveThreshold` scores per head.
    case automatic
    /// Tiled with an online softmax: O(seq) extra memory.
    case flash
    /// Materialised `[batch, heads, seqQ, seqK]` scores.
    case naive
}

/// The output of `scaledDotProductAttention`.
public struct AttentionResult: Sendable {
    /// `[batch, heads, seqQ, valueDim]`
    public let output: Tensor
    /// `[batch, heads, seqQ]`: log Σ_j exp(s_ij) per query row (−∞ for a row that sees no key),
    /// what the backward pass needs.
    public let logSumExp: Tensor
}

/// The gradients returned by `scaledDotProductAttentionBackward`.
public struct AttentionGradients: Sendable {
    public let query: Tensor
    public let key: Tensor
    public let value: Tensor
}

/// Up to this many scores per (batch, head) the automatic choice takes the naive path. On the
/// 2-core Zen 5 CI machine `bench attention --sweep 1,2,4,...,1024` measured flash faster than naive
/// from seq 1 on both backends (CPU and PoCL), so it is 0 there; re-measure on other devices.
public let attentionNaiveThreshold = 0

/// Attention `softmax(scale·Q·Kᵀ + mask)·V` with PyTorch's `scaled_dot_product_attention` semantics.
///
/// Shapes: query `[batch, heads, seqQ, headDim]`, key `[batch, kvHeads, seqK, headDim]`, value
/// `[batch, kvHeads, seqK, valueDim]`; `kvHeads` divides `heads` (grouped-query attention: query
/// head h uses key/value head h / (heads / kvHeads)). `isCausal` hides key j from query i when
/// j > i (top-left aligned when seqQ ≠ seqK, as PyTorch). `window` w keeps only keys
/// i − w < j ≤ i (local attention; implies causal). Dropout drops each probability with
/// probability `dropout` from the Philox stream of `seed` and scales the rest by 1/(1 − dropout);
/// the same seed drops the same entries on every backend and in the backward pass. A query row
/// that sees no key gets a zero output, never NaN.
/// - Parameters:
///   - scale: defaults to 1/√headDim.
///   - implementation: `.automatic` runs the flash kernels except for tiny problems.
/// - Returns: the output and the per-row logsumexp.
/// - Throws: `TensorError` naming the op and the values for bad shapes or arguments.
public func scaledDotProductAttention(query: Tensor, key: Tensor, value: Tensor, mask: AttentionMask? = nil,
                                      isCausal: Bool = false, scale: Float? = nil, dropout: Float = 0,
                                      seed: UInt64 = 0, window: Int? = nil,
                                      implementation: AttentionImplementation = .automatic) throws -> AttentionResult {
    let op = "scaledDotProductAttention"
    let plan = try AttentionPlan(op: op, query: query, key: key, value: value, mask: mask, isCausal: isCausal,
                                 scale: scale, dropout: dropout, seed: seed, window: window)
    if let m = mask?.tensor { try m.requireNoGradient([m], op: op) }
    // The forward runs unrecorded; the output records one node whose pullback is the attention
    // backward (flash kernels recomputing P from the logsumexp, or the naive formulas).
    let (output, lse) = try withoutGradients { () throws -> (Tensor, Tensor) in
        let (q, k, v) = (query.detached(), key.detached(), value.detached())
        let d = plan.descriptor
        let backend = query.backend
        if plan.usesFlash(implementation) {
            let output = try Tensor.empty([d.batch, d.heads, d.seqQ, d.valueDim], on: backend)
            let lse = try Tensor.empty([d.batch, d.heads, d.seqQ], on: backend)
            if output.count + lse.count > 0 {
                try backend.attentionForward(d, query: q.storage.buffer, key: k.storage.buffer,
                                             value: v.storage.buffer, mask: plan.mask?.storage.buffer,
                                             output: output.storage.buffer, logSumExp: lse.storage.buffer)
            }
            return (output, lse)
        }
        let naive = try plan.naiveProbabilities(query: q, key: k)
        return (try matmul(naive.dropped, plan.expandHeads(v)), try naive.logSumExp.squeezed(axis: -1))
    }
    let recorded = output.recording([query, key, value]) { [q = query.detached(), k = key.detached(),
                                                           v = value.detached(), o = output.detached()] g in
        let grads = try scaledDotProductAttentionBackward(
            query: q, key: k, value: v, output: o, logSumExp: lse, outputGradient: g, mask: mask,
            isCausal: isCausal, scale: scale, dropout: dropout, seed: seed, window: window,
            implementation: implementation)
        return [grads.query, grads.key, grads.value]
    }
    return AttentionResult(output: recorded, logSumExp: lse)
}

/// The gradients of a scalar loss with respect to query, key and value, given the forward
/// pass's `output` and `logSumExp` and the loss's gradient with respect to the output. The
/// arguments that shape the attention (mask, isCausal, scale, dropout, seed, window) must be the
/// forward pass's. The flash path recomputes the probabilities block by block from `logSumExp`.
public func scaledDotProductAttentionBackward(query: Tensor, key: Tensor, value: Tensor, output: Tensor,
                                              logSumExp: Tensor, outputGradient: Tensor,
                                              mask: AttentionMask? = nil, isCausal: Bool = false,
                                              scale: Float? = nil, dropout: Float = 0, seed: UInt64 = 0,
                                              window: Int? = nil,
                                              implementation: AttentionImplementation = .automatic) throws
    -> AttentionGradients
{
    let op = "scaledDotProductAttentionBackward"
    try query.requireNoGradient([query, key, value, output, logSumExp, outputGradient], op: op)
    let plan = try AttentionPlan(op: op, query: query, key: key, value: value, mask: mask, isCausal: isCausal,
                                 scale: scale, dropout: dropout, seed: seed, window: window)
    let d = plan.descriptor
    try query.requireSameBackend([output, logSumExp, outputGradient], op: op)
    let outShape = [d.batch, d.heads, d.seqQ, d.valueDim]
    guard output.shape == outShape, outputGradient.shape == outShape, logSumExp.shape == [d.batch, d.heads, d.seqQ] else {
        throw TensorError(.shapeMismatch, op: op,
                          "output and outputGradient need shape \(outShape) and logSumExp \([d.batch, d.heads, d.seqQ]); got \(output.shape), \(outputGradient.shape) and \(logSumExp.shape)")
    }
    let backend = query.backend
    if plan.usesFlash(implementation) {
        // The kernels write every gradient element (zeros where nothing attends), so no fill here.
        let dq = try Tensor.empty(query.shape, on: backend)
        let dk = try Tensor.empty(key.shape, on: backend)
        let dv = try Tensor.empty(value.shape, on: backend)
        if dq.count + dk.count + dv.count > 0 {
            try backend.attentionBackward(
                d, query: query.storage.buffer, key: key.storage.buffer, value: value.storage.buffer,
                mask: plan.mask?.storage.buffer, output: output.storage.buffer, logSumExp: logSumExp.storage.buffer,
                outputGradient: outputGradient.storage.buffer, queryGradient: dq.storage.buffer,
                keyGradient: dk.storage.buffer, valueGradient: dv.storage.buffer)
        }
        return AttentionGradients(query: dq, key: dk, value: dv)
    }
    // Naive: P recomputed in full; dS = P∘(dP − D), D = rowsum(dO∘O).
    let naive = try plan.naiveProbabilities(query: query, key: key)
    let keyFull = try plan.expandHeads(key)
    let valueFull = try plan.expandHeads(value)
    let dvFull = try matmul(naive.dropped, outputGradient, transposeA: true)
    var dp = try matmul(outputGradient, valueFull, transposeB: true)
    if let keep = naive.keepScaled { dp = try dp * keep }
    let rowDot = try (outputGradient * output).sum(alongAxes: [-1], keepingDimensions: true)
    let ds = try naive.probabilities * (dp - rowDot)
    let dq = try matmul(ds, keyFull, alpha: d.scale)
    let dkFull = try matmul(ds, query, transposeA: true, alpha: d.scale)
    return AttentionGradients(query: dq, key: try plan.sumGroups(dkFull), value: try plan.sumGroups(dvFull))
}

/// A validated attention call: its descriptor, the additive mask, and the two paths' pieces.
struct AttentionPlan {
    let descriptor: AttentionDescriptor
    /// The additive mask (a boolean mask converted), contiguous in its own shape.
    let mask: Tensor?
    let backend: any Backend

    init(op: String, query: Tensor, key: Tensor, value: Tensor, mask: AttentionMask?, isCausal: Bool,
         scale: Float?, dropout: Float, seed: UInt64, window: Int?) throws {
        try query.requireSameBackend([key, value] + (mask.map { [$0.tensor] } ?? []), op: op)
        guard query.rank == 4, key.rank == 4, value.rank == 4 else {
            throw TensorError(.shapeMismatch, op: op,
                              "query, key and value need rank 4 [batch, heads, seq, dim]; got \(query.shape), \(key.shape) and \(value.shape)")
        }
        let (b, h, lq, dh) = (query.shape[0], query.shape[1], query.shape[2], query.shape[3])
        let (hkv, lk) = (key.shape[1], key.shape[2])
        guard key.shape[0] == b, value.shape[0] == b, value.shape[1] == hkv, value.shape[2] == lk,
              key.shape[3] == dh else {
            throw TensorError(.shapeMismatch, op: op,
                              "key \(key.shape) and value \(value.shape) do not fit query \(query.shape): need key [\(b), kvHeads, seqK, \(dh)] and value [\(b), kvHeads, seqK, valueDim]")
        }
        guard hkv > 0 ? h % hkv == 0 : h == 0 else {
            throw TensorError(.shapeMismatch, op: op, "key/value heads \(hkv) must divide query heads \(h)")
        }
        let s = scale ?? (dh > 0 ? 1 / Float(dh).squareRoot() : 1)
        guard s.isFinite else {
            throw TensorError(.invalidArgument, op: op, "scale must be finite, got \(s)")
        }
        guard dropout >= 0, dropout < 1 else {
            throw TensorError(.invalidArgument, op: op, "dropout must lie in [0, 1), got \(dropout)")
        }
        if let window, window < 1 {
            throw TensorError(.invalidArgument, op: op, "window must be ≥ 1, got \(window)")
        }
        var maskStrides: [Int]?
        var additive: Tensor?
        if let mask {
            let m = mask.tensor
            let full = [b, h, lq, lk]
            guard m.rank <= 4, (try? Shape.broadcast(m.shape, full, op: op)) == full else {
                throw TensorError(.shapeMismatch, op: op,
                                  "mask shape \(m.shape) does not broadcast to [batch, heads, seqQ, seqK] = \(full)")
            }
            switch mask {
            case .additive(let t): additive = t
            case .boolean(let t):
                additive = try Tensor.selecting(t, Tensor.zeros([], on: t.backend),
                                                Tensor.full([], value: -.infinity, on: t.backend))
            }
            maskStrides = Shape.broadcastStrides(m.shape, to: full)
        }
        self.mask = additive
        self.backend = query.backend
        descriptor = AttentionDescriptor(batch: b, heads: h, kvHeads: hkv, seqQ: lq, seqK: lk, headDim: dh,
                                         valueDim: value.shape[3], scale: s, isCausal: isCausal,
                                         window: window ?? 0, maskStrides: maskStrides, dropout: dropout, seed: seed)
    }

    func usesFlash(_ implementation: AttentionImplementation) -> Bool {
        switch implementation {
        case .flash: true
        case .naive: false
        case .automatic: descriptor.seqQ * descriptor.seqK > attentionNaiveThreshold
        }
    }

    /// `[batch, kvHeads, seq, d]` repeated to `[batch, heads, seq, d]` (each kv head serves a group
    /// of heads / kvHeads consecutive query heads).
    func expandHeads(_ t: Tensor) throws -> Tensor {
        let d = descriptor
        if d.kvHeads == d.heads { return t }
        let group = d.heads / d.kvHeads
        let (seq, dim) = (t.shape[2], t.shape[3])
        return try t.reshaped(to: [d.batch, d.kvHeads, 1, seq, dim])
            .broadcast(to: [d.batch, d.kvHeads, group, seq, dim])
            .reshaped(to: [d.batch, d.heads, seq, dim])
    }

    /// `[batch, heads, seq, d]` summed over each group of query heads to `[batch, kvHeads, seq, d]`.
    func sumGroups(_ t: Tensor) throws -> Tensor {
        let d = descriptor
        if d.kvHeads == d.heads { return t }
        let (seq, dim) = (t.shape[2], t.shape[3])
        return try t.reshaped(to: [d.batch, d.kvHeads, d.heads / d.kvHeads, seq, dim]).sum(alongAxes: [2])
    }

    /// The materialised probabilities of the naive path: P, the per-row logsumexp `[.., seqQ, 1]`,
    /// the dropout keep mask scaled by 1/(1 − p) (nil without dropout), and P with dropout applied.
    func naiveProbabilities(query: Tensor, key: Tensor) throws
        -> (probabilities: Tensor, logSumExp: Tensor, keepScaled: Tensor?, dropped: Tensor)
    {
        let d = descriptor
        var scores = try matmul(query, expandHeads(key), transposeB: true, alpha: d.scale)
        if d.isCausal || d.window > 0 {
            var hidden = [Float](repeating: 0, count: d.seqQ * d.seqK)
            for i in 0..<d.seqQ {
                for j in 0..<d.seqK where !d.isVisible(query: i, key: j) { hidden[i * d.seqK + j] = -.infinity }
            }
            scores = try scores + Tensor(hidden, shape: [d.seqQ, d.seqK], on: backend)
        }
        if let mask { scores = try scores + mask }
        let lse = try scores.logSumExp(alongAxes: [-1], keepingDimensions: true)
        // A row that sees no key has lse = −∞; subtracting 0 instead gives exp(−∞) = 0 there.
        let visible = try lse.greater(Tensor.full([], value: -.infinity, on: backend))
        let shift = try Tensor.selecting(visible, lse, Tensor.zeros([], on: backend))
        let p = try exp(scores - shift)
        guard d.dropout > 0 else { return (p, lse, nil, p) }
        let uniform = try Tensor.uniform([d.batch, d.heads, d.seqQ, d.seqK], seed: d.seed, on: backend)
        let keep = try uniform.greaterEqual(Tensor.full([], value: d.dropout, on: backend)) * (1 / (1 - d.dropout))
        return (p, lse, keep, try p * keep)
    }
}
