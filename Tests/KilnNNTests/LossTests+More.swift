import Foundation
import Kiln
import KilnTestSupport
import Testing

// More `LossCase`s (run by `LossTests.oracle` with `lossCases`): divergences, ranking, metric,
// contrastive, angular-margin, distillation, GAN, overlap, feature-space and sequence losses, each
// against a Float64 oracle written from the published definition (PyTorch's where it has one).

private func red(_ l: [Double], _ r: LossReduction) -> [Double] {
    switch r {
    case .none: return l
    case .sum: return [l.reduce(0, +)]
    case .mean: return [l.reduce(0, +) / Double(l.count)]
    }
}
private func redT(_ t: Tensor, _ r: LossReduction) throws -> Tensor {
    switch r {
    case .none: return t
    case .sum: return try t.sum()
    case .mean: return try t.mean()
    }
}
private func sp(_ x: Double) -> Double { Swift.max(x, 0) + Foundation.log1p(Foundation.exp(-Swift.abs(x))) }
private func sig(_ x: Double) -> Double { 1 / (1 + Foundation.exp(-x)) }
private func logSumExp(_ row: [Double]) -> Double {
    let m = row.max() ?? 0
    return m + Foundation.log(row.reduce(0) { $0 + Foundation.exp($1 - m) })
}
private func logSoftmaxD(_ row: [Double]) -> [Double] { let l = logSumExp(row); return row.map { $0 - l } }
private func split(_ x: [Double], _ c: Int) -> [[Double]] { stride(from: 0, to: x.count, by: c).map { Array(x[$0..<$0 + c]) } }
private func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }
private func norm(_ a: [Double]) -> Double { Foundation.sqrt(dot(a, a)) }
private func unit(_ a: [Double]) -> [Double] { let n = Swift.max(norm(a), 1e-12); return a.map { $0 / n } }
/// `torch.nn.functional.pairwise_distance(a, b, p, eps)`: `‖a − b + eps‖_p`.
private func pdist(_ a: [Double], _ b: [Double], p: Double = 2, eps: Double = 1e-6) -> Double {
    Foundation.pow(zip(a, b).reduce(0.0) { $0 + Foundation.pow(Swift.abs($1.0 - $1.1 + eps), p) }, 1 / p)
}
private func v(_ n: Int, _ seed: UInt64, _ range: ClosedRange<Double> = -2...2) -> [Float] { testValues(n, seed: seed, range: range) }
private func labels(_ n: Int, _ c: Int, seed: UInt64) -> [Float] {
    testValues(n, seed: seed, range: 0...Double(c) - 1e-3).map { Float(Int($0)) }
}
/// −log softmax(z)_y per row.
private func ce(_ z: [Double], _ y: Double) -> Double { -logSoftmaxD(z)[Int(y)] }

