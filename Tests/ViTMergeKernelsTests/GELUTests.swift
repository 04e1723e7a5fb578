import Foundation
import XCTest
import ViTMergeCore
@testable import ViTMergeKernels

final class GELUTests: XCTestCase {
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

    func testOneAndTwoThreadsAreBitIdentical() {
        let x = randomArray(1 << 20, seed: 8, lo: -6, hi: 6), g = randomArray(1 << 20, seed: 9)
        func run(_ pool: ThreadPool) -> [[Float]] {
            var a = [Float](repeating: 0, count: x.count), d = a, q = a, qa = a
            GELU.forward(out: &a, inp: x, count: x.count, pool: pool)
            GELU.backward(dinp: &d, inp: x, dout: g, count: x.count, pool: pool)
            QuickGELU.forward(out: &qa, inp: x, count: x.count, pool: pool)
            QuickGELU.backward(dinp: &q, inp: x, dout: g, count: x.count, pool: pool)
            return [a, d, qa, q]
        }
        let one = withThreads(1, run), two = withThreads(2, run)
        for (i, (a, b)) in zip(one, two).enumerated() {
            XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "output \(i) differs between 1 and 2 threads")
        }
    }
}
