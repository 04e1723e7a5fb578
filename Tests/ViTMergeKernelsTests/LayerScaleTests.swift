import XCTest
import ViTMergeCore
@testable import ViTMergeKernels

final class LayerScaleTests: XCTestCase {
    func testForwardBackwardJVPMatchReferences() {
        for cols in oddSizes {
            for rows in [1, 3, 17] {
                let x = randomArray(rows * cols, seed: 1), y = randomArray(rows * cols, seed: 2)
                let g = randomArray(cols, seed: 3), dout = randomArray(rows * cols, seed: 4)
                var out = [Float](repeating: .nan, count: x.count), ref = out
                LayerScale.forward(out: &out, residual: x, inp: y, gamma: g, rows: rows, cols: cols)
                LayerScale.forwardReference(out: &ref, residual: x, inp: y, gamma: g, rows: rows, cols: cols)
                assertClose(out, ref, atol: 1e-6, rtol: 1e-6, "forward [\(rows), \(cols)]")
                // PyTorch's rounding: the product, then the residual add.
                XCTAssertEqual(out, (0..<x.count).map { x[$0] + g[$0 % cols] * y[$0] })
                var din = [Float](repeating: .nan, count: x.count), dinRef = din
                var dg = randomArray(cols, seed: 5), dgRef = dg
                LayerScale.backward(dinp: &din, dgamma: &dg, dout: dout, inp: y, gamma: g, rows: rows, cols: cols)
                LayerScale.backwardReference(
                    dinp: &dinRef, dgamma: &dgRef, dout: dout, inp: y, gamma: g, rows: rows, cols: cols)
                assertClose(din, dinRef, atol: 1e-6, rtol: 1e-6, "dinp")
                assertClose(dg, dgRef, atol: 1e-5, rtol: 1e-5, "dgamma (accumulated)")
                let tx = randomArray(rows * cols, seed: 6), ty = randomArray(rows * cols, seed: 7)
                let tg = randomArray(cols, seed: 8)
                var t = [Float](repeating: .nan, count: x.count), tRef = t
                LayerScale.jvp(tout: &t, tresidual: tx, tinp: ty, tgamma: tg, inp: y, gamma: g, rows: rows, cols: cols)
                LayerScale.jvpReference(
                    tout: &tRef, tresidual: tx, tinp: ty, tgamma: tg, inp: y, gamma: g, rows: rows, cols: cols)
                assertClose(t, tRef, atol: 1e-6, rtol: 1e-6, "jvp")
            }
        }
    }

    /// The backward against central differences of L = Σ w ⊙ out in Double, for γ, the branch and the residual
    /// (whose gradient is dout itself); the JVP against a directional difference of the forward.
    func testGradientsAgainstFiniteDifferences() {
        let (rows, cols) = (5, 19)
        let x = randomArray(rows * cols, seed: 11), y = randomArray(rows * cols, seed: 12)
        let g = randomArray(cols, seed: 13), w = randomArray(rows * cols, seed: 14)
        func loss(_ x: [Double], _ y: [Double], _ g: [Double]) -> Double {
            (0..<(rows * cols)).reduce(0) { $0 + Double(w[$1]) * (x[$1] + g[$1 % cols] * y[$1]) }
        }
        let (xd, yd, gd) = (x.map(Double.init), y.map(Double.init), g.map(Double.init))
        var din = [Float](repeating: 0, count: rows * cols), dg = [Float](repeating: 0, count: cols)
        LayerScale.backward(dinp: &din, dgamma: &dg, dout: w, inp: y, gamma: g, rows: rows, cols: cols)
        for c in [0, 7, 18] {
            XCTAssertEqual(Double(dg[c]), finiteDifference(gd, c) { loss(xd, yd, $0) }, accuracy: 1e-6)
        }
        for i in [0, 33, 94] {
            XCTAssertEqual(Double(din[i]), finiteDifference(yd, i) { loss(xd, $0, gd) }, accuracy: 1e-6)
            XCTAssertEqual(Double(w[i]), finiteDifference(xd, i) { loss($0, yd, gd) }, accuracy: 1e-6)
        }
        // JVP in (x, y, γ) jointly.
        let tx = randomArray(rows * cols, seed: 15), ty = randomArray(rows * cols, seed: 16)
        let tg = randomArray(cols, seed: 17)
        var t = [Float](repeating: 0, count: rows * cols)
        LayerScale.jvp(tout: &t, tresidual: tx, tinp: ty, tgamma: tg, inp: y, gamma: g, rows: rows, cols: cols)
        let packed = x + y + g, tangent = tx + ty + tg
        let fd = directional(packed, tangent) { v in
            (0..<(rows * cols)).map { v[$0] + v[rows * cols * 2 + $0 % cols] * v[rows * cols + $0] }
        }
        assertClose(t, fd, atol: 2e-3, rtol: 2e-3, "jvp vs finite difference")
    }

    func testOneAndTwoThreadsAreBitIdentical() {
        let (rows, cols) = (3000, 193)
        let x = randomArray(rows * cols, seed: 1), y = randomArray(rows * cols, seed: 2), g = randomArray(cols, seed: 3)
        func run(_ pool: ThreadPool) -> [Float] {
            var out = [Float](repeating: 0, count: x.count), din = out, dg = [Float](repeating: 0, count: cols)
            LayerScale.forward(out: &out, residual: x, inp: y, gamma: g, rows: rows, cols: cols, pool: pool)
            LayerScale.backward(dinp: &din, dgamma: &dg, dout: x, inp: y, gamma: g, rows: rows, cols: cols, pool: pool)
            var t = [Float](repeating: 0, count: x.count)
            LayerScale.jvp(
                tout: &t, tresidual: x, tinp: y, tgamma: g, inp: out, gamma: g, rows: rows, cols: cols, pool: pool)
            return out + din + dg + t
        }
        let one = withThreads(1, run), two = withThreads(2, run)
        XCTAssertEqual(one.map(\.bitPattern), two.map(\.bitPattern))
    }
}
