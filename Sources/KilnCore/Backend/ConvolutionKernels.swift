/// 2-D convolution (cross-correlation, as PyTorch) in NCHW, forward and backward.
///
/// Layouts (contiguous, row-major): input `[batch, inputChannels, inputHeight, inputWidth]`, weight
/// `[outputChannels, inputChannels/groups, kernelHeight, kernelWidth]`, bias `[outputChannels]`,
/// output `[batch, outputChannels, outputHeight, outputWidth]`. Output channel `co` belongs to group
/// `g = co / (outputChannels/groups)` and reads the input channels `g·Cig ..< (g+1)·Cig`
/// (`Cig = inputChannels/groups`). With `ih = oh·strideHeight − padTop + kh·dilationHeight` and
/// `iw = ow·strideWidth − padLeft + kw·dilationWidth`, taps outside the input read zero, so the
/// bottom and right padding are implied by the output size (asymmetric "same" padding included).
///
/// Transposed convolution is the backward-input kernel of the convolution it transposes.
public protocol ConvolutionKernels {
    /// `output[n, co, oh, ow] = bias[co] + Σ_{ci ∈ group(co), kh, kw} input[n, ci, ih, iw]·weight[co, ci − g·Cig, kh, kw]`
    /// (bias optional).
    func convolution2DForward(_ descriptor: Convolution2DDescriptor, input: any BackendBuffer,
                              weight: any BackendBuffer, bias: (any BackendBuffer)?,
                              output: any BackendBuffer) throws

    /// Overwrites `inputGradient[n, ci, y, x] = bias[ci] + Σ_{co ∈ group(ci), kh, kw : ih = y, iw = x}
    /// outputGradient[n, co, oh, ow]·weight[co, ci − g·Cig, kh, kw]` (bias optional: it is the
    /// transposed convolution's bias).
    func convolution2DBackwardInput(_ descriptor: Convolution2DDescriptor, outputGradient: any BackendBuffer,
                                    weight: any BackendBuffer, bias: (any BackendBuffer)?,
                                    inputGradient: any BackendBuffer) throws

    /// Overwrites `weightGradient[co, cig, kh, kw] = Σ_{n, oh, ow} outputGradient[n, co, oh, ow]·input[n, g·Cig + cig, ih, iw]`.
    func convolution2DBackwardWeight(_ descriptor: Convolution2DDescriptor, outputGradient: any BackendBuffer,
                                     input: any BackendBuffer, weightGradient: any BackendBuffer) throws
}

/// The sizes of a 2-D convolution (already validated; every size ≥ 1, channels divisible by groups).
public struct Convolution2DDescriptor: Sendable, Equatable {
    /// N.
    public var batch: Int
    /// C_in (all groups).
    public var inputChannels: Int
    public var inputHeight: Int
    public var inputWidth: Int
    /// C_out (all groups).
    public var outputChannels: Int
    public var outputHeight: Int
    public var outputWidth: Int
    public var kernelHeight: Int
    public var kernelWidth: Int
    public var strideHeight: Int
    public var strideWidth: Int
    /// Zero rows added above the input (the bottom padding is implied by `outputHeight`).
    public var padTop: Int
    /// Zero columns added left of the input.
    public var padLeft: Int
    public var dilationHeight: Int
    public var dilationWidth: Int
    /// Channel groups: each output channel sees `inputChannels/groups` input channels.
    public var groups: Int

    /// A descriptor with every size given explicitly.
    public init(batch: Int, inputChannels: Int, inputHeight: Int, inputWidth: Int, outputChannels: Int,
                outputHeight: Int, outputWidth: Int, kernelHeight: Int, kernelWidth: Int, strideHeight: Int = 1,
                strideWidth: Int = 1, padTop: Int = 0, padLeft: Int = 0, dilationHeight: Int = 1,
                dilationWidth: Int = 1, groups: Int = 1) {
        self.batch = batch
        self.inputChannels = inputChannels
        self.inputHeight = inputHeight
        self.inputWidth = inputWidth
        self.outputChannels = outputChannels
        self.outputHeight = outputHeight
        self.outputWidth = outputWidth
        self.kernelHeight = kernelHeight
        self.kernelWidth = kernelWidth
        self.strideHeight = strideHeight
        self.strideWidth = strideWidth
        self.padTop = padTop
        self.padLeft = padLeft
        self.dilationHeight = dilationHeight
        self.dilationWidth = dilationWidth
        self.groups = groups
    }

    /// Input channels per group, Cig.
    public var inputChannelsPerGroup: Int { inputChannels / groups }
    /// Output channels per group, Cog.
    public var outputChannelsPerGroup: Int { outputChannels / groups }
    /// The GEMM depth per group: `Cig·kH·kW` (rows of an im2col matrix).
    public var patchSize: Int { inputChannelsPerGroup * kernelHeight * kernelWidth }
    /// Output positions per image, `outputHeight·outputWidth`.
    public var outputPlane: Int { outputHeight * outputWidth }
    /// Input positions per image, `inputHeight·inputWidth`.
    public var inputPlane: Int { inputHeight * inputWidth }
    /// Multiply-adds of the forward pass: `N·C_out·OH·OW·Cig·kH·kW` (FLOPs are twice this).
    public var multiplyAdds: Int { batch * outputChannels * outputPlane * patchSize }
    /// True when the im2col matrix is the input itself: a 1×1 kernel, stride 1 and no padding.
    public var isPointwise: Bool {
        kernelHeight == 1 && kernelWidth == 1 && strideHeight == 1 && strideWidth == 1 && padTop == 0
            && padLeft == 0 && outputHeight == inputHeight && outputWidth == inputWidth
    }
    /// True for a depthwise convolution: one input channel per group.
    public var isDepthwise: Bool { groups > 1 && inputChannelsPerGroup == 1 }
}
