import Foundation
import Kiln
import Testing

// ReduceLROnPlateau on scripted metric sequences, state round trips and argument errors. The
// helpers and the curve cases are in SchedulerTests.swift.

/// Steps `s` once per metric; returns the optimizer's rate after each step.
private func ratesAfter(_ s: ReduceLROnPlateau, _ metrics: [Double]) -> [Double] {
    metrics.map { m in
        s.step(metric: m)
        return s.optimizer.learningRate
    }
}

/// A plateau scenario: settings, the metric script, and the rate after each step worked out by hand
/// from PyTorch's rule.
struct PlateauCase: CustomStringConvertible, Sendable {
    var name: String
    var base: Double
    var make: @Sendable (any Optimizer) throws -> ReduceLROnPlateau
    var metrics: [Double]
    var expected: [Double]
    var description: String { name }
}

let plateauCases: [PlateauCase] = [
    // 8.9995 is not below 9·(1 − 1e-4) = 8.9991; 8.999 is.
    PlateauCase(name: "min, relative threshold 1e-4, patience 2", base: 1,
                make: { try ReduceLROnPlateau(optimizer: $0, factor: 0.5, patience: 2) },
                metrics: [10, 9, 8.9995, 9, 9, 9, 9, 9, 8.999, 8.999],
                expected: [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]),
    PlateauCase(name: "defaults: factor 0.1 after 11 bad epochs (patience 10)", base: 0.1,
                make: { try ReduceLROnPlateau(optimizer: $0) },
                metrics: Array(repeating: 1, count: 23),
                expected: Array(repeating: 0.1, count: 11) + Array(repeating: 0.01, count: 11) + [0.001]),
    PlateauCase(name: "cooldown 2: bad epochs are not counted for 2 epochs after a cut", base: 1,
                make: { try ReduceLROnPlateau(optimizer: $0, patience: 1, cooldown: 2) },
                metrics: Array(repeating: 5, count: 11),
                expected: [1, 1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.001]),
    PlateauCase(name: "no cooldown: a cut every patience + 1 bad epochs", base: 1,
                make: { try ReduceLROnPlateau(optimizer: $0, patience: 1) },
                metrics: Array(repeating: 5, count: 11),
                expected: [1, 1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001, 1e-4, 1e-4, 1e-5]),
    PlateauCase(name: "minLR 0.3 is a floor", base: 1,
                make: { try ReduceLROnPlateau(optimizer: $0, factor: 0.5, patience: 0, minLR: 0.3) },
                metrics: [1, 1, 1, 1, 1],
                expected: [1, 0.5, 0.3, 0.3, 0.3]),
    PlateauCase(name: "a cut of no more than eps is skipped (eps 1e-7)", base: 1e-7,
                make: { try ReduceLROnPlateau(optimizer: $0, factor: 0.5, patience: 0, eps: 1e-7) },
                metrics: [4, 4, 4, 4],
                expected: [1e-7, 1e-7, 1e-7, 1e-7]),
    PlateauCase(name: "default eps 1e-8: cuts until one would be ≤ 1e-8", base: 1e-7,
                make: { try ReduceLROnPlateau(optimizer: $0, factor: 0.5, patience: 0) },
                metrics: [4, 4, 4, 4, 4],
                expected: [1e-7, 5e-8, 2.5e-8, 1.25e-8, 1.25e-8]),
    PlateauCase(name: "max, absolute threshold 0.01, patience 1", base: 0.2,
                make: { try ReduceLROnPlateau(optimizer: $0, mode: .max, factor: 0.5, patience: 1, threshold: 0.01,
                                              thresholdMode: .absolute) },
                metrics: [0.5, 0.505, 0.52, 0.525, 0.528, 0.6],
                expected: [0.2, 0.2, 0.2, 0.2, 0.1, 0.1]),
    PlateauCase(name: "max, relative threshold 0.1, patience 0", base: 1,
                make: { try ReduceLROnPlateau(optimizer: $0, mode: .max, factor: 0.5, patience: 0, threshold: 0.1) },
                metrics: [1, 1.05, 1.2, 1.3],
                expected: [1, 0.5, 0.5, 0.25]),
    PlateauCase(name: "min, absolute threshold 0.5, patience 0", base: 1,
                make: { try ReduceLROnPlateau(optimizer: $0, factor: 0.5, patience: 0, threshold: 0.5,
                                              thresholdMode: .absolute) },
                metrics: [10, 9.6, 9.4, 9.0],
                expected: [1, 0.5, 0.5, 0.25]),
    PlateauCase(name: "NaN never improves", base: 1,
                make: { try ReduceLROnPlateau(optimizer: $0, patience: 0) },
                metrics: [1, .nan, 0.5, .nan],
                expected: [1, 0.1, 0.1, 0.01]),
]

