import COpenCL
import KilnCore

extension OpenCLBackend {
    public func optimizerUpdate(_ update: FusedUpdate, parameter: any BackendBuffer, gradient: any BackendBuffer,
                                state: [any BackendBuffer], newParameter: any BackendBuffer, count: Int) throws {
        let theta = try clBuffer(parameter, "opencl.optimizerUpdate")
        let grad = try clBuffer(gradient, "opencl.optimizerUpdate")
        let out = try clBuffer(newParameter, "opencl.optimizerUpdate")
        let s = try state.map { try clBuffer($0, "opencl.optimizerUpdate") }
        try requireInt32(count, op: "optimizerUpdate")
        if count == 0 { return }
        // Unused state slots are bound to the output buffer; the rule never touches them.
        let slots = (0..<FusedUpdate.maxStates).map { $0 < s.count ? s[$0].mem : out.mem }
        let name = "optimizer_update_f32"
        let k = try kernel("optimizer", name, defines: ["RULE": "\(update.rule.rawValue)"])
        try launch(k, name, global: [count],
                   [.buffer(theta.mem), .buffer(grad.mem), .buffer(slots[0]), .buffer(slots[1]), .buffer(slots[2]),
                    .buffer(out.mem), .int(Int32(count))] + update.packed.map { .float($0) })
    }
}
