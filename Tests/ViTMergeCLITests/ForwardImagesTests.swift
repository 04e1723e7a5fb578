import Foundation
import XCTest
import ViTMergeIO
import ViTMergeModel

/// `vitmerge forward --images`: JPEG/PNG files and directories decoded and preprocessed with the
/// checkpoint's pretrained_cfg, streamed in batches; pixels equal timm + Pillow's eval transform
/// (the committed golden) within one gray level, logits and features equal the tensor path's; bad
/// images fail naming the file and write nothing.
final class ForwardImagesTests: XCTestCase {
    static let golden = "data/images/shapes_preprocessing.safetensors"

    /// The hub fixture saved as our checkpoint with the golden's "bicubic32" preprocessing
    /// (crop_pct 0.875, bicubic, center) and the fixture's mean/std 0.5.
    func checkpoint(in dir: URL) throws -> String {
        let (params, _) = try Checkpoint.load(path: CLI.repo.appendingPathComponent("data/hub/vit_tiny_e32_d2_32").path)
        let pre = Preprocessing(
            inputSize: [3, 32, 32], interpolation: .bicubic, cropPct: 0.875, cropMode: .center, mean: [0.5, 0.5, 0.5],
            std: [0.5, 0.5, 0.5])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let path = dir.appendingPathComponent("model.safetensors").path
        try Checkpoint.save(
            params, to: path,
            metadata: [
                "architecture": "vit_tiny_patch16_224",
                "pretrained_cfg": String(decoding: try encoder.encode(pre), as: UTF8.self),
            ])
        return path
    }

    func testForwardOnImagesMatchesTimmPreprocessingAndTheTensorPath() throws {
        let exe = try CLI.binary()
        let dir = try CLI.temporaryDirectory("vitmerge-forward-images")
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try checkpoint(in: dir)
        let golden = try SafeTensorsFile.read(path: CLI.repo.appendingPathComponent(Self.golden).path)
        struct Config: Decodable {
            let name: String
            let files: [String]
        }
        let configs = try JSONDecoder().decode([Config].self, from: Data(golden.metadata["configs"]!.utf8))
        let files = try XCTUnwrap(configs.first { $0.name == "bicubic32" }).files
        let out = dir.appendingPathComponent("out.safetensors").path
        let given = files.map { "data/images/shapes/" + $0 } + ["data/images/shapes/test"]
        let r = try CLI.run(
            exe,
            ["forward", "--checkpoint", model, "--images"] + given + [
                "--output", out, "--save-pixels", "--features", "--batch-size", "4", "--threads", "2",
            ])
        XCTAssertEqual(r.status, 0, r.output)
        let f = try SafeTensorsFile.read(path: out)
        let listed = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: Data(f.metadata["files"]!.utf8)) as? [String])
        let testFiles = try FileManager.default.subpathsOfDirectory(
            atPath: CLI.repo.appendingPathComponent("data/images/shapes/test").path
        ).filter { $0.hasSuffix(".png") || $0.hasSuffix(".jpg") }.sorted().map { "data/images/shapes/test/" + $0 }
        XCTAssertEqual(listed, given.dropLast() + testFiles, "rows follow the arguments, directories in sorted order")
        let n = listed.count
        let pixels = try f.floats("pixels", shape: [n, 3, 32, 32])
        XCTAssertEqual(f.info("logits")?.shape, [n, 5])
        XCTAssertEqual(f.info("features")?.shape, [n, 32])
        // Pixels: (u8 / 255 − 0.5) / 0.5 of timm + Pillow's crop, so one gray level is 2/255.
        let size = 3 * 32 * 32
        for (i, file) in files.enumerated() {
            let want = try golden.bytes("bicubic32/\(file)", shape: [3, 32, 32])
            var worst: Float = 0
            for j in 0..<size { worst = max(worst, abs(pixels[i * size + j] - (Float(want[j]) / 255 - 0.5) / 0.5)) }
            XCTAssertLessThanOrEqual(worst, 2 / 255 + 1e-6, "\(file): max abs \(worst) against timm's pixels")
        }
        // The same pixels through --input give the same logits and features.
        var w = SafeTensorsWriter()
        try w.add("input", floats: pixels, shape: [n, 3, 32, 32])
        let input = dir.appendingPathComponent("input.safetensors").path, back = dir.appendingPathComponent("b").path
        try w.write(to: input)
        let t = try CLI.run(
            exe, ["forward", "--checkpoint", model, "--input", input, "--output", back, "--features", "--threads", "1"])
        XCTAssertEqual(t.status, 0, t.output)
        let g = try SafeTensorsFile.read(path: back)
        for name in ["logits", "features"] {
            let a = try f.floats(name), b = try g.floats(name)
            XCTAssertEqual(a.count, b.count)
            let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(worst, 1e-5, "\(name): max abs \(worst) between --images and --input")
        }
    }

    func testBadImagesFailNamingTheFileAndWriteNothing() throws {
        let exe = try CLI.binary()
        let dir = try CLI.temporaryDirectory("vitmerge-forward-bad")
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try checkpoint(in: dir)
        let images = dir.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
        let good = CLI.repo.appendingPathComponent("data/images/shapes/test/disc/000.png")
        try FileManager.default.copyItem(at: good, to: images.appendingPathComponent("a.png"))
        let bytes = try Data(contentsOf: good)
        try bytes.prefix(bytes.count / 2).write(to: images.appendingPathComponent("b.png"))
        let outDir = dir.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: outDir, withIntermediateDirectories: true)
        let out = outDir.appendingPathComponent("o.safetensors").path
        for (args, mention) in [
            (["--images", images.path], "b.png"),
            (["--images", images.path + "/a.png", dir.appendingPathComponent("missing.png").path], "missing.png"),
            (["--input", images.path + "/a.png", "--save-pixels"], "--save-pixels needs --images"),
            (["--images", outDir.path], "no .jpg, .jpeg or .png"),
        ] {
            let r = try CLI.run(exe, ["forward", "--checkpoint", model, "--output", out, "--batch-size", "1"] + args)
            XCTAssertNotEqual(r.status, 0, r.output)
            XCTAssertTrue(r.output.contains(mention), "\(args): \(r.output)")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: outDir.path), [], "\(args)")
        }
    }
}
