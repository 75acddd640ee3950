import COpenCL
import Foundation
import KilnCore

/// Which kernel family an OpenCL backend runs where there are two (GEMM and attention).
public enum OpenCLKernelFamily: String, Sendable {
    /// Register-blocked `float16` work per work-item, local size 1: what CPU drivers (PoCL) vectorise.
    case cpuStyle = "cpu"
    /// Local-memory tiles and 2-D work-groups: what GPUs need.
    case gpuStyle = "gpu"
}

/// One OpenCL device found on this machine.
public struct OpenCLDeviceInfo: @unchecked Sendable, Equatable {
    /// The index used by `OpenCLBackend(deviceIndex:)`, `Device.openCL(_:)` and `KILN_BACKEND=opencl:N`.
    public let index: Int
    public let name: String
    public let platform: String
    /// "CPU", "GPU", "accelerator" or "other".
    public let type: String
    public let globalMemoryBytes: UInt64
    public let computeUnits: Int
    let platformID: cl_platform_id
    let deviceID: cl_device_id

    /// True for GPUs and accelerators (what `Device.auto` prefers).
    public var isGPUOrAccelerator: Bool { type == "GPU" || type == "accelerator" }
}

/// The OpenCL backend: one device, one context, one in-order queue, a program cache keyed by
/// (kernel file, defines) and a buffer pool. Kernels come from `Kernels/*.cl`, embedded at build
/// time and compiled on first use. Every OpenCL status is checked; build failures carry the log.
public final class OpenCLBackend: Backend, @unchecked Sendable {
    public let device: OpenCLDeviceInfo
    /// The kernel family this backend runs (chosen by device type unless given).
    public let family: OpenCLKernelFamily
    let context: cl_context
    let queue: cl_command_queue
    let pool: OpenCLBufferPool
    /// Serialises kernel argument setting and enqueueing (cl_kernel objects are not thread-safe).
    let lock = NSRecursiveLock()
    private var programs: [String: cl_program] = [:]
    private var kernels: [String: cl_kernel] = [:]

    /// Options a kernel file is built with: never fast-relaxed or finite-only math (masks use -inf
    /// and NaN must propagate); `random.cl` also goes without `-cl-mad-enable`, so its samples
    /// keep the same bits on every device.
    static func buildOptions(for file: String) -> String {
        file == "random" ? "-cl-std=CL1.2" : "-cl-std=CL1.2 -cl-mad-enable"
    }

    /// Opens device `deviceIndex` of `OpenCLBackend.devices()`.
    /// - Throws: `BackendError.deviceUnavailable` listing the devices found.
    public init(deviceIndex: Int = 0, family: OpenCLKernelFamily? = nil) throws {
        let all = try OpenCLBackend.devices()
        guard all.indices.contains(deviceIndex) else {
            let list = all.isEmpty ? "none" : all.map { "\($0.index): \($0.name) (\($0.type))" }.joined(separator: ", ")
            throw BackendError(.deviceUnavailable, context: "opencl:\(deviceIndex)",
                               "no OpenCL device \(deviceIndex); found: \(list)")
        }
        let info = all[deviceIndex]
        device = info
        self.family = family ?? (info.type == "CPU" ? .cpuStyle : .gpuStyle)
        var status: cl_int = 0
        var deviceID: cl_device_id? = info.deviceID
        guard let ctx = clCreateContext(nil, 1, &deviceID, nil, nil, &status), status == CL_SUCCESS else {
            throw OpenCLBackend.error(status, "clCreateContext")
        }
        context = ctx
        guard let q = clCreateCommandQueue(ctx, info.deviceID, 0, &status), status == CL_SUCCESS else {
            clReleaseContext(ctx)
            throw OpenCLBackend.error(status, "clCreateCommandQueue")
        }
        queue = q
        pool = OpenCLBufferPool(context: ctx)
    }

    deinit {
        for k in kernels.values { clReleaseKernel(k) }
        for p in programs.values { clReleaseProgram(p) }
        clFinish(queue)
        pool.drain()
        clReleaseCommandQueue(queue)
        clReleaseContext(context)
    }

    public var name: String { "opencl:\(device.index)" }
    public var deviceName: String { device.name }

    public func synchronize() throws {
        try check(clFinish(queue), "clFinish")
    }

    public var liveBytes: Int { pool.counter.liveBytes }
    public var peakLiveBytes: Int { pool.counter.peakLiveBytes }
    public func resetPeakLiveBytes() { pool.counter.resetPeak() }

    // MARK: - Discovery

    /// Every OpenCL device of every platform, in platform order, discovered once per process (the
    /// ICD loader's first call is not thread-safe). No platform gives an empty list.
    public static func devices() throws -> [OpenCLDeviceInfo] {
        try discovered.get()
    }

