import Foundation
import Kiln
import KilnTestSupport
import Testing

// Every activation against an independent Float64 oracle written here from its formula: forwards
// on special values (0, kinks, large ±), gradients through autograd against the oracle's analytic
// derivative, and each analytic derivative against a Float64 central finite difference.

private func sig(_ x: Double) -> Double { 1 / (1 + Foundation.exp(-x)) }
private func sp(_ x: Double) -> Double { Swift.max(x, 0) + Foundation.log1p(Foundation.exp(-Swift.abs(x))) }

/// One elementwise activation: Kiln's function, the oracle f and its derivative f′ (PyTorch's
/// one-sided values at kinks), and the kinks that gradient inputs stay away from.
struct UnaryActivation: CustomStringConvertible, Sendable {
    let name: String
    let kiln: @Sendable (Tensor) throws -> Tensor
    let f: @Sendable (Double) -> Double
    let df: @Sendable (Double) -> Double
    var kinks: [Double] = [0]
    var description: String { name }
}

private let geluK = (2 / Double.pi).squareRoot()
private let seluAlpha = 1.6732632423543772848170429916717, seluScale = 1.0507009873554804934193349852946

let unaryActivations: [UnaryActivation] = [
    .init(name: "binaryStep", kiln: { try binaryStep($0) }, f: { $0 >= 0 ? 1 : 0 }, df: { _ in 0 }),
    .init(name: "binaryStep(valueAtZero: 0)", kiln: { try binaryStep($0, valueAtZero: 0) }, f: { $0 > 0 ? 1 : 0 }, df: { _ in 0 }),
    .init(name: "identity", kiln: { try identity($0) }, f: { $0 }, df: { _ in 1 }, kinks: []),
    .init(name: "sigmoid", kiln: { try sigmoid($0) }, f: sig, df: { sig($0) * (1 - sig($0)) }, kinks: []),
    .init(name: "tanh", kiln: { try tanh($0) }, f: { Foundation.tanh($0) }, df: { 1 - Foundation.pow(Foundation.tanh($0), 2) }, kinks: []),
    .init(name: "relu", kiln: { try relu($0) }, f: { Swift.max($0, 0) }, df: { $0 > 0 ? 1 : 0 }),
    .init(name: "relu6", kiln: { try relu6($0) }, f: { Swift.min(Swift.max($0, 0), 6) }, df: { $0 > 0 && $0 < 6 ? 1 : 0 }, kinks: [0, 6]),
    .init(name: "leakyReLU", kiln: { try leakyReLU($0) }, f: { $0 > 0 ? $0 : 0.01 * $0 }, df: { $0 > 0 ? 1 : 0.01 }),
    .init(name: "elu", kiln: { try elu($0) }, f: { $0 > 0 ? $0 : Foundation.expm1($0) }, df: { $0 > 0 ? 1 : Foundation.exp($0) }),
    .init(name: "selu", kiln: { try selu($0) }, f: { seluScale * ($0 > 0 ? $0 : seluAlpha * Foundation.expm1($0)) },
          df: { seluScale * ($0 > 0 ? 1 : seluAlpha * Foundation.exp($0)) }),
    .init(name: "celu(α 1.5)", kiln: { try celu($0, alpha: 1.5) },
          f: { Swift.max(0, $0) + Swift.min(0, 1.5 * Foundation.expm1($0 / 1.5)) }, df: { $0 > 0 ? 1 : Foundation.exp($0 / 1.5) }),
    .init(name: "softplus", kiln: { try softplus($0) }, f: sp, df: sig, kinks: []),
    .init(name: "softplus(β 2, threshold 20)", kiln: { try softplus($0, beta: 2, threshold: 20) },
          f: { 2 * $0 > 20 ? $0 : Foundation.log1p(Foundation.exp(2 * $0)) / 2 }, df: { 2 * $0 > 20 ? 1 : sig(2 * $0) }, kinks: [10]),
    .init(name: "shiftedSoftplus", kiln: { try shiftedSoftplus($0) }, f: { sp($0) - Foundation.log(2) }, df: sig, kinks: []),
    .init(name: "logSigmoid", kiln: { try logSigmoid($0) }, f: { -sp(-$0) }, df: { sig(-$0) }, kinks: []),
    .init(name: "softsign", kiln: { try softsign($0) }, f: { $0 / (1 + Swift.abs($0)) }, df: { 1 / Foundation.pow(1 + Swift.abs($0), 2) }),
    .init(name: "swish(β 1.5)", kiln: { try swish($0, beta: 1.5) }, f: { $0 * sig(1.5 * $0) },
          df: { sig(1.5 * $0) + 1.5 * $0 * sig(1.5 * $0) * (1 - sig(1.5 * $0)) }, kinks: []),
    .init(name: "silu", kiln: { try silu($0) }, f: { $0 * sig($0) }, df: { sig($0) + $0 * sig($0) * (1 - sig($0)) }, kinks: []),
    .init(name: "mish", kiln: { try mish($0) }, f: { $0 * Foundation.tanh(sp($0)) },
          df: { let t = Foundation.tanh(sp($0)); return t + $0 * (1 - t * t) * sig($0) }, kinks: []),
    .init(name: "gelu", kiln: { try gelu($0) }, f: { 0.5 * $0 * (1 + Foundation.erf($0 / 2.0.squareRoot())) },
          df: { 0.5 * (1 + Foundation.erf($0 / 2.0.squareRoot())) + $0 * Foundation.exp(-$0 * $0 / 2) / (2 * Double.pi).squareRoot() }, kinks: []),
    .init(name: "gelu(tanh)", kiln: { try gelu($0, approximation: .tanh) },
          f: { 0.5 * $0 * (1 + Foundation.tanh(geluK * ($0 + 0.044715 * $0 * $0 * $0))) },
          df: { x in
              let t = Foundation.tanh(geluK * (x + 0.044715 * x * x * x))
              return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * geluK * (1 + 3 * 0.044715 * x * x) }, kinks: []),
    .init(name: "hardSigmoid", kiln: { try hardSigmoid($0) }, f: { Swift.min(Swift.max($0 / 6 + 0.5, 0), 1) },
          df: { $0 > -3 && $0 < 3 ? 1.0 / 6 : 0 }, kinks: [-3, 3]),
    .init(name: "hardTanh(−0.5, 2)", kiln: { try hardTanh($0, minValue: -0.5, maxValue: 2) }, f: { Swift.min(Swift.max($0, -0.5), 2) },
          df: { $0 > -0.5 && $0 < 2 ? 1 : 0 }, kinks: [-0.5, 2]),
    .init(name: "hardSwish", kiln: { try hardSwish($0) }, f: { $0 <= -3 ? 0 : ($0 >= 3 ? $0 : $0 * ($0 + 3) / 6) },
          df: { $0 < -3 ? 0 : ($0 > 3 ? 1 : (2 * $0 + 3) / 6) }, kinks: [-3, 3]),
    .init(name: "isru(α 0.7)", kiln: { try isru($0, alpha: 0.7) }, f: { $0 / (1 + 0.7 * $0 * $0).squareRoot() },
          df: { Foundation.pow(1 + 0.7 * $0 * $0, -1.5) }, kinks: []),
    .init(name: "isrlu(α 0.7)", kiln: { try isrlu($0, alpha: 0.7) }, f: { $0 >= 0 ? $0 : $0 / (1 + 0.7 * $0 * $0).squareRoot() },
          df: { $0 >= 0 ? 1 : Foundation.pow(1 + 0.7 * $0 * $0, -1.5) }),
    .init(name: "gaussian", kiln: { try gaussian($0) }, f: { Foundation.exp(-$0 * $0) }, df: { -2 * $0 * Foundation.exp(-$0 * $0) }, kinks: []),
    .init(name: "bipolarSigmoid", kiln: { try bipolarSigmoid($0) }, f: { (1 - Foundation.exp(-$0)) / (1 + Foundation.exp(-$0)) },
          df: { 0.5 * (1 - Foundation.pow(Foundation.tanh($0 / 2), 2)) }, kinks: []),
    .init(name: "hardShrink", kiln: { try hardShrink($0) }, f: { Swift.abs($0) > 0.5 ? $0 : 0 }, df: { Swift.abs($0) > 0.5 ? 1 : 0 }, kinks: [-0.5, 0.5]),
    .init(name: "softShrink", kiln: { try softShrink($0) }, f: { $0 > 0.5 ? $0 - 0.5 : ($0 < -0.5 ? $0 + 0.5 : 0) },
          df: { Swift.abs($0) > 0.5 ? 1 : 0 }, kinks: [-0.5, 0.5]),
    .init(name: "tanhShrink", kiln: { try tanhShrink($0) }, f: { $0 - Foundation.tanh($0) }, df: { Foundation.pow(Foundation.tanh($0), 2) }, kinks: []),
    .init(name: "thresholdedReLU", kiln: { try thresholdedReLU($0) }, f: { $0 > 1 ? $0 : 0 }, df: { $0 > 1 ? 1 : 0 }, kinks: [1]),
    .init(name: "rrelu(eval)", kiln: { try rrelu($0) }, f: { $0 >= 0 ? $0 : $0 * (1.0 / 8 + 1.0 / 3) / 2 },
          df: { $0 > 0 ? 1 : (1.0 / 8 + 1.0 / 3) / 2 }),
    .init(name: "bentIdentity", kiln: { try bentIdentity($0) }, f: { (($0 * $0 + 1).squareRoot() - 1) / 2 + $0 },
          df: { $0 / (2 * ($0 * $0 + 1).squareRoot()) + 1 }, kinks: []),
    .init(name: "sqnl", kiln: { try sqnl($0) },
          f: { x in x > 2 ? 1 : (x >= 0 ? x - x * x / 4 : (x >= -2 ? x + x * x / 4 : -1)) },
          df: { Swift.abs($0) > 2 ? 0 : 1 - Swift.abs($0) / 2 }, kinks: [-2, 2]),
    .init(name: "erf", kiln: { try erf($0) }, f: { Foundation.erf($0) }, df: { 2 / Double.pi.squareRoot() * Foundation.exp(-$0 * $0) }, kinks: []),
    .init(name: "lisht", kiln: { try lisht($0) }, f: { $0 * Foundation.tanh($0) },
          df: { Foundation.tanh($0) + $0 * (1 - Foundation.pow(Foundation.tanh($0), 2)) }, kinks: []),
    .init(name: "serf", kiln: { try serf($0) }, f: { $0 * Foundation.erf(sp($0)) },
          df: { Foundation.erf(sp($0)) + $0 * 2 / Double.pi.squareRoot() * Foundation.exp(-sp($0) * sp($0)) * sig($0) }, kinks: []),
    .init(name: "snake(α 0.8)", kiln: { try snake($0, alpha: 0.8) }, f: { $0 + Foundation.pow(Foundation.sin(0.8 * $0), 2) / 0.8 },
          df: { 1 + Foundation.sin(1.6 * $0) }, kinks: []),
    .init(name: "prelu(0.25)", kiln: { try prelu($0, weight: Tensor([0.25], on: $0.backend)) }, f: { $0 > 0 ? $0 : 0.25 * $0 },
          df: { $0 > 0 ? 1 : 0.25 }),
    .init(name: "apl", kiln: { try apl($0, a: Tensor([0.3, -0.7], shape: [2, 1], on: $0.backend), b: Tensor([0.5, -1], shape: [2, 1], on: $0.backend)) },
          f: { x in Swift.max(x, 0) + 0.3 * Swift.max(0.5 - x, 0) - 0.7 * Swift.max(-1 - x, 0) },
          df: { x in (x > 0 ? 1 : 0) - 0.3 * (0.5 - x > 0 ? 1 : 0) + 0.7 * (-1 - x > 0 ? 1 : 0) }, kinks: [0, 0.5, -1]),
    .init(name: "acon", kiln: { x in
              try acon(x, p1: Tensor([1.2], on: x.backend), p2: Tensor([0.3], on: x.backend), beta: Tensor([0.9], on: x.backend)) },
          f: { x in 0.9 * x * sig(0.9 * 0.9 * x) + 0.3 * x },
          df: { x in let s = sig(0.81 * x); return 0.9 * s + 0.9 * x * 0.81 * s * (1 - s) + 0.3 }, kinks: []),
    .init(name: "learnableSigmoidUnit", kiln: { x in
              try learnableSigmoidUnit(x, beta: Tensor(scalar: 1.3, on: x.backend), gamma: Tensor(scalar: 2.5, on: x.backend),
                                       delta: Tensor(scalar: 1.5, on: x.backend)) },
          f: { x in Foundation.pow(1 + Foundation.pow(Swift.abs(1.3 * x), 2.5), -1 / 1.5) },
          df: { x in
              let u = Foundation.pow(Swift.abs(1.3 * x), 2.5)
              let du = 2.5 * Foundation.pow(Swift.abs(1.3 * x), 1.5) * 1.3 * (x > 0 ? 1 : -1)
              return -1 / 1.5 * Foundation.pow(1 + u, -1 / 1.5 - 1) * du }),
]

