import Foundation
import XCTest
import ViTMergeCore
@testable import ViTMergeKernels

final class PatchEmbedTests: XCTestCase {
    /// (channels, height, width, patch, dim, class token, bias): odd grids and pixels beyond the grid.
    let cases: [(Int, Int, Int, Int, Int, Bool, Bool)] = [
        (1, 3, 3, 3, 1, true, true), (3, 17, 13, 4, 17, false, true), (2, 9, 11, 3, 63, true, false),
        (3, 16, 16, 4, 65, true, true),
    ]

    func testForwardMatchesDirectConvolution() {
        for (ch, h, w, p, d, hasCls, hasBias) in cases {
            let g = PatchGeometry(channels: ch, height: h, width: w, patch: p)
            let batch = 3, prefix = hasCls ? 1 : 0, t = prefix + g.numPatches
            let input = randomArray(batch * g.imageSize, seed: 1), weight = randomArray(d * g.patchDim, seed: 2)
            let bias = randomArray(d, seed: 3), cls = randomArray(d, seed: 4), pos = randomArray(t * d, seed: 5)
            var x = [Float](repeating: .nan, count: batch * t * d), xr = x
            var patches = [Float](repeating: 0, count: batch * g.numPatches * g.patchDim)
            withOptional(hasBias ? bias : nil) { b in
                withOptional(hasCls ? cls : nil) { c in
                    PatchEmbed.forward(
                        x: &x, patches: &patches, input: input, weight: weight, bias: b, cls: c, pos: pos,
                        batch: batch, dim: d, geometry: g)
                    PatchEmbed.forwardReference(
                        x: &xr, input: input, weight: weight, bias: b, cls: c, pos: pos, batch: batch, dim: d,
                        geometry: g)
                }
            }
            assertClose(x, xr, atol: 1e-5, rtol: 1e-5, "patch embed \(g) d \(d)")
        }
    }

    func testCol2imInvertsIm2colAndZeroesPixelsOutsideTheGrid() {
        let g = PatchGeometry(channels: 3, height: 17, width: 13, patch: 4)
        let input = randomArray(2 * g.imageSize, seed: 9)
        var patches = [Float](repeating: 0, count: 2 * g.numPatches * g.patchDim)
        var back = [Float](repeating: .nan, count: input.count)
        PatchEmbed.im2col(patches: &patches, input: input, batch: 2, geometry: g)
        PatchEmbed.col2im(input: &back, patches: patches, batch: 2, geometry: g)
        for b in 0..<2 {
            for c in 0..<3 {
                for y in 0..<17 {
                    for x in 0..<13 {
                        let i = ((b * 3 + c) * 17 + y) * 13 + x
                        XCTAssertEqual(back[i], y < 16 && x < 12 ? input[i] : 0, "pixel \(b),\(c),\(y),\(x)")
                    }
                }
            }
        }
    }

