import XCTest
import ViTMergeCore

/// Seeded uniform values in [lo, hi).
func randomArray(_ count: Int, seed: UInt64, lo: Float = -1, hi: Float = 1) -> [Float] {
    var rng = RNG(seed: seed)
    return (0..<count).map { _ in lo + (hi - lo) * rng.uniformFloat() }
}

/// Asserts |a − b| ≤ atol + rtol·|b| elementwise; on failure reports max abs, max rel and the worst index.
func assertClose(
    _ a: [Float], _ b: [Float], atol: Float, rtol: Float, _ what: String,
    file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertEqual(a.count, b.count, "\(what): count \(a.count) vs \(b.count)", file: file, line: line)
    var maxAbs: Float = 0, maxRel: Float = 0, worst = -1, worstExcess: Float = 0
    for i in 0..<min(a.count, b.count) {
        let d = abs(a[i] - b[i])
        if !(d <= atol + rtol * abs(b[i])) && (worst < 0 || d - rtol * abs(b[i]) > worstExcess || d.isNaN) {
            worst = i; worstExcess = d - rtol * abs(b[i])
        }
        maxAbs = max(maxAbs, d)
        if b[i] != 0 { maxRel = max(maxRel, d / abs(b[i])) }
    }
    if worst >= 0 {
        XCTFail(
            "\(what): max abs \(maxAbs), max rel \(maxRel), worst index \(worst): \(a[worst]) vs \(b[worst])"
                + " (atol \(atol), rtol \(rtol))",
            file: file, line: line)
    }
}

/// Central finite difference d f / d x[i] in Double, for gradient checks.
func finiteDifference(_ x: [Double], _ i: Int, h: Double = 1e-5, _ f: ([Double]) -> Double) -> Double {
    var xp = x, xm = x
    xp[i] += h; xm[i] -= h
    return (f(xp) - f(xm)) / (2 * h)
}

/// Explicit pools for "1 vs 2 threads" tests: the shared pool is clamped to the machine's cores
/// (or VITMERGE_THREADS), but a 2-thread pool runs 2 threads even on one core.
let testPools = [ThreadPool(threads: 1), ThreadPool(threads: 2)]

/// Runs `body` with a pool of exactly `threads` (1 or 2) threads, asserting that it has them.
func withThreads<T>(
    _ threads: Int, file: StaticString = #filePath, line: UInt = #line, _ body: (ThreadPool) throws -> T
) rethrows -> T {
    precondition(threads == 1 || threads == 2, "withThreads: 1 or 2 threads, got \(threads)")
    let pool = testPools[threads - 1]
    XCTAssertEqual(pool.threads, threads, "the test pool must really have \(threads) threads", file: file, line: line)
    return try body(pool)
}

/// Sizes that exercise edge tiles and vector tails.
let oddSizes = [1, 3, 17, 63, 65, 127, 193]

/// (f(x + h·t) − f(x − h·t)) / 2h for a float kernel f: a directional finite difference.
func directional(_ x: [Float], _ t: [Float], h: Float = 1e-3, _ f: ([Float]) -> [Float]) -> [Float] {
    let up = f(zip(x, t).map { $0 + h * $1 }), down = f(zip(x, t).map { $0 - h * $1 })
    return zip(up, down).map { ($0 - $1) / (2 * h) }
}
