import Foundation
import XCTest
import ViTMergeCore
import ViTMergeModel
import ViTMergeIO
@testable import ViTMergeMerging

final class MergeTests: XCTestCase {
    func testLambdaSelectionPrefersHigherScoreThenSmallerLambda() {
        XCTAssertEqual(selectLambda([(0, 0.5), (0.05, 0.9), (0.1, 0.9), (0.15, 0.7)]).lambda, 0.05)
        XCTAssertEqual(selectLambda([(0.1, 0.8), (0.05, 0.8)]).lambda, 0.05)  // order of the grid does not matter
        XCTAssertEqual(selectLambda([(0, 0.2), (0.5, 0.3)]).lambda, 0.5)
        XCTAssertEqual(lambdaGrid.count, 21)
        XCTAssertEqual(lambdaGrid[1], 0.05, accuracy: 1e-12)
        XCTAssertEqual(lambdaGrid.last!, 1, accuracy: 1e-12)
    }

    func testTiesOnAHandComputedCase() {
        // keep the 2 largest |values| of 4 in each vector
        let t1: [Float] = [3, -1, -4, 0.5], t2: [Float] = [1, -5, 0.5, -2], t3: [Float] = [-2, 0.1, -3, 6]
        XCTAssertEqual(Merges.trim(t1, keep: 0.5), [3, 0, -4, 0])
        XCTAssertEqual(Merges.trim(t2, keep: 0.5), [0, -5, 0, -2])
        XCTAssertEqual(Merges.trim(t3, keep: 0.5), [0, 0, -3, 6])
        // sums: [3, -5, -7, 4] → signs + − − +; disjoint means: [3, -5, (-4-3)/2, 6]
        XCTAssertEqual(Merges.ties([t1, t2, t3], keep: 0.5), [3, -5, -3.5, 6])
    }

    func testDareDropsAndRescalesDeterministically() {
        let tau = [Float](repeating: 2, count: 10_000)
        let d = Merges.dare(tau, drop: 0.75, seed: 1)
        XCTAssertEqual(d, Merges.dare(tau, drop: 0.75, seed: 1))
        XCTAssertTrue(d.allSatisfy { $0 == 0 || $0 == 8 })
        let kept = Double(d.filter { $0 != 0 }.count) / 10_000
        XCTAssertEqual(kept, 0.25, accuracy: 0.02)
        XCTAssertEqual(Merges.dare(tau, drop: 0, seed: 1), tau)
        XCTAssertEqual(Merges.average([[1, 2], [3, 6]]), [2, 4])
    }

    /// Random vectors over the fixture's encoder (with exact zeros and shared magnitudes, so TIES
    /// meets ties at its threshold and zero sums).
    func randomVectors(_ k: Int, seed: UInt64) -> [EncoderVector] {
        let table = MergeFixture.pretrained().table
        var rng = RNG(seed: seed)
        return (0..<k).map { _ in
            let v = EncoderVector(table: table)
            for i in 0..<v.count {
                let u = rng.int(below: 10)
                v.base[i] = u == 0 ? 0 : u == 1 ? (rng.int(below: 2) == 0 ? 0.5 : -0.5) : Float(rng.normal())
            }
            return v
        }
    }

    func bits(_ xs: some Sequence<Float>) -> [UInt32] { xs.map(\.bitPattern) }

