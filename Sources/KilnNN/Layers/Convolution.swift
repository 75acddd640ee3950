import KilnCore

/// Validates the channel counts and groups of a convolution layer.
private func checkChannels(_ inputChannels: Int, _ outputChannels: Int, groups: Int, layer: String) throws {
    try requirePositive(["inputChannels": inputChannels, "outputChannels": outputChannels, "groups": groups],
                        layer: layer)
    guard inputChannels % groups == 0, outputChannels % groups == 0 else {
        throw TensorError(.invalidArgument, op: layer,
                          "groups \(groups) must divide inputChannels \(inputChannels) and outputChannels \(outputChannels)")
    }
}

/// A 1-D convolution, as `torch.nn.Conv1d` (cross-correlation, see `conv1d`):
/// `y[n, co, o] = b[co] + Σ_{ci, k} x[n, ci, o·s − p + k·d]·W[co, ci, k]`.
///
/// Shapes: input `[N, C_in, L]`, weight `[C_out, C_in/groups, K]`, bias `[C_out]`, output
/// `[N, C_out, L_out]` with `L_out = ⌊(L + 2p − d(K − 1) − 1)/s⌋ + 1`. Initialisation as PyTorch:
/// weight and bias `U(−1/√fanIn, 1/√fanIn)`, `fanIn = C_in/groups·K`. Parameters: `weight`, `bias`.
public final class Conv1d: Module {
    public var isTraining = true
    public let stride: Int
    public let padding: ConvolutionPadding
    public let dilation: Int
    public let groups: Int
    /// `[C_out, C_in/groups, K]`.
    public let weight: Parameter
    /// `[C_out]`, or nil.
    public let bias: Parameter?

    /// - Throws: `TensorError` naming `Conv1d` for sizes < 1, groups not dividing the channels,
    ///   or a negative padding.
    public init(inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1,
                padding: ConvolutionPadding = 0, dilation: Int = 1, groups: Int = 1, bias: Bool = true,
                seed: UInt64, on backend: any Backend) throws {
        let layer = "Conv1d"
        try checkChannels(inputChannels, outputChannels, groups: groups, layer: layer)
        try requirePositive(["kernelSize": kernelSize, "stride": stride, "dilation": dilation], layer: layer)
        if case .explicit(let p) = padding { _ = try p.expanded(to: 1, op: layer, name: "padding", minimum: 0) }
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        let bound = 1 / Double(inputChannels / groups * kernelSize).squareRoot()
        weight = try uniformParameter([outputChannels, inputChannels / groups, kernelSize], bound: bound,
                                      seed: seed, on: backend)
        self.bias = bias ? try uniformParameter([outputChannels], bound: bound,
                                                seed: Initializer.derivedSeed(seed, stream: 1), on: backend) : nil
    }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try conv1d(input, weight: weight.value, bias: bias?.value, stride: stride, padding: padding,
                   dilation: dilation, groups: groups)
    }
}

/// A 2-D convolution, as `torch.nn.Conv2d` (cross-correlation, see `conv2d`):
/// `y[n, co, oh, ow] = b[co] + Σ_{ci, kh, kw} x[n, ci, oh·s_h − p_h + kh·d_h, ow·s_w − p_w + kw·d_w]·W[co, ci, kh, kw]`.
///
/// Shapes: input `[N, C_in, H, W]`, weight `[C_out, C_in/groups, kH, kW]`, bias `[C_out]`, output
/// `[N, C_out, OH, OW]`, `OH = ⌊(H + 2p − d(kH − 1) − 1)/s⌋ + 1`. Parameter count
/// `C_out·C_in/groups·kH·kW + C_out`. Initialisation as PyTorch: weight and bias
/// `U(−1/√fanIn, 1/√fanIn)`, `fanIn = C_in/groups·kH·kW`. Parameters: `weight`, `bias`.
public final class Conv2d: Module {
    public var isTraining = true
    public let stride: SpatialSize
    public let padding: ConvolutionPadding
    public let dilation: SpatialSize
    public let groups: Int
    /// `[C_out, C_in/groups, kH, kW]`.
    public let weight: Parameter
    /// `[C_out]`, or nil.
    public let bias: Parameter?

