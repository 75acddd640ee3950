import Foundation
import Kiln

/// Float64 step oracles of the extended recurrent cells, written from the papers' equations with
/// scalar loops. Each maps (parameters and buffers by name, x `[B·I]`, state (each `[B·size]`), B, t)
/// to the next state.
enum VariantOracle {
    typealias Params = [String: [Double]]
    typealias Step = @Sendable (Params, [Double], [[Double]], Int, Int) -> [[Double]]

    static func sigmoid(_ x: Double) -> Double { 1 / (1 + Foundation.exp(-x)) }

    /// Σ_c w[row·cols + c]·v[b·cols + c].
    static func dot(_ w: [Double], _ v: [Double], row: Int, cols: Int, b: Int) -> Double {
        var s = 0.0
        for c in 0..<cols { s += w[row * cols + c] * v[b * cols + c] }
        return s
    }

    /// The parameters under `prefix` with the prefix removed.
    static func child(_ p: Params, _ prefix: String) -> Params {
        Dictionary(uniqueKeysWithValues: p.filter { $0.key.hasPrefix(prefix) }.map { (String($0.key.dropFirst(prefix.count)), $0.value) })
    }

    /// A PyTorch cell (RNN tanh/relu, LSTM, GRU) with unsuffixed names, state [h] or [h, c].
    static func pytorch(_ kind: RecurrentOracle.Kind, inputSize: Int, hiddenSize: Int) -> Step {
        { p, x, s, nb, _ in
            let c = s.count > 1 ? s[1] : [Double](repeating: 0, count: nb * hiddenSize)
            let r = RecurrentOracle.step(kind, x: x, h: s[0], c: c, batch: nb, inputSize: inputSize, hiddenSize: hiddenSize,
                                         params: p, suffix: "")
            return kind == .lstm ? [r.h, r.c] : [r.h]
        }
    }

    static func peephole(inputSize ni: Int, hiddenSize nh: Int) -> Step {
        { p, x, s, nb, _ in
            let (wih, whh, bih, bhh, w) = (p["weight_ih"]!, p["weight_hh"]!, p["bias_ih"]!, p["bias_hh"]!, p["weight_peephole"]!)
            var h2 = [Double](repeating: 0, count: nb * nh), c2 = h2
            for b in 0..<nb { for j in 0..<nh {
                func a(_ k: Int) -> Double {
                    let row = k * nh + j
                    return dot(wih, x, row: row, cols: ni, b: b) + dot(whh, s[0], row: row, cols: nh, b: b) + bih[row] + bhh[row]
                }
                let c = s[1][b * nh + j]
                let i = sigmoid(a(0) + w[j] * c), f = sigmoid(a(1) + w[nh + j] * c), g = Foundation.tanh(a(2))
                let cn = f * c + i * g
                let o = sigmoid(a(3) + w[2 * nh + j] * cn)
                c2[b * nh + j] = cn
                h2[b * nh + j] = o * Foundation.tanh(cn)
            } }
            return [h2, c2]
        }
    }

    enum TwoBlock { case mgu, janet(Double), ugrnn }

    static func twoBlock(_ kind: TwoBlock, inputSize ni: Int, hiddenSize nh: Int) -> Step {
        { p, x, s, nb, _ in
            let (wih, whh, bih, bhh) = (p["weight_ih"]!, p["weight_hh"]!, p["bias_ih"]!, p["bias_hh"]!)
            let h = s[0]
            var out = [Double](repeating: 0, count: nb * nh)
            for b in 0..<nb {
                func xin(_ row: Int) -> Double { dot(wih, x, row: row, cols: ni, b: b) + bih[row] + bhh[row] }
                switch kind {
                case .mgu:
                    let f = (0..<nh).map { j in sigmoid(xin(j) + dot(whh, h, row: j, cols: nh, b: b)) }
                    let reset = (0..<nh).map { f[$0] * h[b * nh + $0] }
                    for j in 0..<nh {
                        var u = xin(nh + j)
                        for m in 0..<nh { u += whh[(nh + j) * nh + m] * reset[m] }
                        out[b * nh + j] = (1 - f[j]) * h[b * nh + j] + f[j] * Foundation.tanh(u)
                    }
                case .janet(let beta):
                    for j in 0..<nh {
                        let sj = xin(j) + dot(whh, h, row: j, cols: nh, b: b)
                        let cand = Foundation.tanh(xin(nh + j) + dot(whh, h, row: nh + j, cols: nh, b: b))
                        out[b * nh + j] = sigmoid(sj) * h[b * nh + j] + (1 - sigmoid(sj - beta)) * cand
                    }
                case .ugrnn:
                    for j in 0..<nh {
                        let u = sigmoid(xin(j) + dot(whh, h, row: j, cols: nh, b: b))
                        let cand = Foundation.tanh(xin(nh + j) + dot(whh, h, row: nh + j, cols: nh, b: b))
                        out[b * nh + j] = (1 - u) * h[b * nh + j] + u * cand
                    }
                }
            }
            return [out]
        }
    }

