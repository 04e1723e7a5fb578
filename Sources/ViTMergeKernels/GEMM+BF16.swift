// The bfloat16 path of the packed SGEMM (`--precision bf16`): op(A) and op(B) are rounded to
// bfloat16 as they are packed, two consecutive depths per 32-bit word, and the micro-kernel sums
// their products in FP32 with vdpbf16ps (AVX512_BF16), 32 multiply-adds per instruction against
// the FP32 kernel's 16. C, alpha, beta and the row sums stay FP32; so do the master weights, which
// are only rounded on their way into a product.
import CSleef
import ViTMergeCore

extension GEMM {
    /// The arithmetic of `sgemm`'s products.
    public enum Precision: String, Sendable, CaseIterable {
        /// Single precision throughout: the reference path.
        case fp32
        /// Inputs rounded to bfloat16 (to nearest, ties to even) while packing; FP32 sums.
        case bf16
    }

    /// Whether this build and this CPU can run `.bf16`: both need AVX512_BF16.
    public static let bf16Supported = vm_build_has_bf16() != 0 && vm_cpu_has_avx512bf16() != 0 && nr == 64

    /// The precision `sgemm` uses when its caller names none: fp32 unless set (the CLI's
    /// `--precision`), for the whole process. `sgemmBatched` (attention's products) stays FP32.
    nonisolated(unsafe) public static var precision: Precision = .fp32 {
        didSet {
            precondition(
                precision == .fp32 || bf16Supported, "GEMM.precision bf16 needs AVX512_BF16 (check GEMM.bf16Supported)")
        }
    }

    /// Depth of one packed panel in bf16 (the same bytes as `kc` floats: kc pairs of bfloat16).
    static let kcBF16 = 2 * kc
}

/// x rounded to bfloat16 (to nearest, ties to even) as the upper half of FP32 bits, the lower half
/// zero. NaNs stay NaN (made quiet, so rounding cannot carry them into infinity).
@inline(__always)
func bf16High(_ x: Float) -> UInt32 {
    let bits = x.bitPattern
    if bits & 0x7FFF_FFFF > 0x7F80_0000 { return (bits | 0x0040_0000) & 0xFFFF_0000 }
    return (bits &+ 0x7FFF &+ ((bits &>> 16) & 1)) & 0xFFFF_0000
}

/// `bf16High` on 16 lanes.
@inline(__always)
func bf16High(_ x: SIMD16<Float>) -> SIMD16<UInt32> {
    let bits = unsafeBitCast(x, to: SIMD16<UInt32>.self)
    // Integer arithmetic only (a lane comparison compiled to a scalar loop): nan is 1 in NaN lanes,
    // which get their quiet bit and no rounding increment.
    let nan = ((bits & 0x7FFF_FFFF) &+ 0x007F_FFFF) &>> 31
    let increment = (0x7FFF &+ ((bits &>> 16) & 1)) & (nan &- 1)
    return ((bits | (nan &<< 22)) &+ increment) & 0xFFFF_0000
}

/// `bf16High` on 8 lanes (the 16-lane one on a zero-padded vector).
@inline(__always)
func bf16High(_ x: SIMD8<Float>) -> SIMD8<UInt32> {
    bf16High(SIMD16(lowHalf: x, highHalf: .zero)).lowHalf
}

/// 16 consecutive depths, rounded (`bf16High`), as 8 words of two bfloat16 each (even depth low).
@inline(__always)
func bf16Pairs(_ high: SIMD16<UInt32>) -> SIMD8<UInt32> {
    unsafeBitCast(SIMD16<UInt16>(truncatingIfNeeded: high &>> 16), to: SIMD8<UInt32>.self)
}

/// The word of two bfloat16 for depths p (low) and p + 1 (high, zero when p + 1 is past the panel).
@inline(__always)
func bf16Word(_ lo: Float, _ hi: Float?) -> UInt32 {
    (bf16High(lo) &>> 16) | (hi.map(bf16High) ?? 0)
}

