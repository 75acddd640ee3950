import Foundation

/// Allocation, transfer and data movement.
public protocol MemoryKernels {
    /// A buffer of at least `count` elements with unspecified contents.
    func allocate(count: Int) throws -> any BackendBuffer
    /// A new buffer holding `values`.
    func upload(_ values: [Float]) throws -> any BackendBuffer
    /// The first `count` elements of `buffer`; waits for queued work.
    func download(_ buffer: any BackendBuffer, count: Int) throws -> [Float]
    /// buffer[0 ..< count] = value.
    func fill(_ buffer: any BackendBuffer, value: Float, count: Int) throws
    /// Strided copy: for every index tuple `i` of `layout.shape`,
    /// `destination[dOffset + Σ i·dStrides] = source[sOffset + Σ i·sStrides]`.
    /// Strides may be 0 on the source (broadcast). Covers permute, slicing, expand and concat.
    func copy(_ layout: StridedCopy, from source: any BackendBuffer, to destination: any BackendBuffer) throws
    /// destination[i] = source[indices[i]] for i < indices.count (gather with flat indices,
    /// already checked to lie in range).
    func take(_ indices: [Int32], from source: any BackendBuffer, to destination: any BackendBuffer) throws
    /// Bytes of buffers handed out and not yet released (pooled memory excluded).
    var liveBytes: Int { get }
    /// The most `liveBytes` reached since the last `resetPeakLiveBytes()`.
    var peakLiveBytes: Int { get }
    /// Starts a new peak measurement from the current `liveBytes`.
    func resetPeakLiveBytes()
}

/// Counts the bytes of live buffers and their high-water mark; thread-safe.
public final class LiveBytesCounter: @unchecked Sendable {
    private var live = 0
    private var peak = 0
    private let lock = NSLock()

    public init() {}

    public var liveBytes: Int { lock.withLock { live } }
    public var peakLiveBytes: Int { lock.withLock { peak } }

    public func add(_ bytes: Int) {
        lock.withLock {
            live += bytes
            peak = Swift.max(peak, live)
        }
    }

    public func remove(_ bytes: Int) { lock.withLock { live -= bytes } }

    public func resetPeak() { lock.withLock { peak = live } }
}

/// The geometry of a strided copy. Ranks are equal; at most `StridedCopy.maxRank` dimensions.
public struct StridedCopy: Sendable, Equatable {
    public static let maxRank = 8
    public var shape: [Int]
    public var sourceOffset: Int
    public var sourceStrides: [Int]
    public var destinationOffset: Int
    public var destinationStrides: [Int]

    public init(shape: [Int], sourceOffset: Int, sourceStrides: [Int], destinationOffset: Int,
                destinationStrides: [Int]) {
        self.shape = shape
        self.sourceOffset = sourceOffset
        self.sourceStrides = sourceStrides
        self.destinationOffset = destinationOffset
        self.destinationStrides = destinationStrides
    }

    /// Number of elements copied.
    public var count: Int { shape.reduce(1, *) }
}
