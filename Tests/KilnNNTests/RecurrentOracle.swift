import Foundation
import Kiln
import KilnTestSupport
import Testing

/// Float64 oracles of PyTorch's RNN, LSTM and GRU, written from the equations with scalar loops,
/// independent of Kiln's ops. Parameters are read by PyTorch's names (`weight_ih_l0_reverse`, …).
enum RecurrentOracle {
    enum Kind: String, Sendable, CaseIterable {
        case tanh, relu, lstm, gru

        var gates: Int {
            switch self {
            case .tanh, .relu: 1
            case .lstm: 4
            case .gru: 3
            }
        }
    }

    static func sigmoid(_ x: Double) -> Double { 1 / (1 + Foundation.exp(-x)) }

    /// One step for a batch: x `[B, I]`, h and c `[B, H]`; parameters `weight_ih<suffix>`, ….
    static func step(_ kind: Kind, x: [Double], h: [Double], c: [Double], batch: Int, inputSize: Int, hiddenSize: Int,
                     params p: [String: [Double]], suffix: String) -> (h: [Double], c: [Double]) {
        let (nb, ni, nh) = (batch, inputSize, hiddenSize)
        let wih = p["weight_ih" + suffix] ?? [], whh = p["weight_hh" + suffix] ?? []
        let bih = p["bias_ih" + suffix], bhh = p["bias_hh" + suffix]
        var hOut = [Double](repeating: 0, count: nb * nh), cOut = c
        for b in 0..<nb {
            for j in 0..<nh {
                // a[k]: W_i x + b_i of gate k; r[k]: W_h h + b_h of gate k.
                var a = [Double](repeating: 0, count: kind.gates), r = a
                for k in 0..<kind.gates {
                    let row = k * nh + j
                    var sx = bih?[row] ?? 0, sh = bhh?[row] ?? 0
                    for i in 0..<ni { sx += wih[row * ni + i] * x[b * ni + i] }
                    for m in 0..<nh { sh += whh[row * nh + m] * h[b * nh + m] }
                    a[k] = sx
                    r[k] = sh
                }
                let at = b * nh + j
                switch kind {
                case .tanh: hOut[at] = Foundation.tanh(a[0] + r[0])
                case .relu: hOut[at] = Swift.max(0, a[0] + r[0])
                case .lstm:
                    let i = sigmoid(a[0] + r[0]), f = sigmoid(a[1] + r[1])
                    let g = Foundation.tanh(a[2] + r[2]), o = sigmoid(a[3] + r[3])
                    cOut[at] = f * c[at] + i * g
                    hOut[at] = o * Foundation.tanh(cOut[at])
                case .gru:
                    let rg = sigmoid(a[0] + r[0]), z = sigmoid(a[1] + r[1])
                    let n = Foundation.tanh(a[2] + rg * r[2])
                    hOut[at] = (1 - z) * n + z * h[at]
                }
            }
        }
        return (hOut, cOut)
    }

    /// A stack of `layers` layers of `directions` directions over x `[T, B, I]` (time first) from
    /// h0, c0 `[L·D, B, H]` (zeros when nil). Returns output `[T, B, D·H]`, h_n and c_n `[L·D, B, H]`.
    /// `between(l, out)` transforms layer l's output before layer l + 1 reads it (dropout).
    static func layers(_ kind: Kind, layers: Int, directions: Int, steps: Int, batch: Int, inputSize: Int,
                       hiddenSize: Int, params: [String: [Double]], x: [Double], h0: [Double]?, c0: [Double]?,
                       between: (Int, [Double]) -> [Double] = { $1 }) -> (output: [Double], hidden: [Double], cell: [Double]) {
        let (nt, nb, nh, nd) = (steps, batch, hiddenSize, directions)
        var input = x, inSize = inputSize
        var hn: [Double] = [], cn: [Double] = []
        for l in 0..<layers {
            var out = [Double](repeating: 0, count: nt * nb * nd * nh)
            for d in 0..<nd {
                let slot = l * nd + d, suffix = "_l\(l)" + (d == 1 ? "_reverse" : "")
                let range = (slot * nb * nh)..<((slot + 1) * nb * nh)
                var h = h0.map { Array($0[range]) } ?? [Double](repeating: 0, count: nb * nh)
                var c = c0.map { Array($0[range]) } ?? [Double](repeating: 0, count: nb * nh)
                for t in (d == 0 ? Array(0..<nt) : Array((0..<nt).reversed())) {
                    let xt = Array(input[(t * nb * inSize)..<((t + 1) * nb * inSize)])
                    (h, c) = step(kind, x: xt, h: h, c: c, batch: nb, inputSize: inSize, hiddenSize: nh, params: params,
                                  suffix: suffix)
                    for b in 0..<nb { for j in 0..<nh { out[(t * nb + b) * nd * nh + d * nh + j] = h[b * nh + j] } }
                }
                hn += h
                cn += c
            }
            input = l < layers - 1 ? between(l, out) : out
            inSize = nd * nh
        }
        return (input, hn, cn)
    }

    /// `[A, B, C]` → `[B, A, C]`, row-major.
    static func swapLeading(_ v: [Double], _ a: Int, _ b: Int, _ c: Int) -> [Double] {
        var out = [Double](repeating: 0, count: v.count)
        for i in 0..<a { for j in 0..<b { for k in 0..<c { out[(j * a + i) * c + k] = v[(i * b + j) * c + k] } } }
        return out
    }

