/// Hyperparameter types and the general output-size and parameter-count formulas of convolution and
/// pooling (seed 003 gives `⌊(H + 2P − K)/S⌋ + 1`; Kiln uses the general form with dilation and
/// output padding, `../seeds/NOTES.md` §5 item 19).

/// A per-spatial-dimension hyperparameter (kernel size, stride, padding, dilation): one number for
/// every dimension (`3`) or one per dimension (`[3, 5]`, height first), as PyTorch's int-or-tuple.
public struct SpatialSize: Sendable, Equatable, ExpressibleByIntegerLiteral, ExpressibleByArrayLiteral,
    CustomStringConvertible
{
    /// The values as given: one, or one per spatial dimension.
    public let values: [Int]

    /// The same value for every spatial dimension.
    public init(integerLiteral value: Int) { values = [value] }
    /// One value per spatial dimension (height first).
    public init(arrayLiteral elements: Int...) { values = elements }
    /// The same value for every spatial dimension.
    public init(_ value: Int) { values = [value] }
    /// One value per spatial dimension (height first).
    public init(_ values: [Int]) { self.values = values }

    public var description: String { values.count == 1 ? "\(values[0])" : "\(values)" }

    /// The values expanded to `dimensions` entries.
    /// - Throws: `TensorError.invalidArgument` naming `op` and `name` unless there are 1 or
    ///   `dimensions` values, each ≥ `minimum`.
    public func expanded(to dimensions: Int, op: String, name: String, minimum: Int) throws -> [Int] {
        let out: [Int]
        if values.count == 1 {
            out = [Int](repeating: values[0], count: dimensions)
        } else if values.count == dimensions {
            out = values
        } else {
            throw TensorError(.invalidArgument, op: op,
                              "\(name) needs 1 or \(dimensions) values, got \(values)")
        }
        guard out.allSatisfy({ $0 >= minimum }) else {
            throw TensorError(.invalidArgument, op: op, "\(name) must be ≥ \(minimum), got \(self)")
        }
        return out
    }
}

/// Convolution padding: explicit zero padding per side, or PyTorch's `"same"` and `"valid"`.
public enum ConvolutionPadding: Sendable, Equatable, ExpressibleByIntegerLiteral, ExpressibleByArrayLiteral {
    /// The same padding on both sides of each dimension (height first).
    case explicit(SpatialSize)
    /// Output size = input size (stride 1 only): total padding `D·(K − 1)` per dimension, the odd
    /// extra on the bottom/right (as PyTorch).
    case same
    /// No padding.
    case valid

    public init(integerLiteral value: Int) { self = .explicit(SpatialSize(value)) }
    public init(arrayLiteral elements: Int...) { self = .explicit(SpatialSize(elements)) }
}

/// The output length of a convolution or pooling along one dimension:
/// `⌊(n + 2·padding − dilation·(kernel − 1) − 1)/stride⌋ + 1`; with `ceilMode` the division rounds up,
/// but the last window must start inside the input or its left padding (PyTorch's pooling rule).
/// - Returns: the length, which is ≤ 0 when the dilated kernel does not fit the padded input.
/// - Throws: `TensorError.invalidArgument` for a negative size or padding, or a kernel, stride or
///   dilation below 1.
public func convolutionOutputSize(inputSize n: Int, kernelSize kernel: Int, stride: Int = 1, padding: Int = 0,
                                  dilation: Int = 1, ceilMode: Bool = false) throws -> Int {
    guard n >= 0, padding >= 0, kernel >= 1, stride >= 1, dilation >= 1 else {
        throw TensorError(.invalidArgument, op: "convolutionOutputSize",
                          "needs inputSize ≥ 0, padding ≥ 0 and kernel, stride, dilation ≥ 1; got inputSize \(n), kernel \(kernel), stride \(stride), padding \(padding), dilation \(dilation)")
    }
    return outputLength(n, kernel, stride, padding, padding, dilation, ceilMode)
}

/// The output length of a transposed convolution along one dimension:
/// `(n − 1)·stride − 2·padding + dilation·(kernel − 1) + outputPadding + 1`.
/// - Throws: `TensorError.invalidArgument` for a negative size or padding, a kernel, stride or
///   dilation below 1, or an output padding not smaller than the stride or the dilation (PyTorch's rule).
public func convolutionTransposeOutputSize(inputSize n: Int, kernelSize kernel: Int, stride: Int = 1,
                                           padding: Int = 0, outputPadding: Int = 0, dilation: Int = 1) throws -> Int {
    guard n >= 0, padding >= 0, kernel >= 1, stride >= 1, dilation >= 1, outputPadding >= 0,
          outputPadding < Swift.max(stride, dilation) else {
        throw TensorError(.invalidArgument, op: "convolutionTransposeOutputSize",
                          "needs inputSize ≥ 0, padding ≥ 0, kernel, stride, dilation ≥ 1 and 0 ≤ outputPadding < max(stride, dilation); got inputSize \(n), kernel \(kernel), stride \(stride), padding \(padding), outputPadding \(outputPadding), dilation \(dilation)")
    }
    return (n - 1) * stride - 2 * padding + dilation * (kernel - 1) + outputPadding + 1
}

/// The parameters of a convolution layer: `C_out·(C_in/groups)·∏kernel + (bias ? C_out : 0)`
/// (seed 003's `K_h·K_w·C_in·C_out + C_out` when groups = 1). Transposed convolution has the same count.
/// - Throws: `TensorError.invalidArgument` for sizes below 1 or channels not divisible by `groups`.
public func convolutionParameterCount(inputChannels: Int, outputChannels: Int, kernelSize: [Int], groups: Int = 1,
                                      bias: Bool = true) throws -> Int {
    guard inputChannels >= 1, outputChannels >= 1, groups >= 1, !kernelSize.isEmpty, kernelSize.allSatisfy({ $0 >= 1 }),
          inputChannels % groups == 0, outputChannels % groups == 0 else {
        throw TensorError(.invalidArgument, op: "convolutionParameterCount",
                          "needs channels ≥ 1 divisible by groups ≥ 1 and kernel sizes ≥ 1; got \(inputChannels) → \(outputChannels), kernel \(kernelSize), groups \(groups)")
    }
    return outputChannels * (inputChannels / groups) * kernelSize.reduce(1, *) + (bias ? outputChannels : 0)
}

/// The parameters of a fully connected layer: `inputSize·outputSize + (bias ? outputSize : 0)`.
/// - Throws: `TensorError.invalidArgument` for sizes below 1.
public func linearParameterCount(inputSize: Int, outputSize: Int, bias: Bool = true) throws -> Int {
    guard inputSize >= 1, outputSize >= 1 else {
        throw TensorError(.invalidArgument, op: "linearParameterCount",
                          "needs sizes ≥ 1, got \(inputSize) → \(outputSize)")
    }
    return inputSize * outputSize + (bias ? outputSize : 0)
}

/// `⌊ or ⌈(n + before + after − d(k − 1) − 1)/s⌉ + 1`, with the ceil-mode correction.
func outputLength(_ n: Int, _ k: Int, _ s: Int, _ before: Int, _ after: Int, _ d: Int, _ ceilMode: Bool) -> Int {
    let span = n + before + after - d * (k - 1) - 1
    if span < 0 { return 0 }
    var out = (ceilMode ? (span + s - 1) / s : span / s) + 1
    if ceilMode && (out - 1) * s >= n + before { out -= 1 }
    return out
}