    /// - Throws: `TensorError` naming `Conv2d` for sizes < 1, groups not dividing the channels,
    ///   or a negative padding.
    public init(inputChannels: Int, outputChannels: Int, kernelSize: SpatialSize, stride: SpatialSize = 1,
                padding: ConvolutionPadding = 0, dilation: SpatialSize = 1, groups: Int = 1, bias: Bool = true,
                seed: UInt64, on backend: any Backend) throws {
        let layer = "Conv2d"
        try checkChannels(inputChannels, outputChannels, groups: groups, layer: layer)
        let k = try kernelSize.expanded(to: 2, op: layer, name: "kernelSize", minimum: 1)
        _ = try stride.expanded(to: 2, op: layer, name: "stride", minimum: 1)
        _ = try dilation.expanded(to: 2, op: layer, name: "dilation", minimum: 1)
        if case .explicit(let p) = padding { _ = try p.expanded(to: 2, op: layer, name: "padding", minimum: 0) }
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        let bound = 1 / Double(inputChannels / groups * k[0] * k[1]).squareRoot()
        weight = try uniformParameter([outputChannels, inputChannels / groups, k[0], k[1]], bound: bound,
                                      seed: seed, on: backend)
        self.bias = bias ? try uniformParameter([outputChannels], bound: bound,
                                                seed: Initializer.derivedSeed(seed, stream: 1), on: backend) : nil
    }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try conv2d(input, weight: weight.value, bias: bias?.value, stride: stride, padding: padding,
                   dilation: dilation, groups: groups)
    }
}

/// A 2-D transposed convolution, as `torch.nn.ConvTranspose2d` (see `convTranspose2d`): the input
/// gradient of a `conv2d` with the same weight,
/// `y[n, co, oh·s − p + kh·d, ow·s − p + kw·d] += x[n, ci, oh, ow]·W[ci, co, kh, kw]`, plus `b[co]`.
///
/// Shapes: input `[N, C_in, H, W]`, weight `[C_in, C_out/groups, kH, kW]` (PyTorch's layout), bias
/// `[C_out]`, output `[N, C_out, OH, OW]`, `OH = (H − 1)s − 2p + d(kH − 1) + outputPadding + 1`.
/// Initialisation as PyTorch, whose fan is computed from the weight's shape:
/// `fanIn = C_out/groups·kH·kW`, weight and bias `U(−1/√fanIn, 1/√fanIn)`. Parameters: `weight`, `bias`.
public final class ConvTranspose2d: Module {
    public var isTraining = true
    public let stride: SpatialSize
    public let padding: SpatialSize
    public let outputPadding: SpatialSize
    public let dilation: SpatialSize
    public let groups: Int
    /// `[C_in, C_out/groups, kH, kW]`.
    public let weight: Parameter
    /// `[C_out]`, or nil.
    public let bias: Parameter?

    /// - Throws: `TensorError` naming `ConvTranspose2d` for sizes < 1, groups not dividing the
    ///   channels, a negative padding, or an output padding ≥ max(stride, dilation).
    public init(inputChannels: Int, outputChannels: Int, kernelSize: SpatialSize, stride: SpatialSize = 1,
                padding: SpatialSize = 0, outputPadding: SpatialSize = 0, dilation: SpatialSize = 1,
                groups: Int = 1, bias: Bool = true, seed: UInt64, on backend: any Backend) throws {
        let layer = "ConvTranspose2d"
        try checkChannels(inputChannels, outputChannels, groups: groups, layer: layer)
        let k = try kernelSize.expanded(to: 2, op: layer, name: "kernelSize", minimum: 1)
        let s = try stride.expanded(to: 2, op: layer, name: "stride", minimum: 1)
        let d = try dilation.expanded(to: 2, op: layer, name: "dilation", minimum: 1)
        _ = try padding.expanded(to: 2, op: layer, name: "padding", minimum: 0)
        let op = try outputPadding.expanded(to: 2, op: layer, name: "outputPadding", minimum: 0)
        for i in 0..<2 where op[i] >= Swift.max(s[i], d[i]) {
            throw TensorError(.invalidArgument, op: layer,
                              "outputPadding \(outputPadding) must be < max(stride, dilation) = \(Swift.max(s[i], d[i]))")
        }
        self.stride = stride
        self.padding = padding
        self.outputPadding = outputPadding
        self.dilation = dilation
        self.groups = groups
        let bound = 1 / Double(outputChannels / groups * k[0] * k[1]).squareRoot()
        weight = try uniformParameter([inputChannels, outputChannels / groups, k[0], k[1]], bound: bound,
                                      seed: seed, on: backend)
        self.bias = bias ? try uniformParameter([outputChannels], bound: bound,
                                                seed: Initializer.derivedSeed(seed, stream: 1), on: backend) : nil
    }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try convTranspose2d(input, weight: weight.value, bias: bias?.value, stride: stride, padding: padding,
                            outputPadding: outputPadding, dilation: dilation, groups: groups)
    }
}
