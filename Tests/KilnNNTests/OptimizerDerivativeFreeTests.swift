import Foundation
import Kiln
import KilnTestSupport
import Testing

// ParticleSwarm, EvolutionStrategies and CMAES: Float64 oracles of their first iterations from
// the published algorithms with the documented Philox streams, determinism across runs and
// backends, minimisation of a sphere / ellipsoid, the Jacobi solver, errors and state round trips.

/// f(θ) = Σᵢ cᵢ θᵢ² over θ = (p₀ [2], p₁ [2, 1]) flattened, P = 4.
struct DFQuadratic: CustomStringConvertible, Sendable {
    let name: String
    let coefficients: [Double]
    var start: [Float] = [1.5, -2, 0.5, 1]
    var description: String { name }

    static let sphere = DFQuadratic(name: "sphere", coefficients: [1, 1, 1, 1])
    /// Condition number 10³.
    static let ellipsoid = DFQuadratic(name: "ellipsoid", coefficients: (0..<4).map { Foundation.pow(10, 3 * Double($0) / 3) })

    func f(_ x: [Double]) -> Double { zip(coefficients, x).reduce(0) { $0 + $1.0 * $1.1 * $1.1 } }

    func kiln(on backend: any Backend, start: [Float]? = nil) throws -> (parameters: [Parameter], loss: () throws -> Tensor) {
        let s = start ?? self.start
        let p0 = Parameter(try Tensor(Array(s[0..<2]), shape: [2], on: backend))
        let p1 = Parameter(try Tensor(Array(s[2..<4]), shape: [2, 1], on: backend))
        let c = try Tensor(coefficients.map(Float.init), on: backend)
        return ([p0, p1], {
            let x = try Tensor.concatenated([p0.value.flattened(), p1.value.flattened()], axis: 0)
            return try (square(x) * c).sum()
        })
    }
}

private func values(_ parameters: [Parameter]) throws -> [Float] { try parameters.flatMap { try $0.value.scalars() } }
private func doubles(_ v: [Float]) -> [Double] { v.map(Double.init) }

private func expectOptimizerError(_ op: String, mentioning word: String, sourceLocation: SourceLocation = #_sourceLocation,
                                  _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected \(op) to throw (\(word))", sourceLocation: sourceLocation)
    } catch let e as TensorError {
        #expect(e.op == op && e.message.contains(word), "\(e)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
}

private func uniform(_ stream: UInt32, _ index: Int, seed: UInt64, count: Int, low: Float = 0) -> [Double] {
    let key = DerivativeFreeRandom.key(seed: seed, stream: stream, index: index)
    return doubles(Philox.samples(.uniform(low: low, high: 1), seed: key, count: count))
}

private func close(_ a: Double, _ b: Double) -> Bool { Swift.abs(a - b) <= 1e-12 * Swift.max(1, Swift.abs(b)) }

private let oracleTolerance = Tolerance(absolute: 2e-5, relative: 1e-4)
private let crossBackendTolerance = Tolerance(absolute: 1e-5, relative: 1e-4)

// MARK: - Oracles

/// Kennedy–Eberhart PSO with the documented initialisation and streams: θ after `iterations`
/// and the personal-best losses.
private func psoOracle(_ q: DFQuadratic, swarm s: Int, spread: Double, seed: UInt64, iterations: Int,
                       omega: Double = 0.7298, c1: Double = 1.49618, c2: Double = 1.49618)
    -> (best: [Double], bestLosses: [Double], positions: [Double], velocities: [Double])
{
    let p = 4, theta = doubles(q.start)
    let u = uniform(DerivativeFreeRandom.swarmInitialization, 0, seed: seed, count: s * p, low: -1)
    var x = (0..<s).map { i in (0..<p).map { j in i == 0 ? theta[j] : theta[j] + spread * u[i * p + j] } }
    var v = [[Double]](repeating: [Double](repeating: 0, count: p), count: s)
    var best = x, bestLoss = x.map(q.f)
    func argmin(_ l: [Double]) -> Int { l.indices.min { l[$0] < l[$1] }! }
    for t in 0..<iterations {
        let r1 = uniform(DerivativeFreeRandom.swarmCognitive, t, seed: seed, count: s * p)
        let r2 = uniform(DerivativeFreeRandom.swarmSocial, t, seed: seed, count: s * p)
        let g = best[argmin(bestLoss)]
        for i in 0..<s {
            for j in 0..<p {
                v[i][j] = omega * v[i][j] + c1 * r1[i * p + j] * (best[i][j] - x[i][j]) + c2 * r2[i * p + j] * (g[j] - x[i][j])
                x[i][j] += v[i][j]
            }
            let l = q.f(x[i])
            if l < bestLoss[i] { (best[i], bestLoss[i]) = (x[i], l) }
        }
    }
    return (best[argmin(bestLoss)], bestLoss, x.flatMap { $0 }, v.flatMap { $0 })
}

