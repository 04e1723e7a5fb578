import Foundation
import XCTest
import ViTMergeCore
import ViTMergeIO
@testable import ViTMergeModel

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

    func testForwardIsBitIdenticalForOneAndTwoThreadsOnAViTTinySizedBatch() {
        let c = ViTConfig(
            imageSize: 32, patchSize: 4, inChannels: 3, numClasses: 10, embedDim: 96, depth: 2, numHeads: 3)
        let count = 8 * 3 * 32 * 32
        let input: [Float] = (0..<count).map { (i: Int) -> Float in Float((i * 7919) % 255) / 255 }
        func run(_ threads: Int) -> [UInt32] {
            let pool = ThreadPool(threads: threads)
            let model = ViT(config: c, seed: 3, pool: pool)
            let acts = model.makeActivations(capacity: 8)
            input.withUnsafeBufferPointer { model.forward(input: $0.baseAddress!, batch: 8, acts: acts) }
            let labels = [Int32](repeating: 1, count: 8)
            labels.withUnsafeBufferPointer { _ = model.crossEntropy(labels: $0.baseAddress!, batch: 8, acts: acts) }
            let grads = model.makeGradients()
            input.withUnsafeBufferPointer { model.backward(input: $0.baseAddress!, batch: 8, acts: acts, grads: grads) }
            return Array(UnsafeBufferPointer(start: acts.output, count: 80)).map(\.bitPattern)
                + grads.buffer.map(\.bitPattern)
        }
        XCTAssertEqual(run(1), run(2))
    }
}

final class GradientReadyTests: XCTestCase {
    /// `backward`'s ready ranges arrive in descending contiguous order, cover the whole arena,
    /// and are final when reported (nothing later writes into them).
    func testReadyRangesCoverTheArenaInOrderAndAreFinal() {
        let configs = [
            ViTConfig(imageSize: 8, patchSize: 4, inChannels: 1, numClasses: 3, embedDim: 8, depth: 3, numHeads: 2),
            ViTConfig(
                imageSize: 8, patchSize: 4, inChannels: 2, numClasses: 3, embedDim: 8, depth: 2, numHeads: 2,
                qkvBias: false, classToken: false, globalPool: .avg, fcNorm: true, preNorm: true),
        ]
        for config in configs {
            let model = ViT(config: config, seed: 5)
            let batch = 3
            var rng = RNG(seed: 2)
            let input = (0..<(batch * config.inChannels * 64)).map { _ in rng.uniformFloat() }
            let labels: [Int32] = [0, 2, 1]
            let acts = model.makeActivations(capacity: batch)
            let grads = model.makeGradients()
            model.forward(input: input, batch: batch, acts: acts)
            model.crossEntropy(labels: labels, batch: batch, acts: acts)
            var reported: [(Range<Int>, [Float])] = []
            input.withUnsafeBufferPointer { x in
                model.backward(input: x.baseAddress!, batch: batch, acts: acts, grads: grads) { range in
                    reported.append(
                        (range, Array(UnsafeBufferPointer(start: grads.base + range.lowerBound, count: range.count))))
                }
            }
            var next = grads.count
            for (range, snapshot) in reported {
                XCTAssertEqual(range.upperBound, next, "ranges must be contiguous and descending")
                next = range.lowerBound
                let now = Array(UnsafeBufferPointer(start: grads.base + range.lowerBound, count: range.count))
                XCTAssertEqual(
                    now.map(\.bitPattern), snapshot.map(\.bitPattern),
                    "range \(range) changed after it was reported ready")
            }
            XCTAssertEqual(next, 0, "the ranges must cover the whole arena")
            XCTAssertEqual(reported.count, config.depth + 2)
        }
    }
}