    /// The arena forms of every merge give the bits of the array forms, which keep the loops of
    /// the array-only implementation (written out here as the reference).
    func testArenaFormsMatchTheArrayForms() {
        let taus = randomVectors(3, seed: 9), arrays = taus.map { Array($0) }
        let n = taus[0].count
        XCTAssertEqual(bits(Merges.average(taus)), bits(Merges.average(arrays)))
        for keep in [0.1, 0.5, 1] {
            XCTAssertEqual(bits(Merges.ties(taus, keep: keep)), bits(Merges.ties(arrays, keep: keep)), "keep \(keep)")
            // TIES from its definition: trim each τ, elect signs, disjoint mean.
            let trimmed = arrays.map { Merges.trim($0, keep: keep) }
            let reference: [Float] = (0..<n).map { i in
                var sum: Float = 0
                for t in trimmed { sum += t[i] }
                guard sum != 0 else { return 0 }
                var acc: Float = 0, count = 0
                for t in trimmed where t[i] != 0 && (t[i] > 0) == (sum > 0) { acc += t[i]; count += 1 }
                return count > 0 ? acc / Float(count) : 0
            }
            XCTAssertEqual(bits(Merges.ties(arrays, keep: keep)), bits(reference), "keep \(keep)")
        }
        XCTAssertEqual(bits(Merges.dare(taus[1], drop: 0.6, seed: 4)), bits(Merges.dare(arrays[1], drop: 0.6, seed: 4)))
        // Σ DARE(τ_i, p, seed + i) accumulated from 0, one add per vector.
        var dareSum = [Float](repeating: 0, count: n)
        for i in arrays.indices {
            let d = Merges.dare(arrays[i], drop: 0.6, seed: 4 &+ UInt64(i))
            for j in 0..<n { dareSum[j] += d[j] }
        }
        XCTAssertEqual(bits(Merges.dareSum(taus, drop: 0.6, seed: 4)), bits(dareSum))
        let sum = (0..<n).map { arrays[0][$0] + arrays[1][$0] + arrays[2][$0] }
        XCTAssertEqual(bits(Merges.sum(taus)), bits(sum))
        // The inputs are untouched and the results keep their layout.
        XCTAssertEqual(bits(taus[0]), bits(arrays[0]))
        XCTAssertTrue(Merges.ties(taus, keep: 0.5).hasLayout(of: taus[0]))
    }

    func testMagMaxAndConsensusOnHandComputedCases() {
        let t1: [Float] = [3, -1, -4, 0.5], t2: [Float] = [1, -5, 4, -2], t3: [Float] = [-2, 0.1, -3, 6]
        // Largest |value| per entry; -4 and 4 tie: the first (t1) wins.
        XCTAssertEqual(Merges.magMax([t1, t2, t3]), [3, -5, -4, 6])
        // Σ = [2, -5.9, -3, 4.5]. Entry 0, scale 1: |3| ≥ |2-3| = 1 yes, |1| ≥ |2-1| = 1 yes,
        // |-2| ≥ |2+2| no → 2 votes.
        // Entry 1: |-1| ≥ 4.9 no, |-5| ≥ 0.9 yes, |0.1| ≥ 6 no → 1 vote. Entry 2: |-4| ≥ 1 yes, |4| ≥ 7 no,
        // |-3| ≥ 0 yes → 2. Entry 3: |0.5| ≥ 4 no, |-2| ≥ 6.5 no, |6| ≥ 1.5 yes → 1.
        XCTAssertEqual(Merges.consensus([t1, t2, t3], maskScale: 1), [2, 0, -3, 0])
        XCTAssertEqual(Merges.consensus([t1, t2, t3], maskScale: 1, agreement: 1), [2, -5.9, -3, 4.5])
        // Scale 0 keeps every entry in every mask: the consensus is the whole sum; agreement above T keeps none.
        XCTAssertEqual(Merges.consensus([t1, t2, t3], maskScale: 0), [2, -5.9, -3, 4.5])
        XCTAssertEqual(Merges.consensus([t1, t2, t3], maskScale: 0, agreement: 4), [0, 0, 0, 0])
    }

    /// MagMax and consensus: arena forms equal the array forms and a reference written from the definitions.
    func testMaskMergesMatchTheirDefinitions() {
        let taus = randomVectors(4, seed: 11), arrays = taus.map { Array($0) }
        let n = taus[0].count
        let magMax: [Float] = (0..<n).map { i in
            arrays.map { $0[i] }.reduce(arrays[0][i]) { abs($1) > abs($0) ? $1 : $0 }
        }
        XCTAssertEqual(bits(Merges.magMax(taus)), bits(magMax))
        XCTAssertEqual(bits(Merges.magMax(arrays)), bits(magMax))
        for scale in [0.2, 0.6, 1.5] {
            let sum: [Float] = (0..<n).map { i in arrays.reduce(Float(0)) { $0 + $1[i] } }
            let masks = arrays.map { t in (0..<n).map { abs(t[$0]) >= Float(scale) * abs(sum[$0] - t[$0]) } }
            let reference: [Float] = (0..<n).map { i in masks.filter { $0[i] }.count >= 2 ? sum[i] : 0 }
            XCTAssertEqual(bits(Merges.consensus(taus, maskScale: scale)), bits(reference), "scale \(scale)")
            XCTAssertEqual(bits(Merges.consensus(arrays, maskScale: scale)), bits(reference), "scale \(scale)")
        }
        XCTAssertTrue(Merges.magMax(taus).hasLayout(of: taus[0]))
    }
}
