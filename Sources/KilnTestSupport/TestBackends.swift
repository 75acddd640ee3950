import Foundation
import Kiln

/// The backends every conformance test runs on, with names that appear in test failures.
public struct TestBackend: CustomStringConvertible, Sendable {
    public let name: String
    public let backend: any Backend
    /// True for OpenCL backends, whose outputs get a guard-region check.
    public let isOpenCL: Bool

    public var description: String { name }

    /// The CPU backend, then for each OpenCL device the backend with the family its type selects,
    /// plus the other family on the first device so both GEMM families are always tested.
    /// With `KILN_REQUIRE_OPENCL=1`, a machine without an OpenCL device is a failure:
    /// `all` then holds an entry whose use throws (see `openCLProblem`).
    public static let all: [TestBackend] = {
        var list = [TestBackend(name: "cpu", backend: CPUBackend.shared, isOpenCL: false)]
        let devices = (try? OpenCLBackend.devices()) ?? []
        for device in devices {
            guard let b = try? OpenCLBackend(deviceIndex: device.index) else { continue }
            list.append(TestBackend(name: "opencl:\(device.index)-\(b.family.rawValue)", backend: b, isOpenCL: true))
            if device.index == 0 {
                let other: OpenCLKernelFamily = b.family == .cpuStyle ? .gpuStyle : .cpuStyle
                if let b2 = try? OpenCLBackend(deviceIndex: 0, family: other) {
                    list.append(TestBackend(name: "opencl:0-\(other.rawValue)", backend: b2, isOpenCL: true))
                }
            }
        }
        return list
    }()

    /// Why OpenCL is not tested, when `KILN_REQUIRE_OPENCL=1` demands it and no device opened.
    public static var openCLProblem: String? {
        let required = ProcessInfo.processInfo.environment["KILN_REQUIRE_OPENCL"] == "1"
        if all.contains(where: \.isOpenCL) { return nil }
        return required ? "KILN_REQUIRE_OPENCL=1 but no OpenCL device could be opened (install pocl-opencl-icd)" : nil
    }

    /// The first OpenCL backend, if any.
    public static var firstOpenCL: TestBackend? { all.first(where: \.isOpenCL) }
}

/// |actual − expected| ≤ atol + rtol·|expected| elementwise, with NaN matching NaN and infinities
/// matching exactly. Returns a description of the first mismatch, or nil.
public func mismatch(_ actual: [Float], _ expected: [Double], tolerance: Tolerance) -> String? {
    guard actual.count == expected.count else {
        return "count \(actual.count) != expected \(expected.count)"
    }
    var worst: (Int, Double)? = nil
    for i in actual.indices {
        let a = Double(actual[i]), e = expected[i]
        if e.isNaN {
            if !a.isNaN { return "index \(i): got \(a), expected NaN" }
            continue
        }
        if e.isInfinite || a.isInfinite || a.isNaN {
            if a != e { return "index \(i): got \(a), expected \(e)" }
            continue
        }
        let excess = Swift.abs(a - e) - (tolerance.absolute + tolerance.relative * Swift.abs(e))
        if excess > 0 && (worst == nil || excess > worst!.1) { worst = (i, excess) }
    }
    if let (i, _) = worst {
        return "index \(i): got \(actual[i]), expected \(expected[i]) (|diff| \(Swift.abs(Double(actual[i]) - expected[i])), tolerance \(tolerance))"
    }
    return nil
}

/// One row of the tolerance table.
public struct Tolerance: CustomStringConvertible, Sendable {
    public let absolute: Double
    public let relative: Double

    public init(absolute: Double, relative: Double) {
        self.absolute = absolute
        self.relative = relative
    }

    public var description: String { "atol \(absolute), rtol \(relative)" }

    /// Exact data movement (copies, gathers, comparisons).
    public static let exact = Tolerance(absolute: 0, relative: 0)
    /// Correctly rounded or nearly so: arithmetic, libm-quality transcendentals.
    public static let elementwise = Tolerance(absolute: 1e-6, relative: 4e-6)
    /// Reductions and softmax in Float32 over long rows.
    public static let reduction = Tolerance(absolute: 1e-5, relative: 2e-5)
    /// GEMM: the error bound grows with k; use `gemm(k:)`.
    public static func gemm(k: Int) -> Tolerance {
        Tolerance(absolute: 2e-6 * Double(Swift.max(k, 1)).squareRoot() * 4, relative: 1e-5 * Double(Swift.max(k, 1)).squareRoot())
    }
}

/// Deterministic test data from a seed (SplitMix64), independent of the library's generator.
public func testValues(_ count: Int, seed: UInt64, range: ClosedRange<Double> = -2...2) -> [Float] {
    var state = seed &+ 0x9E37_79B9_7F4A_7C15
    return (0..<count).map { _ in
        state = state &+ 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        let u = Double(z >> 11) * 0x1p-53
        return Float(range.lowerBound + (range.upperBound - range.lowerBound) * u)
    }
}
