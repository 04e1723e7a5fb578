import XCTest
import ViTMergeCore
@testable import ViTMergeKernels

/// Columns of a rows×cols matrix (cols ≤ rows) with orthonormal columns, row-major, in Double: seeded
/// uniform columns made orthonormal by modified Gram–Schmidt, twice (independent of the SVD code).
func orthonormalColumns(rows: Int, cols: Int, seed: UInt64) -> [Double] {
    precondition(cols <= rows)
    var rng = RNG(seed: seed)
    var q = (0..<rows * cols).map { _ in rng.uniformDouble() - 0.5 }
    for j in 0..<cols {
        for _ in 0..<2 {
            for p in 0..<j {
                var d = 0.0
                for i in 0..<rows { d += q[i * cols + p] * q[i * cols + j] }
                for i in 0..<rows { q[i * cols + j] -= d * q[i * cols + p] }
            }
        }
        var nrm = 0.0
        for i in 0..<rows { nrm += q[i * cols + j] * q[i * cols + j] }
        for i in 0..<rows { q[i * cols + j] /= nrm.squareRoot() }
    }
    return q
}

/// A[m,n] = Q₁ diag(s) Q₂ᵀ rounded to Float, for Q₁[m,k], Q₂[n,k] with orthonormal columns, k = s.count.
func matrixWithSpectrum(_ s: [Double], m: Int, n: Int, seed: UInt64) -> [Float] {
    let k = s.count
    let q1 = orthonormalColumns(rows: m, cols: k, seed: seed), q2 = orthonormalColumns(rows: n, cols: k, seed: seed + 1)
    var a = [Float](repeating: 0, count: m * n)
    for i in 0..<m {
        for j in 0..<n {
            var acc = 0.0
            for r in 0..<k { acc += q1[i * k + r] * s[r] * q2[j * k + r] }
            a[i * n + j] = Float(acc)
        }
    }
    return a
}

/// The thin SVD of a[m,n] by `SVD.decompose` (or its reference twin).
func thinSVD(
    _ a: [Float], m: Int, n: Int, pool: ThreadPool = .shared, reference: Bool = false
) -> (u: [Float], s: [Float], vt: [Float]) {
    let k = min(m, n)
    var u = [Float](repeating: .nan, count: m * k), s = [Float](repeating: .nan, count: k)
    var vt = [Float](repeating: .nan, count: k * n)
    if reference {
        SVD.decomposeReference(a: a, m: m, n: n, u: &u, s: &s, vt: &vt)
    } else {
        SVD.decompose(a: a, m: m, n: n, u: &u, s: &s, vt: &vt, pool: pool)
    }
    return (u, s, vt)
}

final class SVDTests: XCTestCase {
    /// Checks ‖A − UΣVᵀ‖_F/‖A‖_F ≤ 1e-5, UᵀU = I and VᵀV = I to 1e-5, s ≥ 0 descending.
    func assertValidSVD(
        _ a: [Float], m: Int, n: Int, _ r: (u: [Float], s: [Float], vt: [Float]), _ what: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        let k = min(m, n)
        var err = 0.0, norm = 0.0
        for i in 0..<m {
            for j in 0..<n {
                var acc = 0.0
                for p in 0..<k { acc += Double(r.u[i * k + p]) * Double(r.s[p]) * Double(r.vt[p * n + j]) }
                err += (Double(a[i * n + j]) - acc) * (Double(a[i * n + j]) - acc)
                norm += Double(a[i * n + j]) * Double(a[i * n + j])
            }
        }
        let rel = norm == 0 ? err.squareRoot() : (err / norm).squareRoot()
        XCTAssertLessThanOrEqual(rel, 1e-5, "\(what): relative reconstruction error", file: file, line: line)
        var worstU = 0.0, worstV = 0.0
        for p in 0..<k {
            for q in 0..<k {
                var du = 0.0, dv = 0.0
                for i in 0..<m { du += Double(r.u[i * k + p]) * Double(r.u[i * k + q]) }
                for j in 0..<n { dv += Double(r.vt[p * n + j]) * Double(r.vt[q * n + j]) }
                worstU = max(worstU, abs(du - (p == q ? 1 : 0)))
                worstV = max(worstV, abs(dv - (p == q ? 1 : 0)))
            }
        }
        XCTAssertLessThanOrEqual(worstU, 1e-5, "\(what): max |UᵀU − I|", file: file, line: line)
        XCTAssertLessThanOrEqual(worstV, 1e-5, "\(what): max |VᵀV − I|", file: file, line: line)
        XCTAssertTrue(r.s.allSatisfy { $0 >= 0 }, "\(what): negative singular value in \(r.s)", file: file, line: line)
        for p in 1..<max(1, k) where r.s[p] > r.s[p - 1] {
            XCTFail("\(what): s[\(p)] = \(r.s[p]) > s[\(p - 1)] = \(r.s[p - 1])", file: file, line: line)
        }
    }

    func testKnownSpectrumOddSizesBothOrientations() {
        let sizes = [(7, 5), (5, 7), (33, 17), (17, 33), (1, 1), (1, 6), (6, 1), (64, 64), (65, 3)]
        for (c, (m, n)) in sizes.enumerated() {
            var rng = RNG(seed: 40 + UInt64(c))
            let s = (0..<min(m, n)).map { _ in 0.1 + 0.9 * rng.uniformDouble() }.sorted(by: >)
            let a = matrixWithSpectrum(s, m: m, n: n, seed: 7 &* UInt64(c))
            let r = thinSVD(a, m: m, n: n)
            assertValidSVD(a, m: m, n: n, r, "\(m)×\(n)")
            assertClose(r.s, s.map(Float.init), atol: 1e-6, rtol: 1e-5, "\(m)×\(n) singular values")
        }
    }

