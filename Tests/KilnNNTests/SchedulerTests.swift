import Foundation
import Kiln
import Testing

// Learning-rate schedulers against Float64 closed forms written here from the published formulas
// (PyTorch's documentation, the SGDR, CLR, 1cycle and Transformer papers), PyTorch-known values,
// composition, state round trips and argument errors. ReduceLROnPlateau is in
// SchedulerTests+Plateau.swift.

// MARK: - Helpers

/// A test-only optimizer: no parameters; `step()` records the rate it ran with.
final class RateRecorder: Optimizer {
    let parameters: [Parameter] = []
    var learningRate: Double
    private(set) var stepCount = 0
    private(set) var usedRates: [Double] = []

    init(learningRate: Double) { self.learningRate = learningRate }

    func step() throws {
        stepCount += 1
        usedRates.append(learningRate)
    }

    func stateDictionary() throws -> OptimizerState {
        OptimizerState(scalars: ["lr": learningRate, "step": Double(stepCount)])
    }

    func loadStateDictionary(_ state: OptimizerState) throws {
        guard let lr = state.scalars["lr"], let step = state.scalars["step"] else {
            throw TensorError(.invalidArgument, op: "RateRecorder", "missing lr or step")
        }
        learningRate = lr
        stepCount = Int(step)
    }
}

/// PyTorch's loop for `epochs` epochs: `optimizer.step()`, then `scheduler.step()`. Returns the rate
/// each optimizer step ran with.
func trainRates(_ s: any LearningRateScheduler, _ o: RateRecorder, epochs: Int) throws -> [Double] {
    let first = o.usedRates.count
    for _ in 0..<epochs {
        try o.step()
        try s.step()
    }
    return Array(o.usedRates[first...])
}

/// |actual − expected(first + i)| ≤ atol + rtol·|expected| for every i; names the first epoch that fails.
func expectRates(_ actual: [Double], _ expected: (Int) -> Double, from first: Int = 0, rtol: Double = 1e-12,
                 atol: Double = 1e-15, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    for (i, a) in actual.enumerated() {
        let e = expected(first + i)
        if !(Swift.abs(a - e) <= atol + rtol * Swift.abs(e)) {
            Issue.record("\(what): epoch \(first + i): got \(a), expected \(e)", sourceLocation: sourceLocation)
            return
        }
    }
}

/// cos-annealing from `high` at fraction 0 to `low` at fraction 1 (the seeds' formula).
private func cosineOracle(_ low: Double, _ high: Double, _ t: Double, _ period: Double) -> Double {
    let c: Double = 1 + Foundation.cos(Double.pi * t / period)
    return low + 0.5 * (high - low) * c
}

// MARK: - Curves

/// A scheduler made on an optimizer of rate `base`, and the rate epoch t should run with.
struct CurveCase: CustomStringConvertible, Sendable {
    var name: String
    var base = 0.1
    var epochs = 120
    var make: @Sendable (any Optimizer) throws -> any ClosedFormScheduler
    var oracle: @Sendable (Int) -> Double
    var description: String { name }
}

