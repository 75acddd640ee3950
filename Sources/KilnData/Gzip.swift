/// A gzip decoder (RFC 1952) over the DEFLATE decoder of `Inflater` (RFC 1951).
///
/// Each member's header is checked (magic 0x1F 0x8B, method 8, no reserved flag bits) and its
/// optional fields skipped: FEXTRA, FNAME, FCOMMENT, and FHCRC, whose CRC-16 of the header is
/// verified. After the DEFLATE data, the member's CRC-32 and ISIZE (length mod 2³²) must match
/// what was decoded. Concatenated members decode to the concatenation of their contents, as
/// `gzip -d` does; zero bytes after the last member are ignored, anything else is an error.
///
/// Every malformed or truncated input throws `DatasetError` of kind `.corruptData` with context
/// `gzip`; no input makes the decoder trap or read outside the input.
public enum Gzip {
    /// True when `bytes` starts with the gzip magic number 0x1F 0x8B.
    public static func isCompressed(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B
    }

    /// The decompressed contents of the gzip data `bytes` (every member, checksums verified).
    /// - Throws: `DatasetError.corruptData` (context `gzip`) for data that is not gzip, is corrupt
    ///   or ends early, or whose CRC-32 or length does not match its trailer.
    public static func decompress(_ bytes: [UInt8]) throws -> [UInt8] {
        try decompress(bytes, outputLimit: .max)
    }

    /// Decompresses until at least `outputLimit` bytes are out (or the data ends), for reading the
    /// head of a large file. When decoding stops early, the member's CRC-32 and length are not
    /// checked (they cover the whole member); the DEFLATE structure read so far still is.
    static func decompress(_ bytes: [UInt8], outputLimit: Int) throws -> [UInt8] {
        guard isCompressed(bytes) else {
            throw corrupt("not gzip data: it does not start with the magic bytes 1f 8b (\(bytes.count) bytes)")
        }
        return try bytes.withUnsafeBufferPointer { input in
            // ISIZE of the last member sizes the first allocation; a corrupt value only costs a regrow.
            var hint = 1 << 16
            if input.count >= 18 {
                let size = Int(readLE32(input, input.count - 4))
                hint = min(size, input.count.multipliedReportingOverflow(by: 1032).partialValue)
            }
            if outputLimit < Int.max - (1 << 16) { hint = min(hint, outputLimit + (1 << 16)) }
            var inflater = Inflater(input: input, start: 0, capacityHint: hint)
            defer { inflater.deallocate() }

            var offset = 0
            var member = 1
            while true {
                let body = try headerEnd(input, start: offset, member: member)
                inflater.restart(at: body)
                let memberStart = inflater.count
                inflater.windowStart = memberStart
                switch try inflater.inflate(outputLimit: outputLimit) {
                case .outputLimitReached:
                    return Array(UnsafeBufferPointer(start: inflater.output, count: inflater.count))
                case .streamEnd(let end):
                    guard input.count - end >= 8 else {
                        throw corrupt("member \(member): the 8-byte CRC-32/ISIZE trailer is missing or truncated (\(input.count - end) bytes left)")
                    }
                    let length = inflater.count - memberStart
                    let crc = CRC32.checksum(of: UnsafeBufferPointer(start: inflater.output + memberStart, count: length))
                    let storedCRC = readLE32(input, end)
                    guard crc == storedCRC else {
                        throw corrupt("member \(member): CRC-32 mismatch: data has \(hex(crc)), trailer says \(hex(storedCRC))")
                    }
                    let storedSize = readLE32(input, end + 4)
                    guard UInt32(truncatingIfNeeded: length) == storedSize else {
                        throw corrupt("member \(member): length mismatch: decoded \(length) bytes, trailer says \(storedSize) (mod 2^32)")
                    }
                    offset = end + 8
                }
                if (offset..<input.count).allSatisfy({ input[$0] == 0 }) { break }
                guard input.count - offset >= 2, input[offset] == 0x1F, input[offset + 1] == 0x8B else {
                    throw corrupt("\(input.count - offset) bytes after member \(member) are not another gzip member")
                }
                member += 1
            }
            return Array(UnsafeBufferPointer(start: inflater.output, count: inflater.count))
        }
    }

    /// Checks the member header at `start` and returns the offset of its DEFLATE data.
    private static func headerEnd(_ input: UnsafeBufferPointer<UInt8>, start: Int, member: Int) throws -> Int {
        var i = start
        func need(_ n: Int, _ what: String) throws {
            guard input.count - i >= n else {
                throw corrupt("member \(member): header ends early in \(what) (truncated input at byte \(input.count))")
            }
        }
        func skipZeroTerminated(_ what: String) throws {
            while true {
                try need(1, what)
                i += 1
                if input[i - 1] == 0 { return }
            }
        }
        try need(10, "the fixed fields")
        guard input[i] == 0x1F, input[i + 1] == 0x8B else {
            throw corrupt("member \(member): bad magic \(hex(input[i])) \(hex(input[i + 1])) (expected 1f 8b)")
        }
        guard input[i + 2] == 8 else {
            throw corrupt("member \(member): compression method \(input[i + 2]) (only 8, deflate, exists)")
        }
        let flags = input[i + 3]
        guard flags & 0xE0 == 0 else {
            throw corrupt("member \(member): reserved header flag bits set (FLG = \(hex(flags)))")
        }
        i += 10
        if flags & 0x04 != 0 {  // FEXTRA: XLEN, then XLEN bytes
            try need(2, "FEXTRA length")
            let extraLength = Int(input[i]) | Int(input[i + 1]) << 8
            i += 2
            try need(extraLength, "FEXTRA field")
            i += extraLength
        }
        if flags & 0x08 != 0 { try skipZeroTerminated("FNAME") }
        if flags & 0x10 != 0 { try skipZeroTerminated("FCOMMENT") }
        if flags & 0x02 != 0 {  // FHCRC: the low 16 bits of the CRC-32 of the header so far
            try need(2, "FHCRC")
            let stored = UInt32(input[i]) | UInt32(input[i + 1]) << 8
            let computed = CRC32.checksum(of: UnsafeBufferPointer(rebasing: input[start..<i])) & 0xFFFF
            guard stored == computed else {
                throw corrupt("member \(member): header CRC-16 mismatch: header has \(hex(computed)), FHCRC says \(hex(stored))")
            }
            i += 2
        }
        return i
    }

    private static func readLE32(_ input: UnsafeBufferPointer<UInt8>, _ i: Int) -> UInt32 {
        UInt32(input[i]) | UInt32(input[i + 1]) << 8 | UInt32(input[i + 2]) << 16 | UInt32(input[i + 3]) << 24
    }

    private static func hex<T: BinaryInteger>(_ value: T) -> String {
        let digits = String(value, radix: 16)
        return digits.count % 2 == 1 ? "0" + digits : digits
    }

    private static func corrupt(_ message: String) -> DatasetError {
        DatasetError(.corruptData, context: "gzip", message)
    }
}
