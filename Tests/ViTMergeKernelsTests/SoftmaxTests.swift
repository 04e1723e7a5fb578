import Foundation
import XCTest
import CSleef
import ViTMergeCore
@testable import ViTMergeKernels

final class SoftmaxTests: XCTestCase {
    let shapes = [(1, 1), (3, 17), (17, 63), (65, 127), (127, 193), (300, 65), (1000, 193)]

    func testMatchesReferenceAndBackwardMatchesFiniteDifferences() {
        for (rows, cols) in shapes {
            let x = randomArray(rows * cols, seed: UInt64(cols), lo: -20, hi: 20)
            var a = [Float](repeating: 0, count: rows * cols), b = a
            Softmax.forward(out: &a, inp: x, rows: rows, cols: cols)
            Softmax.forwardReference(out: &b, inp: x, rows: rows, cols: cols)
            assertClose(a, b, atol: 1e-7, rtol: 1e-5, "softmax [\(rows), \(cols)]")
        }
        let (rows, cols) = (2, 19)
        let x = randomArray(rows * cols, seed: 5, lo: -3, hi: 3).map(Double.init),
            g = randomArray(rows * cols, seed: 6).map(Double.init)
        func loss(_ x: [Double]) -> Double {
            var s = 0.0
            for r in 0..<rows {
                let row = x[(r * cols)..<((r + 1) * cols)], m = row.max()!, z = row.reduce(0) { $0 + exp($1 - m) }
                for (i, v) in row.enumerated() { s += exp(v - m) / z * g[r * cols + i] }
            }
            return s
        }
        var p = [Float](repeating: 0, count: rows * cols), d = p
        Softmax.forward(out: &p, inp: x.map(Float.init), rows: rows, cols: cols)
        Softmax.backward(dinp: &d, out: p, dout: g.map(Float.init), rows: rows, cols: cols)
        for i in 0..<x.count {
            XCTAssertEqual(Double(d[i]), finiteDifference(x, i, loss), accuracy: 1e-5, "dsoftmax[\(i)]")
        }
    }

    func testBackwardMatchesReferenceOnOddSizes() {
        for n in oddSizes {
            let rows = 3, x = randomArray(rows * n, seed: UInt64(n), lo: -5, hi: 5)
            let g = randomArray(rows * n, seed: UInt64(n) + 1)
            var p = [Float](repeating: 0, count: rows * n)
            Softmax.forward(out: &p, inp: x, rows: rows, cols: n)
            var d = randomArray(rows * n, seed: 7), dr = d
            Softmax.backward(dinp: &d, out: p, dout: g, rows: rows, cols: n)
            Softmax.backwardReference(dinp: &dr, out: p, dout: g, rows: rows, cols: n)
            assertClose(d, dr, atol: 1e-6, rtol: 1e-5, "softmax backward n=\(n)")
            // The in-place SIMD row kernel: p ⊙ (g − Σ g ⊙ p), overwriting g.
            var inPlace = g, zero = [Float](repeating: 0, count: rows * n)
            Softmax.backwardInPlace(&inPlace, probs: p, rows: rows, cols: n, pool: .shared)
            Softmax.backwardReference(dinp: &zero, out: p, dout: g, rows: rows, cols: n)
            assertClose(inPlace, zero, atol: 1e-6, rtol: 1e-5, "softmax backwardInPlace n=\(n)")
        }
    }

    func testJVPMatchesFiniteDifferences() {
        for n in oddSizes {
            let rows = 2, x = randomArray(rows * n, seed: UInt64(n), lo: -3, hi: 3)
            let t = randomArray(rows * n, seed: UInt64(n) + 5)
            func softmax(_ v: [Float]) -> [Float] {
                var out = [Float](repeating: 0, count: v.count)
                Softmax.forwardReference(out: &out, inp: v, rows: rows, cols: n)
                return out
            }
            var p = [Float](repeating: 0, count: rows * n), tout = [Float](repeating: .nan, count: rows * n)
            Softmax.forward(out: &p, inp: x, rows: rows, cols: n)
            Softmax.jvp(tout: &tout, out: p, tinp: t, rows: rows, cols: n)
            assertClose(tout, directional(x, t, softmax), atol: 1e-3, rtol: 1e-2, "softmax jvp n=\(n)")
        }
    }

    /// CrossEntropy's scalar row: the same probabilities as the reference, and (m, Σ exp(x − m)).
    func testScalarRowMatchesReference() {
        for n in oddSizes {
            let x = randomArray(n, seed: UInt64(n), lo: -30, hi: 30)
            var p = [Float](repeating: 0, count: n), pr = p
            let (m, sum) = x.withUnsafeBufferPointer { Softmax.rowScalar(&p, $0.baseAddress!, n) }
            Softmax.forwardReference(out: &pr, inp: x, rows: 1, cols: n)
            assertClose(p, pr, atol: 1e-7, rtol: 1e-5, "rowScalar n=\(n)")
            XCTAssertEqual(m, x.max()!)
            let z = x.reduce(0.0) { $0 + exp(Double($1 - m)) }
            XCTAssertEqual(Double(sum), z, accuracy: 1e-5 * z)
        }
    }

