import Foundation
import KilnCore

/// The fixed random reservoir of an echo state network (Jaeger 2001; seed 000), a leaky-integrator
/// recurrence that is never trained:
///
///     h' = (1 − a)·h + a·tanh(W_in x + W h)
///
/// `W_in` `[N, I]` is `U(−inputScaling, inputScaling)`; W `[N, N]` keeps each entry of a `U(−1, 1)`
/// matrix with probability `density` and is then scaled to spectral radius ρ (`spectralRadius`, below
/// 1 for the echo state property). ρ(W) is estimated in Float64 on the host by power iteration (the
/// growth of ‖Wᵏv‖ over 200 steps after 100, which also converges for a complex dominant pair; about 1 %
/// for reservoirs of a few hundred units). All draws are Philox streams of `seed`: the same reservoir on
/// every backend. W_in and W are buffers (`weight_in`, `weight`), saved in checkpoints, not parameters.
/// State `[h]`.
public final class EchoStateReservoir: RecurrentCell {
    public var isTraining = true
    public let inputSize: Int
    /// N, the number of reservoir units.
    public let hiddenSize: Int
    /// a ∈ (0, 1]; 1 is the plain (non-leaky) reservoir.
    public let leakRate: Float
    /// W_in, `[N, I]`.
    public private(set) var inputWeight: Tensor
    /// W, `[N, N]`.
    public private(set) var weight: Tensor

    /// - Throws: `TensorError` naming `EchoStateReservoir` for sizes < 1, a leak rate outside (0, 1],
    ///   a density outside (0, 1], or a non-positive spectral radius or input scaling.
    public init(inputSize: Int, reservoirSize: Int, spectralRadius: Double = 0.9, leakRate: Float = 1,
                inputScaling: Float = 1, density: Double = 0.1, seed: UInt64, on backend: any Backend) throws {
        let op = "EchoStateReservoir"
        try requirePositive(["inputSize": inputSize, "reservoirSize": reservoirSize], layer: op)
        guard leakRate > 0, leakRate <= 1, density > 0, density <= 1, spectralRadius > 0, spectralRadius.isFinite,
              inputScaling > 0, inputScaling.isFinite else {
            throw TensorError(.invalidArgument, op: op,
                              "needs 0 < leakRate ≤ 1, 0 < density ≤ 1, spectralRadius > 0 and inputScaling > 0, got \(leakRate), \(density), \(spectralRadius), \(inputScaling)")
        }
        self.inputSize = inputSize
        hiddenSize = reservoirSize
        self.leakRate = leakRate
        var p = SeededParameters(seed: seed, on: backend)
        inputWeight = try Tensor.uniform([reservoirSize, inputSize], low: -inputScaling, high: inputScaling,
                                         seed: p.nextSeed(), on: backend)
        let values = try Tensor.uniform([reservoirSize * reservoirSize], low: -1, high: 1, seed: p.nextSeed(), on: backend)
            .scalars()
        let keep = try Tensor.uniform([reservoirSize * reservoirSize], seed: p.nextSeed(), on: backend).scalars()
        var w = zip(values, keep).map { Double($1) < density ? Double($0) : 0 }
        let radius = EchoStateReservoir.spectralRadius(w, n: reservoirSize)
        if radius > 0 { w = w.map { $0 * spectralRadius / radius } }
        weight = try Tensor(w.map(Float.init), shape: [reservoirSize, reservoirSize], on: backend)
    }

