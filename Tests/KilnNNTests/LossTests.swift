import Foundation
import Kiln
import KilnTestSupport
import Testing

// Every loss against an independent Float64 oracle written from the published formula, for each
// reduction, with the gradient of input 0 checked against a central finite difference of the oracle.

/// One loss under test: its inputs (input 0 is differentiated), the Kiln call and the oracle.
struct LossCase: CustomStringConvertible, @unchecked Sendable {
    let name: String
    let inputs: [(shape: [Int], values: [Float])]
    let kiln: ([Tensor], LossReduction) throws -> Tensor
    let oracle: ([[Double]], LossReduction) -> [Double]
    var reductions: [LossReduction] = LossReduction.allCases
    var checkGradient = true
    var description: String { name }
}

// MARK: - Float64 helpers

private func reduce(_ l: [Double], _ r: LossReduction) -> [Double] {
    switch r {
    case .none: return l
    case .sum: return [l.reduce(0, +)]
    case .mean: return [l.reduce(0, +) / Double(l.count)]
    }
}
private func softplus(_ x: Double) -> Double { Swift.max(x, 0) + Foundation.log1p(Foundation.exp(-Swift.abs(x))) }
private func sigmoid(_ x: Double) -> Double { 1 / (1 + Foundation.exp(-x)) }
private func lse(_ row: [Double]) -> Double {
    let m = row.max() ?? 0
    return m + Foundation.log(row.reduce(0) { $0 + Foundation.exp($1 - m) })
}
private func rows(_ x: [Double], _ c: Int) -> [[Double]] { stride(from: 0, to: x.count, by: c).map { Array(x[$0..<$0 + c]) } }
private func elementwise(_ a: [Double], _ b: [Double], _ f: (Double, Double) -> Double) -> [Double] { zip(a, b).map(f) }
private func signs(_ v: [Float]) -> [Float] { v.map { $0 >= 0 ? 1 : -1 } }
private func classes(_ n: Int, _ c: Int, seed: UInt64) -> [Float] {
    testValues(n, seed: seed, range: 0...Double(c) - 1e-3).map { Float(Int($0)) }
}

/// Cross-entropy for logits laid out `[N, C, D]` (D = 1 for `[N, C]`), class weights, ignore index
/// and label smoothing, PyTorch's definition.
private func ceOracle(_ z: [Double], _ t: [Double], c: Int, d: Int = 1, weight: [Double]? = nil, ignore: Double = -100,
                      smoothing: Double = 0, _ r: LossReduction) -> [Double] {
    let n = t.count / d
    var loss = [Double](), denominator = 0.0
    for i in 0..<n {
        for k in 0..<d {
            let row = (0..<c).map { z[(i * c + $0) * d + k] }
            let y = t[i * d + k]
            if y == ignore { loss.append(0); continue }
            let logp = row.map { $0 - lse(row) }
            let w = weight ?? [Double](repeating: 1, count: c)
            let nll = -w[Int(y)] * logp[Int(y)]
            let smooth = -(0..<c).reduce(0.0) { $0 + w[$1] * logp[$1] } / Double(c)
            loss.append((1 - smoothing) * nll + smoothing * smooth)
            denominator += w[Int(y)]
        }
    }
    if r == .mean { return [loss.reduce(0, +) / denominator] }
    return reduce(loss, r)
}

// MARK: - Cases

private func f(_ n: Int, _ seed: UInt64, _ range: ClosedRange<Double> = -2...2) -> [Float] { testValues(n, seed: seed, range: range) }
private func d(_ v: [Float]) -> [Double] { v.map(Double.init) }

