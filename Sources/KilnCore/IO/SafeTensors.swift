import Foundation

/// Reads and writes safetensors, the tensor file format of PyTorch (`safetensors.torch`), MLX and
/// tinygrad.
///
/// Layout: an 8-byte little-endian `UInt64` header length N; N bytes of UTF-8 JSON,
/// `{"__metadata__": {"key": "value", ...}, "name": {"dtype": "F32", "shape": [2, 3],
/// "data_offsets": [begin, end]}, ...}`; then the data buffer, every tensor's elements row-major and
/// little-endian at `begin..<end` (offsets count from the first byte after the header).
///
/// Writing: Float32 (`F32`) entries sorted by name (byte order of their UTF-8), packed in that
/// order; metadata keys sorted; no `__metadata__` when it is empty; the header padded with spaces to
/// a multiple of 8 bytes, as the reference implementation. Files are written atomically.
///
/// Reading: F32, and F16, BF16, F64 and I64 converted to Float32 (F64 rounds to nearest; I64 values
/// must be exactly representable, |v| ≤ 2²⁴ always is, which covers PyTorch's `num_batches_tracked`).
/// The whole header is validated before any tensor is made: its length, UTF-8, JSON syntax,
/// duplicate keys, each entry's fields, shapes, byte counts, and offsets that tile the data buffer
/// exactly (no overlap, no hole, nothing past the end), as the format's specification requires.
public enum SafeTensors {
    /// A decoded tensor held in host memory: its shape and its Float32 values, row-major.
    public struct HostArray: Equatable, Sendable {
        public var shape: [Int]
        public var scalars: [Float]

        public init(shape: [Int], scalars: [Float]) {
            self.shape = shape
            self.scalars = scalars
        }
    }

    /// The largest header accepted or written, in bytes (the reference implementation's limit).
    public static let maximumHeaderSize = 100_000_000

    /// The reserved header key that holds the string-to-string metadata.
    public static let metadataKey = "__metadata__"

    // MARK: - Writing

    /// The bytes of a safetensors file holding `tensors` (downloaded from their backends) and `metadata`.
    /// - Throws: `CheckpointError.invalidArgument` for the reserved name `__metadata__` or a header
    ///   over `maximumHeaderSize`; `.unsupportedDType` for a tensor that is not Float32.
    public static func encode(_ tensors: [String: Tensor], metadata: [String: String] = [:]) throws -> [UInt8] {
        var arrays: [String: HostArray] = [:]
        for (name, tensor) in tensors {
            guard tensor.dtype == .float32 else {
                throw CheckpointError(.unsupportedDType, context: "SafeTensors.encode",
                                      "tensor '\(name)' has dtype \(tensor.dtype); Kiln writes Float32 only")
            }
            arrays[name] = HostArray(shape: tensor.shape, scalars: try tensor.scalars())
        }
        return try encode(arrays, metadata: metadata)
    }

