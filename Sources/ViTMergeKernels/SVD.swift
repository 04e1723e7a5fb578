import ViTMergeCore

/// Thin singular value decomposition without LAPACK: one-sided (Hestenes) Jacobi in Double.
///
/// The longer side of A is kept as column length: for m ≥ n the n columns of A, for m < n its m
/// rows, are copied to Double and rotated in pairs until every pair is orthogonal to a relative
/// tolerance √len·ε (ε = Double ulp); the rotations accumulate into V. The final columns are
/// σ_j·u_j. One-sided Jacobi is accurate in the relative sense: small singular values come out
/// with small relative error too (Demmel and Veselić 1992).
///
/// A sweep visits every pair once, blocked for the cache: the pairs inside each block of 32
/// columns, then those across two blocks, with the block pairs in round-robin (circle) order;
/// each round's disjoint block pairs are split across threads by `ThreadPool.parallel`. A block
/// pair's rotations depend only on its columns, so the result is bit-identical for any thread
/// count. Rectangular inputs are first reduced by a Householder QR to the min(m,n)-square R.
public enum SVD {
    /// Sweeps after which the iteration stops even if a pair is not yet orthogonal (it converges
    /// quadratically; 6–12 sweeps are typical).
    public static let maxSweeps = 40

    // a[m,n] = u[m,k] · diag(s[k]) · vt[k,n], k = min(m,n); s ≥ 0 descending; u's columns and vt's rows
    // orthonormal (for σ = 0 completed to an orthonormal set). Returns the number of sweeps.
    @discardableResult
    public static func decompose(
        a: UnsafePointer<Float>, m: Int, n: Int, u: UnsafeMutablePointer<Float>, s: UnsafeMutablePointer<Float>,
        vt: UnsafeMutablePointer<Float>, pool: ThreadPool = .shared
    ) -> Int {
        precondition(m >= 1 && n >= 1, "SVD.decompose: empty matrix \(m)×\(n)")
        let len = max(m, n), cols = min(m, n)
        let w = UnsafeMutablePointer<Double>.allocate(capacity: len &* cols)
        let v = UnsafeMutablePointer<Double>.allocate(capacity: cols &* cols)
        defer { w.deallocate(); v.deallocate() }
        load(a, m: m, n: n, into: w)
        if len == cols {
            let sweeps = orthogonalize(w, len: len, cols: cols, v: v, pool: pool)
            let (sigma, order) = normalize(w, len: len, cols: cols)
            store(w, v, sigma, order, m: m, n: n, u: u, s: s, vt: vt)
            return sweeps
        }
        // Rectangular: W = QR (Householder), Jacobi on the cols×cols R, then U = Q·U_R.
        let r = UnsafeMutablePointer<Double>.allocate(capacity: cols &* cols)
        let beta = UnsafeMutablePointer<Double>.allocate(capacity: cols)
        defer { r.deallocate(); beta.deallocate() }
        householderQR(w, len: len, cols: cols, beta: beta, r: r, pool: pool)
        let sweeps = orthogonalize(r, len: cols, cols: cols, v: v, pool: pool)
        let (sigma, order) = normalize(r, len: cols, cols: cols)
        let q = UnsafeMutablePointer<Double>.allocate(capacity: len &* cols)
        defer { q.deallocate() }
        applyQ(w, beta: beta, len: len, cols: cols, to: r, into: q, pool: pool)
        store(q, v, sigma, order, m: m, n: n, u: u, s: s, vt: vt)
        return sweeps
    }

    // w[cols][len] (column-major, len ≥ cols) = Q·R in place: column j keeps the Householder vector v_j in
    // rows j..<len (H_j = I − beta[j]·v_j·v_jᵀ, Q = H_0⋯H_{cols−1}); r[cols][cols] (column-major) = R.
    // Parallel over the trailing columns each reflector updates (each column's result is independent of
    // the split).
    static func householderQR(
        _ w: UnsafeMutablePointer<Double>, len: Int, cols: Int, beta: UnsafeMutablePointer<Double>,
        r: UnsafeMutablePointer<Double>, pool: ThreadPool
    ) {
        r.update(repeating: 0, count: cols &* cols)
        for j in 0..<cols {
            let x = w + j &* len + j, n = len &- j
            // rows < j of column j are R's entries above the diagonal (final once reflector j − 1 ran)
            for i in 0..<j { r[j &* cols &+ i] = w[j &* len &+ i] }
            let norm = dot(x, x, n).squareRoot()
            if norm == 0 { beta[j] = 0; continue }
            let alpha = x[0] >= 0 ? -norm : norm
            x[0] -= alpha
            beta[j] = 2 / dot(x, x, n)
            r[j &* cols &+ j] = alpha
            let b = beta[j], rest = cols &- j &- 1
            pool.parallel(rest, cost: 4 &* n) { _, _, range in
                for c in range {
                    let col = w + (j &+ 1 &+ c) &* len + j
                    axpy(col, x, -b * dot(x, col, n), n)
                }
            }
        }
    }

