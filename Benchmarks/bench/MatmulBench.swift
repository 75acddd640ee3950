import ArgumentParser
import CBLAS
import Foundation
import Kiln

/// `bench matmul`: C = A·B for n×n matrices on each backend, against raw multi-threaded
/// `cblas_sgemm` timed in the same run (one block per row, see `timeInBlocks`).
struct MatmulBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "matmul", abstract: "Square single-precision matmul against raw cblas_sgemm.")

    @Option(help: "Matrix size n (n×n times n×n).")
    var n: Int = 2048

    @OptionGroup var common: CommonOptions

    func validate() throws {
        guard n > 0 else { throw ValidationError("--n must be positive, got \(n)") }
        guard common.iters > 0 else { throw ValidationError("--iters must be positive, got \(common.iters)") }
    }

    func run() throws {
        let runCPU = common.backend != .opencl
        let runCL = common.backend != .cpu
        let cl = runCL ? try openCLBackend(common.device) : nil
        let a = (0..<(n * n)).map { Float(sin(Double($0) * 0.37)) }
        let b = (0..<(n * n)).map { Float(cos(Double($0) * 0.11)) }
        var raw = [Float](repeating: 0, count: n * n)
        let flops = 2.0 * Double(n) * Double(n) * Double(n)

        var cases: [(name: String, backend: (any Backend)?, run: () throws -> [Float]?)] = []
        cases.append(("openblas", nil, {
            withOpenBLASThreads {
                raw.withUnsafeMutableBufferPointer { c in
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1, a, Int32(n),
                                b, Int32(n), 0, c.baseAddress, Int32(n))
                }
            }
            return nil
        }))
        var outputs: [String: Tensor] = [:]
        for (name, backend) in [("cpu", runCPU ? CPUBackend.shared as (any Backend)? : nil), ("opencl", cl as (any Backend)?)] {
            guard let backend else { continue }
            let ta = try Tensor(a, shape: [n, n], on: backend)
            let tb = try Tensor(b, shape: [n, n], on: backend)
            cases.append((name, backend, {
                let c = try matmul(ta, tb)
                try backend.synchronize()
                outputs[name] = c
                return nil
            }))
        }
        let timings = try timeInBlocks(cases.map { c in { _ = try c.run() } }, iterations: common.iters)

        // Error against a Float64 reference on 256 sampled entries.
        let picks = (0..<256).map { ($0 * 7919) % (n * n) }
        let reference = picks.map { idx -> Double in
            let i = idx / n, j = idx % n
            var s = 0.0
            for p in 0..<n { s += Double(a[i * n + p]) * Double(b[p * n + j]) }
            return s
        }
        func error(_ values: [Float]) -> Double {
            zip(picks, reference).map { Swift.abs(Double(values[$0]) - $1) }.max() ?? .nan
        }
        let baseline = timings[0].median
        var rows: [Row] = []
        for (i, c) in cases.enumerated() {
            let values = c.backend == nil ? raw : try outputs[c.name]?.scalars() ?? []
            rows.append(Row(benchmark: "matmul", backend: c.name == "openblas" ? "cpu" : c.name,
                            impl: c.name == "openblas" ? "cblas_sgemm (raw)" : "kiln",
                            pass: "fwd", shape: "\(n)x\(n)x\(n)", median_ms: timings[i].median,
                            min_ms: timings[i].minimum, gflops: flops / timings[i].median / 1e6, gbps: nil,
                            max_abs_error: error(values), baseline: "cblas_sgemm",
                            ratio_to_baseline: baseline / timings[i].median))
        }
        try report(rows, header: MachineHeader.lines(openCL: cl), json: common.json)
    }
}