    private static let discovered: Result<[OpenCLDeviceInfo], BackendError> = {
        do { return .success(try discover()) } catch let error as BackendError { return .failure(error) } catch {
            return .failure(BackendError(.deviceUnavailable, context: "opencl.devices", "\(error)"))
        }
    }()

    private static func discover() throws -> [OpenCLDeviceInfo] {
        // PoCL's worker threads sometimes share a core and run at half speed unless pinned; pin
        // them unless the environment already decides. Other drivers ignore the variable.
        setenv("POCL_AFFINITY", "1", 0)
        var platformCount: cl_uint = 0
        let status = clGetPlatformIDs(0, nil, &platformCount)
        // -1001 is CL_PLATFORM_NOT_FOUND_KHR: the ICD loader found no platform.
        if status == -1001 || platformCount == 0 { return [] }
        try checkStatic(status, "clGetPlatformIDs")
        var platforms = [cl_platform_id?](repeating: nil, count: Int(platformCount))
        try checkStatic(clGetPlatformIDs(platformCount, &platforms, nil), "clGetPlatformIDs")
        var result: [OpenCLDeviceInfo] = []
        for case let platform? in platforms {
            var count: cl_uint = 0
            let s = clGetDeviceIDs(platform, cl_device_type(CL_DEVICE_TYPE_ALL), 0, nil, &count)
            if s == CL_DEVICE_NOT_FOUND || count == 0 { continue }
            try checkStatic(s, "clGetDeviceIDs")
            var ids = [cl_device_id?](repeating: nil, count: Int(count))
            try checkStatic(clGetDeviceIDs(platform, cl_device_type(CL_DEVICE_TYPE_ALL), count, &ids, nil),
                            "clGetDeviceIDs")
            let platformName = try platformString(platform, cl_platform_info(CL_PLATFORM_NAME))
            for case let id? in ids {
                var type: cl_device_type = 0
                try checkStatic(clGetDeviceInfo(id, cl_device_info(CL_DEVICE_TYPE), MemoryLayout<cl_device_type>.size,
                                                &type, nil), "clGetDeviceInfo(CL_DEVICE_TYPE)")
                var memory: cl_ulong = 0
                try checkStatic(clGetDeviceInfo(id, cl_device_info(CL_DEVICE_GLOBAL_MEM_SIZE), 8, &memory, nil),
                                "clGetDeviceInfo(CL_DEVICE_GLOBAL_MEM_SIZE)")
                var units: cl_uint = 0
                try checkStatic(clGetDeviceInfo(id, cl_device_info(CL_DEVICE_MAX_COMPUTE_UNITS), 4, &units, nil),
                                "clGetDeviceInfo(CL_DEVICE_MAX_COMPUTE_UNITS)")
                let typeName: String
                if type & cl_device_type(CL_DEVICE_TYPE_GPU) != 0 {
                    typeName = "GPU"
                } else if type & cl_device_type(CL_DEVICE_TYPE_ACCELERATOR) != 0 {
                    typeName = "accelerator"
                } else if type & cl_device_type(CL_DEVICE_TYPE_CPU) != 0 {
                    typeName = "CPU"
                } else {
                    typeName = "other"
                }
                result.append(OpenCLDeviceInfo(index: result.count, name: try deviceString(id, cl_device_info(CL_DEVICE_NAME)),
                                               platform: platformName, type: typeName, globalMemoryBytes: memory,
                                               computeUnits: Int(units), platformID: platform, deviceID: id))
            }
        }
        return result
    }

    private static func platformString(_ id: cl_platform_id, _ param: cl_platform_info) throws -> String {
        var size = 0
        try checkStatic(clGetPlatformInfo(id, param, 0, nil, &size), "clGetPlatformInfo")
        var bytes = [CChar](repeating: 0, count: size + 1)
        try checkStatic(clGetPlatformInfo(id, param, size, &bytes, nil), "clGetPlatformInfo")
        return cString(bytes).trimmingCharacters(in: .whitespaces)
    }

    private static func deviceString(_ id: cl_device_id, _ param: cl_device_info) throws -> String {
        var size = 0
        try checkStatic(clGetDeviceInfo(id, param, 0, nil, &size), "clGetDeviceInfo")
        var bytes = [CChar](repeating: 0, count: size + 1)
        try checkStatic(clGetDeviceInfo(id, param, size, &bytes, nil), "clGetDeviceInfo")
        return cString(bytes).trimmingCharacters(in: .whitespaces)
    }

