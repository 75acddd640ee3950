import Foundation
import Kiln
import KilnTestSupport
import Testing

/// A Float64 reference of one optimizer for one parameter tensor, written from the published
/// algorithm with scalar loops: `step` updates θ in place from g at step t (1-based).
private class ScalarOptimizer {
    func step(_ theta: inout [Double], _ g: [Double], _ t: Int) {}
}

private func sgn(_ x: Double) -> Double { x > 0 ? 1 : x < 0 ? -1 : 0 }

private final class SGDRef: ScalarOptimizer {
    let lr, mu, damp, wd: Double, nesterov: Bool
    var b: [Double] = []
    init(lr: Double, mu: Double = 0, damp: Double = 0, wd: Double = 0, nesterov: Bool = false) {
        (self.lr, self.mu, self.damp, self.wd, self.nesterov) = (lr, mu, damp, wd, nesterov)
    }
    override func step(_ th: inout [Double], _ g0: [Double], _ t: Int) {
        if b.isEmpty { b = Array(repeating: 0, count: th.count) }
        for i in th.indices {
            var g = g0[i] + wd * th[i]
            if mu != 0 {
                b[i] = t == 1 ? g : mu * b[i] + (1 - damp) * g
                g = nesterov ? g + mu * b[i] : b[i]
            }
            th[i] -= lr * g
        }
    }
}

private final class AdaGradRef: ScalarOptimizer {
    let lr, decay, wd, eps: Double
    var r: [Double] = []
    init(lr: Double, decay: Double, wd: Double, initial: Double, eps: Double) {
        (self.lr, self.decay, self.wd, self.eps) = (lr, decay, wd, eps)
        super.init()
        r = [initial]
    }
    override func step(_ th: inout [Double], _ g0: [Double], _ t: Int) {
        if r.count == 1 { r = Array(repeating: r[0], count: th.count) }
        let clr = lr / (1 + Double(t - 1) * decay)
        for i in th.indices {
            let g = g0[i] + wd * th[i]
            r[i] += g * g
            th[i] -= clr * g / (r[i].squareRoot() + eps)
        }
    }
}

private final class RMSPropRef: ScalarOptimizer {
    let lr, alpha, eps, wd, mu: Double, centered: Bool
    var sq: [Double] = [], ga: [Double] = [], b: [Double] = []
    init(lr: Double, alpha: Double, eps: Double, wd: Double, mu: Double, centered: Bool) {
        (self.lr, self.alpha, self.eps, self.wd, self.mu, self.centered) = (lr, alpha, eps, wd, mu, centered)
    }
    override func step(_ th: inout [Double], _ g0: [Double], _ t: Int) {
        if sq.isEmpty { sq = Array(repeating: 0, count: th.count); ga = sq; b = sq }
        for i in th.indices {
            let g = g0[i] + wd * th[i]
            sq[i] = alpha * sq[i] + (1 - alpha) * g * g
            var avg = sq[i]
            if centered {
                ga[i] = alpha * ga[i] + (1 - alpha) * g
                avg -= ga[i] * ga[i]
            }
            let denom = avg.squareRoot() + eps
            if mu > 0 {
                b[i] = mu * b[i] + g / denom
                th[i] -= lr * b[i]
            } else {
                th[i] -= lr * g / denom
            }
        }
    }
}

private final class AdadeltaRef: ScalarOptimizer {
    let lr, rho, eps, wd: Double
    var eg: [Double] = [], ed: [Double] = []
    init(lr: Double, rho: Double, eps: Double, wd: Double) { (self.lr, self.rho, self.eps, self.wd) = (lr, rho, eps, wd) }
    override func step(_ th: inout [Double], _ g0: [Double], _ t: Int) {
        if eg.isEmpty { eg = Array(repeating: 0, count: th.count); ed = eg }
        for i in th.indices {
            let g = g0[i] + wd * th[i]
            eg[i] = rho * eg[i] + (1 - rho) * g * g
            let d = (ed[i] + eps).squareRoot() / (eg[i] + eps).squareRoot() * g
            ed[i] = rho * ed[i] + (1 - rho) * d * d
            th[i] -= lr * d
        }
    }
}

