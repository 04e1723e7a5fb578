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

    // out[B,T,D] = concat_h softmax(q_h·k_hᵀ / √hd)·v_h; att[B,H,T,T] = the probabilities when att
    // is given (training); with att nil no [B,H,T,T] tensor is written (inference). queryBlock: rows
    // per query block (default `queryBlock(tokens:)`; any size gives the same results up to rounding).
    public static func forwardFused(
        out: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>?, qkv: UnsafePointer<Float>,
        batch: Int, tokens: Int, dim: Int, heads: Int, queryBlock: Int? = nil,
        pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.attention, profileStart) }
        precondition(
            batch >= 0 && tokens >= 1 && heads >= 1 && dim % heads == 0,
            "Attention: dim \(dim) must be a multiple of heads \(heads)")
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
                    var i0 = 0
                    while i0 < t {
                        let rows = min(qb, t - i0)
                        let s = probs.map { $0 + i0 &* t } ?? w.scores
                        // S_blk[rows, T] = scale · Q_blk·Kᵀ, softmax per row in place
                        product(
                            transA: false, m: rows, n: t, k: hd, alpha: scale, a: q + i0 &* d3, lda: d3,
                            bPack: w.packT, beta: 0, c: s, ldc: t, w)
                        for r in 0..<rows { Softmax.row(s + r &* t, t) }
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
        precondition(
            batch >= 0 && tokens >= 1 && heads >= 1 && dim % heads == 0,
            "Attention: dim \(dim) must be a multiple of heads \(heads)")
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
                        // dV[T, hd] += P_blkᵀ·dO_blk
                        packOperand(transposed: false, n: hd, k: rows, b: goBlock, ldb: dim, into: w.packBlock)
                        product(
                            transA: true, m: t, n: hd, k: rows, alpha: 1, a: pb, lda: t, bPack: w.packBlock, beta: 1,
                            c: dv, ldc: d3, w)
                        // dS_blk = P ⊙ (dP − rowsum(dP ⊙ P)), in place
                        for r in 0..<rows { Softmax.backwardRow(ds + r &* t, pb + r &* t, t) }
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
        precondition(
            batch >= 0 && tokens >= 1 && heads >= 1 && dim % heads == 0,
            "Attention: dim \(dim) must be a multiple of heads \(heads)")
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
                        for r in 0..<rows { Softmax.backwardRow(ts + r &* t, pb + r &* t, t) }
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
        if GEMM.nr == 64 && !transA {
            attentionGEMM64(
                m: m, n: n, k: k, alpha: alpha, a: a, rs: lda, ps: 1, bPack: bPack, beta: beta, c: c, ldc: ldc,
                tile: w.tile)
        } else if GEMM.nr == 64 {
            // Aᵀ: each 6-row panel packed first (6 contiguous floats per step). Read in place with a
            // stride of lda per step, the fused backward measured 0.87× the unfused one; packed, 1.18×.
            var i0 = 0
            while i0 < m {
                let rows = min(6, m &- i0)
                packTransposedPanel(a + i0, lda: lda, rows: rows, k: k, into: w.aPack)
                attentionGEMM64(
                    m: rows, n: n, k: k, alpha: alpha, a: w.aPack, rs: 1, ps: 6, bPack: bPack, beta: beta,
                    c: c + i0 &* ldc, ldc: ldc, tile: w.tile)
                i0 &+= 6
            }
        } else {
            GEMMProblem(
                transA: transA, transB: false, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: bPack, ldb: n,
                beta: beta, c: c, ldc: ldc
            ).runPacked(bPack: bPack, aPack: w.aPack, tile: w.tile)
        }
    }
}

extension GEMMProblem {
    /// All of op(B)[k, n] packed as ⌈n/nr⌉ panels of nr columns over the full depth k.
    @inline(__always)
    func packAllB(into dst: UnsafeMutablePointer<Float>) {
        let nr = GEMM.nr
        var j0 = 0
        while j0 < n {
            packB(j0, min(nr, n &- j0), 0, k, dst + j0 &* k)
            j0 &+= nr
        }
    }

