// Micro-kernels of the packed SGEMM (generated layout: 6 rows × NR columns of accumulators).
// 6×64 keeps 24 zmm accumulators on AVX-512; 6×16 keeps 12 ymm accumulators on AVX2 builds.

/// tile[6,64] = Σ_p a[p,0..<6] ⊗ b[p,0..<64] over kc steps of packed panels
/// (a: 6 floats per step, b: 64 floats per step). Overwrites tile.
@inline(__always)
func microKernel6x64(
    _ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ tile: UnsafeMutablePointer<Float>
) {
    var c00 = SIMD16<Float>(), c01 = SIMD16<Float>(), c02 = SIMD16<Float>(), c03 = SIMD16<Float>()
    var c10 = SIMD16<Float>(), c11 = SIMD16<Float>(), c12 = SIMD16<Float>(), c13 = SIMD16<Float>()
    var c20 = SIMD16<Float>(), c21 = SIMD16<Float>(), c22 = SIMD16<Float>(), c23 = SIMD16<Float>()
    var c30 = SIMD16<Float>(), c31 = SIMD16<Float>(), c32 = SIMD16<Float>(), c33 = SIMD16<Float>()
    var c40 = SIMD16<Float>(), c41 = SIMD16<Float>(), c42 = SIMD16<Float>(), c43 = SIMD16<Float>()
    var c50 = SIMD16<Float>(), c51 = SIMD16<Float>(), c52 = SIMD16<Float>(), c53 = SIMD16<Float>()
    var pa = a, pb = UnsafeRawPointer(b)
    for _ in 0..<kc {
        let b0 = pb.loadUnaligned(fromByteOffset: 0, as: SIMD16<Float>.self)
        let b1 = pb.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self)
        let b2 = pb.loadUnaligned(fromByteOffset: 128, as: SIMD16<Float>.self)
        let b3 = pb.loadUnaligned(fromByteOffset: 192, as: SIMD16<Float>.self)
        let a0 = SIMD16<Float>(repeating: pa[0])
        c00.addProduct(a0, b0); c01.addProduct(a0, b1); c02.addProduct(a0, b2); c03.addProduct(a0, b3)
        let a1 = SIMD16<Float>(repeating: pa[1])
        c10.addProduct(a1, b0); c11.addProduct(a1, b1); c12.addProduct(a1, b2); c13.addProduct(a1, b3)
        let a2 = SIMD16<Float>(repeating: pa[2])
        c20.addProduct(a2, b0); c21.addProduct(a2, b1); c22.addProduct(a2, b2); c23.addProduct(a2, b3)
        let a3 = SIMD16<Float>(repeating: pa[3])
        c30.addProduct(a3, b0); c31.addProduct(a3, b1); c32.addProduct(a3, b2); c33.addProduct(a3, b3)
        let a4 = SIMD16<Float>(repeating: pa[4])
        c40.addProduct(a4, b0); c41.addProduct(a4, b1); c42.addProduct(a4, b2); c43.addProduct(a4, b3)
        let a5 = SIMD16<Float>(repeating: pa[5])
        c50.addProduct(a5, b0); c51.addProduct(a5, b1); c52.addProduct(a5, b2); c53.addProduct(a5, b3)
        pa += 6; pb += 256
    }
    storeTileRow(tile, 0, c00, c01, c02, c03); storeTileRow(tile, 1, c10, c11, c12, c13)
    storeTileRow(tile, 2, c20, c21, c22, c23); storeTileRow(tile, 3, c30, c31, c32, c33)
    storeTileRow(tile, 4, c40, c41, c42, c43); storeTileRow(tile, 5, c50, c51, c52, c53)
}

