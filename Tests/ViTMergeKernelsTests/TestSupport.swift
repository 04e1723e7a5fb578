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
            "\(what): max abs \(maxAbs), max rel \(maxRel), worst index \(worst): \(a[worst]) vs \(b[worst]) (atol \(atol), rtol \(rtol))",
            file: file, line: line)
    }
}

/// Central finite difference d f / d x[i] in Double, for gradient checks.
func finiteDifference(_ x: [Double], _ i: Int, h: Double = 1e-5, _ f: ([Double]) -> Double) -> Double {
    var xp = x, xm = x
    xp[i] += h; xm[i] -= h
    return (f(xp) - f(xm)) / (2 * h)
}

/// Runs `body` with the shared pool limited to `threads` threads.
func withThreads<T>(_ threads: Int, _ body: () throws -> T) rethrows -> T {
    let saved = ThreadPool.shared.threads
    ThreadPool.shared.threads = threads
    defer { ThreadPool.shared.threads = saved }
    return try body()
}

/// Sizes that exercise edge tiles and vector tails.
let oddSizes = [1, 3, 17, 63, 65, 127, 193]
