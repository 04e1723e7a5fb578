import Foundation
import ViTMergeCore

/// Layer normalization over the last dimension (PyTorch's `LayerNorm`, biased variance).
public enum LayerNorm {
    // out[N,C] = (inp − mean)·rstd·weight + bias over C; mean[N], rstd[N] saved (rstd = 1/√(var + eps))
    public static func forward(
        out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
        inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
        rows: Int, cols: Int, eps: Float, pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.layerNorm, profileStart) }
        precondition(rows >= 0 && cols >= 1, "LayerNorm: bad shape [\(rows), \(cols)]")
        pool.parallel(rows, cost: 4 * cols) { _, _, rr in
            for r in rr {
                let x = inp + r &* cols, o = out + r &* cols
                // Two passes (mean, then squared deviations) for accuracy; several accumulators.
                var s0 = V16(), s1 = V16()
                var i = 0
                while i &+ 32 <= cols { s0 += vload(x + i); s1 += vload(x + (i &+ 16)); i &+= 32 }
                if i &+ 16 <= cols { s0 += vload(x + i); i &+= 16 }
                var sum = (s0 + s1).sum()
                while i < cols { sum += x[i]; i &+= 1 }
                let m = sum / Float(cols)
                let vm = V16(repeating: m)
                var q0 = V16(), q1 = V16()
                i = 0
                while i &+ 32 <= cols {
                    let d0 = vload(x + i) - vm, d1 = vload(x + (i &+ 16)) - vm
                    q0.addProduct(d0, d0); q1.addProduct(d1, d1)
                    i &+= 32
                }
                if i &+ 16 <= cols { let d0 = vload(x + i) - vm; q0.addProduct(d0, d0); i &+= 16 }
                var sq = (q0 + q1).sum()
                while i < cols { let d = x[i] - m; sq += d * d; i &+= 1 }
                let s = 1 / (sq / Float(cols) + eps).squareRoot()
                mean[r] = m
                rstd[r] = s
                let vs = V16(repeating: s)
                i = 0
                while i &+ 16 <= cols {
                    vstore(vload(bias + i).addingProduct((vload(x + i) - vm) * vs, vload(weight + i)), o + i)
                    i &+= 16
                }
                while i < cols { o[i] = bias[i].addingProduct((x[i] - m) * s, weight[i]); i &+= 1 }
            }
        }
    }

    // accumulates (+=) dinp[N,C], dweight[C], dbias[C]
    public static func backward(
        dinp: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>,
        dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, rows: Int, cols: Int, pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.layerNorm, profileStart) }
        precondition(rows >= 0 && cols >= 1, "LayerNorm: bad shape [\(rows), \(cols)]")
        let invC = 1 / Float(cols)
        // dinp: row-parallel.
        pool.parallel(rows, cost: 6 * cols) { _, _, rr in
            for r in rr {
                let x = inp + r &* cols, g = dout + r &* cols, dx = dinp + r &* cols
                let vm = V16(repeating: mean[r]), vs = V16(repeating: rstd[r])
                var a0 = V16(), b0 = V16()
                var i = 0
                while i &+ 16 <= cols {
                    let dn = vload(weight + i) * vload(g + i)
                    a0 += dn
                    b0.addProduct(dn, (vload(x + i) - vm) * vs)
                    i &+= 16
                }
                var dnMean = a0.sum(), dnNormMean = b0.sum()
                while i < cols {
                    let dn = weight[i] * g[i]
                    dnMean += dn
                    dnNormMean += dn * ((x[i] - mean[r]) * rstd[r])
                    i &+= 1
                }
                dnMean *= invC
                dnNormMean *= invC
                let va = V16(repeating: dnMean), vb = V16(repeating: dnNormMean)
                i = 0
                while i &+ 16 <= cols {
                    let norm = (vload(x + i) - vm) * vs
                    let dn = vload(weight + i) * vload(g + i)
                    let t = (dn - va) - norm * vb
                    vstore(vload(dx + i).addingProduct(t, vs), dx + i)
                    i &+= 16
                }
                while i < cols {
                    let norm = (x[i] - mean[r]) * rstd[r]
                    let t = (weight[i] * g[i] - dnMean) - norm * dnNormMean
                    dx[i] = dx[i].addingProduct(t, rstd[r])
                    i &+= 1
                }
            }
        }
        // dweight, dbias: column-parallel, each column summed in row order.
        pool.parallel(cols, cost: 2 * rows, align: 16) { _, _, cr in
            var c = cr.lowerBound
            while c &+ 16 <= cr.upperBound {
                var dw = vload(dweight + c), db = vload(dbias + c)
                for r in 0..<rows {
                    let g = vload(dout + (r &* cols &+ c))
                    let norm = (vload(inp + (r &* cols &+ c)) - V16(repeating: mean[r])) * V16(repeating: rstd[r])
                    dw.addProduct(norm, g)
                    db += g
                }
                vstore(dw, dweight + c); vstore(db, dbias + c)
                c &+= 16
            }
            while c < cr.upperBound {
                var dw = dweight[c], db = dbias[c]
                for r in 0..<rows {
                    let g = dout[r &* cols &+ c]
                    dw = dw.addingProduct((inp[r &* cols &+ c] - mean[r]) * rstd[r], g)
                    db += g
                }
                dweight[c] = dw; dbias[c] = db
                c &+= 1
            }
        }
    }

    // MARK: References (Double)

    // Forward-mode derivative of `forward` (mean/rstd saved by it): with x̂ = (x − μ)·r,
    // tout = r·(tinp − mean(tinp) − x̂·mean(x̂ ⊙ tinp)) ⊙ weight + x̂ ⊙ tweight + tbias
    public static func jvp(
        tout: UnsafeMutablePointer<Float>, tinp: UnsafePointer<Float>, inp: UnsafePointer<Float>,
        mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        tweight: UnsafePointer<Float>, tbias: UnsafePointer<Float>, rows: Int, cols: Int,
        pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.layerNorm, profileStart) }
        precondition(rows >= 0 && cols >= 1, "LayerNorm: bad shape [\(rows), \(cols)]")
        let invC = 1 / Float(cols)
        pool.parallel(rows, cost: 6 * cols) { _, _, rr in
            for r in rr {
                let x = inp + r &* cols, tx = tinp + r &* cols, y = tout + r &* cols
                let mu = mean[r], rs = rstd[r]
                var st: Float = 0, sxt: Float = 0
                for i in 0..<cols {
                    st += tx[i]
                    sxt += (x[i] - mu) * rs * tx[i]
                }
                let mt = st * invC, mxt = sxt * invC
                for i in 0..<cols {
                    let xhat = (x[i] - mu) * rs
                    y[i] = rs * (tx[i] - mt - xhat * mxt) * weight[i] + xhat * tweight[i] + tbias[i]
                }
            }
        }
    }

    public static func forwardReference(
        out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>,
        inp: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
        rows: Int, cols: Int, eps: Float
    ) {
        for r in 0..<rows {
            let x = (0..<cols).map { Double(inp[r * cols + $0]) }
            let m = x.reduce(0, +) / Double(cols)
            let v = x.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(cols)
            let s = 1 / (v + Double(eps)).squareRoot()
            mean[r] = Float(m); rstd[r] = Float(s)
            for i in 0..<cols { out[r * cols + i] = Float((x[i] - m) * s * Double(weight[i]) + Double(bias[i])) }
        }
    }

    public static func backwardReference(
        dinp: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>, dbias: UnsafeMutablePointer<Float>,
        dout: UnsafePointer<Float>, inp: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>, rows: Int, cols: Int
    ) {
        var dw = (0..<cols).map { Double(dweight[$0]) }, db = (0..<cols).map { Double(dbias[$0]) }
        for r in 0..<rows {
            let m = Double(mean[r]), s = Double(rstd[r])
            let norm = (0..<cols).map { (Double(inp[r * cols + $0]) - m) * s }
            let dn = (0..<cols).map { Double(weight[$0]) * Double(dout[r * cols + $0]) }
            let a = dn.reduce(0, +) / Double(cols)
            let b = zip(dn, norm).reduce(0) { $0 + $1.0 * $1.1 } / Double(cols)
            for i in 0..<cols {
                dinp[r * cols + i] += Float((dn[i] - a - norm[i] * b) * s)
                dw[i] += norm[i] * Double(dout[r * cols + i])
                db[i] += Double(dout[r * cols + i])
            }
        }
        for i in 0..<cols { dweight[i] = Float(dw[i]); dbias[i] = Float(db[i]) }
    }
}
