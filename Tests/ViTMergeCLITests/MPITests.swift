import Foundation
import XCTest
import ViTMergeCore
import ViTMergeIO
import ViTMergeModel

/// Real Open MPI runs on localhost: `mpirun -np 2 --oversubscribe vitmerge finetune` against
/// the same binary as one process. Builds the MPI variant (`--traits MPI`, release) into
/// .build-mpi first. Skipped when Open MPI is not installed, except under CI (VITMERGE_CI=1), where
/// a missing mpirun fails.
final class MPITests: XCTestCase {
    static let task = "data/tasks/mnist.safetensors"
    static let openMPIHint = "Open MPI: apt-get install libopenmpi-dev openmpi-bin"

    /// Runs `exe args` in the repository; kills it (and fails) after `timeout` seconds, so a
    /// hung MPI job cannot hang the suite.
    func run(
        _ exe: String, _ args: [String], timeout: Double = 300, terminateWhenExists: String? = nil
    )
        throws -> (status: Int32, output: String)
    {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        p.currentDirectoryURL = CLI.repo
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("vitmerge-mpi-\(UUID().uuidString).log")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        let handle = try FileHandle(forWritingTo: out)
        defer { try? FileManager.default.removeItem(at: out) }
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        var terminated = false
        while p.isRunning {
            if Date() > deadline {
                p.terminate()
                XCTFail("\(args.joined(separator: " ")) did not finish within \(timeout) s (hung MPI job?)")
                break
            }
            if let path = terminateWhenExists, !terminated, FileManager.default.fileExists(atPath: path) {
                p.terminate()  // SIGTERM: mpirun ends every rank
                terminated = true
            }
            usleep(5_000)
        }
        p.waitUntilExit()
        try handle.close()
        return (p.terminationStatus, try String(contentsOf: out, encoding: .utf8))
    }

    /// The `vitmerge` built with MPI, and the mpirun command prefix for `ranks` ranks.
    func setUpMPI() throws -> (vitmerge: String, mpirun: (Int) -> [String], launcher: String) {
        let mpirun = try CLI.require("mpirun", hint: Self.openMPIHint)
        let swift = try CLI.require("swift", hint: "the MPI variant is built with it")
        let build = try run(
            swift,
            ["build", "-c", "release", "--traits", "MPI", "--scratch-path", ".build-mpi", "--product", "vitmerge"],
            timeout: 1200)
        XCTAssertEqual(build.status, 0, "building with --traits MPI failed:\n\(build.output)")
        let exe = CLI.repo.appendingPathComponent(".build-mpi/release/vitmerge").path
        let root = getuid() == 0 ? ["--allow-run-as-root"] : []
        return (exe, { n in root + ["--oversubscribe", "-np", "\(n)"] }, mpirun)
    }

    func temporaryDirectory() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vitmerge-mpi-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    /// Losses of the JSON step lines, in order.
    func losses(_ output: String) -> [Double] {
        output.split(separator: "\n").compactMap { line -> Double? in
            guard line.hasPrefix("{"),
                let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                o["event"] as? String == "step"
            else { return nil }
            return o["loss"] as? Double
        }
    }

