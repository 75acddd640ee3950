import Kiln
import KilnTestSupport
import Testing

@Suite("unstacked")
struct UnstackTests {
    @Test("unstacked: the pieces along an axis, and one gradient assembled from every piece", arguments: TestBackend.all)
    func unstacked(_ tb: TestBackend) throws {
        let b = tb.backend
        let x = try Tensor((0..<24).map(Float.init), shape: [2, 3, 4], on: b)
        let rows = try x.unstacked(axis: 1)
        #expect(rows.map(\.shape) == [[2, 4], [2, 4], [2, 4]])
        #expect(try rows[1].scalars() == [4, 5, 6, 7, 16, 17, 18, 19])
        let last = try x.unstacked(axis: -1)
        #expect(last.count == 4 && last[3].shape == [2, 3])
        #expect(try last[3].scalars() == [3, 7, 11, 15, 19, 23])
        #expect(try Tensor.zeros([0, 2], on: b).unstacked(axis: 0).isEmpty)
        #expect(throws: TensorError.self) { try x.unstacked(axis: 3) }

        // Gradient: Σ_k c_k·Σ(piece_k · w_k), piece 2 unused (zeros), piece 0 used twice (accumulates).
        let leaf = x.requiringGradient()
        let pieces = try leaf.unstacked(axis: 1)
        let w = testValues(8, seed: 3)
        let wt = try Tensor(w, shape: [2, 4], on: b)
        let twice: Tensor = try pieces[0] * wt + pieces[0] * 2
        let loss: Tensor = try twice.sum() + (pieces[1] * 3).sum()
        try loss.backward()
        var expected = [Double](repeating: 0, count: 24)
        for n in 0..<2 {
            for k in 0..<4 {
                expected[(n * 3 + 0) * 4 + k] = Double(w[n * 4 + k]) + 2
                expected[(n * 3 + 1) * 4 + k] = 3
            }
        }
        let g = try #require(leaf.gradient)
        #expect(g.shape == [2, 3, 4])
        #expect(mismatch(try g.scalars(), expected, tolerance: .elementwise) == nil)
        // A second backward pass through a new graph adds the same again (the collected pieces were cleared).
        let again = try leaf.unstacked(axis: 1)
        let twiceAgain: Tensor = try again[0] * wt + again[0] * 2
        try (twiceAgain.sum() + (again[1] * 3).sum()).backward()
        #expect(mismatch(try #require(leaf.gradient).scalars(), expected.map { 2 * $0 }, tolerance: .elementwise) == nil)
        // Without recording, the pieces carry no graph.
        let plain = try withoutGradients { try leaf.unstacked(axis: 0) }
        #expect(!plain[0].requiresGradient)
    }
}
