import Foundation
import Kiln
import KilnTestSupport
import Testing

/// Shared pieces of the second-order optimizer tests: parameter set-up, state round trips and
/// Float64 dense linear algebra for the oracles (Gauss–Jordan and Denman–Beavers, deliberately
/// not the Cholesky and Jacobi methods the library uses).
enum SecondOrderTesting {
    /// Parameters holding `values` with `shapes` on `backend`.
    static func parameters(_ shapes: [[Int]], _ values: [[Float]], on backend: any Backend) throws -> [Parameter] {
        try zip(shapes, values).map { Parameter(try Tensor($1, shape: $0, on: backend)) }
    }

    static func values(_ parameters: [Parameter]) throws -> [[Float]] { try parameters.map { try $0.value.scalars() } }

    /// Sets each parameter's gradient to `gradients[i]`, then steps; once per entry of `steps`.
    static func run(_ optimizer: any Optimizer, gradients steps: [[[Float]]]) throws {
        for gradients in steps {
            for (p, g) in zip(optimizer.parameters, gradients) {
                try p.setGradient(try Tensor(g, shape: p.shape, on: p.value.backend))
            }
            try optimizer.step()
        }
    }

    /// `|a − b| ≤ atol + rtol·|b|` over every parameter, with a message naming the first failure.
    static func expectClose(_ actual: [[Float]], _ expected: [[Double]], _ tolerance: Tolerance, _ what: String,
                            sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(actual.count == expected.count, "\(what): parameter count", sourceLocation: sourceLocation)
        for (i, (a, e)) in zip(actual, expected).enumerated() {
            let m = mismatch(a, e, tolerance: tolerance)
            #expect(m == nil, "\(what), parameter \(i): \(m ?? "")", sourceLocation: sourceLocation)
        }
    }

    /// Expects `body` to throw a `TensorError` from `op`.
    static func expectError(_ op: String, _ what: String, sourceLocation: SourceLocation = #_sourceLocation,
                            _ body: () throws -> Void) {
        do {
            try body()
            Issue.record("\(what): did not throw", sourceLocation: sourceLocation)
        } catch let e as TensorError {
            #expect(e.op == op, "\(what): \(e)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("\(what): threw \(error)", sourceLocation: sourceLocation)
        }
    }

    /// Runs `first` steps, saves, loads the state into a fresh optimizer on fresh copies of the
    /// initial parameters, takes `second` more steps with each, and expects identical parameters.
    /// `make` builds an optimizer over the given parameters; `advance` takes one step.
    static func expectRoundTrip(initial: [(shape: [Int], values: [Float])], on backend: any Backend, first: Int, second: Int,
                                make: ([Parameter]) throws -> any Optimizer,
                                advance: (any Optimizer, Int) throws -> Void,
                                sourceLocation: SourceLocation = #_sourceLocation) throws {
        let fresh = { try initial.map { Parameter(try Tensor($0.values, shape: $0.shape, on: backend)) } }
        let reference = try make(try fresh())
        for t in 0..<first { try advance(reference, t) }
        let saved = try reference.stateDictionary()
        let resumedParameters = try fresh()
        for (p, r) in zip(resumedParameters, reference.parameters) { try p.assign(try r.value.cloned()) }
        let resumed = try make(resumedParameters)
        try resumed.loadStateDictionary(saved)
        #expect(resumed.stepCount == reference.stepCount, sourceLocation: sourceLocation)
        for t in first..<(first + second) {
            try advance(reference, t)
            try advance(resumed, t)
        }
        let a = try values(reference.parameters), b = try values(resumed.parameters)
        #expect(a == b, "resumed run differs from the uninterrupted one: \(a) vs \(b)", sourceLocation: sourceLocation)
        #expect(reference.stepCount == first + second, sourceLocation: sourceLocation)
    }

    // MARK: - Float64 dense matrices (row-major [Double], n × n unless stated)

    static func identity(_ n: Int) -> [Double] {
        var m = [Double](repeating: 0, count: n * n)
        for i in 0..<n { m[i * n + i] = 1 }
        return m
    }

    /// (r × k)·(k × c).
    static func multiply(_ a: [Double], _ b: [Double], _ r: Int, _ k: Int, _ c: Int) -> [Double] {
        var out = [Double](repeating: 0, count: r * c)
        for i in 0..<r { for j in 0..<c { for l in 0..<k { out[i * c + j] += a[i * k + l] * b[l * c + j] } } }
        return out
    }

    /// The transpose of an r × c matrix.
    static func transpose(_ a: [Double], _ r: Int, _ c: Int) -> [Double] {
        var out = [Double](repeating: 0, count: r * c)
        for i in 0..<r { for j in 0..<c { out[j * r + i] = a[i * c + j] } }
        return out
    }

