import Foundation
import XCTest
import ViTMergeIO

/// The commands read an image folder with the checkpoint's preprocessing (a hub snapshot's pretrained_cfg):
/// probe, then eval, with the decoded images cached and reused.
final class ImageFolderCLITests: XCTestCase {
    func testProbeAndEvalOnAnImageFolder() throws {
        let exe = try CLI.binary()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vitmerge-folder-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let hub = CLI.repo.appendingPathComponent("data/hub/vit_tiny_e32_d2_32").path
        let folder = CLI.repo.appendingPathComponent("data/images/shapes").path
        let probed = dir.appendingPathComponent("probed.safetensors").path, cache = dir.appendingPathComponent("c").path
        let probe = try CLI.run(
            exe,
            [
                "probe", "--checkpoint", hub, "--task", folder, "--steps", "5", "--batch-size", "8", "--output", probed,
                "--image-cache", cache, "--threads", "1",
            ])
        XCTAssertEqual(probe.status, 0, probe.output)
        let cached = try FileManager.default.contentsOfDirectory(atPath: cache)
        XCTAssertEqual(cached.count, 1, "one cache file for the folder: \(cached)")
        XCTAssertTrue(cached[0].hasPrefix("shapes-") && cached[0].hasSuffix(".safetensors"), "\(cached)")
        let eval = try CLI.run(
            exe, ["eval", "--checkpoint", probed, "--task", folder, "--json", "--image-cache", cache, "--threads", "1"])
        XCTAssertEqual(eval.status, 0, eval.output)
        let line = try XCTUnwrap(eval.output.split(separator: "\n").last { $0.hasPrefix("{") })
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let accuracy = try XCTUnwrap(json["accuracy"] as? Double)
        XCTAssertTrue((0...1).contains(accuracy), "\(json)")
        // A 1-channel model cannot read the RGB folder: a clear error, not a crash.
        let glyphs = CLI.repo.appendingPathComponent("data/pretrained/vit_mini_glyphs.safetensors").path
        let wrong = try CLI.run(
            exe,
            [
                "probe", "--checkpoint", glyphs, "--task", folder, "--steps", "1", "--output",
                dir.appendingPathComponent("x.safetensors").path,
            ])
        XCTAssertNotEqual(wrong.status, 0)
        XCTAssertTrue(wrong.output.contains("image folders give RGB images"), wrong.output)
    }

    /// `finetune --augment` on an image folder: runs, trains on other images than without it, and a
    /// state written with it is not resumed without it.
    func testFinetuneWithAugmentOnAnImageFolder() throws {
        let exe = try CLI.binary()
        let dir = try CLI.temporaryDirectory("vitmerge-augment")
        defer { try? FileManager.default.removeItem(at: dir) }
        let hub = CLI.repo.appendingPathComponent("data/hub/vit_tiny_e32_d2_32").path
        let folder = CLI.repo.appendingPathComponent("data/images/shapes").path
        let state = dir.appendingPathComponent("s.state").path
        func finetune(_ name: String, _ extra: [String]) throws -> (status: Int32, output: String, path: String) {
            let out = dir.appendingPathComponent(name).path
            let r = try CLI.run(
                exe,
                [
                    "finetune", "--mode", "full", "--checkpoint", hub, "--task", folder, "--steps", "4",
                    "--batch-size", "8", "--output", out, "--threads", "2", "--quiet",
                ] + extra)
            return (r.status, r.output, out)
        }
        let augmented = try finetune("a.safetensors", ["--augment", "--state", state])
        XCTAssertEqual(augmented.status, 0, augmented.output)
        let plain = try finetune("p.safetensors", [])
        XCTAssertEqual(plain.status, 0, plain.output)
        let (a, _) = try Checkpoint.load(path: augmented.path), (p, _) = try Checkpoint.load(path: plain.path)
        XCTAssertNotEqual(a.arena.buffer.map(\.bitPattern), p.arena.buffer.map(\.bitPattern))
        let again = try finetune("b.safetensors", ["--augment"])
        XCTAssertEqual(again.status, 0, again.output)
        assertBitIdentical(a, try Checkpoint.load(path: again.path).parameters, "--augment is not deterministic")
        let mismatch = try finetune("c.safetensors", ["--state", state, "--resume"])
        XCTAssertNotEqual(mismatch.status, 0)
        XCTAssertTrue(mismatch.output.contains("same command line"), mismatch.output)
    }
}