let curveCases: [CurveCase] = [
    CurveCase(name: "ConstantLR factor 0.5 for 4 epochs", epochs: 10,
              make: { try ConstantLR(optimizer: $0, factor: 0.5, totalIters: 4) },
              oracle: { $0 < 4 ? 0.05 : 0.1 }),
    CurveCase(name: "ConstantLR defaults (1/3 for 5)", epochs: 10,
              make: { try ConstantLR(optimizer: $0) },
              oracle: { $0 < 5 ? 0.1 / 3 : 0.1 }),
    CurveCase(name: "ConstantLR.fixed", epochs: 10,
              make: { try ConstantLR.fixed($0) }, oracle: { _ in 0.1 }),
    CurveCase(name: "StepLR step 7 gamma 0.5",
              make: { try StepLR(optimizer: $0, stepSize: 7, gamma: 0.5) },
              oracle: { t in (0..<(t / 7)).reduce(0.1) { r, _ in r * 0.5 } }),
    CurveCase(name: "MultiStepLR [30, 80] gamma 0.1", base: 0.05,
              make: { try MultiStepLR(optimizer: $0, milestones: [30, 80]) },
              oracle: { t in 0.05 * Foundation.pow(0.1, Double([30, 80].filter { $0 <= t }.count)) }),
    CurveCase(name: "ExponentialLR gamma 0.95", epochs: 200,
              make: { try ExponentialLR(optimizer: $0, gamma: 0.95) },
              oracle: { t in 0.1 * Foundation.exp(Double(t) * Foundation.log(0.95)) }),
    CurveCase(name: "CosineAnnealingLR T 50 etaMin 0.001 (periodic past T)",
              make: { try CosineAnnealingLR(optimizer: $0, tMax: 50, etaMin: 0.001) },
              oracle: { t in cosineOracle(0.001, 0.1, Double(t), 50) }),
    CurveCase(name: "CosineAnnealingLR T 1", epochs: 6,
              make: { try CosineAnnealingLR(optimizer: $0, tMax: 1) },
              oracle: { t in t % 2 == 0 ? 0.1 : 0 }),
    CurveCase(name: "LinearLR warmup 0.5 to 1 over 4", base: 0.05, epochs: 10,
              make: { try LinearLR(optimizer: $0, startFactor: 0.5, totalIters: 4) },
              oracle: { t in t < 4 ? 0.05 * (0.5 + 0.5 * Double(t) / 4) : 0.05 }),
    CurveCase(name: "LinearLR cool-down 1 to 0.1 over 10", epochs: 20,
              make: { try LinearLR(optimizer: $0, startFactor: 1, endFactor: 0.1, totalIters: 10) },
              oracle: { t in 0.1 * (1 - 0.9 * Double(Swift.min(t, 10)) / 10) }),
    CurveCase(name: "LinearLR from 0 (seed warmup eta0 t/Tw)", epochs: 12,
              make: { try LinearLR(optimizer: $0, startFactor: 0, totalIters: 8) },
              oracle: { t in t < 8 ? 0.1 * Double(t) / 8 : 0.1 }),
    CurveCase(name: "CyclicLR triangular, step size 4",
              make: { try CyclicLR(optimizer: $0, baseLR: 0.001, maxLR: 0.006, stepSizeUp: 4) },
              oracle: { t in triangleOracle(t, 4, 0.001, 0.006) { _ in 1 } }),
    CurveCase(name: "CyclicLR triangular2, step size 5",
              make: { try CyclicLR(optimizer: $0, baseLR: 0.01, maxLR: 0.1, stepSizeUp: 5, mode: .triangular2) },
              oracle: { t in triangleOracle(t, 5, 0.01, 0.1) { c in 1 / Foundation.pow(2, Double(c - 1)) } }),
    CurveCase(name: "CyclicLR expRange gamma 0.99, step size 6",
              make: { try CyclicLR(optimizer: $0, baseLR: 0.01, maxLR: 0.1, stepSizeUp: 6, mode: .expRange, gamma: 0.99) },
              oracle: { t in
                  let ramp = triangleOracle(t, 6, 0, 1) { _ in 1 }
                  return 0.01 + 0.09 * ramp * Foundation.exp(Double(t) * Foundation.log(0.99))
              }),
    CurveCase(name: "CyclicLR up 3, down 5",
              make: { try CyclicLR(optimizer: $0, baseLR: 0.02, maxLR: 0.1, stepSizeUp: 3, stepSizeDown: 5) },
              oracle: { t in
                  let p = t % 8
                  return p <= 3 ? 0.02 + 0.08 * Double(p) / 3 : 0.1 - 0.08 * Double(p - 3) / 5
              }),
    CurveCase(name: "OneCycleLR cosine, 100 steps", epochs: 100,
              make: { try OneCycleLR(optimizer: $0, maxLR: 0.1, totalSteps: 100) },
              oracle: { t in
                  let initial = 0.1 / 25, lowest = 0.1 / 25 / 1e4
                  // Up over steps 0...29 (pctStart·T − 1), down over 29...99.
                  return t <= 29 ? cosineOracle(0.1, initial, Double(t), 29)
                                 : cosineOracle(lowest, 0.1, Double(t - 29), 70)
              }),
    CurveCase(name: "OneCycleLR linear, three phases, 100 steps", epochs: 100,
              make: { try OneCycleLR(optimizer: $0, maxLR: 1, totalSteps: 100, pctStart: 0.25,
                                     annealStrategy: .linear, divFactor: 10, finalDivFactor: 100, threePhase: true) },
              oracle: { t in
                  // Phases end at 24 (0.25·100 − 1), 48 (2·0.25·100 − 2) and 99.
                  let x = Double(t)
                  if t <= 24 { return 0.1 + 0.9 * x / 24 }
                  if t <= 48 { return 1 - 0.9 * (x - 24) / 24 }
                  return 0.1 - (0.1 - 0.001) * (x - 48) / 51
              }),
    CurveCase(name: "NoamLR d 512, warmup 4000", epochs: 12000,
              make: { try NoamLR(optimizer: $0, modelSize: 512) },
              oracle: { t in noamOracle(step: t + 1, d: 512, warmup: 4000, factor: 1) }),
    CurveCase(name: "NoamLR d 64, warmup 10, factor 2", epochs: 40,
              make: { try NoamLR(optimizer: $0, modelSize: 64, warmupSteps: 10, factor: 2) },
              oracle: { t in noamOracle(step: t + 1, d: 64, warmup: 10, factor: 2) }),
    CurveCase(name: "SGDR T0 10, Tmult 2, etaMin 0.001", epochs: 160,
              make: { try CosineAnnealingWarmRestarts(optimizer: $0, t0: 10, tMult: 2, etaMin: 0.001) },
              oracle: { t in sgdrOracle(t, t0: 10, tMult: 2, etaMin: 0.001, base: 0.1) }),
    CurveCase(name: "SGDR T0 7, Tmult 1", epochs: 50,
              make: { try CosineAnnealingWarmRestarts(optimizer: $0, t0: 7) },
              oracle: { t in sgdrOracle(t, t0: 7, tMult: 1, etaMin: 0, base: 0.1) }),
    CurveCase(name: "SGDR T0 1, Tmult 3", epochs: 50,
              make: { try CosineAnnealingWarmRestarts(optimizer: $0, t0: 1, tMult: 3) },
              oracle: { t in sgdrOracle(t, t0: 1, tMult: 3, etaMin: 0, base: 0.1) }),
    CurveCase(name: "LambdaLR 0.95^t",
              make: { try LambdaLR(optimizer: $0) { t in Foundation.pow(0.95, Double(t)) } },
              oracle: { t in 0.1 * Foundation.exp(Double(t) * Foundation.log(0.95)) }),
    CurveCase(name: "MultiplicativeLR 1 − 0.002k", epochs: 100,
              make: { try MultiplicativeLR(optimizer: $0) { k in 1 - 0.002 * Double(k) } },
              oracle: { t in (0..<t).reduce(0.1) { r, k in r * (1 - 0.002 * Double(k + 1)) } }),
    CurveCase(name: "SequentialLR ConstantLR(0.1, 2) then ExponentialLR(0.9) (PyTorch example)", base: 1, epochs: 30,
              make: { o in
                  try SequentialLR(schedulers: [ConstantLR(optimizer: o, factor: 0.1, totalIters: 2),
                                                ExponentialLR(optimizer: o, gamma: 0.9)], milestones: [2])
              },
              oracle: { t in t < 2 ? 0.1 : Foundation.exp(Double(t - 2) * Foundation.log(0.9)) }),
    CurveCase(name: "SequentialLR LinearLR, StepLR, cosine at [3, 10]", epochs: 60,
              make: { o in
                  try SequentialLR(schedulers: [LinearLR(optimizer: o, startFactor: 0.25, totalIters: 3),
                                                StepLR(optimizer: o, stepSize: 2, gamma: 0.5),
                                                CosineAnnealingLR(optimizer: o, tMax: 20)], milestones: [3, 10])
              },
              oracle: { t in
                  if t < 3 { return 0.1 * (0.25 + 0.75 * Double(t) / 3) }
                  if t < 10 { return 0.1 * Foundation.pow(0.5, Double((t - 3) / 2)) }
                  return cosineOracle(0, 0.1, Double(t - 10), 20)
              }),
    CurveCase(name: "ChainedScheduler ConstantLR(0.1, 2) × ExponentialLR(0.9) (PyTorch example)", base: 1, epochs: 30,
              make: { o in
                  try ChainedScheduler(schedulers: [ConstantLR(optimizer: o, factor: 0.1, totalIters: 2),
                                                    ExponentialLR(optimizer: o, gamma: 0.9)])
              },
              oracle: { t in (t < 2 ? 0.1 : 1) * Foundation.exp(Double(t) * Foundation.log(0.9)) }),
    CurveCase(name: "ChainedScheduler StepLR × cosine × LinearLR warmup", epochs: 60,
              make: { o in
                  try ChainedScheduler(schedulers: [StepLR(optimizer: o, stepSize: 15, gamma: 0.5),
                                                    CosineAnnealingLR(optimizer: o, tMax: 60),
                                                    LinearLR(optimizer: o, startFactor: 0.2, totalIters: 5)])
              },
              oracle: { t in
                  let step: Double = Foundation.pow(0.5, Double(t / 15))
                  let cosine: Double = cosineOracle(0, 1, Double(t), 60)
                  let warm: Double = t < 5 ? 0.2 + 0.8 * Double(t) / 5 : 1
                  return 0.1 * step * cosine * warm
              }),
    CurveCase(name: "linearWarmup 5 steps, then cosine T 20", epochs: 40,
              make: { o in try SequentialLR.linearWarmup(steps: 5, then: CosineAnnealingLR(optimizer: o, tMax: 20)) },
              oracle: { t in t < 5 ? 0.1 * Double(t) / 5 : cosineOracle(0, 0.1, Double(t - 5), 20) }),
    CurveCase(name: "linearWarmup 4 steps from 0.5, then CyclicLR", epochs: 30,
              make: { o in
                  try SequentialLR.linearWarmup(steps: 4, startFactor: 0.5,
                                                then: CyclicLR(optimizer: o, baseLR: 0.02, maxLR: 0.1, stepSizeUp: 3))
              },
              oracle: { t in t < 4 ? 0.02 * (0.5 + 0.5 * Double(t) / 4) : triangleOracle(t - 4, 3, 0.02, 0.1) { _ in 1 } }),
]

