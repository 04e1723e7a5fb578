import Foundation

/// Small, dependency-free SVG plots: line charts and heatmaps with axes, ticks and legends.
public enum SVG {
    public struct Series {
        public let name: String
        public let points: [(x: Double, y: Double)]
        /// Optional error bars: the interval [low, high] at each point (same order as `points`).
        public let errors: [(low: Double, high: Double)]?
        public init(name: String, points: [(x: Double, y: Double)], errors: [(low: Double, high: Double)]? = nil) {
            precondition(errors == nil || errors!.count == points.count, "one error bar per point")
            self.name = name
            self.points = points
            self.errors = errors
        }
    }

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]

    static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(
            of: ">", with: "&gt;")
    }

    static func fmt(_ v: Double) -> String {
        let r = (v * 100).rounded() / 100
        return r == r.rounded()
            ? String(Int(r))
            : String(format: "%.2f", r).replacingOccurrences(of: "0$", with: "", options: .regularExpression)
    }

    /// A line chart of `series` with y in [yMin, yMax].
    public static func lineChart(
        title: String, xLabel: String, yLabel: String, series: [Series],
        yMin: Double = 0, yMax: Double = 1, width: Int = 640, height: Int = 420
    ) -> String {
        let (l, r, t, b) = (70.0, 160.0, 40.0, 55.0)
        let pw = Double(width) - l - r, ph = Double(height) - t - b
        let xs = series.flatMap { $0.points.map(\.x) }
        let xMin = xs.min() ?? 0, xMax = max(xs.max() ?? 1, xMin + 1e-9)
        func px(_ x: Double) -> Double { l + (x - xMin) / (xMax - xMin) * pw }
        func py(_ y: Double) -> Double { t + (1 - (min(max(y, yMin), yMax) - yMin) / (yMax - yMin)) * ph }
        var s = header(width, height, title)
        s += "<rect x=\"\(l)\" y=\"\(t)\" width=\"\(pw)\" height=\"\(ph)\" fill=\"none\" stroke=\"#333\"/>\n"
        for i in 0...5 {
            let y = yMin + (yMax - yMin) * Double(i) / 5, yy = py(y)
            s += "<line x1=\"\(l - 5)\" y1=\"\(yy)\" x2=\"\(l + pw)\" y2=\"\(yy)\" stroke=\"#ddd\"/>"
            s += "<text x=\"\(l - 8)\" y=\"\(yy + 4)\" text-anchor=\"end\" font-size=\"12\">\(fmt(y))</text>\n"
        }
        let distinctX = Array(Set(xs)).sorted()
        let step = max(1, distinctX.count / 10)
        for (i, x) in distinctX.enumerated() where i % step == 0 {
            s += "<line x1=\"\(px(x))\" y1=\"\(t + ph)\" x2=\"\(px(x))\" y2=\"\(t + ph + 5)\" stroke=\"#333\"/>"
            s += "<text x=\"\(px(x))\" y=\"\(t + ph + 20)\" text-anchor=\"middle\" font-size=\"12\">\(fmt(x))</text>\n"
        }
        s +=
            "<text x=\"\(l + pw / 2)\" y=\"\(Double(height) - 12)\" text-anchor=\"middle\" "
            + "font-size=\"14\">\(esc(xLabel))</text>\n"
        s +=
            "<text transform=\"translate(18 \(t + ph / 2)) rotate(-90)\" text-anchor=\"middle\" "
            + "font-size=\"14\">\(esc(yLabel))</text>\n"
        for (i, se) in series.enumerated() {
            let c = palette[i % palette.count]
            let pts = se.points.map { "\(px($0.x)),\(py($0.y))" }.joined(separator: " ")
            s += "<polyline fill=\"none\" stroke=\"\(c)\" stroke-width=\"2\" points=\"\(pts)\"/>\n"
            for p in se.points { s += "<circle cx=\"\(px(p.x))\" cy=\"\(py(p.y))\" r=\"3\" fill=\"\(c)\"/>" }
            for (p, e) in zip(se.points, se.errors ?? []) {
                let x = px(p.x), lo = py(e.low), hi = py(e.high)
                s += "<line x1=\"\(x)\" y1=\"\(lo)\" x2=\"\(x)\" y2=\"\(hi)\" stroke=\"\(c)\"/>"
                s += "<line x1=\"\(x - 4)\" y1=\"\(lo)\" x2=\"\(x + 4)\" y2=\"\(lo)\" stroke=\"\(c)\"/>"
                s += "<line x1=\"\(x - 4)\" y1=\"\(hi)\" x2=\"\(x + 4)\" y2=\"\(hi)\" stroke=\"\(c)\"/>"
            }
            let ly = t + 10 + Double(i) * 20
            s +=
                "\n<line x1=\"\(l + pw + 12)\" y1=\"\(ly)\" x2=\"\(l + pw + 32)\" y2=\"\(ly)\" stroke=\"\(c)\" "
                + "stroke-width=\"3\"/>"
            s += "<text x=\"\(l + pw + 38)\" y=\"\(ly + 4)\" font-size=\"12\">\(esc(se.name))</text>\n"
        }
        return s + "</svg>\n"
    }

    /// A heatmap of values[row][col] (row = y from bottom, col = x) on a white→red scale over [0, vMax].
    public static func heatmap(
        title: String, xLabel: String, yLabel: String, xs: [Double], ys: [Double], values: [[Double]],
        vMax: Double, cell: Int = 32
    ) -> String {
        let (l, t, b, r) = (70.0, 40.0, 55.0, 90.0)
        let w = Double(xs.count * cell), h = Double(ys.count * cell)
        // Wide enough for the title (~8.5 px per character at 16 px).
        var s = header(Int(max(l + w + r, Double(title.count) * 8.5 + 40)), Int(t + h + b), title)
        func color(_ v: Double) -> String {
            let f = min(max(v / max(vMax, 1e-12), 0), 1)
            let g = Int((1 - f) * 255), bl = Int((1 - f) * 255)
            return String(format: "#ff%02x%02x", g, bl)
        }
        for (ri, row) in values.enumerated() {
            for (ci, v) in row.enumerated() {
                let x = l + Double(ci * cell), y = t + h - Double((ri + 1) * cell)
                s +=
                    "<rect x=\"\(x)\" y=\"\(y)\" width=\"\(cell)\" height=\"\(cell)\" "
                    + "fill=\"\(color(v))\"><title>\(fmt(ys[ri])), \(fmt(xs[ci])): "
                    + "\(String(format: "%.3f", v))</title></rect>"
            }
            s += "\n"
        }
        s += "<rect x=\"\(l)\" y=\"\(t)\" width=\"\(w)\" height=\"\(h)\" fill=\"none\" stroke=\"#333\"/>\n"
        for (i, x) in xs.enumerated() where i % 2 == 0 {
            s +=
                "<text x=\"\(l + Double(i * cell) + Double(cell) / 2)\" y=\"\(t + h + 18)\" text-anchor=\"middle\" "
                + "font-size=\"11\">\(fmt(x))</text>"
        }
        for (i, y) in ys.enumerated() where i % 2 == 0 {
            s +=
                "<text x=\"\(l - 6)\" y=\"\(t + h - Double(i * cell) - Double(cell) / 2 + 4)\" text-anchor=\"end\" "
                + "font-size=\"11\">\(fmt(y))</text>"
        }
        s +=
            "\n<text x=\"\(l + w / 2)\" y=\"\(t + h + 42)\" text-anchor=\"middle\" "
            + "font-size=\"14\">\(esc(xLabel))</text>\n"
        s +=
            "<text transform=\"translate(18 \(t + h / 2)) rotate(-90)\" text-anchor=\"middle\" "
            + "font-size=\"14\">\(esc(yLabel))</text>\n"
        // Colour bar: 16 bands from 0 (bottom) to vMax (top), labels at five levels.
        let bands = 16
        for i in 0..<bands {
            let y = t + h - Double(i + 1) * h / Double(bands)
            s +=
                "<rect x=\"\(l + w + 20)\" y=\"\(y)\" width=\"16\" height=\"\(h / Double(bands))\" "
                + "fill=\"\(color(vMax * (Double(i) + 0.5) / Double(bands)))\"/>"
        }
        s += "<rect x=\"\(l + w + 20)\" y=\"\(t)\" width=\"16\" height=\"\(h)\" fill=\"none\" stroke=\"#999\"/>\n"
        for i in 0...4 {
            let v = vMax * Double(i) / 4, y = t + h - Double(i) * h / 4
            s += "<text x=\"\(l + w + 42)\" y=\"\(y + 4)\" font-size=\"11\">\(String(format: "%.2f", v))</text>\n"
        }
        return s + "</svg>\n"
    }

    /// Horizontal grouped bars: one group per label, one bar per series (values in [0, vMax]; nil: no bar).
    public static func barChart(
        title: String, xLabel: String, labels: [String], series: [(name: String, values: [Double?])],
        vMax: Double = 1, width: Int = 640
    ) -> String {
        let (l, r, t, b) = (130.0, 130.0, 40.0, 50.0)
        let bar = 12.0, gap = 8.0, group = Double(max(series.count, 1)) * bar + gap
        let pw = Double(width) - l - r, ph = Double(labels.count) * group
        func px(_ v: Double) -> Double { l + min(max(v / max(vMax, 1e-12), 0), 1) * pw }
        var s = header(width, Int(t + ph + b), title)
        for i in 0...5 {
            let v = vMax * Double(i) / 5, x = px(v)
            s += "<line x1=\"\(x)\" y1=\"\(t)\" x2=\"\(x)\" y2=\"\(t + ph)\" stroke=\"#ddd\"/>"
            s += "<text x=\"\(x)\" y=\"\(t + ph + 18)\" text-anchor=\"middle\" font-size=\"12\">\(fmt(v))</text>\n"
        }
        for (gi, label) in labels.enumerated() {
            let y0 = t + Double(gi) * group
            s +=
                "<text x=\"\(l - 8)\" y=\"\(y0 + group / 2)\" text-anchor=\"end\" font-size=\"12\">"
                + "\(esc(label))</text>"
            for (si, se) in series.enumerated() {
                guard gi < se.values.count, let v = se.values[gi] else { continue }
                let y = y0 + Double(si) * bar
                s +=
                    "<rect x=\"\(l)\" y=\"\(y)\" width=\"\(px(v) - l)\" height=\"\(bar - 2)\" "
                    + "fill=\"\(palette[si % palette.count])\"><title>\(esc(se.name)) \(esc(label)): "
                    + "\(String(format: "%.3f", v))</title></rect>"
            }
            s += "\n"
        }
        s += "<rect x=\"\(l)\" y=\"\(t)\" width=\"\(pw)\" height=\"\(ph)\" fill=\"none\" stroke=\"#333\"/>\n"
        s +=
            "<text x=\"\(l + pw / 2)\" y=\"\(t + ph + 40)\" text-anchor=\"middle\" font-size=\"14\">"
            + "\(esc(xLabel))</text>\n"
        for (i, se) in series.enumerated() {
            let ly = t + 10 + Double(i) * 20
            s +=
                "<rect x=\"\(l + pw + 12)\" y=\"\(ly - 6)\" width=\"20\" height=\"10\" "
                + "fill=\"\(palette[i % palette.count])\"/>"
            s += "<text x=\"\(l + pw + 38)\" y=\"\(ly + 4)\" font-size=\"12\">\(esc(se.name))</text>\n"
        }
        return s + "</svg>\n"
    }

    static func header(_ w: Int, _ h: Int, _ title: String) -> String {
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(w)\" height=\"\(h)\" viewBox=\"0 0 \(w) \(h)\" "
            + "font-family=\"sans-serif\">\n"
            + "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
            + "<text x=\"\(w / 2)\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">\(esc(title))</text>\n"
    }
}
