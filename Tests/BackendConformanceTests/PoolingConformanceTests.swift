import Foundation
import Kiln
import KilnTestSupport
import Testing

/// One pooling configuration over `[n, c, h, w]`.
struct PoolCase: CustomStringConvertible, Sendable {
    enum Kind: String, Sendable { case max, average, adaptiveMax, adaptiveAverage, global }
    let kind: Kind
    let shape: [Int]
    var kernel = [2, 2]
    var stride: [Int]? = nil
    var padding = [0, 0]
    var dilation = [1, 1]
    var ceilMode = false
    var countIncludePad = true
    var outputSize = [1, 1]

    var description: String {
        switch kind {
        case .adaptiveMax, .adaptiveAverage, .global: "\(kind.rawValue) \(shape)→\(outputSize)"
        default: "\(kind.rawValue) \(shape) k\(kernel) s\(stride ?? kernel) p\(padding) d\(dilation)\(ceilMode ? " ceil" : "")\(countIncludePad ? "" : " excludePad")"
        }
    }

    /// The descriptor from PyTorch's formulas written out here.
    var descriptor: Pooling2DDescriptor {
        let planes = shape[0] * shape[1]
        switch kind {
        case .adaptiveMax, .adaptiveAverage, .global:
            return Pooling2DDescriptor(mode: kind == .adaptiveMax ? .max : .average, adaptive: true, planes: planes,
                                       inputHeight: shape[2], inputWidth: shape[3], outputHeight: outputSize[0],
                                       outputWidth: outputSize[1])
        default:
            let s = stride ?? kernel
            var out = [0, 0]
            for i in 0..<2 {
                let span = shape[2 + i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1
                var o = (ceilMode ? (span + s[i] - 1) / s[i] : span / s[i]) + 1
                if ceilMode && (o - 1) * s[i] >= shape[2 + i] + padding[i] { o -= 1 }
                out[i] = o
            }
            return Pooling2DDescriptor(mode: kind == .max ? .max : .average, planes: planes, inputHeight: shape[2],
                                       inputWidth: shape[3], outputHeight: out[0], outputWidth: out[1],
                                       kernelHeight: kernel[0], kernelWidth: kernel[1], strideHeight: s[0],
                                       strideWidth: s[1], padHeight: padding[0], padWidth: padding[1],
                                       dilationHeight: dilation[0], dilationWidth: dilation[1],
                                       countIncludePad: countIncludePad)
        }
    }
}

let poolCases: [PoolCase] = [
    PoolCase(kind: .max, shape: [2, 3, 8, 8]),
    PoolCase(kind: .max, shape: [1, 2, 9, 11], kernel: [3, 3], stride: [2, 2], padding: [1, 1]),
    PoolCase(kind: .max, shape: [2, 2, 10, 9], kernel: [3, 2], stride: [2, 1], padding: [1, 1], dilation: [2, 3]),
    PoolCase(kind: .max, shape: [1, 3, 7, 7], kernel: [2, 2], stride: [2, 2], ceilMode: true),
    PoolCase(kind: .max, shape: [2, 1, 6, 7], kernel: [3, 3], stride: [2, 2], padding: [1, 1], ceilMode: true),
    PoolCase(kind: .average, shape: [2, 3, 8, 8]),
    PoolCase(kind: .average, shape: [1, 2, 9, 11], kernel: [3, 3], stride: [2, 2], padding: [1, 1]),
    PoolCase(kind: .average, shape: [1, 2, 9, 11], kernel: [3, 3], stride: [2, 2], padding: [1, 1], countIncludePad: false),
    PoolCase(kind: .average, shape: [2, 2, 7, 6], kernel: [3, 2], stride: [2, 2], padding: [1, 1], ceilMode: true),
    PoolCase(kind: .average, shape: [2, 2, 7, 6], kernel: [3, 2], stride: [2, 2], padding: [1, 1], ceilMode: true,
             countIncludePad: false),
    PoolCase(kind: .adaptiveAverage, shape: [2, 3, 10, 7], outputSize: [3, 4]),
    PoolCase(kind: .adaptiveAverage, shape: [1, 2, 5, 5], outputSize: [7, 3]),
    PoolCase(kind: .adaptiveMax, shape: [2, 3, 10, 7], outputSize: [3, 4]),
    PoolCase(kind: .adaptiveMax, shape: [1, 2, 4, 9], outputSize: [6, 2]),
    PoolCase(kind: .global, shape: [3, 4, 7, 5]),
    PoolCase(kind: .max, shape: [2, 4, 56, 56], kernel: [3, 3], stride: [2, 2], padding: [1, 1]),
]

@Suite("Pooling conformance")
struct PoolingConformanceTests {
    /// Runs the case's forward and backward through the public ops.
    static func run(_ c: PoolCase, _ x: Tensor, _ g: [Float]) throws -> (output: Tensor, indices: Tensor?, input: Tensor) {
        let k = SpatialSize(c.kernel), s = c.stride.map { SpatialSize($0) }, p = SpatialSize(c.padding)
        let d = c.descriptor
        let outShape = [c.shape[0], c.shape[1], d.outputHeight, d.outputWidth]
        let tg = try Tensor(g, shape: outShape, on: x.backend)
        switch c.kind {
        case .max:
            let r = try maxPool2dWithIndices(x, kernelSize: k, stride: s, padding: p, dilation: SpatialSize(c.dilation),
                                             ceilMode: c.ceilMode)
            let dx = try maxPool2dBackward(tg, indices: r.indices, inputShape: c.shape, kernelSize: k, stride: s, padding: p,
                                           dilation: SpatialSize(c.dilation), ceilMode: c.ceilMode)
            return (r.output, r.indices, dx)
        case .average:
            let y = try avgPool2d(x, kernelSize: k, stride: s, padding: p, ceilMode: c.ceilMode,
                                  countIncludePad: c.countIncludePad)
            let dx = try avgPool2dBackward(tg, inputShape: c.shape, kernelSize: k, stride: s, padding: p,
                                           ceilMode: c.ceilMode, countIncludePad: c.countIncludePad)
            return (y, nil, dx)
        case .adaptiveMax:
            let r = try adaptiveMaxPool2dWithIndices(x, outputSize: SpatialSize(c.outputSize))
            return (r.output, r.indices, try adaptiveMaxPool2dBackward(tg, indices: r.indices, inputShape: c.shape))
        case .adaptiveAverage:
            let y = try adaptiveAvgPool2d(x, outputSize: SpatialSize(c.outputSize))
            return (y, nil, try adaptiveAvgPool2dBackward(tg, inputShape: c.shape))
        case .global:
            return (try globalAvgPool2d(x), nil, try globalAvgPool2dBackward(tg, inputShape: c.shape))
        }
    }

