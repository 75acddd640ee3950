import KilnCore

/// What `RNN`, `LSTM` and `GRU` share, as PyTorch's `nn.RNNBase`: a stack of `layerCount`
/// recurrent layers, each optionally bidirectional, run over a whole sequence.
///
/// Layout (PyTorch's): input `[T, B, inputSize]` (time first, the default) or `[B, T, inputSize]`
/// with `batchFirst`, or unbatched `[T, inputSize]`; output `[T, B, D·hiddenSize]` (`[B, T, …]` with
/// `batchFirst`, `[T, …]` unbatched), D = 2 when bidirectional, else 1, the forward direction's
/// features first. States `[layerCount·D, B, hiddenSize]` (never batch-first; `[layerCount·D,
/// hiddenSize]` unbatched), entry `l·D + d` for layer l and direction d (1 = reverse); zeros when
/// omitted. Layer l > 0 reads the `D·hiddenSize` outputs of layer l − 1, through inverted dropout
/// with probability `dropout` in training mode (none after the last layer).
///
/// Parameters, under PyTorch's names so state dictionaries load PyTorch checkpoints:
/// `weight_ih_l{l}[_reverse]` `[G·H, I_l]`, `weight_hh_l{l}[_reverse]` `[G·H, H]`,
/// `bias_ih_l{l}[_reverse]` and `bias_hh_l{l}[_reverse]` `[G·H]` (without `bias`, none), in
/// PyTorch's order (layer, then direction, then those four). Initialisation as PyTorch: all
/// `U(−1/√H, 1/√H)`; tensor k of slot s = l·D + d from `Initializer.derivedSeed(seed, stream: 4s + k)`,
/// so the same seed gives the same model on every backend, and layer 0 of a unidirectional layer
/// equals the cell of the same seed.
///
/// Back-propagation through time is autograd's: the input projection `x·W_ihᵀ + b` of each layer
/// and direction is one matmul over all T·B rows, split into steps once (`unstacked`), and the
/// step outputs are stacked once at the end, so no step copies the whole sequence. Gradients reach
/// the input, the initial states and every parameter.
public class RecurrentLayer: Module {
    public var isTraining = true
    /// The size of each input step.
    public let inputSize: Int
    /// H, the size of each direction's hidden state.
    public let hiddenSize: Int
    /// The number of stacked layers (PyTorch's `num_layers`).
    public let layerCount: Int
    /// Whether each layer also runs the sequence backwards (D = 2).
    public let isBidirectional: Bool
    /// Whether input and output are `[B, T, …]` (states stay `[layerCount·D, B, H]`).
    public let batchFirst: Bool
    /// The dropout probability between layers (training mode only).
    public let dropout: Float
    /// Whether the layers have the biases `b_ih` and `b_hh`.
    public let hasBias: Bool
    let kind: RecurrentKind
    let name: String
    /// `[layer·D + direction]`.
    let slots: [RecurrentWeights]
    let interLayerDropout: Dropout

    init(name: String, kind: RecurrentKind, inputSize: Int, hiddenSize: Int, layerCount: Int, bias: Bool,
         batchFirst: Bool, dropout: Float, bidirectional: Bool, seed: UInt64, on backend: any Backend) throws {
        try requirePositive(["inputSize": inputSize, "hiddenSize": hiddenSize, "layerCount": layerCount], layer: name)
        guard dropout >= 0, dropout <= 1 else {
            throw TensorError(.invalidArgument, op: name, "dropout must lie in [0, 1], got \(dropout)")
        }
        self.name = name
        self.kind = kind
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        self.layerCount = layerCount
        self.hasBias = bias
        self.batchFirst = batchFirst
        self.dropout = dropout
        self.isBidirectional = bidirectional
        let directions = bidirectional ? 2 : 1
        var slots: [RecurrentWeights] = []
        for layer in 0..<layerCount {
            for direction in 0..<directions {
                slots.append(try RecurrentWeights(gates: kind.gates, inputSize: layer == 0 ? inputSize : directions * hiddenSize,
                                                  hiddenSize: hiddenSize, bias: bias, seed: seed,
                                                  slot: layer * directions + direction, on: backend))
            }
        }
        self.slots = slots
        // Masks from a stream of their own: Dropout's k-th mask uses derivedSeed(this seed, stream: k).
        interLayerDropout = try Dropout(probability: dropout, seed: Initializer.derivedSeed(seed, stream: 0x44_524F_50))
    }

