import XCTest
import ViTMergeCore
@testable import ViTMergeKernels

final class LinearTests: XCTestCase {
    /// y = x·Wᵀ + b in Double.
    func reference(_ x: [Float], _ w: [Float], _ b: [Float]?, rows: Int, inF: Int, outF: Int) -> [Float] {
        var y = [Float](repeating: 0, count: rows * outF)
        for r in 0..<rows {
            for o in 0..<outF {
                var s = b.map { Double($0[o]) } ?? 0
                for i in 0..<inF { s += Double(x[r * inF + i]) * Double(w[o * inF + i]) }
                y[r * outF + o] = Float(s)
            }
        }
        return y
    }

    func testForwardBackwardJVPOnOddSizes() {
        for (rows, inF, outF) in [(1, 1, 1), (3, 17, 63), (17, 65, 3), (63, 127, 193), (193, 3, 65)] {
            let x = randomArray(rows * inF, seed: 1), w = randomArray(outF * inF, seed: 2),
                b = randomArray(outF, seed: 3)
            var y = [Float](repeating: .nan, count: rows * outF)
            Linear.forward(out: &y, inp: x, weight: w, bias: b, rows: rows, inFeatures: inF, outFeatures: outF)
            let tol = 1e-5 * Float(inF).squareRoot() * 4
            assertClose(y, reference(x, w, b, rows: rows, inF: inF, outF: outF), atol: tol, rtol: 1e-5, "forward")
            // Backward: dinp = dout·W, dW += doutᵀ·x, db += Σ dout (checked through the adjoint identity
            // ⟨dout, x·Wᵀ⟩ = ⟨dinp, x⟩ = ⟨dW, W⟩ restricted to each operand).
            let g = randomArray(rows * outF, seed: 4)
            var dx = [Float](repeating: .nan, count: x.count), dw = [Float](repeating: 0, count: w.count)
            var db = [Float](repeating: 0, count: outF)
            Linear.backward(
                dinp: &dx, dweight: &dw, dbias: &db, dout: g, inp: x, weight: w, rows: rows, inFeatures: inF,
                outFeatures: outF)
            let gT = (0..<(outF * rows)).map { g[($0 % rows) * outF + $0 / rows] }  // gᵀ [outF, rows]
            assertClose(
                dx, reference(g, transpose(w, outF, inF), nil, rows: rows, inF: outF, outF: inF),
                atol: tol, rtol: 1e-5, "dinp")
            assertClose(
                dw, reference(gT, transpose(x, rows, inF), nil, rows: outF, inF: rows, outF: inF),
                atol: tol, rtol: 1e-5, "dweight")
            assertClose(
                db, (0..<outF).map { o in (0..<rows).reduce(Float(0)) { $0 + g[$1 * outF + o] } },
                atol: tol, rtol: 1e-5, "dbias")
            // JVP: (x + h·tx)·(W + h·tW)ᵀ + (b + h·tb) is quadratic in h; the central difference is exact
            // up to rounding.
            let tx = randomArray(x.count, seed: 5), tw = randomArray(w.count, seed: 6), tb = randomArray(outF, seed: 7)
            var t = [Float](repeating: .nan, count: y.count)
            Linear.jvp(
                tout: &t, tinp: tx, inp: x, weight: w, tweight: tw, tbias: tb, rows: rows, inFeatures: inF,
                outFeatures: outF)
            let expected = zip(
                reference(tx, w, tb, rows: rows, inF: inF, outF: outF),
                reference(x, tw, nil, rows: rows, inF: inF, outF: outF)
            ).map { $0 + $1 }
            assertClose(t, expected, atol: 2 * tol, rtol: 1e-5, "jvp")
        }
    }

    func transpose(_ a: [Float], _ r: Int, _ c: Int) -> [Float] { (0..<(r * c)).map { a[($0 % r) * c + $0 / r] } }
}
