import KilnCore

// Gated cells beyond PyTorch's three: peephole LSTM, MGU, JANET, UGRNN and the Mogrifier LSTM.
// Every one follows the conventions of `LSTMCell`: x `[B, inputSize]`, h `[B, hiddenSize]`, weights
// `[G·H, …]` with gate blocks stacked, `weight_ih`/`weight_hh`/`bias_ih`/`bias_hh` (both biases, as
// PyTorch, which add up to the single bias of the papers), every tensor `U(−1/√H, 1/√H)` from the
// next Philox stream of `seed` unless stated otherwise.

/// An LSTM with diagonal peephole connections (Gers & Schmidhuber 2000; seed 000):
///
///     i = σ(W_i x + U_i h + w_ci ⊙ c + b_i)    f = σ(W_f x + U_f h + w_cf ⊙ c + b_f)
///     g = tanh(W_g x + U_g h + b_g)           c' = f ⊙ c + i ⊙ g
///     o = σ(W_o x + U_o h + w_co ⊙ c' + b_o)   h' = o ⊙ tanh(c')
///
/// The input and forget gates look at the old cell state, the output gate at the new one. Parameters:
/// `LSTMCell`'s four (gates i, f, g, o) and `weight_peephole` `[3, H]` (rows w_ci, w_cf, w_co).
/// State `[h, c]`.
public final class PeepholeLSTMCell: RecurrentCell {
    public var isTraining = true
    public let inputSize: Int
    public let hiddenSize: Int
    public let weights: RecurrentWeights
    /// `[3, hiddenSize]`: w_ci, w_cf, w_co.
    public let peephole: Parameter

    /// - Throws: `TensorError` naming `PeepholeLSTMCell` for a size < 1.
    public init(inputSize: Int, hiddenSize: Int, bias: Bool = true, seed: UInt64, on backend: any Backend) throws {
        try requirePositive(["inputSize": inputSize, "hiddenSize": hiddenSize], layer: "PeepholeLSTMCell")
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        var p = SeededParameters(seed: seed, on: backend)
        weights = try RecurrentWeights(gates: 4, inputSize: inputSize, hiddenSize: hiddenSize, bias: bias, &p)
        peephole = try p.uniform([3, hiddenSize], bound: 1 / Double(hiddenSize).squareRoot())
    }

    public var stateSizes: [Int] { [hiddenSize, hiddenSize] }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        weights.named("") + [("weight_peephole", peephole)]
    }

    /// `h'` of one step `[B, inputSize]` from a zero state.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try outputFromInitialState(input)
    }


    /// State `[h, c]`.
    public func step(_ input: Tensor, state: [Tensor], time: Int) throws -> [Tensor] {
        try checkStep(input, state)
        let (h, c) = (state[0], state[1])
        let pre: Tensor = try weights.projectInput(input) + matmul(h, weights.weightHH.value, transposeB: true)
        let gates = try splitBlocks(pre, 4)
        let w = try peephole.value.unstacked(axis: 0)
        let i: Tensor = try sigmoid(gates[0] + w[0] * c)
        let f: Tensor = try sigmoid(gates[1] + w[1] * c)
        let g: Tensor = try tanh(gates[2])
        let cNext: Tensor = try f * c + i * g
        let o: Tensor = try sigmoid(gates[3] + w[2] * cNext)
        return [try o * tanh(cNext), cNext]
    }
}

/// What MGU, JANET and UGRNN share: two gate blocks, state `[h]`.
public class TwoBlockRecurrentCell: RecurrentCell {
    public var isTraining = true
    public let inputSize: Int
    public let hiddenSize: Int
    /// Two blocks: the gate, then the candidate.
    public let weights: RecurrentWeights
    let name: String

    init(name: String, inputSize: Int, hiddenSize: Int, bias: Bool, seed: UInt64, on backend: any Backend) throws {
        try requirePositive(["inputSize": inputSize, "hiddenSize": hiddenSize], layer: name)
        self.name = name
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        var p = SeededParameters(seed: seed, on: backend)
        weights = try RecurrentWeights(gates: 2, inputSize: inputSize, hiddenSize: hiddenSize, bias: bias, &p)
    }

