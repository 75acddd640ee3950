import Foundation
import Kiln
import KilnTestSupport
import Testing

/// One conv2d configuration: input `[n, cin, h, w]`, `cout` outputs, kernel `k`, and PyTorch's hyperparameters.
struct ConvCase: CustomStringConvertible, Sendable {
    let n: Int, cin: Int, h: Int, w: Int, cout: Int
    let k: [Int]
    var stride = [1, 1]
    var padding: [Int]? = [0, 0]  // nil: "same"
    var dilation = [1, 1]
    var groups = 1
    var bias = true

    var description: String {
        "[\(n),\(cin),\(h),\(w)]→\(cout) k\(k) s\(stride) p\(padding.map { "\($0)" } ?? "same") d\(dilation) g\(groups)\(bias ? " bias" : "")"
    }
    var weightShape: [Int] { [cout, cin / groups, k[0], k[1]] }

    /// The descriptor, from PyTorch's formulas written out here (not the library's).
    var descriptor: Convolution2DDescriptor {
        var before = [0, 0], after = [0, 0]
        for i in 0..<2 {
            if let p = padding {
                before[i] = p[i]; after[i] = p[i]
            } else {
                let total = dilation[i] * (k[i] - 1)
                before[i] = total / 2; after[i] = total - total / 2
            }
        }
        let oh = (h + before[0] + after[0] - dilation[0] * (k[0] - 1) - 1) / stride[0] + 1
        let ow = (w + before[1] + after[1] - dilation[1] * (k[1] - 1) - 1) / stride[1] + 1
        return Convolution2DDescriptor(batch: n, inputChannels: cin, inputHeight: h, inputWidth: w, outputChannels: cout,
                                       outputHeight: oh, outputWidth: ow, kernelHeight: k[0], kernelWidth: k[1],
                                       strideHeight: stride[0], strideWidth: stride[1], padTop: before[0],
                                       padLeft: before[1], dilationHeight: dilation[0], dilationWidth: dilation[1],
                                       groups: groups)
    }
    var padArgument: ConvolutionPadding { padding.map { .explicit(SpatialSize($0)) } ?? .same }
}

/// Stride > 1, dilation > 1, groups, depthwise (multiplier 1 and 2), padding incl. "same" with even
/// kernels, odd sizes, 1×1 (pointwise and strided) and 7×7 kernels, batch 1 and > 1, several CPU tiles.
let convCases: [ConvCase] = [
    ConvCase(n: 1, cin: 3, h: 7, w: 7, cout: 4, k: [3, 3], padding: [1, 1]),
    ConvCase(n: 2, cin: 4, h: 9, w: 11, cout: 6, k: [3, 5], stride: [2, 1], padding: [1, 2], groups: 2),
    ConvCase(n: 2, cin: 3, h: 10, w: 9, cout: 5, k: [3, 3], padding: nil, dilation: [2, 2], bias: false),
    ConvCase(n: 1, cin: 2, h: 6, w: 7, cout: 3, k: [4, 2], padding: nil),
    ConvCase(n: 3, cin: 6, h: 8, w: 8, cout: 6, k: [3, 3], stride: [2, 2], padding: [1, 1], groups: 6),
    ConvCase(n: 2, cin: 4, h: 8, w: 9, cout: 8, k: [5, 5], padding: [2, 2], dilation: [1, 2], groups: 4, bias: false),
    ConvCase(n: 2, cin: 8, h: 5, w: 6, cout: 16, k: [1, 1]),
    ConvCase(n: 2, cin: 8, h: 5, w: 6, cout: 4, k: [1, 1], groups: 2, bias: false),
    ConvCase(n: 2, cin: 4, h: 7, w: 7, cout: 3, k: [1, 1], stride: [2, 2]),
    ConvCase(n: 1, cin: 3, h: 17, w: 19, cout: 4, k: [7, 7], stride: [2, 2], padding: [3, 3]),
    ConvCase(n: 2, cin: 5, h: 13, w: 13, cout: 7, k: [3, 3], stride: [3, 2], dilation: [3, 2]),
    ConvCase(n: 2, cin: 64, h: 23, w: 21, cout: 9, k: [3, 3], padding: [1, 1]),
]

