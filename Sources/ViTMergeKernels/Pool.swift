import ViTMergeCore

/// Global pooling of a token sequence into one vector per sequence, as timm's `global_pool`:
/// the class token ("token") or the mean of the tokens after the prefix ("avg").
/// Forward, backward and JVP side by side; bit-identical for any thread count.
public enum TokenPool {
    public enum Mode: Sendable { case token, avg }

    // pooled[B,D] = x[b,0,:] (token) or mean_{r ≥ prefix} x[b,r,:] (avg; each column summed in token order)
    public static func forward(
        pooled: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, mode: Mode, batch: Int, tokens t: Int,
        prefix: Int, dim d: Int, pool: ThreadPool = .shared
    ) {
        precondition(batch >= 0 && t > prefix && prefix >= 0 && d >= 1, "TokenPool: bad shape")
        let inv = Float(t - prefix)
        pool.parallel(batch, cost: t * d) { _, _, range in
            for b in range {
                let out = pooled + b &* d, xb = x + b &* t &* d
                switch mode {
                case .token:
                    out.update(from: xb, count: d)
                case .avg:
                    var i = 0
                    while i &+ 16 <= d {
                        var s = V16()
                        for r in prefix..<t { s += vload(xb + (r &* d &+ i)) }
                        vstore(s / V16(repeating: inv), out + i)
                        i &+= 16
                    }
                    while i < d {
                        var s: Float = 0
                        for r in prefix..<t { s += xb[r &* d &+ i] }
                        out[i] = s / inv
                        i &+= 1
                    }
                }
            }
        }
    }

    // dx[B,T,D] = the pooling's gradient for dpooled[B,D], overwritten (every element written:
    // token: dpooled in row 0, zeros elsewhere; avg: dpooled/(T − prefix) in rows ≥ prefix, zeros before)
    public static func backward(
        dx: UnsafeMutablePointer<Float>, dpooled: UnsafePointer<Float>, mode: Mode, batch: Int, tokens t: Int,
        prefix: Int, dim d: Int, pool: ThreadPool = .shared
    ) {
        precondition(batch >= 0 && t > prefix && prefix >= 0 && d >= 1, "TokenPool: bad shape")
        dx.update(repeating: 0, count: batch * t * d)
        let s = 1 / Float(t - prefix)
        for b in 0..<batch {
            let db = dx + b &* t &* d, dp = dpooled + b &* d
            switch mode {
            case .token: db.update(from: dp, count: d)
            case .avg: for r in prefix..<t { for i in 0..<d { db[r &* d &+ i] = dp[i] * s } }
            }
        }
    }

    // tpooled[B,D] = the pooling of tx[B,T,D] (the pooling is linear: its JVP is the forward)
    @inline(__always)
    public static func jvp(
        tpooled: UnsafeMutablePointer<Float>, tx: UnsafePointer<Float>, mode: Mode, batch: Int, tokens t: Int,
        prefix: Int, dim d: Int, pool: ThreadPool = .shared
    ) {
        forward(pooled: tpooled, x: tx, mode: mode, batch: batch, tokens: t, prefix: prefix, dim: d, pool: pool)
    }

    // MARK: Reference (Double)

    public static func forwardReference(
        pooled: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, mode: Mode, batch: Int, tokens t: Int,
        prefix: Int, dim d: Int
    ) {
        for b in 0..<batch {
            for i in 0..<d {
                switch mode {
                case .token: pooled[b * d + i] = x[b * t * d + i]
                case .avg:
                    var s = 0.0
                    for r in prefix..<t { s += Double(x[(b * t + r) * d + i]) }
                    pooled[b * d + i] = Float(s / Double(t - prefix))
                }
            }
        }
    }
}
