import Foundation
import Kiln
import KilnTestSupport
import Testing

@Suite("Philox random numbers")
struct RandomConformanceTests {
    /// The published Philox-4x32-10 known-answer vectors (Random123's kat_vectors).
    @Test("Philox-4x32-10 known answers")
    func knownAnswers() {
        let zero = Philox.block(counter: (0, 0, 0, 0), seed: 0)
        #expect([zero.0, zero.1, zero.2, zero.3] == [0x6627_E8D5, 0xE169_C58D, 0xBC57_AC4C, 0x9B00_DBD8])
        let ones = Philox.block(counter: (0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF), seed: 0xFFFF_FFFF_FFFF_FFFF)
        #expect([ones.0, ones.1, ones.2, ones.3] == [0x408F_276D, 0x41C8_3B0E, 0xA20B_C7C6, 0x6D54_51FD])
        let pi = Philox.block(counter: (0x243F_6A88, 0x85A3_08D3, 0x1319_8A2E, 0x0370_7344),
                              seed: 0x299F_31D0_A409_3822)
        #expect([pi.0, pi.1, pi.2, pi.3] == [0xD16C_FE09, 0x94FD_CCEB, 0x5001_E420, 0x2412_6EA1])
    }

    @Test("same seed gives the same bits on every backend")
    func identicalBits() throws {
        for distribution in [RandomDistribution.uniform(low: -1, high: 3), .normal(mean: 0.5, standardDeviation: 2),
                             .bernoulli(probability: 0.3)] {
            let reference = try Tensor.random([10_007], distribution, seed: 12_345, on: CPUBackend.shared).scalars()
            #expect(reference == Philox.samples(distribution, seed: 12_345, count: 10_007))
            for tb in TestBackend.all {
                let values = try Tensor.random([10_007], distribution, seed: 12_345, on: tb.backend).scalars()
                let differing = zip(values, reference).filter { $0.bitPattern != $1.bitPattern }.count
                #expect(differing == 0, "\(tb) \(distribution): \(differing) samples differ from the CPU's bits")
            }
        }
        #expect(try TestBackend.openCLProblem == nil, "\(TestBackend.openCLProblem ?? "")")
    }

    @Test("moments within tolerance", arguments: TestBackend.all)
    func moments(_ tb: TestBackend) throws {
        let n = 200_000
        func stats(_ v: [Float]) -> (mean: Double, variance: Double) {
            let m = v.reduce(0.0) { $0 + Double($1) } / Double(v.count)
            return (m, v.reduce(0.0) { $0 + (Double($1) - m) * (Double($1) - m) } / Double(v.count - 1))
        }
        // Five standard errors of the mean and of the variance.
        let u = stats(try Tensor.uniform([n], low: 2, high: 4, seed: 7, on: tb.backend).scalars())
        #expect(Swift.abs(u.mean - 3) < 5 * (1 / 3.0).squareRoot() / Double(n).squareRoot())
        #expect(Swift.abs(u.variance - 1 / 3.0) < 5 * 0.0012)
        let g = try Tensor.normal([n], mean: -1, standardDeviation: 3, seed: 8, on: tb.backend).scalars()
        let z = stats(g)
        #expect(Swift.abs(z.mean + 1) < 5 * 3 / Double(n).squareRoot())
        #expect(Swift.abs(z.variance - 9) < 5 * 9 * (2 / Double(n)).squareRoot())
        // The normal's fourth standardized moment is 3; its tails reach beyond 4σ.
        let kurtosis = g.reduce(0.0) { $0 + Foundation.pow((Double($1) + 1) / 3, 4) } / Double(n)
        #expect(Swift.abs(kurtosis - 3) < 0.1)
        #expect(g.contains { Swift.abs(Double($0) + 1) > 12 })
        let b = stats(try Tensor.bernoulli([n], probability: 0.25, seed: 9, on: tb.backend).scalars())
        #expect(Swift.abs(b.mean - 0.25) < 5 * (0.25 * 0.75 / Double(n)).squareRoot())
        // Different seeds give different streams.
        let s1 = try Tensor.uniform([8], seed: 1, on: tb.backend).scalars()
        let s2 = try Tensor.uniform([8], seed: 2, on: tb.backend).scalars()
        #expect(s1 != s2)
    }
}
