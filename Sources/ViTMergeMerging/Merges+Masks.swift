import ViTMergeCore

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
