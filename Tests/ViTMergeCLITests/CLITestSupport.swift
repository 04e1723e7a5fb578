import Foundation
import XCTest
import ViTMergeIO
import ViTMergeModel

/// What the end-to-end tests share: the repository, the `vitmerge` binary `swift test` builds
/// (this target depends on it), and a way to run it.
enum CLI {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// True under CI (`.ci/run` exports VITMERGE_CI=1): a missing tool is then a failure, never a skip.
    static var underCI: Bool { ProcessInfo.processInfo.environment["VITMERGE_CI"] == "1" }

    struct MissingTool: Error, CustomStringConvertible { let description: String }

    /// The `vitmerge` executable built next to this test bundle. Missing is a failure: the
    /// test target depends on the executable target, so `swift test` always builds it.
    static func binary() throws -> URL {
        // The xctest runner's bundle is the build folder itself or a bundle inside it.
        let main = Bundle.main.bundleURL
        let inside = main.appendingPathComponent("vitmerge")
        let candidate =
            FileManager.default.isExecutableFile(atPath: inside.path)
            ? inside : main.deletingLastPathComponent().appendingPathComponent("vitmerge")
        guard FileManager.default.isExecutableFile(atPath: candidate.path) else {
            throw MissingTool(
                description:
                    "the vitmerge executable is not at \(candidate.path); ViTMergeCLITests depends on it, "
                    + "so `swift test` should have built it"
            )
        }
        return candidate
    }

    /// True when this test process, and so the `vitmerge` built with it, runs under ThreadSanitizer
    /// (its runtime exports `__tsan_init`).
    static var underThreadSanitizer: Bool { dlsym(dlopen(nil, RTLD_NOW), "__tsan_init") != nil }

    /// Writes the end-to-end tests' model, a one-block, 16-wide ViT for 28×28 grey images in 10
    /// classes, as timm's config.json to `dir`/cfg.json, and returns that path.
    static func writeTinyConfig(in dir: String) throws -> String {
        let path = (dir as NSString).appendingPathComponent("cfg.json")
        let json =
            #"{"img_size": 28, "patch_size": 7, "in_chans": 1, "num_classes": 10, "embed_dim": 16, "depth": 1, "#
            + #""num_heads": 2}"#
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// A tool on PATH, or nil.
    static func which(_ tool: String) -> String? {
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        return dirs.map { "\($0)/\(tool)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// A tool the test needs: on a user's machine its absence skips the test (with `hint`); under
    /// CI it fails it.
    static func require(_ tool: String, hint: String) throws -> String {
        if let path = which(tool) { return path }
        let message = "\(tool) is not on PATH (\(hint))"
        if underCI { throw MissingTool(description: message + "; CI must provide it") }
        throw XCTSkip(message)
    }

    /// A new empty directory under the temporary directory.
    static func temporaryDirectory(_ prefix: String) throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent(
            "\(prefix)-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    /// Runs `exe args` in the repository (output and errors together); with `killWhenExists`,
    /// SIGKILLs it `delay` ms after that file appears.
    @discardableResult
    static func run(
        _ exe: URL, _ args: [String], killWhenExists: String? = nil, afterMilliseconds delay: Int = 0
    ) throws -> (status: Int32, output: String, killed: Bool) {
        let p = Process()
        p.executableURL = exe
        p.arguments = args
        p.currentDirectoryURL = repo
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        var killed = false
        if let path = killWhenExists {
            while p.isRunning && !FileManager.default.fileExists(atPath: path) { usleep(2_000) }
            usleep(UInt32(delay * 1000))
            if p.isRunning { kill(p.processIdentifier, SIGKILL); killed = true }
        }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, output, killed)
    }
}

/// Asserts two parameter sets are equal bit for bit (every value of the arena, padding included).
func assertBitIdentical(
    _ a: ViTParameters, _ b: ViTParameters, _ message: String, file: StaticString = #filePath, line: UInt = #line
) {
    let pa = UnsafeBufferPointer(start: a.base, count: a.arena.count),
        pb = UnsafeBufferPointer(start: b.base, count: b.arena.count)
    XCTAssertTrue(pa.elementsEqual(pb) { $0.bitPattern == $1.bitPattern }, message, file: file, line: line)
}

extension CLI {
    /// A small task: the first `train`/`test` images of an embedded task.
    static func smallTask(_ source: String, _ path: String, train: Int, test: Int) throws {
        let t = try TaskDataset.load(path: CLI.repo.appendingPathComponent(source).path)
        var w = SafeTensorsWriter(metadata: [
            "classes": String(decoding: try JSONEncoder().encode(t.classes), as: UTF8.self),
            "name": URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent,
        ])
        for (split, data, n) in [("train", t.train, train), ("test", t.test, test)] {
            let size = data.channels * data.height * data.width
            try w.add(
                "\(split).images", bytes: Array(data.images.prefix(n * size)),
                shape: [n, data.channels, data.height, data.width])
            try w.add("\(split).labels", int64s: data.labels.prefix(n).map(Int64.init), shape: [n])
        }
        try w.write(to: path)
    }
}

/// The tiny experiment the end-to-end tests run in a debug build: two 2-class-sized tasks cut from the
/// embedded mnist and fashion files (60 train, 20 test images), and a freshly initialized one-block model.
struct TinyExperiment {
    let dir: URL
    let tasks: [String]
    let pretrained: String
    let exe: URL

    /// Creates the files in a new temporary directory (removed by the caller's `defer { cleanUp() }`).
    init(_ prefix: String) throws {
        exe = try CLI.binary()
        dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "\(prefix)-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        tasks = [
            dir.appendingPathComponent("digits.safetensors").path,
            dir.appendingPathComponent("clothes.safetensors").path,
        ]
        try CLI.smallTask("data/tasks/mnist.safetensors", tasks[0], train: 60, test: 20)
        try CLI.smallTask("data/tasks/fashion.safetensors", tasks[1], train: 60, test: 20)
        let config = dir.appendingPathComponent("cfg.json").path
        pretrained = dir.appendingPathComponent("pre.safetensors").path
        let configJSON =
            #"{"img_size": 28, "patch_size": 7, "in_chans": 1, "num_classes": 0, "embed_dim": 16, "#
            + #""depth": 1, "num_heads": 2}"#
        try configJSON.write(toFile: config, atomically: true, encoding: .utf8)
        let initialized = try CLI.run(exe, ["init", "--config", config, "--seed", "1", "--output", pretrained])
        XCTAssertEqual(initialized.status, 0, initialized.output)
    }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    /// `experiment` on the tiny tasks writing into `out`, probe and aligned, steps and grids cut to seconds.
    func experiment(out: String) -> [String] {
        [
            "experiment", "--out", out, "--pretrained", pretrained, "--tasks", tasks[0], tasks[1], "--modes",
            "probe,aligned", "--probe-steps", "3", "--finetune-steps", "3", "--batch-size", "8", "--alpha-step", "3",
            "--disentangle-images", "6", "--threads", "1",
        ]
    }

    func cleanUp() { try? FileManager.default.removeItem(at: dir) }
}
