import KilnCore

/// Reads a saved `OptimizerState` with checks, so that `loadStateDictionary` can validate every
/// entry before it changes anything. Every failure throws a `TensorError` naming `op` and the key.
struct OptimizerStateReader {
    let op: String
    let state: OptimizerState

    /// The finite scalar `key`.
    func scalar(_ key: String) throws -> Double {
        guard let v = state.scalars[key] else {
            throw TensorError(.invalidArgument, op: op, "state has no scalar \"\(key)\"")
        }
        guard v.isFinite else {
            throw TensorError(.invalidArgument, op: op, "state scalar \"\(key)\" must be finite, got \(v)")
        }
        return v
    }

    /// A scalar holding a whole number ≥ `minimum` (and equal to `expected` when given).
    func integer(_ key: String, minimum: Int = 0, expected: Int? = nil) throws -> Int {
        let v = try scalar(key)
        guard v == v.rounded(), v >= Double(minimum), v < 0x1p62 else {
            throw TensorError(.invalidArgument, op: op, "state scalar \"\(key)\" must be a whole number ≥ \(minimum), got \(v)")
        }
        if let expected, Int(v) != expected {
            throw TensorError(.invalidArgument, op: op,
                              "state scalar \"\(key)\" is \(Int(v)) but this optimizer has \(expected)")
        }
        return Int(v)
    }

    /// A step or history count: a whole number ≥ 0.
    func count(_ key: String) throws -> Int { try integer(key) }

    /// The learning rate "lr": finite and ≥ 0 (> 0 with `positive`).
    func learningRate(positive: Bool = false) throws -> Double {
        let lr = try scalar("lr")
        guard positive ? lr > 0 : lr >= 0 else {
            throw TensorError(.invalidArgument, op: op, "state scalar \"lr\" (the learning rate) must be \(positive ? ">" : "≥") 0, got \(lr)")
        }
        return lr
    }

    /// The learning rate "lr" (finite, ≥ 0), or `current` when the state has none.
    func learningRate(default current: Double) throws -> Double {
        state.scalars["lr"] == nil ? current : try learningRate()
    }

    /// The seed saved as "seed_low" and "seed_high" (32 bits each; a Double cannot hold 64).
    func seed() throws -> UInt64 {
        let low = try integer("seed_low"), high = try integer("seed_high")
        guard low <= Int(UInt32.max), high <= Int(UInt32.max) else {
            throw TensorError(.invalidArgument, op: op, "state seed halves must be 32-bit, got \(low) and \(high)")
        }
        return UInt64(high) << 32 | UInt64(low)
    }

    func hasTensor(_ key: String) -> Bool { state.tensors[key] != nil }

    /// Whether any tensor "<k>.<name>" is present.
    func has(_ name: String) -> Bool { state.tensors.keys.contains { $0.hasSuffix(".\(name)") } }

    /// A copy on `backend` of the tensor `key`, which must have `shape`.
    func tensor(_ key: String, shape: [Int], on backend: any Backend) throws -> Tensor {
        guard let t = state.tensors[key] else {
            throw TensorError(.invalidArgument, op: op, "state has no tensor \"\(key)\"")
        }
        guard t.shape == shape else {
            throw TensorError(.shapeMismatch, op: op, "state tensor \"\(key)\" has shape \(t.shape), expected \(shape)")
        }
        return try t.detached().to(backend).cloned()
    }

    /// One tensor "<k>.<name>" per parameter, shaped `leading + parameter shape`.
    func pieces(_ name: String, leading: [Int] = [], parameters: [Parameter], on backend: any Backend) throws -> [Tensor] {
        try parameters.enumerated().map { k, p in try tensor("\(k).\(name)", shape: leading + p.shape, on: backend) }
    }

    /// The seed's scalar entries (see `seed()`).
    static func seedEntries(_ seed: UInt64) -> [String: Double] {
        ["seed_low": Double(seed & 0xFFFF_FFFF), "seed_high": Double(seed >> 32)]
    }

    /// Per-parameter state tensors keyed "<k>.<name>", copied.
    static func pieceEntries(_ name: String, _ pieces: [Tensor]) throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (k, t) in pieces.enumerated() { out["\(k).\(name)"] = try t.cloned() }
        return out
    }
}
