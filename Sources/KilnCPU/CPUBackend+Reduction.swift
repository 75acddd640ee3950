import CKilnCPU
import KilnCore

extension CPUBackend {
    public func reduce(_ op: ReduceOp, _ x: any BackendBuffer, _ out: any BackendBuffer,
                       outer: Int, count: Int, inner: Int, correction: Float) throws {
        let px = try cpuBuffer(x, "cpu.reduce").pointer
        let po = try cpuBuffer(out, "cpu.reduce").pointer
        let code = op.code
        parallelFor(outer, grain: Swift.max(1, (1 << 15) / Swift.max(count * inner, 1))) { r in
            kiln_reduce_f32(code, px + r.lowerBound * count * inner, po + r.lowerBound * inner,
                            Int64(r.count), Int64(count), Int64(inner), correction)
        }
    }
}