/// OpenAI-ES with mirrored sampling (Salimans et al. 2017, Algorithm 1): θ after `steps`.
private func esOracle(_ q: DFQuadratic, alpha: Double, sigma: Double, pairs k: Int, ranks: Bool, seed: UInt64,
                      steps: Int) -> [Double] {
    var theta = doubles(q.start)
    let p = theta.count
    for t in 0..<steps {
        let eps = doubles(Philox.samples(.normal(mean: 0, standardDeviation: 1),
                                         seed: EvolutionStrategies.noiseSeed(seed: seed, generation: t), count: k * p))
        var fitness: [Double] = []  // F = −loss, order θ+σε₀, θ−σε₀, …
        for i in 0..<k {
            for sign in [1.0, -1.0] { fitness.append(-q.f((0..<p).map { theta[$0] + sign * sigma * eps[i * p + $0] })) }
        }
        if ranks {
            // Centred ranks as OpenAI's compute_centered_ranks: rank/(n − 1) − ½, rank 0 = lowest F.
            let n = fitness.count
            let order = fitness.indices.sorted { fitness[$0] < fitness[$1] }
            var r = [Double](repeating: 0, count: n)
            for (rank, i) in order.enumerated() { r[i] = Double(rank) / Double(n - 1) - 0.5 }
            fitness = r
        }
        var step = [Double](repeating: 0, count: p)
        for i in 0..<2 * k {
            let sign: Double = i % 2 == 0 ? 1 : -1
            for j in 0..<p { step[j] += fitness[i] * sign * eps[(i / 2) * p + j] }
        }
        theta = (0..<p).map { theta[$0] + alpha / (Double(2 * k) * sigma) * step[$0] }
    }
    return theta
}

struct OptimizerDerivativeFreeTests {
    // MARK: Particle swarm

