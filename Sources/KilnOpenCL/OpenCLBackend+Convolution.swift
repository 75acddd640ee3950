import COpenCL
import KilnCore

/// Tunables of the OpenCL convolution (Kernels/convolution.cl moves data; the backend's GEMM family
/// does the arithmetic).
enum ConvolutionCLTunables {
    /// The largest im2col buffer in elements (64 MiB): whole images are batched into one GEMM while
    /// they fit, larger images are split into column tiles.
    static let columnBudget = 1 << 24
}

extension OpenCLBackend {
    /// The geometry vectors of Kernels/convolution.cl.
    private func convolutionGeometry(_ d: Convolution2DDescriptor) -> [KernelArgument] {
        [.int8([d.inputChannels, d.inputHeight, d.inputWidth, d.outputChannels, d.outputHeight, d.outputWidth,
                d.kernelHeight, d.kernelWidth]),
         .int8([d.strideHeight, d.strideWidth, d.padTop, d.padLeft, d.dilationHeight, d.dilationWidth, d.groups, 0])]
    }

    /// The im2col chunking: `images` whole images per chunk when they fit the budget, else one image in
    /// column tiles of `tile` positions.
    private func convolutionChunks(_ d: Convolution2DDescriptor) -> (images: Int, tile: Int) {
        let rows = d.inputChannels * d.kernelHeight * d.kernelWidth
        let budget = ConvolutionCLTunables.columnBudget
        let tile = Swift.min(d.outputPlane, Swift.max(1, budget / Swift.max(rows, 1)))
        let images = tile == d.outputPlane ? Swift.max(1, Swift.min(d.batch, budget / Swift.max(rows * d.outputPlane, 1))) : 1
        return (images, tile)
    }

    private func requireConvolutionSizes(_ d: Convolution2DDescriptor, op: String) throws {
        try requireInt32(d.batch * d.inputChannels * d.inputPlane, d.batch * d.outputChannels * d.outputPlane,
                         d.outputChannels * d.patchSize, d.inputChannels * d.kernelHeight * d.kernelWidth, op: op)
    }

    private func im2col(_ d: Convolution2DDescriptor, _ x: cl_mem, n0: Int, images: Int, p0: Int, count: Int,
                        _ col: cl_mem) throws {
        let rows = d.inputChannels * d.kernelHeight * d.kernelWidth
        try launch(kernel("convolution", "conv_im2col_f32"), "conv_im2col_f32", global: [count, rows, images],
                   [.buffer(x), .long(n0)] + convolutionGeometry(d) + [.int(Int32(p0)), .int(Int32(count)), .buffer(col)])
    }

    private func addBias(_ y: cl_mem, _ bias: cl_mem, planes: Int, channels: Int, count: Int) throws {
        try launch(kernel("convolution", "conv_add_bias_f32"), "conv_add_bias_f32", global: [count, planes],
                   [.buffer(y), .buffer(bias), .int(Int32(channels))])
    }

    /// `ConvolutionKernels.convolution2DForward`: im2col chunks (skipped for pointwise 1×1), then the
    /// GEMM family: `Y_g[:, tile] = W_g · col_g`, batched over images (groups = 1) or over groups.
    public func convolution2DForward(_ d: Convolution2DDescriptor, input: any BackendBuffer, weight: any BackendBuffer,
                                     bias: (any BackendBuffer)?, output: any BackendBuffer) throws {
        let context = "opencl.convolution2DForward"
        let x = try clBuffer(input, context)
        let w = try clBuffer(weight, context)
        let b = try bias.map { try clBuffer($0, context).mem }
        let y = try clBuffer(output, context)
        try requireConvolutionSizes(d, op: "convolution2DForward")
        let (k, plane, g) = (d.patchSize, d.outputPlane, d.groups)
        let (cig, cog) = (d.inputChannelsPerGroup, d.outputChannelsPerGroup)
        let (images, tile) = convolutionChunks(d)
        let rows = d.inputChannels * d.kernelHeight * d.kernelWidth
        let col = d.isPointwise ? nil : try pool.allocate(count: images * rows * tile)
        for n0 in stride(from: 0, to: d.batch, by: images) {
            let chunk = Swift.min(images, d.batch - n0)
            for p0 in stride(from: 0, to: plane, by: tile) {
                let count = Swift.min(tile, plane - p0)
                if let col { try im2col(d, x.mem, n0: n0, images: chunk, p0: p0, count: count, col.mem) }
                // B of image i, group gi: the col rows of the group, or the input planes (pointwise).
                func bLayout(_ i: Int) -> (offset: Int, ld: Int, groupStride: Int, imageStride: Int) {
                    col == nil ? ((n0 + i) * d.inputChannels * plane + p0, plane, cig * plane, d.inputChannels * plane)
                               : (i * rows * count, count, k * count, rows * count)
                }
                let perImage = g == 1 ? [0] : Array(0..<chunk)
                for i in perImage {
                    var desc = GEMMDescriptor(batch: g == 1 ? chunk : g, m: cog, n: count, k: k)
                    let layout = bLayout(i)
                    desc.lda = k
                    desc.strideA = g == 1 ? 0 : cog * k
                    desc.bOffset = layout.offset
                    desc.ldb = layout.ld
                    desc.strideB = g == 1 ? layout.imageStride : layout.groupStride
                    desc.cOffset = (n0 + i) * d.outputChannels * plane + p0
                    desc.ldc = plane
                    desc.strideC = g == 1 ? d.outputChannels * plane : cog * plane
                    try gemm(desc, a: w, b: col ?? x, c: y)
                }
            }
        }
        if let b { try addBias(y.mem, b, planes: d.batch * d.outputChannels, channels: d.outputChannels, count: plane) }
    }

