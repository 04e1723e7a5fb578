import XCTest
import ViTMergeCore
@testable import ViTMergeKernels

final class CholeskyTests: XCTestCase {
    func testFactorOfKnownTriangle() {
        // L = [[2, 0, 0], [1, 3, 0], [-1, 2, 1]] → A = L·Lᵀ = [[4, 2, -2], [2, 10, 5], [-2, 5, 6]]
        let a: [Double] = [4, 2, -2, 2, 10, 5, -2, 5, 6]
        var l = [Double](repeating: .nan, count: 9)
        XCTAssertTrue(Cholesky.factor(a: a, n: 3, l: &l))
        XCTAssertEqual(l, [2, 0, 0, 1, 3, 0, -1, 2, 1])
    }

    func testNotPositiveDefinite() {
        var l = [Double](repeating: 0, count: 4)
        XCTAssertFalse(Cholesky.factor(a: [1, 2, 2, 1], n: 2, l: &l), "eigenvalues 3 and −1")
        var x = [Float](repeating: 7, count: 2)
        XCTAssertFalse(Cholesky.solveRidge(a: [1, 0, 0, 0], n: 2, ridge: 0, b: [1, 1], r: 1, x: &x), "singular")
        XCTAssertEqual(x, [7, 7], "x is not written on failure")
    }

    /// (A + εI)·X = B for a known X, with A = MᵀM + I (SPD, odd sizes) and a rank-1 A that needs the ridge.
    func testRidgeSolveKnownAnswer() {
        for (n, r) in [(1, 1), (7, 3), (17, 5), (33, 2)] {
            let m = randomArray(n * n, seed: UInt64(n))
            var a = [Float](repeating: 0, count: n * n)
            for i in 0..<n {
                for j in 0..<n {
                    var acc: Double = i == j ? 1 : 0
                    for k in 0..<n { acc += Double(m[k * n + i]) * Double(m[k * n + j]) }
                    a[i * n + j] = Float(acc)
                }
            }
            let ridge: Float = 0.25
            let xTrue = randomArray(n * r, seed: 99)
            var b = [Float](repeating: 0, count: n * r)
            for i in 0..<n {
                for c in 0..<r {
                    var acc = Double(ridge) * Double(xTrue[i * r + c])
                    for k in 0..<n { acc += Double(a[i * n + k]) * Double(xTrue[k * r + c]) }
                    b[i * r + c] = Float(acc)
                }
            }
            var x = [Float](repeating: .nan, count: n * r)
            XCTAssertTrue(Cholesky.solveRidge(a: a, n: n, ridge: ridge, b: b, r: r, x: &x))
            assertClose(x, xTrue, atol: 1e-4, rtol: 1e-4, "n \(n) r \(r)")
        }
        // A = vvᵀ with v = (1, 2, 2) (rank 1): (A + εI)⁻¹ v = v / (‖v‖² + ε) = v / (9 + ε)
        let v: [Float] = [1, 2, 2]
        let a = (0..<9).map { v[$0 / 3] * v[$0 % 3] }
        var x = [Float](repeating: 0, count: 3)
        XCTAssertTrue(Cholesky.solveRidge(a: a, n: 3, ridge: 1e-3, b: v, r: 1, x: &x))
        assertClose(x, v.map { $0 / 9.001 }, atol: 1e-6, rtol: 1e-5, "rank 1 + ridge")
    }
}
