/// A DEFLATE decoder (RFC 1951): stored, fixed-Huffman and dynamic-Huffman blocks.
///
/// Bits are read least-significant first through a 64-bit buffer; Huffman symbols are decoded
/// with the two-level tables of `HuffmanTable`. The output is one growing buffer that doubles as
/// the sliding window, so a back-reference is a copy within it. Every read of the input is
/// bounds-checked and every malformed construct throws `DatasetError.corruptData`:
/// truncated input, an invalid block type, a stored length whose complement does not match, an
/// over-subscribed or incomplete code hit by the data, a repeat with nothing to repeat, a missing
/// end-of-block code, length symbols 286–287, distance symbols 30–31, and a distance reaching
/// before the start of the stream.
struct Inflater {
    private let input: UnsafeBufferPointer<UInt8>
    /// The next input byte not yet moved into `bitBuffer`.
    private var position: Int
    /// Pending input bits, the next one in bit 0. Bits above `bitCount` are zero or the true
    /// bits of the following bytes (the fast refill may load ahead), never anything else.
    private var bitBuffer: UInt64 = 0
    private var bitCount = 0

    private(set) var output: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    /// Bytes written to `output`.
    private(set) var count = 0
    /// Back-references may not reach before this output offset (the start of the gzip member).
    var windowStart = 0

    /// Prepares to decode `input` from byte `start`, with room for `capacityHint` output bytes.
    /// Call `deallocate()` when done with `output`.
    init(input: UnsafeBufferPointer<UInt8>, start: Int, capacityHint: Int) {
        self.input = input
        self.position = start
        self.capacity = max(capacityHint, 1024)
        self.output = .allocate(capacity: self.capacity)
    }

    func deallocate() { output.deallocate() }

    /// Continues reading at input byte `offset` (the next gzip member), with an empty bit buffer.
    mutating func restart(at offset: Int) {
        position = offset
        bitBuffer = 0
        bitCount = 0
    }

    /// How a call to `inflate` ended.
    enum Ending {
        /// The final block ended; the DEFLATE data occupied the input up to this byte offset.
        case streamEnd(inputOffset: Int)
        /// At least the requested number of output bytes were produced; decoding stopped early.
        case outputLimitReached
    }

    /// Decodes one DEFLATE stream starting at the current input position, appending to `output`.
    /// Stops early, at a symbol boundary, once `count ≥ outputLimit`.
    mutating func inflate(outputLimit: Int = .max) throws -> Ending {
        while true {
            if count >= outputLimit { return .outputLimitReached }
            let header = try bits(3)
            let isFinal = header & 1 == 1
            switch header >> 1 {
            case 0:
                try storedBlock()
            case 1:
                try huffmanBlock(HuffmanTable.fixedLiteralLength, HuffmanTable.fixedDistance, outputLimit: outputLimit)
            case 2:
                let (literals, distances) = try dynamicTables()
                try huffmanBlock(literals, distances, outputLimit: outputLimit)
            default:
                throw corrupt("invalid block type 3")
            }
            if count >= outputLimit { return .outputLimitReached }
            if isFinal {
                // Drop the final byte's unused bits; whole bytes still buffered belong to the caller.
                bitCount -= bitCount & 7
                return .streamEnd(inputOffset: position - bitCount / 8)
            }
        }
    }

    // MARK: - Bits

    private func corrupt(_ message: String) -> DatasetError {
        DatasetError(.corruptData, context: "gzip", message)
    }

    private var truncated: DatasetError {
        corrupt("compressed data ends early (truncated input at byte \(input.count))")
    }

    /// Tops `bitBuffer` up to at least 57 bits, or with everything left in the input.
    @inline(__always)
    private mutating func refill() {
        if position + 8 <= input.count, let base = input.baseAddress {
            let word = UInt64(littleEndian: UnsafeRawPointer(base + position).loadUnaligned(as: UInt64.self))
            bitBuffer |= word << UInt64(bitCount)
            let bytes = (63 - bitCount) >> 3
            position += bytes
            bitCount += bytes << 3
        } else {
            while bitCount <= 56 && position < input.count {
                bitBuffer |= UInt64(input[position]) << UInt64(bitCount)
                position += 1
                bitCount += 8
            }
        }
    }

