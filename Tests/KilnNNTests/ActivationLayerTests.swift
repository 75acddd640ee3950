import Foundation
import Kiln
import KilnTestSupport
import Testing

// Activations over axes and with tensor parameters: forward against Float64 oracles written here,
// gradients of every input against Float64 central differences of those oracles; and the layers.

/// One multi-input activation: Kiln's call, the oracle, the input shapes and values.
struct VectorActivation: CustomStringConvertible, Sendable {
    let name: String
    let shapes: [[Int]]
    let kiln: @Sendable ([Tensor]) throws -> Tensor
    let f: @Sendable ([[Double]]) -> [Double]
    var description: String { name }
}

private func sg(_ x: Double) -> Double { 1 / (1 + Foundation.exp(-x)) }

/// Applies `row` to each row of a `[rows, n]` array.
private func rows(_ x: [Double], _ n: Int, _ row: ([Double]) -> [Double]) -> [Double] {
    stride(from: 0, to: x.count, by: n).flatMap { row(Array(x[$0..<($0 + n)])) }
}

private func softmaxRow(_ z: [Double]) -> [Double] {
    let m = z.max() ?? 0, e = z.map { Foundation.exp($0 - m) }, s = e.reduce(0, +)
    return e.map { $0 / s }
}

/// Sparsemax by sorting (the textbook algorithm, independent of Kiln's sort-free one).
private func sparsemaxRow(_ z: [Double]) -> [Double] {
    let sorted = z.sorted(by: >)
    var cumulative = 0.0, k = 0, kSum = 0.0
    for (i, v) in sorted.enumerated() {
        cumulative += v
        if 1 + Double(i + 1) * v > cumulative { k = i + 1; kSum = cumulative }
    }
    let tau = (kSum - 1) / Double(k)
    return z.map { Swift.max($0 - tau, 0) }
}

private func gated(_ x: [Double], _ n: Int, _ act: @escaping (Double) -> Double) -> [Double] {
    rows(x, n) { r in (0..<(n / 2)).map { r[$0] * act(r[$0 + n / 2]) } }
}