    /// D: 2 when bidirectional, else 1.
    public var directionCount: Int { isBidirectional ? 2 : 1 }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        var out: [(name: String, parameter: Parameter)] = []
        for layer in 0..<layerCount {
            for direction in 0..<directionCount {
                out += slots[layer * directionCount + direction].named("_l\(layer)" + (direction == 1 ? "_reverse" : ""))
            }
        }
        return out
    }

    /// The parameters of `layer` (0-based) in the forward or reverse direction.
    /// - Throws: `TensorError` naming the layer for a layer out of range or `reverse` without
    ///   `bidirectional`.
    public func weights(layer: Int, reverse: Bool = false) throws -> RecurrentWeights {
        guard layer >= 0, layer < layerCount, !reverse || isBidirectional else {
            throw TensorError(.invalidArgument, op: name,
                              "has no layer \(layer)\(reverse ? " reverse" : "") (layerCount \(layerCount), bidirectional \(isBidirectional))")
        }
        return slots[layer * directionCount + (reverse ? 1 : 0)]
    }

    /// The output sequence from zero initial states.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try run(input, hidden: nil, cell: nil).output
    }

    /// The whole stack: output, final hidden states and (LSTM) final cell states.
    func run(_ input: Tensor, hidden: Tensor?, cell: Tensor?) throws -> (output: Tensor, hidden: Tensor, cell: Tensor?) {
        let d = directionCount
        guard (input.rank == 3 || input.rank == 2), input.shape[input.rank - 1] == inputSize else {
            let layout = batchFirst ? "[B, T, \(inputSize)]" : "[T, B, \(inputSize)]"
            throw TensorError(.shapeMismatch, op: name, "expects input \(layout) or unbatched [T, \(inputSize)], got \(input.shape)")
        }
        let unbatched = input.rank == 2
        // x: [T, B, I], time first.
        let x = unbatched ? try input.unsqueezed(axis: 1) : batchFirst ? try input.permuted([1, 0, 2]) : input
        let (steps, batch) = (x.shape[0], x.shape[1])
        guard steps >= 1, batch >= 1 else {
            throw TensorError(.invalidArgument, op: name,
                              "needs at least one time step and one sequence, got input \(input.shape)")
        }
        let stateShape = unbatched ? [layerCount * d, hiddenSize] : [layerCount * d, batch, hiddenSize]
        func initial(_ state: Tensor?, _ what: String) throws -> [Tensor?] {
            guard let state else { return Array(repeating: nil, count: layerCount * d) }
            guard state.shape == stateShape else {
                throw TensorError(.shapeMismatch, op: name,
                                  "expects the initial \(what) state \(stateShape) for input \(input.shape), got \(state.shape)")
            }
            try input.checkBackends([state], op: name)
            return try (unbatched ? state.unsqueezed(axis: 1) : state).unstacked(axis: 0)
        }
        let h0 = try initial(hidden, "hidden")
        let c0 = kind == .lstm ? try initial(cell, "cell") : Array(repeating: nil, count: layerCount * d)
        let zeros = try Tensor.zeros([batch, hiddenSize], on: input.backend)

        var layerInput = x
        var finalHidden: [Tensor] = [], finalCell: [Tensor] = []
        for layer in 0..<layerCount {
            let rows = try layerInput.reshaped(to: [steps * batch, layerInput.shape[2]])
            var directionOutputs: [Tensor] = []
            for direction in 0..<d {
                let slot = layer * d + direction
                let w = slots[slot]
                let projected = try kind.projectInput(rows, w)
                    .reshaped(to: [steps, batch, kind.gates * hiddenSize]).unstacked(axis: 0)
                var h = h0[slot] ?? zeros
                var c = c0[slot]
                var outputs: [Tensor] = []
                outputs.reserveCapacity(steps)
                let order = direction == 0 ? Array(0..<steps) : Array((0..<steps).reversed())
                for t in order {
                    (h, c) = try kind.step(projected[t], hidden: h, cell: c, w)
                    outputs.append(h)
                }
                if direction == 1 { outputs.reverse() }
                directionOutputs.append(try Tensor.stacked(outputs, axis: 0))
                finalHidden.append(h)
                if kind == .lstm { finalCell.append(try c ?? zeros) }
            }
            layerInput = d == 1 ? directionOutputs[0] : try Tensor.concatenated(directionOutputs, axis: 2)
            if layer < layerCount - 1, isTraining, dropout > 0 {
                interLayerDropout.isTraining = true
                layerInput = try interLayerDropout(layerInput)
            }
        }
        let output = unbatched ? try layerInput.squeezed(axis: 1)
            : batchFirst ? try layerInput.permuted([1, 0, 2]) : layerInput
        func final(_ states: [Tensor]) throws -> Tensor {
            let stacked = try Tensor.stacked(states, axis: 0)
            return unbatched ? try stacked.squeezed(axis: 1) : stacked
        }
        return (output, try final(finalHidden), kind == .lstm ? try final(finalCell) : nil)
    }
}

