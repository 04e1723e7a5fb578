import Foundation
import XCTest
import ViTMergeIO
import ViTMergeModel

/// `vitmerge export` and hub-snapshot checkpoints end to end: a committed save_for_hf snapshot is
/// exported and read back; bad snapshots exit non-zero, name the file and write nothing.
final class ExportTests: XCTestCase {
    func testExportOfAHubSnapshotRoundTrips() throws {
        let exe = try CLI.binary()
        let dir = try CLI.temporaryDirectory("export")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("snapshot").path
        let r = try CLI.run(exe, ["export", "--checkpoint", "data/hub/vit_tiny_e32_d2_32", "--out", out])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("vit_tiny_patch16_224"), r.output)
        let (a, _) = try Checkpoint.load(path: CLI.repo.appendingPathComponent("data/hub/vit_tiny_e32_d2_32").path)
        let (b, meta) = try Checkpoint.load(path: out)
        assertBitIdentical(a, b, "exported weights differ")
        XCTAssertEqual(meta["architecture"], "vit_tiny_patch16_224")
    }

    func testBadSnapshotsExitNonZeroAndWriteNothing() throws {
        let exe = try CLI.binary()
        let dir = try CLI.temporaryDirectory("export-bad")
        defer { try? FileManager.default.removeItem(at: dir) }
        let pickle = dir.appendingPathComponent("pickle")
        try FileManager.default.createDirectory(at: pickle, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: pickle.appendingPathComponent("pytorch_model.bin"))
        let out = dir.appendingPathComponent("out").path
        let r = try CLI.run(exe, ["export", "--checkpoint", pickle.path, "--out", out])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.output.contains("pytorch_model.bin") && r.output.contains("weights_only=True"), r.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        // DINOv2's config.json beside weights of another model: refused naming the file, nothing written.
        let dino = dir.appendingPathComponent("dino")
        try FileManager.default.createDirectory(at: dino, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            at: CLI.repo.appendingPathComponent("data/hub/configs/vit_small_patch14_dinov2.lvd142m.json"),
            to: dino.appendingPathComponent("config.json"))
        try FileManager.default.copyItem(
            at: CLI.repo.appendingPathComponent("data/hub/vit_tiny_e32_d2_32/model.safetensors"),
            to: dino.appendingPathComponent("model.safetensors"))
        let f = try CLI.run(exe, ["export", "--checkpoint", dino.path, "--out", out])
        XCTAssertNotEqual(f.status, 0)
        XCTAssertTrue(f.output.contains("config.json"), f.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
}
