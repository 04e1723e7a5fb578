import Foundation
import XCTest
import ViTMergeCore
@testable import ViTMergeKernels

/// Every non-GEMM kernel against its reference twin on odd sizes, its backward against central
/// finite differences of a Double forward, and 1 vs 2 threads bit for bit.
final class KernelTests: XCTestCase {
    let shapes = [(1, 1), (3, 17), (17, 63), (65, 127), (127, 193), (300, 65), (1000, 193)]

    // MARK: LayerNorm

    func layerNorm(
        _ rows: Int, _ cols: Int, seed: UInt64
    ) -> (out: [Float], mean: [Float], rstd: [Float], dx: [Float], dw: [Float], db: [Float]) {
        let x = randomArray(rows * cols, seed: seed, lo: -3, hi: 5), w = randomArray(cols, seed: seed + 1),
            b = randomArray(cols, seed: seed + 2)
        let g = randomArray(rows * cols, seed: seed + 3)
        var out = [Float](repeating: 0, count: rows * cols), mean = [Float](repeating: 0, count: rows), rstd = mean
        var dx = randomArray(rows * cols, seed: seed + 4), dw = randomArray(cols, seed: seed + 5),
            db = randomArray(cols, seed: seed + 6)
        LayerNorm.forward(
            out: &out, mean: &mean, rstd: &rstd, inp: x, weight: w, bias: b, rows: rows, cols: cols, eps: 1e-5)
        LayerNorm.backward(
            dinp: &dx, dweight: &dw, dbias: &db, dout: g, inp: x, weight: w, mean: mean, rstd: rstd, rows: rows,
            cols: cols)
        return (out, mean, rstd, dx, dw, db)
    }

    func testLayerNormMatchesReference() {
        for (rows, cols) in shapes {
            let seed = UInt64(rows * 7 + cols)
            let fast = layerNorm(rows, cols, seed: seed)
            let x = randomArray(rows * cols, seed: seed, lo: -3, hi: 5), w = randomArray(cols, seed: seed + 1),
                b = randomArray(cols, seed: seed + 2)
            let g = randomArray(rows * cols, seed: seed + 3)
            var out = [Float](repeating: 0, count: rows * cols), mean = [Float](repeating: 0, count: rows), rstd = mean
            var dx = randomArray(rows * cols, seed: seed + 4), dw = randomArray(cols, seed: seed + 5),
                db = randomArray(cols, seed: seed + 6)
            LayerNorm.forwardReference(
                out: &out, mean: &mean, rstd: &rstd, inp: x, weight: w, bias: b, rows: rows, cols: cols, eps: 1e-5)
            LayerNorm.backwardReference(
                dinp: &dx, dweight: &dw, dbias: &db, dout: g, inp: x, weight: w, mean: mean, rstd: rstd, rows: rows,
                cols: cols)
            let tag = "[\(rows), \(cols)]"
            assertClose(fast.out, out, atol: 1e-5, rtol: 1e-5, "LayerNorm out \(tag)")
            assertClose(fast.rstd, rstd, atol: 0, rtol: 1e-5, "LayerNorm rstd \(tag)")
            assertClose(fast.dx, dx, atol: 1e-5, rtol: 1e-4, "LayerNorm dx \(tag)")
            assertClose(fast.dw, dw, atol: 1e-4, rtol: 1e-4, "LayerNorm dweight \(tag)")
            assertClose(fast.db, db, atol: 1e-4, rtol: 1e-4, "LayerNorm dbias \(tag)")
        }
    }

