import Foundation
import XCTest

/// Every command that writes, run against a full disk (`ulimit -f`: the writes fail with EFBIG, which
/// `vitmerge` does not die of) and a read-only directory: a non-zero exit, a message saying what to do,
/// the previous file byte for byte, and no temporary file left behind.
final class OutputFailureTests: XCTestCase {
    static let previous = "the previous file, which a failed write must leave as it was"
    static let full = "free space or choose another output directory"
    static let readOnly = "is read-only or not writable"

    /// Made once: a config, a base checkpoint, two small tasks and a model fine-tuned on each.
    struct Fixture {
        let dir, config, pre: String
        let tasks, finetuned: [String]
    }
    nonisolated(unsafe) static var fixture: Fixture?

    override class func tearDown() {
        if let f = fixture { try? FileManager.default.removeItem(atPath: f.dir) }
        fixture = nil
    }

    func setUpFixture() throws -> Fixture {
        if let f = Self.fixture { return f }
        let exe = try CLI.binary()
        let dir = try CLI.temporaryDirectory("vitmerge-outputs").path
        let config = try CLI.writeTinyConfig(in: dir), pre = dir + "/pre.safetensors"
        try succeed(exe, ["init", "--config", config, "--seed", "1", "--output", pre])
        var tasks: [String] = [], finetuned: [String] = []
        for (source, name) in [("mnist", "digits"), ("fashion", "clothes")] {
            let task = "\(dir)/\(name).safetensors", ft = "\(dir)/\(name)-ft.safetensors"
            try CLI.smallTask("data/tasks/\(source).safetensors", task, train: 40, test: 20)
            try succeed(exe, finetune(pre, task, ft))
            tasks.append(task)
            finetuned.append(ft)
        }
        let f = Fixture(dir: dir, config: config, pre: pre, tasks: tasks, finetuned: finetuned)
        Self.fixture = f
        return f
    }

    func finetune(_ start: String, _ task: String, _ output: String, steps: Int = 2) -> [String] {
        [
            "finetune", "--mode", "full", "--checkpoint", start, "--task", task, "--output", output, "--steps",
            "\(steps)", "--batch-size", "8", "--quiet", "--threads", "1",
        ]
    }

    func succeed(_ exe: URL, _ args: [String]) throws {
        let r = try CLI.run(exe, args)
        XCTAssertEqual(r.status, 0, "\(args): \(r.output)")
    }