    /// The next `n` bits (0 ≤ n ≤ 32) as an integer, first bit lowest.
    @inline(__always)
    private mutating func bits(_ n: Int) throws -> Int {
        if bitCount < n {
            refill()
            if bitCount < n { throw truncated }
        }
        let value = Int(truncatingIfNeeded: bitBuffer & ((1 << UInt64(n)) &- 1))
        bitBuffer >>= UInt64(n)
        bitCount -= n
        return value
    }

    /// The next symbol of `table`'s code.
    @inline(__always)
    private mutating func decode(_ entries: UnsafeBufferPointer<UInt32>, rootBits: Int) throws -> Int {
        if bitCount < 15 { refill() }
        var entry = entries[Int(truncatingIfNeeded: bitBuffer) & ((1 << rootBits) - 1)]
        if entry & HuffmanTable.linkFlag != 0 {
            let subBits = Int(entry & 0xFF)
            let index = Int(truncatingIfNeeded: bitBuffer >> UInt64(rootBits)) & ((1 << subBits) - 1)
            entry = entries[Int(entry >> 16) + index]
        }
        let length = Int(entry & 0xFF)
        if length == 0 { throw corrupt("invalid Huffman code") }
        if length > bitCount { throw truncated }
        bitBuffer >>= UInt64(length)
        bitCount -= length
        return Int(entry >> 16)
    }

    // MARK: - Output

    @inline(__always)
    private mutating func reserve(_ extra: Int) {
        if count + extra > capacity { grow(count + extra) }
    }

    private mutating func grow(_ needed: Int) {
        let newCapacity = max(needed, capacity * 2)
        let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        bigger.update(from: output, count: count)
        output.deallocate()
        output = bigger
        capacity = newCapacity
    }

    // MARK: - Blocks

    /// RFC 1951 3.2.4: skip to a byte boundary, LEN and NLEN (one's complement), LEN raw bytes.
    private mutating func storedBlock() throws {
        bitBuffer >>= UInt64(bitCount & 7)
        bitCount -= bitCount & 7
        let length = try bits(16)
        let complement = try bits(16)
        guard length == ~complement & 0xFFFF else {
            throw corrupt("stored block length \(length) does not match its complement \(complement)")
        }
        reserve(length)
        var remaining = length
        // Whole bytes already in the bit buffer come first.
        while remaining > 0 && bitCount >= 8 {
            output[count] = UInt8(truncatingIfNeeded: bitBuffer)
            count += 1
            bitBuffer >>= 8
            bitCount -= 8
            remaining -= 1
        }
        if remaining > 0 {
            // The buffer is empty; forget any look-ahead bits, the bytes are copied directly.
            bitBuffer = 0
            guard input.count - position >= remaining, let base = input.baseAddress else { throw truncated }
            (output + count).update(from: base + position, count: remaining)
            count += remaining
            position += remaining
        }
    }

