import KilnCore

/// A recurrent cell: one time step of a recurrence, `state_t = f(x_t, state_{t−1})`, with the
/// state as a list of tensors whose first element is the output `h_t` `[B, hiddenSize]`.
///
/// `RNNCell`, `LSTMCell` and `GRUCell` (PyTorch's cells) and the extended cells (`IndRNNCell`,
/// `MGUCell`, …) share this interface, so `unrolled(_:initialState:)` runs any of them over a
/// sequence with back-propagation through time by autograd.
public protocol RecurrentCell: Module {
    /// The size of each input step `x_t`.
    var inputSize: Int { get }
    /// The size of the output `h_t`.
    var hiddenSize: Int { get }
    /// The feature size of each state tensor (each is `[B, size]`); the first is `hiddenSize`.
    var stateSizes: [Int] { get }
    /// The state before the first step for a batch of `batchSize`. Default: zeros of `stateSizes`.
    func initialState(batchSize: Int, on backend: any Backend) throws -> [Tensor]
    /// One step: `x_t` `[B, inputSize]` and the state after step `time − 1` give the state after step
    /// `time` (`time` counts from 0; only time-driven cells, clockwork and phased, read it).
    /// - Throws: `TensorError` naming the cell for shapes that do not fit.
    func step(_ input: Tensor, state: [Tensor], time: Int) throws -> [Tensor]
}

extension RecurrentCell {
    /// Zeros `[batchSize, size]` for each of `stateSizes`.
    public func initialState(batchSize: Int, on backend: any Backend) throws -> [Tensor] {
        try stateSizes.map { try Tensor.zeros([batchSize, $0], on: backend) }
    }

    /// Checks a step's input `[B, inputSize]` and state (`stateSizes`), naming the cell.
    func checkStep(_ input: Tensor, _ state: [Tensor]) throws {
        try KilnNN.checkStep("\(type(of: self))", input: input, inputSize: inputSize, state: state, sizes: stateSizes)
    }

    /// The output of one step `[B, inputSize]` from the initial state (the extended cells' `callAsFunction`).
    func outputFromInitialState(_ input: Tensor) throws -> Tensor {
        let batch = input.rank == 2 ? input.shape[0] : 0
        return try step(input, state: initialState(batchSize: batch, on: input.backend), time: 0)[0]
    }

    /// Runs the cell over `sequence` `[T, B, inputSize]` (time first) from `initialState` (zeros when
    /// nil): the outputs `h_0 … h_{T−1}` stacked to `[T, B, hiddenSize]` and the final state.
    ///
    /// The sequence is split into steps once (`unstacked`) and the outputs stacked once, so the
    /// forward and backward passes cost O(T) copies of one step each.
    /// - Throws: `TensorError` naming the cell for a sequence that is not `[T ≥ 1, B ≥ 1, inputSize]`
    ///   or a state the cell rejects.
    public func unrolled(_ sequence: Tensor, initialState: [Tensor]? = nil) throws -> (output: Tensor, state: [Tensor]) {
        let name = "\(type(of: self))"
        guard sequence.rank == 3, sequence.shape[2] == inputSize, sequence.shape[0] >= 1, sequence.shape[1] >= 1 else {
            throw TensorError(.shapeMismatch, op: name,
                              "expects a sequence [T ≥ 1, B ≥ 1, \(inputSize)], got \(sequence.shape)")
        }
        var state = try initialState ?? self.initialState(batchSize: sequence.shape[1], on: sequence.backend)
        var outputs: [Tensor] = []
        for (t, x) in try sequence.unstacked(axis: 0).enumerated() {
            state = try step(x, state: state, time: t)
            outputs.append(state[0])
        }
        return (try Tensor.stacked(outputs, axis: 0), state)
    }
}

