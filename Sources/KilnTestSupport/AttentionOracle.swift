import Foundation
import Kiln

/// Float64 attention with materialised scores, written from the definition (see
/// `AttentionKernels`), independent of every backend.
public enum AttentionOracle {
    /// Inputs as Double arrays in the kernel layouts.
    public struct Inputs {
        public var query: [Double], key: [Double], value: [Double]
        /// Additive mask values read with `descriptor.maskStrides`.
        public var mask: [Double]?

        public init(query: [Double], key: [Double], value: [Double], mask: [Double]?) {
            self.query = query
            self.key = key
            self.value = value
            self.mask = mask
        }
    }

    /// The dropout keep factor of score (b, h, i, j): 0 or 1/(1 − p), from the Philox stream.
    static func keepFactors(_ d: AttentionDescriptor) -> [Double] {
        let n = d.batch * d.heads * d.seqQ * d.seqK
        guard d.dropout > 0 else { return [Double](repeating: 1, count: n) }
        return Philox.samples(.uniform(low: 0, high: 1), seed: d.seed, count: n).map {
            $0 >= d.dropout ? 1 / (1 - Double(d.dropout)) : 0
        }
    }

    /// Scores s_ij for every (b, h): −∞ where hidden.
    static func scores(_ d: AttentionDescriptor, _ x: Inputs, b: Int, h: Int) -> [[Double]] {
        let kh = h / (d.heads / d.kvHeads)
        return (0..<d.seqQ).map { i in
            (0..<d.seqK).map { j in
                guard d.isVisible(query: i, key: j) else { return -.infinity }
                var dot = 0.0
                for c in 0..<d.headDim {
                    dot += x.query[((b * d.heads + h) * d.seqQ + i) * d.headDim + c]
                        * x.key[((b * d.kvHeads + kh) * d.seqK + j) * d.headDim + c]
                }
                var s = Double(d.scale) * dot
                if let mask = x.mask, let st = d.maskStrides {
                    s += mask[b * st[0] + h * st[1] + i * st[2] + j * st[3]]
                }
                return s
            }
        }
    }

    /// log Σ exp(s) of one row, or nil when every score is −∞ (the row sees no key).
    static func logSumExp(_ row: [Double]) -> Double? {
        guard let m = row.max(), m > -.infinity else { return nil }
        return m + log(row.map { exp($0 - m) }.reduce(0, +))
    }

    /// Output `[B, H, Lq, Dv]` and logsumexp `[B, H, Lq]`.
    public static func forward(_ d: AttentionDescriptor, _ x: Inputs) -> (output: [Double], logSumExp: [Double]) {
        var out = [Double](repeating: 0, count: d.batch * d.heads * d.seqQ * d.valueDim)
        var lse = [Double](repeating: 0, count: d.batch * d.heads * d.seqQ)
        let keep = keepFactors(d)
        for b in 0..<d.batch {
            for h in 0..<d.heads {
                let kh = h / (d.heads / d.kvHeads)
                let s = scores(d, x, b: b, h: h)
                for i in 0..<d.seqQ {
                    let row = (b * d.heads + h) * d.seqQ + i
                    guard let l = logSumExp(s[i]) else {
                        lse[row] = -.infinity
                        continue
                    }
                    lse[row] = l
                    for j in 0..<d.seqK {
                        let p = exp(s[i][j] - l) * keep[row * d.seqK + j]
                        if p == 0 { continue }
                        for c in 0..<d.valueDim {
                            out[row * d.valueDim + c] += p * x.value[((b * d.kvHeads + kh) * d.seqK + j) * d.valueDim + c]
                        }
                    }
                }
            }
        }
        return (out, lse)
    }

    /// Gradients of Σ output∘outputGradient with respect to query, key and value.
    public static func backward(_ d: AttentionDescriptor, _ x: Inputs, outputGradient g: [Double])
        -> (query: [Double], key: [Double], value: [Double])
    {
        var dq = [Double](repeating: 0, count: x.query.count)
        var dk = [Double](repeating: 0, count: x.key.count)
        var dv = [Double](repeating: 0, count: x.value.count)
        let keep = keepFactors(d)
        for b in 0..<d.batch {
            for h in 0..<d.heads {
                let kh = h / (d.heads / d.kvHeads)
                let s = scores(d, x, b: b, h: h)
                for i in 0..<d.seqQ {
                    let row = (b * d.heads + h) * d.seqQ + i
                    guard let l = logSumExp(s[i]) else { continue }
                    let p = s[i].map { exp($0 - l) }
                    // dP_ij = keep·(g_i · v_j); dS_ij = p_ij (dP_ij − Σ_k p_ik dP_ik).
                    var dp = [Double](repeating: 0, count: d.seqK)
                    for j in 0..<d.seqK where p[j] > 0 {
                        var dot = 0.0
                        for c in 0..<d.valueDim {
                            dot += g[row * d.valueDim + c] * x.value[((b * d.kvHeads + kh) * d.seqK + j) * d.valueDim + c]
                        }
                        dp[j] = keep[row * d.seqK + j] * dot
                        for c in 0..<d.valueDim {
                            dv[((b * d.kvHeads + kh) * d.seqK + j) * d.valueDim + c] += p[j] * keep[row * d.seqK + j] * g[row * d.valueDim + c]
                        }
                    }
                    let rowDot = zip(p, dp).map(*).reduce(0, +)
                    for j in 0..<d.seqK where p[j] > 0 {
                        let ds = p[j] * (dp[j] - rowDot) * Double(d.scale)
                        for c in 0..<d.headDim {
                            dq[row * d.headDim + c] += ds * x.key[((b * d.kvHeads + kh) * d.seqK + j) * d.headDim + c]
                            dk[((b * d.kvHeads + kh) * d.seqK + j) * d.headDim + c] += ds * x.query[row * d.headDim + c]
                        }
                    }
                }
            }
        }
        return (dq, dk, dv)
    }
}