    /// C = alpha·op(A)·B + beta·C on the calling thread, with B already packed by `packAllB`
    /// (full depth, no depth blocks): each mr-row panel of A is packed once and run against
    /// every column panel. aPack holds mr·k floats, tile mr·nr.
    @inline(__always)
    func runPacked(
        bPack: UnsafePointer<Float>, aPack: UnsafeMutablePointer<Float>, tile: UnsafeMutablePointer<Float>
    ) {
        let mr = GEMM.mr, nr = GEMM.nr
        var i0 = 0
        while i0 < m {
            let rows = min(mr, m &- i0)
            packA(i0, rows, 0, k, aPack)
            var j0 = 0
            while j0 < n {
                if nr == 64 {
                    microKernel6x64(k, aPack, bPack + j0 &* k, tile)
                } else {
                    microKernel6x16(k, aPack, bPack + j0 &* k, tile)
                }
                storeTile(tile, c + (i0 &* ldc &+ j0), rows: rows, cols: min(nr, n &- j0), first: true)
                j0 &+= nr
            }
            i0 &+= mr
        }
    }
}

/// Per-thread buffers of the fused attention kernels, grown on first use and then reused (no
/// allocation per call once the largest shape has been seen).
final class AttentionWorkspace: @unchecked Sendable {
    static let shared = AttentionWorkspace()
    /// Floats of one score block [qb, T] (256 KB: an L2-resident block).
    static let scoreBudget = 1 << 16
    private let lock = NSLock()
    private var blocks: [UnsafeMutablePointer<Float>] = []
    private var capacity = 0

    /// One thread's buffers: a score and a probability block, two packed Kᵀ-like and two packed V-like operands
    /// (the JVP packs tangents too), a packed per-block operand, an A panel and a tile.
    struct Thread {
        let scores, probs, packT, packT2, packD, packD2, packBlock, aPack, tile: UnsafeMutablePointer<Float>
    }

    struct Buffers {
        let bases: [UnsafeMutablePointer<Float>]
        let scores, packT, packD, packBlock, aPack: Int

        @inline(__always)
        func thread(_ ith: Int) -> Thread {
            let s = bases[ith], probs = s + scores
            let packT = probs + scores, packT2 = packT + self.packT, packD = packT2 + self.packT,
                packD2 = packD + self.packD
            let packBlock = packD2 + self.packD, aPack = packBlock + self.packBlock
            return Thread(
                scores: s, probs: probs, packT: packT, packT2: packT2, packD: packD, packD2: packD2,
                packBlock: packBlock,
                aPack: aPack, tile: aPack + self.aPack)
        }
    }

    func withBuffers(threads: Int, tokens t: Int, headDim hd: Int, queryBlock qb: Int, _ body: (Buffers) -> Void) {
        let nr = GEMM.nr, mr = GEMM.mr
        let line = Memory.roundUpToLine
        let panels = { (n: Int) in (n + nr - 1) / nr * nr }
        let sizes = Buffers(
            bases: [], scores: line(qb * t), packT: line(panels(t) * hd), packD: line(panels(hd) * t),
            packBlock: line(panels(hd) * qb), aPack: line(mr * max(t, hd)))
        let need = 2 * sizes.scores + 2 * sizes.packT + 2 * sizes.packD + sizes.packBlock + sizes.aPack + line(mr * nr)
        lock.lock()
        defer { lock.unlock() }
        if need > capacity {
            for p in blocks { Memory.deallocate(p) }
            blocks = []
            capacity = need
        }
        while blocks.count < threads { blocks.append(Memory.allocateFloats(capacity)) }
        body(
            Buffers(
                bases: blocks, scores: sizes.scores, packT: sizes.packT, packD: sizes.packD,
                packBlock: sizes.packBlock, aPack: sizes.aPack))
    }
}

