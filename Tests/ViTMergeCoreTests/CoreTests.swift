import Foundation
import XCTest
@testable import ViTMergeCore

final class RNGTests: XCTestCase {
    /// The first outputs for seed 0 are fixed forever: a change here changes every seeded model.
    func testSeedIsStableAcrossMachines() {
        var r = RNG(seed: 0)
        let first = (0..<3).map { _ in r.next() }
        var again = RNG(seed: 0)
        XCTAssertEqual(first, (0..<3).map { _ in again.next() })
        var f = RNG(seed: 42)
        let u = f.uniformFloat()
        XCTAssertTrue(u >= 0 && u < 1)
        XCTAssertNotEqual(RNG(seed: 1, stream: 0).uniformFloatCopy(), RNG(seed: 1, stream: 1).uniformFloatCopy())
    }

    func testLogMatchesLibm() {
        var r = RNG(seed: 3)
        for _ in 0..<10_000 {
            let x = r.uniformDouble() + 1e-300
            XCTAssertEqual(RNG.log(x), Foundation.log(x), accuracy: 1e-15 * max(1, abs(Foundation.log(x))))
        }
        XCTAssertEqual(RNG.log(1), 0)
        XCTAssertEqual(RNG.log(2), 0.6931471805599453, accuracy: 1e-16)
    }

    func testNormalMoments() {
        var r = RNG(seed: 5)
        let n = 200_000
        var s = 0.0, s2 = 0.0
        for _ in 0..<n { let x = r.normal(); s += x; s2 += x * x }
        XCTAssertEqual(s / Double(n), 0, accuracy: 0.01)
        XCTAssertEqual(s2 / Double(n), 1, accuracy: 0.01)
    }

    func testIntBelowIsInRangeAndCoversAll() {
        var r = RNG(seed: 9)
        var seen = Set<Int>()
        for _ in 0..<1000 { let v = r.int(below: 7); XCTAssertTrue((0..<7).contains(v)); seen.insert(v) }
        XCTAssertEqual(seen.count, 7)
    }
}

private extension RNG {
    func uniformFloatCopy() -> Float { var c = self; return c.uniformFloat() }
}

final class ThreadPoolTests: XCTestCase {
    func testRunCoversEveryIndexOnce() {
        let pool = ThreadPool(threads: 2)
        for nth in 1...2 {
            var hits = [Int](repeating: 0, count: nth)
            hits.withUnsafeMutableBufferPointer { h in
                let p = h.baseAddress!
                for _ in 0..<1000 {
                    pool.run(threads: nth) { ith, n in
                        XCTAssertEqual(n, nth); p[ith] += 1
                    }
                }
            }
            XCTAssertEqual(hits, [Int](repeating: 1000, count: nth))
        }
    }

    func testParallelPartitionsExactlyOnAlignedBounds() {
        let pool = ThreadPool(threads: 2)
        XCTAssertEqual(pool.threads, 2)
        for count in [0, 1, 2, 3, 17, 1000, 100_003] {
            for align in [1, 16] {
                for cost in [0, 1, ThreadPool.minWorkPerThread] {
                    var marks = [Int](repeating: 0, count: count)
                    var regions = [Int](repeating: 0, count: 2)
                    marks.withUnsafeMutableBufferPointer { m in
                        regions.withUnsafeMutableBufferPointer { rg in
                            let p = m.baseAddress, seen = rg.baseAddress!
                            pool.parallel(count, cost: cost, align: align) { ith, nth, r in
                                XCTAssertFalse(r.isEmpty)
                                XCTAssertEqual(r.lowerBound % align, 0)
                                seen[ith] = nth
                                for i in r { p![i] += 1 }
                            }
                        }
                    }
                    XCTAssertEqual(marks, [Int](repeating: 1, count: count), "count \(count) align \(align)")
                    // The cost model: split only when each thread gets minWorkPerThread units.
                    let blocks = (count + align - 1) / align
                    let expected =
                        count == 0 ? 0 : min(blocks, max(1, min(2, count * cost / ThreadPool.minWorkPerThread)))
                    XCTAssertEqual(regions[0], expected, "count \(count) align \(align) cost \(cost)")
                }
            }
        }
    }

    func testNestedRunIsSerialAndComplete() {
        let pool = ThreadPool(threads: 2)
        var hits = [Int](repeating: 0, count: 4)
        hits.withUnsafeMutableBufferPointer { h in
            let p = h.baseAddress!
            pool.run(threads: 2) { i, _ in pool.run(threads: 2) { j, _ in p[i * 2 + j] += 1 } }
        }
        XCTAssertEqual(hits, [1, 1, 1, 1])
    }

    /// Threads of this process, from /proc/self/task (Linux).
    private func threadCount() throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count
    }

    /// Polls `condition` every millisecond for up to `seconds`; true as soon as it holds.
    private func eventually(within seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        repeat {
            if try condition() { return true }
            usleep(1000)
        } while Date() < deadline
        return try condition()
    }

    func testPoolShutsDown() throws {
        guard FileManager.default.fileExists(atPath: "/proc/self/task") else {
            throw XCTSkip("needs /proc/self/task (Linux)")
        }
        let before = try threadCount()
        do {
            let pools = (0..<4).map { _ in ThreadPool(threads: 3) }
            for p in pools { p.run { _, _ in } }
            // Each pool started 2 workers (the caller is the third thread).
            XCTAssertTrue(try eventually(within: 5) { try threadCount() >= before + 8 }, "workers did not start")
        }
        // deinit waits until the workers leave their loops; the threads then exit shortly after.
        var after = 0
        XCTAssertTrue(
            try eventually(within: 5) {
                after = try threadCount()
                return after <= before
            }, "worker threads still running after their pools were released: \(after) vs \(before)")
    }
}

final class ArenaTests: XCTestCase {
    func testLayoutAlignsRegionsAndViewsShareMemory() {
        var layout = Arena.Layout()
        layout.add("a", [3, 5])
        layout.add("b", [7])
        let arena = Arena(layout: layout)
        XCTAssertEqual(layout.regions[1].offset, 16)
        XCTAssertEqual(arena.count, 32)
        let b = arena.tensor("b")!
        b.fill(2)
        XCTAssertEqual(arena.base[16], 2)
        XCTAssertEqual(Int(bitPattern: arena.pointer("b")) % Memory.alignment, 0)
        XCTAssertNil(arena.tensor("c"))
        XCTAssertEqual(Shape.checkedCount([Int.max, 2]), nil)
        XCTAssertEqual(Shape.checkedCount([3, 4]), 12)
    }
}