let lossCases: [LossCase] = {
    var cases: [LossCase] = []
    let x12 = f(12, 1), y12 = f(12, 2)
    let pm12 = signs(f(12, 3))
    cases.append(LossCase(name: "mse_loss", inputs: [([3, 4], x12), ([3, 4], y12)],
                          kiln: { try mseLoss(input: $0[0], targets: $0[1], reduction: $1) },
                          oracle: { reduce(elementwise($0[0], $0[1]) { ($0 - $1) * ($0 - $1) }, $1) }))
    cases.append(LossCase(name: "mae_loss", inputs: [([3, 4], x12), ([3, 4], y12)],
                          kiln: { try l1Loss(input: $0[0], targets: $0[1], reduction: $1) },
                          oracle: { reduce(elementwise($0[0], $0[1]) { Swift.abs($0 - $1) }, $1) }))
    cases.append(LossCase(name: "huber_loss(smoothL1 β=0.5)", inputs: [([3, 4], x12), ([3, 4], y12)],
                          kiln: { try smoothL1Loss(input: $0[0], targets: $0[1], reduction: $1, beta: 0.5) },
                          oracle: { reduce(elementwise($0[0], $0[1]) { let e = Swift.abs($0 - $1); return e < 0.5 ? 0.5 * e * e / 0.5 : e - 0.25 }, $1) }))
    cases.append(LossCase(name: "huber_loss(δ=0.7)", inputs: [([3, 4], x12), ([3, 4], y12)],
                          kiln: { try huberLoss(input: $0[0], targets: $0[1], reduction: $1, delta: 0.7) },
                          oracle: { reduce(elementwise($0[0], $0[1]) { let e = Swift.abs($0 - $1); return e < 0.7 ? 0.5 * e * e : 0.7 * (e - 0.35) }, $1) }))
    // Cross-entropy: plain, weighted + ignored + smoothed, [N, C, d] layout.
    let t4 = classes(4, 5, seed: 4)
    cases.append(LossCase(name: "cce_loss", inputs: [([4, 5], f(20, 5)), ([4], t4)],
                          kiln: { try crossEntropy(logits: $0[0], targets: $0[1], reduction: $1) },
                          oracle: { ceOracle($0[0], $0[1], c: 5, $1) }))
    let w5: [Float] = [0.5, 2, 1, 0.25, 1.5]
    let tIgnored: [Float] = [t4[0], -100, t4[2], t4[3]]
    cases.append(LossCase(name: "label_smoothing_ce(weight, ignoreIndex, ε=0.1)",
                          inputs: [([4, 5], f(20, 6)), ([4], tIgnored), ([5], w5)],
                          kiln: { try crossEntropy(logits: $0[0], targets: $0[1], weight: $0[2], reduction: $1, labelSmoothing: 0.1) },
                          oracle: { ceOracle($0[0], $0[1], c: 5, weight: $0[2], smoothing: 0.1, $1) }))
    cases.append(LossCase(name: "cce_loss[N,C,d]", inputs: [([2, 3, 4], f(24, 7)), ([2, 4], classes(8, 3, seed: 8))],
                          kiln: { try crossEntropy(logits: $0[0], targets: $0[1], reduction: $1) },
                          oracle: { ceOracle($0[0], $0[1], c: 3, d: 4, $1) }))
    let probs = rows(d(f(20, 9, 0.1...1)), 5).flatMap { r in r.map { Float($0 / r.reduce(0, +)) } }
    cases.append(LossCase(name: "cce_loss(probabilities, weight, ε=0.2)", inputs: [([4, 5], f(20, 10)), ([4, 5], probs), ([5], w5)],
                          kiln: { try crossEntropy(logits: $0[0], targetProbabilities: $0[1], weight: $0[2], reduction: $1, labelSmoothing: 0.2) },
                          oracle: { a, r in
                              let l = zip(rows(a[0], 5), rows(a[1], 5)).map { (z: [Double], q: [Double]) -> Double in
                                  -(0..<5).reduce(0.0) { $0 + a[2][$1] * (0.8 * q[$1] + 0.04) * (z[$1] - lse(z)) } }
                              return reduce(l, r) }))
    cases.append(LossCase(name: "nll_loss(weight, ignoreIndex)", inputs: [([4, 5], f(20, 11, -3...0)), ([4], tIgnored), ([5], w5)],
                          kiln: { try nllLoss(input: $0[0], targets: $0[1], weight: $0[2], reduction: $1) },
                          oracle: { a, r in
                              var l = [Double](), den = 0.0
                              for (i, y) in a[1].enumerated() {
                                  if y == -100 { l.append(0); continue }
                                  l.append(-a[2][Int(y)] * a[0][i * 5 + Int(y)]); den += a[2][Int(y)] }
                              return r == .mean ? [l.reduce(0, +) / den] : reduce(l, r) }))
    let p12 = f(12, 12, 0.05...0.95), y01 = f(12, 13, 0...1).map { $0.rounded() }, sw = f(12, 14, 0.5...2)
    cases.append(LossCase(name: "bce_loss(weight)", inputs: [([3, 4], p12), ([3, 4], y01), ([3, 4], sw)],
                          kiln: { try binaryCrossEntropy(probabilities: $0[0], targets: $0[1], weight: $0[2], reduction: $1) },
                          oracle: { a, r in reduce((0..<12).map { (i: Int) -> Double in
                              -a[2][i] * (a[1][i] * Foundation.log(a[0][i]) + (1 - a[1][i]) * Foundation.log(1 - a[0][i])) }, r) }))
    let pw4: [Float] = [1, 3, 0.5, 2]
    cases.append(LossCase(name: "weighted_bce_loss(withLogits, weight, posWeight)", inputs: [([3, 4], x12), ([3, 4], y01), ([3, 4], sw), ([4], pw4)],
                          kiln: { try binaryCrossEntropyWithLogits(logits: $0[0], targets: $0[1], weight: $0[2], reduction: $1, posWeight: $0[3]) },
                          oracle: { a, r in reduce((0..<12).map { (i: Int) -> Double in
                              let x = a[0][i], y = a[1][i]
                              return -a[2][i] * (a[3][i % 4] * y * Foundation.log(sigmoid(x)) + (1 - y) * Foundation.log(1 - sigmoid(x))) }, r) }))
    cases.append(LossCase(name: "weighted_bce_loss(balanced α=0.3)", inputs: [([3, 4], x12), ([3, 4], y01)],
                          kiln: { try balancedBinaryCrossEntropyWithLogits(logits: $0[0], targets: $0[1], alpha: 0.3, reduction: $1) },
                          oracle: { a, r in reduce((0..<12).map { (i: Int) -> Double in
                              let p = sigmoid(a[0][i]), y = a[1][i]
                              return -(0.3 * y * Foundation.log(p) + 0.7 * (1 - y) * Foundation.log(1 - p)) }, r) }))
    cases.append(LossCase(name: "focal_loss(sigmoid α=0.25 γ=2)", inputs: [([3, 4], x12), ([3, 4], y01)],
                          kiln: { try sigmoidFocalLoss(logits: $0[0], targets: $0[1], reduction: $1) },
                          oracle: { a, r in reduce((0..<12).map { (i: Int) -> Double in
                              let p = sigmoid(a[0][i]), y = a[1][i]
                              let pt = y == 1 ? p : 1 - p, at = y == 1 ? 0.25 : 0.75
                              return -at * Foundation.pow(1 - pt, 2) * Foundation.log(pt) }, r) }))
    cases.append(LossCase(name: "focal_loss(softmax α=0.5 γ=1.5)", inputs: [([4, 5], f(20, 15)), ([4], t4)],
                          kiln: { try focalLoss(logits: $0[0], targets: $0[1], alpha: 0.5, gamma: 1.5, reduction: $1) },
                          oracle: { a, r in reduce(zip(rows(a[0], 5), a[1]).map { (z: [Double], y: Double) -> Double in
                              let lp = z[Int(y)] - lse(z)
                              return -0.5 * Foundation.pow(1 - Foundation.exp(lp), 1.5) * lp }, r) }))
    for p in [1, 2] {
        cases.append(LossCase(name: "multi_margin_loss(p=\(p), weight)", inputs: [([4, 5], f(20, 16)), ([4], t4), ([5], w5)],
                              kiln: { try multiMarginLoss(input: $0[0], targets: $0[1], p: p, weight: $0[2], reduction: $1) },
                              oracle: { a, r in reduce(zip(rows(a[0], 5), a[1]).map { (x: [Double], y: Double) -> Double in
                                  let yi = Int(y)
                                  return (0..<5).filter { $0 != yi }.reduce(0.0) {
                                      $0 + a[2][yi] * Foundation.pow(Swift.max(0, 1 - x[yi] + x[$1]), Double(p)) } / 5 }, r) }))
    }
    cases.append(LossCase(name: "multilabel_soft_margin_loss(weight)", inputs: [([3, 4], x12), ([3, 4], y01), ([4], pw4)],
                          kiln: { try multiLabelSoftMarginLoss(input: $0[0], targets: $0[1], weight: $0[2], reduction: $1) },
                          oracle: { a, r in reduce((0..<3).map { (i: Int) -> Double in
                              -(0..<4).reduce(0.0) { s, c in
                                  let x = a[0][i * 4 + c], y = a[1][i * 4 + c]
                                  return s + a[2][c] * (y * Foundation.log(sigmoid(x)) + (1 - y) * Foundation.log(sigmoid(-x))) } / 4 }, r) }))
    let binary: [(String, ([Tensor], LossReduction) throws -> Tensor, (Double, Double) -> Double)] = [
        ("soft_margin_loss", { try softMarginLoss(input: $0[0], targets: $0[1], reduction: $1) }, { (x: Double, y: Double) -> Double in softplus(-x * y) }),
        ("hinge_loss", { try hingeLoss(scores: $0[0], targets: $0[1], reduction: $1) }, { (x: Double, y: Double) -> Double in Swift.max(0, 1 - x * y) }),
        ("squared_hinge_loss", { try squaredHingeLoss(scores: $0[0], targets: $0[1], reduction: $1) }, { (x: Double, y: Double) -> Double in Foundation.pow(Swift.max(0, 1 - x * y), 2) }),
        ("exponential_loss", { try exponentialLoss(scores: $0[0], targets: $0[1], reduction: $1) }, { (x: Double, y: Double) -> Double in Foundation.exp(-x * y) }),
        ("hinge_embedding_loss", { try hingeEmbeddingLoss(input: $0[0], targets: $0[1], margin: 1.5, reduction: $1) }, { (x: Double, y: Double) -> Double in y == 1 ? x : Swift.max(0, 1.5 - x) }),
    ]
    for (name, kiln, o) in binary {
        cases.append(LossCase(name: name, inputs: [([3, 4], x12), ([3, 4], pm12)], kiln: kiln,
                              oracle: { reduce(elementwise($0[0], $0[1], o), $1) }))
    }
    cases.append(LossCase(name: "weighted_hinge_loss", inputs: [([3, 4], x12), ([3, 4], pm12), ([3, 4], sw)],
                          kiln: { try hingeLoss(scores: $0[0], targets: $0[1], weight: $0[2], reduction: $1) },
                          oracle: { a, r in reduce((0..<12).map { a[2][$0] * Swift.max(0, 1 - a[0][$0] * a[1][$0]) }, r) }))
    let regression: [(String, ([Tensor], LossReduction) throws -> Tensor, (Double, Double) -> Double)] = [
        ("log_cosh_loss", { try logCoshLoss(input: $0[0], targets: $0[1], reduction: $1) }, { (x: Double, y: Double) -> Double in Foundation.log(Foundation.cosh(x - y)) }),
        ("quantile_loss(τ=0.8)", { try quantileLoss(input: $0[0], targets: $0[1], quantile: 0.8, reduction: $1) }, { (x: Double, y: Double) -> Double in Swift.max(0.8 * (y - x), -0.2 * (y - x)) }),
        ("wing_loss(w=1, ε=0.5)", { try wingLoss(input: $0[0], targets: $0[1], width: 1, curvature: 0.5, reduction: $1) },
         { (x: Double, y: Double) -> Double in let e = Swift.abs(x - y); return e < 1 ? Foundation.log(1 + e / 0.5) : e - (1 - Foundation.log(1 + 1 / 0.5)) }),
        ("correntropy_loss(σ=0.8)", { try correntropyLoss(input: $0[0], targets: $0[1], sigma: 0.8, reduction: $1) }, { (x: Double, y: Double) -> Double in 1 - Foundation.exp(-(x - y) * (x - y) / (2 * 0.64)) }),
        ("poisson_nll_loss(logInput)", { try poissonNLLLoss(input: $0[0], targets: $0[1], reduction: $1) }, { (x: Double, y: Double) -> Double in Foundation.exp(x) - y * x }),
        ("student_t_nll(ν=3)", { try studentTNLLLoss(input: $0[0], targets: $0[1], degreesOfFreedom: 3, reduction: $1) },
         { (x: Double, y: Double) -> Double in -(Foundation.lgamma(2) - Foundation.lgamma(1.5) - 0.5 * Foundation.log(3 * Double.pi) - 2 * Foundation.log(1 + (y - x) * (y - x) / 3)) }),
        ("tweedie_loss(p=1.5)", { try tweedieLoss(input: $0[0], targets: $0[1], power: 1.5, reduction: $1) },
         { (x: Double, y: Double) -> Double in let mu = Foundation.exp(x); return -y * Foundation.pow(mu, -0.5) / -0.5 + Foundation.pow(mu, 0.5) / 0.5 }),
    ]
    let yPos = f(12, 17, 0...4)
    for (name, kiln, o) in regression {
        cases.append(LossCase(name: name, inputs: [([3, 4], x12), ([3, 4], name.hasPrefix("poisson") || name.hasPrefix("tweedie") ? yPos : y12)],
                              kiln: kiln, oracle: { reduce(elementwise($0[0], $0[1], o), $1) }))
    }
    cases.append(LossCase(name: "poisson_nll_loss(rate, full)", inputs: [([3, 4], f(12, 18, 0.2...3)), ([3, 4], yPos)],
                          kiln: { try poissonNLLLoss(input: $0[0], targets: $0[1], logInput: false, full: true, reduction: $1) },
                          oracle: { reduce(elementwise($0[0], $0[1]) { x, y in
                              x - y * Foundation.log(x + 1e-8) + (y > 1 ? y * Foundation.log(y) - y + 0.5 * Foundation.log(2 * Double.pi * y) : 0) }, $1) }))
    cases.append(LossCase(name: "gaussian_nll_loss(full)", inputs: [([3, 4], x12), ([3, 4], y12), ([3], f(3, 19, 0.3...2))],
                          kiln: { try gaussianNLLLoss(input: $0[0], targets: $0[1], variance: $0[2], full: true, reduction: $1) },
                          oracle: { a, r in reduce((0..<12).map { (i: Int) -> Double in
                              let v = a[2][i / 4], e = a[0][i] - a[1][i]
                              return 0.5 * (Foundation.log(v) + e * e / v + Foundation.log(2 * Double.pi)) }, r) }))
    cases.append(LossCase(name: "sequence_mse_loss", inputs: [([2, 3, 2], x12), ([2, 3, 2], y12)],
                          kiln: { try sequenceMSELoss(input: $0[0], targets: $0[1], reduction: $1) },
                          oracle: { a, r in reduce((0..<2).map { (n: Int) -> Double in
                              (0..<6).reduce(0.0) { let e = a[0][n * 6 + $1] - a[1][n * 6 + $1]; return $0 + e * e } / 3 }, r) }))
    return cases
}()