    // q[cols][len] = Q·[y; 0] for each column y of y[cols][cols] (column-major), Q from `householderQR`.
    static func applyQ(
        _ w: UnsafeMutablePointer<Double>, beta: UnsafeMutablePointer<Double>, len: Int, cols: Int,
        to y: UnsafeMutablePointer<Double>, into q: UnsafeMutablePointer<Double>, pool: ThreadPool
    ) {
        pool.parallel(cols, cost: 4 &* len &* cols) { _, _, range in
            for c in range {
                let out = q + c &* len
                for i in 0..<len { out[i] = i < cols ? y[c &* cols &+ i] : 0 }
                for j in stride(from: cols &- 1, through: 0, by: -1) where beta[j] != 0 {
                    let v = w + j &* len + j, n = len &- j
                    axpy(out + j, v, -beta[j] * dot(v, out + j, n), n)
                }
            }
        }
    }

    // Σ x[i]·y[i], i < n, in a fixed order (8 lanes, then the tail)
    @inline(__always)
    static func dot(_ x: UnsafeMutablePointer<Double>, _ y: UnsafeMutablePointer<Double>, _ n: Int) -> Double {
        var acc = D8(), i = 0
        while i &+ 8 <= n { acc = acc.addingProduct(dload(x + i), dload(y + i)); i &+= 8 }
        var sum = acc.sum()
        while i < n { sum += x[i] * y[i]; i &+= 1 }
        return sum
    }

    // y[n] += alpha·x[n]
    @inline(__always)
    static func axpy(_ y: UnsafeMutablePointer<Double>, _ x: UnsafeMutablePointer<Double>, _ alpha: Double, _ n: Int) {
        let a = D8(repeating: alpha)
        var i = 0
        while i &+ 8 <= n { dstore(dload(y + i).addingProduct(a, dload(x + i)), y + i); i &+= 8 }
        while i < n { y[i] += alpha * x[i]; i &+= 1 }
    }

    /// The plain twin of `decompose`: the same rotations, visited serially in cyclic row order
    /// (p < q, p ascending) with scalar loops. Kept for tests and as documentation.
    @discardableResult
    public static func decomposeReference(
        a: UnsafePointer<Float>, m: Int, n: Int, u: UnsafeMutablePointer<Float>, s: UnsafeMutablePointer<Float>,
        vt: UnsafeMutablePointer<Float>
    ) -> Int {
        precondition(m >= 1 && n >= 1, "SVD.decomposeReference: empty matrix \(m)×\(n)")
        let len = max(m, n), cols = min(m, n)
        let w = UnsafeMutablePointer<Double>.allocate(capacity: len * cols)
        let v = UnsafeMutablePointer<Double>.allocate(capacity: cols * cols)
        defer { w.deallocate(); v.deallocate() }
        load(a, m: m, n: n, into: w)
        for i in 0..<cols * cols { v[i] = 0 }
        for j in 0..<cols { v[j * cols + j] = 1 }
        let tol = tolerance(len)
        var sweeps = 0
        while sweeps < maxSweeps {
            sweeps += 1
            var rotated = false
            for p in 0..<cols {
                for q in (p + 1)..<max(p + 1, cols) {
                    let x = w + p * len, y = w + q * len
                    var alpha = 0.0, beta = 0.0, gamma = 0.0
                    for i in 0..<len { alpha += x[i] * x[i]; beta += y[i] * y[i]; gamma += x[i] * y[i] }
                    guard let (c, sn) = rotation(alpha, beta, gamma, tol: tol) else { continue }
                    rotated = true
                    for i in 0..<len { (x[i], y[i]) = (c * x[i] - sn * y[i], sn * x[i] + c * y[i]) }
                    let vx = v + p * cols, vy = v + q * cols
                    for i in 0..<cols { (vx[i], vy[i]) = (c * vx[i] - sn * vy[i], sn * vx[i] + c * vy[i]) }
                }
            }
            if !rotated { break }
        }
        let (sigma, order) = normalize(w, len: len, cols: cols)
        store(w, v, sigma, order, m: m, n: n, u: u, s: s, vt: vt)
        return sweeps
    }

    // w[cols][len] (column-major) = the columns of a[m,n] when m ≥ n, else its rows, in Double
    static func load(_ a: UnsafePointer<Float>, m: Int, n: Int, into w: UnsafeMutablePointer<Double>) {
        if m >= n {
            for i in 0..<m { for j in 0..<n { w[j &* m &+ i] = Double(a[i &* n &+ j]) } }
        } else {
            for i in 0..<m &* n { w[i] = Double(a[i]) }
        }
    }

