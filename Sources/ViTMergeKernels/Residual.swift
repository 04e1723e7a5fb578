import ViTMergeCore

/// The residual connection after a projection whose bias is folded in: out = residual + (inp + bias),
/// rounded in PyTorch's order (the projection adds its bias, then the residual is added).
/// Forward, backward and JVP side by side; bit-identical for any thread count.
public enum Residual {
    // out[N,C] = residual[N,C] + (inp[N,C] + bias[C])   (out may equal inp or residual)
    public static func forward(
        out: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>, inp: UnsafePointer<Float>,
        bias: UnsafePointer<Float>, rows: Int, cols: Int, pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.elementwise, profileStart) }
        precondition(rows >= 0 && cols >= 1, "Residual: bad shape [\(rows), \(cols)]")
        pool.parallel(rows, cost: 4 * cols) { _, _, range in
            for r in range {
                let o = out + r &* cols, x = residual + r &* cols, y = inp + r &* cols
                var i = 0
                while i &+ 16 <= cols { vstore(vload(x + i) + (vload(y + i) + vload(bias + i)), o + i); i &+= 16 }
                while i < cols { o[i] = x[i] + (y[i] + bias[i]); i &+= 1 }
            }
        }
    }

    // dbias[C] += Σ_n dout[n,C]. The residual and the input each receive dout unchanged: callers
    // keep dout as both gradients (the residual stream's gradient buffer is shared).
    @inline(__always)
    public static func backward(
        dbias: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, rows: Int, cols: Int, pool: ThreadPool = .shared
    ) {
        Elementwise.biasAddBackward(dbias: dbias, dout: dout, rows: rows, cols: cols, pool: pool)
    }

    // tout[N,C] = tresidual + (tinp + tbias): the map is affine, so its JVP is the forward on tangents
    @inline(__always)
    public static func jvp(
        tout: UnsafeMutablePointer<Float>, tresidual: UnsafePointer<Float>, tinp: UnsafePointer<Float>,
        tbias: UnsafePointer<Float>, rows: Int, cols: Int, pool: ThreadPool = .shared
    ) {
        forward(out: tout, residual: tresidual, inp: tinp, bias: tbias, rows: rows, cols: cols, pool: pool)
    }

    public static func forwardReference(
        out: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>, inp: UnsafePointer<Float>,
        bias: UnsafePointer<Float>, rows: Int, cols: Int
    ) {
        for r in 0..<rows {
            for c in 0..<cols {
                let i = r * cols + c
                out[i] = Float(Double(residual[i]) + Double(inp[i]) + Double(bias[c]))
            }
        }
    }
}
