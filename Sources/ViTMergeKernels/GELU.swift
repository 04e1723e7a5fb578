import Foundation
import ViTMergeCore

/// erf(x) for 16 lanes: a rational approximation x·P(x²)/Q(x²) on [−4, 4] (erf rounds to ±1 in
/// float beyond), max abs error 3.3e-7 (~5 ulps near ±1) against Double erf (tested). The kernels suite
/// compares it with SLEEF's `Sleef_erff16_u10`. `@_transparent`: under `@inline(__always)` the
/// optimizer left it out of line in GELU.backward, a call per 16 lanes with the vector split into
/// four xmm registers and a vzeroupper.
@_transparent
func erf16(_ x0: V16) -> V16 {
    let x = vmin(vmax(x0, V16(repeating: -4)), V16(repeating: 4))
    let x2 = x * x
    var p = V16(repeating: -2.72614225801306e-10)
    p = V16(repeating: 2.77068142495902e-08).addingProduct(p, x2)
    p = V16(repeating: -2.10102402082508e-06).addingProduct(p, x2)
    p = V16(repeating: -5.69250639462346e-05).addingProduct(p, x2)
    p = V16(repeating: -7.34990630326855e-04).addingProduct(p, x2)
    p = V16(repeating: -2.95459980854025e-03).addingProduct(p, x2)
    p = V16(repeating: -1.60960333262415e-02).addingProduct(p, x2)
    p *= x
    var q = V16(repeating: -1.45660718464996e-05)
    q = V16(repeating: -2.13374055278905e-04).addingProduct(q, x2)
    q = V16(repeating: -1.68282697438203e-03).addingProduct(q, x2)
    q = V16(repeating: -7.37332916720468e-03).addingProduct(q, x2)
    q = V16(repeating: -1.42647390514189e-02).addingProduct(q, x2)
    return p / q
}

/// Applies a 16-lane function to count elements, with a padded tail (a polynomial or exp per
/// element: 4 cost units each).
@inline(__always)
func map16(_ count: Int, pool: ThreadPool, _ body: (_ i: Int, _ lanes: Int) -> Void) {
    pool.parallel(count, cost: 4, align: 16) { _, _, r in
        var i = r.lowerBound
        while i &+ 16 <= r.upperBound { body(i, 16); i &+= 16 }
        if i < r.upperBound { body(i, r.upperBound &- i) }
    }
}

/// Exact GELU, 0.5·x·(1 + erf(x/√2)), as PyTorch's `nn.GELU()` (approximate="none").
public enum GELU {
    static let invSqrt2: Float = 0.7071067811865476
    static let invSqrt2Pi: Float = 0.3989422804014327

    // out[n] = gelu(inp[n])
    public static func forward(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int, pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.activation, profileStart) }
        let h = V16(repeating: 0.5), k = V16(repeating: invSqrt2), one = V16(repeating: 1)
        map16(count, pool: pool) { i, n in
            let x = loadPartial(inp + i, n)
            storePartial(h * x * (one + erf16(x * k)), out + i, n)
        }
    }

    // dinp[n] += gelu'(inp[n]) · dout[n],  gelu'(x) = Φ(x) + x·φ(x)
    public static func backward(
        dinp: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, dout: UnsafePointer<Float>, count: Int,
        pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.activation, profileStart) }
        let h = V16(repeating: 0.5), k = V16(repeating: invSqrt2), one = V16(repeating: 1),
            c = V16(repeating: invSqrt2Pi)
        map16(count, pool: pool) { i, n in
            let x = loadPartial(inp + i, n)
            let cdf = h * (one + erf16(x * k))
            let pdf = c * exp16(-h * x * x)
            let d = cdf.addingProduct(x, pdf)
            storePartial(
                loadPartial(UnsafePointer(dinp + i), n).addingProduct(d, loadPartial(dout + i, n)), dinp + i, n)
        }
    }

    public static func forwardReference(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { let x = Double(inp[i]); out[i] = Float(0.5 * x * (1 + erf(x / 2.0.squareRoot()))) }
    }

    public static func backwardReference(
        dinp: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, dout: UnsafePointer<Float>, count: Int
    ) {
        for i in 0..<count {
            let x = Double(inp[i])
            let d = 0.5 * (1 + erf(x / 2.0.squareRoot())) + x * exp(-0.5 * x * x) / (2 * Double.pi).squareRoot()
            dinp[i] += Float(d * Double(dout[i]))
        }
    }
}

/// QuickGELU, x·σ(1.702·x), as in CLIP.
public enum QuickGELU {
    // out[n] = x·σ(1.702x)
    public static func forward(
        out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int, pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.activation, profileStart) }
        let a = V16(repeating: -1.702), one = V16(repeating: 1)
        map16(count, pool: pool) { i, n in
            let x = loadPartial(inp + i, n)
            storePartial(x / (one + exp16(a * x)), out + i, n)
        }
    }

    // dinp[n] += (σ + 1.702·x·σ·(1 − σ)) · dout[n]
    public static func backward(
        dinp: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, dout: UnsafePointer<Float>, count: Int,
        pool: ThreadPool = .shared
    ) {
        let profileStart = Profiler.begin(); defer { Profiler.end(.activation, profileStart) }
        let a = V16(repeating: -1.702), one = V16(repeating: 1), k = V16(repeating: 1.702)
        map16(count, pool: pool) { i, n in
            let x = loadPartial(inp + i, n)
            let s = one / (one + exp16(a * x))
            let d = s.addingProduct(k * x * s, one - s)
            storePartial(
                loadPartial(UnsafePointer(dinp + i), n).addingProduct(d, loadPartial(dout + i, n)), dinp + i, n)
        }
    }

    public static func forwardReference(out: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { let x = Double(inp[i]); out[i] = Float(x / (1 + exp(-1.702 * x))) }
    }

    public static func backwardReference(
        dinp: UnsafeMutablePointer<Float>, inp: UnsafePointer<Float>, dout: UnsafePointer<Float>, count: Int
    ) {
        for i in 0..<count {
            let x = Double(inp[i]), s = 1 / (1 + exp(-1.702 * x))
            dinp[i] += Float((s + 1.702 * x * s * (1 - s)) * Double(dout[i]))
        }
    }
}
