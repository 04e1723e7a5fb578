import Foundation
import XCTest

@testable import ViTMergeIO

/// Parity with timm's eval transform on Pillow (scripts/make_image_golden.py): every golden crop
/// within one gray level per pixel. VITMERGE_IMAGE_GOLDEN=<file> checks a larger golden made with
/// `make_image_golden.py --full`.
final class ImageFolderGoldenTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let task = root.appendingPathComponent("data/images/shapes").path

    struct Config: Decodable {
        let name: String
        let input_size: [Int]
        let interpolation: String
        let crop_pct: Double
        let crop_mode: String
        let files: [String]
    }

    func testGoldenParity() throws {
        let path =
            ProcessInfo.processInfo.environment["VITMERGE_IMAGE_GOLDEN"]
            ?? Self.root.appendingPathComponent("data/images/shapes_preprocessing.safetensors").path
        let golden = try SafeTensorsFile.read(path: path)
        let configs = try JSONDecoder().decode([Config].self, from: Data(golden.metadata["configs"]!.utf8))
        var compared = 0, exact = 0, pixels = 0, offByOne = 0
        for c in configs {
            let pre = Preprocessing(
                inputSize: c.input_size, interpolation: try XCTUnwrap(.init(rawValue: c.interpolation)),
                cropPct: c.crop_pct, cropMode: try XCTUnwrap(.init(rawValue: c.crop_mode)),
                mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])
            for f in c.files {
                let file = f.hasPrefix("/") ? f : Self.task + "/" + f
                let ours = pre.evalCrop(try RGBImage.read(path: file))
                let theirs = try golden.bytes("\(c.name)/\(f)", shape: [3] + c.input_size.dropFirst())
                var worst = 0, worstAt = 0, diffs = 0
                for i in 0..<ours.count {
                    let d = abs(Int(ours[i]) - Int(theirs[i]))
                    if d > 0 { diffs += 1 }
                    if d > worst { (worst, worstAt) = (d, i) }
                }
                XCTAssertLessThanOrEqual(
                    worst, 1,
                    "\(c.name) \(f): max abs \(worst) at [c,y,x] index \(worstAt) (ours \(ours[worstAt]), "
                        + "timm \(theirs[worstAt])); \(diffs) of \(ours.count) values differ")
                compared += 1
                pixels += ours.count
                offByOne += diffs
                if diffs == 0 { exact += 1 } else { print("image golden: \(c.name) \(f): \(diffs) values differ by 1") }
            }
        }
        XCTAssertGreaterThanOrEqual(compared, 12)
        print("image golden: \(compared) crops, \(exact) bit-identical, \(offByOne) of \(pixels) values differ by 1")
    }

    /// torchvision's CenterCrop offsets: Python's round half to even, zero padding when smaller.
    func testCenterCropOrigin() {
        XCTAssertEqual(Preprocessing.centerCropOrigin(size: 249, crop: 224), 12)  // round(12.5) = 12
        XCTAssertEqual(Preprocessing.centerCropOrigin(size: 251, crop: 224), 14)  // round(13.5) = 14
        XCTAssertEqual(Preprocessing.centerCropOrigin(size: 248, crop: 224), 12)
        XCTAssertEqual(Preprocessing.centerCropOrigin(size: 40, crop: 48), -4)
        XCTAssertEqual(Preprocessing.centerCropOrigin(size: 41, crop: 48), -3)
    }
}
