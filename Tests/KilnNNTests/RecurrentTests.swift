import Foundation
import Kiln
import KilnTestSupport
import Testing

// MARK: - A hand-unrolled composition of Kiln ops (no Recurrent code)

/// The layer's recurrence written out step by step with `sliced`, `matmul`, `sigmoid` and `tanh`
/// from the layer's parameters, independent of the library's projection, `unstacked` and step code.
private func handUnrolled(_ c: RecurrentCase, _ layer: RecurrentLayer, _ x: Tensor, _ h0: Tensor?,
                          _ c0: Tensor?) throws -> (Tensor, Tensor, Tensor?) {
    let b = x.backend
    let (nb, nh, nd, nt) = (c.effectiveBatch, c.hiddenSize, c.directions, c.steps)
    var sequence: Tensor = c.unbatched ? try x.unsqueezed(axis: 1) : c.batchFirst ? try x.transposed(0, 1) : x
    let h0b: Tensor? = try h0.map { c.unbatched ? try $0.unsqueezed(axis: 1) : $0 }
    let c0b: Tensor? = try c0.map { c.unbatched ? try $0.unsqueezed(axis: 1) : $0 }
    func state(_ s: Tensor?, _ slot: Int) throws -> Tensor {
        try s.map { try $0.sliced(axis: 0, start: slot, end: slot + 1).reshaped(to: [nb, nh]) }
            ?? Tensor.zeros([nb, nh], on: b)
    }
    func chunk(_ m: Tensor, _ k: Int) throws -> Tensor { try m.sliced(axis: 1, start: k * nh, end: (k + 1) * nh) }
    var hs: [Tensor] = [], cs: [Tensor] = []
    for l in 0..<c.layers {
        var directionOutputs: [Tensor] = []
        for d in 0..<nd {
            let w = try layer.weights(layer: l, reverse: d == 1)
            var h = try state(h0b, l * nd + d), cell = try state(c0b, l * nd + d)
            var outputs = [Tensor](repeating: h, count: nt)
            for t in (d == 0 ? Array(0..<nt) : Array((0..<nt).reversed())) {
                let xt = try sequence.sliced(axis: 0, start: t, end: t + 1).reshaped(to: [nb, sequence.shape[2]])
                var gi: Tensor = try matmul(xt, w.weightIH.value, transposeB: true)
                if let bi = w.biasIH { gi = try gi + bi.value }
                var gh: Tensor = try matmul(h, w.weightHH.value, transposeB: true)
                if let bh = w.biasHH { gh = try gh + bh.value }
                switch c.kind {
                case .tanh: h = try tanh(gi + gh)
                case .relu: h = try relu(gi + gh)
                case .lstm:
                    let s: Tensor = try gi + gh
                    let i: Tensor = try sigmoid(chunk(s, 0)), f: Tensor = try sigmoid(chunk(s, 1))
                    let g: Tensor = try tanh(chunk(s, 2)), o: Tensor = try sigmoid(chunk(s, 3))
                    let kept: Tensor = try f * cell
                    cell = try kept + i * g
                    h = try o * tanh(cell)
                case .gru:
                    let r: Tensor = try sigmoid(chunk(gi, 0) + chunk(gh, 0))
                    let z: Tensor = try sigmoid(chunk(gi, 1) + chunk(gh, 1))
                    let n: Tensor = try tanh(chunk(gi, 2) + r * chunk(gh, 2))
                    let keep: Tensor = try z * h
                    h = try (1 - z) * n + keep
                }
                outputs[t] = h
            }
            directionOutputs.append(try Tensor.concatenated(outputs.map { try $0.unsqueezed(axis: 0) }, axis: 0))
            hs.append(h)
            cs.append(cell)
        }
        sequence = nd == 1 ? directionOutputs[0] : try Tensor.concatenated(directionOutputs, axis: 2)
    }
    let output: Tensor = c.unbatched ? try sequence.squeezed(axis: 1)
        : c.batchFirst ? try sequence.transposed(0, 1) : sequence
    func final(_ v: [Tensor]) throws -> Tensor {
        let s = try Tensor.concatenated(v.map { try $0.unsqueezed(axis: 0) }, axis: 0)
        return c.unbatched ? try s.squeezed(axis: 1) : s
    }
    return (output, try final(hs), c.kind == .lstm ? try final(cs) : nil)
}