/// Adam, AdamW (decoupled) and AMSGrad.
private final class AdamRef: ScalarOptimizer {
    let lr, b1, b2, eps, wd: Double, decoupled, ams: Bool
    var m: [Double] = [], v: [Double] = [], vmax: [Double] = []
    init(lr: Double, b1: Double = 0.9, b2: Double = 0.999, eps: Double = 1e-8, wd: Double = 0, decoupled: Bool = false, ams: Bool = false) {
        (self.lr, self.b1, self.b2, self.eps, self.wd, self.decoupled, self.ams) = (lr, b1, b2, eps, wd, decoupled, ams)
    }
    override func step(_ th: inout [Double], _ g0: [Double], _ t: Int) {
        if m.isEmpty { m = Array(repeating: 0, count: th.count); v = m; vmax = m }
        for i in th.indices {
            var g = g0[i]
            if decoupled { th[i] *= 1 - lr * wd } else { g += wd * th[i] }
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            let mHat = m[i] / (1 - pow(b1, Double(t)))
            var vUsed = v[i]
            if ams { vmax[i] = max(vmax[i], v[i]); vUsed = vmax[i] }
            let vHat = vUsed / (1 - pow(b2, Double(t)))
            th[i] -= lr * mHat / (vHat.squareRoot() + eps)
        }
    }
}

