// Flash attention on the CPU: softmax(scale·Q·Kᵀ + mask)·V and its gradients without materialising
// the score matrix. Swift orchestrates (work split, tiles, the tile GEMMs); the tile math between the
// GEMMs (masking, online softmax with a vectorised exp2, dropout, dS) and, with AVX-512, the tile
// GEMMs themselves are C in CKilnCPU/attention.c. Without AVX-512 the GEMMs are OpenBLAS calls, at
// one OpenBLAS thread per worker.
import CBLAS
import CKilnCPU
import Foundation
import KilnCore

extension CPUBackend: AttentionKernels {
    /// Query rows per tile (lowered for small problems so that every worker gets work).
    static let attentionQueryBlock = 256
    /// Keys per tile.
    static let attentionKeyBlock = 512

    /// Forward pass, tile by tile: for each query block of 256 rows and each key block of 512 keys
    /// the block can see, `S = scale·log2(e)·Q·Kᵀ`, then the online softmax update
    /// `m' = max(m, rowmax S)`, `P = 2^(S − m')`, `l = 2^(m − m')·l + rowsum P`, `O = 2^(m − m')·O`,
    /// then `O += P·V`; finally `O /= l`, `lse = ln2·m + ln l`. Key blocks hidden by the causal or
    /// window rule are skipped. Work is split over batch × heads × query blocks (the heaviest
    /// causal blocks first) on the backend's workers. Accumulates in Float32.
    /// Extra memory per worker: one 256 × 528 score tile, the transposed key block and two row
    /// vectors (≈ 1 MiB).
    public func attentionForward(_ descriptor: AttentionDescriptor, query: any BackendBuffer, key: any BackendBuffer,
                                 value: any BackendBuffer, mask: (any BackendBuffer)?, output: any BackendBuffer,
                                 logSumExp: any BackendBuffer) throws {
        let context = "cpu.attentionForward"
        let d = descriptor
        let q = try cpuBuffer(query, context).pointer
        let k = try cpuBuffer(key, context).pointer
        let v = try cpuBuffer(value, context).pointer
        let maskPointer = try mask.map { try cpuBuffer($0, context).pointer }
        let out = try cpuBuffer(output, context).pointer
        let lse = try cpuBuffer(logSumExp, context).pointer
        let rowCount = d.batch * d.heads * d.seqQ
        guard rowCount > 0 else { return }
        if d.seqK == 0 {
            // No key at all: every row sees nothing.
            out.update(repeating: 0, count: rowCount * d.valueDim)
            lse.update(repeating: -.infinity, count: rowCount)
            return
        }
        let shape = AttentionTiling(d, workers: workerCount)
        let bq = shape.queryBlock, bk = shape.keyBlock
        let queryBlocks = (d.seqQ + bq - 1) / bq
        let headCount = d.batch * d.heads
        let units = headCount * queryBlocks
        let workers = Swift.min(workerCount, units)
        let ld = attentionTileStride(bk)
        let products = AttentionProducts()
        let transposedCount = products.wide ? d.headDim * ld : 0
        let scratch = try (0..<workers).map { _ in
            try allocator.allocate(count: bq * ld + transposedCount + 2 * bq)
        }
        let queue = AttentionWorkQueue(count: units)
        let group = d.heads / d.kvHeads
        let scoreScale = d.scale * Float(M_LOG2E)

        runWorkers(workers) { worker in
            let s = scratch[worker].pointer
            let kT = s + bq * ld
            let rowMax = kT + transposedCount
            let rowSum = rowMax + bq
            while let unit = queue.claim() {
                // Heaviest query blocks first under causal masking (their rows see the most keys).
                let rank = unit / headCount
                let qb = d.isCausal || d.window > 0 ? queryBlocks - 1 - rank : rank
                let bh = unit % headCount
                let b = bh / d.heads, h = bh % d.heads
                let kvHead = b * d.kvHeads + h / group
                let q0 = qb * bq
                let rows = Swift.min(bq, d.seqQ - q0)
                let qBlock = q + (bh * d.seqQ + q0) * d.headDim
                let oBlock = out + (bh * d.seqQ + q0) * d.valueDim
                oBlock.update(repeating: 0, count: rows * d.valueDim)
                rowMax.update(repeating: -.infinity, count: rows)
                rowSum.update(repeating: 0, count: rows)
                let keys = d.visibleKeys(queries: q0..<(q0 + rows))
                for k0 in stride(from: keys.lowerBound, to: keys.upperBound, by: bk) {
                    let cols = Swift.min(bk, keys.upperBound - k0)
                    let kBlock = k + (kvHead * d.seqK + k0) * d.headDim
                    let vBlock = v + (kvHead * d.seqK + k0) * d.valueDim
                    products.transpose(kBlock, rows: cols, columns: d.headDim, into: kT, ld)
                    products.scores(rows, cols, d.headDim, scoreScale, qBlock, kBlock, kT, ld, into: s, ld)
                    var tile = d.tile(batch: b, head: h, query0: q0, key0: k0, rows: rows, cols: cols,
                                      mask: maskPointer)
                    kiln_attention_softmax_step_f32(&tile, s, Int64(ld), rowMax, rowSum, oBlock,
                                                    Int64(d.valueDim), Int64(d.valueDim))
                    products.accumulate(false, rows, d.valueDim, cols, 1, s, ld, vBlock, into: oBlock)
                }
                kiln_attention_finish_f32(Int64(rows), rowMax, rowSum, oBlock, Int64(d.valueDim),
                                          Int64(d.valueDim), lse + bh * d.seqQ + q0)
            }
        }
    }