    func testLayerNormBackwardMatchesFiniteDifferences() {
        let (rows, cols) = (3, 37)
        let x = randomArray(rows * cols, seed: 1, lo: -2, hi: 2).map(Double.init),
            w = randomArray(cols, seed: 2).map(Double.init)
        let b = randomArray(cols, seed: 3).map(Double.init), g = randomArray(rows * cols, seed: 4).map(Double.init)
        func loss(_ x: [Double], _ w: [Double], _ b: [Double]) -> Double {
            var s = 0.0
            for r in 0..<rows {
                let row = Array(x[(r * cols)..<((r + 1) * cols)])
                let m = row.reduce(0, +) / Double(cols), v = row.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(cols)
                for i in 0..<cols { s += ((row[i] - m) / (v + 1e-5).squareRoot() * w[i] + b[i]) * g[r * cols + i] }
            }
            return s
        }
        var out = [Float](repeating: 0, count: rows * cols), mean = [Float](repeating: 0, count: rows), rstd = mean
        var dx = [Float](repeating: 0, count: rows * cols), dw = [Float](repeating: 0, count: cols), db = dw
        let xf = x.map(Float.init), wf = w.map(Float.init)
        LayerNorm.forward(
            out: &out, mean: &mean, rstd: &rstd, inp: xf, weight: wf, bias: b.map(Float.init), rows: rows, cols: cols,
            eps: 1e-5)
        LayerNorm.backward(
            dinp: &dx, dweight: &dw, dbias: &db, dout: g.map(Float.init), inp: xf, weight: wf, mean: mean, rstd: rstd,
            rows: rows, cols: cols)
        for i in stride(from: 0, to: x.count, by: 5) {
            let fd = finiteDifference(x, i) { loss($0, w, b) }
            XCTAssertEqual(Double(dx[i]), fd, accuracy: 1e-4 + 1e-3 * abs(fd), "dx[\(i)]")
        }
        for i in 0..<cols {
            XCTAssertEqual(Double(dw[i]), finiteDifference(w, i) { loss(x, $0, b) }, accuracy: 1e-4, "dweight[\(i)]")
            XCTAssertEqual(Double(db[i]), finiteDifference(b, i) { loss(x, w, $0) }, accuracy: 1e-4, "dbias[\(i)]")
        }
    }

    // MARK: GELU / QuickGELU

    func testErfPolynomialAccuracy() {
        var worst = 0.0
        var x: Float = -10
        while x <= 10 {
            var v = SIMD16<Float>()
            for j in 0..<16 { v[j] = x + Float(j) * 1e-4 }
            let e = erf16(v)
            for j in 0..<16 { worst = max(worst, abs(Double(e[j]) - Foundation.erf(Double(v[j])))) }
            x += 0.0016
        }
        XCTAssertLessThanOrEqual(worst, 4e-7, "erf16 max abs error")  // measured 3.3e-7: ~5 float ulps near 1
    }

    func testActivationsMatchReferenceAndFiniteDifferences() {
        typealias Fwd = (UnsafeMutablePointer<Float>, UnsafePointer<Float>, Int) -> Void
        typealias Bwd = (UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, Int) -> Void
        let cases: [(String, Fwd, Fwd, Bwd, Bwd, (Double) -> Double)] = [
            (
                "GELU", { GELU.forward(out: $0, inp: $1, count: $2) },
                { GELU.forwardReference(out: $0, inp: $1, count: $2) },
                { GELU.backward(dinp: $0, inp: $1, dout: $2, count: $3) },
                { GELU.backwardReference(dinp: $0, inp: $1, dout: $2, count: $3) },
                { 0.5 * $0 * (1 + erf($0 / 2.0.squareRoot())) }
            ),
            (
                "QuickGELU", { QuickGELU.forward(out: $0, inp: $1, count: $2) },
                { QuickGELU.forwardReference(out: $0, inp: $1, count: $2) },
                { QuickGELU.backward(dinp: $0, inp: $1, dout: $2, count: $3) },
                { QuickGELU.backwardReference(dinp: $0, inp: $1, dout: $2, count: $3) },
                { $0 / (1 + exp(-1.702 * $0)) }
            ),
        ]
        for (name, fwd, fwdRef, bwd, bwdRef, f) in cases {
            for n in [1, 3, 17, 63, 65, 127, 193, 100_003] {
                let x = randomArray(n, seed: UInt64(n), lo: -8, hi: 8), g = randomArray(n, seed: UInt64(n) + 1)
                var a = [Float](repeating: 0, count: n), b = a
                fwd(&a, x, n); fwdRef(&b, x, n)
                assertClose(a, b, atol: 1e-6, rtol: 1e-5, "\(name) forward n=\(n)")
                var da = randomArray(n, seed: 9), db = da
                bwd(&da, x, g, n); bwdRef(&db, x, g, n)
                assertClose(da, db, atol: 1e-6, rtol: 1e-5, "\(name) backward n=\(n)")
            }
            let x = randomArray(64, seed: 3, lo: -4, hi: 4)
            var d = [Float](repeating: 0, count: 64)
            bwd(&d, x, [Float](repeating: 1, count: 64), 64)
            for i in 0..<64 {
                let fd = finiteDifference([Double(x[i])], 0) { f($0[0]) }
                XCTAssertEqual(Double(d[i]), fd, accuracy: 1e-5, "\(name)'(\(x[i]))")
            }
        }
    }

