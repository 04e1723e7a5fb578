import Foundation
import ViTMergeCore
import ViTMergeKernels

/// Merged task vectors by other published methods; each returns one vector τ_m so the model is
/// θ_pre + λ·τ_m (λ chosen on validation like task addition). Each method has an arena form (on
/// `EncoderVector`s, the result a new vector with the inputs' layout) and an array form; both run
/// the same loop on raw buffers, so they give the same bits.
public enum Merges {
    /// Model soup / weight averaging of the fine-tuned models: the mean task vector, accumulated
    /// as out = 0, then out = fma(1/N, τ_i, out) for each τ_i in order.
    public static func average(_ taus: [EncoderVector], pool: ThreadPool = .shared) -> EncoderVector {
        precondition(!taus.isEmpty && taus.allSatisfy { $0.count == taus[0].count }, "average: vector sizes differ")
        let out = EncoderVector(like: taus[0])
        let s = 1 / Float(taus.count)
        withExtendedLifetime(taus) {
            Elementwise.linearCombination(
                out: out.base, base: out.base, xs: taus.map { UnsafePointer($0.base) },
                coefficients: [Float](repeating: s, count: taus.count), count: out.count, pool: pool)
        }
        return out
    }

    /// The mean of `taus` as an array (see the `EncoderVector` form; same bits).
    public static func average(_ taus: [[Float]]) -> [Float] {
        precondition(!taus.isEmpty)
        var out = [Float](repeating: 0, count: taus[0].count)
        let s = 1 / Float(taus.count)
        for t in taus { for i in 0..<out.count { out[i] = out[i].addingProduct(s, t[i]) } }
        return out
    }

    /// Σ τ_i as τ_0 + τ_1 + … (one rounding per add, in order; task arithmetic's direction in
    /// `vitmerge merge`). The evaluator's default direction starts from 0 instead (`taskSum`).
    public static func sum(_ taus: [EncoderVector], pool: ThreadPool = .shared) -> EncoderVector {
        precondition(!taus.isEmpty, "sum: no vectors")
        let out = taus[0].copy()
        for t in taus.dropFirst() { out.add(t, pool: pool) }
        return out
    }

    /// TIES-merging (Yadav et al. 2023): keep the `keep` fraction of largest-magnitude entries of
    /// each τ (trim), elect each coordinate's sign by the sign of the sum of trimmed values, and
    /// average only the trimmed values that agree with it (disjoint mean).
    public static func ties(_ taus: [EncoderVector], keep: Double) -> EncoderVector {
        precondition(!taus.isEmpty && taus.allSatisfy { $0.count == taus[0].count }, "ties: vector sizes differ")
        let out = EncoderVector(like: taus[0])
        withExtendedLifetime(taus) {
            ties(taus.map { UnsafePointer($0.base) }, count: out.count, keep: keep, into: out.base)
        }
        return out
    }

    /// TIES-merging of arrays (see the `EncoderVector` form; same bits).
    public static func ties(_ taus: [[Float]], keep: Double) -> [Float] {
        precondition(!taus.isEmpty && taus.allSatisfy { $0.count == taus[0].count }, "ties: vector sizes differ")
        let n = taus[0].count
        if n == 0 { return [] }
        return [Float](unsafeUninitializedCapacity: n) { buf, initialized in
            withPointers(taus) { ties($0, count: n, keep: keep, into: buf.baseAddress!) }
            initialized = n
        }
    }

    // out[n] = TIES merge of taus[j][n], j < taus.count; out is overwritten.
    static func ties(
        _ taus: [UnsafePointer<Float>], count n: Int, keep: Double, into out: UnsafeMutablePointer<Float>
    ) {
        precondition(!taus.isEmpty && keep > 0 && keep <= 1)
        let mags = UnsafeMutableBufferPointer<Float>.allocate(capacity: n)
        defer { mags.deallocate() }
        // Entries with |τ| < threshold are trimmed to 0 (nil: k ≥ n, nothing is trimmed).
        let thresholds = taus.map { trimThreshold(UnsafeBufferPointer(start: $0, count: n), keep: keep, scratch: mags) }
        @inline(__always) func trimmed(_ j: Int, _ i: Int) -> Float {
            let x = taus[j][i]
            guard let t = thresholds[j] else { return x }
            return abs(x) >= t ? x : 0
        }
        for i in 0..<n {
            out[i] = 0
            var sum: Float = 0
            for j in taus.indices { sum += trimmed(j, i) }
            guard sum != 0 else { continue }
            var acc: Float = 0, count = 0
            for j in taus.indices {
                let t = trimmed(j, i)
                if t != 0 && (t > 0) == (sum > 0) { acc += t; count += 1 }
            }
            out[i] = count > 0 ? acc / Float(count) : 0
        }
    }