    @Test("Pooling forward and backward against Float64 loops", arguments: TestBackend.all, poolCases)
    func poolingMatchesOracle(_ tb: TestBackend, _ c: PoolCase) throws {
        let d = c.descriptor
        let count = c.shape.reduce(1, *)
        // Distinct values (a permutation) so that maxima are unique and float-exact.
        var x = (0..<count).map { Float(($0 * 7919) % count) / Float(count) - 0.5 }
        if c.kind == .max && count > 5 { x[5] = .nan }
        let g = testValues(c.shape[0] * c.shape[1] * d.outputHeight * d.outputWidth, seed: 71)
        let r = try Self.run(c, try Tensor(x, shape: c.shape, on: tb.backend), g)
        let name = "\(tb) \(c)"
        #expect(r.output.shape == [c.shape[0], c.shape[1], d.outputHeight, d.outputWidth], "\(name) shape")
        let expected = ConvolutionOracle.pool2d(x.doubles, d)
        try expectMatch(r.output, expected.output, .reduction, "\(name) output")
        if let indices = r.indices {
            try expectMatch(indices, expected.indices, .exact, "\(name) indices")
        }
        let dx = ConvolutionOracle.pool2dBackward(g.doubles, indices: expected.indices, d)
        try expectMatch(r.input, dx, .reduction, "\(name) input gradient")
    }

