import ViTMergeCore
import ViTMergeKernels

extension Merges {
    /// MagMax (Marczak et al. 2024, "MagMax-Ind"): per entry, the τ_i value of largest magnitude
    /// (the first of equal magnitudes, in task order). No scaling: θ_pre + λ·τ_m with λ on validation.
    public static func magMax(_ taus: [EncoderVector]) -> EncoderVector {
        precondition(!taus.isEmpty && taus.allSatisfy { $0.count == taus[0].count }, "magMax: vector sizes differ")
        let out = EncoderVector(like: taus[0])
        withExtendedLifetime(taus) { magMax(taus.map { UnsafePointer($0.base) }, count: out.count, into: out.base) }
        return out
    }

    /// MagMax of arrays (see the `EncoderVector` form; same bits).
    public static func magMax(_ taus: [[Float]]) -> [Float] {
        precondition(!taus.isEmpty && taus.allSatisfy { $0.count == taus[0].count }, "magMax: vector sizes differ")
        let n = taus[0].count
        if n == 0 { return [] }
        return [Float](unsafeUninitializedCapacity: n) { buf, initialized in
            withPointers(taus) { magMax($0, count: n, into: buf.baseAddress!) }
            initialized = n
        }
    }

    // out[n] = taus[j*][n], j* = first argmax_j |taus[j][n]|
    static func magMax(_ taus: [UnsafePointer<Float>], count n: Int, into out: UnsafeMutablePointer<Float>) {
        for i in 0..<n {
            var best = taus[0][i]
            for t in taus.dropFirst() where abs(t[i]) > abs(best) { best = t[i] }
            out[i] = best
        }
    }

    /// Consensus task arithmetic (Wang et al. 2024, TALL masks): with τ_MTL = Σ τ_j (0 + τ_0 + τ_1 + …),
    /// task i's mask keeps the entries where |τ_i| ≥ `maskScale`·|τ_MTL − τ_i| (the task matters there
    /// more than the others combined, scaled); the entries kept by at least `agreement` masks form the
    /// consensus, and the direction is τ_MTL on it, 0 elsewhere. One mask scale for every task (the paper
    /// tunes λ_t per task; here it is searched on the mean validation score like TIES's keep).
    public static func consensus(_ taus: [EncoderVector], maskScale: Double, agreement: Int = 2) -> EncoderVector {
        precondition(!taus.isEmpty && taus.allSatisfy { $0.count == taus[0].count }, "consensus: vector sizes differ")
        let out = EncoderVector(like: taus[0])
        withExtendedLifetime(taus) {
            consensus(
                taus.map { UnsafePointer($0.base) }, count: out.count, maskScale: Float(maskScale),
                agreement: agreement, into: out.base)
        }
        return out
    }

    /// Consensus task arithmetic of arrays (see the `EncoderVector` form; same bits).
    public static func consensus(_ taus: [[Float]], maskScale: Double, agreement: Int = 2) -> [Float] {
        precondition(!taus.isEmpty && taus.allSatisfy { $0.count == taus[0].count }, "consensus: vector sizes differ")
        let n = taus[0].count
        if n == 0 { return [] }
        return [Float](unsafeUninitializedCapacity: n) { buf, initialized in
            withPointers(taus) {
                consensus($0, count: n, maskScale: Float(maskScale), agreement: agreement, into: buf.baseAddress!)
            }
            initialized = n
        }
    }

    // s = Σ_j taus[j][n]; out[n] = #{j : |taus[j][n]| ≥ scale·|s − taus[j][n]|} ≥ agreement ? s : 0
    static func consensus(
        _ taus: [UnsafePointer<Float>], count n: Int, maskScale scale: Float, agreement: Int,
        into out: UnsafeMutablePointer<Float>
    ) {
        precondition(scale >= 0 && agreement >= 1, "consensus: mask scale ≥ 0 and agreement ≥ 1")
        for i in 0..<n {
            var s: Float = 0
            for t in taus { s += t[i] }
            var votes = 0
            for t in taus where abs(t[i]) >= scale * abs(s - t[i]) { votes += 1 }
            out[i] = votes >= agreement ? s : 0
        }
    }
}

extension Merges {
    /// Model Breadcrumbs (Davari & Belilovsky 2024): per region (tensor) and task, with m the magnitudes |τ_t|
    /// sorted largest first, skip = ⌊β·n⌋ (β = `outliers`) and keep = max(1, round(density·n)), τ_t keeps the
    /// entries with m[skip + keep − 1] ≤ |τ| < m[skip − 1] (no upper bound when skip = 0): the largest
    /// magnitudes and everything below the kept band are set to 0 (entries equal to a threshold fall on the same
    /// side). The direction is Σ_t of the masked τ_t (0 + m_0 + m_1 + …).
    public static func breadcrumbs(_ taus: [EncoderVector], density: Double, outliers: Double) -> EncoderVector {
        precondition(!taus.isEmpty && taus.allSatisfy { $0.hasLayout(of: taus[0]) }, "breadcrumbs: layouts differ")
        let out = EncoderVector(like: taus[0])
        withExtendedLifetime(taus) {
            for r in out.arena.layout.regions {
                breadcrumbs(
                    taus.map { UnsafePointer($0.base + r.offset) }, count: r.shape.count, density: density,
                    outliers: outliers, into: out.base + r.offset)
            }
        }
        return out
    }

