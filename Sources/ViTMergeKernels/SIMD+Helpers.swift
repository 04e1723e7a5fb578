import ViTMergeCore

typealias V16 = SIMD16<Float>

@inline(__always) func vload(_ p: UnsafePointer<Float>) -> V16 { UnsafeRawPointer(p).loadUnaligned(as: V16.self) }
@inline(__always) func vload(_ p: UnsafeMutablePointer<Float>) -> V16 {
    UnsafeRawPointer(p).loadUnaligned(as: V16.self)
}
@inline(__always) func vstore(_ v: V16, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: V16.self)
}

/// Elements below which an elementwise kernel stays on the calling thread (the pool costs ~1 µs).
let elementwiseGrain = 1 << 15

extension ThreadPool {
    /// Runs `body` over contiguous element ranges of 0..<count, split in multiples of 16.
    @inline(__always)
    func forEachRange(_ count: Int, grain: Int = elementwiseGrain, _ body: (Range<Int>) -> Void) {
        let nth = min(threads, max(1, count / grain))
        if nth == 1 { body(0..<count); return }
        let blocks = (count + 15) / 16
        run(threads: nth) { ith, nth in
            let r = ThreadPool.split(blocks, ith, nth)
            let lo = r.lowerBound * 16, hi = min(count, r.upperBound * 16)
            if lo < hi { body(lo..<hi) }
        }
    }

    /// Runs `body` over column ranges (multiples of 16) of a `cols`-wide matrix with `rows` rows,
    /// for column reductions whose order must not depend on the thread count.
    @inline(__always)
    func forEachColumnRange(rows: Int, cols: Int, _ body: (Range<Int>) -> Void) {
        let blocks = (cols + 15) / 16
        let nth = rows * cols < elementwiseGrain ? 1 : min(threads, blocks)
        if nth == 1 { body(0..<cols); return }
        run(threads: nth) { ith, nth in
            let r = ThreadPool.split(blocks, ith, nth)
            let lo = r.lowerBound * 16, hi = min(cols, r.upperBound * 16)
            if lo < hi { body(lo..<hi) }
        }
    }
}

/// Lane-wise maximum / minimum as compare + blend (vcmpps, vblendmps). The standard library's
/// generic `pointwiseMax`/`pointwiseMin` follow IEEE maximum's NaN rules and can compile to a
/// scalar loop over the lanes (8× slower in softmax). Concrete types only: the comparisons of
/// SIMDn<Float> are vector instructions only when called on the concrete type (generic code gets
/// the protocol's lane-by-lane default). A NaN in `a` is kept, so NaNs propagate.
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
