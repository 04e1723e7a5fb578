import Foundation
import XCTest

@testable import ViTMergeIO

/// Small files that claim or inflate to huge sizes are refused with a typed error before the memory is
/// allocated: gzip IDX files (bounded by the IDX header) and PNG/JPEG headers (bounded by the pixel limit).
final class DecompressionBombTests: XCTestCase {
    func idx(_ shape: [Int], _ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0, 0, 0x08, UInt8(shape.count)]
        for d in shape { out += [UInt8(d >> 24 & 0xff), UInt8(d >> 16 & 0xff), UInt8(d >> 8 & 0xff), UInt8(d & 0xff)] }
        return out + data
    }

    /// `bytes` compressed by the gzip tool.
    func gzip(_ bytes: [UInt8]) throws -> [UInt8] {
        let path = NSTemporaryDirectory() + "vitmerge-bomb-\(getpid())-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path + ".gz") }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["gzip", "-9", "-f", path]
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path + ".gz")))
    }

    func assertRefused(_ gz: [UInt8], mentions: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try IDX.decode(gz, path: "bomb.gz"), file: file, line: line) { error in
            guard case IOError.invalidFile(let path, let reason, _) = error else {
                return XCTFail("not a typed invalidFile error: \(error)", file: file, line: line)
            }
            XCTAssertEqual(path, "bomb.gz", file: file, line: line)
            XCTAssertTrue(reason.contains(mentions), "'\(reason)' should mention '\(mentions)'", file: file, line: line)
        }
    }

    func testGzipIDXInflatingPastItsHeaderIsStoppedThere() throws {
        // 16 declared bytes (8 of header, 8 of data), then 16 MiB of zeros (about 16 KiB compressed).
        let gz = try gzip(idx([8], [UInt8](repeating: 0, count: 16 << 20)))
        XCTAssertLessThan(gz.count, 1 << 15)
        assertRefused(gz, mentions: "more than the 16 bytes its header declares")
        XCTAssertEqual(try IDX.decode(try gzip(idx([3], [1, 2, 3])), path: "ok.gz").data, [1, 2, 3])
    }

    func testGzipIDXHeaderClaimingMoreThanItsStreamCanHoldIsRefused() throws {
        // 1 GiB declared (the limit itself) in a stream of a few dozen bytes.
        assertRefused(try gzip(idx([16_384, 16_384, 4], [0, 0, 0])), mentions: "compressed bytes can hold")
        assertRefused(try gzip(idx([65_536, 65_536, 2], [])), mentions: "exceed")
        assertRefused(try gzip([1, 0, 8, 1] + [UInt8](repeating: 0, count: 1 << 20)), mentions: "magic")
        assertRefused(try gzip([0, 0, 8, 3, 0, 0]), mentions: "ends inside")
    }

    // MARK: Images

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = c & 1 == 1 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        }
        return ~c
    }

    /// A PNG with an IHDR (8-bit RGB, `width`×`height`), an empty IDAT and an IEND, CRCs correct.
    static func pngHeader(width: UInt32, height: UInt32) -> [UInt8] {
        func be(_ v: UInt32) -> [UInt8] { [24, 16, 8, 0].map { UInt8(v >> $0 & 0xff) } }
        func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
            let body = Array(type.utf8) + data
            return be(UInt32(data.count)) + body + be(crc32(body))
        }
        return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
            + chunk("IHDR", be(width) + be(height) + [8, 2, 0, 0, 0])
            + chunk("IDAT", []) + chunk("IEND", [])
    }

    func assertImageRefused(
        _ bytes: [UInt8], _ isExpected: (IOError) -> Bool, mentions: String, file: StaticString = #filePath,
        line: UInt = #line
    ) {
        XCTAssertThrowsError(try RGBImage.decode(bytes, path: "bomb"), file: file, line: line) { error in
            let e = error as? IOError
            XCTAssertTrue(e.map(isExpected) ?? false, "unexpected error: \(error)", file: file, line: line)
            XCTAssertTrue(
                "\(error)".contains(mentions), "'\(error)' should mention '\(mentions)'", file: file, line: line)
        }
    }

    func isUnsupported(_ e: IOError) -> Bool { if case .unsupportedImage = e { true } else { false } }
    func isInvalid(_ e: IOError) -> Bool { if case .invalidImage = e { true } else { false } }

    func testPNGHeaderClaimingTooManyPixelsIsRefused() {
        // 20000×20000 is 4·10^8 pixels (over 2^28) within libpng's 65536 per side; 70000 is over that.
        let huge = Self.pngHeader(width: 20_000, height: 20_000)
        assertImageRefused(huge, isUnsupported, mentions: "20000×20000 pixels")
        assertImageRefused(Self.pngHeader(width: 70_000, height: 1), isInvalid, mentions: "IHDR")
        // The same header at a small size gets past IHDR and fails only for the missing image data.
        assertImageRefused(Self.pngHeader(width: 4, height: 4), isInvalid, mentions: "cannot decode")
    }

    func testJPEGHeaderClaimingTooManyPixelsIsRefused() throws {
        let path = repo + "/data/images/shapes/test/disc/001.jpg"
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        // The start-of-frame marker (FFC0…FFC2): length(2) precision(1) height(2) width(2).
        let sof = try XCTUnwrap(
            (2..<(bytes.count - 9)).first { bytes[$0] == 0xFF && (0xC0...0xC2).contains(bytes[$0 + 1]) })
        for o in [sof + 5, sof + 7] { (bytes[o], bytes[o + 1]) = (0xFD, 0xE8) }  // 65000
        assertImageRefused(bytes, isUnsupported, mentions: "65000×65000 pixels")
    }

    let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
}