/// Outputs, input gradients and weight gradients sum `depth` products of values in [−2, 2].
func convTolerance(_ expected: [Double], depth: Int) -> Tolerance {
    let root = Double(Swift.max(depth, 1)).squareRoot()
    return Tolerance(absolute: 2e-6 * root * largestMagnitude(expected), relative: 1e-5 * root)
}

func expectMatch(_ actual: Tensor, _ expected: [Double], _ tolerance: Tolerance, _ what: String,
                 sourceLocation: SourceLocation = #_sourceLocation) throws {
    let problem = mismatch(try actual.scalars(), expected, tolerance: tolerance)
    #expect(problem == nil, "\(what): \(problem ?? "")", sourceLocation: sourceLocation)
}

@Suite("Convolution conformance")
struct ConvolutionConformanceTests {
    @Test("conv2d forward and backward against Float64 loops", arguments: TestBackend.all, convCases)
    func conv2dMatchesOracle(_ tb: TestBackend, _ c: ConvCase) throws {
        let backend = tb.backend
        let d = c.descriptor
        let outShape = [c.n, c.cout, d.outputHeight, d.outputWidth]
        let x = testValues(c.n * c.cin * c.h * c.w, seed: 21)
        let w = testValues(c.weightShape.reduce(1, *), seed: 22)
        let b = c.bias ? testValues(c.cout, seed: 23) : nil
        let g = testValues(outShape.reduce(1, *), seed: 24)
        let tx = try Tensor(x, shape: [c.n, c.cin, c.h, c.w], on: backend)
        let tw = try Tensor(w, shape: c.weightShape, on: backend)
        let tbias = try b.map { try Tensor($0, shape: [c.cout], on: backend) }
        let y = try conv2d(tx, weight: tw, bias: tbias, stride: SpatialSize(c.stride), padding: c.padArgument,
                           dilation: SpatialSize(c.dilation), groups: c.groups)
        let name = "\(tb) \(c)"
        #expect(y.shape == outShape, "\(name) output shape")
        let expected = ConvolutionOracle.conv2d(x.doubles, w.doubles, b?.doubles, d)
        try expectMatch(y, expected, convTolerance(expected, depth: d.patchSize), "\(name) output")

        let grads = try conv2dBackward(try Tensor(g, shape: outShape, on: backend), input: tx, weight: tw, bias: tbias,
                                       stride: SpatialSize(c.stride), padding: c.padArgument,
                                       dilation: SpatialSize(c.dilation), groups: c.groups)
        let (dx, dw) = ConvolutionOracle.conv2dBackward(g.doubles, x.doubles, w.doubles, d)
        try expectMatch(grads.input, dx, convTolerance(dx, depth: d.outputChannelsPerGroup * d.kernelHeight * d.kernelWidth),
                        "\(name) input gradient")
        try expectMatch(grads.weight, dw, convTolerance(dw, depth: c.n * d.outputPlane), "\(name) weight gradient")
        if c.bias {
            var db = [Double](repeating: 0, count: c.cout)
            for (i, v) in g.enumerated() { db[(i / d.outputPlane) % c.cout] += Double(v) }
            guard let bias = grads.bias else {
                Issue.record("\(name): missing bias gradient")
                return
            }
            try expectMatch(bias, db, convTolerance(db, depth: c.n * d.outputPlane), "\(name) bias gradient")
        } else {
            #expect(grads.bias == nil, "\(name): bias gradient without bias")
        }
    }

