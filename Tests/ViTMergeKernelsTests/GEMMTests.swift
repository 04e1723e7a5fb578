import XCTest
import ViTMergeCore
@testable import ViTMergeKernels

final class GEMMTests: XCTestCase {
    /// Runs sgemm and the reference on the same inputs (with padded leading dimensions) and compares.
    func check(
        _ ta: Bool, _ tb: Bool, _ m: Int, _ n: Int, _ k: Int, alpha: Float = 1, beta: Float = 0,
        pad: Int = 0, seed: UInt64 = 1, file: StaticString = #filePath, line: UInt = #line
    ) {
        let lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad
        let a = randomArray((ta ? k : m) * lda, seed: seed)
        let b = randomArray((tb ? n : k) * ldb, seed: seed + 1)
        let c0 = randomArray(m * ldc, seed: seed + 2)
        var fast = c0, ref = c0
        sgemm(
            transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
            beta: beta, c: &fast, ldc: ldc)
        sgemmReference(
            transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
            beta: beta, c: &ref, ldc: ldc)
        assertClose(
            fast, ref, atol: Self.tolerance(k: k), rtol: 1e-5,
            "sgemm ta \(ta) tb \(tb) m \(m) n \(n) k \(k) α \(alpha) β \(beta) pad \(pad)",
            file: file, line: line)
        // Padding columns of C beyond n must be untouched.
        if pad > 0 {
            for i in 0..<m {
                for j in n..<ldc where fast[i * ldc + j] != c0[i * ldc + j] {
                    XCTFail("sgemm wrote outside C at row \(i) col \(j)", file: file, line: line); return
                }
            }
        }
    }

    func testAllTransposesOddSizes() {
        let sizes = [1, 2, 3, 5, 7, 17, 31, 63, 64, 65, 97, 127, 193]
        for ta in [false, true] {
            for tb in [false, true] {
                for m in sizes {
                    for n in [1, 17, 64, 65, 193] {
                        for k in [1, 3, 63, 65] {
                            check(ta, tb, m, n, k)
                        }
                    }
                }
            }
        }
    }

    /// Float accumulation over k terms of size ≤ 1: the error grows like √k·ulp.
    static func tolerance(k: Int) -> Float { 2e-6 * Float(max(k, 1)).squareRoot() * 4 }

    /// Both micro-kernels against a plain sum, whichever one this build's GEMM uses, so an
    /// AVX-512 CI machine still checks the AVX2 kernel (and the other way round).
    func testMicroKernelsMatchPlainSums() {
        for kc in [1, 2, 7, 384] {
            for nr in [16, 64] {
                let a = randomArray(6 * kc, seed: UInt64(kc)), b = randomArray(nr * kc, seed: UInt64(kc + nr))
                var tile = [Float](repeating: .nan, count: 6 * nr)
                a.withUnsafeBufferPointer { pa in
                    b.withUnsafeBufferPointer { pb in
                        tile.withUnsafeMutableBufferPointer { pt in
                            if nr == 16 {
                                microKernel6x16(kc, pa.baseAddress!, pb.baseAddress!, pt.baseAddress!)
                            } else {
                                microKernel6x64(kc, pa.baseAddress!, pb.baseAddress!, pt.baseAddress!)
                            }
                        }
                    }
                }
                var expected = [Float](repeating: 0, count: 6 * nr)
                for r in 0..<6 {
                    for j in 0..<nr {
                        var sum = 0.0
                        for p in 0..<kc { sum += Double(a[p * 6 + r]) * Double(b[p * nr + j]) }
                        expected[r * nr + j] = Float(sum)
                    }
                }
                assertClose(tile, expected, atol: Self.tolerance(k: kc), rtol: 1e-5, "micro-kernel 6×\(nr) kc \(kc)")
            }
        }
    }

    func testAlphaBetaAndLeadingDimensions() {
        for ta in [false, true] {
            for tb in [false, true] {
                for beta: Float in [0, 1, 0.5] {
                    check(ta, tb, 37, 71, 29, alpha: 0.75, beta: beta, pad: 5)
                    check(ta, tb, 131, 67, 211, alpha: -1.5, beta: beta, pad: 3)
                }
            }
        }
    }

