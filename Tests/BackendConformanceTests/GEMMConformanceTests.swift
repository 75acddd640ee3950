import Kiln
import KilnTestSupport
import Testing

/// One GEMM case: sizes, transposes, scaling and batch.
struct GEMMCase: CustomStringConvertible, Sendable {
    var m: Int, n: Int, k: Int
    var transposeA = false, transposeB = false
    var alpha: Float = 1, beta: Float = 0
    var batch = 1
    var broadcastA = false, broadcastB = false
    /// Extra columns between rows of C (ldc = n + gap); the gap must stay untouched.
    var gap = 0

    var description: String {
        "\(batch)×\(m)×\(n)×\(k)\(transposeA ? " Aᵀ" : "")\(transposeB ? " Bᵀ" : "") α\(alpha) β\(beta)"
            + (broadcastA ? " bcastA" : "") + (broadcastB ? " bcastB" : "") + (gap > 0 ? " gap\(gap)" : "")
    }
}

/// Sizes with 1, primes, the CPU-style tile sizes (MR 8, NR 32, KU 8) ± 1 and an empty dimension.
let gemmCases: [GEMMCase] = {
    var cases: [GEMMCase] = []
    let sizes: [(Int, Int, Int)] = [(1, 1, 1), (1, 7, 13), (7, 1, 5), (13, 17, 1), (8, 32, 8), (9, 33, 9),
                                    (7, 31, 7), (17, 15, 33), (31, 33, 65), (64, 64, 64), (65, 97, 257),
                                    (0, 5, 3), (4, 0, 3), (4, 5, 0)]
    for (m, n, k) in sizes {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            cases.append(GEMMCase(m: m, n: n, k: k, transposeA: ta, transposeB: tb))
        }
    }
    cases.append(GEMMCase(m: 19, n: 23, k: 29, alpha: 0.5, beta: 0))
    cases.append(GEMMCase(m: 19, n: 23, k: 29, alpha: 1, beta: 0.25))
    cases.append(GEMMCase(m: 19, n: 23, k: 29, transposeA: true, alpha: -2, beta: 1, gap: 3))
    cases.append(GEMMCase(m: 5, n: 6, k: 0, alpha: 1, beta: 0.5))
    cases.append(GEMMCase(m: 11, n: 35, k: 17, batch: 3))
    cases.append(GEMMCase(m: 11, n: 35, k: 17, transposeB: true, batch: 3, broadcastA: true))
    cases.append(GEMMCase(m: 11, n: 35, k: 17, transposeA: true, batch: 4, broadcastB: true))
    return cases
}()

@Suite("GEMM conformance")
struct GEMMConformanceTests {
    @Test("gemm against the Float64 oracle, guard region intact", arguments: TestBackend.all, gemmCases)
    func gemm(_ tb: TestBackend, _ c: GEMMCase) throws {
        try run(tb, c)
    }

    @Test("large gemm 1023×1025×517", arguments: TestBackend.all)
    func large(_ tb: TestBackend) throws {
        try run(tb, GEMMCase(m: 1023, n: 1025, k: 517), sampled: true)
    }