    @Test("The oracle's conv2d gradients agree with finite differences", arguments: convCases.filter { $0.n * $0.cin * $0.h * $0.w < 800 })
    func oracleGradientsMatchFiniteDifferences(_ c: ConvCase) {
        let d = c.descriptor
        let x = testValues(c.n * c.cin * c.h * c.w, seed: 31).doubles
        let w = testValues(c.weightShape.reduce(1, *), seed: 32).doubles
        let g = testValues(c.n * c.cout * d.outputPlane, seed: 33).doubles
        let (dx, dw) = ConvolutionOracle.conv2dBackward(g, x, w, d)
        let xs = Array(stride(from: 0, to: x.count, by: Swift.max(1, x.count / 40)))
        for (i, v) in ConvolutionOracle.finiteDifference({ ConvolutionOracle.conv2d($0, w, nil, d) }, at: x, weights: g,
                                                         positions: xs) {
            #expect(Swift.abs(v - dx[i]) <= 1e-8 * Swift.max(1, Swift.abs(v)), "\(c) dx[\(i)]: FD \(v), oracle \(dx[i])")
        }
        let ws = Array(stride(from: 0, to: w.count, by: Swift.max(1, w.count / 40)))
        for (i, v) in ConvolutionOracle.finiteDifference({ ConvolutionOracle.conv2d(x, $0, nil, d) }, at: w, weights: g,
                                                         positions: ws) {
            #expect(Swift.abs(v - dw[i]) <= 1e-8 * Swift.max(1, Swift.abs(v)), "\(c) dw[\(i)]: FD \(v), oracle \(dw[i])")
        }
    }

    @Test("conv1d matches conv2d's oracle with height 1", arguments: TestBackend.all)
    func conv1dMatchesOracle(_ tb: TestBackend) throws {
        let backend = tb.backend
        for (cin, l, cout, k, s, p, dl, groups) in [(3, 17, 4, 3, 2, 1, 1, 1), (4, 20, 4, 5, 1, -1, 2, 4), (6, 9, 3, 1, 1, 0, 1, 3)] {
            let pad: ConvolutionPadding = p < 0 ? .same : .explicit(SpatialSize(p))
            let total = dl * (k - 1)
            let left = p < 0 ? total / 2 : p
            let lout = (l + (p < 0 ? total : 2 * p) - dl * (k - 1) - 1) / s + 1
            let d = Convolution2DDescriptor(batch: 2, inputChannels: cin, inputHeight: 1, inputWidth: l, outputChannels: cout,
                                            outputHeight: 1, outputWidth: lout, kernelHeight: 1, kernelWidth: k,
                                            strideWidth: s, padLeft: left, dilationWidth: dl, groups: groups)
            let x = testValues(2 * cin * l, seed: 41), w = testValues(cout * cin / groups * k, seed: 42)
            let b = testValues(cout, seed: 43), g = testValues(2 * cout * lout, seed: 44)
            let tx = try Tensor(x, shape: [2, cin, l], on: backend), tw = try Tensor(w, shape: [cout, cin / groups, k], on: backend)
            let tbias = try Tensor(b, shape: [cout], on: backend)
            let y = try conv1d(tx, weight: tw, bias: tbias, stride: s, padding: pad, dilation: dl, groups: groups)
            let name = "\(tb) conv1d cin \(cin) L \(l) k \(k) s \(s) p \(p) d \(dl) g \(groups)"
            #expect(y.shape == [2, cout, lout], "\(name) shape")
            let expected = ConvolutionOracle.conv2d(x.doubles, w.doubles, b.doubles, d)
            try expectMatch(y, expected, convTolerance(expected, depth: d.patchSize), name)
            let grads = try conv1dBackward(try Tensor(g, shape: [2, cout, lout], on: backend), input: tx, weight: tw,
                                           bias: tbias, stride: s, padding: pad, dilation: dl, groups: groups)
            let (dx, dw) = ConvolutionOracle.conv2dBackward(g.doubles, x.doubles, w.doubles, d)
            try expectMatch(grads.input, dx, convTolerance(dx, depth: cout * k), "\(name) input gradient")
            try expectMatch(grads.weight, dw, convTolerance(dw, depth: 2 * lout), "\(name) weight gradient")
        }
    }

