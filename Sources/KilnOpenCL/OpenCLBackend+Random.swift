import COpenCL
import KilnCore

extension OpenCLBackend {
    /// One work-item per Philox block of four samples (Kernels/random.cl, the twin of `Philox`).
    public func random(_ distribution: RandomDistribution, seed: UInt64, _ out: any BackendBuffer,
                       count: Int) throws {
        let bo = try clBuffer(out, "opencl.random")
        try requireInt32(count, op: "random")
        let (p0, p1) = distribution.parameters
        try launch(kernel("random", "philox_fill_f32"), "philox_fill_f32", global: [(count + 3) / 4],
                   [.buffer(bo.mem), .int(Int32(count)), .int(Int32(bitPattern: UInt32(truncatingIfNeeded: seed))),
                    .int(Int32(bitPattern: UInt32(truncatingIfNeeded: seed >> 32))), .int(distribution.code),
                    .float(p0), .float(p1)])
    }
}
