import Foundation
import XCTest
import ViTMergeCore
@testable import ViTMergeKernels

final class AttentionTests: XCTestCase {
    private func run(
        _ batch: Int, _ t: Int, _ dim: Int, _ heads: Int, seed: UInt64, pool: ThreadPool = .shared
    ) -> (out: [Float], att: [Float], dqkv: [Float]) {
        let qkv = randomArray(batch * t * 3 * dim, seed: seed, lo: -2, hi: 2)
        let dout = randomArray(batch * t * dim, seed: seed + 1)
        var out = [Float](repeating: 0, count: batch * t * dim),
            att = [Float](repeating: 0, count: batch * heads * t * t)
        var dqkv = [Float](repeating: 0, count: qkv.count), datt = att
        Attention.forward(
            out: &out, att: &att, qkv: qkv, batch: batch, tokens: t, dim: dim, heads: heads, pool: pool)
        Attention.backward(
            dqkv: &dqkv, datt: &datt, dout: dout, qkv: qkv, att: att, batch: batch, tokens: t, dim: dim, heads: heads,
            pool: pool)
        return (out, att, dqkv)
    }

    func testMatchesReferenceOnOddShapes() {
        for (batch, t, dim, heads) in [(1, 1, 4, 1), (2, 3, 6, 3), (2, 17, 30, 3), (1, 65, 64, 4), (3, 50, 24, 2)] {
            let seed = UInt64(batch * 1000 + t)
            let (out, att, dqkv) = run(batch, t, dim, heads, seed: seed)
            let qkv = randomArray(batch * t * 3 * dim, seed: seed, lo: -2, hi: 2)
            let dout = randomArray(batch * t * dim, seed: seed + 1)
            var rout = out.map { _ in Float(0) }, ratt = att.map { _ in Float(0) }, rd = dqkv.map { _ in Float(0) }
            Attention.forwardReference(
                out: &rout, att: &ratt, qkv: qkv, batch: batch, tokens: t, dim: dim, heads: heads)
            Attention.backwardReference(
                dqkv: &rd, dout: dout, qkv: qkv, att: ratt, batch: batch, tokens: t, dim: dim, heads: heads)
            let tag = "B\(batch) T\(t) D\(dim) H\(heads)"
            assertClose(att, ratt, atol: 1e-6, rtol: 1e-5, "att \(tag)")
            assertClose(out, rout, atol: 1e-5, rtol: 1e-4, "out \(tag)")
            assertClose(dqkv, rd, atol: 1e-5, rtol: 1e-3, "dqkv \(tag)")
        }
    }

    func testSoftmaxRowsAreStableForHugeScores() {
        var x: [Float] = [1e4, -1e4, 3e4, 3e4] + [Float](repeating: -3e38, count: 17)
        Softmax.forwardInPlace(&x, rows: 1, cols: x.count, pool: .shared)
        XCTAssertEqual(x[2], 0.5); XCTAssertEqual(x[3], 0.5); XCTAssertEqual(x[0], 0)
        XCTAssertTrue(x.allSatisfy(\.isFinite))
    }

    func testBackwardMatchesFiniteDifferences() {
        checkBackwardByFiniteDifferences(2, 5, 6, 2, fused: false, stride: 7)
    }