/// Scheduler constructions that must throw, the op their error names, and a value it must mention.
struct SchedulerErrorCase: CustomStringConvertible, Sendable {
    var name: String
    var op: String
    var mentions: String
    var make: @Sendable (any Optimizer) throws -> Void
    var description: String { name }
}

let schedulerErrorCases: [SchedulerErrorCase] = [
    .init(name: "StepLR stepSize 0", op: "StepLR", mentions: "0") { _ = try StepLR(optimizer: $0, stepSize: 0) },
    .init(name: "StepLR stepSize -3", op: "StepLR", mentions: "-3") { _ = try StepLR(optimizer: $0, stepSize: -3) },
    .init(name: "StepLR gamma NaN", op: "StepLR", mentions: "nan") { _ = try StepLR(optimizer: $0, stepSize: 2, gamma: .nan) },
    .init(name: "StepLR gamma -0.5", op: "StepLR", mentions: "-0.5") { _ = try StepLR(optimizer: $0, stepSize: 2, gamma: -0.5) },
    .init(name: "StepLR gamma 0", op: "StepLR", mentions: "0.0") { _ = try StepLR(optimizer: $0, stepSize: 2, gamma: 0) },
    .init(name: "StepLR gamma inf", op: "StepLR", mentions: "inf") { _ = try StepLR(optimizer: $0, stepSize: 2, gamma: .infinity) },
    .init(name: "StepLR on an optimizer with rate NaN", op: "StepLR", mentions: "nan") { o in
        o.learningRate = .nan
        _ = try StepLR(optimizer: o, stepSize: 2)
    },
    .init(name: "MultiStepLR empty milestones", op: "MultiStepLR", mentions: "empty") {
        _ = try MultiStepLR(optimizer: $0, milestones: [])
    },
    .init(name: "MultiStepLR unsorted milestones", op: "MultiStepLR", mentions: "[5, 3]") {
        _ = try MultiStepLR(optimizer: $0, milestones: [5, 3])
    },
    .init(name: "MultiStepLR repeated milestone", op: "MultiStepLR", mentions: "[3, 3]") {
        _ = try MultiStepLR(optimizer: $0, milestones: [3, 3])
    },
    .init(name: "MultiStepLR milestone 0", op: "MultiStepLR", mentions: "[0, 4]") {
        _ = try MultiStepLR(optimizer: $0, milestones: [0, 4])
    },
    .init(name: "MultiStepLR gamma NaN", op: "MultiStepLR", mentions: "nan") {
        _ = try MultiStepLR(optimizer: $0, milestones: [2], gamma: .nan)
    },
    .init(name: "ExponentialLR gamma 0", op: "ExponentialLR", mentions: "0.0") { _ = try ExponentialLR(optimizer: $0, gamma: 0) },
    .init(name: "ExponentialLR gamma -1", op: "ExponentialLR", mentions: "-1") { _ = try ExponentialLR(optimizer: $0, gamma: -1) },
    .init(name: "ConstantLR factor 1.5", op: "ConstantLR", mentions: "1.5") { _ = try ConstantLR(optimizer: $0, factor: 1.5) },
    .init(name: "ConstantLR factor NaN", op: "ConstantLR", mentions: "nan") { _ = try ConstantLR(optimizer: $0, factor: .nan) },
    .init(name: "ConstantLR totalIters -1", op: "ConstantLR", mentions: "-1") { _ = try ConstantLR(optimizer: $0, totalIters: -1) },
    .init(name: "LinearLR startFactor 1.5", op: "LinearLR", mentions: "1.5") { _ = try LinearLR(optimizer: $0, startFactor: 1.5) },
    .init(name: "LinearLR endFactor -0.1", op: "LinearLR", mentions: "-0.1") { _ = try LinearLR(optimizer: $0, endFactor: -0.1) },
    .init(name: "LinearLR startFactor NaN", op: "LinearLR", mentions: "nan") { _ = try LinearLR(optimizer: $0, startFactor: .nan) },
    .init(name: "LinearLR totalIters 0", op: "LinearLR", mentions: "0") { _ = try LinearLR(optimizer: $0, totalIters: 0) },
    .init(name: "CosineAnnealingLR tMax 0", op: "CosineAnnealingLR", mentions: "0") { _ = try CosineAnnealingLR(optimizer: $0, tMax: 0) },
    .init(name: "CosineAnnealingLR etaMin -1", op: "CosineAnnealingLR", mentions: "-1") {
        _ = try CosineAnnealingLR(optimizer: $0, tMax: 5, etaMin: -1)
    },
    .init(name: "CosineAnnealingLR etaMin NaN", op: "CosineAnnealingLR", mentions: "nan") {
        _ = try CosineAnnealingLR(optimizer: $0, tMax: 5, etaMin: .nan)
    },
    .init(name: "SGDR t0 0", op: "CosineAnnealingWarmRestarts", mentions: "0") {
        _ = try CosineAnnealingWarmRestarts(optimizer: $0, t0: 0)
    },
    .init(name: "SGDR tMult 0", op: "CosineAnnealingWarmRestarts", mentions: "0") {
        _ = try CosineAnnealingWarmRestarts(optimizer: $0, t0: 5, tMult: 0)
    },
    .init(name: "SGDR etaMin NaN", op: "CosineAnnealingWarmRestarts", mentions: "nan") {
        _ = try CosineAnnealingWarmRestarts(optimizer: $0, t0: 5, etaMin: .nan)
    },
    .init(name: "CyclicLR maxLR below baseLR", op: "CyclicLR", mentions: "0.001") {
        _ = try CyclicLR(optimizer: $0, baseLR: 0.01, maxLR: 0.001)
    },
    .init(name: "CyclicLR baseLR NaN", op: "CyclicLR", mentions: "nan") { _ = try CyclicLR(optimizer: $0, baseLR: .nan, maxLR: 1) },
    .init(name: "CyclicLR stepSizeUp 0", op: "CyclicLR", mentions: "0") {
        _ = try CyclicLR(optimizer: $0, baseLR: 0.1, maxLR: 1, stepSizeUp: 0)
    },
    .init(name: "CyclicLR stepSizeDown 0", op: "CyclicLR", mentions: "0") {
        _ = try CyclicLR(optimizer: $0, baseLR: 0.1, maxLR: 1, stepSizeDown: 0)
    },
    .init(name: "CyclicLR gamma 0", op: "CyclicLR", mentions: "0") {
        _ = try CyclicLR(optimizer: $0, baseLR: 0.1, maxLR: 1, mode: .expRange, gamma: 0)
    },
    .init(name: "OneCycleLR totalSteps 0", op: "OneCycleLR", mentions: "0") { _ = try OneCycleLR(optimizer: $0, maxLR: 1, totalSteps: 0) },
    .init(name: "OneCycleLR pctStart 1.5", op: "OneCycleLR", mentions: "1.5") {
        _ = try OneCycleLR(optimizer: $0, maxLR: 1, totalSteps: 10, pctStart: 1.5)
    },
    .init(name: "OneCycleLR divFactor 0", op: "OneCycleLR", mentions: "0") {
        _ = try OneCycleLR(optimizer: $0, maxLR: 1, totalSteps: 10, divFactor: 0)
    },
    .init(name: "OneCycleLR maxLR NaN", op: "OneCycleLR", mentions: "nan") { _ = try OneCycleLR(optimizer: $0, maxLR: .nan, totalSteps: 10) },
    .init(name: "NoamLR modelSize 0", op: "NoamLR", mentions: "0") { _ = try NoamLR(optimizer: $0, modelSize: 0) },
    .init(name: "NoamLR warmupSteps 0", op: "NoamLR", mentions: "0") { _ = try NoamLR(optimizer: $0, modelSize: 8, warmupSteps: 0) },
    .init(name: "NoamLR factor -1", op: "NoamLR", mentions: "-1") { _ = try NoamLR(optimizer: $0, modelSize: 8, factor: -1) },
    .init(name: "LambdaLR λ(0) NaN", op: "LambdaLR", mentions: "nan") { _ = try LambdaLR(optimizer: $0) { _ in .nan } },
    .init(name: "ReduceLROnPlateau factor 1", op: "ReduceLROnPlateau", mentions: "1") { _ = try ReduceLROnPlateau(optimizer: $0, factor: 1) },
    .init(name: "ReduceLROnPlateau factor 0", op: "ReduceLROnPlateau", mentions: "0") { _ = try ReduceLROnPlateau(optimizer: $0, factor: 0) },
    .init(name: "ReduceLROnPlateau factor NaN", op: "ReduceLROnPlateau", mentions: "nan") {
        _ = try ReduceLROnPlateau(optimizer: $0, factor: .nan)
    },
    .init(name: "ReduceLROnPlateau patience -1", op: "ReduceLROnPlateau", mentions: "-1") {
        _ = try ReduceLROnPlateau(optimizer: $0, patience: -1)
    },
    .init(name: "ReduceLROnPlateau threshold -1", op: "ReduceLROnPlateau", mentions: "-1") {
        _ = try ReduceLROnPlateau(optimizer: $0, threshold: -1)
    },
    .init(name: "ReduceLROnPlateau cooldown -2", op: "ReduceLROnPlateau", mentions: "-2") {
        _ = try ReduceLROnPlateau(optimizer: $0, cooldown: -2)
    },
    .init(name: "ReduceLROnPlateau minLR NaN", op: "ReduceLROnPlateau", mentions: "nan") {
        _ = try ReduceLROnPlateau(optimizer: $0, minLR: .nan)
    },
    .init(name: "ReduceLROnPlateau eps -1", op: "ReduceLROnPlateau", mentions: "-1") { _ = try ReduceLROnPlateau(optimizer: $0, eps: -1) },
    .init(name: "SequentialLR no schedulers", op: "SequentialLR", mentions: "at least one") { _ in
        _ = try SequentialLR(schedulers: [], milestones: [])
    },
    .init(name: "SequentialLR milestone count", op: "SequentialLR", mentions: "[3, 6]") { o in
        _ = try SequentialLR(schedulers: [StepLR(optimizer: o, stepSize: 2), ExponentialLR(optimizer: o, gamma: 0.9)],
                             milestones: [3, 6])
    },
    .init(name: "SequentialLR unsorted milestones", op: "SequentialLR", mentions: "[6, 3]") { o in
        _ = try SequentialLR(schedulers: [StepLR(optimizer: o, stepSize: 2), ExponentialLR(optimizer: o, gamma: 0.9),
                                          ConstantLR.fixed(o)], milestones: [6, 3])
    },
    .init(name: "SequentialLR schedulers on two optimizers", op: "SequentialLR", mentions: "scheduler 1") { o in
        _ = try SequentialLR(schedulers: [StepLR(optimizer: o, stepSize: 2),
                                          StepLR(optimizer: RateRecorder(learningRate: 1), stepSize: 2)], milestones: [3])
    },
    .init(name: "ChainedScheduler no schedulers", op: "ChainedScheduler", mentions: "at least one") { _ in
        _ = try ChainedScheduler(schedulers: [])
    },
    .init(name: "ChainedScheduler schedulers on two optimizers", op: "ChainedScheduler", mentions: "scheduler 1") { o in
        _ = try ChainedScheduler(schedulers: [StepLR(optimizer: o, stepSize: 2),
                                              StepLR(optimizer: RateRecorder(learningRate: 1), stepSize: 2)])
    },
    .init(name: "ChainedScheduler base 0", op: "ChainedScheduler", mentions: "0.0") { o in
        o.learningRate = 0
        _ = try ChainedScheduler(schedulers: [StepLR(optimizer: o, stepSize: 2), ExponentialLR(optimizer: o, gamma: 0.9)])
    },
    .init(name: "linearWarmup 0 steps", op: "LinearLR", mentions: "0") { o in
        _ = try SequentialLR.linearWarmup(steps: 0, then: StepLR(optimizer: o, stepSize: 2))
    },
]

