import Foundation
import Kiln
import KilnTestSupport
import Testing

/// One differentiable op checked in Float64. `forward` and `gradient` are oracles written from the
/// definitions: `gradient(x, w)` is ∂(Σ w·forward(x))/∂x for each input. `kiln` runs the op.
struct GradientCase: CustomStringConvertible, Sendable {
    let name: String
    let shapes: [[Int]]
    let values: [[Float]]
    let forward: @Sendable ([[Double]]) -> [Double]
    let gradient: @Sendable ([[Double]], [Double]) -> [[Double]]
    let kiln: @Sendable ([Tensor]) throws -> Tensor
    /// False where the inputs sit on a kink or a tie (a convention, not a derivative): no finite differences.
    var smooth = true
    var tolerance = Tolerance.reduction

    var description: String { name }
}

// MARK: - Float64 oracles

/// d/dx of each unary op, from the definitions; PyTorch's one-sided values at kinks.
func unaryDerivative(_ op: UnaryOp, _ x: Double) -> Double {
    let k = (2 / Double.pi).squareRoot(), c = 0.044715
    switch op {
    case .abs: return x > 0 ? 1 : (x < 0 ? -1 : 0)
    case .sign, .floor, .ceil, .round: return 0
    case .expm1: return Foundation.exp(x)
    case .log1p: return 1 / (1 + x)
    case .rsqrt: return -0.5 * Foundation.pow(x, -1.5)
    case .sin: return Foundation.cos(x)
    case .cos: return -Foundation.sin(x)
    case .tan: return 1 / (Foundation.cos(x) * Foundation.cos(x))
    case .geluErf:
        let cdf = 0.5 * (1 + Foundation.erf(x / 2.0.squareRoot()))
        return cdf + x * Foundation.exp(-x * x / 2) / (2 * Double.pi).squareRoot()
    case .geluTanh:
        let u = k * (x + c * x * x * x), sech = 1 / Foundation.cosh(u)
        return 0.5 * (1 + Foundation.tanh(u)) + 0.5 * x * sech * sech * k * (1 + 3 * c * x * x)
    case .silu:
        let s = 1 / (1 + Foundation.exp(-x))
        return s + x * s * (1 - s)
    case .softplus: return 1 / (1 + Foundation.exp(-x))
    case .erf: return 2 / Double.pi.squareRoot() * Foundation.exp(-x * x)
    case .clamp(let lo, let hi): return x >= Double(lo) && x <= Double(hi) ? 1 : 0
    case .powScalar(let p): return p == 0 ? 0 : Double(p) * Foundation.pow(x, Double(p) - 1)
    case .reciprocal: return -1 / (x * x)
    case .leakyReLU(let s): return x > 0 ? 1 : Double(s)
    case .elu(let a): return x > 0 ? 1 : Double(a) * Foundation.exp(x)
    case .relu: return x > 0 ? 1 : 0
    case .negate: return -1
    case .exp: return Foundation.exp(x)
    case .log: return 1 / x
    case .sqrt: return 0.5 / x.squareRoot()
    case .square: return 2 * x
    case .tanh: return 1 - Foundation.tanh(x) * Foundation.tanh(x)
    case .sigmoid:
        let s = 1 / (1 + Foundation.exp(-x))
        return s * (1 - s)
    case .addScalar: return 1
    case .multiplyScalar(let m): return Double(m)
    }
}

/// The flat index into `shape` read by output multi-index `out` under NumPy broadcasting.
func broadcastSource(_ out: [Int], _ shape: [Int]) -> Int {
    let offset = out.count - shape.count
    var flat = 0
    for d in 0..<shape.count { flat = flat * shape[d] + (shape[d] == 1 ? 0 : out[d + offset]) }
    return flat
}

func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int] {
    let r = Swift.max(a.count, b.count)
    let pa = [Int](repeating: 1, count: r - a.count) + a, pb = [Int](repeating: 1, count: r - b.count) + b
    return zip(pa, pb).map { Swift.max($0, $1) }
}

/// ∂f/∂a and ∂f/∂b of the binary ops, PyTorch's conventions: pow's ∂/∂a is 0 where b = 0, its ∂/∂b
/// is 0 where a = 0 and b ≥ 0; max / min split ties equally.
func binaryPartials(_ op: BinaryOp, _ a: Double, _ b: Double) -> (Double, Double) {
    switch op {
    case .pow:
        let da = b == 0 ? 0 : b * Foundation.pow(a, b - 1)
        let db = a == 0 && b >= 0 ? 0 : Foundation.pow(a, b) * Foundation.log(a)
        return (da, db)
    case .maximum: return a > b ? (1, 0) : (a < b ? (0, 1) : (0.5, 0.5))
    case .minimum: return a < b ? (1, 0) : (a > b ? (0, 1) : (0.5, 0.5))
    default: return (.nan, .nan)
    }
}

