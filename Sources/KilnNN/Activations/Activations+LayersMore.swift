import KilnCore

// Stateless activation layers (second half): see Activations+Layers.swift.

/// ISRU layer: x/√(1 + αx²) (α = 1).
public final class ISRU: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// The `alpha` hyperparameter (default 1).
    public let alpha: Float
    /// Creates the layer (defaults as PyTorch).
    /// - Throws: `TensorError.invalidArgument` naming `ISRU` for an invalid hyperparameter.
    public init(alpha: Float = 1) throws {
        try requirePositive(alpha, "alpha", op: "ISRU", allowZero: true)
        self.alpha = alpha
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try isru(input, alpha: alpha) }
}

/// ISRLU layer: x for x ≥ 0, x/√(1 + αx²) otherwise (α = 1).
public final class ISRLU: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// The `alpha` hyperparameter (default 1).
    public let alpha: Float
    /// Creates the layer (defaults as PyTorch).
    /// - Throws: `TensorError.invalidArgument` naming `ISRLU` for an invalid hyperparameter.
    public init(alpha: Float = 1) throws {
        try requirePositive(alpha, "alpha", op: "ISRLU", allowZero: true)
        self.alpha = alpha
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try isrlu(input, alpha: alpha) }
}

/// Gaussian activation layer: exp(−x²).
public final class GaussianActivation: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// Creates the layer.
    public init() {
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try gaussian(input) }
}

/// Bipolar sigmoid layer: (1 − e^(−x))/(1 + e^(−x)) = tanh(x/2).
public final class BipolarSigmoid: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// Creates the layer.
    public init() {
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try bipolarSigmoid(input) }
}

/// Log-sigmoid layer: log σ(x) = −softplus(−x).
public final class LogSigmoid: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// Creates the layer.
    public init() {
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try logSigmoid(input) }
}

/// Hard shrink layer: x for |x| > λ, else 0 (λ = 0.5).
public final class HardShrink: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// The `lambda` hyperparameter (default 0.5).
    public let `lambda`: Float
    /// Creates the layer (defaults as PyTorch).
    /// - Throws: `TensorError.invalidArgument` naming `HardShrink` for an invalid hyperparameter.
    public init(lambda: Float = 0.5) throws {
        try requirePositive(lambda, "lambda", op: "HardShrink", allowZero: true)
        self.lambda = lambda
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try hardShrink(input, lambda: lambda) }
}

/// Soft shrink layer: sign(x)·max(|x| − λ, 0) (λ = 0.5).
public final class SoftShrink: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// The `lambda` hyperparameter (default 0.5).
    public let `lambda`: Float
    /// Creates the layer (defaults as PyTorch).
    /// - Throws: `TensorError.invalidArgument` naming `SoftShrink` for an invalid hyperparameter.
    public init(lambda: Float = 0.5) throws {
        try requirePositive(lambda, "lambda", op: "SoftShrink", allowZero: true)
        self.lambda = lambda
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try softShrink(input, lambda: lambda) }
}

/// Tanh shrink layer: x − tanh(x).
public final class TanhShrink: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// Creates the layer.
    public init() {
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try tanhShrink(input) }
}

/// Thresholded ReLU layer: x for x > θ, else 0 (θ = 1).
public final class ThresholdedReLU: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// The `threshold` hyperparameter (default 1).
    public let threshold: Float
    /// Creates the layer (defaults as PyTorch).
    /// - Throws: `TensorError.invalidArgument` naming `ThresholdedReLU` for an invalid hyperparameter.
    public init(threshold: Float = 1) throws {
        try requireFinite(threshold, "threshold", op: "ThresholdedReLU")
        self.threshold = threshold
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try thresholdedReLU(input, threshold: threshold) }
}

/// CReLU layer: [max(0, x), max(0, −x)] concatenated along `axis`.
public final class CReLU: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// The `axis` hyperparameter (default -1).
    public let axis: Int
    /// Creates the layer (defaults as PyTorch).
    public init(axis: Int = -1) {
        self.axis = axis
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try crelu(input, axis: axis) }
}

/// GLU layer without projections: a ⊙ σ(b), a, b the halves of `axis` (see `GatedLinearUnit` for the projected form).
public final class GLU: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// The `axis` hyperparameter (default -1).
    public let axis: Int
    /// Creates the layer (defaults as PyTorch).
    public init(axis: Int = -1) {
        self.axis = axis
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try glu(input, axis: axis) }
}

/// ReGLU layer without projections: a ⊙ max(0, b) over the halves of `axis`.
public final class ReGLU: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// The `axis` hyperparameter (default -1).
    public let axis: Int
    /// Creates the layer (defaults as PyTorch).
    public init(axis: Int = -1) {
        self.axis = axis
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try reglu(input, axis: axis) }
}

/// GeGLU layer without projections: a ⊙ GELU(b) over the halves of `axis`.
public final class GeGLU: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// The `axis` hyperparameter (default -1).
    public let axis: Int
    /// Creates the layer (defaults as PyTorch).
    public init(axis: Int = -1) {
        self.axis = axis
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try geglu(input, axis: axis) }
}

/// SwiGLU layer without projections: a ⊙ b·σ(b) over the halves of `axis`.
public final class SwiGLU: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// The `axis` hyperparameter (default -1).
    public let axis: Int
    /// Creates the layer (defaults as PyTorch).
    public init(axis: Int = -1) {
        self.axis = axis
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try swiglu(input, axis: axis) }
}

/// Bent identity layer: (√(x² + 1) − 1)/2 + x.
public final class BentIdentity: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// Creates the layer.
    public init() {
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try bentIdentity(input) }
}

/// SQNL layer: u − u|u|/4, u = clamp(x, −2, 2).
public final class SQNL: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// Creates the layer.
    public init() {
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try sqnl(input) }
}

/// Error-function layer: erf(x) = (2/√π)∫₀ˣ e^(−t²) dt.
public final class Erf: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// Creates the layer.
    public init() {
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try erf(input) }
}

/// LiSHT layer: x·tanh(x).
public final class LiSHT: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// Creates the layer.
    public init() {
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try lisht(input) }
}

/// Serf layer: x·erf(log(1 + eˣ)).
public final class Serf: Module {
    /// Training or evaluation mode (no effect on this layer).
    public var isTraining = true
    /// Creates the layer.
    public init() {
    }
    /// Applies the activation.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try serf(input) }
}
