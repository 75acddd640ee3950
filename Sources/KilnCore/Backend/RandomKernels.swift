/// Counter-based random numbers (Philox-4x32-10). Every backend produces the same bits for the
/// same seed: element `i` comes from counter block `i / 4` (see `Philox`).
public protocol RandomKernels {
    /// out[i] = sample i of `distribution` for `seed`, i < count.
    func random(_ distribution: RandomDistribution, seed: UInt64, _ out: any BackendBuffer,
                count: Int) throws
}

/// What `RandomKernels.random` draws.
public enum RandomDistribution: Sendable, Equatable {
    /// Uniform on [low, high): low + (high − low)·u with u = (bits >> 8)·2⁻²⁴.
    case uniform(low: Float, high: Float)
    /// Normal by the Box–Muller transform with Kiln's portable log/sin/cos (bit-identical everywhere).
    case normal(mean: Float, standardDeviation: Float)
    /// 1 with probability p, else 0: u < p.
    case bernoulli(probability: Float)

    public var code: Int32 {
        switch self {
        case .uniform: 0
        case .normal: 1
        case .bernoulli: 2
        }
    }

    public var parameters: (Float, Float) {
        switch self {
        case .uniform(let low, let high): (low, high)
        case .normal(let mean, let std): (mean, std)
        case .bernoulli(let p): (p, 0)
        }
    }
}
