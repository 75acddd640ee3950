import Kiln

/// Runs a kernel into an output buffer that extends `guardCount` elements past `count`, with the
/// whole buffer pre-filled with a sentinel; returns the first `count` values and whether every
/// element past them still holds the sentinel (an out-of-bounds write would change one).
public func guardedOutput(on backend: any Backend, count: Int, guardCount: Int = 67,
                          _ kernel: (any BackendBuffer) throws -> Void) throws -> (values: [Float], guardIntact: Bool) {
    let sentinel: Float = -7.25e29
    let buffer = try backend.allocate(count: count + guardCount)
    try backend.fill(buffer, value: sentinel, count: buffer.capacity)
    try kernel(buffer)
    let all = try backend.download(buffer, count: buffer.capacity)
    return (Array(all[..<count]), all[count...].allSatisfy { $0 == sentinel })
}

/// Uploads `values` to a buffer of `backend`.
public func upload(_ values: [Float], to backend: any Backend) throws -> any BackendBuffer {
    values.isEmpty ? try backend.allocate(count: 1) : try backend.upload(values)
}
