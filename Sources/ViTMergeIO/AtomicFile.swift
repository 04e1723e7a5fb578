import Foundation
import Synchronization

/// The one way ViTMerge writes an output file: the bytes go to a hidden temporary file in the same
/// directory (`.<name>.tmp-<pid>-<n>`), which is fsynced and renamed over `path`, then the directory is
/// fsynced. On any failure the temporary file is removed and `path` is left as it was (absent, or the
/// previous file, byte for byte).
public enum AtomicFile {
    private static let counter = Atomic<Int>(0)

    /// Replaces `path` with `bytes`. Throws `IOError.noSpace` when the device is full or a file size limit
    /// is reached, `.notWritable` for a read-only or forbidden directory, `.cannotWrite` otherwise.
    public static func write(_ bytes: UnsafeRawBufferPointer, to path: String) throws(IOError) {
        if let failure = replace(path, with: bytes) { throw failure }
    }

    public static func write(_ bytes: [UInt8], to path: String) throws(IOError) {
        if let failure = bytes.withUnsafeBytes({ replace(path, with: $0) }) { throw failure }
    }

    public static func write(_ data: Data, to path: String) throws(IOError) {
        if let failure = data.withUnsafeBytes({ replace(path, with: $0) }) { throw failure }
    }

    /// Writes `text` as UTF-8.
    public static func write(_ text: String, to path: String) throws(IOError) { try write(Array(text.utf8), to: path) }

    /// Creates `directory` and its missing parents, with the same typed errors as `write`.
    public static func createDirectory(_ directory: String) throws(IOError) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue {
            return
        }
        let parent = self.directory(of: directory)
        if parent != directory && parent != "." { try createDirectory(parent) }
        if mkdir(directory, 0o755) != 0 && errno != EEXIST { throw error(errno, path: directory) }
    }

    /// The directory holding `path` ("." for a bare name).
    static func directory(of path: String) -> String {
        var p = Substring(path)
        while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
        guard let slash = p.lastIndex(of: "/") else { return "." }
        return slash == p.startIndex ? "/" : String(p[..<slash])
    }

    /// The typed error for `code` (an errno) while writing `path`.
    public static func error(_ code: Int32, path: String) -> IOError {
        let reason = String(cString: strerror(code))
        switch code {
        case ENOSPC, EDQUOT, EFBIG: return .noSpace(path: path, directory: directory(of: path), reason: reason)
        case EROFS, EACCES, EPERM: return .notWritable(path: path, directory: directory(of: path), reason: reason)
        default: return .cannotWrite(path: path, reason: reason)
        }
    }

    /// The hidden temporary file `path` is written through: `.<name>.tmp-<pid>-<n>` beside it.
    fileprivate static func temporaryPath(for path: String) -> String {
        let dir = directory(of: path), name = path.split(separator: "/").last.map(String.init) ?? path
        let n = counter.add(1, ordering: .relaxed).newValue
        return (dir == "." ? "" : dir.hasSuffix("/") ? dir : dir + "/") + ".\(name).tmp-\(getpid())-\(n)"
    }

    private static func replace(_ path: String, with bytes: UnsafeRawBufferPointer) -> IOError? {
        let dir = directory(of: path), tmp = temporaryPath(for: path)
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return error(errno, path: path) }
        var code: Int32 = 0
        var done = 0
        while done < bytes.count {
            let r = Foundation.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if r > 0 {
                done += r
            } else if r < 0 && errno == EINTR {
                continue
            } else {
                code = r < 0 ? errno : ENOSPC
                break
            }
        }
        if code == 0 && fsync(fd) != 0 { code = errno }
        // Network file systems may report a full device only on close.
        if close(fd) != 0 && code == 0 { code = errno }
        if code == 0 && rename(tmp, path) != 0 { code = errno }
        if code != 0 {
            unlink(tmp)
            return error(code, path: path)
        }
        // Make the rename itself durable; a failure here leaves a complete file, so it is not an error.
        let d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if d >= 0 {
            fsync(d)
            close(d)
        }
        return nil
    }
}

extension AtomicFile {
    /// A file written in pieces, with `write`'s guarantees: the bytes go to the hidden temporary
    /// file (of `size` bytes, zero where nothing is written) at any offsets and in any order;
    /// `commit` fsyncs it, renames it over `path` and fsyncs the directory. Until then `path` is
    /// untouched, and a pending file that is dropped, or whose write or commit fails, is removed.
    public final class Pending {
        public let path: String
        let temporary: String
        var fd: Int32

        public init(path: String, size: Int) throws(IOError) {
            self.path = path
            temporary = AtomicFile.temporaryPath(for: path)
            fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw AtomicFile.error(errno, path: path) }
            if ftruncate(fd, off_t(size)) != 0 {
                let code = errno
                abandon()
                throw AtomicFile.error(code, path: path)
            }
        }

        deinit { abandon() }

        /// Writes `bytes` at byte `offset` of the file.
        public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(IOError) {
            precondition(fd >= 0, "AtomicFile.Pending: written after commit")
            var done = 0
            while done < bytes.count {
                let r = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
                if r > 0 {
                    done += r
                } else if r < 0 && errno == EINTR {
                    continue
                } else {
                    let code = r < 0 ? errno : ENOSPC
                    abandon()
                    throw AtomicFile.error(code, path: path)
                }
            }
        }

        /// Makes the file durable and puts it at `path`.
        public func commit() throws(IOError) {
            precondition(fd >= 0, "AtomicFile.Pending: committed twice")
            var code: Int32 = 0
            if fsync(fd) != 0 { code = errno }
            if close(fd) != 0 && code == 0 { code = errno }
            fd = -1
            if code == 0 && rename(temporary, path) != 0 { code = errno }
            if code != 0 {
                unlink(temporary)
                throw AtomicFile.error(code, path: path)
            }
            let d = open(AtomicFile.directory(of: path), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if d >= 0 {
                fsync(d)
                close(d)
            }
        }

        func abandon() {
            guard fd >= 0 else { return }
            close(fd)
            fd = -1
            unlink(temporary)
        }
    }
}
