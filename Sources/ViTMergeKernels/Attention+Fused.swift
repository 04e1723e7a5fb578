import CSleef
import Foundation
import ViTMergeCore

/// Fused attention: per (batch, head) pair, one thread packs K and V once and walks the query
/// blocks in order; each block's scores S = scale·Q·Kᵀ stay in a per-thread scratch (or in the
/// saved `att` when training) that the softmax and P·V read while it is still in cache. The
/// products run on the packed SGEMM's panels and micro-kernel (GEMM+Pack.swift,
/// GEMM+MicroKernel.swift) over the full depth. Every (batch, head) pair is computed by one
/// thread in a fixed order (dK and dV accumulate over the query blocks in order), so results are
/// bit-identical for any thread count; with T ≤ `GEMM.kc` and one query block they are
/// bit-identical to the unfused path as well.
extension Attention {
    /// The shape every attention entry point requires: batch ≥ 0, at least one token and head, and
    /// a width that the heads divide.
    @inline(__always)
    static func checkShape(batch: Int, tokens: Int, dim: Int, heads: Int) {
        precondition(
            batch >= 0 && tokens >= 1 && heads >= 1 && dim % heads == 0,
            "Attention: dim \(dim) must be a multiple of heads \(heads)")
    }

    /// Query rows per block: the score block [qb, T] fits in `scoreBudget` floats (L2), qb a
    /// multiple of `GEMM.mr`, the blocks of near-equal size.
    static func queryBlock(tokens t: Int) -> Int {
        let mr = GEMM.mr
        let maxRows = max(mr, AttentionWorkspace.scoreBudget / t / mr * mr)
        let blocks = (t + maxRows - 1) / maxRows
        let rows = (t + blocks - 1) / blocks
        return min(t, (rows + mr - 1) / mr * mr)
    }

    /// The rows per query block a caller asked for (any ≥ 1; tests use small blocks), or the default.
    static func queryBlockRows(_ requested: Int?, tokens t: Int) -> Int {
        guard let rows = requested else { return queryBlock(tokens: t) }
        precondition(rows >= 1, "Attention: query block of \(rows) rows")
        return min(rows, t)
    }

    /// Asks for token row `row` of the next (batch, head) pair's head slices: `slices` slices of
    /// `width` floats, `spacing` apart, from `next` (row stride `ld`), so that they are in L2 when
    /// that pair starts. Called once per row of this pair's softmax, which spreads the requests over
    /// its work; the hardware prefetcher does not run ahead across the strided head slices (the
    /// forward ran 1.11–1.18× faster with this). Reads, or with `write` rows to accumulate into.
    @inline(__always)
    static func prefetchRow(
        _ next: UnsafePointer<Float>?, row: Int, ld: Int, slices: Int, spacing: Int, width: Int, write: Bool = false
    ) {
        guard let next else { return }
        let base = next + row &* ld
        for slice in 0..<slices {
            var l = slice &* spacing
            let end = l &+ width
            while l < end {
                if write { vm_prefetch_l2(base + l) } else { vm_prefetch_read_l2(base + l) }
                l &+= 16
            }
        }
    }

    /// The offset of the slices of the (batch, head) pair after `item` in a tensor of rows
    /// `rowStride` apart (qkv: 3·D, out: D), or nil when `item` is the last of this thread's `range`.
    @inline(__always)
    static func nextHeadOffset(
        after item: Int, in range: Range<Int>, heads: Int, tokens t: Int, rowStride: Int, headDim hd: Int
    ) -> Int? {
        let next = item &+ 1
        return next < range.upperBound ? (next / heads) &* t &* rowStride &+ (next % heads) &* hd : nil
    }

