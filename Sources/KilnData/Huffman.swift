/// A canonical Huffman decoding table for DEFLATE (RFC 1951 section 3.2.2), two levels deep.
///
/// The root table is indexed by the next `rootBits` input bits (DEFLATE packs Huffman codes
/// starting from their most significant bit, so the table is indexed by bit-reversed codes). Every
/// code of at most `rootBits` bits fills each root entry whose low bits equal it. Codes longer than
/// `rootBits` share a root entry per `rootBits`-bit prefix; that entry links to a subtable indexed
/// by the next `subBits` bits, where `subBits` is the longest such code's remaining length.
///
/// An entry is a `UInt32`:
/// - `0`: no code starts with these bits (an incomplete code; decoding it is an error);
/// - `symbol << 16 | length`: a leaf, `length` in 1...15 counting all the code's bits;
/// - `offset << 16 | 0x100 | subBits`: a link from the root to the subtable at `offset`.
///
/// Every index the decoder forms is masked to the size of the table it reads, so a corrupt
/// stream can select an invalid entry but never an index outside `entries`.
struct HuffmanTable {
    static let linkFlag: UInt32 = 0x100

    let entries: [UInt32]
    let rootBits: Int

    /// Builds the table for code lengths `lengths[symbol]` (0 = the symbol is unused).
    ///
    /// Over-subscribed lengths (Kraft sum above 1) are rejected. Incomplete ones are accepted, as
    /// RFC 1951 needs for a single distance code and zlib allows; their unused bit patterns decode
    /// as errors.
    /// - Throws: `DatasetError.corruptData` naming `what` for a length above 15 or an
    ///   over-subscribed set.
    init<C: Collection>(lengths: C, maxRootBits: Int, what: String) throws where C.Element == Int {
        var lengthCounts = [Int](repeating: 0, count: 16)
        var longest = 0
        for length in lengths {
            guard length >= 0 && length <= 15 else {
                throw DatasetError(.corruptData, context: "gzip", "\(what): code length \(length) exceeds 15")
            }
            lengthCounts[length] += 1
            longest = max(longest, length)
        }
        lengthCounts[0] = 0
        var left = 1
        for length in 1...15 {
            left = left << 1 - lengthCounts[length]
            guard left >= 0 else {
                throw DatasetError(.corruptData, context: "gzip", "\(what): over-subscribed Huffman code lengths")
            }
        }

        // RFC 1951 3.2.2: the first code of each length, then consecutive codes in symbol order.
        var nextCode = [Int](repeating: 0, count: 16)
        var code = 0
        for length in 1...15 {
            code = (code + lengthCounts[length - 1]) << 1
            nextCode[length] = code
        }

        let rootBits = max(1, min(maxRootBits, longest))
        let rootSize = 1 << rootBits
        let rootMask = rootSize - 1
        // Bit-reversed codes, as the decoder meets them.
        var reversed = [Int](repeating: 0, count: lengths.count)
        var subBits = [Int](repeating: 0, count: rootSize)
        for (symbol, length) in lengths.enumerated() where length > 0 {
            var c = nextCode[length]
            nextCode[length] += 1
            var r = 0
            for _ in 0..<length {
                r = r << 1 | c & 1
                c >>= 1
            }
            reversed[symbol] = r
            if length > rootBits {
                subBits[r & rootMask] = max(subBits[r & rootMask], length - rootBits)
            }
        }

        var offsets = [Int](repeating: 0, count: rootSize)
        var total = rootSize
        for prefix in 0..<rootSize where subBits[prefix] > 0 {
            offsets[prefix] = total
            total += 1 << subBits[prefix]
        }
        var entries = [UInt32](repeating: 0, count: total)
        for prefix in 0..<rootSize where subBits[prefix] > 0 {
            entries[prefix] = UInt32(offsets[prefix]) << 16 | Self.linkFlag | UInt32(subBits[prefix])
        }
        for (symbol, length) in lengths.enumerated() where length > 0 {
            let leaf = UInt32(symbol) << 16 | UInt32(length)
            let r = reversed[symbol]
            if length <= rootBits {
                // A prefix-free code never lands on a link entry here.
                var i = r
                while i < rootSize {
                    entries[i] = leaf
                    i += 1 << length
                }
            } else {
                let prefix = r & rootMask
                let base = offsets[prefix]
                let size = 1 << subBits[prefix]
                var i = r >> rootBits
                while i < size {
                    entries[base + i] = leaf
                    i += 1 << (length - rootBits)
                }
            }
        }
        self.entries = entries
        self.rootBits = rootBits
    }

    /// The fixed literal/length code of RFC 1951 3.2.6: 0–143 eight bits, 144–255 nine,
    /// 256–279 seven, 280–287 eight.
    static let fixedLiteralLength: HuffmanTable = {
        let lengths = (0..<288).map { s in s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8 }
        // Complete and within 15 bits by construction.
        return (try? HuffmanTable(lengths: lengths, maxRootBits: 9, what: "fixed literal/length code"))
            ?? HuffmanTable(entries: [0, 0], rootBits: 1)
    }()

    /// The fixed distance code: 32 five-bit codes (30 and 31 never occur in valid data).
    static let fixedDistance: HuffmanTable = {
        (try? HuffmanTable(lengths: [Int](repeating: 5, count: 32), maxRootBits: 5, what: "fixed distance code"))
            ?? HuffmanTable(entries: [0, 0], rootBits: 1)
    }()

    private init(entries: [UInt32], rootBits: Int) {
        self.entries = entries
        self.rootBits = rootBits
    }
}
