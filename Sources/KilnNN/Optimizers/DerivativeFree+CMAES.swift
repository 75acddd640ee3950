import Foundation
import KilnCore

/// CMA-ES, the covariance matrix adaptation evolution strategy, as summarised in N. Hansen, "The
/// CMA Evolution Strategy: A Tutorial" (arXiv:1604.00772, 2016), Table 1 defaults and the
/// algorithm of its appendix A, for minimising a loss.
///
/// Generation g samples λ candidates xₖ = m + σ·yₖ, yₖ = B·D·zₖ ~ N(0, C) (C = B·D²·Bᵀ), ranks them
/// by loss (x₁:λ best) and updates, with ⟨y⟩_w = Σᵢ₌₁^μ wᵢ yᵢ:λ:
///
///     m  ← m + c_m·σ·⟨y⟩_w
///     p_σ ← (1 − c_σ)·p_σ + √(c_σ(2 − c_σ)μ_eff) · C^(−½)⟨y⟩_w          (C^(−½)yₖ = B·zₖ)
///     σ  ← σ·exp((c_σ/d_σ)·(‖p_σ‖ / E‖N(0, I)‖ − 1))                     (CSA)
///     p_c ← (1 − c_c)·p_c + h_σ·√(c_c(2 − c_c)μ_eff) · ⟨y⟩_w
///     C  ← (1 + c₁δ(h_σ) − c₁ − c_μ Σⱼwⱼ)·C + c₁·p_c p_cᵀ + c_μ Σᵢ₌₁^λ wᵢ°·yᵢ:λ yᵢ:λᵀ
///
/// with h_σ = [‖p_σ‖/√(1 − (1 − c_σ)^(2(g+1))) < (1.4 + 2/(n + 1))·E‖N(0, I)‖],
/// δ(h_σ) = (1 − h_σ)·c_c(2 − c_c), wᵢ° = wᵢ for wᵢ ≥ 0 and wᵢ·n/‖C^(−½)yᵢ:λ‖² otherwise, and
/// E‖N(0, I)‖ ≈ √n·(1 − 1/(4n) + 1/(21n²)). Defaults (Table 1): λ = 4 + ⌊3 ln n⌋, μ = ⌊λ/2⌋,
/// w′ᵢ = ln((λ + 1)/2) − ln i, positive weights summing to 1, negative weights (active CMA) scaled
/// by min(1 + c₁/c_μ, 1 + 2μ⁻_eff/(μ_eff + 2), (1 − c₁ − c_μ)/(n·c_μ)),
/// c_σ = (μ_eff + 2)/(n + μ_eff + 5), d_σ = 1 + 2·max(0, √((μ_eff − 1)/(n + 1)) − 1) + c_σ,
/// c_c = (4 + μ_eff/n)/(n + 4 + 2μ_eff/n), c₁ = 2/((n + 1.3)² + μ_eff),
/// c_μ = min(1 − c₁, 2(μ_eff − 2 + 1/μ_eff)/((n + 2)² + μ_eff)). `activeCovarianceUpdate: false`
/// gives the classic update with wᵢ = 0 for i > μ.
///
/// All of this runs on the host in Float64; only the loss runs on the backend, at the Float32
/// rounding of xₖ. C is eigendecomposed every generation by a cyclic Jacobi solver
/// (`symmetricEigendecomposition`), O(n³) per sweep, so n (all parameters' elements together) is
/// limited to `maximumDimension`. zₖ are `Philox.samples(.normal(0, 1))` with key
/// `DerivativeFreeRandom.key(seed:stream:.cmaSamples, index: g)`, candidate k taking samples
/// k·n ..< (k+1)·n. Ties in loss keep sampling order; NaN ranks as +∞. `learningRate` is c_m, the
/// tutorial's learning rate of the mean (1 by default). After `step()` the parameters hold m.
public final class CMAES: Optimizer {
    /// The largest n accepted.
    public static let maximumDimension = 100

