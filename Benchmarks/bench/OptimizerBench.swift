import ArgumentParser
import Foundation
import Kiln

/// `bench optimizer`: one optimizer step over a parameter tensor with the fused kernel, against
/// Adam written as a composite of Kiln's elementwise ops (one kernel per operation), timed
/// round-robin in the same run. GB/s counts each array read or written once per step (Adam:
/// θ, g, m, v read; θ, m, v written).
struct OptimizerBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "optimizer",
        abstract: "Fused optimizer steps (Adam, SGD with momentum, Lion) vs Adam as a composite of elementwise ops.")

    @Option(help: "Elements of the parameter tensor.")
    var params: Int = 1 << 24
    @Option(help: "Comma-separated: adam, sgd, lion.")
    var optimizers: String = "adam,sgd,lion"
    @Flag(name: .customLong("no-baseline"), help: "Skip the composite Adam.")
    var noBaseline = false
    @OptionGroup var common: CommonOptions

    var names: [String] { optimizers.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }

    func validate() throws {
        guard params > 0, common.iters > 0 else { throw ValidationError("--params and --iters must be positive") }
        for n in names where !["adam", "sgd", "lion"].contains(n) {
            throw ValidationError("unknown optimizer '\(n)' in --optimizers; use adam, sgd, lion")
        }
    }

    func run() throws {
        let (backends, cl) = try selectedBackends(common.backend, device: common.device)
        var header = MachineHeader.lines(openCL: cl)
        header.append("GB/s counts arrays read + written once per step (adam: 7 × 4 bytes per element, sgd momentum: 5, lion: 5); baseline: Adam as a composite of elementwise ops, same run")
        var rows: [Row] = []
        for (name, backend) in backends { rows += try measure(backend, name: name) }
        try report(rows, header: header, json: common.json)
    }

    /// Bytes moved per element by one step.
    func bytes(_ optimizer: String) -> Double { optimizer == "adam" ? 28 : 20 }

    func measure(_ backend: any Backend, name: String) throws -> [Row] {
        let theta = (0..<params).map { Float(sin(Double($0) * 0.013)) }
        let g = (0..<params).map { Float(cos(Double($0) * 0.007)) }
        let gradient = try Tensor(g, on: backend)
        var cases: [(impl: String, optimizer: String, step: () throws -> Void)] = []
        var errors: [Double?] = []
        for n in names {
            let p = Parameter(try Tensor(theta, on: backend))
            try p.setGradient(gradient)
            let optimizer: any Optimizer = switch n {
            case "adam": try Adam([p], learningRate: 1e-3)
            case "sgd": try SGD([p], learningRate: 1e-3, momentum: 0.9)
            default: try Lion([p], learningRate: 1e-4)
            }
            try optimizer.step()  // warm-up: kernel build, state allocation
            errors.append(n == "adam" ? try adamError(p.value, theta, g) : nil)
            cases.append(("fused", n, { try optimizer.step() }))
        }
        if !noBaseline && names.contains("adam") {
            let composite = try CompositeAdam(theta: theta, gradient: gradient)
            try composite.step()
            errors.append(try adamError(composite.theta, theta, g))
            cases.append(("composite", "adam", { try composite.step() }))
        }
        try backend.synchronize()
        var timings = [Timing](repeating: Timing(), count: cases.count)
        for _ in 0..<common.iters {
            for (i, c) in cases.enumerated() {
                try timings[i].measure {
                    try c.step()
                    try backend.synchronize()
                }
            }
        }
        let baseline = cases.indices.first { cases[$0].impl == "composite" }.map { timings[$0].median }
        return cases.indices.map { i in
            Row(benchmark: "optimizer", backend: name, impl: "\(cases[i].impl) \(cases[i].optimizer)", pass: "step",
                shape: "[\(params)]", median_ms: timings[i].median, min_ms: timings[i].minimum, gflops: nil,
                gbps: bytes(cases[i].optimizer) * Double(params) / timings[i].median / 1e6,
                max_abs_error: errors[i], baseline: cases[i].optimizer == "adam" ? "composite" : "-",
                ratio_to_baseline: cases[i].optimizer == "adam" ? baseline.map { $0 / timings[i].median } : nil)
        }
    }

    /// The largest difference, on 4096 sampled elements, between θ after Adam's first step
    /// (lr 1e-3, β (0.9, 0.999), ε 1e-8, from zero moments) and its Float64 value.
    func adamError(_ result: Tensor, _ theta: [Float], _ g: [Float]) throws -> Double {
        let values = try result.scalars()
        var worst = 0.0
        for i in stride(from: 0, to: params, by: max(1, params / 4096)) {
            let gi = Double(g[i])
            let mHat = 0.1 * gi / 0.1, vHat = 0.001 * gi * gi / 0.001
            let expected = Double(theta[i]) - 1e-3 * mHat / (vHat.squareRoot() + 1e-8)
            worst = max(worst, abs(Double(values[i]) - expected))
        }
        return worst
    }
}

/// Adam as separate elementwise ops, one kernel each: what a framework without a fused update runs.
final class CompositeAdam {
    var theta: Tensor
    var m: Tensor, v: Tensor
    let gradient: Tensor
    var t = 0

    init(theta values: [Float], gradient: Tensor) throws {
        theta = try Tensor(values, on: gradient.backend)
        m = try Tensor.zeros(gradient.shape, on: gradient.backend)
        v = try Tensor.zeros(gradient.shape, on: gradient.backend)
        self.gradient = gradient
    }

    func step() throws {
        t += 1
        let bc1 = 1 - pow(0.9, Double(t)), bc2 = 1 - pow(0.999, Double(t))
        try withoutGradients {
            let g = gradient
            let m1: Tensor = try m * 0.9
            let m2: Tensor = try g * 0.1
            m = try m1 + m2
            let v1: Tensor = try v * 0.999
            let g2: Tensor = try g * g
            let v2: Tensor = try g2 * 0.001
            v = try v1 + v2
            let root: Tensor = try sqrt(v)
            let scaled: Tensor = try root * Float(1 / bc2.squareRoot())
            let denominator: Tensor = try scaled + 1e-8
            let ratio: Tensor = try m / denominator
            let stepTensor: Tensor = try ratio * Float(1e-3 / bc1)
            theta = try theta - stepTensor
        }
    }
}
