import ViTMergeCore

/// A fully connected layer as PyTorch's `nn.Linear`: y = x·Wᵀ + b, with W [out, in] row-major.
/// Forward, backward and JVP side by side; every product is the packed SGEMM, so results are
/// bit-identical for any thread count.
public enum Linear {
    /// Whether the weight gradient takes the bias gradient while packing dy (the default, measured
    /// faster); the benchmark turns it off to time the separate column-sum pass in the same run.
    /// Either way the results are the same bits.
    nonisolated(unsafe) public static var fused = true

    /// out[rows, outF] = inp[rows, inF] · weight[outF, inF]ᵀ (+ bias[outF])
    @inline(__always)
    public static func forward(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        bias: UnsafePointer<Float>?, rows: Int, inFeatures inF: Int, outFeatures outF: Int, pool: ThreadPool = .shared
    ) {
        sgemm(
            transA: false, transB: true, m: rows, n: outF, k: inF, a: inp, lda: inF, b: weight, ldb: inF,
            beta: 0, c: out, ldc: outF, pool: pool)
        if let bias { Elementwise.biasAddForward(out: out, bias: bias, rows: rows, cols: outF, pool: pool) }
    }

    /// dinp[rows, inF] (overwritten, when given) = dout · weight; dweight[outF, inF] += doutᵀ · inp;
    /// dbias[outF] (when given) += Σ_rows dout.
    @inline(__always)
    public static func backward(
        dinp: UnsafeMutablePointer<Float>?, dweight: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>?,
        dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        rows: Int, inFeatures inF: Int, outFeatures outF: Int, pool: ThreadPool = .shared
    ) {
        if let dinp {
            sgemm(
                transA: false, transB: false, m: rows, n: inF, k: outF, a: dout, lda: outF, b: weight, ldb: inF,
                beta: 0, c: dinp, ldc: inF, pool: pool)
        }
        // dbias += column sums of dout, taken while the weight gradient packs dout (no pass of its own).
        sgemm(
            transA: true, transB: false, m: outF, n: inF, k: rows, a: dout, lda: outF, b: inp, ldb: inF,
            beta: 1, c: dweight, ldc: inF, rowSumsOfA: fused ? dbias : nil, pool: pool)
        if !fused, let dbias {
            Elementwise.biasAddBackward(dbias: dbias, dout: dout, rows: rows, cols: outF, pool: pool)
        }
    }

    /// dinp[rows, inF] = dout · weight (overwritten): the input gradient alone, for a frozen layer.
    @inline(__always)
    public static func backwardInput(
        dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        rows: Int, inFeatures inF: Int, outFeatures outF: Int, pool: ThreadPool = .shared
    ) {
        sgemm(
            transA: false, transB: false, m: rows, n: inF, k: outF, a: dout, lda: outF, b: weight, ldb: inF,
            beta: 0, c: dinp, ldc: inF, pool: pool)
    }

    /// Tangent: tout[rows, outF] = tinp · weightᵀ + inp · tweightᵀ (+ tbias[outF]).
    @inline(__always)
    public static func jvp(
        tout: UnsafeMutablePointer<Float>, tinp: UnsafePointer<Float>, inp: UnsafePointer<Float>,
        weight: UnsafePointer<Float>, tweight: UnsafePointer<Float>, tbias: UnsafePointer<Float>?,
        rows: Int, inFeatures inF: Int, outFeatures outF: Int, pool: ThreadPool = .shared
    ) {
        sgemm(
            transA: false, transB: true, m: rows, n: outF, k: inF, a: tinp, lda: inF, b: weight, ldb: inF,
            beta: 0, c: tout, ldc: outF, pool: pool)
        sgemm(
            transA: false, transB: true, m: rows, n: outF, k: inF, a: inp, lda: inF, b: tweight, ldb: inF,
            beta: 1, c: tout, ldc: outF, pool: pool)
        if let tbias { Elementwise.biasAddForward(out: tout, bias: tbias, rows: rows, cols: outF, pool: pool) }
    }
}