private final class AdamaxRef: ScalarOptimizer {
    let lr, b1, b2, eps, wd: Double
    var m: [Double] = [], u: [Double] = []
    init(lr: Double, b1: Double, b2: Double, eps: Double, wd: Double) { (self.lr, self.b1, self.b2, self.eps, self.wd) = (lr, b1, b2, eps, wd) }
    override func step(_ th: inout [Double], _ g0: [Double], _ t: Int) {
        if m.isEmpty { m = Array(repeating: 0, count: th.count); u = m }
        for i in th.indices {
            let g = g0[i] + wd * th[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            u[i] = max(b2 * u[i], abs(g) + eps)
            th[i] -= lr / (1 - pow(b1, Double(t))) * m[i] / u[i]
        }
    }
}

/// NAdam with Dozat's momentum schedule μ_t = β1(1 − 0.5·0.96^(tψ)).
private final class NAdamRef: ScalarOptimizer {
    let lr, b1, b2, eps, wd, psi: Double
    var m: [Double] = [], v: [Double] = [], muProduct = 1.0
    init(lr: Double, b1: Double, b2: Double, eps: Double, wd: Double, psi: Double) {
        (self.lr, self.b1, self.b2, self.eps, self.wd, self.psi) = (lr, b1, b2, eps, wd, psi)
    }
    override func step(_ th: inout [Double], _ g0: [Double], _ t: Int) {
        if m.isEmpty { m = Array(repeating: 0, count: th.count); v = m }
        let muT = b1 * (1 - 0.5 * pow(0.96, Double(t) * psi))
        let muNext = b1 * (1 - 0.5 * pow(0.96, Double(t + 1) * psi))
        muProduct *= muT
        for i in th.indices {
            let g = g0[i] + wd * th[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            let vHat = v[i] / (1 - pow(b2, Double(t)))
            let d = vHat.squareRoot() + eps
            th[i] -= lr * (1 - muT) / (1 - muProduct) * g / d + lr * muNext / (1 - muProduct * muNext) * m[i] / d
        }
    }
}

private final class RAdamRef: ScalarOptimizer {
    let lr, b1, b2, eps: Double
    var m: [Double] = [], v: [Double] = []
    init(lr: Double, b1: Double, b2: Double, eps: Double) { (self.lr, self.b1, self.b2, self.eps) = (lr, b1, b2, eps) }
    override func step(_ th: inout [Double], _ g: [Double], _ t: Int) {
        if m.isEmpty { m = Array(repeating: 0, count: th.count); v = m }
        let rhoInf = 2 / (1 - b2) - 1
        let b2t = pow(b2, Double(t))
        let rhoT = rhoInf - 2 * Double(t) * b2t / (1 - b2t)
        for i in th.indices {
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
            let mHat = m[i] / (1 - pow(b1, Double(t)))
            if rhoT > 5 {
                let l = (1 - b2t).squareRoot() / (v[i].squareRoot() + eps)
                let r = ((rhoT - 4) * (rhoT - 2) * rhoInf / ((rhoInf - 4) * (rhoInf - 2) * rhoT)).squareRoot()
                th[i] -= lr * mHat * r * l
            } else {
                th[i] -= lr * mHat
            }
        }
    }
}

private final class LionRef: ScalarOptimizer {
    let lr, b1, b2, wd: Double
    var m: [Double] = []
    init(lr: Double, b1: Double, b2: Double, wd: Double) { (self.lr, self.b1, self.b2, self.wd) = (lr, b1, b2, wd) }
    override func step(_ th: inout [Double], _ g: [Double], _ t: Int) {
        if m.isEmpty { m = Array(repeating: 0, count: th.count) }
        for i in th.indices {
            let c = b1 * m[i] + (1 - b1) * g[i]
            th[i] = th[i] - lr * (sgn(c) + wd * th[i])
            m[i] = b2 * m[i] + (1 - b2) * g[i]
        }
    }
}

private final class AdaBoundRef: ScalarOptimizer {
    let lr, b1, b2, finalLR, gamma, eps: Double
    var m: [Double] = [], v: [Double] = []
    init(lr: Double, finalLR: Double, gamma: Double) {
        (self.lr, self.b1, self.b2, self.finalLR, self.gamma, self.eps) = (lr, 0.9, 0.999, finalLR, gamma, 1e-8)
    }
    override func step(_ th: inout [Double], _ g: [Double], _ t: Int) {
        if m.isEmpty { m = Array(repeating: 0, count: th.count); v = m }
        let lower = finalLR * (1 - 1 / (gamma * Double(t) + 1)), upper = finalLR * (1 + 1 / (gamma * Double(t)))
        for i in th.indices {
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
            let stepSize = lr * (1 - pow(b2, Double(t))).squareRoot() / (1 - pow(b1, Double(t)))
            let eta = min(max(stepSize / (v[i].squareRoot() + eps), lower), upper)
            th[i] -= eta * m[i]
        }
    }
}

/// AccSGD as Kidambi et al.'s reference code writes it, step by step.
private final class AccSGDRef: ScalarOptimizer {
    let lr, kappa, xi, c: Double
    var buf: [Double] = []
    init(lr: Double, kappa: Double, xi: Double, c: Double) { (self.lr, self.kappa, self.xi, self.c) = (lr, kappa, xi, c) }
    override func step(_ th: inout [Double], _ g: [Double], _ t: Int) {
        if buf.isEmpty { buf = th }
        let largeLR = lr * kappa / c
        let alpha = 1 - c * c * xi / kappa
        let beta = 1 - alpha
        let zeta = c / (c + beta)
        for i in th.indices {
            buf[i] *= 1 / beta - 1
            buf[i] += -largeLR * g[i]
            buf[i] += th[i]
            buf[i] *= beta
            th[i] += -lr * g[i]
            th[i] *= zeta
            th[i] += (1 - zeta) * buf[i]
        }
    }
}

private final class MADGRADRef: ScalarOptimizer {
    let lr, momentum, eps: Double
    var x0: [Double] = [], s: [Double] = [], nu: [Double] = []
    init(lr: Double, momentum: Double, eps: Double) { (self.lr, self.momentum, self.eps) = (lr, momentum, eps) }
    override func step(_ th: inout [Double], _ g: [Double], _ t: Int) {
        if x0.isEmpty { x0 = th; s = Array(repeating: 0, count: th.count); nu = s }
        let lambda = lr * Double(t).squareRoot()
        for i in th.indices {
            nu[i] += lambda * g[i] * g[i]
            s[i] += lambda * g[i]
            let z = x0[i] - s[i] / (cbrt(nu[i]) + eps)
            th[i] = momentum == 0 ? z : momentum * th[i] + (1 - momentum) * z
        }
    }
}

/// FTRL-Proximal, McMahan et al. 2013, Algorithm 1 (the weight used for σ is the current θ).
private final class FTRLRef: ScalarOptimizer {
    let alpha, beta, l1, l2: Double
    var z: [Double] = [], n: [Double] = []
    init(alpha: Double, beta: Double, l1: Double, l2: Double) { (self.alpha, self.beta, self.l1, self.l2) = (alpha, beta, l1, l2) }
    override func step(_ th: inout [Double], _ g: [Double], _ t: Int) {
        if z.isEmpty { z = Array(repeating: 0, count: th.count); n = z }
        for i in th.indices {
            let sigma = ((n[i] + g[i] * g[i]).squareRoot() - n[i].squareRoot()) / alpha
            z[i] += g[i] - sigma * th[i]
            n[i] += g[i] * g[i]
            th[i] = abs(z[i]) <= l1 ? 0 : -(z[i] - sgn(z[i]) * l1) / ((beta + n[i].squareRoot()) / alpha + l2)
        }
    }
}

/// SophiaG with a fixed Hessian EMA h (set before the steps).
private final class SophiaRef: ScalarOptimizer {
    let lr, b1, rho, wd, eps: Double
    var m: [Double] = [], h: [Double]
    init(lr: Double, b1: Double, rho: Double, wd: Double, eps: Double, h: [Double]) {
        (self.lr, self.b1, self.rho, self.wd, self.eps, self.h) = (lr, b1, rho, wd, eps, h)
    }
    override func step(_ th: inout [Double], _ g: [Double], _ t: Int) {
        if m.isEmpty { m = Array(repeating: 0, count: th.count) }
        for i in th.indices {
            th[i] *= 1 - lr * wd
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            th[i] -= lr * sgn(m[i]) * min(abs(m[i]) / (rho * h[i] + eps), 1)
        }
    }
}

private final class LAMBRef: ScalarOptimizer {
    let lr, b1, b2, eps, wd: Double
    var m: [Double] = [], v: [Double] = []
    init(lr: Double, b1: Double, b2: Double, eps: Double, wd: Double) { (self.lr, self.b1, self.b2, self.eps, self.wd) = (lr, b1, b2, eps, wd) }
    override func step(_ th: inout [Double], _ g: [Double], _ t: Int) {
        if m.isEmpty { m = Array(repeating: 0, count: th.count); v = m }
        var r = [Double](repeating: 0, count: th.count)
        for i in th.indices {
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
            let mHat = m[i] / (1 - pow(b1, Double(t))), vHat = v[i] / (1 - pow(b2, Double(t)))
            r[i] = mHat / (vHat.squareRoot() + eps) + wd * th[i]
        }
        let thNorm = th.reduce(0) { $0 + $1 * $1 }.squareRoot(), rNorm = r.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let trust = thNorm > 0 && rNorm > 0 ? thNorm / rNorm : 1
        for i in th.indices { th[i] -= lr * trust * r[i] }
    }
}

/// One optimizer-versus-oracle case: how to build the optimizer, and a fresh oracle per parameter.
struct OptimizerCase: CustomStringConvertible, Sendable {
    let description: String
    let tolerance: Tolerance