let moreLossCases: [LossCase] = {
    var cases: [LossCase] = []
    // kl_div: input log-probabilities, targets probabilities (one exact zero) or log-probabilities.
    let logq = split(v(12, 31).map(Double.init), 4).flatMap { logSoftmaxD($0).map(Float.init) }
    var pTarget = split(v(12, 32, 0.1...1).map(Double.init), 4).flatMap { r in r.map { Float($0 / r.reduce(0, +)) } }
    pTarget[5] = 0
    cases.append(LossCase(name: "kl_div", inputs: [([3, 4], logq), ([3, 4], pTarget)],
                          kiln: { try kullbackLeiblerDivergence(input: $0[0], targets: $0[1], reduction: $1) },
                          oracle: { a, r in red((0..<12).map { (i: Int) -> Double in
                              let y = a[1][i]; return y > 0 ? y * (Foundation.log(y) - a[0][i]) : 0 }, r) }))
    cases.append(LossCase(name: "kl_div(logTarget)", inputs: [([3, 4], logq), ([3, 4], v(12, 33, -3...0))],
                          kiln: { try kullbackLeiblerDivergence(input: $0[0], targets: $0[1], reduction: $1, logTarget: true) },
                          oracle: { a, r in red((0..<12).map { Foundation.exp(a[1][$0]) * (a[1][$0] - a[0][$0]) }, r) }))
    // Triplet margin loss (PyTorch), with and without the distance swap, p = 2 and p = 1.
    let anchor = v(12, 34), positive = v(12, 35), negative = v(12, 36)
    for (p, swap) in [(2.0, false), (2.0, true), (1.0, false)] {
        cases.append(LossCase(name: "triplet_loss(p=\(p), swap=\(swap))", inputs: [([4, 3], anchor), ([4, 3], positive), ([4, 3], negative)],
                              kiln: { try tripletMarginLoss(anchor: $0[0], positive: $0[1], negative: $0[2], margin: 1.5, p: Float(p),
                                                            swap: swap, reduction: $1) },
                              oracle: { a, r in
                                  let (an, po, ne) = (split(a[0], 3), split(a[1], 3), split(a[2], 3))
                                  return red((0..<4).map { (i: Int) -> Double in
                                      var dn = pdist(an[i], ne[i], p: p)
                                      if swap { dn = Swift.min(dn, pdist(po[i], ne[i], p: p)) }
                                      return Swift.max(0, pdist(an[i], po[i], p: p) - dn + 1.5) }, r) }))
    }
    // Differentiate the negative too (input 0 = negative).
    cases.append(LossCase(name: "triplet_loss(∂negative)", inputs: [([4, 3], negative), ([4, 3], anchor), ([4, 3], positive)],
                          kiln: { try tripletMarginLoss(anchor: $0[1], positive: $0[2], negative: $0[0], margin: 1.5, reduction: $1) },
                          oracle: { a, r in
                              let (ne, an, po) = (split(a[0], 3), split(a[1], 3), split(a[2], 3))
                              return red((0..<4).map { Swift.max(0, pdist(an[$0], po[$0]) - pdist(an[$0], ne[$0]) + 1.5) }, r) }))
    let pm4: [Float] = [1, -1, -1, 1]
    cases.append(LossCase(name: "cosine_embedding_loss(margin=-0.3)", inputs: [([4, 3], anchor), ([4, 3], positive), ([4], pm4)],
                          kiln: { try cosineEmbeddingLoss($0[0], $0[1], targets: $0[2], margin: -0.3, reduction: $1) },
                          oracle: { a, r in
                              let (x1, x2) = (split(a[0], 3), split(a[1], 3))
                              return red((0..<4).map { (i: Int) -> Double in
                                  let c = dot(x1[i], x2[i]) / Foundation.sqrt((dot(x1[i], x1[i]) + 1e-12) * (dot(x2[i], x2[i]) + 1e-12))
                                  return a[2][i] == 1 ? 1 - c : Swift.max(0, c + 0.3) }, r) }))
    let pm12: [Float] = v(12, 37).map { $0 >= 0 ? 1 : -1 }
    cases.append(LossCase(name: "margin_ranking_loss(margin=0.3)", inputs: [([3, 4], v(12, 38)), ([3, 4], v(12, 39)), ([3, 4], pm12)],
                          kiln: { try marginRankingLoss($0[0], $0[1], targets: $0[2], margin: 0.3, reduction: $1) },
                          oracle: { a, r in red((0..<12).map { Swift.max(0, -a[2][$0] * (a[0][$0] - a[1][$0]) + 0.3) }, r) }))
    let similar: [Float] = [1, 0, 0, 1]
    cases.append(LossCase(name: "contrastive_loss(margin=3)", inputs: [([4, 3], anchor), ([4, 3], positive), ([4], similar)],
                          kiln: { try contrastiveLoss($0[0], $0[1], targets: $0[2], margin: 3, reduction: $1) },
                          oracle: { a, r in
                              let (x1, x2) = (split(a[0], 3), split(a[1], 3))
                              return red((0..<4).map { (i: Int) -> Double in
                                  let d = pdist(x1[i], x2[i]), y = a[2][i]
                                  return 0.5 * (y * d * d + (1 - y) * Foundation.pow(Swift.max(0, 3 - d), 2)) }, r) }))
    // InfoNCE: CE of the cosine-similarity logits against the diagonal; NT-Xent over 2N anchors.
    for (name, first) in [("infonce_loss(∂query)", true), ("infonce_loss(∂keys)", false)] {
        cases.append(LossCase(name: name, inputs: [([4, 3], first ? anchor : positive), ([4, 3], first ? positive : anchor)],
                              kiln: { try infoNCELoss(query: first ? $0[0] : $0[1], positiveKeys: first ? $0[1] : $0[0],
                                                      temperature: 0.5, reduction: $1) },
                              oracle: { a, r in
                                  let q = split(first ? a[0] : a[1], 3).map(unit), k = split(first ? a[1] : a[0], 3).map(unit)
                                  return red((0..<4).map { i in ce(k.map { dot(q[i], $0) / 0.5 }, Double(i)) }, r) }))
    }
    cases.append(LossCase(name: "infonce_loss(ntXent τ=0.5)", inputs: [([3, 4], v(12, 40)), ([3, 4], v(12, 41))],
                          kiln: { try ntXentLoss($0[0], $0[1], temperature: 0.5, reduction: $1) },
                          oracle: { a, r in
                              let z = (split(a[0], 4) + split(a[1], 4)).map(unit)
                              return red((0..<6).map { (i: Int) -> Double in
                                  let j = (i + 3) % 6
                                  let others = (0..<6).filter { $0 != i }.map { dot(z[i], z[$0]) / 0.5 }
                                  return -(dot(z[i], z[j]) / 0.5 - logSumExp(others)) }, r) }))
    // Knowledge distillation (Hinton et al.): α·T²·KL(p_teacher ‖ p_student) + (1 − α)·CE.
    let t4 = labels(4, 5, seed: 42)
    for withTargets in [false, true] {
        var inputs: [(shape: [Int], values: [Float])] = [([4, 5], v(20, 43)), ([4, 5], v(20, 44))]
        if withTargets { inputs.append(([4], t4)) }
        cases.append(LossCase(name: "knowledge_distillation(T=2, α=0.7, targets=\(withTargets))", inputs: inputs,
                              kiln: { try distillationLoss(studentLogits: $0[0], teacherLogits: $0[1], targets: withTargets ? $0[2] : nil,
                                                           temperature: 2, alpha: 0.7, reduction: $1) },
                              oracle: { a, r in
                                  let (s, t) = (split(a[0], 5), split(a[1], 5))
                                  return red((0..<4).map { (i: Int) -> Double in
                                      let lq = logSoftmaxD(s[i].map { $0 / 2 }), lp = logSoftmaxD(t[i].map { $0 / 2 })
                                      let kl = (0..<5).reduce(0.0) { $0 + Foundation.exp(lp[$1]) * (lp[$1] - lq[$1]) }
                                      return 0.7 * 4 * kl + (withTargets ? 0.3 * ce(s[i], a[2][i]) : 0) }, r) }))
    }
    // Overlap losses, one value per sample of [2, 2, 3].
    let probs = v(12, 45, 0.05...0.95), mask01 = v(12, 46, 0...1).map { $0.rounded() }
    func overlap(_ name: String, _ kiln: @escaping ([Tensor], LossReduction) throws -> Tensor,
                 _ score: @escaping ([Double], [Double]) -> Double) -> LossCase {
        LossCase(name: name, inputs: [([2, 2, 3], probs), ([2, 2, 3], mask01)], kiln: kiln,
                 oracle: { a, r in red((0..<2).map { score(Array(a[0][$0 * 6..<$0 * 6 + 6]), Array(a[1][$0 * 6..<$0 * 6 + 6])) }, r) })
    }
    cases.append(overlap("dice_loss(s=1)", { try diceLoss(probabilities: $0[0], targets: $0[1], reduction: $1) }) { p, g in
        1 - (2 * dot(p, g) + 1) / (p.reduce(0, +) + g.reduce(0, +) + 1) })
    cases.append(overlap("dice_loss(V-Net squared, s=0.5)", {
        try diceLoss(probabilities: $0[0], targets: $0[1], smooth: 0.5, squaredDenominator: true, reduction: $1) }) { p, g in
        1 - (2 * dot(p, g) + 0.5) / (dot(p, p) + dot(g, g) + 0.5) })
    cases.append(overlap("tversky_loss(α=0.3, β=0.7)", {
        try tverskyLoss(probabilities: $0[0], targets: $0[1], alpha: 0.3, beta: 0.7, reduction: $1) }) { p, g in
        let tp = dot(p, g), fp = dot(p, g.map { 1 - $0 }), fn = dot(p.map { 1 - $0 }, g)
        return 1 - (tp + 1) / (tp + 0.3 * fp + 0.7 * fn + 1) })
    cases.append(overlap("iou_loss", { try iouLoss(probabilities: $0[0], targets: $0[1], reduction: $1) }) { p, g in
        let i = dot(p, g); return 1 - (i + 1) / (p.reduce(0, +) + g.reduce(0, +) - i + 1) })
    // VAE KL(N(μ, σ²) ‖ N(0, 1)) per sample, differentiated in μ and in log σ².
    let mu = v(12, 47), logVar = v(12, 48, -1.5...1.5)
    for (name, meanFirst) in [("gaussian_kl_closed_form(∂μ)", true), ("gaussian_kl_closed_form(∂logσ²)", false)] {
        cases.append(LossCase(name: name, inputs: [([4, 3], meanFirst ? mu : logVar), ([4, 3], meanFirst ? logVar : mu)],
                              kiln: { try gaussianKLDivergence(mean: meanFirst ? $0[0] : $0[1], logVariance: meanFirst ? $0[1] : $0[0], reduction: $1) },
                              oracle: { a, r in
                                  let (m, lv) = meanFirst ? (a[0], a[1]) : (a[1], a[0])
                                  return red((0..<4).map { (i: Int) -> Double in
                                      -0.5 * (0..<3).reduce(0.0) { s, j in
                                          let k = i * 3 + j; return s + 1 + lv[k] - m[k] * m[k] - Foundation.exp(lv[k]) } }, r) }))
    }
    // Sequence CE ([N, T, C], averaged over T) and masked-LM CE (mean over the masked positions).
    let seqLogits = v(24, 49), seqTargets = labels(6, 4, seed: 50)
    cases.append(LossCase(name: "sequence_ce_loss", inputs: [([2, 3, 4], seqLogits), ([2, 3], seqTargets)],
                          kiln: { try sequenceCrossEntropy(logits: $0[0], targets: $0[1], reduction: $1) },
                          oracle: { a, r in
                              let z = split(a[0], 4)
                              return red((0..<2).map { n in (0..<3).reduce(0.0) { $0 + ce(z[n * 3 + $1], a[1][n * 3 + $1]) } / 3 }, r) }))
    let mlmMask: [Float] = [1, 0, 1, 0, 1, 1]
    cases.append(LossCase(name: "masked_lm_loss", inputs: [([2, 3, 4], seqLogits), ([2, 3], seqTargets), ([2, 3], mlmMask)],
                          kiln: { try maskedLanguageModelLoss(logits: $0[0], targets: $0[1], mask: $0[2], reduction: $1) },
                          oracle: { a, r in
                              let z = split(a[0], 4)
                              let l = (0..<6).map { a[2][$0] == 1 ? ce(z[$0], a[1][$0]) : 0 }
                              return r == .mean ? [l.reduce(0, +) / a[2].reduce(0, +)] : red(l, r) }))
    cases.append(contentsOf: moreLossCases2())
    return cases
}()