// MARK: Micro-kernels reading A in place

/// dst[p·6 + r] = a[p·lda + r] for p in 0..<k, r in 0..<rows (≤ 6); rows ≥ `rows` are zero.
@inline(__always)
func packTransposedPanel(
    _ a: UnsafePointer<Float>, lda: Int, rows: Int, k: Int, into dst: UnsafeMutablePointer<Float>
) {
    if rows == 6 {
        var src = UnsafeRawPointer(a), d = UnsafeMutableRawPointer(dst)
        let srcStride = lda &* 4
        for _ in 0..<k {
            d.storeBytes(of: src.loadUnaligned(as: SIMD4<Float>.self), as: SIMD4<Float>.self)
            d.storeBytes(
                of: src.loadUnaligned(fromByteOffset: 16, as: SIMD2<Float>.self), toByteOffset: 16,
                as: SIMD2<Float>.self)
            src += srcStride; d += 24
        }
    } else {
        for p in 0..<k {
            let src = a + p &* lda, d = dst + p &* 6
            for r in 0..<rows { d[r] = src[r] }
            for r in rows..<6 { d[r] = 0 }
        }
    }
}

/// The attention products on the calling thread: C[m, n] = alpha·A·B + beta·C (beta == 0: C is
/// not read), A's element (i, p) at a[i·rs + p·ps] (A or Aᵀ read in place, no packing), B packed
/// by `GEMMProblem.packAllB` in 64-column panels. Each element is the same FMA chain over p as
/// in the packed SGEMM, scaled the same way, so the results are those of `sgemm` (one depth
/// block). The last column panel runs a 16-column kernel when it has ≤ 16 columns.
@inline(__always)
func attentionGEMM64(
    m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, rs: Int, ps: Int, bPack: UnsafePointer<Float>,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, tile: UnsafeMutablePointer<Float>
) {
    var i0 = 0
    while i0 < m {
        let rows = min(6, m &- i0)
        var j0 = 0
        while j0 < n {
            let cols = min(64, n &- j0)
            let cBlock = c + (i0 &* ldc &+ j0), b = bPack + j0 &* k
            if cols <= 16 {
                attentionKernel6x16(
                    k, a + i0 &* rs, rs: rs, ps: ps, rows: rows, b, cBlock, ldc: ldc, cols: cols, alpha: alpha,
                    beta: beta, tile: tile)
            } else {
                attentionKernel6x64(
                    k, a + i0 &* rs, rs: rs, ps: ps, rows: rows, b, cBlock, ldc: ldc, cols: cols, alpha: alpha,
                    beta: beta, tile: tile)
            }
            j0 &+= 64
        }
        i0 &+= 6
    }
}

/// One C row segment of 16 lanes: alpha·acc (beta == 0) or beta·C + alpha·acc, as `storeTile`.
@inline(__always)
func storeScaled(
    _ acc: SIMD16<Float>, _ c: UnsafeMutablePointer<Float>, _ va: SIMD16<Float>, _ vb: SIMD16<Float>, _ beta: Float
) {
    if beta == 0 { vstore(va * acc, c) } else { vstore((vb * vload(c)).addingProduct(va, acc), c) }
}

/// Partial tile: `rows` × `cols` of the 6 × w accumulators written out from `tile` (row stride 64).
@inline(__always)
func storeTilePart(
    _ tile: UnsafeMutablePointer<Float>, _ c: UnsafeMutablePointer<Float>, ldc: Int, rows: Int, cols: Int,
    alpha: Float, beta: Float
) {
    for r in 0..<rows {
        let t = tile + r &* 64, crow = c + r &* ldc
        for j in 0..<cols {
            crow[j] = beta == 0 ? alpha * t[j] : (beta * crow[j]).addingProduct(alpha, t[j])
        }
    }
}

