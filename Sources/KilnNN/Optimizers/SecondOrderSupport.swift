import KilnCore

/// `checkHyperparameter` bound to one optimizer's name, for the second-order and preconditioned
/// optimizers.
struct SecondOrderCheck {
    let op: String

    func finite(_ name: String, _ value: Double) throws { try checkHyperparameter(op, name, value) }

    func nonNegative(_ name: String, _ value: Double) throws { try checkHyperparameter(op, name, value, atLeast: 0) }

    func positive(_ name: String, _ value: Double) throws { try checkHyperparameter(op, name, value, above: 0) }

    /// `low ≤ value < high` (or ≤ `high` when `closed`).
    func inRange(_ name: String, _ value: Double, _ low: Double, _ high: Double, closed: Bool = false) throws {
        try checkHyperparameter(op, name, value, atLeast: low, below: closed ? nil : high, atMost: closed ? high : nil)
    }

    func atLeast(_ name: String, _ value: Int, _ low: Int) throws {
        guard value >= low else {
            throw TensorError(.invalidArgument, op: op, "\(name) must be ≥ \(low), got \(value)")
        }
    }

    /// A non-empty parameter list without repeats; with `sameBackend`, all on one backend.
    func parameters(_ parameters: [Parameter], sameBackend: Bool = false) throws {
        guard let first = parameters.first else {
            throw TensorError(.invalidArgument, op: op, "needs at least one parameter")
        }
        var seen = Set<ObjectIdentifier>()
        for p in parameters where !seen.insert(ObjectIdentifier(p)).inserted {
            throw TensorError(.invalidArgument, op: op, "a parameter of shape \(p.shape) appears more than once")
        }
        if sameBackend {
            for p in parameters where p.value.backend !== first.value.backend {
                throw TensorError(.backendMismatch, op: op,
                                  "all parameters must live on one backend (\(first.value.backend.name) and \(p.value.backend.name))")
            }
        }
    }
}

/// Parameters seen as one flat vector, in order (L-BFGS, natural gradient, Newton).
enum FlatParameters {
    /// The total number of scalars.
    static func count(_ parameters: [Parameter]) -> Int { parameters.reduce(0) { $0 + $1.value.count } }

    /// Every accumulated gradient flattened and concatenated (zeros for a parameter without one).
    static func gradient(_ parameters: [Parameter]) throws -> Tensor {
        try withoutGradients {
            let pieces = try parameters.map { p -> Tensor in
                try (p.gradient ?? Tensor.zeros(p.shape, on: p.value.backend)).detached().flattened()
            }
            return try Tensor.concatenated(pieces, axis: 0)
        }
    }

    /// Every value flattened and concatenated.
    static func values(_ parameters: [Parameter]) throws -> Tensor {
        try withoutGradients {
            try Tensor.concatenated(parameters.map { $0.value.detached().flattened() }, axis: 0)
        }
    }

    /// `flat` cut into one tensor per parameter, in the parameters' shapes.
    static func split(_ flat: Tensor, like parameters: [Parameter]) throws -> [Tensor] {
        try withoutGradients {
            var start = 0
            return try parameters.map { p in
                defer { start += p.value.count }
                return try flat.sliced(axis: 0, start: start, end: start + p.value.count).reshaped(to: p.shape)
            }
        }
    }

    /// θ ← θ + scale·direction for every parameter, keeping the accumulated gradients.
    static func add(_ direction: Tensor, scale: Double, to parameters: [Parameter]) throws {
        let pieces = try split(direction, like: parameters)
        try withoutGradients {
            for (p, d) in zip(parameters, pieces) {
                let step: Tensor = try d * Float(scale)
                try p.assign(try p.value.detached() + step, keepingGradient: true)
            }
        }
    }

    /// Sets every parameter from `flat`, keeping the accumulated gradients.
    static func assign(_ flat: Tensor, to parameters: [Parameter]) throws {
        for (p, v) in zip(parameters, try split(flat, like: parameters)) {
            try p.assign(v, keepingGradient: true)
        }
    }

    /// Σ aᵢ·bᵢ on the backend, read back as a Double.
    static func dot(_ a: Tensor, _ b: Tensor) throws -> Double {
        try withoutGradients { Double(try (a * b).sum().item()) }
    }
}

/// Loss closures that optimizers evaluate and differentiate themselves (L-BFGS, Newton, the
/// natural gradient's per-sample gradients).
enum LossEvaluation {
    /// Runs `body` with gradient recording on, whatever the caller's mode, as PyTorch's
    /// `torch.enable_grad()`.
    static func recording<R>(_ body: () throws -> R) rethrows -> R {
        try GradientMode.$isRecording.withValue(true) { try body() }
    }

    /// Runs a loss closure with recording on, checks it returns one element that depends on the
    /// parameters, back-propagates it and returns the loss (cut from the graph; reading it is the
    /// caller's choice). Gradients accumulate into the parameters' current values.
    static func backpropagate(_ closure: () throws -> Tensor, op: String) throws -> Tensor {
        try recording {
            let loss = try closure()
            guard loss.count == 1 else {
                throw TensorError(.invalidArgument, op: op, "the closure must return a one-element loss, got shape \(loss.shape)")
            }
            guard loss.requiresGradient else {
                throw TensorError(.invalidArgument, op: op,
                                  "the closure's loss does not depend on the parameters (it does not require a gradient)")
            }
            try loss.reshaped(to: []).backward()
            return loss.detached()
        }
    }
}
