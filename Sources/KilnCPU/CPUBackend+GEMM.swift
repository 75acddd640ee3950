import CBLAS
import KilnCore

extension CPUBackend {
    /// Batched GEMM through single-threaded `cblas_sgemm` calls spread over Kiln's workers: batch
    /// entries when there are enough, otherwise column (or row) blocks of one product. OpenBLAS runs
    /// one thread in this process (see `CPUBackend.init`), so its thread pool never spins beside
    /// Kiln's own parallel regions (attention, convolution), which halved them when it did.
    public func gemm(_ d: GEMMDescriptor, a: any BackendBuffer, b: any BackendBuffer, c: any BackendBuffer) throws {
        let pa = try cpuBuffer(a, "cpu.gemm").pointer
        let pb = try cpuBuffer(b, "cpu.gemm").pointer
        let pc = try cpuBuffer(c, "cpu.gemm").pointer
        if d.k == 0 {
            // C = beta·C; beta == 0 must not read C.
            for i in 0..<d.batch {
                for row in 0..<d.m {
                    let r = pc + d.cOffset + i * d.strideC + row * d.ldc
                    for j in 0..<d.n { r[j] = d.beta == 0 ? 0 : d.beta * r[j] }
                }
            }
            return
        }
        /// C[rows, columns] of batch entry i.
        func product(_ i: Int, rows: Range<Int>, columns: Range<Int>) {
            let aBase = pa + d.aOffset + i * d.strideA + (d.transposeA ? rows.lowerBound : rows.lowerBound * d.lda)
            let bBase = pb + d.bOffset + i * d.strideB
                + (d.transposeB ? columns.lowerBound * d.ldb : columns.lowerBound)
            cblas_sgemm(CblasRowMajor, d.transposeA ? CblasTrans : CblasNoTrans,
                        d.transposeB ? CblasTrans : CblasNoTrans,
                        Int32(rows.count), Int32(columns.count), Int32(d.k), d.alpha, aBase, Int32(d.lda),
                        bBase, Int32(d.ldb), d.beta,
                        pc + d.cOffset + i * d.strideC + rows.lowerBound * d.ldc + columns.lowerBound, Int32(d.ldc))
        }
        let flops = 2 * d.m * d.n * d.k
        let workers = flops < 1 << 21 ? 1 : workerCount
        if workers == 1 || d.batch >= workers {
            parallelFor(d.batch, grain: workers == 1 ? Swift.max(d.batch, 1) : 1) { range in
                for i in range { product(i, rows: 0..<d.m, columns: 0..<d.n) }
            }
            return
        }
        // One product split into blocks: columns in multiples of 64 when wide enough, else rows.
        let splitColumns = d.n >= 64 * workers
        let extent = splitColumns ? d.n : d.m
        let align = splitColumns ? 64 : 8
        let blocks = Swift.min(workers, Swift.max(1, extent / align))
        let size = ((extent + blocks - 1) / blocks + align - 1) / align * align
        for i in 0..<d.batch {
            parallelFor(blocks, grain: 1) { range in
                for block in range {
                    let lo = block * size, hi = Swift.min(extent, lo + size)
                    guard lo < hi else { continue }
                    if splitColumns {
                        product(i, rows: 0..<d.m, columns: lo..<hi)
                    } else {
                        product(i, rows: lo..<hi, columns: 0..<d.n)
                    }
                }
            }
        }
    }
}
