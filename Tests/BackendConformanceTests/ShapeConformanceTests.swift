import Kiln
import KilnTestSupport
import Testing

@Suite("Shape ops and creation conformance")
struct ShapeConformanceTests {
    @Test("permute and transpose against the oracle", arguments: TestBackend.all)
    func permutes(_ tb: TestBackend) throws {
        let cases: [([Int], [Int])] = [([3, 5], [1, 0]), ([2, 3, 4], [2, 0, 1]), ([2, 3, 4], [0, 2, 1]),
                                       ([1, 7, 1, 5], [3, 1, 0, 2]), ([33, 65], [1, 0]), ([2, 0, 3], [2, 1, 0]),
                                       ([2, 3, 2, 3, 2, 3, 2, 3, 2], [8, 7, 6, 5, 4, 3, 2, 1, 0])]
        for (shape, axes) in cases {
            let x = testValues(shape.reduce(1, *), seed: 51)
            let y = try Tensor(x, shape: shape, on: tb.backend).permuted(axes)
            #expect(y.shape == axes.map { shape[$0] })
            #expect(mismatch(try y.scalars(), Oracle.permute(x, shape, axes), tolerance: .exact) == nil, "\(tb) \(shape) \(axes)")
        }
        let m = try Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3], on: tb.backend)
        #expect(try m.transposed().scalars() == [1, 4, 2, 5, 3, 6])
    }

    @Test("slicing, broadcast, expand", arguments: TestBackend.all)
    func slicing(_ tb: TestBackend) throws {
        let x = try Tensor((0..<24).map(Float.init), shape: [2, 3, 4], on: tb.backend)
        let s = try x.sliced(axis: 2, start: 1, end: 4, step: 2)
        #expect(s.shape == [2, 3, 2])
        #expect(try s.scalars() == [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23])
        #expect(try x.sliced(axis: 1, start: -2).scalars() == [4, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23])
        #expect(try x.sliced(axis: 0, start: 5).shape == [0, 3, 4])
        let row = try Tensor([1, 2, 3], shape: [3, 1], on: tb.backend)
        let b = try row.broadcast(to: [2, 3, 4])
        #expect(try b.scalars() == [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3])
        #expect(try row.expanded(to: [2, -1, 2]).scalars() == [1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3])
        #expect(try x.reshaped(to: [4, -1]).shape == [4, 6])
        #expect(try x.unsqueezed(axis: -1).shape == [2, 3, 4, 1])
        #expect(try x.unsqueezed(axis: 0).squeezed(axis: 0).shape == [2, 3, 4])
        #expect(try Tensor.zeros([1, 3, 1], on: tb.backend).squeezed().shape == [3])
    }

    @Test("concatenate, stack, split", arguments: TestBackend.all)
    func joins(_ tb: TestBackend) throws {
        let a = try Tensor([1, 2, 3, 4], shape: [2, 2], on: tb.backend)
        let b = try Tensor([5, 6], shape: [2, 1], on: tb.backend)
        let e = try Tensor.zeros([2, 0], on: tb.backend)
        let c = try Tensor.concatenated([a, e, b], axis: 1)
        #expect(c.shape == [2, 3])
        #expect(try c.scalars() == [1, 2, 5, 3, 4, 6])
        let r = try Tensor.concatenated([a, a], axis: 0)
        #expect(try r.scalars() == [1, 2, 3, 4, 1, 2, 3, 4])
        let s = try Tensor.stacked([a, a * 10], axis: 1)
        #expect(s.shape == [2, 2, 2])
        #expect(try s.scalars() == [1, 2, 10, 20, 3, 4, 30, 40])
        let pieces = try c.split(sizes: [1, 2], axis: 1)
        #expect(try pieces[0].scalars() == [1, 3])
        #expect(try pieces[1].scalars() == [2, 5, 4, 6])
        let chunks = try Tensor((0..<7).map(Float.init), on: tb.backend).split(size: 3, axis: 0)
        #expect(chunks.map(\.shape) == [[3], [3], [1]])
        #expect(try chunks[2].scalars() == [6])
    }

    @Test("index select and gather", arguments: TestBackend.all)
    func gathers(_ tb: TestBackend) throws {
        let x = try Tensor((0..<12).map(Float.init), shape: [3, 4], on: tb.backend)
        #expect(try x.indexSelected(axis: 0, indices: [2, 0, -1]).scalars() == [8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11])
        #expect(try x.indexSelected(axis: 1, indices: [3, 1]).scalars() == [3, 1, 7, 5, 11, 9])
        let index = try Tensor([0, 3, 1, 1, 2, 0], shape: [3, 2], on: tb.backend)
        #expect(try x.gathered(axis: 1, indices: index).scalars() == [0, 3, 5, 5, 10, 8])
        let rows = try Tensor([2, 0, 1, 1], shape: [1, 4], on: tb.backend)
        #expect(try x.gathered(axis: 0, indices: rows).scalars() == [8, 1, 6, 7])
    }

    @Test("creation: full, arange, linspace, eye, to(backend)", arguments: TestBackend.all)
    func creation(_ tb: TestBackend) throws {
        #expect(try Tensor.full([2, 2], value: 3.5, on: tb.backend).scalars() == [3.5, 3.5, 3.5, 3.5])
        #expect(try Tensor.ones([0, 3], on: tb.backend).scalars() == [])
        #expect(try Tensor.arange(to: 5, on: tb.backend).scalars() == [0, 1, 2, 3, 4])
        #expect(try Tensor.arange(from: 1, to: 2, step: 0.25, on: tb.backend).scalars() == [1, 1.25, 1.5, 1.75])
        #expect(try Tensor.arange(from: 5, to: 0, step: -2, on: tb.backend).scalars() == [5, 3, 1])
        #expect(try Tensor.linspace(from: 0, to: 1, count: 5, on: tb.backend).scalars() == [0, 0.25, 0.5, 0.75, 1])
        #expect(try Tensor.eye(2, columns: 3, on: tb.backend).scalars() == [1, 0, 0, 0, 1, 0])
        let x = try Tensor([1, 2, 3], on: tb.backend)
        let copied = try x.to(CPUBackend.shared)
        #expect(copied.backend === CPUBackend.shared)
        #expect(try copied.scalars() == [1, 2, 3])
    }

    @Test("copy, take, fill and random kernels leave the guard region alone", arguments: TestBackend.all)
    func guards(_ tb: TestBackend) throws {
        let b = tb.backend
        let source = try upload((0..<60).map(Float.init), to: b)
        let layout = StridedCopy(shape: [5, 4, 3], sourceOffset: 0, sourceStrides: [1, 5, 20],
                                 destinationOffset: 0, destinationStrides: [12, 3, 1])
        let (copied, intact) = try guardedOutput(on: b, count: 60) { try b.copy(layout, from: source, to: $0) }
        #expect(intact)
        #expect(mismatch(copied, Oracle.permute((0..<60).map(Float.init), [3, 4, 5], [2, 1, 0]), tolerance: .exact) == nil)
        let (taken, intact2) = try guardedOutput(on: b, count: 3) { try b.take([59, 0, 7], from: source, to: $0) }
        #expect(intact2)
        #expect(taken == [59, 0, 7])
        let (filled, intact3) = try guardedOutput(on: b, count: 33) { try b.fill($0, value: 2, count: 33) }
        #expect(intact3 && filled.allSatisfy { $0 == 2 })
        for n in [1, 5, 4097] {
            let (_, intact4) = try guardedOutput(on: b, count: n) {
                try b.random(.normal(mean: 0, standardDeviation: 1), seed: 3, $0, count: n)
            }
            #expect(intact4, "\(tb) random n=\(n)")
        }
    }
}