    public var stateSizes: [Int] { [hiddenSize] }

    public var ownParameters: [(name: String, parameter: Parameter)] { weights.named("") }

    /// `h'` of one step `[B, inputSize]` from a zero state.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try outputFromInitialState(input)
    }


    /// State `[h]`.
    public func step(_ input: Tensor, state: [Tensor], time: Int) throws -> [Tensor] {
        try checkStep(input, state)
        return [try next(x: weights.projectInput(input), h: state[0])]
    }

    /// h' from the projected input `[B, 2H]` (both biases included) and h.
    func next(x: Tensor, h: Tensor) throws -> Tensor {
        throw TensorError(.invalidArgument, op: name, "internal: no step")
    }
}

/// The Minimal Gated Unit (Zhou et al. 2016; seed 000), one gate:
///
///     f = σ(W_f x + U_f h + b_f)
///     h̃ = tanh(W_h x + U_h (f ⊙ h) + b_h)
///     h' = (1 − f) ⊙ h + f ⊙ h̃
///
/// Parameters `weight_ih` `[2H, I]`, `weight_hh` `[2H, H]`, `bias_ih`, `bias_hh` `[2H]` (blocks f, h̃).
public final class MGUCell: TwoBlockRecurrentCell {
    /// - Throws: `TensorError` naming `MGUCell` for a size < 1.
    public init(inputSize: Int, hiddenSize: Int, bias: Bool = true, seed: UInt64, on backend: any Backend) throws {
        try super.init(name: "MGUCell", inputSize: inputSize, hiddenSize: hiddenSize, bias: bias, seed: seed, on: backend)
    }

    override func next(x: Tensor, h: Tensor) throws -> Tensor {
        let xs = try splitBlocks(x, 2)
        let u = try splitBlocks(weights.weightHH.value, 2, axis: 0)
        let f: Tensor = try sigmoid(xs[0] + matmul(h, u[0], transposeB: true))
        let reset: Tensor = try f * h
        let candidate: Tensor = try tanh(xs[1] + matmul(reset, u[1], transposeB: true))
        return try h + f * (candidate - h)
    }
}

/// JANET, the forget-gate-only LSTM (van der Westhuizen & Lasenby 2018), with h = c:
///
///     s = W_f x + U_f h + b_f               c̃ = tanh(W_c x + U_c h + b_c)
///     h' = σ(s) ⊙ h + (1 − σ(s − β)) ⊙ c̃
///
/// This is the published cell. Seed 000's `JANET` row (`h̃ = tanh(W_h[f ⊙ h, x])`,
/// `h' = h + f ⊙ (h̃ − h)`) is algebraically the MGU (`MGUCell`). β (default 1) shifts the input gate
/// so that more information is accumulated than forgotten. Parameters: blocks f, c. The paper's chrono
/// initialisation of `b_f` is not applied (all tensors `U(−1/√H, 1/√H)`).
public final class JANETCell: TwoBlockRecurrentCell {
    /// β.
    public let beta: Float

    /// - Throws: `TensorError` naming `JANETCell` for a size < 1 or a non-finite β.
    public init(inputSize: Int, hiddenSize: Int, bias: Bool = true, beta: Float = 1, seed: UInt64,
                on backend: any Backend) throws {
        guard beta.isFinite else { throw TensorError(.invalidArgument, op: "JANETCell", "beta must be finite, got \(beta)") }
        self.beta = beta
        try super.init(name: "JANETCell", inputSize: inputSize, hiddenSize: hiddenSize, bias: bias, seed: seed, on: backend)
    }

    override func next(x: Tensor, h: Tensor) throws -> Tensor {
        let pre = try splitBlocks(x + matmul(h, weights.weightHH.value, transposeB: true), 2)
        let keep: Tensor = try sigmoid(pre[0]) * h
        let write: Tensor = try 1 - sigmoid(pre[0] - beta)
        return try keep + write * tanh(pre[1])
    }
}

