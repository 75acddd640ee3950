import Foundation
import Kiln
import KilnTestSupport
import Testing

// MARK: - Helpers

/// Test-only SGD with momentum, as PyTorch's (dampening 0): `b ← μ·b + g`, `p ← p − η·b`.
private final class MomentumSGD: Optimizer {
    let parameters: [Parameter]
    var learningRate: Double
    var momentum: Double
    private(set) var stepCount = 0
    private var buffers: [Tensor?]

    init(_ parameters: [Parameter], learningRate: Double, momentum: Double) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.momentum = momentum
        buffers = Array(repeating: nil, count: parameters.count)
    }

    func step() throws {
        let mu = Float(momentum), lr = Float(learningRate)
        for (i, p) in parameters.enumerated() {
            guard let g = p.gradient else { continue }
            let b: Tensor
            if let old = buffers[i] {
                let decayed: Tensor = try old * mu
                b = try decayed + g
            } else {
                b = g.detached()
            }
            buffers[i] = b.detached()
            let update: Tensor = try b * lr
            try p.assign(try p.value.detached() - update)
        }
        stepCount += 1
    }

    func stateDictionary() throws -> OptimizerState {
        var tensors: [String: Tensor] = [:]
        for (i, b) in buffers.enumerated() { if let b { tensors["\(i).momentum_buffer"] = b } }
        return OptimizerState(tensors: tensors, scalars: ["step": Double(stepCount), "lr": learningRate, "momentum": momentum])
    }

    func loadStateDictionary(_ state: OptimizerState) throws {
        guard state.scalars.count == 3, let step = state.scalars["step"], let lr = state.scalars["lr"],
              let mu = state.scalars["momentum"] else {
            throw TensorError(.invalidArgument, op: "MomentumSGD", "scalars \(state.scalars.keys.sorted())")
        }
        var newBuffers = [Tensor?](repeating: nil, count: parameters.count)
        for (key, t) in state.tensors {
            let parts = key.split(separator: ".")
            guard parts.count == 2, parts[1] == "momentum_buffer", let i = Int(parts[0]), parameters.indices.contains(i),
                  t.shape == parameters[i].shape else {
                throw TensorError(.invalidArgument, op: "MomentumSGD", "bad state tensor '\(key)' of shape \(t.shape)")
            }
            newBuffers[i] = try t.to(parameters[i].value.backend)
        }
        buffers = newBuffers
        stepCount = Int(step)
        learningRate = lr
        momentum = mu
    }
}

/// Linear → BatchNorm1d → ReLU → Linear.
private func makeModel(seed: UInt64, on b: any Backend) throws -> Sequential {
    Sequential(try Linear(inputSize: 4, outputSize: 3, seed: seed, on: b),
               try BatchNorm1d(features: 3, on: b),
               Lambda("relu") { try relu($0) },
               try Linear(inputSize: 3, outputSize: 2, seed: seed + 1, on: b))
}

private let modelKeys: Set<String> = ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                                      "1.num_batches_tracked", "3.weight", "3.bias"]

private func batchNorm(_ m: Sequential) throws -> BatchNorm1d { try #require(m.layers[1] as? BatchNorm1d) }

/// Every state entry's bits, to check that a failed load changed nothing.
private func snapshot(_ m: any Module) throws -> [String: [UInt32]] {
    try m.stateDictionary().mapValues { try $0.scalars().map(\.bitPattern) }
}

private func trainStep(_ model: Sequential, _ optimizer: MomentumSGD, _ x: Tensor, _ y: Tensor) throws {
    model.zeroGradients()
    let loss = try mseLoss(input: model(x), targets: y)
    try loss.backward()
    try optimizer.step()
}

private func scratchDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-checkpoint-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

private func expectCheckpointError(_ kind: CheckpointError.Kind, _ fragments: [String] = [],
                                   sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected a CheckpointError of kind \(kind)", sourceLocation: sourceLocation)
    } catch let error as CheckpointError {
        #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
        for f in fragments {
            #expect(error.description.contains(f), "'\(error)' does not mention '\(f)'", sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("expected a CheckpointError, got \(error)", sourceLocation: sourceLocation)
    }
}

private func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }

@Suite("Checkpoint")
struct CheckpointTests {
    @Test("state dictionary: PyTorch names, buffers, num_batches_tracked as an F32 scalar")
    func stateDictionary() throws {
        let b = CPUBackend.shared
        let model = try makeModel(seed: 1, on: b)
        let x = try Tensor(testValues(20, seed: 5), shape: [5, 4], on: b)
        _ = try model(x)
        _ = try model(x)
        let state = try model.stateDictionary()
        #expect(Set(state.keys) == modelKeys)
        #expect(state["1.num_batches_tracked"]?.shape == [])
        #expect(try state["1.num_batches_tracked"]?.item() == 2)
        #expect(try state["1.running_mean"]?.scalars() == batchNorm(model).runningMean?.scalars())
        #expect(state.values.allSatisfy { !$0.requiresGradient })
        #expect(try model.namedBuffers().map(\.name) == ["1.running_mean", "1.running_var", "1.num_batches_tracked"])

        let untracked = try BatchNorm2d(features: 2, trackRunningStatistics: false, on: b)
        #expect(Set(try untracked.stateDictionary().keys) == ["weight", "bias"])
        let instance = try InstanceNorm(features: 2, trackRunningStatistics: true, on: b)
        #expect(Set(try instance.stateDictionary().keys) == ["running_mean", "running_var", "num_batches_tracked"])
        #expect(try InstanceNorm(features: 2, on: b).stateDictionary().isEmpty)
    }

    @Test("model round trip through a file: identical eval outputs, metadata, backend", arguments: TestBackend.all)
    func modelRoundTrip(_ tb: TestBackend) throws {
        let b = tb.backend
        let model = try makeModel(seed: 1, on: b)
        let x = try Tensor(testValues(20, seed: 5), shape: [5, 4], on: b)
        let x2: Tensor = try x * 2 + 1
        _ = try model(x)
        _ = try model(x2)
        model.eval()
        let expected = try model(x).scalars()
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("model.safetensors")
        try Checkpoint.save(model: model, metadata: ["epoch": "7", "format": "pt"], to: url)

        // A plain safetensors state dict (what safetensors.torch.load_file returns).
        let (arrays, metadata) = try SafeTensors.readArrays(from: url)
        #expect(metadata == ["epoch": "7", "format": "pt"])
        #expect(Set(arrays.keys) == modelKeys)
        #expect(arrays["1.num_batches_tracked"] == SafeTensors.HostArray(shape: [], scalars: [2]))
        #expect(arrays["0.weight"]?.shape == [3, 4])

        let fresh = try makeModel(seed: 9, on: b)
        fresh.eval()
        #expect(try fresh(x).scalars() != expected)
        #expect(try Checkpoint.load(into: fresh, from: url) == ["epoch": "7", "format": "pt"])
        #expect(try fresh(x).scalars() == expected)
        #expect(try batchNorm(fresh).batchesTracked == 2)
        #expect(try batchNorm(fresh).runningVariance?.scalars() == batchNorm(model).runningVariance?.scalars())
        #expect(try snapshot(fresh) == snapshot(model))
        for p in fresh.parameters() {
            #expect(p.value.backend === b)
            #expect(p.value.requiresGradient)
        }

        // In memory, from a state dictionary on the CPU: values are copied to the model's backend.
        let cpuState = try model.stateDictionary().mapValues { try $0.to(CPUBackend.shared) }
        let other = try makeModel(seed: 11, on: b)
        other.eval()
        try other.loadStateDictionary(cpuState)
        #expect(try other(x).scalars() == expected)
        #expect(try other.namedBuffers().allSatisfy { $0.tensor.backend === b })
        #expect(other.parameters().allSatisfy { $0.value.backend === b })
    }

    @Test("mismatched state: missing, unexpected, wrong shape, bad count; the model stays untouched",
          arguments: TestBackend.all)
    func mismatch(_ tb: TestBackend) throws {
        let b = tb.backend
        let source = try makeModel(seed: 1, on: b)
        let x = try Tensor(testValues(20, seed: 5), shape: [5, 4], on: b)
        _ = try source(x)
        _ = try source(x)
        let state = try source.stateDictionary()
        let target = try makeModel(seed: 3, on: b)
        let x3: Tensor = try x * 3
        _ = try target(x3)
        let before = try snapshot(target)
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }

        func attempt(_ entries: [String: Tensor], _ kind: CheckpointError.Kind, _ fragments: [String],
                     sourceLocation: SourceLocation = #_sourceLocation) throws {
            let url = dir.appendingPathComponent("bad.safetensors")
            try SafeTensors.write(entries, to: url)
            expectCheckpointError(kind, fragments + ["bad.safetensors"], sourceLocation: sourceLocation) {
                try Checkpoint.load(into: target, from: url)
            }
            expectCheckpointError(kind, fragments, sourceLocation: sourceLocation) { try target.loadStateDictionary(entries) }
            #expect(try snapshot(target) == before, "the model changed", sourceLocation: sourceLocation)
        }
        var missing = state
        missing["1.running_var"] = nil
        try attempt(missing, .missingTensor, ["missing '1.running_var'", "9 entries"])
        var extra = state
        extra["4.weight"] = try Tensor([1, 2], on: b)
        try attempt(extra, .unexpectedTensor, ["unexpected '4.weight'"])
        var both = missing
        both["4.weight"] = try Tensor([1, 2], on: b)
        try attempt(both, .missingTensor, ["missing '1.running_var'", "unexpected '4.weight'"])
        var wrongShape = state
        wrongShape["0.weight"] = try Tensor.zeros([4, 3], on: b)
        wrongShape["1.running_mean"] = try Tensor.zeros([4], on: b)
        try attempt(wrongShape, .shapeMismatch, ["'0.weight' has shape [4, 3], the model [3, 4]", "'1.running_mean' has shape [4], the model [3]"])
        var badCount = state
        badCount["1.num_batches_tracked"] = try Tensor(scalar: 1.5, on: b)
        try attempt(badCount, .invalidArgument, ["'1.num_batches_tracked'", "non-negative integer", "1.5"])
        badCount["1.num_batches_tracked"] = try Tensor(scalar: -1, on: b)
        try attempt(badCount, .invalidArgument, ["num_batches_tracked", "-1"])

        // A cut file: nothing changes either.
        let url = dir.appendingPathComponent("cut.safetensors")
        try Checkpoint.save(model: source, to: url)
        let bytes = try Data(contentsOf: url)
        try bytes.prefix(bytes.count - 3).write(to: url)
        expectCheckpointError(.truncated, ["cut.safetensors"]) { try Checkpoint.load(into: target, from: url) }
        #expect(try snapshot(target) == before)

        // Not strict: what matches loads; the rest is reported.
        let report = try target.loadStateDictionary(both, strict: false)
        #expect(report.missing == ["1.running_var"])
        #expect(report.unexpected == ["4.weight"])
        let after = try snapshot(target)
        let sourceBits = try snapshot(source)
        #expect(after["1.running_var"] == before["1.running_var"])
        for key in modelKeys where key != "1.running_var" { #expect(after[key] == sourceBits[key], "\(key)") }
    }

    @Test("optimizer state round trip: training continues identically", arguments: TestBackend.all)
    func optimizerRoundTrip(_ tb: TestBackend) throws {
        let b = tb.backend
        let x = try Tensor(testValues(20, seed: 5), shape: [5, 4], on: b)
        let y = try Tensor(testValues(10, seed: 6), shape: [5, 2], on: b)
        let model = try makeModel(seed: 1, on: b)
        let lr = 1.0 / 30.0
        let optimizer = MomentumSGD(model.parameters(), learningRate: lr, momentum: 0.9)
        for _ in 0..<3 { try trainStep(model, optimizer, x, y) }
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("train.safetensors")
        try Checkpoint.save(model: model, optimizer: optimizer, metadata: ["run": "a"], to: url)

        let (arrays, metadata) = try SafeTensors.readArrays(from: url)
        #expect(metadata == ["run": "a", "optimizer.lr": "0.03333333333333333", "optimizer.step": "3.0", "optimizer.momentum": "0.9"])
        #expect(Set(arrays.keys) == modelKeys.union((0..<6).map { "optimizer.\($0).momentum_buffer" }))
        #expect(arrays["optimizer.0.momentum_buffer"]?.shape == [3, 4])

        let model2 = try makeModel(seed: 5, on: b)
        let optimizer2 = MomentumSGD(model2.parameters(), learningRate: 0.5, momentum: 0.1)
        #expect(try Checkpoint.load(into: model2, optimizer: optimizer2, from: url) == ["run": "a"])
        #expect(optimizer2.learningRate == lr)
        #expect(optimizer2.momentum == 0.9)
        #expect(optimizer2.stepCount == 3)
        #expect(try snapshot(model2) == snapshot(model))
        try trainStep(model, optimizer, x, y)
        try trainStep(model2, optimizer2, x, y)
        #expect(try snapshot(model2) == snapshot(model))
        #expect(try optimizer2.stateDictionary().tensors.mapValues { try $0.scalars() }
                == optimizer.stateDictionary().tensors.mapValues { try $0.scalars() })

