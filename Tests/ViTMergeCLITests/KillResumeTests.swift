import Foundation
import XCTest
import ViTMergeCore
import ViTMergeIO
import ViTMergeModel

/// Crash safety with a real child process: `vitmerge finetune` killed with SIGKILL at a random
/// point after its first saved state, then resumed, must end bit-identical to an uninterrupted run;
/// and bad command lines must fail with a message and a non-zero exit, leaving files intact.
final class KillResumeTests: XCTestCase {
    func temporaryDirectory() throws -> URL { try CLI.temporaryDirectory("vitmerge-kill") }

    @discardableResult
    func run(
        _ exe: URL, _ args: [String], killWhenExists: String? = nil, afterMilliseconds delay: Int = 0
    ) throws -> (status: Int32, output: String, killed: Bool) {
        try CLI.run(exe, args, killWhenExists: killWhenExists, afterMilliseconds: delay)
    }

    func testKilledFineTuneResumesBitIdentical() throws {
        let exe = try CLI.binary()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = try CLI.writeTinyConfig(in: dir.path)
        let start = dir.appendingPathComponent("start.safetensors").path
        XCTAssertEqual(try run(exe, ["init", "--config", config, "--seed", "3", "--output", start]).status, 0)
        func finetune(_ out: String, _ state: String, resume: Bool = false) -> [String] {
            [
                "finetune", "--mode", "full", "--checkpoint", start, "--task", "data/tasks/mnist.safetensors",
                "--output", out,
                "--steps", "60", "--batch-size", "16", "--state", state, "--checkpoint-every", "4", "--quiet",
                "--threads", "1",
            ]
                + (resume ? ["--resume"] : [])
        }
        let straight = dir.appendingPathComponent("straight.safetensors").path
        let r0 = try run(exe, finetune(straight, dir.appendingPathComponent("s0").path))
        XCTAssertEqual(r0.status, 0, r0.output)

        var rng = RNG(seed: UInt64(getpid()))
        let out = dir.appendingPathComponent("resumed.safetensors").path, state = dir.appendingPathComponent("s1").path
        var kills = 0
        // Kill at a random moment after the first state exists, resume and kill again, then resume to the end.
        var r = try run(exe, finetune(out, state), killWhenExists: state, afterMilliseconds: rng.int(below: 40))
        kills += r.killed ? 1 : 0
        if r.killed {
            XCTAssertFalse(
                FileManager.default.fileExists(atPath: out), "a killed run must not leave an output checkpoint")
            r = try run(
                exe, finetune(out, state, resume: true), killWhenExists: state,
                afterMilliseconds: 20 + rng.int(below: 60))
            kills += r.killed ? 1 : 0
        }
        if r.killed { r = try run(exe, finetune(out, state, resume: true)) }
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertGreaterThanOrEqual(
            kills, 1, "the child finished before it could be killed; the test did not test anything")
        assertBitIdentical(
            try Checkpoint.load(path: straight).parameters, try Checkpoint.load(path: out).parameters,
            "killed-and-resumed weights differ from the uninterrupted run")
    }

    func testBadCommandLinesFailCleanlyAndLeaveFilesIntact() throws {
        let exe = try CLI.binary()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let keep = dir.appendingPathComponent("existing.safetensors").path
        try Data("precious".utf8).write(to: URL(fileURLWithPath: keep))
        // Task files: labels outside the class list, an empty train split, images of the wrong size.
        func task(_ name: String, train: Int, size: Int, label: Int64) throws -> String {
            var w = SafeTensorsWriter(metadata: ["classes": #"["a", "b"]"#])
            try w.add(
                "train.images", bytes: [UInt8](repeating: 9, count: train * size * size), shape: [train, 1, size, size])
            try w.add("train.labels", int64s: (0..<train).map { Int64($0 % 2) == 0 ? label : 1 }, shape: [train])
            try w.add("test.images", bytes: [UInt8](repeating: 9, count: 2 * size * size), shape: [2, 1, size, size])
            try w.add("test.labels", int64s: [0, 1], shape: [2])
            let path = dir.appendingPathComponent(name).path
            try w.write(to: path)
            return path
        }
        let probe = "data/pretrained/vit_mini_glyphs.safetensors"
        let taskCases: [(String, String)] = [
            (try task("labels.safetensors", train: 8, size: 28, label: 7), "outside 0..<2"),
            (try task("empty.safetensors", train: 0, size: 28, label: 0), "train split is empty"),
            (try task("size.safetensors", train: 8, size: 32, label: 0), "1×32×32 images but"),
        ]
        for (path, mention) in taskCases {
            let out = dir.appendingPathComponent("probe-out.safetensors").path
            let r = try run(exe, ["probe", "--checkpoint", probe, "--task", path, "--output", out, "--steps", "1"])
            XCTAssertNotEqual(r.status, 0, "\(path) should be refused")
            XCTAssertTrue(r.output.contains(mention), "\(path): message should mention '\(mention)', got: \(r.output)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "no output may be written for bad input")
        }

        let cases: [([String], String)] = [
            (
                ["eval", "--checkpoint", "/nonexistent/model.safetensors", "--task", "data/tasks/mnist.safetensors"],
                "cannot read"
            ),
            (["eval", "--checkpoint", keep, "--task", "data/tasks/mnist.safetensors"], "existing.safetensors"),
            (
                [
                    "probe", "--checkpoint", "data/pretrained/vit_mini_glyphs.safetensors", "--task",
                    "data/tasks/mnist.safetensors",
                    "--output", "/nonexistent-dir/x.safetensors", "--steps", "1",
                ], "cannot write"
            ),
            (
                [
                    "merge", "--pretrained", "data/pretrained/vit_mini_glyphs.safetensors", "--finetuned", keep,
                    "--tasks",
                    "data/tasks/mnist.safetensors", "--lambda", "50",
                ], "--lambda"
            ),
            (
                [
                    "finetune", "--mode", "mim", "--checkpoint", keep, "--task", "data/tasks/mnist.safetensors",
                    "--output", keep, "--steps", "1",
                ],
                "aligned or full"
            ),
        ]
        for (args, mention) in cases {
            let r = try run(exe, args)
            XCTAssertNotEqual(r.status, 0, "\(args) should fail")
            XCTAssertTrue(r.output.contains(mention), "\(args): message should mention '\(mention)', got: \(r.output)")
            XCTAssertFalse(
                r.output.contains("Fatal error") || r.output.contains("crashed"), "\(args) crashed: \(r.output)")
        }
        XCTAssertEqual(
            try String(contentsOfFile: keep, encoding: .utf8), "precious", "a failed command damaged an existing file")
    }
}
