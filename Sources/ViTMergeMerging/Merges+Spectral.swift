import Foundation
import ViTMergeCore
import ViTMergeKernels

/// Data-free merges that work on each weight matrix's singular vectors: TSV-M (Gargiulo et al. 2025,
/// "Task Singular Vectors"), Iso-C and Iso-CTS (Marczak et al. 2025, "No Task Left Behind: Isotropic
/// Model Merging with Common and Task-Specific Subspaces"). Like the other merges each returns one
/// direction τ_m; the model is θ_pre + λ·τ_m.
///
/// Matrices are the regions `matrixShape` accepts (the Linear weights qkv, proj, fc1, fc2 and the
/// patch embedding reshaped to [D, C·p·p]; the head is not part of an encoder vector); every
/// other region (biases, norms, LayerScale γ, class and register tokens, position embedding) is
/// the mean of the inputs, as in the methods' reference code. The merge streams region by region:
/// besides the inputs and the result it holds one matrix's decompositions at a time.
extension Merges {
    /// The [rows, cols] a region is merged as by the spectral methods, or nil for an elementwise
    /// region: a weight (name ending in ".weight") of rank ≥ 2, its first dimension as rows.
    public static func matrixShape(name: String, shape: Shape) -> (rows: Int, cols: Int)? {
        guard name.hasSuffix(".weight"), shape.rank >= 2, shape[0] > 0 else { return nil }
        return (shape[0], shape.count / shape[0])
    }

    /// TSV-M: per matrix, each τ_t's top max(1, min(m,n)/T) singular triplets, the concatenated
    /// U and V orthogonalized (U⊥ = PQᵀ for U = PΣQᵀ), Δ = U⊥ diag(σ) V⊥ᵀ; other regions averaged.
    public static func tsv(_ taus: [EncoderVector], pool: ThreadPool = .shared) -> EncoderVector {
        spectral(taus, pool: pool) { xs, m, n, out in tsvMatrix(xs, m: m, n: n, into: out, pool: pool) }
    }

    /// Iso-C: per matrix, the SVD of Σ_t τ_t with every singular value replaced by their mean;
    /// other regions averaged.
    public static func isoC(_ taus: [EncoderVector], pool: ThreadPool = .shared) -> EncoderVector {
        spectral(taus, pool: pool) { xs, m, n, out in isoCMatrix(xs, m: m, n: n, into: out, pool: pool) }
    }

    /// Iso-CTS: per matrix, the top singular vectors of Σ_t τ_t (the common subspace, about
    /// `commonFraction` of min(m,n)) plus each task's top singular vectors of its τ_t projected
    /// off the common subspace, orthogonalized, with one isotropic singular value (their mean);
    /// other regions averaged. `commonFraction` in [0, 1].
    public static func isoCTS(
        _ taus: [EncoderVector], commonFraction: Double, pool: ThreadPool = .shared
    ) -> EncoderVector {
        spectral(taus, pool: pool) { xs, m, n, out in
            isoCTSMatrix(xs, m: m, n: n, commonFraction: commonFraction, into: out, pool: pool)
        }
    }

    /// TSV-M of row-major [rows, cols] matrices (see the `EncoderVector` form; same bits).
    public static func tsv(matrices: [[Float]], rows: Int, cols: Int, pool: ThreadPool = .shared) -> [Float] {
        onArrays(matrices, rows, cols) { tsvMatrix($0, m: rows, n: cols, into: $1, pool: pool) }
    }

    /// Iso-C of row-major [rows, cols] matrices (see the `EncoderVector` form; same bits).
    public static func isoC(matrices: [[Float]], rows: Int, cols: Int, pool: ThreadPool = .shared) -> [Float] {
        onArrays(matrices, rows, cols) { isoCMatrix($0, m: rows, n: cols, into: $1, pool: pool) }
    }

    /// Iso-CTS of row-major [rows, cols] matrices (see the `EncoderVector` form; same bits).
    public static func isoCTS(
        matrices: [[Float]], rows: Int, cols: Int, commonFraction: Double, pool: ThreadPool = .shared
    ) -> [Float] {
        onArrays(matrices, rows, cols) {
            isoCTSMatrix($0, m: rows, n: cols, commonFraction: commonFraction, into: $1, pool: pool)
        }
    }

