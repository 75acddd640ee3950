import Foundation
import KilnCore

/// Checkpoints: a model's state dictionary and, optionally, an optimizer's state in one
/// safetensors file (see `SafeTensors`).
///
/// Layout: the model's entries under their `stateDictionary()` names, so a model-only file is a
/// PyTorch state dict (`model.load_state_dict(safetensors.torch.load_file(path))`); the optimizer's
/// tensors under `optimizer.<key>`; the optimizer's scalars as metadata `optimizer.<key>`, each the
/// Double's shortest round-trip text (`"0.001"`, `"1e-08"`, `"inf"`); the user's metadata as given.
/// A learning-rate scheduler's state goes to metadata `scheduler.<key>` the same way.
/// Metadata keys that start with `optimizer.` or `scheduler.` are reserved. Kiln writes every tensor as F32,
/// `num_batches_tracked` included (PyTorch stores I64 and copies F32 into it on load; Kiln reads both).
public enum Checkpoint {
    /// The prefix of the optimizer's tensor names and metadata keys.
    public static let optimizerPrefix = "optimizer."
    /// The prefix of the scheduler's metadata keys.
    public static let schedulerPrefix = "scheduler."

    /// Saves `model`'s parameters and buffers, `optimizer`'s state, `scheduler`'s state and
    /// `metadata` to `url`, atomically.
    /// - Throws: `CheckpointError.invalidArgument` for a metadata key starting with `optimizer.` or
    ///   `scheduler.`, or a model entry starting with `optimizer.` when an optimizer is saved;
    ///   `CheckpointError.io` when writing fails.
    public static func save(model: some Module, optimizer: (any Optimizer)? = nil,
                            scheduler: (any LearningRateScheduler)? = nil, metadata: [String: String] = [:],
                            to url: URL) throws {
        if let key = metadata.keys.sorted().first(where: { $0.hasPrefix(optimizerPrefix) || $0.hasPrefix(schedulerPrefix) }) {
            throw CheckpointError(.invalidArgument, context: url.path,
                                  "metadata key '\(key)' is reserved: keys starting with '\(optimizerPrefix)' or '\(schedulerPrefix)' hold training state")
        }
        var tensors = try model.stateDictionary()
        var allMetadata = metadata
        if let optimizer {
            if let name = tensors.keys.sorted().first(where: { $0.hasPrefix(optimizerPrefix) }) {
                throw CheckpointError(.invalidArgument, context: url.path,
                                      "model entry '\(name)' would collide with the optimizer's entries ('\(optimizerPrefix)…')")
            }
            let state = try optimizer.stateDictionary()
            for (key, tensor) in state.tensors { tensors[optimizerPrefix + key] = tensor }
            for (key, value) in state.scalars { allMetadata[optimizerPrefix + key] = "\(value)" }
        }
        if let scheduler {
            for (key, value) in scheduler.stateDictionary() { allMetadata[schedulerPrefix + key] = "\(value)" }
        }
        try SafeTensors.write(tensors, metadata: allMetadata, to: url)
    }