    /// The magnitude at or above which `tau` keeps its entries when trimmed to its `keep` fraction
    /// (the k-th largest |value|, k = max(1, round(n·keep))); nil when k ≥ n (nothing trimmed).
    /// `scratch` holds at least n floats and is overwritten.
    static func trimThreshold(
        _ tau: UnsafeBufferPointer<Float>, keep: Double, scratch: UnsafeMutableBufferPointer<Float>
    ) -> Float? {
        let k = max(1, Int((Double(tau.count) * keep).rounded()))
        if k >= tau.count { return nil }
        let mags = UnsafeMutableBufferPointer(rebasing: scratch[0..<tau.count])
        for i in tau.indices { mags[i] = abs(tau[i]) }
        return Selection.kthLargest(mags, k)
    }

    /// τ with all but its `keep` fraction of largest |values| set to 0 (ties at the threshold kept).
    public static func trim(_ tau: [Float], keep: Double) -> [Float] {
        let scratch = UnsafeMutableBufferPointer<Float>.allocate(capacity: tau.count)
        defer { scratch.deallocate() }
        guard let threshold = tau.withUnsafeBufferPointer({ trimThreshold($0, keep: keep, scratch: scratch) }) else {
            return tau
        }
        return tau.map { abs($0) >= threshold ? $0 : 0 }
    }

    /// DARE (Yu et al. 2024): drop each entry with probability p (seeded), rescale the rest by 1/(1−p).
    /// One uniform draw per entry, in index order (padding included), from stream 0xDA2E of `seed`.
    public static func dare(_ tau: EncoderVector, drop p: Double, seed: UInt64) -> EncoderVector {
        let out = EncoderVector(like: tau)
        dare(UnsafePointer(tau.base), count: tau.count, drop: p, seed: seed, into: out.base)
        return out
    }

    /// DARE on an array (see the `EncoderVector` form; same bits).
    public static func dare(_ tau: [Float], drop p: Double, seed: UInt64) -> [Float] {
        if tau.isEmpty { return [] }
        return [Float](unsafeUninitializedCapacity: tau.count) { buf, initialized in
            tau.withUnsafeBufferPointer {
                dare($0.baseAddress!, count: tau.count, drop: p, seed: seed, into: buf.baseAddress!)
            }
            initialized = tau.count
        }
    }

    /// Σ_i DARE(τ_i, p, seed &+ i) as 0 + d_0 + d_1 + … (one rounding per add, in order), with
    /// one scratch vector for the d_i.
    public static func dareSum(
        _ taus: [EncoderVector], drop p: Double, seed: UInt64, pool: ThreadPool = .shared
    ) -> EncoderVector {
        precondition(!taus.isEmpty && taus.allSatisfy { $0.count == taus[0].count }, "dareSum: vector sizes differ")
        let out = EncoderVector(like: taus[0]), d = EncoderVector(like: taus[0])
        for (i, t) in taus.enumerated() {
            dare(UnsafePointer(t.base), count: t.count, drop: p, seed: seed &+ UInt64(i), into: d.base)
            out.add(d, pool: pool)
        }
        return out
    }

    // out[n] = tau[n] dropped with probability p, else tau[n]·1/(1−p)
    static func dare(
        _ tau: UnsafePointer<Float>, count n: Int, drop p: Double, seed: UInt64, into out: UnsafeMutablePointer<Float>
    ) {
        precondition(p >= 0 && p < 1)
        var rng = RNG(seed: seed, stream: 0xDA2E)
        let s = Float(1 / (1 - p))
        for i in 0..<n { out[i] = rng.uniformDouble() < p ? 0 : tau[i] * s }
    }
}

/// Picks the best λ: highest score, ties → smaller λ (the grid is scanned in increasing order).
public func selectLambda(_ curve: [(lambda: Double, score: Double)]) -> (lambda: Double, score: Double) {
    precondition(!curve.isEmpty, "selectLambda: empty curve")
    var best = curve[0]
    for p in curve.dropFirst() where p.score > best.score || (p.score == best.score && p.lambda < best.lambda) {
        best = p
    }
    return best
}

/// The λ grid {0, 0.05, …, 1} of the paper.
public let lambdaGrid: [Double] = (0...20).map { Double($0) / 20 }