    /// The sizes of Iso-CTS's subspaces for a matrix of rank bound k = min(m,n) and T tasks, as the
    /// reference code computes them: common = ⌊k·fraction⌋, then the task-specific total is rounded
    /// (half to even) to a multiple of T (lowered by T if it would exceed k), and common takes the rest.
    public static func isoCTSSubspaces(k: Int, tasks: Int, commonFraction: Double) -> (common: Int, perTask: Int) {
        precondition(k >= 1 && tasks >= 1 && commonFraction >= 0 && commonFraction <= 1)
        let common = min(k, Int(Double(k) * commonFraction))
        var total = Int((Double(k - common) / Double(tasks)).rounded(.toNearestOrEven)) * tasks
        if total > k { total -= tasks }
        return (k - total, total / tasks)
    }

    // The spectral merge's driver: `matrix(xs, m, n, out)` for each matrix region, the mean elsewhere.
    static func spectral(
        _ taus: [EncoderVector], pool: ThreadPool,
        matrix: ([UnsafePointer<Float>], Int, Int, UnsafeMutablePointer<Float>) -> Void
    ) -> EncoderVector {
        precondition(!taus.isEmpty && taus.allSatisfy { $0.hasLayout(of: taus[0]) }, "spectral merge: layouts differ")
        let out = EncoderVector(like: taus[0])
        let mean = [Float](repeating: 1 / Float(taus.count), count: taus.count)
        withExtendedLifetime(taus) {
            for r in out.arena.layout.regions {
                let xs = taus.map { UnsafePointer($0.base + r.offset) }
                if let (m, n) = matrixShape(name: r.name, shape: r.shape) {
                    matrix(xs, m, n, out.base + r.offset)
                } else {
                    Elementwise.linearCombination(
                        out: out.base + r.offset, base: out.base + r.offset, xs: xs, coefficients: mean,
                        count: r.shape.count, pool: pool)
                }
            }
        }
        return out
    }

    static func onArrays(
        _ matrices: [[Float]], _ rows: Int, _ cols: Int,
        _ body: ([UnsafePointer<Float>], UnsafeMutablePointer<Float>) -> Void
    ) -> [Float] {
        precondition(!matrices.isEmpty && matrices.allSatisfy { $0.count == rows * cols }, "matrix sizes differ")
        var out = [Float](repeating: 0, count: rows * cols)
        withPointers(matrices) { xs in out.withUnsafeMutableBufferPointer { body(xs, $0.baseAddress!) } }
        return out
    }

    // out[m,n] = TSV-M of xs[t][m,n]
    static func tsvMatrix(
        _ xs: [UnsafePointer<Float>], m: Int, n: Int, into out: UnsafeMutablePointer<Float>, pool: ThreadPool
    ) {
        let k = min(m, n), tasks = xs.count, r = max(1, k / tasks), total = tasks * r
        let svd = SVDBuffers(m: m, n: n)
        var uCat = [Float](repeating: 0, count: m * total), vCat = [Float](repeating: 0, count: total * n)
        var sCat = [Float](repeating: 0, count: total)
        for (t, x) in xs.enumerated() {
            svd.decompose(x, pool: pool)
            for i in 0..<m { for j in 0..<r { uCat[i * total + t * r + j] = svd.u[i * k + j] } }
            for j in 0..<r { for c in 0..<n { vCat[(t * r + j) * n + c] = svd.vt[j * n + c] } }
            for j in 0..<r { sCat[t * r + j] = svd.s[j] }
        }
        combine(&uCat, sCat, &vCat, m: m, n: n, total: total, into: out, pool: pool)
    }

    // out[m,n] = mean(σ) · U Vᵀ for Σ_t xs[t] = U diag(σ) Vᵀ
    static func isoCMatrix(
        _ xs: [UnsafePointer<Float>], m: Int, n: Int, into out: UnsafeMutablePointer<Float>, pool: ThreadPool
    ) {
        let k = min(m, n)
        var sum = [Float](repeating: 0, count: m * n)
        for x in xs { for i in 0..<m * n { sum[i] += x[i] } }
        let svd = SVDBuffers(m: m, n: n)
        svd.decompose(sum, pool: pool)
        let mean = Float(svd.s.reduce(0.0) { $0 + Double($1) } / Double(k))
        sgemm(
            transA: false, transB: false, m: m, n: n, k: k, alpha: mean, a: svd.u, lda: k, b: svd.vt, ldb: n,
            c: out, ldc: n, pool: pool)
    }