@Suite("Learning-rate schedulers: plateau, state, errors")
struct SchedulerStateTests {
    @Test("ReduceLROnPlateau on a scripted metric sequence", arguments: plateauCases)
    func plateau(_ c: PlateauCase) throws {
        let o = RateRecorder(learningRate: c.base)
        let s = try c.make(o)
        #expect(o.learningRate == c.base, "made without changing the rate")
        let rates = ratesAfter(s, c.metrics)
        expectRates(rates, { c.expected[$0] }, rtol: 1e-14, c.name)
        #expect(s.lastEpoch == c.metrics.count)
        #expect(s.currentLearningRate == o.learningRate)
    }

    @Test("ReduceLROnPlateau keeps the best metric and needs step(metric:)")
    func plateauBookkeeping() throws {
        let o = RateRecorder(learningRate: 0.2)
        let s = try ReduceLROnPlateau(optimizer: o, mode: .max, factor: 0.5, patience: 1, threshold: 0.01,
                                      thresholdMode: .absolute)
        #expect(s.best == -.infinity)
        _ = ratesAfter(s, [0.5, 0.505, 0.52, 0.525])
        #expect(s.best == 0.52 && s.badEpochs == 1)
        #expect(throws: TensorError.self) { try s.step() }
        #expect(s.lastEpoch == 4)
        let m = try ReduceLROnPlateau(optimizer: RateRecorder(learningRate: 1))
        #expect(m.best == .infinity && m.patience == 10 && m.factor == 0.1 && m.threshold == 1e-4 && m.eps == 1e-8)
    }

