import Foundation
import Kiln
import KilnTestSupport
import Testing

/// A CTC problem: logits `[T, N, C]` (log-softmax is taken inside), padded targets `[N, S]`.
struct CTCCase: CustomStringConvertible, Sendable {
    var name: String
    var steps: Int, batch: Int, classes: Int
    var targets: [[Int]]  // padded to one length S
    var inputLengths: [Int]
    var targetLengths: [Int]
    var blank: Int = 0
    var seed: UInt64
    var description: String { name }
    var width: Int { targets.first?.count ?? 0 }
    var logits: [Float] { testValues(steps * batch * classes, seed: seed, range: -2...2) }
}

let ctcCases: [CTCCase] = [
    CTCCase(name: "T4 N2 S2, a repeated label", steps: 4, batch: 2, classes: 3,
            targets: [[1, 2], [1, 1]], inputLengths: [4, 3], targetLengths: [2, 2], seed: 1),
    CTCCase(name: "T5 N4 S3, repeats, empty targets, input length 0", steps: 5, batch: 4, classes: 3,
            targets: [[1, 1, 2], [2, 1, 0], [0, 0, 0], [0, 0, 0]], inputLengths: [5, 4, 2, 0],
            targetLengths: [3, 2, 0, 0], seed: 2),
    CTCCase(name: "T3 N2 S3, one impossible target", steps: 3, batch: 2, classes: 3,
            targets: [[1, 1, 1], [2, 0, 0]], inputLengths: [3, 3], targetLengths: [3, 1], seed: 3),
    CTCCase(name: "T4 N1 S2, blank 2", steps: 4, batch: 1, classes: 3,
            targets: [[0, 1]], inputLengths: [4], targetLengths: [2], blank: 2, seed: 4),
    CTCCase(name: "T5 N2 S1, C2", steps: 5, batch: 2, classes: 2,
            targets: [[1], [1]], inputLengths: [5, 1], targetLengths: [1, 1], seed: 5),
]

/// Brute force in Float64: Σ over all C^Tₙ paths that collapse (merge repeats, drop blanks) to yₙ.
private func ctcOracle(_ c: CTCCase, logits z: [Double], reduction: LossReduction, zeroInfinity: Bool) -> [Double] {
    var losses = [Double]()
    for n in 0..<c.batch {
        let length = c.inputLengths[n]
        let y = Array(c.targets[n].prefix(c.targetLengths[n]))
        let lp: [[Double]] = (0..<length).map { t in
            let row = (0..<c.classes).map { z[(t * c.batch + n) * c.classes + $0] }
            let m = row.max() ?? 0
            let lse = m + Foundation.log(row.reduce(0) { $0 + Foundation.exp($1 - m) })
            return row.map { $0 - lse }
        }
        var total = 0.0
        let paths = Int(Foundation.pow(Double(c.classes), Double(length)))
        for code in 0..<paths {
            var rest = code
            var path = [Int]()
            for _ in 0..<length { path.append(rest % c.classes); rest /= c.classes }
            var collapsed = [Int]()
            var previous = -1
            for p in path {
                if p != previous && p != c.blank { collapsed.append(p) }
                previous = p
            }
            guard collapsed == y else { continue }
            total += Foundation.exp(path.enumerated().reduce(0.0) { $0 + lp[$1.offset][$1.element] })
        }
        var loss = -Foundation.log(total)  // +∞ when no path fits
        if zeroInfinity && loss.isInfinite { loss = 0 }
        losses.append(loss)
    }
    switch reduction {
    case .none: return losses
    case .sum: return [losses.reduce(0, +)]
    case .mean:
        let scaled = zip(losses, c.targetLengths).map { $0 / Double(Swift.max($1, 1)) }
        return [scaled.reduce(0, +) / Double(c.batch)]
    }
}

private func kilnCTC(_ c: CTCCase, _ logits: Tensor, _ r: LossReduction, zeroInfinity: Bool) throws -> Tensor {
    let lp: Tensor = try logSoftmax(logits, axis: 2)
    let flat: [Float] = c.targets.flatMap { $0.map(Float.init) }
    let targets = try Tensor(flat, shape: [c.batch, c.width], on: logits.backend)
    return try ctcLoss(logProbabilities: lp, targets: targets, inputLengths: c.inputLengths,
                       targetLengths: c.targetLengths, blank: c.blank, reduction: r, zeroInfinity: zeroInfinity)
}

@Suite("CTC loss")
struct CTCLossTests {
    @Test("ctcLoss matches a brute-force path enumeration for each reduction and zeroInfinity",
          arguments: TestBackend.all, ctcCases)
    func oracle(backend: TestBackend, c: CTCCase) throws {
        #expect(TestBackend.openCLProblem == nil, "\(TestBackend.openCLProblem ?? "")")
        let z = try Tensor(c.logits, shape: [c.steps, c.batch, c.classes], on: backend.backend)
        let doubles = c.logits.map(Double.init)
        for zeroInfinity in [false, true] {
            for r in LossReduction.allCases {
                let got = try kilnCTC(c, z, r, zeroInfinity: zeroInfinity).scalars()
                let want = ctcOracle(c, logits: doubles, reduction: r, zeroInfinity: zeroInfinity)
                let m = mismatch(got, want, tolerance: Tolerance(absolute: 2e-5, relative: 2e-5))
                #expect(m == nil, "\(c.name) \(r) zeroInfinity \(zeroInfinity) on \(backend): \(m ?? "") \(got) vs \(want)")
            }
        }
    }

