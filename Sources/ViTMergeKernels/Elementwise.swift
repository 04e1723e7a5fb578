import ViTMergeCore

/// Streaming elementwise kernels (bandwidth-bound): merging, scaling, bias terms.
public enum Elementwise {
    // y[n] += alpha · x[n]
    public static func axpy(
        y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, alpha: Float, count: Int, pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.elementwise, profileStart) }
        let a = V16(repeating: alpha)
        pool.parallel(count, cost: 3, align: 16) { _, _, r in
            var i = r.lowerBound
            while i &+ 16 <= r.upperBound { vstore(vload(y + i).addingProduct(a, vload(x + i)), y + i); i &+= 16 }
            while i < r.upperBound { y[i] = y[i].addingProduct(alpha, x[i]); i &+= 1 }
        }
    }

    // out[n] = base + Σ_j coefficients[j]·xs[j], one streaming pass, rounded as sequential FMAs in j order
    // (bit-identical to copying base and applying one axpy per j)
    public static func linearCombination(
        out: UnsafeMutablePointer<Float>, base: UnsafePointer<Float>, xs: [UnsafePointer<Float>],
        coefficients cs: [Float], count: Int, pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.elementwise, profileStart) }
        precondition(xs.count == cs.count, "linearCombination: \(xs.count) inputs, \(cs.count) coefficients")
        let vcs = cs.map { V16(repeating: $0) }
        pool.parallel(count, cost: xs.count + 2, align: 16) { _, _, r in
            var i = r.lowerBound
            while i &+ 16 <= r.upperBound {
                var acc = vload(base + i)
                for j in 0..<xs.count { acc = acc.addingProduct(vcs[j], vload(xs[j] + i)) }
                vstore(acc, out + i)
                i &+= 16
            }
            while i < r.upperBound {
                var acc = base[i]
                for j in 0..<xs.count { acc = acc.addingProduct(cs[j], xs[j][i]) }
                out[i] = acc
                i &+= 1
            }
        }
    }

    // x[n] *= alpha
    public static func scale(_ x: UnsafeMutablePointer<Float>, alpha: Float, count: Int, pool: ThreadPool = .shared) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.elementwise, profileStart) }
        let a = V16(repeating: alpha)
        pool.parallel(count, cost: 2, align: 16) { _, _, r in
            var i = r.lowerBound
            while i &+ 16 <= r.upperBound { vstore(vload(x + i) * a, x + i); i &+= 16 }
            while i < r.upperBound { x[i] *= alpha; i &+= 1 }
        }
    }

    // out[n] = a[n] + b[n]
    public static func add(
        out: UnsafeMutablePointer<Float>, a: UnsafePointer<Float>, b: UnsafePointer<Float>, count: Int,
        pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.elementwise, profileStart) }
        pool.parallel(count, cost: 3, align: 16) { _, _, r in
            var i = r.lowerBound
            while i &+ 16 <= r.upperBound { vstore(vload(a + i) + vload(b + i), out + i); i &+= 16 }
            while i < r.upperBound { out[i] = a[i] + b[i]; i &+= 1 }
        }
    }

    // out[N,C] += bias[C]
    public static func biasAddForward(
        out: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, cols: Int, pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.elementwise, profileStart) }
        pool.parallel(rows, cost: 3 * cols) { _, _, rr in
            for r in rr {
                let o = out + r &* cols
                var i = 0
                while i &+ 16 <= cols { vstore(vload(o + i) + vload(bias + i), o + i); i &+= 16 }
                while i < cols { o[i] += bias[i]; i &+= 1 }
            }
        }
    }

    // dbias[C] += Σ_n dout[n·ld + C], ld ≥ C (default C)   (column-parallel: each sum runs in row
    // order for any thread count)
    public static func biasAddBackward(
        dbias: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, rows: Int, cols: Int, ld: Int? = nil,
        pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.elementwise, profileStart) }
        let ld = ld ?? cols
        precondition(rows >= 0 && cols >= 0 && ld >= cols, "biasAddBackward: ld \(ld) < cols \(cols)")
        pool.parallel(cols, cost: rows, align: 16) { _, _, cr in
            var c = cr.lowerBound
            while c &+ 16 <= cr.upperBound {
                var acc = vload(dbias + c)
                for r in 0..<rows { acc += vload(dout + (r &* ld &+ c)) }
                vstore(acc, dbias + c)
                c &+= 16
            }
            while c < cr.upperBound {
                var acc = dbias[c]
                for r in 0..<rows { acc += dout[r &* ld &+ c] }
                dbias[c] = acc
                c &+= 1
            }
        }
    }

    // MARK: References

    public static func axpyReference(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, alpha: Float, count: Int)
    {
        for i in 0..<count { y[i] = Float(Double(y[i]) + Double(alpha) * Double(x[i])) }
    }

    public static func biasAddBackwardReference(
        dbias: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, rows: Int, cols: Int
    ) {
        for c in 0..<cols {
            var s = Double(dbias[c])
            for r in 0..<rows { s += Double(dout[r * cols + c]) }
            dbias[c] = Float(s)
        }
    }
}
