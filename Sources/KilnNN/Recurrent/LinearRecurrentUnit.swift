import Foundation
import KilnCore

/// The Linear Recurrent Unit (Orvieto et al. 2023; seed 004's diagonal linear recurrence): a complex
/// diagonal linear state-space recurrence with a real output,
///
///     λ = exp(−exp(ν) + i·exp(θ_log))               (|λ| = exp(−exp(ν)) < 1: always stable)
///     x' = λ ⊙ x + γ ⊙ (B u),   γ = exp(γ_log)      x ∈ ℂᴺ, B = B_re + i·B_im
///     y = Re(C x') + D u                           C = C_re + i·C_im
///
/// The complex arithmetic runs on real and imaginary parts (no reduction to a real recurrence):
/// `x'_re = λ_re x_re − λ_im x_im + γ B_re u`, `x'_im = λ_re x_im + λ_im x_re + γ B_im u`,
/// `y = C_re x'_re − C_im x'_im + D u`. Seed 004 writes the phase as θ; the paper (and Kiln) learns
/// θ_log = log θ. Steps run sequentially (`unrolled`); the paper's parallel scan is not implemented.
///
/// Initialisation as the paper: |λ|² uniform on [r_min², r_max²], θ uniform on [0, maxPhase],
/// γ = √(1 − |λ|²), B_re, B_im ~ N(0, 1/(2I)), C_re, C_im ~ N(0, 1/N), D ~ N(0, 1), from `seed`.
/// Parameters (the paper's names): `nu_log`, `theta_log`, `gamma_log` `[N]`, `B_re`, `B_im` `[N, I]`,
/// `C_re`, `C_im` `[H, N]`, `D` `[H, I]`. State `[y, x_re, x_im]` (`[B, H]`, `[B, N]`, `[B, N]`).
public final class LinearRecurrentUnit: RecurrentCell {
    public var isTraining = true
    public let inputSize: Int
    /// N, the complex state size.
    public let stateSize: Int
    /// H, the output size.
    public let hiddenSize: Int
    public let nuLog: Parameter, thetaLog: Parameter, gammaLog: Parameter
    public let bReal: Parameter, bImaginary: Parameter
    public let cReal: Parameter, cImaginary: Parameter
    public let d: Parameter

    /// - Throws: `TensorError` naming `LinearRecurrentUnit` for a size < 1, radii outside
    ///   0 ≤ r_min < r_max ≤ 1, or a negative or non-finite maxPhase.
    public init(inputSize: Int, stateSize: Int, outputSize: Int, minRadius: Double = 0, maxRadius: Double = 1,
                maxPhase: Double = 2 * Double.pi, seed: UInt64, on backend: any Backend) throws {
        try requirePositive(["inputSize": inputSize, "stateSize": stateSize, "outputSize": outputSize],
                            layer: "LinearRecurrentUnit")
        guard minRadius >= 0, minRadius < maxRadius, maxRadius <= 1, maxPhase >= 0, maxPhase.isFinite else {
            throw TensorError(.invalidArgument, op: "LinearRecurrentUnit",
                              "needs 0 ≤ minRadius < maxRadius ≤ 1 and a finite maxPhase ≥ 0, got \(minRadius), \(maxRadius), \(maxPhase)")
        }
        self.inputSize = inputSize
        self.stateSize = stateSize
        hiddenSize = outputSize
        var p = SeededParameters(seed: seed, on: backend)
        // Uniforms from Philox (the same bits on every backend), the logs in Float64 on the host.
        // u is kept inside [10⁻⁶, 1 − 10⁻⁶] so that no parameter starts infinite.
        let u1 = try Tensor.uniform([stateSize], seed: p.nextSeed(), on: backend).scalars()
        let u2 = try Tensor.uniform([stateSize], seed: p.nextSeed(), on: backend).scalars()
        func clamped(_ u: Float) -> Double { Swift.min(Swift.max(Double(u), 1e-6), 1 - 1e-6) }
        var nu = [Float](), theta = [Float](), gamma = [Float]()
        for (a, b) in zip(u1, u2) {
            let radius2 = clamped(a) * (maxRadius * maxRadius - minRadius * minRadius) + minRadius * minRadius
            nu.append(Float(Foundation.log(-0.5 * Foundation.log(radius2))))
            theta.append(Float(Foundation.log(Swift.max(maxPhase * clamped(b), 1e-12))))
            gamma.append(Float(Foundation.log((1 - radius2).squareRoot())))
        }
        nuLog = Parameter(try Tensor(nu, on: backend))
        thetaLog = Parameter(try Tensor(theta, on: backend))
        gammaLog = Parameter(try Tensor(gamma, on: backend))
        func normal(_ shape: [Int], _ std: Double) throws -> Parameter {
            Parameter(try Tensor.normal(shape, standardDeviation: Float(std), seed: p.nextSeed(), on: backend))
        }
        bReal = try normal([stateSize, inputSize], (1 / (2 * Double(inputSize))).squareRoot())
        bImaginary = try normal([stateSize, inputSize], (1 / (2 * Double(inputSize))).squareRoot())
        cReal = try normal([outputSize, stateSize], (1 / Double(stateSize)).squareRoot())
        cImaginary = try normal([outputSize, stateSize], (1 / Double(stateSize)).squareRoot())
        d = try normal([outputSize, inputSize], 1)
    }

    public var stateSizes: [Int] { [hiddenSize, stateSize, stateSize] }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        [("nu_log", nuLog), ("theta_log", thetaLog), ("gamma_log", gammaLog), ("B_re", bReal), ("B_im", bImaginary),
         ("C_re", cReal), ("C_im", cImaginary), ("D", d)]
    }

    /// λ's real and imaginary parts `[N]`.
    public func eigenvalues() throws -> (real: Tensor, imaginary: Tensor) {
        let modulus: Tensor = try exp(-exp(nuLog.value))
        let phase: Tensor = try exp(thetaLog.value)
        return (try modulus * cos(phase), try modulus * sin(phase))
    }

    /// y of one step `[B, inputSize]` from a zero state.
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try outputFromInitialState(input) }

    /// State `[y, x_re, x_im]`; the previous y is not read.
    public func step(_ input: Tensor, state: [Tensor], time: Int) throws -> [Tensor] {
        try checkStep(input, state)
        let (xr, xi) = (state[1], state[2])
        let (lr, li) = try eigenvalues()
        let gamma = try exp(gammaLog.value)
        let br: Tensor = try matmul(input, bReal.value, transposeB: true) * gamma
        let bi: Tensor = try matmul(input, bImaginary.value, transposeB: true) * gamma
        let real: Tensor = try lr * xr - li * xi + br
        let imaginary: Tensor = try lr * xi + li * xr + bi
        let y: Tensor = try matmul(real, cReal.value, transposeB: true) - matmul(imaginary, cImaginary.value, transposeB: true)
            + matmul(input, d.value, transposeB: true)
        return [y, real, imaginary]
    }
}
