import Foundation
import XCTest
import ViTMergeCore
import ViTMergeIO
import ViTMergeModel

/// `vitmerge pretrain --scheme mae` from the command line: bad decoder flags are refused with a
/// message, a short run writes a checkpoint that holds the decoder and that `finetune` reads as
/// a plain encoder, and a resumed run ends bit-identical to an uninterrupted one.
final class PretrainMAECLITests: XCTestCase {
    func testMAEPretrainValidatesWritesTheDecoderAndResumes() throws {
        let exe = try CLI.binary()
        let dir = try CLI.temporaryDirectory("vitmerge-mae")
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = try CLI.writeTinyConfig(in: dir.path)
        let help = try CLI.run(exe, ["pretrain", "--help"])
        let words = help.output.split(whereSeparator: \.isWhitespace).joined(separator: " ")  // unwrapped
        for option in [
            "values: supervised, mim, mae", "--decoder-depth", "--decoder-dim", "--decoder-heads", "--norm-pix-loss",
        ] {
            XCTAssertTrue(words.contains(option), "pretrain --help lacks \(option)")
        }
        func pretrain(_ out: String, _ extra: [String]) -> [String] {
            [
                "pretrain", "--scheme", "mae", "--config", config, "--data", "data/tasks/mnist.safetensors",
                "--output", out, "--steps", "6", "--batch-size", "8", "--threads", "1", "--decoder-dim", "8",
                "--decoder-heads", "2", "--decoder-depth", "1", "--norm-pix-loss",
            ] + extra
        }
        let out = dir.appendingPathComponent("mae.safetensors").path
        for (args, message) in [
            (pretrain(out, ["--decoder-dim", "9"]), "must be divisible by --decoder-heads"),
            (pretrain(out, ["--mask-ratio", "1"]), "--mask-ratio must be in (0, 1)"),
            (
                ["pretrain", "--scheme", "mim", "--decoder-depth", "3", "--output", out, "--steps", "1"],
                "are for --scheme mae only"
            ),
        ] {
            let r = try CLI.run(exe, args)
            XCTAssertNotEqual(r.status, 0, args.joined(separator: " "))
            XCTAssertTrue(r.output.contains(message), r.output)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "a refused command must write nothing")

        let straight = try CLI.run(exe, pretrain(out, []))
        XCTAssertEqual(straight.status, 0, straight.output)
        XCTAssertTrue(straight.output.contains("pretrain-mae step 6/6  loss"), straight.output)
        let file = try SafeTensorsFile.read(path: out)
        XCTAssertTrue(file.names.contains("decoder_pred.weight") && file.names.contains("mask_token"))
        let (encoder, meta) = try Checkpoint.load(path: out)
        XCTAssertEqual(encoder.config.numClasses, 0)
        XCTAssertEqual(meta["scheme"], "mae")

        // 3 steps, then a resumed run to 6: the same encoder bits.
        let state = dir.appendingPathComponent("state.safetensors").path
        let half = dir.appendingPathComponent("half.safetensors").path
        let first = pretrain(half, ["--state", state, "--checkpoint-every", "3"])
        let killed = try CLI.run(exe, first, killWhenExists: state)
        XCTAssertTrue(killed.killed || killed.status == 0, killed.output)
        let resumed = try CLI.run(exe, pretrain(half, ["--state", state, "--checkpoint-every", "3", "--resume"]))
        XCTAssertEqual(resumed.status, 0, resumed.output)
        assertBitIdentical(
            try Checkpoint.load(path: half).parameters, encoder, "the resumed MAE run differs from the straight one")

        let tuned = dir.appendingPathComponent("ft.safetensors").path
        let ft = try CLI.run(
            exe,
            [
                "finetune", "--mode", "full", "--checkpoint", out, "--task", "data/tasks/mnist.safetensors",
                "--output", tuned, "--steps", "2", "--batch-size", "8", "--threads", "1", "--quiet",
            ])
        XCTAssertEqual(ft.status, 0, ft.output)
    }
}
