import Foundation
import Kiln
import KilnTestSupport
import Testing

// `yoloLoss` against a Float64 oracle written with explicit loops from Redmon et al. (2016), eq. 3,
// with the prediction gradient checked against a central finite difference of the oracle.

/// One YOLO case: layout `[n, s, s, b·5 + c]`, predictions, targets and the responsibility mask.
private struct YOLOCase: CustomStringConvertible, Sendable {
    let name: String
    let n: Int, s: Int, b: Int, c: Int
    let predictions: [Float]
    let targets: [Float]
    let mask: [Float]
    /// Pass the mask explicitly (else `yoloLoss` derives it from the targets' confidences).
    let explicitMask: Bool
    var description: String { name }
    var shape: [Int] { [n, s, s, b * 5 + c] }

    /// Random predictions (w, h ≥ 0.05 so the ε clamp is inactive); about half the cells hold an
    /// object, assigned to a random box slot with a random box and a one-hot class.
    init(name: String, n: Int, s: Int, b: Int = 2, c: Int = 3, seed: UInt64, explicitMask: Bool) {
        self.name = name
        (self.n, self.s, self.b, self.c, self.explicitMask) = (n, s, b, c, explicitMask)
        let channels = b * 5 + c, cells = n * s * s
        var p = testValues(cells * channels, seed: seed, range: 0.05...1)
        // Confidences anywhere in [0, 1] and a few negative x offsets for variety.
        let conf = testValues(cells * b, seed: seed + 1, range: 0...1)
        for cell in 0..<cells { for j in 0..<b { p[cell * channels + j * 5 + 4] = conf[cell * b + j] } }
        p[0] = -0.3
        let choice = testValues(cells * 2, seed: seed + 2, range: 0...0.999)
        let boxValues = testValues(cells * 4, seed: seed + 3, range: 0.05...1)
        var t = [Float](repeating: 0, count: cells * channels)
        var m = [Float](repeating: 0, count: cells * b)
        for cell in 0..<cells where choice[2 * cell] < 0.5 {
            let j = Int(choice[2 * cell + 1] * Float(b))
            for k in 0..<4 { t[cell * channels + j * 5 + k] = boxValues[cell * 4 + k] }
            t[cell * channels + j * 5 + 4] = 1
            t[cell * channels + b * 5 + (cell % c)] = 1
            m[cell * b + j] = 1
        }
        (predictions, targets, mask) = (p, t, m)
    }
}

/// The paper's formula, summed and divided by N; `eps` clamps w and h below the square roots.
private func yoloOracle(_ p: [Double], _ t: [Double], _ mask: [Double], n: Int, s: Int, b: Int, c: Int,
                        lambdaCoord: Double = 5, lambdaNoobj: Double = 0.5, eps: Double = 1e-6) -> Double {
    let channels = b * 5 + c
    var total = 0.0
    for image in 0..<n {
        for row in 0..<s {
            for column in 0..<s {
                let cell = (image * s + row) * s + column
                let base = cell * channels
                var cellHasObject = false
                for j in 0..<b {
                    let o = base + j * 5
                    let obj = mask[cell * b + j]
                    if obj == 1 { cellHasObject = true }
                    let dx = p[o] - t[o], dy = p[o + 1] - t[o + 1]
                    let dw = Foundation.sqrt(Swift.max(p[o + 2], eps)) - Foundation.sqrt(Swift.max(t[o + 2], eps))
                    let dh = Foundation.sqrt(Swift.max(p[o + 3], eps)) - Foundation.sqrt(Swift.max(t[o + 3], eps))
                    let dc = p[o + 4] - t[o + 4]
                    total += lambdaCoord * obj * (dx * dx + dy * dy + dw * dw + dh * dh)
                    total += obj * dc * dc
                    total += lambdaNoobj * (1 - obj) * dc * dc
                }
                if cellHasObject {
                    for k in 0..<c {
                        let d = p[base + b * 5 + k] - t[base + b * 5 + k]
                        total += d * d
                    }
                }
            }
        }
    }
    return total / Double(n)
}

private let yoloCases: [YOLOCase] = [
    YOLOCase(name: "N=2, S=2, explicit mask", n: 2, s: 2, seed: 7001, explicitMask: true),
    YOLOCase(name: "N=2, S=3, mask from target confidences", n: 2, s: 3, seed: 7101, explicitMask: false),
]

@Suite("YOLO loss")
struct YOLOLossTests {
    private func loss(_ c: YOLOCase, _ x: Tensor, on backend: any Backend) throws -> Tensor {
        let t = try Tensor(c.targets, shape: c.shape, on: backend)
        let m: Tensor? = c.explicitMask ? try Tensor(c.mask, shape: [c.n, c.s, c.s, c.b], on: backend) : nil
        return try yoloLoss(predictions: x, targets: t, responsible: m, boxes: c.b, classes: c.c)
    }

