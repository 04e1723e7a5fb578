import XCTest
import ViTMergeReport
@testable import ViTMergeExperiment

final class BootstrapTests: XCTestCase {
    /// Outcomes of one model on one task: the first `hits` of `n` images correct.
    func outcomes(_ models: [String: [Bool]]) -> Outcomes {
        var o = Outcomes()
        for (name, c) in models {
            o.record(name, task: 0, predictions: c.map { $0 ? 1 : 0 }, labels: [Int32](repeating: 1, count: c.count))
        }
        return o
    }

    func correct(_ n: Int, hits: Int) -> [Bool] { (0..<n).map { $0 < hits } }

    func testPercentilesInterpolateLikeNumpy() {
        let b = Bootstrap(sizes: [1], replicates: 1, level: 0.9, seed: 0)
        let (lo, hi) = b.interval((0...100).map(Double.init).shuffled())
        XCTAssertEqual(lo, 5, accuracy: 1e-12)
        XCTAssertEqual(hi, 95, accuracy: 1e-12)
        let (lo2, hi2) = b.interval([0, 1])  // 5th and 95th percentile of two values: 0.05 and 0.95
        XCTAssertEqual(lo2, 0.05, accuracy: 1e-12)
        XCTAssertEqual(hi2, 0.95, accuracy: 1e-12)
    }

    /// 320 of 400 correct: the binomial standard error is 0.02, so the 95% interval is about 0.8 ± 0.039.
    func testAccuracyIntervalMatchesTheBinomialStandardError() throws {
        let b = Bootstrap(sizes: [400], replicates: 2000, seed: 3)
        let e = try XCTUnwrap(b.estimate(outcomes(["m": correct(400, hits: 320)])) { acc in acc("m", 0) })
        XCTAssertEqual(e.value, 0.8)
        XCTAssertEqual(e.low, 0.8 - 1.96 * 0.02, accuracy: 0.006)
        XCTAssertEqual(e.high, 0.8 + 1.96 * 0.02, accuracy: 0.006)
        let perfect = try XCTUnwrap(b.estimate(outcomes(["m": correct(400, hits: 400)])) { acc in acc("m", 0) })
        XCTAssertEqual([perfect.value, perfect.low, perfect.high], [1, 1, 1])
    }

    /// Two models that agree except on 10 of 400 images: the paired difference's interval is about ±0.016 around
    /// 0.025 (sd √(p(1−p)/n) with p = 10/400), far narrower than the ±0.06 two independent resamples would give.
    func testDifferencesArePaired() throws {
        let b = Bootstrap(sizes: [400], replicates: 2000, seed: 1)
        let a = correct(400, hits: 300), c = (0..<400).map { $0 < 290 }
        let o = outcomes(["a": a, "c": c, "same": a])
        let d = try XCTUnwrap(b.estimate(o) { acc in acc("a", 0) - acc("c", 0) })
        XCTAssertEqual(d.value, 0.025, accuracy: 1e-12)
        XCTAssertEqual(d.low, 0.025 - 1.96 * 0.0078, accuracy: 0.006)
        XCTAssertEqual(d.high, 0.025 + 1.96 * 0.0078, accuracy: 0.006)
        let zero = try XCTUnwrap(b.estimate(o) { acc in acc("a", 0) - acc("same", 0) })
        XCTAssertEqual([zero.value, zero.low, zero.high], [0, 0, 0])
    }

    func testSeededAndMissingOutcomesGiveNil() {
        let o = outcomes(["m": (0..<50).map { $0 % 3 == 0 }])
        let e1 = Bootstrap(sizes: [50], replicates: 200, seed: 9).estimate(o) { acc in acc("m", 0) }
        let e2 = Bootstrap(sizes: [50], replicates: 200, seed: 9).estimate(o) { acc in acc("m", 0) }
        let e3 = Bootstrap(sizes: [50], replicates: 200, seed: 10).estimate(o) { acc in acc("m", 0) }
        XCTAssertEqual(e1, e2)
        XCTAssertNotEqual(e1, e3)
        XCTAssertNil(Bootstrap(sizes: [50], replicates: 10, seed: 0).estimate(o) { acc in acc("other", 0) })
    }

    func testVerdicts() {
        XCTAssertEqual(Estimate(0.03, low: 0.012, high: 0.05).verdict(atLeast: 0.01), .holds)
        XCTAssertEqual(Estimate(0.01, low: -0.01, high: 0.03).verdict(atLeast: 0.01), .inconclusive)
        XCTAssertEqual(Estimate(-0.02, low: -0.04, high: 0.005).verdict(atLeast: 0.01), .doesNotHold)
        XCTAssertEqual(Estimate(0.01, low: 0, high: 0.02).verdict(greaterThan: 0), .inconclusive)
        XCTAssertEqual(Estimate(0.01, low: -0.02, high: 0).verdict(greaterThan: 0), .doesNotHold)
        XCTAssertEqual(Estimate(0.01, low: -0.02, high: 0.02).verdict(atMost: 0.03), .holds)
        XCTAssertEqual(Verdict.all([.holds, .inconclusive]), .inconclusive)
        XCTAssertEqual(Verdict.all([.holds, .inconclusive, .doesNotHold]), .doesNotHold)
        XCTAssertEqual(Verdict.all([.holds, .holds]), .holds)
    }
}
