import XCTest
import ViTMergeCore
import ViTMergeKernels
import ViTMergeModel

@testable import ViTMergeMerging

/// Dense Double matrices for the independent implementations below (row-major, no SVD: every
/// decomposition goes through the eigenvectors of a Gram matrix, a different algorithm from the
/// one-sided Jacobi SVD the merges use).
struct DMat {
    var rows: Int, cols: Int, a: [Double]
    init(_ rows: Int, _ cols: Int, _ a: [Double]) { (self.rows, self.cols, self.a) = (rows, cols, a) }
    init(_ rows: Int, _ cols: Int, floats: [Float]) { self.init(rows, cols, floats.map(Double.init)) }
    subscript(i: Int, j: Int) -> Double { a[i * cols + j] }
    var t: DMat {
        var out: [Double] = []
        for j in 0..<cols { for i in 0..<rows { out.append(self[i, j]) } }
        return DMat(cols, rows, out)
    }
    static func * (x: DMat, y: DMat) -> DMat {
        precondition(x.cols == y.rows)
        var out = [Double](repeating: 0, count: x.rows * y.cols)
        for i in 0..<x.rows { for k in 0..<x.cols { for j in 0..<y.cols { out[i * y.cols + j] += x[i, k] * y[k, j] } } }
        return DMat(x.rows, y.cols, out)
    }
    static func - (x: DMat, y: DMat) -> DMat { DMat(x.rows, x.cols, zip(x.a, y.a).map { $0 - $1 }) }
    static func + (x: DMat, y: DMat) -> DMat { DMat(x.rows, x.cols, zip(x.a, y.a).map { $0 + $1 }) }
    static func identity(_ n: Int) -> DMat {
        var m = DMat(n, n, [Double](repeating: 0, count: n * n))
        for i in 0..<n { m.a[i * n + i] = 1 }
        return m
    }
    static func diagonal(_ d: [Double]) -> DMat {
        var m = identity(d.count)
        for i in d.indices { m.a[i * d.count + i] = d[i] }
        return m
    }
    func scaled(_ s: Double) -> DMat { DMat(rows, cols, a.map { $0 * s }) }
    func columns(_ r: Range<Int>) -> DMat {
        var out: [Double] = []
        for i in 0..<rows { for j in r { out.append(self[i, j]) } }
        return DMat(rows, r.count, out)
    }
    /// [x | y]
    func hstack(_ y: DMat) -> DMat {
        var out: [Double] = []
        for i in 0..<rows {
            for j in 0..<cols { out.append(self[i, j]) }
            for j in 0..<y.cols { out.append(y[i, j]) }
        }
        return DMat(rows, cols + y.cols, out)
    }
    /// Eigenvalues descending and eigenvectors as columns of a symmetric matrix.
    func eigenDescending() -> (values: [Double], vectors: DMat) {
        var values = [Double](repeating: 0, count: rows), vectors = [Double](repeating: 0, count: rows * rows)
        SymmetricEigen.decompose(a: a, n: rows, values: &values, vectors: &vectors)
        let v = DMat(rows, rows, vectors)
        let order = Array((0..<rows).reversed())
        var sorted: [Double] = []
        for i in 0..<rows { for j in order { sorted.append(v[i, j]) } }
        return (order.map { values[$0] }, DMat(rows, rows, sorted))
    }
    /// The top r right singular vectors V_r [cols, r] and singular values, from the eigenvectors of xᵀx.
    func topRight(_ r: Int) -> (v: DMat, s: [Double]) {
        let (values, vectors) = (t * self).eigenDescending()
        return (vectors.columns(0..<r), values[0..<r].map { max(0, $0).squareRoot() })
    }
    /// The left singular vectors matching `topRight`: x V_r diag(1/σ).
    func left(_ v: DMat, _ s: [Double]) -> DMat {
        let u = self * v
        var out = u
        for i in 0..<u.a.count { out.a[i] /= s[i % u.cols] }
        return out
    }
    /// x (xᵀx)^(−1/2), the orthogonal polar factor of a full-column-rank x.
    func polarColumns() -> DMat {
        let (values, q) = (t * self).eigenDescending()
        var d = DMat.identity(cols)
        for j in 0..<cols { d.a[j * cols + j] = 1 / values[j].squareRoot() }
        return self * (q * d * q.t)
    }
    var floats: [Float] { a.map(Float.init) }
}

