import ArgumentParser
import Foundation
import Kiln

/// `bench attention`: scaled dot-product attention, flash against naive (materialised scores),
/// on each backend, forward or forward + backward.
struct AttentionBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attention",
        abstract: "Flash vs naive scaled dot-product attention on [batch, heads, seq, headDim], or a whole multi-head attention layer.")

    @Option(help: "Sequence length (queries and keys).")
    var seq: Int = 4096
    @Option(help: "Batch size.")
    var batch: Int = 1
    @Option(help: "Query heads.")
    var heads: Int = 8
    @Option(name: .customLong("head-dim"), help: "Head dimension.")
    var headDim: Int = 64
    @Option(name: .customLong("kv-heads"), help: "Key/value heads (grouped-query attention); defaults to --heads.")
    var kvHeads: Int?
    @Flag(help: "Causal masking.")
    var causal = false
    @Flag(help: "Time forward + backward instead of forward.")
    var backward = false
    @Option(help: "flash, naive or both.")
    var impl: ImplChoice = .both
    @Option(help: "Comma-separated sequence lengths: report where flash overtakes naive.")
    var sweep: String?
    @Option(help: "sdpa (the attention op alone) or mha (a MultiHeadAttention layer, batch-first [B, L, heads·headDim], projections included).")
    var layer: LayerChoice = .sdpa
    @OptionGroup var common: CommonOptions

    enum ImplChoice: String, ExpressibleByArgument { case flash, naive, both }
    enum LayerChoice: String, ExpressibleByArgument { case sdpa, mha }

    func validate() throws {
        guard seq > 0, batch > 0, heads > 0, headDim > 0 else {
            throw ValidationError("--seq, --batch, --heads and --head-dim must be positive")
        }
        if let kv = kvHeads, kv <= 0 || heads % kv != 0 {
            throw ValidationError("--kv-heads \(kv) must divide --heads \(heads)")
        }
        guard common.iters > 0 else { throw ValidationError("--iters must be positive") }
    }

    func run() throws {
        let (backends, cl) = try selectedBackends(common.backend, device: common.device)
        // The best of three, so a busy moment does not lower the peak.
        let peak = (0..<3).map { _ in CPUBackend.measureFMAPeak() }.max() ?? 0
        var header = MachineHeader.lines(openCL: cl)
        header.append(String(format: "FMA peak (measured, all cores): %.0f GFLOP/s", peak))
        var rows: [Row] = []
        if layer == .mha {
            header.append("mha: self-attention layer, in/out projections + flash attention; baseline: the flash op alone on the same shapes, same run")
            for (name, backend) in backends { rows += try measureLayer(backend, name: name, peak: peak) }
        } else if let sweep {
            let lengths = sweep.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !lengths.isEmpty, lengths.allSatisfy({ $0 > 0 }) else {
                throw ValidationError("--sweep needs positive comma-separated lengths, got '\(sweep)'")
            }
            for (name, backend) in backends {
                var crossover: Int?
                for length in lengths {
                    let r = try measure(backend, name: name, seq: length, impls: [.flash, .naive], peak: peak)
                    rows += r
                    if crossover == nil, r.count == 2, r[0].median_ms < r[1].median_ms { crossover = length }
                }
                header.append("\(name): flash overtakes naive " + (crossover.map { "from seq \($0)" } ?? "at none of \(lengths)"))
            }
        } else {
            let impls: [AttentionImplementation] = impl == .both ? [.flash, .naive] : impl == .flash ? [.flash] : [.naive]
            for (name, backend) in backends {
                rows += try measure(backend, name: name, seq: seq, impls: impls, peak: peak)
            }
        }
        try report(rows, header: header, json: common.json)
    }

    /// Rows for flash and/or naive at one sequence length on one backend; the baseline is naive.
    func measure(_ backend: any Backend, name: String, seq: Int, impls: [AttentionImplementation],
                 peak: Double) throws -> [Row] {
        let kv = kvHeads ?? heads
        let qValues = (0..<(batch * heads * seq * headDim)).map { Float(sin(Double($0) * 0.013)) }
        let kValues = (0..<(batch * kv * seq * headDim)).map { Float(cos(Double($0) * 0.007)) }
        let vValues = (0..<(batch * kv * seq * headDim)).map { Float(sin(Double($0) * 0.011 + 1)) }
        let q = try Tensor(qValues, shape: [batch, heads, seq, headDim], on: backend)
        let k = try Tensor(kValues, shape: [batch, kv, seq, headDim], on: backend)
        let v = try Tensor(vValues, shape: [batch, kv, seq, headDim], on: backend)
        let dO = try Tensor.full([batch, heads, seq, headDim], value: 0.01, on: backend)

        func step(_ implementation: AttentionImplementation) throws -> Tensor {
            let r = try scaledDotProductAttention(query: q, key: k, value: v, isCausal: causal,
                                                  implementation: implementation)
            if backward {
                let g = try scaledDotProductAttentionBackward(query: q, key: k, value: v, output: r.output,
                                                              logSumExp: r.logSumExp, outputGradient: dO,
                                                              isCausal: causal, implementation: implementation)
                _ = g
            }
            try backend.synchronize()
            return r.output
        }

        var results: [(AttentionImplementation, Timing, Double, Int)] = []
        for implementation in impls {
            var output = try step(implementation)  // warm-up: kernel builds, pools
            // Peak extra memory: the high-water mark of live buffers above what existed before,
            // less the results the call returns (output and logsumexp; the gradients too with --backward).
            let before = backend.liveBytes
            backend.resetPeakLiveBytes()
            output = try step(implementation)
            let returned = [batch * heads * seq * headDim, batch * heads * seq]
                + (backward ? [batch * heads * seq * headDim, batch * kv * seq * headDim, batch * kv * seq * headDim] : [])
            let extra = backend.peakLiveBytes - before - returned.map { BufferSizeClass.capacity(for: $0) * 4 }.reduce(0, +)
            var timing = Timing()
            for _ in 0..<common.iters { try timing.measure { output = try step(implementation) } }
            results.append((implementation, timing, try sampledError(output.scalars(), qValues, kValues, vValues, seq: seq), extra))
        }
        let forwardFlops = 4.0 * Double(batch * heads) * Double(seq) * Double(seq) * Double(headDim) * (causal ? 0.5 : 1)
        let flops = forwardFlops * (backward ? 3.5 : 1)
        let naive = results.first { $0.0 == .naive }?.1.median
        return results.map { implementation, timing, error, extra in
            var row = Row(benchmark: "attention", backend: name, impl: implementation.rawValue,
                          pass: backward ? "fwd+bwd" : "fwd",
                          shape: "B\(batch) H\(heads)/\(kv) L\(seq) D\(headDim)" + (causal ? " causal" : ""),
                          median_ms: timing.median, min_ms: timing.minimum, gflops: flops / timing.median / 1e6,
                          gbps: nil, max_abs_error: error, baseline: "naive",
                          ratio_to_baseline: naive.map { $0 / timing.median })
            row.peak_fraction = flops / timing.median / 1e6 / peak
            row.peak_extra_mib = Double(extra) / 1_048_576
            return row
        }
    }

    /// A `MultiHeadAttention` self-attention layer (embedDim = heads·headDim, batch-first) forward,
    /// or forward + backward to the input and every parameter, against the flash op alone.
    func measureLayer(_ backend: any Backend, name: String, peak: Double) throws -> [Row] {
        let kv = kvHeads ?? heads
        let e = heads * headDim
        let mha = try MultiHeadAttention(embedDim: e, numHeads: heads, batchFirst: true, numKeyValueHeads: kv,
                                         seed: 1, on: backend)
        let x = try Tensor((0..<(batch * seq * e)).map { Float(sin(Double($0) * 0.013)) }, shape: [batch, seq, e], on: backend)
        let dY = try Tensor.full([batch, seq, e], value: 0.01, on: backend)
        let q = try Tensor.normal([batch, heads, seq, headDim], seed: 2, on: backend)
        let k = try Tensor.normal([batch, kv, seq, headDim], seed: 3, on: backend)
        let v = try Tensor.normal([batch, kv, seq, headDim], seed: 4, on: backend)
        let dO = try Tensor.full([batch, heads, seq, headDim], value: 0.01, on: backend)
        func layerStep() throws {
            mha.zeroGradients()
            let input = backward ? x.requiringGradient() : x
            let (y, _) = try mha.forward(input, input, input, isCausal: causal)
            if backward { try y.backward(dY) }
            try backend.synchronize()
        }
        func opStep() throws {
            let r = try scaledDotProductAttention(query: q, key: k, value: v, isCausal: causal, implementation: .flash)
            if backward {
                _ = try scaledDotProductAttentionBackward(query: q, key: k, value: v, output: r.output, logSumExp: r.logSumExp,
                                                          outputGradient: dO, isCausal: causal, implementation: .flash)
            }
            try backend.synchronize()
        }
        try layerStep()  // warm-up
        try opStep()
        var timings = [Timing(), Timing()]
        for _ in 0..<common.iters {
            try timings[0].measure { try layerStep() }
            try timings[1].measure { try opStep() }
        }
        let tokens = Double(batch * seq)
        let attention = 4.0 * Double(batch * heads) * Double(seq) * Double(seq) * Double(headDim) * (causal ? 0.5 : 1)
        let projections = 2.0 * tokens * Double(e) * Double(2 * e + 2 * kv * headDim)
        let layerFlops = backward ? 3.5 * attention + 3 * projections : attention + projections
        let opFlops = backward ? 3.5 * attention : attention
        let shape = "B\(batch) H\(heads)/\(kv) L\(seq) D\(headDim) E\(e)" + (causal ? " causal" : "")
        return [("mha layer", timings[0], layerFlops), ("flash op", timings[1], opFlops)].map { impl, t, flops in
            var row = Row(benchmark: "attention", backend: name, impl: impl, pass: backward ? "fwd+bwd" : "fwd",
                          shape: shape, median_ms: t.median, min_ms: t.minimum, gflops: flops / t.median / 1e6,
                          gbps: nil, max_abs_error: nil, baseline: "flash op", ratio_to_baseline: timings[1].median / t.median)
            row.peak_fraction = flops / t.median / 1e6 / peak
            return row
        }
    }

    /// Max |error| of 16 query rows of (batch 0, head 0) against a Float64 reference.
    func sampledError(_ output: [Float], _ q: [Float], _ k: [Float], _ v: [Float], seq: Int) throws -> Double {
        let scale = 1 / Double(headDim).squareRoot()
        var worst = 0.0
        for r in 0..<16 {
            let i = (r * 7919) % seq
            let visible = causal ? i + 1 : seq
            let scores = (0..<visible).map { j in
                (0..<headDim).reduce(0.0) { $0 + Double(q[i * headDim + $1]) * Double(k[j * headDim + $1]) } * scale
            }
            let m = scores.max() ?? 0
            let weights = scores.map { exp($0 - m) }
            let total = weights.reduce(0, +)
            for c in 0..<headDim {
                var o = 0.0
                for j in 0..<visible { o += weights[j] * Double(v[j * headDim + c]) }
                worst = Swift.max(worst, Swift.abs(o / total - Double(output[i * headDim + c])))
            }
        }
        return worst
    }
}