    /// Backward pass, recomputing `P` tile by tile from `lse`: `D = rowsum(dO∘O)` first, then per
    /// tile `S`, `P = 2^(S − log2(e)·lse)`, `dV += (P∘keep)ᵀ·dO`, `dP = dO·Vᵀ`,
    /// `dS = P∘(dP∘keep − D)`, `dQ += scale·dS·K`, `dK += scale·dSᵀ·Q` (five tile GEMMs).
    /// Accumulates in Float32. Extra memory: two 256 × 528 tiles (four with dropout) and the
    /// transposed key and value blocks per worker, D, and the dQ copies described below.
    ///
    /// Race-free split: a work unit is a (batch, kv head) pair — optionally with a share of its
    /// key blocks — and loops over its key blocks, then over the query heads of its group and
    /// their query blocks. The unit alone writes the dK/dV rows of its key blocks, so those never
    /// race. dQ rows of the group's query heads are written only by units of that (batch, kv head):
    /// with one share per pair (enough pairs to keep every worker busy) the unit writes dQ in place;
    /// when there are too few pairs, each pair's key blocks are dealt to `shares` units
    /// (interleaved, so causal work stays balanced), share 0 accumulating dQ in place and share
    /// s > 0 in its own zeroed copy of dQ, summed into dQ at the end.
    public func attentionBackward(_ descriptor: AttentionDescriptor, query: any BackendBuffer, key: any BackendBuffer,
                                  value: any BackendBuffer, mask: (any BackendBuffer)?, output: any BackendBuffer,
                                  logSumExp: any BackendBuffer, outputGradient: any BackendBuffer,
                                  queryGradient: any BackendBuffer, keyGradient: any BackendBuffer,
                                  valueGradient: any BackendBuffer) throws {
        let context = "cpu.attentionBackward"
        let d = descriptor
        let q = try cpuBuffer(query, context).pointer
        let k = try cpuBuffer(key, context).pointer
        let v = try cpuBuffer(value, context).pointer
        let maskPointer = try mask.map { try cpuBuffer($0, context).pointer }
        let o = try cpuBuffer(output, context).pointer
        let lse = try cpuBuffer(logSumExp, context).pointer
        let dO = try cpuBuffer(outputGradient, context).pointer
        let dQ = try cpuBuffer(queryGradient, context).pointer
        let dK = try cpuBuffer(keyGradient, context).pointer
        let dV = try cpuBuffer(valueGradient, context).pointer
        let rowCount = d.batch * d.heads * d.seqQ
        let dQCount = rowCount * d.headDim
        let keyRows = d.batch * d.kvHeads * d.seqK
        attentionZero(dQ, dQCount)
        attentionZero(dK, keyRows * d.headDim)
        attentionZero(dV, keyRows * d.valueDim)
        guard rowCount > 0, keyRows > 0 else { return }

        // D_i = Σ_c dO_ic·O_ic.
        let rowDotBuffer = try allocator.allocate(count: rowCount)
        let rowDot = rowDotBuffer.pointer
        parallelFor(rowCount, grain: Swift.max(1, (1 << 15) / Swift.max(d.valueDim, 1))) { r in
            kiln_attention_row_dot_f32(Int64(r.count), Int64(d.valueDim), dO + r.lowerBound * d.valueDim,
                                       o + r.lowerBound * d.valueDim, rowDot + r.lowerBound)
        }

        var shape = AttentionTiling(d, workers: workerCount)
        let pairs = d.batch * d.kvHeads
        var shares = 1
        if pairs < workerCount || (pairs % workerCount != 0 && pairs < 4 * workerCount) {
            // Too few (batch, kv head) pairs to balance: deal each pair's key blocks to several units.
            while shape.keyBlock > 64 && (d.seqK + shape.keyBlock - 1) / shape.keyBlock < workerCount {
                shape.keyBlock /= 2
            }
            let keyBlocks = (d.seqK + shape.keyBlock - 1) / shape.keyBlock
            // At least one private dQ copy; more only while they fit in 64 MiB.
            let copyBudget = Swift.max(1, (64 << 20) / Swift.max(1, dQCount * 4))
            shares = Swift.max(1, Swift.min(workerCount, keyBlocks, 1 + copyBudget))
        }
        let bq = shape.queryBlock, bk = shape.keyBlock
        let keyBlocks = (d.seqK + bk - 1) / bk
        let copies = try (1..<shares).map { _ in try allocator.allocate(count: dQCount) }
        for copy in copies { attentionZero(copy.pointer, dQCount) }

        let units = pairs * shares
        let workers = Swift.min(workerCount, units)
        let dropout = d.dropout > 0
        let ld = attentionTileStride(bk)
        let tileSize = bq * ld
        let products = AttentionProducts()
        let transposedCount = products.wide ? (d.headDim + d.valueDim) * ld : 0
        let scratch = try (0..<workers).map { _ in
            try allocator.allocate(count: tileSize * (dropout ? 4 : 2) + transposedCount)
        }
        let queue = AttentionWorkQueue(count: units)
        let group = d.heads / d.kvHeads
        let scoreScale = d.scale * Float(M_LOG2E)

        runWorkers(workers) { worker in
            let p = scratch[worker].pointer
            let dp = p + tileSize
            let kT = dp + tileSize * (dropout ? 3 : 1)
            let vT = kT + d.headDim * ld
            let keep: UnsafeMutablePointer<Float>? = dropout ? dp + tileSize : nil
            let dropped: UnsafeMutablePointer<Float>? = dropout ? dp + 2 * tileSize : nil
            while let unit = queue.claim() {
                let pair = unit / shares, share = unit % shares
                let b = pair / d.kvHeads
                let kBase = k + pair * d.seqK * d.headDim
                let vBase = v + pair * d.seqK * d.valueDim
                let dQTarget = share == 0 ? dQ : copies[share - 1].pointer
                for kb in stride(from: share, to: keyBlocks, by: shares) {
                    let k0 = kb * bk
                    let cols = Swift.min(bk, d.seqK - k0)
                    let kBlock = kBase + k0 * d.headDim
                    let vBlock = vBase + k0 * d.valueDim
                    let dKBlock = dK + (pair * d.seqK + k0) * d.headDim
                    let dVBlock = dV + (pair * d.seqK + k0) * d.valueDim
                    let queries = d.visibleQueries(keys: k0..<(k0 + cols))
                    products.transpose(kBlock, rows: cols, columns: d.headDim, into: kT, ld)
                    products.transpose(vBlock, rows: cols, columns: d.valueDim, into: vT, ld)
                    for h in (pair % d.kvHeads) * group..<((pair % d.kvHeads) + 1) * group {
                        let bh = b * d.heads + h
                        for q0 in stride(from: queries.lowerBound, to: queries.upperBound, by: bq) {
                            let rows = Swift.min(bq, queries.upperBound - q0)
                            let row0 = bh * d.seqQ + q0
                            let qBlock = q + row0 * d.headDim
                            let dOBlock = dO + row0 * d.valueDim
                            products.scores(rows, cols, d.headDim, scoreScale, qBlock, kBlock, kT, ld,
                                            into: p, ld)
                            var tile = d.tile(batch: b, head: h, query0: q0, key0: k0, rows: rows, cols: cols,
                                              mask: maskPointer)
                            kiln_attention_probabilities_f32(&tile, p, Int64(ld), lse + row0, keep, dropped,
                                                             Int64(ld))
                            // dV += (P∘keep)ᵀ·dO
                            products.accumulate(true, cols, d.valueDim, rows, 1, dropped ?? p, ld, dOBlock,
                                                into: dVBlock)
                            // dP = dO·Vᵀ, then dS = P∘(dP∘keep − D) in place of P
                            products.scores(rows, cols, d.valueDim, 1, dOBlock, vBlock, vT, ld, into: dp, ld)
                            kiln_attention_score_gradient_f32(Int64(rows), Int64(cols), p, Int64(ld), dp,
                                                              Int64(ld), keep, Int64(ld), rowDot + row0)
                            // dQ += scale·dS·K, dK += scale·dSᵀ·Q
                            products.accumulate(false, rows, d.headDim, cols, d.scale, p, ld, kBlock,
                                                into: dQTarget + row0 * d.headDim)
                            products.accumulate(true, cols, d.headDim, rows, d.scale, p, ld, qBlock, into: dKBlock)
                        }
                    }
                }
            }
        }
        if !copies.isEmpty {
            parallelFor(dQCount) { r in
                for copy in copies {
                    let c = copy.pointer
                    for i in r { dQ[i] += c[i] }
                }
            }
        }
    }