    // MARK: Softmax and cross-entropy

    func testSoftmaxMatchesReferenceAndBackwardMatchesFiniteDifferences() {
        for (rows, cols) in shapes {
            let x = randomArray(rows * cols, seed: UInt64(cols), lo: -20, hi: 20)
            var a = [Float](repeating: 0, count: rows * cols), b = a
            Softmax.forward(out: &a, inp: x, rows: rows, cols: cols)
            Softmax.forwardReference(out: &b, inp: x, rows: rows, cols: cols)
            assertClose(a, b, atol: 1e-7, rtol: 1e-5, "softmax [\(rows), \(cols)]")
        }
        let (rows, cols) = (2, 19)
        let x = randomArray(rows * cols, seed: 5, lo: -3, hi: 3).map(Double.init),
            g = randomArray(rows * cols, seed: 6).map(Double.init)
        func loss(_ x: [Double]) -> Double {
            var s = 0.0
            for r in 0..<rows {
                let row = x[(r * cols)..<((r + 1) * cols)], m = row.max()!, z = row.reduce(0) { $0 + exp($1 - m) }
                for (i, v) in row.enumerated() { s += exp(v - m) / z * g[r * cols + i] }
            }
            return s
        }
        var p = [Float](repeating: 0, count: rows * cols), d = p
        Softmax.forward(out: &p, inp: x.map(Float.init), rows: rows, cols: cols)
        Softmax.backward(dinp: &d, out: p, dout: g.map(Float.init), rows: rows, cols: cols)
        for i in 0..<x.count {
            XCTAssertEqual(Double(d[i]), finiteDifference(x, i, loss), accuracy: 1e-5, "dsoftmax[\(i)]")
        }
    }