/// Σ a·b.
private func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).map(*).reduce(0, +) }

// MARK: - Cases

private let forwardCases: [RecurrentCase] = [
    RecurrentCase(kind: .lstm, layers: 2, bidirectional: true, withHidden: true, withCell: true),
    RecurrentCase(kind: .lstm, layers: 1, bidirectional: true, batchFirst: true, withHidden: true),
    RecurrentCase(kind: .lstm, layers: 2, batchFirst: true, unbatched: true, withHidden: true, withCell: true),
    RecurrentCase(kind: .gru, layers: 2, bidirectional: true, batchFirst: true, withHidden: true),
    RecurrentCase(kind: .gru, layers: 1, bias: false, steps: 5, batch: 1),
    RecurrentCase(kind: .gru, layers: 3, unbatched: true),
    RecurrentCase(kind: .tanh, layers: 2, withHidden: true),
    RecurrentCase(kind: .tanh, layers: 3, bias: false, withHidden: true),
    RecurrentCase(kind: .relu, layers: 1, bidirectional: true, bias: false, unbatched: true, withHidden: true),
    RecurrentCase(kind: .tanh, layers: 1, bidirectional: true, batchFirst: true, steps: 1, batch: 2),
]

private let gradientCases: [RecurrentCase] = [
    RecurrentCase(kind: .lstm, layers: 2, bidirectional: true, steps: 3, batch: 2, inputSize: 2, hiddenSize: 3,
                  withHidden: true, withCell: true),
    RecurrentCase(kind: .gru, layers: 2, bidirectional: true, batchFirst: true, steps: 3, batch: 2, inputSize: 2,
                  hiddenSize: 3, withHidden: true),
    RecurrentCase(kind: .tanh, layers: 2, steps: 3, batch: 2, inputSize: 2, hiddenSize: 3, withHidden: true),
    RecurrentCase(kind: .relu, layers: 1, bidirectional: true, bias: false, unbatched: true, steps: 3, inputSize: 2,
                  hiddenSize: 3, withHidden: true),
]

@Suite("Recurrent cells and layers")
struct RecurrentTests {
    // MARK: Cells

