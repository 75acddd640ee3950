import Foundation

/// The element type of an IDX file: the third byte of its magic number.
public enum IDXElementType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case uint8 = 0x08
    case int8 = 0x09
    case int16 = 0x0B
    case int32 = 0x0C
    case float32 = 0x0D
    case float64 = 0x0E

    /// Bytes per element.
    public var byteWidth: Int {
        switch self {
        case .uint8, .int8: 1
        case .int16: 2
        case .int32, .float32: 4
        case .float64: 8
        }
    }

    public var description: String {
        switch self {
        case .uint8: "uint8"
        case .int8: "int8"
        case .int16: "int16"
        case .int32: "int32"
        case .float32: "float32"
        case .float64: "float64"
        }
    }
}

/// An array read from an IDX file, the format of the MNIST family of data sets.
///
/// Layout (all multi-byte values big-endian): two zero bytes, the element type byte
/// (`IDXElementType`), the rank byte `r`, then `r` 32-bit unsigned sizes, then the elements in
/// row-major order. Files may be gzip-compressed: `init(contentsOf:limit:)` recognises the gzip
/// magic and decompresses with `Gzip`.
public struct IDXArray: Sendable {
    public let elementType: IDXElementType
    /// The sizes, outermost first (the first is cut to `limit` when one was given).
    public let shape: [Int]
    /// Where the data came from, for error messages.
    public let name: String
    private let bytes: [UInt8]
    private let payloadOffset: Int

    /// The number of elements.
    public var count: Int { shape.reduce(1, *) }

    /// The elements' bytes, big-endian, row-major: `count × elementType.byteWidth` bytes.
    public var payload: ArraySlice<UInt8> {
        bytes[payloadOffset..<payloadOffset + count * elementType.byteWidth]
    }

    /// Reads the IDX file at `url`, gzip-compressed or not (told apart by the gzip magic).
    ///
    /// With `limit`, only the first `limit` entries along the first axis are kept, and of a
    /// compressed file only as much is decompressed as they need; its CRC-32 then goes unchecked.
    /// - Throws: `DatasetError` whose context is the file's path: `.missingFiles` when it cannot
    ///   be read, `.corruptData` for bad gzip data, `.badFormat` for a bad header or a payload
    ///   whose size disagrees with the header, `.invalidArgument` for a negative limit.
    public init(contentsOf url: URL, limit: Int? = nil) throws {
        let path = url.path
        let data: [UInt8]
        do {
            data = [UInt8](try Data(contentsOf: url))
        } catch {
            throw DatasetError(.missingFiles, context: path, "cannot read the file: \(error.localizedDescription)")
        }
        var bytes = data
        if Gzip.isCompressed(data) {
            do {
                if let limit {
                    // The header is at most 4 + 4·255 bytes; decode that much first, then what
                    // the first `limit` entries need.
                    let head = try Gzip.decompress(data, outputLimit: 4 + 4 * 255)
                    let header = try Self.header(head, name: path)
                    let needed = try Self.bytesNeeded(header, name: path, limit: limit)
                    bytes = try Gzip.decompress(data, outputLimit: needed)
                } else {
                    bytes = try Gzip.decompress(data)
                }
            } catch let error as DatasetError where error.context == "gzip" {
                throw DatasetError(error.kind, context: path, "gzip: \(error.message)")
            }
        }
        try self.init(bytes: bytes, name: path, limit: limit)
    }

    /// Parses IDX data held in memory.
    /// - Parameters:
    ///   - bytes: the whole (uncompressed) file.
    ///   - name: names the data in error messages.
    ///   - limit: keep only the first `limit` entries along the first axis; the payload may then
    ///     hold more than those entries (a decompressed prefix), but not fewer.
    /// - Throws: `DatasetError.badFormat` for a bad magic number, an unknown element type, a
    ///   truncated header, or a payload size other than the header's (`.invalidArgument` for a
    ///   negative limit or a limit on a rank-0 array).
    public init(bytes: [UInt8], name: String = "IDX data", limit: Int? = nil) throws {
        let header = try Self.header(bytes, name: name)
        var shape = header.shape
        let available = bytes.count - header.size
        if let limit {
            let needed = try Self.bytesNeeded(header, name: name, limit: limit)
            shape[0] = min(limit, shape[0])
            guard bytes.count >= needed else {
                throw DatasetError(.badFormat, context: name,
                                   "the first \(shape[0]) entries of shape \(header.shape) of \(header.type) need \(needed - header.size) payload bytes, the data has \(available)")
            }
        } else {
            guard available == header.payloadBytes else {
                throw DatasetError(.badFormat, context: name,
                                   "header says shape \(header.shape) of \(header.type) (\(header.payloadBytes) payload bytes), the data has \(available) payload bytes")
            }
        }
        self.elementType = header.type
        self.shape = shape
        self.name = name
        self.bytes = bytes
        self.payloadOffset = header.size
    }

