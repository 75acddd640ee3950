import Foundation
import Kiln
import KilnTestSupport
import Testing

// MARK: - Float64 helpers

private func f64(_ t: Tensor) throws -> [Double] { try t.scalars().map(Double.init) }

private func tensor(_ shape: [Int], seed: UInt64, on b: any Backend, range: ClosedRange<Double> = -2...2) throws -> Tensor {
    try Tensor(testValues(shape.reduce(1, *), seed: seed, range: range), shape: shape, on: b)
}

private func check(_ actual: Tensor, _ expected: [Double], _ tol: Tolerance, _ what: String,
                   sourceLocation: SourceLocation = #_sourceLocation) throws {
    let m = mismatch(try actual.scalars(), expected, tolerance: tol)
    #expect(m == nil, "\(what): \(m ?? "")", sourceLocation: sourceLocation)
}

/// Replaces a parameter's value by test data (so the oracle sees non-trivial weights).
private func randomize(_ p: Parameter?, seed: UInt64, on b: any Backend) throws {
    guard let p else { return }
    try p.assign(tensor(p.shape, seed: seed, on: b, range: 0.5...1.5))
}

/// Backward of sum(y·r) and a check that every parameter received a gradient of its shape.
private func expectGradients(_ m: any Module, _ y: Tensor, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let r = try tensor(y.shape, seed: 99, on: y.backend)
    try (y * r).sum().backward()
    for (name, p) in m.namedParameters() {
        #expect(p.gradient?.shape == p.shape, "no gradient reached \(name)", sourceLocation: sourceLocation)
    }
}

/// Direct Float64 cross-correlation of [N, Ci, H, W] with [Co, Ci/g, kH, kW].
private func conv2dOracle(_ x: [Double], _ xs: [Int], _ w: [Double], _ ws: [Int], _ b: [Double]?, stride: Int,
                          padding: Int, groups: Int) -> ([Double], [Int]) {
    let (n, ci, h, wd) = (xs[0], xs[1], xs[2], xs[3])
    let (co, cig, kh, kw) = (ws[0], ws[1], ws[2], ws[3])
    let oh = (h + 2 * padding - kh) / stride + 1, ow = (wd + 2 * padding - kw) / stride + 1
    var y = [Double](repeating: 0, count: n * co * oh * ow)
    for s in 0..<n { for o in 0..<co { for i in 0..<oh { for j in 0..<ow {
        let g = o / (co / groups)
        var acc = b?[o] ?? 0
        for c in 0..<cig { for u in 0..<kh { for v in 0..<kw {
            let r = i * stride - padding + u, q = j * stride - padding + v
            guard r >= 0, r < h, q >= 0, q < wd else { continue }
            acc += x[((s * ci + g * cig + c) * h + r) * wd + q] * w[((o * cig + c) * kh + u) * kw + v]
        } } }
        y[((s * co + o) * oh + i) * ow + j] = acc
    } } } }
    _ = ci
    return (y, [n, co, oh, ow])
}