/// Checks a step's input `[B, inputSize]` and its state against `sizes` (each `[B, size]`).
func checkStep(_ cell: String, input: Tensor, inputSize: Int, state: [Tensor], sizes: [Int]) throws {
    guard input.rank == 2, input.shape[1] == inputSize else {
        throw TensorError(.shapeMismatch, op: cell, "expects an input step [B, \(inputSize)], got \(input.shape)")
    }
    let batch = input.shape[0]
    guard state.count == sizes.count else {
        throw TensorError(.invalidArgument, op: cell, "expects a state of \(sizes.count) tensors, got \(state.count)")
    }
    for (k, (s, size)) in zip(state, sizes).enumerated() where s.shape != [batch, size] {
        throw TensorError(.shapeMismatch, op: cell, "state tensor \(k) must be [\(batch), \(size)], got \(s.shape)")
    }
    try input.checkBackends(state, op: cell)
}

extension Tensor {
    /// Throws `backendMismatch` naming `op` when one of `others` lives on another backend.
    func checkBackends(_ others: [Tensor], op: String) throws {
        for t in others where t.backend !== backend {
            throw TensorError(.backendMismatch, op: op,
                              "tensors live on different backends (\(backend.name) and \(t.backend.name)); copy one with to(_:)")
        }
    }
}

/// Resolves a PyTorch cell's optional unbatched input: `[I]` with state `[H]` runs as a batch of one.
/// Returns the batched input, the batched state tensors (nil entries stay nil) and whether to squeeze.
func batchedCellInput(_ cell: String, _ input: Tensor, inputSize: Int, hiddenSize: Int,
                      state: [Tensor?]) throws -> (Tensor, [Tensor?], Bool) {
    switch input.rank {
    case 2:
        guard input.shape[1] == inputSize else { break }
        for s in state.compactMap({ $0 }) where s.shape != [input.shape[0], hiddenSize] {
            throw TensorError(.shapeMismatch, op: cell,
                              "expects a state [\(input.shape[0]), \(hiddenSize)] for input \(input.shape), got \(s.shape)")
        }
        return (input, state, false)
    case 1:
        guard input.shape[0] == inputSize else { break }
        let batched = try state.map { s -> Tensor? in
            guard let s else { return nil }
            guard s.shape == [hiddenSize] else {
                throw TensorError(.shapeMismatch, op: cell,
                                  "expects an unbatched state [\(hiddenSize)] for input \(input.shape), got \(s.shape)")
            }
            return try s.unsqueezed(axis: 0)
        }
        return (try input.unsqueezed(axis: 0), batched, true)
    default: break
    }
    throw TensorError(.shapeMismatch, op: cell, "expects input [B, \(inputSize)] or [\(inputSize)], got \(input.shape)")
}

/// An Elman RNN cell, as `torch.nn.RNNCell`: `h' = φ(x·W_ihᵀ + b_ih + h·W_hhᵀ + b_hh)`, φ tanh or ReLU.
///
/// Shapes: input `[B, inputSize]` or unbatched `[inputSize]`, hidden `[B, hiddenSize]` (or
/// `[hiddenSize]`), zeros when omitted. Parameters (PyTorch's names): `weight_ih` `[H, I]`,
/// `weight_hh` `[H, H]`, `bias_ih` `[H]`, `bias_hh` `[H]`, all `U(−1/√H, 1/√H)` from `seed` (the
/// same seed gives the same cell on every backend, and the same tensors as layer 0 of an `RNN`).
/// Seeds 000/003/004 write one bias `b_h`; PyTorch's two biases add up to it.
public final class RNNCell: RecurrentCell {
    public var isTraining = true
    public let inputSize: Int
    public let hiddenSize: Int
    public let nonlinearity: RNNNonlinearity
    /// `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`.
    public let weights: RecurrentWeights

    /// - Throws: `TensorError` naming `RNNCell` for a size < 1.
    public init(inputSize: Int, hiddenSize: Int, bias: Bool = true, nonlinearity: RNNNonlinearity = .tanh,
                seed: UInt64, on backend: any Backend) throws {
        try requirePositive(["inputSize": inputSize, "hiddenSize": hiddenSize], layer: "RNNCell")
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        self.nonlinearity = nonlinearity
        weights = try RecurrentWeights(gates: 1, inputSize: inputSize, hiddenSize: hiddenSize, bias: bias, seed: seed,
                                       slot: 0, on: backend)
    }

