import Foundation
import ViTMergeCore

/// Merged task vectors by other published methods; each returns one vector τ_m so the model is
/// θ_pre + λ·τ_m (λ chosen on validation like task addition).
public enum Merges {
    /// Model soup / weight averaging of the fine-tuned models: the mean task vector.
    public static func average(_ taus: [[Float]]) -> [Float] {
        precondition(!taus.isEmpty)
        var out = [Float](repeating: 0, count: taus[0].count)
        let s = 1 / Float(taus.count)
        for t in taus { for i in 0..<out.count { out[i] = out[i].addingProduct(s, t[i]) } }
        return out
    }

    /// TIES-merging (Yadav et al. 2023): keep the `keep` fraction of largest-magnitude entries of
    /// each τ (trim), elect each coordinate's sign by the sign of the sum of trimmed values, and
    /// average only the trimmed values that agree with it (disjoint mean).
    public static func ties(_ taus: [[Float]], keep: Double) -> [Float] {
        precondition(!taus.isEmpty && keep > 0 && keep <= 1)
        let n = taus[0].count
        let trimmed = taus.map { trim($0, keep: keep) }
        var out = [Float](repeating: 0, count: n)
        for i in 0..<n {
            var sum: Float = 0
            for t in trimmed { sum += t[i] }
            guard sum != 0 else { continue }
            var acc: Float = 0, count = 0
            for t in trimmed where t[i] != 0 && (t[i] > 0) == (sum > 0) { acc += t[i]; count += 1 }
            out[i] = count > 0 ? acc / Float(count) : 0
        }
        return out
    }

    /// τ with all but its `keep` fraction of largest |values| set to 0 (ties at the threshold kept).
    public static func trim(_ tau: [Float], keep: Double) -> [Float] {
        let k = max(1, Int((Double(tau.count) * keep).rounded()))
        if k >= tau.count { return tau }
        var mags = tau.map { abs($0) }
        mags.sort(by: >)
        let threshold = mags[k - 1]
        return tau.map { abs($0) >= threshold ? $0 : 0 }
    }

    /// DARE (Yu et al. 2024): drop each entry with probability p (seeded), rescale the rest by 1/(1−p).
    public static func dare(_ tau: [Float], drop p: Double, seed: UInt64) -> [Float] {
        precondition(p >= 0 && p < 1)
        var rng = RNG(seed: seed, stream: 0xDA2E)
        let s = Float(1 / (1 - p))
        return tau.map { rng.uniformDouble() < p ? 0 : $0 * s }
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