    // out[B,T,D] = concat_h softmax(q_h·k_hᵀ / √hd)·v_h; att[B,H,T,T] = the probabilities when att
    // is given (training); with att nil no [B,H,T,T] tensor is written (inference). queryBlock: rows
    // per query block (default `queryBlock(tokens:)`; any size gives the same results up to rounding).
    public static func forwardFused(
        out: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>?, qkv: UnsafePointer<Float>,
        batch: Int, tokens: Int, dim: Int, heads: Int, queryBlock: Int? = nil,
        pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.attention, profileStart) }
        checkShape(batch: batch, tokens: tokens, dim: dim, heads: heads)
        guard batch > 0 else { return }
        let (t, hd, d3) = (tokens, dim / heads, 3 * dim)
        let scale = 1 / Float(hd).squareRoot()
        let qb = queryBlockRows(queryBlock, tokens: t)
        let cost = 2 * GEMM.cost(t, t, hd)
        AttentionWorkspace.shared.withBuffers(threads: pool.threads, tokens: t, headDim: hd, queryBlock: qb) { ws in
            pool.parallel(batch * heads, cost: cost) { ith, _, range in
                let w = ws.thread(ith)
                for item in range {
                    let b = item / heads, h = item % heads
                    let q = qkv + (b &* t &* d3 &+ h &* hd), k = q + dim, v = q + 2 * dim
                    let o = out + (b &* t &* dim &+ h &* hd)
                    // Kᵀ as the B operand of S (n = T, depth hd); V as the B operand of P·V (n = hd, depth T).
                    packOperand(transposed: true, n: t, k: hd, b: k, ldb: d3, into: w.packT)
                    packOperand(transposed: false, n: hd, k: t, b: v, ldb: d3, into: w.packD)
                    let probs = att.map { $0 + item &* t &* t }
                    let next = nextHeadOffset(
                        after: item, in: range, heads: heads, tokens: t, rowStride: d3, headDim: hd
                    )
                    .map { qkv + $0 }
                    var i0 = 0
                    while i0 < t {
                        let rows = min(qb, t - i0)
                        let s = probs.map { $0 + i0 &* t } ?? w.scores
                        // S_blk[rows, T] = scale · Q_blk·Kᵀ, softmax per row in place
                        product(
                            transA: false, m: rows, n: t, k: hd, alpha: scale, a: q + i0 &* d3, lda: d3,
                            bPack: w.packT, beta: 0, c: s, ldc: t, w)
                        for r in 0..<rows {
                            Softmax.row(s + r &* t, t)
                            prefetchRow(next, row: i0 &+ r, ld: d3, slices: 3, spacing: dim, width: hd)
                        }
                        // O_blk[rows, hd] = P_blk·V
                        product(
                            transA: false, m: rows, n: hd, k: t, alpha: 1, a: s, lda: t, bPack: w.packD, beta: 0,
                            c: o + i0 &* dim, ldc: dim, w)
                        i0 &+= rows
                    }
                }
            }
        }
    }

    // dqkv[B,T,3D] += gradient of out w.r.t. qkv given dout[B,T,D] and the saved probabilities
    // att[B,H,T,T], or with att nil the probabilities recomputed block by block (the same bits as
    // `forwardFused` saves). No [B,H,T,T] scratch: dP and dS live one query block at a time per thread.
    public static func backwardFused(
        dqkv: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>, qkv: UnsafePointer<Float>,
        att: UnsafePointer<Float>?, batch: Int, tokens: Int, dim: Int, heads: Int, queryBlock: Int? = nil,
        pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.attention, profileStart) }
        checkShape(batch: batch, tokens: tokens, dim: dim, heads: heads)
        guard batch > 0 else { return }
        let (t, hd, d3) = (tokens, dim / heads, 3 * dim)
        let scale = 1 / Float(hd).squareRoot()
        let qb = queryBlockRows(queryBlock, tokens: t)
        let cost = 4 * GEMM.cost(t, t, hd)
        AttentionWorkspace.shared.withBuffers(threads: pool.threads, tokens: t, headDim: hd, queryBlock: qb) { ws in
            pool.parallel(batch * heads, cost: cost) { ith, _, range in
                let w = ws.thread(ith)
                for item in range {
                    let b = item / heads, h = item % heads
                    let base = b &* t &* d3 &+ h &* hd
                    let q = qkv + base, k = q + dim, v = q + 2 * dim
                    let dq = dqkv + base, dk = dq + dim, dv = dq + 2 * dim
                    let go = dout + (b &* t &* dim &+ h &* hd)
                    // The next pair's q, k, v, dO and P to read, and its dQ, dK, dV to accumulate into.
                    let nextBase = nextHeadOffset(
                        after: item, in: range, heads: heads, tokens: t, rowStride: d3, headDim: hd)
                    let next = nextBase.map { qkv + $0 }, nextGrad = nextBase.map { UnsafePointer(dqkv + $0) }
                    let nextOut = nextHeadOffset(
                        after: item, in: range, heads: heads, tokens: t, rowStride: dim, headDim: hd
                    ).map { dout + $0 }
                    let nextP = nextBase == nil ? nil : att.map { UnsafePointer($0 + (item &+ 1) &* t &* t) }
                    let p = att.map { $0 + item &* t &* t }
                    // Vᵀ as the B operand of dP (n = T, depth hd); K as the B operand of dQ (n = hd, depth T).
                    packOperand(transposed: true, n: t, k: hd, b: v, ldb: d3, into: w.packT)
                    packOperand(transposed: false, n: hd, k: t, b: k, ldb: d3, into: w.packD)
                    // Without saved probabilities, Kᵀ for recomputing S (as in `forwardFused`).
                    if p == nil { packOperand(transposed: true, n: t, k: hd, b: k, ldb: d3, into: w.packT2) }
                    var i0 = 0
                    while i0 < t {
                        let rows = min(qb, t - i0)
                        let ds = w.scores, goBlock = go + i0 &* dim
                        let pb = p.map { UnsafePointer($0 + i0 &* t) } ?? UnsafePointer(w.probs)
                        if p == nil {
                            // P_blk = softmax(scale · Q_blk·Kᵀ), recomputed
                            product(
                                transA: false, m: rows, n: t, k: hd, alpha: scale, a: q + i0 &* d3, lda: d3,
                                bPack: w.packT2, beta: 0, c: w.probs, ldc: t, w)
                            for r in 0..<rows { Softmax.row(w.probs + r &* t, t) }
                        }
                        // dP_blk[rows, T] = dO_blk·Vᵀ
                        product(
                            transA: false, m: rows, n: t, k: hd, alpha: 1, a: goBlock, lda: dim, bPack: w.packT,
                            beta: 0, c: ds, ldc: t, w)
                        // dS_blk = P ⊙ (dP − rowsum(dP ⊙ P)), in place. First, so that it streams the saved P
                        // in row order (dV reading its columns first from memory ran at a third of the speed).
                        for r in 0..<rows {
                            Softmax.backwardRow(ds + r &* t, pb + r &* t, t)
                            prefetchRow(next, row: i0 &+ r, ld: d3, slices: 3, spacing: dim, width: hd)
                            prefetchRow(nextOut, row: i0 &+ r, ld: dim, slices: 1, spacing: 0, width: hd)
                            prefetchRow(nextGrad, row: i0 &+ r, ld: d3, slices: 3, spacing: dim, width: hd, write: true)
                            prefetchRow(nextP, row: i0 &+ r, ld: t, slices: 1, spacing: 0, width: t)
                        }
                        // dV[T, hd] += P_blkᵀ·dO_blk
                        packOperand(transposed: false, n: hd, k: rows, b: goBlock, ldb: dim, into: w.packBlock)
                        product(
                            transA: true, m: t, n: hd, k: rows, alpha: 1, a: pb, lda: t, bPack: w.packBlock, beta: 1,
                            c: dv, ldc: d3, w)
                        // dQ_blk += scale · dS_blk·K
                        product(
                            transA: false, m: rows, n: hd, k: t, alpha: scale, a: ds, lda: t, bPack: w.packD,
                            beta: 1, c: dq + i0 &* d3, ldc: d3, w)
                        // dK[T, hd] += scale · dS_blkᵀ·Q_blk
                        packOperand(transposed: false, n: hd, k: rows, b: q + i0 &* d3, ldb: d3, into: w.packBlock)
                        product(
                            transA: true, m: t, n: hd, k: rows, alpha: scale, a: ds, lda: t, bPack: w.packBlock,
                            beta: 1, c: dk, ldc: d3, w)
                        i0 &+= rows
                    }
                }
            }
        }
    }

    // Forward-mode derivative on the fused blocks: tout[B,T,D] = ∂out·tqkv for a tangent tqkv[B,T,3D],
    // using the saved probabilities att[B,H,T,T]; no [B,H,T,T] scratch.
    // tS = scale·(tQ·Kᵀ + Q·tKᵀ); tP = P ⊙ (tS − rowsum(P ⊙ tS)); tO = tP·V + P·tV.
    public static func jvpFused(
        tout: UnsafeMutablePointer<Float>, tqkv: UnsafePointer<Float>, qkv: UnsafePointer<Float>,
        att: UnsafePointer<Float>, batch: Int, tokens: Int, dim: Int, heads: Int, queryBlock: Int? = nil,
        pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.attention, profileStart) }
        checkShape(batch: batch, tokens: tokens, dim: dim, heads: heads)
        guard batch > 0 else { return }
        let (t, hd, d3) = (tokens, dim / heads, 3 * dim)
        let scale = 1 / Float(hd).squareRoot()
        let qb = queryBlockRows(queryBlock, tokens: t)
        let cost = 4 * GEMM.cost(t, t, hd)
        AttentionWorkspace.shared.withBuffers(threads: pool.threads, tokens: t, headDim: hd, queryBlock: qb) { ws in
            pool.parallel(batch * heads, cost: cost) { ith, _, range in
                let w = ws.thread(ith)
                for item in range {
                    let b = item / heads, h = item % heads
                    let base = b &* t &* d3 &+ h &* hd
                    let q = qkv + base, k = q + dim, v = q + 2 * dim
                    let tq = tqkv + base, tk = tq + dim, tv = tq + 2 * dim
                    let to = tout + (b &* t &* dim &+ h &* hd)
                    // The next pair's q, k, v and their tangents.
                    let nextBase = nextHeadOffset(
                        after: item, in: range, heads: heads, tokens: t, rowStride: d3, headDim: hd)
                    let next = nextBase.map { qkv + $0 }, nextTangent = nextBase.map { tqkv + $0 }
                    let p = att + item &* t &* t
                    packOperand(transposed: true, n: t, k: hd, b: k, ldb: d3, into: w.packT)
                    packOperand(transposed: true, n: t, k: hd, b: tk, ldb: d3, into: w.packT2)
                    packOperand(transposed: false, n: hd, k: t, b: v, ldb: d3, into: w.packD)
                    packOperand(transposed: false, n: hd, k: t, b: tv, ldb: d3, into: w.packD2)
                    var i0 = 0
                    while i0 < t {
                        let rows = min(qb, t - i0)
                        let ts = w.scores, pb = p + i0 &* t
                        // tS_blk = scale·tQ_blk·Kᵀ + scale·Q_blk·tKᵀ
                        product(
                            transA: false, m: rows, n: t, k: hd, alpha: scale, a: tq + i0 &* d3, lda: d3,
                            bPack: w.packT, beta: 0, c: ts, ldc: t, w)
                        product(
                            transA: false, m: rows, n: t, k: hd, alpha: scale, a: q + i0 &* d3, lda: d3,
                            bPack: w.packT2, beta: 1, c: ts, ldc: t, w)
                        // tP_blk = P ⊙ (tS − rowsum(P ⊙ tS)), in place
                        for r in 0..<rows {
                            Softmax.backwardRow(ts + r &* t, pb + r &* t, t)
                            prefetchRow(next, row: i0 &+ r, ld: d3, slices: 3, spacing: dim, width: hd)
                            prefetchRow(nextTangent, row: i0 &+ r, ld: d3, slices: 3, spacing: dim, width: hd)
                        }
                        // tO_blk = tP_blk·V + P_blk·tV
                        product(
                            transA: false, m: rows, n: hd, k: t, alpha: 1, a: ts, lda: t, bPack: w.packD, beta: 0,
                            c: to + i0 &* dim, ldc: dim, w)
                        product(
                            transA: false, m: rows, n: hd, k: t, alpha: 1, a: pb, lda: t, bPack: w.packD2, beta: 1,
                            c: to + i0 &* dim, ldc: dim, w)
                        i0 &+= rows
                    }
                }
            }
        }
    }

    /// op(B)[k, n] (B[k, n], or Bᵀ for B stored [n, k] when transposed) packed in panels for `product`.
    @inline(__always)
    static func packOperand(
        transposed: Bool, n: Int, k: Int, b: UnsafePointer<Float>, ldb: Int, into dst: UnsafeMutablePointer<Float>
    ) {
        GEMMProblem(
            transA: false, transB: transposed, m: 1, n: n, k: k, alpha: 1, a: b, lda: k, b: b, ldb: ldb, beta: 0,
            c: dst, ldc: n
        ).packAllB(into: dst)
    }

    /// C[m, n] = alpha·op(A)·B + beta·C on the calling thread (beta == 0: C not read), op(A) = A[m, k]
    /// or Aᵀ for A stored [k, m], read in place on AVX-512 builds; B packed by `packOperand`.
    @inline(__always)
    static func product(
        transA: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
        bPack: UnsafePointer<Float>, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
        _ w: AttentionWorkspace.Thread
    ) {
        if GEMM.nr == 64 {
            // Aᵀ is read in place too (6 adjacent floats per step, a row of lda apart). Once the
            // backward streams P in row order before dV reads its columns, this beat both packing each
            // 6-row panel first and transposing A whole in 16 × 16 register tiles (which measured 0.93×
            // the in-place read on the backward).
            attentionGEMM64(
                m: m, n: n, k: k, alpha: alpha, a: a, rs: transA ? 1 : lda, ps: transA ? lda : 1, bPack: bPack,
                beta: beta, c: c, ldc: ldc, tile: w.tile)
        } else {
            GEMMProblem(
                transA: transA, transB: false, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: bPack, ldb: n,
                beta: beta, c: c, ldc: ldc
            ).runPacked(bPack: bPack, aPack: w.aPack, tile: w.tile)
        }
    }
}
