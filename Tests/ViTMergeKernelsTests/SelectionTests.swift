import ViTMergeCore
import XCTest

@testable import ViTMergeKernels

/// `Selection.kthLargest` against its reference twin, a full descending sort.
final class SelectionTests: XCTestCase {
    func check(_ values: [Float], rounds: Int? = nil, file: StaticString = #filePath, line: UInt = #line) {
        let sorted = values.sorted(by: >)
        for k in Set([1, 2, values.count / 3 + 1, values.count / 2 + 1, values.count - 1, values.count])
        where k >= 1 && k <= values.count {
            var v = values
            let got = v.withUnsafeMutableBufferPointer { Selection.kthLargest($0, k, rounds: rounds) }
            XCTAssertEqual(
                got.bitPattern, sorted[k - 1].bitPattern, "k = \(k) of \(values.count)", file: file, line: line)
            XCTAssertEqual(v.sorted(by: >), sorted, "the values are only reordered", file: file, line: line)
        }
    }

    func testMatchesASortOnOddSizesDuplicatesAndRuns() {
        var rng = RNG(seed: 9)
        for n in [1, 2, 3, 7, 31, 100, 1001, 4097] {
            check((0..<n).map { _ in Float(rng.normal()) })
            check((0..<n).map { _ in Float(rng.int(below: 5)) })  // many equal values
            check((0..<n).map { _ in abs(Float(rng.normal())) * (rng.int(below: 3) == 0 ? 0 : 1) })  // zeros
        }
        check((0..<2000).map(Float.init))  // ascending
        check((0..<2000).reversed().map(Float.init))  // descending
        check([Float](repeating: 0.5, count: 999))
        // An organ-pipe input, a classic bad case for median-of-three: still exact.
        check((0..<3000).map { Float($0 < 1500 ? $0 : 3000 - $0) })
        // The sort that ends a long selection, from its first round and after a few.
        for r in [0, 1, 3] { check((0..<777).map { _ in Float(rng.normal()) }, rounds: r) }
    }
}
