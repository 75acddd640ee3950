/// Flash-style tiled attention: forward and backward without materialising the score matrix.
///
/// Layouts (contiguous, row-major): query `[batch, heads, seqQ, headDim]`, key
/// `[batch, kvHeads, seqK, headDim]`, value `[batch, kvHeads, seqK, valueDim]`, output
/// `[batch, heads, seqQ, valueDim]`, logSumExp `[batch, heads, seqQ]`. Query head `h` reads key/value
/// head `h / (heads / kvHeads)` (grouped-query attention, as PyTorch's `enable_gqa`).
///
/// For query row i and key j: `s_ij = scale·q_i·k_j + mask_ij`, where the mask is the optional
/// additive mask plus −∞ where `j` is not visible (causal: `j > i`, top-left aligned as PyTorch's
/// `is_causal`; window w: `j ≤ i − w`). `p_ij = exp(s_ij − lse_i)`, `lse_i = log Σ_j exp(s_ij)`.
/// With dropout probability p, `o_i = Σ_j p_ij·keep_ij/(1 − p)·v_j`, where `keep_ij` is 1 when the
/// Philox uniform of flat index `((b·heads + h)·seqQ + i)·seqK + j` for `seed` is ≥ p (the
/// `RandomDistribution.uniform(0, 1)` stream). A row with no visible key gives `o_i = 0` and
/// `lse_i = −∞`.
public protocol AttentionKernels {
    /// Writes `output` and `logSumExp`. `mask`, when present, is read with `descriptor.maskStrides`.
    func attentionForward(_ descriptor: AttentionDescriptor, query: any BackendBuffer, key: any BackendBuffer,
                          value: any BackendBuffer, mask: (any BackendBuffer)?, output: any BackendBuffer,
                          logSumExp: any BackendBuffer) throws

    /// Writes the gradients of a scalar loss with respect to query, key and value, given the
    /// forward pass's `output` and `logSumExp` and the loss's gradient `outputGradient` (shaped as
    /// `output`). Recomputes the probabilities block by block:
    /// `D_i = Σ_c dO_ic·O_ic`, `dP_ij = keep_ij/(1 − p)·dO_i·v_j`, `dS_ij = p_ij·(dP_ij − D_i)`,
    /// `dQ_i = scale·Σ_j dS_ij k_j`, `dK_j = scale·Σ_i dS_ij q_i`, `dV_j = Σ_i p_ij keep_ij/(1 − p) dO_i`
    /// (summed over the query heads that share a key/value head). Every element of the three
    /// gradients is written, zeros included (e.g. when seqQ or seqK is 0).
    func attentionBackward(_ descriptor: AttentionDescriptor, query: any BackendBuffer, key: any BackendBuffer,
                           value: any BackendBuffer, mask: (any BackendBuffer)?, output: any BackendBuffer,
                           logSumExp: any BackendBuffer, outputGradient: any BackendBuffer,
                           queryGradient: any BackendBuffer, keyGradient: any BackendBuffer,
                           valueGradient: any BackendBuffer) throws
}

/// The sizes and options of one attention call (already validated).
public struct AttentionDescriptor: Sendable, Equatable {
    public var batch: Int
    public var heads: Int
    /// Key/value heads; divides `heads`.
    public var kvHeads: Int
    public var seqQ: Int
    public var seqK: Int
    public var headDim: Int
    public var valueDim: Int
    public var scale: Float
    public var isCausal: Bool
    /// Sliding window: query i sees keys `i − window < j ≤ i` (0 = no window). Implies causal.
    public var window: Int
    /// Strides in elements of the additive mask over `[batch, heads, seqQ, seqK]` (0 where broadcast);
    /// nil when there is no mask.
    public var maskStrides: [Int]?
    /// Dropout probability in [0, 1).
    public var dropout: Float
    public var seed: UInt64

    public init(batch: Int, heads: Int, kvHeads: Int, seqQ: Int, seqK: Int, headDim: Int, valueDim: Int,
                scale: Float, isCausal: Bool = false, window: Int = 0, maskStrides: [Int]? = nil,
                dropout: Float = 0, seed: UInt64 = 0) {
        self.batch = batch
        self.heads = heads
        self.kvHeads = kvHeads
        self.seqQ = seqQ
        self.seqK = seqK
        self.headDim = headDim
        self.valueDim = valueDim
        self.scale = scale
        self.isCausal = isCausal
        self.window = window
        self.maskStrides = maskStrides
        self.dropout = dropout
        self.seed = seed
    }

    /// Whether key j is visible from query i by the causal and window rules (the mask aside).
    @inlinable
    public func isVisible(query i: Int, key j: Int) -> Bool {
        if (isCausal || window > 0) && j > i { return false }
        if window > 0 && j <= i - window { return false }
        return true
    }
}
