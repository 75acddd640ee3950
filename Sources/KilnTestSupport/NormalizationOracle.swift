import Foundation

/// Float64 references for the normalizations, written from the definitions as plain loops,
/// independent of both backends: two-pass statistics in Float64, the gradients from the textbook
/// closed forms (which `finiteDifference` checks against the forward definitions).
public enum NormalizationOracle {
    /// A forward result: the output and the per-row / per-channel statistics (μ, σ = 1/√(var + eps)).
    public struct Forward {
        /// The normalized values, shaped as the input.
        public var output: [Double]
        /// μ per row (channel, instance); 0 for RMS.
        public var mean: [Double]
        /// σ = 1/√(var + eps) per row (channel, instance).
        public var inverseStandardDeviation: [Double]
        /// The updated running mean (training with running statistics only).
        public var runningMean: [Double]? = nil
        /// The updated running variance (training with running statistics only).
        public var runningVariance: [Double]? = nil
    }

    /// Gradients with respect to the input, the weight and the bias (empty when not asked for).
    public struct Gradients {
        /// ∂L/∂input.
        public var input: [Double]
        /// ∂L/∂weight (one per parameter).
        public var weight: [Double]
        /// ∂L/∂bias (one per parameter).
        public var bias: [Double]
    }

    /// How a row-normalized tensor is laid out: `rows` rows of `channelsPerGroup·spatial` elements,
    /// row r in group r % groups, element j using parameter (r % groups)·channelsPerGroup + j / spatial.
    public struct Rows: Sendable {
        /// Rows normalized independently.
        public var rows: Int
        /// Row r uses the parameters of group r % groups.
        public var groups: Int
        /// Channels per row (one parameter each).
        public var channelsPerGroup: Int
        /// Elements per channel.
        public var spatial: Int

        /// A layout of `rows` rows of `channelsPerGroup·spatial` elements.
        public init(rows: Int, groups: Int = 1, channelsPerGroup: Int, spatial: Int = 1) {
            self.rows = rows
            self.groups = groups
            self.channelsPerGroup = channelsPerGroup
            self.spatial = spatial
        }

        /// Layer / RMS norm of `rows` rows of `count` elements.
        public static func layer(rows: Int, count: Int) -> Rows { Rows(rows: rows, channelsPerGroup: count) }

        /// Group norm of `[batch, channels, spatial]` with `groups` groups.
        public static func group(batch: Int, channels: Int, spatial: Int, groups: Int) -> Rows {
            Rows(rows: batch * groups, groups: groups, channelsPerGroup: channels / groups, spatial: spatial)
        }

        /// Elements per row.
        public var count: Int { channelsPerGroup * spatial }
        /// Entries of the weight and bias.
        public var parameterCount: Int { groups * channelsPerGroup }
        func parameter(_ r: Int, _ j: Int) -> Int { (r % groups) * channelsPerGroup + j / spatial }
    }

    // MARK: - Rows: layer, RMS, group

    /// y = (x − μ)/√(var + eps)·w + b per row (biased var), or x/√(mean(x²) + eps)·w when `rms`.
    public static func rows(_ x: [Double], _ layout: Rows, weight: [Double]?, bias: [Double]?, eps: Double,
                            rms: Bool = false) -> Forward {
        let n = layout.count
        var out = Forward(output: [Double](repeating: 0, count: x.count), mean: [], inverseStandardDeviation: [])
        for r in 0..<layout.rows {
            let row = x[(r * n)..<(r * n + n)]
            let mu = rms ? 0 : row.reduce(0, +) / Double(n)
            let variance = rms ? row.map { $0 * $0 }.reduce(0, +) / Double(n)
                               : row.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / Double(n)
            let sigma = 1 / (variance + eps).squareRoot()
            out.mean.append(mu)
            out.inverseStandardDeviation.append(sigma)
            for j in 0..<n {
                let p = layout.parameter(r, j)
                out.output[r * n + j] = (x[r * n + j] - mu) * sigma * (weight?[p] ?? 1) + (bias?[p] ?? 0)
            }
        }
        return out
    }