        // Without an optimizer, its entries are ignored.
        let model3 = try makeModel(seed: 7, on: b)
        try Checkpoint.load(into: model3, from: url)
        let savedBits = arrays.filter { !$0.key.hasPrefix("optimizer.") }.mapValues { $0.scalars.map(\.bitPattern) }
        #expect(try snapshot(model3) == savedBits)
    }

    @Test("Adam and a StepLR schedule round trip; a bad scheduler state leaves everything untouched")
    func schedulerRoundTrip() throws {
        let b = CPUBackend.shared
        let x = try Tensor(testValues(20, seed: 5), shape: [5, 4], on: b)
        let y = try Tensor(testValues(10, seed: 6), shape: [5, 2], on: b)
        func make(_ seed: UInt64) throws -> (Sequential, Adam, StepLR) {
            let model = try makeModel(seed: seed, on: b)
            let adam = try Adam(model.parameters(), learningRate: 0.1)
            return (model, adam, try StepLR(optimizer: adam, stepSize: 2, gamma: 0.5))
        }
        func epoch(_ m: Sequential, _ o: Adam, _ s: StepLR) throws {
            o.zeroGradients()
            try mseLoss(input: m(x), targets: y).backward()
            try o.step()
            try s.step()
        }
        let (model, adam, schedule) = try make(1)
        for _ in 0..<3 { try epoch(model, adam, schedule) }
        #expect(adam.learningRate == 0.05)
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("run.safetensors")
        try Checkpoint.save(model: model, optimizer: adam, scheduler: schedule, to: url)
        let (model2, adam2, schedule2) = try make(9)
        try Checkpoint.load(into: model2, optimizer: adam2, scheduler: schedule2, from: url)
        #expect(adam2.learningRate == 0.05 && schedule2.lastEpoch == 3)
        for _ in 0..<3 {
            try epoch(model, adam, schedule)
            try epoch(model2, adam2, schedule2)
        }
        #expect(try snapshot(model2) == snapshot(model))
        #expect(adam2.learningRate == adam.learningRate)

        // A schedule of other hyperparameters rejects the state: model, optimizer, schedule unchanged.
        let (model3, adam3, _) = try make(11)
        let other = try StepLR(optimizer: adam3, stepSize: 7, gamma: 0.5)
        let before = try snapshot(model3)
        #expect(throws: (any Error).self) { try Checkpoint.load(into: model3, optimizer: adam3, scheduler: other, from: url) }
        #expect(try snapshot(model3) == before)
        #expect(adam3.stepCount == 0 && adam3.learningRate == 0.1 && other.lastEpoch == 0)
        #expect(throws: CheckpointError.self) {
            try Checkpoint.save(model: model, metadata: ["scheduler.x": "1"], to: dir.appendingPathComponent("bad.safetensors"))
        }
    }

    @Test("optimizer errors leave model and optimizer untouched; reserved names")
    func optimizerErrors() throws {
        let b = CPUBackend.shared
        let x = try Tensor(testValues(20, seed: 5), shape: [5, 4], on: b)
        let y = try Tensor(testValues(10, seed: 6), shape: [5, 2], on: b)
        let source = try makeModel(seed: 1, on: b)
        let sourceOptimizer = MomentumSGD(source.parameters(), learningRate: 0.1, momentum: 0.9)
        try trainStep(source, sourceOptimizer, x, y)
        let target = try makeModel(seed: 2, on: b)
        let targetOptimizer = MomentumSGD(target.parameters(), learningRate: 0.25, momentum: 0.5)
        let before = try snapshot(target)
        func unchanged(sourceLocation: SourceLocation = #_sourceLocation) throws {
            #expect(try snapshot(target) == before, "the model changed", sourceLocation: sourceLocation)
            #expect(targetOptimizer.learningRate == 0.25 && targetOptimizer.stepCount == 0, sourceLocation: sourceLocation)
            #expect(try targetOptimizer.stateDictionary().tensors.isEmpty, sourceLocation: sourceLocation)
        }
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("c.safetensors")

        try Checkpoint.save(model: source, to: url)
        expectCheckpointError(.missingTensor, ["no optimizer state"]) {
            try Checkpoint.load(into: target, optimizer: targetOptimizer, from: url)
        }
        try unchanged()

        // The optimizer rejects its state: its error, and nothing changes.
        var tensors = try source.stateDictionary()
        tensors["optimizer.0.momentum_buffer"] = try Tensor([1, 2], on: b)
        try SafeTensors.write(tensors, metadata: ["optimizer.step": "1.0", "optimizer.lr": "0.1", "optimizer.momentum": "0.9"], to: url)
        #expect(throws: TensorError.self) { try Checkpoint.load(into: target, optimizer: targetOptimizer, from: url) }
        try unchanged()

        try SafeTensors.write(try source.stateDictionary(), metadata: ["optimizer.lr": "fast"], to: url)
        expectCheckpointError(.malformedHeader, ["optimizer.lr", "fast"]) {
            try Checkpoint.load(into: target, optimizer: targetOptimizer, from: url)
        }
        try unchanged()

        expectCheckpointError(.invalidArgument, ["optimizer.note", "reserved"]) {
            try Checkpoint.save(model: source, metadata: ["optimizer.note": "x"], to: url)
        }
        final class Named: Module {
            var isTraining = true
            let inner: Linear
            init(_ inner: Linear) { self.inner = inner }
            var children: [(name: String, module: any Module)] { [("optimizer", inner)] }
            func callAsFunction(_ input: Tensor) throws -> Tensor { try inner(input) }
        }
        let named = Named(try Linear(inputSize: 2, outputSize: 2, seed: 1, on: b))
        expectCheckpointError(.invalidArgument, ["optimizer.bias", "collide"]) {
            try Checkpoint.save(model: named, optimizer: MomentumSGD(named.parameters(), learningRate: 0.1, momentum: 0), to: url)
        }
        // A model-only file of such a model loads back (its names are the model's, not optimizer state).
        try Checkpoint.save(model: named, to: url)
        let copy = Named(try Linear(inputSize: 2, outputSize: 2, seed: 2, on: b))
        try Checkpoint.load(into: copy, from: url)
        #expect(try copy.inner.weight.value.scalars() == named.inner.weight.value.scalars())
    }

    @Test("a PyTorch-style BatchNorm state dict: I64 num_batches_tracked")
    func pyTorchBatchNorm() throws {
        let b = CPUBackend.shared
        let json = #"{"__metadata__":{"format":"pt"},"bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"num_batches_tracked":{"dtype":"I64","shape":[],"data_offsets":[8,16]},"running_mean":{"dtype":"F32","shape":[2],"data_offsets":[16,24]},"running_var":{"dtype":"F32","shape":[2],"data_offsets":[24,32]},"weight":{"dtype":"F32","shape":[2],"data_offsets":[32,40]}}"#
        var bytes = le(UInt64(json.utf8.count)) + Array(json.utf8)
        bytes += [Float(0.5), -0.5].flatMap { le($0.bitPattern) }
        bytes += le(Int64(12))
        bytes += [Float(1), 2, 3, 4, 1.5, 2.5].flatMap { le($0.bitPattern) }
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("bn.safetensors")
        try Data(bytes).write(to: url)
        let bn = try BatchNorm1d(features: 2, on: b)
        #expect(try Checkpoint.load(into: bn, from: url) == ["format": "pt"])
        #expect(bn.batchesTracked == 12)
        #expect(try bn.runningMean?.scalars() == [1, 2])
        #expect(try bn.runningVariance?.scalars() == [3, 4])
        #expect(try bn.weight?.value.scalars() == [1.5, 2.5])
        #expect(try bn.bias?.value.scalars() == [0.5, -0.5])
    }
}