/// 6 rows × 64 columns (24 zmm accumulators); rows ≥ `rows` repeat row 0 and are not stored.
@inline(__always)
func attentionKernel6x64(
    _ k: Int, _ a: UnsafePointer<Float>, rs: Int, ps: Int, rows: Int, _ b: UnsafePointer<Float>,
    _ c: UnsafeMutablePointer<Float>, ldc: Int, cols: Int, alpha: Float, beta: Float,
    tile: UnsafeMutablePointer<Float>
) {
    let a0 = a, a1 = rows > 1 ? a + rs : a, a2 = rows > 2 ? a + 2 &* rs : a
    let a3 = rows > 3 ? a + 3 &* rs : a, a4 = rows > 4 ? a + 4 &* rs : a, a5 = rows > 5 ? a + 5 &* rs : a
    var c00 = V16(), c01 = V16(), c02 = V16(), c03 = V16(), c10 = V16(), c11 = V16(), c12 = V16(), c13 = V16()
    var c20 = V16(), c21 = V16(), c22 = V16(), c23 = V16(), c30 = V16(), c31 = V16(), c32 = V16(), c33 = V16()
    var c40 = V16(), c41 = V16(), c42 = V16(), c43 = V16(), c50 = V16(), c51 = V16(), c52 = V16(), c53 = V16()
    var pb = UnsafeRawPointer(b), off = 0
    for _ in 0..<k {
        let b0 = pb.loadUnaligned(fromByteOffset: 0, as: V16.self)
        let b1 = pb.loadUnaligned(fromByteOffset: 64, as: V16.self)
        let b2 = pb.loadUnaligned(fromByteOffset: 128, as: V16.self)
        let b3 = pb.loadUnaligned(fromByteOffset: 192, as: V16.self)
        let x0 = V16(repeating: a0[off])
        c00.addProduct(x0, b0); c01.addProduct(x0, b1); c02.addProduct(x0, b2); c03.addProduct(x0, b3)
        let x1 = V16(repeating: a1[off])
        c10.addProduct(x1, b0); c11.addProduct(x1, b1); c12.addProduct(x1, b2); c13.addProduct(x1, b3)
        let x2 = V16(repeating: a2[off])
        c20.addProduct(x2, b0); c21.addProduct(x2, b1); c22.addProduct(x2, b2); c23.addProduct(x2, b3)
        let x3 = V16(repeating: a3[off])
        c30.addProduct(x3, b0); c31.addProduct(x3, b1); c32.addProduct(x3, b2); c33.addProduct(x3, b3)
        let x4 = V16(repeating: a4[off])
        c40.addProduct(x4, b0); c41.addProduct(x4, b1); c42.addProduct(x4, b2); c43.addProduct(x4, b3)
        let x5 = V16(repeating: a5[off])
        c50.addProduct(x5, b0); c51.addProduct(x5, b1); c52.addProduct(x5, b2); c53.addProduct(x5, b3)
        off &+= ps; pb += 256
    }
    let va = V16(repeating: alpha), vb = V16(repeating: beta)
    if rows == 6 && cols == 64 {
        var r = c
        storeScaled(c00, r, va, vb, beta); storeScaled(c01, r + 16, va, vb, beta)
        storeScaled(c02, r + 32, va, vb, beta); storeScaled(c03, r + 48, va, vb, beta); r += ldc
        storeScaled(c10, r, va, vb, beta); storeScaled(c11, r + 16, va, vb, beta)
        storeScaled(c12, r + 32, va, vb, beta); storeScaled(c13, r + 48, va, vb, beta); r += ldc
        storeScaled(c20, r, va, vb, beta); storeScaled(c21, r + 16, va, vb, beta)
        storeScaled(c22, r + 32, va, vb, beta); storeScaled(c23, r + 48, va, vb, beta); r += ldc
        storeScaled(c30, r, va, vb, beta); storeScaled(c31, r + 16, va, vb, beta)
        storeScaled(c32, r + 32, va, vb, beta); storeScaled(c33, r + 48, va, vb, beta); r += ldc
        storeScaled(c40, r, va, vb, beta); storeScaled(c41, r + 16, va, vb, beta)
        storeScaled(c42, r + 32, va, vb, beta); storeScaled(c43, r + 48, va, vb, beta); r += ldc
        storeScaled(c50, r, va, vb, beta); storeScaled(c51, r + 16, va, vb, beta)
        storeScaled(c52, r + 32, va, vb, beta); storeScaled(c53, r + 48, va, vb, beta)
        return
    }
    let t = tile
    vstore(c00, t); vstore(c01, t + 16); vstore(c02, t + 32); vstore(c03, t + 48)
    vstore(c10, t + 64); vstore(c11, t + 80); vstore(c12, t + 96); vstore(c13, t + 112)
    vstore(c20, t + 128); vstore(c21, t + 144); vstore(c22, t + 160); vstore(c23, t + 176)
    vstore(c30, t + 192); vstore(c31, t + 208); vstore(c32, t + 224); vstore(c33, t + 240)
    vstore(c40, t + 256); vstore(c41, t + 272); vstore(c42, t + 288); vstore(c43, t + 304)
    vstore(c50, t + 320); vstore(c51, t + 336); vstore(c52, t + 352); vstore(c53, t + 368)
    storeTilePart(t, c, ldc: ldc, rows: rows, cols: cols, alpha: alpha, beta: beta)
}

