import Foundation

/// How task vectors are combined into one direction τ_m of the merged encoder θ_pre + λ τ_m.
public enum MergeMethod: String, CaseIterable, Sendable {
    /// Task arithmetic: Σ τ.
    case sum
    /// Model soup: the mean τ, at λ = 1 unless a λ grid is given.
    case average
    /// TIES-merging (trim to the `keep` fraction, elect signs, disjoint mean).
    case ties
    /// DARE: each τ_i with entries dropped with probability `drop` (seed + i), rescaled, summed.
    case dare
    /// TSV-M (task singular vectors): per matrix, each task's top 1/T singular triplets, orthogonalized.
    case tsv
    /// Iso-C: per matrix, the SVD of Σ τ with a flat (isotropic) spectrum.
    case isoC = "iso-c"
    /// Iso-CTS: Iso-C's common subspace (the `commonFraction` of the rank) plus task-specific subspaces.
    case isoCTS = "iso-cts"
    /// MagMax: per entry, the task vector value of largest magnitude.
    case magMax = "magmax"
    /// Consensus task arithmetic (TALL masks): Σ τ on the entries at least two tasks' masks keep (`maskScale`).
    case consensus

    /// Whether the method has a hyper-parameter searched on validation (TIES keep, DARE drop,
    /// Iso-CTS common fraction).
    public var isTuned: Bool { self == .ties || self == .dare || self == .isoCTS || self == .consensus }

    /// Iso-CTS common fractions searched on validation when none is given (0.8 is the paper's default).
    public static let isoCTSCommonFractions = [0.6, 0.7, 0.8, 0.9]

    /// Consensus mask scales searched on validation when none is given (the TALL-mask paper's λ_t range).
    public static let consensusMaskScales = [0.2, 0.4, 0.6]

    /// Whether the method works on singular vectors (its λ grid is `spectralLambdaGrid`).
    public var isSpectral: Bool { self == .tsv || self == .isoC || self == .isoCTS }
}

/// The λ grid {0, 0.05, …, 2} of the spectral merges: their directions are normalized per matrix
/// (TSV-M keeps singular values, Iso flattens them), so the best λ often exceeds 1 (the Iso paper
/// reports α ≈ 1.3–1.5 for 8 tasks).
public let spectralLambdaGrid: [Double] = (0...40).map { Double($0) / 20 }

/// A merge with its hyper-parameter and λ chosen on validation, reported on test.
public struct MergeSearchResult {
    public let method: MergeMethod
    /// TIES: keep; DARE: drop; Iso-CTS: common fraction; consensus: mask scale; nil for the others.
    public let hyperparameter: Double?
    /// The merged direction τ_m over the encoder (the model is θ_pre + lambda·τ_m).
    public let direction: EncoderVector
    public let lambda: Double
    /// Mean normalized accuracy on validation at `lambda`.
    public let validation: Double
    /// Mean normalized accuracy on test at `lambda`.
    public let test: Double
    public let testPerTask: [Double]
    public let testAbsolute: [Double]
    /// (λ, mean validation normalized accuracy) over the grid.
    public let curve: [(Double, Double)]
    /// Test predictions per task at `lambda`.
    public let testPredictions: [[Int]]
}

/// Task negation θ_pre − λ τ_target with λ chosen on validation.
public struct NegationResult {
    public let target: Int
    public let control: Int
    /// The chosen λ (0 when no λ of the grid keeps the control).
    public let lambda: Double
    /// Test accuracies of the negated encoder.
    public let targetAccuracy: Double
    public let controlAccuracy: Double
    /// Test accuracies of the pre-trained encoder.
    public let targetPretrainedAccuracy: Double
    public let controlPretrainedAccuracy: Double
}