    func run(_ tb: TestBackend, _ c: GEMMCase, sampled: Bool = false) throws {
        let backend = tb.backend
        let aCount = (c.broadcastA ? 1 : c.batch) * c.m * c.k
        let bCount = (c.broadcastB ? 1 : c.batch) * c.k * c.n
        let ldc = c.n + c.gap
        let cCount = c.batch * c.m * ldc
        let a = testValues(aCount, seed: 1)
        let b = testValues(bCount, seed: 2)
        let c0 = testValues(cCount, seed: 3).enumerated().map { i, v in c.beta == 0 ? Float.nan : v }
        var d = GEMMDescriptor(batch: c.batch, m: c.m, n: c.n, k: c.k, transposeA: c.transposeA,
                               transposeB: c.transposeB, alpha: c.alpha, beta: c.beta,
                               broadcastA: c.broadcastA, broadcastB: c.broadcastB)
        d.ldc = ldc
        d.strideC = c.m * ldc
        let bufferA = try upload(a, to: backend)
        let bufferB = try upload(b, to: backend)
        let sourceC = try upload(c0, to: backend)
        let (out, intact) = try guardedOutput(on: backend, count: cCount) { buffer in
            if cCount > 0 {
                try backend.copy(StridedCopy(shape: [cCount], sourceOffset: 0, sourceStrides: [1],
                                             destinationOffset: 0, destinationStrides: [1]),
                                 from: sourceC, to: buffer)
            }
            try backend.gemm(d, a: bufferA, b: bufferB, c: buffer)
        }
        #expect(intact, "\(tb) \(c): wrote past the end of C")
        for batch in 0..<c.batch {
            let aBatch = Array(a[(c.broadcastA ? 0 : batch * c.m * c.k)...].prefix(c.m * c.k))
            let bBatch = Array(b[(c.broadcastB ? 0 : batch * c.k * c.n)...].prefix(c.k * c.n))
            var cBatch = [Float](), got = [Float]()
            for i in 0..<c.m {
                let row = batch * c.m * ldc + i * ldc
                cBatch += c0[row..<(row + c.n)]
                got += out[row..<(row + c.n)]
                for g in 0..<c.gap {
                    #expect(out[row + c.n + g] == c0[row + c.n + g], "\(tb) \(c): wrote into the gap between rows")
                }
            }
            var expected: [Double]
            var actual = got
            if sampled {
                // Every 97th entry (and the last) of a large product against the oracle.
                let picks = Array(stride(from: 0, to: c.m * c.n, by: 97)) + [c.m * c.n - 1]
                expected = picks.map { idx in
                    let i = idx / c.n, j = idx % c.n
                    var s = 0.0
                    for p in 0..<c.k { s += Double(aBatch[i * c.k + p]) * Double(bBatch[p * c.n + j]) }
                    return s
                }
                actual = picks.map { got[$0] }
            } else {
                expected = Oracle.gemm(aBatch, bBatch, cBatch, m: c.m, n: c.n, k: c.k, transposeA: c.transposeA,
                                       transposeB: c.transposeB, alpha: Double(c.alpha), beta: Double(c.beta))
            }
            let problem = mismatch(actual, expected, tolerance: .gemm(k: c.k))
            #expect(problem == nil, "\(tb) \(c) batch \(batch): \(problem ?? "")")
        }
    }

    @Test("matmul broadcasting and vector promotion", arguments: TestBackend.all)
    func matmulSemantics(_ tb: TestBackend) throws {
        let backend = tb.backend
        let a = testValues(2 * 3 * 4 * 5, seed: 4)
        let b = testValues(5 * 6, seed: 5)
        let x = try Tensor(a, shape: [2, 3, 4, 5], on: backend)
        let y = try Tensor(b, shape: [5, 6], on: backend)
        let z = try matmul(x, y)
        #expect(z.shape == [2, 3, 4, 6])
        var expected: [Double] = []
        for batch in 0..<6 {
            expected += Oracle.gemm(Array(a[(batch * 20)..<(batch * 20 + 20)]), b, nil, m: 4, n: 6, k: 5)
        }
        #expect(mismatch(try z.scalars(), expected, tolerance: .gemm(k: 5)) == nil)

        // [3, 1, 4, 5] × [2, 5, 6] → [3, 2, 4, 6]: both batches broadcast.
        let p = try Tensor(testValues(60, seed: 6), shape: [3, 1, 4, 5], on: backend)
        let q = try Tensor(testValues(60, seed: 7), shape: [2, 5, 6], on: backend)
        let r = try matmul(p, q)
        #expect(r.shape == [3, 2, 4, 6])
        let pv = try p.scalars(), qv = try q.scalars(), rv = try r.scalars()
        for i in 0..<3 {
            for j in 0..<2 {
                let e = Oracle.gemm(Array(pv[(i * 20)..<(i * 20 + 20)]), Array(qv[(j * 30)..<(j * 30 + 30)]), nil,
                                    m: 4, n: 6, k: 5)
                let g = Array(rv[((i * 2 + j) * 24)..<((i * 2 + j) * 24 + 24)])
                #expect(mismatch(g, e, tolerance: .gemm(k: 5)) == nil, "\(tb) batch (\(i), \(j))")
            }
        }

        // Vector · matrix and matrix · vector drop the promoted dimension.
        let v = try Tensor(testValues(5, seed: 8), on: backend)
        #expect(try matmul(v, y).shape == [6])
        #expect(try matmul(y.transposed(), v).shape == [6])
        #expect(try matmul(v, v).shape == [])
        let dot = try matmul(v, v).item()
        let vv = try v.scalars().map(Double.init)
        #expect(mismatch([dot], [zip(vv, vv).map(*).reduce(0, +)], tolerance: .gemm(k: 5)) == nil)
    }
}