@Suite("Losses")
struct LossTests {
    @Test("every loss matches its Float64 oracle for each reduction, and its gradient",
          arguments: TestBackend.all, lossCases + moreLossCases)
    func oracle(backend: TestBackend, c: LossCase) throws {
        let b = backend.backend
        let tensors = try c.inputs.map { try Tensor($0.values, shape: $0.shape, on: b) }
        let doubles = c.inputs.map { $0.values.map(Double.init) }
        for r in c.reductions {
            let got = try c.kiln(tensors, r).scalars()
            let want = c.oracle(doubles, r)
            let m = mismatch(got, want, tolerance: Tolerance(absolute: 2e-5, relative: 2e-4))
            #expect(m == nil, "\(c.name) \(r) on \(backend): \(m ?? "")")
        }
        guard c.checkGradient else { return }
        for r in [LossReduction.mean, .sum] {
            var args = tensors
            args[0] = tensors[0].requiringGradient()
            try c.kiln(args, r).backward()
            let grad = try #require(args[0].gradient).scalars()
            var fd = [Double]()
            for i in doubles[0].indices {
                let h = 1e-6 * Swift.max(1, Swift.abs(doubles[0][i]))
                var plus = doubles, minus = doubles
                plus[0][i] += h
                minus[0][i] -= h
                fd.append((c.oracle(plus, r)[0] - c.oracle(minus, r)[0]) / (2 * h))
            }
            let m = mismatch(grad, fd, tolerance: Tolerance(absolute: 1e-4, relative: 1e-3))
            #expect(m == nil, "\(c.name) gradient (\(r)) on \(backend): \(m ?? "")")
        }
    }

