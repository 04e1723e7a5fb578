import Foundation
import XCTest
import ViTMergeCore
@testable import ViTMergeKernels

final class PatchEmbedTests: XCTestCase {
    /// (channels, height, width, patch, dim, prefix tokens, bias): odd grids, pixels beyond the grid,
    /// register tokens with and without a class token, pos_embed with and without prefix rows.
    let cases: [(Int, Int, Int, Int, Int, PrefixTokens, Bool)] = [
        (1, 3, 3, 3, 1, PrefixTokens(classToken: true), true),
        (3, 17, 13, 4, 17, PrefixTokens(classToken: false), true),
        (2, 9, 11, 3, 63, PrefixTokens(classToken: true), false),
        (3, 16, 16, 4, 65, PrefixTokens(classToken: true), true),
        (3, 16, 16, 4, 65, PrefixTokens(classToken: true, registers: 4, posEmbedPrefix: false), true),
        (2, 9, 11, 3, 17, PrefixTokens(classToken: false, registers: 1, posEmbedPrefix: false), false),
        (1, 7, 7, 2, 33, PrefixTokens(classToken: true, registers: 3, posEmbedPrefix: true), true),
        (1, 7, 7, 2, 16, PrefixTokens(classToken: true, registers: 0, posEmbedPrefix: false), true),
    ]

    func testForwardMatchesDirectConvolution() {
        for (ch, h, w, p, d, prefix, hasBias) in cases {
            let g = PatchGeometry(channels: ch, height: h, width: w, patch: p)
            let batch = 3, t = prefix.count + g.numPatches
            let input = randomArray(batch * g.imageSize, seed: 1), weight = randomArray(d * g.patchDim, seed: 2)
            let bias = randomArray(d, seed: 3), cls = randomArray(d, seed: 4)
            let reg = randomArray(prefix.registers * d, seed: 11)
            let pos = randomArray(prefix.posRows(patches: g.numPatches) * d, seed: 5)
            var x = [Float](repeating: .nan, count: batch * t * d), xr = x
            var patches = [Float](repeating: 0, count: batch * g.numPatches * g.patchDim)
            withOptional(hasBias ? bias : nil) { b in
                withOptional(prefix.classToken ? cls : nil) { c in
                    withOptional(prefix.registers > 0 ? reg : nil) { r in
                        PatchEmbed.forward(
                            x: &x, patches: &patches, input: input, weight: weight, bias: b, cls: c, reg: r, pos: pos,
                            prefix: prefix, batch: batch, dim: d, geometry: g)
                        PatchEmbed.forwardReference(
                            x: &xr, input: input, weight: weight, bias: b, cls: c, reg: r, pos: pos, prefix: prefix,
                            batch: batch, dim: d, geometry: g)
                    }
                }
            }
            assertClose(x, xr, atol: 1e-5, rtol: 1e-5, "patch embed \(g) d \(d) \(prefix)")
        }
    }