/// The flat indices of `shape` reduced together over `axes` (all when empty), one group per output
/// element in row-major output order, each group in row-major input order.
func reductionGroups(_ shape: [Int], _ axes: [Int]) -> [[Int]] {
    let reduced = Set(axes.isEmpty ? Array(shape.indices) : axes.map { $0 < 0 ? $0 + shape.count : $0 })
    let kept = shape.indices.filter { !reduced.contains($0) }
    var groups = [[Int]](repeating: [], count: kept.map { shape[$0] }.reduce(1, *))
    for i in 0..<shape.reduce(1, *) {
        let index = Oracle.index(i, shape)
        let key = kept.reduce(0) { $0 * shape[$1] + index[$1] }
        groups[key].append(i)
    }
    return groups
}

/// A per-group op: `forward` maps a group's values to its outputs (one for a reduction, one per
/// element for softmax); `gradient` maps the values and output weights to the values' gradient.
func groupCase(_ name: String, shape: [Int], axes: [Int], values: [Float], smooth: Bool = true,
               forward: @escaping @Sendable ([Double]) -> [Double],
               gradient: @escaping @Sendable ([Double], [Double]) -> [Double],
               kiln: @escaping @Sendable (Tensor) throws -> Tensor) -> GradientCase {
    let groups = reductionGroups(shape, axes)
    let elementwise = forward([0, 1]).count == 2
    return GradientCase(name: name, shapes: [shape], values: [values], forward: { x in
        var out = [Double](repeating: 0, count: elementwise ? x[0].count : groups.count)
        for (k, group) in groups.enumerated() {
            let y = forward(group.map { x[0][$0] })
            if elementwise { for (j, i) in group.enumerated() { out[i] = y[j] } } else { out[k] = y[0] }
        }
        return out
    }, gradient: { x, w in
        var dx = [Double](repeating: 0, count: x[0].count)
        for (k, group) in groups.enumerated() {
            let wk = elementwise ? group.map { w[$0] } : [w[k]]
            for (j, d) in gradient(group.map { x[0][$0] }, wk).enumerated() { dx[group[j]] = d }
        }
        return [dx]
    }, kiln: { try kiln($0[0]) }, smooth: smooth)
}

func amax(_ v: [Double]) -> [Double] { [v.max() ?? -.infinity] }
func amaxGradient(_ v: [Double], _ w: [Double]) -> [Double] {
    let m = v.max() ?? 0, ties = Double(v.filter { $0 == m }.count)
    return v.map { $0 == m ? w[0] / ties : 0 }
}
func amin(_ v: [Double]) -> [Double] { [v.min() ?? .infinity] }
func aminGradient(_ v: [Double], _ w: [Double]) -> [Double] {
    let m = v.min() ?? 0, ties = Double(v.filter { $0 == m }.count)
    return v.map { $0 == m ? w[0] / ties : 0 }
}
func variance(_ correction: Double) -> @Sendable ([Double]) -> [Double] {
    { v in
        let m = v.reduce(0, +) / Double(v.count)
        return [v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / (Double(v.count) - correction)]
    }
}
func varianceGradient(_ correction: Double) -> @Sendable ([Double], [Double]) -> [Double] {
    { v, w in
        let m = v.reduce(0, +) / Double(v.count)
        return v.map { 2 * ($0 - m) / (Double(v.count) - correction) * w[0] }
    }
}
func logSumExp(_ v: [Double]) -> [Double] { [Foundation.log(v.map { Foundation.exp($0) }.reduce(0, +))] }
func logSumExpGradient(_ v: [Double], _ w: [Double]) -> [Double] {
    let total = v.map { Foundation.exp($0) }.reduce(0, +)
    return v.map { Foundation.exp($0) / total * w[0] }
}
func softmax64(_ v: [Double]) -> [Double] {
    let e = v.map { Foundation.exp($0) }, total = e.reduce(0, +)
    return e.map { $0 / total }
}
func softmaxGradient(_ v: [Double], _ w: [Double]) -> [Double] {
    // ∂(Σ_j w_j s_j)/∂x_i = s_i (w_i − Σ_j w_j s_j)
    let s = softmax64(v), dot = zip(w, s).map(*).reduce(0, +)
    return zip(s, w).map { $0 * ($1 - dot) }
}
func logSoftmax64(_ v: [Double]) -> [Double] { softmax64(v).map { Foundation.log($0) } }
func logSoftmaxGradient(_ v: [Double], _ w: [Double]) -> [Double] {
    let s = softmax64(v), total = w.reduce(0, +)
    return zip(w, s).map { $0 - $1 * total }
}

