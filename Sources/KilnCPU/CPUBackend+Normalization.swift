import CKilnCPU
import Dispatch
import KilnCore

/// Outputs of at least this many elements (16 MiB) are written with non-temporal stores: larger than
/// a core's share of the caches, they would only evict the input, and skipping the read-for-ownership
/// of each output line raises the write bandwidth (~35 → ~48 GB/s on the project's machines).
let normalizationStreamingThreshold = 1 << 22

extension CPUBackend {
    /// Layer / RMS / group norm (`NormalizationKernels.rowNormalizationForward`): rows split over the worker threads, each chunk one `kiln_norm_rows_f32` call.
    public func rowNormalizationForward(_ d: RowNormalizationDescriptor, input: any BackendBuffer,
                                        weight: (any BackendBuffer)?, bias: (any BackendBuffer)?,
                                        output: any BackendBuffer, mean: (any BackendBuffer)?,
                                        inverseStandardDeviation: any BackendBuffer) throws {
        let context = "cpu.rowNormalizationForward"
        let px = try cpuBuffer(input, context).pointer
        let pw = try weight.map { try cpuBuffer($0, context).pointer }
        let pb = try bias.map { try cpuBuffer($0, context).pointer }
        let py = try cpuBuffer(output, context).pointer
        let pm = try mean.map { try cpuBuffer($0, context).pointer }
        let ps = try cpuBuffer(inverseStandardDeviation, context).pointer
        let streaming: Int32 = d.rows * d.count >= normalizationStreamingThreshold ? 1 : 0
        let rms: Int32 = d.kind == .rms ? 1 : 0
        parallelFor(d.rows, grain: Swift.max(1, (1 << 15) / Swift.max(d.count, 1))) { r in
            kiln_norm_rows_f32(px, pw, pb, py, pm, ps, Int64(r.lowerBound), Int64(r.upperBound), Int64(d.groups),
                               Int64(d.channelsPerGroup), Int64(d.spatial), d.eps, rms, streaming)
        }
    }