    public let parameters: [Parameter]
    /// c_m, the mean's learning rate (1 in the tutorial).
    public var learningRate: Double
    /// Generations completed (g).
    public private(set) var stepCount = 0
    /// n.
    public let dimension: Int
    /// λ.
    public let populationSize: Int
    /// μ.
    public let parentCount: Int
    /// w₁ … w_λ (the first μ positive and summing to 1).
    public let weights: [Double]
    /// μ_eff = (Σᵢ₌₁^μ wᵢ)² / Σᵢ₌₁^μ wᵢ².
    public let effectiveSelectionMass: Double
    /// c_σ, d_σ, c_c, c₁, c_μ.
    public let cumulationSigma: Double, dampingSigma: Double, cumulationCovariance: Double
    public let rankOneRate: Double, rankMuRate: Double
    /// m.
    public private(set) var mean: [Double]
    /// σ.
    public private(set) var stepSize: Double
    /// C, n × n row-major.
    public private(set) var covariance: [Double]
    /// p_σ and p_c.
    public private(set) var sigmaPath: [Double], covariancePath: [Double]
    public private(set) var seed: UInt64
    /// zₖ of the last generation, in sampling order.
    public private(set) var lastStandardSamples: [[Double]] = []
    /// The losses of the last generation, in sampling order.
    public private(set) var lastLosses: [Float] = []
    /// The lowest loss seen and the candidate (Float32, as evaluated) that had it.
    public private(set) var bestLoss: Float = .infinity
    public private(set) var bestSolution: [Float]?

    let engine: DerivativeFreeEngine
    private let expectedNorm: Double

    /// - Parameters:
    ///   - loss: the loss at the parameters' current values, one element.
    ///   - initialStepSize: σ₀ > 0 (about a quarter of the search range per coordinate).
    ///   - populationSize: λ ≥ 2; nil gives 4 + ⌊3 ln n⌋.
    ///   - learningRate: c_m > 0.
    ///   - activeCovarianceUpdate: the tutorial's negative weights for the worst λ − μ (default).
    ///   - seed: the Philox key.
    /// - Throws: `TensorError.invalidArgument` naming the invalid value, or for n > `maximumDimension`.
    public init(parameters: [Parameter], loss: @escaping () throws -> Tensor, initialStepSize: Double = 0.5,
                populationSize: Int? = nil, learningRate: Double = 1, activeCovarianceUpdate: Bool = true,
                seed: UInt64 = 0) throws {
        engine = try DerivativeFreeEngine(op: "CMAES", parameters: parameters, loss: loss)
        let n = engine.dimension
        guard n <= Self.maximumDimension else {
            throw TensorError(.invalidArgument, op: "CMAES",
                              "the parameters hold \(n) elements; CMAES eigendecomposes an n × n matrix and accepts n ≤ \(Self.maximumDimension)")
        }
        try engine.requireFinite(initialStepSize, "initialStepSize", positive: true)
        try engine.requireFinite(learningRate, "learning rate", positive: true)
        let lambda = populationSize ?? 4 + Int((3 * Foundation.log(Double(n))).rounded(.down))
        guard lambda >= 2 else {
            throw TensorError(.invalidArgument, op: "CMAES", "populationSize must be ≥ 2, got \(lambda)")
        }
        let mu = lambda / 2
        let raw = (1...lambda).map { Foundation.log(Double(lambda + 1) / 2) - Foundation.log(Double($0)) }
        let positive = Array(raw[..<mu]), negative = raw[mu...].filter { $0 < 0 }
        let muEff = pow(positive.reduce(0, +), 2) / positive.reduce(0) { $0 + $1 * $1 }
        let nd = Double(n)
        let cs = (muEff + 2) / (nd + muEff + 5)
        let ds = 1 + 2 * Swift.max(0, ((muEff - 1) / (nd + 1)).squareRoot() - 1) + cs
        let cc = (4 + muEff / nd) / (nd + 4 + 2 * muEff / nd)
        let c1 = 2 / ((nd + 1.3) * (nd + 1.3) + muEff)
        let cmu = Swift.min(1 - c1, 2 * (muEff - 2 + 1 / muEff) / ((nd + 2) * (nd + 2) + muEff))
        var negativeScale = 0.0
        if activeCovarianceUpdate, !negative.isEmpty {
            let negativeSum = negative.reduce(0) { $0 + Swift.abs($1) }
            let muEffMinus = pow(negative.reduce(0, +), 2) / negative.reduce(0) { $0 + $1 * $1 }
            let alphaMu = 1 + c1 / cmu, alphaMuEff = 1 + 2 * muEffMinus / (muEff + 2)
            let alphaPosDef = (1 - c1 - cmu) / (nd * cmu)
            negativeScale = Swift.min(alphaMu, alphaMuEff, alphaPosDef) / negativeSum
        }
        let positiveSum = positive.reduce(0, +)
        weights = raw.map { $0 >= 0 ? $0 / positiveSum : $0 * negativeScale }
        self.parameters = parameters
        self.learningRate = learningRate
        dimension = n
        self.populationSize = lambda
        parentCount = mu
        effectiveSelectionMass = muEff
        cumulationSigma = cs
        dampingSigma = ds
        cumulationCovariance = cc
        rankOneRate = c1
        rankMuRate = cmu
        mean = try engine.flattened().scalars().map(Double.init)
        stepSize = initialStepSize
        covariance = (0..<n * n).map { $0 / n == $0 % n ? 1 : 0 }
        sigmaPath = [Double](repeating: 0, count: n)
        covariancePath = [Double](repeating: 0, count: n)
        expectedNorm = nd.squareRoot() * (1 - 1 / (4 * nd) + 1 / (21 * nd * nd))
        self.seed = seed
    }