    /// Backward (parameters and input) and JVP against finite differences of the Double reference.
    func testBackwardAndJVPMatchFiniteDifferences() {
        let g = PatchGeometry(channels: 2, height: 7, width: 5, patch: 2)
        let (batch, d) = (2, 3), t = 1 + g.numPatches
        let input = randomArray(batch * g.imageSize, seed: 1), weight = randomArray(d * g.patchDim, seed: 2)
        let bias = randomArray(d, seed: 3), cls = randomArray(d, seed: 4), pos = randomArray(t * d, seed: 5)
        let dx = randomArray(batch * t * d, seed: 6)
        // All inputs in one flat vector [input | weight | bias | cls | pos] for the finite differences.
        let all = input + weight + bias + cls + pos
        let sizes = [input.count, weight.count, d, d, t * d]
        func parts(_ v: [Float]) -> [[Float]] {
            var out: [[Float]] = [], o = 0
            for n in sizes { out.append(Array(v[o..<(o + n)])); o += n }
            return out
        }
        func embed(_ v: [Float]) -> [Float] {
            let p = parts(v)
            var x = [Float](repeating: 0, count: batch * t * d)
            PatchEmbed.forwardReference(
                x: &x, input: p[0], weight: p[1], bias: p[2], cls: p[3], pos: p[4], batch: batch, dim: d, geometry: g)
            return x
        }
        var x = [Float](repeating: 0, count: batch * t * d)
        var patches = [Float](repeating: 0, count: batch * g.numPatches * g.patchDim), dpatches = patches
        PatchEmbed.forward(
            x: &x, patches: &patches, input: input, weight: weight, bias: bias, cls: cls, pos: pos, batch: batch,
            dim: d,
            geometry: g)
        var dw = [Float](repeating: 0, count: weight.count), db = [Float](repeating: 0, count: d), dc = db
        var dp = [Float](repeating: 0, count: t * d), din = [Float](repeating: .nan, count: input.count)
        PatchEmbed.backward(
            dweight: &dw, dbias: &db, dcls: &dc, dpos: &dp, dx: dx, patches: patches, batch: batch, dim: d, geometry: g)
        PatchEmbed.backwardInput(
            dinput: &din, dpatches: &dpatches, dx: dx, weight: weight, prefix: 1, batch: batch, dim: d, geometry: g)
        let grad = din + dw + db + dc + dp
        let allD = all.map(Double.init), dxD = dx.map(Double.init)
        func loss(_ v: [Double]) -> Double { zip(embed(v.map(Float.init)), dxD).reduce(0) { $0 + Double($1.0) * $1.1 } }
        for i in stride(from: 0, to: all.count, by: 3) {
            let fd = finiteDifference(allD, i, h: 1e-2, loss)
            XCTAssertEqual(Double(grad[i]), fd, accuracy: 1e-3 + 1e-3 * abs(fd), "gradient \(i)")
        }
        // JVP for parameter tangents (the input is not perturbed).
        let tw = randomArray(weight.count, seed: 7), tb = randomArray(d, seed: 8), tc = randomArray(d, seed: 9)
        let tp = randomArray(t * d, seed: 10)
        var tx = [Float](repeating: .nan, count: x.count)
        PatchEmbed.jvp(
            tx: &tx, patches: patches, tweight: tw, tbias: tb, tcls: tc, tpos: tp, batch: batch, dim: d, geometry: g)
        let tangent = [Float](repeating: 0, count: input.count) + tw + tb + tc + tp
        assertClose(tx, directional(all, tangent, h: 1e-2, embed), atol: 1e-3, rtol: 1e-3, "patch embed jvp")
    }

    func testOneAndTwoThreadsAreBitIdentical() {
        let g = PatchGeometry(channels: 3, height: 32, width: 32, patch: 4)
        let (batch, d) = (16, 65), t = 1 + g.numPatches
        let input = randomArray(batch * g.imageSize, seed: 1), weight = randomArray(d * g.patchDim, seed: 2)
        let bias = randomArray(d, seed: 3), cls = randomArray(d, seed: 4), pos = randomArray(t * d, seed: 5)
        func run(_ pool: ThreadPool) -> [Float] {
            var x = [Float](repeating: 0, count: batch * t * d)
            var patches = [Float](repeating: 0, count: batch * g.numPatches * g.patchDim)
            PatchEmbed.forward(
                x: &x, patches: &patches, input: input, weight: weight, bias: bias, cls: cls, pos: pos, batch: batch,
                dim: d, geometry: g, pool: pool)
            var dw = [Float](repeating: 0, count: weight.count), db = [Float](repeating: 0, count: d), dc = db
            var dp = [Float](repeating: 0, count: t * d)
            PatchEmbed.backward(
                dweight: &dw, dbias: &db, dcls: &dc, dpos: &dp, dx: x, patches: patches, batch: batch, dim: d,
                geometry: g, pool: pool)
            return x + dw + db + dc + dp
        }
        let one = withThreads(1, run), two = withThreads(2, run)
        XCTAssertEqual(one.map(\.bitPattern), two.map(\.bitPattern))
    }
}

/// Calls body with a pointer to the array's storage, or nil.
func withOptional<R>(_ a: [Float]?, _ body: (UnsafePointer<Float>?) -> R) -> R {
    guard let a else { return body(nil) }
    return a.withUnsafeBufferPointer { body($0.baseAddress!) }
}
