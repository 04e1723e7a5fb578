import Foundation
import XCTest
import ViTMergeCore
@testable import ViTMergeKernels

final class CrossEntropyTests: XCTestCase {
    func testMatchesReferenceAndFiniteDifferences() {
        for (rows, classes) in [(1, 1), (3, 10), (17, 7), (128, 76), (65, 1000)] {
            let x = randomArray(rows * classes, seed: UInt64(rows), lo: -30, hi: 30)
            let labels = (0..<rows).map { Int32(($0 * 7) % classes) }
            var p = [Float](repeating: 0, count: rows * classes), l = [Float](repeating: 0, count: rows), pr = p, lr = l
            let mean = CrossEntropy.forward(
                probs: &p, losses: &l, logits: x, labels: labels, rows: rows, classes: classes)
            let meanRef = CrossEntropy.forwardReference(
                probs: &pr, losses: &lr, logits: x, labels: labels, rows: rows, classes: classes)
            XCTAssertEqual(mean, meanRef, accuracy: 1e-5 * max(1, abs(meanRef)))
            assertClose(p, pr, atol: 1e-7, rtol: 1e-5, "probs [\(rows), \(classes)]")
            assertClose(l, lr, atol: 1e-5, rtol: 1e-5, "losses [\(rows), \(classes)]")
        }
        let (rows, classes) = (4, 5)
        let x = randomArray(rows * classes, seed: 11, lo: -3, hi: 3).map(Double.init)
        let labels: [Int32] = [0, 4, 2, 2]
        func loss(_ x: [Double]) -> Double {
            (0..<rows).reduce(0.0) { s, r in
                let row = x[(r * classes)..<((r + 1) * classes)], m = row.max()!
                return s + log(row.reduce(0) { $0 + exp($1 - m) }) + m - x[r * classes + Int(labels[r])]
            } / Double(rows)
        }
        var p = [Float](repeating: 0, count: rows * classes), l = [Float](repeating: 0, count: rows), d = p
        _ = CrossEntropy.forward(
            probs: &p, losses: &l, logits: x.map(Float.init), labels: labels, rows: rows, classes: classes)
        CrossEntropy.backward(
            dlogits: &d, probs: p, labels: labels, rows: rows, classes: classes, scale: 1 / Float(rows))
        for i in 0..<x.count {
            XCTAssertEqual(Double(d[i]), finiteDifference(x, i, loss), accuracy: 1e-5, "dlogits[\(i)]")
        }
    }

    func testOneAndTwoThreadsAreBitIdentical() {
        let (rows, classes) = (4000, 37)
        let x = randomArray(rows * classes, seed: 3, lo: -8, hi: 8)
        let labels = (0..<rows).map { Int32(($0 * 5) % classes) }
        func run(_ pool: ThreadPool) -> [Float] {
            var p = [Float](repeating: 0, count: x.count), l = [Float](repeating: 0, count: rows), d = p
            let mean = CrossEntropy.forward(
                probs: &p, losses: &l, logits: x, labels: labels, rows: rows, classes: classes, pool: pool)
            CrossEntropy.backward(
                dlogits: &d, probs: p, labels: labels, rows: rows, classes: classes, scale: 0.25, pool: pool)
            return p + l + d + [mean]
        }
        let one = withThreads(1, run), two = withThreads(2, run)
        XCTAssertEqual(one.map(\.bitPattern), two.map(\.bitPattern))
    }
}
