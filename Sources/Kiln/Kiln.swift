@_exported import KilnCore
@_exported import KilnNN
@_exported import KilnData
@_exported import KilnCPU
@_exported import KilnOpenCL
import Foundation

/// Where tensors live and kernels run.
///
/// `Device.auto` picks the first OpenCL GPU or accelerator, else the CPU backend (OpenBLAS beats an
/// OpenCL CPU driver for most work). Programs that do not choose get `Device.default`, which reads
/// `KILN_BACKEND` (`cpu`, `opencl`, `opencl:N`, `auto`).
public enum Device: Sendable, Equatable, CustomStringConvertible {
    /// The CPU backend (OpenBLAS and Kiln's SIMD kernels).
    case cpu
    /// OpenCL device `index` of `Kiln.devices()` (all platforms, in order).
    case openCL(Int)
    /// The first OpenCL GPU or accelerator, else the CPU.
    case auto

    /// `KILN_BACKEND` parsed, or `.auto` when it is unset.
    /// - Throws: `BackendError.deviceUnavailable` for a value that names no device kind.
    public static func fromEnvironment() throws -> Device {
        guard let value = ProcessInfo.processInfo.environment["KILN_BACKEND"], !value.isEmpty else { return .auto }
        return try Device(parsing: value)
    }

    /// Parses `cpu`, `opencl`, `opencl:N` or `auto`.
    public init(parsing text: String) throws {
        let value = text.lowercased().trimmingCharacters(in: .whitespaces)
        switch value {
        case "cpu": self = .cpu
        case "auto": self = .auto
        case "opencl", "cl": self = .openCL(0)
        default:
            if value.hasPrefix("opencl:"), let n = Int(value.dropFirst("opencl:".count)), n >= 0 {
                self = .openCL(n)
            } else {
                throw BackendError(.deviceUnavailable, context: "KILN_BACKEND",
                                   "unknown device '\(text)'; use cpu, opencl, opencl:N or auto")
            }
        }
    }

    public var description: String {
        switch self {
        case .cpu: "cpu"
        case .openCL(let n): "opencl:\(n)"
        case .auto: "auto"
        }
    }

    /// The backend for this device. Backends are created once per process and shared.
    /// - Throws: `BackendError.deviceUnavailable` for an OpenCL device that does not exist,
    ///   with the list of devices that do.
    public func backend() throws -> any Backend {
        switch self {
        case .cpu:
            return CPUBackend.shared
        case .openCL(let index):
            return try Kiln.openCLBackend(index)
        case .auto:
            if let gpu = try? OpenCLBackend.devices().first(where: \.isGPUOrAccelerator) {
                return try Kiln.openCLBackend(gpu.index)
            }
            return CPUBackend.shared
        }
    }
}

/// Device discovery and the process-wide default device.
public enum Kiln {
    /// A device Kiln can run on.
    public struct DeviceDescription: Sendable, CustomStringConvertible {
        public let device: Device
        public let name: String
        /// "CPU backend", or the OpenCL device type ("GPU", "CPU", "accelerator").
        public let kind: String
        public let memoryBytes: UInt64

        public var description: String {
            "\(device): \(name) [\(kind), \(memoryBytes >> 20) MiB]"
        }
    }

    /// Everything found: the CPU backend first, then every OpenCL device.
    public static func devices() -> [DeviceDescription] {
        var memory: UInt64 = 0
        if let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
           let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemTotal:") }),
           let kib = UInt64(line.split(separator: " ").dropFirst().first ?? "") {
            memory = kib * 1024
        }
        var list = [DeviceDescription(device: .cpu, name: CPUBackend.cpuModel, kind: "CPU backend", memoryBytes: memory)]
        for d in (try? OpenCLBackend.devices()) ?? [] {
            list.append(DeviceDescription(device: .openCL(d.index), name: "\(d.name) (\(d.platform))",
                                          kind: d.type, memoryBytes: d.globalMemoryBytes))
        }
        return list
    }

    /// The backend used where a program does not name one: `KILN_BACKEND`, else `.auto`.
    public static func defaultBackend() throws -> any Backend {
        try Device.fromEnvironment().backend()
    }

    nonisolated(unsafe) private static var openCLBackends: [Int: OpenCLBackend] = [:]
    private static let lock = NSLock()

    static func openCLBackend(_ index: Int) throws -> OpenCLBackend {
        lock.lock()
        defer { lock.unlock() }
        if let b = openCLBackends[index] { return b }
        let b = try OpenCLBackend(deviceIndex: index)
        openCLBackends[index] = b
        return b
    }
}

/// Tensor creation on a `Device` (the default device when omitted).
extension Tensor {
    /// A tensor holding `values` with `shape` on `device`.
    public init(_ values: [Float], shape: [Int], device: Device? = nil) throws {
        try self.init(values, shape: shape, on: Tensor.resolve(device))
    }

    /// A rank-1 tensor holding `values` on `device`.
    public init(_ values: [Float], device: Device? = nil) throws {
        try self.init(values, shape: [values.count], on: Tensor.resolve(device))
    }

    public static func zeros(_ shape: [Int], device: Device? = nil) throws -> Tensor {
        try zeros(shape, on: resolve(device))
    }

    public static func ones(_ shape: [Int], device: Device? = nil) throws -> Tensor {
        try ones(shape, on: resolve(device))
    }

    public static func full(_ shape: [Int], value: Float, device: Device? = nil) throws -> Tensor {
        try full(shape, value: value, on: resolve(device))
    }

    /// A copy of this tensor on `device`.
    public func to(_ device: Device) throws -> Tensor {
        try to(device.backend())
    }

    static func resolve(_ device: Device?) throws -> any Backend {
        try device?.backend() ?? Kiln.defaultBackend()
    }
}