/// Row `row` of a 6×64 tile: four 16-lane accumulators side by side.
@inline(__always)
func storeTileRow(
    _ tile: UnsafeMutablePointer<Float>, _ row: Int, _ v0: SIMD16<Float>, _ v1: SIMD16<Float>, _ v2: SIMD16<Float>,
    _ v3: SIMD16<Float>
) {
    let t = UnsafeMutableRawPointer(tile + 64 * row)
    t.storeBytes(of: v0, toByteOffset: 0, as: SIMD16<Float>.self)
    t.storeBytes(of: v1, toByteOffset: 64, as: SIMD16<Float>.self)
    t.storeBytes(of: v2, toByteOffset: 128, as: SIMD16<Float>.self)
    t.storeBytes(of: v3, toByteOffset: 192, as: SIMD16<Float>.self)
}

/// tile[6,16] = Σ_p a[p,0..<6] ⊗ b[p,0..<16] over kc steps of packed panels
/// (a: 6 floats per step, b: 16 floats per step). Overwrites tile.
/// The AVX2 kernel: 12 ymm accumulators, written as SIMD8 pairs and kept out of line. As SIMD16,
/// or inlined into the macro-kernel, LLVM rotated the accumulators through copies and stack
/// spills: 62–73% of the FMA peak instead of 93–96% (timed alone on an AVX2-only AMD EPYC).
@inline(never)
func microKernel6x16(
    _ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ tile: UnsafeMutablePointer<Float>
) {
    var c00 = SIMD8<Float>(), c01 = SIMD8<Float>()
    var c10 = SIMD8<Float>(), c11 = SIMD8<Float>()
    var c20 = SIMD8<Float>(), c21 = SIMD8<Float>()
    var c30 = SIMD8<Float>(), c31 = SIMD8<Float>()
    var c40 = SIMD8<Float>(), c41 = SIMD8<Float>()
    var c50 = SIMD8<Float>(), c51 = SIMD8<Float>()
    var pa = a, pb = UnsafeRawPointer(b)
    for _ in 0..<kc {
        let b0 = pb.loadUnaligned(fromByteOffset: 0, as: SIMD8<Float>.self)
        let b1 = pb.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self)
        let a0 = SIMD8<Float>(repeating: pa[0]); c00.addProduct(a0, b0); c01.addProduct(a0, b1)
        let a1 = SIMD8<Float>(repeating: pa[1]); c10.addProduct(a1, b0); c11.addProduct(a1, b1)
        let a2 = SIMD8<Float>(repeating: pa[2]); c20.addProduct(a2, b0); c21.addProduct(a2, b1)
        let a3 = SIMD8<Float>(repeating: pa[3]); c30.addProduct(a3, b0); c31.addProduct(a3, b1)
        let a4 = SIMD8<Float>(repeating: pa[4]); c40.addProduct(a4, b0); c41.addProduct(a4, b1)
        let a5 = SIMD8<Float>(repeating: pa[5]); c50.addProduct(a5, b0); c51.addProduct(a5, b1)
        pa += 6; pb += 64
    }
    let t = UnsafeMutableRawPointer(tile)
    t.storeBytes(of: c00, toByteOffset: 0, as: SIMD8<Float>.self);
    t.storeBytes(of: c01, toByteOffset: 32, as: SIMD8<Float>.self)
    t.storeBytes(of: c10, toByteOffset: 64, as: SIMD8<Float>.self);
    t.storeBytes(of: c11, toByteOffset: 96, as: SIMD8<Float>.self)
    t.storeBytes(of: c20, toByteOffset: 128, as: SIMD8<Float>.self);
    t.storeBytes(of: c21, toByteOffset: 160, as: SIMD8<Float>.self)
    t.storeBytes(of: c30, toByteOffset: 192, as: SIMD8<Float>.self);
    t.storeBytes(of: c31, toByteOffset: 224, as: SIMD8<Float>.self)
    t.storeBytes(of: c40, toByteOffset: 256, as: SIMD8<Float>.self);
    t.storeBytes(of: c41, toByteOffset: 288, as: SIMD8<Float>.self)
    t.storeBytes(of: c50, toByteOffset: 320, as: SIMD8<Float>.self);
    t.storeBytes(of: c51, toByteOffset: 352, as: SIMD8<Float>.self)
}