extension MergeEvaluator {
    /// Negation of task `target`: the λ of `grid` giving the lowest target validation accuracy among those where
    /// `control` keeps ≥ `keep` × its pre-trained validation accuracy (ties → the first, smaller λ; none → 0);
    /// reported on test.
    public func negation(
        target: Int, control: Int, grid: [Double] = lambdaGrid, keep: Double = 0.95
    )
        -> NegationResult
    {
        let tau = tasks[target].tau
        let preEncoder = encoder([], [])
        let controlPre = accuracy(encoder: preEncoder, task: control, split: .validation)
        var best: (lambda: Double, target: Double)? = nil
        for l in grid {
            let enc = encoder([tau], [Float(-l)])
            let c = accuracy(encoder: enc, task: control, split: .validation)
            let t = accuracy(encoder: enc, task: target, split: .validation)
            if c >= keep * controlPre && (best == nil || t < best!.target) { best = (l, t) }
        }
        let lambda = best?.lambda ?? 0
        let negated = encoder([tau], [Float(-lambda)])
        return NegationResult(
            target: target, control: control, lambda: lambda,
            targetAccuracy: accuracy(encoder: negated, task: target, split: .test),
            controlAccuracy: accuracy(encoder: negated, task: control, split: .test),
            targetPretrainedAccuracy: accuracy(encoder: preEncoder, task: target, split: .test),
            controlPretrainedAccuracy: accuracy(encoder: preEncoder, task: control, split: .test))
    }

    /// The merged direction of all tasks' τ by `method`; `hyperparameter` is TIES's keep, DARE's drop
    /// (DARE drops τ_i's entries with seed `seed &+ i`) or Iso-CTS's common fraction.
    public func direction(_ method: MergeMethod, hyperparameter: Double? = nil, seed: UInt64 = 0) -> EncoderVector {
        let taus = tasks.map(\.tau)
        switch method {
        case .sum: return Merges.sum(taus, pool: pool)
        case .average: return Merges.average(taus, pool: pool)
        case .ties: return Merges.ties(taus, keep: hyperparameter!)
        case .dare: return Merges.dareSum(taus, drop: hyperparameter!, seed: seed, pool: pool)
        case .tsv: return Merges.tsv(taus, pool: pool)
        case .isoC: return Merges.isoC(taus, pool: pool)
        case .isoCTS: return Merges.isoCTS(taus, commonFraction: hyperparameter!, pool: pool)
        case .magMax: return Merges.magMax(taus)
        case .consensus: return Merges.consensus(taus, maskScale: hyperparameter!)
        }
    }

    /// Merges all tasks by `method`, trying each of `candidates` (TIES: keep, DARE: drop, Iso-CTS: common
    /// fraction; ignored for the others) and λ from `grid` (default: `lambdaGrid`, λ = 1 for average,
    /// `spectralLambdaGrid` for TSV-M, Iso-C and Iso-CTS), both chosen on validation
    /// (equal validation → the smaller hyper-parameter, then the smaller λ); reported on test.
    public func merge(
        _ method: MergeMethod, candidates: [Double] = [], seed: UInt64 = 0, grid: [Double]? = nil
    )
        -> MergeSearchResult
    {
        let lambdas = grid ?? (method == .average ? [1] : method.isSpectral ? spectralLambdaGrid : lambdaGrid)
        let tuned = method.isTuned
        precondition(!tuned || !candidates.isEmpty, "merge(\(method)): give at least one hyper-parameter candidate")
        let all = Array(tasks.indices)
        // Each candidate's λ on validation; only the chosen (candidate, λ) is evaluated on test.
        var best: (h: Double?, direction: EncoderVector, lambda: Double, score: Double, curve: [(Double, Double)])?
        for h in tuned ? candidates.map(Optional.some) : [nil] {
            let dir = direction(method, hyperparameter: h, seed: seed)
            let r = searchLambda(tasks: all, direction: dir, grid: lambdas)
            if let b = best, !(r.score > b.score || (r.score == b.score && h! < b.h!)) { continue }
            best = (h, dir, r.lambda, r.score, r.curve)
        }
        let b = best!
        let test = normalized(encoder: encoder([b.direction], [Float(b.lambda)]), tasks: all, split: .test)
        return MergeSearchResult(
            method: method, hyperparameter: b.h, direction: b.direction, lambda: b.lambda, validation: b.score,
            test: test.mean, testPerTask: test.perTask, testAbsolute: test.absolute, curve: b.curve,
            testPredictions: test.predictions)
    }
}
