import Foundation
import Kiln
import Testing

// The gzip/DEFLATE decoder against streams this file builds by hand from RFC 1951/1952 and against
// the system gzip tool, compared byte for byte with the original; corrupt and truncated streams
// must throw DatasetError, never trap.

/// Decompresses and returns the error, failing the test when decoding succeeds.
private func expectCorrupt(_ bytes: [UInt8], containing text: String? = nil, _ comment: Comment? = nil,
                           sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        let out = try Gzip.decompress(bytes)
        Issue.record("decoding succeeded with \(out.count) bytes; expected an error. \(comment?.description ?? "")",
                     sourceLocation: sourceLocation)
    } catch let error as DatasetError {
        #expect(error.kind == .corruptData, "\(error)", sourceLocation: sourceLocation)
        if let text {
            #expect(error.message.contains(text), "message \"\(error.message)\" lacks \"\(text)\"",
                    sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("unexpected error type: \(error)", sourceLocation: sourceLocation)
    }
}

/// The DEFLATE body of a gzip-tool stream made from standard input (10-byte header, no options).
private func deflateBody(_ gz: [UInt8]) throws -> [UInt8] {
    try #require(gz.count >= 18 && gz[3] == 0, "expected a gzip stream without optional header fields")
    return Array(gz[10..<(gz.count - 8)])
}

/// BTYPE of the first block of a gzip-tool stream without optional header fields.
private func firstBlockType(_ gz: [UInt8]) -> Int { Int(gz[10] >> 1) & 3 }

private let text = Array("""
    It is a truth universally acknowledged, that a single man in possession of a good fortune, \
    must be in want of a wife. However little known the feelings or views of such a man may be \
    on his first entering a neighbourhood, this truth is so well fixed in the minds of the \
    surrounding families, that he is considered the rightful property of some one or other of \
    their daughters.
    """.utf8)

struct GzipInput: CustomStringConvertible, Sendable {
    let name: String
    let bytes: [UInt8]
    var description: String { "\(name) (\(bytes.count) bytes)" }

    static let all: [GzipInput] = {
        var imageLike = [UInt8]()  // long zero runs with noisy patches, like MNIST images
        let noise = pseudoRandomBytes(40_000, seed: 3)
        for i in 0..<200_000 { imageLike.append(i % 28 < 10 || (i / 784) % 3 == 0 ? 0 : noise[i % noise.count] & 0xF0) }
        var farRepeat = pseudoRandomBytes(30_000, seed: 4)  // repeats 30,000 bytes back (near the window limit)
        farRepeat += farRepeat + pseudoRandomBytes(1000, seed: 5)
        var longText = [UInt8]()
        for i in 0..<3000 { longText += text[(i * 7 % 50)...] }
        return [
            GzipInput(name: "empty", bytes: []),
            GzipInput(name: "one byte", bytes: [42]),
            GzipInput(name: "short text", bytes: Array("hello, hello, hello world".utf8)),
            GzipInput(name: "text", bytes: text),
            GzipInput(name: "zeros", bytes: [UInt8](repeating: 0, count: 300_000)),
            GzipInput(name: "random", bytes: pseudoRandomBytes(150_000, seed: 1)),
            GzipInput(name: "small random", bytes: pseudoRandomBytes(333, seed: 2)),
            GzipInput(name: "image-like", bytes: imageLike),
            GzipInput(name: "far repeat", bytes: farRepeat),
            GzipInput(name: "long text", bytes: longText),
            GzipInput(name: "all byte values", bytes: (0..<4096).map { UInt8($0 % 256) }),
        ]
    }()
}

@Suite struct GzipTests {
    @Test func crc32MatchesTheBitwiseDefinition() {
        #expect(CRC32.checksum(of: "123456789") == 0xCBF4_3926)
        #expect(referenceCRC32(Array("123456789".utf8)) == 0xCBF4_3926)
        for length in [0, 1, 7, 8, 9, 15, 16, 17, 100, 1001] {
            let bytes = pseudoRandomBytes(length, seed: UInt64(length) + 10)
            #expect(CRC32.checksum(of: bytes) == referenceCRC32(bytes), "length \(length)")
            // Continuing from the CRC of a prefix gives the CRC of the whole.
            let cut = length / 3
            let continued = CRC32.checksum(of: Array(bytes[cut...]), continuing: CRC32.checksum(of: Array(bytes[..<cut])))
            #expect(continued == referenceCRC32(bytes), "length \(length) split at \(cut)")
        }
    }

