import CBLAS
import CKilnCPU
import Foundation
import KilnCore

/// The CPU backend: OpenBLAS for GEMM, the C SIMD micro-kernels of `CKilnCPU` (AVX-512, AVX2 or
/// scalar, chosen at run time) for everything else, and Kiln's own worker threads around them.
public final class CPUBackend: Backend, @unchecked Sendable {
    /// The process-wide CPU backend.
    public static let shared = CPUBackend()

    let allocator = CPUAllocator()
    /// Worker threads for Kiln's own parallel loops.
    let workerCount = Swift.max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// Sets OpenBLAS to one thread for the whole process: Kiln parallelises GEMMs (and everything
    /// else) over its own workers, and OpenBLAS's idle pool spinning beside them halved their speed.
    public init() {
        openblas_set_num_threads(1)
    }

    public var name: String { "cpu" }

    public var deviceName: String { CPUBackend.cpuModel }

    /// The CPU model from /proc/cpuinfo ("unknown CPU" when unreadable).
    public static let cpuModel: String = {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown CPU" }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") {
                return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return "unknown CPU"
    }()

    /// The SIMD level of the C micro-kernels: "AVX-512", "AVX2" or "scalar".
    public static var simdLevel: String {
        switch kiln_cpu_isa() {
        case 2: "AVX-512"
        case 1: "AVX2"
        default: "scalar"
        }
    }

    /// Forces the C micro-kernels to a SIMD level (2 AVX-512, 1 AVX2, 0 scalar), clamped to what the
    /// CPU supports; returns the level now in use. Process-wide; for tests and benchmarks.
    @discardableResult
    public static func forceSIMDLevel(_ level: Int) -> Int {
        Int(kiln_cpu_set_isa(Int32(level)))
    }

    /// OpenBLAS's kernel core ("Cooperlake", "Haswell", …).
    public static var openBLASCore: String { String(cString: openblas_get_corename()) }

    public func synchronize() throws {}

    /// The machine's fused-multiply-add peak in GFLOP/s: an FMA loop at the dispatcher's vector
    /// width, run on every core at once for about `seconds`.
    public static func measureFMAPeak(seconds: Double = 0.2) -> Double {
        let cores = Swift.max(1, ProcessInfo.processInfo.activeProcessorCount)
        var sink: Float = 0
        let calibration = 1 << 16
        let start = DispatchTime.now().uptimeNanoseconds
        let flopsPerCall = kiln_fma_burn(Int64(calibration), &sink)
        let perCall = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let iterations = Int64(Double(calibration) * seconds / Swift.max(perCall, 1e-6))
        let flops = flopsPerCall * Double(iterations) / Double(calibration)
        let begin = DispatchTime.now().uptimeNanoseconds
        DispatchQueue.concurrentPerform(iterations: cores) { _ in
            var local: Float = 0
            _ = kiln_fma_burn(iterations, &local)
        }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - begin) / 1e9
        return flops * Double(cores) / elapsed / 1e9
    }

    public var liveBytes: Int { allocator.counter.liveBytes }
    public var peakLiveBytes: Int { allocator.counter.peakLiveBytes }
    public func resetPeakLiveBytes() { allocator.counter.resetPeak() }

    /// The backend's buffer, or an error for a buffer of another backend.
    func cpuBuffer(_ buffer: any BackendBuffer, _ context: String) throws -> CPUBuffer {
        guard let b = buffer as? CPUBuffer else {
            throw BackendError(.unsupported, context: context, "buffer belongs to another backend")
        }
        return b
    }

    /// Runs `body(worker)` for worker = 0 ..< workers on Kiln's threads (inline for one worker).
    /// OpenBLAS stays at one thread inside them (see `init`).
    func runWorkers(_ workers: Int, _ body: (Int) -> Void) {
        if workers <= 1 {
            body(0)
            return
        }
        withoutActuallyEscaping(body) { escapable in
            let task = UncheckedSendable(escapable)
            DispatchQueue.concurrentPerform(iterations: workers) { task.value($0) }
        }
    }

    /// Runs `body(range)` over `[0, count)` in chunks on the worker threads when the work is large.
    func parallelFor(_ count: Int, grain: Int = 1 << 15, _ body: (Range<Int>) -> Void) {
        let chunks = Swift.min(workerCount, Swift.max(1, count / grain))
        if chunks <= 1 {
            body(0..<count)
            return
        }
        let size = (count + chunks - 1) / chunks
        withoutActuallyEscaping(body) { escapable in
            let task = UncheckedSendable(escapable)
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                let lo = c * size
                let hi = Swift.min(count, lo + size)
                if lo < hi { task.value(lo..<hi) }
            }
        }
    }
}

/// Carries a closure into `concurrentPerform`; each chunk writes a disjoint range.
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// A 64-byte-aligned host buffer; returns its memory to the allocator's cache when released.
final class CPUBuffer: BackendBuffer, @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    let capacity: Int
    private let allocator: CPUAllocator

    init(pointer: UnsafeMutablePointer<Float>, capacity: Int, allocator: CPUAllocator) {
        self.pointer = pointer
        self.capacity = capacity
        self.allocator = allocator
    }

    deinit { allocator.release(pointer, capacity: capacity) }
}

/// A caching allocator: `BufferSizeClass` size classes, 64-byte alignment, and a bounded cache of
/// freed blocks. Reusing memory avoids the page faults and kernel zeroing that a fresh allocation
/// costs on every op.
final class CPUAllocator: @unchecked Sendable {
    private var cache: [Int: [UnsafeMutablePointer<Float>]] = [:]
    private var cachedBytes = 0
    private let lock = NSLock()
    /// Freed memory kept for reuse, at most.
    let cacheLimitBytes = 2 << 30
    /// Bytes handed out and not yet released.
    let counter = LiveBytesCounter()

    func allocate(count: Int) throws -> CPUBuffer {
        let capacity = BufferSizeClass.capacity(for: count)
        counter.add(capacity * 4)
        lock.lock()
        if var list = cache[capacity], let p = list.popLast() {
            cache[capacity] = list
            cachedBytes -= capacity * 4
            lock.unlock()
            return CPUBuffer(pointer: p, capacity: capacity, allocator: self)
        }
        lock.unlock()
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, capacity * 4) == 0, let raw else {
            counter.remove(capacity * 4)
            throw BackendError(.outOfMemory, context: "cpu.allocate",
                               "cannot allocate \(capacity * 4) bytes")
        }
        return CPUBuffer(pointer: raw.bindMemory(to: Float.self, capacity: capacity), capacity: capacity,
                         allocator: self)
    }

    func release(_ pointer: UnsafeMutablePointer<Float>, capacity: Int) {
        counter.remove(capacity * 4)
        lock.lock()
        if cachedBytes + capacity * 4 <= cacheLimitBytes {
            cache[capacity, default: []].append(pointer)
            cachedBytes += capacity * 4
            lock.unlock()
        } else {
            lock.unlock()
            free(pointer)
        }
    }
}
