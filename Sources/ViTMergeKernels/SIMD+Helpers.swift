import CSleef

/// The one home of the SIMD load/store and lane helpers every kernel uses. Concrete types only:
/// SIMDn<Float> operations are vector instructions only when called on the concrete type (generic
/// code gets the protocol's lane-by-lane default, a scalar loop).

typealias V16 = SIMD16<Float>

/// 16 floats from p (any alignment).
@inline(__always) func vload(_ p: UnsafePointer<Float>) -> V16 { UnsafeRawPointer(p).loadUnaligned(as: V16.self) }
@inline(__always) func vload(_ p: UnsafeMutablePointer<Float>) -> V16 {
    UnsafeRawPointer(p).loadUnaligned(as: V16.self)
}
/// Stores 16 floats at p (any alignment).
@inline(__always) func vstore(_ v: V16, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: V16.self)
}

/// Double lanes for the linear-algebra kernels (SVD, eigen, Cholesky accumulate in Double).
typealias D8 = SIMD8<Double>

/// 8 doubles from p (any alignment).
@inline(__always) func dload(_ p: UnsafeMutablePointer<Double>) -> D8 {
    UnsafeRawPointer(p).loadUnaligned(as: D8.self)
}
/// Stores 8 doubles at p (any alignment).
@inline(__always) func dstore(_ v: D8, _ p: UnsafeMutablePointer<Double>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: D8.self)
}

/// The first n (0...16) floats at p, the other lanes `fill`; reads nothing past p + n (a masked
/// load from the shim: inserting lanes one by one in Swift is a loop of scalar moves).
@inline(__always) func loadPartial(_ p: UnsafePointer<Float>, _ n: Int, fill: Float = 0) -> V16 {
    if n == 16 { return vload(p) }
    return vm_load_partial16(p, Int32(truncatingIfNeeded: n), fill)
}
/// Stores the first n (0...16) lanes of v at p; writes nothing past p + n (a masked store).
@inline(__always) func storePartial(_ v: V16, _ p: UnsafeMutablePointer<Float>, _ n: Int) {
    if n == 16 { vstore(v, p); return }
    vm_store_partial16(p, v, Int32(truncatingIfNeeded: n))
}

/// Lane-wise maximum / minimum as compare + blend (vcmpps, vblendmps). The standard library's
/// generic `pointwiseMax`/`pointwiseMin` follow IEEE maximum's NaN rules and can compile to a
/// scalar loop over the lanes (8× slower in softmax). A NaN in `a` is kept, so NaNs propagate.
@inline(__always) func vmax(_ a: SIMD16<Float>, _ b: SIMD16<Float>) -> SIMD16<Float> {
    a.replacing(with: b, where: a .< b)
}
@inline(__always) func vmin(_ a: SIMD16<Float>, _ b: SIMD16<Float>) -> SIMD16<Float> {
    a.replacing(with: b, where: b .< a)
}
@inline(__always) func vmax(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
    a.replacing(with: b, where: a .< b)
}
@inline(__always) func vmax(_ a: SIMD4<Float>, _ b: SIMD4<Float>) -> SIMD4<Float> {
    a.replacing(with: b, where: a .< b)
}
@inline(__always) func vmax(_ a: SIMD2<Float>, _ b: SIMD2<Float>) -> SIMD2<Float> {
    a.replacing(with: b, where: a .< b)
}

/// The maximum of the 16 lanes as a tree of compare + blend (max is exact in any order;
/// `SIMD16.max()` compiles to a scalar loop).
@inline(__always) func hmax(_ v: SIMD16<Float>) -> Float {
    let h8 = vmax(v.lowHalf, v.highHalf), h4 = vmax(h8.lowHalf, h8.highHalf), h2 = vmax(h4.lowHalf, h4.highHalf)
    return max(h2[0], h2[1])
}

/// Sixteen 16-float rows held in registers, for `transpose16x16`.
typealias Rows16 = (V16, V16, V16, V16, V16, V16, V16, V16, V16, V16, V16, V16, V16, V16, V16, V16)

/// One perfect-shuffle step of `transpose16x16`: out[2m] = the even lanes of r[m] then of r[m + 8],
/// out[2m + 1] the odd ones (`evenHalf`/`oddHalf` of concrete SIMD16 become two-source permutes).
@inline(__always) func perfectShuffle(_ r: Rows16) -> Rows16 {
    @inline(__always) func even(_ a: V16, _ b: V16) -> V16 { V16(lowHalf: a.evenHalf, highHalf: b.evenHalf) }
    @inline(__always) func odd(_ a: V16, _ b: V16) -> V16 { V16(lowHalf: a.oddHalf, highHalf: b.oddHalf) }
    return (
        even(r.0, r.8), odd(r.0, r.8), even(r.1, r.9), odd(r.1, r.9), even(r.2, r.10), odd(r.2, r.10),
        even(r.3, r.11), odd(r.3, r.11), even(r.4, r.12), odd(r.4, r.12), even(r.5, r.13), odd(r.5, r.13),
        even(r.6, r.14), odd(r.6, r.14), even(r.7, r.15), odd(r.7, r.15)
    )
}