    /// x[0 ..< count] = 0 on the worker threads.
    func attentionZero(_ x: UnsafeMutablePointer<Float>, _ count: Int) {
        parallelFor(count) { r in (x + r.lowerBound).update(repeating: 0, count: r.count) }
    }
}

/// C = alpha·op(A)·op(B) + beta·C (row-major, m × n, inner size k) through `cblas_sgemm`, with the
/// empty cases done here: nothing for m or n = 0, C = beta·C for k = 0 (beta = 0 does not read C).
@inline(__always)
func attentionGEMM(_ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                   _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float,
                   _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        for i in 0..<m {
            let row = c + i * ldc
            for j in 0..<n { row[j] = beta == 0 ? 0 : beta * row[j] }
        }
        return
    }
    cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// The leading dimension of the score tiles and transposed blocks for `keys` columns: padded by 16
/// floats so that successive rows do not fall into the same few cache sets (a 2 KiB stride thrashes
/// the L1 when a kernel walks down a column).
func attentionTileStride(_ keys: Int) -> Int { keys + 16 }

/// The tile GEMMs of the flash kernels. With AVX-512 (`wide`) they run on Kiln's broadcast kernel,
/// which reads the narrow operand in place instead of packing both operands as OpenBLAS does (about
/// 15% faster on these shapes); otherwise on `cblas_sgemm`.
struct AttentionProducts {
    /// Whether the C kernels run at AVX-512.
    let wide = kiln_cpu_isa() == 2