    /// dqkv of the unfused or fused kernels against central differences of Σ w ⊙ attention(qkv) in Double.
    private func checkBackwardByFiniteDifferences(
        _ batch: Int, _ t: Int, _ dim: Int, _ heads: Int, fused: Bool, queryBlock: Int? = nil, stride step: Int
    ) {
        let qkv = randomArray(batch * t * 3 * dim, seed: 9, lo: -1, hi: 1).map(Double.init)
        let w = randomArray(batch * t * dim, seed: 10).map(Double.init)
        // loss = Σ w ⊙ attention(qkv), in Double
        func loss(_ x: [Double]) -> Double {
            let hd = dim / heads, d3 = 3 * dim
            var total = 0.0
            for b in 0..<batch {
                for h in 0..<heads {
                    for i in 0..<t {
                        var s = [Double](repeating: 0, count: t)
                        for j in 0..<t {
                            for c in 0..<hd {
                                s[j] += x[(b * t + i) * d3 + h * hd + c] * x[(b * t + j) * d3 + dim + h * hd + c]
                            }
                        }
                        s = s.map { $0 / Double(hd).squareRoot() }
                        let m = s.max()!, e = s.map { exp($0 - m) }, z = e.reduce(0, +)
                        for c in 0..<hd {
                            var o = 0.0
                            for j in 0..<t { o += e[j] / z * x[(b * t + j) * d3 + 2 * dim + h * hd + c] }
                            total += o * w[(b * t + i) * dim + h * hd + c]
                        }
                    }
                }
            }
            return total
        }
        let q32 = qkv.map(Float.init), w32 = w.map(Float.init)
        var out = [Float](repeating: 0, count: batch * t * dim),
            att = [Float](repeating: 0, count: batch * heads * t * t)
        var dqkv = [Float](repeating: 0, count: qkv.count), datt = att
        if fused {
            Attention.forwardFused(
                out: &out, att: &att, qkv: q32, batch: batch, tokens: t, dim: dim, heads: heads,
                queryBlock: queryBlock)
            Attention.backwardFused(
                dqkv: &dqkv, dout: w32, qkv: q32, att: att, batch: batch, tokens: t, dim: dim, heads: heads,
                queryBlock: queryBlock)
        } else {
            Attention.forwardUnfused(out: &out, att: &att, qkv: q32, batch: batch, tokens: t, dim: dim, heads: heads)
            Attention.backwardUnfused(
                dqkv: &dqkv, datt: &datt, dout: w32, qkv: q32, att: att, batch: batch, tokens: t, dim: dim,
                heads: heads)
        }
        for i in stride(from: 0, to: qkv.count, by: step) {
            let fd = finiteDifference(qkv, i, h: 1e-6, loss)
            XCTAssertEqual(Double(dqkv[i]), fd, accuracy: 1e-4 + 1e-3 * abs(fd), "dqkv[\(i)] fused \(fused) T \(t)")
        }
    }

    func testOneAndTwoThreadsAreBitIdentical() {
        let a = withThreads(1) { run(4, 197, 192, 3, seed: 5, pool: $0) }
        let b = withThreads(2) { run(4, 197, 192, 3, seed: 5, pool: $0) }
        XCTAssertEqual(a.out, b.out); XCTAssertEqual(a.att, b.att); XCTAssertEqual(a.dqkv, b.dqkv)
    }

    func testJVPMatchesFiniteDifferences() {
        for (batch, tokens, dim, heads) in [(2, 5, 12, 3), (1, 17, 16, 2), (3, 7, 6, 1), (1, 300, 4, 2)] {
            let qkv = randomArray(batch * tokens * 3 * dim, seed: UInt64(tokens)), tq = randomArray(qkv.count, seed: 99)
            func attention(_ x: [Float]) -> [Float] {
                var out = [Float](repeating: 0, count: batch * tokens * dim),
                    att = [Float](repeating: 0, count: batch * heads * tokens * tokens)
                Attention.forward(out: &out, att: &att, qkv: x, batch: batch, tokens: tokens, dim: dim, heads: heads)
                return out
            }
            var out = [Float](repeating: 0, count: batch * tokens * dim),
                att = [Float](repeating: 0, count: batch * heads * tokens * tokens)
            Attention.forward(out: &out, att: &att, qkv: qkv, batch: batch, tokens: tokens, dim: dim, heads: heads)
            var tout = [Float](repeating: .nan, count: out.count), tatt = [Float](repeating: .nan, count: att.count)
            Attention.jvp(
                tout: &tout, tatt: &tatt, tqkv: tq, qkv: qkv, att: att, batch: batch, tokens: tokens, dim: dim,
                heads: heads)
            assertClose(
                tout, directional(qkv, tq, attention), atol: 2e-3, rtol: 1e-2,
                "attention jvp \(batch)×\(tokens)×\(dim)/\(heads)")
        }
    }

    // MARK: Fused kernels

