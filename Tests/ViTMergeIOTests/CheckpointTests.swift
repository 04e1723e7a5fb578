import Foundation
import XCTest
import ViTMergeCore
@testable import ViTMergeIO
@testable import ViTMergeModel

/// Checkpoint save/load round trip and the loader's errors on bad input.
final class CheckpointTests: XCTestCase {
    let config = ViTConfig(imageSize: 8, patchSize: 4, inChannels: 1, numClasses: 3, embedDim: 8, depth: 1, numHeads: 2)
    func tmp(_ name: String) -> String { NSTemporaryDirectory() + "vitmerge-ckpt-\(getpid())-\(name)" }

    func testSaveLoadRoundTripAndSeededInitIsStable() throws {
        let p = ViTParameters(config: config)
        p.initialize(seed: 7)
        let q = ViTParameters(config: config)
        q.initialize(seed: 7)
        XCTAssertEqual(p.arena.buffer.map(\.bitPattern), q.arena.buffer.map(\.bitPattern))
        XCTAssertEqual(p["norm.weight"]!.array, [Float](repeating: 1, count: 8))
        let path = tmp("rt.safetensors")
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Checkpoint.save(p, to: path, metadata: ["note": "x"])
        let (loaded, meta) = try Checkpoint.load(path: path)
        XCTAssertEqual(loaded.config, config)
        XCTAssertEqual(meta["note"], "x")
        XCTAssertEqual(loaded.arena.buffer.map(\.bitPattern), p.arena.buffer.map(\.bitPattern))
    }

    /// Writes `p`'s tensors with `edit` applied, to exercise the loader's checks.
    func write(
        _ p: ViTParameters, _ path: String, config: String?, edit: (inout [(String, [Float], [Int])]) -> Void
    ) throws {
        var tensors = p.table.layout.regions.map { ($0.name, p[$0.name]!.array, $0.shape.dims) }
        edit(&tensors)
        var w = SafeTensorsWriter(metadata: config.map { ["config": $0] } ?? [:])
        for (n, v, s) in tensors { try w.add(n, floats: v, shape: s) }
        try w.write(to: path)
    }

    func testBadCheckpointsGiveClearErrors() throws {
        let p = ViTParameters(config: config)
        p.initialize(seed: 1)
        let path = tmp("bad.safetensors")
        defer { try? FileManager.default.removeItem(atPath: path) }

        try write(p, path, config: config.json) { $0.append(("blocks.0.attn.q_norm.weight", [1], [1])) }
        XCTAssertThrowsError(try Checkpoint.load(path: path)) {
            XCTAssertTrue("\($0)".contains("unexpected tensor 'blocks.0.attn.q_norm.weight'"), "\($0)")
        }

        try write(p, path, config: config.json) { $0.removeAll { $0.0 == "head.bias" } }
        XCTAssertThrowsError(try Checkpoint.load(path: path)) {
            XCTAssertTrue("\($0)".contains("no tensor 'head.bias'"), "\($0)")
        }

        try write(p, path, config: config.json) { t in
            let i = t.firstIndex { $0.0 == "blocks.0.mlp.fc1.weight" }!
            t[i].2 = [8, 32]
        }
        XCTAssertThrowsError(try Checkpoint.load(path: path)) {
            XCTAssertTrue("\($0)".contains("'blocks.0.mlp.fc1.weight' has shape [8, 32], expected [32, 8]"), "\($0)")
        }

        try write(p, path, config: nil) { _ in }
        XCTAssertThrowsError(try Checkpoint.load(path: path)) { XCTAssertTrue("\($0)".contains("--config"), "\($0)") }
        XCTAssertNoThrow(try Checkpoint.load(path: path, config: config))
        var other = config
        other.depth = 2
        try write(p, path, config: config.json) { _ in }
        XCTAssertThrowsError(try Checkpoint.load(path: path, config: other)) {
            XCTAssertTrue("\($0)".contains("differs"), "\($0)")
        }

        // Truncated file.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        try bytes.prefix(bytes.count - 10).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try Checkpoint.load(path: path)) { XCTAssertTrue("\($0)".contains("outside"), "\($0)") }
        XCTAssertThrowsError(try Checkpoint.load(path: tmp("missing"))) {
            XCTAssertTrue("\($0)".contains("no such file"), "\($0)")
        }
    }
}
