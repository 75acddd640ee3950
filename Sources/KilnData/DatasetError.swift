/// An error while reading or serving a data set: a missing file, corrupt compressed data, an IDX
/// file whose header and payload disagree, or an invalid argument to a loader.
///
/// The message names where it happened first (a file path, `gzip`, `DataLoader`), then the values.
public struct DatasetError: Error, Equatable, CustomStringConvertible, Sendable {
    /// What went wrong, broadly; the message says exactly.
    public enum Kind: Equatable, Sendable {
        /// Files that are not there; the message says which and how to install them.
        case missingFiles
        /// Compressed data that does not decode: a bad header, an invalid Huffman code, a
        /// checksum or length mismatch, or input that ends early.
        case corruptData
        /// Data that decodes but is not what the reader expects (bad IDX magic, wrong shape or size).
        case badFormat
        /// An argument out of range (batch size 0, negative limit, std ≤ 0, mismatched counts).
        case invalidArgument
    }

    public let kind: Kind
    /// Where it happened: a file path, `gzip`, `DataLoader`, `FashionMNIST`.
    public let context: String
    public let message: String

    /// An error of `kind` at `context` (a path, `gzip`, a type name) with a message naming the values.
    public init(_ kind: Kind, context: String, _ message: String) {
        self.kind = kind
        self.context = context
        self.message = message
    }

    /// `context: message`.
    public var description: String { "\(context): \(message)" }
}