/// Smith's triangular policy: cycle = ⌊1 + t/(2s)⌋, x = |t/s − 2·cycle + 1|,
/// η = base + (max − base)·max(0, 1 − x)·scale(cycle).
private func triangleOracle(_ t: Int, _ s: Int, _ base: Double, _ max: Double, scale: (Int) -> Double) -> Double {
    let cycle = Int(Foundation.floor(1 + Double(t) / Double(2 * s)))
    let x: Double = Swift.abs(Double(t) / Double(s) - Double(2 * cycle) + 1)
    return base + (max - base) * Swift.max(0, 1 - x) * scale(cycle)
}

/// The Transformer paper: d^−0.5·min(step^−0.5, step·warmup^−1.5), times factor.
private func noamOracle(step: Int, d: Double, warmup: Double, factor: Double) -> Double {
    let s = Double(step)
    return factor * Foundation.pow(d, -0.5) * Swift.min(Foundation.pow(s, -0.5), s * Foundation.pow(warmup, -1.5))
}

/// SGDR by its update rule: T_cur += 1 each epoch; at T_cur = T_i, T_cur = 0 and T_i ·= T_mult.
private func sgdrOracle(_ t: Int, t0: Int, tMult: Int, etaMin: Double, base: Double) -> Double {
    var current = 0, length = t0
    for _ in 0..<t {
        current += 1
        if current >= length {
            current = 0
            length *= tMult
        }
    }
    return cosineOracle(etaMin, base, Double(current), Double(length))
}

