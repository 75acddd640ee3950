import Foundation
import Kiln
import KilnTestSupport
import Testing

// MARK: - Helpers

/// A fresh empty directory for one test.
private func scratchDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-safetensors-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Little-endian bytes of a value.
private func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
private func f32(_ values: [Float]) -> [UInt8] { values.flatMap { le($0.bitPattern) } }

/// A safetensors file assembled from the specification: u64 LE header length, the JSON text, the data.
private func file(header json: String, data: [UInt8]) -> [UInt8] {
    let text = Array(json.utf8)
    return le(UInt64(text.count)) + text + data
}

/// Expects a `CheckpointError` of `kind` whose description holds every fragment.
private func expectCheckpointError(_ kind: CheckpointError.Kind, _ fragments: [String] = [],
                                   sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected a CheckpointError of kind \(kind)", sourceLocation: sourceLocation)
    } catch let error as CheckpointError {
        #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
        for f in fragments {
            #expect(error.description.contains(f), "'\(error)' does not mention '\(f)'", sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("expected a CheckpointError, got \(error)", sourceLocation: sourceLocation)
    }
}

/// A valid file of two F32 tensors for the corruption tests: `a` [2] at 0..<8, `b` [1] at 8..<12.
private let twoTensorHeader = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#

@Suite("SafeTensors")
struct SafeTensorsTests {
    @Test("round trip: scalar, empty, special values and metadata, bit for bit", arguments: TestBackend.all)
    func roundTrip(_ tb: TestBackend) throws {
        let b = tb.backend
        let special: [Float] = [0, -0.0, .infinity, -.infinity, Float(bitPattern: 0x7FC0_1234), .leastNonzeroMagnitude,
                                .greatestFiniteMagnitude, 1.0 / 3.0]
        let tensors: [String: Tensor] = [
            "layer.weight": try Tensor(testValues(6, seed: 1), shape: [2, 3], on: b),
            "layer.bias": try Tensor(testValues(3, seed: 2), on: b),
            "scalar": try Tensor(scalar: 3.5, on: b),
            "empty": try Tensor([], shape: [0], on: b),
            "empty2": try Tensor([], shape: [2, 0, 3], on: b),
            "special": try Tensor(special, shape: [2, 2, 2], on: b),
            "ünïcode \"name\"": try Tensor([7], on: b),
        ]
        let metadata = ["format": "pt", "note": "quote \" backslash \\ newline \n tab \t bell \u{07} é 🔥", "": "empty key"]
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("model.safetensors")
        try SafeTensors.write(["old": try Tensor([1, 2], on: b)], to: url)
        try SafeTensors.write(tensors, metadata: metadata, to: url)   // replaces the old file

        let (loaded, loadedMetadata) = try SafeTensors.read(from: url, on: b)
        #expect(loadedMetadata == metadata)
        #expect(Set(loaded.keys) == Set(tensors.keys))
        for (name, t) in tensors {
            let l = try #require(loaded[name], "\(name) missing")
            #expect(l.shape == t.shape, "\(name)")
            #expect(l.backend === b)
            #expect(try l.scalars().map(\.bitPattern) == t.scalars().map(\.bitPattern), "\(name)")
        }
        // Header length a multiple of 8, data packed right after it; no temporary file left behind.
        let bytes = [UInt8](try Data(contentsOf: url))
        let headerLength = Int(bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        #expect(headerLength % 8 == 0)
        #expect(bytes.count == 8 + headerLength + 4 * (6 + 3 + 1 + 0 + 0 + 8 + 1))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["model.safetensors"])
        // Encoding is deterministic.
        #expect(try SafeTensors.encode(tensors, metadata: metadata) == bytes)
    }

    @Test("reads a file built by hand from the specification, F16/BF16/F64/I64 converted to Float32")
    func handBuilt() throws {
        let json = """
            { "__metadata__" : {"format": "pt", "esc": "a\\u00e9\\n\\ud83d\\udd25"},
              "a": {"dtype": "F32", "shape": [2, 1], "data_offsets": [0, 8]},
              "h": {"dtype": "F16", "shape": [4], "data_offsets": [8, 16]},
              "g": {"dtype": "BF16", "shape": [2], "data_offsets": [16, 20]},
              "d": {"dtype": "F64", "shape": [], "data_offsets": [20, 28]},
              "n": {"dtype": "I64", "shape": [1], "data_offsets": [28, 36], "extra": "ignored"},
              "z": {"dtype": "F32", "shape": [0, 5], "data_offsets": [36, 36]} }   \t
            """
        var data = f32([1.5, -2.25])
        data += [0x3C00, 0xC000, 0x0001, 0x7C00].flatMap { le(UInt16($0)) }        // 1, −2, 2⁻²⁴, +inf
        data += [0x3FC0, 0xC040].flatMap { le(UInt16($0)) }                        // 1.5, −3
        data += le((0.1 as Double).bitPattern)
        data += le(Int64(-7))
        let (arrays, metadata) = try SafeTensors.decodeArrays(file(header: json, data: data))
        #expect(metadata == ["format": "pt", "esc": "aé\n🔥"])
        #expect(arrays["a"] == SafeTensors.HostArray(shape: [2, 1], scalars: [1.5, -2.25]))
        #expect(arrays["h"] == SafeTensors.HostArray(shape: [4], scalars: [1, -2, 0x1p-24, .infinity]))
        #expect(arrays["g"] == SafeTensors.HostArray(shape: [2], scalars: [1.5, -3]))
        #expect(arrays["d"] == SafeTensors.HostArray(shape: [], scalars: [Float(0.1 as Double)]))
        #expect(arrays["n"] == SafeTensors.HostArray(shape: [1], scalars: [-7]))
        #expect(arrays["z"] == SafeTensors.HostArray(shape: [0, 5], scalars: []))
        #expect(arrays.count == 6)

        let (tensors, _) = try SafeTensors.decode(file(header: json, data: data), on: CPUBackend.shared)
        #expect(try tensors["h"]?.scalars() == [1, -2, 0x1p-24, .infinity])
        #expect(tensors["d"]?.shape == [])
    }

    @Test("F16 conversion of every bit pattern agrees with the hardware Float16")
    func halfConversion() throws {
        #if !(os(macOS) && arch(x86_64))
        var data: [UInt8] = []
        for bits in 0...UInt16.max { data += le(bits) }
        let json = #"{"h":{"dtype":"F16","shape":[65536],"data_offsets":[0,131072]}}"#
        let values = try #require(try SafeTensors.decodeArrays(file(header: json, data: data)).arrays["h"]).scalars
        for bits in 0...UInt16.max {
            let expected = Float(Float16(bitPattern: bits))
            let got = values[Int(bits)]
            #expect(got.bitPattern == expected.bitPattern || (got.isNaN && expected.isNaN), "F16 0x\(String(bits, radix: 16))")
        }
        #endif
    }

    @Test("encode writes the header the specification describes")
    func encodedHeader() throws {
        let arrays: [String: SafeTensors.HostArray] = [
            "b": .init(shape: [], scalars: [2]),
            "a": .init(shape: [1, 2], scalars: [0.5, -1]),
            "c": .init(shape: [0], scalars: []),
        ]
        let bytes = try SafeTensors.encode(arrays, metadata: ["z": "1", "m": "x\"y"])
        let n = Int(bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        #expect(n % 8 == 0)
        let header = String(decoding: bytes[8..<(8 + n)], as: UTF8.self)
        let expected = #"{"__metadata__":{"m":"x\"y","z":"1"},"a":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[],"data_offsets":[8,12]},"c":{"dtype":"F32","shape":[0],"data_offsets":[12,12]}}"#
        #expect(header == expected + String(repeating: " ", count: n - expected.utf8.count))
        #expect(n - expected.utf8.count < 8)
        #expect(Array(bytes[(8 + n)...]) == f32([0.5, -1, 2]))

        // An independent JSON parser sees the same structure.
        let object = try #require(try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + n)])) as? [String: Any])
        #expect(object["__metadata__"] as? [String: String] == ["m": "x\"y", "z": "1"])
        let a = try #require(object["a"] as? [String: Any])
        #expect(a["dtype"] as? String == "F32")
        #expect(a["shape"] as? [Int] == [1, 2])
        #expect(a["data_offsets"] as? [Int] == [0, 8])
        #expect((object["b"] as? [String: Any])?["shape"] as? [Int] == [])
        #expect((object["c"] as? [String: Any])?["data_offsets"] as? [Int] == [12, 12])
        #expect(object.count == 4)
        // No metadata: no __metadata__ entry; nothing at all: "{}" padded.
        #expect(!String(decoding: try SafeTensors.encode(arrays), as: UTF8.self).contains("__metadata__"))
        #expect(try SafeTensors.encode([String: SafeTensors.HostArray]()) == le(UInt64(8)) + Array("{}      ".utf8))
    }

    @Test("every cut of a small file throws .truncated, never crashes")
    func truncated() throws {
        let arrays: [String: SafeTensors.HostArray] = ["a": .init(shape: [2], scalars: [1, 2]), "b": .init(shape: [], scalars: [3])]
        let bytes = try SafeTensors.encode(arrays, metadata: ["k": "v"])
        #expect(try SafeTensors.decodeArrays(bytes).arrays.count == 2)
        for cut in 0..<bytes.count {
            expectCheckpointError(.truncated) { _ = try SafeTensors.decodeArrays(Array(bytes[..<cut])) }
        }
        expectCheckpointError(.truncated, ["5 bytes", "8-byte header length"]) { _ = try SafeTensors.decodeArrays([1, 2, 3, 4, 5]) }
        expectCheckpointError(.truncated, ["'b'", "[8, 12]", "10-byte data buffer"]) {
            _ = try SafeTensors.decodeArrays(file(header: twoTensorHeader, data: [UInt8](repeating: 0, count: 10)))
        }
    }

    @Test("a header length past the file or the limit")
    func headerLength() throws {
        expectCheckpointError(.truncated, ["header length 100", "exceeds the 4 bytes"]) {
            _ = try SafeTensors.decodeArrays(le(UInt64(100)) + Array("{}  ".utf8))
        }
        for length in [UInt64(SafeTensors.maximumHeaderSize + 1), 1 << 40, .max] {
            expectCheckpointError(.malformedHeader, ["header length \(length)", "limit"]) {
                _ = try SafeTensors.decodeArrays(le(length) + Array("{}".utf8))
            }
        }
    }

    @Test("malformed headers: syntax, UTF-8, structure, fields, duplicates")
    func malformedHeader() throws {
        let cases: [(String, [UInt8], [String])] = [
            ("not an object", Array(#"[1, 2]"#.utf8), ["starting with '{'"]),
            ("leading space", Array(#" {}"#.utf8), ["starting with '{'"]),
            ("cut JSON", Array(#"{"a":"#.utf8), ["not valid JSON"]),
            ("trailing comma", Array(#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},}"#.utf8), ["not valid JSON"]),
            ("trailing text", Array(#"{} x"#.utf8), ["not valid JSON", "after the JSON value"]),
            ("bad escape", Array(#"{"a\q":1}"#.utf8), ["not valid JSON", "escape"]),
            ("lone surrogate", Array(#"{"\udc00":1}"#.utf8), ["not valid JSON", "surrogate"]),
            ("leading zero", Array(#"{"a":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}}"#.utf8), ["leading zero"]),
            ("control character", Array("{\"a\u{01}\":1}".utf8), ["control character"]),
            ("invalid UTF-8", [UInt8(ascii: "{"), UInt8(ascii: "\""), 0xFF, 0xFE, UInt8(ascii: "\""), UInt8(ascii: ":"), UInt8(ascii: "1"), UInt8(ascii: "}")], ["UTF-8"]),
            ("duplicate tensor", Array(#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#.utf8), ["duplicate key \"a\""]),
            ("duplicate field", Array(#"{"a":{"dtype":"F32","dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#.utf8), ["duplicate key \"dtype\""]),
            ("deep nesting", Array(("{\"a\":" + String(repeating: "[", count: 100_000)).utf8), ["nesting deeper"]),
            ("tensor not an object", Array(#"{"a":[1]}"#.utf8), ["tensor 'a'", "an array"]),
            ("missing dtype", Array(#"{"a":{"shape":[0],"data_offsets":[0,0]}}"#.utf8), ["tensor 'a' has no 'dtype'"]),
            ("missing shape", Array(#"{"a":{"dtype":"F32","data_offsets":[0,0]}}"#.utf8), ["tensor 'a' has no 'shape'"]),
            ("missing offsets", Array(#"{"a":{"dtype":"F32","shape":[0]}}"#.utf8), ["tensor 'a' has no 'data_offsets'"]),
            ("dtype not a string", Array(#"{"a":{"dtype":4,"shape":[0],"data_offsets":[0,0]}}"#.utf8), ["'dtype' must be a string"]),
            ("negative size", Array(#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}"#.utf8), ["'shape'", "non-negative integers", "-1"]),
            ("fractional size", Array(#"{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,6]}}"#.utf8), ["'shape'", "1.5"]),
            ("huge size", Array(#"{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,4]}}"#.utf8), ["99999999999999999999"]),
            ("overflowing count", Array(#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#.utf8), ["overflows"]),
            ("string size", Array(#"{"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}"#.utf8), ["'shape'", "a string"]),
            ("three offsets", Array(#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0,0]}}"#.utf8), ["[begin, end]"]),
            ("offsets reversed", Array(#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}"#.utf8), ["end before they begin"]),
            ("metadata not an object", Array(#"{"__metadata__":"x"}"#.utf8), ["'__metadata__' must be an object"]),
            ("metadata value not a string", Array(#"{"__metadata__":{"epoch":3}}"#.utf8), ["metadata 'epoch' must be a string"]),
        ]
        for (what, header, fragments) in cases {
            expectCheckpointError(.malformedHeader, fragments) {
                _ = try SafeTensors.decodeArrays(le(UInt64(header.count)) + header)
            }
            _ = what
        }
    }

    @Test("data offsets: byte count, overlap, hole, unused tail, empty tensors")
    func offsets() throws {
        let zeros = [UInt8](repeating: 0, count: 16)
        expectCheckpointError(.malformedHeader, ["tensor 'a'", "shape [3]", "needs 12 bytes", "[0, 8]", "span 8"]) {
            _ = try SafeTensors.decodeArrays(file(header: #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: Array(zeros[..<8])))
        }
        expectCheckpointError(.malformedHeader, ["'a' at [0, 8]", "'b' at [4, 12]", "overlap"]) {
            _ = try SafeTensors.decodeArrays(file(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, data: Array(zeros[..<12])))
        }
        expectCheckpointError(.malformedHeader, ["overlap"]) {   // an empty tensor inside another
            _ = try SafeTensors.decodeArrays(file(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}"#, data: Array(zeros[..<8])))
        }
        expectCheckpointError(.malformedHeader, ["bytes 4..<8", "no tensor", "before 'b'"]) {
            _ = try SafeTensors.decodeArrays(file(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#, data: Array(zeros[..<12])))
        }
        expectCheckpointError(.malformedHeader, ["bytes 12..<16", "end of the data buffer"]) {
            _ = try SafeTensors.decodeArrays(file(header: twoTensorHeader, data: zeros))
        }
        expectCheckpointError(.malformedHeader, ["bytes 0..<4", "end of the data buffer"]) {
            _ = try SafeTensors.decodeArrays(file(header: "{}", data: Array(zeros[..<4])))
        }
        // Empty tensors at the seams, in any header order, are fine; so is an empty file body.
        let ok = try SafeTensors.decodeArrays(file(header: #"{"z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"y":{"dtype":"F64","shape":[3,0],"data_offsets":[8,8]}}"#, data: f32([1, 2])))
        #expect(ok.arrays.mapValues(\.scalars) == ["a": [1], "b": [2], "z": [], "y": []])
        #expect(try SafeTensors.decodeArrays(file(header: "{}", data: [])).arrays.isEmpty)
    }

    @Test("dtypes Kiln does not read, and I64 values Float32 cannot hold")
    func unsupportedDType() throws {
        for dtype in ["I32", "BOOL", "U8", "F8_E4M3", "C64", "f32", ""] {
            expectCheckpointError(.unsupportedDType, ["tensor 'w'", "dtype \(dtype);", "F32, F16, BF16, F64, I64"]) {
                _ = try SafeTensors.decodeArrays(file(header: #"{"w":{"dtype":"\#(dtype)","shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]))
            }
        }
        expectCheckpointError(.unsupportedDType, ["I64 tensor 'n'", "16777217", "index 1"]) {
            _ = try SafeTensors.decodeArrays(file(header: #"{"n":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}"#,
                                                  data: le(Int64(16_777_216)) + le(Int64(16_777_217))))
        }
    }

    @Test("writing: reserved names and failed writes leave no partial file")
    func writeErrors() throws {
        let b = CPUBackend.shared
        expectCheckpointError(.invalidArgument, ["__metadata__", "reserved"]) {
            _ = try SafeTensors.encode(["__metadata__": try Tensor([1], on: b)])
        }
        expectCheckpointError(.invalidArgument, ["'x'", "[2]", "3 values"]) {
            _ = try SafeTensors.encode(["x": SafeTensors.HostArray(shape: [2], scalars: [1, 2, 3])])
        }
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        expectCheckpointError(.io, ["missing/x.safetensors", "temporary file"]) {
            try SafeTensors.write(["a": try Tensor([1], on: b)], to: dir.appendingPathComponent("missing/x.safetensors"))
        }
        // The target is a directory: the rename fails, the temporary file is removed.
        let blocked = dir.appendingPathComponent("blocked.safetensors")
        try FileManager.default.createDirectory(at: blocked, withIntermediateDirectories: false)
        try FileManager.default.createDirectory(at: blocked.appendingPathComponent("child"), withIntermediateDirectories: false)
        expectCheckpointError(.io, ["blocked.safetensors", "renaming"]) {
            try SafeTensors.write(["a": try Tensor([1], on: b)], to: blocked)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["blocked.safetensors"])
        expectCheckpointError(.io, ["nothing.safetensors", "could not read"]) {
            _ = try SafeTensors.readArrays(from: dir.appendingPathComponent("nothing.safetensors"))
        }
    }
}
