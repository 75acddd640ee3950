import Foundation
import KilnCore

extension CPUBackend {
    public func allocate(count: Int) throws -> any BackendBuffer {
        try allocator.allocate(count: count)
    }

    public func upload(_ values: [Float]) throws -> any BackendBuffer {
        let buffer = try allocator.allocate(count: values.count)
        values.withUnsafeBufferPointer { source in
            if let base = source.baseAddress { buffer.pointer.update(from: base, count: values.count) }
        }
        return buffer
    }

    public func download(_ buffer: any BackendBuffer, count: Int) throws -> [Float] {
        let b = try cpuBuffer(buffer, "cpu.download")
        return Array(UnsafeBufferPointer(start: b.pointer, count: count))
    }

    public func fill(_ buffer: any BackendBuffer, value: Float, count: Int) throws {
        let p = try cpuBuffer(buffer, "cpu.fill").pointer
        parallelFor(count) { range in (p + range.lowerBound).update(repeating: value, count: range.count) }
    }

    public func copy(_ layout: StridedCopy, from source: any BackendBuffer, to destination: any BackendBuffer) throws {
        let src = try cpuBuffer(source, "cpu.copy").pointer + layout.sourceOffset
        let dst = try cpuBuffer(destination, "cpu.copy").pointer + layout.destinationOffset
        let rank = layout.shape.count
        let innerCount = layout.shape[rank - 1]
        let innerSource = layout.sourceStrides[rank - 1]
        let innerDestination = layout.destinationStrides[rank - 1]
        let rows = layout.count / Swift.max(innerCount, 1)
        parallelFor(rows, grain: Swift.max(1, (1 << 15) / Swift.max(innerCount, 1))) { range in
            for row in range {
                // Offsets of this row from its multi-index over the outer dimensions.
                var rest = row
                var s = 0
                var d = 0
                for dim in stride(from: rank - 2, through: 0, by: -1) {
                    let i = rest % layout.shape[dim]
                    rest /= layout.shape[dim]
                    s += i * layout.sourceStrides[dim]
                    d += i * layout.destinationStrides[dim]
                }
                let from = src + s
                let to = dst + d
                if innerSource == 1 && innerDestination == 1 {
                    to.update(from: from, count: innerCount)
                } else {
                    for j in 0..<innerCount { to[j * innerDestination] = from[j * innerSource] }
                }
            }
        }
    }

    public func take(_ indices: [Int32], from source: any BackendBuffer, to destination: any BackendBuffer) throws {
        let src = try cpuBuffer(source, "cpu.take").pointer
        let dst = try cpuBuffer(destination, "cpu.take").pointer
        indices.withUnsafeBufferPointer { idx in
            parallelFor(idx.count) { range in
                for i in range { dst[i] = src[Int(idx[i])] }
            }
        }
    }
}
