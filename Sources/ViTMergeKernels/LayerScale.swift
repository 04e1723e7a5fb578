import ViTMergeCore

/// timm's LayerScale on a residual branch: out = residual + γ ⊙ inp, γ one scale per channel
/// (`init_values`; DeiT-III, DINOv2, CaiT). `inp` is the branch output with its bias already added,
/// so the rounding is PyTorch's: the projection adds its bias, LayerScale multiplies, the residual
/// adds. Forward, backward and JVP side by side; bit-identical for any thread count.
public enum LayerScale {
    // out[N,C] = residual[N,C] + γ[C] · inp[N,C]   (out may equal residual; not inp)
    public static func forward(
        out: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>, inp: UnsafePointer<Float>,
        gamma: UnsafePointer<Float>, rows: Int, cols: Int, pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.elementwise, profileStart) }
        precondition(rows >= 0 && cols >= 1, "LayerScale: bad shape [\(rows), \(cols)]")
        pool.parallel(rows, cost: 4 * cols) { _, _, range in
            for r in range {
                let o = out + r &* cols, x = residual + r &* cols, y = inp + r &* cols
                var i = 0
                while i &+ 16 <= cols { vstore(vload(x + i) + vload(gamma + i) * vload(y + i), o + i); i &+= 16 }
                while i < cols { o[i] = x[i] + gamma[i] * y[i]; i &+= 1 }
            }
        }
    }

    // Given dout = dLoss/dout (also the residual's gradient, unchanged):
    // dinp[N,C] = γ[C] · dout[N,C] (overwritten), dgamma[C] += Σ_n dout[n,C] · inp[n,C].
    public static func backward(
        dinp: UnsafeMutablePointer<Float>, dgamma: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
        inp: UnsafePointer<Float>, gamma: UnsafePointer<Float>, rows: Int, cols: Int, pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.elementwise, profileStart) }
        precondition(rows >= 0 && cols >= 1, "LayerScale: bad shape [\(rows), \(cols)]")
        // Column sums split by columns: each thread owns whole columns and adds rows in order.
        pool.parallel(cols, cost: 2 * rows, align: 16) { _, _, cr in
            var c = cr.lowerBound
            while c &+ 16 <= cr.upperBound {
                var acc = vload(dgamma + c)
                for r in 0..<rows {
                    acc = acc.addingProduct(vload(dout + (r &* cols &+ c)), vload(inp + (r &* cols &+ c)))
                }
                vstore(acc, dgamma + c)
                c &+= 16
            }
            while c < cr.upperBound {
                var acc = dgamma[c]
                for r in 0..<rows { acc = acc.addingProduct(dout[r &* cols &+ c], inp[r &* cols &+ c]) }
                dgamma[c] = acc
                c &+= 1
            }
        }
        pool.parallel(rows, cost: 3 * cols) { _, _, range in
            for r in range {
                let d = dinp + r &* cols, g = dout + r &* cols
                var i = 0
                while i &+ 16 <= cols { vstore(vload(gamma + i) * vload(g + i), d + i); i &+= 16 }
                while i < cols { d[i] = gamma[i] * g[i]; i &+= 1 }
            }
        }
    }

    // tout[N,C] = tresidual + γ · tinp + tγ · inp   (tout may equal tresidual)
    public static func jvp(
        tout: UnsafeMutablePointer<Float>, tresidual: UnsafePointer<Float>, tinp: UnsafePointer<Float>,
        tgamma: UnsafePointer<Float>, inp: UnsafePointer<Float>, gamma: UnsafePointer<Float>, rows: Int, cols: Int,
        pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.elementwise, profileStart) }
        precondition(rows >= 0 && cols >= 1, "LayerScale: bad shape [\(rows), \(cols)]")
        pool.parallel(rows, cost: 6 * cols) { _, _, range in
            for r in range {
                let o = tout + r &* cols, x = tresidual + r &* cols, ty = tinp + r &* cols, y = inp + r &* cols
                var i = 0
                while i &+ 16 <= cols {
                    let s = (vload(gamma + i) * vload(ty + i)).addingProduct(vload(tgamma + i), vload(y + i))
                    vstore(vload(x + i) + s, o + i)
                    i &+= 16
                }
                while i < cols { o[i] = x[i] + (gamma[i] * ty[i]).addingProduct(tgamma[i], y[i]); i &+= 1 }
            }
        }
    }

    // MARK: References

    public static func forwardReference(
        out: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>, inp: UnsafePointer<Float>,
        gamma: UnsafePointer<Float>, rows: Int, cols: Int
    ) {
        for r in 0..<rows {
            for c in 0..<cols {
                let i = r * cols + c
                out[i] = Float(Double(residual[i]) + Double(gamma[c]) * Double(inp[i]))
            }
        }
    }

    public static func backwardReference(
        dinp: UnsafeMutablePointer<Float>, dgamma: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
        inp: UnsafePointer<Float>, gamma: UnsafePointer<Float>, rows: Int, cols: Int
    ) {
        for c in 0..<cols {
            var s = Double(dgamma[c])
            for r in 0..<rows { s += Double(dout[r * cols + c]) * Double(inp[r * cols + c]) }
            dgamma[c] = Float(s)
        }
        for r in 0..<rows {
            for c in 0..<cols { dinp[r * cols + c] = Float(Double(gamma[c]) * Double(dout[r * cols + c])) }
        }
    }

    public static func jvpReference(
        tout: UnsafeMutablePointer<Float>, tresidual: UnsafePointer<Float>, tinp: UnsafePointer<Float>,
        tgamma: UnsafePointer<Float>, inp: UnsafePointer<Float>, gamma: UnsafePointer<Float>, rows: Int, cols: Int
    ) {
        for r in 0..<rows {
            for c in 0..<cols {
                let i = r * cols + c
                tout[i] = Float(
                    Double(tresidual[i]) + Double(gamma[c]) * Double(tinp[i]) + Double(tgamma[c]) * Double(inp[i]))
            }
        }
    }
}