    /// The bytes of a safetensors file holding host `arrays` and `metadata` (see `encode(_:metadata:)`).
    /// - Throws: `CheckpointError.invalidArgument` for the reserved name, a negative size, a count
    ///   that does not fit the shape, or a header over `maximumHeaderSize`.
    public static func encode(_ arrays: [String: HostArray], metadata: [String: String] = [:]) throws -> [UInt8] {
        let context = "SafeTensors.encode"
        let sorted = arrays.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
        var header = "{"
        var members: [String] = []
        if !metadata.isEmpty {
            let keys = metadata.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            let pairs = keys.map { JSONWriter.quoted($0) + ":" + JSONWriter.quoted(metadata[$0] ?? "") }
            members.append(JSONWriter.quoted(metadataKey) + ":{" + pairs.joined(separator: ",") + "}")
        }
        var offset = 0
        for (name, array) in sorted {
            guard name != metadataKey else {
                throw CheckpointError(.invalidArgument, context: context, "'\(metadataKey)' is reserved for the metadata, not a tensor name")
            }
            guard array.shape.allSatisfy({ $0 >= 0 }), array.shape.reduce(1, *) == array.scalars.count else {
                throw CheckpointError(.invalidArgument, context: context,
                                      "tensor '\(name)': shape \(array.shape) does not hold \(array.scalars.count) values")
            }
            let end = offset + 4 * array.scalars.count
            let shape = array.shape.map(String.init).joined(separator: ",")
            members.append(JSONWriter.quoted(name) + ":{\"dtype\":\"F32\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        header += members.joined(separator: ",") + "}"
        var headerBytes = Array(header.utf8)
        headerBytes += [UInt8](repeating: 0x20, count: (8 - headerBytes.count % 8) % 8)
        guard headerBytes.count <= maximumHeaderSize else {
            throw CheckpointError(.invalidArgument, context: context,
                                  "the header would take \(headerBytes.count) bytes, over the limit of \(maximumHeaderSize)")
        }
        var out: [UInt8] = []
        out.reserveCapacity(8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { out += $0 }
        out += headerBytes
        for (_, array) in sorted {
            #if _endian(little)
            array.scalars.withUnsafeBytes { out += $0 }
            #else
            for value in array.scalars { withUnsafeBytes(of: value.bitPattern.littleEndian) { out += $0 } }
            #endif
        }
        return out
    }

    /// Writes `tensors` and `metadata` to `url` as one safetensors file, atomically: the bytes go to
    /// a temporary file in the same directory, which is flushed and then renamed over `url`, so
    /// `url` holds either the old file or the whole new one.
    /// - Throws: the errors of `encode(_:metadata:)`; `CheckpointError.io` when writing fails.
    public static func write(_ tensors: [String: Tensor], metadata: [String: String] = [:], to url: URL) throws {
        try AtomicFile.store(try encode(tensors, metadata: metadata), at: url)
    }

    /// Writes host `arrays` and `metadata` to `url` atomically (see `write(_:metadata:to:)`).
    public static func write(_ arrays: [String: HostArray], metadata: [String: String] = [:], to url: URL) throws {
        try AtomicFile.store(try encode(arrays, metadata: metadata), at: url)
    }

    // MARK: - Reading

    /// The tensors (on `backend`) and metadata of the safetensors file at `url`.
    /// - Throws: `CheckpointError` (`.io`, `.truncated`, `.malformedHeader`, `.unsupportedDType`)
    ///   naming the file, before any tensor is made.
    public static func read(from url: URL, on backend: any Backend) throws
        -> (tensors: [String: Tensor], metadata: [String: String]) {
        let (arrays, metadata) = try readArrays(from: url)
        return (try makeTensors(arrays, on: backend), metadata)
    }

    /// The host arrays and metadata of the safetensors file at `url` (see `read(from:on:)`).
    public static func readArrays(from url: URL) throws -> (arrays: [String: HostArray], metadata: [String: String]) {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw CheckpointError(.io, context: url.path, "could not read the file: \(error.localizedDescription)")
        }
        return try decodeArrays(data, context: url.path)
    }

    /// The tensors (on `backend`) and metadata held by the bytes of a safetensors file.
    /// - Throws: `CheckpointError` (`.truncated`, `.malformedHeader`, `.unsupportedDType`).
    public static func decode(_ bytes: [UInt8], on backend: any Backend) throws
        -> (tensors: [String: Tensor], metadata: [String: String]) {
        let (arrays, metadata) = try decodeArrays(bytes)
        return (try makeTensors(arrays, on: backend), metadata)
    }

    /// The tensors (on `backend`) and metadata held by the bytes of a safetensors file.
    public static func decode(_ data: Data, on backend: any Backend) throws
        -> (tensors: [String: Tensor], metadata: [String: String]) {
        let (arrays, metadata) = try decodeArrays(data)
        return (try makeTensors(arrays, on: backend), metadata)
    }

    /// The host arrays and metadata held by the bytes of a safetensors file.
    public static func decodeArrays(_ bytes: [UInt8]) throws -> (arrays: [String: HostArray], metadata: [String: String]) {
        try bytes.withUnsafeBytes { try decodeArrays($0, context: "SafeTensors.decode") }
    }

    /// The host arrays and metadata held by the bytes of a safetensors file.
    public static func decodeArrays(_ data: Data) throws -> (arrays: [String: HostArray], metadata: [String: String]) {
        try decodeArrays(data, context: "SafeTensors.decode")
    }

    static func decodeArrays(_ data: Data, context: String) throws -> (arrays: [String: HostArray], metadata: [String: String]) {
        try data.withUnsafeBytes { try decodeArrays($0, context: context) }
    }

    /// Validates the whole file, then converts every entry to Float32.
    static func decodeArrays(_ file: UnsafeRawBufferPointer, context: String) throws
        -> (arrays: [String: HostArray], metadata: [String: String]) {
        let header = try Header(parsing: file, context: context)
        let buffer = UnsafeRawBufferPointer(rebasing: file[header.dataStart...])
        var arrays: [String: HostArray] = [:]
        for entry in header.entries {
            arrays[entry.name] = HostArray(shape: entry.shape,
                                           scalars: try entry.dtype.decode(buffer, entry: entry, context: context))
        }
        return (arrays, header.metadata)
    }

    static func makeTensors(_ arrays: [String: HostArray], on backend: any Backend) throws -> [String: Tensor] {
        var tensors: [String: Tensor] = [:]
        for (name, array) in arrays {
            tensors[name] = try Tensor(array.scalars, shape: array.shape, on: backend)
        }
        return tensors
    }
}

// MARK: - Header validation

extension SafeTensors {
    /// One tensor of a header.
    struct Entry {
        let name: String
        let dtype: StorageType
        let shape: [Int]
        let count: Int
        let begin: Int
        let end: Int
    }

