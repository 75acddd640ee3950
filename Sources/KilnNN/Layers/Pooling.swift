import KilnCore

/// 2-D max pooling, as `torch.nn.MaxPool2d`: `y[n, c, oh, ow] = max` over the window
/// `x[n, c, oh·s − p + kh·d, ow·s − p + kw·d]` (padding is −∞).
///
/// Shapes: `[N, C, H, W] → [N, C, OH, OW]`, `OH = ⌊(H + 2p − d(k − 1) − 1)/s⌋ + 1` (⌈⌉ with
/// `ceilMode`). No parameters.
public final class MaxPool2d: Module {
    public var isTraining = true
    public let kernelSize: SpatialSize
    /// nil: the kernel size, as PyTorch.
    public let stride: SpatialSize?
    public let padding: SpatialSize
    public let dilation: SpatialSize
    public let ceilMode: Bool

    /// - Throws: `TensorError` naming `MaxPool2d` for sizes < 1, a negative padding, or a padding
    ///   larger than half the kernel.
    public init(kernelSize: SpatialSize, stride: SpatialSize? = nil, padding: SpatialSize = 0,
                dilation: SpatialSize = 1, ceilMode: Bool = false) throws {
        let layer = "MaxPool2d"
        let k = try kernelSize.expanded(to: 2, op: layer, name: "kernelSize", minimum: 1)
        _ = try stride?.expanded(to: 2, op: layer, name: "stride", minimum: 1)
        _ = try dilation.expanded(to: 2, op: layer, name: "dilation", minimum: 1)
        let p = try padding.expanded(to: 2, op: layer, name: "padding", minimum: 0)
        for i in 0..<2 where p[i] > k[i] / 2 {
            throw TensorError(.invalidArgument, op: layer, "padding \(padding) must be at most half the kernel size \(kernelSize)")
        }
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.ceilMode = ceilMode
    }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try maxPool2d(input, kernelSize: kernelSize, stride: stride, padding: padding, dilation: dilation,
                      ceilMode: ceilMode)
    }
}

/// 2-D average pooling, as `torch.nn.AvgPool2d`: the window sum divided by the window size
/// (counting padding with `countIncludePad`, PyTorch's default; see `avgPool2d`).
///
/// Shapes: `[N, C, H, W] → [N, C, OH, OW]`, `OH = ⌊(H + 2p − k)/s⌋ + 1`. No parameters.
public final class AvgPool2d: Module {
    public var isTraining = true
    public let kernelSize: SpatialSize
    /// nil: the kernel size, as PyTorch.
    public let stride: SpatialSize?
    public let padding: SpatialSize
    public let ceilMode: Bool
    public let countIncludePad: Bool

    /// - Throws: `TensorError` naming `AvgPool2d` for sizes < 1, a negative padding, or a padding
    ///   larger than half the kernel.
    public init(kernelSize: SpatialSize, stride: SpatialSize? = nil, padding: SpatialSize = 0,
                ceilMode: Bool = false, countIncludePad: Bool = true) throws {
        let layer = "AvgPool2d"
        let k = try kernelSize.expanded(to: 2, op: layer, name: "kernelSize", minimum: 1)
        _ = try stride?.expanded(to: 2, op: layer, name: "stride", minimum: 1)
        let p = try padding.expanded(to: 2, op: layer, name: "padding", minimum: 0)
        for i in 0..<2 where p[i] > k[i] / 2 {
            throw TensorError(.invalidArgument, op: layer, "padding \(padding) must be at most half the kernel size \(kernelSize)")
        }
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        self.ceilMode = ceilMode
        self.countIncludePad = countIncludePad
    }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try avgPool2d(input, kernelSize: kernelSize, stride: stride, padding: padding, ceilMode: ceilMode,
                      countIncludePad: countIncludePad)
    }
}

/// Adaptive 2-D average pooling, as `torch.nn.AdaptiveAvgPool2d`: output cell `(i, j)` averages
/// rows `⌊i·H/OH⌋ ..< ⌈(i + 1)·H/OH⌉` and the matching columns.
///
/// Shapes: `[N, C, H, W] → [N, C, OH, OW]`. No parameters.
public final class AdaptiveAvgPool2d: Module {
    public var isTraining = true
    public let outputSize: SpatialSize

    /// - Throws: `TensorError` naming `AdaptiveAvgPool2d` for an output size < 1.
    public init(outputSize: SpatialSize) throws {
        _ = try outputSize.expanded(to: 2, op: "AdaptiveAvgPool2d", name: "outputSize", minimum: 1)
        self.outputSize = outputSize
    }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try adaptiveAvgPool2d(input, outputSize: outputSize)
    }
}

/// Adaptive 2-D max pooling, as `torch.nn.AdaptiveMaxPool2d`: the maximum over the windows of
/// `AdaptiveAvgPool2d`.
///
/// Shapes: `[N, C, H, W] → [N, C, OH, OW]`. No parameters.
public final class AdaptiveMaxPool2d: Module {
    public var isTraining = true
    public let outputSize: SpatialSize

    /// - Throws: `TensorError` naming `AdaptiveMaxPool2d` for an output size < 1.
    public init(outputSize: SpatialSize) throws {
        _ = try outputSize.expanded(to: 2, op: "AdaptiveMaxPool2d", name: "outputSize", minimum: 1)
        self.outputSize = outputSize
    }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try adaptiveMaxPool2d(input, outputSize: outputSize)
    }
}