    func place(_ paths: [String]) throws {
        for p in paths {
            try FileManager.default.createDirectory(
                atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try Self.previous.write(toFile: p, atomically: false, encoding: .utf8)
        }
    }

    /// Names under `dir` that look like our temporary files.
    func leftovers(_ dir: String) -> [String] {
        (FileManager.default.enumerator(atPath: dir)?.allObjects as? [String] ?? []).filter { $0.contains(".tmp-") }
    }

    /// Runs `vitmerge args` with a file size limit of `blocks` × 512 bytes (dash's `ulimit -f` unit).
    /// Under ThreadSanitizer it skips: the sanitizer's runtime dies of SIGBUS in its own mappings
    /// under a file size limit before `vitmerge` runs (the normal and AddressSanitizer runs check these).
    func runFull(_ blocks: Int, _ args: [String]) throws -> (status: Int32, output: String) {
        try XCTSkipIf(CLI.underThreadSanitizer, "ThreadSanitizer's runtime cannot start under ulimit -f")
        let r = try CLI.run(
            URL(fileURLWithPath: "/bin/sh"),
            ["-c", "ulimit -f \(blocks); exec \"$0\" \"$@\"", try CLI.binary().path] + args)
        return (r.status, r.output)
    }

    /// Asserts the run failed cleanly: non-zero, `mentions` and `target` in the message, `kept` unchanged
    /// (each holding `contents`, or the previous text), no temporary file in `dirs`.
    func assertFailedCleanly(
        _ r: (status: Int32, output: String), mentions: String, target: String, kept: [String: Data], dirs: [String],
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertNotEqual(r.status, 0, "should fail: \(r.output)", file: file, line: line)
        XCTAssertTrue(r.output.contains(mentions), "should say '\(mentions)': \(r.output)", file: file, line: line)
        XCTAssertTrue(r.output.contains(target), "should name \(target): \(r.output)", file: file, line: line)
        XCTAssertFalse(r.output.contains("Fatal error"), r.output, file: file, line: line)
        for (path, bytes) in kept {
            XCTAssertEqual(FileManager.default.contents(atPath: path), bytes, "\(path) changed", file: file, line: line)
        }
        for d in dirs { XCTAssertEqual(leftovers(d), [], "temporary files left in \(d)", file: file, line: line) }
    }

    /// Places the previous text at `files`, then runs `vitmerge args` under `ulimit -f blocks` and checks it.
    func checkFull(
        _ args: [String], blocks: Int = 1, files: [String], target: String, file: StaticString = #filePath,
        line: UInt = #line
    ) throws {
        try place(files)
        let r = try runFull(blocks, args)
        let kept = Dictionary(uniqueKeysWithValues: files.map { ($0, Data(Self.previous.utf8)) })
        let dirs = Set(files.map { ($0 as NSString).deletingLastPathComponent })
        assertFailedCleanly(
            r, mentions: Self.full, target: target, kept: kept, dirs: Array(dirs), file: file, line: line)
    }

    // MARK: Read-only output directory

    static func quote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: #"'\''"#) + "'" }

    /// Runs `vitmerge args` with `dir` read-only after placing the previous text at `files` (paths in `dir`):
    /// as root, where permissions do not apply, on a tmpfs remounted read-only in a private mount namespace
    /// (`unshare -m`), which the checks must therefore run in too; otherwise with `dir` chmod 0555.
    func checkReadOnly(
        _ args: [String], dir: String, files: [String], target: String, file: StaticString = #filePath,
        line: UInt = #line
    ) throws {
        let exe = try CLI.binary().path
        let command = ([exe] + args).map(Self.quote).joined(separator: " ")
        let previous = Self.quote(Self.previous)
        let checks =
            files.map { "[ \"$(cat \(Self.quote($0)))\" = \(previous) ] || echo changed=\(Self.quote($0))" }
            .joined(separator: "\n") + "\nfind \(Self.quote(dir)) -name '*.tmp-*' | sed 's/^/leftover=/'"
        let status: Int32, output: String
        if geteuid() == 0 {
            let unshare = try CLI.require("unshare", hint: "util-linux; needed for a read-only tmpfs as root")
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let place = files.map {
                "mkdir -p \"$(dirname \(Self.quote($0)))\" && printf %s \(previous) > \(Self.quote($0))"
            }
            let script =
                [
                    "set -e", "mount --make-rprivate /", "mount -t tmpfs -o size=4m tmpfs \(Self.quote(dir))",
                ] + place + ["mount -o remount,ro \(Self.quote(dir))", "set +e", command, "echo exit=$?", checks]
            let r = try CLI.run(URL(fileURLWithPath: unshare), ["-m", "/bin/sh", "-c", script.joined(separator: "\n")])
            XCTAssertEqual(r.status, 0, "the read-only tmpfs could not be set up: \(r.output)", file: file, line: line)
            guard let exit = r.output.split(separator: "\n").last(where: { $0.hasPrefix("exit=") }) else {
                return XCTFail("no exit status: \(r.output)", file: file, line: line)
            }
            (status, output) = (Int32(exit.dropFirst(5)) ?? 0, r.output)
        } else {
            try place(files)
            chmod(dir, 0o555)
            defer { chmod(dir, 0o755) }
            let r = try CLI.run(URL(fileURLWithPath: "/bin/sh"), ["-c", command + "\necho exit=$?\n" + checks])
            let exit = r.output.split(separator: "\n").last { $0.hasPrefix("exit=") }
            (status, output) = (Int32(exit?.dropFirst(5) ?? "0") ?? 0, r.output)
        }
        XCTAssertNotEqual(status, 0, "should fail: \(output)", file: file, line: line)
        XCTAssertTrue(
            output.contains(Self.readOnly), "should say '\(Self.readOnly)': \(output)", file: file, line: line)
        XCTAssertTrue(output.contains(target), "should name \(target): \(output)", file: file, line: line)
        XCTAssertFalse(output.contains("changed="), "a previous file changed: \(output)", file: file, line: line)
        XCTAssertFalse(output.contains("leftover="), "temporary files left: \(output)", file: file, line: line)
    }

    // MARK: One test per writer

    func testInitCheckpoint() throws {
        let f = try setUpFixture()
        let out = "\(f.dir)/init/model.safetensors"
        try checkFull(["init", "--config", f.config, "--output", out], files: [out], target: out)
        let ro = "\(f.dir)/init-ro"
        try checkReadOnly(
            ["init", "--config", f.config, "--output", "\(ro)/model.safetensors"], dir: ro,
            files: ["\(ro)/model.safetensors"], target: "\(ro)/model.safetensors")
    }

    func testFineTuneCheckpointAndTrainingState() throws {
        let f = try setUpFixture()
        let out = "\(f.dir)/ft/out.safetensors"
        try checkFull(finetune(f.pre, f.tasks[0], out), files: [out], target: out)
        // The training state: a first run writes it; a second run under the limit (it writes the state
        // after step 1, before its output) cannot replace it, nor the first run's output.
        let state = "\(f.dir)/ft/state.safetensors", done = "\(f.dir)/ft/done.safetensors"
        let args = finetune(f.pre, f.tasks[0], done) + ["--state", state, "--checkpoint-every", "1"]
        try succeed(try CLI.binary(), args)
        let saved = try XCTUnwrap(FileManager.default.contents(atPath: state))
        let output = try XCTUnwrap(FileManager.default.contents(atPath: done))
        assertFailedCleanly(
            try runFull(1, args), mentions: Self.full, target: state, kept: [state: saved, done: output],
            dirs: ["\(f.dir)/ft"])
        let ro = "\(f.dir)/ft-ro"
        try checkReadOnly(
            finetune(f.pre, f.tasks[0], "\(ro)/out.safetensors"), dir: ro, files: ["\(ro)/out.safetensors"],
            target: "\(ro)/out.safetensors")
    }

    func testTaskVector() throws {
        let f = try setUpFixture()
        let out = "\(f.dir)/tv/digits.tv.safetensors"
        let args = ["task-vector", "--pretrained", f.pre, "--finetuned", f.finetuned[0], "--output"]
        try checkFull(args + [out], files: [out], target: out)
        let ro = "\(f.dir)/tv-ro"
        try checkReadOnly(
            args + ["\(ro)/tv.safetensors"], dir: ro, files: ["\(ro)/tv.safetensors"], target: "\(ro)/tv.safetensors")
    }

    func testMergeOutput() throws {
        let f = try setUpFixture()
        let args =
            ["merge", "--pretrained", f.pre, "--finetuned"] + f.finetuned + ["--tasks"] + f.tasks
            + ["--lambda", "0.5", "--threads", "1", "--output"]
        let out = "\(f.dir)/merged"
        try checkFull(
            args + [out], files: ["\(out)/digits.safetensors", "\(out)/clothes.safetensors"],
            target: "\(out)/digits.safetensors")
        let ro = "\(f.dir)/merged-ro"
        try checkReadOnly(
            args + [ro], dir: ro, files: ["\(ro)/digits.safetensors"], target: "\(ro)/digits.safetensors")
    }

    func testExportSnapshot() throws {
        let f = try setUpFixture()
        let out = "\(f.dir)/export"
        let files = ["\(out)/model.safetensors", "\(out)/config.json"]
        try checkFull(["export", "--checkpoint", f.pre, "--out", out], files: files, target: files[0])
        let ro = "\(f.dir)/export-ro"
        try checkReadOnly(
            ["export", "--checkpoint", f.pre, "--out", ro], dir: ro, files: ["\(ro)/model.safetensors"],
            target: "\(ro)/model.safetensors")
    }

    func testDisentangleSVG() throws {
        let f = try setUpFixture()
        let args =
            ["disentangle", "--pretrained", f.pre, "--finetuned"] + f.finetuned + ["--tasks"] + f.tasks
            + ["--alpha-step", "1.5", "--range", "1.5", "--images", "4", "--threads", "1", "--svg"]
        let out = "\(f.dir)/svg/xi.svg"
        try checkFull(args + [out], files: [out], target: out)
        let ro = "\(f.dir)/svg-ro"
        try checkReadOnly(args + ["\(ro)/xi.svg"], dir: ro, files: ["\(ro)/xi.svg"], target: "\(ro)/xi.svg")
    }

    /// A finished experiment run again: its stage checkpoints are reused and its first writes are the task
    /// vectors in <out>/<task>/, then the plots, results.json and report.md in <out>. On a full disk the task
    /// vectors fail; with <out> read-only (its task folders writable) the plots do. Every previous output stays.
    func testExperimentResultsReportAndPlots() throws {
        let f = try setUpFixture()
        let out = "\(f.dir)/experiment"
        let args = [
            "experiment", "--out", out, "--pretrained", f.pre, "--tasks", f.tasks[0], f.tasks[1], "--modes",
            "probe,aligned", "--probe-steps", "2", "--finetune-steps", "2", "--batch-size", "8", "--alpha-step", "3",
            "--disentangle-images", "4", "--threads", "1",
        ]
        try succeed(try CLI.binary(), args)
        let outputs = try FileManager.default.contentsOfDirectory(atPath: out).filter {
            $0 == "results.json" || $0 == "report.md" || $0.hasSuffix(".svg")
        }
        XCTAssertTrue(outputs.contains("results.json") && outputs.contains("report.md"), "\(outputs)")
        XCTAssertTrue(outputs.contains("disentanglement_aligned.svg"), "\(outputs)")
        var kept: [String: Data] = [:]
        for n in outputs + ["digits/task_vector_aligned.safetensors", "clothes/task_vector_aligned.safetensors"] {
            kept["\(out)/\(n)"] = FileManager.default.contents(atPath: "\(out)/\(n)")
        }
        let dirs = [out, "\(out)/digits", "\(out)/clothes"]
        assertFailedCleanly(
            try runFull(1, args), mentions: Self.full, target: "task_vector_aligned", kept: kept, dirs: dirs)

        let command = ([try CLI.binary().path] + args).map(Self.quote).joined(separator: " ")
        let r: (status: Int32, output: String)
        if geteuid() == 0 {
            // Permissions do not apply to root: <out> bind-mounted read-only over itself, in a private
            // mount namespace, with the task folders bind-mounted writable on top.
            let unshare = try CLI.require("unshare", hint: "util-linux; needed for a read-only directory as root")
            let o = Self.quote(out), d = Self.quote("\(out)/digits"), c = Self.quote("\(out)/clothes")
            let script = [
                "set -e", "mount --make-rprivate /", "mount --bind \(o) \(o)", "mount --bind \(d) \(d)",
                "mount --bind \(c) \(c)", "mount -o remount,bind,ro \(o)", "set +e", command, "echo exit=$?",
            ]
            let run = try CLI.run(
                URL(fileURLWithPath: unshare), ["-m", "/bin/sh", "-c", script.joined(separator: "\n")])
            XCTAssertEqual(run.status, 0, "the read-only bind mount could not be set up: \(run.output)")
            let exit = run.output.split(separator: "\n").last { $0.hasPrefix("exit=") }
            r = (Int32(exit?.dropFirst(5) ?? "0") ?? 0, run.output)
        } else {
            chmod(out, 0o555)
            defer { chmod(out, 0o755) }
            let run = try CLI.run(try CLI.binary(), args)
            r = (run.status, run.output)
        }
        // (The task vectors, in writable folders, are rewritten by this run; the outputs in <out> are kept.)
        assertFailedCleanly(
            r, mentions: Self.readOnly, target: "\(out)/disentanglement_aligned.svg",
            kept: kept.filter { !$0.key.hasSuffix(".safetensors") }, dirs: dirs)
    }
}
