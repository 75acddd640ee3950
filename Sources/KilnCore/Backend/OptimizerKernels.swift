/// Fused optimizer updates: one pass over a parameter tensor reads θ, its gradient g and the
/// optimizer's per-element state, and writes θ' and the new state.
public protocol OptimizerKernels {
    /// For i < count: (newParameter[i], state[k][i]) = update(parameter[i], gradient[i], state[k][i]).
    /// State buffers (at most `FusedUpdate.maxStates`) are updated in place; `newParameter` may be
    /// `parameter`. Rules that do not write θ (`.average`, `.lambDirection`) leave it untouched.
    func optimizerUpdate(_ update: FusedUpdate, parameter: any BackendBuffer, gradient: any BackendBuffer,
                         state: [any BackendBuffer], newParameter: any BackendBuffer, count: Int) throws
}

/// One fused update: a rule and its coefficients, computed on the host in Float64 per step.
///
/// Every rule starts with the same prologue: g ← sign·g + l2·θ (`sign` −1 maximises; `l2` is
/// coupled weight decay), then θ ← decay·θ (`decay` = 1 − η·λ is decoupled weight decay).
/// The rule coefficients follow, in the order listed for each case.
public struct FusedUpdate: Sendable, Equatable {
    /// The most state buffers a rule uses.
    public static let maxStates = 3
    /// The most rule coefficients (after the three prologue coefficients).
    public static let maxCoefficients = 9

    public var rule: FusedUpdateRule
    public var gradientSign: Float
    public var l2: Float
    public var decay: Float
    /// Rule coefficients, at most `maxCoefficients`.
    public var coefficients: [Float]

    public init(_ rule: FusedUpdateRule, gradientSign: Float = 1, l2: Float = 0, decay: Float = 1,
                _ coefficients: [Float]) {
        self.rule = rule
        self.gradientSign = gradientSign
        self.l2 = l2
        self.decay = decay
        self.coefficients = coefficients
    }

    /// The 12 floats the kernels take: sign, l2, decay, then the rule coefficients zero-padded.
    public var packed: [Float] {
        [gradientSign, l2, decay] + coefficients + [Float](repeating: 0, count: Self.maxCoefficients - coefficients.count)
    }
}

/// The update rules of the fused optimizer kernel. Raw codes match `kiln_optimizer_rule` in
/// CKilnCPU and Kernels/optimizer.cl. State buffers s0, s1, s2; coefficients c0, c1, ….
public enum FusedUpdateRule: Int32, Sendable, CaseIterable {
    /// SGD. c: η, μ, dampening, nesterov, first. With μ ≠ 0: s0 = first ? g : μ·s0 + (1 − dampening)·g;
    /// d = nesterov ? g + μ·s0 : s0 (d = g when μ = 0); θ −= η·d.
    case sgd = 0
    /// AdaGrad. c: η_t, ε. s0 += g²; θ −= η_t·g / (√s0 + ε).
    case adagrad = 1
    /// RMSProp. c: η, α, ε, μ, centered. s0 = α·s0 + (1−α)·g²; centered: s1 = α·s1 + (1−α)·g and
    /// a = √(s0 − s1²) + ε, else a = √s0 + ε; μ > 0: s2 = μ·s2 + g/a, θ −= η·s2; else θ −= η·g/a.
    case rmsprop = 2
    /// Adadelta. c: η, ρ, ε. s0 = ρ·s0 + (1−ρ)·g²; Δ = √(s1 + ε)/√(s0 + ε)·g; s1 = ρ·s1 + (1−ρ)·Δ²; θ −= η·Δ.
    case adadelta = 3
    /// Adam / AdamW / AMSGrad. c: β1, β2, η/(1−β1ᵗ), 1/√(1−β2ᵗ), ε, amsgrad. s0 = m, s1 = v, s2 = max v;
    /// θ −= c2·m / (√v̂·c3 + ε) with v̂ = amsgrad ? (s2 = max(s2, v)) : v.
    case adam = 4
    /// AdaMax. c: β1, β2, η/(1−β1ᵗ), ε. s0 = m; s1 = u = max(β2·u, |g| + ε); θ −= c2·m/u.
    case adamax = 5
    /// NAdam. c: β1, β2, cg, cm, 1/√(1−β2ᵗ), ε. m, v as Adam; d = √v·c4 + ε; θ −= cg·g/d + cm·m/d.
    case nadam = 6
    /// RAdam. c: β1, β2, step, rectified, √(1−β2ᵗ), ε. m, v as Adam; θ −= rectified ?
    /// step·m·c4/(√v + ε) : step·m.
    case radam = 7
    /// Lion. c: η, β1, β2. θ −= η·sign(β1·m + (1−β1)·g); m = β2·m + (1−β2)·g.
    case lion = 8
    /// AdaBound / AMSBound. c: β1, β2, η√(1−β2ᵗ)/(1−β1ᵗ), ε, lower, upper, amsbound.
    /// m, v (s2 = max v); θ −= clamp(c2/(√v̂ + ε), lower, upper)·m.
    case adabound = 9
    /// AccSGD (Kidambi et al. 2018). c: η, ηκ/c_s (the long step), β, ζ. s0 = β·((1/β − 1)·s0 − c1·g + θ);
    /// θ = ζ·(θ − η·g) + (1 − ζ)·s0.
    case accsgd = 10
    /// MADGRAD. c: λ_k, ε, c_k, momentum. s1 += λ·g (s); s2 += λ·g² (ν); z = s0 − s1/(∛s2 + ε)
    /// with s0 = θ₀; θ = momentum ? (1 − c_k)·θ + c_k·z : z.
    case madgrad = 11
    /// FTRL-Proximal. c: α, β, λ1, λ2. σ = (√(n + g²) − √n)/α; z += g − σ·θ; n += g²;
    /// θ = |z| ≤ λ1 ? 0 : −(z − sign(z)·λ1) / ((β + √n)/α + λ2). s0 = z, s1 = n.
    case ftrl = 12
    /// Sophia (SophiaG). c: η, β1, ρ, ε. s0 = m = β1·m + (1−β1)·g; s1 = h (the Hessian EMA, not
    /// written); θ −= η·sign(m)·min(|m| / (ρ·h + ε), 1).
    case sophia = 13
    /// Lookahead synchronisation. c: α. s0 = slow + α·(θ − slow); θ = s0. The gradient is unused.
    case lookahead = 14
    /// Running average of θ (EMA, SWA; also an EMA of g when `parameter` is g). c: w.
    /// s0 += w·(θ − s0); θ is not written.
    case average = 15
    /// LAMB direction. c: β1, β2, 1/(1−β1ᵗ), 1/(1−β2ᵗ), ε, λ. m, v as Adam;
    /// s2 = (m·c2)/(√(v·c3) + ε) + λ·θ; θ is not written (the trust ratio needs ‖θ‖ and ‖s2‖).
    case lambDirection = 16

    /// Whether the rule writes `newParameter`.
    public var writesParameter: Bool { self != .average && self != .lambDirection }
}
