import Kiln
import Testing

/// A two-level module tree for the naming and mode tests.
private final class Pair: Module {
    var isTraining = true
    let first: Parameter
    let inner: Leaf

    init(backend: any Backend) throws {
        first = Parameter(try Tensor.ones([2, 3], on: backend))
        inner = Leaf(try Tensor.zeros([4], on: backend))
    }

    var ownParameters: [(name: String, parameter: Parameter)] { [("first", first)] }
    var children: [(name: String, module: any Module)] { [("inner", inner)] }
    func callAsFunction(_ input: Tensor) throws -> Tensor { try inner(input) * 2 }
}

private final class Leaf: Module {
    var isTraining = true
    let bias: Parameter
    init(_ t: Tensor) { bias = Parameter(t) }
    var ownParameters: [(name: String, parameter: Parameter)] { [("bias", bias)] }
    func callAsFunction(_ input: Tensor) throws -> Tensor { try input + bias.value }
}

@Suite("Module")
struct ModuleTests {
    @Test("dotted parameter names, counts, train/eval, gradients through parameters")
    func tree() throws {
        let m = try Pair(backend: CPUBackend.shared)
        #expect(m.namedParameters().map(\.name) == ["first", "inner.bias"])
        #expect(m.parameterCount == 10)
        m.eval()
        #expect(!m.isTraining && !m.inner.isTraining)
        m.train()
        #expect(m.isTraining && m.inner.isTraining)
        let x = try Tensor([1, 2, 3, 4], on: CPUBackend.shared)
        try m(x).sum().backward()
        #expect(try m.inner.bias.gradient?.scalars() == [2, 2, 2, 2])
        m.zeroGradients()
        #expect(m.inner.bias.gradient == nil)
        #expect(throws: TensorError.self) { try m.first.assign(Tensor.zeros([3], on: CPUBackend.shared)) }
        try m.first.assign(Tensor.full([2, 3], value: 5, on: CPUBackend.shared))
        #expect(try m.first.value.scalars() == [5, 5, 5, 5, 5, 5])
        #expect(m.first.value.requiresGradient)
    }
}
