import Foundation
import ViTMergeCore

/// Row-wise softmax (max subtracted first): the one home of the softmax row kernels. Attention
/// runs `forwardInPlace` on its scores and `backwardInPlace` for both its backward and its JVP;
/// CrossEntropy runs `rowScalar`, which keeps the scalar libm arithmetic its losses were always
/// computed with (the SIMD row rounds differently, and the experiments' numbers must not move).
public enum Softmax {
    // out[N,C] = softmax(inp) per row (out may equal inp)
    public static func forward(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, rows: Int, cols: Int, pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.attention, profileStart) }
        if UnsafePointer(out) != inp { out.update(from: inp, count: rows * cols) }
        forwardInPlace(out, rows: rows, cols: cols, pool: pool)
    }

    // dinp[N,C] += out ⊙ (dout − Σ_row dout ⊙ out)
    public static func backward(
        dinp: UnsafeMutablePointer<Float>, out: UnsafePointer<Float>, dout: UnsafePointer<Float>,
        rows: Int, cols: Int, pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.attention, profileStart) }
        pool.parallel(rows, cost: 4 * cols) { _, _, rr in
            for r in rr {
                let p = out + r &* cols, g = dout + r &* cols, d = dinp + r &* cols
                var dot: Float = 0
                for j in 0..<cols { dot += p[j] * g[j] }
                for j in 0..<cols { d[j] += p[j] * (g[j] - dot) }
            }
        }
    }

    // tout[N,C] = out ⊙ (tinp − Σ_row tinp ⊙ out): the tangent of `forward` (out = its output)
    public static func jvp(
        tout: UnsafeMutablePointer<Float>, out: UnsafePointer<Float>, tinp: UnsafePointer<Float>,
        rows: Int, cols: Int, pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.attention, profileStart) }
        if UnsafePointer(tout) != tinp { tout.update(from: tinp, count: rows * cols) }
        backwardInPlace(tout, probs: out, rows: rows, cols: cols, pool: pool)
    }

    // MARK: Row kernels

    /// x[rows, cols] ← softmax of each row, in place (SIMD, SLEEF exp).
    public static func forwardInPlace(_ x: UnsafeMutablePointer<Float>, rows: Int, cols: Int, pool: ThreadPool) {
        pool.parallel(rows, cost: 4 * cols) { _, _, range in
            for r in range { row(x + r &* cols, cols) }
        }
    }

    /// d[rows, cols] ← p ⊙ (d − Σ_row d ⊙ p), in place: the softmax backward with d = dout, and
    /// equally its JVP with d = the input tangent (p = the saved probabilities).
    public static func backwardInPlace(
        _ d: UnsafeMutablePointer<Float>, probs: UnsafePointer<Float>, rows: Int, cols: Int, pool: ThreadPool
    ) {
        pool.parallel(rows, cost: 4 * cols) { _, _, range in
            for r in range { backwardRow(d + r &* cols, probs + r &* cols, cols) }
        }
    }

    /// x[n] ← softmax(x), in place: SIMD max, SLEEF's exp inline (`exp16`), one reciprocal. The
    /// last n mod 16 floats go through masked loads and stores, padded with −∞ (exp(−∞) = 0 in
    /// the padded lanes; the row maximum and the sum are those of the real lanes).
    @inline(__always)
    public static func row(_ x: UnsafeMutablePointer<Float>, _ n: Int) {
        let full = n & ~15, rem = n &- full
        var vm = V16(repeating: -.infinity)
        var i = 0
        while i < full { vm = vmax(vm, vload(x + i)); i &+= 16 }
        if rem > 0 { vm = vmax(vm, loadPartial(x + full, rem, fill: -.infinity)) }
        let vmaxRow = V16(repeating: hmax(vm))
        var vsum = V16()
        i = 0
        while i < full {
            let v = exp16(vload(x + i) - vmaxRow)
            vstore(v, x + i)
            vsum += v
            i &+= 16
        }
        if rem > 0 {
            let v = exp16(loadPartial(x + full, rem, fill: -.infinity) - vmaxRow)
            storePartial(v, x + full, rem)
            vsum += v
        }
        let vinv = V16(repeating: 1 / vsum.sum())
        i = 0
        while i < full { vstore(vload(x + i) * vinv, x + i); i &+= 16 }
        if rem > 0 { storePartial(loadPartial(x + full, rem) * vinv, x + full, rem) }
    }

    /// d[n] ← p ⊙ (d − Σ d ⊙ p) for one row (two SIMD accumulators for the dot product).
    @inline(__always)
    public static func backwardRow(_ d: UnsafeMutablePointer<Float>, _ p: UnsafePointer<Float>, _ n: Int) {
        var acc0 = V16(), acc1 = V16()
        var i = 0
        while i &+ 32 <= n {
            acc0.addProduct(vload(d + i), vload(p + i))
            acc1.addProduct(vload(d + (i &+ 16)), vload(p + (i &+ 16)))
            i &+= 32
        }
        if i &+ 16 <= n { acc0.addProduct(vload(d + i), vload(p + i)); i &+= 16 }
        var dot = (acc0 + acc1).sum()
        while i < n { dot += d[i] * p[i]; i &+= 1 }
        let vdot = V16(repeating: dot)
        i = 0
        while i &+ 16 <= n { vstore(vload(p + i) * (vload(d + i) - vdot), d + i); i &+= 16 }
        if i < n {
            let rem = n &- i
            storePartial(loadPartial(p + i, rem) * (loadPartial(UnsafePointer(d + i), rem) - vdot), d + i, rem)
        }
    }

    /// p[n] = softmax(x[n]) in scalar order with libm's expf; returns the row maximum m and
    /// Σ exp(x − m), from which log-softmax follows without log(0). CrossEntropy's arithmetic.
    @inline(__always)
    public static func rowScalar(
        _ p: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int
    ) -> (max: Float, sum: Float) {
        var m = -Float.infinity
        for j in 0..<n { m = max(m, x[j]) }
        var sum: Float = 0
        for j in 0..<n { let e = Foundation.exp(x[j] - m); p[j] = e; sum += e }
        let inv = 1 / sum
        for j in 0..<n { p[j] *= inv }
        return (m, sum)
    }

    // MARK: References (Double)

    public static func forwardReference(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, rows: Int, cols: Int
    ) {
        for r in 0..<rows {
            let x = (0..<cols).map { Double(inp[r * cols + $0]) }
            let m = x.max()!
            let e = x.map { Foundation.exp($0 - m) }
            let z = e.reduce(0, +)
            for j in 0..<cols { out[r * cols + j] = Float(e[j] / z) }
        }
    }

    public static func backwardReference(
        dinp: UnsafeMutablePointer<Float>, out: UnsafePointer<Float>, dout: UnsafePointer<Float>, rows: Int, cols: Int
    ) {
        for r in 0..<rows {
            var dot = 0.0
            for j in 0..<cols { dot += Double(out[r * cols + j]) * Double(dout[r * cols + j]) }
            for j in 0..<cols {
                let i = r * cols + j
                dinp[i] = Float(Double(dinp[i]) + Double(out[i]) * (Double(dout[i]) - dot))
            }
        }
    }
}