/// A data-movement op: output element i is input element `source[i]` (nil: no input element).
func movementCase(_ name: String, shapes: [[Int]], sources: [(input: Int, index: Int)],
                  kiln: @escaping @Sendable ([Tensor]) throws -> Tensor) -> GradientCase {
    let values = shapes.enumerated().map { testValues($1.reduce(1, *), seed: UInt64(40 + $0)) }
    return GradientCase(name: name, shapes: shapes, values: values, forward: { x in
        sources.map { x[$0.input][$0.index] }
    }, gradient: { x, w in
        var dx = x.map { [Double](repeating: 0, count: $0.count) }
        for (i, s) in sources.enumerated() { dx[s.input][s.index] += w[i] }
        return dx
    }, kiln: kiln, tolerance: .elementwise)
}

extension GradientCase {
    static let unaryOps: [(UnaryOp, ClosedRange<Double>)] = [
        (.abs, -2...2), (.sign, -2...2), (.expm1, -2...2), (.log1p, -0.8...2), (.rsqrt, 0.2...3),
        (.sin, -3...3), (.cos, -3...3), (.tan, -1.2...1.2), (.geluErf, -3...3), (.geluTanh, -3...3),
        (.silu, -4...4), (.softplus, -4...4), (.erf, -2...2), (.clamp(min: -0.5, max: 0.7), -2...2),
        (.powScalar(2.5), 0.2...3), (.powScalar(3), -2...2), (.powScalar(-1.5), 0.3...2), (.powScalar(0), -2...2),
        (.reciprocal, 0.3...3), (.reciprocal, -3 ... -0.3), (.floor, -3...3), (.ceil, -3...3), (.round, -3...3),
        (.leakyReLU(slope: 0.2), -2...2), (.elu(alpha: 1.5), -2...2),
    ]

    static func unary(_ op: UnaryOp, _ values: [Float], smooth: Bool, label: String = "") -> GradientCase {
        GradientCase(name: "\(op)\(label)", shapes: [[values.count]], values: [values],
                     forward: { x in x[0].map { Oracle.unary(op, $0) } },
                     gradient: { x, w in [zip(x[0], w).map { unaryDerivative(op, $0) * $1 }] },
                     kiln: { try $0[0].applying(op) }, smooth: smooth, tolerance: .elementwise)
    }

    static func binary(_ op: BinaryOp, _ av: [Float], _ aShape: [Int], _ bv: [Float], _ bShape: [Int],
                       smooth: Bool = true, label: String = "") -> GradientCase {
        let outShape = broadcastShape(aShape, bShape)
        let n = outShape.reduce(1, *)
        let pairs = (0..<n).map { i in
            let index = Oracle.index(i, outShape)
            return (broadcastSource(index, aShape), broadcastSource(index, bShape))
        }
        return GradientCase(name: "\(op)\(label)", shapes: [aShape, bShape], values: [av, bv], forward: { x in
            pairs.map { Oracle.binary(op, x[0][$0.0], x[1][$0.1]) }
        }, gradient: { x, w in
            var da = [Double](repeating: 0, count: x[0].count), db = [Double](repeating: 0, count: x[1].count)
            for (i, (ia, ib)) in pairs.enumerated() {
                let (pa, pb) = binaryPartials(op, x[0][ia], x[1][ib])
                da[ia] += w[i] * pa
                db[ib] += w[i] * pb
            }
            return [da, db]
        }, kiln: { try $0[0].combining($0[1], op) }, smooth: smooth)
    }

