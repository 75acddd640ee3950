import KilnCore

// Light recurrences: IndRNN, SRU, QRNN (elementwise recurrences over matrix products of the input)
// and the Recurrent Highway Network. Shapes as `RecurrentCell`: x `[B, inputSize]`, h `[B, hiddenSize]`.

/// The independently recurrent network (Li et al. 2018; seed 000): each unit sees only its own past,
///
///     h' = φ(W x + b + u ⊙ h),   φ ReLU (the paper's choice, default) or tanh.
///
/// Parameters: `weight_ih` `[H, I]` and `bias` `[H]` `U(−1/√H, 1/√H)`; `weight_hh` `[H]`, the
/// recurrent vector u, `U(0, 1)` (the paper keeps |u| bounded so that uᵀ neither explodes nor vanishes
/// over the sequence). State `[h]`.
public final class IndRNNCell: RecurrentCell {
    public var isTraining = true
    public let inputSize: Int
    public let hiddenSize: Int
    public let nonlinearity: RNNNonlinearity
    /// `[H, I]`.
    public let weightIH: Parameter
    /// u, `[H]`.
    public let weightHH: Parameter
    /// `[H]`, or nil.
    public let bias: Parameter?

    /// - Throws: `TensorError` naming `IndRNNCell` for a size < 1.
    public init(inputSize: Int, hiddenSize: Int, nonlinearity: RNNNonlinearity = .relu, bias: Bool = true,
                seed: UInt64, on backend: any Backend) throws {
        try requirePositive(["inputSize": inputSize, "hiddenSize": hiddenSize], layer: "IndRNNCell")
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        self.nonlinearity = nonlinearity
        var p = SeededParameters(seed: seed, on: backend)
        let bound = 1 / Double(hiddenSize).squareRoot()
        weightIH = try p.uniform([hiddenSize, inputSize], bound: bound)
        weightHH = try p.uniform([hiddenSize], low: 0, high: 1)
        self.bias = bias ? try p.uniform([hiddenSize], bound: bound) : nil
    }

    public var stateSizes: [Int] { [hiddenSize] }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        [("weight_ih", weightIH), ("weight_hh", weightHH)] + (bias.map { [("bias", $0)] } ?? [])
    }

    /// `h'` of one step `[B, inputSize]` from a zero state.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try outputFromInitialState(input)
    }


    /// State `[h]`.
    public func step(_ input: Tensor, state: [Tensor], time: Int) throws -> [Tensor] {
        try checkStep(input, state)
        let pre: Tensor = try affine(input, weightIH, bias) + weightHH.value * state[0]
        return [nonlinearity == .tanh ? try tanh(pre) : try relu(pre)]
    }
}

/// The Simple Recurrent Unit (Lei et al. 2018; seed 000):
///
///     x̃ = W x
///     f = σ(W_f x + v_f ⊙ c + b_f)      r = σ(W_r x + v_r ⊙ c + b_r)
///     c' = f ⊙ c + (1 − f) ⊙ x̃          h' = r ⊙ tanh(c') + (1 − r) ⊙ x'
///
/// with the highway input x' = x when `inputSize == hiddenSize`, else x' = W_s x (a fourth block).
/// The only matrix products read the input, so a whole sequence's can be computed at once; the
/// recurrence is elementwise. The gates read the old cell state through the vectors v (the 2018
/// version; seed 000 and the 2017 preprint drop them, which is v = 0). Parameters: `weight`
/// `[3H or 4H, I]` (blocks x̃, f, r[, s]), `weight_c` `[2, H]` (v_f, v_r), `bias` `[2, H]` (b_f, b_r).
/// State `[h, c]`.
public final class SRUCell: RecurrentCell {
    public var isTraining = true
    public let inputSize: Int
    public let hiddenSize: Int
    /// `[3H, I]`, or `[4H, I]` when the highway needs a projection.
    public let weight: Parameter
    /// `[2, H]`: v_f, v_r.
    public let weightC: Parameter
    /// `[2, H]`: b_f, b_r, or nil.
    public let bias: Parameter?