    func testOneAndTwoThreadsAreBitIdentical() {
        let x = randomArray(600 * 197, seed: 3, lo: -8, hi: 8), g = randomArray(x.count, seed: 4)
        func run(_ pool: ThreadPool) -> [Float] {
            var p = [Float](repeating: 0, count: x.count), d = p, t = g
            Softmax.forward(out: &p, inp: x, rows: 600, cols: 197, pool: pool)
            Softmax.backward(dinp: &d, out: p, dout: g, rows: 600, cols: 197, pool: pool)
            Softmax.backwardInPlace(&t, probs: p, rows: 600, cols: 197, pool: pool)
            return p + d + t
        }
        let one = withThreads(1, run), two = withThreads(2, run)
        XCTAssertEqual(one.map(\.bitPattern), two.map(\.bitPattern))
    }

    /// `exp16` is SLEEF's expf_u10 replicated in Swift: the same bits as `vm_expf16` on every float
    /// in [−110, 110] at a stride of 997 bit patterns (about 2.2 M values, all exponents and rounding
    /// cases of the range reduction), the clamp edges, ±0, ±∞, the largest floats and NaN.
    func testExp16IsSLEEFBitForBit() {
        var inputs: [Float] = [
            0, -0, 1, -1, .infinity, -.infinity, .nan, .greatestFiniteMagnitude, -.greatestFiniteMagnitude,
            .leastNonzeroMagnitude, -104, -104.00001, -103.99999, 100, 100.00001, 99.99999, 88.72283, 88.72284,
            -87.33654, -87.33655, 2.9e6, -2.9e6, 6e6, -6e6, 1e30, -1e30,
        ]
        inputs += (0..<16).map { Float(bitPattern: 0x7FC0_0000 | UInt32($0)) }  // NaN payloads
        let limit = Float(110).bitPattern
        var bits: UInt32 = 0
        var mismatches = 0, first = ""
        var x = [Float](repeating: 0, count: 16), y = x
        func check() {
            while x.count < 16 { x.append(0) }
            vm_expf16(x, &y)
            let z = x.withUnsafeBufferPointer { exp16(vload($0.baseAddress!)) }
            for j in 0..<16 where !(y[j].bitPattern == z[j].bitPattern || (y[j].isNaN && z[j].isNaN)) {
                mismatches += 1
                if first.isEmpty { first = "exp(\(x[j])): SLEEF \(y[j]), exp16 \(z[j])" }
            }
        }
        for chunk in stride(from: 0, to: inputs.count, by: 16) {
            x = Array(inputs[chunk..<min(chunk + 16, inputs.count)])
            check()
        }
        x.removeAll(keepingCapacity: true)
        while bits <= limit {
            x.append(Float(bitPattern: bits))
            x.append(Float(bitPattern: bits | 0x8000_0000))
            if x.count == 16 {
                check()
                x.removeAll(keepingCapacity: true)
            }
            bits &+= 997
        }
        if !x.isEmpty { check() }
        XCTAssertEqual(mismatches, 0, first)
    }
}

/// The masked tail loads and stores (`loadPartial`, `storePartial`, the softmax rows' tails): lanes
/// below n hold the data, the rest the fill, and nothing at or past p + n is touched. The data ends
/// at a page followed by an inaccessible one, so a read or write past it is a crash, not a pass.
final class PartialLaneTests: XCTestCase {
    func testPartialLoadsAndStoresTouchOnlyTheirLanesUpToAGuardPage() throws {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let raw = try XCTUnwrap(mmap(nil, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        XCTAssertNotEqual(raw, MAP_FAILED)
        defer { munmap(raw, 2 * page) }
        XCTAssertEqual(mprotect(raw + page, page, PROT_NONE), 0)
        let end = (raw + page).assumingMemoryBound(to: Float.self)
        for n in 0...16 {
            let p = end - n
            for j in 0..<n { p[j] = Float(j + 1) }
            let v = loadPartial(p, n, fill: -.infinity)
            for j in 0..<16 { XCTAssertEqual(v[j], j < n ? Float(j + 1) : -.infinity, "n \(n), lane \(j)") }
            XCTAssertEqual(loadPartial(p, n)[15], n == 16 ? 16 : 0)
            storePartial(V16(repeating: -7), p, n)
            for j in 0..<n { XCTAssertEqual(p[j], -7) }
            // the softmax row of n ≤ 16 floats runs entirely on the tail
            guard n > 0 else { continue }
            for j in 0..<n { p[j] = Float(j) / 4 }
            Softmax.row(p, n)
            var expected = [Float](repeating: 0, count: n)
            Softmax.forwardReference(out: &expected, inp: (0..<n).map { Float($0) / 4 }, rows: 1, cols: n)
            for j in 0..<n { XCTAssertEqual(p[j], expected[j], accuracy: 1e-6, "softmax of \(n), lane \(j)") }
        }
        // a store of n lanes leaves the floats after them as they were
        let q = end - 16
        for j in 0..<16 { q[j] = 100 + Float(j) }
        storePartial(V16(repeating: 1), q, 5)
        XCTAssertEqual(
            Array(UnsafeBufferPointer(start: q, count: 16)), [1, 1, 1, 1, 1] + (5..<16).map { 100 + Float($0) })
    }
}