    init(_ name: String, tolerance: Tolerance = Tolerance(absolute: 2e-6, relative: 2e-5)) {
        description = name
        self.tolerance = tolerance
    }

    static let all: [OptimizerCase] = [
        "SGD", "SGD momentum + weight decay", "SGD dampening", "SGD Nesterov", "AdaGrad", "RMSProp",
        "RMSProp centered + momentum", "Adadelta", "Adam", "Adam L2", "AdamW", "AMSGrad", "Adamax", "NAdam",
        "RAdam", "Lion", "AdaBound", "AccSGD", "MADGRAD", "MADGRAD no momentum", "FTRL", "Sophia", "LAMB",
    ].map { OptimizerCase($0) }

    /// The hidden Hessian EMA Sophia's reference uses (set through `updateHessian(estimates:)`).
    static func sophiaHessian(_ n: Int, seed: UInt64) -> [Float] { testValues(n, seed: seed, range: 0.1...2) }

    fileprivate func make(_ ps: [Parameter]) throws -> (any Optimizer, [ScalarOptimizer]) {
        let n = ps.count
        func refs(_ f: () -> ScalarOptimizer) -> [ScalarOptimizer] { (0..<n).map { _ in f() } }
        switch description {
        case "SGD": return (try SGD(ps, learningRate: 0.1), refs { SGDRef(lr: 0.1) })
        case "SGD momentum + weight decay":
            return (try SGD(ps, learningRate: 0.05, momentum: 0.9, weightDecay: 0.01), refs { SGDRef(lr: 0.05, mu: 0.9, wd: 0.01) })
        case "SGD dampening":
            return (try SGD(ps, learningRate: 0.05, momentum: 0.8, dampening: 0.3), refs { SGDRef(lr: 0.05, mu: 0.8, damp: 0.3) })
        case "SGD Nesterov":
            return (try SGD(ps, learningRate: 0.05, momentum: 0.9, nesterov: true), refs { SGDRef(lr: 0.05, mu: 0.9, nesterov: true) })
        case "AdaGrad":
            return (try AdaGrad(ps, learningRate: 0.1, learningRateDecay: 0.05, weightDecay: 0.02, initialAccumulatorValue: 0.1),
                    refs { AdaGradRef(lr: 0.1, decay: 0.05, wd: 0.02, initial: 0.1, eps: 1e-10) })
        case "RMSProp":
            return (try RMSProp(ps, learningRate: 0.01), refs { RMSPropRef(lr: 0.01, alpha: 0.99, eps: 1e-8, wd: 0, mu: 0, centered: false) })
        case "RMSProp centered + momentum":
            return (try RMSProp(ps, learningRate: 0.01, alpha: 0.9, weightDecay: 0.01, momentum: 0.5, centered: true),
                    refs { RMSPropRef(lr: 0.01, alpha: 0.9, eps: 1e-8, wd: 0.01, mu: 0.5, centered: true) })
        case "Adadelta":
            return (try Adadelta(ps, learningRate: 1, weightDecay: 0.01), refs { AdadeltaRef(lr: 1, rho: 0.9, eps: 1e-6, wd: 0.01) })
        case "Adam": return (try Adam(ps, learningRate: 0.01), refs { AdamRef(lr: 0.01) })
        case "Adam L2": return (try Adam(ps, learningRate: 0.01, weightDecay: 0.1), refs { AdamRef(lr: 0.01, wd: 0.1) })
        case "AdamW": return (try AdamW(ps, learningRate: 0.01, weightDecay: 0.1), refs { AdamRef(lr: 0.01, wd: 0.1, decoupled: true) })
        case "AMSGrad":
            return (try Adam(ps, learningRate: 0.01, betas: (0.8, 0.9), amsgrad: true), refs { AdamRef(lr: 0.01, b1: 0.8, b2: 0.9, ams: true) })
        case "Adamax":
            return (try Adamax(ps, learningRate: 0.02, weightDecay: 0.01), refs { AdamaxRef(lr: 0.02, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.01) })
        case "NAdam":
            return (try NAdam(ps, learningRate: 0.02, weightDecay: 0.01),
                    refs { NAdamRef(lr: 0.02, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.01, psi: 4e-3) })
        case "RAdam":
            // β2 = 0.9 makes ρ_t cross 5 at t = 6, so both branches run within 8 steps.
            return (try RAdam(ps, learningRate: 0.01, betas: (0.9, 0.9)), refs { RAdamRef(lr: 0.01, b1: 0.9, b2: 0.9, eps: 1e-8) })
        case "Lion":
            return (try Lion(ps, learningRate: 0.01, weightDecay: 0.1), refs { LionRef(lr: 0.01, b1: 0.9, b2: 0.99, wd: 0.1) })
        case "AdaBound":
            return (try AdaBound(ps, learningRate: 0.01, finalLearningRate: 0.05, gamma: 0.1), refs { AdaBoundRef(lr: 0.01, finalLR: 0.05, gamma: 0.1) })
        case "AccSGD":
            return (try AccSGD(ps, learningRate: 0.01), refs { AccSGDRef(lr: 0.01, kappa: 1000, xi: 10, c: 0.7) })
        case "MADGRAD": return (try MADGRAD(ps, learningRate: 0.01), refs { MADGRADRef(lr: 0.01, momentum: 0.9, eps: 1e-6) })
        case "MADGRAD no momentum":
            return (try MADGRAD(ps, learningRate: 0.01, momentum: 0), refs { MADGRADRef(lr: 0.01, momentum: 0, eps: 1e-6) })
        case "FTRL":
            return (try FTRL(ps, learningRate: 0.5, beta: 1, l1: 0.05, l2: 0.1), refs { FTRLRef(alpha: 0.5, beta: 1, l1: 0.05, l2: 0.1) })
        case "Sophia":
            let opt = try Sophia(ps, learningRate: 0.01, rho: 0.5, weightDecay: 0.1, batchSize: 2)
            var hs: [Tensor?] = []
            var oracles: [ScalarOptimizer] = []
            for (i, p) in ps.enumerated() {
                let h = Self.sophiaHessian(p.value.count, seed: 900 + UInt64(i))
                hs.append(try Tensor(h, shape: p.shape, on: p.value.backend))
                // One update from h = 0 with β2 = 0.99 leaves 0.01·ĥ.
                oracles.append(SophiaRef(lr: 0.01, b1: 0.965, rho: 0.5 * 2, wd: 0.1, eps: 1e-15, h: h.map { 0.01 * Double($0) }))
            }
            try opt.updateHessian(estimates: hs)
            return (opt, oracles)
        case "LAMB":
            return (try LAMB(ps, learningRate: 0.01, weightDecay: 0.01), refs { LAMBRef(lr: 0.01, b1: 0.9, b2: 0.999, eps: 1e-6, wd: 0.01) })
        default: throw TensorError(.invalidArgument, op: "OptimizerCase", "unknown case \(description)")
        }
    }
}

@Suite("Optimizers against Float64 references")
struct OptimizerTests {
    static let shapes = [[7], [3, 5]]
    static let steps = 8