    /// - Throws: `TensorError` naming `SRUCell` for a size < 1.
    public init(inputSize: Int, hiddenSize: Int, bias: Bool = true, seed: UInt64, on backend: any Backend) throws {
        try requirePositive(["inputSize": inputSize, "hiddenSize": hiddenSize], layer: "SRUCell")
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        var p = SeededParameters(seed: seed, on: backend)
        let bound = 1 / Double(hiddenSize).squareRoot()
        weight = try p.uniform([(inputSize == hiddenSize ? 3 : 4) * hiddenSize, inputSize], bound: bound)
        weightC = try p.uniform([2, hiddenSize], bound: bound)
        self.bias = bias ? try p.uniform([2, hiddenSize], bound: bound) : nil
    }

    public var stateSizes: [Int] { [hiddenSize, hiddenSize] }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        [("weight", weight), ("weight_c", weightC)] + (bias.map { [("bias", $0)] } ?? [])
    }

    /// `h'` of one step `[B, inputSize]` from a zero state.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try outputFromInitialState(input)
    }


    /// State `[h, c]`.
    public func step(_ input: Tensor, state: [Tensor], time: Int) throws -> [Tensor] {
        try checkStep(input, state)
        let c = state[1]
        let blocks = try splitBlocks(matmul(input, weight.value, transposeB: true), weight.shape[0] / hiddenSize)
        let v = try weightC.value.unstacked(axis: 0)
        var preF: Tensor = try blocks[1] + v[0] * c
        var preR: Tensor = try blocks[2] + v[1] * c
        if let bias {
            let b = try bias.value.unstacked(axis: 0)
            preF = try preF + b[0]
            preR = try preR + b[1]
        }
        let f = try sigmoid(preF), r = try sigmoid(preR)
        let cNext: Tensor = try c + (1 - f) * (blocks[0] - c)
        let highway = blocks.count == 4 ? blocks[3] : input
        let hNext: Tensor = try highway + r * (tanh(cNext) - highway)
        return [hNext, cNext]
    }
}

/// The quasi-recurrent network (Bradbury et al. 2017; seed 000) with fo-pooling: a causal convolution of
/// width `window` over the inputs gives the candidate and the gates, and only an elementwise
/// recurrence remains:
///
///     [z; f; o] = W [x_{t−k+1}; …; x_t] + b,   z = tanh(·), f = σ(·), o = σ(·)
///     c' = f ⊙ c + (1 − f) ⊙ z                h' = o ⊙ c'
///
/// Seed 000's row writes `f, z = σ(W_f x)`, `o = tanh(W_o x)`, swapping the activations of z and o;
/// Kiln follows the paper (z tanh, o sigmoid). Inputs before the first step are zeros (causal padding).
/// Parameters: `weight` `[3H, k·I]` (blocks z, f, o; columns oldest step first), `bias` `[3H]`, both
/// `U(−1/√(k·I), 1/√(k·I))` (PyTorch's convolution default). State `[h, c, x_{t−1}, …, x_{t−k+1}]`.
public final class QRNNCell: RecurrentCell {
    public var isTraining = true
    public let inputSize: Int
    public let hiddenSize: Int
    /// k, the number of input steps each output reads.
    public let window: Int
    /// `[3H, window·I]`.
    public let weight: Parameter
    /// `[3H]`, or nil.
    public let bias: Parameter?

    /// - Throws: `TensorError` naming `QRNNCell` for a size or window < 1.
    public init(inputSize: Int, hiddenSize: Int, window: Int = 2, bias: Bool = true, seed: UInt64,
                on backend: any Backend) throws {
        try requirePositive(["inputSize": inputSize, "hiddenSize": hiddenSize, "window": window], layer: "QRNNCell")
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        self.window = window
        var p = SeededParameters(seed: seed, on: backend)
        let bound = 1 / Double(window * inputSize).squareRoot()
        weight = try p.uniform([3 * hiddenSize, window * inputSize], bound: bound)
        self.bias = bias ? try p.uniform([3 * hiddenSize], bound: bound) : nil
    }