    /// The closed-form gradients of `rows` for the loss L = Σ g·y: with x̂ = (x − μ)σ, ĝ = g·w,
    /// dx = σ(ĝ − mean(ĝ) − x̂·mean(ĝx̂)) (RMS: without mean(ĝ)), dw = Σ g·x̂, db = Σ g.
    public static func rowsBackward(_ g: [Double], _ x: [Double], _ layout: Rows, weight: [Double]?, eps: Double,
                                    rms: Bool = false) -> Gradients {
        let n = layout.count
        let forward = rows(x, layout, weight: nil, bias: nil, eps: eps, rms: rms)
        var result = Gradients(input: [Double](repeating: 0, count: x.count),
                               weight: [Double](repeating: 0, count: layout.parameterCount),
                               bias: [Double](repeating: 0, count: layout.parameterCount))
        for r in 0..<layout.rows {
            let sigma = forward.inverseStandardDeviation[r]
            var sumG = 0.0, sumGX = 0.0
            for j in 0..<n {
                let i = r * n + j
                let gh = g[i] * (weight?[layout.parameter(r, j)] ?? 1)
                sumG += gh
                sumGX += gh * forward.output[i]
            }
            for j in 0..<n {
                let i = r * n + j, p = layout.parameter(r, j)
                let xh = forward.output[i]
                let gh = g[i] * (weight?[p] ?? 1)
                result.input[i] = sigma * (gh - (rms ? 0 : sumG / Double(n)) - xh * sumGX / Double(n))
                result.weight[p] += g[i] * xh
                result.bias[p] += g[i]
            }
        }
        return result
    }

    // MARK: - Channels: batch norm

    /// Batch norm of `[batch, channels, spatial]`: training uses μ_c and the biased var_c over the
    /// channel and, when running statistics are given, returns them updated with `momentum`
    /// (unbiased variance); inference uses the running statistics.
    public static func batchNorm(_ x: [Double], batch: Int, channels: Int, spatial: Int, weight: [Double]?,
                                 bias: [Double]?, runningMean: [Double]?, runningVariance: [Double]?,
                                 training: Bool, momentum: Double, eps: Double) -> Forward {
        var out = Forward(output: [Double](repeating: 0, count: x.count), mean: [], inverseStandardDeviation: [])
        let m = batch * spatial
        if training, runningMean != nil {
            out.runningMean = []
            out.runningVariance = []
        }
        for c in 0..<channels {
            var values: [Double] = []
            for n in 0..<batch { for s in 0..<spatial { values.append(x[(n * channels + c) * spatial + s]) } }
            let mu: Double, variance: Double
            if training {
                mu = values.reduce(0, +) / Double(m)
                variance = values.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / Double(m)
                if let rm = runningMean, let rv = runningVariance {
                    out.runningMean?.append((1 - momentum) * rm[c] + momentum * mu)
                    out.runningVariance?.append((1 - momentum) * rv[c] + momentum * variance * Double(m) / Double(m - 1))
                }
            } else {
                mu = runningMean?[c] ?? .nan
                variance = runningVariance?[c] ?? .nan
            }
            let sigma = 1 / (variance + eps).squareRoot()
            out.mean.append(mu)
            out.inverseStandardDeviation.append(sigma)
            for n in 0..<batch {
                for s in 0..<spatial {
                    let i = (n * channels + c) * spatial + s
                    out.output[i] = (x[i] - mu) * sigma * (weight?[c] ?? 1) + (bias?[c] ?? 0)
                }
            }
        }
        return out
    }