/// 6 rows × the first 16 columns of a 64-column panel (6 zmm accumulators), for a last column
/// panel of ≤ 16 columns; rows ≥ `rows` repeat row 0 and are not stored.
@inline(__always)
func attentionKernel6x16(
    _ k: Int, _ a: UnsafePointer<Float>, rs: Int, ps: Int, rows: Int, _ b: UnsafePointer<Float>,
    _ c: UnsafeMutablePointer<Float>, ldc: Int, cols: Int, alpha: Float, beta: Float,
    tile: UnsafeMutablePointer<Float>
) {
    let a0 = a, a1 = rows > 1 ? a + rs : a, a2 = rows > 2 ? a + 2 &* rs : a
    let a3 = rows > 3 ? a + 3 &* rs : a, a4 = rows > 4 ? a + 4 &* rs : a, a5 = rows > 5 ? a + 5 &* rs : a
    var c0 = V16(), c1 = V16(), c2 = V16(), c3 = V16(), c4 = V16(), c5 = V16()
    var pb = UnsafeRawPointer(b), off = 0
    for _ in 0..<k {
        let b0 = pb.loadUnaligned(as: V16.self)
        c0.addProduct(V16(repeating: a0[off]), b0); c1.addProduct(V16(repeating: a1[off]), b0)
        c2.addProduct(V16(repeating: a2[off]), b0); c3.addProduct(V16(repeating: a3[off]), b0)
        c4.addProduct(V16(repeating: a4[off]), b0); c5.addProduct(V16(repeating: a5[off]), b0)
        off &+= ps; pb += 256
    }
    let va = V16(repeating: alpha), vb = V16(repeating: beta)
    if rows == 6 && cols == 16 {
        storeScaled(c0, c, va, vb, beta); storeScaled(c1, c + ldc, va, vb, beta)
        storeScaled(c2, c + 2 &* ldc, va, vb, beta); storeScaled(c3, c + 3 &* ldc, va, vb, beta)
        storeScaled(c4, c + 4 &* ldc, va, vb, beta); storeScaled(c5, c + 5 &* ldc, va, vb, beta)
        return
    }
    vstore(c0, tile); vstore(c1, tile + 64); vstore(c2, tile + 128)
    vstore(c3, tile + 192); vstore(c4, tile + 256); vstore(c5, tile + 320)
    storeTilePart(tile, c, ldc: ldc, rows: rows, cols: cols, alpha: alpha, beta: beta)
}
