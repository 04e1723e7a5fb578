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
}