    @Test(arguments: [0, 1, 1000, 65535, 65536, 200_000])
    func storedBlocksWrittenByHand(length: Int) throws {
        let data = pseudoRandomBytes(length, seed: UInt64(length))
        #expect(try Gzip.decompress(gzipMember(storedDeflate(data), original: data)) == data)
        // Many small blocks, including the boundary between them.
        let small = try Gzip.decompress(gzipMember(storedDeflate(data, blockSize: 777), original: data))
        #expect(small == data)
    }

    @Test func everyOptionalHeaderField() throws {
        let data = Array("optional fields".utf8)
        let member = gzipMember(storedDeflate(data), original: data, extra: [1, 2, 3, 0, 4],
                                name: "file.txt", comment: "a comment", headerCRC: true)
        #expect(try Gzip.decompress(member) == data)
        // A wrong header CRC-16 is caught.
        var bad = member
        let crcOffset = 10 + 2 + 5 + 9 + 10
        bad[crcOffset] ^= 0x01
        expectCorrupt(bad, containing: "CRC-16")
        // Empty FEXTRA, FNAME and FCOMMENT.
        let empty = gzipMember(storedDeflate(data), original: data, extra: [], name: "", comment: "", headerCRC: true)
        #expect(try Gzip.decompress(empty) == data)
    }

    @Test func fixedHuffmanBlockWrittenByHand() throws {
        // "abc", then length 6 at distance 3 (an overlapping copy), then "!": "abcabcabc!".
        var w = BitWriter()
        w.write(1, bits: 1)  // BFINAL
        w.write(1, bits: 2)  // BTYPE 01: fixed Huffman
        for c in "abc".utf8 { w.fixedLiteral(Int(c)) }
        w.fixedLiteral(260)  // length 6 (base 6, no extra bits)
        w.writeCode(2, length: 5)  // distance symbol 2: distance 3
        w.fixedLiteral(Int(UInt8(ascii: "!")))
        w.fixedLiteral(256)
        w.flush()
        let expected = Array("abcabcabc!".utf8)
        #expect(try Gzip.decompress(gzipMember(w.bytes, original: expected)) == expected)
    }

    @Test func storedBlockAfterAFixedBlockRealignsToAByte() throws {
        var w = BitWriter()
        w.write(0, bits: 1)  // not final
        w.write(1, bits: 2)
        for c in "xyz".utf8 { w.fixedLiteral(Int(c)) }
        w.fixedLiteral(256)
        w.write(1, bits: 1)  // final
        w.write(0, bits: 2)  // stored
        let raw = pseudoRandomBytes(300, seed: 9)
        w.append(littleEndian16(raw.count) + littleEndian16(~raw.count & 0xFFFF) + raw)
        let expected = Array("xyz".utf8) + raw
        #expect(try Gzip.decompress(gzipMember(w.bytes, original: expected)) == expected)
    }

    @Test(arguments: GzipInput.all, [1, 9])
    func matchesTheSystemGzipTool(input: GzipInput, level: Int) throws {
        let gz = try systemGzip(input.bytes, level: level)
        let out = try Gzip.decompress(gz)
        #expect(out.count == input.bytes.count)
        #expect(out == input.bytes)
    }

    /// The tool's streams exercise all three block types (checked, so the test above cannot
    /// silently stop covering one).
    @Test func systemGzipStreamsCoverEveryBlockType() throws {
        #expect(firstBlockType(try systemGzip(Array("hello, hello, hello world".utf8), level: 9)) == 1)
        #expect(firstBlockType(try systemGzip(text, level: 9)) == 2)
        #expect(firstBlockType(try systemGzip(pseudoRandomBytes(150_000, seed: 1), level: 1)) == 0)
    }

