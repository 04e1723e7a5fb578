import XCTest
import ViTMergeCore
@testable import ViTMergeKernels

final class ResidualTests: XCTestCase {
    func testForwardMatchesPyTorchOrderAndReference() {
        for cols in oddSizes {
            for rows in [1, 3, 17] {
                let x = randomArray(rows * cols, seed: 1), y = randomArray(rows * cols, seed: 2)
                let b = randomArray(cols, seed: 3)
                var out = [Float](repeating: .nan, count: x.count), ref = out, inPlace = y
                Residual.forward(out: &out, residual: x, inp: y, bias: b, rows: rows, cols: cols)
                Residual.forwardReference(out: &ref, residual: x, inp: y, bias: b, rows: rows, cols: cols)
                assertClose(out, ref, atol: 1e-6, rtol: 1e-6, "residual [\(rows), \(cols)]")
                // Exactly x + (y + b), also in place on the input.
                XCTAssertEqual(out, (0..<x.count).map { x[$0] + (y[$0] + b[$0 % cols]) })
                inPlace.withUnsafeMutableBufferPointer { io in
                    Residual.forward(
                        out: io.baseAddress!, residual: x, inp: io.baseAddress!, bias: b, rows: rows, cols: cols)
                }
                XCTAssertEqual(inPlace, out)
                // Backward: the bias gradient is the column sum of dout; JVP: the map is affine.
                var db = [Float](repeating: 0, count: cols), dbr = db
                Residual.backward(dbias: &db, dout: x, rows: rows, cols: cols)
                Elementwise.biasAddBackwardReference(dbias: &dbr, dout: x, rows: rows, cols: cols)
                assertClose(db, dbr, atol: 1e-5, rtol: 1e-5, "residual dbias")
                var t = [Float](repeating: .nan, count: x.count)
                Residual.jvp(tout: &t, tresidual: x, tinp: y, tbias: b, rows: rows, cols: cols)
                XCTAssertEqual(t, out)
            }
        }
    }

    func testOneAndTwoThreadsAreBitIdentical() {
        let (rows, cols) = (3000, 193)
        let x = randomArray(rows * cols, seed: 1), y = randomArray(rows * cols, seed: 2), b = randomArray(cols, seed: 3)
        func run(_ pool: ThreadPool) -> [Float] {
            var out = [Float](repeating: 0, count: x.count)
            Residual.forward(out: &out, residual: x, inp: y, bias: b, rows: rows, cols: cols, pool: pool)
            return out
        }
        let one = withThreads(1, run), two = withThreads(2, run)
        XCTAssertEqual(one.map(\.bitPattern), two.map(\.bitPattern))
    }
}
