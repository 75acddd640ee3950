import ArgumentParser
import CBLAS
import Foundation
import Kiln

/// `bench conv`: ResNet-style 3×3, pad-1 convolutions (batch 8) forward and backward on each backend,
/// against raw multi-threaded `cblas_sgemm` on the equivalent GEMMs, timed in the same run (one block
/// per row, see `timeInBlocks`): forward `[C_out × 9·C_in]·[9·C_in × N·H·W]`; backward the input-gradient GEMM `[9·C_in × C_out]·[C_out × N·H·W]`
/// plus the weight-gradient GEMM `[C_out × N·H·W]·[N·H·W × 9·C_in]`.
struct ConvBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conv", abstract: "ResNet-style conv2d forward and backward against raw cblas_sgemm.")

    @Option(help: "Batch size.")
    var batch: Int = 8

    @Option(help: "Layers as channels@size, comma-separated (3×3 kernel, padding 1, C→C).")
    var layers: String = "64@56,128@28,256@14"

    @OptionGroup var common: CommonOptions

    func validate() throws {
        guard batch > 0, common.iters > 0 else { throw ValidationError("--batch and --iters must be positive") }
        guard parsedLayers != nil else { throw ValidationError("--layers must look like 64@56,128@28") }
    }

    var parsedLayers: [(channels: Int, size: Int)]? {
        let parts = layers.split(separator: ",").map { $0.split(separator: "@").compactMap { Int($0) } }
        guard parts.allSatisfy({ $0.count == 2 && $0[0] > 0 && $0[1] > 0 }) else { return nil }
        return parts.map { ($0[0], $0[1]) }
    }

    func run() throws {
        let (backends, cl) = try selectedBackends(common.backend, device: common.device)
        var rows: [Row] = []
        for (c, s) in parsedLayers ?? [] {
            rows += try layer(channels: c, size: s, backends: backends)
        }
        try report(rows, header: MachineHeader.lines(openCL: cl), json: common.json)
    }

    private func layer(channels c: Int, size s: Int, backends: [(String, any Backend)]) throws -> [Row] {
        let n = batch, k = 9 * c, cols = n * s * s
        let shapeName = "N\(n) \(c)→\(c) \(s)x\(s) k3 p1"
        let x = (0..<(n * c * s * s)).map { Float(sin(Double($0) * 0.37)) }
        let w = (0..<(c * k)).map { Float(cos(Double($0) * 0.11)) * 0.05 }
        let g = (0..<(n * c * s * s)).map { Float(sin(Double($0) * 0.13)) }
        // Raw GEMM operands of the same sizes.
        let colData = (0..<(k * cols)).map { Float(sin(Double($0) * 0.29)) }
        var rawOut = [Float](repeating: 0, count: Swift.max(k * cols, c * k))
        let flops = 2.0 * Double(c) * Double(k) * Double(cols)

        var cases: [(name: String, pass: String, run: () throws -> Void)] = []
        cases.append(("openblas", "fwd", {
            withOpenBLASThreads { rawOut.withUnsafeMutableBufferPointer { out in
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(c), Int32(cols), Int32(k), 1, w, Int32(k),
                            colData, Int32(cols), 0, out.baseAddress, Int32(cols))
            } }
        }))
        cases.append(("openblas", "bwd", {
            withOpenBLASThreads { rawOut.withUnsafeMutableBufferPointer { out in
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(k), Int32(cols), Int32(c), 1, w, Int32(k),
                            colData, Int32(cols), 0, out.baseAddress, Int32(cols))
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(c), Int32(k), Int32(cols), 1, colData,
                            Int32(cols), colData, Int32(cols), 0, out.baseAddress, Int32(k))
            } }
        }))
        var forwardOut: [String: Tensor] = [:]
        var backwardOut: [String: Tensor] = [:]
        for (name, backend) in backends {
            let tx = try Tensor(x, shape: [n, c, s, s], on: backend)
            let tw = try Tensor(w, shape: [c, c, 3, 3], on: backend)
            let tg = try Tensor(g, shape: [n, c, s, s], on: backend)
            cases.append((name, "fwd", {
                forwardOut[name] = try conv2d(tx, weight: tw, padding: 1)
                try backend.synchronize()
            }))
            cases.append((name, "bwd", {
                backwardOut[name] = try conv2dBackward(tg, input: tx, weight: tw, padding: 1).input
                try backend.synchronize()
            }))
        }
        let timings = try timeInBlocks(cases.map(\.run), iterations: common.iters)

        // Errors against Float64 sums at 64 sampled positions: y for fwd, ∂L/∂x for bwd.
        let picks = (0..<64).map { ($0 * 7919) % (n * c * s * s) }
        func value(_ a: [Float], _ b: Int, _ ch: Int, _ i: Int, _ j: Int) -> Double {
            i < 0 || i >= s || j < 0 || j >= s ? 0 : Double(a[((b * c + ch) * s + i) * s + j])
        }
        func sample(_ idx: Int, backward: Bool) -> Double {
            let j = idx % s, i = (idx / s) % s, ch = (idx / (s * s)) % c, b = idx / (c * s * s)
            var sum = 0.0
            for other in 0..<c {
                for kh in 0..<3 {
                    for kw in 0..<3 {
                        sum += backward
                            ? value(g, b, other, i + 1 - kh, j + 1 - kw) * Double(w[((other * c + ch) * 3 + kh) * 3 + kw])
                            : value(x, b, other, i - 1 + kh, j - 1 + kw) * Double(w[((ch * c + other) * 3 + kh) * 3 + kw])
                    }
                }
            }
            return sum
        }
        let reference = (fwd: picks.map { sample($0, backward: false) }, bwd: picks.map { sample($0, backward: true) })
        func error(_ t: Tensor?, backward: Bool) throws -> Double? {
            guard let values = try t?.scalars() else { return nil }
            return zip(picks, backward ? reference.bwd : reference.fwd).map { Swift.abs(Double(values[$0]) - $1) }.max()
        }
        var rows: [Row] = []
        for (i, cs) in cases.enumerated() {
            let backward = cs.pass == "bwd"
            let baseline = timings[backward ? 1 : 0].median
            let f = backward ? 2 * flops : flops
            let raw = cs.name == "openblas"
            rows.append(Row(benchmark: "conv", backend: raw ? "cpu" : cs.name,
                            impl: raw ? "cblas_sgemm (raw, equivalent GEMM)" : "kiln",
                            pass: backward ? "bwd (input+weight)" : "fwd", shape: shapeName,
                            median_ms: timings[i].median, min_ms: timings[i].minimum,
                            gflops: f / timings[i].median / 1e6, gbps: nil,
                            max_abs_error: raw ? nil : try error(backward ? backwardOut[cs.name] : forwardOut[cs.name],
                                                                 backward: backward),
                            baseline: "cblas_sgemm", ratio_to_baseline: baseline / timings[i].median))
        }
        return rows
    }
}