    /// Parameters, gradients given step by step (parameter 1 has no gradient at step 3, so its
    /// state and step count must not advance), compared with the references after every step.
    @Test("fused update over several steps", arguments: OptimizerCase.all, TestBackend.all)
    func againstReference(_ c: OptimizerCase, _ tb: TestBackend) throws {
        let b = tb.backend
        var thetas = Self.shapes.enumerated().map { i, s in testValues(s.reduce(1, *), seed: 10 + UInt64(i)).map(Double.init) }
        let ps = try zip(Self.shapes, thetas).map { s, v in Parameter(try Tensor(v.map(Float.init), shape: s, on: b)) }
        let (opt, refs) = try c.make(ps)
        var refSteps = [0, 0]
        for step in 1...Self.steps {
            for (i, p) in ps.enumerated() {
                if i == 1 && step == 3 {
                    try p.setGradient(nil)
                    continue
                }
                let g = testValues(p.value.count, seed: 100 * UInt64(step) + UInt64(i))
                try p.setGradient(try Tensor(g, shape: p.shape, on: b))
                refSteps[i] += 1
                refs[i].step(&thetas[i], g.map(Double.init), refSteps[i])
            }
            try opt.step()
            for (i, p) in ps.enumerated() {
                if let m = mismatch(try p.value.scalars(), thetas[i], tolerance: c.tolerance) {
                    Issue.record("\(c) on \(tb), step \(step), parameter \(i): \(m)")
                    return
                }
            }
        }
        #expect(opt.stepCount == Self.steps)
    }