    @Test("RNNCell, LSTMCell, GRUCell equal the Float64 oracle: batched, unbatched, zero state, unrolled",
          arguments: TestBackend.all)
    func cells(_ tb: TestBackend) throws {
        let b = tb.backend
        let (ni, nh, nb) = (4, 5, 3)
        for kind in RecurrentOracle.Kind.allCases {
            let cell: any RecurrentCell
            switch kind {
            case .tanh: cell = try RNNCell(inputSize: ni, hiddenSize: nh, seed: 7, on: b)
            case .relu: cell = try RNNCell(inputSize: ni, hiddenSize: nh, nonlinearity: .relu, seed: 7, on: b)
            case .lstm: cell = try LSTMCell(inputSize: ni, hiddenSize: nh, seed: 7, on: b)
            case .gru: cell = try GRUCell(inputSize: ni, hiddenSize: nh, seed: 7, on: b)
            }
            let g = kind.gates
            #expect(cell.namedParameters().map(\.name) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"])
            #expect(cell.namedParameters().map(\.parameter.shape) == [[g * nh, ni], [g * nh, nh], [g * nh], [g * nh]])
            let params = try rnnParameters(cell)
            let bound = 1 / Double(nh).squareRoot()
            #expect(params.values.allSatisfy { $0.allSatisfy { Swift.abs($0) <= bound } }, "\(kind): U(−1/√H, 1/√H)")

            let x = try rnnTensor([nb, ni], seed: 1, on: b, range: -2...2)
            let h = try rnnTensor([nb, nh], seed: 2, on: b), c = try rnnTensor([nb, nh], seed: 3, on: b)
            let (xv, hv, cv) = (try rnnDoubles(x), try rnnDoubles(h), try rnnDoubles(c))
            let expected = RecurrentOracle.step(kind, x: xv, h: hv, c: cv, batch: nb, inputSize: ni, hiddenSize: nh,
                                                params: params, suffix: "")
            let zeros = [Double](repeating: 0, count: nb * nh)
            let fromZero = RecurrentOracle.step(kind, x: xv, h: zeros, c: zeros, batch: nb, inputSize: ni,
                                                hiddenSize: nh, params: params, suffix: "")
            let tol = recurrentForwardTolerance
            switch cell {
            case let lstm as LSTMCell:
                let (h1, c1) = try lstm(x, hidden: h, cell: c)
                try rnnCheck(h1, expected.h, tol, "LSTMCell h'")
                try rnnCheck(c1, expected.c, tol, "LSTMCell c'")
                let (hu, cu) = try lstm(x.sliced(axis: 0, start: 1, end: 2).squeezed(axis: 0),
                                        hidden: h.sliced(axis: 0, start: 1, end: 2).squeezed(axis: 0),
                                        cell: c.sliced(axis: 0, start: 1, end: 2).squeezed(axis: 0))
                #expect(hu.shape == [nh] && cu.shape == [nh])
                try rnnCheck(hu, Array(expected.h[nh..<(2 * nh)]), tol, "LSTMCell unbatched h'")
                try rnnCheck(cu, Array(expected.c[nh..<(2 * nh)]), tol, "LSTMCell unbatched c'")
            case let rnn as RNNCell:
                try rnnCheck(try rnn(x, hidden: h), expected.h, tol, "RNNCell(\(kind))")
                let hu = try rnn(x.sliced(axis: 0, start: 1, end: 2).squeezed(axis: 0),
                                 hidden: h.sliced(axis: 0, start: 1, end: 2).squeezed(axis: 0))
                try rnnCheck(hu, Array(expected.h[nh..<(2 * nh)]), tol, "RNNCell unbatched")
            case let gru as GRUCell:
                try rnnCheck(try gru(x, hidden: h), expected.h, tol, "GRUCell")
                let hu = try gru(x.sliced(axis: 0, start: 1, end: 2).squeezed(axis: 0),
                                 hidden: h.sliced(axis: 0, start: 1, end: 2).squeezed(axis: 0))
                try rnnCheck(hu, Array(expected.h[nh..<(2 * nh)]), tol, "GRUCell unbatched")
            default: Issue.record("unexpected cell \(type(of: cell))")
            }
            try rnnCheck(try cell(x), fromZero.h, tol, "\(kind) cell from a zero state")
            let stepped = try cell.step(x, state: kind == .lstm ? [h, c] : [h], time: 0)
            try rnnCheck(stepped[0], expected.h, tol, "\(kind) step")

            // unrolled over [T, B, I] equals the one-layer oracle (the cell's names with suffix _l0).
            let seq = try rnnTensor([4, nb, ni], seed: 4, on: b, range: -2...2)
            let renamed = Dictionary(uniqueKeysWithValues: params.map { ($0.key + "_l0", $0.value) })
            let oracle = RecurrentOracle.layers(kind, layers: 1, directions: 1, steps: 4, batch: nb, inputSize: ni,
                                                hiddenSize: nh, params: renamed, x: try rnnDoubles(seq), h0: hv,
                                                c0: kind == .lstm ? cv : nil)
            let (out, final) = try cell.unrolled(seq, initialState: kind == .lstm ? [h, c] : [h])
            #expect(out.shape == [4, nb, nh])
            try rnnCheck(out, oracle.output, tol, "\(kind) unrolled")
            try rnnCheck(final[0], oracle.hidden, tol, "\(kind) unrolled final h")
            if kind == .lstm { try rnnCheck(final[1], oracle.cell, tol, "LSTM unrolled final c") }
        }
    }