extension GEMMProblem {
    /// dst[q·mr + r] = the word of op(A)[i0 + r, p0 + 2q] and op(A)[i0 + r, p0 + 2q + 1] for q in
    /// 0..<(kc + 1)/2; rows ≥ `rows` and a missing last depth are zero. With `sums`, the FP32 values
    /// are added to rowSums in k order, as `packA` does.
    @inline(__always)
    func packABF16(_ i0: Int, _ rows: Int, _ p0: Int, _ kc: Int, _ dst: UnsafeMutablePointer<UInt32>, sums: Bool) {
        let mr = GEMM.mr, pairs = (kc + 1) / 2
        if transA && rows == mr {
            // op(A)[i, p] = a[p·lda + i]: the six rows of depths p and p + 1 are two contiguous runs.
            @inline(__always) func load6(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
                SIMD8(
                    lowHalf: UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self), highHalf: SIMD4(p[4], p[5], 0, 0)
                )
            }
            @inline(__always) func store6(_ w: SIMD8<UInt32>, _ d: UnsafeMutablePointer<UInt32>) {
                UnsafeMutableRawPointer(d).storeBytes(of: w.lowHalf, as: SIMD4<UInt32>.self)
                UnsafeMutableRawPointer(d + 4).storeBytes(of: w.highHalf.lowHalf, as: SIMD2<UInt32>.self)
            }
            let keep = sums && rowSums != nil
            var s = SIMD8<Float>()
            if keep, let rowSums { s = load6(rowSums + i0) }
            var src = a + p0 * lda + i0, d = dst
            for _ in 0..<(kc / 2) {
                let x0 = load6(src), x1 = load6(src + lda)
                if keep { s += x0; s += x1 }
                store6((bf16High(x0) &>> 16) | bf16High(x1), d)
                src += 2 * lda; d += mr
            }
            if kc % 2 == 1 {
                let x0 = load6(src)
                if keep { s += x0 }
                store6(bf16High(x0) &>> 16, d)
            }
            if keep, let rowSums { for r in 0..<mr { rowSums[i0 + r] = s[r] } }
            return
        }
        if sums, let rowSums {
            for r in 0..<rows {
                var acc = rowSums[i0 + r]
                for p in 0..<kc { acc += transA ? a[(p0 + p) * lda + i0 + r] : a[(i0 + r) * lda + p0 + p] }
                rowSums[i0 + r] = acc
            }
        }
        if !transA && rows == mr {
            // op(A)[i, p] = a[i·lda + p]: each row's consecutive depths round into words 8 at a time.
            for r in 0..<mr {
                let src = a + (i0 + r) * lda + p0
                var q = 0
                while 2 * q + 16 <= kc {
                    let w = bf16Pairs(bf16High(UnsafeRawPointer(src + 2 * q).loadUnaligned(as: SIMD16<Float>.self)))
                    for t in 0..<8 { dst[(q + t) * mr + r] = w[t] }
                    q += 8
                }
                while q < pairs {
                    dst[q * mr + r] = bf16Word(src[2 * q], 2 * q + 1 < kc ? src[2 * q + 1] : nil)
                    q += 1
                }
            }
            return
        }
        for q in 0..<pairs {
            let p = p0 + 2 * q, d = dst + q * mr
            for r in 0..<mr {
                if r >= rows { d[r] = 0; continue }
                let i = i0 + r
                let lo = transA ? a[p * lda + i] : a[i * lda + p]
                let hi = 2 * q + 1 < kc ? (transA ? a[(p + 1) * lda + i] : a[i * lda + p + 1]) : nil
                d[r] = bf16Word(lo, hi)
            }
        }
    }

    /// dst[q·nr + j] = the word of op(B)[p0 + 2q, j0 + j] and op(B)[p0 + 2q + 1, j0 + j] for q in
    /// 0..<(kc + 1)/2, j in 0..<nr; columns ≥ `cols` and a missing last depth are zero.
    @inline(__always)
    func packBBF16(_ j0: Int, _ cols: Int, _ p0: Int, _ kc: Int, _ dst: UnsafeMutablePointer<UInt32>) {
        let nr = GEMM.nr, pairs = (kc + 1) / 2
        if !transB {
            // op(B)[p, j] = b[p·ldb + j]: two row segments make one row of words.
            let vecCols = cols & ~15
            for q in 0..<pairs {
                let r0 = b + (p0 + 2 * q) * ldb + j0, hasHi = 2 * q + 1 < kc, d = dst + q * nr
                var j = 0
                while j < vecCols {
                    let lo = bf16High(UnsafeRawPointer(r0 + j).loadUnaligned(as: SIMD16<Float>.self)) &>> 16
                    let hi =
                        hasHi ? bf16High(UnsafeRawPointer(r0 + ldb + j).loadUnaligned(as: SIMD16<Float>.self)) : .zero
                    UnsafeMutableRawPointer(d + j).storeBytes(of: lo | hi, as: SIMD16<UInt32>.self)
                    j &+= 16
                }
                while j < cols { d[j] = bf16Word(r0[j], hasHi ? r0[ldb + j] : nil); j &+= 1 }
                while j < nr { d[j] = 0; j &+= 1 }
            }
        } else {
            // op(B)[p, j] = b[j·ldb + p]: consecutive depths are adjacent, rounded into words 8 at a time.
            for j in 0..<cols {
                let src = b + (j0 + j) * ldb + p0
                var q = 0
                while 2 * q + 16 <= kc {
                    let w = bf16Pairs(bf16High(UnsafeRawPointer(src + 2 * q).loadUnaligned(as: SIMD16<Float>.self)))
                    for t in 0..<8 { dst[(q + t) * nr + j] = w[t] }
                    q += 8
                }
                while q < pairs {
                    dst[q * nr + j] = bf16Word(src[2 * q], 2 * q + 1 < kc ? src[2 * q + 1] : nil)
                    q += 1
                }
            }
            if cols < nr {
                for q in 0..<pairs { (dst + q * nr + cols).update(repeating: 0, count: nr - cols) }
            }
        }
    }
}

