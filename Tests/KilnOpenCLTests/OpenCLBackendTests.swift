import Kiln
import KilnOpenCL
import KilnTestSupport
import Testing

@Suite("OpenCL backend")
struct OpenCLBackendTests {
    @Test("an OpenCL device is found (required in CI)")
    func deviceFound() throws {
        #expect(TestBackend.openCLProblem == nil, "\(TestBackend.openCLProblem ?? "")")
        for d in try OpenCLBackend.devices() {
            #expect(!d.name.isEmpty)
            #expect(d.computeUnits > 0)
        }
    }

    @Test("a kernel that fails to build throws with the build log")
    func buildFailure() throws {
        guard let tb = TestBackend.firstOpenCL, let cl = tb.backend as? OpenCLBackend else {
            #expect(TestBackend.openCLProblem == nil, "\(TestBackend.openCLProblem ?? "")")
            return
        }
        let source = "__kernel void broken_f32(__global float *y) { y[0] = undeclared_name; }\n"
        do {
            _ = try cl.build(source: source, name: "broken.cl")
            Issue.record("a broken kernel built")
        } catch let error as BackendError {
            #expect(error.kind == .kernelBuildFailed)
            #expect(error.description.contains("broken.cl"))
            #expect(error.description.contains("undeclared_name"), "the build log is missing: \(error)")
        }
    }

    @Test("the buffer pool reuses released buffers")
    func bufferPool() throws {
        guard let tb = TestBackend.firstOpenCL else {
            #expect(TestBackend.openCLProblem == nil, "\(TestBackend.openCLProblem ?? "")")
            return
        }
        var first: ObjectIdentifier?
        do {
            let t = try Tensor.zeros([1000], on: tb.backend)
            first = ObjectIdentifier(t.storage.buffer)
            _ = try t.scalars()
        }
        let again = try Tensor.ones([1000], on: tb.backend)
        #expect(try again.scalars().allSatisfy { $0 == 1 })
        #expect(first != nil)
    }

    @Test("device type selects the kernel family")
    func familyChoice() throws {
        for d in try OpenCLBackend.devices() {
            let b = try OpenCLBackend(deviceIndex: d.index)
            #expect(b.family == (d.type == "CPU" ? .cpuStyle : .gpuStyle))
        }
    }
}
