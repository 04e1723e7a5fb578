import XCTest
import ViTMergeReport

/// The scheme comparison's claims, decided on hand-made rows and differences.
final class SchemeComparisonTests: XCTestCase {
    func row(_ scheme: String, aligned: Double, full: Double, xi: Double, curve: [CurvePoint] = []) -> SchemeRow {
        var addition = PerMode<SchemeAddition>()
        addition.aligned = SchemeAddition(
            lambda: 0.05, testNormalized: Estimate(aligned, low: aligned - 0.01, high: aligned + 0.01), curve: curve)
        addition.full = SchemeAddition(
            lambda: 0.1, testNormalized: Estimate(full, low: full - 0.01, high: full + 0.01), curve: [])
        var meanXi = PerMode<Double>()
        meanXi.aligned = xi
        return SchemeRow(
            scheme: scheme, pretrainSeconds: 1, pretrainLoss: 0.5, probe: Estimate(0.7, low: 0.69, high: 0.71),
            fineTuned: PerMode(), addition: addition, taskCount: PerMode(), meanXi: meanXi)
    }

    /// Differences a − b for every ordered pair, with an interval of ± `width` around the point value.
    func comparison(_ rows: [SchemeRow], width: Double) -> SchemeComparison {
        var d: [String: Estimate] = [:]
        for a in rows {
            for b in rows where a.scheme != b.scheme {
                let v = a.addition.aligned!.testNormalized.value - b.addition.aligned!.testNormalized.value
                d[SchemeComparison.additionKey(.aligned, a.scheme, b.scheme)] = Estimate(
                    v, low: v - width, high: v + width)
            }
            let v = a.addition.aligned!.testNormalized.value - a.addition.full!.testNormalized.value
            d[SchemeComparison.alignedVsFullKey(a.scheme)] = Estimate(v, low: v - width, high: v + width)
        }
        return SchemeComparison(
            tasks: ["a", "b"], seed: 0, pretrainSteps: 10, pretrainBatch: 64, schemes: rows, differences: d,
            environment: Environment(cpu: "", threads: 1, isa: "", seconds: 0))
    }

    func verdicts(_ c: SchemeComparison) -> [String: Verdict] {
        Dictionary(uniqueKeysWithValues: c.decideFindings().map { ($0.claim, $0.verdict) })
    }

    func testThePapersOrderingHoldsWhenTheIntervalsSeparate() throws {
        let dinoCurve = [CurvePoint(0, 0.9), CurvePoint(0.05, 0.85), CurvePoint(0.1, 0.8)]
        let rows = [
            row("supervised", aligned: 0.89, full: 0.5, xi: 0.3), row("mae", aligned: 0.73, full: 0.4, xi: 0.6),
            row("dino", aligned: 0.8, full: 0.45, xi: 0.5, curve: dinoCurve),
            row("clip", aligned: 0.95, full: 0.6, xi: 0.1), row("mim", aligned: 0.75, full: 0.41, xi: 0.55),
        ]
        let v = verdicts(comparison(rows, width: 0.01))
        XCTAssertEqual(v.count, 6, "\(v)")
        XCTAssertTrue(v.values.allSatisfy { $0 == .holds }, "\(v)")
        // Wide intervals: the orderings become inconclusive; the λ curve and ξ claims do not use intervals.
        let wide = verdicts(comparison(rows, width: 0.5))
        XCTAssertEqual(wide.filter { $0.value == .inconclusive }.count, 4, "\(wide)")
    }

    func testReversedOrderDoesNotHold() throws {
        let rows = [
            row("supervised", aligned: 0.7, full: 0.8, xi: 0.1), row("mae", aligned: 0.9, full: 0.5, xi: 0.2),
            row("clip", aligned: 0.6, full: 0.5, xi: 0.3),
            row("dino", aligned: 0.8, full: 0.5, xi: 0.4, curve: [CurvePoint(0, 0.5), CurvePoint(0.05, 0.6)]),
        ]
        let findings = comparison(rows, width: 0.01).decideFindings()
        XCTAssertEqual(findings.count, 6)
        for f in findings { XCTAssertEqual(f.verdict, .doesNotHold, f.claim + " " + f.numbers) }
    }

    func testClaimsAboutSchemesNotRunAreLeftOut() {
        let rows = [row("supervised", aligned: 0.9, full: 0.5, xi: 0.2), row("mim", aligned: 0.8, full: 0.4, xi: 0.3)]
        let claims = comparison(rows, width: 0.01).decideFindings().map(\.claim)
        XCTAssertEqual(claims, ["Aligned fine-tuning adds better than full fine-tuning after every scheme."])
    }

    func testSpearman() {
        XCTAssertEqual(spearman([1, 2, 3, 4], [10, 20, 30, 40]), 1, accuracy: 1e-12)
        XCTAssertEqual(spearman([1, 2, 3, 4], [4, 3, 2, 1]), -1, accuracy: 1e-12)
        // Ties share their mean rank: ranks (1.5, 1.5, 3) against (1, 2, 3).
        XCTAssertEqual(spearman([5, 5, 7], [1, 2, 3]), 0.8660254037844386, accuracy: 1e-12)
        XCTAssertEqual(spearman([1, 1, 1], [1, 2, 3]), 0)
        XCTAssertEqual(spearmanCritical(5), 0.9)
    }
}