let vectorActivations: [VectorActivation] = [
    .init(name: "softmax", shapes: [[3, 5]], kiln: { try softmax($0[0]) }, f: { rows($0[0], 5, softmaxRow) }),
    .init(name: "softmin", shapes: [[3, 5]], kiln: { try softmin($0[0]) }, f: { rows($0[0], 5) { softmaxRow($0.map { -$0 }) } }),
    .init(name: "sparsemax", shapes: [[4, 6]], kiln: { try sparsemax($0[0]) }, f: { rows($0[0], 6, sparsemaxRow) }),
    .init(name: "sparsemax(axis 0)", shapes: [[6, 2]], kiln: { try sparsemax($0[0], axis: 0) }, f: { x in
        let c0 = sparsemaxRow(stride(from: 0, to: 12, by: 2).map { x[0][$0] })
        let c1 = sparsemaxRow(stride(from: 1, to: 12, by: 2).map { x[0][$0] })
        return (0..<6).flatMap { [c0[$0], c1[$0]] } }),
    .init(name: "glu", shapes: [[3, 8]], kiln: { try glu($0[0]) }, f: { gated($0[0], 8, sg) }),
    .init(name: "reglu", shapes: [[3, 8]], kiln: { try reglu($0[0]) }, f: { gated($0[0], 8) { Swift.max($0, 0) } }),
    .init(name: "geglu", shapes: [[3, 8]], kiln: { try geglu($0[0]) },
          f: { gated($0[0], 8) { 0.5 * $0 * (1 + Foundation.erf($0 / 2.0.squareRoot())) } }),
    .init(name: "swiglu", shapes: [[3, 8]], kiln: { try swiglu($0[0]) }, f: { gated($0[0], 8) { $0 * sg($0) } }),
    .init(name: "crelu", shapes: [[3, 4]], kiln: { try crelu($0[0]) },
          f: { rows($0[0], 4) { r in r.map { Swift.max($0, 0) } + r.map { Swift.max(-$0, 0) } } }),
    .init(name: "maxout(3)", shapes: [[2, 6]], kiln: { try maxout($0[0], pieces: 3) }, f: { rows($0[0], 3) { [$0.max() ?? 0] } }),
    .init(name: "maxSigmoidUnit(2)", shapes: [[2, 6]], kiln: { try maxSigmoidUnit($0[0], pieces: 2) },
          f: { rows($0[0], 2) { [$0.map(sg).max() ?? 0] } }),
    // Parameters as inputs: x [2, 3, 4] with per-channel parameters [3] on axis 1.
    .init(name: "prelu(per channel)", shapes: [[2, 3, 4], [3]], kiln: { try prelu($0[0], weight: $0[1]) },
          f: { a in a[0].indices.map { i in let x = a[0][i], w = a[1][(i / 4) % 3]; return x > 0 ? x : w * x } }),
    .init(name: "snake(per channel α)", shapes: [[2, 3, 4], [3]], kiln: { try snake($0[0], alpha: $0[1] + 2) },
          f: { a in a[0].indices.map { i in let x = a[0][i], al = a[1][(i / 4) % 3] + 2
              return x + Foundation.pow(Foundation.sin(al * x), 2) / al } }),
    .init(name: "acon(per channel)", shapes: [[2, 3, 4], [3], [3], [3]], kiln: { try acon($0[0], p1: $0[1], p2: $0[2], beta: $0[3]) },
          f: { a in a[0].indices.map { i in
              let c = (i / 4) % 3, x = a[0][i], d = a[1][c] - a[2][c]
              return d * x * sg(a[3][c] * d * x) + a[2][c] * x } }),
    .init(name: "apl(a, b)", shapes: [[2, 3], [2, 3], [2, 3]], kiln: { try apl($0[0], a: $0[1], b: $0[2]) },
          f: { a in a[0].indices.map { i in
              let x = a[0][i], j = i % 3
              return Swift.max(x, 0) + (0..<2).map { s in a[1][s * 3 + j] * Swift.max(a[2][s * 3 + j] - x, 0) }.reduce(0, +) } }),
    .init(name: "learnableSigmoidUnit(β, γ, δ)", shapes: [[6], [], [], []],
          kiln: { try learnableSigmoidUnit($0[0], beta: $0[1] + 1.5, gamma: $0[2] + 2.5, delta: $0[3] + 1.5) },
          f: { a in a[0].map { x in Foundation.pow(1 + Foundation.pow(Swift.abs((a[1][0] + 1.5) * x), a[2][0] + 2.5), -1 / (a[3][0] + 1.5)) } }),
    .init(name: "dynamicReLU", shapes: [[2, 3, 4], [2, 3, 2], [2, 3, 2]], kiln: { try dynamicReLU($0[0], slopes: $0[1], intercepts: $0[2]) },
          f: { a in a[0].indices.map { i in
              let nc = i / 4
              return (0..<2).map { k in a[1][nc * 2 + k] * a[0][i] + a[2][nc * 2 + k] }.max() ?? 0 } }),
    .init(name: "funnelReLU(3×3 depthwise)", shapes: [[1, 2, 4, 5], [2, 1, 3, 3], [2]],
          kiln: { try funnelReLU($0[0], weight: $0[1], bias: $0[2]) },
          f: { a in
              var out = [Double]()
              for c in 0..<2 { for h in 0..<4 { for w in 0..<5 {
                  var t = a[2][c]
                  for i in 0..<3 { for j in 0..<3 {
                      let hh = h + i - 1, ww = w + j - 1
                      if hh >= 0 && hh < 4 && ww >= 0 && ww < 5 { t += a[1][c * 9 + i * 3 + j] * a[0][(c * 4 + hh) * 5 + ww] }
                  } }
                  out.append(Swift.max(a[0][(c * 4 + h) * 5 + w], t))
              } } }
              return out }),
]

private func inputs(_ v: VectorActivation) -> [[Float]] {
    v.shapes.enumerated().map { i, s in testValues(s.reduce(1, *), seed: UInt64(17 + i), range: -2...2) }
}

@Suite("Activation layers and axis activations")
struct ActivationLayerTests {
    @Test("forward against the Float64 oracle", arguments: TestBackend.all, vectorActivations)
    func forward(_ tb: TestBackend, _ a: VectorActivation) throws {
        let values = inputs(a)
        let ts = try zip(values, a.shapes).map { try Tensor($0, shape: $1, on: tb.backend) }
        let problem = mismatch(try a.kiln(ts).scalars(), a.f(values.map { $0.map(Double.init) }), tolerance: .reduction)
        #expect(problem == nil, "\(a.name) on \(tb.name): \(problem ?? "")")
    }

