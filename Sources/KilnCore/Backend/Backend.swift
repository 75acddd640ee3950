/// A buffer of Float32 elements owned by one backend. Backends downcast to their own class.
public protocol BackendBuffer: AnyObject, Sendable {
    /// Number of Float32 elements the buffer holds (it may be larger than a tensor needs).
    var capacity: Int { get }
}

/// A compute backend: the union of the kernel-family protocols.
///
/// Adding a family here makes every backend fail to compile until it implements it. Kernel
/// contract: contiguous Float32 buffers, explicit sizes, arguments already validated by the
/// public ops in KilnCore. Work may be asynchronous; reading values back waits for it.
public protocol Backend: MemoryKernels, GEMMKernels, ElementwiseKernels, ReductionKernels,
    SoftmaxKernels, RandomKernels, NormalizationKernels, AttentionKernels, ConvolutionKernels, PoolingKernels,
    OptimizerKernels, AnyObject, Sendable
{
    /// A short name for messages and bench headers, e.g. `cpu` or `opencl:0`.
    var name: String { get }
    /// The device the backend runs on, e.g. the CPU model or the OpenCL device name.
    var deviceName: String { get }
    /// Waits until all queued work has finished.
    func synchronize() throws
}

/// The size classes backends pool buffers by: powers of two up to 4 Mi elements, then multiples
/// of 1 Mi elements, so a freed buffer serves later requests of similar size.
public enum BufferSizeClass {
    /// The capacity in elements of the class that holds `count` elements (at least 16).
    public static func capacity(for count: Int) -> Int {
        if count <= 16 { return 16 }
        if count <= 1 << 22 { return 1 << (Int.bitWidth - (count - 1).leadingZeroBitCount) }
        let step = 1 << 20
        return (count + step - 1) / step * step
    }
}
