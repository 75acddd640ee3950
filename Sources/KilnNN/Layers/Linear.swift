import KilnCore

/// Checks that every size is positive, naming `layer` and the values otherwise.
func requirePositive(_ sizes: KeyValuePairs<String, Int>, layer: String) throws {
    for (name, value) in sizes where value <= 0 {
        throw TensorError(.invalidArgument, op: layer, "\(name) must be ≥ 1, got \(value)")
    }
}

/// `U(−bound, bound)` from `seed` — PyTorch's default for weights (`kaiming_uniform_(a=√5)`, which
/// is `bound = 1/√fanIn`) and biases (`bound = 1/√fanIn`).
func uniformParameter(_ shape: [Int], bound: Double, seed: UInt64, on backend: any Backend) throws -> Parameter {
    Parameter(try Tensor.uniform(shape, low: Float(-bound), high: Float(bound), seed: seed, on: backend))
}

/// A fully connected layer, as `torch.nn.Linear`: `y = x·Wᵀ + b`.
///
/// Shapes: input `[*, inputSize]`, weight `[outputSize, inputSize]`, bias `[outputSize]`,
/// output `[*, outputSize]`. Initialisation as PyTorch: weight and bias `U(−1/√inputSize, 1/√inputSize)`
/// (`kaiming_uniform_(a=√5)` for the weight), the weight from `seed`, the bias from
/// `Initializer.derivedSeed(seed, stream: 1)`. Parameters: `weight`, `bias`.
public final class Linear: Module {
    public var isTraining = true
    public let inputSize: Int
    public let outputSize: Int
    /// `[outputSize, inputSize]`.
    public let weight: Parameter
    /// `[outputSize]`, or nil without a bias.
    public let bias: Parameter?

    /// - Throws: `TensorError` naming `Linear` for a size < 1.
    public init(inputSize: Int, outputSize: Int, bias: Bool = true, seed: UInt64, on backend: any Backend) throws {
        try requirePositive(["inputSize": inputSize, "outputSize": outputSize], layer: "Linear")
        self.inputSize = inputSize
        self.outputSize = outputSize
        let bound = 1 / Double(inputSize).squareRoot()
        weight = try uniformParameter([outputSize, inputSize], bound: bound, seed: seed, on: backend)
        self.bias = bias ? try uniformParameter([outputSize], bound: bound,
                                                seed: Initializer.derivedSeed(seed, stream: 1), on: backend) : nil
    }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    /// `x·Wᵀ + b` over the last axis.
    /// - Throws: `TensorError` naming `Linear` when the last dimension is not `inputSize`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        guard input.rank >= 1, input.shape[input.rank - 1] == inputSize else {
            throw TensorError(.shapeMismatch, op: "Linear",
                              "expects input [*, \(inputSize)], got \(input.shape)")
        }
        let rows = input.count / inputSize
        let flat = input.rank == 2 ? input : try input.reshaped(to: [rows, inputSize])
        var y = try matmul(flat, weight.value, transposeB: true)
        if let bias { y = try y + bias.value }
        return input.rank == 2 ? y : try y.reshaped(to: Array(input.shape.dropLast()) + [outputSize])
    }
}

/// A bilinear layer, as `torch.nn.Bilinear`: `y[n, o] = Σ_{i, j} x1[n, i]·W[o, i, j]·x2[n, j] + b[o]`.
///
/// Shapes: inputs `[N, in1]` and `[N, in2]`, weight `[out, in1, in2]`, bias `[out]`, output
/// `[N, out]`. Initialisation as PyTorch: weight and bias `U(−1/√in1, 1/√in1)`. Called with
/// `callAsFunction(_:_:)`; the one-input `Module` call takes the two inputs concatenated on the last
/// axis (`[N, in1 + in2]`). Parameters: `weight`, `bias`.
public final class Bilinear: Module {
    public var isTraining = true
    public let input1Size: Int
    public let input2Size: Int
    public let outputSize: Int
    /// `[outputSize, input1Size, input2Size]`.
    public let weight: Parameter
    /// `[outputSize]`, or nil.
    public let bias: Parameter?

    /// - Throws: `TensorError` naming `Bilinear` for a size < 1.
    public init(input1Size: Int, input2Size: Int, outputSize: Int, bias: Bool = true, seed: UInt64,
                on backend: any Backend) throws {
        try requirePositive(["input1Size": input1Size, "input2Size": input2Size, "outputSize": outputSize],
                            layer: "Bilinear")
        self.input1Size = input1Size
        self.input2Size = input2Size
        self.outputSize = outputSize
        let bound = 1 / Double(input1Size).squareRoot()
        weight = try uniformParameter([outputSize, input1Size, input2Size], bound: bound, seed: seed, on: backend)
        self.bias = bias ? try uniformParameter([outputSize], bound: bound,
                                                seed: Initializer.derivedSeed(seed, stream: 1), on: backend) : nil
    }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    /// `x1ᵀ·W·x2 + b` per row: computed as `(x1·W') ⊙ x2` summed, W' = W permuted to `[in1, out·in2]`.
    /// - Throws: `TensorError` naming `Bilinear` for inputs not `[N, in1]` and `[N, in2]`.
    public func callAsFunction(_ x1: Tensor, _ x2: Tensor) throws -> Tensor {
        guard x1.rank == 2, x2.rank == 2, x1.shape[0] == x2.shape[0],
              x1.shape[1] == input1Size, x2.shape[1] == input2Size else {
            throw TensorError(.shapeMismatch, op: "Bilinear",
                              "expects inputs [N, \(input1Size)] and [N, \(input2Size)], got \(x1.shape) and \(x2.shape)")
        }
        let n = x1.shape[0]
        let w = try weight.value.permuted([1, 0, 2]).reshaped(to: [input1Size, outputSize * input2Size])
        let t = try matmul(x1, w).reshaped(to: [n, outputSize, input2Size])
        let products = try t * x2.unsqueezed(axis: 1)
        var y = try products.sum(alongAxes: [2])
        if let bias { y = try y + bias.value }
        return y
    }

    /// The two inputs concatenated on the last axis: `[N, in1 + in2]`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        guard input.rank == 2, input.shape[1] == input1Size + input2Size else {
            throw TensorError(.shapeMismatch, op: "Bilinear",
                              "expects the concatenated input [N, \(input1Size + input2Size)], got \(input.shape)")
        }
        let parts = try input.split(sizes: [input1Size, input2Size], axis: 1)
        return try self(parts[0], parts[1])
    }
}
