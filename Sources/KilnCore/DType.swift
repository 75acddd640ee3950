/// The element type of a tensor's storage.
///
/// Float32 is the working dtype; the enum keeps the dtype in the type so that Float16 or BFloat16
/// storage can be added without changing the API.
public enum DType: String, Sendable, Equatable, CustomStringConvertible {
    case float32

    /// Bytes per element.
    public var byteCount: Int {
        switch self {
        case .float32: 4
        }
    }

    public var description: String { rawValue }
}
