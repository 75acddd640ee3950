import ArgumentParser
import Foundation
import Kiln

/// `bench norm`: the fused normalization kernels (layerNorm and rmsNorm on [rows, cols], batchNorm in
/// training on [N, C, H, W]), forward and backward, against an unfused composite of Kiln's elementwise
/// and reduction ops timed in the same run (round-robin). GB/s counts each tensor read or written
/// once: forward x and y, backward x, dy and dx.
struct NormBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "norm",
        abstract: "Fused layerNorm / rmsNorm / batchNorm, forward and backward, vs an unfused composite.")

    @Option(help: "Rows of the layerNorm / rmsNorm input.")
    var rows: Int = 8192
    @Option(help: "Columns (normalized size) of the layerNorm / rmsNorm input.")
    var cols: Int = 4096
    @Option(name: .customLong("bn-shape"), help: "batchNorm input shape N,C,H,W.")
    var bnShape: String = "32,256,28,28"
    @Option(help: "Comma-separated ops: layer, rms, batch.")
    var ops: String = "layer,rms,batch"
    @Option(help: "fwd, bwd or both.")
    var pass: PassChoice = .both
    @Flag(name: .customLong("no-baseline"), help: "Skip the unfused composite.")
    var noBaseline = false
    @OptionGroup var common: CommonOptions

    enum PassChoice: String, ExpressibleByArgument { case fwd, bwd, both }

    func validate() throws {
        guard rows > 0, cols > 0 else { throw ValidationError("--rows and --cols must be positive") }
        guard common.iters > 0 else { throw ValidationError("--iters must be positive") }
        _ = try batchShape()
        for op in opList where !["layer", "rms", "batch"].contains(op) {
            throw ValidationError("unknown op '\(op)' in --ops; use layer, rms, batch")
        }
    }

    var opList: [String] { ops.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }

    func batchShape() throws -> [Int] {
        let shape = bnShape.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard shape.count >= 2, shape.allSatisfy({ $0 > 0 }), shape[0] * shape[2...].reduce(1, *) > 1 else {
            throw ValidationError("--bn-shape needs N,C[,…] positive with N·spatial > 1, got '\(bnShape)'")
        }
        return shape
    }

    func run() throws {
        let (backends, cl) = try selectedBackends(common.backend, device: common.device)
        var header = MachineHeader.lines(openCL: cl)
        header.append("GB/s counts bytes read + written once (fwd: x, y; bwd: x, dy, dx); baseline: unfused composite of elementwise and reduction ops, same run")
        var rows: [Row] = []
        for (name, backend) in backends {
            for op in opList {
                let problem = try NormProblem(op: op, rows: self.rows, cols: cols, batchShape: try batchShape(), on: backend)
                if pass != .bwd { rows += try measure(problem, backward: false, backend: backend, name: name) }
                if pass != .fwd { rows += try measure(problem, backward: true, backend: backend, name: name) }
            }
        }
        try report(rows, header: header, json: common.json)
    }

    /// Fused and composite rows for one op and pass on one backend.
    func measure(_ p: NormProblem, backward: Bool, backend: any Backend, name: String) throws -> [Row] {
        var cases: [(impl: String, run: () throws -> Tensor)] = [("fused", { try p.fused(backward: backward) })]
        if !noBaseline { cases.append(("composite", { try p.composite(backward: backward) })) }
        var outputs = [Tensor?](repeating: nil, count: cases.count)
        var extra = [Int](repeating: 0, count: cases.count)
        for (i, c) in cases.enumerated() {
            outputs[i] = try c.run()  // warm-up: kernel builds, pools
            try backend.synchronize()
            let before = backend.liveBytes
            backend.resetPeakLiveBytes()
            outputs[i] = try c.run()
            try backend.synchronize()
            extra[i] = backend.peakLiveBytes - before
        }
        var timings = [Timing](repeating: Timing(), count: cases.count)
        for _ in 0..<common.iters {
            for (i, c) in cases.enumerated() {
                outputs[i] = nil  // release the previous output so the pool can reuse it
                try timings[i].measure {
                    outputs[i] = try c.run()
                    try backend.synchronize()
                }
            }
        }
        let bytes = Double(p.elementCount) * 4 * (backward ? 3 : 2)
        let baseline = noBaseline ? nil : timings.last?.median
        return try cases.indices.map { i in
            var row = Row(benchmark: p.op == "batch" ? "batchNorm" : p.op == "rms" ? "rmsNorm" : "layerNorm",
                          backend: name, impl: cases[i].impl, pass: backward ? "bwd" : "fwd", shape: p.shapeText,
                          median_ms: timings[i].median, min_ms: timings[i].minimum, gflops: nil,
                          gbps: bytes / timings[i].median / 1e6,
                          max_abs_error: try outputs[i].map { try p.sampledError($0, backward: backward) },
                          baseline: "composite", ratio_to_baseline: baseline.map { $0 / timings[i].median })
            row.peak_extra_mib = Double(extra[i]) / 1_048_576
            return row
        }
    }
}

