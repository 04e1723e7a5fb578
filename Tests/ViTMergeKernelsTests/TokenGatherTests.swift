import XCTest
import ViTMergeCore
import ViTMergeKernels

/// The token gather of MAE (visible tokens; the decoder's unshuffle with mask tokens and position
/// rows): forward and backward against the reference on odd sizes at 1 and 2 threads, and the
/// backward as the forward's adjoint (⟨dout, gather(x)⟩ = ⟨gatherᵀ(dout), x⟩).
final class TokenGatherTests: XCTestCase {
    struct Case {
        let batch, inTokens, outTokens, dim: Int
        let fill: Bool, add: Bool
    }

    static let cases = [
        Case(batch: 1, inTokens: 1, outTokens: 1, dim: 1, fill: false, add: false),
        Case(batch: 3, inTokens: 17, outTokens: 5, dim: 17, fill: false, add: false),
        Case(batch: 2, inTokens: 5, outTokens: 17, dim: 63, fill: true, add: true),
        Case(batch: 5, inTokens: 13, outTokens: 50, dim: 3, fill: true, add: true),
        Case(batch: 3, inTokens: 7, outTokens: 7, dim: 65, fill: false, add: true),
        Case(batch: 2, inTokens: 1, outTokens: 3, dim: 127, fill: true, add: false),
    ]

    /// Per image a seeded map: with `fill`, each input row appears once and the rest is −1 (the
    /// decoder's unshuffle); otherwise distinct rows picked from the input (the encoder's gather).
    func index(_ c: Case, seed: UInt64) -> [Int32] {
        var rng = RNG(seed: seed)
        var out: [Int32] = []
        for _ in 0..<c.batch {
            if c.fill {
                var row = (0..<c.outTokens).map { $0 < c.inTokens ? Int32($0) : -1 }
                rng.shuffle(&row)
                out += row
            } else {
                precondition(c.outTokens <= c.inTokens, "a gather without fill picks distinct rows")
                var rows = (0..<c.inTokens).map(Int32.init)
                rng.shuffle(&rows)
                out += rows.prefix(c.outTokens)
            }
        }
        return out
    }

    func testForwardAndBackwardMatchReferenceAtOneAndTwoThreads() {
        for (n, c) in Self.cases.enumerated() {
            let (b, s, r, d) = (c.batch, c.inTokens, c.outTokens, c.dim)
            let inp = randomArray(b * s * d, seed: UInt64(n))
            let fill = c.fill ? randomArray(d, seed: 50 + UInt64(n)) : nil
            let add = c.add ? randomArray(r * d, seed: 60 + UInt64(n)) : nil
            let idx = index(c, seed: 70 + UInt64(n))
            var want = [Float](repeating: 0, count: b * r * d)
            TokenGather.forwardReference(
                out: &want, inp: inp, index: idx, fill: fill, add: add, batch: b, inTokens: s, outTokens: r, dim: d)
            let dout = randomArray(b * r * d, seed: 80 + UInt64(n))
            var wantDinp = randomArray(b * s * d, seed: 90 + UInt64(n))  // accumulates
            var wantDfill = [Float](repeating: 0.25, count: d), wantDadd = [Float](repeating: -0.5, count: r * d)
            let (dinp0, dfill0, dadd0) = (wantDinp, wantDfill, wantDadd)
            TokenGather.backwardReference(
                dinp: &wantDinp, dfill: &wantDfill, dadd: &wantDadd, dout: dout,
                index: idx, batch: b, inTokens: s, outTokens: r, dim: d)
            for threads in [1, 2] {
                withThreads(threads) { pool in
                    var out = [Float](repeating: .nan, count: b * r * d)
                    TokenGather.forward(
                        out: &out, inp: inp, index: idx, fill: fill, add: add, batch: b, inTokens: s, outTokens: r,
                        dim: d, pool: pool)
                    XCTAssertEqual(out.map(\.bitPattern), want.map(\.bitPattern), "\(c), \(threads) threads: forward")
                    var (dinp, dfill, dadd) = (dinp0, dfill0, dadd0)
                    TokenGather.backward(
                        dinp: &dinp, dfill: &dfill, dadd: &dadd, dout: dout, index: idx,
                        batch: b, inTokens: s, outTokens: r, dim: d, pool: pool)
                    assertClose(dinp, wantDinp, atol: 1e-6, rtol: 1e-6, "\(c), \(threads) threads: dinp")
                    assertClose(dfill, wantDfill, atol: 1e-5, rtol: 1e-5, "\(c), \(threads) threads: dfill")
                    assertClose(dadd, wantDadd, atol: 1e-5, rtol: 1e-5, "\(c), \(threads) threads: dadd")
                }
            }
        }
    }

    func testBackwardIsTheForwardsAdjoint() {
        for (n, c) in Self.cases.enumerated() where c.fill {
            let (b, s, r, d) = (c.batch, c.inTokens, c.outTokens, c.dim)
            let inp = randomArray(b * s * d, seed: 10 + UInt64(n)), fill = randomArray(d, seed: 11 + UInt64(n))
            let add = randomArray(r * d, seed: 12 + UInt64(n)), dout = randomArray(b * r * d, seed: 13 + UInt64(n))
            let idx = index(c, seed: 14 + UInt64(n))
            var out = [Float](repeating: 0, count: b * r * d)
            TokenGather.forward(
                out: &out, inp: inp, index: idx, fill: fill, add: add, batch: b, inTokens: s, outTokens: r, dim: d)
            var dinp = [Float](repeating: 0, count: b * s * d), dfill = [Float](repeating: 0, count: d)
            var dadd = [Float](repeating: 0, count: r * d)
            TokenGather.backward(
                dinp: &dinp, dfill: &dfill, dadd: &dadd, dout: dout, index: idx, batch: b, inTokens: s, outTokens: r,
                dim: d)
            func dot(_ x: [Float], _ y: [Float]) -> Double { zip(x, y).reduce(0) { $0 + Double($1.0) * Double($1.1) } }
            let lhs = dot(dout, out), rhs = dot(dinp, inp) + dot(dfill, fill) + dot(dadd, add)
            XCTAssertEqual(lhs, rhs, accuracy: 1e-4 * max(1, abs(lhs)), "\(c)")
        }
    }
}
