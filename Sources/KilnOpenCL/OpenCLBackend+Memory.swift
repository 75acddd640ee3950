import COpenCL
import KilnCore

extension OpenCLBackend {
    public func allocate(count: Int) throws -> any BackendBuffer {
        try pool.allocate(count: count)
    }

    public func upload(_ values: [Float]) throws -> any BackendBuffer {
        let buffer = try pool.allocate(count: values.count)
        if values.isEmpty { return buffer }
        try write(values, to: buffer.mem)
        return buffer
    }

    /// Blocking write of host values (the host array may go away right after).
    func write<T>(_ values: [T], to mem: cl_mem) throws {
        lock.lock()
        defer { lock.unlock() }
        let status = values.withUnsafeBytes { bytes in
            clEnqueueWriteBuffer(queue, mem, cl_bool(CL_TRUE), 0, bytes.count, bytes.baseAddress, 0, nil, nil)
        }
        try check(status, "clEnqueueWriteBuffer")
    }

    public func download(_ buffer: any BackendBuffer, count: Int) throws -> [Float] {
        let b = try clBuffer(buffer, "opencl.download")
        var out = [Float](repeating: 0, count: count)
        if count == 0 { return out }
        lock.lock()
        defer { lock.unlock() }
        let status = out.withUnsafeMutableBytes { bytes in
            clEnqueueReadBuffer(queue, b.mem, cl_bool(CL_TRUE), 0, bytes.count, bytes.baseAddress, 0, nil, nil)
        }
        try check(status, "clEnqueueReadBuffer")
        return out
    }

    public func fill(_ buffer: any BackendBuffer, value: Float, count: Int) throws {
        let b = try clBuffer(buffer, "opencl.fill")
        try requireInt32(count, op: "fill")
        try launch(kernel("memory", "fill_f32"), "fill_f32", global: [count],
                   [.buffer(b.mem), .float(value), .int(Int32(count))])
    }

    public func copy(_ layout: StridedCopy, from source: any BackendBuffer, to destination: any BackendBuffer) throws {
        let s = try clBuffer(source, "opencl.copy")
        let d = try clBuffer(destination, "opencl.copy")
        try requireInt32(layout.count, s.capacity, d.capacity, op: "copy")
        try launch(kernel("memory", "copy_strided_f32"), "copy_strided_f32", global: [layout.count],
                   [.buffer(s.mem), .int(Int32(layout.sourceOffset)), .int8(layout.sourceStrides),
                    .buffer(d.mem), .int(Int32(layout.destinationOffset)), .int8(layout.destinationStrides),
                    .int8(layout.shape), .int(Int32(layout.shape.count)), .int(Int32(layout.count))])
    }

    public func take(_ indices: [Int32], from source: any BackendBuffer, to destination: any BackendBuffer) throws {
        let s = try clBuffer(source, "opencl.take")
        let d = try clBuffer(destination, "opencl.take")
        try requireInt32(indices.count, op: "take")
        let indexBuffer = try pool.allocate(count: indices.count)
        try write(indices, to: indexBuffer.mem)
        try launch(kernel("memory", "take_f32"), "take_f32", global: [indices.count],
                   [.buffer(s.mem), .buffer(indexBuffer.mem), .buffer(d.mem), .int(Int32(indices.count))])
    }
}
