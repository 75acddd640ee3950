import Foundation

/// Define-by-run reverse-mode autograd.
///
/// A leaf made with `requiringGradient()` carries a node that accumulates its gradient. An op
/// whose inputs require gradients records a node holding those inputs and a pullback that maps the
/// gradient of its result to the gradients of its inputs, built from the same backend kernels, so
/// backward passes run on the forward pass's backend. `backward()` walks the graph in reverse
/// topological order. Ops without a pullback yet throw `TensorError` rather than drop the gradient.
public final class GradientNode: @unchecked Sendable {
    /// The inputs that require gradients, in the order the pullback returns their gradients.
    let inputs: [Tensor]
    /// Maps the gradient of the node's result to one gradient per input (nil: no contribution).
    let pullback: ((Tensor) throws -> [Tensor?])?
    /// The accumulated gradient of a leaf.
    var gradient: Tensor?
    private let lock = NSLock()

    init(inputs: [Tensor], pullback: ((Tensor) throws -> [Tensor?])?) {
        self.inputs = inputs
        self.pullback = pullback
    }

    var isLeaf: Bool { pullback == nil }

    func accumulate(_ g: Tensor) throws {
        try lock.withLock { gradient = try gradient.map { try $0 + g } ?? g }
    }
}

/// Whether ops record the graph (the task-local default is true).
public enum GradientMode {
    @TaskLocal public static var isRecording = true
}

/// Runs `body` without recording gradients (for inference and optimizer steps).
public func withoutGradients<R>(_ body: () throws -> R) rethrows -> R {
    try GradientMode.$isRecording.withValue(false) { try body() }
}

extension Tensor {
    /// Whether this tensor takes part in autograd (a leaf that requires a gradient or a recorded result).
    public var requiresGradient: Bool { gradientNode != nil }

    /// This tensor as a leaf that accumulates a gradient in `backward()`.
    public func requiringGradient() -> Tensor {
        var t = Tensor(shape: shape, storage: storage, dtype: dtype)
        t.gradientNode = GradientNode(inputs: [], pullback: nil)
        return t
    }

    /// The same values, cut from the graph.
    public func detached() -> Tensor { Tensor(shape: shape, storage: storage, dtype: dtype) }

    /// The gradient accumulated into this leaf by `backward()` calls (nil before any).
    public var gradient: Tensor? { gradientNode?.gradient }

    /// Clears the accumulated gradient of this leaf.
    public func zeroGradient() { gradientNode?.gradient = nil }

    /// Back-propagates from this tensor: `seed` (ones for a one-element tensor when omitted) is its
    /// gradient; every leaf it depends on accumulates d(this·seed)/d(leaf).
    /// - Throws: `.invalidArgument` when this tensor does not require a gradient, or when `seed` is
    ///   omitted for a tensor of more than one element, or has the wrong shape.
    public func backward(_ seed: Tensor? = nil) throws {
        guard let root = gradientNode else {
            throw TensorError(.invalidArgument, op: "backward",
                              "the tensor does not require a gradient (no input was made with requiringGradient())")
        }
        let start: Tensor
        if let seed {
            guard seed.shape == shape else {
                throw TensorError(.shapeMismatch, op: "backward", "seed shape \(seed.shape) differs from \(shape)")
            }
            try requireSameBackend([seed], op: "backward")
            start = seed
        } else {
            guard count == 1 else {
                throw TensorError(.invalidArgument, op: "backward",
                                  "needs a seed gradient for a tensor of shape \(shape); only one-element tensors default to 1")
            }
            start = try Tensor.ones(shape, on: backend)
        }
        // Reverse topological order by depth-first search from the root.
        var order: [GradientNode] = []
        var seen = Set<ObjectIdentifier>()
        var stack: [(GradientNode, Bool)] = [(root, false)]
        while let (node, expanded) = stack.popLast() {
            if expanded {
                order.append(node)
                continue
            }
            guard seen.insert(ObjectIdentifier(node)).inserted else { continue }
            stack.append((node, true))
            for input in node.inputs { if let n = input.gradientNode { stack.append((n, false)) } }
        }
        var pending: [ObjectIdentifier: Tensor] = [ObjectIdentifier(root): start]
        try withoutGradients {
            for node in order.reversed() {
                guard let g = pending.removeValue(forKey: ObjectIdentifier(node)) else { continue }
                guard let pullback = node.pullback else {
                    try node.accumulate(g)
                    continue
                }
                for (input, grad) in zip(node.inputs, try pullback(g)) {
                    guard let grad, let n = input.gradientNode else { continue }
                    let key = ObjectIdentifier(n)
                    pending[key] = try pending[key].map { try $0 + grad } ?? grad
                }
            }
        }
    }

    /// This result with a node recording `inputs` and `pullback` when recording is on and an input
    /// requires a gradient; unchanged otherwise.
    func recording(_ inputs: [Tensor], _ pullback: @escaping (Tensor) throws -> [Tensor?]) -> Tensor {
        guard GradientMode.isRecording, inputs.contains(where: \.requiresGradient) else { return self }
        var t = self
        t.gradientNode = GradientNode(inputs: inputs, pullback: pullback)
        return t
    }

    /// Throws for an op that has no pullback yet when one of its inputs requires a gradient.
    func requireNoGradient(_ inputs: [Tensor], op: String) throws {
        if GradientMode.isRecording && inputs.contains(where: \.requiresGradient) {
            throw TensorError(.invalidArgument, op: op,
                              "has no gradient yet; compute it inside withoutGradients { } or on detached() inputs")
        }
    }

    /// A gradient of a broadcast result reduced back to `shape`: summed over the broadcast dimensions.
    func reducedToShape(_ target: [Int]) throws -> Tensor {
        if shape == target { return self }
        let offset = rank - target.count
        let axes = (0..<rank).filter { $0 < offset || (target[$0 - offset] == 1 && shape[$0] != 1) }
        return try sum(alongAxes: axes, keepingDimensions: true).reshaped(to: target)
    }
}
