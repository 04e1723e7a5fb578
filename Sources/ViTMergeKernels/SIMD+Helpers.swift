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

/// The first n (≤ 16) floats at p, the other lanes 0.
@inline(__always) func loadPartial(_ p: UnsafePointer<Float>, _ n: Int) -> V16 {
    if n == 16 { return vload(p) }
    var v = V16()
    for j in 0..<n { v[j] = p[j] }
    return v
}
/// Stores the first n (≤ 16) lanes of v at p.
@inline(__always) func storePartial(_ v: V16, _ p: UnsafeMutablePointer<Float>, _ n: Int) {
    if n == 16 { vstore(v, p); return }
    for j in 0..<n { p[j] = v[j] }
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