@Suite("Learning-rate schedulers")
struct SchedulerTests {
    @Test("curve over many epochs matches the closed form; learningRate(at:) matches stepping", arguments: curveCases)
    func curve(_ c: CurveCase) throws {
        let o = RateRecorder(learningRate: c.base)
        let s = try c.make(o)
        #expect(s.lastEpoch == 0)
        let rates = try trainRates(s, o, epochs: c.epochs)
        #expect(rates.count == c.epochs)
        expectRates(rates, c.oracle, c.name)
        for (t, r) in rates.enumerated() where s.learningRate(at: t) != r {
            Issue.record("learningRate(at: \(t)) = \(s.learningRate(at: t)), stepping gave \(r)")
            break
        }
        #expect(s.lastEpoch == c.epochs)
        #expect(s.currentLearningRate == o.learningRate)
        #expect(s.currentLearningRate == s.learningRate(at: c.epochs))
    }

    @Test("StepLR(10, 0.1) from 0.1: 0.1 for epochs 0–9, 0.01 for 10–19, 0.001 for 20–29 (PyTorch)")
    func stepLRKnownValues() throws {
        let o = RateRecorder(learningRate: 0.1)
        let rates = try trainRates(StepLR(optimizer: o, stepSize: 10), o, epochs: 30)
        let expected = Array(repeating: 0.1, count: 10) + Array(repeating: 0.01, count: 10)
            + Array(repeating: 0.001, count: 10)
        expectRates(rates, { expected[$0] }, rtol: 1e-15, "StepLR")
    }