    /// (input shape, C_out, kernel, stride, padding, outputPadding, dilation, groups)
    static let transposeCases: [([Int], Int, [Int], [Int], [Int], [Int], [Int], Int)] = [
        ([1, 3, 4, 5], 2, [3, 3], [2, 2], [1, 1], [1, 0], [1, 1], 1),
        ([2, 4, 5, 3], 6, [2, 3], [1, 2], [0, 1], [0, 1], [1, 1], 2),
        ([2, 2, 3, 3], 3, [3, 2], [2, 1], [1, 0], [1, 1], [1, 2], 1),
        ([1, 4, 3, 4], 4, [1, 1], [1, 1], [0, 0], [0, 0], [1, 1], 1),
    ]

    @Test("convTranspose2d forward and backward against Float64 loops and finite differences", arguments: TestBackend.all)
    func convTranspose(_ tb: TestBackend) throws {
        let backend = tb.backend
        for (shape, cout, k, s, p, op, dl, groups) in Self.transposeCases {
            let cin = shape[1]
            let wShape = [cin, cout / groups, k[0], k[1]]
            var out = [Int]()
            for i in 0..<2 {
                let span: Int = (shape[2 + i] - 1) * s[i] - 2 * p[i]
                out.append(span + dl[i] * (k[i] - 1) + op[i] + 1)
            }
            let outShape = [shape[0], cout] + out
            let x = testValues(shape.reduce(1, *), seed: 51), w = testValues(wShape.reduce(1, *), seed: 52)
            let b = testValues(cout, seed: 53), g = testValues(outShape.reduce(1, *), seed: 54)
            let tx = try Tensor(x, shape: shape, on: backend), tw = try Tensor(w, shape: wShape, on: backend)
            let tbias = try Tensor(b, shape: [cout], on: backend)
            let name = "\(tb) convTranspose2d \(shape)→\(cout) k\(k) s\(s) p\(p) op\(op) d\(dl) g\(groups)"
            let y = try convTranspose2d(tx, weight: tw, bias: tbias, stride: SpatialSize(s), padding: SpatialSize(p),
                                        outputPadding: SpatialSize(op), dilation: SpatialSize(dl), groups: groups)
            #expect(y.shape == outShape, "\(name) shape")
            func f(_ xv: [Double], _ wv: [Double], _ bv: [Double]?) -> [Double] {
                ConvolutionOracle.convTranspose2d(xv, xShape: shape, wv, wShape: wShape, bv, stride: s, padding: p,
                                                  dilation: dl, groups: groups, outputSize: out)
            }
            let expected = f(x.doubles, w.doubles, b.doubles)
            try expectMatch(y, expected, convTolerance(expected, depth: cin * k[0] * k[1]), "\(name) output")
            // The oracle's gradients by finite differences (exact for this linear map).
            let dx = ConvolutionOracle.finiteDifference({ f($0, w.doubles, nil) }, at: x.doubles, weights: g.doubles).map(\.1)
            let dw = ConvolutionOracle.finiteDifference({ f(x.doubles, $0, nil) }, at: w.doubles, weights: g.doubles).map(\.1)
            var db = [Double](repeating: 0, count: cout)
            for (i, v) in g.enumerated() { db[(i / (out[0] * out[1])) % cout] += Double(v) }
            let grads = try convTranspose2dBackward(try Tensor(g, shape: outShape, on: backend), input: tx, weight: tw,
                                                    bias: tbias, stride: SpatialSize(s), padding: SpatialSize(p),
                                                    outputPadding: SpatialSize(op), dilation: SpatialSize(dl), groups: groups)
            try expectMatch(grads.input, dx, convTolerance(dx, depth: cout * k[0] * k[1]), "\(name) input gradient")
            try expectMatch(grads.weight, dw, convTolerance(dw, depth: out[0] * out[1] * shape[0]), "\(name) weight gradient")
            if let gb = grads.bias {
                try expectMatch(gb, db, convTolerance(db, depth: out[0] * out[1] * shape[0]), "\(name) bias gradient")
            } else {
                Issue.record("\(name): missing bias gradient")
            }
        }
    }

