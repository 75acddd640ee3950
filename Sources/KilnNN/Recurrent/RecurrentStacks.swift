import KilnCore

// Cells built from other cells or layers of cells: the dilated RNN, the residual stack and the
// gated-feedback RNN. Each is a `RecurrentCell` itself, so `unrolled` runs it over a sequence.

/// A dilated recurrent layer (Chang et al. 2017; seed 000): `cell` reads its own state from
/// `dilation` steps back, `h_t = f(x_t, h_{t−D})`, so D interleaved sub-sequences run side by side
/// (with an `RNNCell`, seed 000's `h_t = φ(W_x x_t + W_h h_{t−D} + b)`). Stacks with growing D (1, 2,
/// 4, …) give the paper's multi-resolution network. Parameters: the cell's, under `cell.`. State: the
/// cell's states at t−1, t−2, …, t−D, concatenated (newest first; its first tensor is h_{t−1}).
public final class DilatedRNN: RecurrentCell {
    public var isTraining = true
    public let cell: any RecurrentCell
    /// D ≥ 1.
    public let dilation: Int

    /// - Throws: `TensorError` naming `DilatedRNN` for a dilation < 1.
    public init(cell: any RecurrentCell, dilation: Int) throws {
        try requirePositive(["dilation": dilation], layer: "DilatedRNN")
        self.cell = cell
        self.dilation = dilation
    }

    /// An Elman `RNNCell` (seed 000's dilated RNN) with dilation D.
    public convenience init(inputSize: Int, hiddenSize: Int, dilation: Int, nonlinearity: RNNNonlinearity = .tanh,
                            seed: UInt64, on backend: any Backend) throws {
        try self.init(cell: RNNCell(inputSize: inputSize, hiddenSize: hiddenSize, nonlinearity: nonlinearity,
                                    seed: seed, on: backend), dilation: dilation)
    }

    public var inputSize: Int { cell.inputSize }
    public var hiddenSize: Int { cell.hiddenSize }
    public var stateSizes: [Int] { Array([[Int]](repeating: cell.stateSizes, count: dilation).joined()) }
    public var children: [(name: String, module: any Module)] { [("cell", cell)] }

    /// `h'` of one step `[B, inputSize]` from a zero state.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try outputFromInitialState(input) }

    public func step(_ input: Tensor, state: [Tensor], time: Int) throws -> [Tensor] {
        try checkStep(input, state)
        let n = cell.stateSizes.count
        let inner = try cell.step(input, state: Array(state.suffix(n)), time: time)
        return inner + state.prefix(n * (dilation - 1))
    }
}

/// A stack of recurrent cells with residual connections between layers (seed 000's residual RNN;
/// Wu et al. 2016 for LSTMs): layer l reads the output y_{l−1} of the layer below (x for l = 0) and
/// outputs
///
///     y_l = y_{l−1} + α·h_l   when the sizes agree, else y_l = h_l,
///
/// where h_l is the cell's own output (its recurrent state stays h_l). Parameters: each cell's, under
/// `0.`, `1.`, …. State: `[y_top]` followed by every cell's state, bottom first.
public final class ResidualRNN: RecurrentCell {
    public var isTraining = true
    public let cells: [any RecurrentCell]
    /// α.
    public let scale: Float

    /// - Throws: `TensorError` naming `ResidualRNN` for no cells or a cell whose input size is not the
    ///   hidden size of the one below.
    public init(cells: [any RecurrentCell], scale: Float = 1) throws {
        guard let first = cells.first else {
            throw TensorError(.invalidArgument, op: "ResidualRNN", "needs at least one cell")
        }
        for (l, pair) in zip(cells, cells.dropFirst()).enumerated() where pair.1.inputSize != pair.0.hiddenSize {
            throw TensorError(.shapeMismatch, op: "ResidualRNN",
                              "cell \(l + 1) reads \(pair.1.inputSize) features but cell \(l) outputs \(pair.0.hiddenSize)")
        }
        guard scale.isFinite else { throw TensorError(.invalidArgument, op: "ResidualRNN", "scale must be finite, got \(scale)") }
        _ = first
        self.cells = cells
        self.scale = scale
    }

    public var inputSize: Int { cells[0].inputSize }
    public var hiddenSize: Int { cells[cells.count - 1].hiddenSize }
    public var stateSizes: [Int] { [hiddenSize] + cells.flatMap(\.stateSizes) }
    public var children: [(name: String, module: any Module)] { cells.enumerated().map { ("\($0.offset)", $0.element) } }

    /// The top output of one step `[B, inputSize]` from a zero state.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try outputFromInitialState(input) }