    /// `pretrain --scheme <scheme>` on a tiny model: 2 ranks under a real mpirun against one
    /// process on one thread, step by step (rank 0 alone logs) and on the named tensors.
    func assertTwoRanksMatchOneProcess(
        scheme: String, data: String = MPITests.task, steps: Int, options: [String], tensors: [String],
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let (exe, np, mpirun) = try setUpMPI()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("cfg.json").path
        try #"{"img_size": 28, "patch_size": 7, "in_chans": 1, "num_classes": 10, "embed_dim": 16, "depth": 2, "#
            .appending(#""num_heads": 2}"#).write(toFile: config, atomically: true, encoding: .utf8)
        func pretrain(_ out: String) -> [String] {
            [
                "pretrain", "--scheme", scheme, "--config", config, "--data", data, "--output", out, "--steps",
                "\(steps)", "--batch-size", "16", "--json",
            ] + options
        }
        let one = dir.appendingPathComponent("one.safetensors").path,
            two = dir.appendingPathComponent("two.safetensors").path
        let r1 = try run(exe, pretrain(one) + ["--threads", "1"])
        XCTAssertEqual(r1.status, 0, r1.output, file: file, line: line)
        let r2 = try run(mpirun, np(2) + [exe] + pretrain(two))
        XCTAssertEqual(r2.status, 0, r2.output, file: file, line: line)
        let (l1, l2) = (losses(r1.output), losses(r2.output))
        XCTAssertEqual(l1.count, steps, file: file, line: line)
        XCTAssertEqual(l2.count, steps, "only rank 0 may log: \(r2.output)", file: file, line: line)
        for (s, (a, b)) in zip(l1, l2).enumerated() {
            XCTAssertEqual(
                a, b, accuracy: 1e-4 * abs(a), "\(scheme) step \(s + 1): 2 ranks \(b) vs 1 process \(a)",
                file: file, line: line)
        }
        let (f1, f2) = (try SafeTensorsFile.read(path: one), try SafeTensorsFile.read(path: two))
        XCTAssertEqual(f1.names, f2.names, file: file, line: line)
        for name in tensors {
            let diff = zip(try f1.floats(name), try f2.floats(name)).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(diff, 1e-4, "\(name): 1 process and 2 ranks differ by \(diff)", file: file, line: line)
        }
    }

    func testMAEPretrainingOnTwoRanksMatchesOneProcess() throws {
        try assertTwoRanksMatchOneProcess(
            scheme: "mae", steps: 12, options: ["--decoder-dim", "8", "--decoder-heads", "2", "--norm-pix-loss"],
            tensors: ["blocks.1.mlp.fc2.weight", "decoder_pred.weight", "mask_token"])
    }

    func testDINOPretrainingOnTwoRanksMatchesOneProcess() throws {
        try assertTwoRanksMatchOneProcess(
            scheme: "dino", steps: 8,
            options: [
                "--local-crops", "2", "--dino-prototypes", "16", "--dino-hidden", "16", "--dino-bottleneck", "8",
            ],
            tensors: ["blocks.1.mlp.fc2.weight", "dino_head.mlp.4.weight", "dino_head.last_layer.weight_v"])
    }

    /// CLIP's InfoNCE is over the global batch: the ranks gather the embeddings, so 2 ranks equal one
    /// process (the glyph pre-training set, whose captions file sits beside it).
    func testCLIPPretrainingOnTwoRanksMatchesOneProcess() throws {
        try assertTwoRanksMatchOneProcess(
            scheme: "clip", data: "data/pretrain/glyphs.safetensors", steps: 8,
            options: ["--text-depth", "1", "--text-dim", "8", "--text-heads", "2", "--embed-dim", "6"],
            tensors: ["blocks.1.mlp.fc2.weight", "text.blocks.0.mlp.fc1.weight", "text_projection", "logit_scale"])
    }

    func testTwoRanksMatchOneProcessResumeExactlyAndFailTogether() throws {
        let (exe, np, mpirun) = try setUpMPI()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func finetune(_ out: String, state: String? = nil, resume: Bool = false, steps: Int = 16) -> [String] {
            [
                "finetune", "--mode", "full", "--checkpoint", "data/pretrained/vit_mini_glyphs.safetensors", "--task",
                Self.task,
                "--output", out, "--steps", "\(steps)", "--batch-size", "32", "--eval-every", "8", "--json",
            ]
                + (state.map { ["--state", $0, "--checkpoint-every", "4"] } ?? []) + (resume ? ["--resume"] : [])
        }
        // One process and two ranks, same global batch: the same loss curve up to summation order.
        let one = dir.appendingPathComponent("one.safetensors").path,
            two = dir.appendingPathComponent("two.safetensors").path
        let r1 = try run(exe, finetune(one) + ["--threads", "1"])
        XCTAssertEqual(r1.status, 0, r1.output)
        let r2 = try run(mpirun, np(2) + [exe] + finetune(two))
        XCTAssertEqual(r2.status, 0, r2.output)
        XCTAssertTrue(r2.output.contains("data-parallel: 2 ranks"), r2.output)
        let (l1, l2) = (losses(r1.output), losses(r2.output))
        XCTAssertEqual(l1.count, 16, "one process should log every step once")
        XCTAssertEqual(l2.count, 16, "only rank 0 may log: \(r2.output)")
        for (s, (a, b)) in zip(l1, l2).enumerated() {
            XCTAssertEqual(a, b, accuracy: 1e-4 * abs(a), "step \(s + 1): 2 ranks \(b) vs 1 process \(a)")
        }
        let (p1, p2) = (try Checkpoint.load(path: one).parameters, try Checkpoint.load(path: two).parameters)
        let diff = (0..<p1.arena.count).map { abs(p1.base[$0] - p2.base[$0]) }.max()!
        XCTAssertLessThan(diff, 1e-4, "final weights of 1 process and 2 ranks differ by \(diff)")

        // Two ranks stopped (SIGTERM to mpirun) after a saved state and resumed on two ranks:
        // bit-identical to an uninterrupted two-rank run (a 2-rank sum has one rounding, a + b).
        let straight = dir.appendingPathComponent("straight.safetensors").path
        XCTAssertEqual(
            try run(mpirun, np(2) + [exe] + finetune(straight, state: dir.appendingPathComponent("s0").path, steps: 40))
                .status, 0)
        let state = dir.appendingPathComponent("s1").path,
            resumed = dir.appendingPathComponent("resumed.safetensors").path
        let stopped = try run(
            mpirun, np(2) + [exe] + finetune(resumed, state: state, steps: 40), terminateWhenExists: state)
        XCTAssertTrue(FileManager.default.fileExists(atPath: state), stopped.output)
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: resumed),
            "the run finished before it was stopped; nothing was resumed")
        let again = try run(mpirun, np(2) + [exe] + finetune(resumed, state: state, resume: true, steps: 40))
        XCTAssertEqual(again.status, 0, again.output)
        assertBitIdentical(
            try Checkpoint.load(path: straight).parameters, try Checkpoint.load(path: resumed).parameters,
            "a stopped and resumed two-rank run differs from the uninterrupted one")

