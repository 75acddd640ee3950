import KilnCore

/// The nonlinearity of an Elman RNN, as PyTorch's `nonlinearity` argument.
public enum RNNNonlinearity: String, Sendable, Equatable {
    /// h' = tanh(…) (PyTorch's default).
    case tanh
    /// h' = max(…, 0).
    case relu
}

/// The four parameters of one recurrent cell, or of one layer and direction of a recurrent layer,
/// in PyTorch's layout: `G` gates of `hiddenSize` rows each, stacked in PyTorch's gate order
/// (LSTM i, f, g, o; GRU r, z, n; RNN one block).
public struct RecurrentWeights {
    /// `W_ih`, `[G·hiddenSize, inputSize]`.
    public let weightIH: Parameter
    /// `W_hh`, `[G·hiddenSize, hiddenSize]`.
    public let weightHH: Parameter
    /// `b_ih`, `[G·hiddenSize]`, or nil without biases.
    public let biasIH: Parameter?
    /// `b_hh`, `[G·hiddenSize]`, or nil without biases.
    public let biasHH: Parameter?

    /// PyTorch's initialisation: every tensor `U(−1/√hiddenSize, 1/√hiddenSize)`; tensor k (0 W_ih,
    /// 1 W_hh, 2 b_ih, 3 b_hh) of `slot` from `Initializer.derivedSeed(seed, stream: 4·slot + k)`.
    init(gates: Int, inputSize: Int, hiddenSize: Int, bias: Bool, seed: UInt64, slot: Int, on backend: any Backend) throws {
        let bound = 1 / Double(hiddenSize).squareRoot()
        func make(_ shape: [Int], _ k: Int) throws -> Parameter {
            try uniformParameter(shape, bound: bound, seed: Initializer.derivedSeed(seed, stream: UInt64(4 * slot + k)),
                                 on: backend)
        }
        weightIH = try make([gates * hiddenSize, inputSize], 0)
        weightHH = try make([gates * hiddenSize, hiddenSize], 1)
        biasIH = bias ? try make([gates * hiddenSize], 2) : nil
        biasHH = bias ? try make([gates * hiddenSize], 3) : nil
    }

    /// Weights made elsewhere (the extended cells).
    init(weightIH: Parameter, weightHH: Parameter, biasIH: Parameter?, biasHH: Parameter?) {
        self.weightIH = weightIH
        self.weightHH = weightHH
        self.biasIH = biasIH
        self.biasHH = biasHH
    }

    /// `G` gate blocks for the extended cells, every tensor `U(−1/√H, 1/√H)` from the next streams of `p`.
    init(gates: Int, inputSize: Int, hiddenSize: Int, bias: Bool, _ p: inout SeededParameters) throws {
        let bound = 1 / Double(hiddenSize).squareRoot()
        self.init(weightIH: try p.uniform([gates * hiddenSize, inputSize], bound: bound),
                  weightHH: try p.uniform([gates * hiddenSize, hiddenSize], bound: bound),
                  biasIH: bias ? try p.uniform([gates * hiddenSize], bound: bound) : nil,
                  biasHH: bias ? try p.uniform([gates * hiddenSize], bound: bound) : nil)
    }

    /// `x·W_ihᵀ + b_ih + b_hh` for x `[B, I]`: `[B, G·H]` (both biases folded).
    func projectInput(_ x: Tensor) throws -> Tensor { try RecurrentKind.lstm.projectInput(x, self) }

    /// The parameters under PyTorch's names with `suffix` (`""` for a cell, `"_l0"`, `"_l1_reverse"`).
    func named(_ suffix: String) -> [(name: String, parameter: Parameter)] {
        var out: [(name: String, parameter: Parameter)] = [("weight_ih" + suffix, weightIH), ("weight_hh" + suffix, weightHH)]
        if let biasIH { out.append(("bias_ih" + suffix, biasIH)) }
        if let biasHH { out.append(("bias_hh" + suffix, biasHH)) }
        return out
    }
}

/// The recurrences of the three PyTorch cells, shared by the cells and the layers. Inputs are batched
/// (`[B, …]`); the public entry points validate shapes and handle unbatched inputs.
enum RecurrentKind: Equatable, Sendable {
    case rnn(RNNNonlinearity)
    case lstm
    case gru

    /// G, the number of gate blocks stacked in the weights.
    var gates: Int {
        switch self {
        case .rnn: 1
        case .lstm: 4
        case .gru: 3
        }
    }

    /// Whether `b_hh` is folded into the input projection (everywhere but the GRU, whose `b_hn` sits
    /// inside `r ⊙ (W_hn h + b_hn)`).
    var foldsHiddenBias: Bool { self != .gru }

