import KilnCore

/// The HyperLSTM (Ha, Dai & Le 2016; seed 000): a small hyper LSTM reads `[h_{t−1}; x_t]` and, at
/// every step, generates the scaling vectors of the main LSTM's weights, so the main weights change
/// along the sequence:
///
///     ĥ', ĉ' = LSTMCell_hyper([h; x], ĥ, ĉ)
///     z_h, z_x, z_b = W_ĥz ĥ' + b_ĥz              (three embeddings of size N_z per gate)
///     gate_y = d_h^y(z_h) ⊙ (W_h^y h) + d_x^y(z_x) ⊙ (W_x^y x) + d_b^y(z_b) + b_0^y,   d^y(z) = W_zd^y z
///     c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g),   h' = σ(o) ⊙ tanh(c')     (gates y in PyTorch's order i, f, g, o)
///
/// Without the paper's layer normalisation. Parameters: the hyper cell's under `hyper.`;
/// `weight_ih` `[4H, I]`, `weight_hh` `[4H, H]`, `bias` `[4H]` (b_0) `U(−1/√H, 1/√H)`; `weight_hz`
/// `[12·N_z, N_h]` `U(−1/√N_h, 1/√N_h)` and `bias_hz` `[12·N_z]` (blocks z_h, z_x, z_b, each 4 gates;
/// the z_b bias the paper omits is absorbed by b_0 and harmless); `weight_zh`, `weight_zx`, `weight_zb`
/// `[4, H, N_z]`. These start so that the main LSTM begins as a plain one: `bias_hz` 1 on z_h and z_x
/// (0 on z_b), `weight_zh` = `weight_zx` = 1/N_z (so d_h = d_x ≈ 1) and `weight_zb` = 0. State
/// `[h, c, ĥ, ĉ]`.
public final class HyperLSTMCell: RecurrentCell {
    public var isTraining = true
    public let inputSize: Int
    public let hiddenSize: Int
    /// N_z, the size of each embedding.
    public let embeddingSize: Int
    public let hyper: LSTMCell
    public let weightIH: Parameter, weightHH: Parameter, bias: Parameter
    public let weightHZ: Parameter, biasHZ: Parameter
    public let weightZH: Parameter, weightZX: Parameter, weightZB: Parameter

    /// - Throws: `TensorError` naming `HyperLSTMCell` for a size < 1.
    public init(inputSize: Int, hiddenSize: Int, hyperSize: Int = 16, embeddingSize: Int = 4, seed: UInt64,
                on backend: any Backend) throws {
        try requirePositive(["inputSize": inputSize, "hiddenSize": hiddenSize, "hyperSize": hyperSize,
                             "embeddingSize": embeddingSize], layer: "HyperLSTMCell")
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        self.embeddingSize = embeddingSize
        var p = SeededParameters(seed: seed, on: backend)
        hyper = try LSTMCell(inputSize: inputSize + hiddenSize, hiddenSize: hyperSize, seed: p.nextSeed(), on: backend)
        let bound = 1 / Double(hiddenSize).squareRoot()
        weightIH = try p.uniform([4 * hiddenSize, inputSize], bound: bound)
        weightHH = try p.uniform([4 * hiddenSize, hiddenSize], bound: bound)
        bias = try p.uniform([4 * hiddenSize], bound: bound)
        weightHZ = try p.uniform([12 * embeddingSize, hyperSize], bound: 1 / Double(hyperSize).squareRoot())
        let nz = 4 * embeddingSize
        biasHZ = Parameter(try Tensor([Float](repeating: 1, count: 2 * nz) + [Float](repeating: 0, count: nz), on: backend))
        let scale = try Tensor.full([4, hiddenSize, embeddingSize], value: 1 / Float(embeddingSize), on: backend)
        weightZH = Parameter(scale)
        weightZX = Parameter(scale)
        weightZB = Parameter(try Tensor.zeros([4, hiddenSize, embeddingSize], on: backend))
    }

