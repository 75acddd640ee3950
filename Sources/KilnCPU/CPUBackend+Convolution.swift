import CBLAS
import CKilnCPU
import Dispatch
import KilnCore

/// Tunables of the CPU convolution.
enum ConvolutionTunables {
    /// Elements of one worker's im2col tile (`Cig·kH·kW` rows × T output positions): 2¹⁷ floats
    /// (512 KiB) stays in a core's L2 between im2col writing it and sgemm packing it.
    static let tileElements = 1 << 17
    /// The narrowest tile: narrower sgemm calls lose to their packing overhead.
    static let minimumColumns = 256
}

extension CPUBackend {
    /// The C kernels' view of a descriptor.
    func convolutionGeometry(_ d: Convolution2DDescriptor) -> kiln_conv_geometry {
        kiln_conv_geometry(batch: Int64(d.batch), in_channels: Int64(d.inputChannels), height: Int64(d.inputHeight),
                           width: Int64(d.inputWidth), out_channels: Int64(d.outputChannels),
                           out_height: Int64(d.outputHeight), out_width: Int64(d.outputWidth),
                           kernel_h: Int64(d.kernelHeight), kernel_w: Int64(d.kernelWidth),
                           stride_h: Int64(d.strideHeight), stride_w: Int64(d.strideWidth), pad_top: Int64(d.padTop),
                           pad_left: Int64(d.padLeft), dilation_h: Int64(d.dilationHeight),
                           dilation_w: Int64(d.dilationWidth), groups: Int64(d.groups))
    }

    /// Output positions per im2col tile: about `tileElements / patchSize` (at least `minimumColumns`),
    /// evened out so the plane splits into equal tiles.
    private func convolutionTile(_ d: Convolution2DDescriptor) -> Int {
        let t = Swift.max(ConvolutionTunables.minimumColumns, ConvolutionTunables.tileElements / Swift.max(d.patchSize, 1))
        // Equal tiles: no narrow remainder.
        let tiles = (d.outputPlane + t - 1) / t
        return (d.outputPlane + tiles - 1) / tiles
    }

