import KilnCore

/// Modules applied in order, as `torch.nn.Sequential`: `y = f_{n−1}(… f_1(f_0(x)))`. The children
/// are named `0`, `1`, ... (so parameters read `0.weight`, `2.bias`, as PyTorch's state dict).
public final class Sequential: Module {
    public var isTraining = true
    public let layers: [any Module]

    public init(_ layers: [any Module]) { self.layers = layers }

    public convenience init(_ layers: any Module...) { self.init(layers) }

    public var children: [(name: String, module: any Module)] {
        layers.enumerated().map { (String($0.offset), $0.element) }
    }

    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        var x = input
        for layer in layers { x = try layer(x) }
        return x
    }
}

/// A residual connection around `body`: `y = x + body(x)` (He et al. 2016). The body keeps the
/// shape. The child is named `body`.
public final class ResidualBlock: Module {
    public var isTraining = true
    public let body: any Module

    public init(_ body: any Module) { self.body = body }

    public var children: [(name: String, module: any Module)] { [("body", body)] }

    /// - Throws: `TensorError` naming `ResidualBlock` when the body changes the shape.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        let fx = try body(input)
        guard fx.shape == input.shape else {
            throw TensorError(.shapeMismatch, op: "ResidualBlock",
                              "the body maps \(input.shape) to \(fx.shape); a residual needs the same shape")
        }
        return try input + fx
    }
}

/// Flattens axes `startAxis ... endAxis` into one, as `torch.nn.Flatten` (defaults 1 and −1:
/// `[N, C, H, W] → [N, C·H·W]`). No parameters.
public final class Flatten: Module {
    public var isTraining = true
    public let startAxis: Int
    public let endAxis: Int

    public init(startAxis: Int = 1, endAxis: Int = -1) {
        self.startAxis = startAxis
        self.endAxis = endAxis
    }

    /// - Throws: `TensorError` naming `Flatten` for axes out of range or start after end.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        let r = input.rank
        let s = startAxis < 0 ? startAxis + r : startAxis
        let e = endAxis < 0 ? endAxis + r : endAxis
        guard s >= 0, e < r, s <= e else {
            throw TensorError(.badAxis, op: "Flatten",
                              "axes \(startAxis)...\(endAxis) do not fit a rank-\(r) tensor \(input.shape)")
        }
        let merged = input.shape[s...e].reduce(1, *)
        return try input.reshaped(to: Array(input.shape[..<s]) + [merged] + Array(input.shape[(e + 1)...]))
    }
}

/// A parameterless module computing `function` (for activations in a `Sequential`), e.g.
/// `Lambda("relu") { try relu($0) }`.
public final class Lambda: Module {
    public var isTraining = true
    public let name: String
    private let function: (Tensor) throws -> Tensor

    public init(_ name: String, _ function: @escaping (Tensor) throws -> Tensor) {
        self.name = name
        self.function = function
    }

    public func callAsFunction(_ input: Tensor) throws -> Tensor { try function(input) }
}