    /// `x·W_ihᵀ + b_ih` (`+ b_hh` where it folds) for x `[N, I]`: `[N, G·H]`.
    func projectInput(_ x: Tensor, _ w: RecurrentWeights) throws -> Tensor {
        let projected = try matmul(x, w.weightIH.value, transposeB: true)
        switch (w.biasIH, foldsHiddenBias ? w.biasHH : nil) {
        case let (bi?, bh?):
            let b: Tensor = try bi.value + bh.value
            return try projected + b
        case let (bi?, nil): return try projected + bi.value
        case let (nil, bh?): return try projected + bh.value
        case (nil, nil): return projected
        }
    }

    /// One step from the projected input `xp` `[B, G·H]`, hidden state `h` `[B, H]` and, for the LSTM,
    /// cell state `c` `[B, H]`: the new `(h, c)` (`c` nil but for the LSTM).
    ///
    /// - RNN: `h' = φ(xp + W_hh h)`.
    /// - LSTM: `i, f, g, o = xp + W_hh h` split in four; `c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g)`, `h' = σ(o) ⊙ tanh(c')`.
    /// - GRU: `r = σ(x_r + W_hr h + b_hr)`, `z = σ(x_z + W_hz h + b_hz)`, `n = tanh(x_n + r ⊙ (W_hn h + b_hn))`,
    ///   `h' = (1 − z) ⊙ n + z ⊙ h`, computed as `n + z ⊙ (h − n)`.
    func step(_ xp: Tensor, hidden h: Tensor, cell c: Tensor?, _ w: RecurrentWeights) throws -> (Tensor, Tensor?) {
        let batch = h.shape[0], hiddenSize = h.shape[1]
        let hp = try matmul(h, w.weightHH.value, transposeB: true)
        switch self {
        case .rnn(let nonlinearity):
            let pre: Tensor = try xp + hp
            return (nonlinearity == .tanh ? try tanh(pre) : try relu(pre), nil)
        case .lstm:
            let gates = try (xp + hp).reshaped(to: [batch, 4, hiddenSize]).unstacked(axis: 1)
            let i = try sigmoid(gates[0]), f = try sigmoid(gates[1])
            let g = try tanh(gates[2]), o = try sigmoid(gates[3])
            let fresh: Tensor = try i * g
            let cNext: Tensor = try c.map { try f * $0 + fresh } ?? fresh
            return (try o * tanh(cNext), cNext)
        case .gru:
            let hidden: Tensor = try w.biasHH.map { try hp + $0.value } ?? hp
            let x3 = try xp.reshaped(to: [batch, 3, hiddenSize]).unstacked(axis: 1)
            let h3 = try hidden.reshaped(to: [batch, 3, hiddenSize]).unstacked(axis: 1)
            let r = try sigmoid(x3[0] + h3[0])
            let z = try sigmoid(x3[1] + h3[1])
            let n = try tanh(x3[2] + r * h3[2])
            let hNext: Tensor = try n + z * (h - n)
            return (hNext, nil)
        }
    }
}

/// Seeded parameters of the extended cells: the k-th tensor made comes from the Philox stream of
/// `Initializer.derivedSeed(seed, stream: k)`, so the same seed gives the same cell on every backend.
struct SeededParameters {
    let seed: UInt64
    let backend: any Backend
    private var stream: UInt64 = 0

    init(seed: UInt64, on backend: any Backend) {
        self.seed = seed
        self.backend = backend
    }

    /// The next stream's seed.
    mutating func nextSeed() -> UInt64 {
        defer { stream += 1 }
        return Initializer.derivedSeed(seed, stream: stream)
    }

    /// `U(low, high)` of `shape`.
    mutating func uniform(_ shape: [Int], low: Double, high: Double) throws -> Parameter {
        Parameter(try Tensor.uniform(shape, low: Float(low), high: Float(high), seed: nextSeed(), on: backend))
    }

    /// `U(−bound, bound)` of `shape`.
    mutating func uniform(_ shape: [Int], bound: Double) throws -> Parameter {
        try uniform(shape, low: -bound, high: bound)
    }
}

/// `x·Wᵀ (+ b)` for x `[B, in]`, W `[out, in]`, b `[out]`.
func affine(_ x: Tensor, _ weight: Parameter, _ bias: Parameter?) throws -> Tensor {
    let y = try matmul(x, weight.value, transposeB: true)
    return try bias.map { try y + $0.value } ?? y
}

/// The `blocks` row blocks of `[B, blocks·H]` (or of a weight `[blocks·H, …]` along axis 0) as separate tensors.
func splitBlocks(_ t: Tensor, _ blocks: Int, axis: Int = 1) throws -> [Tensor] {
    var shape = t.shape
    let size = shape[axis] / blocks
    shape[axis] = size
    shape.insert(blocks, at: axis)
    return try t.reshaped(to: shape).unstacked(axis: axis)
}