    @Test("state round trip: save mid-way, load into a fresh scheduler, identical continuation", arguments: curveCases)
    func roundTrip(_ c: CurveCase) throws {
        let o1 = RateRecorder(learningRate: c.base)
        let a = try c.make(o1)
        let half = c.epochs / 2
        _ = try trainRates(a, o1, epochs: half)
        let saved = a.stateDictionary()
        #expect(saved["last_epoch"] == Double(half))

        let o2 = RateRecorder(learningRate: 3 * c.base + 1)  // another rate: the state carries the base
        let b = try c.make(o2)
        try b.loadStateDictionary(saved)
        #expect(b.stateDictionary() == saved)
        #expect(b.lastEpoch == half && o2.learningRate == o1.learningRate)
        let restA = try trainRates(a, o1, epochs: c.epochs - half)
        let restB = try trainRates(b, o2, epochs: c.epochs - half)
        #expect(restA == restB)
        #expect(a.stateDictionary() == b.stateDictionary())
    }

    @Test("ReduceLROnPlateau state round trip mid-way through a cooldown")
    func plateauRoundTrip() throws {
        let metrics: [Double] = (0..<40).map { (t: Int) -> Double in
            let x = Double(t)
            let wave: Double = 0.3 * Foundation.sin(0.7 * x)
            return 1 + wave + 2 / (x + 1)
        }
        let make = { (o: any Optimizer) in
            try ReduceLROnPlateau(optimizer: o, factor: 0.5, patience: 1, threshold: 0.05, cooldown: 3)
        }
        let o1 = RateRecorder(learningRate: 0.3)
        let a = try make(o1)
        let first = ratesAfter(a, Array(metrics[..<13]))
        #expect(Set(first).count > 1, "the script should cut the rate before the save")
        let saved = a.stateDictionary()
        let o2 = RateRecorder(learningRate: 0.9)
        let b = try make(o2)
        try b.loadStateDictionary(saved)
        #expect(b.stateDictionary() == saved && o2.learningRate == o1.learningRate)
        let restA = ratesAfter(a, Array(metrics[13...]))
        let restB = ratesAfter(b, Array(metrics[13...]))
        #expect(restA == restB)
        #expect(a.stateDictionary() == b.stateDictionary())
    }

