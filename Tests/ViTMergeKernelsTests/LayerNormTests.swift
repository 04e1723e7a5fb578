import Foundation
import XCTest
import ViTMergeCore
@testable import ViTMergeKernels

final class LayerNormTests: XCTestCase {
    let shapes = [(1, 1), (3, 17), (17, 63), (65, 127), (127, 193), (300, 65), (1000, 193)]

    func layerNorm(
        _ rows: Int, _ cols: Int, seed: UInt64, pool: ThreadPool = .shared
    ) -> (out: [Float], mean: [Float], rstd: [Float], dx: [Float], dw: [Float], db: [Float]) {
        let x = randomArray(rows * cols, seed: seed, lo: -3, hi: 5), w = randomArray(cols, seed: seed + 1),
            b = randomArray(cols, seed: seed + 2)
        let g = randomArray(rows * cols, seed: seed + 3)
        var out = [Float](repeating: 0, count: rows * cols), mean = [Float](repeating: 0, count: rows), rstd = mean
        var dx = randomArray(rows * cols, seed: seed + 4), dw = randomArray(cols, seed: seed + 5),
            db = randomArray(cols, seed: seed + 6)
        LayerNorm.forward(
            out: &out, mean: &mean, rstd: &rstd, inp: x, weight: w, bias: b, rows: rows, cols: cols, eps: 1e-5,
            pool: pool)
        LayerNorm.backward(
            dinp: &dx, dweight: &dw, dbias: &db, dout: g, inp: x, weight: w, mean: mean, rstd: rstd, rows: rows,
            cols: cols, pool: pool)
        return (out, mean, rstd, dx, dw, db)
    }

    func testMatchesReference() {
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

    func testBackwardMatchesFiniteDifferences() {
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

    func testJVPMatchesFiniteDifferences() {
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

    func testOneAndTwoThreadsAreBitIdentical() {
        let one = withThreads(1) { layerNorm(6304, 192, seed: 7, pool: $0) }
        let two = withThreads(2) { layerNorm(6304, 192, seed: 7, pool: $0) }
        for (a, b) in [(one.out, two.out), (one.dx, two.dx), (one.dw, two.dw), (one.db, two.db)] {
            XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern))
        }
    }
}