    /// The elements converted to Float, row-major. Integers convert exactly up to 2²⁴ in
    /// magnitude and round to nearest beyond; float64 rounds to nearest.
    public func scalars() -> [Float] {
        let n = count
        let width = elementType.byteWidth
        let type = elementType
        return bytes.withUnsafeBufferPointer { all in
            let p = UnsafeBufferPointer(rebasing: all[payloadOffset..<payloadOffset + n * width])
            return [Float](unsafeUninitializedCapacity: n) { out, initialized in
                for i in 0..<n {
                    let b = i * width
                    switch type {
                    case .uint8:
                        out[i] = Float(p[b])
                    case .int8:
                        out[i] = Float(Int8(bitPattern: p[b]))
                    case .int16:
                        out[i] = Float(Int16(bitPattern: UInt16(p[b]) << 8 | UInt16(p[b + 1])))
                    case .int32:
                        out[i] = Float(Int32(bitPattern: Self.bigEndian32(p, b)))
                    case .float32:
                        out[i] = Float(bitPattern: Self.bigEndian32(p, b))
                    case .float64:
                        let bits = UInt64(Self.bigEndian32(p, b)) << 32 | UInt64(Self.bigEndian32(p, b + 4))
                        out[i] = Float(Double(bitPattern: bits))
                    }
                }
                initialized = n
            }
        }
    }

    /// For uint8 data: each byte `b` replaced by `table[b]` (a 256-entry table), row-major.
    func mappedBytes(_ table: [Float]) -> [Float] {
        let n = count
        return bytes.withUnsafeBufferPointer { all in
            table.withUnsafeBufferPointer { t in
                [Float](unsafeUninitializedCapacity: n) { out, initialized in
                    for i in 0..<n { out[i] = t[Int(all[payloadOffset + i])] }
                    initialized = n
                }
            }
        }
    }

    // MARK: - Header

    struct Header {
        let type: IDXElementType
        let shape: [Int]
        /// Header bytes: 4 + 4 × rank.
        let size: Int
        let payloadBytes: Int
    }

    static func header(_ bytes: [UInt8], name: String) throws -> Header {
        guard bytes.count >= 4 else {
            throw DatasetError(.badFormat, context: name, "an IDX header needs at least 4 bytes, the data has \(bytes.count)")
        }
        guard bytes[0] == 0, bytes[1] == 0 else {
            throw DatasetError(.badFormat, context: name,
                               "bad IDX magic number \(hex(bytes[0...3])) (expected 00 00, the type byte and the rank)")
        }
        guard let type = IDXElementType(rawValue: bytes[2]) else {
            throw DatasetError(.badFormat, context: name,
                               "unknown IDX element type 0x\(String(bytes[2], radix: 16)) (known: 08 uint8, 09 int8, 0b int16, 0c int32, 0d float32, 0e float64)")
        }
        let rank = Int(bytes[3])
        let size = 4 + 4 * rank
        guard bytes.count >= size else {
            throw DatasetError(.badFormat, context: name,
                               "the header declares rank \(rank), which needs \(size) header bytes; the data has \(bytes.count)")
        }
        var shape = [Int]()
        var elements = 1
        var overflow = false
        for d in 0..<rank {
            let dimension = Int(bigEndian32(bytes, 4 + 4 * d))
            shape.append(dimension)
            let (product, o) = elements.multipliedReportingOverflow(by: dimension)
            elements = product
            overflow = overflow || o
        }
        let (payloadBytes, o) = elements.multipliedReportingOverflow(by: type.byteWidth)
        guard !overflow && !o else {
            throw DatasetError(.badFormat, context: name, "shape \(shape) of \(type) is too large to address")
        }
        return Header(type: type, shape: shape, size: size, payloadBytes: payloadBytes)
    }

    /// Header plus payload bytes holding the first `limit` entries along the first axis.
    static func bytesNeeded(_ header: Header, name: String, limit: Int) throws -> Int {
        guard limit >= 0 else {
            throw DatasetError(.invalidArgument, context: name, "limit must be ≥ 0, got \(limit)")
        }
        guard let first = header.shape.first else {
            throw DatasetError(.invalidArgument, context: name, "a limit needs an array of rank ≥ 1, the data has rank 0")
        }
        guard first > 0 else { return header.size }
        let entryBytes = header.payloadBytes / first
        return header.size + min(limit, first) * entryBytes
    }

    private static func bigEndian32<C: Collection>(_ p: C, _ i: Int) -> UInt32 where C.Element == UInt8, C.Index == Int {
        UInt32(p[i]) << 24 | UInt32(p[i + 1]) << 16 | UInt32(p[i + 2]) << 8 | UInt32(p[i + 3])
    }

    private static func hex(_ bytes: ArraySlice<UInt8>) -> String {
        bytes.map { b in (b < 16 ? "0" : "") + String(b, radix: 16) }.joined(separator: " ")
    }
}