    @Test("gradient of every input against a central difference of the oracle", arguments: TestBackend.all, vectorActivations)
    func gradient(_ tb: TestBackend, _ a: VectorActivation) throws {
        let values = inputs(a)
        let ts = try zip(values, a.shapes).map { try Tensor($0, shape: $1, on: tb.backend).requiringGradient() }
        let y = try a.kiln(ts)
        let weights = testValues(y.count, seed: 29, range: -1...1)
        try (y * Tensor(weights, shape: y.shape, on: tb.backend)).sum().backward()
        let base = values.map { $0.map(Double.init) }
        let loss: ([[Double]]) -> Double = { zip(a.f($0), weights).map { $0 * Double($1) }.reduce(0, +) }
        let h = 1e-6
        for (i, t) in ts.enumerated() {
            let expected: [Double] = base[i].indices.map { j in
                var up = base, down = base
                up[i][j] += h; down[i][j] -= h
                return (loss(up) - loss(down)) / (2 * h)
            }
            let got = try t.gradient?.scalars() ?? [Float](repeating: 0, count: expected.count)
            let problem = mismatch(got, expected, tolerance: Tolerance(absolute: 1e-4, relative: 1e-3))
            #expect(problem == nil, "\(a.name), input \(i) on \(tb.name): \(problem ?? "")")
        }
    }

    @Test("stateless layers equal their functions; hyperparameters are validated", arguments: TestBackend.all)
    func statelessLayers(_ tb: TestBackend) throws {
        let x = try Tensor(testValues(24, seed: 41, range: -4...4), shape: [2, 3, 4], on: tb.backend)
        let pairs: [(any Module, (Tensor) throws -> Tensor)] = [
            (ReLU(), { try relu($0) }), (try LeakyReLU(negativeSlope: 0.2), { try leakyReLU($0, negativeSlope: 0.2) }),
            (SELU(), { try selu($0) }), (try Softplus(beta: 2), { try softplus($0, beta: 2, threshold: 20) }),
            (HardSwish(), { try hardSwish($0) }), (Softmax(axis: 1), { try softmax($0, axis: 1) }),
            (Sparsemax(), { try sparsemax($0) }), (GLU(), { try glu($0) }), (SwiGLU(), { try swiglu($0) }),
            (try HardTanh(minValue: -2, maxValue: 3), { try hardTanh($0, minValue: -2, maxValue: 3) }),
            (GELU(approximation: .tanh), { try gelu($0, approximation: .tanh) }), (Mish(), { try mish($0) }),
            (CReLU(axis: 1), { try crelu($0, axis: 1) }), (SQNL(), { try sqnl($0) }), (Serf(), { try serf($0) }),
        ]
        for (layer, function) in pairs {
            #expect(try layer(x).scalars() == function(x).scalars(), "\(type(of: layer)) on \(tb.name)")
            #expect(layer.parameters().isEmpty)
        }
        #expect(throws: TensorError.self) { try HardTanh(minValue: 2, maxValue: 1) }
        #expect(throws: TensorError.self) { try Softplus(beta: 0) }
        #expect(throws: TensorError.self) { try CELU(alpha: 0) }
        #expect(throws: TensorError.self) { try SoftShrink(lambda: -1) }
        #expect(throws: TensorError.self) { try RReLU(lower: 0.5, upper: 0.1) }
        #expect(throws: TensorError.self) { try glu(Tensor.zeros([2, 3], on: tb.backend)) }
        #expect(throws: TensorError.self) { try maxout(Tensor.zeros([2, 5], on: tb.backend), pieces: 2) }
        #expect(throws: TensorError.self) { try sparsemax(x, axis: 3) }
        #expect(throws: TensorError.self) { try prelu(x, weight: Tensor.ones([4], on: tb.backend)) }
    }