final class SpectralMergeTests: XCTestCase {
    func randomMatrix(_ m: Int, _ n: Int, seed: UInt64) -> [Float] {
        var rng = RNG(seed: seed)
        return (0..<m * n).map { _ in Float(rng.normal()) }
    }

    func assertClose(
        _ a: [Float], _ b: [Float], tol: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        var worst = 0, maxAbs = 0.0, scale = 0.0
        for i in 0..<min(a.count, b.count) {
            let d = abs(Double(a[i]) - Double(b[i]))
            if d > maxAbs { (maxAbs, worst) = (d, i) }
            scale = max(scale, abs(Double(b[i])))
        }
        XCTAssertLessThanOrEqual(
            maxAbs, tol * max(scale, 1e-30),
            "\(what): max abs \(maxAbs) at \(worst) (\(a[worst]) vs \(b[worst])), scale \(scale)", file: file,
            line: line)
    }

    /// With one task and full rank (r = min(m,n)), TSV-M returns Δ itself.
    func testTSVOneTaskIsIdentity() {
        for (m, n) in [(9, 6), (6, 9), (7, 7)] {
            let d = randomMatrix(m, n, seed: UInt64(m * n))
            assertClose(Merges.tsv(matrices: [d], rows: m, cols: n), d, tol: 1e-5, "TSV-M T=1 \(m)×\(n)")
        }
    }

    /// Two tasks on disjoint row and column blocks of rank ≤ r: their singular vectors are already
    /// orthogonal, so TSV-M is the plain sum.
    func testTSVOrthogonalSupportsIsTheSum() {
        let (m, n) = (8, 6)
        var d1 = [Float](repeating: 0, count: m * n), d2 = d1
        var rng = RNG(seed: 3)
        for i in 0..<4 { for j in 0..<3 { d1[i * n + j] = Float(rng.normal()) } }
        for i in 4..<8 { for j in 3..<6 { d2[i * n + j] = Float(rng.normal()) } }
        let sum = zip(d1, d2).map { $0 + $1 }
        assertClose(Merges.tsv(matrices: [d1, d2], rows: m, cols: n), sum, tol: 1e-5, "TSV-M orthogonal supports")
        assertClose(
            Merges.tsv(matrices: [d1.t(m, n), d2.t(m, n)], rows: n, cols: m), sum.t(m, n), tol: 1e-5, "transposed")
    }

    /// TSV-M on random tasks against an independent Double implementation (truncations and polar
    /// factors from Gram-matrix eigenvectors): T = 3 on 12×9 (r = 3), T = 2 on 7×10 (r = 3).
    func testTSVAgainstDoubleReference() {
        for (m, n, tasks) in [(12, 9, 3), (7, 10, 2)] {
            let ds = (0..<tasks).map { randomMatrix(m, n, seed: 20 + UInt64($0)) }
            let r = max(1, min(m, n) / tasks)
            var uCat = DMat(m, 0, []), sCat: [Double] = []
            var vCat = DMat(n, 0, [])
            for d in ds {
                let x = DMat(m, n, floats: d)
                let (v, s) = x.topRight(r)
                uCat = uCat.hstack(x.left(v, s)); vCat = vCat.hstack(v); sCat += s
            }
            let total = tasks * r
            let sd = DMat.diagonal(sCat)
            XCTAssertEqual(sCat.count, total)
            let expected = uCat.polarColumns() * sd * vCat.polarColumns().t
            assertClose(
                Merges.tsv(matrices: ds, rows: m, cols: n), expected.floats, tol: 1e-5, "TSV-M \(m)×\(n) T=\(tasks)")
        }
    }

    /// Σ_t Δ_t = Q₁ diag(s) Q₂ᵀ with known factors: Iso-C gives mean(s)·Q₁Q₂ᵀ.
    func testIsoCOnKnownSVD() {
        let (m, n) = (8, 5)
        let s = [3.0, 2.0, 1.0, 0.5, 0.25]
        let q1 = DMat(m, n, DMat(m, n, floats: randomMatrix(m, n, seed: 1)).polarColumns().a)
        let q2 = DMat(n, n, DMat(n, n, floats: randomMatrix(n, n, seed: 2)).polarColumns().a)
        let sd = DMat.diagonal(s)
        let total = (q1 * sd * q2.t).floats
        let d1 = randomMatrix(m, n, seed: 3), d2 = zip(total, d1).map { $0 - $1 }
        let expected = (q1 * q2.t).scaled(s.reduce(0, +) / 5).floats
        assertClose(Merges.isoC(matrices: [d1, d2], rows: m, cols: n), expected, tol: 1e-5, "Iso-C known SVD")
    }