        // One rank's error ends the job: rank 0 cannot write its output; nobody waits forever.
        let bad = try run(mpirun, np(2) + [exe] + finetune("/nonexistent-dir/x.safetensors"), timeout: 120)
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.output.contains("cannot write"), bad.output)
        // Commands that are not data-parallel refuse to run as several ranks.
        let eval = try run(mpirun, np(2) + [exe, "eval", "--checkpoint", one, "--task", Self.task], timeout: 120)
        XCTAssertNotEqual(eval.status, 0)
        XCTAssertTrue(eval.output.contains("only `finetune` and `pretrain` are data-parallel"), eval.output)
        // Each rank's message is one write: no line holds a piece of another rank's copy.
        for line in eval.output.split(separator: "\n") where line.contains("MPI ranks") || line.contains("parallel") {
            XCTAssertTrue(line.hasPrefix("Error: started as one of 2 MPI ranks,"), "interleaved: \(eval.output)")
            XCTAssertTrue(line.hasSuffix("(without mpirun)"), "interleaved: \(eval.output)")
        }
        // A global batch smaller than the rank count is refused with a message.
        let tiny = try run(
            mpirun, np(2) + [exe] + finetune(dir.appendingPathComponent("t.safetensors").path) + ["--batch-size", "1"],
            timeout: 120)
        XCTAssertNotEqual(tiny.status, 0)
        XCTAssertTrue(tiny.output.contains("cannot be shared by 2 ranks"), tiny.output)
    }

    /// The default build (no MPI) started by mpirun must refuse, not train N times into the same file.
    func testBuildWithoutMPIRefusesToRunUnderMpirun() throws {
        let mpirun = try CLI.require("mpirun", hint: Self.openMPIHint)
        let exe = try CLI.binary().path
        let root = getuid() == 0 ? ["--allow-run-as-root"] : []
        let r = try run(
            mpirun,
            root + [
                "--oversubscribe", "-np", "2", exe, "finetune", "--mode", "full", "--checkpoint",
                "data/pretrained/vit_mini_glyphs.safetensors", "--task", Self.task, "--output",
                "/tmp/never-written.safetensors", "--steps", "1",
            ], timeout: 120)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.output.contains("built without MPI"), r.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/tmp/never-written.safetensors"))
    }
}
