import Foundation
import XCTest
import ViTMergeCore
@testable import ViTMergeIO

final class SafeTensorsTests: XCTestCase {
    func tmp(_ name: String) -> String { NSTemporaryDirectory() + "vitmerge-io-\(getpid())-\(name)" }

    /// A header-only file built by hand: 8-byte length, JSON, data.
    func file(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) -> [UInt8] {
        let h = Array(header.utf8)
        var n = declaredLength ?? UInt64(h.count)
        var out: [UInt8] = []
        for _ in 0..<8 { out.append(UInt8(n & 0xff)); n >>= 8 }
        return out + h + data
    }

    func assertInvalid(_ bytes: [UInt8], mentions: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafeTensorsFile(bytes: bytes, path: "x.safetensors"), file: file, line: line) {
            error in
            XCTAssertTrue(
                "\(error)".contains(mentions), "error '\(error)' should mention '\(mentions)'", file: file, line: line)
        }
    }

    func testRoundTripAllDtypesScalarsAndEmptyTensors() throws {
        var w = SafeTensorsWriter(metadata: ["config": "{\"a\": 1}", "quote\"key": "line\nbreak"])
        try w.add("b.floats", floats: [1, -2.5, .infinity, 4, 5, 6], shape: [2, 3])
        try w.add("a.ints", int64s: [-1, 1 << 40], shape: [2])
        try w.add("c.bytes", bytes: [0, 255, 7], shape: [3, 1])
        try w.add("d.scalar", floats: [3.5], shape: [])
        try w.add("e.empty", floats: [], shape: [0, 4])
        let bytes = w.serialized()
        XCTAssertEqual((8 + Int(bytes[0]) + Int(bytes[1]) << 8) % 8, 0, "data section must start 8-aligned")
        let f = try SafeTensorsFile(bytes: bytes, path: "mem")
        XCTAssertEqual(f.names, ["a.ints", "b.floats", "c.bytes", "d.scalar", "e.empty"])
        XCTAssertEqual(try f.floats("b.floats", shape: [2, 3]), [1, -2.5, .infinity, 4, 5, 6])
        XCTAssertEqual(try f.int64s("a.ints"), [-1, 1 << 40])
        XCTAssertEqual(try f.bytes("c.bytes"), [0, 255, 7])
        XCTAssertEqual(try f.scalar("d.scalar"), 3.5)
        XCTAssertEqual(try f.floats("e.empty"), [])
        XCTAssertEqual(f.metadata["quote\"key"], "line\nbreak")
        XCTAssertThrowsError(try w.add("b.floats", floats: [1], shape: [1])) {
            XCTAssertTrue("\($0)".contains("twice"))
        }
    }

    func testAtomicWriteLeavesNoTemporaryFile() throws {
        let path = tmp("atomic.safetensors")
        defer { try? FileManager.default.removeItem(atPath: path) }
        var w = SafeTensorsWriter()
        try w.add("x", floats: [1, 2], shape: [2])
        try w.write(to: path)
        try w.write(to: path)
        let dir = (path as NSString).deletingLastPathComponent
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir).filter {
            $0.contains((path as NSString).lastPathComponent + ".tmp-")
        }
        XCTAssertEqual(leftovers, [])
        XCTAssertEqual(try SafeTensorsFile.read(path: path).floats("x"), [1, 2])
        XCTAssertThrowsError(try w.write(to: "/nonexistent-dir/x.safetensors")) {
            XCTAssertTrue("\($0)".contains("cannot write"))
        }
    }

    func testMalformedFilesGiveTypedErrors() {
        assertInvalid([1, 2, 3], mentions: "shorter than the 8-byte")
        assertInvalid(file(header: "{}", declaredLength: 1 << 40), mentions: "header length")
        assertInvalid(file(header: "{not json"), mentions: "not valid JSON")
        assertInvalid(file(header: "[1, 2]"), mentions: "not a JSON object")
        assertInvalid(
            file(header: #"{"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"#, data: [0, 0, 0, 0]),
            mentions: "'t'")
        assertInvalid(
            file(
                header: #"{"t": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#,
                data: [UInt8](repeating: 0, count: 8)), mentions: "needs 12")
        assertInvalid(
            file(header: #"{"t": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}"#, data: [0, 0]),
            mentions: "F8_E4M3")
        assertInvalid(
            file(header: #"{"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}"#, data: [0, 0, 0, 0]),
            mentions: "invalid dimension")
        assertInvalid(
            file(header: #"{"t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}"#, data: [0, 0, 0, 0]),
            mentions: "data_offsets")
        assertInvalid(
            file(header: #"{"t": {"dtype": "F32", "shape": [1]}}"#, data: [0, 0, 0, 0]), mentions: "data_offsets")
        assertInvalid(
            file(
                header:
                    #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "#
                    + #""b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}"#,
                data: [UInt8](repeating: 0, count: 8)), mentions: "overlap")
        assertInvalid(file(header: #"{"__metadata__": {"k": 3}}"#), mentions: "not a string")
        assertInvalid(
            file(
                header: #"{"t": {"dtype": "F32", "shape": [1048576, 1048576], "data_offsets": [0, 4]}}"#,
                data: [0, 0, 0, 0]),
            mentions: "larger than the file")
    }

    func testRequestsForMissingOrMismatchedTensorsNameThem() throws {
        var w = SafeTensorsWriter()
        try w.add("blocks.0.attn.qkv.weight", floats: [Float](repeating: 0, count: 6), shape: [3, 2])
        let f = try SafeTensorsFile(bytes: w.serialized(), path: "ckpt.safetensors")
        XCTAssertThrowsError(try f.floats("head.weight")) {
            XCTAssertTrue("\($0)".contains("no tensor 'head.weight'") && "\($0)".contains("blocks.0.attn.qkv.weight"))
        }
        XCTAssertThrowsError(try f.floats("blocks.0.attn.qkv.weight", shape: [2, 3])) {
            XCTAssertTrue("\($0)".contains("shape [3, 2], expected [2, 3]"), "\($0)")
        }
        XCTAssertThrowsError(try f.int64s("blocks.0.attn.qkv.weight")) { XCTAssertTrue("\($0)".contains("dtype F32")) }
    }

    func testTruncatedRealFileIsRejected() throws {
        var w = SafeTensorsWriter()
        try w.add("x", floats: [Float](repeating: 1, count: 100), shape: [100])
        let bytes = w.serialized()
        for cut in [5, 20, bytes.count - 1] {
            XCTAssertThrowsError(try SafeTensorsFile(bytes: Array(bytes.prefix(cut)), path: "t"), "cut at \(cut)")
        }
    }
}
