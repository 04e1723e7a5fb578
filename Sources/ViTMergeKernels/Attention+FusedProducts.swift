import Foundation
import ViTMergeCore

// The building blocks of the fused attention (Attention+Fused.swift): B operands packed once over
// the full depth, the per-thread workspace, and micro-kernels that read A in place.

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
            packA(i0, rows, 0, k, aPack, sums: false)
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
