/// A seeded pseudo-random generator (xoshiro256**, seeded by SplitMix64) whose outputs are the
/// same bits on every machine: uniform floats come from integer arithmetic only, and normals use
/// the Marsaglia polar method with a logarithm computed here in plain IEEE double arithmetic
/// (no libm), so a seed means the same model everywhere.
public struct RNG: Sendable {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64
    private var spareNormal: Double?

    public init(seed: UInt64) {
        var x = seed
        s0 = RNG.splitMix(&x)
        s1 = RNG.splitMix(&x)
        s2 = RNG.splitMix(&x)
        s3 = RNG.splitMix(&x)
    }

    /// SplitMix64: advances `x` and returns the next output (seeds the xoshiro state).
    @inline(__always)
    static func splitMix(_ x: inout UInt64) -> UInt64 {
        x &+= 0x9E37_79B9_7F4A_7C15
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A generator for stream `stream` of `seed`, independent of the others (e.g. one per task).
    public init(seed: UInt64, stream: UInt64) {
        self.init(seed: seed ^ (stream &* 0xD1B5_4A32_D192_ED03) &+ stream)
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = (s3 << 45) | (s3 >> 19)
        return result
    }

    /// Uniform in [0, 1) with 24 random bits.
    @inline(__always)
    public mutating func uniformFloat() -> Float { Float(next() >> 40) * 0x1p-24 }

    /// Uniform in [0, 1) with 53 random bits.
    @inline(__always)
    public mutating func uniformDouble() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Uniform integer in 0..<n (n > 0), without modulo bias (Lemire's method).
    public mutating func int(below n: Int) -> Int {
        precondition(n > 0, "RNG.int(below:) needs n > 0, got \(n)")
        let bound = UInt64(n)
        var m = next().multipliedFullWidth(by: bound)
        if m.low < bound {
            let threshold = (0 &- bound) % bound
            while m.low < threshold { m = next().multipliedFullWidth(by: bound) }
        }
        return Int(m.high)
    }

    /// Standard normal N(0, 1).
    public mutating func normal() -> Double {
        if let s = spareNormal { spareNormal = nil; return s }
        while true {
            let u = 2 * uniformDouble() - 1, v = 2 * uniformDouble() - 1
            let s = u * u + v * v
            if s > 0 && s < 1 {
                let f = (-2 * RNG.log(s) / s).squareRoot()
                spareNormal = v * f
                return u * f
            }
        }
    }

    /// N(mean, std²) truncated to [lo, hi] by rejection (timm's trunc_normal_ uses absolute bounds).
    public mutating func truncatedNormal(mean: Double, std: Double, lo: Double, hi: Double) -> Double {
        precondition(lo < hi, "RNG.truncatedNormal: empty interval [\(lo), \(hi)]")
        while true {
            let x = mean + std * normal()
            if x >= lo && x <= hi { return x }
        }
    }

    /// Fisher–Yates shuffle of `array`, in place: for i = n−1 down to 1, swap i with a uniform
    /// j ≤ i. Swaps through a buffer pointer in a while loop, so it allocates nothing even
    /// unspecialized (`swapAt` allocates a coroutine frame per call there, `stride` a box).
    @inlinable
    public mutating func shuffle<T>(_ array: inout [T]) {
        guard array.count > 1 else { return }
        array.withUnsafeMutableBufferPointer { shuffle($0) }
    }

    /// `shuffle` of the elements of a buffer.
    @inlinable
    public mutating func shuffle<T>(_ b: UnsafeMutableBufferPointer<T>) {
        var i = b.count - 1
        while i > 0 {
            let j = int(below: i + 1)
            let t = b[i]
            b[i] = b[j]
            b[j] = t
            i -= 1
        }
    }

    /// Natural logarithm of a positive finite double in IEEE arithmetic only (|error| < 1e-15
    /// relative), so it returns the same bits on every conforming machine.
    public static func log(_ x: Double) -> Double {
        precondition(x > 0 && x.isFinite, "RNG.log of \(x)")
        // x = m · 2^e with m in [√½, √2).
        var m = x.significand, e = Double(x.exponent)
        if m > 1.4142135623730951 { m *= 0.5; e += 1 }
        let s = (m - 1) / (m + 1), s2 = s * s
        // log m = 2·atanh(s) = 2(s + s³/3 + s⁵/5 + …); |s| ≤ 0.1716 so 12 terms reach 1e-18.
        var term = s, sum = 0.0
        for k in 0..<12 {
            sum += term / Double(2 * k + 1)
            term *= s2
        }
        return 2 * sum + e * 0.6931471805599453
    }
}
