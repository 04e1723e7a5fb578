import Foundation
#if canImport(FoundationXML)
    import FoundationXML
#endif
import XCTest
@testable import ViTMergeReport

final class SVGTests: XCTestCase {
    func testPlotsAreWellFormedXML() throws {
        let chart = SVG.lineChart(
            title: "λ <curve> & more", xLabel: "λ", yLabel: "acc",
            series: [
                .init(name: "aligned", points: [(0, 0.5), (0.5, 0.9), (1, 0.7)]),
                .init(name: "full", points: [(0, 0.4), (1, 0.2)]),
            ])
        let heat = SVG.heatmap(
            title: "ξ", xLabel: "α1", yLabel: "α2", xs: [-1, 0, 1], ys: [-1, 0, 1],
            values: [[0, 1, 2], [0.5, 0, 0.5], [2, 1, 0]], vMax: 2)
        for svg in [chart, heat] {
            let doc = try XMLDocument(xmlString: svg)
            XCTAssertEqual(doc.rootElement()?.name, "svg")
        }
        XCTAssertTrue(chart.contains("&lt;curve&gt; &amp; more"))
        XCTAssertEqual(heat.components(separatedBy: "<title>").count - 1, 9)
    }

    /// Error bars: a vertical line and two caps per point, spanning the interval's y positions.
    func testErrorBarsSpanTheirIntervals() throws {
        let plain = SVG.lineChart(
            title: "t", xLabel: "k", yLabel: "acc", series: [.init(name: "a", points: [(2, 0.5), (3, 0.6)])])
        let bars = SVG.lineChart(
            title: "t", xLabel: "k", yLabel: "acc",
            series: [.init(name: "a", points: [(2, 0.5), (3, 0.6)], errors: [(0.4, 0.6), (0.5, 0.7)])])
        XCTAssertEqual(
            bars.components(separatedBy: "<line").count - plain.components(separatedBy: "<line").count, 2 * 3)
        _ = try XMLDocument(xmlString: bars)
        // yMin 0, yMax 1, plot from y = 40 to 365: 0.4 → 235, 0.6 → 170.
        XCTAssertTrue(bars.contains("y1=\"235.0\" x2=\"70.0\" y2=\"170.0\""), bars)
    }
}