    public func step() throws {
        try engine.requireFinite(learningRate, "learning rate", positive: true)
        let n = dimension, lambda = populationSize, mu = parentCount, g = stepCount
        let (eigenvalues, b) = try Self.symmetricEigendecomposition(covariance, dimension: n)
        let d = eigenvalues.map { Swift.max($0, 0).squareRoot() }
        let key = DerivativeFreeRandom.key(seed: seed, stream: DerivativeFreeRandom.cmaSamples, index: g)
        let flat = Philox.samples(.normal(mean: 0, standardDeviation: 1), seed: key, count: lambda * n)
        let z = (0..<lambda).map { k in (0..<n).map { Double(flat[k * n + $0]) } }
        let y = z.map { zk in (0..<n).map { i in (0..<n).reduce(0.0) { $0 + b[i * n + $1] * d[$1] * zk[$1] } } }
        let candidates = y.map { yk in (0..<n).map { Float(mean[$0] + stepSize * yk[$0]) } }
        let losses = try engine.restoringOnError {
            try candidates.map { try engine.evaluate(try Tensor($0, on: engine.backend)) }
        }
        let order = (0..<lambda).sorted { losses[$0] < losses[$1] || (losses[$0] == losses[$1] && $0 < $1) }

        var yw = [Double](repeating: 0, count: n), zw = [Double](repeating: 0, count: n)
        for i in 0..<mu {
            for j in 0..<n {
                yw[j] += weights[i] * y[order[i]][j]
                zw[j] += weights[i] * z[order[i]][j]
            }
        }
        let newMean = (0..<n).map { mean[$0] + learningRate * stepSize * yw[$0] }
        let whitened = (0..<n).map { i in (0..<n).reduce(0.0) { $0 + b[i * n + $1] * zw[$1] } }  // C^(−½)⟨y⟩_w
        let cs = cumulationSigma, cc = cumulationCovariance, muEff = effectiveSelectionMass
        let sigmaScale = (cs * (2 - cs) * muEff).squareRoot()
        let newSigmaPath = (0..<n).map { (1 - cs) * sigmaPath[$0] + sigmaScale * whitened[$0] }
        let pathNorm = newSigmaPath.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let newStepSize = stepSize * Foundation.exp((cs / dampingSigma) * (pathNorm / expectedNorm - 1))
        let stalled = pathNorm / (1 - pow(1 - cs, Double(2 * (g + 1)))).squareRoot()
            >= (1.4 + 2 / Double(n + 1)) * expectedNorm
        let h: Double = stalled ? 0 : 1
        let cScale = (cc * (2 - cc) * muEff).squareRoot()
        let newCovariancePath = (0..<n).map { (1 - cc) * covariancePath[$0] + h * cScale * yw[$0] }
        let delta = (1 - h) * cc * (2 - cc)
        let c1 = rankOneRate, cmu = rankMuRate
        let decay = 1 + c1 * delta - c1 - cmu * weights.reduce(0, +)
        var newCovariance = covariance.map { $0 * decay }
        for i in 0..<lambda where weights[i] != 0 {
            let yi = y[order[i]]
            let w = weights[i] >= 0 ? weights[i]
                : weights[i] * Double(n) / z[order[i]].reduce(0) { $0 + $1 * $1 }
            for r in 0..<n { for c in 0..<n { newCovariance[r * n + c] += cmu * w * yi[r] * yi[c] } }
        }
        for r in 0..<n {
            for c in 0..<n { newCovariance[r * n + c] += c1 * newCovariancePath[r] * newCovariancePath[c] }
        }
        for r in 0..<n {
            for c in (r + 1)..<n {
                let s = (newCovariance[r * n + c] + newCovariance[c * n + r]) / 2
                newCovariance[r * n + c] = s
                newCovariance[c * n + r] = s
            }
        }
        try engine.assign(try Tensor(newMean.map { Float($0) }, on: engine.backend))

        if losses[order[0]] < bestLoss {
            bestLoss = losses[order[0]]
            bestSolution = candidates[order[0]]
        }
        mean = newMean
        stepSize = newStepSize
        sigmaPath = newSigmaPath
        covariancePath = newCovariancePath
        covariance = newCovariance
        lastStandardSamples = z
        lastLosses = losses
        stepCount += 1
    }