    /// The validated header: every entry, the metadata, where the data buffer starts.
    struct Header {
        var entries: [Entry] = []
        var metadata: [String: String] = [:]
        var dataStart = 0

        init(parsing file: UnsafeRawBufferPointer, context: String) throws {
            func fail(_ kind: CheckpointError.Kind, _ message: String) -> CheckpointError {
                CheckpointError(kind, context: context, message)
            }
            guard file.count >= 8 else {
                throw fail(.truncated, "\(file.count) bytes; a safetensors file starts with an 8-byte header length")
            }
            let length = UInt64(littleEndian: file.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
            guard length <= UInt64(maximumHeaderSize) else {
                throw fail(.malformedHeader, "header length \(length) exceeds the limit of \(maximumHeaderSize) bytes")
            }
            guard Int(length) <= file.count - 8 else {
                throw fail(.truncated, "header length \(length) exceeds the \(file.count - 8) bytes that follow it")
            }
            dataStart = 8 + Int(length)
            let text = Array(file[8..<dataStart])
            guard Array(String(decoding: text, as: UTF8.self).utf8) == text else {
                throw fail(.malformedHeader, "the header is not valid UTF-8")
            }
            guard text.first == UInt8(ascii: "{") else {
                throw fail(.malformedHeader, "the header must be a JSON object starting with '{'")
            }
            let json: JSONValue
            do {
                json = try JSONParser.parse(text)
            } catch let e as JSONSyntaxError {
                throw fail(.malformedHeader, "the header is not valid JSON: \(e.message) at byte \(e.offset)")
            }
            guard case .object(let members) = json else {
                throw fail(.malformedHeader, "the header must be a JSON object")
            }
            let dataLength = file.count - dataStart
            for (key, value) in members {
                if key == metadataKey {
                    metadata = try Header.metadata(value, fail: fail)
                } else {
                    entries.append(try Header.entry(key, value, dataLength: dataLength, fail: fail))
                }
            }
            try Header.checkTiling(entries, dataLength: dataLength, fail: fail)
        }

        private static func metadata(_ value: JSONValue,
                                     fail: (CheckpointError.Kind, String) -> CheckpointError) throws -> [String: String] {
            guard case .object(let pairs) = value else {
                throw fail(.malformedHeader, "'\(metadataKey)' must be an object of strings, got \(value.kindName)")
            }
            var out: [String: String] = [:]
            for (k, v) in pairs {
                guard case .string(let s) = v else {
                    throw fail(.malformedHeader, "metadata '\(k)' must be a string, got \(v.kindName)")
                }
                out[k] = s
            }
            return out
        }

        private static func entry(_ name: String, _ value: JSONValue, dataLength: Int,
                                  fail: (CheckpointError.Kind, String) -> CheckpointError) throws -> Entry {
            guard case .object(let fields) = value else {
                throw fail(.malformedHeader, "tensor '\(name)' must be an object with dtype, shape and data_offsets, got \(value.kindName)")
            }
            func field(_ key: String) throws -> JSONValue {
                guard let v = fields.first(where: { $0.key == key })?.value else {
                    throw fail(.malformedHeader, "tensor '\(name)' has no '\(key)'")
                }
                return v
            }
            func integers(_ key: String) throws -> [Int] {
                let v = try field(key)
                guard case .array(let items) = v else {
                    throw fail(.malformedHeader, "tensor '\(name)': '\(key)' must be an array, got \(v.kindName)")
                }
                return try items.map { item in
                    guard case .number(let text) = item, let n = Int(text), n >= 0 else {
                        let shown = if case .number(let t) = item { t } else { item.kindName }
                        throw fail(.malformedHeader, "tensor '\(name)': '\(key)' must hold non-negative integers, got \(shown)")
                    }
                    return n
                }
            }
            guard case .string(let dtypeName) = try field("dtype") else {
                throw fail(.malformedHeader, "tensor '\(name)': 'dtype' must be a string")
            }
            let shape = try integers("shape")
            let offsets = try integers("data_offsets")
            guard let dtype = StorageType(rawValue: dtypeName) else {
                throw fail(.unsupportedDType,
                           "tensor '\(name)' has dtype \(dtypeName); Kiln reads \(StorageType.allNames) (as Float32)")
            }
            guard offsets.count == 2 else {
                throw fail(.malformedHeader, "tensor '\(name)': 'data_offsets' must be [begin, end], got \(offsets)")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin <= end else {
                throw fail(.malformedHeader, "tensor '\(name)': data_offsets \(offsets) end before they begin")
            }
            var count = 1
            for size in shape {
                let (product, overflow) = count.multipliedReportingOverflow(by: size)
                guard !overflow else { throw fail(.malformedHeader, "tensor '\(name)': shape \(shape) overflows the element count") }
                count = product
            }
            let (bytes, overflow) = count.multipliedReportingOverflow(by: dtype.byteCount)
            guard !overflow, bytes == end - begin else {
                throw fail(.malformedHeader,
                           "tensor '\(name)' (\(dtypeName), shape \(shape)) needs \(overflow ? "too many" : String(bytes)) bytes, but data_offsets \(offsets) span \(end - begin)")
            }
            guard end <= dataLength else {
                throw fail(.truncated, "tensor '\(name)': data_offsets \(offsets) run past the \(dataLength)-byte data buffer")
            }
            return Entry(name: name, dtype: dtype, shape: shape, count: count, begin: begin, end: end)
        }

        /// The entries, sorted by offset, must cover `0..<dataLength` exactly once.
        private static func checkTiling(_ entries: [Entry], dataLength: Int,
                                        fail: (CheckpointError.Kind, String) -> CheckpointError) throws {
            let sorted = entries.sorted { ($0.begin, $0.end) < ($1.begin, $1.end) }
            var covered = 0
            var previous: Entry? = nil
            for e in sorted {
                if e.begin < covered, let p = previous {
                    throw fail(.malformedHeader, "tensors '\(p.name)' at [\(p.begin), \(p.end)] and '\(e.name)' at [\(e.begin), \(e.end)] overlap")
                }
                if e.begin > covered {
                    throw fail(.malformedHeader,
                               "bytes \(covered)..<\(e.begin) of the data buffer belong to no tensor (before '\(e.name)')")
                }
                covered = e.end
                previous = e
            }
            guard covered == dataLength else {
                throw fail(.malformedHeader, "bytes \(covered)..<\(dataLength) at the end of the data buffer belong to no tensor")
            }
        }
    }
}

// MARK: - Element types

extension SafeTensors {
    /// The safetensors dtypes Kiln reads, each converted to Float32.
    enum StorageType: String, CaseIterable {
        case f32 = "F32", f16 = "F16", bf16 = "BF16", f64 = "F64", i64 = "I64"

