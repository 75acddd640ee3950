import KilnCore

// Cells whose update depends on the time step: the clockwork RNN and the phased LSTM.
// `time` is the step index `unrolled` passes (0, 1, …).

/// The Clockwork RNN (Koutník et al. 2014; seed 000): the hidden units form g modules of
/// `moduleSize` units with periods T_1 … T_g; at step t, module k updates only when t mod T_k = 0
/// and otherwise keeps its value:
///
///     ĥ = tanh(W_I x + (W_H ⊙ M) h + b),    h'_k = ĥ_k if t mod T_k = 0, else h_k
///
/// M lets module k read module j only when T_j ≥ T_k (slow modules feed fast ones). Steps count from
/// t = 0, at which every module updates (the paper counts from 1 with the same pattern shifted).
/// Parameters: `weight_ih` `[H, I]`, `weight_hh` `[H, H]` (entries outside M start at zero and get
/// no gradient), `bias` `[H]`, H = g·moduleSize, all `U(−1/√H, 1/√H)`. State `[h]`.
public final class ClockworkRNNCell: RecurrentCell {
    public var isTraining = true
    public let inputSize: Int
    public let hiddenSize: Int
    public let moduleSize: Int
    /// T_k of each module.
    public let periods: [Int]
    /// `[H, I]`.
    public let weightIH: Parameter
    /// `[H, H]`, used through the connectivity mask.
    public let weightHH: Parameter
    /// `[H]`, or nil.
    public let bias: Parameter?
    /// M, `[H, H]`: 1 where module(row) may read module(column).
    let connectivity: Tensor

    /// - Throws: `TensorError` naming `ClockworkRNNCell` for sizes < 1, no periods, or a period < 1.
    public init(inputSize: Int, moduleSize: Int, periods: [Int] = [1, 2, 4, 8], bias: Bool = true, seed: UInt64,
                on backend: any Backend) throws {
        try requirePositive(["inputSize": inputSize, "moduleSize": moduleSize, "periods.count": periods.count],
                            layer: "ClockworkRNNCell")
        guard periods.allSatisfy({ $0 >= 1 }) else {
            throw TensorError(.invalidArgument, op: "ClockworkRNNCell", "periods must be ≥ 1, got \(periods)")
        }
        self.inputSize = inputSize
        self.moduleSize = moduleSize
        self.periods = periods
        let h = moduleSize * periods.count
        hiddenSize = h
        var mask = [Float](repeating: 0, count: h * h)
        for row in 0..<h { for column in 0..<h where periods[column / moduleSize] >= periods[row / moduleSize] {
            mask[row * h + column] = 1
        } }
        connectivity = try Tensor(mask, shape: [h, h], on: backend)
        var p = SeededParameters(seed: seed, on: backend)
        let bound = 1 / Double(h).squareRoot()
        weightIH = try p.uniform([h, inputSize], bound: bound)
        let recurrent = try p.uniform([h, h], bound: bound)
        weightHH = Parameter(try recurrent.value * connectivity)
        self.bias = bias ? try p.uniform([h], bound: bound) : nil
    }

    public var stateSizes: [Int] { [hiddenSize] }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        [("weight_ih", weightIH), ("weight_hh", weightHH)] + (bias.map { [("bias", $0)] } ?? [])
    }

    /// `h'` of one step `[B, inputSize]` from a zero state (t = 0: every module updates).
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try outputFromInitialState(input) }

    /// State `[h]`.
    /// - Throws: `TensorError` naming `ClockworkRNNCell` for shapes that do not fit or a negative time.
    public func step(_ input: Tensor, state: [Tensor], time: Int) throws -> [Tensor] {
        try checkStep(input, state)
        guard time >= 0 else { throw TensorError(.invalidArgument, op: "ClockworkRNNCell", "time must be ≥ 0, got \(time)") }
        let h = state[0]
        let active = periods.map { time % $0 == 0 }
        if !active.contains(true) { return [h] }
        let recurrent: Tensor = try weightHH.value * connectivity
        let candidate: Tensor = try tanh(affine(input, weightIH, bias) + matmul(h, recurrent, transposeB: true))
        if !active.contains(false) { return [candidate] }
        let gate = try Tensor(active.flatMap { Array(repeating: $0 ? Float(1) : 0, count: moduleSize) }, on: input.backend)
        return [try h + gate * (candidate - h)]
    }
}