    @Test("cell gradients (input, state, parameters) equal central differences of the Float64 oracle",
          arguments: TestBackend.all)
    func cellGradients(_ tb: TestBackend) throws {
        let b = tb.backend
        let (ni, nh, nb, nt) = (3, 4, 2, 3)
        for kind in RecurrentOracle.Kind.allCases {
            let cell: any RecurrentCell
            switch kind {
            case .tanh: cell = try RNNCell(inputSize: ni, hiddenSize: nh, seed: 5, on: b)
            case .relu: cell = try RNNCell(inputSize: ni, hiddenSize: nh, nonlinearity: .relu, seed: 5, on: b)
            case .lstm: cell = try LSTMCell(inputSize: ni, hiddenSize: nh, seed: 5, on: b)
            case .gru: cell = try GRUCell(inputSize: ni, hiddenSize: nh, seed: 5, on: b)
            }
            let seq = try rnnTensor([nt, nb, ni], seed: 8, on: b, range: -2...2).requiringGradient()
            let h = try rnnTensor([nb, nh], seed: 9, on: b).requiringGradient()
            let c = try rnnTensor([nb, nh], seed: 10, on: b).requiringGradient()
            let (out, state) = try cell.unrolled(seq, initialState: kind == .lstm ? [h, c] : [h])
            let wo = testValues(out.count, seed: 30), wc = testValues(nb * nh, seed: 31)
            var loss: Tensor = try (out * Tensor(wo, shape: out.shape, on: b)).sum()
            if kind == .lstm { loss = try loss + (state[1] * Tensor(wc, shape: [nb, nh], on: b)).sum() }
            try loss.backward()

            let params = try rnnParameters(cell)
            let (wo64, wc64) = (wo.map(Double.init), wc.map(Double.init))
            func oracleLoss(_ p: [String: [Double]], _ x: [Double], _ h0: [Double], _ c0: [Double]) -> Double {
                let renamed = Dictionary(uniqueKeysWithValues: p.map { ($0.key + "_l0", $0.value) })
                let r = RecurrentOracle.layers(kind, layers: 1, directions: 1, steps: nt, batch: nb, inputSize: ni,
                                               hiddenSize: nh, params: renamed, x: x, h0: h0, c0: c0)
                return dot(r.output, wo64) + (kind == .lstm ? dot(r.cell, wc64) : 0)
            }
            let (xv, hv, cv) = (try rnnDoubles(seq), try rnnDoubles(h), try rnnDoubles(c))
            let tol = recurrentGradientTolerance
            try rnnCheck(try #require(seq.gradient), RecurrentOracle.finiteDifferences(xv) { oracleLoss(params, $0, hv, cv) },
                         tol, "\(kind) ∂/∂x")
            try rnnCheck(try #require(h.gradient), RecurrentOracle.finiteDifferences(hv) { oracleLoss(params, xv, $0, cv) },
                         tol, "\(kind) ∂/∂h0")
            if kind == .lstm {
                try rnnCheck(try #require(c.gradient),
                             RecurrentOracle.finiteDifferences(cv) { oracleLoss(params, xv, hv, $0) }, tol, "∂/∂c0")
            }
            for (name, p) in cell.namedParameters() {
                let fd = RecurrentOracle.finiteDifferences(params[name] ?? []) { v in
                    var q = params
                    q[name] = v
                    return oracleLoss(q, xv, hv, cv)
                }
                try rnnCheck(try #require(p.gradient, "\(kind) \(name) got no gradient"), fd, tol, "\(kind) ∂/∂\(name)")
            }
        }
    }

    // MARK: Layers

    @Test("RNN, LSTM, GRU layers equal a hand-unrolled composition of Kiln ops and the Float64 oracle",
          arguments: TestBackend.all, forwardCases)
    func layerForward(_ tb: TestBackend, _ c: RecurrentCase) throws {
        let b = tb.backend
        let layer = try c.makeLayer(seed: 17, on: b)
        let x = try rnnTensor(c.inputShape, seed: 1, on: b, range: -2...2)
        let h0 = c.withHidden ? try rnnTensor(c.stateShape, seed: 2, on: b) : nil
        let c0 = c.withCell ? try rnnTensor(c.stateShape, seed: 3, on: b) : nil
        let (out, hn, cn) = try c.forward(layer, x, h0, c0)
        let outShape = c.unbatched ? [c.steps, c.directions * c.hiddenSize]
            : c.batchFirst ? [c.batch, c.steps, c.directions * c.hiddenSize] : [c.steps, c.batch, c.directions * c.hiddenSize]
        #expect(out.shape == outShape)
        #expect(hn.shape == c.stateShape)
        #expect(cn?.shape == (c.kind == .lstm ? c.stateShape : nil))
        #expect(try layer(x).shape == outShape)

        let expected = c.oracle(params: try rnnParameters(layer), x: try rnnDoubles(x), h0: try h0.map(rnnDoubles),
                                c0: try c0.map(rnnDoubles))
        let tol = recurrentForwardTolerance
        try rnnCheck(out, expected.output, tol, "\(c) output vs oracle")
        try rnnCheck(hn, expected.hidden, tol, "\(c) h_n vs oracle")
        if let cn { try rnnCheck(cn, expected.cell, tol, "\(c) c_n vs oracle") }

        let (uo, uh, uc) = try handUnrolled(c, layer, x, h0, c0)
        let close = Tolerance(absolute: 2e-6, relative: 1e-5)
        try rnnCheck(out, try rnnDoubles(uo), close, "\(c) output vs hand-unrolled ops")
        try rnnCheck(hn, try rnnDoubles(uh), close, "\(c) h_n vs hand-unrolled ops")
        if let cn, let uc { try rnnCheck(cn, try rnnDoubles(uc), close, "\(c) c_n vs hand-unrolled ops") }
    }

    @Test("layer gradients w.r.t. input, initial states and every parameter equal central differences of the oracle",
          arguments: TestBackend.all, gradientCases)
    func layerGradients(_ tb: TestBackend, _ c: RecurrentCase) throws {
        let b = tb.backend
        let layer = try c.makeLayer(seed: 23, on: b)
        let x = try rnnTensor(c.inputShape, seed: 4, on: b, range: -2...2).requiringGradient()
        let h0 = c.withHidden ? try rnnTensor(c.stateShape, seed: 5, on: b).requiringGradient() : nil
        let c0 = c.withCell ? try rnnTensor(c.stateShape, seed: 6, on: b).requiringGradient() : nil
        let (out, hn, cn) = try c.forward(layer, x, h0, c0)
        let wo = testValues(out.count, seed: 40), wh = testValues(hn.count, seed: 41), wc = testValues(hn.count, seed: 42)
        var loss: Tensor = try (out * Tensor(wo, shape: out.shape, on: b)).sum()
        loss = try loss + (hn * Tensor(wh, shape: hn.shape, on: b)).sum()
        if let cn { loss = try loss + (cn * Tensor(wc, shape: cn.shape, on: b)).sum() }
        try loss.backward()

        let params = try rnnParameters(layer)
        let (wo64, wh64, wc64) = (wo.map(Double.init), wh.map(Double.init), wc.map(Double.init))
        func oracleLoss(_ p: [String: [Double]], _ xv: [Double], _ hv: [Double]?, _ cv: [Double]?) -> Double {
            let r = c.oracle(params: p, x: xv, h0: hv, c0: cv)
            return dot(r.output, wo64) + dot(r.hidden, wh64) + (c.kind == .lstm ? dot(r.cell, wc64) : 0)
        }
        let xv = try rnnDoubles(x), hv = try h0.map(rnnDoubles), cv = try c0.map(rnnDoubles)
        let tol = recurrentGradientTolerance
        try rnnCheck(try #require(x.gradient), RecurrentOracle.finiteDifferences(xv) { oracleLoss(params, $0, hv, cv) },
                     tol, "\(c) ∂/∂x")
        if let h0, let hv {
            try rnnCheck(try #require(h0.gradient),
                         RecurrentOracle.finiteDifferences(hv) { oracleLoss(params, xv, $0, cv) }, tol, "\(c) ∂/∂h0")
        }
        if let c0, let cv {
            try rnnCheck(try #require(c0.gradient),
                         RecurrentOracle.finiteDifferences(cv) { oracleLoss(params, xv, hv, $0) }, tol, "\(c) ∂/∂c0")
        }
        #expect(layer.namedParameters().count == c.layers * c.directions * (c.bias ? 4 : 2))
        for (name, p) in layer.namedParameters() {
            let fd = RecurrentOracle.finiteDifferences(params[name] ?? []) { v in
                var q = params
                q[name] = v
                return oracleLoss(q, xv, hv, cv)
            }
            try rnnCheck(try #require(p.gradient, "\(c): \(name) got no gradient"), fd, tol, "\(c) ∂/∂\(name)")
        }
    }
}
