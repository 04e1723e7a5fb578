import Foundation
import XCTest
import ViTMergeCore
@testable import ViTMergeIO
import ViTMergeModel

/// F16 and BF16 tensors (hub checkpoints are often stored in half precision) are widened to Float32
/// exactly; other dtypes stay refused with a message naming them.
final class HalfFloatTests: XCTestCase {
    func tmp(_ name: String) -> String { NSTemporaryDirectory() + "vitmerge-half-\(getpid())-\(name)" }

    func testKnownF16BitPatterns() {
        let cases: [(UInt16, UInt32)] = [
            (0x3C00, 0x3F80_0000),  // 1
            (0xC000, 0xC000_0000),  // −2
            (0x3555, 0x3EAA_A000),  // 0.33325195…
            (0x7BFF, 0x477F_E000),  // 65504, the largest finite
            (0x0400, 0x3880_0000),  // 2^−14, the smallest normal
            (0x03FF, 0x387F_C000),  // the largest subnormal, 1023 · 2^−24
            (0x0001, 0x3380_0000),  // 2^−24, the smallest subnormal
            (0x8001, 0xB380_0000),  // −2^−24
            (0x0000, 0x0000_0000), (0x8000, 0x8000_0000),  // ±0
            (0x7C00, 0x7F80_0000), (0xFC00, 0xFF80_0000),  // ±∞
            (0x7E00, 0x7FC0_0000), (0xFE01, 0xFFC0_2000),  // NaNs: payload shifted, sign kept
            (0x7C01, 0x7F80_2000),  // a signaling NaN stays one
        ]
        for (h, f) in cases {
            XCTAssertEqual(
                HalfFloat.float(f16: h).bitPattern, f,
                "F16 0x\(String(h, radix: 16)) → 0x\(String(HalfFloat.float(f16: h).bitPattern, radix: 16))")
        }
    }

    func testKnownBF16BitPatterns() {
        let cases: [(UInt16, Float)] = [
            (0x3F80, 1), (0xC0A0, -5), (0x4049, 3.140625), (0x7F7F, 0x1.FEp127), (0x0080, 0x1p-126),
            (0x0001, 0x1p-133), (0x8000, -0.0), (0x7F80, .infinity), (0xFF80, -.infinity),
        ]
        for (b, f) in cases {
            XCTAssertEqual(HalfFloat.float(bf16: b).bitPattern, f.bitPattern, "BF16 0x\(String(b, radix: 16))")
        }
        XCTAssertTrue(HalfFloat.float(bf16: 0x7FC1).isNaN)
        XCTAssertEqual(HalfFloat.float(bf16: 0xFFC1).bitPattern, 0xFFC1_0000)
    }

    /// Every one of the 65536 patterns against the value the format defines, computed in Double
    /// ((−1)^s · 2^(e − bias) · (1 + m / 2^bits), subnormals m · 2^(1 − bias − bits)), and F16
    /// against Swift's own Float16 conversion.
    func testEveryBitPatternAgainstTheFormulas() {
        func value(_ bits: UInt16, exponentBits: Int, mantissaBits: Int) -> Double? {
            let bias = (1 << (exponentBits - 1)) - 1
            let m = Int(bits) & ((1 << mantissaBits) - 1), e = (Int(bits) >> mantissaBits) & ((1 << exponentBits) - 1)
            let sign: Double = bits & 0x8000 != 0 ? -1 : 1
            if e == (1 << exponentBits) - 1 { return m == 0 ? sign * .infinity : nil }
            if e == 0 { return sign * Double(m) * pow(2, Double(1 - bias - mantissaBits)) }
            return sign * (1 + Double(m) / Double(1 << mantissaBits)) * pow(2, Double(e - bias))
        }
        var mismatches = 0
        for b in 0...UInt16.max {
            let h = HalfFloat.float(f16: b), g = HalfFloat.float(bf16: b)
            if let v = value(b, exponentBits: 5, mantissaBits: 10) {
                if Double(h) != v || h.sign != (b & 0x8000 != 0 ? .minus : .plus) { mismatches += 1 }
                if h.bitPattern != Float(Float16(bitPattern: b)).bitPattern { mismatches += 1 }
            } else if !h.isNaN || h.bitPattern & 0x1FFF != 0 || h.sign != (b & 0x8000 != 0 ? .minus : .plus) {
                mismatches += 1
            }
            if let v = value(b, exponentBits: 8, mantissaBits: 7) {
                if Double(g) != v || g.sign != (b & 0x8000 != 0 ? .minus : .plus) { mismatches += 1 }
            } else if !g.isNaN {
                mismatches += 1
            }
            if mismatches > 0 {
                XCTFail("bit pattern 0x\(String(b, radix: 16)): F16 → \(h), BF16 → \(g)")
                return
            }
        }
    }