    /// Singular values spanning 1 … 1e-6: the small ones are found to the Float rounding of A (≈1e-7 absolute).
    func testIllConditioned() {
        for (m, n) in [(40, 24), (24, 40)] {
            let s = (0..<24).map { pow(10, -6 * Double($0) / 23) }
            let a = matrixWithSpectrum(s, m: m, n: n, seed: 11)
            let r = thinSVD(a, m: m, n: n)
            assertValidSVD(a, m: m, n: n, r, "ill-conditioned \(m)×\(n)")
            assertClose(r.s, s.map(Float.init), atol: 3e-7, rtol: 1e-5, "ill-conditioned \(m)×\(n) singular values")
        }
    }

    /// Rank 3 of 12, a matrix with zero columns and rows, and the zero matrix: U and V stay orthonormal.
    func testRankDeficient() {
        let s = [1.0, 0.5, 0.25]
        for (m, n) in [(20, 12), (12, 20)] {
            let a = matrixWithSpectrum(s, m: m, n: n, seed: 5)
            let r = thinSVD(a, m: m, n: n)
            assertValidSVD(a, m: m, n: n, r, "rank 3 \(m)×\(n)")
            assertClose(r.s, (s + [Double](repeating: 0, count: 9)).map(Float.init), atol: 1e-6, rtol: 1e-5, "rank 3")
        }
        // 9×6 with only columns 1 and 4 nonzero (exact zero columns and, for row 0, a zero row).
        var z = [Float](repeating: 0, count: 54)
        for i in 1..<9 { z[i * 6 + 1] = Float(i); z[i * 6 + 4] = Float(i % 3) - 1 }
        let rz = thinSVD(z, m: 9, n: 6)
        assertValidSVD(z, m: 9, n: 6, rz, "zero columns")
        XCTAssertEqual(Array(rz.s[2...]), [0, 0, 0, 0], "zero columns: exactly zero singular values")
        let zero = [Float](repeating: 0, count: 15)
        let r0 = thinSVD(zero, m: 5, n: 3)
        assertValidSVD(zero, m: 5, n: 3, r0, "zero matrix")
        XCTAssertEqual(r0.s, [0, 0, 0])
    }

    /// σ² against the eigenvalues of the Gram matrix AᵀA (or AAᵀ) formed and diagonalized in Double.
    func testAgainstGramEigenvalues() {
        for (m, n) in [(33, 17), (17, 33), (9, 6)] {
            let a = randomArray(m * n, seed: UInt64(m * 100 + n))
            let k = min(m, n)
            var gram = [Double](repeating: 0, count: k * k)
            for p in 0..<k {
                for q in 0..<k {
                    var acc = 0.0
                    if m >= n {
                        for i in 0..<m { acc += Double(a[i * n + p]) * Double(a[i * n + q]) }
                    } else {
                        for j in 0..<n { acc += Double(a[p * n + j]) * Double(a[q * n + j]) }
                    }
                    gram[p * k + q] = acc
                }
            }
            var values = [Double](repeating: 0, count: k), vectors = [Double](repeating: 0, count: k * k)
            SymmetricEigen.decompose(a: gram, n: k, values: &values, vectors: &vectors)
            let expected = values.reversed().map { Float(max(0, $0).squareRoot()) }
            let r = thinSVD(a, m: m, n: n)
            assertValidSVD(a, m: m, n: n, r, "random \(m)×\(n)")
            assertClose(r.s, expected, atol: 1e-6, rtol: 1e-5, "random \(m)×\(n) vs √eig(Gram)")
        }
    }

    /// The round-robin parallel kernel and the cyclic reference twin agree.
    func testMatchesReferenceTwin() {
        for (m, n) in [(31, 19), (19, 31), (8, 8)] {
            let a = randomArray(m * n, seed: 3)
            let fast = thinSVD(a, m: m, n: n), ref = thinSVD(a, m: m, n: n, reference: true)
            assertValidSVD(a, m: m, n: n, ref, "reference \(m)×\(n)")
            assertClose(fast.s, ref.s, atol: 1e-6, rtol: 1e-5, "fast vs reference \(m)×\(n)")
        }
    }

    /// 160×100 splits each round's 2 block pairs over 2 threads; the bits are those of 1 thread.
    func testOneAndTwoThreadsBitIdentical() {
        for (m, n) in [(160, 100), (100, 160)] {
            let a = randomArray(m * n, seed: 9)
            // Jacobi runs on the 100×100 R of the QR preconditioner: 4 blocks of ≤ 32 columns, 2 block
            // pairs a round, each 32·32 column pairs of 8·(100 + 100) cost units.
            let b = SVD.blockColumns
            let cost = 2 * 8 * (2 * min(m, n)) * b * b
            let two = withThreads(2) { pool -> (u: [Float], s: [Float], vt: [Float]) in
                XCTAssertEqual(pool.threadCount(work: cost), 2, "the test must really split a round")
                return thinSVD(a, m: m, n: n, pool: pool)
            }
            let one = withThreads(1) { thinSVD(a, m: m, n: n, pool: $0) }
            XCTAssertEqual(one.s.map(\.bitPattern), two.s.map(\.bitPattern), "\(m)×\(n) s")
            XCTAssertEqual(one.u.map(\.bitPattern), two.u.map(\.bitPattern), "\(m)×\(n) u")
            XCTAssertEqual(one.vt.map(\.bitPattern), two.vt.map(\.bitPattern), "\(m)×\(n) vt")
            assertValidSVD(a, m: m, n: n, two, "\(m)×\(n) 2 threads")
        }
    }
}
