import CSleef
import Foundation
import ViTMergeCore

/// Multi-head scaled-dot-product attention over a fused qkv tensor, as timm's `Attention`:
/// qkv[B,T,3D] holds per token q | k | v, each split into H heads of hd = D/H contiguous values.
/// `forward`, `backward` and `jvp` run the fused kernels (Attention+Fused.swift) unless `fused`
/// is false; the unfused path runs each matrix product over all (batch, head) pairs through
/// `sgemmBatched` reading qkv in place (leading dimension 3D), the softmax rows (Softmax.swift)
/// in parallel in between, through a [B,H,T,T] tensor; `jvp` likewise.
public enum Attention {
    /// Whether `forward`, `backward` and `jvp` run the fused kernels (the default, measured faster
    /// at ViT shapes); the benchmark turns it off to time the unfused path in the same run.
    nonisolated(unsafe) public static var fused = true

    // out[B,T,D] = concat_h softmax(q_h·k_hᵀ / √hd)·v_h ; att[B,H,T,T] = the softmax probabilities,
    // saved for the backward and the JVP when `saveProbabilities` (else the fused path leaves att
    // untouched and the unfused one uses it as scratch: the same `out` either way)
    public static func forward(
        out: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>, qkv: UnsafePointer<Float>,
        batch: Int, tokens: Int, dim: Int, heads: Int, saveProbabilities: Bool = true, pool: ThreadPool = .shared
    ) {
        if fused {
            forwardFused(
                out: out, att: saveProbabilities ? att : nil, qkv: qkv, batch: batch, tokens: tokens, dim: dim,
                heads: heads, pool: pool)
        } else {
            forwardUnfused(
                out: out, att: att, qkv: qkv, batch: batch, tokens: tokens, dim: dim, heads: heads, pool: pool)
        }
    }

    // dqkv[B,T,3D] += gradient of out w.r.t. qkv given dout[B,T,D]; datt[B,H,T,T] is scratch of the
    // unfused path (overwritten; the fused path does not touch it)
    public static func backward(
        dqkv: UnsafeMutablePointer<Float>, datt: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
        qkv: UnsafePointer<Float>, att: UnsafePointer<Float>,
        batch: Int, tokens: Int, dim: Int, heads: Int, pool: ThreadPool = .shared
    ) {
        if fused {
            backwardFused(
                dqkv: dqkv, dout: dout, qkv: qkv, att: att, batch: batch, tokens: tokens, dim: dim, heads: heads,
                pool: pool)
        } else {
            backwardUnfused(
                dqkv: dqkv, datt: datt, dout: dout, qkv: qkv, att: att, batch: batch, tokens: tokens, dim: dim,
                heads: heads, pool: pool)
        }
    }