    @Test func fileNameFieldFromTheTool() throws {
        let gz = try systemGzip(text, level: 6, name: "pride.txt")
        #expect(gz[3] & 0x08 != 0, "gzip stores the file name (FNAME)")
        #expect(try Gzip.decompress(gz) == text)
    }

    @Test func concatenatedMembersAndTrailingZeros() throws {
        let a = try systemGzip(text, level: 9)
        let second = pseudoRandomBytes(5000, seed: 7)
        let b = gzipMember(storedDeflate(second), original: second, name: "b")
        #expect(try Gzip.decompress(a + b) == text + second)
        #expect(try Gzip.decompress(a + [0, 0, 0, 0]) == text)
        expectCorrupt(a + [0x1F], containing: "not another gzip member")
        expectCorrupt(a + [1, 2, 3], containing: "not another gzip member")
    }

    @Test func everyTruncationThrows() throws {
        let body = try deflateBody(try systemGzip(text, level: 9))
        let streams = [
            gzipMember(body, original: text, extra: [9, 9], name: "n", comment: "c", headerCRC: true),
            gzipMember(storedDeflate(Array(text.prefix(100)), blockSize: 40), original: Array(text.prefix(100)),
                       name: "stored"),
        ]
        for stream in streams {
            #expect(try Gzip.decompress(stream).count > 0)
            for cut in 0..<stream.count {
                expectCorrupt(Array(stream[..<cut]), "truncated to \(cut) of \(stream.count) bytes")
            }
        }
    }

    @Test func checksumAndLengthMismatchesThrow() throws {
        let gz = try systemGzip(text, level: 9)
        for bit in [0, 9, 17, 31] {
            var bad = gz
            bad[gz.count - 8 + bit / 8] ^= UInt8(1 << (bit % 8))
            expectCorrupt(bad, containing: "CRC-32 mismatch", "CRC bit \(bit) flipped")
        }
        var badSize = gz
        badSize[gz.count - 4] ^= 0x01
        expectCorrupt(badSize, containing: "length mismatch")
    }

    @Test func malformedHeadersThrow() throws {
        let data = Array("x".utf8)
        let good = gzipMember(storedDeflate(data), original: data)
        expectCorrupt([], containing: "not gzip")
        expectCorrupt([0x1F], containing: "not gzip")
        expectCorrupt([0x00, 0x00, 0x08, 0x03], containing: "not gzip")
        var method = good
        method[2] = 7
        expectCorrupt(method, containing: "compression method")
        var reserved = good
        reserved[3] = 0x20
        expectCorrupt(reserved, containing: "reserved")
    }