    // out[m,n] = Iso-CTS of xs[t][m,n] (see `isoCTS`)
    static func isoCTSMatrix(
        _ xs: [UnsafePointer<Float>], m: Int, n: Int, commonFraction: Double, into out: UnsafeMutablePointer<Float>,
        pool: ThreadPool
    ) {
        let k = min(m, n), tasks = xs.count
        let (common, perTask) = isoCTSSubspaces(k: k, tasks: tasks, commonFraction: commonFraction)
        var sum = [Float](repeating: 0, count: m * n)
        for x in xs { for i in 0..<m * n { sum[i] += x[i] } }
        let svd = SVDBuffers(m: m, n: n)
        svd.decompose(sum, pool: pool)
        // Combined space [task 0 … task T−1 | common], k columns of U and rows of Vᵀ in all.
        let ts = tasks * perTask
        var uAll = [Float](repeating: 0, count: m * k), vAll = [Float](repeating: 0, count: k * n)
        var sAll = [Float](repeating: 0, count: k)
        for i in 0..<m { for j in 0..<common { uAll[i * k + ts + j] = svd.u[i * k + j] } }
        for j in 0..<common { for c in 0..<n { vAll[(ts + j) * n + c] = svd.vt[j * n + c] } }
        for j in 0..<common { sAll[ts + j] = svd.s[j] }
        let uCommon = [Float](uAll)  // [m, k]: the common columns at ts..<k, zeros before (they add nothing)
        if perTask > 0 {
            var proj = [Float](repeating: 0, count: k * n), residual = [Float](repeating: 0, count: m * n)
            for (t, x) in xs.enumerated() {
                // residual = x − U_c U_cᵀ x
                sgemm(
                    transA: true, transB: false, m: k, n: n, k: m, a: uCommon, lda: k, b: x, ldb: n, c: &proj, ldc: n,
                    pool: pool)
                residual.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: x, count: m * n) }
                sgemm(
                    transA: false, transB: false, m: m, n: n, k: k, alpha: -1, a: uCommon, lda: k, b: proj, ldb: n,
                    beta: 1, c: &residual, ldc: n, pool: pool)
                svd.decompose(residual, pool: pool)
                for i in 0..<m { for j in 0..<perTask { uAll[i * k + t * perTask + j] = svd.u[i * k + j] } }
                for j in 0..<perTask { for c in 0..<n { vAll[(t * perTask + j) * n + c] = svd.vt[j * n + c] } }
                for j in 0..<perTask { sAll[t * perTask + j] = svd.s[j] }
            }
        }
        let mean = Float(sAll.reduce(0.0) { $0 + Double($1) } / Double(k))
        combine(&uAll, [Float](repeating: mean, count: k), &vAll, m: m, n: n, total: k, into: out, pool: pool)
    }

    // out[m,n] = polar(u[m,total]) · diag(s[total]) · polar(vt[total,n]), where polar(X) = PQᵀ for the thin SVD
    // X = PΣQᵀ (the orthogonal factor nearest X). u and vt are overwritten.
    static func combine(
        _ u: inout [Float], _ s: [Float], _ vt: inout [Float], m: Int, n: Int, total: Int,
        into out: UnsafeMutablePointer<Float>, pool: ThreadPool
    ) {
        orthogonalFactor(&u, rows: m, cols: total, pool: pool)
        orthogonalFactor(&vt, rows: total, cols: n, pool: pool)
        for i in 0..<m { for j in 0..<total { u[i * total + j] *= s[j] } }
        sgemm(
            transA: false, transB: false, m: m, n: n, k: total, a: u, lda: total, b: vt, ldb: n, c: out, ldc: n,
            pool: pool)
    }

    // x[rows,cols] ← PQᵀ for x = PΣQᵀ (thin SVD)
    static func orthogonalFactor(_ x: inout [Float], rows: Int, cols: Int, pool: ThreadPool) {
        let svd = SVDBuffers(m: rows, n: cols)
        svd.decompose(x, pool: pool)
        sgemm(
            transA: false, transB: false, m: rows, n: cols, k: min(rows, cols), a: svd.u, lda: min(rows, cols),
            b: svd.vt, ldb: cols, c: &x, ldc: cols, pool: pool)
    }
}

/// The outputs of one thin SVD of an m×n matrix, reused across the matrices of one region.
final class SVDBuffers {
    let m: Int, n: Int
    var u: [Float], s: [Float], vt: [Float]

    init(m: Int, n: Int) {
        self.m = m
        self.n = n
        let k = min(m, n)
        u = [Float](repeating: 0, count: m * k)
        s = [Float](repeating: 0, count: k)
        vt = [Float](repeating: 0, count: k * n)
    }

    func decompose(_ a: UnsafePointer<Float>, pool: ThreadPool) {
        SVD.decompose(a: a, m: m, n: n, u: &u, s: &s, vt: &vt, pool: pool)
    }
}
