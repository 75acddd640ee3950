import Foundation
import Kiln
import KilnTestSupport
import Testing

/// One extended cell under test: how to make it and its Float64 step oracle.
struct VariantCase: CustomStringConvertible, Sendable {
    let name: String
    let inputSize: Int
    let names: [String]
    let make: @Sendable (any Backend) throws -> any RecurrentCell
    let oracle: VariantOracle.Step
    var steps = 5

    var description: String { name }
}

private let variantCases: [VariantCase] = [
    VariantCase(name: "PeepholeLSTMCell", inputSize: 3,
                names: ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_peephole"],
                make: { try PeepholeLSTMCell(inputSize: 3, hiddenSize: 4, seed: 1, on: $0) },
                oracle: VariantOracle.peephole(inputSize: 3, hiddenSize: 4)),
    VariantCase(name: "MGUCell", inputSize: 3, names: ["weight_ih", "weight_hh", "bias_ih", "bias_hh"],
                make: { try MGUCell(inputSize: 3, hiddenSize: 4, seed: 2, on: $0) },
                oracle: VariantOracle.twoBlock(.mgu, inputSize: 3, hiddenSize: 4)),
    VariantCase(name: "JANETCell", inputSize: 3, names: ["weight_ih", "weight_hh", "bias_ih", "bias_hh"],
                make: { try JANETCell(inputSize: 3, hiddenSize: 4, beta: 1, seed: 3, on: $0) },
                oracle: VariantOracle.twoBlock(.janet(1), inputSize: 3, hiddenSize: 4)),
    VariantCase(name: "UGRNNCell", inputSize: 3, names: ["weight_ih", "weight_hh", "bias_ih", "bias_hh"],
                make: { try UGRNNCell(inputSize: 3, hiddenSize: 4, seed: 4, on: $0) },
                oracle: VariantOracle.twoBlock(.ugrnn, inputSize: 3, hiddenSize: 4)),
    VariantCase(name: "MogrifierLSTMCell", inputSize: 3,
                names: ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "mogrifier_q1", "mogrifier_r2", "mogrifier_q3"],
                make: { try MogrifierLSTMCell(inputSize: 3, hiddenSize: 4, rounds: 3, seed: 5, on: $0) },
                oracle: VariantOracle.mogrifier(inputSize: 3, hiddenSize: 4, rounds: 3)),
    VariantCase(name: "IndRNNCell", inputSize: 3, names: ["weight_ih", "weight_hh", "bias"],
                make: { try IndRNNCell(inputSize: 3, hiddenSize: 4, seed: 6, on: $0) },
                oracle: VariantOracle.indRNN(inputSize: 3, hiddenSize: 4)),
    VariantCase(name: "SRUCell (projected highway)", inputSize: 3, names: ["weight", "weight_c", "bias"],
                make: { try SRUCell(inputSize: 3, hiddenSize: 4, seed: 7, on: $0) },
                oracle: VariantOracle.sru(inputSize: 3, hiddenSize: 4)),
    VariantCase(name: "SRUCell (identity highway)", inputSize: 4, names: ["weight", "weight_c", "bias"],
                make: { try SRUCell(inputSize: 4, hiddenSize: 4, seed: 8, on: $0) },
                oracle: VariantOracle.sru(inputSize: 4, hiddenSize: 4)),
    VariantCase(name: "QRNNCell window 3", inputSize: 3, names: ["weight", "bias"],
                make: { try QRNNCell(inputSize: 3, hiddenSize: 4, window: 3, seed: 9, on: $0) },
                oracle: VariantOracle.qrnn(inputSize: 3, hiddenSize: 4, window: 3)),
    VariantCase(name: "QRNNCell window 1", inputSize: 3, names: ["weight", "bias"],
                make: { try QRNNCell(inputSize: 3, hiddenSize: 4, window: 1, seed: 9, on: $0) },
                oracle: VariantOracle.qrnn(inputSize: 3, hiddenSize: 4, window: 1)),
    VariantCase(name: "RHNCell depth 3", inputSize: 3,
                names: ["weight_ih", "weight_hh_l0", "bias_l0", "weight_hh_l1", "bias_l1", "weight_hh_l2", "bias_l2"],
                make: { try RHNCell(inputSize: 3, hiddenSize: 4, depth: 3, seed: 10, on: $0) },
                oracle: VariantOracle.rhn(inputSize: 3, hiddenSize: 4, depth: 3)),
    VariantCase(name: "ClockworkRNNCell", inputSize: 3, names: ["weight_ih", "weight_hh", "bias"],
                make: { try ClockworkRNNCell(inputSize: 3, moduleSize: 2, periods: [1, 2, 3], seed: 11, on: $0) },
                oracle: VariantOracle.clockwork(inputSize: 3, moduleSize: 2, periods: [1, 2, 3]), steps: 7),
    VariantCase(name: "PhasedLSTMCell", inputSize: 3,
                names: ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "period", "shift"],
                make: { try PhasedLSTMCell(inputSize: 3, hiddenSize: 4, openRatio: 0.3, seed: 12, on: $0) },
                oracle: VariantOracle.phased(inputSize: 3, hiddenSize: 4, openRatio: 0.3, leak: 1e-3), steps: 8),
    VariantCase(name: "DilatedRNN(RNNCell, 3)", inputSize: 3,
                names: ["cell.weight_ih", "cell.weight_hh", "cell.bias_ih", "cell.bias_hh"],
                make: { try DilatedRNN(inputSize: 3, hiddenSize: 4, dilation: 3, seed: 13, on: $0) },
                oracle: VariantOracle.dilated(VariantOracle.pytorch(.tanh, inputSize: 3, hiddenSize: 4), innerCount: 1,
                                              dilation: 3), steps: 7),
    VariantCase(name: "DilatedRNN(LSTMCell, 2)", inputSize: 3,
                names: ["cell.weight_ih", "cell.weight_hh", "cell.bias_ih", "cell.bias_hh"],
                make: { try DilatedRNN(cell: LSTMCell(inputSize: 3, hiddenSize: 4, seed: 14, on: $0), dilation: 2) },
                oracle: VariantOracle.dilated(VariantOracle.pytorch(.lstm, inputSize: 3, hiddenSize: 4), innerCount: 2,
                                              dilation: 2)),
    VariantCase(name: "ResidualRNN(GRU, LSTM, RNN)", inputSize: 2,
                names: ["0.weight_ih", "0.weight_hh", "0.bias_ih", "0.bias_hh", "1.weight_ih", "1.weight_hh", "1.bias_ih",
                        "1.bias_hh", "2.weight_ih", "2.weight_hh", "2.bias_ih", "2.bias_hh"],
                make: { b in
                    try ResidualRNN(cells: [GRUCell(inputSize: 2, hiddenSize: 3, seed: 15, on: b),
                                            LSTMCell(inputSize: 3, hiddenSize: 3, seed: 16, on: b),
                                            RNNCell(inputSize: 3, hiddenSize: 3, seed: 17, on: b)], scale: 0.5)
                },
                oracle: VariantOracle.residual([(VariantOracle.pytorch(.gru, inputSize: 2, hiddenSize: 3), 1, 2, 3),
                                                (VariantOracle.pytorch(.lstm, inputSize: 3, hiddenSize: 3), 2, 3, 3),
                                                (VariantOracle.pytorch(.tanh, inputSize: 3, hiddenSize: 3), 1, 3, 3)],
                                               scale: 0.5)),
    VariantCase(name: "GatedFeedbackRNN 3 layers", inputSize: 3,
                names: (0..<3).flatMap { j in ["weight_ih", "weight_hh", "bias", "gate_ih", "gate_hh"].map { "\($0)_l\(j)" } },
                make: { try GatedFeedbackRNN(inputSize: 3, hiddenSize: 2, layerCount: 3, seed: 18, on: $0) },
                oracle: VariantOracle.gatedFeedback(inputSize: 3, hiddenSize: 2, layers: 3)),
    VariantCase(name: "LinearRecurrentUnit", inputSize: 3,
                names: ["nu_log", "theta_log", "gamma_log", "B_re", "B_im", "C_re", "C_im", "D"],
                make: { try LinearRecurrentUnit(inputSize: 3, stateSize: 5, outputSize: 2, minRadius: 0.5, maxRadius: 0.95,
                                                seed: 19, on: $0) },
                oracle: VariantOracle.lru(inputSize: 3, stateSize: 5, outputSize: 2)),
    VariantCase(name: "HyperLSTMCell", inputSize: 3,
                names: ["weight_ih", "weight_hh", "bias", "weight_hz", "bias_hz", "weight_zh", "weight_zx", "weight_zb",
                        "hyper.weight_ih", "hyper.weight_hh", "hyper.bias_ih", "hyper.bias_hh"],
                make: { try HyperLSTMCell(inputSize: 3, hiddenSize: 4, hyperSize: 3, embeddingSize: 2, seed: 21, on: $0) },
                oracle: VariantOracle.hyperLSTM(inputSize: 3, hiddenSize: 4, hyperSize: 3, embeddingSize: 2), steps: 4),
    VariantCase(name: "EchoStateReservoir (leaky)", inputSize: 3, names: [],
                make: { try EchoStateReservoir(inputSize: 3, reservoirSize: 6, leakRate: 0.3, density: 0.5, seed: 20, on: $0) },
                oracle: VariantOracle.reservoir(inputSize: 3, size: 6, leak: 0.3)),
]

