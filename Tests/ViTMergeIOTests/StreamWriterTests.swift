import Foundation
import XCTest
@testable import ViTMergeIO

/// `SafeTensorsStreamWriter` over `AtomicFile.Pending`: pieces written in any order give the bytes
/// `SafeTensorsWriter` writes for the same tensors; nothing is at the path before `finish`, and a
/// writer dropped before it leaves no file, temporary or final.
final class StreamWriterTests: XCTestCase {
    func testPiecesInAnyOrderEqualTheWholeFileWriter() throws {
        let dir = NSTemporaryDirectory() + "vitmerge-stream-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = (0..<12).map { Float($0) * 0.5 - 2 }, b = (0..<7).map { Float($0) + 100 }
        var whole = SafeTensorsWriter(metadata: ["files": "[\"x.png\"]", "k": "v"])
        try whole.add("logits", floats: a, shape: [3, 4])
        try whole.add("features", floats: b, shape: [7])
        try whole.add("empty", floats: [], shape: [0, 2])

        let path = dir + "/s.safetensors"
        let s = try SafeTensorsStreamWriter(
            path: path, metadata: ["k": "v", "files": "[\"x.png\"]"],
            tensors: [("logits", .f32, [3, 4]), ("features", .f32, [7]), ("empty", .f32, [0, 2])])
        try a.withUnsafeBufferPointer { p in
            try s.write("logits", floats: UnsafeBufferPointer(rebasing: p[8..<12]), at: 8)
            try s.write("logits", floats: UnsafeBufferPointer(rebasing: p[0..<8]), at: 0)
        }
        try b.withUnsafeBufferPointer { try s.write("features", floats: $0, at: 0) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path), "the file appears only at finish")
        try s.finish()
        XCTAssertEqual([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))), whole.serialized())
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["s.safetensors"])

        // Dropped before finish: no file, no temporary.
        let dropped = dir + "/d.safetensors"
        do {
            let w = try SafeTensorsStreamWriter(path: dropped, metadata: [:], tensors: [("x", .f32, [2])])
            try [Float(1), 2].withUnsafeBufferPointer { try w.write("x", floats: $0, at: 0) }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["s.safetensors"])
        XCTAssertThrowsError(
            try SafeTensorsStreamWriter(path: dir + "/no/such/dir.safetensors", metadata: [:], tensors: [])
        ) { XCTAssertTrue("\($0)".contains("cannot write"), "\($0)") }
        XCTAssertThrowsError(
            try SafeTensorsStreamWriter(
                path: dir + "/dup", metadata: [:], tensors: [("x", .f32, [1]), ("x", .f32, [2])])
        ) { XCTAssertTrue("\($0)".contains("twice"), "\($0)") }
    }
}