    @Test("Convolution kernels write nothing past their outputs", arguments: TestBackend.all)
    func guardRegions(_ tb: TestBackend) throws {
        let backend = tb.backend
        for c in [convCases[1], convCases[4], convCases[6]] {
            let d = c.descriptor
            let x = try upload(testValues(c.n * c.cin * c.h * c.w, seed: 61), to: backend)
            let w = try upload(testValues(c.weightShape.reduce(1, *), seed: 62), to: backend)
            let b = try upload(testValues(c.cout, seed: 63), to: backend)
            let g = try upload(testValues(c.n * c.cout * d.outputPlane, seed: 64), to: backend)
            let forward = try guardedOutput(on: backend, count: c.n * c.cout * d.outputPlane) {
                try backend.convolution2DForward(d, input: x, weight: w, bias: b, output: $0)
            }
            let input = try guardedOutput(on: backend, count: c.n * c.cin * c.h * c.w) {
                try backend.convolution2DBackwardInput(d, outputGradient: g, weight: w, bias: nil, inputGradient: $0)
            }
            let weight = try guardedOutput(on: backend, count: c.weightShape.reduce(1, *)) {
                try backend.convolution2DBackwardWeight(d, outputGradient: g, input: x, weightGradient: $0)
            }
            #expect(forward.guardIntact && input.guardIntact && weight.guardIntact, "\(tb) \(c): a write past the output")
        }
    }

    @Test("Invalid convolutions throw TensorError naming the op")
    func typedErrors() throws {
        let cpu = CPUBackend.shared
        let x = try Tensor.zeros([1, 4, 5, 5], on: cpu)
        let w = try Tensor.zeros([6, 2, 3, 3], on: cpu)
        func expectError(_ op: String, _ kind: TensorError.Kind, _ body: () throws -> Void,
                         sourceLocation: SourceLocation = #_sourceLocation) {
            do {
                try body()
                Issue.record("\(op): no error", sourceLocation: sourceLocation)
            } catch let e as TensorError {
                #expect(e.op == op && e.kind == kind, "\(e)", sourceLocation: sourceLocation)
            } catch {
                Issue.record("\(op): unexpected \(error)", sourceLocation: sourceLocation)
            }
        }
        expectError("conv2d", .shapeMismatch) { _ = try conv2d(x, weight: w) } // 4 channels vs 2 per group
        expectError("conv2d", .invalidArgument) { _ = try conv2d(x, weight: w, groups: 3) }
        expectError("conv2d", .invalidArgument) { _ = try conv2d(x, weight: w, stride: 2, padding: .same, groups: 2) }
        expectError("conv2d", .invalidArgument) { _ = try conv2d(x, weight: w, stride: 0, groups: 2) }
        expectError("conv2d", .invalidArgument) { _ = try conv2d(x, weight: w, dilation: 3, groups: 2) }
        expectError("conv2d", .invalidArgument) { _ = try conv2d(x, weight: w, stride: [1, 2, 3], groups: 2) }
        expectError("conv2d", .shapeMismatch) { _ = try conv2d(x, weight: w, bias: try Tensor.zeros([5], on: cpu), groups: 2) }
        expectError("conv2d", .shapeMismatch) { _ = try conv2d(try Tensor.zeros([4, 5, 5], on: cpu), weight: w, groups: 2) }
        expectError("conv1d", .shapeMismatch) { _ = try conv1d(x, weight: w) }
        expectError("conv2dBackward", .shapeMismatch) {
            _ = try conv2dBackward(try Tensor.zeros([1, 6, 4, 4], on: cpu), input: x, weight: w, groups: 2)
        }
        expectError("convTranspose2d", .invalidArgument) {
            _ = try convTranspose2d(x, weight: try Tensor.zeros([4, 3, 3, 3], on: cpu), stride: 2, outputPadding: 2)
        }
        expectError("convTranspose2d", .shapeMismatch) {
            _ = try convTranspose2d(x, weight: try Tensor.zeros([3, 3, 3, 3], on: cpu))
        }
        if let cl = TestBackend.firstOpenCL {
            expectError("conv2d", .backendMismatch) { _ = try conv2d(x, weight: try w.to(cl.backend), groups: 2) }
        }
    }