/// The Phased LSTM (Neil et al. 2016; seed 000): an `LSTMCell` update gated by a periodic time gate
/// with a learnable period τ and shift s per unit,
///
///     φ = ((t − s) mod τ)/τ
///     k = 2φ/r_on if φ < r_on/2;  2 − 2φ/r_on if φ < r_on;  αφ otherwise
///     c' = k ⊙ c̃ + (1 − k) ⊙ c        h' = k ⊙ h̃ + (1 − k) ⊙ h
///
/// where c̃, h̃ are `LSTMCell`'s new states from x, h, c. The leak α (default 10⁻³) applies in training
/// mode only (0 in evaluation, as the paper). Seed 000's row `c_t = f ⊙ c + i ⊙ c̃ ⊙ α_t` is a
/// simplification. The timestamp t is the step index (`step(_:state:time:)`) or given per sample
/// (`step(_:state:timestamps:)`). Parameters: `LSTMCell`'s four, `period` τ `[H]` = exp(U(0, 3))
/// (the paper's init, 1 to 20 steps) and `shift` s `[H]` = U(0, 1)·τ; r_on is fixed (default 0.05).
/// State `[h, c]`.
public final class PhasedLSTMCell: RecurrentCell {
    public var isTraining = true
    public let inputSize: Int
    public let hiddenSize: Int
    public let weights: RecurrentWeights
    /// τ, `[H]`.
    public let period: Parameter
    /// s, `[H]`.
    public let shift: Parameter
    /// r_on, the open fraction of each period.
    public let openRatio: Float
    /// α, the slope of the gate while closed (training only).
    public let leak: Float

    /// - Throws: `TensorError` naming `PhasedLSTMCell` for a size < 1, r_on outside (0, 1] or α outside [0, 1].
    public init(inputSize: Int, hiddenSize: Int, openRatio: Float = 0.05, leak: Float = 1e-3, bias: Bool = true,
                seed: UInt64, on backend: any Backend) throws {
        try requirePositive(["inputSize": inputSize, "hiddenSize": hiddenSize], layer: "PhasedLSTMCell")
        guard openRatio > 0, openRatio <= 1, leak >= 0, leak <= 1 else {
            throw TensorError(.invalidArgument, op: "PhasedLSTMCell",
                              "needs 0 < openRatio ≤ 1 and 0 ≤ leak ≤ 1, got openRatio \(openRatio), leak \(leak)")
        }
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        self.openRatio = openRatio
        self.leak = leak
        var p = SeededParameters(seed: seed, on: backend)
        weights = try RecurrentWeights(gates: 4, inputSize: inputSize, hiddenSize: hiddenSize, bias: bias, &p)
        let tau = try exp(Tensor.uniform([hiddenSize], low: 0, high: 3, seed: p.nextSeed(), on: backend))
        period = Parameter(tau)
        shift = Parameter(try Tensor.uniform([hiddenSize], seed: p.nextSeed(), on: backend) * tau)
    }

    public var stateSizes: [Int] { [hiddenSize, hiddenSize] }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        weights.named("") + [("period", period), ("shift", shift)]
    }

    /// `h'` of one step `[B, inputSize]` from a zero state at t = 0.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try outputFromInitialState(input) }

    /// State `[h, c]` at timestamp `time`.
    public func step(_ input: Tensor, state: [Tensor], time: Int) throws -> [Tensor] {
        try step(input, state: state, timestamps: Tensor.full([1], value: Float(time), on: input.backend))
    }

    /// State `[h, c]` at `timestamps` `[B]` (one per sample) or `[1]` (shared).
    /// - Throws: `TensorError` naming `PhasedLSTMCell` for shapes that do not fit.
    public func step(_ input: Tensor, state: [Tensor], timestamps: Tensor) throws -> [Tensor] {
        try checkStep(input, state)
        guard timestamps.rank == 1, timestamps.shape[0] == 1 || timestamps.shape[0] == input.shape[0] else {
            throw TensorError(.shapeMismatch, op: "PhasedLSTMCell",
                              "expects timestamps [\(input.shape[0])] or [1], got \(timestamps.shape)")
        }
        let (h, c) = (state[0], state[1])
        let (hNew, cNew) = try RecurrentKind.lstm.step(weights.projectInput(input), hidden: h, cell: c, weights)
        let k = try timeGate(timestamps.unsqueezed(axis: 1))
        let hNext: Tensor = try h + k * (hNew - h)
        let cNext: Tensor = try c + k * ((cNew ?? c) - c)
        return [hNext, cNext]
    }

    /// k `[B or 1, H]` at timestamps `[B or 1, 1]`.
    func timeGate(_ t: Tensor) throws -> Tensor {
        let cycles: Tensor = try (t - shift.value) / period.value
        let phase: Tensor = try cycles - floor(cycles)
        let b = t.backend
        let rising: Tensor = try phase * (2 / openRatio)
        let falling: Tensor = try 2 - rising
        let closed: Tensor = try phase * (isTraining ? leak : 0)
        let firstHalf = try phase.less(Tensor.full([], value: openRatio / 2, on: b))
        let open = try phase.less(Tensor.full([], value: openRatio, on: b))
        return try Tensor.selecting(firstHalf, rising, Tensor.selecting(open, falling, closed))
    }
}