    @Test("loading a state validates everything before changing anything")
    func badStates() throws {
        let o1 = RateRecorder(learningRate: 0.1)
        let step = try StepLR(optimizer: o1, stepSize: 3, gamma: 0.5)
        _ = try trainRates(step, o1, epochs: 4)
        let saved = step.stateDictionary()

        let o2 = RateRecorder(learningRate: 0.7)
        let target = try StepLR(optimizer: o2, stepSize: 3, gamma: 0.5)
        let before = target.stateDictionary()
        var bad: [(String, [String: Double])] = [
            ("another gamma", saved.merging(["gamma": 0.1]) { $1 }),
            ("fractional last_epoch", saved.merging(["last_epoch": 2.5]) { $1 }),
            ("negative last_epoch", saved.merging(["last_epoch": -1]) { $1 }),
            ("NaN base_lr", saved.merging(["base_lr": .nan]) { $1 }),
            ("negative last_lr", saved.merging(["last_lr": -0.1]) { $1 }),
            ("an unexpected key", saved.merging(["momentum": 0.9]) { $1 }),
        ]
        var missing = saved
        missing["last_epoch"] = nil
        bad.append(("no last_epoch", missing))
        for (what, state) in bad {
            #expect(throws: TensorError.self, "\(what)") { try target.loadStateDictionary(state) }
            #expect(target.stateDictionary() == before && o2.learningRate == 0.7, "\(what) changed the scheduler")
        }
        let expo = try ExponentialLR(optimizer: RateRecorder(learningRate: 1), gamma: 0.5)
        #expect(throws: TensorError.self, "a StepLR state into an ExponentialLR") { try expo.loadStateDictionary(saved) }

        let plateau = try ReduceLROnPlateau(optimizer: RateRecorder(learningRate: 1), cooldown: 2)
        var p = plateau.stateDictionary()
        p["cooldown_counter"] = 3
        #expect(throws: TensorError.self) { try plateau.loadStateDictionary(p) }
        p["cooldown_counter"] = 0
        p["best"] = .nan
        #expect(throws: TensorError.self) { try plateau.loadStateDictionary(p) }
    }

