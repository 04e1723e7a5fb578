import Foundation
import XCTest
@testable import ViTMergeIO

final class IDXTests: XCTestCase {
    func tmpDir() throws -> String {
        let d = NSTemporaryDirectory() + "vitmerge-idx-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    func idx(_ shape: [Int], _ data: [UInt8], type: UInt8 = 0x08) -> [UInt8] {
        var out: [UInt8] = [0, 0, type, UInt8(shape.count)]
        for d in shape { out += [UInt8(d >> 24 & 0xff), UInt8(d >> 16 & 0xff), UInt8(d >> 8 & 0xff), UInt8(d & 0xff)] }
        return out + data
    }

    func gzip(_ path: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["gzip", "-f", path]
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
    }

    func testReadsRawAndGzipTaskDirectory() throws {
        let dir = try tmpDir()
        let trainPixels = (0..<(3 * 5 * 7)).map { UInt8($0 % 256) }
        FileManager.default.createFile(
            atPath: "\(dir)/train-images-idx3-ubyte", contents: Data(idx([3, 5, 7], trainPixels)))
        FileManager.default.createFile(atPath: "\(dir)/train-labels-idx1-ubyte", contents: Data(idx([3], [2, 0, 1])))
        FileManager.default.createFile(
            atPath: "\(dir)/t10k-images-idx3-ubyte", contents: Data(idx([2, 5, 7], Array(trainPixels[0..<70]))))
        FileManager.default.createFile(atPath: "\(dir)/t10k-labels-idx1-ubyte", contents: Data(idx([2], [4, 1])))
        try gzip("\(dir)/train-images-idx3-ubyte")
        try gzip("\(dir)/t10k-labels-idx1-ubyte")
        let task = try TaskDataset.open(path: dir)
        XCTAssertEqual(task.train.count, 3)
        XCTAssertEqual([task.train.channels, task.train.height, task.train.width], [1, 5, 7])
        XCTAssertEqual(task.train.images, trainPixels)
        XCTAssertEqual(task.train.labels, [2, 0, 1])
        XCTAssertEqual(task.test.labels, [4, 1])
        XCTAssertEqual(task.classes, ["0", "1", "2", "3", "4"])
    }

    func assertInvalid(_ bytes: [UInt8], mentions: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try IDX.parse(bytes, path: "x.idx"), file: file, line: line) { error in
            XCTAssertTrue(
                "\(error)".contains(mentions), "error '\(error)' should mention '\(mentions)'", file: file, line: line)
        }
    }

    func testBadFilesGetTypedErrors() throws {
        assertInvalid([0, 0], mentions: "too short")
        assertInvalid([1, 0, 8, 1, 0, 0, 0, 0], mentions: "magic")
        assertInvalid(idx([2], [1, 2], type: 0x0D), mentions: "not unsigned byte")
        assertInvalid([0, 0, 8, 0], mentions: "rank 0")
        assertInvalid([0, 0, 8, 3, 0, 0, 0, 1], mentions: "ends inside")
        assertInvalid(idx([2, 3], [1, 2, 3]), mentions: "need 6 data bytes but the file has 3")
        assertInvalid(idx([65_536, 65_536, 2], []), mentions: "exceed")
        XCTAssertEqual(try IDX.parse(idx([2, 2], [1, 2, 3, 4]), path: "x").shape, [2, 2])

        let dir = try tmpDir()
        FileManager.default.createFile(atPath: "\(dir)/a.idx", contents: Data(idx([4], [1, 2, 3, 4])))
        try gzip("\(dir)/a.idx")
        var gz = [UInt8](FileManager.default.contents(atPath: "\(dir)/a.idx.gz")!)
        gz.removeLast(12)
        FileManager.default.createFile(atPath: "\(dir)/b.idx.gz", contents: Data(gz))
        XCTAssertThrowsError(try IDX.read(path: "\(dir)/b.idx.gz")) {
            XCTAssertTrue("\($0)".contains("truncated"), "\($0)")
        }
        XCTAssertEqual(try IDX.read(path: "\(dir)/a.idx.gz").data, [1, 2, 3, 4])
        XCTAssertThrowsError(try TaskDataset.open(path: dir)) {
            XCTAssertTrue("\($0)".contains("train-images-idx3-ubyte"), "\($0)")
        }
    }
}
