import Kiln
import KilnTestSupport
import Testing

/// Typed errors whose message names the op and the values.
@Suite("Errors")
struct ErrorTests {
    /// Runs `body`, expecting a `TensorError` of `kind` whose description contains every fragment.
    func expectTensorError(_ kind: TensorError.Kind, _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation,
                           _ body: () throws -> Void) {
        do {
            try body()
            Issue.record("expected a TensorError of kind \(kind)", sourceLocation: sourceLocation)
        } catch let error as TensorError {
            #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
            for f in fragments {
                #expect(error.description.contains(f), "'\(error)' does not mention '\(f)'", sourceLocation: sourceLocation)
            }
        } catch {
            Issue.record("expected a TensorError, got \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test("shape mismatch names the op and both shapes", arguments: TestBackend.all)
    func shapeMismatch(_ tb: TestBackend) throws {
        let a = try Tensor.zeros([2, 3], on: tb.backend)
        let b = try Tensor.zeros([4, 5], on: tb.backend)
        expectTensorError(.shapeMismatch, ["matmul", "[2, 3]", "[4, 5]", "3 vs 4"]) { _ = try matmul(a, b) }
        expectTensorError(.shapeMismatch, ["add", "[2, 3]", "[4, 5]"]) { _ = try a + b }
        expectTensorError(.shapeMismatch, ["reshaped", "[2, 3]", "[4, 2]"]) { _ = try a.reshaped(to: [4, 2]) }
        expectTensorError(.shapeMismatch, ["concatenated", "[2, 3]", "[4, 5]"]) {
            _ = try Tensor.concatenated([a, b], axis: 0)
        }
        expectTensorError(.invalidArgument, ["Tensor", "[2, 2]", "4", "3"]) {
            _ = try Tensor([1, 2, 3], shape: [2, 2], on: tb.backend)
        }
    }

    @Test("bad axis names the op, the axis and the rank", arguments: TestBackend.all)
    func badAxis(_ tb: TestBackend) throws {
        let a = try Tensor.zeros([2, 3], on: tb.backend)
        expectTensorError(.badAxis, ["softmax", "axis 3", "rank-2"]) { _ = try softmax(a, axis: 3) }
        expectTensorError(.badAxis, ["sum", "axis -3", "rank-2"]) { _ = try a.sum(alongAxes: [-3]) }
        expectTensorError(.badAxis, ["sum", "more than once"]) { _ = try a.sum(alongAxes: [1, -1]) }
        expectTensorError(.badAxis, ["permuted", "[0, 0]"]) { _ = try a.permuted([0, 0]) }
        expectTensorError(.invalidArgument, ["max", "size 0"]) { _ = try Tensor.zeros([2, 0], on: tb.backend).max(alongAxes: [1]) }
        expectTensorError(.invalidArgument, ["clamp", "min 2.0", "max 1.0"]) { _ = try clamp(a, min: 2, max: 1) }
        expectTensorError(.invalidArgument, ["bernoulli", "1.5"]) {
            _ = try Tensor.bernoulli([2], probability: 1.5, seed: 0, on: tb.backend)
        }
        expectTensorError(.invalidArgument, ["normal", "nan"]) {
            _ = try Tensor.normal([2], standardDeviation: .nan, seed: 0, on: tb.backend)
        }
        expectTensorError(.invalidArgument, ["indexSelected", "index 5", "size 3"]) {
            _ = try a.indexSelected(axis: 1, indices: [5])
        }
    }

    @Test("tensors from two backends")
    func backendMismatch() throws {
        guard let cl = TestBackend.firstOpenCL else {
            #expect(TestBackend.openCLProblem == nil, "\(TestBackend.openCLProblem ?? "")")
            return
        }
        let a = try Tensor([1, 2], on: CPUBackend.shared)
        let b = try Tensor([1, 2], on: cl.backend)
        expectTensorError(.backendMismatch, ["add", "cpu", "opencl:0"]) { _ = try a + b }
        expectTensorError(.backendMismatch, ["matmul", "cpu", "opencl:0"]) { _ = try matmul(a, b) }
        // An explicit copy makes them compatible.
        #expect(try (a + b.to(CPUBackend.shared)).scalars() == [2, 4])
    }

    @Test("an unknown device names what exists")
    func unknownDevice() throws {
        do {
            _ = try Device.openCL(99).backend()
            Issue.record("expected an error for opencl:99")
        } catch let error as BackendError {
            #expect(error.kind == .deviceUnavailable)
            #expect(error.description.contains("opencl:99"))
            #expect(error.description.contains("found:"))
        }
        do {
            _ = try Device(parsing: "cuda")
            Issue.record("expected an error for 'cuda'")
        } catch let error as BackendError {
            #expect(error.kind == .deviceUnavailable)
            #expect(error.description.contains("cuda"))
        }
        #expect(try Device(parsing: "opencl:2") == .openCL(2))
        #expect(try Device(parsing: "CPU") == .cpu)
        #expect(try Device(parsing: "auto") == .auto)
        #expect(try Device(parsing: "opencl") == .openCL(0))
    }
}
