/// CRC-32 as used by gzip (ISO 3309 / ITU-T V.42; RFC 1952 section 8): the reflected polynomial
/// 0xEDB88320, initial value and final XOR 0xFFFFFFFF. `CRC32.checksum(of: "123456789")` is
/// 0xCBF43926.
///
/// Table-driven, eight bytes per step ("slicing-by-8"): table k maps a byte to its CRC after k
/// further zero bytes, so eight lookups XORed together advance the CRC by eight bytes.
public enum CRC32 {
    /// `tables[k * 256 + b]`: the CRC register contribution of byte `b` followed by `k` zero bytes.
    static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for b in 0..<256 {
            var c = UInt32(b)
            for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
            t[b] = c
        }
        for k in 1..<8 {
            for b in 0..<256 {
                let previous = t[(k - 1) * 256 + b]
                t[k * 256 + b] = (previous >> 8) ^ t[Int(previous & 0xFF)]
            }
        }
        return t
    }()

    /// The CRC-32 of `bytes`, continuing from `crc` (the CRC of the bytes before; 0 to start).
    public static func checksum(of bytes: UnsafeBufferPointer<UInt8>, continuing crc: UInt32 = 0) -> UInt32 {
        var c = ~crc
        tables.withUnsafeBufferPointer { t in
            guard let base = bytes.baseAddress, let t = t.baseAddress else { return }
            let n = bytes.count
            var i = 0
            while i + 8 <= n {
                let lo = c ^ (UInt32(base[i]) | UInt32(base[i + 1]) << 8 | UInt32(base[i + 2]) << 16
                              | UInt32(base[i + 3]) << 24)
                let hi = UInt32(base[i + 4]) | UInt32(base[i + 5]) << 8 | UInt32(base[i + 6]) << 16
                    | UInt32(base[i + 7]) << 24
                c = t[7 * 256 + Int(lo & 0xFF)] ^ t[6 * 256 + Int((lo >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((lo >> 16) & 0xFF)] ^ t[4 * 256 + Int(lo >> 24)]
                    ^ t[3 * 256 + Int(hi & 0xFF)] ^ t[2 * 256 + Int((hi >> 8) & 0xFF)]
                    ^ t[256 + Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
                i += 8
            }
            while i < n {
                c = (c >> 8) ^ t[Int((c ^ UInt32(base[i])) & 0xFF)]
                i += 1
            }
        }
        return ~c
    }

    /// The CRC-32 of `bytes`, continuing from `crc` (0 to start).
    public static func checksum(of bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBufferPointer { checksum(of: $0, continuing: crc) }
    }

    /// The CRC-32 of the UTF-8 bytes of `text`.
    public static func checksum(of text: String) -> UInt32 {
        checksum(of: Array(text.utf8))
    }
}