    /// Larger than one cache block in every dimension (mc 120, kc 384, nc 3072 is covered by n).
    func testMultipleBlocks() {
        check(false, true, 251, 300, 401, beta: 0.5)
        check(true, false, 127, 257, 800, beta: 1)
        check(false, false, 300, 3100, 9)
    }

    func testSizesUpTo300IncludingPrimes() {
        var rng = RNG(seed: 7)
        let candidates = [1, 2, 3, 5, 11, 13, 29, 53, 101, 149, 199, 211, 257, 263, 293, 300]
        for trial in 0..<24 {
            let m = candidates[rng.int(below: candidates.count)], n = candidates[rng.int(below: candidates.count)]
            let k = candidates[rng.int(below: candidates.count)]
            check(trial % 2 == 0, trial % 3 == 0, m, n, k, beta: [0, 1, 0.5][trial % 3], seed: UInt64(trial))
        }
    }

    func testBetaZeroIgnoresNaNInC() {
        let a = randomArray(5 * 4, seed: 1), b = randomArray(4 * 3, seed: 2)
        var c = [Float](repeating: .nan, count: 5 * 3)
        sgemm(transA: false, transB: false, m: 5, n: 3, k: 4, a: a, lda: 4, b: b, ldb: 3, c: &c, ldc: 3)
        XCTAssertTrue(c.allSatisfy { $0.isFinite })
    }

    func testKZeroScalesC() {
        var c: [Float] = [1, 2, 3, 4]
        let a: [Float] = [0], b: [Float] = [0]
        sgemm(transA: false, transB: false, m: 2, n: 2, k: 0, a: a, lda: 1, b: b, ldb: 2, beta: 0.5, c: &c, ldc: 2)
        XCTAssertEqual(c, [0.5, 1, 1.5, 2])
    }

    func testBitIdenticalAcrossThreadCounts() {
        for (ta, tb, m, n, k) in [
            (false, true, 397, 211, 450), (true, false, 13, 700, 300), (false, false, 1000, 40, 100),
        ] {
            let lda = ta ? m : k, ldb = tb ? k : n
            let a = randomArray(m * k, seed: 3), b = randomArray(k * n, seed: 4)
            var c1 = [Float](repeating: 0, count: m * n), c2 = c1
            withThreads(1) { pool in
                sgemm(
                    transA: ta, transB: tb, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: &c1, ldc: n,
                    pool: pool)
            }
            withThreads(2) { pool in
                XCTAssertGreaterThan(pool.threadCount(work: GEMM.cost(m, n, k)), 1, "\(m)x\(n)x\(k) must split")
                sgemm(
                    transA: ta, transB: tb, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: &c2, ldc: n,
                    pool: pool)
            }
            XCTAssertEqual(c1, c2, "sgemm results differ between 1 and 2 threads for \(m)x\(n)x\(k)")
        }
    }

    /// rowSumsOfA adds each row's sum of op(A) in k order while packing: with transA it equals
    /// biasAddBackward over the stored A bit for bit (the weight gradient's bias gradient), for full
    /// and partial panels, several depth blocks and column blocks, both splits and 1 or 2 threads,
    /// and C is the same as without the sums.
    func testRowSumsOfAWhilePacking() {
        for (ta, tb, m, n, k) in [
            (true, false, 13, 700, 800), (true, false, 576, 19, 901), (true, false, 7, 3100, 5),
            (false, true, 31, 65, 397), (false, false, 6, 1, 1), (true, true, 1, 64, 385), (true, false, 5, 0, 9),
        ] {
            let lda = ta ? m : k, ldb = tb ? k : max(n, 1)
            let a = randomArray(m * k, seed: 5), b = randomArray(max(k * n, 1), seed: 6)
            let start = randomArray(m, seed: 7)
            var expected = start
            if ta {
                Elementwise.biasAddBackward(dbias: &expected, dout: a, rows: k, cols: m)
            } else {
                for i in 0..<m { for p in 0..<k { expected[i] += a[i * lda + p] } }
            }
            var plain = [Float](repeating: 0, count: m * n)
            sgemm(transA: ta, transB: tb, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: &plain, ldc: max(n, 1))
            for pool in testPools {
                var sums = start, c = [Float](repeating: 0, count: m * n)
                sgemm(
                    transA: ta, transB: tb, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: &c, ldc: max(n, 1),
                    rowSumsOfA: &sums, pool: pool)
                XCTAssertEqual(sums, expected, "row sums ta \(ta) tb \(tb) \(m)x\(n)x\(k), \(pool.threads) threads")
                XCTAssertEqual(c, plain, "C with row sums \(m)x\(n)x\(k), \(pool.threads) threads")
            }
        }
    }