    @Test("LinearLR, SequentialLR and ChainedScheduler: PyTorch documentation values")
    func pytorchExamples() throws {
        var o = RateRecorder(learningRate: 0.05)
        let linear = try trainRates(LinearLR(optimizer: o, startFactor: 0.5, totalIters: 4), o, epochs: 6)
        expectRates(linear, { [0.025, 0.03125, 0.0375, 0.04375, 0.05, 0.05][$0] }, rtol: 1e-15, "LinearLR")

        o = RateRecorder(learningRate: 0.05)
        let multi = try trainRates(MultiStepLR(optimizer: o, milestones: [30, 80]), o, epochs: 100)
        expectRates(multi, { $0 < 30 ? 0.05 : $0 < 80 ? 0.005 : 0.0005 }, rtol: 1e-15, "MultiStepLR")

        o = RateRecorder(learningRate: 1)
        let sequential = try trainRates(SequentialLR(schedulers: [ConstantLR(optimizer: o, factor: 0.1, totalIters: 2),
                                                                  ExponentialLR(optimizer: o, gamma: 0.9)],
                                                     milestones: [2]), o, epochs: 5)
        expectRates(sequential, { [0.1, 0.1, 1, 0.9, 0.81][$0] }, rtol: 1e-15, "SequentialLR")

        o = RateRecorder(learningRate: 1)
        let chained = try trainRates(ChainedScheduler(schedulers: [ConstantLR(optimizer: o, factor: 0.1, totalIters: 2),
                                                                   ExponentialLR(optimizer: o, gamma: 0.9)]), o, epochs: 5)
        expectRates(chained, { [0.1, 0.09, 0.81, 0.729, 0.6561][$0] }, rtol: 1e-15, "ChainedScheduler")
    }

