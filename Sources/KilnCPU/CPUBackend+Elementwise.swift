import CKilnCPU
import KilnCore

extension CPUBackend {
    public func unary(_ op: UnaryOp, _ x: any BackendBuffer, _ y: any BackendBuffer, count: Int) throws {
        let px = try cpuBuffer(x, "cpu.unary").pointer
        let py = try cpuBuffer(y, "cpu.unary").pointer
        let (p0, p1) = op.parameters
        let code = op.code
        parallelFor(count) { r in
            kiln_unary_f32(code, px + r.lowerBound, py + r.lowerBound, Int64(r.count), p0, p1)
        }
    }

    public func binary(_ op: BinaryOp, _ geometry: BroadcastGeometry, _ a: any BackendBuffer,
                       _ b: any BackendBuffer, _ out: any BackendBuffer) throws {
        let pa = try cpuBuffer(a, "cpu.binary").pointer
        let pb = try cpuBuffer(b, "cpu.binary").pointer
        let po = try cpuBuffer(out, "cpu.binary").pointer
        let code = op.code
        let (sa, sb) = (geometry.innerStride(0), geometry.innerStride(1))
        forEachRow(geometry) { row, offsets, n in
            kiln_binary_f32(code, pa + offsets[0], sa, pb + offsets[1], sb, po + row, Int64(n))
        }
    }

    public func select(_ geometry: BroadcastGeometry, condition: any BackendBuffer, _ a: any BackendBuffer,
                       _ b: any BackendBuffer, _ out: any BackendBuffer) throws {
        let pc = try cpuBuffer(condition, "cpu.select").pointer
        let pa = try cpuBuffer(a, "cpu.select").pointer
        let pb = try cpuBuffer(b, "cpu.select").pointer
        let po = try cpuBuffer(out, "cpu.select").pointer
        let (sc, sa, sb) = (geometry.innerStride(0), geometry.innerStride(1), geometry.innerStride(2))
        forEachRow(geometry) { row, offsets, n in
            kiln_where_f32(pc + offsets[0], sc, pa + offsets[1], sa, pb + offsets[2], sb, po + row, Int64(n))
        }
    }

    /// Calls `body(outputOffset, inputOffsets, length)` for each innermost run of a broadcast,
    /// splitting long runs so large contiguous ops use every worker. The innermost input strides
    /// are 0 or 1 (inputs are contiguous tensors read with broadcast strides).
    func forEachRow(_ g: BroadcastGeometry, _ body: (Int, [Int], Int) -> Void) {
        let rank = g.shape.count
        let inner = g.shape[rank - 1]
        let rows = g.count / inner
        let pieces = inner >= 1 << 16 ? workerCount : 1
        let pieceSize = (inner + pieces - 1) / pieces
        parallelFor(rows * pieces, grain: Swift.max(1, (1 << 15) / Swift.max(pieceSize, 1))) { range in
            var offsets = [Int](repeating: 0, count: g.strides.count)
            for task in range {
                let row = task / pieces
                let start = (task % pieces) * pieceSize
                let length = Swift.min(pieceSize, inner - start)
                if length <= 0 { continue }
                var rest = row
                for s in offsets.indices { offsets[s] = 0 }
                for dim in stride(from: rank - 2, through: 0, by: -1) {
                    let i = rest % g.shape[dim]
                    rest /= g.shape[dim]
                    for s in offsets.indices { offsets[s] += i * g.strides[s][dim] }
                }
                for s in offsets.indices { offsets[s] += start * g.strides[s][rank - 1] }
                body(row * inner + start, offsets, length)
            }
        }
    }
}

extension BroadcastGeometry {
    /// The innermost stride of input `index` (0 or 1: inputs are contiguous tensors read with
    /// broadcast strides).
    func innerStride(_ index: Int) -> Int64 {
        Int64(strides[index].last ?? 0)
    }
}
