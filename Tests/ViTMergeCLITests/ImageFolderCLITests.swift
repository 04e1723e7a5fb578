import Foundation
import XCTest

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
}