    // The unfused forward: three passes over att[B,H,T,T] (scores, softmax, P·V).
    public static func forwardUnfused(
        out: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>, qkv: UnsafePointer<Float>,
        batch: Int, tokens: Int, dim: Int, heads: Int, pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.attention, profileStart) }
        checkShape(batch: batch, tokens: tokens, dim: dim, heads: heads)
        guard batch > 0 else { return }
        let (t, hd, d3) = (tokens, dim / heads, 3 * dim)
        let scale = 1 / Float(hd).squareRoot()
        // scores = scale · Q·Kᵀ
        sgemmBatched(
            transA: false, transB: true, m: t, n: t, k: hd, alpha: scale,
            a: qkv, lda: d3, strideA: (t * d3, hd),
            b: qkv + dim, ldb: d3, strideB: (t * d3, hd),
            beta: 0, c: att, ldc: t, strideC: (heads * t * t, t * t), batch: (batch, heads), pool: pool)
        Softmax.forwardInPlace(att, rows: batch * heads * t, cols: t, pool: pool)
        // out_h = P·V
        sgemmBatched(
            transA: false, transB: false, m: t, n: hd, k: t,
            a: UnsafePointer(att), lda: t, strideA: (heads * t * t, t * t),
            b: qkv + 2 * dim, ldb: d3, strideB: (t * d3, hd),
            beta: 0, c: out, ldc: dim, strideC: (t * dim, hd), batch: (batch, heads), pool: pool)
    }

    // The unfused backward: dqkv[B,T,3D] += gradient given dout[B,T,D]; datt[B,H,T,T] is scratch (overwritten)
    public static func backwardUnfused(
        dqkv: UnsafeMutablePointer<Float>, datt: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
        qkv: UnsafePointer<Float>, att: UnsafePointer<Float>,
        batch: Int, tokens: Int, dim: Int, heads: Int, pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.attention, profileStart) }
        checkShape(batch: batch, tokens: tokens, dim: dim, heads: heads)
        guard batch > 0 else { return }
        let (t, hd, d3) = (tokens, dim / heads, 3 * dim)
        let scale = 1 / Float(hd).squareRoot()
        let attStride = (heads * t * t, t * t), qkvStride = (t * d3, hd), outStride = (t * dim, hd)
        // dP = dO·Vᵀ
        sgemmBatched(
            transA: false, transB: true, m: t, n: t, k: hd,
            a: dout, lda: dim, strideA: outStride, b: qkv + 2 * dim, ldb: d3, strideB: qkvStride,
            beta: 0, c: datt, ldc: t, strideC: attStride, batch: (batch, heads), pool: pool)
        // dV += Pᵀ·dO
        sgemmBatched(
            transA: true, transB: false, m: t, n: hd, k: t,
            a: att, lda: t, strideA: attStride, b: dout, ldb: dim, strideB: outStride,
            beta: 1, c: dqkv + 2 * dim, ldc: d3, strideC: qkvStride, batch: (batch, heads), pool: pool)
        // dS = P ⊙ (dP − rowsum(dP ⊙ P)), in place
        Softmax.backwardInPlace(datt, probs: att, rows: batch * heads * t, cols: t, pool: pool)
        // dQ += scale · dS·K ; dK += scale · dSᵀ·Q
        sgemmBatched(
            transA: false, transB: false, m: t, n: hd, k: t, alpha: scale,
            a: UnsafePointer(datt), lda: t, strideA: attStride, b: qkv + dim, ldb: d3, strideB: qkvStride,
            beta: 1, c: dqkv, ldc: d3, strideC: qkvStride, batch: (batch, heads), pool: pool)
        sgemmBatched(
            transA: true, transB: false, m: t, n: hd, k: t, alpha: scale,
            a: UnsafePointer(datt), lda: t, strideA: attStride, b: qkv, ldb: d3, strideB: qkvStride,
            beta: 1, c: dqkv + dim, ldc: d3, strideC: qkvStride, batch: (batch, heads), pool: pool)
    }

    // Forward-mode derivative: tout[B,T,D] = ∂out·tqkv, the tangent of `forward`'s output for a
    // tangent tqkv[B,T,3D] of its input, using the saved probabilities att; tatt[B,H,T,T] is scratch
    // of the unfused path (the fused path does not touch it).
    public static func jvp(
        tout: UnsafeMutablePointer<Float>, tatt: UnsafeMutablePointer<Float>, tqkv: UnsafePointer<Float>,
        qkv: UnsafePointer<Float>, att: UnsafePointer<Float>,
        batch: Int, tokens: Int, dim: Int, heads: Int, pool: ThreadPool = .shared
    ) {
        if fused {
            jvpFused(
                tout: tout, tqkv: tqkv, qkv: qkv, att: att, batch: batch, tokens: tokens, dim: dim, heads: heads,
                pool: pool)
        } else {
            jvpUnfused(
                tout: tout, tatt: tatt, tqkv: tqkv, qkv: qkv, att: att, batch: batch, tokens: tokens, dim: dim,
                heads: heads, pool: pool)
        }
    }

    // The unfused JVP through tatt[B,H,T,T]:
    // tS = scale·(tQ·Kᵀ + Q·tKᵀ); tP = P ⊙ (tS − rowsum(P ⊙ tS)); tO = tP·V + P·tV.
    public static func jvpUnfused(
        tout: UnsafeMutablePointer<Float>, tatt: UnsafeMutablePointer<Float>, tqkv: UnsafePointer<Float>,
        qkv: UnsafePointer<Float>, att: UnsafePointer<Float>,
        batch: Int, tokens: Int, dim: Int, heads: Int, pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.attention, profileStart) }
        checkShape(batch: batch, tokens: tokens, dim: dim, heads: heads)
        guard batch > 0 else { return }
        let (t, hd, d3) = (tokens, dim / heads, 3 * dim)
        let scale = 1 / Float(hd).squareRoot()
        let attStride = (heads * t * t, t * t), qkvStride = (t * d3, hd), outStride = (t * dim, hd)
        sgemmBatched(
            transA: false, transB: true, m: t, n: t, k: hd, alpha: scale,
            a: tqkv, lda: d3, strideA: qkvStride, b: qkv + dim, ldb: d3, strideB: qkvStride,
            beta: 0, c: tatt, ldc: t, strideC: attStride, batch: (batch, heads), pool: pool)
        sgemmBatched(
            transA: false, transB: true, m: t, n: t, k: hd, alpha: scale,
            a: qkv, lda: d3, strideA: qkvStride, b: tqkv + dim, ldb: d3, strideB: qkvStride,
            beta: 1, c: tatt, ldc: t, strideC: attStride, batch: (batch, heads), pool: pool)
        Softmax.backwardInPlace(tatt, probs: att, rows: batch * heads * t, cols: t, pool: pool)
        sgemmBatched(
            transA: false, transB: false, m: t, n: hd, k: t,
            a: UnsafePointer(tatt), lda: t, strideA: attStride, b: qkv + 2 * dim, ldb: d3, strideB: qkvStride,
            beta: 0, c: tout, ldc: dim, strideC: outStride, batch: (batch, heads), pool: pool)
        sgemmBatched(
            transA: false, transB: false, m: t, n: hd, k: t,
            a: att, lda: t, strideA: attStride, b: tqkv + 2 * dim, ldb: d3, strideB: qkvStride,
            beta: 1, c: tout, ldc: dim, strideC: outStride, batch: (batch, heads), pool: pool)
    }

    // MARK: Reference twins (plain loops, Double accumulation)

    public static func forwardReference(
        out: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>, qkv: UnsafePointer<Float>,
        batch: Int, tokens t: Int, dim: Int, heads: Int
    ) {
        let hd = dim / heads, d3 = 3 * dim
        let scale = 1 / Double(hd).squareRoot()
        for b in 0..<batch {
            for h in 0..<heads {
                let p = att + (b * heads + h) * t * t
                for i in 0..<t {
                    var row = [Double](repeating: 0, count: t)
                    for j in 0..<t {
                        var s = 0.0
                        for c in 0..<hd {
                            s +=
                                Double(qkv[(b * t + i) * d3 + h * hd + c])
                                * Double(qkv[(b * t + j) * d3 + dim + h * hd + c])
                        }
                        row[j] = s * scale
                    }
                    let m = row.max()!
                    let e = row.map { Foundation.exp($0 - m) }
                    let sum = e.reduce(0, +)
                    for j in 0..<t { p[i * t + j] = Float(e[j] / sum) }
                    for c in 0..<hd {
                        var o = 0.0
                        for j in 0..<t { o += e[j] / sum * Double(qkv[(b * t + j) * d3 + 2 * dim + h * hd + c]) }
                        out[(b * t + i) * dim + h * hd + c] = Float(o)
                    }
                }
            }
        }
    }

    public static func backwardReference(
        dqkv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, qkv: UnsafePointer<Float>,
        att: UnsafePointer<Float>, batch: Int, tokens t: Int, dim: Int, heads: Int
    ) {
        let hd = dim / heads, d3 = 3 * dim
        let scale = 1 / Double(hd).squareRoot()
        func q(_ b: Int, _ i: Int, _ part: Int, _ h: Int, _ c: Int) -> Int {
            (b * t + i) * d3 + part * dim + h * hd + c
        }
        for b in 0..<batch {
            for h in 0..<heads {
                let p = att + (b * heads + h) * t * t
                for i in 0..<t {
                    var dp = [Double](repeating: 0, count: t)
                    for j in 0..<t {
                        for c in 0..<hd {
                            dp[j] += Double(dout[(b * t + i) * dim + h * hd + c]) * Double(qkv[q(b, j, 2, h, c)])
                        }
                    }
                    var dot = 0.0
                    for j in 0..<t { dot += dp[j] * Double(p[i * t + j]) }
                    for j in 0..<t {
                        let ds = Double(p[i * t + j]) * (dp[j] - dot) * scale
                        for c in 0..<hd {
                            dqkv[q(b, i, 0, h, c)] += Float(ds * Double(qkv[q(b, j, 1, h, c)]))
                            dqkv[q(b, j, 1, h, c)] += Float(ds * Double(qkv[q(b, i, 0, h, c)]))
                            dqkv[q(b, j, 2, h, c)] += Float(
                                Double(p[i * t + j]) * Double(dout[(b * t + i) * dim + h * hd + c]))
                        }
                    }
                }
            }
        }
    }
}
