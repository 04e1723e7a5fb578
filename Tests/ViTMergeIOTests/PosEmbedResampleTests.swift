import Foundation
import XCTest
import ViTMergeCore
import ViTMergeKernels
@testable import ViTMergeIO
@testable import ViTMergeModel

/// pos_embed resampling at load time against timm's `resample_abs_pos_embed` and its
/// `checkpoint_filter_fn`, both with their defaults (bicubic, antialias True, prefix rows kept), up
/// and down (data/golden/resample, made by scripts/make_resample_golden.py from timm 1.0.31).
final class PosEmbedResampleTests: XCTestCase {
    static let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("data/golden/resample/pos_embed_resample.safetensors").path

    struct Case: Decodable {
        let name: String, prefix: Int, from: [Int], to: [Int], dim: Int, via: String
        let model: [String: JSONValue]?
    }

    func cases() throws -> (SafeTensorsFile, [Case]) {
        let file = try SafeTensorsFile.read(path: Self.golden)
        let json = try XCTUnwrap(file.metadata["cases"])
        return (file, try JSONDecoder().decode([Case].self, from: Data(json.utf8)))
    }

    /// |ours − timm| ≤ atol + rtol·|timm|, on failure with max abs, max rel and the worst element.
    /// PyTorch's x86 build sums the first 4·⌊(taps − 1)/4⌋ products of a window unfused (its loop is
    /// unrolled) and ViTMerge fuses every one. Measured on this golden: upsampling bit for bit,
    /// downsampling max abs 2.4e-7 (values of order 1), max rel 5.3e-7 where |timm| ≥ 0.1 (print
    /// them with VITMERGE_PRINT_ERRORS=1). Hence atol 1e-6, rtol 1e-6.
    func assertMatches(
        _ ours: [Float], _ timm: [Float], _ what: String, atol: Float = 1e-6, rtol: Float = 1e-6,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(ours.count, timm.count, what, file: file, line: line)
        var worst = (excess: Float(0), index: -1), maxAbs = Float(0), maxRel = Float(0)
        for i in 0..<min(ours.count, timm.count) {
            let err = abs(ours[i] - timm[i]), excess = err - (atol + rtol * abs(timm[i]))
            maxAbs = max(maxAbs, err)
            if abs(timm[i]) >= 0.1 { maxRel = max(maxRel, err / abs(timm[i])) }
            if excess > worst.excess || excess.isNaN { worst = (excess, i) }
        }
        if ProcessInfo.processInfo.environment["VITMERGE_PRINT_ERRORS"] != nil {
            print("\(what): max abs \(maxAbs), max rel (|timm| ≥ 0.1) \(maxRel)")
        }
        if worst.index >= 0 {
            XCTFail(
                "\(what): max abs \(maxAbs), max rel (|timm| ≥ 0.1) \(maxRel); worst [\(worst.index)] "
                    + "\(ours[worst.index]) vs \(timm[worst.index])", file: file, line: line)
        }
    }

    func testResampleMatchesTimmFunction() throws {
        let (file, all) = try cases()
        let direct = all.filter { $0.via == "resample_abs_pos_embed" }
        XCTAssertEqual(direct.count, 8)
        for c in direct {
            let inp = try file.floats(c.name + ".input"), want = try file.floats(c.name + ".output")
            var out = [Float](repeating: .nan, count: want.count)
            Bicubic.resamplePositions(
                out: &out, pos: inp, prefix: c.prefix, dim: c.dim, from: (c.from[0], c.from[1]),
                to: (c.to[0], c.to[1]))
            assertMatches(out, want, c.name)
        }
    }