    @Test("The oracle's pooling gradients agree with finite differences", arguments: poolCases.filter { $0.shape.reduce(1, *) < 1000 })
    func oracleGradients(_ c: PoolCase) {
        let d = c.descriptor
        let count = c.shape.reduce(1, *)
        let x = (0..<count).map { Double(($0 * 7919) % count) / Double(count) }
        let g = testValues(c.shape[0] * c.shape[1] * d.outputHeight * d.outputWidth, seed: 72).doubles
        let expected = ConvolutionOracle.pool2dBackward(g, indices: ConvolutionOracle.pool2d(x, d).indices, d)
        // A step below half the smallest gap between values keeps every maximum where it is.
        for (i, v) in ConvolutionOracle.finiteDifference({ ConvolutionOracle.pool2d($0, d).output }, at: x, weights: g,
                                                         h: 0.25 / Double(count)) {
            #expect(Swift.abs(v - expected[i]) <= 1e-9, "\(c) dx[\(i)]: FD \(v), oracle \(expected[i])")
        }
    }

    @Test("Pooling kernels write nothing past their outputs", arguments: TestBackend.all)
    func guardRegions(_ tb: TestBackend) throws {
        let backend = tb.backend
        for c in [poolCases[1], poolCases[7], poolCases[12]] {
            let d = c.descriptor
            let outCount = d.planes * d.outputHeight * d.outputWidth
            let x = try upload(testValues(c.shape.reduce(1, *), seed: 81), to: backend)
            let g = try upload(testValues(outCount, seed: 82), to: backend)
            let indices = try backend.allocate(count: outCount)
            let y = try guardedOutput(on: backend, count: outCount) {
                try backend.pooling2DForward(d, input: x, output: $0, indices: d.mode == .max ? indices : nil)
            }
            let i = try guardedOutput(on: backend, count: outCount) { out in
                let scratch = try backend.allocate(count: outCount)
                try backend.pooling2DForward(d, input: x, output: scratch, indices: d.mode == .max ? out : scratch)
            }
            let dx = try guardedOutput(on: backend, count: c.shape.reduce(1, *)) {
                try backend.pooling2DBackward(d, outputGradient: g, indices: d.mode == .max ? indices : nil, inputGradient: $0)
            }
            #expect(y.guardIntact && i.guardIntact && dx.guardIntact, "\(tb) \(c): a write past the output")
        }
    }

    @Test("Invalid pooling throws TensorError naming the op")
    func typedErrors() throws {
        let cpu = CPUBackend.shared
        let x = try Tensor.zeros([1, 2, 5, 5], on: cpu)
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
        expectError("maxPool2d", .invalidArgument) { _ = try maxPool2d(x, kernelSize: 2, padding: 2) }
        expectError("maxPool2d", .invalidArgument) { _ = try maxPool2d(x, kernelSize: 6) }
        expectError("maxPool2d", .invalidArgument) { _ = try maxPool2d(x, kernelSize: 0) }
        expectError("maxPool2d", .shapeMismatch) { _ = try maxPool2d(try Tensor.zeros([2, 5, 5], on: cpu), kernelSize: 2) }
        expectError("avgPool2d", .invalidArgument) { _ = try avgPool2d(x, kernelSize: [2, 2, 2]) }
        expectError("adaptiveAvgPool2d", .invalidArgument) { _ = try adaptiveAvgPool2d(x, outputSize: 0) }
        expectError("maxPool2dBackward", .shapeMismatch) {
            let r = try maxPool2dWithIndices(x, kernelSize: 2)
            _ = try maxPool2dBackward(try Tensor.zeros([1, 2, 3, 3], on: cpu), indices: r.indices, inputShape: x.shape,
                                      kernelSize: 2)
        }
    }
}
