/// An error in how a tensor operation was called: the message names the op and the values.
///
/// Thrown by every public op after validating its input once, before any kernel runs.
public struct TensorError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Kind: Equatable, Sendable {
        /// Shapes that do not fit together (matmul inner sizes, broadcasting, concatenation).
        case shapeMismatch
        /// An axis outside `-rank ..< rank`, or repeated.
        case badAxis
        /// Tensors that live on two different backends; copy with `to(_:)` first.
        case backendMismatch
        /// A dtype the op does not support.
        case unsupportedDType
        /// Any other invalid argument (negative size, NaN hyperparameter, index out of range).
        case invalidArgument
    }

    public let kind: Kind
    /// The op that rejected its input, e.g. `matmul`.
    public let op: String
    public let message: String

    public init(_ kind: Kind, op: String, _ message: String) {
        self.kind = kind
        self.op = op
        self.message = message
    }

    public var description: String { "\(op): \(message)" }
}

/// An error raised by a backend: a missing device, a kernel that failed to build, an OpenCL status.
public struct BackendError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Kind: Equatable, Sendable {
        /// The requested device does not exist or cannot be opened.
        case deviceUnavailable
        /// A kernel failed to compile; the message holds the build log.
        case kernelBuildFailed
        /// A buffer could not be allocated.
        case outOfMemory
        /// An OpenCL call returned a status other than CL_SUCCESS.
        case openCLStatus(Int32)
        /// A request the backend cannot serve (e.g. a buffer of another backend).
        case unsupported
    }

    public let kind: Kind
    /// Where it happened: the op or the OpenCL call name.
    public let context: String
    public let message: String

    public init(_ kind: Kind, context: String, _ message: String) {
        self.kind = kind
        self.context = context
        self.message = message
    }

    public var description: String { "\(context): \(message)" }
}

/// An error reading or writing a checkpoint: a safetensors file that is cut short or malformed, a
/// dtype Kiln cannot read, or a state dictionary that does not fit the model.
///
/// The message names the file or tensor and the offending values. Readers validate a whole file
/// before they create any tensor, and loaders validate a whole state before they change anything.
public struct CheckpointError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Kind: Equatable, Sendable {
        /// The bytes end before the header length, the header or the tensor data says they should.
        case truncated
        /// The header is not the safetensors JSON: bad UTF-8 or JSON, a missing or ill-typed field,
        /// duplicate keys, offsets that overlap or leave holes, a byte count that does not fit the shape.
        case malformedHeader
        /// A dtype Kiln does not read (it reads F32, F16, BF16, F64 and I64).
        case unsupportedDType
        /// The model or optimizer has state the file or dictionary lacks.
        case missingTensor
        /// The file or dictionary holds state the model or optimizer lacks.
        case unexpectedTensor
        /// A tensor whose shape differs from the model's.
        case shapeMismatch
        /// The file could not be read or written.
        case io
        /// A request that cannot be written: a reserved name, a non-Float32 tensor, a bad value.
        case invalidArgument
    }

    public let kind: Kind
    /// Where it happened: the file path, or the operation for in-memory data.
    public let context: String
    public let message: String

    public init(_ kind: Kind, context: String, _ message: String) {
        self.kind = kind
        self.context = context
        self.message = message
    }

    public var description: String { "\(context): \(message)" }
}