    /// Fused forward (att saved, and att nil), backward (P saved; P recomputed must give the same
    /// bits) and JVP on one input.
    private func runFused(
        _ batch: Int, _ t: Int, _ dim: Int, _ heads: Int, qb: Int?, qkv: [Float], dout: [Float],
        pool: ThreadPool = .shared
    ) -> (out: [Float], outInference: [Float], att: [Float], dqkv: [Float], tout: [Float]) {
        var out = [Float](repeating: .nan, count: batch * t * dim), outInference = out
        var att = [Float](repeating: .nan, count: batch * heads * t * t)
        var dqkv = [Float](repeating: 0, count: qkv.count)
        Attention.forwardFused(
            out: &out, att: &att, qkv: qkv, batch: batch, tokens: t, dim: dim, heads: heads, queryBlock: qb, pool: pool)
        outInference.withUnsafeMutableBufferPointer { o in
            Attention.forwardFused(
                out: o.baseAddress!, att: nil, qkv: qkv, batch: batch, tokens: t, dim: dim, heads: heads,
                queryBlock: qb, pool: pool)
        }
        Attention.backwardFused(
            dqkv: &dqkv, dout: dout, qkv: qkv, att: att, batch: batch, tokens: t, dim: dim, heads: heads,
            queryBlock: qb, pool: pool)
        var recomputed = [Float](repeating: 0, count: qkv.count)
        Attention.backwardFused(
            dqkv: &recomputed, dout: dout, qkv: qkv, att: nil, batch: batch, tokens: t, dim: dim, heads: heads,
            queryBlock: qb, pool: pool)
        XCTAssertEqual(recomputed, dqkv, "backward with P recomputed: B\(batch) T\(t) D\(dim) H\(heads)")
        var tout = [Float](repeating: .nan, count: out.count)
        Attention.jvpFused(
            tout: &tout, tqkv: tangent(qkv), qkv: qkv, att: att, batch: batch, tokens: t, dim: dim, heads: heads,
            queryBlock: qb, pool: pool)
        return (out, outInference, att, dqkv, tout)
    }

    /// A tangent of qkv for the JVP comparisons.
    private func tangent(_ qkv: [Float]) -> [Float] { randomArray(qkv.count, seed: UInt64(qkv.count)) }

    /// (batch, tokens, dim, heads, query block): T = 1, 5, 17, 50, 197 with hd 5 and 64, 1–3 heads,
    /// batch 1–3, in one query block (nil: the default, one block up to T = 330) and in several
    /// (down to 1-row blocks, and partial last blocks); T = 300 and 400 run two default blocks (400
    /// also splits the unfused path's depth at kc = 384).
    private let fusedShapes: [(Int, Int, Int, Int, Int?)] = [
        (1, 1, 5, 1, nil), (2, 5, 10, 2, nil), (2, 5, 10, 2, 1), (3, 17, 15, 3, nil), (3, 17, 15, 3, 6),
        (1, 50, 64, 1, nil), (2, 50, 128, 2, 16), (1, 197, 64, 1, nil), (2, 197, 15, 3, 40),
        (1, 300, 10, 2, nil), (1, 400, 5, 1, nil),
    ]

    func testFusedMatchesReferenceOnOddShapes() {
        for (batch, t, dim, heads, qb) in fusedShapes {
            let seed = UInt64(batch * 1000 + t + dim)
            let qkv = randomArray(batch * t * 3 * dim, seed: seed, lo: -2, hi: 2)
            let dout = randomArray(batch * t * dim, seed: seed + 1)
            let f = runFused(batch, t, dim, heads, qb: qb, qkv: qkv, dout: dout)
            var rout = f.out.map { _ in Float(0) }, ratt = f.att.map { _ in Float(0) }
            var rd = f.dqkv.map { _ in Float(0) }
            Attention.forwardReference(
                out: &rout, att: &ratt, qkv: qkv, batch: batch, tokens: t, dim: dim, heads: heads)
            Attention.backwardReference(
                dqkv: &rd, dout: dout, qkv: qkv, att: ratt, batch: batch, tokens: t, dim: dim, heads: heads)
            let tag = "fused B\(batch) T\(t) D\(dim) H\(heads) qb \(qb.map(String.init) ?? "default")"
            assertClose(f.att, ratt, atol: 1e-6, rtol: 1e-5, "att \(tag)")
            assertClose(f.out, rout, atol: 1e-5, rtol: 1e-4, "out \(tag)")
            XCTAssertEqual(f.outInference, f.out, "att nil must give the same out: \(tag)")
            assertClose(f.dqkv, rd, atol: 1e-5, rtol: 1e-3, "dqkv \(tag)")
        }
    }