    @Test("matches the Float64 oracle, and its gradient a central difference of the oracle",
          arguments: TestBackend.all, yoloCases)
    fileprivate func oracle(backend: TestBackend, c: YOLOCase) throws {
        #expect(TestBackend.openCLProblem == nil, "\(TestBackend.openCLProblem ?? "")")
        let b = backend.backend
        #expect(c.mask.contains(1) && c.mask.contains(0), "case \(c.name) should mix cells with and without objects")
        let p = c.predictions.map(Double.init), t = c.targets.map(Double.init), m = c.mask.map(Double.init)
        let f: ([Double]) -> Double = { yoloOracle($0, t, m, n: c.n, s: c.s, b: c.b, c: c.c) }

        let x = try Tensor(c.predictions, shape: c.shape, on: b).requiringGradient()
        let value = try loss(c, x, on: b)
        #expect(value.shape == [])
        let got = try value.scalars()
        let fm = mismatch(got, [f(p)], tolerance: Tolerance(absolute: 2e-5, relative: 2e-4))
        #expect(fm == nil, "\(c.name) on \(backend): \(fm ?? "")")

        try value.backward()
        let grad = try #require(x.gradient).scalars()
        var fd = [Double]()
        for i in p.indices {
            let h = 1e-6 * Swift.max(1, Swift.abs(p[i]))
            var plus = p, minus = p
            plus[i] += h
            minus[i] -= h
            fd.append((f(plus) - f(minus)) / (2 * h))
        }
        let gm = mismatch(grad, fd, tolerance: Tolerance(absolute: 1e-4, relative: 1e-3))
        #expect(gm == nil, "\(c.name) gradient on \(backend): \(gm ?? "")")
    }

    @Test("hyperparameters: λ weights scale their terms, and an explicit mask equals the derived one",
          arguments: TestBackend.all)
    func weights(backend: TestBackend) throws {
        let b = backend.backend
        let c = yoloCases[0]
        let p = try Tensor(c.predictions, shape: c.shape, on: b)
        let t = try Tensor(c.targets, shape: c.shape, on: b)
        let m = try Tensor(c.mask, shape: [c.n, c.s, c.s, c.b], on: b)
        let got = try yoloLoss(predictions: p, targets: t, responsible: m, boxes: c.b, classes: c.c,
                               coordinateWeight: 2, noObjectWeight: 0.25).scalars()
        let want = yoloOracle(c.predictions.map(Double.init), c.targets.map(Double.init), c.mask.map(Double.init),
                              n: c.n, s: c.s, b: c.b, c: c.c, lambdaCoord: 2, lambdaNoobj: 0.25)
        #expect(mismatch(got, [want], tolerance: Tolerance(absolute: 2e-5, relative: 2e-4)) == nil, "\(got) vs \(want)")
        let derived = try yoloLoss(predictions: p, targets: t, boxes: c.b, classes: c.c).scalars()
        let explicit = try yoloLoss(predictions: p, targets: t, responsible: m, boxes: c.b, classes: c.c).scalars()
        #expect(mismatch(derived, explicit.map(Double.init), tolerance: Tolerance(absolute: 1e-6, relative: 1e-6)) == nil)
    }

    @Test("bad shapes, masks and hyperparameters throw TensorError naming yoloLoss")
    func errors() throws {
        let b = CPUBackend.shared
        let x = try Tensor.zeros([1, 2, 2, 13], on: b)
        let mask = try Tensor.zeros([1, 2, 2, 2], on: b)
        func expectOp(_ body: () throws -> Tensor) {
            do { _ = try body(); Issue.record("yoloLoss did not throw") } catch let e as TensorError {
                #expect(e.op == "yoloLoss", "\(e)")
            } catch { Issue.record("yoloLoss threw \(error)") }
        }
        // Channel count ≠ B·5 + C, wrong rank, empty batch, mismatched targets or mask.
        expectOp { try yoloLoss(predictions: x, targets: x, boxes: 2, classes: 2) }
        expectOp { try yoloLoss(predictions: Tensor.zeros([2, 2, 13], on: b), targets: Tensor.zeros([2, 2, 13], on: b),
                                boxes: 2, classes: 3) }
        expectOp { try yoloLoss(predictions: Tensor.zeros([0, 2, 2, 13], on: b), targets: Tensor.zeros([0, 2, 2, 13], on: b),
                                boxes: 2, classes: 3) }
        expectOp { try yoloLoss(predictions: x, targets: Tensor.zeros([1, 3, 3, 13], on: b), boxes: 2, classes: 3) }
        expectOp { try yoloLoss(predictions: x, targets: x, responsible: Tensor.zeros([1, 2, 2, 3], on: b), boxes: 2, classes: 3) }
        // Masks that are not 0/1 (explicit, or derived from target confidences).
        expectOp { try yoloLoss(predictions: x, targets: x, responsible: Tensor.full([1, 2, 2, 2], value: 0.5, on: b),
                                boxes: 2, classes: 3) }
        expectOp { try yoloLoss(predictions: x, targets: Tensor.full([1, 2, 2, 13], value: 0.7, on: b), boxes: 2, classes: 3) }
        // Hyperparameters.
        expectOp { try yoloLoss(predictions: x, targets: x, responsible: mask, boxes: 0, classes: 13) }
        expectOp { try yoloLoss(predictions: x, targets: x, responsible: mask, boxes: 2, classes: 3, coordinateWeight: -1) }
        expectOp { try yoloLoss(predictions: x, targets: x, responsible: mask, boxes: 2, classes: 3, noObjectWeight: .nan) }
        expectOp { try yoloLoss(predictions: x, targets: x, responsible: mask, boxes: 2, classes: 3, epsilon: 0) }
        // The valid call does not throw and gives 0 for equal predictions and targets.
        let zero = try yoloLoss(predictions: x, targets: x, responsible: mask, boxes: 2, classes: 3).scalars()
        #expect(zero == [0])
    }
}