    /// A file with F16 and BF16 tensors at odd byte offsets reads as Float32; integer and byte
    /// readers refuse them; unknown dtypes are refused when the header is read, naming the dtype.
    func testSafeTensorsReadsHalfTensorsAndRefusesOthers() throws {
        var w = SafeTensorsWriter()
        try w.add("a.byte", bytes: [7], shape: [1])  // puts the next tensor at an odd offset
        try w.add("b.half", halfBits: [0x3C00, 0xC000, 0x0001, 0x7C00], dtype: .f16, shape: [2, 2])
        try w.add("c.bf16", halfBits: [0x3F80, 0xC0A0, 0x0001], dtype: .bf16, shape: [3])
        let f = try SafeTensorsFile(bytes: w.serialized(), path: "half.safetensors")
        XCTAssertEqual(try XCTUnwrap(f.info("b.half")).offset % 2, 1, "the F16 data should start at an odd offset")
        XCTAssertEqual(try f.floats("b.half", shape: [2, 2]), [1, -2, 0x1p-24, .infinity])
        XCTAssertEqual(try f.floats("c.bf16"), [1, -5, 0x1p-133])
        var out = [Float](repeating: 0, count: 3)
        try out.withUnsafeMutableBufferPointer { try f.copyFloats("c.bf16", into: $0.baseAddress!, shape: [3]) }
        XCTAssertEqual(out, [1, -5, 0x1p-133])
        XCTAssertThrowsError(try f.int64s("b.half")) { XCTAssertTrue("\($0)".contains("dtype F16"), "\($0)") }
        XCTAssertThrowsError(try f.bytes("c.bf16")) { XCTAssertTrue("\($0)".contains("dtype BF16"), "\($0)") }
        for dtype in ["F8_E4M3", "I16", "BOOL", "F8_E5M2", "U16"] {
            let header = #"{"t": {"dtype": "\#(dtype)", "shape": [2], "data_offsets": [0, 4]}}"#
            var bytes: [UInt8] = []
            var n = UInt64(header.utf8.count)
            for _ in 0..<8 {
                bytes.append(UInt8(n & 0xFF))
                n >>= 8
            }
            bytes += Array(header.utf8) + [0, 0, 0, 0]
            XCTAssertThrowsError(try SafeTensorsFile(bytes: bytes, path: "x.safetensors")) {
                XCTAssertTrue("\($0)".contains("dtype \(dtype)") && "\($0)".contains("F16, BF16"), "\($0)")
            }
        }
    }

    /// A checkpoint stored in BF16 (or F16) loads as the Float32 of the same values; an F64 one
    /// is refused naming the tensor and the dtypes read.
    func testHalfPrecisionCheckpointLoadsExactly() throws {
        let config = ViTConfig(
            imageSize: 8, patchSize: 4, inChannels: 3, numClasses: 3, embedDim: 8, depth: 1, numHeads: 2)
        let p = ViTParameters(config: config)
        p.initialize(seed: 3)
        let path = tmp("half.safetensors")
        defer { try? FileManager.default.removeItem(atPath: path) }
        for dtype in [DType.bf16, .f16] {
            var w = SafeTensorsWriter(metadata: ["config": config.json])
            var expected: [Float] = [], original: [Float] = []
            for r in p.table.layout.regions {
                let values = p[r.name]!.array
                original += values
                let bits: [UInt16] =
                    dtype == .bf16
                    ? values.map { UInt16($0.bitPattern >> 16) } : values.map { Float16($0).bitPattern }
                expected += bits.map { dtype == .bf16 ? HalfFloat.float(bf16: $0) : Float(Float16(bitPattern: $0)) }
                try w.add(r.name, halfBits: bits, dtype: dtype, shape: r.shape.dims)
            }
            try w.write(to: path)
            let (loaded, _) = try Checkpoint.load(path: path)
            var got: [Float] = []
            for r in loaded.table.layout.regions { got += loaded[r.name]!.array }
            XCTAssertEqual(got.map(\.bitPattern), expected.map(\.bitPattern), dtype.rawValue)
            XCTAssertNotEqual(expected, original, "rounding to \(dtype.rawValue) should change some weights")
        }
        // An integer tensor where a weight should be: refused naming it and the dtypes read.
        var w = SafeTensorsWriter(metadata: ["config": config.json])
        for r in p.table.layout.regions where r.name != "head.bias" {
            try w.add(r.name, floats: p[r.name]!.array, shape: r.shape.dims)
        }
        try w.add("head.bias", int64s: [0, 0, 0], shape: [3])
        try w.write(to: path)
        XCTAssertThrowsError(try Checkpoint.load(path: path)) {
            XCTAssertTrue(
                "\($0)".contains("'head.bias' has dtype I64, expected F32, F16 or BF16"), "\($0)")
        }
    }
}