    static var all: [GradientCase] {
        var cases: [GradientCase] = []
        // Unary: random points, then the kinks and bounds (PyTorch's conventions there).
        for (op, range) in unaryOps {
            cases.append(unary(op, testValues(29, seed: 21, range: range), smooth: true, label: " on \(range)"))
        }
        let kinks: [Float] = [0, -0.5, 0.7, 1, -1]
        for op in [UnaryOp.relu, .abs, .clamp(min: -0.5, max: 0.7), .leakyReLU(slope: 0.2), .elu(alpha: 1.5), .sign] {
            cases.append(unary(op, kinks, smooth: false, label: " at kinks"))
        }
        // Binary, broadcast.
        let a = testValues(12, seed: 5, range: 0.5...2), b = testValues(5, seed: 6, range: -2...2)
        cases.append(binary(.pow, a, [3, 1, 4], b, [5, 1]))
        cases.append(binary(.pow, [0, 0, 2, 0.5], [4], [2, 0, 0, -1], [4], smooth: false, label: " at a = 0, b = 0"))
        let c = testValues(12, seed: 7), d = testValues(5, seed: 8)
        for op in [BinaryOp.maximum, .minimum] {
            cases.append(binary(op, c, [3, 1, 4], d, [5, 1]))
            cases.append(binary(op, [1, 2, 3, 4], [4], [1, 0, 3, 5], [4], smooth: false, label: " with ties"))
        }
        // Reductions and softmax on [3, 4, 5].
        let shape = [3, 4, 5], x = testValues(60, seed: 9)
        for axes in [[1], [0, 2], []] {
            cases.append(groupCase("max \(axes)", shape: shape, axes: axes, values: x, forward: amax,
                                   gradient: amaxGradient) { try $0.max(alongAxes: axes) })
            cases.append(groupCase("min \(axes) kept", shape: shape, axes: axes, values: x, forward: amin,
                                   gradient: aminGradient) { try $0.min(alongAxes: axes, keepingDimensions: true) })
            cases.append(groupCase("logSumExp \(axes)", shape: shape, axes: axes, values: x, forward: logSumExp,
                                   gradient: logSumExpGradient) { try $0.logSumExp(alongAxes: axes) })
            for correction in [0, 1] {
                cases.append(groupCase("variance \(axes) correction \(correction)", shape: shape, axes: axes, values: x,
                                       forward: variance(Double(correction)), gradient: varianceGradient(Double(correction))) {
                    try $0.variance(alongAxes: axes, correction: correction)
                })
            }
        }
        let tied: [Float] = [1, 3, 3, 2, 5, 5, 5, 0]
        cases.append(groupCase("max with ties", shape: [2, 4], axes: [1], values: tied, smooth: false, forward: amax,
                               gradient: amaxGradient) { try $0.max(alongAxes: [1]) })
        cases.append(groupCase("min with ties", shape: [2, 4], axes: [], values: [1, 0, 3, 0, 5, 0, 5, 2], smooth: false,
                               forward: amin, gradient: aminGradient) { try $0.min() })
        for axis in [2, 1, 0] {
            cases.append(groupCase("softmax axis \(axis)", shape: shape, axes: [axis], values: x, forward: softmax64,
                                   gradient: softmaxGradient) { try softmax($0, axis: axis) })
            cases.append(groupCase("logSoftmax axis \(axis)", shape: shape, axes: [axis], values: x, forward: logSoftmax64,
                                   gradient: logSoftmaxGradient) { try logSoftmax($0, axis: axis) })
        }
        cases += movementCases + normalizationCases
        return cases
    }

    static var movementCases: [GradientCase] {
        var cases: [GradientCase] = []
        // sliced: [4, 6, 3] along axis 1, elements 1, 3, 5; and the last two rows along axis 0.
        let s = [4, 6, 3]
        let sliced1 = (0..<4).flatMap { i in [1, 3, 5].flatMap { j in (0..<3).map { k in (0, (i * 6 + j) * 3 + k) } } }
        cases.append(movementCase("sliced axis 1 step 2", shapes: [s], sources: sliced1) {
            try $0[0].sliced(axis: 1, start: 1, end: 6, step: 2)
        })
        cases.append(movementCase("sliced axis 0 from -2", shapes: [s], sources: (36..<72).map { (0, $0) }) {
            try $0[0].sliced(axis: 0, start: -2)
        })
        // concatenated [2, 3], [2, 1], [2, 4] along axis 1; stacked [2, 3] × 2 along axis 1.
        let widths = [3, 1, 4]
        let concatenated = (0..<2).flatMap { i in
            widths.enumerated().flatMap { t, w in (0..<w).map { j in (t, i * w + j) } }
        }
        cases.append(movementCase("concatenated axis 1", shapes: widths.map { [2, $0] }, sources: concatenated) {
            try Tensor.concatenated($0, axis: 1)
        })
        let stacked = (0..<2).flatMap { i in (0..<2).flatMap { t in (0..<3).map { j in (t, i * 3 + j) } } }
        cases.append(movementCase("stacked axis 1", shapes: [[2, 3], [2, 3]], sources: stacked) {
            try Tensor.stacked($0, axis: 1)
        })
        // indexSelected with repeats and a negative index: [3, 4, 2] along axis 1.
        let picks = [2, 0, 2, 2, -1]
        let selected = (0..<3).flatMap { i in
            picks.flatMap { p in (0..<2).map { k in (0, (i * 4 + (p < 0 ? p + 4 : p)) * 2 + k) } }
        }
        cases.append(movementCase("indexSelected with repeats", shapes: [[3, 4, 2]], sources: selected) {
            try $0[0].indexSelected(axis: 1, indices: picks)
        })
        // gathered along axis 1 of [3, 4] with a [2, 5] index holding repeats.
        let index: [Float] = [0, 3, 3, 1, 3, 2, 2, -1, 0, 2]
        let gathered = (0..<10).map { n in (0, (n / 5) * 4 + (index[n] < 0 ? Int(index[n]) + 4 : Int(index[n]))) }
        cases.append(movementCase("gathered with repeats", shapes: [[3, 4]], sources: gathered) { t in
            try t[0].gathered(axis: 1, indices: Tensor(index, shape: [2, 5], on: t[0].backend))
        })
        return cases
    }

