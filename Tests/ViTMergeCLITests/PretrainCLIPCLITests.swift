import Foundation
import XCTest
import ViTMergeCore
import ViTMergeIO
import ViTMergeModel

/// `vitmerge pretrain --scheme clip` and `vitmerge zeroshot` from the command line: images without
/// captions are refused naming --captions, a short run with a captions file written here makes a
/// checkpoint that loads as a plain encoder and classifies zero-shot, and a checkpoint without a
/// text tower is refused.
final class PretrainCLIPCLITests: XCTestCase {
    func testCLIPPretrainWritesTheTowersAndZeroShotClassifies() throws {
        let exe = try CLI.binary()
        let dir = try CLI.temporaryDirectory("vitmerge-clip")
        defer { try? FileManager.default.removeItem(at: dir) }
        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
        let config = try CLI.writeTinyConfig(in: dir.path)
        let task = path("digits.safetensors")
        try CLI.smallTask("data/tasks/mnist.safetensors", task, train: 60, test: 20)
        let digits = try TaskDataset.load(path: task)
        XCTAssertNil(digits.train.captions, "no captions file beside the task yet")
        // Captions "digit N" (three wordings), U8 [N, 20] per split, zero-padded.
        var w = SafeTensorsWriter(metadata: ["template": "digit {}", "source": "test"])
        for (split, data) in [("train", digits.train), ("test", digits.test)] {
            let texts = (0..<data.count).map { i in
                ["digit \(data.labels[i])", "a \(data.labels[i])", "number \(data.labels[i])"][i % 3]
            }
            try w.add("\(split).captions", bytes: Captions(texts, width: 20).bytes, shape: [data.count, 20])
        }
        let captions = path("captions.safetensors")
        try w.write(to: captions)

        let help = try CLI.run(exe, ["pretrain", "--help"])
        let words = help.output.split(whereSeparator: \.isWhitespace).joined(separator: " ")  // unwrapped
        for option in [
            "values: supervised, mim, mae, dino, clip", "--captions", "--text-depth", "--text-dim", "--embed-dim",
        ] {
            XCTAssertTrue(words.contains(option), "pretrain --help lacks \(option)")
        }
        let out = path("clip.safetensors")
        func pretrain(_ extra: [String]) -> [String] {
            [
                "pretrain", "--scheme", "clip", "--config", config, "--data", task, "--output", out, "--steps", "4",
                "--batch-size", "8", "--threads", "1", "--text-depth", "1", "--text-dim", "8", "--text-heads", "2",
                "--embed-dim", "6",
            ] + extra
        }
        for (args, message) in [
            (pretrain([]), "--captions PATH"),
            (pretrain(["--captions", captions, "--text-dim", "9"]), "must be divisible by --text-heads"),
            (
                ["pretrain", "--scheme", "mae", "--text-depth", "3", "--output", out, "--steps", "1"],
                "are for --scheme clip only"
            ),
        ] {
            let r = try CLI.run(exe, args)
            XCTAssertNotEqual(r.status, 0, args.joined(separator: " "))
            XCTAssertTrue(r.output.contains(message), r.output)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "a refused command must write nothing")

        let run = try CLI.run(exe, pretrain(["--captions", captions]))
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertTrue(run.output.contains("pretrain-clip step 4/4  loss"), run.output)
        XCTAssertTrue(run.output.contains("logit_scale") && run.output.contains("acc_i2t"), run.output)
        let (encoder, meta) = try Checkpoint.load(path: out)
        XCTAssertEqual(encoder.config.numClasses, 0)
        XCTAssertEqual(meta["scheme"], "clip")
        XCTAssertTrue(try SafeTensorsFile.read(path: out).names.contains("text.blocks.0.attn.qkv.weight"))

        let zs = try CLI.run(
            exe,
            ["zeroshot", "--checkpoint", out, "--task", task, "--template", "digit {}", "--json", "--threads", "1"])
        XCTAssertEqual(zs.status, 0, zs.output)
        let line = try XCTUnwrap(zs.output.split(separator: "\n").last { $0.hasPrefix("{") })
        let result = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let accuracy = try XCTUnwrap(result["accuracy"] as? Double)
        XCTAssertTrue(accuracy >= 0 && accuracy <= 1, "\(accuracy)")
        XCTAssertEqual(result["count"] as? Int, 20)

        // A checkpoint without a text tower (a plain encoder) is refused.
        let plain = path("plain.safetensors")
        XCTAssertEqual(try CLI.run(exe, ["init", "--config", config, "--output", plain]).status, 0)
        let refused = try CLI.run(exe, ["zeroshot", "--checkpoint", plain, "--task", task])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.output.contains("has no CLIP text tower"), refused.output)
    }
}