    /// Iso-C on a random 9×6, T = 3, against Double: mean(√eig(SᵀS)) · S (SᵀS)^(−1/2).
    func testIsoCAgainstDoubleReference() {
        let (m, n) = (9, 6)
        let ds = (0..<3).map { randomMatrix(m, n, seed: 30 + UInt64($0)) }
        var sum = DMat(m, n, [Double](repeating: 0, count: m * n))
        for d in ds { sum = sum + DMat(m, n, floats: d) }
        let sigma = (sum.t * sum).eigenDescending().values.map { $0.squareRoot() }
        let expected = sum.polarColumns().scaled(sigma.reduce(0, +) / Double(n))
        assertClose(Merges.isoC(matrices: ds, rows: m, cols: n), expected.floats, tol: 1e-5, "Iso-C 9×6")
        assertClose(
            Merges.isoC(matrices: ds.map { $0.t(m, n) }, rows: n, cols: m), expected.t.floats, tol: 1e-5,
            "Iso-C 6×9")
    }

    /// The subspace sizes follow the reference code's rounding.
    func testIsoCTSSubspaceSizes() {
        // 768: ⌊614.4⌋ = 614, (768 − 614)/8 = 19.25 → 19·8 = 152 task-specific, 616 common
        XCTAssertTrue(Merges.isoCTSSubspaces(k: 768, tasks: 8, commonFraction: 0.8) == (616, 19))
        // 8, T = 2, 0.5: 4 common, 4/2 = 2 per task
        XCTAssertTrue(Merges.isoCTSSubspaces(k: 8, tasks: 2, commonFraction: 0.5) == (4, 2))
        // 7, T = 2, 0: 3.5 rounds to 4 → 8 > 7, lowered to 6: 1 common, 3 per task
        XCTAssertTrue(Merges.isoCTSSubspaces(k: 7, tasks: 2, commonFraction: 0) == (1, 3))
        XCTAssertTrue(Merges.isoCTSSubspaces(k: 6, tasks: 4, commonFraction: 1) == (6, 0))
    }

    /// Iso-CTS with the whole rank common is Iso-C.
    func testIsoCTSFullCommonIsIsoC() {
        let ds = (0..<2).map { randomMatrix(7, 5, seed: 40 + UInt64($0)) }
        assertClose(
            Merges.isoCTS(matrices: ds, rows: 7, cols: 5, commonFraction: 1),
            Merges.isoC(matrices: ds, rows: 7, cols: 5), tol: 1e-5, "Iso-CTS(1) vs Iso-C")
    }

    /// Iso-CTS on random 10×8, T = 2, fraction 0.5 (4 common, 2 per task) against Double: common
    /// subspace of the sum, each task projected off it, its top 2 directions, polar factors, mean σ.
    func testIsoCTSAgainstDoubleReference() {
        for (m, n) in [(10, 8), (8, 10)] {
            let ds = (0..<2).map { randomMatrix(m, n, seed: 50 + UInt64($0)) }
            let xs = ds.map { DMat(m, n, floats: $0) }
            // Work on the tall orientation (the reference's projection is on the left, U_c U_cᵀ Δ).
            let k = min(m, n)
            let sum = xs[0] + xs[1]
            // left singular vectors of the sum from eig(S Sᵀ) (m×m), right ones from Sᵀ U / σ
            let (lv, lu) = (sum * sum.t).eigenDescending()
            let uc = lu.columns(0..<4), sc = lv[0..<4].map { $0.squareRoot() }
            let vc = (sum.t * uc).left(DMat.identity(4), sc)
            var uAll = DMat(m, 0, []), vAll = DMat(n, 0, []), sAll: [Double] = []
            for x in xs {
                let res = x - uc * (uc.t * x)
                let (ev, eu) = (res * res.t).eigenDescending()
                let ut = eu.columns(0..<2), st = ev[0..<2].map { $0.squareRoot() }
                let vtT = (res.t * ut).left(DMat.identity(2), st)
                uAll = uAll.hstack(ut); vAll = vAll.hstack(vtT); sAll += st
            }
            uAll = uAll.hstack(uc); vAll = vAll.hstack(vc); sAll += sc
            XCTAssertEqual(sAll.count, k)
            let expected = (uAll.polarColumns() * vAll.polarColumns().t).scaled(sAll.reduce(0, +) / Double(k))
            assertClose(
                Merges.isoCTS(matrices: ds, rows: m, cols: n, commonFraction: 0.5), expected.floats, tol: 1e-5,
                "Iso-CTS \(m)×\(n)")
        }
    }

