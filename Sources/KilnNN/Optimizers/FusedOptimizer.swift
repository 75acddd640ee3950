import KilnCore

/// The machinery shared by the optimizers whose update is one fused kernel pass per parameter
/// tensor (`Tensor.fusedOptimizerUpdate`): per-parameter state created at the first update,
/// per-parameter step counts, and state dictionaries.
///
/// Parameters without a gradient are skipped (as PyTorch skips `grad is None`); each parameter's
/// step count `t` advances only when it is updated.
public class FusedOptimizer: Optimizer {
    public let parameters: [Parameter]
    /// η. Checked at each `step()` (finite, ≥ 0), since schedulers set it between steps.
    public var learningRate: Double
    public private(set) var stepCount = 0
    /// The optimizer's name in errors, e.g. `Adam`.
    let name: String
    /// The names of the per-parameter state tensors (PyTorch's names where PyTorch has the optimizer).
    let stateNames: [String]
    /// Per-parameter state, created at the parameter's first update.
    private(set) var state: [[Tensor]?]
    /// Per-parameter update counts.
    private(set) var parameterSteps: [Int]

    init(_ name: String, parameters: [Parameter], learningRate: Double, stateNames: [String]) throws {
        guard !parameters.isEmpty else {
            throw TensorError(.invalidArgument, op: name, "got an empty parameter list")
        }
        try checkHyperparameter(name, "learning rate", learningRate, atLeast: 0)
        var seen = Set<ObjectIdentifier>()
        for p in parameters where !seen.insert(ObjectIdentifier(p)).inserted {
            throw TensorError(.invalidArgument, op: name, "a parameter appears twice in the parameter list")
        }
        self.name = name
        self.parameters = parameters
        self.learningRate = learningRate
        self.stateNames = stateNames
        state = Array(repeating: nil, count: parameters.count)
        parameterSteps = Array(repeating: 0, count: parameters.count)
    }

    /// The initial state of parameter `index` (zeros unless a subclass says otherwise).
    func initialState(_ index: Int) throws -> [Tensor] {
        let p = parameters[index].value
        return try stateNames.map { _ in try Tensor.zeros(p.shape, on: p.backend) }
    }

    /// The state of parameter `index`, created on first use.
    func ensureState(_ index: Int) throws -> [Tensor] {
        if let s = state[index] { return s }
        let s = try initialState(index)
        state[index] = s
        return s
    }

    /// The fused update of parameter `index` at its step `t` (1-based). Subclasses override.
    func update(_ index: Int, step t: Int) throws -> FusedUpdate {
        throw TensorError(.invalidArgument, op: name, "has no fused update rule")
    }

    /// Called after the fused pass of parameter `index` with the pass's result (the new θ for
    /// rules that write it). Subclasses that finish the update on the host (LAMB) override.
    func finish(_ index: Int, step t: Int, result: Tensor, state: [Tensor]) throws -> Tensor { result }

    public func step() throws {
        try checkHyperparameter(name, "learning rate", learningRate, atLeast: 0)
        try withoutGradients {
            for (i, p) in parameters.enumerated() {
                guard let g = p.gradient else { continue }
                let s = try ensureState(i)
                let t = parameterSteps[i] + 1
                let u = try update(i, step: t)
                let result = try Tensor.fusedOptimizerUpdate(u, parameter: p.value, gradient: g, state: s)
                let newValue = try finish(i, step: t, result: result, state: s)
                if newValue.storage !== p.value.storage { try p.assign(newValue, keepingGradient: true) }
                parameterSteps[i] = t
            }
        }
        stepCount += 1
    }

    public func stateDictionary() throws -> OptimizerState {
        var out = OptimizerState(scalars: ["lr": learningRate, "step": Double(stepCount)])
        for i in parameters.indices {
            out.scalars["\(i).step"] = Double(parameterSteps[i])
            guard let s = state[i] else { continue }
            for (name, t) in zip(stateNames, s) { out.tensors["\(i).\(name)"] = try t.cloned() }
        }
        return out
    }

    /// Restores the learning rate, step counts and state tensors. The other hyperparameters are
    /// the ones this optimizer was made with.
    public func loadStateDictionary(_ saved: OptimizerState) throws {
        let op = "\(name).loadStateDictionary"
        let reader = OptimizerStateReader(op: op, state: saved)
        let lr = try reader.learningRate()
        let steps = try reader.count("step")
        var newSteps: [Int] = []
        var newState: [[Tensor]?] = []
        var expected = Set<String>()
        for (i, p) in parameters.enumerated() {
            newSteps.append(try reader.count("\(i).step"))
            let keys = stateNames.map { "\(i).\($0)" }
            let present = keys.filter { saved.tensors[$0] != nil }
            if present.isEmpty {
                newState.append(nil)
                continue
            }
            guard present.count == keys.count else {
                let missing = keys.filter { saved.tensors[$0] == nil }
                throw TensorError(.invalidArgument, op: op, "parameter \(i) has partial state: missing \(missing)")
            }
            let tensors = try keys.map { try reader.tensor($0, shape: p.shape, on: p.value.backend) }
            expected.formUnion(keys)
            newState.append(tensors)
        }
        let unexpected = saved.tensors.keys.filter { !expected.contains($0) }.sorted()
        guard unexpected.isEmpty else {
            throw TensorError(.invalidArgument, op: op, "unexpected state tensors \(unexpected) (the state of another optimizer or model?)")
        }
        learningRate = lr
        stepCount = steps
        parameterSteps = newSteps
        state = newState
    }
}

/// Throws `.invalidArgument` naming `what` unless `value` is finite, ≥ `atLeast`, > `above`,
/// < `below` and ≤ `atMost` (each bound only when given). The one hyperparameter check of the
/// optimizers and their helpers.
func checkHyperparameter(_ op: String, _ what: String, _ value: Double, atLeast low: Double? = nil,
                         above lowExclusive: Double? = nil, below high: Double? = nil,
                         atMost max: Double? = nil) throws {
    var ok = value.isFinite
    if let low, !(value >= low) { ok = false }
    if let lowExclusive, !(value > lowExclusive) { ok = false }
    if let high, !(value < high) { ok = false }
    if let max, !(value <= max) { ok = false }
    guard ok else {
        var range: [String] = []
        if let low { range.append("≥ \(low)") }
        if let lowExclusive { range.append("> \(lowExclusive)") }
        if let high { range.append("< \(high)") }
        if let max { range.append("≤ \(max)") }
        throw TensorError(.invalidArgument, op: op,
                          "\(what) must be finite\(range.isEmpty ? "" : " and " + range.joined(separator: ", ")), got \(value)")
    }
}