@Suite("Layers")
struct LayerTests {
    @Test("Linear: y = xWᵀ + b, PyTorch names and init bounds, gradients", arguments: TestBackend.all)
    func linear(_ tb: TestBackend) throws {
        let b = tb.backend
        let layer = try Linear(inputSize: 7, outputSize: 5, seed: 3, on: b)
        #expect(layer.namedParameters().map(\.name) == ["weight", "bias"])
        #expect(layer.weight.shape == [5, 7] && layer.parameterCount == 40)
        let bound = 1 / 7.0.squareRoot()
        let w = try f64(layer.weight.value), bias = try f64(try #require(layer.bias).value)
        #expect((w + bias).allSatisfy { Swift.abs($0) <= bound })
        #expect(w.map { Swift.abs($0) }.max()! > 0.7 * bound, "weights fill U(−1/√in, 1/√in)")
        #expect(w != Array(bias.prefix(w.count)))
        let x = try tensor([2, 3, 7], seed: 1, on: b)
        let y = try layer(x)
        #expect(y.shape == [2, 3, 5])
        let xs = try f64(x)
        var expected = [Double]()
        for r in 0..<6 { for o in 0..<5 {
            var acc = bias[o]
            for i in 0..<7 { acc += xs[r * 7 + i] * w[o * 7 + i] }
            expected.append(acc)
        } }
        try check(y, expected, .gemm(k: 7), "Linear")
        try expectGradients(layer, y)
        #expect(throws: TensorError.self) { try layer(tensor([2, 6], seed: 1, on: b)) }
        #expect(throws: TensorError.self) { try Linear(inputSize: 0, outputSize: 2, seed: 0, on: b) }
        let noBias = try Linear(inputSize: 4, outputSize: 3, bias: false, seed: 1, on: b)
        #expect(noBias.namedParameters().map(\.name) == ["weight"])
    }

    @Test("Bilinear: x1ᵀWx2 + b", arguments: TestBackend.all)
    func bilinear(_ tb: TestBackend) throws {
        let b = tb.backend
        let layer = try Bilinear(input1Size: 3, input2Size: 4, outputSize: 2, seed: 5, on: b)
        #expect(layer.namedParameters().map(\.name) == ["weight", "bias"] && layer.parameterCount == 26)
        #expect(try f64(layer.weight.value).allSatisfy { Swift.abs($0) <= 1 / 3.0.squareRoot() })
        let x1 = try tensor([5, 3], seed: 1, on: b), x2 = try tensor([5, 4], seed: 2, on: b)
        let y = try layer(x1, x2)
        let (a, c, w, bias) = (try f64(x1), try f64(x2), try f64(layer.weight.value), try f64(layer.bias!.value))
        var expected = [Double]()
        for n in 0..<5 { for o in 0..<2 {
            var acc = bias[o]
            for i in 0..<3 { for j in 0..<4 { acc += a[n * 3 + i] * w[(o * 3 + i) * 4 + j] * c[n * 4 + j] } }
            expected.append(acc)
        } }
        try check(y, expected, .gemm(k: 12), "Bilinear")
        try expectGradients(layer, y)
    }

    @Test("Conv1d, Conv2d (stride, padding, groups) and ConvTranspose2d against direct loops", arguments: TestBackend.all)
    func convolutions(_ tb: TestBackend) throws {
        let b = tb.backend
        let c2 = try Conv2d(inputChannels: 4, outputChannels: 6, kernelSize: 3, stride: 2, padding: 1, groups: 2,
                            seed: 7, on: b)
        #expect(c2.namedParameters().map(\.name) == ["weight", "bias"])
        #expect(c2.weight.shape == [6, 2, 3, 3] && c2.parameterCount == 6 * 2 * 9 + 6)
        #expect(try f64(c2.weight.value).allSatisfy { Swift.abs($0) <= 1 / 18.0.squareRoot() })
        let x = try tensor([2, 4, 7, 6], seed: 11, on: b)
        let y = try c2(x)
        let (e, shape) = conv2dOracle(try f64(x), x.shape, try f64(c2.weight.value), c2.weight.shape,
                                      try f64(c2.bias!.value), stride: 2, padding: 1, groups: 2)
        #expect(y.shape == shape)
        try check(y, e, .gemm(k: 18), "Conv2d")
        try expectGradients(c2, y)

        let c1 = try Conv1d(inputChannels: 3, outputChannels: 2, kernelSize: 3, padding: 1, seed: 8, on: b)
        let x1 = try tensor([2, 3, 5], seed: 12, on: b)
        let y1 = try c1(x1)
        // Padding 1 on the length axis only: the oracle runs on an explicitly padded copy.
        var xp = [Double]()
        let xs1 = try f64(x1)
        for r in 0..<6 { xp += [0] + xs1[(r * 5)..<(r * 5 + 5)] + [0] }
        let (e1p, s1p) = conv2dOracle(xp, [2, 3, 1, 7], try f64(c1.weight.value), [2, 3, 1, 3],
                                      try f64(c1.bias!.value), stride: 1, padding: 0, groups: 1)
        #expect(y1.shape == [2, 2, 5] && s1p == [2, 2, 1, 5])
        try check(y1, e1p, .gemm(k: 9), "Conv1d")
        try expectGradients(c1, y1)

        let ct = try ConvTranspose2d(inputChannels: 3, outputChannels: 2, kernelSize: 3, stride: 2, padding: 1,
                                     outputPadding: 1, seed: 9, on: b)
        #expect(ct.weight.shape == [3, 2, 3, 3])
        #expect(try f64(ct.weight.value).allSatisfy { Swift.abs($0) <= 1 / 18.0.squareRoot() })
        let xt = try tensor([1, 3, 3, 4], seed: 13, on: b)
        let yt = try ct(xt)
        #expect(yt.shape == [1, 2, 6, 8])
        let (xv, wv, bv) = (try f64(xt), try f64(ct.weight.value), try f64(ct.bias!.value))
        var et = [Double](repeating: 0, count: 2 * 6 * 8)
        for o in 0..<2 { for i in 0..<48 { et[o * 48 + i] = bv[o] } }
        for c in 0..<3 { for i in 0..<3 { for j in 0..<4 { for o in 0..<2 { for u in 0..<3 { for v in 0..<3 {
            let r = i * 2 - 1 + u, q = j * 2 - 1 + v
            guard r >= 0, r < 6, q >= 0, q < 8 else { continue }
            et[(o * 6 + r) * 8 + q] += xv[(c * 3 + i) * 4 + j] * wv[((c * 2 + o) * 3 + u) * 3 + v]
        } } } } } }
        try check(yt, et, .gemm(k: 27), "ConvTranspose2d")
        try expectGradients(ct, yt)
        #expect(throws: TensorError.self) { try Conv2d(inputChannels: 3, outputChannels: 4, kernelSize: 3, groups: 2, seed: 0, on: b) }
        #expect(throws: TensorError.self) { try ConvTranspose2d(inputChannels: 1, outputChannels: 1, kernelSize: 3, stride: 2, outputPadding: 2, seed: 0, on: b) }
    }

    @Test("pooling layers against window loops", arguments: TestBackend.all)
    func pooling(_ tb: TestBackend) throws {
        let b = tb.backend
        let x = try tensor([2, 3, 6, 5], seed: 21, on: b)
        let xs = try f64(x)
        func windows(_ oh: Int, _ ow: Int, _ rows: (Int) -> Range<Int>, _ cols: (Int) -> Range<Int>,
                     _ f: ([Double]) -> Double) -> [Double] {
            var out = [Double]()
            for p in 0..<6 { for i in 0..<oh { for j in 0..<ow {
                var vals = [Double]()
                for r in rows(i) { for q in cols(j) { vals.append(xs[(p * 6 + r) * 5 + q]) } }
                out.append(f(vals))
            } } }
            return out
        }
        let mx: ([Double]) -> Double = { $0.max()! }
        let avg: ([Double]) -> Double = { $0.reduce(0, +) / Double($0.count) }
        try check(try MaxPool2d(kernelSize: 2)(x), windows(3, 2, { (2 * $0)..<(2 * $0 + 2) }, { (2 * $0)..<(2 * $0 + 2) }, mx),
                  .exact, "MaxPool2d")
        try check(try AvgPool2d(kernelSize: [3, 2], stride: 1)(x),
                  windows(4, 4, { $0..<($0 + 3) }, { $0..<($0 + 2) }, avg), .elementwise, "AvgPool2d")
        let ar: (Int) -> Range<Int> = { (($0 * 6) / 4)..<((($0 + 1) * 6 + 3) / 4) }
        let ac: (Int) -> Range<Int> = { (($0 * 5) / 3)..<((($0 + 1) * 5 + 2) / 3) }
        try check(try AdaptiveAvgPool2d(outputSize: [4, 3])(x), windows(4, 3, ar, ac, avg), .elementwise, "AdaptiveAvgPool2d")
        try check(try AdaptiveMaxPool2d(outputSize: [4, 3])(x), windows(4, 3, ar, ac, mx), .exact, "AdaptiveMaxPool2d")
        #expect(throws: TensorError.self) { try MaxPool2d(kernelSize: 2, padding: 2) }
        #expect(throws: TensorError.self) { try AvgPool2d(kernelSize: 0) }
    }

    @Test("BatchNorm2d: output and running statistics after two training steps, then eval", arguments: TestBackend.all)
    func batchNorm(_ tb: TestBackend) throws {
        let b = tb.backend
        let bn = try BatchNorm2d(features: 3, momentum: 0.2, on: b)
        #expect(bn.namedParameters().map(\.name) == ["weight", "bias"] && bn.parameterCount == 6)
        try randomize(bn.weight, seed: 1, on: b)
        try randomize(bn.bias, seed: 2, on: b)
        let (w, beta) = (try f64(bn.weight!.value), try f64(bn.bias!.value))
        var rm = [0.0, 0, 0], rv = [1.0, 1, 1]
        let eps = 1e-5
        func oracle(_ xs: [Double], n: Int, s: Int, mean: [Double], variance: [Double]) -> [Double] {
            var y = xs
            for i in 0..<n { for c in 0..<3 { for k in 0..<s {
                let idx = (i * 3 + c) * s + k
                y[idx] = (xs[idx] - mean[c]) / (variance[c] + eps).squareRoot() * w[c] + beta[c]
            } } }
            return y
        }
        for step in 0..<2 {
            let x = try tensor([4, 3, 2, 3], seed: 30 + UInt64(step), on: b, range: -1...3)
            let xs = try f64(x)
            var mean = [Double](repeating: 0, count: 3), variance = mean, unbiased = mean
            for c in 0..<3 {
                let vals = (0..<4).flatMap { i in (0..<6).map { xs[(i * 3 + c) * 6 + $0] } }
                let mu = vals.reduce(0, +) / 24
                let ss = vals.reduce(0) { $0 + ($1 - mu) * ($1 - mu) }
                (mean[c], variance[c], unbiased[c]) = (mu, ss / 24, ss / 23)
                rm[c] = 0.8 * rm[c] + 0.2 * mu
                rv[c] = 0.8 * rv[c] + 0.2 * ss / 23
            }
            let y = try bn(x)
            try check(y, oracle(xs, n: 4, s: 6, mean: mean, variance: variance), .reduction, "BatchNorm2d step \(step)")
            if step == 1 { try expectGradients(bn, y) }
        }
        try check(try #require(bn.runningMean), rm, .reduction, "running_mean")
        try check(try #require(bn.runningVariance), rv, .reduction, "running_var")
        #expect(bn.batchesTracked == 2)
        bn.eval()
        let x = try tensor([2, 3, 2, 3], seed: 40, on: b)
        try check(try bn(x), oracle(try f64(x), n: 2, s: 6, mean: rm, variance: rv), .reduction, "BatchNorm2d eval")
        try check(try #require(bn.runningMean), rm, .reduction, "running_mean unchanged by eval")
        #expect(bn.batchesTracked == 2)
        let bn1 = try BatchNorm1d(features: 3, on: b)
        #expect(try bn1(tensor([5, 3], seed: 1, on: b)).shape == [5, 3])
        #expect(throws: TensorError.self) { try bn1(tensor([5, 3, 2, 2], seed: 1, on: b)) }
        #expect(throws: TensorError.self) { try BatchNorm2d(features: 3, momentum: 1.5, on: b) }
    }

    @Test("LayerNorm, RMSNorm, GroupNorm, InstanceNorm against Float64", arguments: TestBackend.all)
    func norms(_ tb: TestBackend) throws {
        let b = tb.backend
        let x = try tensor([2, 4, 3, 2], seed: 50, on: b, range: -1...3)
        let xs = try f64(x)
        /// Normalizes consecutive blocks of `size` with an optional RMS form, then applies `affine(index)`.
        func blocks(_ size: Int, rms: Bool = false, eps: Double, _ affine: (Int) -> (Double, Double)) -> [Double] {
            var y = xs
            for start in stride(from: 0, to: xs.count, by: size) {
                let v = Array(xs[start..<(start + size)])
                let mu = rms ? 0 : v.reduce(0, +) / Double(size)
                let ms = v.reduce(0) { $0 + ($1 - mu) * ($1 - mu) } / Double(size)
                for k in 0..<size {
                    let (g, bb) = affine(start + k)
                    y[start + k] = (v[k] - mu) / (ms + eps).squareRoot() * g + bb
                }
            }
            return y
        }
        let ln = try LayerNorm(normalizedShape: [3, 2], on: b)
        #expect(ln.namedParameters().map(\.name) == ["weight", "bias"])
        try randomize(ln.weight, seed: 3, on: b)
        try randomize(ln.bias, seed: 4, on: b)
        let (lw, lb) = (try f64(ln.weight!.value), try f64(ln.bias!.value))
        let yl = try ln(x)
        try check(yl, blocks(6, eps: 1e-5) { (lw[$0 % 6], lb[$0 % 6]) }, .reduction, "LayerNorm")
        try expectGradients(ln, yl)

        let rn = try RMSNorm(normalizedShape: [2], eps: 1e-6, on: b)
        #expect(rn.namedParameters().map(\.name) == ["weight"])
        try randomize(rn.weight, seed: 5, on: b)
        let rw = try f64(rn.weight!.value)
        let yr = try rn(x)
        try check(yr, blocks(2, rms: true, eps: 1e-6) { (rw[$0 % 2], 0) }, .reduction, "RMSNorm")
        try expectGradients(rn, yr)

        let gn = try GroupNorm(groups: 2, channels: 4, on: b)
        try randomize(gn.weight, seed: 6, on: b)
        try randomize(gn.bias, seed: 7, on: b)
        let (gw, gb) = (try f64(gn.weight!.value), try f64(gn.bias!.value))
        let yg = try gn(x)
        try check(yg, blocks(12, eps: 1e-5) { (gw[($0 / 6) % 4], gb[($0 / 6) % 4]) }, .reduction, "GroupNorm")
        try expectGradients(gn, yg)
        #expect(throws: TensorError.self) { try GroupNorm(groups: 3, channels: 4, on: b) }

        let inorm = try InstanceNorm(features: 4, affine: true, on: b)
        #expect(inorm.namedParameters().map(\.name) == ["weight", "bias"])
        try randomize(inorm.weight, seed: 8, on: b)
        let iw = try f64(inorm.weight!.value)
        let yi = try inorm(x)
        try check(yi, blocks(6, eps: 1e-5) { (iw[($0 / 6) % 4], 0) }, .reduction, "InstanceNorm")
        try expectGradients(inorm, yi)
        #expect(try InstanceNorm(features: 4, on: b).namedParameters().isEmpty)
    }

    @Test("Dropout: keep rate, 1/(1 − p) scaling, fresh masks per call, eval identity", arguments: TestBackend.all)
    func dropout(_ tb: TestBackend) throws {
        let b = tb.backend
        let d = try Dropout(probability: 0.3, seed: 77)
        let x = try Tensor.ones([20_000], on: b)
        let y1 = try d(x).scalars(), y2 = try d(x).scalars()
        let kept = y1.filter { $0 != 0 }
        let rate = Double(kept.count) / Double(y1.count)
        #expect(Swift.abs(rate - 0.7) < 0.015, "keep rate \(rate)")
        #expect(kept.allSatisfy { Swift.abs($0 - 1 / 0.7) < 1e-6 })
        #expect(y1 != y2, "successive calls draw different masks")
        let again = try Dropout(probability: 0.3, seed: 77)
        #expect(try again(x).scalars() == y1, "same seed, same first mask")
        if let cl = TestBackend.firstOpenCL, !tb.isOpenCL {
            let other = try Dropout(probability: 0.3, seed: 77)
            #expect(try other(Tensor.ones([20_000], on: cl.backend)).scalars() == y1, "same mask on \(cl)")
        }
        d.eval()
        let xr = try tensor([50], seed: 1, on: b)
        #expect(try d(xr).scalars() == xr.scalars())
        #expect(throws: TensorError.self) { try Dropout(probability: 1.5, seed: 0) }
        let v = try tensor([10], seed: 2, on: b).requiringGradient()
        d.train()
        let yd = try d(v)
        try yd.sum().backward()
        let expectedGrad = try yd.scalars().map { $0 == 0 ? 0.0 : 1 / 0.7 }
        try check(try #require(v.gradient), expectedGrad, .elementwise, "Dropout gradient")
    }

    @Test("Embedding: rows by index, N(0, 1) init, padding row zero with no gradient", arguments: TestBackend.all)
    func embedding(_ tb: TestBackend) throws {
        let b = tb.backend
        let e = try Embedding(count: 6, dimension: 3, paddingIndex: 0, seed: 4, on: b)
        #expect(e.namedParameters().map(\.name) == ["weight"] && e.parameterCount == 18)
        let w = try f64(e.weight.value)
        #expect(w[0..<3].allSatisfy { $0 == 0 } && w[3...].contains { $0 != 0 })
        let idx = try Tensor([2, 0, 5, 2], shape: [2, 2], on: b)
        let y = try e(idx)
        #expect(y.shape == [2, 2, 3])
        try check(y, [2, 0, 5, 2].flatMap { Array(w[($0 * 3)..<($0 * 3 + 3)]) }, .exact, "Embedding")
        try y.sum().backward()
        try check(try #require(e.weight.gradient), [0, 0, 0, 0, 0, 0, 2, 2, 2, 0, 0, 0, 0, 0, 0, 1, 1, 1], .exact, "Embedding grad")
        #expect(throws: TensorError.self) { try e(Tensor([6], on: b)) }
        #expect(throws: TensorError.self) { try e(Tensor([1.5], on: b)) }
        let big = try Embedding(count: 100, dimension: 100, seed: 1, on: b)
        let vals = try f64(big.weight.value)
        let mean = vals.reduce(0, +) / 1e4, variance = vals.reduce(0) { $0 + $1 * $1 } / 1e4 - mean * mean
        #expect(Swift.abs(mean) < 0.05 && Swift.abs(variance - 1) < 0.06, "N(0, 1): mean \(mean), var \(variance)")
    }

    @Test("Sequential, Flatten, ResidualBlock: names, composition, gradients", arguments: TestBackend.all)
    func containers(_ tb: TestBackend) throws {
        let b = tb.backend
        let inner = try Linear(inputSize: 4, outputSize: 4, seed: 1, on: b)
        let res = ResidualBlock(inner)
        let net = Sequential(Flatten(), res, Lambda("tanh") { try tanh($0) }, try Linear(inputSize: 4, outputSize: 2, seed: 2, on: b))
        #expect(net.namedParameters().map(\.name) == ["1.body.weight", "1.body.bias", "3.weight", "3.bias"])
        let x = try tensor([3, 2, 2], seed: 5, on: b)
        let flat = try Flatten()(x)
        #expect(flat.shape == [3, 4])
        try check(try res(flat), zip(try f64(flat), try f64(try inner(flat))).map { $0 + $1 }, .elementwise, "ResidualBlock")
        let y = try net(x)
        #expect(y.shape == [3, 2])
        try expectGradients(net, y)
        net.eval()
        #expect(!res.isTraining && !inner.isTraining)
        #expect(throws: TensorError.self) { try ResidualBlock(try Linear(inputSize: 4, outputSize: 3, seed: 1, on: b))(flat) }
        #expect(throws: TensorError.self) { try Flatten(startAxis: 2, endAxis: 1)(x) }
    }

    @Test("seed 003's CIFAR-10 CNN has 268,650 parameters and the MLP 411,146; the CNN runs", arguments: TestBackend.all)
    func seedParameterCounts(_ tb: TestBackend) throws {
        let b = tb.backend
        let reluLayer = { Lambda("relu") { try relu($0) } }
        let cnn = Sequential(
            try Conv2d(inputChannels: 3, outputChannels: 16, kernelSize: 3, padding: 1, seed: 1, on: b), reluLayer(),
            try MaxPool2d(kernelSize: 2),
            try Conv2d(inputChannels: 16, outputChannels: 32, kernelSize: 3, padding: 1, seed: 2, on: b), reluLayer(),
            try MaxPool2d(kernelSize: 2), Flatten(),
            try Linear(inputSize: 2048, outputSize: 128, seed: 3, on: b), reluLayer(),
            try Linear(inputSize: 128, outputSize: 10, seed: 4, on: b))
        #expect(cnn.parameterCount == 268_650)
        #expect(cnn.children.map { $0.module.parameterCount } == [448, 0, 0, 4640, 0, 0, 0, 262_272, 0, 1290])
        #expect(cnn.namedParameters().map(\.name) == ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias",
                                                       "9.weight", "9.bias"])
        let y = try cnn(tensor([2, 3, 32, 32], seed: 1, on: b))
        #expect(y.shape == [2, 10])
        let mlp = Sequential(try Linear(inputSize: 3072, outputSize: 128, seed: 1, on: b), reluLayer(),
                             try Linear(inputSize: 128, outputSize: 128, seed: 2, on: b), reluLayer(),
                             try Linear(inputSize: 128, outputSize: 10, seed: 3, on: b))
        #expect(mlp.parameterCount == 411_146)
    }
}

@Suite("Initializers")
struct InitializerTests {
    private static func moments(_ t: Tensor) throws -> (mean: Double, variance: Double, maxAbs: Double) {
        let v = try t.scalars().map(Double.init)
        let mean = v.reduce(0, +) / Double(v.count)
        let variance = v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(v.count)
        return (mean, variance, v.map { Swift.abs($0) }.max() ?? 0)
    }

    @Test("variances and bounds of LeCun, Xavier, Kaiming; gains as calculate_gain", arguments: TestBackend.all)
    func variances(_ tb: TestBackend) throws {
        let b = tb.backend
        let shape = [200, 50, 3]  // fanIn 150, fanOut 600
        #expect(try Initializer.fans(of: shape) == (150, 600))
        let cases: [(String, Tensor, Double, Double?)] = [
            ("lecunUniform", try Initializer.lecunUniform(shape, seed: 1, on: b), 1 / 150, (3.0 / 150).squareRoot()),
            ("lecunNormal", try Initializer.lecunNormal(shape, seed: 2, on: b), 1 / 150, nil),
            ("xavierUniform", try Initializer.xavierUniform(shape, gain: 2, seed: 3, on: b), 4 * 2 / 750,
             2 * (6.0 / 750).squareRoot()),
            ("xavierNormal", try Initializer.xavierNormal(shape, seed: 4, on: b), 2.0 / 750, nil),
            ("kaimingUniform relu fanOut", try Initializer.kaimingUniform(shape, mode: .fanOut, nonlinearity: .relu, seed: 5, on: b),
             2.0 / 600, (6.0 / 600).squareRoot()),
            ("kaimingNormal", try Initializer.kaimingNormal(shape, seed: 6, on: b), 2.0 / 150, nil),
            ("kaimingUniform a=√5", try Initializer.kaimingUniform(shape, a: Float(5.0.squareRoot()), seed: 7, on: b),
             1.0 / 450, 1 / 150.0.squareRoot()),
        ]
        for (name, t, variance, bound) in cases {
            let m = try Self.moments(t)
            #expect(Swift.abs(m.variance / variance - 1) < 0.03, "\(name): variance \(m.variance), expected \(variance)")
            #expect(Swift.abs(m.mean) < 0.02 * variance.squareRoot(), "\(name): mean \(m.mean)")
            if let bound { #expect(m.maxAbs <= bound * (1 + 1e-6) && m.maxAbs > 0.99 * bound, "\(name): max \(m.maxAbs)") }
        }
        #expect(Initializer.gain(.tanh) == 5.0 / 3.0 && Initializer.gain(.selu) == 0.75 && Initializer.gain(.conv2d) == 1)
        #expect(Swift.abs(Initializer.gain(.leakyReLU(negativeSlope: 0.2)) - Float((2 / 1.04).squareRoot())) < 1e-7)
        #expect(try Initializer.constant([3], value: 0.5, on: b).scalars() == [0.5, 0.5, 0.5])
        #expect(throws: TensorError.self) { try Initializer.xavierUniform([5], seed: 0, on: b) }
        #expect(throws: TensorError.self) { try Initializer.xavierNormal([2, 2], gain: -1, seed: 0, on: b) }
    }

    @Test("orthogonal: QᵀQ = gain²·I for tall and wide shapes", arguments: TestBackend.all)
    func orthogonal(_ tb: TestBackend) throws {
        for shape in [[7, 4], [3, 2, 4], [5, 5]] {
            let q = try Initializer.orthogonal(shape, gain: 1.5, seed: 9, on: tb.backend).scalars().map(Double.init)
            let rows = shape[0], cols = q.count / rows
            let k = Swift.min(rows, cols)
            for i in 0..<k { for j in 0..<k {
                var dot = 0.0
                if rows >= cols { for r in 0..<rows { dot += q[r * cols + i] * q[r * cols + j] } }
                else { for c in 0..<cols { dot += q[i * cols + c] * q[j * cols + c] } }
                let expected = i == j ? 2.25 : 0
                #expect(Swift.abs(dot - expected) < 1e-5, "\(shape) (\(i), \(j)): \(dot)")
            } }
        }
    }

    @Test("same seed gives identical parameters on CPU and OpenCL")
    func sameSeedAcrossBackends() throws {
        #expect(TestBackend.openCLProblem == nil, "\(TestBackend.openCLProblem ?? "")")
        guard let cl = TestBackend.firstOpenCL else { return }
        func model(_ b: any Backend) throws -> Sequential {
            Sequential(try Conv2d(inputChannels: 3, outputChannels: 4, kernelSize: 3, seed: 11, on: b),
                       try BatchNorm2d(features: 4, on: b), Flatten(),
                       try Linear(inputSize: 16, outputSize: 3, seed: 12, on: b),
                       try Bilinear(input1Size: 2, input2Size: 2, outputSize: 2, seed: 13, on: b),
                       try Embedding(count: 4, dimension: 2, seed: 14, on: b),
                       try ConvTranspose2d(inputChannels: 2, outputChannels: 2, kernelSize: 2, seed: 15, on: b))
        }
        let (a, c) = (try model(CPUBackend.shared), try model(cl.backend))
        for ((name, p), (_, q)) in zip(a.namedParameters(), c.namedParameters()) {
            #expect(try p.value.scalars() == q.value.scalars(), "\(name) differs on \(cl)")
        }
        for (sa, sc) in [(try Initializer.orthogonal([6, 3], seed: 3, on: CPUBackend.shared),
                          try Initializer.orthogonal([6, 3], seed: 3, on: cl.backend)),
                         (try Initializer.xavierNormal([6, 3], seed: 3, on: CPUBackend.shared),
                          try Initializer.xavierNormal([6, 3], seed: 3, on: cl.backend))] {
            #expect(try sa.scalars() == sc.scalars())
        }
        let other = try Linear(inputSize: 16, outputSize: 3, seed: 13, on: CPUBackend.shared)
        #expect(try other.weight.value.scalars() != a.namedParameters()[4].parameter.value.scalars(), "different seeds differ")
    }
}
