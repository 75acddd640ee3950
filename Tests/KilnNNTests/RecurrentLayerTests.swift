import Foundation
import Kiln
import KilnTestSupport
import Testing

/// Runs `body` and checks it throws a `TensorError` of `kind` whose op is `op`.
private func expectTensorError(_ op: String, _ kind: TensorError.Kind, _ what: String,
                               sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("\(what): expected \(op) to throw", sourceLocation: sourceLocation)
    } catch let e as TensorError {
        #expect(e.op == op && e.kind == kind, "\(what): got \(e)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("\(what): unexpected \(error)", sourceLocation: sourceLocation)
    }
}

@Suite("Recurrent layers: initialisation, names, dropout, errors, training")
struct RecurrentLayerTests {
    @Test("PyTorch initialisation U(−1/√H, 1/√H), the same on every backend; layer 0 equals the cell of the same seed",
          arguments: TestBackend.all)
    func initialisation(_ tb: TestBackend) throws {
        let b = tb.backend
        let lstm = try LSTM(inputSize: 6, hiddenSize: 16, layerCount: 2, bidirectional: true, seed: 42, on: b)
        let onCPU = try LSTM(inputSize: 6, hiddenSize: 16, layerCount: 2, bidirectional: true, seed: 42, on: CPUBackend.shared)
        let bound = 0.25
        var seen: [[Float]] = []
        for ((name, p), (_, q)) in zip(lstm.namedParameters(), onCPU.namedParameters()) {
            let v = try p.value.scalars()
            #expect(v == (try q.value.scalars()), "\(name): the same seed gives the same bits on every backend")
            #expect(v.allSatisfy { Swift.abs(Double($0)) <= bound }, "\(name) within ±1/√H")
            #expect(v.map { Swift.abs(Double($0)) }.max() ?? 0 > 0.8 * bound, "\(name) fills the interval")
            #expect(!seen.contains { Array($0.prefix(8)) == Array(v.prefix(8)) }, "\(name) has a stream of its own")
            seen.append(v)
        }
        // A different seed gives a different model.
        let other = try LSTM(inputSize: 6, hiddenSize: 16, seed: 43, on: b)
        #expect(try other.weights(layer: 0).weightIH.value.scalars() != lstm.weights(layer: 0).weightIH.value.scalars())
        // Layer 0 (forward) of each layer equals the cell of the same seed.
        let cell = try LSTMCell(inputSize: 6, hiddenSize: 16, seed: 42, on: b)
        let w = try lstm.weights(layer: 0)
        #expect(try cell.weights.weightIH.value.scalars() == w.weightIH.value.scalars())
        #expect(try cell.weights.biasHH?.value.scalars() == w.biasHH?.value.scalars())
        let gru = try GRU(inputSize: 3, hiddenSize: 5, seed: 9, on: b), gruCell = try GRUCell(inputSize: 3, hiddenSize: 5, seed: 9, on: b)
        #expect(try gru.weights(layer: 0).weightHH.value.scalars() == gruCell.weights.weightHH.value.scalars())
        let rnn = try RNN(inputSize: 3, hiddenSize: 5, seed: 9, on: b), rnnCell = try RNNCell(inputSize: 3, hiddenSize: 5, seed: 9, on: b)
        #expect(try rnn.weights(layer: 0).biasIH?.value.scalars() == rnnCell.weights.biasIH?.value.scalars())
        // Turning biases off keeps the weights.
        let noBias = try LSTM(inputSize: 6, hiddenSize: 16, layerCount: 2, bias: false, bidirectional: true, seed: 42, on: b)
        #expect(try noBias.weights(layer: 1, reverse: true).weightHH.value.scalars()
                == lstm.weights(layer: 1, reverse: true).weightHH.value.scalars())
    }

    @Test("parameter names and shapes are PyTorch's; a state dictionary under those names loads and runs",
          arguments: TestBackend.all)
    func stateDictionaryNames(_ tb: TestBackend) throws {
        let b = tb.backend
        let (ni, nh) = (3, 4)
        let lstm = try LSTM(inputSize: ni, hiddenSize: nh, layerCount: 2, bidirectional: true, seed: 1, on: b)
        var expectedNames: [String] = [], expectedShapes: [[Int]] = []
        for l in 0..<2 {
            for suffix in ["", "_reverse"] {
                expectedNames += ["weight_ih", "weight_hh", "bias_ih", "bias_hh"].map { "\($0)_l\(l)\(suffix)" }
                expectedShapes += [[4 * nh, l == 0 ? ni : 2 * nh], [4 * nh, nh], [4 * nh], [4 * nh]]
            }
        }
        #expect(lstm.namedParameters().map(\.name) == expectedNames)
        #expect(lstm.namedParameters().map(\.parameter.shape) == expectedShapes)
        #expect(lstm.parameterCount == 2 * (16 * 3 + 16 * 4 + 32) + 2 * (16 * 8 + 16 * 4 + 32))
        let gru = try GRU(inputSize: ni, hiddenSize: nh, layerCount: 2, bias: false, seed: 1, on: b)
        #expect(gru.namedParameters().map(\.name) == ["weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"])
        #expect(gru.namedParameters().map(\.parameter.shape) == [[12, 3], [12, 4], [12, 4], [12, 4]])
        let rnn = try RNN(inputSize: ni, hiddenSize: nh, bidirectional: true, seed: 1, on: b)
        #expect(rnn.namedParameters().map(\.name) == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                                                      "weight_ih_l0_reverse", "weight_hh_l0_reverse",
                                                      "bias_ih_l0_reverse", "bias_hh_l0_reverse"])

        // A "checkpoint": every tensor under PyTorch's name, with other values; strict load, then the
        // layer computes the oracle of those values.
        var state: [String: Tensor] = [:]
        var values: [String: [Double]] = [:]
        for (k, (name, shape)) in zip(expectedNames, expectedShapes).enumerated() {
            let t = try rnnTensor(shape, seed: UInt64(100 + k), on: CPUBackend.shared, range: -0.6...0.6)
            state[name] = t
            values[name] = try rnnDoubles(t)
        }
        try lstm.loadStateDictionary(state)
        #expect(Set(try lstm.stateDictionary().keys) == Set(expectedNames))
        let c = RecurrentCase(kind: .lstm, layers: 2, bidirectional: true, inputSize: ni, hiddenSize: nh)
        let x = try rnnTensor(c.inputShape, seed: 7, on: b)
        let r = try lstm.forward(x)
        let expected = c.oracle(params: values, x: try rnnDoubles(x), h0: nil, c0: nil)
        try rnnCheck(r.output, expected.output, recurrentForwardTolerance, "LSTM after loading a state dictionary")
        try rnnCheck(r.cell, expected.cell, recurrentForwardTolerance, "c_n after loading a state dictionary")
    }

    @Test("dropout between layers: training only, none after the last layer, reproducible on every backend",
          arguments: TestBackend.all)
    func interLayerDropout(_ tb: TestBackend) throws {
        let b = tb.backend
        let c = RecurrentCase(kind: .gru, layers: 2, bidirectional: true)
        let x = try rnnTensor(c.inputShape, seed: 3, on: b)
        let xv = try rnnDoubles(x)
        // p = 1: layer 1 reads zeros in training; evaluation mode applies no dropout.
        let dropAll = try c.makeLayer(seed: 5, dropout: 1, on: b)
        let params = try rnnParameters(dropAll)
        let zeroed = c.oracle(params: params, x: xv, h0: nil, c0: nil) { _, out in out.map { _ in 0 } }
        let plain = c.oracle(params: params, x: xv, h0: nil, c0: nil)
        try rnnCheck(try dropAll(x), zeroed.output, recurrentForwardTolerance, "p = 1 in training")
        dropAll.eval()
        try rnnCheck(try dropAll(x), plain.output, recurrentForwardTolerance, "evaluation mode")
        // p = 0.5: masks differ from call to call, are the same on every backend for one seed, and
        // the gradient still reaches the input.
        let half = try c.makeLayer(seed: 5, dropout: 0.5, on: b)
        let halfCPU = try c.makeLayer(seed: 5, dropout: 0.5, on: CPUBackend.shared)
        let xg = x.requiringGradient()
        let first = try half(xg), second = try half(x)
        #expect(try first.scalars() != second.scalars(), "a new mask per call")
        let firstCPU = try halfCPU(x.to(CPUBackend.shared))
        try rnnCheck(first, try rnnDoubles(firstCPU), Tolerance(absolute: 1e-5, relative: 1e-5), "the same masks as on the CPU")
        let evalOut = plain.output
        #expect(mismatch(try first.scalars(), evalOut, tolerance: recurrentForwardTolerance) != nil, "dropout changes the output")
        try first.sum().backward()
        #expect(xg.gradient?.shape == x.shape)
        // One layer: nothing to drop (PyTorch warns; Kiln applies no dropout after the last layer).
        let single = RecurrentCase(kind: .lstm)
        let one = try single.makeLayer(seed: 2, dropout: 1, on: b)
        let xs = try rnnTensor(single.inputShape, seed: 4, on: b)
        try rnnCheck(try one(xs), single.oracle(params: try rnnParameters(one), x: try rnnDoubles(xs), h0: nil, c0: nil).output,
                     recurrentForwardTolerance, "no dropout after the last layer")
    }

    @Test("invalid sizes, inputs and states throw TensorError naming the layer", arguments: TestBackend.all)
    func errors(_ tb: TestBackend) throws {
        let b = tb.backend
        expectTensorError("LSTM", .invalidArgument, "inputSize 0") { _ = try LSTM(inputSize: 0, hiddenSize: 2, seed: 0, on: b) }
        expectTensorError("GRU", .invalidArgument, "hiddenSize 0") { _ = try GRU(inputSize: 2, hiddenSize: 0, seed: 0, on: b) }
        expectTensorError("RNN", .invalidArgument, "layerCount 0") {
            _ = try RNN(inputSize: 2, hiddenSize: 2, layerCount: 0, seed: 0, on: b)
        }
        expectTensorError("LSTM", .invalidArgument, "dropout 1.5") {
            _ = try LSTM(inputSize: 2, hiddenSize: 2, dropout: 1.5, seed: 0, on: b)
        }
        expectTensorError("GRU", .invalidArgument, "dropout −0.1") {
            _ = try GRU(inputSize: 2, hiddenSize: 2, dropout: -0.1, seed: 0, on: b)
        }
        expectTensorError("LSTMCell", .invalidArgument, "cell size 0") { _ = try LSTMCell(inputSize: 0, hiddenSize: 2, seed: 0, on: b) }

        let lstm = try LSTM(inputSize: 3, hiddenSize: 4, layerCount: 2, seed: 0, on: b)
        let x = try rnnTensor([5, 2, 3], seed: 1, on: b)
        expectTensorError("LSTM", .shapeMismatch, "wrong input size") { _ = try lstm(rnnTensor([5, 2, 4], seed: 1, on: b)) }
        expectTensorError("LSTM", .shapeMismatch, "rank 1") { _ = try lstm(rnnTensor([3], seed: 1, on: b)) }
        expectTensorError("LSTM", .shapeMismatch, "rank 4") { _ = try lstm(rnnTensor([1, 5, 2, 3], seed: 1, on: b)) }
        expectTensorError("LSTM", .invalidArgument, "no steps") { _ = try lstm(Tensor.zeros([0, 2, 3], on: b)) }
        expectTensorError("LSTM", .invalidArgument, "no sequences") { _ = try lstm(Tensor.zeros([5, 0, 3], on: b)) }
        expectTensorError("LSTM", .shapeMismatch, "h0 of one layer") {
            _ = try lstm.forward(x, initialHidden: Tensor.zeros([1, 2, 4], on: b))
        }
        expectTensorError("LSTM", .shapeMismatch, "c0 of the wrong batch") {
            _ = try lstm.forward(x, initialCell: Tensor.zeros([2, 3, 4], on: b))
        }
        expectTensorError("LSTM", .shapeMismatch, "batched h0 for an unbatched input") {
            _ = try lstm.forward(rnnTensor([5, 3], seed: 1, on: b), initialHidden: Tensor.zeros([2, 1, 4], on: b))
        }
        expectTensorError("LSTM", .invalidArgument, "layer 2 of 2") { _ = try lstm.weights(layer: 2) }
        expectTensorError("LSTM", .invalidArgument, "reverse of a unidirectional layer") {
            _ = try lstm.weights(layer: 0, reverse: true)
        }
        let gru = try GRU(inputSize: 3, hiddenSize: 4, batchFirst: true, seed: 0, on: b)
        expectTensorError("GRU", .shapeMismatch, "h0 laid out batch-first") {
            _ = try gru.forward(rnnTensor([2, 5, 3], seed: 1, on: b), initialHidden: Tensor.zeros([2, 1, 4], on: b))
        }

        let cell = try GRUCell(inputSize: 3, hiddenSize: 4, seed: 0, on: b)
        expectTensorError("GRUCell", .shapeMismatch, "cell input size") { _ = try cell(rnnTensor([2, 5], seed: 1, on: b)) }
        expectTensorError("GRUCell", .shapeMismatch, "cell hidden batch") {
            _ = try cell(rnnTensor([2, 3], seed: 1, on: b), hidden: Tensor.zeros([3, 4], on: b))
        }
        expectTensorError("GRUCell", .shapeMismatch, "unbatched input, batched hidden") {
            _ = try cell(rnnTensor([3], seed: 1, on: b), hidden: Tensor.zeros([1, 4], on: b))
        }
        expectTensorError("GRUCell", .invalidArgument, "a state of two tensors") {
            _ = try cell.step(rnnTensor([2, 3], seed: 1, on: b), state: [Tensor.zeros([2, 4], on: b), Tensor.zeros([2, 4], on: b)], time: 0)
        }
        expectTensorError("GRUCell", .shapeMismatch, "unrolled over a rank-2 sequence") {
            _ = try cell.unrolled(rnnTensor([5, 3], seed: 1, on: b))
        }
        let lstmCell = try LSTMCell(inputSize: 3, hiddenSize: 4, seed: 0, on: b)
        expectTensorError("LSTMCell", .shapeMismatch, "cell state of the wrong size") {
            _ = try lstmCell(rnnTensor([2, 3], seed: 1, on: b), hidden: nil, cell: Tensor.zeros([2, 5], on: b))
        }
        // Tensors on two backends.
        if tb.isOpenCL {
            expectTensorError("LSTM", .backendMismatch, "h0 on another backend") {
                _ = try lstm.forward(x, initialHidden: Tensor.zeros([2, 2, 4], on: CPUBackend.shared))
            }
            expectTensorError("GRUCell", .backendMismatch, "hidden on another backend") {
                _ = try cell(rnnTensor([2, 3], seed: 1, on: b), hidden: Tensor.zeros([2, 4], on: CPUBackend.shared))
            }
        }
    }

    @Test("training smoke test: an LSTM learns to recall the first step with Adam and clipGradientNorm(maxNorm: 1)",
          arguments: TestBackend.all)
    func training(_ tb: TestBackend) throws {
        let b = tb.backend
        let (steps, batch, hidden) = (5, 16, 8)
        let lstm = try LSTM(inputSize: 1, hiddenSize: hidden, batchFirst: true, seed: 11, on: b)
        let head = try Linear(inputSize: hidden, outputSize: 1, seed: 12, on: b)
        let x = try rnnTensor([batch, steps, 1], seed: 13, on: b)
        let target = try x.sliced(axis: 1, start: 0, end: 1).reshaped(to: [batch, 1])
        let parameters = lstm.parameters() + head.parameters()
        let optimizer = try Adam(parameters, learningRate: 0.03)
        var losses: [Float] = []
        for _ in 0..<150 {
            let out = try lstm(x)
            let last = try out.sliced(axis: 1, start: steps - 1, end: steps).reshaped(to: [batch, hidden])
            let loss = try mseLoss(input: head(last), targets: target)
            losses.append(try loss.item())
            try loss.backward()
            let norm = try clipGradientNorm(parameters, maxNorm: 1)
            #expect(norm.isFinite)
            try optimizer.step()
            optimizer.zeroGradients()
        }
        let (first, final) = (losses[0], losses.suffix(5).reduce(0, +) / 5)
        #expect(first > 0.1, "the task is not trivial at initialisation: \(first)")
        #expect(final < 0.1 * first, "\(tb): loss \(first) → \(final)")
    }

    @Test("LSTM language model: logits equal the Float64 oracle of embedding → LSTM → decoder; it learns a periodic sequence",
          arguments: TestBackend.all)
    func languageModel(_ tb: TestBackend) throws {
        let b = tb.backend
        let (vocabulary, embed, hidden) = (5, 3, 6)
        let model = try LSTMLanguageModel(vocabularySize: vocabulary, embeddingSize: embed, hiddenSize: hidden, seed: 4, on: b)
        #expect(model.namedParameters().map(\.name) == ["embedding.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0",
                                                        "lstm.bias_ih_l0", "lstm.bias_hh_l0", "decoder.weight", "decoder.bias"])
        // Two sequences with period 4: 0 1 2 3 0 1 … and 1 2 3 4 1 2 …
        let (steps, batch) = (12, 2)
        let ids = (0...steps).flatMap { t in [Float(t % 4), Float(t % 4 + 1)] }
        let tokens = try Tensor(ids, shape: [steps + 1, batch], on: b)
        let input = try tokens.sliced(axis: 0, start: 0, end: steps)
        let logits = try model(input)
        #expect(logits.shape == [steps, batch, vocabulary])
        let p = try rnnParameters(model)
        let table = p["embedding.weight"] ?? []
        let x = ids.prefix(steps * batch).flatMap { table[(Int($0) * embed)..<(Int($0) * embed + embed)] }
        let lstmParams = Dictionary(uniqueKeysWithValues: p.filter { $0.key.hasPrefix("lstm.") }.map { (String($0.key.dropFirst(5)), $0.value) })
        let h = RecurrentOracle.layers(.lstm, layers: 1, directions: 1, steps: steps, batch: batch, inputSize: embed,
                                       hiddenSize: hidden, params: lstmParams, x: x, h0: nil, c0: nil).output
        let (w, bias) = (p["decoder.weight"] ?? [], p["decoder.bias"] ?? [])
        var expected: [Double] = [], loss = 0.0
        for r in 0..<(steps * batch) {
            let row = (0..<vocabulary).map { v in (0..<hidden).reduce(bias[v]) { $0 + w[v * hidden + $1] * h[r * hidden + $1] } }
            expected += row
            let target = Int(ids[r + batch])
            let top = row.max() ?? 0
            loss += Foundation.log(row.map { Foundation.exp($0 - top) }.reduce(0, +)) + top - row[target]
        }
        try rnnCheck(logits, expected, recurrentForwardTolerance, "language-model logits")
        let initial = try model.loss(tokens)
        try rnnCheck(initial, [loss / Double(steps * batch)], recurrentForwardTolerance, "mean next-token cross-entropy")
        #expect(throws: TensorError.self) { try model.loss(tokens.sliced(axis: 0, start: 0, end: 1)) }
        #expect(throws: TensorError.self) { try model(Tensor([7, 1], shape: [1, 2], on: b)) }

        let optimizer = try Adam(model.parameters(), learningRate: 0.05)
        var last: Float = 0
        for _ in 0..<60 {
            let l = try model.loss(tokens)
            last = try l.item()
            try l.backward()
            try clipGradientNorm(model.parameters(), maxNorm: 1)
            try optimizer.step()
            optimizer.zeroGradients()
        }
        let start = try initial.item()
        #expect(Double(last) < 0.1 * Double(start), "\(tb): cross-entropy \(start) → \(last)")
    }
}