    /// The closed-form gradients of `batchNorm` for L = Σ g·y. Training: dx = wσ(g − mean(g) −
    /// x̂·mean(g·x̂)) per channel; inference: dx = g·w·σ. dw = Σ g·x̂, db = Σ g.
    public static func batchNormBackward(_ g: [Double], _ x: [Double], batch: Int, channels: Int, spatial: Int,
                                         weight: [Double]?, runningMean: [Double]?, runningVariance: [Double]?,
                                         training: Bool, eps: Double) -> Gradients {
        let f = batchNorm(x, batch: batch, channels: channels, spatial: spatial, weight: nil, bias: nil,
                          runningMean: runningMean, runningVariance: runningVariance, training: training,
                          momentum: 0, eps: eps)
        let m = Double(batch * spatial)
        var result = Gradients(input: [Double](repeating: 0, count: x.count),
                               weight: [Double](repeating: 0, count: channels), bias: [Double](repeating: 0, count: channels))
        for c in 0..<channels {
            var indices: [Int] = []
            for n in 0..<batch { for s in 0..<spatial { indices.append((n * channels + c) * spatial + s) } }
            let sumG = indices.map { g[$0] }.reduce(0, +)
            let sumGX = indices.map { g[$0] * f.output[$0] }.reduce(0, +)
            result.weight[c] = sumGX
            result.bias[c] = sumG
            let w = weight?[c] ?? 1, sigma = f.inverseStandardDeviation[c]
            for i in indices {
                result.input[i] = training ? w * sigma * (g[i] - sumG / m - f.output[i] * sumGX / m) : g[i] * w * sigma
            }
        }
        return result
    }

    // MARK: - Instance norm

    /// Instance norm of `[batch, channels, spatial]`, each (n, c) over its spatial elements; the
    /// running statistics are updated with the batch average of the instance mean and unbiased
    /// variance. Statistics are returned per (n, c).
    public static func instanceNorm(_ x: [Double], batch: Int, channels: Int, spatial: Int, weight: [Double]?,
                                    bias: [Double]?, runningMean: [Double]?, runningVariance: [Double]?,
                                    useInputStatistics: Bool, momentum: Double, eps: Double) -> Forward {
        var out = Forward(output: [Double](repeating: 0, count: x.count), mean: [], inverseStandardDeviation: [])
        var meanSum = [Double](repeating: 0, count: channels), varianceSum = meanSum
        for n in 0..<batch {
            for c in 0..<channels {
                let base = (n * channels + c) * spatial
                let row = x[base..<(base + spatial)]
                let mu: Double, variance: Double
                if useInputStatistics {
                    mu = row.reduce(0, +) / Double(spatial)
                    variance = row.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / Double(spatial)
                    meanSum[c] += mu
                    varianceSum[c] += variance * Double(spatial) / Double(spatial - 1)
                } else {
                    mu = runningMean?[c] ?? .nan
                    variance = runningVariance?[c] ?? .nan
                }
                let sigma = 1 / (variance + eps).squareRoot()
                out.mean.append(mu)
                out.inverseStandardDeviation.append(sigma)
                for s in 0..<spatial {
                    out.output[base + s] = (x[base + s] - mu) * sigma * (weight?[c] ?? 1) + (bias?[c] ?? 0)
                }
            }
        }
        if useInputStatistics, let rm = runningMean, let rv = runningVariance {
            out.runningMean = (0..<channels).map { (1 - momentum) * rm[$0] + momentum * meanSum[$0] / Double(batch) }
            out.runningVariance = (0..<channels).map { (1 - momentum) * rv[$0] + momentum * varianceSum[$0] / Double(batch) }
        }
        return out
    }

    /// The closed-form gradients of `instanceNorm` for L = Σ g·y: within each instance (n, c),
    /// x̂ = (x − μ)σ and dx = wσ(g − mean(g) − x̂·mean(g·x̂)) (with input statistics; otherwise
    /// g·w·σ); dw_c = Σ_{n, s} g·x̂, db_c = Σ_{n, s} g.
    public static func instanceNormBackward(_ g: [Double], _ x: [Double], batch: Int, channels: Int, spatial: Int,
                                            weight: [Double]?, runningMean: [Double]?, runningVariance: [Double]?,
                                            useInputStatistics: Bool, eps: Double) -> Gradients {
        let f = instanceNorm(x, batch: batch, channels: channels, spatial: spatial, weight: nil, bias: nil,
                             runningMean: runningMean, runningVariance: runningVariance,
                             useInputStatistics: useInputStatistics, momentum: 0, eps: eps)
        var result = Gradients(input: [Double](repeating: 0, count: x.count),
                               weight: [Double](repeating: 0, count: channels), bias: [Double](repeating: 0, count: channels))
        let m = Double(spatial)
        for n in 0..<batch {
            for c in 0..<channels {
                let base = (n * channels + c) * spatial
                let sigma = f.inverseStandardDeviation[n * channels + c], w = weight?[c] ?? 1
                var sumG = 0.0, sumGX = 0.0
                for s in 0..<spatial {
                    sumG += g[base + s]
                    sumGX += g[base + s] * f.output[base + s]
                }
                result.weight[c] += sumGX
                result.bias[c] += sumG
                for s in 0..<spatial {
                    let i = base + s
                    result.input[i] = useInputStatistics ? w * sigma * (g[i] - sumG / m - f.output[i] * sumGX / m)
                                                         : g[i] * w * sigma
                }
            }
        }
        return result
    }

