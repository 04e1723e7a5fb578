// Packing of op(A) and op(B) into the panel layouts the micro-kernel streams through.

extension GEMMProblem {
    /// dst[p·mr + r] = op(A)[i0 + r, p0 + p] for p in 0..<kc, r in 0..<mr; rows ≥ `rows` are zero.
    /// With `sums`, also rowSums[i0 + r] += op(A)[i0 + r, p0 + p] for each p in order (see `sgemm`).
    @inline(__always)
    func packA(_ i0: Int, _ rows: Int, _ p0: Int, _ kc: Int, _ dst: UnsafeMutablePointer<Float>, sums: Bool) {
        let mr = GEMM.mr
        if transA && rows == mr {
            // op(A)[i, p] = a[p·lda + i]: mr contiguous floats per step, copied as 4 + 2.
            var src = UnsafeRawPointer(a + p0 * lda + i0), d = UnsafeMutableRawPointer(dst)
            let srcStride = lda * MemoryLayout<Float>.stride, dstStride = mr * MemoryLayout<Float>.stride
            if sums, let rowSums {
                // The same copies, each lane adding its row's values in order (a weight gradient's bias gradient).
                let out = UnsafeMutableRawPointer(rowSums + i0)
                var s4 = out.loadUnaligned(as: SIMD4<Float>.self)
                var s2 = out.loadUnaligned(fromByteOffset: 16, as: SIMD2<Float>.self)
                for _ in 0..<kc {
                    let v4 = src.loadUnaligned(as: SIMD4<Float>.self)
                    let v2 = src.loadUnaligned(fromByteOffset: 16, as: SIMD2<Float>.self)
                    d.storeBytes(of: v4, as: SIMD4<Float>.self)
                    d.storeBytes(of: v2, toByteOffset: 16, as: SIMD2<Float>.self)
                    s4 += v4; s2 += v2
                    src += srcStride; d += dstStride
                }
                out.storeBytes(of: s4, as: SIMD4<Float>.self)
                out.storeBytes(of: s2, toByteOffset: 16, as: SIMD2<Float>.self)
                return
            }
            for _ in 0..<kc {
                d.storeBytes(of: src.loadUnaligned(as: SIMD4<Float>.self), as: SIMD4<Float>.self)
                d.storeBytes(
                    of: src.loadUnaligned(fromByteOffset: 16, as: SIMD2<Float>.self), toByteOffset: 16,
                    as: SIMD2<Float>.self)
                src += srcStride; d += dstStride
            }
            return
        }
        defer {
            // The other layouts: the sums read back from the packed panel, in the same order.
            if sums, let rowSums {
                for r in 0..<rows {
                    var acc = rowSums[i0 + r]
                    for p in 0..<kc { acc += dst[p * mr + r] }
                    rowSums[i0 + r] = acc
                }
            }
        }
        if transA {
            // op(A)[i, p] = a[p·lda + i]: a partial panel, zero-padded.
            for p in 0..<kc {
                let src = a + (p0 + p) * lda + i0, d = dst + p * mr
                for r in 0..<rows { d[r] = src[r] }
                for r in rows..<mr { d[r] = 0 }
            }
        } else if rows == mr {
            // op(A)[i, p] = a[i·lda + p]: six row streams.
            let r0 = a + i0 * lda + p0, r1 = r0 + lda, r2 = r1 + lda, r3 = r2 + lda, r4 = r3 + lda, r5 = r4 + lda
            var d = dst
            for p in 0..<kc {
                d[0] = r0[p]; d[1] = r1[p]; d[2] = r2[p]; d[3] = r3[p]; d[4] = r4[p]; d[5] = r5[p]
                d += 6
            }
        } else {
            for p in 0..<kc {
                let d = dst + p * mr
                for r in 0..<rows { d[r] = a[(i0 + r) * lda + p0 + p] }
                for r in rows..<mr { d[r] = 0 }
            }
        }
    }

    /// dst[p·nr + j] = op(B)[p0 + p, j0 + j] for p in 0..<kc, j in 0..<nr; columns ≥ `cols` are zero.
    @inline(__always)
    func packB(_ j0: Int, _ cols: Int, _ p0: Int, _ kc: Int, _ dst: UnsafeMutablePointer<Float>) {
        let nr = GEMM.nr
        if !transB {
            // op(B)[p, j] = b[p·ldb + j]: a contiguous row segment per step.
            let vecCols = cols & ~15
            for p in 0..<kc {
                let src = b + (p0 + p) * ldb + j0, d = dst + p * nr
                var j = 0
                while j < vecCols {
                    UnsafeMutableRawPointer(d + j).storeBytes(
                        of: UnsafeRawPointer(src + j).loadUnaligned(as: SIMD16<Float>.self), as: SIMD16<Float>.self)
                    j &+= 16
                }
                while j < cols { d[j] = src[j]; j &+= 1 }
                while j < nr { d[j] = 0; j &+= 1 }
            }
        } else {
            // op(B)[p, j] = b[j·ldb + p]: 16 × 16 blocks transposed in registers, the edges one
            // element at a time (a source row read contiguously, a column written).
            let vecCols = cols & ~15, vecDepth = kc & ~15
            var j = 0
            while j < vecCols {
                var p = 0
                while p < vecDepth {
                    transpose16x16(b + (j0 + j) * ldb + p0 + p, lds: ldb, dst + p * nr + j, ldd: nr)
                    p &+= 16
                }
                j &+= 16
            }
            for j in 0..<cols {
                let src = b + (j0 + j) * ldb + p0
                let first = j < vecCols ? vecDepth : 0  // the depths the tiles did not cover
                var d = dst + first * nr + j
                for p in first..<kc { d[0] = src[p]; d += nr }
            }
            if cols < nr {
                for p in 0..<kc { (dst + p * nr + cols).update(repeating: 0, count: nr - cols) }
            }
        }
    }
}
