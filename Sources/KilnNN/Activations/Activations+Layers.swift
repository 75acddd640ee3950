import KilnCore

// Every stateless activation as a `Module` (no parameters), hyperparameters validated by the
// initialiser. Generated from one table; each calls the function of the same name.

/// Binary step layer: f(x) = 1 for x > 0, `valueAtZero` at 0, 0 below (see `binaryStep`).
public final class BinaryStep: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// The `valueAtZero` hyperparameter (default 1).
    public let valueAtZero: Float
    /// Creates the layer (defaults as PyTorch).
    /// - Throws: `TensorError.invalidArgument` naming `BinaryStep` for an invalid hyperparameter.
    public init(valueAtZero: Float = 1) throws {
        try requireFinite(valueAtZero, "valueAtZero", op: "BinaryStep")
        self.valueAtZero = valueAtZero
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try binaryStep(input, valueAtZero: valueAtZero) }
}

/// Identity layer: f(x) = x.
public final class Identity: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// Creates the layer.
    public init() {
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try identity(input) }
}

/// Sigmoid layer: σ(x) = 1/(1 + e^(−x)).
public final class Sigmoid: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// Creates the layer.
    public init() {
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try sigmoid(input) }
}

/// Tanh layer: tanh(x) = (eˣ − e^(−x))/(eˣ + e^(−x)).
public final class Tanh: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// Creates the layer.
    public init() {
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try tanh(input) }
}

/// ReLU layer: f(x) = max(0, x) (gradient 0 at 0, as PyTorch).
public final class ReLU: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// Creates the layer.
    public init() {
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try relu(input) }
}

/// ReLU6 layer: f(x) = min(max(0, x), 6) (see `relu6`).
public final class ReLU6: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// Creates the layer.
    public init() {
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try relu6(input) }
}

/// Leaky ReLU layer: f(x) = x for x > 0, slope·x otherwise (PyTorch's default slope 0.01).
public final class LeakyReLU: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// The `negativeSlope` hyperparameter (default 0.01).
    public let negativeSlope: Float
    /// Creates the layer (defaults as PyTorch).
    /// - Throws: `TensorError.invalidArgument` naming `LeakyReLU` for an invalid hyperparameter.
    public init(negativeSlope: Float = 0.01) throws {
        try requireFinite(negativeSlope, "negativeSlope", op: "LeakyReLU")
        self.negativeSlope = negativeSlope
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try leakyReLU(input, negativeSlope: negativeSlope) }
}

/// ELU layer: f(x) = x for x > 0, α(eˣ − 1) otherwise (α = 1).
public final class ELU: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// The `alpha` hyperparameter (default 1).
    public let alpha: Float
    /// Creates the layer (defaults as PyTorch).
    /// - Throws: `TensorError.invalidArgument` naming `ELU` for an invalid hyperparameter.
    public init(alpha: Float = 1) throws {
        try requireFinite(alpha, "alpha", op: "ELU")
        self.alpha = alpha
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try elu(input, alpha: alpha) }
}

/// SELU layer: λ·ELU_α(x) with PyTorch's α ≈ 1.6733, λ ≈ 1.0507 (see `selu`).
public final class SELU: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// Creates the layer.
    public init() {
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try selu(input) }
}

/// CELU layer: max(0, x) + min(0, α(exp(x/α) − 1)) (α = 1).
public final class CELU: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// The `alpha` hyperparameter (default 1).
    public let alpha: Float
    /// Creates the layer (defaults as PyTorch).
    /// - Throws: `TensorError.invalidArgument` naming `CELU` for an invalid hyperparameter.
    public init(alpha: Float = 1) throws {
        try requireFinite(alpha, "alpha", op: "CELU")
        guard alpha != 0 else { throw TensorError(.invalidArgument, op: "CELU", "alpha must not be 0, got \(alpha)") }
        self.alpha = alpha
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try celu(input, alpha: alpha) }
}

/// Softplus layer: (1/β)·log(1 + e^(βx)), x where βx > threshold (PyTorch's β = 1, threshold = 20).
public final class Softplus: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// The `beta` hyperparameter (default 1).
    public let beta: Float
    /// The `threshold` hyperparameter (default 20).
    public let threshold: Float
    /// Creates the layer (defaults as PyTorch).
    /// - Throws: `TensorError.invalidArgument` naming `Softplus` for an invalid hyperparameter.
    public init(beta: Float = 1, threshold: Float = 20) throws {
        try requirePositive(beta, "beta", op: "Softplus")
        try requireFinite(threshold, "threshold", op: "Softplus")
        self.beta = beta
        self.threshold = threshold
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try softplus(input, beta: beta, threshold: threshold) }
}

