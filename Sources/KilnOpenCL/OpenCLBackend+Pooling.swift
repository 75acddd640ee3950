import COpenCL
import KilnCore

extension OpenCLBackend {
    /// The geometry vectors of Kernels/pooling.cl.
    private func poolingGeometry(_ d: Pooling2DDescriptor) -> [KernelArgument] {
        [.int8([d.inputHeight, d.inputWidth, d.outputHeight, d.outputWidth, d.kernelHeight, d.kernelWidth,
                d.strideHeight, d.strideWidth]),
         .int8([d.padHeight, d.padWidth, d.dilationHeight, d.dilationWidth, Int(d.mode.rawValue), d.adaptive ? 1 : 0,
                d.countIncludePad ? 1 : 0, 0])]
    }

    /// `PoolingKernels.pooling2DForward`: one work-item per output (`pool2d_f32`), both families.
    public func pooling2DForward(_ d: Pooling2DDescriptor, input: any BackendBuffer, output: any BackendBuffer,
                                 indices: (any BackendBuffer)?) throws {
        let context = "opencl.pooling2DForward"
        let x = try clBuffer(input, context).mem
        let y = try clBuffer(output, context).mem
        let i = try indices.map { try clBuffer($0, context).mem }
        try requireInt32(d.planes * d.inputHeight * d.inputWidth, d.planes * d.outputHeight * d.outputWidth,
                         op: "pooling2DForward")
        try launch(kernel("pooling", "pool2d_f32"), "pool2d_f32", global: [d.outputWidth, d.outputHeight, d.planes],
                   [.buffer(x), .buffer(y), .buffer(i ?? y)] + poolingGeometry(d))
    }

    /// `PoolingKernels.pooling2DBackward`: one work-item per input element gathering from the outputs
    /// that read it (`pool2d_backward_f32`), both families.
    public func pooling2DBackward(_ d: Pooling2DDescriptor, outputGradient: any BackendBuffer,
                                  indices: (any BackendBuffer)?, inputGradient: any BackendBuffer) throws {
        let context = "opencl.pooling2DBackward"
        let g = try clBuffer(outputGradient, context).mem
        let i = try indices.map { try clBuffer($0, context).mem }
        let dx = try clBuffer(inputGradient, context).mem
        try requireInt32(d.planes * d.inputHeight * d.inputWidth, d.planes * d.outputHeight * d.outputWidth,
                         op: "pooling2DBackward")
        try launch(kernel("pooling", "pool2d_backward_f32"), "pool2d_backward_f32",
                   global: [d.inputWidth, d.inputHeight, d.planes], [.buffer(g), .buffer(i ?? g), .buffer(dx)] + poolingGeometry(d))
    }
}
