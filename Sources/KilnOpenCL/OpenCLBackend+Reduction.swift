import COpenCL
import KilnCore

extension OpenCLBackend {
    /// One work-item per output element loops over the reduced axis (coalesced along `inner`).
    public func reduce(_ op: ReduceOp, _ x: any BackendBuffer, _ out: any BackendBuffer,
                       outer: Int, count: Int, inner: Int, correction: Float) throws {
        let bx = try clBuffer(x, "opencl.reduce")
        let bo = try clBuffer(out, "opencl.reduce")
        try requireInt32(outer * count * inner, op: "reduce")
        try launch(kernel("reduction", "reduce_f32"), "reduce_f32", global: [outer * inner],
                   [.buffer(bx.mem), .buffer(bo.mem), .int(Int32(outer)), .int(Int32(count)), .int(Int32(inner)),
                    .int(op.code), .float(correction)])
    }
}
