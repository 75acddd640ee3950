import CKilnCPU
import KilnCore

extension CPUBackend {
    public func softmax(_ x: any BackendBuffer, _ y: any BackendBuffer, outer: Int, count: Int, inner: Int,
                        logarithm: Bool) throws {
        let px = try cpuBuffer(x, "cpu.softmax").pointer
        let py = try cpuBuffer(y, "cpu.softmax").pointer
        parallelFor(outer, grain: Swift.max(1, (1 << 15) / Swift.max(count * inner, 1))) { r in
            let offset = r.lowerBound * count * inner
            kiln_softmax_f32(px + offset, py + offset, Int64(r.count), Int64(count), Int64(inner),
                             logarithm ? 1 : 0)
        }
    }
}
