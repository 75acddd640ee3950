import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Whole-file writes that never leave a partial file behind.
enum AtomicFile {
    /// Writes `bytes` to a new temporary file in the directory of `url` (`.<name>.<random>.tmp`),
    /// flushes it to disk (`fsync`), then renames it over `url`, so that `url` holds either its old
    /// contents or all of `bytes`. The temporary file is removed when any step fails.
    /// - Throws: `CheckpointError.io` naming the step and the system's reason.
    static func store(_ bytes: [UInt8], at url: URL) throws {
        let path = url.path
        let directory = url.deletingLastPathComponent().path
        let temporary = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).\(String(UInt64.random(in: .min ... .max), radix: 16)).tmp").path
        func failure(_ step: String, _ code: Int32) -> CheckpointError {
            CheckpointError(.io, context: path, "\(step) failed: \(String(cString: strerror(code)))")
        }
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure("creating a temporary file in \(directory)", errno) }
        var closed = false
        do {
            try bytes.withUnsafeBytes { raw in
                guard let base = raw.baseAddress else { return }
                var offset = 0
                while offset < raw.count {
                    let n = write(fd, base + offset, raw.count - offset)
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw failure("writing the temporary file", errno)
                    }
                    offset += n
                }
            }
            guard fsync(fd) == 0 else { throw failure("flushing the temporary file", errno) }
            closed = true
            guard close(fd) == 0 else { throw failure("closing the temporary file", errno) }
            guard rename(temporary, path) == 0 else { throw failure("renaming the temporary file over the target", errno) }
        } catch {
            if !closed { close(fd) }
            unlink(temporary)
            throw error
        }
        // Make the rename itself durable; a failure here leaves a complete file in place.
        let dirfd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_CLOEXEC)
        if dirfd >= 0 {
            _ = fsync(dirfd)
            close(dirfd)
        }
    }
}
