import Kiln
import KilnTestSupport
import Testing

/// Convolution and pooling through autograd, against the Float64 direct-loop oracles.
@Suite("Convolution autograd")
struct ConvolutionAutogradTests {
    @Test("conv2d → maxPool2d → weighted sum: gradients of input, weight and bias", arguments: TestBackend.all)
    func convPool(_ tb: TestBackend) throws {
        // x [2, 4, 9, 9], w [6, 2, 3, 3] (groups 2), stride 2, padding 1, dilation 1 → y [2, 6, 5, 5];
        // maxPool 2×2 stride 2 → [2, 6, 2, 2].
        let xv = testValues(2 * 4 * 9 * 9, seed: 21), wv = testValues(6 * 2 * 3 * 3, seed: 22)
        let bv = testValues(6, seed: 23), gv = testValues(2 * 6 * 2 * 2, seed: 24)
        let x = try Tensor(xv, shape: [2, 4, 9, 9], on: tb.backend).requiringGradient()
        let w = try Tensor(wv, shape: [6, 2, 3, 3], on: tb.backend).requiringGradient()
        let b = try Tensor(bv, shape: [6], on: tb.backend).requiringGradient()
        let y = try conv2d(x, weight: w, bias: b, stride: 2, padding: 1, groups: 2)
        let pooled = try maxPool2d(y, kernelSize: 2)
        try (pooled * Tensor(gv, shape: [2, 6, 2, 2], on: tb.backend)).sum().backward()

        let cd = Convolution2DDescriptor(batch: 2, inputChannels: 4, inputHeight: 9, inputWidth: 9, outputChannels: 6,
                                         outputHeight: 5, outputWidth: 5, kernelHeight: 3, kernelWidth: 3,
                                         strideHeight: 2, strideWidth: 2, padTop: 1, padLeft: 1, groups: 2)
        let pd = Pooling2DDescriptor(mode: .max, planes: 12, inputHeight: 5, inputWidth: 5, outputHeight: 2,
                                     outputWidth: 2, kernelHeight: 2, kernelWidth: 2, strideHeight: 2, strideWidth: 2)
        let yRef = ConvolutionOracle.conv2d(xv.map(Double.init), wv.map(Double.init), bv.map(Double.init), cd)
        let pool = ConvolutionOracle.pool2d(yRef, pd)
        let dy = ConvolutionOracle.pool2dBackward(gv.map(Double.init), indices: pool.indices, pd)
        let grads = ConvolutionOracle.conv2dBackward(dy, xv.map(Double.init), wv.map(Double.init), cd)
        var db = [Double](repeating: 0, count: 6)
        for (i, v) in dy.enumerated() { db[(i / 25) % 6] += v }
        let tolerance = Tolerance(absolute: 1e-5, relative: 1e-4)
        #expect(mismatch(try #require(x.gradient).scalars(), grads.input, tolerance: tolerance) == nil, "\(tb) dx")
        #expect(mismatch(try #require(w.gradient).scalars(), grads.weight, tolerance: tolerance) == nil, "\(tb) dw")
        #expect(mismatch(try #require(b.gradient).scalars(), db, tolerance: tolerance) == nil, "\(tb) db")
    }
}
