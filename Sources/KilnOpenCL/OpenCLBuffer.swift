import COpenCL
import Foundation
import KilnCore

/// An OpenCL buffer from a backend's pool; returns to the pool when released. Reuse is safe
/// because the backend's single in-order queue runs every later command after earlier ones.
final class OpenCLBuffer: BackendBuffer, @unchecked Sendable {
    let mem: cl_mem
    let capacity: Int
    let pool: OpenCLBufferPool

    init(mem: cl_mem, capacity: Int, pool: OpenCLBufferPool) {
        self.mem = mem
        self.capacity = capacity
        self.pool = pool
    }

    deinit { pool.release(mem, capacity: capacity) }
}

/// A buffer pool keyed by `BufferSizeClass`, so ops do not pay a `clCreateBuffer` each.
final class OpenCLBufferPool: @unchecked Sendable {
    let context: cl_context
    private var free: [Int: [cl_mem]] = [:]
    private var cachedBytes = 0
    private let lock = NSLock()
    let cacheLimitBytes = 1 << 30
    /// Bytes handed out and not yet released.
    let counter = LiveBytesCounter()

    init(context: cl_context) { self.context = context }

    func allocate(count: Int) throws -> OpenCLBuffer {
        let capacity = BufferSizeClass.capacity(for: count)
        counter.add(capacity * 4)
        lock.lock()
        if var list = free[capacity], let mem = list.popLast() {
            free[capacity] = list
            cachedBytes -= capacity * 4
            lock.unlock()
            return OpenCLBuffer(mem: mem, capacity: capacity, pool: self)
        }
        lock.unlock()
        var status: cl_int = 0
        guard let mem = clCreateBuffer(context, cl_mem_flags(CL_MEM_READ_WRITE), capacity * 4, nil, &status),
              status == CL_SUCCESS else {
            counter.remove(capacity * 4)
            throw OpenCLBackend.error(status, "clCreateBuffer(\(capacity * 4) bytes)")
        }
        return OpenCLBuffer(mem: mem, capacity: capacity, pool: self)
    }

    func release(_ mem: cl_mem, capacity: Int) {
        counter.remove(capacity * 4)
        lock.lock()
        if cachedBytes + capacity * 4 <= cacheLimitBytes {
            free[capacity, default: []].append(mem)
            cachedBytes += capacity * 4
            lock.unlock()
        } else {
            lock.unlock()
            clReleaseMemObject(mem)
        }
    }

    /// Releases every cached buffer.
    func drain() {
        lock.lock()
        for list in free.values { for mem in list { clReleaseMemObject(mem) } }
        free.removeAll()
        cachedBytes = 0
        lock.unlock()
    }
}