/// The Update Gate RNN (Collins et al. 2017; seed 000):
///
///     u = σ(W_u x + U_u h + b_u)    h̃ = tanh(W_c x + U_c h + b_c)    h' = (1 − u) ⊙ h + u ⊙ h̃
///
/// Parameters: blocks u, c.
public final class UGRNNCell: TwoBlockRecurrentCell {
    /// - Throws: `TensorError` naming `UGRNNCell` for a size < 1.
    public init(inputSize: Int, hiddenSize: Int, bias: Bool = true, seed: UInt64, on backend: any Backend) throws {
        try super.init(name: "UGRNNCell", inputSize: inputSize, hiddenSize: hiddenSize, bias: bias, seed: seed, on: backend)
    }

    override func next(x: Tensor, h: Tensor) throws -> Tensor {
        let pre = try splitBlocks(x + matmul(h, weights.weightHH.value, transposeB: true), 2)
        let u: Tensor = try sigmoid(pre[0])
        return try h + u * (tanh(pre[1]) - h)
    }
}

/// The Mogrifier LSTM (Melis et al. 2020; seed 000): before each `LSTMCell` step, x and h gate each
/// other for `rounds` rounds,
///
///     round i odd:  x ← 2σ(Q_i h) ⊙ x        round i even:  h ← 2σ(R_i x) ⊙ h
///
/// then `c', h'` follow from the mogrified x and h with `LSTMCell`'s equations. Seed 000 omits the
/// factor 2; Kiln follows the paper (2σ keeps the expected scale at 1). Parameters: `LSTMCell`'s four,
/// then `mogrifier_q{i}` `[I, H]` (odd i, `U(−1/√H, 1/√H)`) and `mogrifier_r{i}` `[H, I]` (even i,
/// `U(−1/√I, 1/√I)`). State `[h, c]` (the un-mogrified h is the output).
public final class MogrifierLSTMCell: RecurrentCell {
    public var isTraining = true
    public let inputSize: Int
    public let hiddenSize: Int
    public let rounds: Int
    public let weights: RecurrentWeights
    /// Q_1, R_2, Q_3, … in round order.
    public let mogrifiers: [Parameter]

    /// - Throws: `TensorError` naming `MogrifierLSTMCell` for a size < 1 or rounds < 0.
    public init(inputSize: Int, hiddenSize: Int, rounds: Int = 5, bias: Bool = true, seed: UInt64,
                on backend: any Backend) throws {
        try requirePositive(["inputSize": inputSize, "hiddenSize": hiddenSize], layer: "MogrifierLSTMCell")
        guard rounds >= 0 else {
            throw TensorError(.invalidArgument, op: "MogrifierLSTMCell", "rounds must be ≥ 0, got \(rounds)")
        }
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        self.rounds = rounds
        var p = SeededParameters(seed: seed, on: backend)
        weights = try RecurrentWeights(gates: 4, inputSize: inputSize, hiddenSize: hiddenSize, bias: bias, &p)
        mogrifiers = try (0..<rounds).map { k in
            k % 2 == 0 ? try p.uniform([inputSize, hiddenSize], bound: 1 / Double(hiddenSize).squareRoot())
                       : try p.uniform([hiddenSize, inputSize], bound: 1 / Double(inputSize).squareRoot())
        }
    }

    public var stateSizes: [Int] { [hiddenSize, hiddenSize] }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        weights.named("") + mogrifiers.enumerated().map { k, q in ("mogrifier_\(k % 2 == 0 ? "q" : "r")\(k + 1)", q) }
    }

    /// `h'` of one step `[B, inputSize]` from a zero state.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try outputFromInitialState(input)
    }


    /// State `[h, c]`.
    public func step(_ input: Tensor, state: [Tensor], time: Int) throws -> [Tensor] {
        try checkStep(input, state)
        var x = input, h = state[0]
        for (k, m) in mogrifiers.enumerated() {
            if k % 2 == 0 {
                let gate: Tensor = try sigmoid(matmul(h, m.value, transposeB: true)) * 2
                x = try gate * x
            } else {
                let gate: Tensor = try sigmoid(matmul(x, m.value, transposeB: true)) * 2
                h = try gate * h
            }
        }
        let (hNext, cNext) = try RecurrentKind.lstm.step(weights.projectInput(x), hidden: h, cell: state[1], weights)
        return [hNext, cNext ?? state[1]]
    }
}
