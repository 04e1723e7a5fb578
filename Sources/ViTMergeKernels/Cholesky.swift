/// Cholesky factorization and symmetric positive-definite solves without LAPACK, in Double.
/// Serial, row-oriented (the Cholesky–Banachiewicz order): the merges solve small systems
/// (Gram matrices of a layer's width), where a blocked parallel version would not pay.
public enum Cholesky {
    // a[n,n] symmetric → l[n,n] lower triangular with a = l·lᵀ (the strict upper triangle of l is set to 0;
    // only the lower triangle of a is read; l may be a). Returns false when a is not positive definite
    // (a pivot ≤ 0 or not finite); l is then undefined.
    public static func factor(a: UnsafePointer<Double>, n: Int, l: UnsafeMutablePointer<Double>) -> Bool {
        precondition(n >= 1, "Cholesky.factor: empty matrix")
        for i in 0..<n {
            for j in 0...i {
                var sum = a[i &* n &+ j]
                for k in 0..<j { sum -= l[i &* n &+ k] * l[j &* n &+ k] }
                if i == j {
                    guard sum > 0 && sum.isFinite else { return false }
                    l[i &* n &+ i] = sum.squareRoot()
                } else {
                    l[i &* n &+ j] = sum / l[j &* n &+ j]
                }
            }
            for j in (i + 1)..<max(i + 1, n) { l[i &* n &+ j] = 0 }
        }
        return true
    }

    // x[n,r] = (l·lᵀ)⁻¹ b[n,r] for l[n,n] lower triangular from `factor` (x may be b): forward then back
    // substitution, column by column of b.
    public static func solve(
        l: UnsafePointer<Double>, n: Int, b: UnsafePointer<Double>, r: Int, x: UnsafeMutablePointer<Double>
    ) {
        var y = [Double](repeating: 0, count: n)
        for c in 0..<r {
            for i in 0..<n {
                var sum = b[i &* r &+ c]
                for k in 0..<i { sum -= l[i &* n &+ k] * y[k] }
                y[i] = sum / l[i &* n &+ i]
            }
            for i in stride(from: n - 1, through: 0, by: -1) {
                var sum = y[i]
                for k in (i + 1)..<max(i + 1, n) { sum -= l[k &* n &+ i] * y[k] }
                y[i] = sum / l[i &* n &+ i]
            }
            for i in 0..<n { x[i &* r &+ c] = y[i] }
        }
    }

    // x[n,r] = (a + ridge·I)⁻¹ b[n,r] for a[n,n] symmetric (lower triangle read), in Double, rounded to Float
    // once. Returns false when a + ridge·I is not positive definite (x is then not written).
    public static func solveRidge(
        a: UnsafePointer<Float>, n: Int, ridge: Float, b: UnsafePointer<Float>, r: Int, x: UnsafeMutablePointer<Float>
    ) -> Bool {
        precondition(n >= 1 && r >= 0, "Cholesky.solveRidge: n \(n), r \(r)")
        var ad = (0..<n * n).map { Double(a[$0]) }
        for i in 0..<n { ad[i * n + i] += Double(ridge) }
        var l = [Double](repeating: 0, count: n * n)
        guard factor(a: ad, n: n, l: &l) else { return false }
        var xd = (0..<n * r).map { Double(b[$0]) }
        xd.withUnsafeMutableBufferPointer { solve(l: l, n: n, b: $0.baseAddress!, r: r, x: $0.baseAddress!) }
        for i in 0..<n * r { x[i] = Float(xd[i]) }
        return true
    }
}
