/// 2-D max and average pooling (fixed or adaptive windows) in NCHW, forward and backward.
///
/// Layout: input `[planes, inputHeight, inputWidth]` and output `[planes, outputHeight, outputWidth]`
/// with `planes = N·C`. Window of output row `oh` (columns likewise):
/// - fixed: taps `ih = oh·strideHeight − padHeight + i·dilationHeight`, `i < kernelHeight`, those
///   outside `[0, inputHeight)` skipped;
/// - adaptive: rows `⌊oh·H/OH⌋ ..< ⌈(oh+1)·H/OH⌉` (PyTorch's adaptive pooling).
///
/// Max: the largest tap (NaN propagates; the first of equal maxima wins); `indices` receives its flat
/// position `ih·inputWidth + iw` in the plane, as a Float (exact below 2²⁴). Average (dilation 1):
/// the sum divided by PyTorch's divisor — with `countIncludePad`, the window clipped to the padded
/// input `[−pad, H + pad)`; otherwise the number of taps inside the input; adaptive: the window's size.
public protocol PoolingKernels {
    /// Writes `output` and, for max pooling, `indices` (nil for average pooling).
    func pooling2DForward(_ descriptor: Pooling2DDescriptor, input: any BackendBuffer, output: any BackendBuffer,
                          indices: (any BackendBuffer)?) throws

    /// Overwrites `inputGradient`: max: `Σ outputGradient[o]` over the outputs o whose index is the
    /// element; average: `Σ outputGradient[o]/divisor(o)` over the outputs whose window holds it.
    func pooling2DBackward(_ descriptor: Pooling2DDescriptor, outputGradient: any BackendBuffer,
                           indices: (any BackendBuffer)?, inputGradient: any BackendBuffer) throws
}

/// The sizes and mode of a 2-D pooling (already validated; every size ≥ 1).
public struct Pooling2DDescriptor: Sendable, Equatable {
    /// Maximum or average.
    public enum Mode: Int32, Sendable, Equatable {
        case max = 0
        case average = 1
    }

    public var mode: Mode
    /// Adaptive windows (the kernel, stride, padding and dilation are then ignored).
    public var adaptive: Bool
    /// N·C planes pooled independently.
    public var planes: Int
    public var inputHeight: Int
    public var inputWidth: Int
    public var outputHeight: Int
    public var outputWidth: Int
    public var kernelHeight: Int
    public var kernelWidth: Int
    public var strideHeight: Int
    public var strideWidth: Int
    public var padHeight: Int
    public var padWidth: Int
    public var dilationHeight: Int
    public var dilationWidth: Int
    /// Average pooling: divide by the padded window size (true) or by the taps inside the input.
    public var countIncludePad: Bool

    /// A descriptor with every size given explicitly.
    public init(mode: Mode, adaptive: Bool = false, planes: Int, inputHeight: Int, inputWidth: Int,
                outputHeight: Int, outputWidth: Int, kernelHeight: Int = 1, kernelWidth: Int = 1,
                strideHeight: Int = 1, strideWidth: Int = 1, padHeight: Int = 0, padWidth: Int = 0,
                dilationHeight: Int = 1, dilationWidth: Int = 1, countIncludePad: Bool = true) {
        self.mode = mode
        self.adaptive = adaptive
        self.planes = planes
        self.inputHeight = inputHeight
        self.inputWidth = inputWidth
        self.outputHeight = outputHeight
        self.outputWidth = outputWidth
        self.kernelHeight = kernelHeight
        self.kernelWidth = kernelWidth
        self.strideHeight = strideHeight
        self.strideWidth = strideWidth
        self.padHeight = padHeight
        self.padWidth = padWidth
        self.dilationHeight = dilationHeight
        self.dilationWidth = dilationWidth
        self.countIncludePad = countIncludePad
    }
}