    @Test("cosine annealing: η₀ at 0, (η₀+η_min)/2 at T/2, η_min at T, η₀ again at 2T")
    func cosineLandmarks() throws {
        let o = RateRecorder(learningRate: 0.2)
        let s = try CosineAnnealingLR(optimizer: o, tMax: 40, etaMin: 0.02)
        #expect(s.learningRate(at: 0) == 0.2)
        #expect(Swift.abs(s.learningRate(at: 20) - 0.11) < 1e-15)
        #expect(Swift.abs(s.learningRate(at: 40) - 0.02) < 1e-15)
        #expect(Swift.abs(s.learningRate(at: 80) - 0.2) < 1e-15)
        let rates = try trainRates(s, o, epochs: 41)
        #expect(zip(rates, rates.dropFirst()).allSatisfy { $0 > $1 }, "not strictly decreasing over 0...T")
    }

    @Test("Noam: rises to its peak d^-0.5·warmup^-0.5 at optimizer step = warmup, then decays as step^-0.5")
    func noamPeak() throws {
        for (d, warmup) in [(512, 4000), (64, 10), (1, 1)] {
            let o = RateRecorder(learningRate: 123)  // ignored: Noam sets the rate outright
            let s = try NoamLR(optimizer: o, modelSize: d, warmupSteps: warmup)
            let rates = try trainRates(s, o, epochs: 3 * warmup + 5)
            let peak = Foundation.pow(Double(d), -0.5) * Foundation.pow(Double(warmup), -0.5)
            // rates[k − 1] is the rate of optimizer step k.
            let top = rates.indices.max { rates[$0] < rates[$1] }!
            #expect(top == warmup - 1, "d \(d) warmup \(warmup): peak at optimizer step \(top + 1)")
            #expect(Swift.abs(rates[warmup - 1] - peak) <= 1e-15 * peak, "d \(d): peak \(rates[warmup - 1]), expected \(peak)")
            let first = Foundation.pow(Double(d), -0.5) * Foundation.pow(Double(warmup), -1.5)
            #expect(Swift.abs(rates[0] - first) <= 1e-15 * first, "the first step runs with step 1's rate, not 0 or ∞")
            let k = 3 * warmup  // decay phase: η(k)·√k is constant
            #expect(Swift.abs(rates[k - 1] * Double(k).squareRoot() - peak * Double(warmup).squareRoot()) <= 1e-14)
        }
        let defaults = try NoamLR(optimizer: RateRecorder(learningRate: 1), modelSize: 512)
        #expect(defaults.warmupSteps == 4000)
    }