    /// Lays out the row-major block `[rows × columns]` as `[columns × rows]` (leading dimension
    /// `ld`) for `scores`; only the AVX-512 path needs it.
    func transpose(_ block: UnsafePointer<Float>, rows: Int, columns: Int, into t: UnsafeMutablePointer<Float>,
                   _ ld: Int) {
        guard wide else { return }
        kiln_attention_transpose_f32(Int64(rows), Int64(columns), block, Int64(columns), t, Int64(ld))
    }

    /// C = alpha·A·Bᵀ for A `[m × k]` and B `[n × k]` row-major (leading dimensions k), i.e. scores
    /// of m rows against n keys. The AVX-512 path reads `bT`, B laid out by `transpose`.
    func scores(_ m: Int, _ n: Int, _ k: Int, _ alpha: Float, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                _ bT: UnsafePointer<Float>, _ ldT: Int, into c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        if wide {
            kiln_attention_gemm_f32(Int64(m), Int64(n), Int64(k), alpha, a, Int64(k), 1, bT, Int64(ldT), 0, c,
                                    Int64(ldc))
        } else {
            attentionGEMM(false, true, m, n, k, alpha, a, k, b, k, 0, c, ldc)
        }
    }

    /// C += alpha·op(A)·B for a score tile A (P or dS, leading dimension lda; op(A) = Aᵀ when
    /// `transposeA`) and B `[k × n]` row-major with leading dimension n; C has leading dimension n.
    func accumulate(_ transposeA: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float, _ a: UnsafePointer<Float>,
                    _ lda: Int, _ b: UnsafePointer<Float>, into c: UnsafeMutablePointer<Float>) {
        if wide {
            kiln_attention_gemm_f32(Int64(m), Int64(n), Int64(k), alpha, a, Int64(transposeA ? 1 : lda),
                                    Int64(transposeA ? lda : 1), b, Int64(n), 1, c, Int64(n))
        } else {
            attentionGEMM(transposeA, false, m, n, k, alpha, a, lda, b, n, 1, c, n)
        }
    }
}