    /// Breadcrumbs of arrays taken as one region each (see the `EncoderVector` form, which masks per region).
    public static func breadcrumbs(_ taus: [[Float]], density: Double, outliers: Double) -> [Float] {
        precondition(!taus.isEmpty && taus.allSatisfy { $0.count == taus[0].count }, "breadcrumbs: sizes differ")
        let n = taus[0].count
        if n == 0 { return [] }
        return [Float](unsafeUninitializedCapacity: n) { buf, initialized in
            withPointers(taus) {
                breadcrumbs($0, count: n, density: density, outliers: outliers, into: buf.baseAddress!)
            }
            initialized = n
        }
    }

    // out[n] = Σ_t taus[t][n]·[lo_t ≤ |taus[t][n]| < hi_t], thresholds: order statistics of the magnitudes
    static func breadcrumbs(
        _ taus: [UnsafePointer<Float>], count n: Int, density: Double, outliers: Double,
        into out: UnsafeMutablePointer<Float>
    ) {
        precondition(density > 0 && density <= 1 && outliers >= 0 && outliers < 1, "breadcrumbs: bad fractions")
        out.update(repeating: 0, count: n)
        guard n > 0 else { return }
        let skip = Int(Double(n) * outliers), keep = max(1, Int((Double(n) * density).rounded()))
        let mags = UnsafeMutableBufferPointer<Float>.allocate(capacity: n)
        defer { mags.deallocate() }
        for t in taus {
            for i in 0..<n { mags[i] = abs(t[i]) }
            // The two order statistics of the sorted magnitudes (selection reorders, but keeps the values).
            let lo = Selection.kthLargest(mags, min(n, skip + keep))
            let hi = skip > 0 ? Selection.kthLargest(mags, skip) : Float.infinity
            for i in 0..<n where abs(t[i]) >= lo && abs(t[i]) < hi { out[i] += t[i] }
        }
    }

    /// EMR-merging (Huang et al. 2024, "elect, mask & rescale"): a unified vector τ_uni (per entry the sign
    /// of Σ τ_t and the largest |τ_t| among the tasks that share it), per task a mask M_t = [τ_t·τ_uni > 0]
    /// and a rescaler s_t = Σ|τ_t| / Σ|M_t ⊙ τ_uni|; task t's model is θ_pre + s_t·M_t ⊙ τ_uni. Not a single
    /// model: it needs the task at inference (the masks hold a bit per entry and task).
    public struct EMR {
        public let unified: EncoderVector
        /// Per task, one byte per entry: 1 where the task keeps τ_uni.
        public let masks: [[UInt8]]
        public let scales: [Float]

        /// Task `t`'s direction s_t·M_t ⊙ τ_uni.
        public func direction(task t: Int) -> EncoderVector {
            let out = EncoderVector(like: unified)
            let s = scales[t]
            masks[t].withUnsafeBufferPointer { m in
                for i in 0..<out.count { out.base[i] = m[i] != 0 ? s * unified.base[i] : 0 }
            }
            return out
        }
    }

    public static func emr(_ taus: [EncoderVector]) -> EMR {
        precondition(!taus.isEmpty && taus.allSatisfy { $0.count == taus[0].count }, "emr: vector sizes differ")
        let n = taus[0].count
        let uni = EncoderVector(like: taus[0])
        var masks: [[UInt8]] = [], scales: [Float] = []
        withExtendedLifetime(taus) {
            let xs = taus.map { UnsafePointer($0.base) }
            for i in 0..<n {
                var s: Float = 0
                for x in xs { s += x[i] }
                var m: Float = 0
                for x in xs where (x[i] > 0 && s > 0) || (x[i] < 0 && s < 0) { m = max(m, abs(x[i])) }
                uni.base[i] = s > 0 ? m : s < 0 ? -m : 0
            }
            for x in xs {
                var mask = [UInt8](repeating: 0, count: n)
                var own = 0.0, kept = 0.0
                for i in 0..<n {
                    own += Double(abs(x[i]))
                    if x[i] * uni.base[i] > 0 {
                        mask[i] = 1
                        kept += Double(abs(uni.base[i]))
                    }
                }
                masks.append(mask)
                scales.append(kept > 0 ? Float(own / kept) : 0)
            }
        }
        return EMR(unified: uni, masks: masks, scales: scales)
    }
}
