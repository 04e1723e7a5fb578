import Foundation
import XCTest
import ViTMergeCore
@testable import ViTMergeKernels

final class ElementwiseTests: XCTestCase {
    let shapes = [(1, 1), (3, 17), (17, 63), (65, 127), (127, 193), (300, 65), (1000, 193)]

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

    func testLinearCombinationMatchesSequentialAxpyBitForBit() {
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

    func testOneAndTwoThreadsAreBitIdentical() {
        let x = randomArray(1 << 20, seed: 8, lo: -6, hi: 6), y0 = randomArray(1 << 20, seed: 9)
        func run(_ pool: ThreadPool) -> [Float] {
            var db = [Float](repeating: 0, count: 768), y = y0, o = y0
            Elementwise.biasAddBackward(dbias: &db, dout: x, rows: x.count / 768, cols: 768, pool: pool)
            Elementwise.axpy(y: &y, x: x, alpha: 0.3, count: x.count, pool: pool)
            Elementwise.biasAddForward(out: &o, bias: db, rows: x.count / 768, cols: 768, pool: pool)
            return db + y + o
        }
        let one = withThreads(1, run), two = withThreads(2, run)
        XCTAssertEqual(one.map(\.bitPattern), two.map(\.bitPattern))
    }
}
