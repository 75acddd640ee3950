import CBLAS
import KilnCore

extension CPUBackend {
    /// Batched GEMM through `cblas_sgemm`, one call per batch entry (OpenBLAS threads each call).
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
        for i in 0..<d.batch {
            cblas_sgemm(CblasRowMajor, d.transposeA ? CblasTrans : CblasNoTrans,
                        d.transposeB ? CblasTrans : CblasNoTrans,
                        Int32(d.m), Int32(d.n), Int32(d.k), d.alpha,
                        pa + d.aOffset + i * d.strideA, Int32(d.lda),
                        pb + d.bOffset + i * d.strideB, Int32(d.ldb), d.beta,
                        pc + d.cOffset + i * d.strideC, Int32(d.ldc))
        }
    }
}
