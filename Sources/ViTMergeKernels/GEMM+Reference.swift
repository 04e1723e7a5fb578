/// The plain triple loop that `sgemm` must agree with (same contract), accumulating in Double.
/// Kept for tests and as the definition of the operation.
public func sgemmReference(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    for i in 0..<m {
        for j in 0..<n {
            var s = 0.0
            for p in 0..<k {
                let x = transA ? a[p * lda + i] : a[i * lda + p]
                let y = transB ? b[j * ldb + p] : b[p * ldb + j]
                s += Double(x) * Double(y)
            }
            let old = beta == 0 ? 0 : Double(beta) * Double(c[i * ldc + j])
            c[i * ldc + j] = Float(Double(alpha) * s + old)
        }
    }
}

/// x rounded to bfloat16 (to nearest, ties to even) and widened back, with bfloat16 subnormals
/// read as zero as vdpbf16ps reads them: the value `sgemm`'s bf16 path multiplies.
public func bfloat16Operand(_ x: Float) -> Float {
    let bits = bf16High(x)
    return bits & 0x7F80_0000 == 0 ? Float(bitPattern: bits & 0x8000_0000) : Float(bitPattern: bits)
}

/// `sgemmReference` on the bfloat16 operands (`bfloat16Operand`), accumulating in Double: the
/// definition `sgemm(precision: .bf16)` must agree with up to FP32 summation.
public func sgemmBF16Reference(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    // The stored extent of a rows × cols matrix with leading dimension ld, every element rounded.
    func rounded(_ x: UnsafePointer<Float>, rows: Int, cols: Int, ld: Int) -> [Float] {
        rows == 0 || cols == 0 ? [0] : (0..<((rows - 1) * ld + cols)).map { bfloat16Operand(x[$0]) }
    }
    let ra = rounded(a, rows: transA ? k : m, cols: transA ? m : k, ld: lda)
    let rb = rounded(b, rows: transB ? n : k, cols: transB ? k : n, ld: ldb)
    sgemmReference(
        transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: ra, lda: lda, b: rb, ldb: ldb,
        beta: beta, c: c, ldc: ldc)
}