    /// Central differences of `f` at `x`, one coordinate at a time.
    static func finiteDifferences(_ x: [Double], step: Double = 1e-5, _ f: ([Double]) -> Double) -> [Double] {
        var g = [Double](repeating: 0, count: x.count)
        var probe = x
        for i in x.indices {
            probe[i] = x[i] + step
            let up = f(probe)
            probe[i] = x[i] - step
            let down = f(probe)
            probe[i] = x[i]
            g[i] = (up - down) / (2 * step)
        }
        return g
    }
}

// MARK: - Shared test helpers

func rnnDoubles(_ t: Tensor) throws -> [Double] { try t.scalars().map(Double.init) }

func rnnTensor(_ shape: [Int], seed: UInt64, on b: any Backend, range: ClosedRange<Double> = -1...1) throws -> Tensor {
    try Tensor(testValues(shape.reduce(1, *), seed: seed, range: range), shape: shape, on: b)
}

func rnnCheck(_ actual: Tensor, _ expected: [Double], _ tol: Tolerance, _ what: String,
              sourceLocation: SourceLocation = #_sourceLocation) throws {
    let m = mismatch(try actual.scalars(), expected, tolerance: tol)
    #expect(m == nil, "\(what): \(m ?? "")", sourceLocation: sourceLocation)
}

/// Float32 recurrences against Float64 oracles: a few steps of matmuls of size ≤ 8.
let recurrentForwardTolerance = Tolerance(absolute: 2e-5, relative: 1e-4)
/// Autograd in Float32 against central differences of the Float64 oracle.
let recurrentGradientTolerance = Tolerance(absolute: 1e-4, relative: 1e-3)

/// One configuration of a recurrent layer under test.
struct RecurrentCase: CustomStringConvertible, Sendable {
    var kind: RecurrentOracle.Kind
    var layers = 1
    var bidirectional = false
    var batchFirst = false
    var bias = true
    var unbatched = false
    var steps = 4
    var batch = 3
    var inputSize = 3
    var hiddenSize = 4
    var withHidden = false
    var withCell = false

    var directions: Int { bidirectional ? 2 : 1 }
    var effectiveBatch: Int { unbatched ? 1 : batch }

    var description: String {
        var parts = ["\(kind)", "L\(layers)", bidirectional ? "bi" : "uni"]
        if batchFirst { parts.append("batchFirst") }
        if !bias { parts.append("no bias") }
        if unbatched { parts.append("unbatched") }
        if withHidden { parts.append("h0") }
        if withCell { parts.append("c0") }
        return parts.joined(separator: " ")
    }

    /// The input in the layer's layout.
    var inputShape: [Int] {
        if unbatched { return [steps, inputSize] }
        return batchFirst ? [batch, steps, inputSize] : [steps, batch, inputSize]
    }

    var stateShape: [Int] {
        unbatched ? [layers * directions, hiddenSize] : [layers * directions, batch, hiddenSize]
    }

    func makeLayer(seed: UInt64, dropout: Float = 0, on b: any Backend) throws -> RecurrentLayer {
        switch kind {
        case .tanh, .relu:
            return try RNN(inputSize: inputSize, hiddenSize: hiddenSize, layerCount: layers,
                           nonlinearity: kind == .tanh ? .tanh : .relu, bias: bias, batchFirst: batchFirst,
                           dropout: dropout, bidirectional: bidirectional, seed: seed, on: b)
        case .lstm:
            return try LSTM(inputSize: inputSize, hiddenSize: hiddenSize, layerCount: layers, bias: bias,
                            batchFirst: batchFirst, dropout: dropout, bidirectional: bidirectional, seed: seed, on: b)
        case .gru:
            return try GRU(inputSize: inputSize, hiddenSize: hiddenSize, layerCount: layers, bias: bias,
                           batchFirst: batchFirst, dropout: dropout, bidirectional: bidirectional, seed: seed, on: b)
        }
    }

    /// The layer's typed forward pass: output, h_n and (LSTM) c_n.
    func forward(_ layer: RecurrentLayer, _ x: Tensor, _ h0: Tensor?, _ c0: Tensor?) throws -> (Tensor, Tensor, Tensor?) {
        if let l = layer as? LSTM {
            let r = try l.forward(x, initialHidden: h0, initialCell: c0)
            return (r.output, r.hidden, r.cell)
        }
        if let l = layer as? GRU {
            let r = try l.forward(x, initialHidden: h0)
            return (r.output, r.hidden, nil)
        }
        let l = try #require(layer as? RNN)
        let r = try l.forward(x, initialHidden: h0)
        return (r.output, r.hidden, nil)
    }

    /// The oracle on inputs in the layer's layout; the output in the layer's layout.
    func oracle(params: [String: [Double]], x: [Double], h0: [Double]?, c0: [Double]?,
                between: (Int, [Double]) -> [Double] = { $1 }) -> (output: [Double], hidden: [Double], cell: [Double]) {
        let b = effectiveBatch
        let timeFirst = batchFirst && !unbatched ? RecurrentOracle.swapLeading(x, batch, steps, inputSize) : x
        let r = RecurrentOracle.layers(kind, layers: layers, directions: directions, steps: steps, batch: b,
                                       inputSize: inputSize, hiddenSize: hiddenSize, params: params, x: timeFirst,
                                       h0: h0, c0: c0, between: between)
        let out = batchFirst && !unbatched
            ? RecurrentOracle.swapLeading(r.output, steps, batch, directions * hiddenSize) : r.output
        return (out, r.hidden, r.cell)
    }
}

/// A module's parameters as Float64 arrays by name.
func rnnParameters(_ m: any Module) throws -> [String: [Double]] {
    var out: [String: [Double]] = [:]
    for (name, p) in m.namedParameters() { out[name] = try rnnDoubles(p.value) }
    return out
}
