import XCTest
import ViTMergeCore
import ViTMergeKernels

/// Masked MSE (the masked image modeling loss): forward against the Double reference on odd
/// sizes, backward against the reference and central finite differences, and accumulation.
final class MaskedMSETests: XCTestCase {
    struct Case {
        let images: Int, patches: Int, prefix: Int, dim: Int
        var tokens: Int { prefix + patches }
    }

    static let cases = [
        Case(images: 1, patches: 1, prefix: 0, dim: 1), Case(images: 3, patches: 17, prefix: 1, dim: 3),
        Case(images: 2, patches: 5, prefix: 0, dim: 63), Case(images: 5, patches: 7, prefix: 1, dim: 17),
        Case(images: 1, patches: 3, prefix: 1, dim: 65),
    ]

    /// A seeded mask with some patches masked per image (at least one).
    func mask(_ c: Case, seed: UInt64) -> [Bool] {
        var rng = RNG(seed: seed)
        var m = (0..<(c.images * c.patches)).map { _ in rng.uniformFloat() < 0.5 }
        m[0] = true
        return m
    }

    func testForwardMatchesReferenceAndIgnoresUnmaskedRows() {
        for (n, c) in Self.cases.enumerated() {
            let pred = randomArray(c.images * c.tokens * c.dim, seed: UInt64(n))
            let target = randomArray(c.images * c.patches * c.dim, seed: 100 + UInt64(n), lo: 0, hi: 1)
            let m = mask(c, seed: 200 + UInt64(n))
            let scale = 1 / Float(c.images * c.patches * c.dim)
            let loss = MaskedMSE.forward(
                pred: pred, target: target, mask: m, images: c.images, tokens: c.tokens, patches: c.patches, dim: c.dim,
                scale: scale)
            let want = MaskedMSE.forwardReference(
                pred: pred, target: target, mask: m, images: c.images, tokens: c.tokens, patches: c.patches, dim: c.dim,
                scale: Double(scale))
            XCTAssertEqual(Double(loss), want, accuracy: 1e-6 * max(1, abs(want)), "\(c)")
            // Changing an unmasked token (or the class token) must not change the loss.
            var other = pred
            for i in 0..<c.images {
                for r in 0..<c.tokens where r < c.prefix || !m[i * c.patches + r - c.prefix] {
                    for q in 0..<c.dim { other[(i * c.tokens + r) * c.dim + q] += 7 }
                }
            }
            let same = MaskedMSE.forward(
                pred: other, target: target, mask: m, images: c.images, tokens: c.tokens, patches: c.patches,
                dim: c.dim, scale: scale)
            XCTAssertEqual(same.bitPattern, loss.bitPattern, "\(c): an unmasked row changed the loss")
        }
    }

    func testBackwardAccumulatesAndMatchesReferenceAndFiniteDifferences() {
        for (n, c) in Self.cases.enumerated() {
            let pred = randomArray(c.images * c.tokens * c.dim, seed: 300 + UInt64(n))
            let target = randomArray(c.images * c.patches * c.dim, seed: 400 + UInt64(n), lo: 0, hi: 1)
            let m = mask(c, seed: 500 + UInt64(n))
            let scale = 1 / Float(c.images * c.dim)
            // Accumulates: start from a non-zero gradient.
            let start = randomArray(pred.count, seed: 600 + UInt64(n))
            var grad = start, reference = start
            MaskedMSE.backward(
                dpred: &grad, pred: pred, target: target, mask: m, images: c.images, tokens: c.tokens,
                patches: c.patches, dim: c.dim, scale: scale)
            MaskedMSE.backwardReference(
                dpred: &reference, pred: pred, target: target, mask: m, images: c.images, tokens: c.tokens,
                patches: c.patches, dim: c.dim, scale: Double(scale))
            assertClose(grad, reference, atol: 1e-6, rtol: 1e-5, "MaskedMSE.backward \(c)")
            // Central differences of the Double loss, on a few entries (masked and unmasked).
            let x = pred.map(Double.init)
            let f: ([Double]) -> Double = { v in
                let p = v.map(Float.init)
                return MaskedMSE.forwardReference(
                    pred: p, target: target, mask: m, images: c.images, tokens: c.tokens, patches: c.patches,
                    dim: c.dim, scale: Double(scale))
            }
            for j in Set([0, pred.count / 2, pred.count - 1, (c.prefix * c.dim) % pred.count]) {
                let fd = finiteDifference(x, j, h: 1e-3, f)
                XCTAssertEqual(Double(grad[j] - start[j]), fd, accuracy: 1e-3 * max(1, abs(fd)), "\(c) index \(j)")
            }
        }
    }
}