    @Test func malformedDeflateDataThrows() throws {
        let data = Array("abc".utf8)
        func member(_ w: BitWriter) -> [UInt8] { gzipMember(w.bytes, original: data) }

        var blockType3 = BitWriter()
        blockType3.write(1, bits: 1)
        blockType3.write(3, bits: 2)
        blockType3.flush()
        expectCorrupt(member(blockType3), containing: "block type 3")

        let stored = storedDeflate(data)
        var lengthComplement = stored
        lengthComplement[3] ^= 0xFF  // NLEN no longer ~LEN
        expectCorrupt(gzipMember(lengthComplement, original: data), containing: "complement")

        var tooFar = BitWriter()  // a match before any output
        tooFar.write(1, bits: 1)
        tooFar.write(1, bits: 2)
        tooFar.fixedLiteral(Int(UInt8(ascii: "a")))
        tooFar.fixedLiteral(257)  // length 3
        tooFar.writeCode(1, length: 5)  // distance 2, but only 1 byte out
        tooFar.fixedLiteral(256)
        tooFar.flush()
        expectCorrupt(member(tooFar), containing: "distance 2")

        var badDistanceSymbol = BitWriter()
        badDistanceSymbol.write(1, bits: 1)
        badDistanceSymbol.write(1, bits: 2)
        badDistanceSymbol.fixedLiteral(Int(UInt8(ascii: "a")))
        badDistanceSymbol.fixedLiteral(257)
        badDistanceSymbol.writeCode(30, length: 5)  // distance symbols 30 and 31 do not exist
        badDistanceSymbol.flush()
        expectCorrupt(member(badDistanceSymbol), containing: "distance symbol 30")

        var badLengthSymbol = BitWriter()
        badLengthSymbol.write(1, bits: 1)
        badLengthSymbol.write(1, bits: 2)
        badLengthSymbol.fixedLiteral(286)
        badLengthSymbol.flush()
        expectCorrupt(member(badLengthSymbol), containing: "length symbol 286")

        // Dynamic block: HLIT 257, HDIST 1, HCLEN 4 code-length codes, all of length 0 (an empty
        // code-length code), so the first code-length symbol cannot be decoded.
        var emptyCode = BitWriter()
        emptyCode.write(1, bits: 1)
        emptyCode.write(2, bits: 2)
        emptyCode.write(0, bits: 5)
        emptyCode.write(0, bits: 5)
        emptyCode.write(0, bits: 4)
        emptyCode.write(0, bits: 12)
        emptyCode.write(0, bits: 16)
        emptyCode.flush()
        expectCorrupt(member(emptyCode), containing: "invalid Huffman code")

        // Over-subscribed code-length code: three symbols of length 1.
        var oversubscribed = BitWriter()
        oversubscribed.write(1, bits: 1)
        oversubscribed.write(2, bits: 2)
        oversubscribed.write(0, bits: 5)
        oversubscribed.write(0, bits: 5)
        oversubscribed.write(0, bits: 4)  // HCLEN 4: symbols 16, 17, 18, 0
        for _ in 0..<3 { oversubscribed.write(1, bits: 3) }
        oversubscribed.write(0, bits: 3)
        oversubscribed.write(0, bits: 16)
        oversubscribed.flush()
        expectCorrupt(member(oversubscribed), containing: "over-subscribed")

        // Repeat code 16 first, with nothing to repeat: code-length code {0: code 0, 16: code 1}
        // (canonical codes of equal length go in symbol order).
        var repeatFirst = BitWriter()
        repeatFirst.write(1, bits: 1)
        repeatFirst.write(2, bits: 2)
        repeatFirst.write(0, bits: 5)
        repeatFirst.write(0, bits: 5)
        repeatFirst.write(0, bits: 4)
        repeatFirst.write(1, bits: 3)  // symbol 16: length 1
        repeatFirst.write(0, bits: 3)  // 17
        repeatFirst.write(0, bits: 3)  // 18
        repeatFirst.write(1, bits: 3)  // 0: length 1
        repeatFirst.writeCode(1, length: 1)  // symbol 16
        repeatFirst.write(0, bits: 16)
        repeatFirst.flush()
        expectCorrupt(member(repeatFirst), containing: "no previous length")

        // Too many literal/length codes: HLIT 257 + 30 = 287 > 286.
        var tooMany = BitWriter()
        tooMany.write(1, bits: 1)
        tooMany.write(2, bits: 2)
        tooMany.write(30, bits: 5)
        tooMany.write(0, bits: 16)
        tooMany.flush()
        expectCorrupt(member(tooMany), containing: "at most 286")
    }

    /// Every single-bit flip of a dynamic stream either throws or, where the bit is padding,
    /// changes nothing; random garbage after a valid header throws. None may trap.
    @Test func bitFlipsAndGarbageNeverTrap() throws {
        let gz = try systemGzip(Array(text.prefix(200)) + [UInt8](repeating: 7, count: 100), level: 9)
        let original = try Gzip.decompress(gz)
        for i in 10..<(gz.count - 8) {
            for bit in [0, 3, 6] {
                var bad = gz
                bad[i] ^= UInt8(1 << bit)
                if let out = try? Gzip.decompress(bad) {
                    let unchanged = out == original
                    #expect(unchanged, "flip of byte \(i) bit \(bit) decoded to different data without an error")
                }
            }
        }
        for seed in 0..<200 as Range<UInt64> {
            let garbage: [UInt8] = [0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 3] + pseudoRandomBytes(64, seed: seed + 100)
            #expect(throws: DatasetError.self) { try Gzip.decompress(garbage) }
        }
    }
}
