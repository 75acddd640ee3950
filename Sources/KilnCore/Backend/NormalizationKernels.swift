/// Fused normalization kernels, forward and backward.
///
/// Three shapes of work:
/// - **Rows** (layer, RMS and group norm): `rows` contiguous rows of `count` elements, statistics per
///   row, affine parameters per element or per channel (see `RowNormalizationDescriptor`).
/// - **Channels** (batch and instance norm): `[batch, channels, spatial]`, statistics per channel
///   over `batch·spatial` elements (see `ChannelNormalizationDescriptor`).
/// - **Local response norm** across the channels of `[batch, channels, spatial]`.
///
/// Statistics follow the corrected two-pass algorithm: an approximate mean `m` (a blocked Float32 sum),
/// then `Σ(x − m)` and `Σ(x − m)²` over the row again (from cache), so that
/// `mean = m + δ` with `δ = Σ(x − m)/n` and `var = Σ(x − m)²/n − δ²` (biased). Inputs with a large
/// offset (mean 1e4, std 1e-2) do not cancel, and sums stay accurate on rows of a million elements.
/// Backward kernels take the forward's `mean` as that `m` and recompute `δ` from the input, so the
/// rounding of the stored mean does not enter the gradients.
public protocol NormalizationKernels {
    /// Writes `output[r, j] = (x[r, j] − μ_r)·σ_r·w[p] + b[p]` with `σ_r = 1/√(var_r + eps)`
    /// (layer/group) or `x[r, j]·σ_r·w[p]` with `σ_r = 1/√(mean_j x[r, j]² + eps)` (RMS), where
    /// `p = descriptor.parameterIndex(row: r, element: j)`; `weight` and `bias` are optional
    /// (`groups·channelsPerGroup` entries). Writes `mean[r] = μ_r` (layer/group only; nil for RMS)
    /// and `inverseStandardDeviation[r] = σ_r`.
    func rowNormalizationForward(_ descriptor: RowNormalizationDescriptor, input: any BackendBuffer,
                                 weight: (any BackendBuffer)?, bias: (any BackendBuffer)?,
                                 output: any BackendBuffer, mean: (any BackendBuffer)?,
                                 inverseStandardDeviation: any BackendBuffer) throws

    /// Given the forward's `mean` (nil for RMS) and `inverseStandardDeviation` and the loss gradient
    /// `outputGradient` (g), writes with `x̂ = (x − μ)·σ`, `ĝ = g·w[p]` and n = `count`:
    /// `inputGradient = σ·(ĝ − mean_j ĝ − x̂·mean_j(ĝ·x̂))` (RMS: `σ·(ĝ − x̂·mean_j(ĝ·x̂))`),
    /// `weightGradient[p] = Σ g·x̂` and `biasGradient[p] = Σ g` over every (r, j) that uses `p`
    /// (each written only when its buffer is given).
    func rowNormalizationBackward(_ descriptor: RowNormalizationDescriptor, outputGradient: any BackendBuffer,
                                  input: any BackendBuffer, weight: (any BackendBuffer)?,
                                  mean: (any BackendBuffer)?, inverseStandardDeviation: any BackendBuffer,
                                  inputGradient: any BackendBuffer, weightGradient: (any BackendBuffer)?,
                                  biasGradient: (any BackendBuffer)?) throws

    /// Normalizes each channel c of `[batch, channels, spatial]`:
    /// `output = (x − μ_c)·σ_c·w[c] + b[c]`. Training: μ_c and the biased var_c over the channel's
    /// `batch·spatial` elements, `σ_c = 1/√(var_c + eps)`; when `runningMean`/`runningVariance` are
    /// given, writes `updatedRunningMean = (1 − momentum)·runningMean + momentum·μ` and
    /// `updatedRunningVariance = (1 − momentum)·runningVariance + momentum·var·M/(M − 1)` with
    /// M = batch·spatial (PyTorch's unbiased running variance). Inference: μ_c = runningMean[c],
    /// σ_c = 1/√(runningVariance[c] + eps). Always writes `mean[c] = μ_c` and
    /// `inverseStandardDeviation[c] = σ_c`.
    func channelNormalizationForward(_ descriptor: ChannelNormalizationDescriptor, input: any BackendBuffer,
                                     weight: (any BackendBuffer)?, bias: (any BackendBuffer)?,
                                     runningMean: (any BackendBuffer)?, runningVariance: (any BackendBuffer)?,
                                     output: any BackendBuffer, mean: any BackendBuffer,
                                     inverseStandardDeviation: any BackendBuffer,
                                     updatedRunningMean: (any BackendBuffer)?,
                                     updatedRunningVariance: (any BackendBuffer)?) throws

    /// The backward of `channelNormalizationForward` given its `mean` and `inverseStandardDeviation`
    /// (x̂ = (x − μ_c)·σ_c, M = batch·spatial): training
    /// `inputGradient = w[c]·σ_c·(g − mean(g) − x̂·mean(g·x̂))` over the channel; inference
    /// (constant statistics) `inputGradient = g·w[c]·σ_c`. `weightGradient[c] = Σ g·x̂`,
    /// `biasGradient[c] = Σ g` (each written only when its buffer is given).
    func channelNormalizationBackward(_ descriptor: ChannelNormalizationDescriptor,
                                      outputGradient: any BackendBuffer, input: any BackendBuffer,
                                      weight: (any BackendBuffer)?, mean: any BackendBuffer,
                                      inverseStandardDeviation: any BackendBuffer, inputGradient: any BackendBuffer,
                                      weightGradient: (any BackendBuffer)?, biasGradient: (any BackendBuffer)?) throws