    @Test("fused cross-entropy is exact and has finite softmax − onehot gradients for logits of ±1e4",
          arguments: TestBackend.all)
    func crossEntropyStability(backend: TestBackend) throws {
        #expect(TestBackend.openCLProblem == nil, "\(TestBackend.openCLProblem ?? "")")
        let values: [Float] = [1e4, -1e4, 0, -1e4, 1e4, 9990, 5, -5, -1e4]
        let z = try Tensor(values, shape: [3, 3], on: backend.backend).requiringGradient()
        let t = try Tensor([1, 0, 2], on: backend.backend)
        let loss = try crossEntropy(logits: z, targets: t, reduction: .none)
        let want = ceOracle(values.map(Double.init), [1, 0, 2], c: 3, .none)
        let got = try loss.scalars()
        #expect(mismatch(got, want, tolerance: .reduction) == nil, "\(got) vs \(want)")
        try loss.sum().backward()
        let grad = try #require(z.gradient).scalars()
        var expected = [Double]()
        for (i, row) in rows(values.map(Double.init), 3).enumerated() {
            let s = row.map { Foundation.exp($0 - lse(row)) }
            expected += s.enumerated().map { $0.element - ($0.offset == [1, 0, 2][i] ? 1 : 0) }
        }
        #expect(grad.allSatisfy { $0.isFinite })
        // lse of a row near 1e4 is rounded to Float32's spacing there (9.8e-4), so e^(z − lse) is
        // good to about 5e-4 absolute.
        let g = mismatch(grad, expected, tolerance: Tolerance(absolute: 6e-4, relative: 1e-5))
        #expect(g == nil, "\(g ?? "")")
        // With logits the stable BCE gives |x| for a wrong sign and 0 for the right one.
        let x = try Tensor([1e4, -1e4, 1e4, -1e4], on: backend.backend)
        let y = try Tensor([0, 1, 1, 0], on: backend.backend)
        let bce = try binaryCrossEntropyWithLogits(logits: x, targets: y, reduction: .none).scalars()
        #expect(mismatch(bce, [1e4, 1e4, 0, 0], tolerance: .elementwise) == nil, "\(bce)")
    }