    /// The inverse by Gauss–Jordan elimination with partial pivoting.
    static func inverse(_ m: [Double], _ n: Int) -> [Double] {
        var a = m, inv = identity(n)
        for col in 0..<n {
            let pivot = (col..<n).max { Swift.abs(a[$0 * n + col]) < Swift.abs(a[$1 * n + col]) }!
            if pivot != col {
                for j in 0..<n {
                    a.swapAt(col * n + j, pivot * n + j)
                    inv.swapAt(col * n + j, pivot * n + j)
                }
            }
            let p = a[col * n + col]
            for j in 0..<n { a[col * n + j] /= p; inv[col * n + j] /= p }
            for i in 0..<n where i != col {
                let f = a[i * n + col]
                if f == 0 { continue }
                for j in 0..<n { a[i * n + j] -= f * a[col * n + j]; inv[i * n + j] -= f * inv[col * n + j] }
            }
        }
        return inv
    }

    /// Solves m·x = v.
    static func solve(_ m: [Double], _ v: [Double]) -> [Double] {
        multiply(inverse(m, v.count), v, v.count, v.count, 1)
    }

    /// The principal square root of a symmetric positive-definite matrix by the Denman–Beavers
    /// iteration Y ← (Y + Z⁻¹)/2, Z ← (Z + Y⁻¹)/2 from Y = M, Z = I (Y → M^½, Z → M^−½).
    static func squareRoot(_ m: [Double], _ n: Int) -> (root: [Double], inverseRoot: [Double]) {
        var y = m, z = identity(n)
        for _ in 0..<100 {
            let yi = inverse(y, n), zi = inverse(z, n)
            let y2 = zip(y, zi).map { 0.5 * ($0 + $1) }, z2 = zip(z, yi).map { 0.5 * ($0 + $1) }
            let change = zip(y2, y).reduce(0.0) { Swift.max($0, Swift.abs($1.0 - $1.1)) }
            (y, z) = (y2, z2)
            if change <= 1e-15 * (y.map(Swift.abs).max() ?? 1) { break }
        }
        return (y, z)
    }

    /// M^(−1/4) = (M^(−1/2))^(1/2).
    static func inverseFourthRoot(_ m: [Double], _ n: Int) -> [Double] {
        squareRoot(squareRoot(m, n).inverseRoot, n).root
    }

    // MARK: - Test objectives

    /// f(x) = ½xᵀAx − bᵀx + (κ/4)·Σxᵢ⁴ with A = MᵀM/n + ½I (a quadratic for κ = 0).
    struct Quadratic: SecondOrderObjective {
        let n: Int, a: [Double], b: [Double], quartic: Double
        init(n: Int, seed: UInt64, diagonal: [Double]? = nil, quartic: Double = 0) {
            self.n = n
            self.quartic = quartic
            if let diagonal {
                var m = [Double](repeating: 0, count: n * n)
                for i in 0..<n { m[i * n + i] = diagonal[i] }
                a = m
            } else {
                let m = testValues(n * n, seed: seed).map(Double.init)
                a = zip(multiply(transpose(m, n, n), m, n, n, n), identity(n)).map { $0 / Double(n) + 0.5 * $1 }
            }
            b = testValues(n, seed: seed + 1).map(Double.init)
        }
        func value(_ x: [Double]) -> Double {
            let ax = multiply(a, x, n, n, 1)
            return 0.5 * zip(x, ax).reduce(0) { $0 + $1.0 * $1.1 } - zip(b, x).reduce(0) { $0 + $1.0 * $1.1 }
                + quartic / 4 * x.reduce(0) { $0 + $1 * $1 * $1 * $1 }
        }
        func gradient(_ x: [Double]) -> [Double] {
            zip(zip(multiply(a, x, n, n, 1), b).map { $0 - $1 }, x).map { $0 + quartic * $1 * $1 * $1 }
        }
        var minimiser: [Double] { solve(a, b) }

        /// The Kiln loss over parameters whose flattened concatenation is x.
        func loss(_ ps: [Parameter]) throws -> Tensor {
            let backend = ps[0].value.backend
            let x = try Tensor.concatenated(ps.map { $0.value.flattened() }, axis: 0)
            let at = try Tensor(a.map(Float.init), shape: [n, n], on: backend), bt = try Tensor(b.map(Float.init), on: backend)
            let quadratic: Tensor = try (x * matmul(at, x)).sum() * 0.5
            let fourth: Tensor = try square(square(x)).sum() * Float(quartic / 4)
            return try quadratic - (bt * x).sum() + fourth
        }
    }

    /// Parameters `[n/2]` and `[n − n/2]` holding a start point drawn from `seed`.
    static func quadraticParameters(_ q: Quadratic, seed: UInt64, on b: any Backend) throws -> [Parameter] {
        let x0 = testValues(q.n, seed: seed, range: -3...3)
        let split = q.n / 2
        return [Parameter(try Tensor(Array(x0[..<split]), on: b)), Parameter(try Tensor(Array(x0[split...]), on: b))]
    }
}

/// A smooth function for the L-BFGS oracle.
protocol SecondOrderObjective {
    func value(_ x: [Double]) -> Double
    func gradient(_ x: [Double]) -> [Double]
}