    @Test("learnable layers: parameter names, PyTorch defaults, gradients reach every parameter", arguments: TestBackend.all)
    func learnableLayers(_ tb: TestBackend) throws {
        let b = tb.backend
        let x = try Tensor(testValues(2 * 4 * 3 * 3, seed: 43, range: -2...2), shape: [2, 4, 3, 3], on: b)
        let prelu = try PReLU(numParameters: 4, on: b)
        #expect(try prelu.weight.value.scalars() == [0.25, 0.25, 0.25, 0.25])
        let layers: [(any Module, [String])] = [
            (prelu, ["weight"]), (try ACON(channels: 4, on: b), ["p1", "p2", "beta"]),
            (try Snake(channels: 4, on: b), ["alpha"]), (try FReLU(channels: 4, on: b), ["weight", "bias"]),
            (try DyReLU(channels: 4, on: b), ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]),
            (try LearnableSigmoidUnit(on: b), ["beta", "gamma", "delta"]),
        ]
        for (layer, names) in layers {
            #expect(layer.namedParameters().map(\.name) == names, "\(type(of: layer))")
            let y = try layer(x)
            #expect(y.shape == x.shape)
            try (y * y).sum().backward()
            for (name, p) in layer.namedParameters() {
                #expect(p.gradient != nil, "\(type(of: layer)).\(name) has no gradient on \(tb.name)")
            }
        }
        let v = try Tensor(testValues(2 * 6, seed: 47), shape: [2, 6], on: b)
        for layer: any Module in [try APL(featureCount: 6, on: b), try Maxout(inputSize: 6, outputSize: 3, on: b),
                                  try MaxSigmoidUnit(inputSize: 6, outputSize: 3, on: b)] {
            try layer(v).sum().backward()
            #expect(layer.parameters().allSatisfy { $0.gradient != nil }, "\(type(of: layer))")
        }
        #expect(throws: TensorError.self) { try PReLU(numParameters: 0, on: b) }
        #expect(throws: TensorError.self) { try DyReLU(channels: 3, on: b)(x) }
    }

    @Test("GatedLinearUnit: (xVᵀ + c) ⊙ act(xWᵀ + b) against a Float64 oracle, nn.Linear's init bounds",
          arguments: TestBackend.all, [GateActivation.sigmoid, .relu, .gelu, .swish])
    func gatedLinearUnit(_ tb: TestBackend, _ act: GateActivation) throws {
        let layer = try GatedLinearUnit(inputSize: 4, outputSize: 3, activation: act, seed: 7, on: tb.backend)
        #expect(layer.namedParameters().map(\.name) == ["gate.weight", "gate.bias", "value.weight", "value.bias"])
        let p = try layer.parameters().map { try $0.value.scalars().map(Double.init) }
        #expect(p.allSatisfy { $0.allSatisfy { Swift.abs($0) <= 0.5 } }, "U(±1/√4) init")
        let xs = testValues(8, seed: 53)
        let y = try layer(Tensor(xs, shape: [2, 4], on: tb.backend))
        let g: (Double) -> Double = switch act {
        case .sigmoid: sg
        case .relu: { Swift.max($0, 0) }
        case .gelu: { 0.5 * $0 * (1 + Foundation.erf($0 / 2.0.squareRoot())) }
        case .swish: { $0 * sg($0) }
        }
        var expected = [Double]()
        for r in 0..<2 { for o in 0..<3 {
            let dot: ([Double], [Double]) -> Double = { w, bias in
                (0..<4).map { w[o * 4 + $0] * Double(xs[r * 4 + $0]) }.reduce(bias[o], +) }
            expected.append(dot(p[2], p[3]) * g(dot(p[0], p[1])))
        } }
        let problem = mismatch(try y.scalars(), expected, tolerance: .reduction)
        #expect(problem == nil, "\(act) on \(tb.name): \(problem ?? "")")
    }

    @Test("RReLU: training slopes in [lower, upper), seeded and fresh per call; eval uses the mean", arguments: TestBackend.all)
    func rreluLayer(_ tb: TestBackend) throws {
        let layer = try RReLU(seed: 3)
        let x = try Tensor.full([256], value: -1, on: tb.backend)
        let first = try layer(x).scalars(), second = try layer(x).scalars()
        #expect(first.allSatisfy { -$0 >= 1.0 / 8 && -$0 < 1.0 / 3 + 1e-7 })
        #expect(first != second)
        #expect(try rrelu(x, training: true, seed: 3).scalars() == first)
        layer.eval()
        let mean = Float((1.0 / 8 + 1.0 / 3) / 2)
        #expect(try layer(x).scalars().allSatisfy { Swift.abs($0 + mean) < 1e-6 })
    }
}