    /// A config-less checkpoint made at one img_size (grid 4×4 or 7×7), loaded with the config at
    /// another (6×6 or 5×5): pos_embed is resampled as timm's checkpoint_filter_fn with its
    /// defaults, everything else is copied bit for bit.
    func testCheckpointLoadResamplesLikeTimmsFilter() throws {
        let (file, all) = try cases()
        let filtered = all.filter { $0.via == "checkpoint_filter_fn" }
        XCTAssertEqual(filtered.count, 4)
        for c in filtered {
            let m = try XCTUnwrap(c.model)
            let sizes = try XCTUnwrap(m["img_size"]?.array?.compactMap(\.int))
            func config(_ size: Int) -> ViTConfig {
                ViTConfig(
                    imageSize: size, patchSize: m["patch_size"]!.int!, inChannels: 3,
                    numClasses: m["num_classes"]!.int!,
                    embedDim: m["embed_dim"]!.int!, depth: m["depth"]!.int!, numHeads: m["num_heads"]!.int!,
                    classToken: m["class_token"]!.bool!, regTokens: m["reg_tokens"]!.int!,
                    noEmbedClass: m["no_embed_class"]!.bool!)
            }
            let before = config(sizes[0]), after = config(sizes[1])
            XCTAssertEqual([before.gridHeight, after.gridHeight], [c.from[0], c.to[0]])
            let p = ViTParameters(config: before)
            p.initialize(seed: 3)
            let pos = try file.floats(c.name + ".input")
            let region = try XCTUnwrap(p.table.layout.regions.first { $0.name == "pos_embed" })
            XCTAssertEqual(region.shape.count, pos.count, c.name)
            (p.base + region.offset).update(from: pos, count: pos.count)
            let path = NSTemporaryDirectory() + "vitmerge-resample-\(getpid())-\(c.name).safetensors"
            defer { try? FileManager.default.removeItem(atPath: path) }
            var writer = SafeTensorsWriter(metadata: ["format": "pt"])
            for r in p.table.layout.regions {
                try writer.add(
                    r.name, floats: UnsafeBufferPointer(start: p.base + r.offset, count: r.shape.count),
                    shape: r.shape.dims)
            }
            try writer.write(to: path)
            let (loaded, _) = try Checkpoint.load(file: SafeTensorsFile.read(path: path), config: after)
            XCTAssertEqual(loaded.config, after)
            let got = try XCTUnwrap(loaded["pos_embed"])
            assertMatches(
                Array(UnsafeBufferPointer(start: got.pointer, count: got.count)), try file.floats(c.name + ".output"),
                c.name)
            for r in p.table.layout.regions where r.name != "pos_embed" {
                let a = try XCTUnwrap(loaded[r.name]), b = try XCTUnwrap(p[r.name])
                XCTAssertEqual(
                    (0..<a.count).map { a.pointer[$0].bitPattern }, (0..<b.count).map { b.pointer[$0].bitPattern },
                    r.name)
            }
        }
    }

    /// Only a config from outside the file triggers resampling: one of our checkpoints whose own
    /// config disagrees with its pos_embed is an error, and so is a grid that is not square.
    func testInconsistentShapesAreStillRefused() throws {
        let small = ViTConfig(
            imageSize: 16, patchSize: 4, inChannels: 3, numClasses: 3, embedDim: 8, depth: 1, numHeads: 2)
        var large = small
        (large.imageHeight, large.imageWidth) = (24, 24)
        let p = ViTParameters(config: small)
        p.initialize(seed: 1)
        func write(_ metadata: [String: String], pos: [Float]? = nil, posShape: [Int]? = nil) throws -> String {
            let path = NSTemporaryDirectory() + "vitmerge-resample-\(getpid())-\(metadata.count).safetensors"
            var writer = SafeTensorsWriter(metadata: metadata)
            for r in p.table.layout.regions {
                if r.name == "pos_embed", let pos, let posShape {
                    try writer.add(r.name, floats: pos, shape: posShape)
                    continue
                }
                try writer.add(
                    r.name, floats: UnsafeBufferPointer(start: p.base + r.offset, count: r.shape.count),
                    shape: r.shape.dims)
            }
            try writer.write(to: path)
            return path
        }
        // The file's own config says 16×16 but pos_embed is for a 6×6 grid: refused, not resampled.
        var meta = ["config": small.json]
        let own = try write(meta, pos: [Float](repeating: 0.5, count: 37 * 8), posShape: [1, 37, 8])
        defer { try? FileManager.default.removeItem(atPath: own) }
        XCTAssertThrowsError(try Checkpoint.load(file: SafeTensorsFile.read(path: own))) {
            XCTAssertTrue("\($0)".contains("pos_embed"), "\($0)")
        }
        // 1 + 15 rows: 15 is not a square grid.
        meta = ["format": "pt", "x": "1"]
        let odd = try write(meta, pos: [Float](repeating: 0.5, count: 16 * 8), posShape: [1, 16, 8])
        defer { try? FileManager.default.removeItem(atPath: odd) }
        XCTAssertThrowsError(try Checkpoint.load(file: SafeTensorsFile.read(path: odd), config: large)) {
            XCTAssertTrue("\($0)".contains("pos_embed") && "\($0)".contains("shape"), "\($0)")
        }
    }
}
