import KilnCore

/// A trainable tensor of a module: a leaf that requires a gradient, replaced (not mutated) by
/// optimizer steps.
public final class Parameter: @unchecked Sendable {
    /// The current value, a leaf that accumulates its gradient in `backward()`.
    public private(set) var value: Tensor

    public init(_ initial: Tensor) {
        value = initial.detached().requiringGradient()
    }

    /// The gradient accumulated since the last `zeroGradient()`.
    public var gradient: Tensor? { value.gradient }

    public var shape: [Int] { value.shape }

    /// Replaces the value with `newValue` (same shape), as a fresh leaf. With `keepingGradient`
    /// the accumulated gradient carries over (optimizer steps do this, as PyTorch keeps `.grad`).
    /// - Throws: `TensorError.shapeMismatch` for another shape.
    public func assign(_ newValue: Tensor, keepingGradient: Bool = false) throws {
        guard newValue.shape == value.shape else {
            throw TensorError(.shapeMismatch, op: "Parameter.assign",
                              "new value has shape \(newValue.shape), the parameter \(value.shape)")
        }
        let kept = keepingGradient ? value.gradient : nil
        value = newValue.detached().requiringGradient()
        if let kept { try value.setGradient(kept) }
    }

    /// Replaces the accumulated gradient (nil clears it), e.g. after clipping.
    /// - Throws: `TensorError` for a gradient of another shape or backend.
    public func setGradient(_ gradient: Tensor?) throws { try value.setGradient(gradient) }

    /// Forgets the accumulated gradient.
    public func zeroGradient() { value.zeroGradient() }
}

/// A layer or model: parameters, child modules, a train/eval mode and a forward pass.
///
/// Parameter names are the checkpoint names: a child's parameters are prefixed with the child's
/// name and a dot (`encoder.0.weight`), as PyTorch's `state_dict`. Layers import `KilnCore` only,
/// never a backend module.
public protocol Module: AnyObject {
    /// This module's own parameters, by local name, in a fixed order.
    var ownParameters: [(name: String, parameter: Parameter)] { get }
    /// Child modules, by local name, in a fixed order.
    var children: [(name: String, module: any Module)] { get }
    /// This module's own buffers: non-parameter state that checkpoints save (running statistics),
    /// by local name (PyTorch's: `running_mean`), in a fixed order. Default: none.
    var ownBuffers: [(name: String, tensor: Tensor)] { get throws }
    /// Checks `value` as the new value of own buffer `name` and returns the closure that stores it.
    /// State loaders call this for every buffer before they run any closure, so a throw here leaves
    /// the module unchanged. The caller has checked the name and shape and copied `value` to the
    /// backend of the current buffer. Default: throws (a module without buffers).
    func prepareBufferAssignment(_ name: String, to value: Tensor) throws -> () -> Void
    /// Training (dropout active, batch statistics) or evaluation mode. Set it with `train(_:)`.
    var isTraining: Bool { get set }
    /// The forward pass.
    func callAsFunction(_ input: Tensor) throws -> Tensor
}

extension Module {
    public var ownParameters: [(name: String, parameter: Parameter)] { [] }
    public var children: [(name: String, module: any Module)] { [] }
    public var ownBuffers: [(name: String, tensor: Tensor)] { [] }

    public func prepareBufferAssignment(_ name: String, to value: Tensor) throws -> () -> Void {
        throw CheckpointError(.unexpectedTensor, context: "\(type(of: self))", "has no buffer named '\(name)'")
    }

    /// Every parameter of this module and its descendants, with dotted names.
    public func namedParameters() -> [(name: String, parameter: Parameter)] {
        var out = ownParameters
        for (childName, child) in children {
            out += child.namedParameters().map { ("\(childName).\($0.name)", $0.parameter) }
        }
        return out
    }

    /// Every buffer of this module and its descendants, with dotted names (`1.running_mean`).
    public func namedBuffers() throws -> [(name: String, tensor: Tensor)] {
        var out = try ownBuffers
        for (childName, child) in children {
            out += try child.namedBuffers().map { ("\(childName).\($0.name)", $0.tensor) }
        }
        return out
    }

    /// Every parameter, in `namedParameters()` order.
    public func parameters() -> [Parameter] { namedParameters().map(\.parameter) }

    /// The number of scalar parameters.
    public var parameterCount: Int { parameters().reduce(0) { $0 + $1.value.count } }

    /// Sets training (true) or evaluation (false) mode on this module and its descendants.
    public func train(_ mode: Bool = true) {
        isTraining = mode
        for (_, child) in children { child.train(mode) }
    }

    /// Evaluation mode: `train(false)`.
    public func eval() { train(false) }

    /// Forgets every parameter's accumulated gradient.
    public func zeroGradients() {
        for p in parameters() { p.zeroGradient() }
    }
}
