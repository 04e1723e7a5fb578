import Foundation
import XCTest
import ViTMergeCore
import ViTMergeIO
import ViTMergeModel

/// `vitmerge pretrain --scheme dino` from the command line: `--help` lists the scheme and its
/// flags, bad flags are refused with a message, a short run prints the teacher's entropy and the
/// KL in its progress lines and writes a checkpoint holding the head that `Checkpoint.load` reads
/// as a plain encoder, and a resumed run (teacher and centre from the state) ends bit-identical.
final class PretrainDINOCLITests: XCTestCase {
    func testDINOPretrainValidatesWritesTheHeadAndResumes() throws {
        let exe = try CLI.binary()
        let dir = try CLI.temporaryDirectory("vitmerge-dino")
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = try CLI.writeTinyConfig(in: dir.path)
        let help = try CLI.run(exe, ["pretrain", "--help"])
        let helpText = help.output.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        for option in [
            "values: supervised, mim, mae, dino, clip", "--local-crops", "--dino-prototypes", "--dino-hidden",
            "--teacher-momentum", "--teacher-temperature", "--dino-jitter", "no flips",
        ] {
            XCTAssertTrue(helpText.contains(option), "pretrain --help lacks \(option)")
        }
        func pretrain(_ out: String, _ extra: [String]) -> [String] {
            [
                "pretrain", "--scheme", "dino", "--config", config, "--data", "data/tasks/mnist.safetensors",
                "--output", out, "--steps", "4", "--batch-size", "6", "--threads", "1", "--local-crops", "1",
                "--dino-prototypes", "12", "--dino-hidden", "10", "--dino-bottleneck", "6",
            ] + extra
        }
        let out = dir.appendingPathComponent("dino.safetensors").path
        for (args, message) in [
            (pretrain(out, ["--dino-prototypes", "1"]), "--dino-prototypes ≥ 2"),
            (pretrain(out, ["--teacher-momentum", "1.5"]), "--teacher-momentum must be in [0, 1]"),
            (
                ["pretrain", "--scheme", "mae", "--local-crops", "3", "--output", out, "--steps", "1"],
                "are for --scheme dino only"
            ),
        ] {
            let r = try CLI.run(exe, args)
            XCTAssertNotEqual(r.status, 0, args.joined(separator: " "))
            XCTAssertTrue(r.output.contains(message), r.output)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "a refused command must write nothing")

        let straight = try CLI.run(exe, pretrain(out, []))
        XCTAssertEqual(straight.status, 0, straight.output)
        XCTAssertTrue(straight.output.contains("pretrain-dino step 4/4  loss"), straight.output)
        XCTAssertTrue(straight.output.contains("entropy") && straight.output.contains("kl"), straight.output)
        let file = try SafeTensorsFile.read(path: out)
        XCTAssertTrue(file.names.contains("dino_head.last_layer.weight_v"), "\(file.names)")
        XCTAssertEqual(try Checkpoint.auxiliaryTensors(file).filter { $0.hasPrefix("dino_head.") }.count, 7)
        let (encoder, meta) = try Checkpoint.load(path: out)
        XCTAssertEqual(encoder.config.numClasses, 0)
        XCTAssertEqual(meta["scheme"], "dino")

        // 2 steps, then a resumed run to 4: the same (teacher's) encoder bits.
        let state = dir.appendingPathComponent("state.safetensors").path
        let half = dir.appendingPathComponent("half.safetensors").path
        let killed = try CLI.run(
            exe, pretrain(half, ["--state", state, "--checkpoint-every", "2"]), killWhenExists: state)
        XCTAssertTrue(killed.killed || killed.status == 0, killed.output)
        let resumed = try CLI.run(exe, pretrain(half, ["--state", state, "--checkpoint-every", "2", "--resume"]))
        XCTAssertEqual(resumed.status, 0, resumed.output)
        assertBitIdentical(
            try Checkpoint.load(path: half).parameters, encoder, "the resumed DINO run differs from the straight one")
    }
}