    /// The rotation (c, s) that makes columns with Gram matrix [[α, γ], [γ, β]] orthogonal as
    /// (x, y) ← (c·x − s·y, s·x + c·y), or nil when they already are: |γ| ≤ tol·√(αβ).
    @inline(__always)
    static func rotation(_ alpha: Double, _ beta: Double, _ gamma: Double, tol: Double) -> (Double, Double)? {
        if alpha == 0 || beta == 0 || abs(gamma) <= tol * (alpha.squareRoot() * beta.squareRoot()) { return nil }
        let zeta = (beta - alpha) / (2 * gamma)
        // t = tan θ, the smaller root of t² + 2ζt − 1 = 0
        let t =
            abs(zeta) > 1e150
            ? 1 / (2 * zeta) : (zeta >= 0 ? 1 : -1) / (abs(zeta) + (1 + zeta * zeta).squareRoot())
        let c = 1 / (1 + t * t).squareRoot()
        return (c, c * t)
    }

    /// Columns per block of the blocked sweep: a pair of blocks of w and v (2·32 columns of Double)
    /// stays in L2 while all its pairs are rotated.
    static let blockColumns = 32

    // Rotates the column pairs of w[cols][len] sweep by sweep until a sweep rotates none; v[cols][cols]
    // (column-major) accumulates the rotations from the identity. Returns the number of sweeps.
    //
    // A sweep is blocked: the columns form blocks of `blockColumns`; first the pairs inside each block
    // (blocks in parallel), then the pairs across two blocks, the block pairs in round-robin (circle)
    // order: each round is a set of disjoint block pairs, split across threads.
    static func orthogonalize(
        _ w: UnsafeMutablePointer<Double>, len: Int, cols: Int, v: UnsafeMutablePointer<Double>, pool: ThreadPool
    ) -> Int {
        v.update(repeating: 0, count: cols &* cols)
        for j in 0..<cols { v[j &* cols &+ j] = 1 }
        if cols == 1 { return 0 }
        let b = blockColumns, blocks = (cols &+ b &- 1) / b
        let players = blocks &+ blocks % 2, half = players / 2
        let tol = tolerance(len)
        let rotated = UnsafeMutablePointer<Bool>.allocate(capacity: max(blocks, half))
        defer { rotated.deallocate() }
        @inline(__always) func pair(_ p: Int, _ q: Int) -> Bool {
            rotatePair(w + p &* len, w + q &* len, len, v + p &* cols, v + q &* cols, cols, tol)
        }
        // Cost: a pair streams its two columns of w twice and of v once, in Double.
        let pairCost = 8 &* (len &+ cols)
        for sweep in 1...maxSweeps {
            var any = false
            pool.parallel(blocks, cost: pairCost &* b &* b / 2) { _, _, range in
                for i in range {
                    var r = false
                    let cs = (i &* b)..<min(cols, (i &+ 1) &* b)
                    for p in cs { for q in (p &+ 1)..<cs.upperBound { if pair(p, q) { r = true } } }
                    rotated[i] = r
                }
            }
            for i in 0..<blocks where rotated[i] { any = true }
            for round in 0..<max(0, players &- 1) where blocks > 1 {
                pool.parallel(half, cost: pairCost &* b &* b) { _, _, range in
                    for k in range {
                        // circle method: player players−1 stays, the others turn by one each round
                        var i = (round &+ k) % (players &- 1)
                        var j = k == 0 ? players &- 1 : (round &- k &+ players &- 1) % (players &- 1)
                        if i > j { swap(&i, &j) }
                        var r = false
                        if j < blocks {
                            for p in (i &* b)..<((i &+ 1) &* b) {
                                for q in (j &* b)..<min(cols, (j &+ 1) &* b) { if pair(p, q) { r = true } }
                            }
                        }
                        rotated[k] = r
                    }
                }
                for k in 0..<half where rotated[k] { any = true }
            }
            if !any { return sweep }
        }
        return maxSweeps
    }

    /// The relative orthogonality √len·ε below which a pair is not rotated.
    @inline(__always)
    static func tolerance(_ len: Int) -> Double { Double(len).squareRoot() * Double.ulpOfOne }