/// A multi-layer Elman RNN, as `torch.nn.RNN`: per layer and direction,
/// `h_t = φ(x_t·W_ihᵀ + b_ih + h_{t−1}·W_hhᵀ + b_hh)`, φ tanh or ReLU. Layout, parameters (G = 1)
/// and initialisation: see `RecurrentLayer`.
public final class RNN: RecurrentLayer {
    public let nonlinearity: RNNNonlinearity

    /// - Throws: `TensorError` naming `RNN` for a size < 1 or a dropout outside [0, 1].
    public init(inputSize: Int, hiddenSize: Int, layerCount: Int = 1, nonlinearity: RNNNonlinearity = .tanh,
                bias: Bool = true, batchFirst: Bool = false, dropout: Float = 0, bidirectional: Bool = false,
                seed: UInt64, on backend: any Backend) throws {
        self.nonlinearity = nonlinearity
        try super.init(name: "RNN", kind: .rnn(nonlinearity), inputSize: inputSize, hiddenSize: hiddenSize,
                       layerCount: layerCount, bias: bias, batchFirst: batchFirst, dropout: dropout,
                       bidirectional: bidirectional, seed: seed, on: backend)
    }

    /// The output sequence and the final hidden states `h_n` `[layerCount·D, B, H]`, from
    /// `initialHidden` `h_0` of that shape (zeros when nil).
    /// - Throws: `TensorError` naming `RNN` for an input or state of the wrong shape or backend.
    public func forward(_ input: Tensor, initialHidden: Tensor? = nil) throws -> (output: Tensor, hidden: Tensor) {
        let r = try run(input, hidden: initialHidden, cell: nil)
        return (r.output, r.hidden)
    }
}

/// A multi-layer LSTM, as `torch.nn.LSTM` (without `proj_size`): each layer and direction runs
/// `LSTMCell`'s recurrence (gates i, f, g, o) over the sequence. Layout, parameters (G = 4) and
/// initialisation: see `RecurrentLayer`.
public final class LSTM: RecurrentLayer {
    /// - Throws: `TensorError` naming `LSTM` for a size < 1 or a dropout outside [0, 1].
    public init(inputSize: Int, hiddenSize: Int, layerCount: Int = 1, bias: Bool = true, batchFirst: Bool = false,
                dropout: Float = 0, bidirectional: Bool = false, seed: UInt64, on backend: any Backend) throws {
        try super.init(name: "LSTM", kind: .lstm, inputSize: inputSize, hiddenSize: hiddenSize, layerCount: layerCount,
                       bias: bias, batchFirst: batchFirst, dropout: dropout, bidirectional: bidirectional, seed: seed,
                       on: backend)
    }

    /// The output sequence and the final states `h_n`, `c_n` `[layerCount·D, B, H]`, from
    /// `initialHidden` `h_0` and `initialCell` `c_0` of that shape (each zeros when nil).
    /// - Throws: `TensorError` naming `LSTM` for an input or state of the wrong shape or backend.
    public func forward(_ input: Tensor, initialHidden: Tensor? = nil,
                        initialCell: Tensor? = nil) throws -> (output: Tensor, hidden: Tensor, cell: Tensor) {
        let r = try run(input, hidden: initialHidden, cell: initialCell)
        guard let cell = r.cell else { throw TensorError(.invalidArgument, op: "LSTM", "internal: no cell state") }
        return (r.output, r.hidden, cell)
    }
}

/// A multi-layer GRU, as `torch.nn.GRU`: each layer and direction runs `GRUCell`'s recurrence
/// (PyTorch's convention: `h' = (1 − z) ⊙ n + z ⊙ h`, `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`)
/// over the sequence. Layout, parameters (G = 3, gates r, z, n) and initialisation: see `RecurrentLayer`.
public final class GRU: RecurrentLayer {
    /// - Throws: `TensorError` naming `GRU` for a size < 1 or a dropout outside [0, 1].
    public init(inputSize: Int, hiddenSize: Int, layerCount: Int = 1, bias: Bool = true, batchFirst: Bool = false,
                dropout: Float = 0, bidirectional: Bool = false, seed: UInt64, on backend: any Backend) throws {
        try super.init(name: "GRU", kind: .gru, inputSize: inputSize, hiddenSize: hiddenSize, layerCount: layerCount,
                       bias: bias, batchFirst: batchFirst, dropout: dropout, bidirectional: bidirectional, seed: seed,
                       on: backend)
    }

    /// The output sequence and the final hidden states `h_n` `[layerCount·D, B, H]`, from
    /// `initialHidden` `h_0` of that shape (zeros when nil).
    /// - Throws: `TensorError` naming `GRU` for an input or state of the wrong shape or backend.
    public func forward(_ input: Tensor, initialHidden: Tensor? = nil) throws -> (output: Tensor, hidden: Tensor) {
        let r = try run(input, hidden: initialHidden, cell: nil)
        return (r.output, r.hidden)
    }
}