    static var normalizationCases: [GradientCase] {
        typealias N = NormalizationOracle
        let eps = 1e-5
        let tolerance = Tolerance(absolute: 5e-5, relative: 5e-5)
        func values(_ shapes: [[Int]]) -> [[Float]] {
            shapes.enumerated().map { testValues($1.reduce(1, *), seed: UInt64(60 + $0), range: $0 == 0 ? -2...2 : 0.5...1.5) }
        }
        func rowCase(_ name: String, _ shapes: [[Int]], _ layout: N.Rows, rms: Bool,
                     _ kiln: @escaping @Sendable ([Tensor]) throws -> Tensor) -> GradientCase {
            let parameters = shapes.count - 1
            return GradientCase(name: name, shapes: shapes, values: values(shapes), forward: { x in
                N.rows(x[0], layout, weight: parameters > 0 ? x[1] : nil, bias: parameters > 1 ? x[2] : nil, eps: eps,
                       rms: rms).output
            }, gradient: { x, w in
                let g = N.rowsBackward(w, x[0], layout, weight: parameters > 0 ? x[1] : nil, eps: eps, rms: rms)
                return Array([g.input, g.weight, g.bias].prefix(shapes.count))
            }, kiln: kiln, tolerance: tolerance)
        }
        var cases: [GradientCase] = []
        cases.append(rowCase("layerNorm with weight and bias", [[3, 2, 5], [2, 5], [2, 5]], .layer(rows: 3, count: 10),
                             rms: false) { try layerNorm($0[0], normalizedShape: [2, 5], weight: $0[1], bias: $0[2]) })
        cases.append(rowCase("layerNorm", [[4, 6]], .layer(rows: 4, count: 6), rms: false) {
            try layerNorm($0[0], normalizedShape: [6])
        })
        cases.append(rowCase("rmsNorm with weight", [[3, 7], [7]], .layer(rows: 3, count: 7), rms: true) {
            try rmsNorm($0[0], normalizedShape: [7], weight: $0[1], eps: 1e-5)
        })
        cases.append(rowCase("groupNorm with weight and bias", [[2, 4, 3], [4], [4]],
                             .group(batch: 2, channels: 4, spatial: 3, groups: 2), rms: false) {
            try groupNorm($0[0], groups: 2, weight: $0[1], bias: $0[2])
        })
        let (nb, cb, sb) = (3, 2, 4)
        let running = ([Float](arrayLiteral: 0.3, -0.2), [Float](arrayLiteral: 1.5, 0.8))
        for training in [true, false] {
            let rm = training ? nil : running.0.map(Double.init), rv = training ? nil : running.1.map(Double.init)
            let shapes = [[nb, cb, sb], [cb], [cb]]
            cases.append(GradientCase(name: "batchNorm training \(training)", shapes: shapes, values: values(shapes),
                                      forward: { x in
                N.batchNorm(x[0], batch: nb, channels: cb, spatial: sb, weight: x[1], bias: x[2], runningMean: rm,
                            runningVariance: rv, training: training, momentum: 0.1, eps: eps).output
            }, gradient: { x, w in
                let g = N.batchNormBackward(w, x[0], batch: nb, channels: cb, spatial: sb, weight: x[1], runningMean: rm,
                                            runningVariance: rv, training: training, eps: eps)
                return [g.input, g.weight, g.bias]
            }, kiln: { t in
                let (m, v) = training ? (nil, nil)
                    : (try Tensor(running.0, on: t[0].backend), try Tensor(running.1, on: t[0].backend))
                return try batchNorm(t[0], runningMean: m, runningVariance: v, weight: t[1], bias: t[2],
                                     training: training).output
            }, tolerance: tolerance))
        }
        let shapes = [[2, 3, 4], [3], [3]]
        cases.append(GradientCase(name: "instanceNorm with weight and bias", shapes: shapes, values: values(shapes),
                                  forward: { x in
            N.instanceNorm(x[0], batch: 2, channels: 3, spatial: 4, weight: x[1], bias: x[2], runningMean: nil,
                           runningVariance: nil, useInputStatistics: true, momentum: 0.1, eps: eps).output
        }, gradient: { x, w in
            let g = N.instanceNormBackward(w, x[0], batch: 2, channels: 3, spatial: 4, weight: x[1], runningMean: nil,
                                           runningVariance: nil, useInputStatistics: true, eps: eps)
            return [g.input, g.weight, g.bias]
        }, kiln: { try instanceNorm($0[0], weight: $0[1], bias: $0[2]).output }, tolerance: tolerance))
        cases.append(GradientCase(name: "localResponseNorm", shapes: [[2, 5, 3]], values: values([[2, 5, 3]]),
                                  forward: { x in
            N.localResponseNorm(x[0], batch: 2, channels: 5, spatial: 3, size: 3, alpha: 0.5, beta: 0.75, k: 1)
        }, gradient: { x, w in
            [N.localResponseNormBackward(w, x[0], batch: 2, channels: 5, spatial: 3, size: 3, alpha: 0.5, beta: 0.75, k: 1)]
        }, kiln: { try localResponseNorm($0[0], size: 3, alpha: 0.5, beta: 0.75, k: 1) }, tolerance: tolerance))
        return cases
    }
}

