import Foundation
import Synchronization
import ViTMergeCore
import XCTest

@testable import ViTMergeIO

/// Image-folder layout, bad inputs (typed errors, nothing written), the cache and thread counts.
final class ImageFolderTests: XCTestCase {
    static let task = ImageFolderGoldenTests.task
    static let pre = Preprocessing(
        inputSize: [3, 32, 32], interpolation: .bicubic, cropPct: 0.875, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5])

    var dirs: [String] = []
    override func tearDown() { for d in dirs { try? FileManager.default.removeItem(atPath: d) } }

    /// A copy of the committed task in a temporary directory.
    func copyTask() throws -> String {
        let d = NSTemporaryDirectory() + "vitmerge-images-\(getpid())-\(UUID().uuidString)"
        dirs.append(d)
        try FileManager.default.copyItem(atPath: Self.task, toPath: d)
        return d
    }

    func assertLoadFails(_ dir: String, mentions: [String], file: StaticString = #filePath, line: UInt = #line) {
        let cache = dir + "-cache"
        dirs.append(cache)
        XCTAssertThrowsError(
            try TaskDataset.load(imageFolder: dir, preprocessing: Self.pre, cache: cache), file: file, line: line
        ) { error in
            XCTAssertTrue(error is IOError, "\(error)", file: file, line: line)
            for m in mentions {
                XCTAssertTrue("\(error)".contains(m), "'\(m)' not in: \(error)", file: file, line: line)
            }
        }
        let written = (try? FileManager.default.contentsOfDirectory(atPath: cache)) ?? []
        XCTAssertEqual(written, [], "nothing may be written on error", file: file, line: line)
    }

    func testScanLayout() throws {
        let folder = try ImageFolder.scan(Self.task)
        XCTAssertEqual(folder.classes, ["disc", "square", "stripes"])
        XCTAssertEqual(folder.train.files.count, 24)
        XCTAssertEqual(folder.test.files.count, 12)
        XCTAssertNil(folder.validation)
        XCTAssertEqual(folder.train.labels, (0..<3).flatMap { [Int32](repeating: Int32($0), count: 8) })
        XCTAssertTrue(folder.train.files[0].hasSuffix("train/disc/000.jpg"))
    }

    func testLoadShapesTask() throws {
        let task = try TaskDataset.load(path: Self.task, preprocessing: Self.pre)
        XCTAssertEqual(task.name, "shapes")
        XCTAssertEqual([task.train.count, task.train.channels, task.train.height, task.train.width], [24, 3, 32, 32])
        XCTAssertEqual(task.test.count, 12)
        XCTAssertThrowsError(try TaskDataset.load(path: Self.task, preprocessing: nil)) {
            XCTAssertTrue("\($0)".contains("preprocessing"), "\($0)")
        }
    }

    func testTruncatedAndCorruptImages() throws {
        for (file, cut) in [("train/disc/000.jpg", 2000), ("train/disc/003.png", 300)] {
            let d = try copyTask(), path = d + "/" + file
            let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            try bytes.prefix(cut).write(to: URL(fileURLWithPath: path))
            assertLoadFails(d, mentions: [path, "truncated"])
        }
        let d = try copyTask(), path = d + "/test/square/001.png"
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        for i in 60..<min(bytes.count - 20, 200) { bytes[i] ^= 0x5A }  // inside IDAT: bad CRC / zlib data
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        assertLoadFails(d, mentions: [path, "cannot decode"])
    }

    func testUnsupportedFormats() throws {
        // A GIF named .png (magic bytes), a .gif file, a CMYK JPEG and a 16-bit gray PNG.
        var d = try copyTask()
        try Data("GIF89a\u{1}\u{0}\u{1}\u{0}".utf8).write(to: URL(fileURLWithPath: d + "/train/disc/000.png"))
        assertLoadFails(d, mentions: ["train/disc/000.png", "GIF"])
        d = try copyTask()
        try Data("GIF89a".utf8).write(to: URL(fileURLWithPath: d + "/test/disc/x.gif"))
        assertLoadFails(d, mentions: ["x.gif", "GIF"])
        for (name, hex) in [("cmyk.jpg", Self.cmykJPEG), ("gray16.png", Self.gray16PNG)] {
            d = try copyTask()
            try Data(Self.bytes(hex: hex)).write(to: URL(fileURLWithPath: d + "/train/square/" + name))
            assertLoadFails(d, mentions: [name, "unsupported"])
        }
    }

    func testLayoutErrors() throws {
        var d = try copyTask()
        try FileManager.default.removeItem(atPath: d + "/test")
        assertLoadFails(d, mentions: ["no test/ folder"])
        d = try copyTask()
        try FileManager.default.createDirectory(atPath: d + "/train/empty", withIntermediateDirectories: false)
        assertLoadFails(d, mentions: ["train/empty", "no .jpg"])
        d = try copyTask()
        try FileManager.default.moveItem(atPath: d + "/test/stripes", toPath: d + "/test/zigzag")
        assertLoadFails(d, mentions: ["different classes", "stripes", "zigzag"])
    }

    func testCacheHitEqualsFreshDecodeAndChangesInvalidate() throws {
        let d = try copyTask(), cache = d + "-cache"
        dirs.append(cache)
        // A whole-second mtime, which setAttributes can restore exactly.
        let victim = d + "/train/disc/000.jpg", mtime = Date(timeIntervalSince1970: 1_700_000_000)
        try FileManager.default.setAttributes([.modificationDate: mtime], ofItemAtPath: victim)
        let fresh = try TaskDataset.load(imageFolder: d, preprocessing: Self.pre)
        let first = try TaskDataset.load(imageFolder: d, preprocessing: Self.pre, cache: cache)
        let files = try FileManager.default.contentsOfDirectory(atPath: cache)
        XCTAssertEqual(files.count, 1)
        // Change pixels but keep size and mtime: a cache hit does not decode, so it returns the old pixels.
        var poisoned = try Data(contentsOf: URL(fileURLWithPath: victim))
        poisoned[100] ^= 0xFF
        try poisoned.write(to: URL(fileURLWithPath: victim))
        try FileManager.default.setAttributes([.modificationDate: mtime], ofItemAtPath: victim)
        let hit = try TaskDataset.load(imageFolder: d, preprocessing: Self.pre, cache: cache)
        for t in [first, hit] {
            XCTAssertTrue(t.train == fresh.train && t.test == fresh.test, "cached images differ from a fresh decode")
            XCTAssertEqual(t.classes, fresh.classes)
            XCTAssertEqual(t.name, fresh.name)
        }
        // Another preprocessing is another entry; a touched file re-decodes.
        var other = Self.pre
        other.interpolation = .bilinear
        let bilinear = try TaskDataset.load(imageFolder: d, preprocessing: other, cache: cache)
        XCTAssertTrue(bilinear.train.images != fresh.train.images)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: cache).count, 2)
        try FileManager.default.setAttributes([.modificationDate: Date()], ofItemAtPath: victim)
        let redecoded = try TaskDataset.load(imageFolder: d, preprocessing: Self.pre, cache: cache)
        XCTAssertTrue(redecoded.train.images != fresh.train.images, "a touched file must be decoded again")
    }

    func testOneAndTwoThreadsIdentical() throws {
        let files = try ImageFolder.scan(Self.task).train.files
        let one = try ImageFolder.decode(files, preprocessing: Self.pre, pool: ThreadPool(threads: 1))
        let pool2 = ThreadPool(threads: 2)
        XCTAssertEqual(pool2.threads, 2)
        let counter = Counter()
        let two = try ImageFolder.decode(files, preprocessing: Self.pre, pool: pool2) { done, total in
            counter.record(done, total)
        }
        XCTAssertTrue(one == two, "1 and 2 threads differ")
        XCTAssertEqual(counter.calls.withLock { $0 }, Array(1...files.count))
    }

    final class Counter: Sendable {
        let calls = Mutex<[Int]>([])
        func record(_ done: Int, _ total: Int) { calls.withLock { $0.append(done) } }
    }

    static func bytes(hex: String) -> [UInt8] {
        var out: [UInt8] = [], it = hex.makeIterator()
        while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
        return out
    }
}

extension ImageFolderTests {
    /// An 8×8 CMYK JPEG written by Pillow.
    static let cmykJPEG = [
        "ffd8ffee000e41646f626500640000000000ffdb004300080606070605080707070909080a0c140d0c0b0b0c1912130f",
        "141d1a1f1e1d1a1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ffc000140800080008",
        "044311004d11005911004b1100ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc4",
        "00b5100002010303020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c115",
        "52d1f02433627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a63646566",
        "6768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2",
        "c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda000e0443004d005900",
        "4b00003f00f75af6baf61af57affd9",
    ].joined()
    /// A 4×4 16-bit grayscale PNG.
    static let gray16PNG = [
        "89504e470d0a1a0a0000000d4948445200000004000000041000000000dc0a1de10000000f49444154789c6310328140",
        "06dc0c004dd40461409480a20000000049454e44ae426082",
    ].joined()
}