/// Shifted softplus layer (SchNet): softplus(x) − log 2.
public final class ShiftedSoftplus: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// Creates the layer.
    public init() {
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try shiftedSoftplus(input) }
}

/// Softsign layer: x/(1 + |x|).
public final class Softsign: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// Creates the layer.
    public init() {
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try softsign(input) }
}

/// Swish layer: x·σ(βx) (β = 1 is SiLU).
public final class Swish: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// The `beta` hyperparameter (default 1).
    public let beta: Float
    /// Creates the layer (defaults as PyTorch).
    /// - Throws: `TensorError.invalidArgument` naming `Swish` for an invalid hyperparameter.
    public init(beta: Float = 1) throws {
        try requireFinite(beta, "beta", op: "Swish")
        self.beta = beta
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try swish(input, beta: beta) }
}

/// SiLU layer: x·σ(x).
public final class SiLU: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// Creates the layer.
    public init() {
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try silu(input) }
}

/// Mish layer: x·tanh(softplus(x)).
public final class Mish: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// Creates the layer.
    public init() {
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try mish(input) }
}

/// GELU layer: x·Φ(x), exact (erf, PyTorch's default) or the tanh approximation.
public final class GELU: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// The `approximation` hyperparameter (default .none).
    public let approximation: GELUApproximation
    /// Creates the layer (defaults as PyTorch).
    public init(approximation: GELUApproximation = .none) {
        self.approximation = approximation
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try gelu(input, approximation: approximation) }
}

/// Hard sigmoid layer as PyTorch's `Hardsigmoid`: ReLU6(x + 3)/6 (see `hardSigmoid` for the seed disagreement).
public final class HardSigmoid: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// Creates the layer.
    public init() {
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try hardSigmoid(input) }
}

/// Hard tanh layer: clamp(x, minValue, maxValue) with PyTorch's gradient (see `hardTanh`).
public final class HardTanh: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// The `minValue` hyperparameter (default -1).
    public let minValue: Float
    /// The `maxValue` hyperparameter (default 1).
    public let maxValue: Float
    /// Creates the layer (defaults as PyTorch).
    /// - Throws: `TensorError.invalidArgument` naming `HardTanh` for an invalid hyperparameter.
    public init(minValue: Float = -1, maxValue: Float = 1) throws {
        try requireFinite(minValue, "minValue", op: "HardTanh")
        try requireFinite(maxValue, "maxValue", op: "HardTanh")
        guard minValue <= maxValue else { throw TensorError(.invalidArgument, op: "HardTanh", "minValue \(minValue) must not exceed maxValue \(maxValue)") }
        self.minValue = minValue
        self.maxValue = maxValue
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try hardTanh(input, minValue: minValue, maxValue: maxValue) }
}

/// Hard swish layer: x·ReLU6(x + 3)/6.
public final class HardSwish: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// Creates the layer.
    public init() {
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try hardSwish(input) }
}

/// Softmax layer: e^(xᵢ − m)/Σⱼ e^(xⱼ − m) along `axis` (m the maximum).
public final class Softmax: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// The `axis` hyperparameter (default -1).
    public let axis: Int
    /// Creates the layer (defaults as PyTorch).
    public init(axis: Int = -1) {
        self.axis = axis
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try softmax(input, axis: axis) }
}

/// Softmin layer: softmax(−x) along `axis`.
public final class Softmin: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// The `axis` hyperparameter (default -1).
    public let axis: Int
    /// Creates the layer (defaults as PyTorch).
    public init(axis: Int = -1) {
        self.axis = axis
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try softmin(input, axis: axis) }
}

/// Sparsemax layer: max(x − τ, 0) along `axis` (see `sparsemax`).
public final class Sparsemax: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// The `axis` hyperparameter (default -1).
    public let axis: Int
    /// Creates the layer (defaults as PyTorch).
    public init(axis: Int = -1) {
        self.axis = axis
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try sparsemax(input, axis: axis) }
}

