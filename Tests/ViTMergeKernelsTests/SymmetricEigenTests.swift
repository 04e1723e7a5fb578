import XCTest
import ViTMergeCore
@testable import ViTMergeKernels

final class SymmetricEigenTests: XCTestCase {
    func testTwoByTwoByHand() {
        // [[2, 1], [1, 2]]: λ = 1 with (1, −1)/√2 and λ = 3 with (1, 1)/√2
        var values = [Double](repeating: 0, count: 2), vectors = [Double](repeating: 0, count: 4)
        SymmetricEigen.decompose(a: [2, 1, 1, 2], n: 2, values: &values, vectors: &vectors)
        XCTAssertEqual(values[0], 1, accuracy: 1e-15)
        XCTAssertEqual(values[1], 3, accuracy: 1e-15)
        let r = 0.5.squareRoot()
        XCTAssertEqual(abs(vectors[0]), r, accuracy: 1e-15)
        XCTAssertEqual(vectors[2], -vectors[0], accuracy: 1e-15, "λ = 1: (1, −1)/√2 up to sign")
        XCTAssertEqual(vectors[3], vectors[1], accuracy: 1e-15, "λ = 3: (1, 1)/√2 up to sign")
    }

    /// A = Q diag(λ) Qᵀ with a known spectrum (negative, repeated and zero eigenvalues), odd sizes.
    func testKnownSpectrumAndResiduals() {
        for n in [1, 3, 9, 17, 31] {
            var rng = RNG(seed: UInt64(n))
            var lambda = (0..<n).map { _ in 4 * rng.uniformDouble() - 2 }
            if n >= 3 { lambda[1] = lambda[0]; lambda[2] = 0 }
            let q = orthonormalColumns(rows: n, cols: n, seed: UInt64(n) + 100)
            var a = [Double](repeating: 0, count: n * n)
            for i in 0..<n {
                for j in 0..<n {
                    var acc = 0.0
                    for k in 0..<n { acc += q[i * n + k] * lambda[k] * q[j * n + k] }
                    a[i * n + j] = acc
                }
            }
            var values = [Double](repeating: 0, count: n), vectors = [Double](repeating: 0, count: n * n)
            SymmetricEigen.decompose(a: a, n: n, values: &values, vectors: &vectors)
            let sorted = lambda.sorted()
            for i in 0..<n { XCTAssertEqual(values[i], sorted[i], accuracy: 1e-13, "n \(n): λ[\(i)]") }
            var worstResidual = 0.0, worstOrtho = 0.0
            for j in 0..<n {
                for i in 0..<n {
                    var av = 0.0
                    for k in 0..<n { av += a[i * n + k] * vectors[k * n + j] }
                    worstResidual = max(worstResidual, abs(av - values[j] * vectors[i * n + j]))
                }
                for p in 0..<n {
                    var d = 0.0
                    for i in 0..<n { d += vectors[i * n + j] * vectors[i * n + p] }
                    worstOrtho = max(worstOrtho, abs(d - (j == p ? 1 : 0)))
                }
            }
            XCTAssertLessThanOrEqual(worstResidual, 1e-13, "n \(n): max |A·v − λ·v|")
            XCTAssertLessThanOrEqual(worstOrtho, 1e-13, "n \(n): max |VᵀV − I|")
        }
    }

    /// The Float entry point: residuals of a random symmetric 20×20 at Float precision.
    func testFloatResiduals() {
        let n = 20
        let r = randomArray(n * n, seed: 2)
        var a = [Float](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { a[i * n + j] = r[min(i, j) * n + max(i, j)] } }
        var values = [Float](repeating: 0, count: n), vectors = [Float](repeating: 0, count: n * n)
        SymmetricEigen.decompose(a: a, n: n, values: &values, vectors: &vectors)
        for j in 0..<n {
            for i in 0..<n {
                var av: Float = 0
                for k in 0..<n { av += a[i * n + k] * vectors[k * n + j] }
                XCTAssertEqual(av, values[j] * vectors[i * n + j], accuracy: 1e-5, "A·v − λ·v at (\(i), \(j))")
            }
        }
        XCTAssertEqual(values, values.sorted(), "ascending")
        // trace = Σ λ
        let trace = (0..<n).reduce(Float(0)) { $0 + a[$1 * n + $1] }
        XCTAssertEqual(values.reduce(0, +), trace, accuracy: 1e-4)
    }
}