    /// An estimate of the spectral radius of the n × n row-major matrix `a`: the geometric-mean growth
    /// of ‖Aᵏv‖ over steps 100 … 300 from a fixed start vector (normalised every step).
    static func spectralRadius(_ a: [Double], n: Int, warmup: Int = 100, window: Int = 200) -> Double {
        var v = (0..<n).map { 1 + 0.01 * Double($0 % 7) }
        var logGrowth = 0.0
        for k in 0..<(warmup + window) {
            var next = [Double](repeating: 0, count: n)
            for i in 0..<n {
                var s = 0.0
                for j in 0..<n { s += a[i * n + j] * v[j] }
                next[i] = s
            }
            let norm = next.reduce(0) { $0 + $1 * $1 }.squareRoot()
            guard norm > 0, norm.isFinite else { return 0 }
            if k >= warmup { logGrowth += Foundation.log(norm / v.reduce(0) { $0 + $1 * $1 }.squareRoot()) }
            v = next.map { $0 / norm }
        }
        return Foundation.exp(logGrowth / Double(window))
    }

    public var stateSizes: [Int] { [hiddenSize] }

    public var ownBuffers: [(name: String, tensor: Tensor)] { [("weight_in", inputWeight), ("weight", weight)] }

    public func prepareBufferAssignment(_ name: String, to value: Tensor) throws -> () -> Void {
        switch name {
        case "weight_in": return { self.inputWeight = value.detached() }
        case "weight": return { self.weight = value.detached() }
        default: throw CheckpointError(.unexpectedTensor, context: "EchoStateReservoir", "has no buffer named '\(name)'")
        }
    }

    /// h' of one step `[B, inputSize]` from a zero state.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try outputFromInitialState(input) }

    /// State `[h]`.
    public func step(_ input: Tensor, state: [Tensor], time: Int) throws -> [Tensor] {
        try checkStep(input, state)
        let h = state[0]
        let drive: Tensor = try tanh(matmul(input, inputWeight, transposeB: true) + matmul(h, weight, transposeB: true))
        if leakRate == 1 { return [drive] }
        return [try h + (drive - h) * leakRate]
    }
}

/// An echo state network (Jaeger 2001; seed 000): a fixed `EchoStateReservoir` and a linear readout
/// of the reservoir state and the input, `y_t = W_out [h_t; x_t] + b`, fitted in closed form by ridge
/// regression (`fit`) rather than by back-propagation (the readout is an ordinary `Linear` and may
/// also be trained by gradient).
///
/// Shapes: sequences `[T, B, inputSize]` (time first), outputs `[T, B, outputSize]`. Children:
/// `reservoir` (buffers `weight_in`, `weight`), `readout` (`weight` `[O, N + I]`, `bias` `[O]`).
public final class EchoStateNetwork: Module {
    public var isTraining = true
    public let reservoir: EchoStateReservoir
    public let readout: Linear

    /// The reservoir as `EchoStateReservoir(inputSize:reservoirSize:…)`; the readout starts as
    /// `Linear(inputSize: N + I, outputSize:)` of the derived seed.
    /// - Throws: `TensorError` naming `EchoStateReservoir` or `Linear` for invalid arguments.
    public init(inputSize: Int, reservoirSize: Int, outputSize: Int, spectralRadius: Double = 0.9, leakRate: Float = 1,
                inputScaling: Float = 1, density: Double = 0.1, seed: UInt64, on backend: any Backend) throws {
        reservoir = try EchoStateReservoir(inputSize: inputSize, reservoirSize: reservoirSize,
                                           spectralRadius: spectralRadius, leakRate: leakRate,
                                           inputScaling: inputScaling, density: density, seed: seed, on: backend)
        readout = try Linear(inputSize: reservoirSize + inputSize, outputSize: outputSize,
                             seed: Initializer.derivedSeed(seed, stream: 0x5245_4144), on: backend)
    }

    public var children: [(name: String, module: any Module)] { [("reservoir", reservoir), ("readout", readout)] }

    /// `[h_t; x_t]` for every step: `[T, B, N + I]`, from `initialState` `[B, N]` (zeros when nil).
    /// - Throws: `TensorError` naming `EchoStateReservoir` for a sequence of the wrong shape.
    public func features(_ sequence: Tensor, initialState: Tensor? = nil) throws -> Tensor {
        let states = try reservoir.unrolled(sequence, initialState: initialState.map { [$0] }).output
        return try Tensor.concatenated([states, sequence], axis: 2)
    }