    /// The text of a NUL-terminated C character array.
    static func cString(_ bytes: [CChar]) -> String {
        String(decoding: bytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    // MARK: - Status checks

    static func error(_ status: cl_int, _ call: String) -> BackendError {
        let kind: BackendError.Kind = status == CL_MEM_OBJECT_ALLOCATION_FAILURE || status == CL_OUT_OF_HOST_MEMORY
            || status == CL_OUT_OF_RESOURCES ? .outOfMemory : .openCLStatus(status)
        return BackendError(kind, context: call, "OpenCL status \(status) (\(statusName(status)))")
    }

    static func checkStatic(_ status: cl_int, _ call: String) throws {
        if status != CL_SUCCESS { throw error(status, call) }
    }

    func check(_ status: cl_int, _ call: String) throws {
        if status != CL_SUCCESS { throw OpenCLBackend.error(status, call) }
    }

    static func statusName(_ status: cl_int) -> String {
        switch status {
        case CL_DEVICE_NOT_FOUND: "CL_DEVICE_NOT_FOUND"
        case CL_OUT_OF_RESOURCES: "CL_OUT_OF_RESOURCES"
        case CL_OUT_OF_HOST_MEMORY: "CL_OUT_OF_HOST_MEMORY"
        case CL_MEM_OBJECT_ALLOCATION_FAILURE: "CL_MEM_OBJECT_ALLOCATION_FAILURE"
        case CL_BUILD_PROGRAM_FAILURE: "CL_BUILD_PROGRAM_FAILURE"
        case CL_INVALID_VALUE: "CL_INVALID_VALUE"
        case CL_INVALID_KERNEL_NAME: "CL_INVALID_KERNEL_NAME"
        case CL_INVALID_KERNEL_ARGS: "CL_INVALID_KERNEL_ARGS"
        case CL_INVALID_ARG_SIZE: "CL_INVALID_ARG_SIZE"
        case CL_INVALID_ARG_INDEX: "CL_INVALID_ARG_INDEX"
        case CL_INVALID_WORK_GROUP_SIZE: "CL_INVALID_WORK_GROUP_SIZE"
        case CL_INVALID_WORK_ITEM_SIZE: "CL_INVALID_WORK_ITEM_SIZE"
        case CL_INVALID_GLOBAL_WORK_SIZE: "CL_INVALID_GLOBAL_WORK_SIZE"
        case CL_INVALID_BUFFER_SIZE: "CL_INVALID_BUFFER_SIZE"
        case CL_INVALID_MEM_OBJECT: "CL_INVALID_MEM_OBJECT"
        case CL_INVALID_BUILD_OPTIONS: "CL_INVALID_BUILD_OPTIONS"
        default: "see cl.h"
        }
    }

    // MARK: - Programs and kernels

    /// Kernel files built with other files' sources in front of theirs, so device functions have one
    /// copy in OpenCL C: the attention files use random.cl's Philox (declared, not defined, in them).
    static let prependedFiles: [String: [String]] = ["attention_cpu": ["random"], "attention_gpu": ["random"]]

    /// The program built from `Kernels/<file>.cl` (after the files `prependedFiles` lists for it) with
    /// `-D` defines and `file`'s build options, built once per backend.
    func program(_ file: String, defines: [String: String] = [:]) throws -> cl_program {
        let key = file + "|" + defines.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        lock.lock()
        defer { lock.unlock() }
        if let p = programs[key] { return p }
        var parts: [String] = []
        for part in (OpenCLBackend.prependedFiles[file] ?? []) + [file] {
            guard let text = EmbeddedKernels.sources[part] else {
                throw BackendError(.kernelBuildFailed, context: "opencl.build(\(file).cl)",
                                   "no kernel file Kernels/\(part).cl was embedded")
            }
            parts.append(text)
        }
        let source = parts.joined(separator: "\n")
        let p = try build(source: source, name: "\(file).cl", options: OpenCLBackend.buildOptions(for: file),
                          defines: defines)
        programs[key] = p
        return p
    }

    /// Compiles OpenCL C `source` for this device.
    /// - Throws: `BackendError.kernelBuildFailed` whose message holds the compiler's build log.
    public func build(source: String, name: String, options baseOptions: String = "-cl-std=CL1.2",
                      defines: [String: String] = [:]) throws -> cl_program {
        var status: cl_int = 0
        let created: cl_program? = source.withCString { text in
            var pointer: UnsafePointer<CChar>? = text
            var length = strlen(text)
            return clCreateProgramWithSource(context, 1, &pointer, &length, &status)
        }
        guard let program = created, status == CL_SUCCESS else {
            throw OpenCLBackend.error(status, "clCreateProgramWithSource(\(name))")
        }
        let options = ([baseOptions]
            + defines.sorted { $0.key < $1.key }.map { "-D\($0.key)=\($0.value)" }).joined(separator: " ")
        var deviceID: cl_device_id? = device.deviceID
        let buildStatus = clBuildProgram(program, 1, &deviceID, options, nil, nil)
        if buildStatus != CL_SUCCESS {
            // The log is best effort: a failure to read it still reports the build failure.
            var size = 0
            _ = clGetProgramBuildInfo(program, device.deviceID, cl_program_build_info(CL_PROGRAM_BUILD_LOG), 0, nil, &size)
            var log = [CChar](repeating: 0, count: size + 1)
            _ = clGetProgramBuildInfo(program, device.deviceID, cl_program_build_info(CL_PROGRAM_BUILD_LOG), size, &log, nil)
            clReleaseProgram(program)
            throw BackendError(.kernelBuildFailed, context: "opencl.build(\(name))",
                               "OpenCL status \(buildStatus) (\(OpenCLBackend.statusName(buildStatus))) with options '\(options)'; build log:\n\(OpenCLBackend.cString(log))")
        }
        return program
    }

    /// The kernel `name` of `file` built with `defines`, created once and reused.
    func kernel(_ file: String, _ name: String, defines: [String: String] = [:]) throws -> cl_kernel {
        let key = file + "|" + name + "|" + defines.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        lock.lock()
        defer { lock.unlock() }
        if let k = kernels[key] { return k }
        let p = try program(file, defines: defines)
        var status: cl_int = 0
        guard let k = clCreateKernel(p, name, &status), status == CL_SUCCESS else {
            throw OpenCLBackend.error(status, "clCreateKernel(\(name))")
        }
        kernels[key] = k
        return k
    }

    /// Sets `arguments` on `kernel` and enqueues it over `global` work-items (rounded up to a
    /// multiple of `local` when given).
    func launch(_ kernel: cl_kernel, _ name: String, global: [Int], local: [Int]? = nil,
                _ arguments: [KernelArgument]) throws {
        lock.lock()
        defer { lock.unlock() }
        for (i, argument) in arguments.enumerated() {
            try check(argument.set(on: kernel, index: cl_uint(i)), "clSetKernelArg(\(name), \(i))")
        }
        var globalSize = global
        if let local {
            for d in globalSize.indices { globalSize[d] = (globalSize[d] + local[d] - 1) / local[d] * local[d] }
        }
        let status: cl_int = globalSize.withUnsafeBufferPointer { g in
            if let local {
                return local.withUnsafeBufferPointer { l in
                    clEnqueueNDRangeKernel(queue, kernel, cl_uint(global.count), nil, g.baseAddress, l.baseAddress, 0, nil, nil)
                }
            }
            return clEnqueueNDRangeKernel(queue, kernel, cl_uint(global.count), nil, g.baseAddress, nil, 0, nil, nil)
        }
        try check(status, "clEnqueueNDRangeKernel(\(name))")
    }

    /// The backend's buffer, or an error for a buffer of another backend.
    func clBuffer(_ buffer: any BackendBuffer, _ context: String) throws -> OpenCLBuffer {
        guard let b = buffer as? OpenCLBuffer, b.pool === pool else {
            throw BackendError(.unsupported, context: context, "buffer belongs to another backend")
        }
        return b
    }

    /// Kernel sizes are 32-bit: tensors must stay below 2³¹ elements.
    func requireInt32(_ values: Int..., op: String) throws {
        for v in values where v > Int(Int32.max) {
            throw BackendError(.unsupported, context: "opencl.\(op)",
                               "size \(v) exceeds the OpenCL kernels' 32-bit index range")
        }
    }
}

/// One kernel argument.
enum KernelArgument {
    case buffer(cl_mem)
    case int(Int32)
    case long(Int)
    case float(Float)
    /// An `int8` vector (eight 32-bit ints); shorter lists are padded with zeros.
    case int8([Int])

    func set(on kernel: cl_kernel, index: cl_uint) -> cl_int {
        switch self {
        case .buffer(let mem):
            var m: cl_mem? = mem
            return clSetKernelArg(kernel, index, MemoryLayout<cl_mem>.size, &m)
        case .int(let v):
            var value = v
            return clSetKernelArg(kernel, index, 4, &value)
        case .long(let v):
            var value = Int64(v)
            return clSetKernelArg(kernel, index, 8, &value)
        case .float(let v):
            var value = v
            return clSetKernelArg(kernel, index, 4, &value)
        case .int8(let list):
            var values = (0..<8).map { $0 < list.count ? Int32(truncatingIfNeeded: list[$0]) : 0 }
            return clSetKernelArg(kernel, index, 32, &values)
        }
    }
}