    static func mogrifier(inputSize ni: Int, hiddenSize nh: Int, rounds: Int) -> Step {
        { p, x, s, nb, _ in
            var xm = x, hm = s[0]
            for k in 0..<rounds {
                let m = p["mogrifier_\(k % 2 == 0 ? "q" : "r")\(k + 1)"]!
                for b in 0..<nb {
                    if k % 2 == 0 {
                        let gates = (0..<ni).map { i in 2 * sigmoid(dot(m, hm, row: i, cols: nh, b: b)) }
                        for i in 0..<ni { xm[b * ni + i] *= gates[i] }
                    } else {
                        let gates = (0..<nh).map { j in 2 * sigmoid(dot(m, xm, row: j, cols: ni, b: b)) }
                        for j in 0..<nh { hm[b * nh + j] *= gates[j] }
                    }
                }
            }
            let r = RecurrentOracle.step(.lstm, x: xm, h: hm, c: s[1], batch: nb, inputSize: ni, hiddenSize: nh, params: p,
                                         suffix: "")
            return [r.h, r.c]
        }
    }

    static func indRNN(inputSize ni: Int, hiddenSize nh: Int) -> Step {
        { p, x, s, nb, _ in
            let (w, u, bias) = (p["weight_ih"]!, p["weight_hh"]!, p["bias"]!)
            var out = [Double](repeating: 0, count: nb * nh)
            for b in 0..<nb { for j in 0..<nh {
                out[b * nh + j] = Swift.max(0, dot(w, x, row: j, cols: ni, b: b) + bias[j] + u[j] * s[0][b * nh + j])
            } }
            return [out]
        }
    }

    static func sru(inputSize ni: Int, hiddenSize nh: Int) -> Step {
        { p, x, s, nb, _ in
            let (w, v, bias) = (p["weight"]!, p["weight_c"]!, p["bias"]!)
            var h2 = [Double](repeating: 0, count: nb * nh), c2 = h2
            for b in 0..<nb { for j in 0..<nh {
                let c = s[1][b * nh + j]
                let xt = dot(w, x, row: j, cols: ni, b: b)
                let f = sigmoid(dot(w, x, row: nh + j, cols: ni, b: b) + v[j] * c + bias[j])
                let r = sigmoid(dot(w, x, row: 2 * nh + j, cols: ni, b: b) + v[nh + j] * c + bias[nh + j])
                let cn = f * c + (1 - f) * xt
                let highway = ni == nh ? x[b * ni + j] : dot(w, x, row: 3 * nh + j, cols: ni, b: b)
                c2[b * nh + j] = cn
                h2[b * nh + j] = r * Foundation.tanh(cn) + (1 - r) * highway
            } }
            return [h2, c2]
        }
    }

    static func qrnn(inputSize ni: Int, hiddenSize nh: Int, window k: Int) -> Step {
        { p, x, s, nb, _ in
            let (w, bias) = (p["weight"]!, p["bias"]!)
            // Columns oldest first: x_{t−k+1}, …, x_{t−1} (state[2 + k − 2], …, state[2]), x_t.
            let past = Array(s.dropFirst(2))
            let steps = past.reversed() + [x]
            var h2 = [Double](repeating: 0, count: nb * nh), c2 = h2
            for b in 0..<nb {
                let window = steps.flatMap { Array($0[(b * ni)..<((b + 1) * ni)]) }
                for j in 0..<nh {
                    func row(_ r: Int) -> Double { dot(w, window, row: r, cols: k * ni, b: 0) + bias[r] }
                    let z = Foundation.tanh(row(j)), f = sigmoid(row(nh + j)), o = sigmoid(row(2 * nh + j))
                    let cn = f * s[1][b * nh + j] + (1 - f) * z
                    c2[b * nh + j] = cn
                    h2[b * nh + j] = o * cn
                }
            }
            return k == 1 ? [h2, c2] : [h2, c2, x] + past.dropLast()
        }
    }