/// tile[6,64] = Σ_q Σ_{h∈lo,hi} a[q,0..<6].h ⊗ b[q,0..<64].h over `pairs` packed word rows
/// (a: 6 words per pair of depths, b: 64 words). Overwrites tile.
@inline(__always)
func microKernel6x64BF16(
    _ pairs: Int, _ a: UnsafePointer<UInt32>, _ b: UnsafePointer<UInt32>, _ tile: UnsafeMutablePointer<Float>
) {
    var c00 = SIMD16<Float>(), c01 = SIMD16<Float>(), c02 = SIMD16<Float>(), c03 = SIMD16<Float>()
    var c10 = SIMD16<Float>(), c11 = SIMD16<Float>(), c12 = SIMD16<Float>(), c13 = SIMD16<Float>()
    var c20 = SIMD16<Float>(), c21 = SIMD16<Float>(), c22 = SIMD16<Float>(), c23 = SIMD16<Float>()
    var c30 = SIMD16<Float>(), c31 = SIMD16<Float>(), c32 = SIMD16<Float>(), c33 = SIMD16<Float>()
    var c40 = SIMD16<Float>(), c41 = SIMD16<Float>(), c42 = SIMD16<Float>(), c43 = SIMD16<Float>()
    var c50 = SIMD16<Float>(), c51 = SIMD16<Float>(), c52 = SIMD16<Float>(), c53 = SIMD16<Float>()
    var pa = a, pb = UnsafeRawPointer(b)
    for _ in 0..<pairs {
        let b0 = pb.loadUnaligned(fromByteOffset: 0, as: SIMD16<UInt32>.self)
        let b1 = pb.loadUnaligned(fromByteOffset: 64, as: SIMD16<UInt32>.self)
        let b2 = pb.loadUnaligned(fromByteOffset: 128, as: SIMD16<UInt32>.self)
        let b3 = pb.loadUnaligned(fromByteOffset: 192, as: SIMD16<UInt32>.self)
        let a0 = SIMD16<UInt32>(repeating: pa[0])
        c00 = vm_dpbf16(c00, a0, b0); c01 = vm_dpbf16(c01, a0, b1); c02 = vm_dpbf16(c02, a0, b2);
        c03 = vm_dpbf16(c03, a0, b3)
        let a1 = SIMD16<UInt32>(repeating: pa[1])
        c10 = vm_dpbf16(c10, a1, b0); c11 = vm_dpbf16(c11, a1, b1); c12 = vm_dpbf16(c12, a1, b2);
        c13 = vm_dpbf16(c13, a1, b3)
        let a2 = SIMD16<UInt32>(repeating: pa[2])
        c20 = vm_dpbf16(c20, a2, b0); c21 = vm_dpbf16(c21, a2, b1); c22 = vm_dpbf16(c22, a2, b2);
        c23 = vm_dpbf16(c23, a2, b3)
        let a3 = SIMD16<UInt32>(repeating: pa[3])
        c30 = vm_dpbf16(c30, a3, b0); c31 = vm_dpbf16(c31, a3, b1); c32 = vm_dpbf16(c32, a3, b2);
        c33 = vm_dpbf16(c33, a3, b3)
        let a4 = SIMD16<UInt32>(repeating: pa[4])
        c40 = vm_dpbf16(c40, a4, b0); c41 = vm_dpbf16(c41, a4, b1); c42 = vm_dpbf16(c42, a4, b2);
        c43 = vm_dpbf16(c43, a4, b3)
        let a5 = SIMD16<UInt32>(repeating: pa[5])
        c50 = vm_dpbf16(c50, a5, b0); c51 = vm_dpbf16(c51, a5, b1); c52 = vm_dpbf16(c52, a5, b2);
        c53 = vm_dpbf16(c53, a5, b3)
        pa += 6; pb += 256
    }
    storeTileRow(tile, 0, c00, c01, c02, c03); storeTileRow(tile, 1, c10, c11, c12, c13)
    storeTileRow(tile, 2, c20, c21, c22, c23); storeTileRow(tile, 3, c30, c31, c32, c33)
    storeTileRow(tile, 4, c40, c41, c42, c43); storeTileRow(tile, 5, c50, c51, c52, c53)
}