    @Test("Output-size and parameter-count helpers in the general form; seed 003's CNN and MLP")
    func sizesAndParameterCounts() throws {
        #expect(try convolutionOutputSize(inputSize: 32, kernelSize: 3, padding: 1) == 32)
        #expect(try convolutionOutputSize(inputSize: 224, kernelSize: 7, stride: 2, padding: 3) == 112)
        #expect(try convolutionOutputSize(inputSize: 10, kernelSize: 3, stride: 1, padding: 0, dilation: 2) == 6)
        #expect(try convolutionOutputSize(inputSize: 5, kernelSize: 2, stride: 2, ceilMode: true) == 3)
        #expect(try convolutionTransposeOutputSize(inputSize: 4, kernelSize: 3, stride: 2, padding: 1, outputPadding: 1) == 8)
        #expect(try convolutionTransposeOutputSize(inputSize: 3, kernelSize: 3, stride: 1, dilation: 2) == 7)
        #expect(throws: TensorError.self) { try convolutionOutputSize(inputSize: 5, kernelSize: 0) }
        #expect(throws: TensorError.self) { try convolutionTransposeOutputSize(inputSize: 5, kernelSize: 3, stride: 2, outputPadding: 2) }
        // Seed 003: conv1 448, conv2 4,640, fc1 262,272, fc2 1,290 → 268,650; the MLP 411,146.
        let conv1 = try convolutionParameterCount(inputChannels: 3, outputChannels: 16, kernelSize: [3, 3])
        let conv2 = try convolutionParameterCount(inputChannels: 16, outputChannels: 32, kernelSize: [3, 3])
        let fc1 = try linearParameterCount(inputSize: 32 * 8 * 8, outputSize: 128)
        let fc2 = try linearParameterCount(inputSize: 128, outputSize: 10)
        let layers: [Int] = [conv1, conv2, fc1, fc2]
        #expect(layers == [448, 4640, 262_272, 1290])
        let total: Int = layers.reduce(0, +)
        #expect(total == 268_650)
        let mlp = try linearParameterCount(inputSize: 3072, outputSize: 128) + linearParameterCount(inputSize: 128, outputSize: 128)
            + linearParameterCount(inputSize: 128, outputSize: 10)
        #expect(mlp == 411_146)
        let depthwise = try convolutionParameterCount(inputChannels: 32, outputChannels: 32, kernelSize: [3, 3], groups: 32,
                                                      bias: false)
        #expect(depthwise == 288)
        #expect(throws: TensorError.self) { try convolutionParameterCount(inputChannels: 3, outputChannels: 4, kernelSize: [3], groups: 2) }
        // The seed's tensor walk: [N, 3, 32, 32] → conv "same" → pool 2 → conv → pool 2 → [N, 32, 8, 8].
        let cpu = CPUBackend.shared
        var t = try conv2d(try Tensor.zeros([2, 3, 32, 32], on: cpu), weight: try Tensor.zeros([16, 3, 3, 3], on: cpu), padding: .same)
        t = try maxPool2d(t, kernelSize: 2)
        t = try conv2d(t, weight: try Tensor.zeros([32, 16, 3, 3], on: cpu), padding: 1)
        t = try maxPool2d(t, kernelSize: 2)
        #expect(t.shape == [2, 32, 8, 8])
    }
}
