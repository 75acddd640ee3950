import Kiln
import KilnTestSupport
import Testing

/// The CPU backend's C kernels at every SIMD level the machine has, against the Float64 oracles.
@Suite("CPU SIMD levels", .serialized)
struct SIMDLevelTests {
    @Test("unary, binary, reductions and softmax at each level")
    func everyLevel() throws {
        let backend = CPUBackend.shared
        let original = CPUBackend.forceSIMDLevel(2)
        defer { CPUBackend.forceSIMDLevel(original) }
        for requested in [0, 1, 2] {
            let level = CPUBackend.forceSIMDLevel(requested)
            let x = testValues(1037, seed: 5, range: -8...8)
            let t = try Tensor(x, shape: [17, 61], on: backend)
            for op in [UnaryOp.exp, .tanh, .sigmoid, .silu, .geluTanh, .relu, .softplus, .abs] {
                let problem = mismatch(try t.applying(op).scalars(), x.map { Oracle.unary(op, Double($0)) },
                                       tolerance: .elementwise)
                #expect(problem == nil, "level \(level) \(op): \(problem ?? "")")
            }
            let y = testValues(61, seed: 6)
            let sum = try t + Tensor(y, on: backend)
            #expect(mismatch(try sum.scalars(), Oracle.binary(.add, x, [17, 61], y, [61], outShape: [17, 61]).map { Double(Float($0)) },
                             tolerance: .exact) == nil, "level \(level) add")
            for (op, axes) in [(ReduceOp.sum, [1]), (.max, [0]), (.variance, [1]), (.logSumExp, [0]), (.argmax, [1])] {
                let r: Tensor
                switch op {
                case .sum: r = try t.sum(alongAxes: axes)
                case .max: r = try t.max(alongAxes: axes)
                case .variance: r = try t.variance(alongAxes: axes)
                case .logSumExp: r = try t.logSumExp(alongAxes: axes)
                default: r = try t.argmax(axis: axes[0])
                }
                let problem = mismatch(try r.scalars(), Oracle.reduce(op, x, [17, 61], axes: axes), tolerance: .reduction)
                #expect(problem == nil, "level \(level) \(op): \(problem ?? "")")
            }
            for axis in [0, 1] {
                let problem = mismatch(try softmax(t, axis: axis).scalars(),
                                       Oracle.softmax(x, [17, 61], axis: axis, logarithm: false), tolerance: .reduction)
                #expect(problem == nil, "level \(level) softmax axis \(axis): \(problem ?? "")")
            }
        }
    }
}