    // MARK: - Local response norm

    /// y_c = x_c / (k + α/size·Σ_{c' ∈ [c − size/2, c + (size − 1)/2]} x_{c'}²)^β over `[batch, channels, spatial]`.
    public static func localResponseNorm(_ x: [Double], batch: Int, channels: Int, spatial: Int, size: Int,
                                         alpha: Double, beta: Double, k: Double) -> [Double] {
        var y = [Double](repeating: 0, count: x.count)
        for n in 0..<batch {
            for c in 0..<channels {
                for s in 0..<spatial {
                    y[(n * channels + c) * spatial + s] = x[(n * channels + c) * spatial + s]
                        * Foundation.pow(lrnDenominator(x, n, c, s, channels, spatial, size, alpha, k), -beta)
                }
            }
        }
        return y
    }

    static func lrnDenominator(_ x: [Double], _ n: Int, _ c: Int, _ s: Int, _ channels: Int, _ spatial: Int,
                               _ size: Int, _ alpha: Double, _ k: Double) -> Double {
        var sum = 0.0
        for c2 in (c - size / 2)...(c + (size - 1) / 2) where c2 >= 0 && c2 < channels {
            let v = x[(n * channels + c2) * spatial + s]
            sum += v * v
        }
        return k + alpha / Double(size) * sum
    }

    /// The closed-form input gradient of `localResponseNorm` for L = Σ g·y:
    /// dx_j = g_j·D_j^(−β) − (2αβ/size)·x_j·Σ_{c : j ∈ window(c)} g_c·x_c·D_c^(−β−1).
    public static func localResponseNormBackward(_ g: [Double], _ x: [Double], batch: Int, channels: Int,
                                                 spatial: Int, size: Int, alpha: Double, beta: Double,
                                                 k: Double) -> [Double] {
        var dx = [Double](repeating: 0, count: x.count)
        for n in 0..<batch {
            for s in 0..<spatial {
                let d = (0..<channels).map { lrnDenominator(x, n, $0, s, channels, spatial, size, alpha, k) }
                let at = { (c: Int) in (n * channels + c) * spatial + s }
                for j in 0..<channels {
                    var cross = 0.0
                    for c in 0..<channels where j >= c - size / 2 && j <= c + (size - 1) / 2 {
                        cross += g[at(c)] * x[at(c)] * Foundation.pow(d[c], -beta - 1)
                    }
                    dx[at(j)] = g[at(j)] * Foundation.pow(d[j], -beta) - 2 * alpha * beta / Double(size) * x[at(j)] * cross
                }
            }
        }
        return dx
    }

    // MARK: - Finite differences

    /// The gradient of L(v) = Σ_i g_i·f(v)_i by central differences, each coordinate moved by
    /// h·max(1, |v_j|).
    public static func finiteDifference(_ v: [Double], _ g: [Double], h: Double = 1e-6,
                                        _ f: ([Double]) -> [Double]) -> [Double] {
        func loss(_ u: [Double]) -> Double { zip(f(u), g).map { $0 * $1 }.reduce(0, +) }
        return v.indices.map { j in
            let step = h * Swift.max(1, Swift.abs(v[j]))
            var plus = v, minus = v
            plus[j] += step
            minus[j] -= step
            return (loss(plus) - loss(minus)) / (2 * step)
        }
    }
}

extension Array where Element == Float {
    /// The values as Float64.
    public var doubles: [Double] { map(Double.init) }
}

/// The largest |value|, at least `floor` (a scale for tolerances of quantities of any magnitude).
public func largestMagnitude(_ values: [Double], floor: Double = 1) -> Double {
    values.reduce(floor) { Swift.max($0, Swift.abs($1)) }
}