    func testCrossEntropyMatchesReferenceAndFiniteDifferences() {
        for (rows, classes) in [(1, 1), (3, 10), (17, 7), (128, 76), (65, 1000)] {
            let x = randomArray(rows * classes, seed: UInt64(rows), lo: -30, hi: 30)
            let labels = (0..<rows).map { Int32(($0 * 7) % classes) }
            var p = [Float](repeating: 0, count: rows * classes), l = [Float](repeating: 0, count: rows), pr = p, lr = l
            let mean = CrossEntropy.forward(
                probs: &p, losses: &l, logits: x, labels: labels, rows: rows, classes: classes)
            let meanRef = CrossEntropy.forwardReference(
                probs: &pr, losses: &lr, logits: x, labels: labels, rows: rows, classes: classes)
            XCTAssertEqual(mean, meanRef, accuracy: 1e-5 * max(1, abs(meanRef)))
            assertClose(p, pr, atol: 1e-7, rtol: 1e-5, "probs [\(rows), \(classes)]")
            assertClose(l, lr, atol: 1e-5, rtol: 1e-5, "losses [\(rows), \(classes)]")
        }
        let (rows, classes) = (4, 5)
        let x = randomArray(rows * classes, seed: 11, lo: -3, hi: 3).map(Double.init)
        let labels: [Int32] = [0, 4, 2, 2]
        func loss(_ x: [Double]) -> Double {
            (0..<rows).reduce(0.0) { s, r in
                let row = x[(r * classes)..<((r + 1) * classes)], m = row.max()!
                return s + log(row.reduce(0) { $0 + exp($1 - m) }) + m - x[r * classes + Int(labels[r])]
            } / Double(rows)
        }
        var p = [Float](repeating: 0, count: rows * classes), l = [Float](repeating: 0, count: rows), d = p
        _ = CrossEntropy.forward(
            probs: &p, losses: &l, logits: x.map(Float.init), labels: labels, rows: rows, classes: classes)
        CrossEntropy.backward(
            dlogits: &d, probs: p, labels: labels, rows: rows, classes: classes, scale: 1 / Float(rows))
        for i in 0..<x.count {
            XCTAssertEqual(Double(d[i]), finiteDifference(x, i, loss), accuracy: 1e-5, "dlogits[\(i)]")
        }
    }

    // MARK: Optimizer and elementwise

    func testAdamWMatchesReferenceOverSteps() {
        for n in [1, 17, 193, 70_001] {
            var p = randomArray(n, seed: 1), m = [Float](repeating: 0, count: n), v = m
            var pr = p, mr = m, vr = v
            for step in 1...5 {
                let g = randomArray(n, seed: UInt64(step + 10))
                AdamW.update(
                    params: &p, grads: g, m: &m, v: &v, count: n, step: step, lr: 1e-2, beta1: 0.9, beta2: 0.999,
                    eps: 1e-8, weightDecay: 0.1)
                AdamW.updateReference(
                    params: &pr, grads: g, m: &mr, v: &vr, count: n, step: step, lr: 1e-2, beta1: 0.9, beta2: 0.999,
                    eps: 1e-8, weightDecay: 0.1)
            }
            assertClose(p, pr, atol: 1e-6, rtol: 1e-5, "AdamW params n=\(n)")
            assertClose(v, vr, atol: 1e-9, rtol: 1e-5, "AdamW v n=\(n)")
        }
    }

    func testGradientNormAndClip() {
        for n in [0, 1, 17, 16_385, 300_001] {
            var x = randomArray(n, seed: UInt64(n))
            let expected = x.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            XCTAssertEqual(GradientNorm.l2(x, count: n), expected, accuracy: 1e-5 * max(1, expected))
            let before = GradientNorm.clip(&x, count: n, maxNorm: 1)
            XCTAssertEqual(before, expected, accuracy: 1e-5 * max(1, expected))
            if expected > 1 { XCTAssertEqual(GradientNorm.l2(x, count: n), 1, accuracy: 1e-4) }
        }
    }

    func testElementwiseMatchesReference() {
        for (rows, cols) in shapes {
            let n = rows * cols
            let x = randomArray(n, seed: 1), y0 = randomArray(n, seed: 2)
            var y = y0, yr = y0
            Elementwise.axpy(y: &y, x: x, alpha: 0.37, count: n)
            Elementwise.axpyReference(y: &yr, x: x, alpha: 0.37, count: n)
            assertClose(y, yr, atol: 1e-7, rtol: 1e-6, "axpy n=\(n)")
            var s = x
            Elementwise.scale(&s, alpha: -2, count: n)
            XCTAssertEqual(s, x.map { $0 * -2 })
            var sum = [Float](repeating: 0, count: n)
            Elementwise.add(out: &sum, a: x, b: y0, count: n)
            XCTAssertEqual(sum, zip(x, y0).map { $0 + $1 })
            let bias = randomArray(cols, seed: 3)
            var o = y0
            Elementwise.biasAddForward(out: &o, bias: bias, rows: rows, cols: cols)
            XCTAssertEqual(o, (0..<n).map { y0[$0] + bias[$0 % cols] })
            var db = randomArray(cols, seed: 4), dbr = db
            Elementwise.biasAddBackward(dbias: &db, dout: x, rows: rows, cols: cols)
            Elementwise.biasAddBackwardReference(dbias: &dbr, dout: x, rows: rows, cols: cols)
            assertClose(db, dbr, atol: 1e-4, rtol: 1e-5, "biasAddBackward [\(rows), \(cols)]")
        }
    }

