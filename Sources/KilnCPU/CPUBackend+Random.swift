import KilnCore

extension CPUBackend {
    public func random(_ distribution: RandomDistribution, seed: UInt64, _ out: any BackendBuffer,
                       count: Int) throws {
        let p = try cpuBuffer(out, "cpu.random").pointer
        // Chunks start on multiples of 4 so each Philox block is computed once.
        let blocks = (count + 3) / 4
        parallelFor(blocks, grain: 1 << 13) { r in
            let first = r.lowerBound * 4
            let end = Swift.min(count, r.upperBound * 4)
            Philox.fill(distribution, seed: seed,
                        into: UnsafeMutableBufferPointer(start: p + first, count: end - first), first: first)
        }
    }
}
