import Foundation
import Kiln
import Testing

// Helpers for the KilnData tests, written independently of the code under test: a bitwise CRC-32,
// an LSB-first bit writer, hand-built gzip members, the system gzip tool and deterministic bytes.

/// CRC-32 bit by bit, straight from RFC 1952 section 8 (reflected polynomial 0xEDB88320).
func referenceCRC32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 {
            crc = (crc & 1) == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1
        }
    }
    return ~crc
}

func littleEndian32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
func littleEndian16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
func bigEndian32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (24 - 8 * $0)) } }

/// Packs DEFLATE bits: data elements least-significant bit first, Huffman codes most-significant
/// bit first (RFC 1951 section 3.1.1).
struct BitWriter {
    private(set) var bytes: [UInt8] = []
    private var pending: UInt32 = 0
    private var pendingCount = 0

    mutating func write(_ value: Int, bits: Int) {
        for i in 0..<bits {
            if (value >> i) & 1 == 1 { pending |= 1 << UInt32(pendingCount) }
            pendingCount += 1
            if pendingCount == 8 { flush() }
        }
    }

    mutating func writeCode(_ code: Int, length: Int) {
        for i in stride(from: length - 1, through: 0, by: -1) { write((code >> i) & 1, bits: 1) }
    }

    /// Pads to a byte boundary with zero bits.
    mutating func flush() {
        if pendingCount > 0 { bytes.append(UInt8(pending)) }
        pending = 0
        pendingCount = 0
    }

    mutating func append(_ raw: [UInt8]) {
        flush()
        bytes += raw
    }

    /// A literal or length symbol in the fixed code of RFC 1951 section 3.2.6.
    mutating func fixedLiteral(_ symbol: Int) {
        switch symbol {
        case 0...143: writeCode(0x30 + symbol, length: 8)
        case 144...255: writeCode(0x190 + symbol - 144, length: 9)
        case 256...279: writeCode(symbol - 256, length: 7)
        default: writeCode(0xC0 + symbol - 280, length: 8)
        }
    }
}

/// DEFLATE data made of stored blocks only (RFC 1951 section 3.2.4), at most `blockSize` bytes each.
func storedDeflate(_ data: [UInt8], blockSize: Int = 65535) -> [UInt8] {
    var out = [UInt8]()
    var start = 0
    repeat {
        let end = min(start + blockSize, data.count)
        out.append(end == data.count ? 1 : 0)  // BFINAL, BTYPE 00, padding
        out += littleEndian16(end - start) + littleEndian16(~(end - start) & 0xFFFF)
        out += data[start..<end]
        start = end
    } while start < data.count
    return out
}

/// One gzip member (RFC 1952) around `deflate`, which decodes to `original`.
func gzipMember(_ deflate: [UInt8], original: [UInt8], extra: [UInt8]? = nil, name: String? = nil,
                comment: String? = nil, headerCRC: Bool = false) -> [UInt8] {
    var flags: UInt8 = 0
    if headerCRC { flags |= 0x02 }
    if extra != nil { flags |= 0x04 }
    if name != nil { flags |= 0x08 }
    if comment != nil { flags |= 0x10 }
    var out: [UInt8] = [0x1F, 0x8B, 8, flags, 0x78, 0x56, 0x34, 0x12, 0, 3]
    if let extra { out += littleEndian16(extra.count) + extra }
    if let name { out += Array(name.utf8) + [0] }
    if let comment { out += Array(comment.utf8) + [0] }
    if headerCRC { out += littleEndian16(Int(referenceCRC32(out) & 0xFFFF)) }
    return out + deflate + littleEndian32(referenceCRC32(original)) + littleEndian32(UInt32(truncatingIfNeeded: original.count))
}

/// Deterministic pseudo-random bytes (xorshift64*), independent of Kiln's generators.
func pseudoRandomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed | 1
    return (0..<count).map { _ in
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return UInt8(truncatingIfNeeded: (state &* 0x2545_F491_4F6C_DD1D) >> 56)
    }
}

/// The system gzip executable, if any.
let gzipTool: String? = ["/bin/gzip", "/usr/bin/gzip"].first { FileManager.default.isExecutableFile(atPath: $0) }

/// A fresh temporary directory for one test.
func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-data-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Runs the gzip tool with `arguments` and returns its standard output.
func runGzip(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> [UInt8] {
    let tool = try #require(gzipTool, "no gzip executable in /bin or /usr/bin", sourceLocation: sourceLocation)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: tool)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    #expect(process.terminationStatus == 0, "gzip \(arguments) exited with \(process.terminationStatus)",
            sourceLocation: sourceLocation)
    return [UInt8](output)
}

/// `data` compressed by `gzip -c -<level>`; from a file named `name` when given (gzip then stores
/// the name, setting FNAME), else from standard input (no optional header fields).
func systemGzip(_ data: [UInt8], level: Int, name: String? = nil) throws -> [UInt8] {
    let directory = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let file = directory.appendingPathComponent(name ?? "input")
    try Data(data).write(to: file)
    if name != nil { return try runGzip(["-c", "-\(level)", file.path]) }
    let tool = try #require(gzipTool)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: tool)
    process.arguments = ["-c", "-\(level)"]
    process.standardInput = try FileHandle(forReadingFrom: file)
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    #expect(process.terminationStatus == 0)
    return [UInt8](output)
}
