import CBLAS
import Foundation
import Kiln

/// One result row; the same keys in every bench subcommand.
struct Row: Encodable {
    var benchmark: String
    var backend: String
    var impl: String
    /// "fwd", "bwd" or "fwd+bwd".
    var pass: String
    var shape: String
    var median_ms: Double
    var min_ms: Double
    var gflops: Double?
    var gbps: Double?
    var max_abs_error: Double?
    var baseline: String
    /// Baseline time ÷ this row's time (median), both measured in the same run.
    var ratio_to_baseline: Double?
    /// Achieved GFLOP/s ÷ the machine's measured FMA peak (compute-bound benchmarks).
    var peak_fraction: Double? = nil
    /// The high-water mark of buffers the op allocated beyond the results it returns, in MiB.
    var peak_extra_mib: Double? = nil

    enum CodingKeys: String, CodingKey {
        case benchmark, backend, impl, pass, shape, median_ms, min_ms, gflops, gbps, max_abs_error, baseline,
             ratio_to_baseline, peak_fraction, peak_extra_mib
    }

    /// Every key is always present; a value that does not apply is null.
    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(benchmark, forKey: .benchmark)
        try c.encode(backend, forKey: .backend)
        try c.encode(impl, forKey: .impl)
        try c.encode(pass, forKey: .pass)
        try c.encode(shape, forKey: .shape)
        try c.encode(median_ms, forKey: .median_ms)
        try c.encode(min_ms, forKey: .min_ms)
        try c.encode(gflops, forKey: .gflops)
        try c.encode(gbps, forKey: .gbps)
        try c.encode(max_abs_error, forKey: .max_abs_error)
        try c.encode(baseline, forKey: .baseline)
        try c.encode(ratio_to_baseline, forKey: .ratio_to_baseline)
        try c.encodeIfPresent(peak_fraction, forKey: .peak_fraction)
        try c.encodeIfPresent(peak_extra_mib, forKey: .peak_extra_mib)
    }
}

/// Wall-clock samples of repeated runs.
struct Timing {
    var samples: [Double] = []
    var median: Double {
        let s = samples.sorted()
        return s.isEmpty ? .nan : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
    var minimum: Double { samples.min() ?? .nan }

    /// Times `body` once in milliseconds and records it.
    mutating func measure(_ body: () throws -> Void) rethrows {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        samples.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
    }
}

/// Times each case in its own block (two warm-up runs, then `iterations`), pausing between blocks
/// so that OpenBLAS's thread pool, which spins for a while after a multi-threaded call, is idle
/// again before the next case: side by side in one run, without one case slowing the next.
func timeInBlocks(_ cases: [() throws -> Void], iterations: Int) throws -> [Timing] {
    var timings: [Timing] = []
    for run in cases {
        var timing = Timing()
        for _ in 0..<2 { try run() }
        for _ in 0..<iterations { try timing.measure(run) }
        timings.append(timing)
        Thread.sleep(forTimeInterval: 0.3)
    }
    return timings
}

/// Runs `body` with OpenBLAS on every core (the raw baseline as a user of OpenBLAS gets it), then
/// back to the one thread Kiln's CPU backend keeps it at.
func withOpenBLASThreads<R>(_ body: () throws -> R) rethrows -> R {
    openblas_set_num_threads(Int32(ProcessInfo.processInfo.activeProcessorCount))
    defer { openblas_set_num_threads(1) }
    return try body()
}

/// The machine header every report starts with.
enum MachineHeader {
    /// CPU flags from /proc/cpuinfo.
    static var cpuFlags: Set<Substring> {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return [] }
        return Set(line.split(separator: " "))
    }

    /// OpenBLAS cores whose sgemm kernels use AVX-512.
    static let avx512Cores: Set<String> = ["skylakex", "cooperlake", "sapphirerapids"]

    static func lines(openCL: OpenCLBackend?) -> [String] {
        var out: [String] = []
        let cores = ProcessInfo.processInfo.activeProcessorCount
        out.append("CPU: \(CPUBackend.cpuModel), \(cores) cores, Kiln SIMD kernels: \(CPUBackend.simdLevel)")
        let core = CPUBackend.openBLASCore
        let forced = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"]
        out.append("OpenBLAS: core \(core), raw baselines on \(ProcessInfo.processInfo.activeProcessorCount) threads, one thread inside Kiln"
            + (forced.map { ", OPENBLAS_CORETYPE=\($0)" } ?? ""))
        if cpuFlags.contains("avx512f") && !avx512Cores.contains(core.lowercased()) {
            out.append("warning: the CPU has AVX-512 but OpenBLAS runs its \(core) kernels"
                + (forced != nil ? " because OPENBLAS_CORETYPE=\(forced!) forces them; run with `env -u OPENBLAS_CORETYPE` for full speed" : ""))
        }
        if let cl = openCL {
            out.append("OpenCL: \(cl.device.name) (\(cl.device.platform), \(cl.device.type), \(cl.device.computeUnits) compute units), \(cl.family.rawValue)-style kernels")
        } else {
            out.append("OpenCL: not used")
        }
        return out
    }
}

/// Prints the header and rows as a table (stdout), or JSON (rows on stdout, header on stderr).
func report(_ rows: [Row], header: [String], json: Bool) throws {
    if json {
        for line in header { FileHandle.standardError.write(Data((line + "\n").utf8)) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try encoder.encode(rows), as: UTF8.self))
        return
    }
    header.forEach { print($0) }
    print("")
    func f(_ v: Double?, _ digits: Int = 2) -> String { v.map { String(format: "%.\(digits)f", $0) } ?? "-" }
    let extras = rows.contains { $0.peak_fraction != nil || $0.peak_extra_mib != nil }
    let columns = ["benchmark", "backend", "impl", "pass", "shape", "median ms", "min ms", "GFLOP/s", "GB/s",
                   "max abs err", "baseline", "ratio"] + (extras ? ["% peak", "extra MiB"] : [])
    let table = rows.map { r in
        [r.benchmark, r.backend, r.impl, r.pass, r.shape, f(r.median_ms), f(r.min_ms), f(r.gflops, 1), f(r.gbps, 1),
         r.max_abs_error.map { String(format: "%.2e", $0) } ?? "-", r.baseline, f(r.ratio_to_baseline, 3)]
            + (extras ? [f(r.peak_fraction.map { $0 * 100 }, 1), f(r.peak_extra_mib, 1)] : [])
    }
    let widths = columns.indices.map { i in ([columns[i]] + table.map { $0[i] }).map(\.count).max() ?? 0 }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }
            .joined(separator: "  ")
    }
    print(line(columns))
    table.forEach { print(line($0)) }
}

/// The OpenCL backend for `--device`, or a clear message when there is none.
/// The backends a `--backend` choice names, CPU first, and the OpenCL backend when one is used.
func selectedBackends(_ choice: BackendChoice, device: Int) throws -> (list: [(String, any Backend)], openCL: OpenCLBackend?) {
    let cl = choice != .cpu ? try openCLBackend(device) : nil
    var list: [(String, any Backend)] = []
    if choice != .opencl { list.append(("cpu", CPUBackend.shared)) }
    if let cl { list.append(("opencl", cl)) }
    return (list, cl)
}

func openCLBackend(_ index: Int) throws -> OpenCLBackend {
    do {
        return try OpenCLBackend(deviceIndex: index)
    } catch let error as BackendError {
        throw ValidationErrorMessage("bench: \(error.description). Install pocl-opencl-icd (scripts/setup) or use --backend cpu.")
    }
}

struct ValidationErrorMessage: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