    /// Loads a checkpoint written by `save` (or any safetensors state dict) into `model` and, when
    /// given, `optimizer` and `scheduler`. The whole file is validated, the model's names and shapes checked (strictly:
    /// missing and unexpected entries are errors) and the optimizer's state handed to its validating
    /// `loadStateDictionary` (then the scheduler's) before the model changes; any throw leaves all
    /// of them as they were. Without an optimizer (scheduler), the file's entries for it are ignored.
    /// - Returns: the user's metadata (without the `optimizer.` and `scheduler.` keys).
    /// - Throws: `CheckpointError` naming the file: the errors of `SafeTensors.readArrays(from:)`,
    ///   `.missingTensor` / `.unexpectedTensor` / `.shapeMismatch` for the model, `.missingTensor` when
    ///   an optimizer is given and the file holds no optimizer state, `.malformedHeader` for an
    ///   optimizer scalar that is not a number; and whatever the optimizer's `loadStateDictionary` throws.
    @discardableResult
    public static func load(into model: some Module, optimizer: (any Optimizer)? = nil,
                            scheduler: (any LearningRateScheduler)? = nil, from url: URL) throws -> [String: String] {
        let context = url.path
        let (arrays, metadata) = try SafeTensors.readArrays(from: url)
        let modelNames = Set(model.namedParameters().map(\.name) + (try model.namedBuffers()).map(\.name))
        func isOptimizerEntry(_ name: String) -> Bool { name.hasPrefix(optimizerPrefix) && !modelNames.contains(name) }

        let modelArrays = arrays.filter { !isOptimizerEntry($0.key) }
        let prepared = try model.prepareStateLoad(modelArrays, shape: \.shape, strict: true, context: context) {
            array, backend in try Tensor(array.scalars, shape: array.shape, on: backend)
        }
        let schedulerState = try scheduler.map { _ in try schedulerScalars(metadata, context: context) }
        // The scheduler sets its optimizer's rate: keep both as they were if either load throws.
        let optimizers = [optimizer, scheduler?.optimizer].compactMap { $0 }
        let before = try optimizers.map { try $0.stateDictionary() }
        do {
            if let optimizer {
                let state = try optimizerState(arrays.filter { isOptimizerEntry($0.key) }, metadata, for: optimizer,
                                               fallback: model.parameters().first?.value.backend, context: context)
                try optimizer.loadStateDictionary(state)
            }
            if let scheduler, let schedulerState { try scheduler.loadStateDictionary(schedulerState) }
        } catch {
            for (o, state) in zip(optimizers, before) { try? o.loadStateDictionary(state) }
            throw error
        }
        try prepared.commit()
        return metadata.filter { !$0.key.hasPrefix(optimizerPrefix) && !$0.key.hasPrefix(schedulerPrefix) }
    }

    /// The scheduler's state from the file's `scheduler.` metadata.
    private static func schedulerScalars(_ metadata: [String: String], context: String) throws -> [String: Double] {
        var state: [String: Double] = [:]
        for (key, text) in metadata where key.hasPrefix(schedulerPrefix) {
            guard let value = Double(text) else {
                throw CheckpointError(.malformedHeader, context: context, "scheduler scalar '\(key)' is '\(text)', not a number")
            }
            state[String(key.dropFirst(schedulerPrefix.count))] = value
        }
        guard !state.isEmpty else {
            throw CheckpointError(.missingTensor, context: context,
                                  "a scheduler was given but the file holds no scheduler state (no '\(schedulerPrefix)' metadata)")
        }
        return state
    }

    /// The optimizer's state from the file's `optimizer.` entries; each tensor `<index>.<name>` is made
    /// on the backend of parameter `index`.
    private static func optimizerState(_ entries: [String: SafeTensors.HostArray], _ metadata: [String: String],
                                       for optimizer: any Optimizer, fallback: (any Backend)?,
                                       context: String) throws -> OptimizerState {
        var state = OptimizerState()
        for (key, text) in metadata where key.hasPrefix(optimizerPrefix) {
            guard let value = Double(text) else {
                throw CheckpointError(.malformedHeader, context: context, "optimizer scalar '\(key)' is '\(text)', not a number")
            }
            state.scalars[String(key.dropFirst(optimizerPrefix.count))] = value
        }
        let parameters = optimizer.parameters
        for (name, array) in entries {
            let key = String(name.dropFirst(optimizerPrefix.count))
            let backend: (any Backend)?
            if let index = key.split(separator: ".", maxSplits: 1).first.flatMap({ Int($0) }), parameters.indices.contains(index) {
                backend = parameters[index].value.backend
            } else {
                backend = parameters.first?.value.backend ?? fallback
            }
            guard let backend else {
                throw CheckpointError(.unexpectedTensor, context: context,
                                      "optimizer tensor '\(name)' has no parameter to live beside (the optimizer and model have none)")
            }
            state.tensors[key] = try Tensor(array.scalars, shape: array.shape, on: backend)
        }
        if state.tensors.isEmpty && state.scalars.isEmpty {
            throw CheckpointError(.missingTensor, context: context,
                                  "an optimizer was given but the file holds no optimizer state (no '\(optimizerPrefix)' entries)")
        }
        return state
    }
}
