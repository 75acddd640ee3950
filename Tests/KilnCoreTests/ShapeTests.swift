import Foundation
import Kiln
import Testing

@Suite("Shape arithmetic")
struct ShapeTests {
    @Test("NumPy broadcasting")
    func broadcasting() throws {
        #expect(try Shape.broadcast([3, 1, 5], [4, 1], op: "t") == [3, 4, 5])
        #expect(try Shape.broadcast([], [2, 3], op: "t") == [2, 3])
        #expect(try Shape.broadcast([0, 1], [1, 7], op: "t") == [0, 7])
        #expect(throws: TensorError.self) { try Shape.broadcast([3, 2], [4, 2], op: "t") }
        #expect(Shape.broadcastStrides([3, 1], to: [2, 3, 4]) == [0, 1, 0])
    }

    @Test("coalescing merges contiguous runs and drops size-1 dimensions")
    func coalescing() {
        let (shape, strides) = Shape.coalesce([2, 3, 4], [[12, 4, 1], [0, 4, 1]])
        #expect(shape == [2, 12])
        #expect(strides == [[12, 1], [0, 1]])
        let (s2, st2) = Shape.coalesce([1, 1], [[1, 1]])
        #expect(s2 == [1])
        #expect(st2 == [[0]])
        // A transpose does not merge.
        let (s3, st3) = Shape.coalesce([3, 5], [[1, 3], [5, 1]])
        #expect(s3 == [3, 5])
        #expect(st3 == [[1, 3], [5, 1]])
    }

    @Test("row-major strides")
    func strides() {
        #expect(Shape.strides(of: [2, 3, 4]) == [12, 4, 1])
        #expect(Shape.strides(of: []) == [])
    }

    @Test("buffer size classes")
    func sizeClasses() {
        #expect(BufferSizeClass.capacity(for: 0) == 16)
        #expect(BufferSizeClass.capacity(for: 17) == 32)
        #expect(BufferSizeClass.capacity(for: 1 << 22) == 1 << 22)
        #expect(BufferSizeClass.capacity(for: (1 << 22) + 1) == (1 << 22) + (1 << 20))
    }

    @Test("portable log, sin/cos and sqrt of the normal transform are accurate")
    func portableMath() {
        var worstLog = 0.0, worstTrig = 0.0, worstSqrt = 0.0
        for i in 1...10_000 {
            let x = Float(i) / 10_000
            worstLog = Swift.max(worstLog, Swift.abs(Double(Philox.portableLog(x)) - Foundation.log(Double(x))))
            let a = Float(i) / 10_000 * 1.5707963
            let (s, c) = Philox.portableSinCos(a)
            worstTrig = Swift.max(worstTrig, Swift.abs(Double(s) - Foundation.sin(Double(a))),
                                  Swift.abs(Double(c) - Foundation.cos(Double(a))))
            let y = Float(i) / 300
            worstSqrt = Swift.max(worstSqrt, Swift.abs(Double(Philox.portableSqrt(y)) / Double(y).squareRoot() - 1))
        }
        #expect(worstLog < 5e-7)  // |ln x| reaches 9.2 here: about 1 ulp
        #expect(worstTrig < 5e-7)
        #expect(worstSqrt < 5e-7)
    }
}