    public var stateSizes: [Int] { [hiddenSize] }

    public var ownParameters: [(name: String, parameter: Parameter)] { weights.named("") }

    /// `h'` from input `[B, I]` (or `[I]`) and hidden `[B, H]` (or `[H]`; zeros when nil).
    /// - Throws: `TensorError` naming `RNNCell` for shapes that do not fit.
    public func callAsFunction(_ input: Tensor, hidden: Tensor?) throws -> Tensor {
        let (x, state, squeeze) = try batchedCellInput("RNNCell", input, inputSize: inputSize, hiddenSize: hiddenSize,
                                                       state: [hidden])
        let h = try state[0] ?? Tensor.zeros([x.shape[0], hiddenSize], on: x.backend)
        try x.checkBackends([h], op: "RNNCell")
        let kind = RecurrentKind.rnn(nonlinearity)
        let (next, _) = try kind.step(kind.projectInput(x, weights), hidden: h, cell: nil, weights)
        return squeeze ? try next.squeezed(axis: 0) : next
    }

    /// `h'` from a zero hidden state.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try self(input, hidden: nil) }


    /// State `[h]`.
    public func step(_ input: Tensor, state: [Tensor], time: Int) throws -> [Tensor] {
        try checkStep(input, state)
        return [try self(input, hidden: state[0])]
    }
}

/// A long short-term memory cell, as `torch.nn.LSTMCell` (PyTorch's parameterisation, seed 002):
///
///     i = σ(W_ii x + b_ii + W_hi h + b_hi)     f = σ(W_if x + b_if + W_hf h + b_hf)
///     g = tanh(W_ig x + b_ig + W_hg h + b_hg)  o = σ(W_io x + b_io + W_ho h + b_ho)
///     c' = f ⊙ c + i ⊙ g                      h' = o ⊙ tanh(c')
///
/// Shapes: input `[B, inputSize]` or `[inputSize]`; hidden and cell `[B, hiddenSize]` (or
/// `[hiddenSize]`), zeros when omitted. Parameters: `weight_ih` `[4H, I]`, `weight_hh` `[4H, H]`,
/// `bias_ih` `[4H]`, `bias_hh` `[4H]`, gate blocks in PyTorch's order i, f, g, o; all
/// `U(−1/√H, 1/√H)` from `seed`. Seed 003's concatenated form `W[h, x] + b` is the same map with
/// `W = [W_h | W_i]` and `b = b_i + b_h`.
public final class LSTMCell: RecurrentCell {
    public var isTraining = true
    public let inputSize: Int
    public let hiddenSize: Int
    /// `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`.
    public let weights: RecurrentWeights

    /// - Throws: `TensorError` naming `LSTMCell` for a size < 1.
    public init(inputSize: Int, hiddenSize: Int, bias: Bool = true, seed: UInt64, on backend: any Backend) throws {
        try requirePositive(["inputSize": inputSize, "hiddenSize": hiddenSize], layer: "LSTMCell")
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        weights = try RecurrentWeights(gates: 4, inputSize: inputSize, hiddenSize: hiddenSize, bias: bias, seed: seed,
                                       slot: 0, on: backend)
    }

    public var stateSizes: [Int] { [hiddenSize, hiddenSize] }

    public var ownParameters: [(name: String, parameter: Parameter)] { weights.named("") }

    /// `(h', c')` from input `[B, I]` (or `[I]`) and the state `[B, H]` (or `[H]`; zeros when nil).
    /// - Throws: `TensorError` naming `LSTMCell` for shapes that do not fit.
    public func callAsFunction(_ input: Tensor, hidden: Tensor?, cell: Tensor?) throws -> (hidden: Tensor, cell: Tensor) {
        let (x, state, squeeze) = try batchedCellInput("LSTMCell", input, inputSize: inputSize, hiddenSize: hiddenSize,
                                                       state: [hidden, cell])
        let h = try state[0] ?? Tensor.zeros([x.shape[0], hiddenSize], on: x.backend)
        try x.checkBackends([h] + (state[1].map { [$0] } ?? []), op: "LSTMCell")
        let (hNext, cNext) = try RecurrentKind.lstm.step(RecurrentKind.lstm.projectInput(x, weights), hidden: h,
                                                         cell: state[1], weights)
        guard let cNext else { throw TensorError(.invalidArgument, op: "LSTMCell", "internal: no cell state") }
        return squeeze ? (try hNext.squeezed(axis: 0), try cNext.squeezed(axis: 0)) : (hNext, cNext)
    }

