import Foundation
import Kiln
import Testing

// IDX files written here byte by byte from the format description (big-endian sizes and values),
// read back plain and gzip-compressed; malformed headers and sizes must throw errors naming the file.

/// An IDX file: 00 00, type, rank, big-endian UInt32 sizes, then `payload` as given.
private func idxFile(type: UInt8, shape: [Int], payload: [UInt8]) -> [UInt8] {
    [0, 0, type, UInt8(shape.count)] + shape.flatMap { bigEndian32(UInt32($0)) } + payload
}

private func write(_ bytes: [UInt8], _ name: String, in directory: URL) throws -> URL {
    let url = directory.appendingPathComponent(name)
    try Data(bytes).write(to: url)
    return url
}

private func expectFormatError(_ kind: DatasetError.Kind = .badFormat, containing texts: [String],
                               sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected a DatasetError", sourceLocation: sourceLocation)
    } catch let error as DatasetError {
        #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
        let text = error.description
        for t in texts {
            #expect(text.contains(t), "\"\(text)\" lacks \"\(t)\"", sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
}

struct IDXCase: CustomStringConvertible, Sendable {
    let type: UInt8
    let expectedType: IDXElementType
    let payload: [UInt8]
    let values: [Float]
    var description: String { "\(expectedType)" }

    /// Six values of each type, encoded big-endian by hand.
    static let all: [IDXCase] = [
        IDXCase(type: 0x08, expectedType: .uint8, payload: [0, 1, 127, 128, 200, 255],
                values: [0, 1, 127, 128, 200, 255]),
        IDXCase(type: 0x09, expectedType: .int8, payload: [0, 1, 0x7F, 0x80, 0xFF, 0xFE],
                values: [0, 1, 127, -128, -1, -2]),
        IDXCase(type: 0x0B, expectedType: .int16,
                payload: [0x00, 0x00, 0x01, 0x00, 0x7F, 0xFF, 0x80, 0x00, 0xFF, 0xFF, 0x12, 0x34],
                values: [0, 256, 32767, -32768, -1, 4660]),
        IDXCase(type: 0x0C, expectedType: .int32,
                payload: bigEndian32(0) + bigEndian32(1) + bigEndian32(0x0001_0000) + bigEndian32(0xFFFF_FFFF)
                    + bigEndian32(0x8000_0000) + bigEndian32(123_456),
                values: [0, 1, 65536, -1, -2_147_483_648, 123_456]),
        IDXCase(type: 0x0D, expectedType: .float32,
                payload: [0x3F, 0x80, 0, 0,  0xC0, 0x00, 0, 0,  0x3E, 0x80, 0, 0,  0, 0, 0, 0,
                          0x42, 0xC8, 0, 0,  0xBF, 0xC0, 0, 0],
                values: [1, -2, 0.25, 0, 100, -1.5]),
        IDXCase(type: 0x0E, expectedType: .float64,
                payload: [0x3F, 0xF0, 0, 0, 0, 0, 0, 0,  0xC0, 0x00, 0, 0, 0, 0, 0, 0,
                          0x3F, 0xD0, 0, 0, 0, 0, 0, 0,  0, 0, 0, 0, 0, 0, 0, 0,
                          0x40, 0x59, 0, 0, 0, 0, 0, 0,  0xBF, 0xF8, 0, 0, 0, 0, 0, 0],
                values: [1, -2, 0.25, 0, 100, -1.5]),
    ]
}

@Suite struct IDXTests {
    @Test(arguments: IDXCase.all)
    func roundTripsEveryElementType(_ c: IDXCase) throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let bytes = idxFile(type: c.type, shape: [3, 2], payload: c.payload)
        let plain = try IDXArray(contentsOf: write(bytes, "plain-idx", in: directory))
        #expect(plain.elementType == c.expectedType)
        #expect(plain.shape == [3, 2])
        #expect(plain.count == 6)
        #expect(plain.scalars() == c.values)
        #expect(Array(plain.payload) == c.payload)

        let compressed = try IDXArray(contentsOf: write(try systemGzip(bytes, level: 9), "compressed-idx.gz", in: directory))
        #expect(compressed.shape == [3, 2])
        #expect(compressed.scalars() == c.values)

        // The first two rows only, from both.
        for url in [directory.appendingPathComponent("plain-idx"), directory.appendingPathComponent("compressed-idx.gz")] {
            let head = try IDXArray(contentsOf: url, limit: 2)
            #expect(head.shape == [2, 2])
            #expect(head.scalars() == Array(c.values.prefix(4)))
            #expect(try IDXArray(contentsOf: url, limit: 99).shape == [3, 2])
            #expect(try IDXArray(contentsOf: url, limit: 0).shape == [0, 2])
        }
    }

    @Test func higherRankAndLargePayloadFromMemory() throws {
        let shape = [2, 3, 4, 5]
        let payload = (0..<120).map { UInt8($0) }
        let array = try IDXArray(bytes: idxFile(type: 0x08, shape: shape, payload: payload))
        #expect(array.shape == shape)
        #expect(array.scalars() == payload.map(Float.init))

        // A compressed prefix: only the first rows are decoded, and they are right.
        let big = pseudoRandomBytes(1000 * 784, seed: 11)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = try write(try systemGzip(idxFile(type: 0x08, shape: [1000, 28, 28], payload: big), level: 6),
                            "big.gz", in: directory)
        let head = try IDXArray(contentsOf: url, limit: 10)
        #expect(head.shape == [10, 28, 28])
        #expect(head.scalars() == big.prefix(7840).map(Float.init))
    }

    @Test func badMagicTypeAndSizesThrowNamingTheFile() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let good = idxFile(type: 0x08, shape: [2, 3], payload: [1, 2, 3, 4, 5, 6])

        var magic = good
        magic[0] = 0x01
        let magicURL = try write(magic, "magic-idx", in: directory)
        expectFormatError(containing: [magicURL.path, "magic", "01 00 08 02"]) { _ = try IDXArray(contentsOf: magicURL) }

        var type = good
        type[2] = 0x0A
        let typeURL = try write(type, "type-idx", in: directory)
        expectFormatError(containing: [typeURL.path, "element type 0xa"]) { _ = try IDXArray(contentsOf: typeURL) }

        let shortURL = try write(Array(good.prefix(7)), "short-header-idx", in: directory)
        expectFormatError(containing: [shortURL.path, "rank 2", "12 header bytes", "has 7"]) {
            _ = try IDXArray(contentsOf: shortURL)
        }

        let tinyURL = try write([0, 0], "tiny-idx", in: directory)
        expectFormatError(containing: [tinyURL.path, "4 bytes"]) { _ = try IDXArray(contentsOf: tinyURL) }

        let truncatedURL = try write(Array(good.dropLast()), "truncated-idx", in: directory)
        expectFormatError(containing: [truncatedURL.path, "[2, 3]", "6 payload bytes", "has 5"]) {
            _ = try IDXArray(contentsOf: truncatedURL)
        }
        let longURL = try write(good + [0], "long-idx", in: directory)
        expectFormatError(containing: [longURL.path, "6 payload bytes", "has 7"]) { _ = try IDXArray(contentsOf: longURL) }
        // With a limit, too few bytes for the kept rows is still an error.
        expectFormatError(containing: [truncatedURL.path, "need 6 payload bytes", "has 5"]) {
            _ = try IDXArray(contentsOf: truncatedURL, limit: 2)
        }
        expectFormatError(.invalidArgument, containing: ["limit must be ≥ 0"]) {
            _ = try IDXArray(bytes: good, limit: -1)
        }

        // Sizes whose product overflows.
        let huge = idxFile(type: 0x0E, shape: [0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF], payload: [])
        expectFormatError(containing: ["too large"]) { _ = try IDXArray(bytes: huge, name: "huge") }

        let missing = directory.appendingPathComponent("absent-idx")
        expectFormatError(.missingFiles, containing: [missing.path]) { _ = try IDXArray(contentsOf: missing) }

        // Corrupt gzip data: the error names the file and says it is gzip.
        var gz = try systemGzip(good, level: 9)
        gz[gz.count - 6] ^= 0x40
        let corruptURL = try write(gz, "corrupt-idx.gz", in: directory)
        expectFormatError(.corruptData, containing: [corruptURL.path, "gzip: ", "CRC-32"]) {
            _ = try IDXArray(contentsOf: corruptURL)
        }
    }
}
