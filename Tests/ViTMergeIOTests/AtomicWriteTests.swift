import Foundation
import XCTest
@testable import ViTMergeIO

/// `AtomicFile` on a full device (a file size limit, a small tmpfs) and in a read-only directory: a typed
/// error, the previous file byte for byte, and no temporary file left behind.
final class AtomicWriteTests: XCTestCase {
    let previous = Array("the previous file".utf8)
    let big = [UInt8](repeating: 7, count: 1 << 20)

    func directory() throws -> String {
        let d = NSTemporaryDirectory() + "vitmerge-atomic-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    /// What a failed write left: the error, the bytes at `path` and the names in its directory.
    struct Outcome: Sendable {
        var error: IOError?
        var contents: [UInt8]?
        var names: [String]
    }

    /// Places `previous` at `dir/out.bin`, runs `prepare` (which may make the write fail), then writes `big` there.
    func attempt(in dir: String, prepare: () -> Void = {}, _ write: (String) throws(IOError) -> Void) -> Outcome {
        let path = dir + "/out.bin"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(previous)))
        prepare()
        var error: IOError?
        do { try write(path) } catch let e { error = e }
        return Outcome(
            error: error, contents: FileManager.default.contents(atPath: path).map { [UInt8]($0) },
            names: (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])
    }

    func assertFailedCleanly(
        _ o: Outcome, _ expected: (IOError) -> Bool, mentions: String, _ what: String = "write",
        file: StaticString = #filePath, line: UInt = #line
    ) {
        guard let error = o.error else { return XCTFail("\(what): should have failed", file: file, line: line) }
        XCTAssertTrue(expected(error), "\(what): unexpected error: \(error)", file: file, line: line)
        XCTAssertTrue(
            "\(error)".contains(mentions), "\(what): '\(error)' should mention '\(mentions)'", file: file, line: line)
        XCTAssertEqual(o.contents, previous, "\(what): the previous file changed", file: file, line: line)
        XCTAssertEqual(o.names, ["out.bin"], "\(what): a temporary file was left behind", file: file, line: line)
    }

    func isNoSpace(_ e: IOError) -> Bool { if case .noSpace = e { true } else { false } }
    func isNotWritable(_ e: IOError) -> Bool { if case .notWritable = e { true } else { false } }

    /// The writers all fail cleanly past a file size limit (RLIMIT_FSIZE with SIGXFSZ ignored: EFBIG).
    func testFileSizeLimitKeepsThePreviousFile() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var safetensors = SafeTensorsWriter()
        try safetensors.add("x", bytes: big, shape: [big.count])
        let writers: [(String, (String) throws(IOError) -> Void)] = [
            ("bytes", { path throws(IOError) in try AtomicFile.write(self.big, to: path) }),
            (
                "text",
                { path throws(IOError) in try AtomicFile.write(String(repeating: "x", count: 1 << 20), to: path) }
            ),
            ("safetensors", { path throws(IOError) in try safetensors.write(to: path) }),
        ]
        let handler = signal(SIGXFSZ, SIG_IGN)
        var old = rlimit()
        XCTAssertEqual(getrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &old), 0)
        var limited = old
        limited.rlim_cur = 64 << 10
        XCTAssertEqual(setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &limited), 0)
        var outcomes: [(String, Outcome)] = []
        for (name, write) in writers { outcomes.append((name, attempt(in: dir, write))) }
        setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &old)
        signal(SIGXFSZ, handler)
        for (name, o) in outcomes {
            assertFailedCleanly(o, isNoSpace, mentions: "free space or choose another output directory", name)
        }
        // The limit is gone again: the same write now succeeds and replaces the file.
        try AtomicFile.write(big, to: dir + "/out.bin")
        XCTAssertEqual(FileManager.default.contents(atPath: dir + "/out.bin"), Data(big))
    }

    func testFullTmpfsKeepsThePreviousFile() throws {
        let o = try inPrivateTmpfs(options: "size=64k") { dir in
            self.attempt(in: dir) { path throws(IOError) in try AtomicFile.write(self.big, to: path) }
        }
        assertFailedCleanly(o, isNoSpace, mentions: "No space left on device")
    }

    func testReadOnlyDirectoryKeepsThePreviousFile() throws {
        let write: (String) throws(IOError) -> Void = { path throws(IOError) in try AtomicFile.write(self.big, to: path)
        }
        let o: Outcome
        if geteuid() != 0 {
            let dir = try directory()
            defer {
                chmod(dir, 0o755)
                try? FileManager.default.removeItem(atPath: dir)
            }
            o = attempt(in: dir, prepare: { chmod(dir, 0o555) }, write)
        } else {
            // Permissions do not apply to root: a tmpfs remounted read-only instead.
            o = try inPrivateTmpfs(options: "size=1m") { dir in
                self.attempt(in: dir, prepare: { XCTAssertEqual(Self.remountReadOnly(dir), 0) }, write)
            }
        }
        assertFailedCleanly(o, isNotWritable, mentions: "is read-only or not writable")
    }

    func testCreateDirectoryInReadOnlyDirectoryIsTyped() throws {
        let error = try inPrivateTmpfs(options: "size=1m") { dir -> IOError? in
            guard Self.remountReadOnly(dir) == 0 else { return nil }
            do throws(IOError) { try AtomicFile.createDirectory(dir + "/a/b") } catch { return error }
            return nil
        }
        XCTAssertTrue(error.map(isNotWritable) ?? false, "\(String(describing: error))")
        XCTAssertNoThrow(try AtomicFile.createDirectory(NSTemporaryDirectory()), "an existing directory is fine")
    }

    func testErrnoMapping() {
        for code in [ENOSPC, EDQUOT, EFBIG] { XCTAssertTrue(isNoSpace(AtomicFile.error(code, path: "d/f"))) }
        for code in [EROFS, EACCES, EPERM] { XCTAssertTrue(isNotWritable(AtomicFile.error(code, path: "d/f"))) }
        XCTAssertEqual(
            AtomicFile.error(ENOENT, path: "d/f"), .cannotWrite(path: "d/f", reason: "No such file or directory"))
        XCTAssertEqual(
            ["f", "/f", "d/f", "/a/b/f", "d/"].map(AtomicFile.directory(of:)), [".", "/", "d", "/a/b", "."])
    }

    func testBareNameAndEmptyFile() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cwd = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(dir))
        defer { _ = FileManager.default.changeCurrentDirectoryPath(cwd) }
        try AtomicFile.write([UInt8](), to: "empty")
        try AtomicFile.write("twice", to: "empty")
        XCTAssertEqual(try String(contentsOfFile: dir + "/empty", encoding: .utf8), "twice")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["empty"])
    }

    // MARK: A tmpfs only this test sees

    static func remountReadOnly(_ dir: String) -> Int32 {
        mount("tmpfs", dir, "tmpfs", UInt(MS_REMOUNT | MS_RDONLY), nil)
    }

    final class Box<T>: @unchecked Sendable { var value: T? }

    /// `body(dir)` run on a new thread that has its own mount namespace (unshare(CLONE_NEWNS)) with a
    /// tmpfs mounted on an empty `dir`; the mount disappears with the thread. Skips when this process
    /// may not mount (needs CAP_SYS_ADMIN); a non-root run then still tests read-only with chmod.
    func inPrivateTmpfs<T>(options: String, _ body: @escaping (String) -> T) throws -> T {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        typealias Unshare = @convention(c) (Int32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "unshare") else {
            throw XCTSkip("unshare(2) is not available")
        }
        let unshare = unsafeBitCast(symbol, to: Unshare.self)
        let result = Box<T>(), failure = Box<String>(), work = Box<(String) -> T>()
        work.value = body
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            defer { done.signal() }
            let cloneNewNS: Int32 = 0x0002_0000
            guard unshare(cloneNewNS) == 0, mount("none", "/", nil, UInt(MS_REC | MS_PRIVATE), nil) == 0,
                mount("tmpfs", dir, "tmpfs", 0, options) == 0
            else { return failure.value = String(cString: strerror(errno)) }
            result.value = work.value?(dir)
            umount(dir)
        }
        thread.start()
        done.wait()
        guard let value = result.value else {
            throw XCTSkip("cannot mount a tmpfs in a private mount namespace: \(failure.value ?? "?")")
        }
        return value
    }
}