/// Every differentiable op's gradient on every backend against its Float64 oracle, and each
/// oracle's derivative against central finite differences of its forward in Float64.
@Suite("Autograd: every op")
struct AutogradOpTests {
    @Test("gradient of Σ w·op(x) matches the Float64 oracle", arguments: TestBackend.all, GradientCase.all)
    func gradient(_ tb: TestBackend, _ c: GradientCase) throws {
        let inputs = try zip(c.values, c.shapes).map { try Tensor($0, shape: $1, on: tb.backend).requiringGradient() }
        let y = try c.kiln(inputs)
        let x = c.values.map { $0.map(Double.init) }
        let forward = mismatch(try y.scalars(), c.forward(x), tolerance: c.tolerance)
        #expect(forward == nil, "\(tb) \(c) forward: \(forward ?? "")")
        let wv = testValues(y.count, seed: 77)
        try (y * Tensor(wv, shape: y.shape, on: tb.backend)).sum().backward()
        let expected = c.gradient(x, wv.map(Double.init))
        for (i, input) in inputs.enumerated() {
            let got = try #require(input.gradient, "\(tb) \(c): no gradient for input \(i)")
            #expect(got.shape == c.shapes[i], "\(tb) \(c) input \(i) gradient shape")
            let problem = mismatch(try got.scalars(), expected[i], tolerance: c.tolerance)
            #expect(problem == nil, "\(tb) \(c) input \(i): \(problem ?? "")")
        }
    }

    @Test("each oracle derivative agrees with central finite differences in Float64",
          arguments: GradientCase.all.filter(\.smooth))
    func finiteDifferences(_ c: GradientCase) {
        let x = c.values.map { $0.map(Double.init) }
        let w = testValues(c.forward(x).count, seed: 77).map(Double.init)
        let analytic = c.gradient(x, w)
        func loss(_ x: [[Double]]) -> Double { zip(c.forward(x), w).map(*).reduce(0, +) }
        for input in x.indices {
            for j in x[input].indices {
                let h = 1e-5 * Swift.max(1, Swift.abs(x[input][j]))
                var plus = x, minus = x
                plus[input][j] += h
                minus[input][j] -= h
                let numeric = (loss(plus) - loss(minus)) / (2 * h)
                let a = analytic[input][j]
                #expect(Swift.abs(numeric - a) <= 1e-6 + 1e-6 * Swift.abs(a),
                        "\(c) input \(input)[\(j)] at \(x[input][j]): analytic \(a), numeric \(numeric)")
            }
        }
    }
}
