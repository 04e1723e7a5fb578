import Foundation
import ViTMergeCore

/// Row-wise softmax (max subtracted first). Attention uses the in-place row kernels directly.
public enum Softmax {
    // out[N,C] = softmax(inp) per row (out may equal inp)
    public static func forward(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, rows: Int, cols: Int, pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.attention, profileStart) }
        if UnsafePointer(out) != inp { out.update(from: inp, count: rows * cols) }
        Attention.softmaxRowsInPlace(out, rows: rows, cols: cols, pool: pool)
    }

    // dinp[N,C] += out ⊙ (dout − Σ_row dout ⊙ out)
    public static func backward(
        dinp: UnsafeMutablePointer<Float>, out: UnsafePointer<Float>, dout: UnsafePointer<Float>,
        rows: Int, cols: Int, pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.attention, profileStart) }
        pool.forEachRange(rows, grain: max(1, elementwiseGrain / max(cols, 1))) { rr in
            for r in rr {
                let p = out + r &* cols, g = dout + r &* cols, d = dinp + r &* cols
                var dot: Float = 0
                for j in 0..<cols { dot += p[j] * g[j] }
                for j in 0..<cols { d[j] += p[j] * (g[j] - dot) }
            }
        }
    }

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
}