    // MARK: Determinism

    func testKernelsAreBitIdenticalForOneAndTwoThreads() {
        let run = { () -> [[Float]] in
            let ln = self.layerNorm(6304, 192, seed: 7)
            let x = randomArray(1 << 20, seed: 8, lo: -6, hi: 6), g = randomArray(1 << 20, seed: 9)
            var a = [Float](repeating: 0, count: x.count), d = a, q = a
            GELU.forward(out: &a, inp: x, count: x.count)
            GELU.backward(dinp: &d, inp: x, dout: g, count: x.count)
            QuickGELU.backward(dinp: &q, inp: x, dout: g, count: x.count)
            var db = [Float](repeating: 0, count: 768)
            Elementwise.biasAddBackward(dbias: &db, dout: x, rows: x.count / 768, cols: 768)
            var p = x, m = g, v = g.map { $0 * $0 }
            AdamW.update(
                params: &p, grads: g, m: &m, v: &v, count: x.count, step: 3, lr: 1e-3, beta1: 0.9, beta2: 0.999,
                eps: 1e-8, weightDecay: 0.05)
            let norm = GradientNorm.l2(x, count: x.count)
            return [ln.out, ln.dx, ln.dw, ln.db, a, d, q, db, p, [Float(norm), Float(norm - Double(Float(norm)))]]
        }
        let one = withThreads(1, run), two = withThreads(2, run)
        for (i, (a, b)) in zip(one, two).enumerated() {
            XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "output \(i) differs between 1 and 2 threads")
        }
    }
}

final class LinearCombinationTests: XCTestCase {
    func testMatchesSequentialAxpyBitForBitOnOddSizes() {
        for n in [1, 15, 17, 1000, 70_001] {
            var rng = RNG(seed: UInt64(n))
            let base = (0..<n).map { _ in rng.uniformFloat() - 0.5 }
            let xs = (0..<3).map { _ in (0..<n).map { _ in rng.uniformFloat() - 0.5 } }
            let cs: [Float] = [0.3, -1.7, 0.05]
            var expected = base
            for (x, c) in zip(xs, cs) {
                expected.withUnsafeMutableBufferPointer { y in
                    x.withUnsafeBufferPointer {
                        Elementwise.axpy(y: y.baseAddress!, x: $0.baseAddress!, alpha: c, count: n)
                    }
                }
            }
            var out = [Float](repeating: .nan, count: n)
            xs[0].withUnsafeBufferPointer { a in
                xs[1].withUnsafeBufferPointer { b in
                    xs[2].withUnsafeBufferPointer { c in
                        out.withUnsafeMutableBufferPointer { o in
                            Elementwise.linearCombination(
                                out: o.baseAddress!, base: base, xs: [a.baseAddress!, b.baseAddress!, c.baseAddress!],
                                coefficients: cs, count: n)
                        }
                    }
                }
            }
            XCTAssertEqual(out.map(\.bitPattern), expected.map(\.bitPattern), "n = \(n)")
        }
    }
}