    @Test("bad shapes, targets and hyperparameters throw TensorError naming the loss")
    func errors() throws {
        let b = CPUBackend.shared
        let z = try Tensor.zeros([2, 3], on: b)
        func expectOp(_ op: String, _ body: () throws -> Tensor) {
            do { _ = try body(); Issue.record("\(op) did not throw") } catch let e as TensorError {
                #expect(e.op == op, "\(e)")
            } catch { Issue.record("\(op) threw \(error)") }
        }
        expectOp("crossEntropy") { try crossEntropy(logits: z, targets: Tensor([0, 3], on: b)) }
        expectOp("crossEntropy") { try crossEntropy(logits: z, targets: Tensor([0, 0.5], on: b)) }
        expectOp("crossEntropy") { try crossEntropy(logits: z, targets: Tensor([0], on: b)) }
        expectOp("crossEntropy") { try crossEntropy(logits: z, targets: Tensor([0, 1], on: b), labelSmoothing: 1.5) }
        expectOp("crossEntropy") { try crossEntropy(logits: z, targets: Tensor([0, 1], on: b), weight: Tensor([1, 2], on: b)) }
        expectOp("mseLoss") { try mseLoss(input: z, targets: Tensor.zeros([3, 2], on: b)) }
        expectOp("huberLoss") { try huberLoss(input: z, targets: z, delta: 0) }
        expectOp("smoothL1Loss") { try smoothL1Loss(input: z, targets: z, beta: -1) }
        expectOp("multiMarginLoss") { try multiMarginLoss(input: z, targets: Tensor([0, 1], on: b), p: 3) }
        expectOp("tripletMarginLoss") { try tripletMarginLoss(anchor: z, positive: z, negative: z, margin: 0) }
        expectOp("infoNCELoss") { try infoNCELoss(query: z, positiveKeys: z, temperature: 0) }
        expectOp("gaussianNLLLoss") { try gaussianNLLLoss(input: z, targets: z, variance: Tensor.full([2, 3], value: -1, on: b)) }
        expectOp("tweedieLoss") { try tweedieLoss(input: z, targets: z, power: 2.5) }
    }
}