    /// `output[n, c, s] = x[n, c, s] / D^β` with `D = k + (α/size)·Σ_{c'} x[n, c', s]²` over
    /// `c' ∈ [c − size/2, c + (size − 1)/2] ∩ [0, channels)` (torch.nn.LocalResponseNorm).
    func localResponseNormalizationForward(_ descriptor: LocalResponseNormalizationDescriptor,
                                           input: any BackendBuffer, output: any BackendBuffer) throws

    /// The backward of local response normalization:
    /// `inputGradient[c] = g[c]·D_c^(−β) − (2αβ/size)·x[c]·Σ_{c'} g[c']·x[c']·D_{c'}^(−β−1)` over
    /// `c' ∈ [c − (size − 1)/2, c + size/2] ∩ [0, channels)` (the channels whose window holds c).
    func localResponseNormalizationBackward(_ descriptor: LocalResponseNormalizationDescriptor,
                                            input: any BackendBuffer, outputGradient: any BackendBuffer,
                                            inputGradient: any BackendBuffer) throws
}

/// The sizes of a row normalization (already validated).
///
/// Row r holds `count = channelsPerGroup·spatial` contiguous elements: `channelsPerGroup` channels
/// of `spatial` elements each, belonging to group `r % groups`. Element j of row r uses the affine
/// parameter `p = (r % groups)·channelsPerGroup + j / spatial`. Layer and RMS norm over n trailing
/// elements: `groups = 1`, `channelsPerGroup = n`, `spatial = 1` (one parameter per element).
/// Group norm of `[N, C, S]` with G groups: `rows = N·G`, `groups = G`, `channelsPerGroup = C/G`,
/// `spatial = S`.
public struct RowNormalizationDescriptor: Sendable, Equatable {
    /// What the row statistics are.
    public enum Kind: Int32, Sendable, Equatable {
        /// Mean and biased variance: y = (x − μ)/√(var + eps).
        case layer = 0
        /// Root mean square, no centering: y = x/√(mean(x²) + eps).
        case rms = 1
    }

    /// Layer (centred) or RMS statistics.
    public var kind: Kind
    /// Rows normalized independently (≥ 1 when a kernel runs).
    public var rows: Int
    /// Groups the rows cycle through: row r uses the parameters of group r % groups (≥ 1).
    public var groups: Int
    /// Channels per row, each with its own affine parameters.
    public var channelsPerGroup: Int
    /// Contiguous elements per channel that share one affine parameter.
    public var spatial: Int
    /// Added to the variance (or mean square) before the square root; finite, ≥ 0.
    public var eps: Float

    /// A descriptor of `rows` rows of `channelsPerGroup·spatial` elements (see the type's layout).
    public init(kind: Kind, rows: Int, groups: Int = 1, channelsPerGroup: Int, spatial: Int = 1, eps: Float) {
        self.kind = kind
        self.rows = rows
        self.groups = groups
        self.channelsPerGroup = channelsPerGroup
        self.spatial = spatial
        self.eps = eps
    }

    /// Elements per row.
    public var count: Int { channelsPerGroup * spatial }
    /// Entries of the weight and bias vectors.
    public var parameterCount: Int { groups * channelsPerGroup }

    /// The affine parameter that element `element` of row `row` uses.
    @inlinable
    public func parameterIndex(row: Int, element: Int) -> Int {
        (row % groups) * channelsPerGroup + element / spatial
    }
}

/// The sizes and mode of a batch-style normalization over `[batch, channels, spatial]` (validated).
public struct ChannelNormalizationDescriptor: Sendable, Equatable {
    /// N: samples.
    public var batch: Int
    /// C: channels, each normalized with its own statistics and parameters.
    public var channels: Int
    /// Elements per (sample, channel): the product of the dimensions after C.
    public var spatial: Int
    /// Added to the variance before the square root; finite, ≥ 0.
    public var eps: Float
    /// Weight of the new batch statistics in the running-statistics update.
    public var momentum: Float
    /// Batch statistics (true) or the running statistics (false).
    public var training: Bool

    /// A descriptor of `[batch, channels, spatial]`; `momentum` in [0, 1].
    public init(batch: Int, channels: Int, spatial: Int, eps: Float, momentum: Float = 0.1, training: Bool) {
        self.batch = batch
        self.channels = channels
        self.spatial = spatial
        self.eps = eps
        self.momentum = momentum
        self.training = training
    }

    /// Elements per channel: batch·spatial.
    public var reducedCount: Int { batch * spatial }
}

/// The sizes and hyperparameters of a local response normalization over `[batch, channels, spatial]`.
public struct LocalResponseNormalizationDescriptor: Sendable, Equatable {
    /// N: samples.
    public var batch: Int
    /// C: the axis the window runs along.
    public var channels: Int
    /// Positions per (sample, channel): the product of the dimensions after C.
    public var spatial: Int
    /// Channels in the window (≥ 1).
    public var size: Int
    /// Scale of the windowed sum of squares, divided by `size` (as PyTorch).
    public var alpha: Float
    /// Exponent of the denominator.
    public var beta: Float
    /// Additive constant of the denominator.
    public var k: Float

    /// A descriptor of `[batch, channels, spatial]` with PyTorch's hyperparameters.
    public init(batch: Int, channels: Int, spatial: Int, size: Int, alpha: Float, beta: Float, k: Float) {
        self.batch = batch
        self.channels = channels
        self.spatial = spatial
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.k = k
    }
}