    @Test("state round trip: save after 3 steps, load into a fresh optimizer, continue identically",
          arguments: ["Adam", "SGD momentum + weight decay", "RMSProp centered + momentum", "NAdam", "MADGRAD", "LAMB"])
    func stateRoundTrip(_ name: String) throws {
        let b = CPUBackend.shared
        let c = OptimizerCase(name)
        func run(resumeAfter: Int?) throws -> [[Float]] {
            let ps = try Self.shapes.enumerated().map { i, s in
                Parameter(try Tensor(testValues(s.reduce(1, *), seed: 10 + UInt64(i)), shape: s, on: b))
            }
            var (opt, _) = try c.make(ps)
            for step in 1...6 {
                for (i, p) in ps.enumerated() {
                    try p.setGradient(try Tensor(testValues(p.value.count, seed: 100 * UInt64(step) + UInt64(i)), shape: p.shape, on: b))
                }
                try opt.step()
                if step == resumeAfter {
                    let saved = try opt.stateDictionary()
                    let (fresh, _) = try c.make(ps)
                    try fresh.loadStateDictionary(saved)
                    #expect(fresh.stepCount == step)
                    opt = fresh
                }
            }
            return try ps.map { try $0.value.scalars() }
        }
        #expect(try run(resumeAfter: 3) == run(resumeAfter: nil))
    }