    /// The row norms' backward (`NormalizationKernels.rowNormalizationBackward`): rows split over the worker threads; each chunk sums its parameter gradients in double, the chunks are added at the end.
    public func rowNormalizationBackward(_ d: RowNormalizationDescriptor, outputGradient: any BackendBuffer,
                                         input: any BackendBuffer, weight: (any BackendBuffer)?,
                                         mean: (any BackendBuffer)?, inverseStandardDeviation: any BackendBuffer,
                                         inputGradient: any BackendBuffer, weightGradient: (any BackendBuffer)?,
                                         biasGradient: (any BackendBuffer)?) throws {
        let context = "cpu.rowNormalizationBackward"
        let px = try cpuBuffer(input, context).pointer
        let pg = try cpuBuffer(outputGradient, context).pointer
        let pw = try weight.map { try cpuBuffer($0, context).pointer }
        let pm = try mean.map { try cpuBuffer($0, context).pointer }
        let ps = try cpuBuffer(inverseStandardDeviation, context).pointer
        let pdx = try cpuBuffer(inputGradient, context).pointer
        let pdw = try weightGradient.map { try cpuBuffer($0, context).pointer }
        let pdb = try biasGradient.map { try cpuBuffer($0, context).pointer }
        let streaming: Int32 = d.rows * d.count >= normalizationStreamingThreshold ? 1 : 0
        let rms: Int32 = d.kind == .rms ? 1 : 0
        // Each chunk of rows sums its weight and bias gradients into its own double accumulators
        // (and a float scratch for per-element parameters); the chunks are added at the end.
        let parameters = d.parameterCount
        let chunks = Swift.max(1, Swift.min(workerCount, d.rows, d.rows * d.count / (1 << 15)))
        let accumulators = UnsafeMutablePointer<Double>.allocate(capacity: Swift.max(1, 2 * chunks * parameters))
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: Swift.max(1, 2 * chunks * parameters))
        defer {
            accumulators.deallocate()
            scratch.deallocate()
        }
        accumulators.initialize(repeating: 0, count: Swift.max(1, 2 * chunks * parameters))
        let size = (d.rows + chunks - 1) / chunks
        let work = UncheckedSendable({ (c: Int) in
            let lo = c * size, hi = Swift.min(d.rows, lo + size)
            guard lo < hi else { return }
            let dw = pdw == nil ? nil : accumulators + 2 * c * parameters
            let db = pdb == nil ? nil : accumulators + (2 * c + 1) * parameters
            kiln_norm_rows_backward_f32(px, pg, pw, pm, ps, pdx, dw, db, scratch + 2 * c * parameters,
                                        Int64(lo), Int64(hi), Int64(d.groups), Int64(d.channelsPerGroup),
                                        Int64(d.spatial), rms, streaming)
        })
        if chunks == 1 {
            work.value(0)
        } else {
            DispatchQueue.concurrentPerform(iterations: chunks) { work.value($0) }
        }
        for (target, slot) in [(pdw, 0), (pdb, 1)] {
            guard let target else { continue }
            for p in 0..<parameters {
                var total = 0.0
                for c in 0..<chunks { total += accumulators[(2 * c + slot) * parameters + p] }
                target[p] = Float(total)
            }
        }
    }

    /// Batch / instance norm (`NormalizationKernels.channelNormalizationForward`): channels split over the worker threads (`kiln_norm_channels_f32`).
    public func channelNormalizationForward(_ d: ChannelNormalizationDescriptor, input: any BackendBuffer,
                                            weight: (any BackendBuffer)?, bias: (any BackendBuffer)?,
                                            runningMean: (any BackendBuffer)?, runningVariance: (any BackendBuffer)?,
                                            output: any BackendBuffer, mean: any BackendBuffer,
                                            inverseStandardDeviation: any BackendBuffer,
                                            updatedRunningMean: (any BackendBuffer)?,
                                            updatedRunningVariance: (any BackendBuffer)?) throws {
        let context = "cpu.channelNormalizationForward"
        let px = try cpuBuffer(input, context).pointer
        let pw = try weight.map { try cpuBuffer($0, context).pointer }
        let pb = try bias.map { try cpuBuffer($0, context).pointer }
        let prm = try runningMean.map { try cpuBuffer($0, context).pointer }
        let prv = try runningVariance.map { try cpuBuffer($0, context).pointer }
        let py = try cpuBuffer(output, context).pointer
        let pm = try cpuBuffer(mean, context).pointer
        let ps = try cpuBuffer(inverseStandardDeviation, context).pointer
        let pnm = try updatedRunningMean.map { try cpuBuffer($0, context).pointer }
        let pnv = try updatedRunningVariance.map { try cpuBuffer($0, context).pointer }
        let streaming: Int32 = d.channels * d.reducedCount >= normalizationStreamingThreshold ? 1 : 0
        parallelFor(d.channels, grain: channelGrain(d)) { c in
            kiln_norm_channels_f32(px, pw, pb, prm, prv, py, pm, ps, pnm, pnv, Int64(d.batch), Int64(d.channels),
                                   Int64(d.spatial), Int64(c.lowerBound), Int64(c.upperBound), d.eps, d.momentum,
                                   d.training ? 1 : 0, streaming)
        }
    }

    /// The channel norms' backward (`NormalizationKernels.channelNormalizationBackward`): channels split over the worker threads (`kiln_norm_channels_backward_f32`).
    public func channelNormalizationBackward(_ d: ChannelNormalizationDescriptor, outputGradient: any BackendBuffer,
                                             input: any BackendBuffer, weight: (any BackendBuffer)?,
                                             mean: any BackendBuffer, inverseStandardDeviation: any BackendBuffer,
                                             inputGradient: any BackendBuffer, weightGradient: (any BackendBuffer)?,
                                             biasGradient: (any BackendBuffer)?) throws {
        let context = "cpu.channelNormalizationBackward"
        let px = try cpuBuffer(input, context).pointer
        let pg = try cpuBuffer(outputGradient, context).pointer
        let pw = try weight.map { try cpuBuffer($0, context).pointer }
        let pm = try cpuBuffer(mean, context).pointer
        let ps = try cpuBuffer(inverseStandardDeviation, context).pointer
        let pdx = try cpuBuffer(inputGradient, context).pointer
        let pdw = try weightGradient.map { try cpuBuffer($0, context).pointer }
        let pdb = try biasGradient.map { try cpuBuffer($0, context).pointer }
        let streaming: Int32 = d.channels * d.reducedCount >= normalizationStreamingThreshold ? 1 : 0
        parallelFor(d.channels, grain: channelGrain(d)) { c in
            kiln_norm_channels_backward_f32(px, pg, pw, pm, ps, pdx, pdw, pdb, Int64(d.batch), Int64(d.channels),
                                            Int64(d.spatial), Int64(c.lowerBound), Int64(c.upperBound),
                                            d.training ? 1 : 0, streaming)
        }
    }

    /// Channels per parallel chunk: about 32 Ki elements, in whole column tiles when spatial == 1.
    private func channelGrain(_ d: ChannelNormalizationDescriptor) -> Int {
        let grain = Swift.max(1, (1 << 15) / Swift.max(d.reducedCount, 1))
        return d.spatial == 1 ? (grain + 127) / 128 * 128 : grain
    }

    /// Local response norm (`NormalizationKernels.localResponseNormalizationForward`): (batch, position tile) units split over the worker threads (`kiln_lrn_f32`).
    public func localResponseNormalizationForward(_ d: LocalResponseNormalizationDescriptor, input: any BackendBuffer,
                                                  output: any BackendBuffer) throws {
        let context = "cpu.localResponseNormalizationForward"
        let px = try cpuBuffer(input, context).pointer
        let py = try cpuBuffer(output, context).pointer
        let units = d.batch * ((d.spatial + Int(KILN_LRN_TILE) - 1) / Int(KILN_LRN_TILE))
        parallelFor(units, grain: Swift.max(1, (1 << 15) / Swift.max(d.channels * Int(KILN_LRN_TILE), 1))) { u in
            kiln_lrn_f32(px, py, Int64(d.batch), Int64(d.channels), Int64(d.spatial), Int64(d.size), d.alpha,
                         d.beta, d.k, Int64(u.lowerBound), Int64(u.upperBound))
        }
    }

    /// Local response norm's backward (`NormalizationKernels.localResponseNormalizationBackward`): units as the forward, with a scratch buffer the size of the input.
    public func localResponseNormalizationBackward(_ d: LocalResponseNormalizationDescriptor,
                                                   input: any BackendBuffer, outputGradient: any BackendBuffer,
                                                   inputGradient: any BackendBuffer) throws {
        let context = "cpu.localResponseNormalizationBackward"
        let px = try cpuBuffer(input, context).pointer
        let pg = try cpuBuffer(outputGradient, context).pointer
        let pdx = try cpuBuffer(inputGradient, context).pointer
        let scratch = try allocator.allocate(count: d.batch * d.channels * d.spatial)
        let pt = scratch.pointer
        let units = d.batch * ((d.spatial + Int(KILN_LRN_TILE) - 1) / Int(KILN_LRN_TILE))
        parallelFor(units, grain: Swift.max(1, (1 << 15) / Swift.max(d.channels * Int(KILN_LRN_TILE), 1))) { u in
            kiln_lrn_backward_f32(px, pg, pdx, pt, Int64(d.batch), Int64(d.channels), Int64(d.spatial), Int64(d.size),
                                  d.alpha, d.beta, d.k, Int64(u.lowerBound), Int64(u.upperBound))
        }
        withExtendedLifetime(scratch) {}
    }
}