    public func step(_ input: Tensor, state: [Tensor], time: Int) throws -> [Tensor] {
        try checkStep(input, state)
        var y = input, offset = 1, next: [Tensor] = []
        for cell in cells {
            let n = cell.stateSizes.count
            let inner = try cell.step(y, state: Array(state[offset..<(offset + n)]), time: time)
            y = cell.inputSize == cell.hiddenSize ? try y + inner[0] * scale : inner[0]
            next += inner
            offset += n
        }
        return [y] + next
    }
}

/// The gated-feedback RNN (Chung et al. 2015; seed 000) with tanh units: L stacked layers whose
/// recurrent input is every layer's previous state, each scaled by a global reset gate:
///
///     g^{i→j} = σ(w_g^{i→j} · y^{j−1}_t + u_g^{i→j} · h*_{t−1})        h* = [h^1; …; h^L]
///     h^j_t = tanh(W^j y^{j−1}_t + b^j + Σ_i g^{i→j} U^{i→j} h^i_{t−1})
///
/// with y^0 = x and y^j = h^j. Seed 000's row `φ(W_xh x + F(h) ⊙ W_hh h + b)` is the one-layer
/// sketch. Parameters per layer j (`_l{j}`): `weight_ih` `[H, I_j]`, `weight_hh` `[H, L·H]` (the
/// U^{i→j} side by side), `bias` `[H]`, `gate_ih` `[L, I_j]` (rows w_g^{i→j}), `gate_hh` `[L, L·H]`
/// (rows u_g^{i→j}), all `U(−1/√H, 1/√H)`. State `[h^L, h^1, …, h^L]` (the output first).
public final class GatedFeedbackRNN: RecurrentCell {
    public var isTraining = true
    public let inputSize: Int
    public let hiddenSize: Int
    public let layerCount: Int
    struct Layer {
        let weightIH: Parameter, weightHH: Parameter, bias: Parameter?, gateIH: Parameter, gateHH: Parameter
    }
    let layers: [Layer]

    /// - Throws: `TensorError` naming `GatedFeedbackRNN` for a size < 1.
    public init(inputSize: Int, hiddenSize: Int, layerCount: Int = 2, bias: Bool = true, seed: UInt64,
                on backend: any Backend) throws {
        try requirePositive(["inputSize": inputSize, "hiddenSize": hiddenSize, "layerCount": layerCount],
                            layer: "GatedFeedbackRNN")
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        self.layerCount = layerCount
        var p = SeededParameters(seed: seed, on: backend)
        let bound = 1 / Double(hiddenSize).squareRoot()
        layers = try (0..<layerCount).map { j in
            let inSize = j == 0 ? inputSize : hiddenSize
            return Layer(weightIH: try p.uniform([hiddenSize, inSize], bound: bound),
                         weightHH: try p.uniform([hiddenSize, layerCount * hiddenSize], bound: bound),
                         bias: bias ? try p.uniform([hiddenSize], bound: bound) : nil,
                         gateIH: try p.uniform([layerCount, inSize], bound: bound),
                         gateHH: try p.uniform([layerCount, layerCount * hiddenSize], bound: bound))
        }
    }

    public var stateSizes: [Int] { Array(repeating: hiddenSize, count: layerCount + 1) }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        layers.enumerated().flatMap { j, l -> [(name: String, parameter: Parameter)] in
            [("weight_ih_l\(j)", l.weightIH), ("weight_hh_l\(j)", l.weightHH)]
                + (l.bias.map { [("bias_l\(j)", $0)] } ?? [])
                + [("gate_ih_l\(j)", l.gateIH), ("gate_hh_l\(j)", l.gateHH)]
        }
    }

    /// The top layer's output of one step `[B, inputSize]` from a zero state.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try outputFromInitialState(input) }

    public func step(_ input: Tensor, state: [Tensor], time: Int) throws -> [Tensor] {
        try checkStep(input, state)
        let previous = Array(state.dropFirst())
        let all = try Tensor.concatenated(previous, axis: 1)
        var y = input, next: [Tensor] = []
        for layer in layers {
            let gates = try sigmoid(matmul(y, layer.gateIH.value, transposeB: true)
                                    + matmul(all, layer.gateHH.value, transposeB: true)).unstacked(axis: 1)
            let gated = try Tensor.concatenated(zip(gates, previous).map { try $0.0.unsqueezed(axis: 1) * $0.1 }, axis: 1)
            y = try tanh(affine(y, layer.weightIH, layer.bias) + matmul(gated, layer.weightHH.value, transposeB: true))
            next.append(y)
        }
        return [y] + next
    }
}
