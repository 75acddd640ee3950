import Foundation
import Kiln

/// Float64 reference implementations, written as plain loops, independent of every backend.
public enum Oracle {
    /// Row-major strides.
    static func strides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var r = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            s[i] = r
            r *= shape[i]
        }
        return s
    }

    /// The multi-index of flat position `i` in `shape`.
    public static func index(_ i: Int, _ shape: [Int]) -> [Int] {
        var rest = i
        var out = [Int](repeating: 0, count: shape.count)
        for d in stride(from: shape.count - 1, through: 0, by: -1) where shape[d] > 0 {
            out[d] = rest % shape[d]
            rest /= shape[d]
        }
        return out
    }

    /// C = alpha·op(A)·op(B) + beta·C for one matrix, in Float64. A is m×k (k×m when transposed),
    /// B is k×n (n×k when transposed).
    public static func gemm(_ a: [Float], _ b: [Float], _ c: [Float]?, m: Int, n: Int, k: Int,
                            transposeA: Bool = false, transposeB: Bool = false,
                            alpha: Double = 1, beta: Double = 0) -> [Double] {
        var out = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k {
                    let av = transposeA ? a[p * m + i] : a[i * k + p]
                    let bv = transposeB ? b[j * k + p] : b[p * n + j]
                    s += Double(av) * Double(bv)
                }
                out[i * n + j] = alpha * s + (beta == 0 ? 0 : beta * Double(c![i * n + j]))
            }
        }
        return out
    }

    /// The Float64 value of each unary op.
    public static func unary(_ op: UnaryOp, _ x: Double) -> Double {
        switch op {
        case .negate: return -x
        case .abs: return Swift.abs(x)
        case .sign: return x > 0 ? 1 : (x < 0 ? -1 : 0)
        case .exp: return Foundation.exp(x)
        case .expm1: return Foundation.expm1(x)
        case .log: return Foundation.log(x)
        case .log1p: return Foundation.log1p(x)
        case .sqrt: return x.squareRoot()
        case .rsqrt: return 1 / x.squareRoot()
        case .square: return x * x
        case .sin: return Foundation.sin(x)
        case .cos: return Foundation.cos(x)
        case .tan: return Foundation.tan(x)
        case .tanh: return Foundation.tanh(x)
        case .sigmoid: return 1 / (1 + Foundation.exp(-x))
        case .relu: return x.isNaN ? x : Swift.max(x, 0)
        case .geluErf: return 0.5 * x * (1 + Foundation.erf(x / 2.0.squareRoot()))
        case .geluTanh:
            return 0.5 * x * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
        case .silu: return x / (1 + Foundation.exp(-x))
        case .softplus: return Foundation.log1p(Foundation.exp(-Swift.abs(x))) + Swift.max(x, 0)
        case .erf: return Foundation.erf(x)
        case .clamp(let lo, let hi): return x.isNaN ? x : Swift.min(Swift.max(x, Double(lo)), Double(hi))
        case .powScalar(let p): return Foundation.pow(x, Double(p))
        case .reciprocal: return 1 / x
        case .floor: return x.rounded(.down)
        case .ceil: return x.rounded(.up)
        case .round: return x.rounded(.toNearestOrEven)
        case .leakyReLU(let s): return x >= 0 ? x : Double(s) * x
        case .elu(let a): return x > 0 ? x : Double(a) * Foundation.expm1(x)
        case .addScalar(let p): return x + Double(p)
        case .multiplyScalar(let p): return x * Double(p)
        }
    }

    /// The Float64 value of each binary op.
    public static func binary(_ op: BinaryOp, _ a: Double, _ b: Double) -> Double {
        switch op {
        case .add: return a + b
        case .subtract: return a - b
        case .multiply: return a * b
        case .divide: return a / b
        case .pow: return Foundation.pow(a, b)
        case .maximum: return a.isNaN || b.isNaN ? .nan : Swift.max(a, b)
        case .minimum: return a.isNaN || b.isNaN ? .nan : Swift.min(a, b)
        case .equal: return a == b ? 1 : 0
        case .notEqual: return a != b ? 1 : 0
        case .less: return a < b ? 1 : 0
        case .lessEqual: return a <= b ? 1 : 0
        case .greater: return a > b ? 1 : 0
        case .greaterEqual: return a >= b ? 1 : 0
        }
    }

    /// NumPy broadcasting of `inputs` to `outShape`: the value of input `j` at output index `i`.
    public static func broadcastRead(_ values: [Float], _ shape: [Int], _ outIndex: [Int]) -> Double {
        let offset = outIndex.count - shape.count
        var flat = 0
        let st = strides(shape)
        for d in 0..<shape.count where shape[d] != 1 {
            flat += outIndex[d + offset] * st[d]
        }
        return Double(values[flat])
    }

    /// op(a, b) with broadcasting.
    public static func binary(_ op: BinaryOp, _ a: [Float], _ aShape: [Int], _ b: [Float], _ bShape: [Int],
                              outShape: [Int]) -> [Double] {
        let n = outShape.reduce(1, *)
        return (0..<n).map { i in
            let idx = index(i, outShape)
            return binary(op, broadcastRead(a, aShape, idx), broadcastRead(b, bShape, idx))
        }
    }

    /// Reduction `op` over `axes` (all when empty), in Float64. `correction` for variance.
    public static func reduce(_ op: ReduceOp, _ x: [Float], _ shape: [Int], axes: [Int],
                              correction: Double = 1) -> [Double] {
        let reduced = axes.isEmpty ? Set(0..<shape.count) : Set(axes.map { $0 < 0 ? $0 + shape.count : $0 })
        let outShape = shape.enumerated().map { reduced.contains($0.offset) ? 1 : $0.element }
        var groups = [[Double]](repeating: [], count: outShape.reduce(1, *))
        let outStrides = strides(outShape)
        for i in 0..<x.count {
            let idx = index(i, shape)
            var o = 0
            for d in 0..<shape.count where !reduced.contains(d) { o += idx[d] * outStrides[d] }
            groups[o].append(Double(x[i]))
        }
        return groups.map { g in reduce(op, g, correction: correction) }
    }

    /// Reduction of one list of values, in Float64.
    public static func reduce(_ op: ReduceOp, _ g: [Double], correction: Double = 1) -> Double {
        switch op {
        case .sum: return g.reduce(0, +)
        case .mean: return g.isEmpty ? .nan : g.reduce(0, +) / Double(g.count)
        case .max: return g.contains(where: \.isNaN) ? .nan : g.max() ?? -.infinity
        case .min: return g.contains(where: \.isNaN) ? .nan : g.min() ?? .infinity
        case .argmax:
            if let nan = g.firstIndex(where: \.isNaN) { return Double(nan) }
            guard let m = g.max() else { return 0 }
            return Double(g.firstIndex(of: m)!)
        case .argmin:
            if let nan = g.firstIndex(where: \.isNaN) { return Double(nan) }
            guard let m = g.min() else { return 0 }
            return Double(g.firstIndex(of: m)!)
        case .variance:
            if g.isEmpty { return .nan }
            let mean = g.reduce(0, +) / Double(g.count)
            return g.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Swift.max(0, Double(g.count) - correction)
        case .logSumExp:
            guard let m = g.max(), m.isFinite else { return g.max() ?? -.infinity }
            return m + Foundation.log(g.map { Foundation.exp($0 - m) }.reduce(0, +))
        }
    }

    /// Softmax (or log-softmax) along `axis`, in Float64.
    public static func softmax(_ x: [Float], _ shape: [Int], axis: Int, logarithm: Bool) -> [Double] {
        let a = axis < 0 ? axis + shape.count : axis
        let outer = shape[..<a].reduce(1, *), n = shape[a], inner = shape[(a + 1)...].reduce(1, *)
        var out = [Double](repeating: 0, count: x.count)
        for o in 0..<outer {
            for i in 0..<inner {
                let at = { (j: Int) in (o * n + j) * inner + i }
                let m = (0..<n).map { Double(x[at($0)]) }.max() ?? 0
                let sum = (0..<n).map { Foundation.exp(Double(x[at($0)]) - m) }.reduce(0, +)
                for j in 0..<n {
                    let v = Double(x[at(j)])
                    out[at(j)] = logarithm ? v - m - Foundation.log(sum) : Foundation.exp(v - m) / sum
                }
            }
        }
        return out
    }

    /// The tensor with dimensions reordered: result dimension i is input dimension `axes[i]`.
    public static func permute(_ x: [Float], _ shape: [Int], _ axes: [Int]) -> [Double] {
        let outShape = axes.map { shape[$0] }
        let st = strides(shape)
        return (0..<x.count).map { i in
            let idx = index(i, outShape)
            var flat = 0
            for (d, axis) in axes.enumerated() { flat += idx[d] * st[axis] }
            return Double(x[flat])
        }
    }
}