/// One benchmark problem: inputs on a backend, the fused and composite computations, and a Float64
/// reference on a few sampled rows (channels).
struct NormProblem {
    let op: String
    let shape: [Int]
    let x: Tensor, gradient: Tensor, weight: Tensor, bias: Tensor
    let xValues: [Float], gValues: [Float], wValues: [Float], bValues: [Float]
    /// The fused forward's statistics, inputs of both backward passes.
    let mean: Tensor?
    let sigma: Tensor
    let eps: Float = 1e-5

    init(op: String, rows: Int, cols: Int, batchShape: [Int], on backend: any Backend) throws {
        self.op = op
        shape = op == "batch" ? batchShape : [rows, cols]
        let count = shape.reduce(1, *)
        let parameters = shape[1]
        xValues = (0..<count).map { Float(sin(Double($0) * 0.0137) * 1.7 + 0.3) }
        gValues = (0..<count).map { Float(cos(Double($0) * 0.0071)) }
        wValues = (0..<parameters).map { Float(1 + 0.25 * sin(Double($0))) }
        bValues = (0..<parameters).map { Float(0.1 * cos(Double($0))) }
        x = try Tensor(xValues, shape: shape, on: backend)
        gradient = try Tensor(gValues, shape: shape, on: backend)
        weight = try Tensor(wValues, on: backend)
        bias = try Tensor(bValues, on: backend)
        let stats: NormalizationOutput
        switch op {
        case "layer": stats = try layerNormWithStatistics(x, normalizedShape: [cols], weight: weight, bias: bias, eps: eps)
        case "rms": stats = try rmsNormWithStatistics(x, normalizedShape: [cols], weight: weight, eps: eps)
        default: stats = try batchNorm(x, weight: weight, bias: bias, training: true, eps: eps)
        }
        mean = stats.mean
        sigma = stats.inverseStandardDeviation
    }

    var elementCount: Int { shape.reduce(1, *) }
    var shapeText: String { shape.map(String.init).joined(separator: "x") + (op == "batch" ? " training" : "") }

    /// The fused op: the output (forward) or the input gradient (backward).
    func fused(backward: Bool) throws -> Tensor {
        let cols = shape[1]
        switch (op, backward) {
        case ("layer", false): return try layerNorm(x, normalizedShape: [cols], weight: weight, bias: bias, eps: eps)
        case ("layer", true):
            return try layerNormBackward(gradient, input: x, normalizedShape: [cols], mean: mean ?? x,
                                         inverseStandardDeviation: sigma, weight: weight, bias: bias).input
        case ("rms", false): return try rmsNorm(x, normalizedShape: [cols], weight: weight, eps: eps)
        case ("rms", true):
            return try rmsNormBackward(gradient, input: x, normalizedShape: [cols], inverseStandardDeviation: sigma,
                                       weight: weight).input
        case (_, false): return try batchNorm(x, weight: weight, bias: bias, training: true, eps: eps).output
        default:
            return try batchNormBackward(gradient, input: x, mean: mean ?? x, inverseStandardDeviation: sigma,
                                         weight: weight, bias: bias, training: true).input
        }
    }

