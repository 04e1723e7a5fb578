import ViTMergeCore

/// Row-wise L2 normalization as PyTorch's `F.normalize(x, dim=-1, p=2, eps)`: y = x / max(‖x‖, eps).
/// DINO's head normalizes its bottleneck features with it, and its weight-normalized last layer
/// (weight_g fixed at 1) is the same map on the rows of weight_v.
public enum L2Normalize {
    /// out[rows, cols] = inp / max(‖inp row‖, eps); norms[rows] = ‖inp row‖ (saved for backward).
    public static func forward(
        out: UnsafeMutablePointer<Float>, norms: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, rows: Int,
        cols: Int, eps: Float = 1e-12, pool: ThreadPool = .shared
    ) {
        precondition(rows >= 0 && cols >= 1, "L2Normalize.forward: bad shape")
        pool.parallel(rows, cost: 3 * cols) { _, _, r in
            for row in r {
                let x = inp + row &* cols, y = out + row &* cols
                var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
                var j = 0
                while j &+ 4 <= cols {
                    s0.addProduct(x[j], x[j])
                    s1.addProduct(x[j &+ 1], x[j &+ 1])
                    s2.addProduct(x[j &+ 2], x[j &+ 2])
                    s3.addProduct(x[j &+ 3], x[j &+ 3])
                    j &+= 4
                }
                while j < cols {
                    s0.addProduct(x[j], x[j])
                    j &+= 1
                }
                let norm = ((s0 + s1) + (s2 + s3)).squareRoot()
                norms[row] = norm
                let inv = 1 / max(norm, eps)
                for q in 0..<cols { y[q] = x[q] * inv }
            }
        }
    }

    /// dinp[rows, cols] += dLoss/dinp from dout and the forward's out and norms:
    /// (dout − out·⟨out, dout⟩) / ‖x‖ where ‖x‖ > eps, else dout / eps.
    public static func backward(
        dinp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, out: UnsafePointer<Float>,
        norms: UnsafePointer<Float>, rows: Int, cols: Int, eps: Float = 1e-12, pool: ThreadPool = .shared
    ) {
        precondition(rows >= 0 && cols >= 1, "L2Normalize.backward: bad shape")
        pool.parallel(rows, cost: 4 * cols) { _, _, r in
            for row in r {
                let y = out + row &* cols, g = dout + row &* cols, dx = dinp + row &* cols
                let norm = norms[row]
                if norm > eps {
                    var dot: Float = 0
                    for q in 0..<cols { dot.addProduct(y[q], g[q]) }
                    let inv = 1 / norm
                    for q in 0..<cols { dx[q] += (g[q] - y[q] * dot) * inv }
                } else {
                    for q in 0..<cols { dx[q] += g[q] / eps }
                }
            }
        }
    }

    /// `forward` from the definition, in Double (for tests).
    public static func forwardReference(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, rows: Int, cols: Int, eps: Double = 1e-12
    ) {
        for row in 0..<rows {
            var s = 0.0
            for q in 0..<cols { s += Double(inp[row * cols + q]) * Double(inp[row * cols + q]) }
            let d = max(s.squareRoot(), eps)
            for q in 0..<cols { out[row * cols + q] = Float(Double(inp[row * cols + q]) / d) }
        }
    }
}