    static func rhn(inputSize ni: Int, hiddenSize nh: Int, depth: Int) -> Step {
        { p, x, st, nb, _ in
            var s = st[0]
            for l in 0..<depth {
                let (r, bias) = (p["weight_hh_l\(l)"]!, p["bias_l\(l)"]!)
                var next = s
                for b in 0..<nb { for j in 0..<nh {
                    var ph = dot(r, s, row: j, cols: nh, b: b) + bias[j]
                    var pt = dot(r, s, row: nh + j, cols: nh, b: b) + bias[nh + j]
                    if l == 0 {
                        ph += dot(p["weight_ih"]!, x, row: j, cols: ni, b: b)
                        pt += dot(p["weight_ih"]!, x, row: nh + j, cols: ni, b: b)
                    }
                    let t = sigmoid(pt)
                    next[b * nh + j] = Foundation.tanh(ph) * t + s[b * nh + j] * (1 - t)
                } }
                s = next
            }
            return [s]
        }
    }

    static func clockwork(inputSize ni: Int, moduleSize m: Int, periods: [Int]) -> Step {
        { p, x, s, nb, t in
            let nh = m * periods.count
            let (wih, whh, bias) = (p["weight_ih"]!, p["weight_hh"]!, p["bias"]!)
            var out = s[0]
            for b in 0..<nb { for j in 0..<nh where t % periods[j / m] == 0 {
                var a = dot(wih, x, row: j, cols: ni, b: b) + bias[j]
                for c in 0..<nh where periods[c / m] >= periods[j / m] { a += whh[j * nh + c] * s[0][b * nh + c] }
                out[b * nh + j] = Foundation.tanh(a)
            } }
            return [out]
        }
    }

    static func phased(inputSize ni: Int, hiddenSize nh: Int, openRatio r: Double, leak: Double) -> Step {
        { p, x, s, nb, t in
            let new = RecurrentOracle.step(.lstm, x: x, h: s[0], c: s[1], batch: nb, inputSize: ni, hiddenSize: nh,
                                           params: p, suffix: "")
            let (tau, shift) = (p["period"]!, p["shift"]!)
            var h2 = s[0], c2 = s[1]
            for j in 0..<nh {
                let u = (Double(t) - shift[j]) / tau[j]
                let phi = u - u.rounded(.down)
                let k = phi < r / 2 ? 2 * phi / r : phi < r ? 2 - 2 * phi / r : leak * phi
                for b in 0..<nb {
                    let at = b * nh + j
                    h2[at] = k * new.h[at] + (1 - k) * s[0][at]
                    c2[at] = k * new.c[at] + (1 - k) * s[1][at]
                }
            }
            return [h2, c2]
        }
    }

    /// A dilated wrapper of `inner` (state sizes `n` tensors) with dilation D.
    static func dilated(_ inner: @escaping Step, innerCount n: Int, dilation: Int) -> Step {
        { p, x, s, nb, t in
            let new = inner(child(p, "cell."), x, Array(s.suffix(n)), nb, t)
            return new + s.prefix(n * (dilation - 1))
        }
    }

    /// A residual stack of `inner` cells (each with its state count, input and hidden size).
    static func residual(_ cells: [(step: Step, count: Int, inputSize: Int, hiddenSize: Int)], scale: Double) -> Step {
        { p, x, s, nb, t in
            var y = x, offset = 1, next: [[Double]] = []
            for (l, cell) in cells.enumerated() {
                let new = cell.step(child(p, "\(l)."), y, Array(s[offset..<(offset + cell.count)]), nb, t)
                y = cell.inputSize == cell.hiddenSize ? zip(y, new[0]).map { $0 + scale * $1 } : new[0]
                next += new
                offset += cell.count
            }
            return [y] + next
        }
    }

    static func gatedFeedback(inputSize ni: Int, hiddenSize nh: Int, layers: Int) -> Step {
        { p, x, s, nb, _ in
            let previous = Array(s.dropFirst())
            var y = x, inSize = ni, next: [[Double]] = []
            for j in 0..<layers {
                let (wih, whh, bias) = (p["weight_ih_l\(j)"]!, p["weight_hh_l\(j)"]!, p["bias_l\(j)"]!)
                let (gih, ghh) = (p["gate_ih_l\(j)"]!, p["gate_hh_l\(j)"]!)
                var out = [Double](repeating: 0, count: nb * nh)
                for b in 0..<nb {
                    let star = previous.flatMap { Array($0[(b * nh)..<((b + 1) * nh)]) }
                    let gates = (0..<layers).map { i in
                        sigmoid(dot(gih, y, row: i, cols: inSize, b: b) + dot(ghh, star, row: i, cols: layers * nh, b: 0))
                    }
                    let gated = (0..<(layers * nh)).map { gates[$0 / nh] * star[$0] }
                    for u in 0..<nh {
                        out[b * nh + u] = Foundation.tanh(dot(wih, y, row: u, cols: inSize, b: b) + bias[u]
                                                          + dot(whh, gated, row: u, cols: layers * nh, b: 0))
                    }
                }
                next.append(out)
                y = out
                inSize = nh
            }
            return [y] + next
        }
    }