    public var stateSizes: [Int] { [hiddenSize, hiddenSize, hyper.hiddenSize, hyper.hiddenSize] }
    public var children: [(name: String, module: any Module)] { [("hyper", hyper)] }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        [("weight_ih", weightIH), ("weight_hh", weightHH), ("bias", bias), ("weight_hz", weightHZ),
         ("bias_hz", biasHZ), ("weight_zh", weightZH), ("weight_zx", weightZX), ("weight_zb", weightZB)]
    }

    /// `h'` of one step `[B, inputSize]` from a zero state.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try outputFromInitialState(input) }

    /// State `[h, c, ĥ, ĉ]`.
    public func step(_ input: Tensor, state: [Tensor], time: Int) throws -> [Tensor] {
        try checkStep(input, state)
        let (h, c) = (state[0], state[1])
        let batch = input.shape[0], nz = embeddingSize, nh = hiddenSize
        let (hyperH, hyperC) = try hyper(Tensor.concatenated([h, input], axis: 1), hidden: state[2], cell: state[3])
        // z: [B, 3, 4, N_z] → three [4, B, N_z] embeddings, one per scaled term.
        let z = try affine(hyperH, weightHZ, biasHZ).reshaped(to: [batch, 3, 4, nz]).permuted([1, 2, 0, 3]).unstacked(axis: 0)
        func scaling(_ zk: Tensor, _ w: Parameter) throws -> Tensor {
            // d[b, y, :] = W_zd[y] z[y, b, :] → [B, 4H].
            try matmul(zk, w.value, transposeB: true).permuted([1, 0, 2]).reshaped(to: [batch, 4 * nh])
        }
        let dh = try scaling(z[0], weightZH), dx = try scaling(z[1], weightZX), db = try scaling(z[2], weightZB)
        let recurrent: Tensor = try dh * matmul(h, weightHH.value, transposeB: true)
        let fromInput: Tensor = try dx * matmul(input, weightIH.value, transposeB: true)
        let pre: Tensor = try recurrent + fromInput + db + bias.value
        let gates = try splitBlocks(pre, 4)
        let i = try sigmoid(gates[0]), f = try sigmoid(gates[1]), g = try tanh(gates[2]), o = try sigmoid(gates[3])
        let cNext: Tensor = try f * c + i * g
        return [try o * tanh(cNext), cNext, hyperH, hyperC]
    }
}

/// An LSTM language model (seed 000): embedded tokens run through an `LSTM`, and a linear decoder
/// gives the next token's logits,
///
///     h_t, c_t = LSTM(E[x_t], h_{t−1}, c_{t−1}),    P(x_{t+1} | x_{≤t}) = softmax(W h_t + b).
///
/// Shapes: tokens `[T, B]` (integral values in `0..<vocabularySize`, time first), logits
/// `[T, B, vocabularySize]`. Children: `embedding` (`Embedding`, N(0, 1)), `lstm` (`LSTM`, PyTorch's
/// names), `decoder` (`Linear`), seeded from `seed` by derived streams.
public final class LSTMLanguageModel: Module {
    public var isTraining = true
    public let embedding: Embedding
    public let lstm: LSTM
    public let decoder: Linear

    /// - Throws: `TensorError` naming the failing part for invalid sizes.
    public init(vocabularySize: Int, embeddingSize: Int, hiddenSize: Int, layerCount: Int = 1, dropout: Float = 0,
                seed: UInt64, on backend: any Backend) throws {
        embedding = try Embedding(count: vocabularySize, dimension: embeddingSize,
                                  seed: Initializer.derivedSeed(seed, stream: 0), on: backend)
        lstm = try LSTM(inputSize: embeddingSize, hiddenSize: hiddenSize, layerCount: layerCount, dropout: dropout,
                        seed: Initializer.derivedSeed(seed, stream: 1), on: backend)
        decoder = try Linear(inputSize: hiddenSize, outputSize: vocabularySize,
                             seed: Initializer.derivedSeed(seed, stream: 2), on: backend)
    }

    public var children: [(name: String, module: any Module)] {
        [("embedding", embedding), ("lstm", lstm), ("decoder", decoder)]
    }

    /// Logits `[T, B, V]`, the final states `[layerCount, B, H]`, from `tokens` `[T, B]` and optional
    /// initial states (carry them between windows for truncated back-propagation through time, detached).
    /// - Throws: `TensorError` for tokens that are not `[T, B]` integral indices in range.
    public func forward(_ tokens: Tensor, initialHidden: Tensor? = nil,
                        initialCell: Tensor? = nil) throws -> (logits: Tensor, hidden: Tensor, cell: Tensor) {
        guard tokens.rank == 2 else {
            throw TensorError(.shapeMismatch, op: "LSTMLanguageModel", "expects tokens [T, B], got \(tokens.shape)")
        }
        let r = try lstm.forward(embedding(tokens), initialHidden: initialHidden, initialCell: initialCell)
        return (try decoder(r.output), r.hidden, r.cell)
    }

    /// Logits `[T, B, V]` from zero states.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try forward(input).logits }

    /// The mean next-token cross-entropy (nats) of `tokens` `[T + 1, B]`: the model reads steps
    /// 0 … T−1 and predicts 1 … T. `exp` of it is the perplexity.
    /// - Throws: `TensorError` for fewer than two steps or invalid tokens.
    public func loss(_ tokens: Tensor) throws -> Tensor {
        guard tokens.rank == 2, tokens.shape[0] >= 2 else {
            throw TensorError(.shapeMismatch, op: "LSTMLanguageModel.loss", "expects tokens [T + 1 ≥ 2, B], got \(tokens.shape)")
        }
        let steps = tokens.shape[0] - 1, batch = tokens.shape[1]
        let logits = try self(tokens.sliced(axis: 0, start: 0, end: steps))
        let targets = try tokens.sliced(axis: 0, start: 1).reshaped(to: [steps * batch])
        return try crossEntropy(logits: logits.reshaped(to: [steps * batch, decoder.outputSize]), targets: targets)
    }
}