    /// `ConvolutionKernels.convolution2DForward`: depthwise directly in C; otherwise (image, column tile)
    /// units over the workers, each an im2col tile (skipped for pointwise 1×1) and one sgemm per group,
    /// `Y_g[:, tile] = W_g · col` (`[Cog × Cig·kH·kW] · [Cig·kH·kW × T]`).
    public func convolution2DForward(_ d: Convolution2DDescriptor, input: any BackendBuffer, weight: any BackendBuffer,
                                     bias: (any BackendBuffer)?, output: any BackendBuffer) throws {
        let context = "cpu.convolution2DForward"
        let px = try cpuBuffer(input, context).pointer
        let pw = try cpuBuffer(weight, context).pointer
        let pb = try bias.map { try cpuBuffer($0, context).pointer }
        let py = try cpuBuffer(output, context).pointer
        let geometry = convolutionGeometry(d)
        if d.isDepthwise {
            let planes = d.batch * d.outputChannels
            parallelFor(planes, grain: Swift.max(1, (1 << 14) / Swift.max(d.outputPlane * d.patchSize, 1))) { r in
                withUnsafePointer(to: geometry) { geometry in kiln_conv_depthwise_f32(geometry, px, pw, pb, py, Int64(r.lowerBound), Int64(r.upperBound)) }
            }
            return
        }
        let (k, plane, inPlane) = (d.patchSize, d.outputPlane, d.inputPlane)
        let (cig, cog) = (d.inputChannelsPerGroup, d.outputChannelsPerGroup)
        let tile = convolutionTile(d)
        let tilesPerImage = (plane + tile - 1) / tile
        let units = d.batch * tilesPerImage
        let workers = Swift.min(workerCount, units)
        let pointwise = d.isPointwise
        let scratch = pointwise ? nil : try allocator.allocate(count: workers * k * tile)
        let pcol = scratch?.pointer
        runWorkers(workers) { worker in
            let col = pcol.map { $0 + worker * k * tile }
            for u in stride(from: worker, to: units, by: workers) {
                let n = u / tilesPerImage, p0 = (u % tilesPerImage) * tile
                let count = Swift.min(tile, plane - p0)
                for g in 0..<d.groups {
                    let image = px + (n * d.inputChannels + g * cig) * inPlane
                    var b = image + p0
                    var ldb = inPlane
                    if let col {
                        withUnsafePointer(to: geometry) { geometry in kiln_im2col_f32(geometry, image, Int64(cig), Int64(p0), Int64(count), col) }
                        b = col
                        ldb = count
                    }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(cog), Int32(count), Int32(k), 1,
                                pw + g * cog * k, Int32(k), b, Int32(ldb), 0,
                                py + (n * d.outputChannels + g * cog) * plane + p0, Int32(plane))
                }
            }
        }
        withExtendedLifetime(scratch) {}
        if let pb {
            addChannelBias(py, pb, planes: d.batch * d.outputChannels, channels: d.outputChannels, count: plane)
        }
    }

    /// `ConvolutionKernels.convolution2DBackwardInput`: depthwise directly in C; pointwise as one sgemm per
    /// (image, group), `dX_g = W_gᵀ · dY_g`; otherwise per image, column tiles of `W_gᵀ · dY_g[:, tile]`
    /// scattered back by col2im. Images are split over the workers (col2im tiles of one image overlap).
    public func convolution2DBackwardInput(_ d: Convolution2DDescriptor, outputGradient: any BackendBuffer,
                                           weight: any BackendBuffer, bias: (any BackendBuffer)?,
                                           inputGradient: any BackendBuffer) throws {
        let context = "cpu.convolution2DBackwardInput"
        let pg = try cpuBuffer(outputGradient, context).pointer
        let pw = try cpuBuffer(weight, context).pointer
        let pb = try bias.map { try cpuBuffer($0, context).pointer }
        let pdx = try cpuBuffer(inputGradient, context).pointer
        let geometry = convolutionGeometry(d)
        if d.isDepthwise {
            let planes = d.batch * d.inputChannels
            parallelFor(planes, grain: Swift.max(1, (1 << 14) / Swift.max(d.outputPlane * d.patchSize, 1))) { r in
                withUnsafePointer(to: geometry) { geometry in kiln_conv_depthwise_backward_input_f32(geometry, pg, pw, pb, pdx, Int64(r.lowerBound), Int64(r.upperBound)) }
            }
            return
        }
        let (k, plane, inPlane) = (d.patchSize, d.outputPlane, d.inputPlane)
        let (cig, cog) = (d.inputChannelsPerGroup, d.outputChannelsPerGroup)
        let tile = convolutionTile(d)
        let workers = Swift.min(workerCount, d.batch)
        let pointwise = d.isPointwise
        let scratch = pointwise ? nil : try allocator.allocate(count: workers * k * tile)
        let pcol = scratch?.pointer
        runWorkers(workers) { worker in
            let col = pcol.map { $0 + worker * k * tile }
            for n in stride(from: worker, to: d.batch, by: workers) {
                for g in 0..<d.groups {
                    let dx = pdx + (n * d.inputChannels + g * cig) * inPlane
                    let dy = pg + (n * d.outputChannels + g * cog) * plane
                    guard let col else {
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(k), Int32(plane), Int32(cog), 1,
                                    pw + g * cog * k, Int32(k), dy, Int32(plane), 0, dx, Int32(inPlane))
                        continue
                    }
                    dx.update(repeating: 0, count: cig * inPlane)
                    for p0 in stride(from: 0, to: plane, by: tile) {
                        let count = Swift.min(tile, plane - p0)
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(k), Int32(count), Int32(cog), 1,
                                    pw + g * cog * k, Int32(k), dy + p0, Int32(plane), 0, col, Int32(count))
                        withUnsafePointer(to: geometry) { geometry in kiln_col2im_f32(geometry, col, Int64(cig), Int64(p0), Int64(count), dx) }
                    }
                }
            }
        }
        withExtendedLifetime(scratch) {}
        if let pb {
            addChannelBias(pdx, pb, planes: d.batch * d.inputChannels, channels: d.inputChannels, count: inPlane)
        }
    }

    /// `ConvolutionKernels.convolution2DBackwardWeight`: depthwise directly in C (channels over the
    /// workers); otherwise (image, column tile) units over the workers, each accumulating
    /// `dW_g += dY_g[:, tile] · colᵀ` into its own `[C_out, Cig·kH·kW]` buffer; the buffers are summed.
    public func convolution2DBackwardWeight(_ d: Convolution2DDescriptor, outputGradient: any BackendBuffer,
                                            input: any BackendBuffer, weightGradient: any BackendBuffer) throws {
        let context = "cpu.convolution2DBackwardWeight"
        let pg = try cpuBuffer(outputGradient, context).pointer
        let px = try cpuBuffer(input, context).pointer
        let pdw = try cpuBuffer(weightGradient, context).pointer
        let geometry = convolutionGeometry(d)
        if d.isDepthwise {
            parallelFor(d.outputChannels, grain: Swift.max(1, (1 << 14) / Swift.max(d.batch * d.outputPlane * d.patchSize, 1))) { r in
                withUnsafePointer(to: geometry) { geometry in kiln_conv_depthwise_backward_weight_f32(geometry, pg, px, pdw, Int64(r.lowerBound), Int64(r.upperBound)) }
            }
            return
        }
        let (k, plane, inPlane) = (d.patchSize, d.outputPlane, d.inputPlane)
        let (cig, cog) = (d.inputChannelsPerGroup, d.outputChannelsPerGroup)
        let weights = d.outputChannels * k
        let tile = convolutionTile(d)
        let tilesPerImage = (plane + tile - 1) / tile
        let units = d.batch * tilesPerImage
        let workers = Swift.min(workerCount, units)
        let pointwise = d.isPointwise
        let scratch = try allocator.allocate(count: workers * (pointwise ? 0 : k * tile) + (workers - 1) * weights)
        let pcol = pointwise ? nil : scratch.pointer
        let paccumulators = scratch.pointer + (pointwise ? 0 : workers * k * tile)
        runWorkers(workers) { worker in
            let col = pcol.map { $0 + worker * k * tile }
            let dw = worker == 0 ? pdw : paccumulators + (worker - 1) * weights
            dw.update(repeating: 0, count: weights)
            for u in stride(from: worker, to: units, by: workers) {
                let n = u / tilesPerImage, p0 = (u % tilesPerImage) * tile
                let count = Swift.min(tile, plane - p0)
                for g in 0..<d.groups {
                    let image = px + (n * d.inputChannels + g * cig) * inPlane
                    var b = image + p0
                    var ldb = inPlane
                    if let col {
                        withUnsafePointer(to: geometry) { geometry in kiln_im2col_f32(geometry, image, Int64(cig), Int64(p0), Int64(count), col) }
                        b = col
                        ldb = count
                    }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(cog), Int32(k), Int32(count), 1,
                                pg + (n * d.outputChannels + g * cog) * plane + p0, Int32(plane), b, Int32(ldb), 1,
                                dw + g * cog * k, Int32(k))
                }
            }
        }
        for w in 1..<Swift.max(workers, 1) {
            let source = paccumulators + (w - 1) * weights
            parallelFor(weights) { r in
                for i in r { pdw[i] += source[i] }
            }
        }
        withExtendedLifetime(scratch) {}
    }

    /// `y[p, :] += bias[p % channels]` over `planes` planes of `count`, on the worker threads.
    private func addChannelBias(_ y: UnsafeMutablePointer<Float>, _ bias: UnsafeMutablePointer<Float>, planes: Int,
                                channels: Int, count: Int) {
        parallelFor(planes, grain: Swift.max(1, (1 << 15) / Swift.max(count, 1))) { r in
            // Planes r cycle through the channels starting at r.lowerBound % channels.
            for p in r {
                kiln_add_channel_bias_f32(y + p * count, bias + p % channels, 1, 1, Int64(count))
            }
        }
    }
}