    /// The prefix rows are exactly the tokens (+ their pos rows only when pos_embed covers them), in
    /// timm's order [cls, reg0, reg1, …]: checked by value, not against the reference.
    func testPrefixRowsAreClassThenRegistersWithOrWithoutPosition() {
        let g = PatchGeometry(channels: 1, height: 4, width: 4, patch: 2), d = 5
        for posEmbedPrefix in [true, false] {
            let prefix = PrefixTokens(classToken: true, registers: 2, posEmbedPrefix: posEmbedPrefix)
            let t = prefix.count + g.numPatches
            let input = randomArray(g.imageSize, seed: 1), weight = randomArray(d * g.patchDim, seed: 2)
            let cls = randomArray(d, seed: 4), reg = randomArray(2 * d, seed: 11)
            let pos = randomArray(prefix.posRows(patches: g.numPatches) * d, seed: 5)
            var x = [Float](repeating: .nan, count: t * d)
            var patches = [Float](repeating: 0, count: g.numPatches * g.patchDim)
            PatchEmbed.forward(
                x: &x, patches: &patches, input: input, weight: weight, bias: nil, cls: cls, reg: reg, pos: pos,
                prefix: prefix, batch: 1, dim: d, geometry: g)
            let tokens = cls + reg
            for j in 0..<3 {
                for i in 0..<d {
                    let want = posEmbedPrefix ? tokens[j * d + i] + pos[j * d + i] : tokens[j * d + i]
                    XCTAssertEqual(x[j * d + i], want, "prefix row \(j), posEmbedPrefix \(posEmbedPrefix)")
                }
            }
            // The first patch row gets pos row 3 (prefix rows present) or pos row 0 (patches only).
            var proj: Float = 0
            for k in 0..<g.patchDim { proj += weight[k] * patches[k] }
            let q = posEmbedPrefix ? 3 : 0
            XCTAssertEqual(x[3 * d], proj + pos[q * d], accuracy: 1e-5, "first patch row's position")
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

    /// Backward (parameters and input) and JVP against finite differences of the Double reference,
    /// for every prefix-token layout (class token, registers, pos_embed with or without prefix rows).
    func testBackwardAndJVPMatchFiniteDifferences() {
        let layouts = [
            PrefixTokens(classToken: true), PrefixTokens(classToken: false),
            PrefixTokens(classToken: true, registers: 2, posEmbedPrefix: false),
            PrefixTokens(classToken: true, registers: 2, posEmbedPrefix: true),
            PrefixTokens(classToken: false, registers: 1, posEmbedPrefix: false),
        ]
        for prefix in layouts { checkBackwardAndJVP(prefix) }
    }

    func checkBackwardAndJVP(_ prefix: PrefixTokens) {
        let g = PatchGeometry(channels: 2, height: 7, width: 5, patch: 2)
        let (batch, d) = (2, 3), t = prefix.count + g.numPatches, nc = prefix.classToken ? d : 0
        let nr = prefix.registers * d, np = prefix.posRows(patches: g.numPatches) * d
        let input = randomArray(batch * g.imageSize, seed: 1), weight = randomArray(d * g.patchDim, seed: 2)
        let bias = randomArray(d, seed: 3), cls = randomArray(nc, seed: 4), reg = randomArray(nr, seed: 12)
        let pos = randomArray(np, seed: 5)
        let dx = randomArray(batch * t * d, seed: 6)
        // All inputs in one flat vector [input | weight | bias | cls | reg | pos] for the finite differences.
        let all = input + weight + bias + cls + reg + pos
        let sizes = [input.count, weight.count, d, nc, nr, np]
        func parts(_ v: [Float]) -> [[Float]] {
            var out: [[Float]] = [], o = 0
            for n in sizes { out.append(Array(v[o..<(o + n)])); o += n }
            return out
        }
        func embed(_ v: [Float]) -> [Float] {
            let p = parts(v)
            var x = [Float](repeating: 0, count: batch * t * d)
            withOptional(nc > 0 ? p[3] : nil) { c in
                withOptional(nr > 0 ? p[4] : nil) { r in
                    PatchEmbed.forwardReference(
                        x: &x, input: p[0], weight: p[1], bias: p[2], cls: c, reg: r, pos: p[5], prefix: prefix,
                        batch: batch, dim: d, geometry: g)
                }
            }
            return x
        }
        var x = [Float](repeating: 0, count: batch * t * d)
        var patches = [Float](repeating: 0, count: batch * g.numPatches * g.patchDim), dpatches = patches
        var dw = [Float](repeating: 0, count: weight.count), db = [Float](repeating: 0, count: d)
        var dc = [Float](repeating: 0, count: nc), dr = [Float](repeating: 0, count: nr)
        var dp = [Float](repeating: 0, count: np), din = [Float](repeating: .nan, count: input.count)
        var tx = [Float](repeating: .nan, count: x.count)
        let tw = randomArray(weight.count, seed: 7), tb = randomArray(d, seed: 8), tc = randomArray(nc, seed: 9)
        let tr = randomArray(nr, seed: 13), tp = randomArray(np, seed: 10)
        withOptional(nc > 0 ? cls : nil) { c in
            withOptional(nr > 0 ? reg : nil) { r in
                PatchEmbed.forward(
                    x: &x, patches: &patches, input: input, weight: weight, bias: bias, cls: c, reg: r, pos: pos,
                    prefix: prefix, batch: batch, dim: d, geometry: g)
            }
        }
        dc.withUnsafeMutableBufferPointer { dcb in
            dr.withUnsafeMutableBufferPointer { drb in
                PatchEmbed.backward(
                    dweight: &dw, dbias: &db, dcls: nc > 0 ? dcb.baseAddress : nil,
                    dreg: nr > 0 ? drb.baseAddress : nil,
                    dpos: &dp, dx: dx, patches: patches, prefix: prefix, batch: batch, dim: d, geometry: g)
            }
        }
        PatchEmbed.backwardInput(
            dinput: &din, dpatches: &dpatches, dx: dx, weight: weight, prefix: prefix.count, batch: batch, dim: d,
            geometry: g)
        let grad = din + dw + db + dc + dr + dp
        let allD = all.map(Double.init), dxD = dx.map(Double.init)
        func loss(_ v: [Double]) -> Double { zip(embed(v.map(Float.init)), dxD).reduce(0) { $0 + Double($1.0) * $1.1 } }
        // Every parameter entry; every third input pixel.
        for i in Array(stride(from: 0, to: input.count, by: 3)) + Array(input.count..<all.count) {
            let fd = finiteDifference(allD, i, h: 1e-2, loss)
            XCTAssertEqual(Double(grad[i]), fd, accuracy: 1e-3 + 1e-3 * abs(fd), "gradient \(i), \(prefix)")
        }
        // JVP for parameter tangents (the input is not perturbed).
        withOptional(nc > 0 ? tc : nil) { c in
            withOptional(nr > 0 ? tr : nil) { r in
                PatchEmbed.jvp(
                    tx: &tx, patches: patches, tweight: tw, tbias: tb, tcls: c, treg: r, tpos: tp, prefix: prefix,
                    batch: batch, dim: d, geometry: g)
            }
        }
        let tangent = [Float](repeating: 0, count: input.count) + tw + tb + tc + tr + tp
        assertClose(tx, directional(all, tangent, h: 1e-2, embed), atol: 1e-3, rtol: 1e-3, "patch embed jvp \(prefix)")
    }

    func testOneAndTwoThreadsAreBitIdentical() {
        let g = PatchGeometry(channels: 3, height: 32, width: 32, patch: 4)
        let prefix = PrefixTokens(classToken: true, registers: 4, posEmbedPrefix: false)
        let (batch, d) = (16, 65), t = prefix.count + g.numPatches
        let input = randomArray(batch * g.imageSize, seed: 1), weight = randomArray(d * g.patchDim, seed: 2)
        let bias = randomArray(d, seed: 3), cls = randomArray(d, seed: 4), reg = randomArray(4 * d, seed: 11)
        let pos = randomArray(g.numPatches * d, seed: 5)
        func run(_ pool: ThreadPool) -> [Float] {
            var x = [Float](repeating: 0, count: batch * t * d)
            var patches = [Float](repeating: 0, count: batch * g.numPatches * g.patchDim)
            PatchEmbed.forward(
                x: &x, patches: &patches, input: input, weight: weight, bias: bias, cls: cls, reg: reg, pos: pos,
                prefix: prefix, batch: batch, dim: d, geometry: g, pool: pool)
            var dw = [Float](repeating: 0, count: weight.count), db = [Float](repeating: 0, count: d), dc = db
            var dp = [Float](repeating: 0, count: pos.count), dr = [Float](repeating: 0, count: reg.count)
            PatchEmbed.backward(
                dweight: &dw, dbias: &db, dcls: &dc, dreg: &dr, dpos: &dp, dx: x, patches: patches, prefix: prefix,
                batch: batch, dim: d, geometry: g, pool: pool)
            return x + dw + db + dc + dr + dp
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