/// Parameters and buffers as Float64 arrays by name.
private func variantValues(_ m: any Module) throws -> [String: [Double]] {
    var out = try rnnParameters(m)
    for (name, t) in try m.namedBuffers() { out[name] = try rnnDoubles(t) }
    return out
}

/// The oracle run over `steps` steps of x `[T, B, I]`: the outputs (state[0] of each step, `[T, B, H]`)
/// and the final state.
private func oracleRun(_ c: VariantCase, _ p: [String: [Double]], _ x: [Double], _ state: [[Double]],
                       batch: Int) -> (output: [Double], state: [[Double]]) {
    var s = state, out: [Double] = []
    let stepSize = batch * c.inputSize
    for t in 0..<c.steps {
        s = c.oracle(p, Array(x[(t * stepSize)..<((t + 1) * stepSize)]), s, batch, t)
        out += s[0]
    }
    return (out, s)
}

@Suite("Extended recurrent cells")
struct RecurrentVariantTests {
    @Test("each extended cell, unrolled from a random state, equals its Float64 oracle; names and state sizes",
          arguments: TestBackend.all, variantCases)
    func forward(_ tb: TestBackend, _ c: VariantCase) throws {
        let b = tb.backend
        let nb = 2
        let cell = try c.make(b)
        #expect(cell.namedParameters().map(\.name) == c.names)
        #expect(cell.inputSize == c.inputSize && cell.stateSizes.first == cell.hiddenSize)
        let zero = try cell.initialState(batchSize: nb, on: b)
        #expect(zero.map(\.shape) == cell.stateSizes.map { [nb, $0] })
        let state = try cell.stateSizes.enumerated().map { k, size in try rnnTensor([nb, size], seed: 50 + UInt64(k), on: b) }
        let x = try rnnTensor([c.steps, nb, c.inputSize], seed: 60, on: b, range: -1.5...1.5)
        let (out, final) = try cell.unrolled(x, initialState: state)
        #expect(out.shape == [c.steps, nb, cell.hiddenSize])
        let p = try variantValues(cell)
        let expected = oracleRun(c, p, try rnnDoubles(x), try state.map(rnnDoubles), batch: nb)
        try rnnCheck(out, expected.output, recurrentForwardTolerance, "\(c) outputs")
        for (k, s) in final.enumerated() {
            try rnnCheck(s, expected.state[k], recurrentForwardTolerance, "\(c) final state \(k)")
        }
        // One step from the zero state through the Module call.
        let first = oracleRun(VariantCase(name: c.name, inputSize: c.inputSize, names: c.names, make: c.make,
                                          oracle: c.oracle, steps: 1), p, try rnnDoubles(x),
                              cell.stateSizes.map { [Double](repeating: 0, count: nb * $0) }, batch: nb)
        try rnnCheck(try cell(x.sliced(axis: 0, start: 0, end: 1).squeezed(axis: 0)), first.output,
                     recurrentForwardTolerance, "\(c) callAsFunction")
        // Shape errors name the cell.
        do {
            _ = try cell.step(rnnTensor([nb, c.inputSize + 1], seed: 1, on: b), state: state, time: 0)
            Issue.record("\(c): a wrong input size did not throw")
        } catch let e as TensorError {
            #expect(e.kind == .shapeMismatch && e.op == "\(type(of: cell))")
        }
        #expect(throws: TensorError.self) { try cell.step(x.sliced(axis: 0, start: 0, end: 1).squeezed(axis: 0),
                                                          state: Array(state.dropLast()), time: 0) }
    }

    @Test("extended-cell gradients w.r.t. inputs, initial states and parameters equal central differences of the oracle",
          arguments: TestBackend.all, variantCases)
    func gradients(_ tb: TestBackend, _ c: VariantCase) throws {
        let b = tb.backend
        let nb = 2
        let cell = try c.make(b)
        let state = try cell.stateSizes.enumerated().map { k, size in
            try rnnTensor([nb, size], seed: 70 + UInt64(k), on: b).requiringGradient()
        }
        let x = try rnnTensor([c.steps, nb, c.inputSize], seed: 80, on: b, range: -1.5...1.5).requiringGradient()
        let (out, final) = try cell.unrolled(x, initialState: state)
        let wo = testValues(out.count, seed: 90)
        let ws = final.enumerated().map { testValues($0.element.count, seed: 91 + UInt64($0.offset)) }
        var loss: Tensor = try (out * Tensor(wo, shape: out.shape, on: b)).sum()
        for (s, w) in zip(final, ws) { loss = try loss + (s * Tensor(w, shape: s.shape, on: b)).sum() }
        try loss.backward()

        let p = try variantValues(cell)
        let (wo64, ws64) = (wo.map(Double.init), ws.map { $0.map(Double.init) })
        func oracleLoss(_ p: [String: [Double]], _ xv: [Double], _ sv: [[Double]]) -> Double {
            let r = oracleRun(c, p, xv, sv, batch: nb)
            var total = zip(r.output, wo64).map(*).reduce(0, +)
            for (s, w) in zip(r.state, ws64) { total += zip(s, w).map(*).reduce(0, +) }
            return total
        }
        let xv = try rnnDoubles(x), sv = try state.map(rnnDoubles)
        let tol = recurrentGradientTolerance
        try rnnCheck(try #require(x.gradient), RecurrentOracle.finiteDifferences(xv) { oracleLoss(p, $0, sv) }, tol, "\(c) ∂/∂x")
        for (k, s) in state.enumerated() {
            let fd = RecurrentOracle.finiteDifferences(sv[k]) { v in
                var probe = sv
                probe[k] = v
                return oracleLoss(p, xv, probe)
            }
            // A state tensor the step never reads (the previous output of a stack) gets no gradient.
            let g = try s.gradient ?? Tensor.zeros(s.shape, on: b)
            try rnnCheck(g, fd, tol, "\(c) ∂/∂state[\(k)]")
        }
        for (name, parameter) in cell.namedParameters() {
            let fd = RecurrentOracle.finiteDifferences(p[name] ?? []) { v in
                var q = p
                q[name] = v
                return oracleLoss(q, xv, sv)
            }
            try rnnCheck(try #require(parameter.gradient, "\(c): \(name) got no gradient"), fd, tol, "\(c) ∂/∂\(name)")
        }
    }

    @Test("constructors validate their arguments", arguments: TestBackend.all)
    func invalidArguments(_ tb: TestBackend) throws {
        let b = tb.backend
        func expectInvalid(_ op: String, _ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) {
            do {
                try body()
                Issue.record("\(op) did not throw", sourceLocation: sourceLocation)
            } catch let e as TensorError {
                #expect(e.op == op, "\(e)", sourceLocation: sourceLocation)
            } catch { Issue.record("\(error)", sourceLocation: sourceLocation) }
        }
        expectInvalid("PeepholeLSTMCell") { _ = try PeepholeLSTMCell(inputSize: 0, hiddenSize: 2, seed: 0, on: b) }
        expectInvalid("MGUCell") { _ = try MGUCell(inputSize: 2, hiddenSize: 0, seed: 0, on: b) }
        expectInvalid("JANETCell") { _ = try JANETCell(inputSize: 2, hiddenSize: 2, beta: .nan, seed: 0, on: b) }
        expectInvalid("MogrifierLSTMCell") { _ = try MogrifierLSTMCell(inputSize: 2, hiddenSize: 2, rounds: -1, seed: 0, on: b) }
        expectInvalid("QRNNCell") { _ = try QRNNCell(inputSize: 2, hiddenSize: 2, window: 0, seed: 0, on: b) }
        expectInvalid("RHNCell") { _ = try RHNCell(inputSize: 2, hiddenSize: 2, depth: 0, seed: 0, on: b) }
        expectInvalid("ClockworkRNNCell") { _ = try ClockworkRNNCell(inputSize: 2, moduleSize: 2, periods: [1, 0], seed: 0, on: b) }
        expectInvalid("ClockworkRNNCell") { _ = try ClockworkRNNCell(inputSize: 2, moduleSize: 2, periods: [], seed: 0, on: b) }
        expectInvalid("PhasedLSTMCell") { _ = try PhasedLSTMCell(inputSize: 2, hiddenSize: 2, openRatio: 0, seed: 0, on: b) }
        expectInvalid("DilatedRNN") { _ = try DilatedRNN(inputSize: 2, hiddenSize: 2, dilation: 0, seed: 0, on: b) }
        expectInvalid("ResidualRNN") { _ = try ResidualRNN(cells: []) }
        expectInvalid("ResidualRNN") {
            _ = try ResidualRNN(cells: [GRUCell(inputSize: 2, hiddenSize: 3, seed: 0, on: b),
                                        GRUCell(inputSize: 2, hiddenSize: 3, seed: 0, on: b)])
        }
        expectInvalid("GatedFeedbackRNN") { _ = try GatedFeedbackRNN(inputSize: 2, hiddenSize: 2, layerCount: 0, seed: 0, on: b) }
        expectInvalid("LinearRecurrentUnit") {
            _ = try LinearRecurrentUnit(inputSize: 2, stateSize: 2, outputSize: 2, minRadius: 0.9, maxRadius: 0.5, seed: 0, on: b)
        }
        expectInvalid("EchoStateReservoir") { _ = try EchoStateReservoir(inputSize: 2, reservoirSize: 4, leakRate: 0, seed: 0, on: b) }
        let phased = try PhasedLSTMCell(inputSize: 2, hiddenSize: 2, seed: 0, on: b)
        expectInvalid("PhasedLSTMCell") {
            _ = try phased.step(Tensor.zeros([3, 2], on: b), state: phased.initialState(batchSize: 3, on: b),
                                timestamps: Tensor.zeros([2], on: b))
        }
    }

    @Test("clockwork modules update on their periods; the LRU is stable with |λ| in [r_min, r_max]",
          arguments: TestBackend.all)
    func structure(_ tb: TestBackend) throws {
        let b = tb.backend
        let clockwork = try ClockworkRNNCell(inputSize: 2, moduleSize: 3, periods: [1, 2, 4], seed: 3, on: b)
        let w = try clockwork.weightHH.value.scalars()
        for row in 0..<9 { for column in 0..<9 where column / 3 < row / 3 {
            #expect(w[row * 9 + column] == 0, "module \(row / 3) must not read the faster module \(column / 3)")
        } }
        let h = try rnnTensor([1, 9], seed: 4, on: b)
        let x = try rnnTensor([1, 2], seed: 5, on: b)
        for t in 0..<8 {
            let next = try clockwork.step(x, state: [h], time: t)[0].scalars(), old = try h.scalars()
            for (k, period) in [1, 2, 4].enumerated() {
                let same = (0..<3).allSatisfy { next[k * 3 + $0] == old[k * 3 + $0] }
                #expect(same == (t % period != 0), "t = \(t): module \(k) of period \(period)")
            }
        }
        let lru = try LinearRecurrentUnit(inputSize: 2, stateSize: 64, outputSize: 2, minRadius: 0.5, maxRadius: 0.9,
                                          seed: 6, on: b)
        let (re, im) = try lru.eigenvalues()
        let moduli = zip(try re.scalars(), try im.scalars()).map { ($0 * $0 + $1 * $1).squareRoot() }
        #expect(moduli.allSatisfy { $0 >= 0.5 - 1e-5 && $0 <= 0.9 + 1e-5 }, "\(moduli)")
        #expect(moduli.max()! > 0.85 && moduli.min()! < 0.55, "|λ| fills the ring")
        // Stable: the impulse response decays.
        let impulse = try Tensor.concatenated([rnnTensor([1, 1, 2], seed: 7, on: b), Tensor.zeros([99, 1, 2], on: b)], axis: 0)
        let response = try lru.unrolled(impulse).state
        let energy = try square(response[1]).sum().item() + square(response[2]).sum().item()
        #expect(energy < 1e-6, "the state after 99 silent steps: \(energy)")
    }

    @Test("echo state network: spectral radius as asked, ridge readout solves the normal equations, a delay task is learnt",
          arguments: TestBackend.all)
    func echoStateNetwork(_ tb: TestBackend) throws {
        let b = tb.backend
        let n = 40
        let esn = try EchoStateNetwork(inputSize: 1, reservoirSize: n, outputSize: 1, spectralRadius: 0.8, density: 0.2,
                                       seed: 9, on: b)
        #expect(esn.namedParameters().map(\.name) == ["readout.weight", "readout.bias"])
        #expect(try esn.namedBuffers().map(\.name) == ["reservoir.weight_in", "reservoir.weight"])
        // ρ(W) by Gelfand's formula ‖W^1024‖^(1/1024), an estimator independent of the library's.
        var w = try rnnDoubles(esn.reservoir.weight), logScale = 0.0
        for _ in 0..<10 {
            var square = [Double](repeating: 0, count: n * n)
            for i in 0..<n { for k in 0..<n where w[i * n + k] != 0 { for j in 0..<n { square[i * n + j] += w[i * n + k] * w[k * n + j] } } }
            let norm = square.reduce(0) { $0 + $1 * $1 }.squareRoot()
            logScale = 2 * logScale + Foundation.log(norm)
            w = square.map { $0 / norm }
        }
        let radius = Foundation.exp(logScale / 1024)
        #expect(Swift.abs(radius - 0.8) < 0.03, "spectral radius \(radius)")
        // The same reservoir on every backend.
        let cpu = try EchoStateNetwork(inputSize: 1, reservoirSize: n, outputSize: 1, spectralRadius: 0.8, density: 0.2,
                                       seed: 9, on: CPUBackend.shared)
        #expect(try esn.reservoir.weight.scalars() == cpu.reservoir.weight.scalars())

        // Task: y_t = x_{t−2}. Fit on 3 sequences of 60 steps after a washout of 10.
        let (steps, batch, washout, ridge) = (60, 3, 10, 1e-4)
        let x = try rnnTensor([steps, batch, 1], seed: 10, on: b, range: -0.8...0.8)
        let y = try Tensor.concatenated([Tensor.zeros([2, batch, 1], on: b), x.sliced(axis: 0, start: 0, end: steps - 2)], axis: 0)
        let mse = try esn.fit(x, targets: y, washout: washout, ridge: ridge)
        #expect(mse < 2e-3, "training MSE \(mse) (target variance ≈ 0.21)")
        // Optimality: Sᵀ(S W + b − Y) + λ·W = 0 and Σ(S W + b − Y) = 0, in Float64 from the features.
        let features = try rnnDoubles(esn.features(x).sliced(axis: 0, start: washout))
        let targets = try rnnDoubles(y.sliced(axis: 0, start: washout))
        let (wo, bo) = (try rnnDoubles(esn.readout.weight.value), try rnnDoubles(esn.readout.bias!.value))
        let f = n + 1, rows = targets.count
        var residual = [Double](repeating: 0, count: rows)
        for r in 0..<rows {
            var s = bo[0] - targets[r]
            for j in 0..<f { s += wo[j] * features[r * f + j] }
            residual[r] = s
        }
        var worst = Swift.abs(residual.reduce(0, +))
        for j in 0..<f {
            var g = ridge * wo[j]
            for r in 0..<rows { g += features[r * f + j] * residual[r] }
            worst = Swift.max(worst, Swift.abs(g))
        }
        #expect(worst < 1e-3, "the ridge normal equations hold to \(worst)")
        let predictions = try esn(x).sliced(axis: 0, start: washout)
        let kilnMSE = try rnnDoubles(predictions).enumerated().map { ($1 - targets[$0]) * ($1 - targets[$0]) }.reduce(0, +) / Double(rows)
        #expect(Swift.abs(kilnMSE - mse) < 1e-4 + 0.05 * mse, "readout MSE \(kilnMSE) vs fit \(mse)")
        // A state dictionary round trip restores the reservoir and the readout.
        let other = try EchoStateNetwork(inputSize: 1, reservoirSize: n, outputSize: 1, seed: 99, on: b)
        try other.loadStateDictionary(esn.stateDictionary())
        try rnnCheck(try other(x), try rnnDoubles(esn(x)), .exact, "reloaded ESN")
        #expect(throws: TensorError.self) { try esn.fit(x, targets: y, washout: steps) }
        #expect(throws: TensorError.self) { try esn.fit(x, targets: x.sliced(axis: 0, start: 1)) }
    }
}
