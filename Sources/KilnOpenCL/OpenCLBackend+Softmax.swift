import COpenCL
import KilnCore

extension OpenCLBackend {
    public func softmax(_ x: any BackendBuffer, _ y: any BackendBuffer, outer: Int, count: Int, inner: Int,
                        logarithm: Bool) throws {
        let bx = try clBuffer(x, "opencl.softmax")
        let by = try clBuffer(y, "opencl.softmax")
        try requireInt32(outer * count * inner, op: "softmax")
        try launch(kernel("softmax", "softmax_f32"), "softmax_f32", global: [outer * inner],
                   [.buffer(bx.mem), .buffer(by.mem), .int(Int32(outer)), .int(Int32(count)), .int(Int32(inner)),
                    .int(logarithm ? 1 : 0)])
    }
}