/// dst[j·ldd + i] = src[i·lds + j] for i, j in 0..<16, in registers. A perfect shuffle moves the
/// row index's bits up by one and the column's lowest bit in below them, so four of them transpose
/// the 16 × 16 block with both indices bit-reversed: rows are read, and written, in bit-reversed
/// order (0, 8, 4, 12, …) to undo that.
@inline(__always)
func transpose16x16(_ src: UnsafePointer<Float>, lds: Int, _ dst: UnsafeMutablePointer<Float>, ldd: Int) {
    let s = src, l = lds
    var r: Rows16 = (
        vload(s), vload(s + 8 &* l), vload(s + 4 &* l), vload(s + 12 &* l), vload(s + 2 &* l), vload(s + 10 &* l),
        vload(s + 6 &* l), vload(s + 14 &* l), vload(s + l), vload(s + 9 &* l), vload(s + 5 &* l),
        vload(s + 13 &* l), vload(s + 3 &* l), vload(s + 11 &* l), vload(s + 7 &* l), vload(s + 15 &* l)
    )
    r = perfectShuffle(perfectShuffle(perfectShuffle(perfectShuffle(r))))
    let d = dst, m = ldd
    vstore(r.0, d); vstore(r.1, d + 8 &* m); vstore(r.2, d + 4 &* m); vstore(r.3, d + 12 &* m)
    vstore(r.4, d + 2 &* m); vstore(r.5, d + 10 &* m); vstore(r.6, d + 6 &* m); vstore(r.7, d + 14 &* m)
    vstore(r.8, d + m); vstore(r.9, d + 9 &* m); vstore(r.10, d + 5 &* m); vstore(r.11, d + 13 &* m)
    vstore(r.12, d + 3 &* m); vstore(r.13, d + 11 &* m); vstore(r.14, d + 7 &* m); vstore(r.15, d + 15 &* m)
}

/// exp of 16 lanes, inline: SLEEF's `expf_u10` (1.0 ULP) operation for operation, so the bits are
/// those of `vm_expf16` (the test checks 2.2 M floats across the range and the edges; a one-off run checked all
/// 2³² floats). x·log₂e rounded to the nearest integer q (the 1.5·2²³ addition rounds to even as
/// `vcvtps2dq` does, exactly for |x·log₂e| < 2²²; beyond that the clamps below decide), s = x − q·ln2
/// in two steps, a degree-6 polynomial, then ·2^q as two powers of two (q may reach ±150); lanes
/// below −104 are 0, above 100 +∞, and NaN stays NaN. Being inline lets the compiler interleave
/// independent vectors, which the out-of-line call does not.
@_transparent func exp16(_ x: V16) -> V16 {
    let magic = V16(repeating: 12_582_912)  // 1.5·2²³
    let rounded = x * V16(repeating: 1.442_695_0216) + magic
    let q = unsafeBitCast(rounded, to: SIMD16<Int32>.self) &- unsafeBitCast(magic, to: SIMD16<Int32>.self)
    let qf = rounded - magic
    var s = x.addingProduct(qf, V16(repeating: -0.693_145_751_953_125))
    s = s.addingProduct(qf, V16(repeating: -1.428_606_765_330_187_045_e-06))
    var u = V16(repeating: 0.000_198_527_617_612_853_646_278_381)
    u = V16(repeating: 0.001_393_043_552_525_341_510_772_71).addingProduct(u, s)
    u = V16(repeating: 0.008_333_360_776_305_198_669_433_59).addingProduct(u, s)
    u = V16(repeating: 0.041_666_485_369_205_474_853_515_6).addingProduct(u, s)
    u = V16(repeating: 0.166_666_671_633_720_397_949_219).addingProduct(u, s)
    u = V16(repeating: 0.5).addingProduct(u, s)
    u = s.addingProduct(s * s, u) + V16(repeating: 1)
    let one = SIMD16<Int32>(repeating: 0x3F80_0000), q1 = q &>> 1, q2 = q &- q1
    u *= unsafeBitCast((q1 &<< 23) &+ one, to: V16.self)
    u *= unsafeBitCast((q2 &<< 23) &+ one, to: V16.self)
    u = u.replacing(with: 0, where: x .< V16(repeating: -104))
    return u.replacing(with: .infinity, where: V16(repeating: 100) .< x)
}