    @Test("SGDR restarts at T0, T0 + T0·Tmult, ... and reaches η_min just before each")
    func sgdrRestarts() throws {
        let o = RateRecorder(learningRate: 0.1)
        let s = try CosineAnnealingWarmRestarts(optimizer: o, t0: 10, tMult: 2, etaMin: 0.001)
        let rates = try trainRates(s, o, epochs: 151)
        let restarts = [0, 10, 30, 70, 150]
        for r in restarts { #expect(Swift.abs(rates[r] - 0.1) < 1e-16, "epoch \(r) should restart at η₀, got \(rates[r])") }
        for (start, end) in zip(restarts, restarts.dropFirst()) {
            let cycle = Array(rates[start..<end])
            #expect(zip(cycle, cycle.dropFirst()).allSatisfy { $0 > $1 }, "cycle \(start)..<\(end) not decreasing")
            // The last epoch of a cycle of length L is at T_cur = L − 1, just above η_min.
            let length = Double(end - start)
            let expected = 0.001 + 0.0495 * (1 + Foundation.cos(Double.pi * (length - 1) / length))
            #expect(Swift.abs(cycle.last! - expected) < 1e-15)
        }
        let plain = try CosineAnnealingWarmRestarts(optimizer: RateRecorder(learningRate: 1), t0: 5)
        #expect((0..<4).allSatisfy { plain.learningRate(at: 5 * $0) == 1 })
        #expect(plain.learningRate(at: 1_000_000_000_000_000_000) == 1)
        let huge = try CosineAnnealingWarmRestarts(optimizer: RateRecorder(learningRate: 1), t0: 3, tMult: 1000)
        #expect(huge.learningRate(at: Int.max).isFinite)
    }

    @Test("CyclicLR and OneCycleLR landmarks; OneCycleLR refuses to step past totalSteps")
    func cyclicLandmarks() throws {
        let c = try CyclicLR(optimizer: RateRecorder(learningRate: 5), baseLR: 0.001, maxLR: 0.006, stepSizeUp: 4)
        #expect(c.optimizer.learningRate == 0.001, "CyclicLR sets baseLR when made")
        for (t, expected) in [(2, 0.0035), (4, 0.006), (8, 0.001), (10, 0.0035), (12, 0.006)] {
            #expect(Swift.abs(c.learningRate(at: t) - expected) < 1e-17, "epoch \(t): \(c.learningRate(at: t))")
        }
        let c2 = try CyclicLR(optimizer: RateRecorder(learningRate: 5), baseLR: 0, maxLR: 1, stepSizeUp: 2,
                              mode: .triangular2)
        #expect([2, 6, 10, 14].map { c2.learningRate(at: $0) } == [1, 0.5, 0.25, 0.125])

        let o = RateRecorder(learningRate: 5)
        let one = try OneCycleLR(optimizer: o, maxLR: 0.1, totalSteps: 100)
        #expect(Swift.abs(o.learningRate - 0.004) < 1e-17, "OneCycleLR sets maxLR/divFactor when made")
        #expect(Swift.abs(one.learningRate(at: 29) - 0.1) < 1e-15)
        #expect(Swift.abs(one.learningRate(at: 99) - 4e-7) < 1e-18)
        _ = try trainRates(one, o, epochs: 100)
        #expect(one.lastEpoch == 100)
        #expect(one.currentLearningRate == one.learningRate(at: 99), "stays at the final rate after the last step")
        #expect(throws: TensorError.self) { try one.step() }
        #expect(one.lastEpoch == 100)
    }

    @Test("a scheduler made after another on one optimizer takes the optimizer's original rate as base")
    func sharedBase() throws {
        let o = RateRecorder(learningRate: 0.1)
        let warm = try LinearLR(optimizer: o, startFactor: 0.1)
        #expect(Swift.abs(o.learningRate - 0.01) < 1e-17)
        let decay = try ExponentialLR(optimizer: o, gamma: 0.9)
        #expect(warm.baseLearningRate == 0.1 && decay.baseLearningRate == 0.1)
        // A rate set by hand becomes the base of the next scheduler.
        o.learningRate = 0.5
        let next = try StepLR(optimizer: o, stepSize: 3)
        #expect(next.baseLearningRate == 0.5)
        // Another optimizer has its own base.
        let other = RateRecorder(learningRate: 7)
        #expect(try StepLR(optimizer: other, stepSize: 3).baseLearningRate == 7)
    }

    @Test("a rate that is not finite and ≥ 0 makes step() throw and changes nothing")
    func badRateFromClosure() throws {
        let o = RateRecorder(learningRate: 0.1)
        let s = try LambdaLR(optimizer: o) { t in t == 3 ? .nan : t == 5 ? -1 : 1 }
        try s.step()
        try s.step()
        #expect(throws: TensorError.self) { try s.step() }
        #expect(s.lastEpoch == 2 && o.learningRate == 0.1 && s.currentLearningRate == 0.1)
        let m = try MultiplicativeLR(optimizer: o) { t in t == 2 ? .infinity : 1 }
        try m.step()
        #expect(throws: TensorError.self) { try m.step() }
        #expect(m.lastEpoch == 1 && o.learningRate == 0.1)
    }
}
