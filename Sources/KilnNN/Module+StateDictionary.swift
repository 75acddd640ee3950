import KilnCore

/// State dictionaries: a model's parameters and buffers by dotted name, as PyTorch's `state_dict`.
extension Module {
    /// Every parameter and buffer under its dotted name (`0.weight`, `1.running_mean`), as PyTorch's
    /// `state_dict()`. The tensors are detached and share storage with the model.
    /// - Throws: when a buffer cannot be made (BatchNorm's `num_batches_tracked` is a new scalar tensor);
    ///   `CheckpointError.invalidArgument` when two entries share a name.
    public func stateDictionary() throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (name, parameter) in namedParameters() {
            guard out.updateValue(parameter.value.detached(), forKey: name) == nil else { throw duplicateEntry(name) }
        }
        for (name, tensor) in try namedBuffers() {
            guard out.updateValue(tensor.detached(), forKey: name) == nil else { throw duplicateEntry(name) }
        }
        return out
    }

    /// Loads parameters and buffers from `state` (names as `stateDictionary()`), as PyTorch's
    /// `load_state_dict`. Every name and shape is checked, and every value copied to the backend
    /// of the tensor it replaces (`to(_:)`), before anything changes: a throw leaves the model as it was.
    /// Parameters are replaced with `Parameter.assign`.
    /// - Parameter strict: true: the names must match exactly; false: entries that only one side has
    ///   are skipped and returned.
    /// - Returns: the model's names `state` lacks and the names of `state` the model lacks (sorted;
    ///   both empty when `strict`).
    /// - Throws: `CheckpointError` `.missingTensor` / `.unexpectedTensor` naming the keys (strict),
    ///   `.shapeMismatch` naming each tensor and both shapes, or a buffer's own check.
    @discardableResult
    public func loadStateDictionary(_ state: [String: Tensor], strict: Bool = true) throws
        -> (missing: [String], unexpected: [String]) {
        let load = try prepareStateLoad(state, shape: \.shape, strict: strict, context: "loadStateDictionary") {
            tensor, backend in try tensor.to(backend).detached()
        }
        try load.commit()
        return (load.missing, load.unexpected)
    }

    /// Checks a state (its names and shapes) against this model and makes every new value on the
    /// backend it belongs to, through `makeTensor(entry, backend)`; nothing changes until `commit` runs.
    func prepareStateLoad<Entry>(_ entries: [String: Entry], shape: (Entry) -> [Int], strict: Bool, context: String,
                                 makeTensor: (Entry, any Backend) throws -> Tensor) throws -> PreparedStateLoad {
        let shapes = entries.mapValues(shape)
        var parameters: [String: Parameter] = [:]
        for (name, parameter) in namedParameters() {
            guard parameters.updateValue(parameter, forKey: name) == nil else { throw duplicateEntry(name) }
        }
        var buffers: [String: BufferSlot] = [:]
        for slot in try bufferSlots(prefix: "") {
            guard parameters[slot.fullName] == nil, buffers.updateValue(slot, forKey: slot.fullName) == nil else {
                throw duplicateEntry(slot.fullName)
            }
        }
        let modelShapes = parameters.mapValues(\.shape).merging(buffers.mapValues(\.tensor.shape)) { a, _ in a }
        let missing = modelShapes.keys.filter { shapes[$0] == nil }.sorted()
        let unexpected = shapes.keys.filter { modelShapes[$0] == nil }.sorted()
        if strict, !missing.isEmpty || !unexpected.isEmpty {
            var parts: [String] = []
            if !missing.isEmpty { parts.append("missing \(listed(missing))") }
            if !unexpected.isEmpty { parts.append("unexpected \(listed(unexpected))") }
            throw CheckpointError(missing.isEmpty ? .unexpectedTensor : .missingTensor, context: context,
                                  "the state does not match the model's \(modelShapes.count) entries: " + parts.joined(separator: "; "))
        }
        let mismatched = modelShapes.keys.sorted().compactMap { name -> String? in
            guard let given = shapes[name], let expected = modelShapes[name], given != expected else { return nil }
            return "'\(name)' has shape \(given), the model \(expected)"
        }
        if !mismatched.isEmpty {
            throw CheckpointError(.shapeMismatch, context: context, mismatched.joined(separator: "; "))
        }
        var steps: [() throws -> Void] = []
        for (name, parameter) in parameters {
            guard let entry = entries[name] else { continue }
            let newValue = try makeTensor(entry, parameter.value.backend)
            steps.append { try parameter.assign(newValue) }
        }
        for (name, slot) in buffers {
            guard let entry = entries[name] else { continue }
            let newValue = try makeTensor(entry, slot.tensor.backend)
            do {
                steps.append(try slot.module.prepareBufferAssignment(slot.localName, to: newValue))
            } catch let error as CheckpointError {
                throw CheckpointError(error.kind, context: context, "'\(name)': \(error.description)")
            }
        }
        return PreparedStateLoad(missing: strict ? [] : missing, unexpected: strict ? [] : unexpected) {
            for step in steps { try step() }
        }
    }

    /// Every buffer of this module and its descendants with its owner and local name.
    private func bufferSlots(prefix: String) throws -> [BufferSlot] {
        var out = try ownBuffers.map { BufferSlot(fullName: prefix + $0.name, localName: $0.name, module: self, tensor: $0.tensor) }
        for (childName, child) in children {
            out += try child.bufferSlots(prefix: prefix + childName + ".")
        }
        return out
    }
}

/// A state load that passed every check: `commit` assigns the prepared values (its only possible
/// failure, a shape mismatch in `Parameter.assign`, was ruled out).
struct PreparedStateLoad {
    let missing: [String]
    let unexpected: [String]
    let commit: () throws -> Void
}

private struct BufferSlot {
    let fullName: String
    let localName: String
    let module: any Module
    let tensor: Tensor
}

private func duplicateEntry(_ name: String) -> CheckpointError {
    CheckpointError(.invalidArgument, context: "stateDictionary", "the model has two entries named '\(name)'")
}

/// Names for an error message: the first eight, then how many more.
func listed(_ names: [String]) -> String {
    let shown = names.prefix(8).map { "'\($0)'" }.joined(separator: ", ")
    return names.count > 8 ? "\(shown) and \(names.count - 8) more" : shown
}