    @Test("ctcLoss gradients match a Float64 central difference of the brute-force oracle",
          arguments: TestBackend.all, ctcCases)
    func gradient(backend: TestBackend, c: CTCCase) throws {
        let doubles = c.logits.map(Double.init)
        // An impossible target has a constant loss only with zeroInfinity.
        for r in [LossReduction.mean, .sum] {
            let z = try Tensor(c.logits, shape: [c.steps, c.batch, c.classes], on: backend.backend).requiringGradient()
            try kilnCTC(c, z, r, zeroInfinity: true).backward()
            let grad = try #require(z.gradient).scalars()
            var fd = [Double]()
            for i in doubles.indices {
                let h = 1e-5
                var plus = doubles, minus = doubles
                plus[i] += h
                minus[i] -= h
                let up = ctcOracle(c, logits: plus, reduction: r, zeroInfinity: true)[0]
                let down = ctcOracle(c, logits: minus, reduction: r, zeroInfinity: true)[0]
                fd.append((up - down) / (2 * h))
            }
            let m = mismatch(grad, fd, tolerance: Tolerance(absolute: 1e-4, relative: 1e-3))
            #expect(m == nil, "\(c.name) gradient (\(r)) on \(backend): \(m ?? "")")
            let finite = grad.allSatisfy { $0.isFinite }
            #expect(finite)
        }
    }

    @Test("a target the input is too short for gives +∞, or 0 with zeroInfinity", arguments: TestBackend.all)
    func impossible(backend: TestBackend) throws {
        let b = backend.backend
        let lp = try logSoftmax(Tensor(testValues(2 * 1 * 3, seed: 9), shape: [2, 1, 3], on: b), axis: 2)
        let targets = try Tensor([1, 1], shape: [1, 2], on: b)
        let inf = try ctcLoss(logProbabilities: lp, targets: targets, inputLengths: [2], targetLengths: [2],
                              reduction: .none).scalars()
        #expect(inf == [.infinity])
        let zero = try ctcLoss(logProbabilities: lp, targets: targets, inputLengths: [2], targetLengths: [2],
                               reduction: .sum, zeroInfinity: true).scalars()
        #expect(zero == [0])
    }

    @Test("ctcLoss rejects bad shapes, lengths, blank and targets, naming itself")
    func validation() throws {
        let b = CPUBackend.shared
        let lp = try logSoftmax(Tensor(testValues(3 * 2 * 3, seed: 7), shape: [3, 2, 3], on: b), axis: 2)
        let targets = try Tensor([1, 2, 2, 0], shape: [2, 2], on: b)
        func rejects(_ body: () throws -> Tensor) {
            do {
                _ = try body()
                Issue.record("expected a TensorError")
            } catch let e as TensorError {
                #expect(e.op == "ctcLoss", "\(e)")
            } catch {
                Issue.record("unexpected error \(error)")
            }
        }
        let flat: Tensor = try lp.reshaped(to: [6, 3])
        rejects { try ctcLoss(logProbabilities: flat, targets: targets, inputLengths: [3, 3], targetLengths: [2, 1]) }
        rejects { try ctcLoss(logProbabilities: lp, targets: targets.reshaped(to: [4]), inputLengths: [3, 3], targetLengths: [2, 1]) }
        rejects { try ctcLoss(logProbabilities: lp, targets: targets, inputLengths: [3], targetLengths: [2, 1]) }
        rejects { try ctcLoss(logProbabilities: lp, targets: targets, inputLengths: [4, 3], targetLengths: [2, 1]) }
        rejects { try ctcLoss(logProbabilities: lp, targets: targets, inputLengths: [-1, 3], targetLengths: [2, 1]) }
        rejects { try ctcLoss(logProbabilities: lp, targets: targets, inputLengths: [3, 3], targetLengths: [3, 1]) }
        rejects { try ctcLoss(logProbabilities: lp, targets: targets, inputLengths: [3, 3], targetLengths: [2, 2]) }  // blank
        rejects { try ctcLoss(logProbabilities: lp, targets: targets, inputLengths: [3, 3], targetLengths: [2, 1], blank: 3) }
        rejects { try ctcLoss(logProbabilities: lp, targets: targets, inputLengths: [3, 3], targetLengths: [2, 1], blank: 2) }
        let fractional = try Tensor([1.5, 2, 2, 0], shape: [2, 2], on: b)
        rejects { try ctcLoss(logProbabilities: lp, targets: fractional, inputLengths: [3, 3], targetLengths: [2, 1]) }
        let outOfRange = try Tensor([1, 3, 2, 0], shape: [2, 2], on: b)
        rejects { try ctcLoss(logProbabilities: lp, targets: outOfRange, inputLengths: [3, 3], targetLengths: [2, 1]) }
        // The padding past a target length is not checked.
        let padded = try Tensor([1, 2, 2, 7], shape: [2, 2], on: b)
        #expect(throws: Never.self) {
            _ = try ctcLoss(logProbabilities: lp, targets: padded, inputLengths: [3, 3], targetLengths: [2, 1])
        }
    }
}
