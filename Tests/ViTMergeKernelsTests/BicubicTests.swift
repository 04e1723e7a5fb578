import XCTest
@testable import ViTMergeKernels

/// Antialiased bicubic resizing (PyTorch's bicubic, align_corners false, antialias true): the
/// separable Float kernel against the Double reference written from the definition (stretched
/// filter when downsampling, clipped and renormalized windows), identity at equal size, constants kept.
final class BicubicTests: XCTestCase {
    func testResizeMatchesReference() {
        // (in H, in W, out H, out W, channels): up, down (factors up to 7), non-square, one axis kept,
        // 1-pixel sides, odd channel counts
        let cases = [
            (4, 4, 6, 6, 3), (5, 5, 3, 3, 1), (3, 3, 4, 7, 17), (2, 2, 9, 9, 4), (1, 5, 3, 2, 2), (7, 3, 1, 1, 5),
            (14, 14, 37, 37, 2), (16, 16, 16, 24, 3), (37, 37, 14, 14, 3), (24, 24, 16, 16, 2), (32, 17, 7, 65, 1),
            (9, 9, 9, 4, 3),
        ]
        for (ih, iw, oh, ow, c) in cases {
            let inp = randomArray(ih * iw * c, seed: UInt64(ih * 100 + ow))
            var out = [Float](repeating: .nan, count: oh * ow * c), ref = out
            Bicubic.resize(out: &out, inp: inp, channels: c, inHeight: ih, inWidth: iw, outHeight: oh, outWidth: ow)
            Bicubic.resizeReference(
                out: &ref, inp: inp, channels: c, inHeight: ih, inWidth: iw, outHeight: oh, outWidth: ow)
            // the kernel's source coordinates are Float, as PyTorch's (e.g. 14/37 rounded), the
            // reference's exact: they differ by up to ~2e-6 on values of order 1
            assertClose(out, ref, atol: 5e-6, rtol: 5e-6, "bicubic \(ih)×\(iw) → \(oh)×\(ow) c \(c)")
        }
    }

    func testEqualSizeIsTheIdentityAndConstantsAreKept() {
        let inp = randomArray(5 * 6 * 3, seed: 1)
        var out = [Float](repeating: .nan, count: inp.count)
        Bicubic.resize(out: &out, inp: inp, channels: 3, inHeight: 5, inWidth: 6, outHeight: 5, outWidth: 6)
        XCTAssertEqual(out, inp)
        let constant = [Float](repeating: 0.375, count: 4 * 4 * 2)
        var up = [Float](repeating: .nan, count: 11 * 7 * 2)
        Bicubic.resize(out: &up, inp: constant, channels: 2, inHeight: 4, inWidth: 4, outHeight: 11, outWidth: 7)
        assertClose(up, [Float](repeating: 0.375, count: up.count), atol: 1e-7, rtol: 0, "constant field")
    }

    func testPrefixRowsAreCopied() {
        let d = 3, pos = randomArray((2 + 9) * d, seed: 4)
        var out = [Float](repeating: .nan, count: (2 + 16) * d)
        Bicubic.resamplePositions(out: &out, pos: pos, prefix: 2, dim: d, from: (3, 3), to: (4, 4))
        XCTAssertEqual(Array(out[0..<(2 * d)]), Array(pos[0..<(2 * d)]))
        var grid = [Float](repeating: .nan, count: 16 * d)
        Bicubic.resize(
            out: &grid, inp: Array(pos[(2 * d)...]), channels: d, inHeight: 3, inWidth: 3, outHeight: 4, outWidth: 4)
        XCTAssertEqual(Array(out[(2 * d)...]), grid)
    }
}
