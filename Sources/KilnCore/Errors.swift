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