    /// RFC 1951 3.2.7: the code-length code, then the literal/length and distance code lengths.
    private mutating func dynamicTables() throws -> (HuffmanTable, HuffmanTable) {
        let literalCount = try bits(5) + 257
        let distanceCount = try bits(5) + 1
        let codeLengthCount = try bits(4) + 4
        guard literalCount <= 286, distanceCount <= 30 else {
            throw corrupt("dynamic block declares \(literalCount) literal/length and \(distanceCount) distance codes (at most 286 and 30)")
        }
        let order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
        var codeLengthLengths = [Int](repeating: 0, count: 19)
        for i in 0..<codeLengthCount {
            codeLengthLengths[order[i]] = try bits(3)
        }
        let codeLengthTable = try HuffmanTable(lengths: codeLengthLengths, maxRootBits: 7, what: "code length code")
        let total = literalCount + distanceCount
        var lengths = [Int]()
        lengths.reserveCapacity(total)
        try codeLengthTable.entries.withUnsafeBufferPointer { entries in
            while lengths.count < total {
                let symbol = try decode(entries, rootBits: codeLengthTable.rootBits)
                let value: Int, repeats: Int
                switch symbol {
                case 0...15:
                    (value, repeats) = (symbol, 1)
                case 16:
                    guard let previous = lengths.last else {
                        throw corrupt("code length repeat (16) with no previous length")
                    }
                    (value, repeats) = (previous, 3 + (try bits(2)))
                case 17:
                    (value, repeats) = (0, 3 + (try bits(3)))
                default:  // 18; the table holds only symbols 0...18
                    (value, repeats) = (0, 11 + (try bits(7)))
                }
                guard lengths.count + repeats <= total else {
                    throw corrupt("code length repeats run past the \(total) declared code lengths")
                }
                lengths.append(contentsOf: repeatElement(value, count: repeats))
            }
        }
        guard lengths[256] != 0 else { throw corrupt("dynamic block has no end-of-block code") }
        let literals = try HuffmanTable(lengths: lengths[0..<literalCount], maxRootBits: 10, what: "literal/length code")
        let distances = try HuffmanTable(lengths: lengths[literalCount...], maxRootBits: 8, what: "distance code")
        return (literals, distances)
    }

    /// RFC 1951 3.2.5: length symbols 257–285 and distance symbols 0–29, base plus extra bits.
    private static let lengthBase: [Int] = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
                                            35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
    private static let lengthExtra: [Int] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
                                             3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    private static let distanceBase: [Int] = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193,
                                              257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
                                              8193, 12289, 16385, 24577]
    private static let distanceExtra: [Int] = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6,
                                               7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]

    /// Decodes literal and length/distance symbols up to the end-of-block symbol (256).
    private mutating func huffmanBlock(_ literals: HuffmanTable, _ distances: HuffmanTable, outputLimit: Int) throws {
        let lengthBase = Self.lengthBase, lengthExtra = Self.lengthExtra
        let distanceBase = Self.distanceBase, distanceExtra = Self.distanceExtra
        let literalBits = literals.rootBits, distanceBits = distances.rootBits
        try literals.entries.withUnsafeBufferPointer { literalEntries in
            try distances.entries.withUnsafeBufferPointer { distanceEntries in
                while count < outputLimit {
                    let symbol = try decode(literalEntries, rootBits: literalBits)
                    if symbol < 256 {
                        reserve(1)
                        output[count] = UInt8(truncatingIfNeeded: symbol)
                        count += 1
                        continue
                    }
                    if symbol == 256 { return }
                    let lengthIndex = symbol - 257
                    guard lengthIndex < 29 else { throw corrupt("invalid length symbol \(symbol)") }
                    let length = lengthBase[lengthIndex] + (try bits(lengthExtra[lengthIndex]))
                    let distanceSymbol = try decode(distanceEntries, rootBits: distanceBits)
                    guard distanceSymbol < 30 else { throw corrupt("invalid distance symbol \(distanceSymbol)") }
                    let distance = distanceBase[distanceSymbol] + (try bits(distanceExtra[distanceSymbol]))
                    guard distance <= count - windowStart else {
                        throw corrupt("distance \(distance) reaches before the start of the data (\(count - windowStart) bytes written)")
                    }
                    copyMatch(length: length, distance: distance)
                }
            }
        }
        // Stopped at the output limit inside the block: the caller ends decoding.
    }

    /// Appends `length` bytes copied from `distance` bytes back; overlapping copies repeat the
    /// last `distance` bytes, as RFC 1951 3.2.3 specifies.
    @inline(__always)
    private mutating func copyMatch(length: Int, distance: Int) {
        reserve(length)
        let destination = output + count
        let source = destination - distance
        if distance == 1 {
            destination.initialize(repeating: source.pointee, count: length)
        } else if distance >= length {
            destination.update(from: source, count: length)
        } else {
            // Copy in chunks of `distance`: each chunk reads only bytes already written.
            var done = 0
            while done < length {
                let chunk = min(distance, length - done)
                (destination + done).update(from: source + done, count: chunk)
                done += chunk
            }
        }
        count += length
    }
}
