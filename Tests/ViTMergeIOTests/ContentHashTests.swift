import Foundation
import XCTest
import ViTMergeIO

final class ContentHashTests: XCTestCase {
    func hash(_ bytes: [UInt8]) -> String { bytes.withUnsafeBytes { ContentHash.sha256Hex($0) } }

    /// FIPS 180-4 / NIST CAVP examples: empty, "abc", the 448-bit message, one million 'a'.
    func testNISTVectors() {
        XCTAssertEqual(hash([]), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(hash(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(
            hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(
            hash([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Lengths around the 64-byte block and the 56-byte padding boundary, against coreutils' sha256sum.
    func testBlockBoundariesMatchSha256sum() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vitmerge-hash-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for n in [1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 4097] {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }
            let path = dir.appendingPathComponent("\(n).bin")
            try Data(bytes).write(to: path)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["sha256sum", path.path]
            let pipe = Pipe()
            p.standardOutput = pipe
            try p.run()
            let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, "sha256sum failed")
            XCTAssertEqual(hash(bytes), String(out.prefix(64)), "\(n) bytes")
        }
    }
}
