import Foundation
import Kiln
import KilnTestSupport
import Testing

// SVRG, SARAH, SPIDER and SAGA on a small least-squares problem, against Float64 oracles written
// from the published algorithms with the same sample indices, on every backend.

/// fᵢ(w, c) = ½(aᵢᵀw + c − bᵢ)², n = 12 samples, d = 3 features; θ = (w, c) flattened as w then c.
struct VRLeastSquares {
    static let n = 12, d = 3
    let a: [Float] = testValues(n * d, seed: 71, range: -1...1)
    let b: [Float]
    let start: [Float] = [0.2, -0.1, 0.4, 0.05]

    init() {
        let noise = testValues(Self.n, seed: 72, range: -0.3...0.3)
        let truth: [Double] = [0.5, -1, 2, 0.3]
        let a = self.a
        b = (0..<Self.n).map { i in
            Float((0..<Self.d).reduce(truth[3]) { $0 + Double(a[i * Self.d + $1]) * truth[$1] } + Double(noise[i]))
        }
    }

    /// ∇ of the batch-mean loss at θ, Float64.
    func gradient(_ theta: [Double], _ indices: [Int]) -> [Double] {
        var g = [Double](repeating: 0, count: Self.d + 1)
        for i in indices {
            let row = (0..<Self.d).map { Double(a[i * Self.d + $0]) }
            let r = (0..<Self.d).reduce(theta[Self.d]) { $0 + row[$1] * theta[$1] } - Double(b[i])
            for j in 0..<Self.d { g[j] += r * row[j] }
            g[Self.d] += r
        }
        return g.map { $0 / Double(indices.count) }
    }

    func full(_ theta: [Double]) -> [Double] { gradient(theta, Array(0..<Self.n)) }

    /// The least-squares solution from the normal equations (Gaussian elimination, Float64).
    func solution() -> [Double] {
        let m = Self.d + 1
        var h = [[Double]](repeating: [Double](repeating: 0, count: m + 1), count: m)
        for i in 0..<Self.n {
            let row = (0..<Self.d).map { Double(a[i * Self.d + $0]) } + [1]
            for r in 0..<m {
                for c in 0..<m { h[r][c] += row[r] * row[c] }
                h[r][m] += row[r] * Double(b[i])
            }
        }
        for col in 0..<m {
            let pivot = (col..<m).max { Swift.abs(h[$0][col]) < Swift.abs(h[$1][col]) }!
            h.swapAt(col, pivot)
            for r in 0..<m where r != col {
                let f = h[r][col] / h[col][col]
                for c in col...m { h[r][c] -= f * h[col][c] }
            }
        }
        return (0..<m).map { h[$0][m] / h[$0][$0] }
    }

    /// Parameters w [3, 1] and c [1] at `start`, and the objective over them.
    func kiln(on backend: any Backend, start: [Float]? = nil, maximumBatchSize: Int? = nil) throws
        -> (parameters: [Parameter], objective: FiniteSumObjective)
    {
        let s = start ?? self.start
        let w = Parameter(try Tensor(Array(s[0..<3]), shape: [3, 1], on: backend))
        let c = Parameter(try Tensor([s[3]], shape: [1], on: backend))
        let features = try Tensor(a, shape: [Self.n, Self.d], on: backend)
        let targets = try Tensor(b, shape: [Self.n], on: backend)
        let objective = try FiniteSumObjective(sampleCount: Self.n, maximumBatchSize: maximumBatchSize) { indices in
            let rows = try features.indexSelected(axis: 0, indices: indices)
            let prediction: Tensor = try matmul(rows, w.value).reshaped(to: [indices.count]) + c.value
            let residual: Tensor = try prediction - targets.indexSelected(axis: 0, indices: indices)
            return try square(residual).mean() * 0.5
        }
        return ([w, c], objective)
    }
}

private func values(_ parameters: [Parameter]) throws -> [Float] {
    try parameters.flatMap { try $0.value.scalars() }
}

private func axpy(_ x: [Double], _ alpha: Double, _ y: [Double]) -> [Double] { zip(x, y).map { $0 + alpha * $1 } }
private func norm(_ x: [Double]) -> Double { x.reduce(0) { $0 + $1 * $1 }.squareRoot() }

