/// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011) and the
/// portable transforms Kiln draws its distributions with.
///
/// The same code exists in OpenCL C in `Kernels/random.cl`; both must produce the same bits.
/// Element `i` of a stream with key `seed` comes from the counter block
/// `(i / 4 low 32 bits, i / 4 high 32 bits, 0, 0)`, word `i % 4`. The normal transform uses only
/// IEEE additions, multiplications, `floor` and integer operations (no library `log`, `sin`, `cos`
/// or `sqrt`, whose last bits differ between platforms), evaluated without fused multiply-add.
public enum Philox {
    /// Ten Philox rounds on a 128-bit counter with a 64-bit key.
    @inlinable
    public static func block(counter: (UInt32, UInt32, UInt32, UInt32), seed: UInt64)
        -> (UInt32, UInt32, UInt32, UInt32)
    {
        var (c0, c1, c2, c3) = counter
        var k0 = UInt32(truncatingIfNeeded: seed)
        var k1 = UInt32(truncatingIfNeeded: seed >> 32)
        for _ in 0..<10 {
            let p0 = UInt64(0xD251_1F53) &* UInt64(c0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(c2)
            let n0 = UInt32(truncatingIfNeeded: p1 >> 32) ^ c1 ^ k0
            let n2 = UInt32(truncatingIfNeeded: p0 >> 32) ^ c3 ^ k1
            c1 = UInt32(truncatingIfNeeded: p1)
            c3 = UInt32(truncatingIfNeeded: p0)
            c0 = n0
            c2 = n2
            k0 = k0 &+ 0x9E37_79B9
            k1 = k1 &+ 0xBB67_AE85
        }
        return (c0, c1, c2, c3)
    }

    /// A uniform float in [0, 1): the top 24 bits times 2⁻²⁴ (exact).
    @inlinable
    public static func unitFloat(_ bits: UInt32) -> Float { Float(bits >> 8) * 0x1p-24 }

    /// ln x for x in (0, 1], from the exponent bits and an 11th-degree polynomial for ln(1 + f),
    /// f in [√½ − 1, √2 − 1); absolute error ≈ 4e-8.
    @inlinable
    public static func portableLog(_ x: Float) -> Float {
        var bits = x.bitPattern
        var exponent = Int32(bitPattern: (bits >> 23) & 0xFF) - 127
        bits = (bits & 0x007F_FFFF) | 0x3F80_0000  // mantissa in [1, 2)
        var m = Float(bitPattern: bits)
        if m > 1.41421356 {
            m = m * 0.5
            exponent += 1
        }
        let f = m - 1
        var p: Float = 6.544442475e-02
        p = p * f + -1.178408489e-01
        p = p * f + 1.206534430e-01
        p = p * f + -1.240121126e-01
        p = p * f + 1.418882459e-01
        p = p * f + -1.666656137e-01
        p = p * f + 2.000413537e-01
        p = p * f + -2.500011921e-01
        p = p * f + 3.333325982e-01
        p = p * f + -4.999999702e-01
        p = p * f + 1.000000000e+00
        p = p * f + -3.663262749e-11
        return p + Float(exponent) * 0.693147181
    }

    /// sin and cos of a in [0, π/2] by 8th-degree polynomials; absolute error ≈ 2e-7.
    @inlinable
    public static func portableSinCos(_ a: Float) -> (sin: Float, cos: Float) {
        var s: Float = 1.723916466e-05
        s = s * a + -2.459342359e-04
        s = s * a + 7.241041749e-05
        s = s * a + 8.268183097e-03
        s = s * a + 3.470024603e-05
        s = s * a + -1.666771024e-01
        s = s * a + 1.576591899e-06
        s = s * a + 9.999998808e-01
        s = s * a + 8.827963915e-10
        var c: Float = 1.723916466e-05
        c = c * a + 2.930052324e-05
        c = c * a + -1.440771739e-03
        c = c * a + 5.089586921e-05
        c = c * a + 4.163797945e-02
        c = c * a + 8.977533980e-06
        c = c * a + -5.000013709e-01
        c = c * a + 8.341156388e-08
        c = c * a + 1.000000000e+00
        return (s, c)
    }

    /// √x for x ≥ 0 by four Newton steps on 1/√x from the exponent-halving estimate.
    @inlinable
    public static func portableSqrt(_ x: Float) -> Float {
        if x <= 0 { return 0 }
        var y = Float(bitPattern: 0x5F37_59DF &- (x.bitPattern >> 1))
        let halfX = x * 0.5
        y = y * (1.5 - halfX * y * y)
        y = y * (1.5 - halfX * y * y)
        y = y * (1.5 - halfX * y * y)
        y = y * (1.5 - halfX * y * y)
        return x * y
    }

    /// Two standard normals from two words by Box–Muller: r = √(−2 ln u₁), θ = 2π u₂.
    @inlinable
    public static func boxMuller(_ w0: UInt32, _ w1: UInt32) -> (Float, Float) {
        let u1 = Float((w0 >> 8) + 1) * 0x1p-24  // (0, 1]
        let radius = portableSqrt(-2 * portableLog(u1))
        let turns = Float(w1 >> 8) * 0x1p-22  // 4·u₂ in [0, 4): quarter turns
        let quadrant = turns.rounded(.down)
        let (s, c) = portableSinCos((turns - quadrant) * 1.57079637)
        let (x, y): (Float, Float)
        switch Int(quadrant) {
        case 0: (x, y) = (c, s)
        case 1: (x, y) = (-s, c)
        case 2: (x, y) = (-c, -s)
        default: (x, y) = (s, -c)
        }
        return (radius * x, radius * y)
    }

    /// Fills `count` samples of `distribution` for `seed`, element i from block i / 4.
    public static func samples(_ distribution: RandomDistribution, seed: UInt64, count: Int) -> [Float] {
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { fill(distribution, seed: seed, into: $0, first: 0) }
        return out
    }

    /// Writes samples `first ..< first + out.count` of the stream into `out`.
    public static func fill(_ distribution: RandomDistribution, seed: UInt64,
                            into out: UnsafeMutableBufferPointer<Float>, first: Int) {
        let end = first + out.count
        var blockIndex = first / 4
        while blockIndex * 4 < end {
            let w = block(counter: (UInt32(truncatingIfNeeded: blockIndex),
                                    UInt32(truncatingIfNeeded: blockIndex >> 32), 0, 0), seed: seed)
            let values: (Float, Float, Float, Float)
            switch distribution {
            case .uniform(let low, let high):
                let span = high - low
                values = (low + span * unitFloat(w.0), low + span * unitFloat(w.1),
                          low + span * unitFloat(w.2), low + span * unitFloat(w.3))
            case .normal(let mean, let std):
                let (a, b) = boxMuller(w.0, w.1)
                let (c, d) = boxMuller(w.2, w.3)
                values = (mean + std * a, mean + std * b, mean + std * c, mean + std * d)
            case .bernoulli(let p):
                values = (unitFloat(w.0) < p ? 1 : 0, unitFloat(w.1) < p ? 1 : 0,
                          unitFloat(w.2) < p ? 1 : 0, unitFloat(w.3) < p ? 1 : 0)
            }
            let base = blockIndex * 4
            for (j, v) in [values.0, values.1, values.2, values.3].enumerated() {
                let i = base + j
                if i >= first && i < end { out[i - first] = v }
            }
            blockIndex += 1
        }
    }
}