        static var allNames: String { allCases.map(\.rawValue).joined(separator: ", ") }

        var byteCount: Int {
            switch self {
            case .f16, .bf16: 2
            case .f32: 4
            case .f64, .i64: 8
            }
        }

        /// The entry's elements of `buffer` (the data buffer) as Float32.
        func decode(_ buffer: UnsafeRawBufferPointer, entry: Entry, context: String) throws -> [Float] {
            let n = entry.count
            if n == 0 { return [] }
            let base = entry.begin
            switch self {
            case .f32:
                var out = [Float](repeating: 0, count: n)
                out.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: buffer[base..<entry.end])) }
                #if _endian(big)
                out = out.map { Float(bitPattern: $0.bitPattern.byteSwapped) }
                #endif
                return out
            case .f16:
                return (0..<n).map { i in
                    SafeTensors.float(half: UInt16(littleEndian: buffer.loadUnaligned(fromByteOffset: base + 2 * i, as: UInt16.self)))
                }
            case .bf16:
                return (0..<n).map { i in
                    let bits = UInt16(littleEndian: buffer.loadUnaligned(fromByteOffset: base + 2 * i, as: UInt16.self))
                    return Float(bitPattern: UInt32(bits) << 16)
                }
            case .f64:
                return (0..<n).map { i in
                    Float(Double(bitPattern: UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: base + 8 * i, as: UInt64.self))))
                }
            case .i64:
                var out = [Float](repeating: 0, count: n)
                for i in 0..<n {
                    let v = Int64(littleEndian: buffer.loadUnaligned(fromByteOffset: base + 8 * i, as: Int64.self))
                    guard let f = Float(exactly: v) else {
                        throw CheckpointError(.unsupportedDType, context: context,
                                              "I64 tensor '\(entry.name)' holds \(v) at index \(i), which Float32 cannot represent exactly")
                    }
                    out[i] = f
                }
                return out
            }
        }
    }

    /// IEEE 754 binary16 bits as a Float (exact: every half value is a float; NaN payloads kept).
    static func float(half h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = UInt32(h >> 10) & 0x1F
        let mantissa = UInt32(h & 0x3FF)
        switch exponent {
        case 0x1F:
            return Float(bitPattern: sign | 0x7F80_0000 | mantissa << 13)
        case 0:
            let magnitude = Float(mantissa) * 0x1p-24
            return sign != 0 ? -magnitude : magnitude
        default:
            return Float(bitPattern: sign | (exponent + 112) << 23 | mantissa << 13)
        }
    }
}