private func moreLossCases2() -> [LossCase] {
    var cases: [LossCase] = []
    let t4 = labels(4, 5, seed: 51)
    // Angular-margin softmax losses from cosines: θ = acos(c) computed directly.
    let cosines = v(20, 52, -0.9...0.9)
    cases.append(LossCase(name: "arcface_loss(s=16, m=0.3)", inputs: [([4, 5], cosines), ([4], t4)],
                          kiln: { try arcFaceLoss(cosines: $0[0], targets: $0[1], scale: 16, margin: 0.3, reduction: $1) },
                          oracle: { a, r in red(zip(split(a[0], 5), a[1]).map { (c: [Double], y: Double) -> Double in
                              var z = c.map { 16 * $0 }
                              z[Int(y)] = 16 * Foundation.cos(Foundation.acos(c[Int(y)]) + 0.3)
                              return ce(z, y) }, r) }))
    cases.append(LossCase(name: "cosface_loss(s=16, m=0.35)", inputs: [([4, 5], cosines), ([4], t4)],
                          kiln: { try cosFaceLoss(cosines: $0[0], targets: $0[1], scale: 16, reduction: $1) },
                          oracle: { a, r in red(zip(split(a[0], 5), a[1]).map { (c: [Double], y: Double) -> Double in
                              var z = c.map { 16 * $0 }
                              z[Int(y)] = 16 * (c[Int(y)] - 0.35)
                              return ce(z, y) }, r) }))
    let classW = v(15, 53)
    for m in [1, 2, 4] {
        cases.append(LossCase(name: "sphereface_loss(m=\(m))", inputs: [([4, 3], v(12, 54)), ([5, 3], classW), ([4], t4)],
                              kiln: { try sphereFaceLoss(features: $0[0], classWeights: $0[1], targets: $0[2], margin: m, reduction: $1) },
                              oracle: { a, r in
                                  let w = split(a[1], 3).map(unit)
                                  return red(split(a[0], 3).enumerated().map { (i: Int, x: [Double]) -> Double in
                                      let xn = norm(x), c = w.map { dot(unit(x), $0) }
                                      let y = Int(a[2][i]), theta = Foundation.acos(c[y])
                                      let k = Swift.min(Double(m - 1), Foundation.floor(Double(m) * theta / Double.pi))
                                      let psi = (Int(k) % 2 == 0 ? 1.0 : -1.0) * Foundation.cos(Double(m) * theta) - 2 * k
                                      var z = c.map { xn * $0 }
                                      z[y] = xn * psi
                                      return ce(z, Double(y)) }, r) }))
    }
    let x12 = v(12, 55), y12 = v(12, 56)
    cases.append(LossCase(name: "gan_generator_loss", inputs: [([3, 4], x12)],
                          kiln: { try ganGeneratorLoss(fakeLogits: $0[0], reduction: $1) },
                          oracle: { a, r in red(a[0].map { -Foundation.log(sig($0)) }, r) }))
    for realFirst in [true, false] {
        cases.append(LossCase(name: "gan_discriminator_loss(∂\(realFirst ? "real" : "fake"))", inputs: [([3, 4], x12), ([3, 4], y12)],
                              kiln: { try ganDiscriminatorLoss(realLogits: realFirst ? $0[0] : $0[1], fakeLogits: realFirst ? $0[1] : $0[0], reduction: $1) },
                              oracle: { a, r in
                                  let (real, fake) = realFirst ? (a[0], a[1]) : (a[1], a[0])
                                  let lr = red(real.map { -Foundation.log(sig($0)) }, r), lf = red(fake.map { -Foundation.log(1 - sig($0)) }, r)
                                  return zip(lr, lf).map { $0 + $1 } }))
    }
    // Ordinal CE: P(y ≤ k) = σ(x_k) for the K − 1 = 3 thresholds of K = 4 classes.
    cases.append(LossCase(name: "ordinal_ce_loss", inputs: [([4, 3], x12), ([4], [0, 3, 1, 2])],
                          kiln: { try ordinalCrossEntropy(logits: $0[0], targets: $0[1], reduction: $1) },
                          oracle: { a, r in red((0..<4).map { (i: Int) -> Double in
                              (0..<3).reduce(0.0) { s, k in
                                  let p = sig(a[0][i * 3 + k])
                                  return s - (a[1][i] <= Double(k) ? Foundation.log(p) : Foundation.log(1 - p)) } }, r) }))
    // Class-balanced sigmoid loss (Cui et al. 2019), the weight of the sample's class normalised to Σ = C.
    let counts = [10, 3, 50, 7, 1]
    cases.append(LossCase(name: "class_balanced_loss(β=0.9)", inputs: [([4, 5], v(20, 57)), ([4], t4)],
                          kiln: { try classBalancedLoss(logits: $0[0], targets: $0[1], samplesPerClass: counts, beta: 0.9, reduction: $1) },
                          oracle: { a, r in
                              let raw = counts.map { 0.1 / (1 - Foundation.pow(0.9, Double($0))) }
                              let w = raw.map { $0 * 5 / raw.reduce(0, +) }
                              return red(zip(split(a[0], 5), a[1]).map { (z: [Double], y: Double) -> Double in
                                  w[Int(y)] * (0..<5).reduce(0.0) { $0 + ($1 == Int(y) ? sp(-z[$1]) : sp(z[$1])) } }, r) }))
    // GHM-C (mmdetection, no momentum): β = N / (n_bin · #non-empty bins), weights carry no gradient.
    let y01 = v(12, 58, 0...1).map { $0.rounded() }
    cases.append(LossCase(name: "ghm_loss(bins=5)", inputs: [([3, 4], x12), ([3, 4], y01)],
                          kiln: { try ghmcLoss(logits: $0[0], targets: $0[1], bins: 5, reduction: $1) },
                          oracle: { a, r in
                              let g = (0..<12).map { Swift.abs(sig(a[0][$0]) - a[1][$0]) }
                              let bin = g.map { Swift.min(Int($0 * 5), 4) }
                              let n = (0..<5).map { b in bin.filter { $0 == b }.count }
                              let valid = Double(n.filter { $0 > 0 }.count)
                              return red((0..<12).map { (i: Int) -> Double in
                                  let bce = a[1][i] == 1 ? sp(-a[0][i]) : sp(a[0][i])
                                  return 12 / (Double(n[bin[i]]) * valid) * bce }, r) }))
    // Feature-space losses: always scalars, so one reduction.
    let f1 = v(6, 59), f2 = v(8, 60), g1 = v(6, 61), g2 = v(8, 62)
    cases.append(LossCase(name: "perceptual_loss(w=[0.5, 2])", inputs: [([2, 3], f1), ([2, 2, 2], f2), ([2, 3], g1), ([2, 2, 2], g2)],
                          kiln: { a, _ in try perceptualLoss(features: [a[0], a[1]], targetFeatures: [a[2], a[3]], layerWeights: [0.5, 2]) },
                          oracle: { a, _ in
                              let m0 = zip(a[0], a[2]).reduce(0.0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } / 6
                              let m1 = zip(a[1], a[3]).reduce(0.0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } / 8
                              return [0.5 * m0 + 2 * m1] },
                          reductions: [.mean]))
    /// Gram matrices of [N, C, L] features, G_nij = Σ_l F_nil F_njl / (C·L).
    func gram(_ x: [Double], n: Int, c: Int, l: Int) -> [Double] {
        var g = [Double]()
        for b in 0..<n { for i in 0..<c { for j in 0..<c {
            g.append((0..<l).reduce(0.0) { $0 + x[(b * c + i) * l + $1] * x[(b * c + j) * l + $1] } / Double(c * l)) } } }
        return g
    }
    cases.append(LossCase(name: "style_loss(gramMatrix)", inputs: [([2, 3, 4], v(24, 63))],
                          kiln: { a, r in try redT(gramMatrix(a[0]), r) },
                          oracle: { a, r in red(gram(a[0], n: 2, c: 3, l: 4), r) }))
    let s1 = v(24, 64), s2 = v(12, 65), u1 = v(24, 66), u2 = v(12, 67)
    cases.append(LossCase(name: "style_loss(w=[1, 0.5])",
                          inputs: [([2, 3, 4], s1), ([1, 3, 2, 2], s2), ([2, 3, 4], u1), ([1, 3, 2, 2], u2)],
                          kiln: { a, _ in try styleLoss(features: [a[0], a[1]], targetFeatures: [a[2], a[3]], layerWeights: [1, 0.5]) },
                          oracle: { a, _ in
                              let d0 = zip(gram(a[0], n: 2, c: 3, l: 4), gram(a[2], n: 2, c: 3, l: 4)).reduce(0.0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
                              let d1 = zip(gram(a[1], n: 1, c: 3, l: 4), gram(a[3], n: 1, c: 3, l: 4)).reduce(0.0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
                              return [d0 + 0.5 * d1] },
                          reductions: [.mean]))
    cases.append(LossCase(name: "cycle_consistency_loss(λ=10)", inputs: [([3, 4], x12), ([3, 4], y12), ([2, 3], f1), ([2, 3], g1)],
                          kiln: { a, _ in try cycleConsistencyLoss(reconstructedX: a[0], x: a[1], reconstructedY: a[2], y: a[3]) },
                          oracle: { a, _ in
                              let l1 = zip(a[0], a[1]).reduce(0.0) { $0 + Swift.abs($1.0 - $1.1) } / 12
                              let l2 = zip(a[2], a[3]).reduce(0.0) { $0 + Swift.abs($1.0 - $1.1) } / 6
                              return [10 * (l1 + l2)] },
                          reductions: [.mean]))
    let predicted = labels(12, 3, seed: 68), truth = labels(12, 3, seed: 69)
    cases.append(LossCase(name: "zero_one_loss", inputs: [([12], predicted), ([12], truth)],
                          kiln: { try zeroOneLoss(predictions: $0[0], targets: $0[1], reduction: $1) },
                          oracle: { a, r in red(zip(a[0], a[1]).map { $0 == $1 ? 0 : 1 }, r) },
                          checkGradient: false))
    return cases
}

@Suite("Losses (more)")
struct MoreLossTests {
    @Test("the ranking, metric, overlap and feature losses reject bad shapes and hyperparameters naming the loss")
    func errors() throws {
        let b = CPUBackend.shared
        let z = try Tensor.zeros([2, 3], on: b), t2 = try Tensor([0, 1], on: b)
        func expectOp(_ op: String, _ body: () throws -> Tensor) {
            do { _ = try body(); Issue.record("\(op) did not throw") } catch let e as TensorError {
                #expect(e.op == op, "\(e)")
            } catch { Issue.record("\(op) threw \(error)") }
        }
        expectOp("pairwiseDistance") { try pairwiseDistance(z, z, p: 0) }
        expectOp("cosineEmbeddingLoss") { try cosineEmbeddingLoss(z, z, targets: z) }
        expectOp("contrastiveLoss") { try contrastiveLoss(z, Tensor.zeros([3, 2], on: b), targets: t2) }
        expectOp("marginRankingLoss") { try marginRankingLoss(z, z, targets: t2) }
        expectOp("ntXentLoss") { try ntXentLoss(z, z, temperature: 0) }
        expectOp("arcFaceLoss") { try arcFaceLoss(cosines: z, targets: t2, scale: 0) }
        expectOp("cosFaceLoss") { try cosFaceLoss(cosines: z, targets: Tensor([0, 3], on: b)) }
        expectOp("sphereFaceLoss") { try sphereFaceLoss(features: z, classWeights: z, targets: t2, margin: 0) }
        expectOp("distillationLoss") { try distillationLoss(studentLogits: z, teacherLogits: z, alpha: 1.5) }
        expectOp("distillationLoss") { try distillationLoss(studentLogits: z, teacherLogits: z, temperature: 0) }
        expectOp("gaussianKLDivergence") { try gaussianKLDivergence(mean: z, logVariance: Tensor.zeros([3, 2], on: b)) }
        expectOp("kullbackLeiblerDivergence") { try kullbackLeiblerDivergence(input: z, targets: t2) }
        expectOp("ordinalCrossEntropy") { try ordinalCrossEntropy(logits: z, targets: Tensor([0, 4], on: b)) }
        expectOp("classBalancedWeights") { try classBalancedWeights(samplesPerClass: [1, 2], beta: 1, on: b) }
        expectOp("classBalancedLoss") { try classBalancedLoss(logits: z, targets: t2, samplesPerClass: [1, 2]) }
        expectOp("ghmcLoss") { try ghmcLoss(logits: z, targets: z, bins: 0) }
        expectOp("diceLoss") { try diceLoss(probabilities: t2, targets: t2) }
        expectOp("tverskyLoss") { try tverskyLoss(probabilities: z, targets: z, alpha: -1) }
        expectOp("iouLoss") { try iouLoss(probabilities: z, targets: z, smooth: -1) }
        expectOp("perceptualLoss") { try perceptualLoss(features: [z], targetFeatures: []) }
        expectOp("styleLoss") { try styleLoss(features: [z], targetFeatures: [z], layerWeights: [1, 2]) }
        expectOp("gramMatrix") { try gramMatrix(z) }
        expectOp("sequenceCrossEntropy") { try sequenceCrossEntropy(logits: z, targets: t2) }
        expectOp("maskedLanguageModelLoss") {
            try maskedLanguageModelLoss(logits: Tensor.zeros([1, 2, 3], on: b), targets: Tensor([0, 1], shape: [1, 2], on: b), mask: t2)
        }
        expectOp("zeroOneLoss") { try zeroOneLoss(predictions: z, targets: t2) }
    }
}
