import XCTest
import ViTMergeCore
@testable import ViTMergeKernels

/// The bfloat16 path of sgemm (`precision: .bf16`) against its reference twin.
final class GEMMBF16Tests: XCTestCase {
    /// Rounding to nearest with ties to even, on values whose bfloat16 neighbours are known.
    func testRoundingToBFloat16() {
        let ulp: Float = 1.0 / 128  // bfloat16's spacing in [1, 2)
        let cases: [(Float, Float)] = [
            (1, 1), (1 + ulp / 2, 1), (1 + 3 * ulp / 2, 1 + 2 * ulp), (1 + ulp / 2 + ulp / 64, 1 + ulp),
            (-1 - ulp / 4, -1), (0, 0), (3.14159265, 3.140625), (.greatestFiniteMagnitude, .infinity),
            (-.infinity, -.infinity), (65504, 65536),
        ]
        for (x, expected) in cases {
            XCTAssertEqual(Float(bitPattern: bf16High(x)), expected, "bfloat16(\(x))")
        }
        XCTAssertEqual((-Float.zero).bitPattern, bf16High(-0.0), "−0 keeps its sign")
        XCTAssertTrue(Float(bitPattern: bf16High(.nan)).isNaN)
        XCTAssertTrue(
            Float(bitPattern: bf16High(Float(bitPattern: 0x7F80_0001))).isNaN, "a NaN whose payload would round to ∞")
        XCTAssertEqual(bfloat16Operand(Float.leastNormalMagnitude / 4), 0, "subnormals read as zero")
        // The 16- and 8-lane versions agree with the scalar one on arbitrary bit patterns.
        var rng = RNG(seed: 11)
        for _ in 0..<2000 {
            var bits = SIMD16<UInt32>()
            for l in 0..<16 { bits[l] = UInt32(truncatingIfNeeded: rng.next()) }
            let x = unsafeBitCast(bits, to: SIMD16<Float>.self)
            let v16 = bf16High(x), v8 = bf16High(x.lowHalf)
            for l in 0..<16 { XCTAssertEqual(v16[l], bf16High(x[l]), "lane \(l) of \(bits[l])") }
            for l in 0..<8 { XCTAssertEqual(v8[l], bf16High(x[l]), "8-lane \(l) of \(bits[l])") }
        }
    }

    func check(
        _ ta: Bool, _ tb: Bool, _ m: Int, _ n: Int, _ k: Int, alpha: Float = 1, beta: Float = 0, pad: Int = 0,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        let lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad
        let a = randomArray((ta ? k : m) * lda, seed: 21), b = randomArray((tb ? n : k) * ldb, seed: 22)
        let c0 = randomArray(m * ldc, seed: 23)
        var fast = c0, ref = c0, fp32 = c0
        sgemm(
            transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta,
            c: &fast, ldc: ldc, precision: .bf16)
        sgemmBF16Reference(
            transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta,
            c: &ref, ldc: ldc)
        sgemmReference(
            transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta,
            c: &fp32, ldc: ldc)
        let what = "bf16 sgemm ta \(ta) tb \(tb) m \(m) n \(n) k \(k) α \(alpha) β \(beta) pad \(pad)"
        // Exact products summed in FP32: the FP32 GEMM's tolerance against the rounded operands.
        assertClose(fast, ref, atol: GEMMTests.tolerance(k: k), rtol: 1e-5, what, file: file, line: line)
        // And the rounding itself: each operand within 2⁻⁹ relative, so |error| ≤ 2⁻⁸·Σ|a||b| ≤ k/256.
        var far = 0
        for i in 0..<m * ldc where abs(ref[i] - fp32[i]) > Float(k) / 256 * abs(alpha) { far += 1 }
        XCTAssertEqual(far, 0, "\(what): the bf16 reference is further from FP32 than rounding allows")
        if pad > 0 {
            for i in 0..<m {
                for j in n..<ldc where fast[i * ldc + j] != c0[i * ldc + j] {
                    XCTFail("bf16 sgemm wrote outside C at row \(i) col \(j)", file: file, line: line); return
                }
            }
        }
    }

    /// Odd sizes in every layout, odd depths (a half-empty last pair), and more than one depth
    /// block (768 bfloat16 per panel) and column block.
    func testAllTransposesOddSizes() throws {
        try XCTSkipUnless(GEMM.bf16Supported, "this CPU or build has no AVX512_BF16")
        for ta in [false, true] {
            for tb in [false, true] {
                for m in [1, 5, 6, 7, 13, 65] {
                    for n in [1, 17, 64, 65, 129] {
                        for k in [1, 2, 3, 15, 16, 17, 33, 63] { check(ta, tb, m, n, k) }
                    }
                }
                check(ta, tb, 37, 70, 769)
                check(ta, tb, 12, 3100, 50)
                check(ta, tb, 19, 23, 1601, alpha: 0.5, beta: 0.75, pad: 3)
            }
        }
    }

    func testBitIdenticalAcrossThreadCountsAndRowSums() throws {
        try XCTSkipUnless(GEMM.bf16Supported, "this CPU or build has no AVX512_BF16")
        for (ta, tb, m, n, k) in [
            (false, true, 397, 211, 450), (true, false, 13, 700, 801), (true, false, 576, 19, 901),
        ] {
            let lda = ta ? m : k, ldb = tb ? k : n
            let a = randomArray(m * k, seed: 31), b = randomArray(k * n, seed: 32)
            var results: [[Float]] = [], sums: [[Float]] = []
            for pool in testPools {
                var c = [Float](repeating: 0, count: m * n), s = [Float](repeating: 0.25, count: m)
                sgemm(
                    transA: ta, transB: tb, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: &c, ldc: n,
                    rowSumsOfA: &s, precision: .bf16, pool: pool)
                results.append(c); sums.append(s)
            }
            XCTAssertEqual(results[0], results[1], "bf16 results differ between 1 and 2 threads for \(m)x\(n)x\(k)")
            // The row sums are of the FP32 values, bit for bit those of the FP32 path.
            var expected = [Float](repeating: 0.25, count: m), c = [Float](repeating: 0, count: m * n)
            sgemm(
                transA: ta, transB: tb, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: &c, ldc: n,
                rowSumsOfA: &expected, precision: .fp32)
            XCTAssertEqual(sums[0], expected, "bf16 row sums \(m)x\(n)x\(k)")
            XCTAssertEqual(sums[1], expected, "bf16 row sums \(m)x\(n)x\(k), 2 threads")
        }
    }

    /// NaN and infinity in an operand reach C as in FP32; beta == 0 still ignores C.
    func testNonFiniteOperands() throws {
        try XCTSkipUnless(GEMM.bf16Supported, "this CPU or build has no AVX512_BF16")
        var a = randomArray(7 * 9, seed: 41)
        let b = randomArray(9 * 5, seed: 42)
        a[2 * 9 + 4] = .nan
        a[5 * 9 + 8] = .infinity
        var c = [Float](repeating: .nan, count: 7 * 5)
        sgemm(
            transA: false, transB: false, m: 7, n: 5, k: 9, a: a, lda: 9, b: b, ldb: 5, c: &c, ldc: 5, precision: .bf16)
        for i in 0..<7 {
            for j in 0..<5 {
                let v = c[i * 5 + j]
                if i == 2 {
                    XCTAssertTrue(v.isNaN, "row with a NaN operand, col \(j)")
                } else if i == 5 {
                    XCTAssertTrue(v.isInfinite || v.isNaN, "row with ∞, col \(j)")
                } else {
                    XCTAssertTrue(v.isFinite, "finite row \(i) col \(j): \(v)")
                }
            }
        }
    }
}