    @Test("a state dictionary of another shape or with missing entries is rejected and nothing changes")
    func badState() throws {
        let b = CPUBackend.shared
        let p = Parameter(try Tensor([1, 2, 3], on: b))
        let adam = try Adam([p], learningRate: 0.1)
        try p.setGradient(try Tensor([1, 1, 1], on: b))
        try adam.step()
        var state = try adam.stateDictionary()
        state.tensors["0.exp_avg"] = try Tensor([1, 2], on: b)
        #expect(throws: TensorError.self) { try adam.loadStateDictionary(state) }
        var partial = try adam.stateDictionary()
        partial.tensors["0.exp_avg_sq"] = nil
        #expect(throws: TensorError.self) { try adam.loadStateDictionary(partial) }
        var extra = try adam.stateDictionary()
        extra.tensors["7.exp_avg"] = try Tensor([1], on: b)
        #expect(throws: TensorError.self) { try adam.loadStateDictionary(extra) }
        #expect(adam.stepCount == 1)
        let sgd = try SGD([p], learningRate: 0.1, momentum: 0.9)
        #expect(throws: TensorError.self) { try sgd.loadStateDictionary(try adam.stateDictionary()) }
    }

    @Test("invalid hyperparameters throw errors naming the value")
    func badHyperparameters() throws {
        let p = Parameter(try Tensor([1, 2, 3], on: CPUBackend.shared))
        #expect(throws: TensorError.self) { try SGD([p], learningRate: .nan) }
        #expect(throws: TensorError.self) { try SGD([p], learningRate: -1) }
        #expect(throws: TensorError.self) { try SGD([p], nesterov: true) }
        #expect(throws: TensorError.self) { try SGD([], learningRate: 0.1) }
        #expect(throws: TensorError.self) { try SGD([p, p], learningRate: 0.1) }
        #expect(throws: TensorError.self) { try Adam([p], betas: (1.0, 0.999)) }
        #expect(throws: TensorError.self) { try AdamW([p], epsilon: -1) }
        #expect(throws: TensorError.self) { try RMSProp([p], alpha: 1.5) }
        #expect(throws: TensorError.self) { try Lion([p], weightDecay: .infinity) }
        #expect(throws: TensorError.self) { try MADGRAD([p], momentum: 1) }
        #expect(throws: TensorError.self) { try Sophia([p], batchSize: 0) }
        let adam = try Adam([p])
        adam.learningRate = .nan
        try p.setGradient(try Tensor([1, 1, 1], on: CPUBackend.shared))
        do {
            try adam.step()
            Issue.record("a NaN learning rate must throw at step()")
        } catch let e as TensorError {
            #expect(e.message.contains("nan"))
        }
    }

    @Test("Adam minimises a quadratic through autograd on every backend", arguments: TestBackend.all)
    func trainsQuadratic(_ tb: TestBackend) throws {
        let b = tb.backend
        let target = try Tensor([1, -2, 3, 0.5], on: b)
        let w = Parameter(try Tensor.zeros([4], on: b))
        let opt = try Adam([w], learningRate: 0.1)
        for _ in 0..<300 {
            opt.zeroGradients()
            let d = try w.value - target
            try (d * d).sum().backward()
            try opt.step()
        }
        #expect(mismatch(try w.value.scalars(), [1, -2, 3, 0.5], tolerance: Tolerance(absolute: 1e-3, relative: 0)) == nil)
    }
}