private let specialInputs: [Float] = [0, -0.0, 1e-4, -1e-4, 0.5, -0.5, 1, -1, 2, -2, 3, -3, 6, 10, -10, 30, -30, 100, -100]
// atol 4e-6: the tanh-form GELU at x = −100 is x·(1 + tanh(…))/2 in Float32, an error of ~|x|·2⁻²⁵.
private let forwardTolerance = Tolerance(absolute: 4e-6, relative: 2e-5)
private let gradientTolerance = Tolerance(absolute: 1e-5, relative: 1e-4)

/// Gradient inputs in [−4, 7], at least 0.05 from every kink of `a`.
private func smoothInputs(_ a: UnaryActivation, count: Int = 64) -> [Float] {
    testValues(count * 2, seed: 11, range: -4...7).filter { v in a.kinks.allSatisfy { Swift.abs(Double(v) - $0) > 0.05 } }
}

@Suite("Activations")
struct ActivationTests {
    @Test("elementwise forward against the Float64 oracle", arguments: TestBackend.all, unaryActivations)
    func forward(_ tb: TestBackend, _ a: UnaryActivation) throws {
        let values = specialInputs + testValues(40, seed: 3, range: -8...8)
        let y = try a.kiln(Tensor(values, shape: [values.count], on: tb.backend))
        #expect(y.shape == [values.count])
        let problem = mismatch(try y.scalars(), values.map { a.f(Double($0)) }, tolerance: forwardTolerance)
        #expect(problem == nil, "\(a.name) on \(tb.name): \(problem ?? "")")
    }