    /// Batched GEMM equals one sgemm per (i, j) with the same offsets, including strided views
    /// into a fused buffer as attention uses them.
    func testBatchedMatchesLoopOfSingles() {
        let b0 = 3, h = 2, t = 19, hd = 7, d = h * hd
        let qkv = randomArray(b0 * t * 3 * d, seed: 9)
        var s1 = [Float](repeating: 0, count: b0 * h * t * t), s2 = s1
        // QKᵀ with strided views of the fused buffer; the pointers live only inside the closure.
        func batched(_ out: inout [Float], pool: ThreadPool) {
            qkv.withUnsafeBufferPointer { q in
                sgemmBatched(
                    transA: false, transB: true, m: t, n: t, k: hd, alpha: 0.5,
                    a: q.baseAddress!, lda: 3 * d, strideA: (t * 3 * d, hd),
                    b: q.baseAddress! + d, ldb: 3 * d, strideB: (t * 3 * d, hd),
                    c: &out, ldc: t, strideC: (h * t * t, t * t), batch: (b0, h), pool: pool)
            }
        }
        withThreads(2) { batched(&s1, pool: $0) }
        qkv.withUnsafeBufferPointer { q in
            s2.withUnsafeMutableBufferPointer { s in
                for i in 0..<b0 {
                    for j in 0..<h {
                        sgemmReference(
                            transA: false, transB: true, m: t, n: t, k: hd, alpha: 0.5,
                            a: q.baseAddress! + i * t * 3 * d + j * hd, lda: 3 * d,
                            b: q.baseAddress! + i * t * 3 * d + j * hd + d, ldb: 3 * d,
                            c: s.baseAddress! + i * h * t * t + j * t * t, ldc: t)
                    }
                }
            }
        }
        assertClose(s1, s2, atol: 1e-5, rtol: 1e-5, "batched QKᵀ")
        var s3 = [Float](repeating: 0, count: s1.count)
        withThreads(1) { batched(&s3, pool: $0) }
        XCTAssertEqual(s1, s3)
    }

    /// The transposed B pack (16 × 16 register transposes, scalar edges) against its definition,
    /// dst[p·nr + j] = B[j0 + j, p0 + p], zero beyond `cols`, on odd panel widths, depths and offsets.
    func testTransposedPackMatchesDefinition() {
        let nr = GEMM.nr, ldb = 211
        let b = randomArray(300 * ldb, seed: 41)
        for (j0, cols, p0, kc) in [
            (0, nr, 0, 64), (3, nr, 5, 37), (17, 15, 16, 16), (1, nr - 1, 0, 193), (40, 1, 2, 17),
        ] {
            var dst = [Float](repeating: .nan, count: kc * nr)
            b.withUnsafeBufferPointer { bp in
                dst.withUnsafeMutableBufferPointer { dp in
                    GEMMProblem(
                        transA: false, transB: true, m: 1, n: 300, k: ldb, alpha: 1, a: bp.baseAddress!, lda: 1,
                        b: bp.baseAddress!, ldb: ldb, beta: 0, c: dp.baseAddress!, ldc: 1
                    ).packB(j0, cols, p0, kc, dp.baseAddress!)
                }
            }
            for p in 0..<kc {
                for j in 0..<nr {
                    let want = j < cols ? b[(j0 + j) * ldb + p0 + p] : 0
                    guard dst[p * nr + j] == want else {
                        return XCTFail(
                            "pack j0 \(j0) cols \(cols) p0 \(p0) kc \(kc): [\(p), \(j)] \(dst[p * nr + j]) ≠ \(want)")
                    }
                }
            }
        }
    }
}
