import CKilnCPU
import KilnCore

extension CPUBackend {
    /// The C kernels' view of a descriptor.
    private func poolingGeometry(_ d: Pooling2DDescriptor) -> kiln_pool_geometry {
        kiln_pool_geometry(mode: Int64(d.mode.rawValue), adaptive: d.adaptive ? 1 : 0, planes: Int64(d.planes),
                           height: Int64(d.inputHeight), width: Int64(d.inputWidth), out_height: Int64(d.outputHeight),
                           out_width: Int64(d.outputWidth), kernel_h: Int64(d.kernelHeight),
                           kernel_w: Int64(d.kernelWidth), stride_h: Int64(d.strideHeight),
                           stride_w: Int64(d.strideWidth), pad_h: Int64(d.padHeight), pad_w: Int64(d.padWidth),
                           dilation_h: Int64(d.dilationHeight), dilation_w: Int64(d.dilationWidth),
                           count_include_pad: d.countIncludePad ? 1 : 0)
    }

    /// `PoolingKernels.pooling2DForward`: planes split over the worker threads (`kiln_pool2d_f32`).
    public func pooling2DForward(_ d: Pooling2DDescriptor, input: any BackendBuffer, output: any BackendBuffer,
                                 indices: (any BackendBuffer)?) throws {
        let context = "cpu.pooling2DForward"
        let px = try cpuBuffer(input, context).pointer
        let py = try cpuBuffer(output, context).pointer
        let pi = try indices.map { try cpuBuffer($0, context).pointer }
        let geometry = poolingGeometry(d)
        let work = Swift.max(1, d.outputHeight * d.outputWidth * Swift.max(1, d.kernelHeight * d.kernelWidth))
        parallelFor(d.planes, grain: Swift.max(1, (1 << 14) / work)) { r in
            withUnsafePointer(to: geometry) { geometry in kiln_pool2d_f32(geometry, px, py, pi, Int64(r.lowerBound), Int64(r.upperBound)) }
        }
    }

    /// `PoolingKernels.pooling2DBackward`: planes split over the worker threads; each input element
    /// gathers from the outputs that read it (`kiln_pool2d_backward_f32`).
    public func pooling2DBackward(_ d: Pooling2DDescriptor, outputGradient: any BackendBuffer,
                                  indices: (any BackendBuffer)?, inputGradient: any BackendBuffer) throws {
        let context = "cpu.pooling2DBackward"
        let pg = try cpuBuffer(outputGradient, context).pointer
        let pi = try indices.map { try cpuBuffer($0, context).pointer }
        let pdx = try cpuBuffer(inputGradient, context).pointer
        let geometry = poolingGeometry(d)
        let work = Swift.max(1, d.inputHeight * d.inputWidth * Swift.max(1, d.kernelHeight * d.kernelWidth))
        parallelFor(d.planes, grain: Swift.max(1, (1 << 14) / work)) { r in
            withUnsafePointer(to: geometry) { geometry in kiln_pool2d_backward_f32(geometry, pg, pi, pdx, Int64(r.lowerBound), Int64(r.upperBound)) }
        }
    }
}
