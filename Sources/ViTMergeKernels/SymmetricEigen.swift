/// Eigendecomposition of a symmetric matrix without LAPACK: the cyclic Jacobi method in Double
/// (Golub and Van Loan, §8.5). Each rotation zeroes one off-diagonal pair; sweeps visit the pairs
/// in row order until the off-diagonal mass is below ε²·‖A‖²_F. Serial: the rotations of a sweep
/// depend on each other, and the merges need it only for small matrices (Gram matrices, tests).
public enum SymmetricEigen {
    /// Sweeps after which the iteration stops (it converges quadratically; 6–10 are typical).
    public static let maxSweeps = 50

    // a[n,n] symmetric (only read) = vectors[n,n] · diag(values[n]) · vectors[n,n]ᵀ; values ascending,
    // vectors' columns orthonormal (column j, vectors[i·n + j], belongs to values[j]). Returns the sweeps.
    @discardableResult
    public static func decompose(
        a: UnsafePointer<Double>, n: Int, values: UnsafeMutablePointer<Double>,
        vectors: UnsafeMutablePointer<Double>
    ) -> Int {
        precondition(n >= 1, "SymmetricEigen.decompose: empty matrix")
        let w = UnsafeMutablePointer<Double>.allocate(capacity: n &* n)
        let v = UnsafeMutablePointer<Double>.allocate(capacity: n &* n)
        defer { w.deallocate(); v.deallocate() }
        // Symmetrize (a rounding-level asymmetry would otherwise bias the lower triangle).
        for i in 0..<n { for j in 0..<n { w[i &* n &+ j] = 0.5 * (a[i &* n &+ j] + a[j &* n &+ i]) } }
        for i in 0..<n { for j in 0..<n { v[i &* n &+ j] = i == j ? 1 : 0 } }
        var total = 0.0
        for i in 0..<n &* n { total += w[i] * w[i] }
        let target = Double.ulpOfOne * Double.ulpOfOne * total
        var sweeps = 0
        while sweeps < maxSweeps {
            var off = 0.0
            for p in 0..<n { for q in 0..<n where q != p { off += w[p &* n &+ q] * w[p &* n &+ q] } }
            if off <= target { break }
            sweeps += 1
            for p in 0..<n {
                for q in (p + 1)..<max(p + 1, n) {
                    let apq = w[p &* n &+ q]
                    if apq == 0 { continue }
                    let app = w[p &* n &+ p], aqq = w[q &* n &+ q]
                    // Already negligible against both diagonal entries: set to 0 (as in Rutishauser's code).
                    if abs(app) + 1e3 * abs(apq) == abs(app) && abs(aqq) + 1e3 * abs(apq) == abs(aqq) {
                        w[p &* n &+ q] = 0; w[q &* n &+ p] = 0
                        continue
                    }
                    let theta = (aqq - app) / (2 * apq)
                    let t =
                        abs(theta) > 1e150
                        ? 1 / (2 * theta) : (theta >= 0 ? 1 : -1) / (abs(theta) + (1 + theta * theta).squareRoot())
                    let c = 1 / (1 + t * t).squareRoot(), s = c * t
                    // A ← Jᵀ A J with J the rotation (c, s) in the (p, q) plane; V ← V J
                    for k in 0..<n {
                        let kp = w[k &* n &+ p], kq = w[k &* n &+ q]
                        w[k &* n &+ p] = c * kp - s * kq; w[k &* n &+ q] = s * kp + c * kq
                    }
                    for k in 0..<n {
                        let pk = w[p &* n &+ k], qk = w[q &* n &+ k]
                        w[p &* n &+ k] = c * pk - s * qk; w[q &* n &+ k] = s * pk + c * qk
                    }
                    w[p &* n &+ q] = 0; w[q &* n &+ p] = 0
                    for k in 0..<n {
                        let kp = v[k &* n &+ p], kq = v[k &* n &+ q]
                        v[k &* n &+ p] = c * kp - s * kq; v[k &* n &+ q] = s * kp + c * kq
                    }
                }
            }
        }
        let order = (0..<n).sorted {
            w[$0 &* n &+ $0] < w[$1 &* n &+ $1] || (w[$0 &* n &+ $0] == w[$1 &* n &+ $1] && $0 < $1)
        }
        for (r, j) in order.enumerated() {
            values[r] = w[j &* n &+ j]
            for i in 0..<n { vectors[i &* n &+ r] = v[i &* n &+ j] }
        }
        return sweeps
    }

    /// `decompose` of a Float matrix (computed in Double, results rounded to Float).
    @discardableResult
    public static func decompose(
        a: UnsafePointer<Float>, n: Int, values: UnsafeMutablePointer<Float>, vectors: UnsafeMutablePointer<Float>
    ) -> Int {
        let ad = (0..<n * n).map { Double(a[$0]) }
        var vals = [Double](repeating: 0, count: n), vecs = [Double](repeating: 0, count: n * n)
        let sweeps = decompose(a: ad, n: n, values: &vals, vectors: &vecs)
        for i in 0..<n { values[i] = Float(vals[i]) }
        for i in 0..<n * n { vectors[i] = Float(vecs[i]) }
        return sweeps
    }
}