/// The tile sizes of one attention call.
struct AttentionTiling {
    var queryBlock = CPUBackend.attentionQueryBlock
    var keyBlock = CPUBackend.attentionKeyBlock

    /// Halves the query block (down to 32 rows) while batch × heads × query blocks would leave a
    /// worker with fewer than two units; never larger than needed for seqQ or seqK.
    init(_ d: AttentionDescriptor, workers: Int) {
        let heads = d.batch * d.heads
        while queryBlock > 32 && heads * ((d.seqQ + queryBlock - 1) / queryBlock) < 2 * workers {
            queryBlock /= 2
        }
        queryBlock = Swift.max(1, Swift.min(queryBlock, d.seqQ))
        keyBlock = Swift.max(1, Swift.min(keyBlock, d.seqK))
    }
}

/// Hands out unit indices 0 ..< count, each once, to whichever worker asks next.
final class AttentionWorkQueue: @unchecked Sendable {
    private let lock = NSLock()
    private var next = 0
    private let count: Int

    init(count: Int) { self.count = count }

    func claim() -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard next < count else { return nil }
        next += 1
        return next - 1
    }
}

extension AttentionDescriptor {
    /// The keys some row of `queries` may see by the causal and window rules: j ≤ i and
    /// j > i − window, intersected with [0, seqK) (may be empty).
    func visibleKeys(queries: Range<Int>) -> Range<Int> {
        var hi = seqK, lo = 0
        if isCausal || window > 0 { hi = Swift.min(hi, queries.upperBound) }
        if window > 0 { lo = Swift.max(0, queries.lowerBound - window + 1) }
        return lo < hi ? lo..<hi : 0..<0
    }

    /// The queries that may see some key of `keys` by the causal and window rules: i ≥ j and
    /// i < j + window, intersected with [0, seqQ) (may be empty).
    func visibleQueries(keys: Range<Int>) -> Range<Int> {
        var lo = 0, hi = seqQ
        if isCausal || window > 0 { lo = Swift.min(seqQ, keys.lowerBound) }
        if window > 0 { hi = Swift.min(hi, keys.upperBound - 1 + window) }
        return lo < hi ? lo..<hi : 0..<0
    }

    /// The C description of the tile of query rows q0 ..< q0 + rows and keys k0 ..< k0 + cols of
    /// (batch b, head h).
    func tile(batch b: Int, head h: Int, query0 q0: Int, key0 k0: Int, rows: Int, cols: Int,
              mask: UnsafeMutablePointer<Float>?) -> kiln_attention_tile {
        assert(maskStrides == nil || maskStrides?.count == 4, "mask strides are over [batch, heads, seqQ, seqK]")
        let strides = maskStrides.flatMap { $0.count == 4 ? $0 : nil } ?? [0, 0, 0, 0]
        let maskAt = mask.map {
            UnsafePointer($0 + b * strides[0] + h * strides[1] + q0 * strides[2] + k0 * strides[3])
        }
        return kiln_attention_tile(
            rows: Int64(rows), cols: Int64(cols), query0: Int64(q0), key0: Int64(k0),
            causal: isCausal ? 1 : 0, window: Int64(window), mask: maskAt,
            mask_row_stride: Int64(strides[2]), mask_col_stride: Int64(strides[3]),
            dropout: dropout, seed: seed,
            dropout_index: UInt64(((b * heads + h) * seqQ + q0) * seqK + k0),
            dropout_row_stride: Int64(seqK))
    }
}
