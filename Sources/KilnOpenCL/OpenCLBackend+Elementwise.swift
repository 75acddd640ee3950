import COpenCL
import KilnCore

extension OpenCLBackend {
    public func unary(_ op: UnaryOp, _ x: any BackendBuffer, _ y: any BackendBuffer, count: Int) throws {
        let bx = try clBuffer(x, "opencl.unary")
        let by = try clBuffer(y, "opencl.unary")
        try requireInt32(count, op: "unary")
        let (p0, p1) = op.parameters
        try launch(kernel("elementwise", "unary_f32"), "unary_f32", global: [count],
                   [.buffer(bx.mem), .buffer(by.mem), .int(Int32(count)), .int(op.code), .float(p0), .float(p1)])
    }

    public func binary(_ op: BinaryOp, _ g: BroadcastGeometry, _ a: any BackendBuffer, _ b: any BackendBuffer,
                       _ out: any BackendBuffer) throws {
        let ba = try clBuffer(a, "opencl.binary")
        let bb = try clBuffer(b, "opencl.binary")
        let bo = try clBuffer(out, "opencl.binary")
        try requireInt32(g.count, op: "binary")
        try launch(kernel("elementwise", "binary_f32"), "binary_f32", global: [g.count],
                   [.buffer(ba.mem), .buffer(bb.mem), .buffer(bo.mem), .int8(g.shape), .int8(g.strides[0]),
                    .int8(g.strides[1]), .int(Int32(g.shape.count)), .int(Int32(g.count)), .int(op.code)])
    }

    public func select(_ g: BroadcastGeometry, condition: any BackendBuffer, _ a: any BackendBuffer,
                       _ b: any BackendBuffer, _ out: any BackendBuffer) throws {
        let bc = try clBuffer(condition, "opencl.select")
        let ba = try clBuffer(a, "opencl.select")
        let bb = try clBuffer(b, "opencl.select")
        let bo = try clBuffer(out, "opencl.select")
        try requireInt32(g.count, op: "select")
        try launch(kernel("elementwise", "select_f32"), "select_f32", global: [g.count],
                   [.buffer(bc.mem), .buffer(ba.mem), .buffer(bb.mem), .buffer(bo.mem), .int8(g.shape),
                    .int8(g.strides[0]), .int8(g.strides[1]), .int8(g.strides[2]),
                    .int(Int32(g.shape.count)), .int(Int32(g.count))])
    }
}
