import CKilnCPU
import KilnCore

extension CPUBackend {
    public func optimizerUpdate(_ update: FusedUpdate, parameter: any BackendBuffer, gradient: any BackendBuffer,
                                state: [any BackendBuffer], newParameter: any BackendBuffer, count: Int) throws {
        let theta = try cpuBuffer(parameter, "cpu.optimizerUpdate").pointer
        let grad = try cpuBuffer(gradient, "cpu.optimizerUpdate").pointer
        let out = try cpuBuffer(newParameter, "cpu.optimizerUpdate").pointer
        let s = try state.map { try cpuBuffer($0, "cpu.optimizerUpdate").pointer }
        let slots: [UnsafeMutablePointer<Float>?] = (0..<FusedUpdate.maxStates).map { $0 < s.count ? s[$0] : nil }
        let coefficients = update.packed
        let rule = update.rule.rawValue
        coefficients.withUnsafeBufferPointer { c in
            parallelFor(count) { r in
                let o = r.lowerBound
                kiln_optimizer_update_f32(rule, c.baseAddress, theta + o, grad + o, slots[0].map { $0 + o },
                                          slots[1].map { $0 + o }, slots[2].map { $0 + o }, out + o, Int64(r.count))
            }
        }
    }
}