    /// On encoder vectors: matrices (Linear weights, the patch embedding as [D, C·p·p]) merge as matrices,
    /// everything else is the mean, padding stays 0; the arena forms give the bits of the array forms.
    func testEncoderVectorForms() {
        let table = MergeFixture.pretrained().table
        let taus = (0..<3).map { t -> EncoderVector in
            var rng = RNG(seed: 60 + UInt64(t))
            let v = EncoderVector(table: table)
            for r in v.arena.layout.regions {
                for i in 0..<r.shape.count { v.base[r.offset + i] = Float(rng.normal()) }
            }
            return v
        }
        let merged =
            [
                ("tsv", Merges.tsv(taus), { Merges.tsv(matrices: $0, rows: $1, cols: $2) }),
                ("iso-c", Merges.isoC(taus), { Merges.isoC(matrices: $0, rows: $1, cols: $2) }),
                (
                    "iso-cts", Merges.isoCTS(taus, commonFraction: 0.5),
                    {
                        Merges.isoCTS(matrices: $0, rows: $1, cols: $2, commonFraction: 0.5)
                    }
                ),
            ] as [(String, EncoderVector, ([[Float]], Int, Int) -> [Float])]
        let average = Merges.average(taus)
        var matrices: [String] = []
        for (name, out, arrays) in merged {
            XCTAssertTrue(out.hasLayout(of: taus[0]))
            var covered = [Bool](repeating: false, count: out.count)
            for r in out.arena.layout.regions {
                let range = r.offset..<(r.offset + r.shape.count)
                for i in range { covered[i] = true }
                let got = Array(out[range])
                if let (m, n) = Merges.matrixShape(name: r.name, shape: r.shape) {
                    if name == "tsv" { matrices.append("\(r.name) \(m)×\(n)") }
                    let expected = arrays(taus.map { Array($0[range]) }, m, n)
                    XCTAssertEqual(got.map(\.bitPattern), expected.map(\.bitPattern), "\(name) \(r.name)")
                } else {
                    XCTAssertEqual(got.map(\.bitPattern), Array(average[range]).map(\.bitPattern), "\(name) \(r.name)")
                }
            }
            for i in 0..<out.count where !covered[i] { XCTAssertEqual(out[i], 0, "\(name): padding at \(i)") }
        }
        XCTAssertEqual(
            matrices,
            [
                "patch_embed.proj.weight 16×16", "blocks.0.attn.qkv.weight 48×16", "blocks.0.attn.proj.weight 16×16",
                "blocks.0.mlp.fc1.weight 64×16", "blocks.0.mlp.fc2.weight 16×64",
            ])
    }

    /// The evaluator's directions are the merges of its task vectors, and the search runs.
    func testEvaluatorDirectionsAndSearch() throws {
        let ev = try MergeFixture.evaluator(scaleB: 0.03)
        let taus = ev.tasks.map(\.tau)
        XCTAssertEqual(Array(try ev.direction(.tsv)).map(\.bitPattern), Array(Merges.tsv(taus)).map(\.bitPattern))
        XCTAssertEqual(Array(try ev.direction(.isoC)).map(\.bitPattern), Array(Merges.isoC(taus)).map(\.bitPattern))
        let r = try ev.merge(.isoCTS, candidates: [0.5, 0.8], grid: [0, 0.5, 1.5])
        XCTAssertTrue([0.5, 0.8].contains(r.hyperparameter!))
        XCTAssertTrue([0, 0.5, 1.5].contains(r.lambda))
        XCTAssertEqual(
            Array(r.direction).map(\.bitPattern),
            Array(Merges.isoCTS(taus, commonFraction: r.hyperparameter!)).map(\.bitPattern))
    }
}

extension Array where Element == Float {
    /// The transpose of self as a row-major [m, n] matrix.
    func t(_ m: Int, _ n: Int) -> [Float] { (0..<m * n).map { self[($0 % m) * n + $0 / m] } }
}