/// Forward-mode kernels against central finite differences of their forward kernels.
final class JVPKernelTests: XCTestCase {
    /// (f(x + h·t) − f(x − h·t)) / 2h for a float kernel f.
    func directional(_ x: [Float], _ t: [Float], h: Float = 1e-3, _ f: ([Float]) -> [Float]) -> [Float] {
        let up = f(zip(x, t).map { $0 + h * $1 }), down = f(zip(x, t).map { $0 - h * $1 })
        return zip(up, down).map { ($0 - $1) / (2 * h) }
    }

    func testAttentionJVPMatchesFiniteDifferences() {
        for (batch, tokens, dim, heads) in [(2, 5, 12, 3), (1, 17, 16, 2), (3, 7, 6, 1)] {
            let qkv = randomArray(batch * tokens * 3 * dim, seed: UInt64(tokens)), tq = randomArray(qkv.count, seed: 99)
            func attention(_ x: [Float]) -> [Float] {
                var out = [Float](repeating: 0, count: batch * tokens * dim),
                    att = [Float](repeating: 0, count: batch * heads * tokens * tokens)
                Attention.forward(out: &out, att: &att, qkv: x, batch: batch, tokens: tokens, dim: dim, heads: heads)
                return out
            }
            var out = [Float](repeating: 0, count: batch * tokens * dim),
                att = [Float](repeating: 0, count: batch * heads * tokens * tokens)
            Attention.forward(out: &out, att: &att, qkv: qkv, batch: batch, tokens: tokens, dim: dim, heads: heads)
            var tout = [Float](repeating: .nan, count: out.count), tatt = [Float](repeating: .nan, count: att.count)
            Attention.jvp(
                tout: &tout, tatt: &tatt, tqkv: tq, qkv: qkv, att: att, batch: batch, tokens: tokens, dim: dim,
                heads: heads)
            assertClose(
                tout, directional(qkv, tq, attention), atol: 2e-3, rtol: 1e-2,
                "attention jvp \(batch)×\(tokens)×\(dim)/\(heads)")
        }
    }

    func testLayerNormJVPMatchesFiniteDifferences() {
        for (rows, cols) in [(3, 1), (5, 17), (4, 96)] {
            let x = randomArray(rows * cols, seed: 1), w = randomArray(cols, seed: 2, lo: 0.5, hi: 1.5),
                b = randomArray(cols, seed: 3)
            let tx = randomArray(x.count, seed: 4), tw = randomArray(cols, seed: 5), tb = randomArray(cols, seed: 6)
            // One flat input [x | w | b] so the finite difference perturbs all three along (tx, tw, tb).
            func layerNorm(_ all: [Float]) -> [Float] {
                var out = [Float](repeating: 0, count: rows * cols), mean = [Float](repeating: 0, count: rows),
                    rstd = mean
                let xs = Array(all[0..<(rows * cols)]), ws = Array(all[(rows * cols)..<(rows * cols + cols)]),
                    bs = Array(all[(rows * cols + cols)...])
                LayerNorm.forward(
                    out: &out, mean: &mean, rstd: &rstd, inp: xs, weight: ws, bias: bs, rows: rows, cols: cols,
                    eps: 1e-5)
                return out
            }
            var out = [Float](repeating: 0, count: rows * cols), mean = [Float](repeating: 0, count: rows), rstd = mean
            LayerNorm.forward(
                out: &out, mean: &mean, rstd: &rstd, inp: x, weight: w, bias: b, rows: rows, cols: cols, eps: 1e-5)
            var tout = [Float](repeating: .nan, count: out.count)
            LayerNorm.jvp(
                tout: &tout, tinp: tx, inp: x, mean: mean, rstd: rstd, weight: w, tweight: tw, tbias: tb, rows: rows,
                cols: cols)
            let fd = directional(x + w + b, tx + tw + tb, layerNorm)
            // cols = 1 normalizes to exactly 0: the tangent of x̂ is 0 there (bias tangent remains).
            assertClose(tout, fd, atol: 2e-3, rtol: 1e-2, "layernorm jvp \(rows)×\(cols)")
        }
    }
}