    /// The readout of `features(sequence)`: `[T, B, outputSize]`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try readout(features(input)) }

    /// Fits the readout by ridge regression on the steps from `washout` on (the first steps, which
    /// still remember the zero initial state, are skipped):
    /// `[W_out | b] = argmin Σ ‖W_out f_t + b − y_t‖² + λ‖W_out‖²` (the bias is not penalised), solved
    /// by Cholesky in Float64 on the host. Returns the mean squared training error of the fitted readout.
    /// - Throws: `TensorError` naming `EchoStateNetwork.fit` for targets not `[T, B, outputSize]`, a
    ///   washout that leaves no step, a negative λ, or a singular system (λ = 0 with collinear features).
    @discardableResult
    public func fit(_ sequence: Tensor, targets: Tensor, washout: Int = 0, ridge: Double = 1e-6) throws -> Double {
        let op = "EchoStateNetwork.fit"
        guard sequence.rank == 3, targets.shape == [sequence.shape[0], sequence.shape[1], readout.outputSize] else {
            throw TensorError(.shapeMismatch, op: op,
                              "expects targets [T, B, \(readout.outputSize)] for a sequence [T, B, I], got \(targets.shape) and \(sequence.shape)")
        }
        guard washout >= 0, washout < sequence.shape[0], ridge >= 0, ridge.isFinite else {
            throw TensorError(.invalidArgument, op: op,
                              "needs 0 ≤ washout < T = \(sequence.shape[0]) and a finite ridge ≥ 0, got washout \(washout), ridge \(ridge)")
        }
        let f = readout.inputSize, o = readout.outputSize
        let (x, y) = try withoutGradients { () throws -> ([Float], [Float]) in
            let all = try features(sequence)
            let kept = try all.sliced(axis: 0, start: washout)
            return (try kept.scalars(), try targets.sliced(axis: 0, start: washout).scalars())
        }
        let rows = x.count / f, n = f + 1
        // Normal equations with a bias column: (SᵀS + λ·diag(1, …, 1, 0)) W = SᵀY.
        var gram = [Double](repeating: 0, count: n * n), rhs = [Double](repeating: 0, count: n * o)
        var row = [Double](repeating: 1, count: n)
        for r in 0..<rows {
            for j in 0..<f { row[j] = Double(x[r * f + j]) }
            for i in 0..<n {
                let ri = row[i]
                for j in i..<n { gram[i * n + j] += ri * row[j] }
                for k in 0..<o { rhs[i * o + k] += ri * Double(y[r * o + k]) }
            }
        }
        for i in 0..<n { for j in 0..<i { gram[i * n + j] = gram[j * n + i] } }
        for i in 0..<f { gram[i * n + i] += ridge }
        guard let l = HostLinearAlgebra.cholesky(gram, n: n) else {
            throw TensorError(.invalidArgument, op: op, "the regularised normal equations are singular; use a ridge > 0")
        }
        let solution = HostLinearAlgebra.choleskySolve(l, n: n, rhs, columns: o)  // [n, o]
        var w = [Float](repeating: 0, count: o * f), b = [Float](repeating: 0, count: o)
        for k in 0..<o {
            for j in 0..<f { w[k * f + j] = Float(solution[j * o + k]) }
            b[k] = Float(solution[f * o + k])
        }
        let backend = readout.weight.value.backend
        try readout.weight.assign(try Tensor(w, shape: [o, f], on: backend))
        if let bias = readout.bias { try bias.assign(try Tensor(b, shape: [o], on: backend)) }
        var squared = 0.0
        for r in 0..<rows {
            for k in 0..<o {
                var prediction = Double(b[k])
                for j in 0..<f { prediction += Double(w[k * f + j]) * Double(x[r * f + j]) }
                let e = prediction - Double(y[r * o + k])
                squared += e * e
            }
        }
        return squared / Double(rows * o)
    }
}
