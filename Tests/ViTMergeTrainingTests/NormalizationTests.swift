import XCTest
import ViTMergeIO

@testable import ViTMergeTraining

/// Batches of a task with per-channel mean/std: x = (u8 / 255 − mean) / std per channel, as torch's
/// ToTensor + Normalize; without it x = u8 / 255 as before.
final class NormalizationTests: XCTestCase {
    func testFillNormalizesEachChannel() {
        let bytes: [UInt8] = (0..<24).map { UInt8(($0 * 37) % 256) }  // 2 images × 3 channels × 2 × 2
        let mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225]
        let images = LabeledImages(
            count: 2, channels: 3, height: 2, width: 2, images: bytes, labels: [0, 1],
            normalization: Normalization(mean: mean, std: std))
        var out = [Float](repeating: .nan, count: 24)
        var labels: [Int32] = [9, 9]
        out.withUnsafeMutableBufferPointer { o in
            labels.withUnsafeMutableBufferPointer { images.fill(0..<2, input: o.baseAddress!, labels: $0.baseAddress!) }
        }
        XCTAssertEqual(labels, [0, 1])
        for i in 0..<24 {
            let c = (i / 4) % 3
            let expected = (Double(bytes[i]) / 255 - Double(mean[c])) / Double(std[c])
            XCTAssertEqual(Double(out[i]), expected, accuracy: 1e-5, "element \(i), channel \(c)")
        }
        // The validation split drawn from train keeps the normalization.
        XCTAssertEqual(images.take([1]).normalization, images.normalization)
        // Without normalization: u8 / 255.
        let plain = LabeledImages(count: 2, channels: 3, height: 2, width: 2, images: bytes, labels: [0, 1])
        out.withUnsafeMutableBufferPointer { plain.fill(0..<2, input: $0.baseAddress!, labels: nil) }
        for i in 0..<24 { XCTAssertEqual(Double(out[i]), Double(bytes[i]) / 255, accuracy: 1e-7) }
    }

    func testImageFoldersTakeThePreprocessingsNormalization() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let folder = repo.appendingPathComponent("data/images/shapes").path
        var clip = Preprocessing.clip
        clip.inputSize = [3, 16, 16]
        let task = try TaskDataset.load(path: folder, preprocessing: clip)
        XCTAssertEqual(task.train.normalization, Normalization(mean: clip.mean, std: clip.std))
        XCTAssertEqual(task.test.normalization, task.train.normalization)
        var identity = clip
        (identity.mean, identity.std) = ([0, 0, 0], [1, 1, 1])
        let unit = try TaskDataset.load(path: folder, preprocessing: identity)
        XCTAssertNil(unit.train.normalization, "mean 0 / std 1 is the plain u8 / 255 path")
        XCTAssertEqual(unit.train.images, task.train.images, "normalization happens at batch time, not in the bytes")
    }
}