    /// With T ≤ GEMM.kc in one query block the fused kernels run the same products in the same
    /// order as the unfused path: identical bits. With several blocks (dK, dV summed block by
    /// block) or T > kc (the unfused depth split) they round differently: close. The forward and
    /// the JVP are row-wise, so their bits never depend on the blocks (T ≤ kc).
    func testFusedMatchesUnfusedPath() {
        for (batch, t, dim, heads, qb) in fusedShapes {
            let seed = UInt64(batch * 7 + t)
            let qkv = randomArray(batch * t * 3 * dim, seed: seed, lo: -2, hi: 2)
            let dout = randomArray(batch * t * dim, seed: seed + 1)
            let f = runFused(batch, t, dim, heads, qb: qb, qkv: qkv, dout: dout)
            var out = [Float](repeating: 0, count: f.out.count), att = [Float](repeating: 0, count: f.att.count)
            var dqkv = [Float](repeating: 0, count: qkv.count), datt = att
            Attention.forwardUnfused(
                out: &out, att: &att, qkv: qkv, batch: batch, tokens: t, dim: dim, heads: heads)
            Attention.backwardUnfused(
                dqkv: &dqkv, datt: &datt, dout: dout, qkv: qkv, att: att, batch: batch, tokens: t, dim: dim,
                heads: heads)
            var tout = [Float](repeating: 0, count: f.out.count), tatt = att
            Attention.jvpUnfused(
                tout: &tout, tatt: &tatt, tqkv: tangent(qkv), qkv: qkv, att: att, batch: batch, tokens: t, dim: dim,
                heads: heads)
            let tag = "fused vs unfused B\(batch) T\(t) D\(dim) H\(heads) qb \(qb.map(String.init) ?? "default")"
            if t <= GEMM.kc {
                XCTAssertEqual(f.att, att, tag); XCTAssertEqual(f.out, out, tag); XCTAssertEqual(f.tout, tout, tag)
            } else {
                assertClose(f.att, att, atol: 1e-6, rtol: 1e-5, "att \(tag)")
                assertClose(f.out, out, atol: 1e-5, rtol: 1e-4, "out \(tag)")
                assertClose(f.tout, tout, atol: 1e-5, rtol: 1e-3, "tout \(tag)")
            }
            if t <= GEMM.kc && Attention.queryBlockRows(qb, tokens: t) == t {
                XCTAssertEqual(f.dqkv, dqkv, tag)
            } else {
                assertClose(f.dqkv, dqkv, atol: 1e-5, rtol: 1e-3, "dqkv \(tag)")
            }
        }
    }

    /// 1, 2 and 3 threads give identical bits (dK, dV accumulate over query blocks in one fixed
    /// order per (batch, head)), with one and with several query blocks.
    func testFusedIsBitIdenticalForOneTwoAndThreeThreads() {
        let three = ThreadPool(threads: 3)
        XCTAssertEqual(three.threads, 3)
        for (batch, t, dim, heads, qb) in [(2, 197, 64, 2, nil), (3, 50, 30, 3, 12), (3, 17, 15, 3, 5)]
            as [(Int, Int, Int, Int, Int?)]
        {
            let qkv = randomArray(batch * t * 3 * dim, seed: 5, lo: -2, hi: 2)
            let dout = randomArray(batch * t * dim, seed: 6)
            let a = withThreads(1) { runFused(batch, t, dim, heads, qb: qb, qkv: qkv, dout: dout, pool: $0) }
            let b = withThreads(2) { runFused(batch, t, dim, heads, qb: qb, qkv: qkv, dout: dout, pool: $0) }
            let c = runFused(batch, t, dim, heads, qb: qb, qkv: qkv, dout: dout, pool: three)
            for (x, n) in [(b, 2), (c, 3)] {
                let tag = "1 vs \(n) threads, B\(batch) T\(t) qb \(qb.map(String.init) ?? "default")"
                XCTAssertEqual(a.out, x.out, tag); XCTAssertEqual(a.outInference, x.outInference, tag)
                XCTAssertEqual(a.att, x.att, tag); XCTAssertEqual(a.dqkv, x.dqkv, tag)
                XCTAssertEqual(a.tout, x.tout, tag)
            }
        }
    }

    /// Central differences in Double through the fused kernels, in one and in three query blocks
    /// (6 + 6 + 5 rows).
    func testFusedBackwardMatchesFiniteDifferences() {
        checkBackwardByFiniteDifferences(2, 5, 6, 2, fused: true, queryBlock: nil, stride: 7)
        checkBackwardByFiniteDifferences(1, 17, 8, 2, fused: true, queryBlock: 6, stride: 5)
    }
}