    @Test("elementwise gradient against the oracle's derivative", arguments: TestBackend.all, unaryActivations)
    func gradient(_ tb: TestBackend, _ a: UnaryActivation) throws {
        let values = smoothInputs(a)
        let weights = testValues(values.count, seed: 5, range: -1...1)
        let x = try Tensor(values, on: tb.backend).requiringGradient()
        let w = try Tensor(weights, on: tb.backend)
        try (a.kiln(x) * w).sum().backward()
        let got = try x.gradient?.scalars() ?? [Float](repeating: 0, count: values.count)
        let expected = zip(values, weights).map { a.df(Double($0)) * Double($1) }
        let problem = mismatch(got, expected, tolerance: gradientTolerance)
        #expect(problem == nil, "\(a.name) on \(tb.name): \(problem ?? "")")
    }

    @Test("each oracle derivative matches a Float64 central difference", arguments: unaryActivations)
    func oracleDerivative(_ a: UnaryActivation) {
        let h = 1e-6
        for v in smoothInputs(a) {
            let x = Double(v)
            let numeric = (a.f(x + h) - a.f(x - h)) / (2 * h)
            #expect(Swift.abs(numeric - a.df(x)) <= 1e-6 + 1e-6 * Swift.abs(numeric), "\(a.name) at \(x): \(numeric) vs \(a.df(x))")
        }
    }
}