/// One method under test: how Kiln builds it and the Float64 oracle of `steps` steps, which
/// returns θ and the indices each step drew.
struct VRCase: CustomStringConvertible, @unchecked Sendable {
    let name: String
    let make: ([Parameter], FiniteSumObjective) throws -> any Optimizer
    let oracle: (VRLeastSquares, Int) -> (theta: [Double], indices: [[Int]])
    var maximumBatchSize: Int? = nil
    var description: String { name }
}

private let seed: UInt64 = 0x5EED
private let n = VRLeastSquares.n

private func draw(_ t: Int, _ count: Int) -> [Int] {
    FiniteSumObjective.sampledIndices(seed: seed, draw: t, count: count, sampleCount: n)
}

private func svrgOracle(eta: Double, b: Int, m: Int) -> (VRLeastSquares, Int) -> ([Double], [[Int]]) {
    { p, steps in
        var theta = p.start.map(Double.init), snapshot = theta, mu = theta, drawn: [[Int]] = []
        for t in 0..<steps {
            var v: [Double]
            if t % m == 0 {
                snapshot = theta
                mu = p.full(theta)
                v = mu
                drawn.append([])
            } else {
                let idx = draw(t, b)
                v = zip(p.gradient(theta, idx), p.gradient(snapshot, idx)).map { $0 - $1 }
                v = axpy(v, 1, mu)
                drawn.append(idx)
            }
            theta = axpy(theta, -eta, v)
        }
        return (theta, drawn)
    }
}

/// SARAH / SPIDER: v = ∇f_B(θ_t) − ∇f_B(θ_{t−1}) + v, refreshed every q steps.
private func recursiveOracle(eta: Double, b: Int, q: Int, refreshBatch: Int? = nil, radius: Double? = nil)
    -> (VRLeastSquares, Int) -> ([Double], [[Int]])
{
    { p, steps in
        var theta = p.start.map(Double.init), previous = theta, v = theta, drawn: [[Int]] = []
        for t in 0..<steps {
            if t % q == 0 {
                if let s = refreshBatch {
                    let idx = draw(t, s)
                    v = p.gradient(theta, idx)
                    drawn.append(idx)
                } else {
                    v = p.full(theta)
                    drawn.append([])
                }
            } else {
                let idx = draw(t, b)
                v = axpy(zip(p.gradient(theta, idx), p.gradient(previous, idx)).map { $0 - $1 }, 1, v)
                drawn.append(idx)
            }
            let step = radius.map { Swift.min($0 / norm(v), eta) } ?? eta
            previous = theta
            theta = axpy(theta, -step, v)
        }
        return (theta, drawn)
    }
}

private func sagaOracle(eta: Double) -> (VRLeastSquares, Int) -> ([Double], [[Int]]) {
    { p, steps in
        var theta = p.start.map(Double.init), drawn: [[Int]] = []
        var table = (0..<n).map { p.gradient(theta, [$0]) }
        for t in 0..<steps {
            let j = draw(t, 1)[0]
            let mean = (0..<theta.count).map { k in table.reduce(0) { $0 + $1[k] } / Double(n) }
            let g = p.gradient(theta, [j])
            let v = axpy(zip(g, table[j]).map { $0 - $1 }, 1, mean)
            theta = axpy(theta, -eta, v)
            table[j] = g
            drawn.append([j])
        }
        return (theta, drawn)
    }
}

let vrCases: [VRCase] = [
    VRCase(name: "SVRG b=1 m=n",
           make: { try SVRG(parameters: $0, objective: $1, learningRate: 0.1, seed: seed) },
           oracle: svrgOracle(eta: 0.1, b: 1, m: 12)),
    VRCase(name: "SVRG b=3 m=5, full gradient in chunks of 5",
           make: { try SVRG(parameters: $0, objective: $1, learningRate: 0.15, batchSize: 3, updateFrequency: 5, seed: seed) },
           oracle: svrgOracle(eta: 0.15, b: 3, m: 5), maximumBatchSize: 5),
    VRCase(name: "SARAH b=2 m=6",
           make: { try SARAH(parameters: $0, objective: $1, learningRate: 0.1, batchSize: 2, seed: seed) },
           oracle: recursiveOracle(eta: 0.1, b: 2, q: 6)),
    VRCase(name: "SPIDER defaults b=q=⌈√12⌉=4",
           make: { try SPIDER(parameters: $0, objective: $1, learningRate: 0.1, seed: seed) },
           oracle: recursiveOracle(eta: 0.1, b: 4, q: 4)),
    VRCase(name: "SPIDER normalized radius 0.05, refresh batch 8",
           make: { try SPIDER(parameters: $0, objective: $1, learningRate: 0.2, batchSize: 2, refreshInterval: 5,
                              refreshBatchSize: 8, stepRule: .normalized(radius: 0.05), seed: seed) },
           oracle: recursiveOracle(eta: 0.2, b: 2, q: 5, refreshBatch: 8, radius: 0.05)),
    VRCase(name: "SAGA",
           make: { try SAGA(parameters: $0, objective: $1, learningRate: 0.1, seed: seed) },
           oracle: sagaOracle(eta: 0.1)),
]

