/// General matrix multiply.
public protocol GEMMKernels {
    /// Batched row-major `C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b]` (see `GEMMDescriptor`).
    /// beta == 0 never reads C.
    func gemm(_ descriptor: GEMMDescriptor, a: any BackendBuffer, b: any BackendBuffer,
              c: any BackendBuffer) throws
}

/// The shape and layout of a batched GEMM.
///
/// `op(A)` is `m × k`: A is stored `m × k` with row stride `lda`, or `k × m` when `transposeA`.
/// `op(B)` is `k × n`: B is stored `k × n` with row stride `ldb`, or `n × k` when `transposeB`.
/// C is `m × n` with row stride `ldc`. Batch `i` starts at `offset + i · stride` in each buffer;
/// a stride of 0 broadcasts that operand.
public struct GEMMDescriptor: Sendable, Equatable {
    public var batch: Int
    public var m: Int
    public var n: Int
    public var k: Int
    public var transposeA: Bool
    public var transposeB: Bool
    public var alpha: Float
    public var beta: Float
    public var lda: Int
    public var ldb: Int
    public var ldc: Int
    public var aOffset: Int = 0
    public var bOffset: Int = 0
    public var cOffset: Int = 0
    public var strideA: Int
    public var strideB: Int
    public var strideC: Int

    /// A packed (tight leading dimensions) batched GEMM.
    public init(batch: Int = 1, m: Int, n: Int, k: Int, transposeA: Bool = false,
                transposeB: Bool = false, alpha: Float = 1, beta: Float = 0,
                broadcastA: Bool = false, broadcastB: Bool = false) {
        self.batch = batch
        self.m = m
        self.n = n
        self.k = k
        self.transposeA = transposeA
        self.transposeB = transposeB
        self.alpha = alpha
        self.beta = beta
        self.lda = transposeA ? m : k
        self.ldb = transposeB ? k : n
        self.ldc = n
        self.strideA = broadcastA ? 0 : m * k
        self.strideB = broadcastB ? 0 : k * n
        self.strideC = m * n
    }
}