    // Orthogonalizes columns x[len], y[len] and applies the same rotation to vx[cols], vy[cols].
    @inline(__always)
    static func rotatePair(
        _ x: UnsafeMutablePointer<Double>, _ y: UnsafeMutablePointer<Double>, _ len: Int,
        _ vx: UnsafeMutablePointer<Double>, _ vy: UnsafeMutablePointer<Double>, _ cols: Int, _ tol: Double
    ) -> Bool {
        var a8 = D8(), b8 = D8(), g8 = D8(), i = 0
        while i &+ 8 <= len {
            let xv = dload(x + i), yv = dload(y + i)
            a8 = a8.addingProduct(xv, xv); b8 = b8.addingProduct(yv, yv); g8 = g8.addingProduct(xv, yv)
            i &+= 8
        }
        var alpha = a8.sum(), beta = b8.sum(), gamma = g8.sum()
        while i < len { alpha += x[i] * x[i]; beta += y[i] * y[i]; gamma += x[i] * y[i]; i &+= 1 }
        guard let (c, s) = rotation(alpha, beta, gamma, tol: tol) else { return false }
        rotate(x, y, len, c, s)
        rotate(vx, vy, cols, c, s)
        return true
    }

    // (x[n], y[n]) ← (c·x − s·y, s·x + c·y)
    @inline(__always)
    static func rotate(
        _ x: UnsafeMutablePointer<Double>, _ y: UnsafeMutablePointer<Double>, _ n: Int, _ c: Double, _ s: Double
    ) {
        let cv = D8(repeating: c), sv = D8(repeating: s)
        var i = 0
        while i &+ 8 <= n {
            let xv = dload(x + i), yv = dload(y + i)
            dstore(cv * xv - sv * yv, x + i); dstore(sv * xv + cv * yv, y + i)
            i &+= 8
        }
        while i < n { (x[i], y[i]) = (c * x[i] - s * y[i], s * x[i] + c * y[i]); i &+= 1 }
    }

    // The orthogonalized w[cols][len] = σ_j·u_j → u_j in place; returns σ and the order of the columns by
    // descending σ (ties by index). Zero columns of w get unit vectors orthogonal to all others.
    static func normalize(_ w: UnsafeMutablePointer<Double>, len: Int, cols: Int) -> (sigma: [Double], order: [Int]) {
        var sigma = [Double](repeating: 0, count: cols)
        for j in 0..<cols {
            var acc = 0.0
            for i in 0..<len { acc += w[j &* len &+ i] * w[j &* len &+ i] }
            sigma[j] = acc.squareRoot()
        }
        let order = (0..<cols).sorted { sigma[$0] > sigma[$1] || (sigma[$0] == sigma[$1] && $0 < $1) }
        for (rank, j) in order.enumerated() {
            let col = w + j &* len
            if sigma[j] > 0 {
                let r = 1 / sigma[j]
                for i in 0..<len { col[i] *= r }
            } else {
                complete(col, len: len, against: order[..<rank].map { w + $0 &* len })
            }
        }
        return (sigma, order)
    }

    // s, u and vt as in `decompose` from σ, the column order and the unit columns w[cols][max(m,n)], v[cols][cols].
    static func store(
        _ w: UnsafeMutablePointer<Double>, _ v: UnsafeMutablePointer<Double>, _ sigma: [Double], _ order: [Int],
        m: Int, n: Int, u: UnsafeMutablePointer<Float>, s: UnsafeMutablePointer<Float>, vt: UnsafeMutablePointer<Float>
    ) {
        let len = max(m, n), cols = min(m, n)
        // m ≥ n: u[:, r] = w_j, vt[r, :] = v_j;  m < n: u[:, r] = v_j, vt[r, :] = w_j  (j = order[r])
        let k = cols
        for (r, j) in order.enumerated() {
            s[r] = Float(sigma[j])
            let wj = w + j &* len, vj = v + j &* cols
            if m >= n {
                for i in 0..<m { u[i &* k &+ r] = Float(wj[i]) }
                for i in 0..<n { vt[r &* n &+ i] = Float(vj[i]) }
            } else {
                for i in 0..<m { u[i &* k &+ r] = Float(vj[i]) }
                for i in 0..<n { vt[r &* n &+ i] = Float(wj[i]) }
            }
        }
    }

    // x[len] = the first unit vector e_i, orthogonalized twice against `basis` (orthonormal, fewer than len
    // vectors), whose remainder keeps norm > 1/2; normalized.
    static func complete(_ x: UnsafeMutablePointer<Double>, len: Int, against basis: [UnsafeMutablePointer<Double>]) {
        for e in 0..<len {
            for i in 0..<len { x[i] = i == e ? 1 : 0 }
            for _ in 0..<2 {
                for b in basis {
                    var d = 0.0
                    for i in 0..<len { d += b[i] * x[i] }
                    for i in 0..<len { x[i] -= d * b[i] }
                }
            }
            var nrm = 0.0
            for i in 0..<len { nrm += x[i] * x[i] }
            if nrm > 0.25 {
                let r = 1 / nrm.squareRoot()
                for i in 0..<len { x[i] *= r }
                return
            }
        }
        preconditionFailure("SVD: no unit vector completes a basis of \(basis.count) in dimension \(len)")
    }
}