    public var stateSizes: [Int] { [hiddenSize, hiddenSize] + Array(repeating: inputSize, count: window - 1) }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    /// `h'` of one step `[B, inputSize]` from a zero state.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try outputFromInitialState(input)
    }


    /// State `[h, c, x_{t−1}, …, x_{t−k+1}]`.
    public func step(_ input: Tensor, state: [Tensor], time: Int) throws -> [Tensor] {
        try checkStep(input, state)
        let past = Array(state.dropFirst(2))
        let columns = window == 1 ? input : try Tensor.concatenated(past.reversed() + [input], axis: 1)
        let gates = try splitBlocks(affine(columns, weight, bias), 3)
        let z = try tanh(gates[0]), f = try sigmoid(gates[1]), o = try sigmoid(gates[2])
        let cNext: Tensor = try z + f * (state[1] - z)
        let hNext: Tensor = try o * cNext
        return window == 1 ? [hNext, cNext] : [hNext, cNext, input] + past.dropLast()
    }
}

/// The Recurrent Highway Network (Zilly et al. 2017; seed 000) with coupled carry gates and
/// recurrence depth L: from s_0 = h, for l = 1 … L,
///
///     ĥ_l = tanh(R_{H,l} s_{l−1} + b_{H,l} + [l = 1] W_H x)
///     t_l = σ(R_{T,l} s_{l−1} + b_{T,l} + [l = 1] W_T x)
///     s_l = ĥ_l ⊙ t_l + s_{l−1} ⊙ (1 − t_l)
///
/// and h' = s_L (seed 000's row is the case L = 1). Parameters: `weight_ih` `[2H, I]` (blocks H, T),
/// then per micro-layer l = 0 … L−1 `weight_hh_l{l}` `[2H, H]` and `bias_l{l}` `[2H]`. The paper
/// starts the transform biases negative; Kiln draws every tensor `U(−1/√H, 1/√H)`. State `[h]`.
public final class RHNCell: RecurrentCell {
    public var isTraining = true
    public let inputSize: Int
    public let hiddenSize: Int
    /// L, the number of highway micro-layers per time step.
    public let depth: Int
    /// `[2H, I]`.
    public let weightIH: Parameter
    /// `[2H, H]` per micro-layer.
    public let weightsHH: [Parameter]
    /// `[2H]` per micro-layer, or empty.
    public let biases: [Parameter]

    /// - Throws: `TensorError` naming `RHNCell` for a size or depth < 1.
    public init(inputSize: Int, hiddenSize: Int, depth: Int = 2, bias: Bool = true, seed: UInt64,
                on backend: any Backend) throws {
        try requirePositive(["inputSize": inputSize, "hiddenSize": hiddenSize, "depth": depth], layer: "RHNCell")
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        self.depth = depth
        var p = SeededParameters(seed: seed, on: backend)
        let bound = 1 / Double(hiddenSize).squareRoot()
        weightIH = try p.uniform([2 * hiddenSize, inputSize], bound: bound)
        var hh: [Parameter] = [], b: [Parameter] = []
        for _ in 0..<depth {
            hh.append(try p.uniform([2 * hiddenSize, hiddenSize], bound: bound))
            if bias { b.append(try p.uniform([2 * hiddenSize], bound: bound)) }
        }
        weightsHH = hh
        biases = b
    }

    public var stateSizes: [Int] { [hiddenSize] }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        var out: [(name: String, parameter: Parameter)] = [("weight_ih", weightIH)]
        for l in 0..<depth {
            out.append(("weight_hh_l\(l)", weightsHH[l]))
            if !biases.isEmpty { out.append(("bias_l\(l)", biases[l])) }
        }
        return out
    }

    /// `h'` of one step `[B, inputSize]` from a zero state.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        try outputFromInitialState(input)
    }


    /// State `[h]`.
    public func step(_ input: Tensor, state: [Tensor], time: Int) throws -> [Tensor] {
        try checkStep(input, state)
        var s = state[0]
        for l in 0..<depth {
            var pre = try affine(s, weightsHH[l], biases.isEmpty ? nil : biases[l])
            if l == 0 { pre = try pre + matmul(input, weightIH.value, transposeB: true) }
            let blocks = try splitBlocks(pre, 2)
            let t = try sigmoid(blocks[1])
            s = try s + t * (tanh(blocks[0]) - s)
        }
        return [s]
    }
}
