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
        let (batch, t, dim, heads) = (2, 5, 6, 2)
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
        Attention.forward(out: &out, att: &att, qkv: q32, batch: batch, tokens: t, dim: dim, heads: heads)
        Attention.backward(
            dqkv: &dqkv, datt: &datt, dout: w32, qkv: q32, att: att, batch: batch, tokens: t, dim: dim, heads: heads)
        for i in stride(from: 0, to: qkv.count, by: 7) {
            let fd = finiteDifference(qkv, i, h: 1e-6, loss)
            XCTAssertEqual(Double(dqkv[i]), fd, accuracy: 1e-4 + 1e-3 * abs(fd), "dqkv[\(i)]")
        }
    }

    func testOneAndTwoThreadsAreBitIdentical() {
        let a = withThreads(1) { run(4, 197, 192, 3, seed: 5, pool: $0) }
        let b = withThreads(2) { run(4, 197, 192, 3, seed: 5, pool: $0) }
        XCTAssertEqual(a.out, b.out); XCTAssertEqual(a.att, b.att); XCTAssertEqual(a.dqkv, b.dqkv)
    }

    func testJVPMatchesFiniteDifferences() {
        for (batch, tokens, dim, heads) in [(2, 5, 12, 3), (1, 17, 16, 2), (3, 7, 6, 1)] {
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
}