    /// The eigendecomposition C = V·diag(values)·Vᵀ of a symmetric n × n matrix (row-major; only
    /// the upper triangle is read) by cyclic Jacobi rotations in Float64, the solver Shampoo uses.
    /// `vectors` is row-major with eigenvector j in column j (orthonormal); eigenvalues are in no
    /// particular order.
    /// - Throws: `TensorError.invalidArgument` for a size other than n·n or a non-finite entry.
    public static func symmetricEigendecomposition(_ matrix: [Double], dimension n: Int) throws
        -> (values: [Double], vectors: [Double])
    {
        guard n >= 0, matrix.count == n * n else {
            throw TensorError(.invalidArgument, op: "CMAES.symmetricEigendecomposition",
                              "needs \(n) × \(n) = \(n * n) entries, got \(matrix.count)")
        }
        guard matrix.allSatisfy(\.isFinite) else {
            throw TensorError(.invalidArgument, op: "CMAES.symmetricEigendecomposition", "the matrix has a non-finite entry")
        }
        var a = matrix
        for r in 0..<n { for c in 0..<r { a[r * n + c] = a[c * n + r] } }
        return HostLinearAlgebra.symmetricEigen(a, n: n)
    }

    /// All scalars (Float64, exact): "step", "lr" (c_m), "sigma", "dimension", "population_size",
    /// "seed_low", "seed_high", "mean.<i>", "path_sigma.<i>", "path_c.<i>", "covariance.<i>.<j>"
    /// for i ≤ j, and "best_loss", "best.<i>" once a generation ran.
    public func stateDictionary() throws -> OptimizerState {
        let n = dimension
        var s: [String: Double] = ["step": Double(stepCount), "lr": learningRate, "sigma": stepSize,
                                   "dimension": Double(n), "population_size": Double(populationSize)]
        s.merge(OptimizerStateReader.seedEntries(seed)) { $1 }
        for i in 0..<n {
            s["mean.\(i)"] = mean[i]
            s["path_sigma.\(i)"] = sigmaPath[i]
            s["path_c.\(i)"] = covariancePath[i]
            for j in i..<n { s["covariance.\(i).\(j)"] = covariance[i * n + j] }
        }
        if let bestSolution {
            s["best_loss"] = Double(bestLoss)
            for (i, v) in bestSolution.enumerated() { s["best.\(i)"] = Double(v) }
        }
        return OptimizerState(scalars: s)
    }

    /// Restores a state from `stateDictionary()`; n and λ must match. The parameters are not
    /// changed (they are saved with the model).
    /// - Throws: `TensorError` for a missing, non-finite or mismatched entry; nothing changes then.
    public func loadStateDictionary(_ state: OptimizerState) throws {
        let r = OptimizerStateReader(op: "CMAES", state: state)
        let n = dimension
        let step = try r.integer("step")
        let lr = try r.learningRate(positive: true)
        let sigma = try r.scalar("sigma")
        guard sigma > 0 else { throw TensorError(.invalidArgument, op: "CMAES", "state sigma must be positive, got \(sigma)") }
        _ = try r.integer("dimension", minimum: 1, expected: n)
        _ = try r.integer("population_size", minimum: 2, expected: populationSize)
        let newSeed = try r.seed()
        let m = try (0..<n).map { try r.scalar("mean.\($0)") }
        let ps = try (0..<n).map { try r.scalar("path_sigma.\($0)") }
        let pc = try (0..<n).map { try r.scalar("path_c.\($0)") }
        var c = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in i..<n {
                c[i * n + j] = try r.scalar("covariance.\(i).\(j)")
                c[j * n + i] = c[i * n + j]
            }
        }
        var best: (Float, [Float])? = nil
        if state.scalars["best_loss"] != nil {
            guard let l = state.scalars["best_loss"], !l.isNaN else {
                throw TensorError(.invalidArgument, op: "CMAES", "state scalar \"best_loss\" is NaN")
            }
            best = (Float(l), try (0..<n).map { Float(try r.scalar("best.\($0)")) })
        }
        stepCount = step
        learningRate = lr
        stepSize = sigma
        seed = newSeed
        mean = m
        sigmaPath = ps
        covariancePath = pc
        covariance = c
        bestLoss = best?.0 ?? .infinity
        bestSolution = best?.1
        lastStandardSamples = []
        lastLosses = []
    }
}