    @Test("PSO: four iterations match the Float64 oracle with the documented streams", arguments: TestBackend.all)
    func psoOracleMatch(_ tb: TestBackend) throws {
        let q = DFQuadratic.ellipsoid
        let (ps, loss) = try q.kiln(on: tb.backend)
        let pso = try ParticleSwarm(parameters: ps, loss: loss, swarmSize: 6, initialSpread: 0.8, seed: 17)
        for _ in 0..<4 { try pso.step() }
        let oracle = psoOracle(q, swarm: 6, spread: 0.8, seed: 17, iterations: 4)
        let got = try values(ps)
        #expect(mismatch(got, oracle.best, tolerance: oracleTolerance) == nil,
                "\(mismatch(got, oracle.best, tolerance: oracleTolerance) ?? "")")
        #expect(mismatch(pso.personalBestLosses, oracle.bestLosses, tolerance: oracleTolerance) == nil)
        // Positions and velocities, read back from the state ([6, 2] and [6, 2, 1] pieces).
        let state = try pso.stateDictionary()
        func joined(_ name: String) throws -> [Float] {
            let a = try #require(state.tensors["0.\(name)"]).scalars(), b = try #require(state.tensors["1.\(name)"]).scalars()
            var out: [Float] = []
            for i in 0..<6 {
                let lo: Int = 2 * i, hi: Int = 2 * i + 2
                out += a[lo..<hi]
                out += b[lo..<hi]
            }
            return out
        }
        #expect(mismatch(try joined("positions"), oracle.positions, tolerance: oracleTolerance) == nil)
        #expect(mismatch(try joined("velocities"), oracle.velocities, tolerance: oracleTolerance) == nil)
        #expect(q.f(oracle.best) < q.f(doubles(q.start)) && pso.stepCount == 4)
    }

    @Test("PSO: deterministic for a seed, the same on every backend, minimises the sphere", arguments: TestBackend.all)
    func psoMinimises(_ tb: TestBackend) throws {
        let q = DFQuadratic.sphere
        func run(_ backend: any Backend, seed: UInt64, steps: Int) throws -> ([Float], ParticleSwarm) {
            let (ps, loss) = try q.kiln(on: backend)
            let pso = try ParticleSwarm(parameters: ps, loss: loss, swarmSize: 12, initialSpread: 2, seed: seed)
            var previous = Float.infinity
            for _ in 0..<steps {
                try pso.step()
                #expect(pso.globalBestLoss <= previous)
                previous = pso.globalBestLoss
            }
            return (try values(ps), pso)
        }
        let (a, _) = try run(tb.backend, seed: 5, steps: 12)
        let (again, _) = try run(tb.backend, seed: 5, steps: 12)
        #expect(a == again)
        let (other, _) = try run(tb.backend, seed: 6, steps: 12)
        #expect(a != other)
        let (reference, _) = try run(CPUBackend.shared, seed: 5, steps: 12)
        #expect(mismatch(a, doubles(reference), tolerance: crossBackendTolerance) == nil)

        let (x, pso) = try run(tb.backend, seed: 5, steps: 150)
        #expect(q.f(doubles(x)) < 1e-6, "f = \(q.f(doubles(x)))")
        #expect(pso.globalBestLoss < 1e-6 && pso.globalBestLoss == pso.personalBestLosses.min())
    }

    // MARK: Evolution strategies

    @Test("ES: steps match the Float64 oracle, raw fitness and centred ranks",
          arguments: TestBackend.all, [false, true])
    func esOracleMatch(_ tb: TestBackend, _ ranks: Bool) throws {
        let q = DFQuadratic.ellipsoid
        let (ps, loss) = try q.kiln(on: tb.backend)
        let es = try EvolutionStrategies(parameters: ps, loss: loss, learningRate: ranks ? 0.05 : 0.0004,
                                         noiseStandardDeviation: 0.1, perturbationPairs: 5,
                                         fitnessShaping: ranks ? .centeredRanks : .none, seed: 23)
        for _ in 0..<3 { try es.step() }
        let expected = esOracle(q, alpha: ranks ? 0.05 : 0.0004, sigma: 0.1, pairs: 5, ranks: ranks, seed: 23, steps: 3)
        let got = try values(ps)
        #expect(mismatch(got, expected, tolerance: oracleTolerance) == nil, "\(mismatch(got, expected, tolerance: oracleTolerance) ?? "")")
        #expect(es.lastLosses.count == 10)
        #expect(q.f(expected) < q.f(doubles(q.start)))
    }

    @Test("ES: deterministic for a seed, the same on every backend, minimises the sphere", arguments: TestBackend.all)
    func esMinimises(_ tb: TestBackend) throws {
        let q = DFQuadratic.sphere
        func run(_ backend: any Backend, seed: UInt64, steps: Int) throws -> [Float] {
            let (ps, loss) = try q.kiln(on: backend)
            let es = try EvolutionStrategies(parameters: ps, loss: loss, learningRate: 0.1, noiseStandardDeviation: 0.05,
                                             perturbationPairs: 8, seed: seed)
            for _ in 0..<steps { try es.step() }
            return try values(ps)
        }
        let a = try run(tb.backend, seed: 1, steps: 10)
        #expect(a == (try run(tb.backend, seed: 1, steps: 10)))
        #expect(a != (try run(tb.backend, seed: 2, steps: 10)))
        #expect(mismatch(a, doubles(try run(CPUBackend.shared, seed: 1, steps: 10)), tolerance: crossBackendTolerance) == nil)
        let x = try run(tb.backend, seed: 1, steps: 120)
        #expect(q.f(doubles(x)) < 1e-6, "f = \(q.f(doubles(x)))")
    }

    // MARK: CMA-ES

    @Test("CMA-ES: Table 1 defaults and the first generation's m, σ, paths and C match the Float64 oracle",
          arguments: TestBackend.all)
    func cmaFirstGeneration(_ tb: TestBackend) throws {
        let q = DFQuadratic.ellipsoid
        let (ps, loss) = try q.kiln(on: tb.backend)
        let sigma0 = 0.3
        let cma = try CMAES(parameters: ps, loss: loss, initialStepSize: sigma0, seed: 99)
        // Table 1 for n = 4, written out from the tutorial.
        let n = 4.0, lambda = 4 + Int(Foundation.floor(3 * Foundation.log(n))), mu = lambda / 2
        #expect(cma.populationSize == 8 && lambda == 8 && cma.parentCount == mu)
        let raw = (1...lambda).map { Foundation.log((Double(lambda) + 1) / 2) - Foundation.log(Double($0)) }
        let pos = Array(raw[..<mu]), neg = Array(raw[mu...])
        let muEff = Foundation.pow(pos.reduce(0, +), 2) / pos.map { $0 * $0 }.reduce(0, +)
        let muEffMinus = Foundation.pow(neg.reduce(0, +), 2) / neg.map { $0 * $0 }.reduce(0, +)
        let cs = (muEff + 2) / (n + muEff + 5)
        let ds = 1 + 2 * Swift.max(0, ((muEff - 1) / (n + 1)).squareRoot() - 1) + cs
        let cc = (4 + muEff / n) / (n + 4 + 2 * muEff / n)
        let c1 = 2 / (Foundation.pow(n + 1.3, 2) + muEff)
        let cmu = Swift.min(1 - c1, 2 * (muEff - 2 + 1 / muEff) / (Foundation.pow(n + 2, 2) + muEff))
        let negScale = Swift.min(1 + c1 / cmu, 1 + 2 * muEffMinus / (muEff + 2), (1 - c1 - cmu) / (n * cmu))
            / neg.map { Swift.abs($0) }.reduce(0, +)
        let w = raw.map { $0 >= 0 ? $0 / pos.reduce(0, +) : $0 * negScale }
        #expect(zip(cma.weights, w).allSatisfy { close($0, $1) } && close(cma.weights[..<mu].reduce(0, +), 1))
        #expect(cma.weights[mu...].allSatisfy { $0 < 0 })
        #expect(close(cma.effectiveSelectionMass, muEff) && close(cma.cumulationSigma, cs) && close(cma.dampingSigma, ds))
        #expect(close(cma.cumulationCovariance, cc) && close(cma.rankOneRate, c1) && close(cma.rankMuRate, cmu))

        try cma.step()
        // The oracle: C = I so B = D = I and y = z; the loss is evaluated in Float64.
        let z = cma.lastStandardSamples
        #expect(z.count == lambda && z.allSatisfy { $0.count == 4 })
        let key = DerivativeFreeRandom.key(seed: 99, stream: DerivativeFreeRandom.cmaSamples, index: 0)
        #expect(z.flatMap { $0 } == doubles(Philox.samples(.normal(mean: 0, standardDeviation: 1), seed: key, count: 32)))
        let m0 = doubles(q.start)
        let xs = z.map { zk in (0..<4).map { m0[$0] + sigma0 * zk[$0] } }
        let order = (0..<lambda).sorted { q.f(xs[$0]) < q.f(xs[$1]) }
        let yw = (0..<4).map { j in (0..<mu).reduce(0.0) { $0 + w[$1] * z[order[$1]][j] } }
        let m1 = (0..<4).map { m0[$0] + sigma0 * yw[$0] }
        let ps1 = yw.map { (cs * (2 - cs) * muEff).squareRoot() * $0 }
        let chi = n.squareRoot() * (1 - 1 / (4 * n) + 1 / (21 * n * n))
        let psNorm = ps1.map { $0 * $0 }.reduce(0, +).squareRoot()
        let sigma1 = sigma0 * Foundation.exp(cs / ds * (psNorm / chi - 1))
        let h: Double = psNorm / (1 - Foundation.pow(1 - cs, 2)).squareRoot() < (1.4 + 2 / (n + 1)) * chi ? 1 : 0
        let pc1 = yw.map { h * (cc * (2 - cc) * muEff).squareRoot() * $0 }
        let delta = (1 - h) * cc * (2 - cc)
        var c = [Double](repeating: 0, count: 16)
        for r in 0..<4 {
            for col in 0..<4 {
                var v = (r == col ? 1 : 0) * (1 + c1 * delta - c1 - cmu * w.reduce(0, +)) + c1 * pc1[r] * pc1[col]
                for i in 0..<lambda {
                    let zi = z[order[i]]
                    let wi = w[i] >= 0 ? w[i] : w[i] * n / zi.map { $0 * $0 }.reduce(0, +)
                    v += cmu * wi * zi[r] * zi[col]
                }
                c[r * 4 + col] = v
            }
        }
        #expect(zip(cma.mean, m1).allSatisfy { close($0, $1) }, "m: \(cma.mean) vs \(m1)")
        #expect(close(cma.stepSize, sigma1), "σ: \(cma.stepSize) vs \(sigma1)")
        #expect(zip(cma.sigmaPath, ps1).allSatisfy { close($0, $1) } && zip(cma.covariancePath, pc1).allSatisfy { close($0, $1) })
        #expect(zip(cma.covariance, c).allSatisfy { close($0, $1) }, "C: \(cma.covariance) vs \(c)")
        #expect(try values(ps) == m1.map(Float.init))
        #expect(cma.bestLoss == cma.lastLosses.min() && Swift.abs(Double(cma.bestLoss) / q.f(xs[order[0]]) - 1) < 1e-5)
    }

    @Test("CMA-ES: deterministic for a seed, the same on every backend, minimises the ellipsoid", arguments: TestBackend.all)
    func cmaMinimises(_ tb: TestBackend) throws {
        let q = DFQuadratic.ellipsoid
        func run(_ backend: any Backend, seed: UInt64, steps: Int) throws -> ([Float], CMAES) {
            let (ps, loss) = try q.kiln(on: backend)
            let cma = try CMAES(parameters: ps, loss: loss, initialStepSize: 0.5, seed: seed)
            for _ in 0..<steps { try cma.step() }
            return (try values(ps), cma)
        }
        let (a, _) = try run(tb.backend, seed: 4, steps: 12)
        #expect(a == (try run(tb.backend, seed: 4, steps: 12)).0)
        #expect(a != (try run(tb.backend, seed: 5, steps: 12)).0)
        #expect(mismatch(a, doubles((try run(CPUBackend.shared, seed: 4, steps: 12)).0), tolerance: crossBackendTolerance) == nil)
        let (x, cma) = try run(tb.backend, seed: 4, steps: 150)
        #expect(q.f(doubles(x)) < 1e-8, "f(m) = \(q.f(doubles(x)))")
        #expect(cma.stepSize < 1e-2 && Double(cma.bestLoss) < 1e-6)
        // C learns the ellipsoid's shape: its condition number approaches 10³.
        let eig = try CMAES.symmetricEigendecomposition(cma.covariance, dimension: 4).values
        #expect(eig.max()! / eig.min()! > 100, "\(eig)")
    }

    @Test("Jacobi eigendecomposition: C = V·diag(λ)·Vᵀ with orthonormal V, known spectra")
    func jacobi() throws {
        let (v2, e2) = try { let r = try CMAES.symmetricEigendecomposition([2, 1, 1, 2], dimension: 2); return (r.values, r.vectors) }()
        #expect(Set(v2.map { ($0 * 1e9).rounded() / 1e9 }) == [1, 3])
        #expect(Swift.abs(Swift.abs(e2[0]) - 0.5.squareRoot()) < 1e-12)
        let n = 7
        let g = doubles(testValues(n * n, seed: 5, range: -1...1))
        let a = (0..<n * n).map { (g[$0] + g[($0 % n) * n + $0 / n]) / 2 }
        let (values, vectors) = try CMAES.symmetricEigendecomposition(a, dimension: n)
        for r in 0..<n {
            for c in 0..<n {
                let rebuilt = (0..<n).reduce(0.0) { $0 + vectors[r * n + $1] * values[$1] * vectors[c * n + $1] }
                #expect(Swift.abs(rebuilt - a[r * n + c]) < 1e-12)
                let gram = (0..<n).reduce(0.0) { $0 + vectors[$1 * n + r] * vectors[$1 * n + c] }
                #expect(Swift.abs(gram - (r == c ? 1 : 0)) < 1e-12)
            }
        }
        let trace: Double = (0..<n).reduce(0.0) { $0 + a[$1 * n + $1] }
        let eigenvalueSum: Double = values.reduce(0, +)
        #expect(Swift.abs(eigenvalueSum - trace) < 1e-12)
        #expect(throws: TensorError.self) { try CMAES.symmetricEigendecomposition([1, 2, 3], dimension: 2) }
        #expect(throws: TensorError.self) { try CMAES.symmetricEigendecomposition([1, .nan, .nan, 1], dimension: 2) }
    }

    // MARK: Errors and states

    @Test("Invalid hyperparameters and losses throw, naming the value; parameters are restored")
    func errors() throws {
        let b = CPUBackend.shared
        let (ps, loss) = try DFQuadratic.sphere.kiln(on: b)
        expectOptimizerError("ParticleSwarm", mentioning: "swarmSize") { _ = try ParticleSwarm(parameters: ps, loss: loss, swarmSize: 0) }
        expectOptimizerError("ParticleSwarm", mentioning: "inertia") { _ = try ParticleSwarm(parameters: ps, loss: loss, inertia: .nan) }
        expectOptimizerError("ParticleSwarm", mentioning: "cognitiveCoefficient") {
            _ = try ParticleSwarm(parameters: ps, loss: loss, cognitiveCoefficient: -1)
        }
        expectOptimizerError("ParticleSwarm", mentioning: "initialSpread") { _ = try ParticleSwarm(parameters: ps, loss: loss, initialSpread: 0) }
        expectOptimizerError("ParticleSwarm", mentioning: "maximumVelocity") {
            _ = try ParticleSwarm(parameters: ps, loss: loss, maximumVelocity: .infinity)
        }
        expectOptimizerError("ParticleSwarm", mentioning: "at least one parameter") { _ = try ParticleSwarm(parameters: [], loss: loss) }
        for lr in [0.0, -1, .nan] {
            expectOptimizerError("EvolutionStrategies", mentioning: "learning rate") {
                _ = try EvolutionStrategies(parameters: ps, loss: loss, learningRate: lr)
            }
            expectOptimizerError("CMAES", mentioning: "learning rate") { _ = try CMAES(parameters: ps, loss: loss, learningRate: lr) }
        }
        expectOptimizerError("EvolutionStrategies", mentioning: "noiseStandardDeviation") {
            _ = try EvolutionStrategies(parameters: ps, loss: loss, learningRate: 0.1, noiseStandardDeviation: .nan)
        }
        expectOptimizerError("EvolutionStrategies", mentioning: "perturbationPairs") {
            _ = try EvolutionStrategies(parameters: ps, loss: loss, learningRate: 0.1, perturbationPairs: 0)
        }
        expectOptimizerError("CMAES", mentioning: "initialStepSize") { _ = try CMAES(parameters: ps, loss: loss, initialStepSize: -0.1) }
        expectOptimizerError("CMAES", mentioning: "populationSize") { _ = try CMAES(parameters: ps, loss: loss, populationSize: 1) }
        let big = Parameter(try Tensor.zeros([CMAES.maximumDimension + 1], on: b))
        expectOptimizerError("CMAES", mentioning: "n ≤ \(CMAES.maximumDimension)") {
            _ = try CMAES(parameters: [big], loss: { try big.value.sum() })
        }

        // A learning rate made invalid later is caught by step().
        let es = try EvolutionStrategies(parameters: ps, loss: loss, learningRate: 0.1)
        es.learningRate = -.infinity
        expectOptimizerError("EvolutionStrategies", mentioning: "learning rate") { try es.step() }

        // Bad losses: not one element; infinite with raw fitness. The parameters get their values back.
        let before = try values(ps)
        let wide = try ParticleSwarm(parameters: ps, loss: { try ps[0].value * 1 }, swarmSize: 3)
        expectOptimizerError("ParticleSwarm", mentioning: "one element") { try wide.step() }
        #expect(try values(ps) == before && wide.stepCount == 0 && wide.personalBestLosses.isEmpty)
        let infinite = try EvolutionStrategies(parameters: ps, loss: { try (ps[0].value.sum() * 0) + Float.infinity },
                                               learningRate: 0.1)
        expectOptimizerError("EvolutionStrategies", mentioning: "centeredRanks") { try infinite.step() }
        #expect(try values(ps) == before && infinite.stepCount == 0)
        let ranked = try EvolutionStrategies(parameters: ps, loss: { try (ps[0].value.sum() * 0) + Float.infinity },
                                             learningRate: 0.1, fitnessShaping: .centeredRanks)
        try ranked.step()  // all tied: rank differences of ±1/(n−1) still give a finite step
        #expect(try values(ps).allSatisfy(\.isFinite))
        struct Boom: Error {}
        var calls = 0
        let (qs, good) = try DFQuadratic.sphere.kiln(on: b)
        let cma = try CMAES(parameters: qs, loss: { calls += 1; if calls == 5 { throw Boom() }; return try good() })
        let start = try values(qs)
        #expect(throws: Boom.self) { try cma.step() }
        #expect(try values(qs) == start && cma.stepCount == 0 && cma.mean == doubles(start))
    }

    @Test("State round trips: resuming from stateDictionary() continues identically", arguments: TestBackend.all)
    func stateRoundTrips(_ tb: TestBackend) throws {
        let q = DFQuadratic.ellipsoid
        let makers: [(String, ([Parameter], @escaping () throws -> Tensor) throws -> any Optimizer)] = [
            ("ParticleSwarm", { try ParticleSwarm(parameters: $0, loss: $1, swarmSize: 5, seed: 3) }),
            ("EvolutionStrategies", { try EvolutionStrategies(parameters: $0, loss: $1, learningRate: 0.01, noiseStandardDeviation: 0.1,
                                                              perturbationPairs: 3, fitnessShaping: .centeredRanks, seed: 3) }),
            ("CMAES", { try CMAES(parameters: $0, loss: $1, initialStepSize: 0.4, seed: 3) }),
        ]
        for (name, make) in makers {
            let (ps, loss) = try q.kiln(on: tb.backend)
            let optimizer = try make(ps, loss)
            for _ in 0..<3 { try optimizer.step() }
            let saved = try optimizer.stateDictionary()
            let savedValues = try values(ps)
            for _ in 0..<4 { try optimizer.step() }
            let expected = try values(ps)

            let (fresh, freshLoss) = try q.kiln(on: tb.backend, start: savedValues)
            let resumed = try make(fresh, freshLoss)
            try resumed.loadStateDictionary(saved)
            #expect(resumed.stepCount == 3, "\(name)")
            #expect(try resumed.stateDictionary().scalars == saved.scalars, "\(name)")
            for _ in 0..<4 { try resumed.step() }
            #expect(try values(fresh) == expected, "\(name)")

            let (other, otherLoss) = try q.kiln(on: tb.backend, start: savedValues)
            let cold = try make(other, otherLoss)
            for _ in 0..<4 { try cold.step() }
            #expect(try values(other) != expected, "\(name): the state must matter")

            var broken = saved
            broken.scalars["step"] = 1.5
            expectOptimizerError(name, mentioning: "\"step\"") { try resumed.loadStateDictionary(broken) }
            #expect(resumed.stepCount == 7)
        }
        // A swarm state with a tensor of the wrong shape is rejected before anything changes.
        let (ps, loss) = try q.kiln(on: tb.backend)
        let pso = try ParticleSwarm(parameters: ps, loss: loss, swarmSize: 5, seed: 3)
        try pso.step()
        var bad = try pso.stateDictionary()
        bad.tensors["1.velocities"] = try Tensor.zeros([5, 2], on: tb.backend)
        bad.scalars["step"] = 9
        expectOptimizerError("ParticleSwarm", mentioning: "1.velocities") { try pso.loadStateDictionary(bad) }
        #expect(pso.stepCount == 1)
        var badCMA = try CMAES(parameters: ps, loss: loss).stateDictionary()
        badCMA.scalars["covariance.1.2"] = nil
        expectOptimizerError("CMAES", mentioning: "covariance.1.2") { try CMAES(parameters: ps, loss: loss).loadStateDictionary(badCMA) }
    }
}