    @Test("a composite whose second child rejects its state puts the first child back")
    func compositeRollback() throws {
        let make = { (o: any Optimizer) in
            try SequentialLR(schedulers: [ConstantLR(optimizer: o, factor: 0.5, totalIters: 3),
                                          StepLR(optimizer: o, stepSize: 2, gamma: 0.5)], milestones: [3])
        }
        let o1 = RateRecorder(learningRate: 0.1)
        let a = try make(o1)
        _ = try trainRates(a, o1, epochs: 5)
        var saved = a.stateDictionary()
        #expect(saved["0.base_lr"] == 0.1 && saved["1.gamma"] == 0.5 && saved["milestones.0"] == 3)

        let o2 = RateRecorder(learningRate: 0.7)
        let b = try make(o2)
        let before = b.stateDictionary()
        let rateBefore = o2.learningRate
        saved["1.gamma"] = 0.25
        #expect(throws: TensorError.self) { try b.loadStateDictionary(saved) }
        #expect(b.stateDictionary() == before, "the first child was left with the loaded state")
        #expect(b.schedulers[0].baseLearningRate == 0.7 && o2.learningRate == rateBefore)
        saved["1.gamma"] = 0.5
        saved["2.last_epoch"] = 0
        #expect(throws: TensorError.self, "a key for a third child") { try b.loadStateDictionary(saved) }
    }

    @Test("invalid arguments throw TensorError(.invalidArgument) naming the scheduler and the value",
          arguments: schedulerErrorCases)
    func rejects(_ c: SchedulerErrorCase) {
        do {
            try c.make(RateRecorder(learningRate: 0.1))
            Issue.record("\(c.name) did not throw")
        } catch let e as TensorError {
            #expect(e.kind == .invalidArgument)
            #expect(e.op == c.op, "\(e)")
            #expect(e.message.contains(c.mentions), "\(e) does not mention \(c.mentions)")
        } catch {
            Issue.record("\(c.name) threw \(error)")
        }
    }
}