    /// `ConvolutionKernels.convolution2DBackwardInput`: `colGrad_g = W_gᵀ · dY_g[:, tile]` by the GEMM
    /// family, then col2im (a gather; the first tile overwrites, later tiles accumulate). Pointwise 1×1
    /// writes the GEMM straight into the input gradient.
    public func convolution2DBackwardInput(_ d: Convolution2DDescriptor, outputGradient: any BackendBuffer,
                                           weight: any BackendBuffer, bias: (any BackendBuffer)?,
                                           inputGradient: any BackendBuffer) throws {
        let context = "opencl.convolution2DBackwardInput"
        let dy = try clBuffer(outputGradient, context)
        let w = try clBuffer(weight, context)
        let b = try bias.map { try clBuffer($0, context).mem }
        let dx = try clBuffer(inputGradient, context)
        try requireConvolutionSizes(d, op: "convolution2DBackwardInput")
        let (k, plane, g) = (d.patchSize, d.outputPlane, d.groups)
        let (cig, cog) = (d.inputChannelsPerGroup, d.outputChannelsPerGroup)
        let (images, tile) = convolutionChunks(d)
        let rows = d.inputChannels * d.kernelHeight * d.kernelWidth
        let col = d.isPointwise ? nil : try pool.allocate(count: images * rows * tile)
        for n0 in stride(from: 0, to: d.batch, by: images) {
            let chunk = Swift.min(images, d.batch - n0)
            for p0 in stride(from: 0, to: plane, by: tile) {
                let count = Swift.min(tile, plane - p0)
                let perImage = g == 1 ? [0] : Array(0..<chunk)
                for i in perImage {
                    var desc = GEMMDescriptor(batch: g == 1 ? chunk : g, m: k, n: count, k: cog, transposeA: true)
                    desc.lda = k
                    desc.strideA = g == 1 ? 0 : cog * k
                    desc.bOffset = (n0 + i) * d.outputChannels * plane + p0
                    desc.ldb = plane
                    desc.strideB = g == 1 ? d.outputChannels * plane : cog * plane
                    if col != nil {
                        desc.cOffset = i * rows * count
                        desc.ldc = count
                        desc.strideC = g == 1 ? rows * count : k * count
                    } else {
                        desc.cOffset = (n0 + i) * d.inputChannels * d.inputPlane + p0
                        desc.ldc = d.inputPlane
                        desc.strideC = g == 1 ? d.inputChannels * d.inputPlane : cig * d.inputPlane
                    }
                    try gemm(desc, a: w, b: dy, c: col ?? dx)
                }
                if let col {
                    try launch(kernel("convolution", "conv_col2im_f32"), "conv_col2im_f32",
                               global: [d.inputWidth, d.inputHeight, chunk * d.inputChannels],
                               [.buffer(col.mem), .long(n0)] + convolutionGeometry(d)
                                   + [.int(Int32(p0)), .int(Int32(count)), .int(p0 > 0 ? 1 : 0), .buffer(dx.mem)])
                }
            }
        }
        if let b {
            try addBias(dx.mem, b, planes: d.batch * d.inputChannels, channels: d.inputChannels, count: d.inputPlane)
        }
    }

    /// `ConvolutionKernels.convolution2DBackwardWeight`: `dW_g += dY_g[:, tile] · col_gᵀ` by the GEMM
    /// family (beta 1 after zeroing), per image batched over groups.
    public func convolution2DBackwardWeight(_ d: Convolution2DDescriptor, outputGradient: any BackendBuffer,
                                            input: any BackendBuffer, weightGradient: any BackendBuffer) throws {
        let context = "opencl.convolution2DBackwardWeight"
        let dy = try clBuffer(outputGradient, context)
        let x = try clBuffer(input, context)
        let dw = try clBuffer(weightGradient, context)
        try requireConvolutionSizes(d, op: "convolution2DBackwardWeight")
        let (k, plane, g) = (d.patchSize, d.outputPlane, d.groups)
        let (cig, cog) = (d.inputChannelsPerGroup, d.outputChannelsPerGroup)
        let (images, tile) = convolutionChunks(d)
        let rows = d.inputChannels * d.kernelHeight * d.kernelWidth
        let col = d.isPointwise ? nil : try pool.allocate(count: images * rows * tile)
        try fill(weightGradient, value: 0, count: d.outputChannels * k)
        for n0 in stride(from: 0, to: d.batch, by: images) {
            let chunk = Swift.min(images, d.batch - n0)
            for p0 in stride(from: 0, to: plane, by: tile) {
                let count = Swift.min(tile, plane - p0)
                if let col { try im2col(d, x.mem, n0: n0, images: chunk, p0: p0, count: count, col.mem) }
                for i in 0..<chunk {
                    var desc = GEMMDescriptor(batch: g, m: cog, n: k, k: count, transposeB: true, beta: 1)
                    desc.aOffset = (n0 + i) * d.outputChannels * plane + p0
                    desc.lda = plane
                    desc.strideA = cog * plane
                    if col != nil {
                        desc.bOffset = i * rows * count
                        desc.ldb = count
                        desc.strideB = k * count
                    } else {
                        desc.bOffset = (n0 + i) * d.inputChannels * plane + p0
                        desc.ldb = plane
                        desc.strideB = cig * plane
                    }
                    desc.ldc = k
                    desc.strideC = cog * k
                    try gemm(desc, a: dy, b: col ?? x, c: dw)
                }
            }
        }
    }
}