private func sampled(_ o: any Optimizer) -> [Int] {
    switch o {
    case let o as SVRG: return o.lastSampledIndices
    case let o as SARAH: return o.lastSampledIndices
    case let o as SPIDER: return o.lastSampledIndices
    case let o as SAGA: return o.lastSampledIndices
    default: return [-1]
    }
}

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

struct OptimizerVarianceReducedTests {
    private static let tolerance = Tolerance(absolute: 2e-5, relative: 1e-4)

    @Test("VR methods match their Float64 oracle step by step, with the same indices",
          arguments: TestBackend.all, vrCases)
    func matchesOracle(_ tb: TestBackend, _ c: VRCase) throws {
        let problem = VRLeastSquares()
        let (parameters, objective) = try problem.kiln(on: tb.backend, maximumBatchSize: c.maximumBatchSize)
        let optimizer = try c.make(parameters, objective)
        let steps = 26
        let (_, drawn) = c.oracle(problem, steps)
        for t in 0..<steps {
            try optimizer.step()
            #expect(sampled(optimizer) == drawn[t], "step \(t) indices")
            if t == 2 || t == 11 || t == steps - 1 {
                let (expected, _) = c.oracle(problem, t + 1)
                let got = try values(parameters)
                #expect(mismatch(got, expected, tolerance: Self.tolerance) == nil,
                        "after \(t + 1) steps: \(mismatch(got, expected, tolerance: Self.tolerance) ?? "")")
            }
        }
        #expect(optimizer.stepCount == steps)
        // The oracle moved θ: a method that did nothing would fail above.
        let (final, _) = c.oracle(problem, steps)
        #expect(norm(zip(final, problem.start.map(Double.init)).map { $0 - $1 }) > 0.1)
    }

    @Test("VR methods converge to the least-squares solution", arguments: TestBackend.all)
    func converges(_ tb: TestBackend) throws {
        let problem = VRLeastSquares()
        let solution = problem.solution()
        // The gradient at the solution vanishes (the normal equations hold) but the samples' do not.
        #expect(norm(problem.full(solution)) < 1e-10)
        #expect(norm(problem.gradient(solution, [0])) > 0.01)
        // Plain SGD with the same step and samples stalls far from it (its gradient noise does not vanish).
        var sgd = problem.start.map(Double.init)
        for t in 0..<700 { sgd = axpy(sgd, -0.2, problem.gradient(sgd, draw(t, 1))) }
        #expect(norm(zip(sgd, solution).map { $0 - $1 }) > 1e-3)
        let makers: [(String, ([Parameter], FiniteSumObjective) throws -> any Optimizer, Int)] = [
            ("SVRG", { try SVRG(parameters: $0, objective: $1, learningRate: 0.2, seed: 3) }, 700),
            ("SARAH", { try SARAH(parameters: $0, objective: $1, learningRate: 0.2, batchSize: 2, seed: 3) }, 700),
            ("SPIDER", { try SPIDER(parameters: $0, objective: $1, learningRate: 0.2, seed: 3) }, 700),
            ("SAGA", { try SAGA(parameters: $0, objective: $1, learningRate: 0.2, seed: 3) }, 700),
        ]
        for (name, make, steps) in makers {
            let (parameters, objective) = try problem.kiln(on: tb.backend)
            let optimizer = try make(parameters, objective)
            for _ in 0..<steps { try optimizer.step() }
            let got = try values(parameters)
            #expect(mismatch(got, solution, tolerance: Tolerance(absolute: 2e-5, relative: 0)) == nil,
                    "\(name): \(got) vs \(solution)")
        }
    }

    @Test("State round trip: resuming from stateDictionary() continues identically", arguments: TestBackend.all, vrCases)
    func stateRoundTrip(_ tb: TestBackend, _ c: VRCase) throws {
        let problem = VRLeastSquares()
        let (parameters, objective) = try problem.kiln(on: tb.backend, maximumBatchSize: c.maximumBatchSize)
        let optimizer = try c.make(parameters, objective)
        for _ in 0..<7 { try optimizer.step() }
        let saved = try optimizer.stateDictionary()
        let savedValues = try values(parameters)
        #expect(saved.scalars["step"] == 7)
        #expect(!saved.tensors.isEmpty && saved.tensors.keys.allSatisfy { $0.hasPrefix("0.") || $0.hasPrefix("1.") })
        for _ in 0..<6 { try optimizer.step() }
        let expected = try values(parameters)

        let (fresh, freshObjective) = try problem.kiln(on: tb.backend, start: savedValues, maximumBatchSize: c.maximumBatchSize)
        let resumed = try c.make(fresh, freshObjective)
        resumed.learningRate *= 3
        try resumed.loadStateDictionary(saved)
        #expect(resumed.stepCount == 7 && resumed.learningRate == optimizer.learningRate)
        for _ in 0..<6 { try resumed.step() }
        #expect(try values(fresh) == expected)
        // Without the state the continuation differs (the state matters).
        let (other, otherObjective) = try problem.kiln(on: tb.backend, start: savedValues, maximumBatchSize: c.maximumBatchSize)
        let cold = try c.make(other, otherObjective)
        for _ in 0..<6 { try cold.step() }
        #expect(try values(other) != expected)
    }

    @Test("Invalid hyperparameters, objectives and states throw, naming the value")
    func errors() throws {
        let b = CPUBackend.shared
        let problem = VRLeastSquares()
        let (ps, objective) = try problem.kiln(on: b)
        for lr in [-1.0, 0, .nan, .infinity] {
            expectOptimizerError("SVRG", mentioning: "learning rate") { _ = try SVRG(parameters: ps, objective: objective, learningRate: lr) }
            expectOptimizerError("SARAH", mentioning: "learning rate") { _ = try SARAH(parameters: ps, objective: objective, learningRate: lr) }
            expectOptimizerError("SPIDER", mentioning: "learning rate") { _ = try SPIDER(parameters: ps, objective: objective, learningRate: lr) }
            expectOptimizerError("SAGA", mentioning: "learning rate") { _ = try SAGA(parameters: ps, objective: objective, learningRate: lr) }
        }
        expectOptimizerError("SVRG", mentioning: "batchSize") { _ = try SVRG(parameters: ps, objective: objective, learningRate: 0.1, batchSize: 0) }
        expectOptimizerError("SVRG", mentioning: "updateFrequency") {
            _ = try SVRG(parameters: ps, objective: objective, learningRate: 0.1, updateFrequency: 0)
        }
        expectOptimizerError("SARAH", mentioning: "innerLoopLength") {
            _ = try SARAH(parameters: ps, objective: objective, learningRate: 0.1, innerLoopLength: -2)
        }
        expectOptimizerError("SPIDER", mentioning: "refreshBatchSize") {
            _ = try SPIDER(parameters: ps, objective: objective, learningRate: 0.1, refreshBatchSize: 0)
        }
        expectOptimizerError("SPIDER", mentioning: "radius") {
            _ = try SPIDER(parameters: ps, objective: objective, learningRate: 0.1, stepRule: .normalized(radius: .nan))
        }
        expectOptimizerError("SVRG", mentioning: "at least one parameter") { _ = try SVRG(parameters: [], objective: objective, learningRate: 0.1) }
        expectOptimizerError("FiniteSumObjective", mentioning: "sampleCount") {
            _ = try FiniteSumObjective(sampleCount: 0) { _ in try Tensor(scalar: 0, on: b) }
        }
        expectOptimizerError("FiniteSumObjective", mentioning: "maximumBatchSize") {
            _ = try FiniteSumObjective(sampleCount: 3, maximumBatchSize: 0) { _ in try Tensor(scalar: 0, on: b) }
        }

        // A learning rate made invalid after construction is caught by step(), before any change.
        let svrg = try SVRG(parameters: ps, objective: objective, learningRate: 0.1)
        svrg.learningRate = .nan
        let before = try values(ps)
        expectOptimizerError("SVRG", mentioning: "learning rate") { try svrg.step() }
        #expect(try values(ps) == before && svrg.stepCount == 0)

        // Losses that are not one element, or do not depend on the parameters.
        let wideOptimizer = try SAGA(parameters: ps, objective: try FiniteSumObjective(sampleCount: 4) { _ in
            try Tensor.concatenated([ps[1].value, ps[1].value], axis: 0)
        }, learningRate: 0.1)
        expectOptimizerError("SAGA", mentioning: "one-element") { try wideOptimizer.step() }
        let constant = try SARAH(parameters: ps, objective: try FiniteSumObjective(sampleCount: 4) { _ in
            try Tensor(scalar: 1, on: b)
        }, learningRate: 0.1)
        expectOptimizerError("SARAH", mentioning: "does not depend") { try constant.step() }
        #expect(try values(ps) == before)

        // A failing objective at a snapshot restores the parameters' values.
        var calls = 0
        struct Boom: Error {}
        let (qs, good) = try problem.kiln(on: b)
        let flaky = try FiniteSumObjective(sampleCount: n) { idx in
            calls += 1
            if calls == 2 { throw Boom() }
            return try good.loss(idx)
        }
        let svrg2 = try SVRG(parameters: qs, objective: flaky, learningRate: 0.1)
        try svrg2.step()  // call 1: the full gradient
        let mid = try values(qs)
        #expect(throws: Boom.self) { try svrg2.step() }  // call 2, at the snapshot, throws
        #expect(try values(qs) == mid && svrg2.stepCount == 1)

        // States: a missing entry, a wrong shape, a mismatched setting; nothing changes.
        let saga = try SAGA(parameters: ps, objective: objective, learningRate: 0.1, seed: 1)
        try saga.step()
        let good2 = try saga.stateDictionary()
        var missing = good2
        missing.scalars["step"] = nil
        expectOptimizerError("SAGA", mentioning: "\"step\"") { try saga.loadStateDictionary(missing) }
        var wrongShape = good2
        wrongShape.tensors["0.gradient_table"] = try Tensor.zeros([n, 3], on: b)
        expectOptimizerError("SAGA", mentioning: "shape") { try saga.loadStateDictionary(wrongShape) }
        var noTable = good2
        noTable.tensors["1.gradient_mean"] = nil
        expectOptimizerError("SAGA", mentioning: "1.gradient_mean") { try saga.loadStateDictionary(noTable) }
        var badRate = good2
        badRate.scalars["lr"] = -1
        expectOptimizerError("SAGA", mentioning: "learning rate") { try saga.loadStateDictionary(badRate) }
        #expect(saga.stepCount == 1 && saga.learningRate == 0.1)
        let spider = try SPIDER(parameters: ps, objective: objective, learningRate: 0.1)
        var otherBatch = try spider.stateDictionary()
        otherBatch.scalars["batch_size"] = 7
        expectOptimizerError("SPIDER", mentioning: "batch_size") { try spider.loadStateDictionary(otherBatch) }
        var noSnapshot = try svrg2.stateDictionary()
        noSnapshot.tensors = [:]
        expectOptimizerError("SVRG", mentioning: "snapshot") { try svrg2.loadStateDictionary(noSnapshot) }
        #expect(svrg2.stepCount == 1)
    }

    @Test("sampledIndices: deterministic, in range, roughly uniform, different per draw and seed")
    func sampling() {
        let a = FiniteSumObjective.sampledIndices(seed: 9, draw: 4, count: 4000, sampleCount: 10)
        #expect(a == FiniteSumObjective.sampledIndices(seed: 9, draw: 4, count: 4000, sampleCount: 10))
        #expect(a.allSatisfy { (0..<10).contains($0) })
        let counts = (0..<10).map { i in a.filter { $0 == i }.count }
        #expect(counts.allSatisfy { (300...500).contains($0) }, "\(counts)")
        #expect(a != FiniteSumObjective.sampledIndices(seed: 9, draw: 5, count: 4000, sampleCount: 10))
        #expect(a != FiniteSumObjective.sampledIndices(seed: 8, draw: 4, count: 4000, sampleCount: 10))
        // A prefix of a longer draw is the shorter draw.
        #expect(Array(a.prefix(7)) == FiniteSumObjective.sampledIndices(seed: 9, draw: 4, count: 7, sampleCount: 10))
    }
}