    /// The same result from Kiln's elementwise, reduction and shape ops (what a library without fused
    /// kernels runs); the parameter gradients are computed too, as the fused backward does.
    func composite(backward: Bool) throws -> Tensor {
        if op == "batch" {
            let c = shape[1]
            let axes = [0] + Array(2..<shape.count)
            let view = [1, c] + [Int](repeating: 1, count: shape.count - 2)
            let w = try weight.reshaped(to: view), b = try bias.reshaped(to: view)
            let m = Float(elementCount / c)
            if !backward {
                let mu = try x.mean(alongAxes: axes, keepingDimensions: true)
                let centered = try x - mu
                let variance = try (centered * centered).mean(alongAxes: axes, keepingDimensions: true)
                return try centered * rsqrt(variance + eps) * w + b
            }
            let mu = try (mean ?? x).reshaped(to: view), s = try sigma.reshaped(to: view)
            let xhat = try (x - mu) * s
            let sumG = try gradient.sum(alongAxes: axes, keepingDimensions: true)  // also ∂bias
            let sumGX = try (gradient * xhat).sum(alongAxes: axes, keepingDimensions: true)  // also ∂weight
            return try w * s * (gradient - sumG * (1 / m) - xhat * (sumGX * (1 / m)))
        }
        let rms = op == "rms"
        if !backward {
            if rms {
                let meanSquare = try (x * x).mean(alongAxes: [-1], keepingDimensions: true)
                return try x * rsqrt(meanSquare + eps) * weight
            }
            let mu = try x.mean(alongAxes: [-1], keepingDimensions: true)
            let centered = try x - mu
            let variance = try (centered * centered).mean(alongAxes: [-1], keepingDimensions: true)
            return try centered * rsqrt(variance + eps) * weight + bias
        }
        let rowsShape = [shape[0], 1]
        let s = try sigma.reshaped(to: rowsShape)
        let xhat = rms ? try x * s : try (x - (mean ?? x).reshaped(to: rowsShape)) * s
        let gw = try gradient * weight
        let c2 = try (gw * xhat).mean(alongAxes: [-1], keepingDimensions: true)
        _ = try (gradient * xhat).sum(alongAxes: [0])  // ∂weight
        if rms { return try s * (gw - xhat * c2) }
        _ = try gradient.sum(alongAxes: [0])  // ∂bias
        let c1 = try gw.mean(alongAxes: [-1], keepingDimensions: true)
        return try s * (gw - c1 - xhat * c2)
    }

    /// Max |error| against a Float64 reference on 4 sampled rows (layer / RMS) or channels (batch).
    func sampledError(_ result: Tensor, backward: Bool) throws -> Double {
        let values = try result.scalars()
        var worst = 0.0
        if op == "batch" {
            let (n, c) = (shape[0], shape[1])
            let spatial = shape[2...].reduce(1, *)
            for channel in [0, c / 3, c / 2, c - 1] {
                let indices = (0..<n).flatMap { b in (0..<spatial).map { (b * c + channel) * spatial + $0 } }
                worst = Swift.max(worst, reference(indices, channel: channel, values: values, backward: backward))
            }
        } else {
            let cols = shape[1]
            for row in [0, shape[0] / 3, shape[0] / 2, shape[0] - 1] {
                let indices = Array((row * cols)..<((row + 1) * cols))
                worst = Swift.max(worst, reference(indices, channel: nil, values: values, backward: backward))
            }
        }
        return worst
    }

    /// The largest error over `indices` (one normalized group) of the forward output or input gradient.
    private func reference(_ indices: [Int], channel: Int?, values: [Float], backward: Bool) -> Double {
        let n = Double(indices.count)
        let xs = indices.map { Double(xValues[$0]) }, gs = indices.map { Double(gValues[$0]) }
        let ws = indices.enumerated().map { Double(wValues[channel ?? $0.offset]) }
        let rms = op == "rms"
        let mu = rms ? 0 : xs.reduce(0, +) / n
        let variance = xs.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / n
        let s = 1 / (variance + Double(eps)).squareRoot()
        let xhat = xs.map { ($0 - mu) * s }
        var expected: [Double]
        if !backward {
            expected = indices.indices.map { i in xhat[i] * ws[i] + (rms ? 0 : Double(bValues[channel ?? i])) }
        } else {
            let gw = zip(gs, ws).map { $0 * $1 }
            let c1 = rms ? 0 : gw.reduce(0, +) / n
            let c2 = zip(gw, xhat).map { $0 * $1 }.reduce(0, +) / n
            expected = indices.indices.map { i in s * (gw[i] - c1 - xhat[i] * c2) }
        }
        return zip(indices, expected).map { Swift.abs(Double(values[$0]) - $1) }.max() ?? 0
    }
}