    /// `h'` from a zero state.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try self(input, hidden: nil, cell: nil).hidden }


    /// State `[h, c]`.
    public func step(_ input: Tensor, state: [Tensor], time: Int) throws -> [Tensor] {
        try checkStep(input, state)
        let (h, c) = try self(input, hidden: state[0], cell: state[1])
        return [h, c]
    }
}

/// A gated recurrent unit cell, as `torch.nn.GRUCell` (PyTorch's parameterisation, seeds 001/002):
///
///     r = σ(W_ir x + b_ir + W_hr h + b_hr)     z = σ(W_iz x + b_iz + W_hz h + b_hz)
///     n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
///     h' = (1 − z) ⊙ n + z ⊙ h
///
/// Seeds 000 and 003 write the update the other way round, `h' = (1 − z) ⊙ h + z ⊙ h̃`, and apply
/// the reset gate before the matrix (`U_h(r ⊙ h)`); NOTES.md §5 item 6. Kiln follows PyTorch (z keeps
/// the old state; r multiplies `W_hn h + b_hn`), so PyTorch checkpoints load and agree.
///
/// Shapes: input `[B, inputSize]` or `[inputSize]`, hidden `[B, hiddenSize]` (or `[hiddenSize]`),
/// zeros when omitted. Parameters: `weight_ih` `[3H, I]`, `weight_hh` `[3H, H]`, `bias_ih` `[3H]`,
/// `bias_hh` `[3H]`, gate blocks r, z, n; all `U(−1/√H, 1/√H)` from `seed`.
public final class GRUCell: RecurrentCell {
    public var isTraining = true
    public let inputSize: Int
    public let hiddenSize: Int
    /// `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`.
    public let weights: RecurrentWeights

    /// - Throws: `TensorError` naming `GRUCell` for a size < 1.
    public init(inputSize: Int, hiddenSize: Int, bias: Bool = true, seed: UInt64, on backend: any Backend) throws {
        try requirePositive(["inputSize": inputSize, "hiddenSize": hiddenSize], layer: "GRUCell")
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        weights = try RecurrentWeights(gates: 3, inputSize: inputSize, hiddenSize: hiddenSize, bias: bias, seed: seed,
                                       slot: 0, on: backend)
    }

    public var stateSizes: [Int] { [hiddenSize] }

    public var ownParameters: [(name: String, parameter: Parameter)] { weights.named("") }

    /// `h'` from input `[B, I]` (or `[I]`) and hidden `[B, H]` (or `[H]`; zeros when nil).
    /// - Throws: `TensorError` naming `GRUCell` for shapes that do not fit.
    public func callAsFunction(_ input: Tensor, hidden: Tensor?) throws -> Tensor {
        let (x, state, squeeze) = try batchedCellInput("GRUCell", input, inputSize: inputSize, hiddenSize: hiddenSize,
                                                       state: [hidden])
        let h = try state[0] ?? Tensor.zeros([x.shape[0], hiddenSize], on: x.backend)
        try x.checkBackends([h], op: "GRUCell")
        let (next, _) = try RecurrentKind.gru.step(RecurrentKind.gru.projectInput(x, weights), hidden: h, cell: nil,
                                                   weights)
        return squeeze ? try next.squeezed(axis: 0) : next
    }

    /// `h'` from a zero hidden state.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try self(input, hidden: nil) }


    /// State `[h]`.
    public func step(_ input: Tensor, state: [Tensor], time: Int) throws -> [Tensor] {
        try checkStep(input, state)
        return [try self(input, hidden: state[0])]
    }
}