    static func lru(inputSize ni: Int, stateSize n: Int, outputSize no: Int) -> Step {
        { p, u, s, nb, _ in
            let (nu, th, ga) = (p["nu_log"]!, p["theta_log"]!, p["gamma_log"]!)
            let (bre, bim, cre, cim, d) = (p["B_re"]!, p["B_im"]!, p["C_re"]!, p["C_im"]!, p["D"]!)
            var xr = s[1], xi = s[2], y = [Double](repeating: 0, count: nb * no)
            for b in 0..<nb {
                for k in 0..<n {
                    let modulus = Foundation.exp(-Foundation.exp(nu[k])), phase = Foundation.exp(th[k])
                    let (lr, li) = (modulus * Foundation.cos(phase), modulus * Foundation.sin(phase))
                    let g = Foundation.exp(ga[k])
                    let (ar, ai) = (s[1][b * n + k], s[2][b * n + k])
                    xr[b * n + k] = lr * ar - li * ai + g * dot(bre, u, row: k, cols: ni, b: b)
                    xi[b * n + k] = lr * ai + li * ar + g * dot(bim, u, row: k, cols: ni, b: b)
                }
                for o in 0..<no {
                    y[b * no + o] = dot(cre, xr, row: o, cols: n, b: b) - dot(cim, xi, row: o, cols: n, b: b)
                        + dot(d, u, row: o, cols: ni, b: b)
                }
            }
            return [y, xr, xi]
        }
    }

    static func reservoir(inputSize ni: Int, size n: Int, leak a: Double) -> Step {
        { p, x, s, nb, _ in
            let (win, w) = (p["weight_in"]!, p["weight"]!)
            var out = s[0]
            for b in 0..<nb { for j in 0..<n {
                let drive = Foundation.tanh(dot(win, x, row: j, cols: ni, b: b) + dot(w, s[0], row: j, cols: n, b: b))
                out[b * n + j] = (1 - a) * s[0][b * n + j] + a * drive
            } }
            return [out]
        }
    }

    static func hyperLSTM(inputSize ni: Int, hiddenSize nh: Int, hyperSize nhh: Int, embeddingSize nz: Int) -> Step {
        { p, x, s, nb, _ in
            var hyperInput: [Double] = []
            for b in 0..<nb { hyperInput += s[0][(b * nh)..<((b + 1) * nh)] + x[(b * ni)..<((b + 1) * ni)] }
            let hyper = RecurrentOracle.step(.lstm, x: hyperInput, h: s[2], c: s[3], batch: nb, inputSize: nh + ni,
                                             hiddenSize: nhh, params: child(p, "hyper."), suffix: "")
            let (wih, whh, bias) = (p["weight_ih"]!, p["weight_hh"]!, p["bias"]!)
            let (whz, bhz) = (p["weight_hz"]!, p["bias_hz"]!)
            let (wzh, wzx, wzb) = (p["weight_zh"]!, p["weight_zx"]!, p["weight_zb"]!)
            var h2 = [Double](repeating: 0, count: nb * nh), c2 = h2
            for b in 0..<nb {
                // z[(term·4 + gate)·N_z + q], terms h, x, b.
                let z = (0..<(12 * nz)).map { r in dot(whz, hyper.h, row: r, cols: nhh, b: b) + bhz[r] }
                func scaled(_ w: [Double], _ term: Int, _ y: Int, _ j: Int) -> Double {
                    (0..<nz).reduce(0) { $0 + w[(y * nh + j) * nz + $1] * z[(term * 4 + y) * nz + $1] }
                }
                for j in 0..<nh {
                    func gate(_ y: Int) -> Double {
                        let row = y * nh + j
                        return scaled(wzh, 0, y, j) * dot(whh, s[0], row: row, cols: nh, b: b)
                            + scaled(wzx, 1, y, j) * dot(wih, x, row: row, cols: ni, b: b) + scaled(wzb, 2, y, j) + bias[row]
                    }
                    let i = sigmoid(gate(0)), f = sigmoid(gate(1)), g = Foundation.tanh(gate(2)), o = sigmoid(gate(3))
                    let cn = f * s[1][b * nh + j] + i * g
                    c2[b * nh + j] = cn
                    h2[b * nh + j] = o * Foundation.tanh(cn)
                }
            }
            return [h2, c2, hyper.h, hyper.c]
        }
    }
}
