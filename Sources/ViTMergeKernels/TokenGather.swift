import ViTMergeCore

/// Rows of a token sequence picked by index, per image (MAE's gather of the visible tokens and
/// its "unshuffle" with mask tokens): out[b, r] = inp[b, index[b, r]], or the `fill` row where
/// the index is −1, plus an optional per-position row `add[r]` (a position embedding).
/// Forward and backward side by side; bit-identical for any thread count.
public enum TokenGather {
    // out[B,R,D] = (index[b,r] ≥ 0 ? inp[b, index[b,r]] : fill) (+ add[r]);
    // inp[B,S,D], index[B,R] in −1..<S (−1 needs `fill` [D]), add [R,D]
    public static func forward(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, index: UnsafePointer<Int32>,
        fill: UnsafePointer<Float>? = nil, add: UnsafePointer<Float>? = nil, batch: Int, inTokens s: Int,
        outTokens r: Int, dim d: Int, pool: ThreadPool = .shared
    ) {
        check(index, fill: fill != nil, batch: batch, inTokens: s, outTokens: r, dim: d)
        pool.parallel(batch, cost: 2 * r * d) { _, _, range in
            for b in range {
                for j in 0..<r {
                    let k = Int(index[b &* r &+ j])
                    let src = k >= 0 ? inp + (b &* s &+ k) &* d : fill!
                    let dst = out + (b &* r &+ j) &* d
                    if let add {
                        let a = add + j &* d
                        var i = 0
                        while i &+ 16 <= d { vstore(vload(src + i) + vload(a + i), dst + i); i &+= 16 }
                        while i < d { dst[i] = src[i] + a[i]; i &+= 1 }
                    } else {
                        dst.update(from: src, count: d)
                    }
                }
            }
        }
    }

    // accumulates (+=): dinp[b, index[b,r]] += dout[b,r]; dfill[D] += Σ dout rows with index −1;
    // dadd[R,D] += Σ_b dout[b] (in image order). Gradients that are nil are skipped.
    public static func backward(
        dinp: UnsafeMutablePointer<Float>?, dfill: UnsafeMutablePointer<Float>? = nil,
        dadd: UnsafeMutablePointer<Float>? = nil, dout: UnsafePointer<Float>, index: UnsafePointer<Int32>, batch: Int,
        inTokens s: Int, outTokens r: Int, dim d: Int, pool: ThreadPool = .shared
    ) {
        check(index, fill: true, batch: batch, inTokens: s, outTokens: r, dim: d)
        if let dinp {
            // Each image scatters into its own rows: parallel over images.
            pool.parallel(batch, cost: 3 * r * d) { _, _, range in
                for b in range {
                    for j in 0..<r {
                        let k = Int(index[b &* r &+ j])
                        guard k >= 0 else { continue }
                        addRow(dinp + (b &* s &+ k) &* d, dout + (b &* r &+ j) &* d, d)
                    }
                }
            }
        }
        if let dfill {
            for b in 0..<batch {
                for j in 0..<r where index[b &* r &+ j] < 0 { addRow(dfill, dout + (b &* r &+ j) &* d, d) }
            }
        }
        if let dadd {
            for b in 0..<batch { Elementwise.axpy(y: dadd, x: dout + b &* r &* d, alpha: 1, count: r * d, pool: pool) }
        }
    }

    // y[D] += x[D]
    @inline(__always) static func addRow(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ d: Int) {
        var i = 0
        while i &+ 16 <= d { vstore(vload(y + i) + vload(x + i), y + i); i &+= 16 }
        while i < d { y[i] += x[i]; i &+= 1 }
    }

    static func check(
        _ index: UnsafePointer<Int32>, fill: Bool, batch: Int, inTokens s: Int, outTokens r: Int, dim d: Int
    ) {
        precondition(batch >= 0 && s >= 0 && r >= 0 && d >= 1, "TokenGather: bad shape")
        for i in 0..<(batch * r) {
            let k = index[i]
            precondition(
                (k >= 0 && Int(k) < s) || (k == -1 && fill),
                "TokenGather: index \(k) at \(i) is outside 0..<\(s)\(fill ? " (or −1)" : "")")
        }
    }

    // MARK: Reference (plain loops)

    /// `forward` with scalar loops, for tests.
    public static func forwardReference(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, index: UnsafePointer<Int32>,
        fill: UnsafePointer<Float>?, add: UnsafePointer<Float>?, batch: Int, inTokens s: Int, outTokens r: Int,
        dim d: Int
    ) {
        for b in 0..<batch {
            for j in 0..<r {
                let k = Int(index[b * r + j])
                for i in 0..<d {
                    let v = k >= 0 ? inp[(b * s + k) * d + i] : fill![i]
                    out[(b * r + j) * d + i] = v + (add.map { $0[j * d + i] } ?? 0)
                }
            }
        }
    }

    /// `backward` with scalar loops in Double, for tests (accumulates as `backward`).
    public static func backwardReference(
        dinp: UnsafeMutablePointer<Float>?, dfill: UnsafeMutablePointer<Float>?, dadd: UnsafeMutablePointer<Float>?,
        dout: UnsafePointer<Float>, index: UnsafePointer<Int32>, batch: Int, inTokens s: Int, outTokens r: Int,
        dim d: Int
    ) {
        for b in 0..<batch {
            for j in 0..<r {
                let k = Int(index[b * r + j])
                for i in 0..<d {
                    let g = dout[(b * r + j) * d + i]
                    if k >= 0, let dinp { dinp[(b * s + k) * d + i] += g }
                    if k < 0, let dfill { dfill[i] += g }
                    if let dadd { dadd[j * d + i] = Float(Double(dadd[j * d + i]) + Double(g)) }
                }
            }
        }
    }
}
