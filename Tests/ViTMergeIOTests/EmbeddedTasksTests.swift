import Foundation
import XCTest
import ViTMergeIO

/// The committed task files (data/tasks/*.safetensors, written by scripts/prepare_data.py) as the
/// Swift loader sees them: enough tasks, a test split large enough to measure one accuracy point,
/// MNIST geometry, every class present, and no image shared between tasks or with pre-training.
final class EmbeddedTasksTests: XCTestCase {
    static let data = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("data")
    /// Tasks whose source has fewer than 50 test images per class (name → minimum test size); none at present.
    static let smallTestExceptions: [String: Int] = [:]

    func taskPaths() throws -> [String] {
        let dir = Self.data.appendingPathComponent("tasks")
        return try FileManager.default.contentsOfDirectory(atPath: dir.path)
            .filter { $0.hasSuffix(".safetensors") }.sorted().map { dir.appendingPathComponent($0).path }
    }

    func testEveryTaskLoadsWithEnoughTestImagesAndAllClasses() throws {
        let paths = try taskPaths()
        XCTAssertGreaterThanOrEqual(paths.count, 8, "data/tasks holds \(paths.count) tasks: \(paths)")
        var names = Set<String>()
        for path in paths {
            let task = try TaskDataset.load(path: path)
            names.insert(task.name)
            XCTAssertFalse(task.source.isEmpty, "\(task.name): metadata 'source' is empty")
            XCTAssertFalse(task.license.isEmpty, "\(task.name): metadata 'license' is empty")
            XCTAssertGreaterThanOrEqual(task.classes.count, 2, task.name)
            XCTAssertEqual(Set(task.classes).count, task.classes.count, "\(task.name): repeated class names")
            XCTAssertFalse(task.classes.contains(""), "\(task.name): empty class name")
            let minTest = Self.smallTestExceptions[task.name] ?? 500
            XCTAssertGreaterThanOrEqual(task.test.count, minTest, "\(task.name): test split")
            XCTAssertGreaterThan(task.train.count, 0, "\(task.name): train split")
            for (split, s) in [("train", task.train), ("test", task.test)] {
                XCTAssertEqual([s.channels, s.height, s.width], [1, 28, 28], "\(task.name).\(split)")
                XCTAssertEqual(s.images.count, s.count * 784, "\(task.name).\(split)")
                XCTAssertEqual(s.labels.count, s.count, "\(task.name).\(split)")
                var perClass = [Int](repeating: 0, count: task.classes.count)
                for l in s.labels {
                    XCTAssert(l >= 0 && Int(l) < task.classes.count, "\(task.name).\(split): label \(l)")
                    if l >= 0 && Int(l) < perClass.count { perClass[Int(l)] += 1 }
                }
                for (c, n) in perClass.enumerated() where n == 0 {
                    XCTFail("\(task.name).\(split): class \(task.classes[c]) has no image")
                }
                if split == "test" && Self.smallTestExceptions[task.name] == nil {
                    XCTAssertGreaterThanOrEqual(
                        perClass.min() ?? 0, min(50, 500 / task.classes.count), "\(task.name): test images per class")
                }
            }
        }
        XCTAssertEqual(names.count, paths.count)
    }

    /// FNV-1a (64 bit) of one image's bytes; equal hashes are confirmed byte by byte below.
    func fnv1a(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return h
    }

    func testNoImageIsSharedBetweenTasksSplitsOrPretraining() throws {
        var files = try taskPaths()
        files.append(Self.data.appendingPathComponent("pretrain/glyphs.safetensors").path)
        var seen: [UInt64: [(where: String, image: ArraySlice<UInt8>)]] = [:]
        var duplicates: [String] = []
        var total = 0
        for path in files {
            let task = try TaskDataset.load(path: path)
            for (split, s) in [("train", task.train), ("test", task.test)] {
                let size = s.channels * s.height * s.width
                for i in 0..<s.count {
                    let image = s.images[(i * size)..<((i + 1) * size)]
                    let here = "\(task.name).\(split)[\(i)]"
                    let h = fnv1a(image)
                    if let earlier = seen[h]?.first(where: { $0.image.elementsEqual(image) }) {
                        duplicates.append("\(here) = \(earlier.where)")
                    }
                    seen[h, default: []].append((here, image))
                    total += 1
                }
            }
        }
        XCTAssertGreaterThan(total, 8 * 500)
        XCTAssertTrue(
            duplicates.isEmpty, "\(duplicates.count) images occur twice, e.g. \(duplicates.prefix(5))")
    }
}
