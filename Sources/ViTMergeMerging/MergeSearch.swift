import Foundation
import ViTMergeIO
import ViTMergeModel

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
    /// Model Breadcrumbs: Σ τ with each tensor's largest (`outliers`) and smallest magnitudes masked out,
    /// keeping the `density` band between.
    case breadcrumbs
    /// Fisher merging: Σ F_t τ_t / Σ F_t with each task's diagonal Fisher (from its training samples).
    case fisher
    /// RegMean: each Linear layer solved from the tasks' input Gram matrices (off-diagonals × `alpha`).
    case regMean = "regmean"
    /// RegMean++: RegMean with each block's inputs taken from the merge of the blocks before it.
    case regMeanPlusPlus = "regmean++"
    /// AdaMerging, task-wise: one coefficient per task learned by entropy minimization on test images.
    case adaMerging = "adamerging"
    /// AdaMerging, layer-wise: one coefficient per task and tensor.
    case adaMergingLayer = "adamerging-layer"
    /// EMR-merging: a unified vector with per-task masks and rescalers (needs the task at inference).
    case emr

    /// Whether the method has a hyper-parameter searched on validation (TIES keep, DARE drop,
    /// Iso-CTS common fraction, consensus mask scale, breadcrumbs density, RegMean α).
    public var isTuned: Bool {
        [.ties, .dare, .isoCTS, .consensus, .breadcrumbs, .regMean, .regMeanPlusPlus].contains(self)
    }

    /// Whether the method needs data (training samples, or test images for AdaMerging).
    public var usesData: Bool { [.fisher, .regMean, .regMeanPlusPlus, .adaMerging, .adaMergingLayer].contains(self) }

    /// Whether the merged direction is used at λ = 1 unless a λ is given: the weighted averages (average,
    /// Fisher, RegMean) and AdaMerging, whose coefficients already scale every task vector.
    public var isFixedScale: Bool {
        [.average, .fisher, .regMean, .regMeanPlusPlus, .adaMerging, .adaMergingLayer].contains(self)
    }

    /// The hyper-parameter candidates searched on validation when none is given (empty: not tuned).
    public var defaultCandidates: [Double] {
        switch self {
        case .ties: [0.2]
        case .dare: [0.9]
        case .isoCTS: MergeMethod.isoCTSCommonFractions
        case .consensus: MergeMethod.consensusMaskScales
        case .breadcrumbs: MergeMethod.breadcrumbsDensities
        case .regMean, .regMeanPlusPlus: MergeMethod.regMeanAlphas
        case .sum, .average, .tsv, .isoC, .magMax, .fisher, .adaMerging, .adaMergingLayer, .emr: []
        }
    }

    /// Breadcrumbs densities searched on validation when none is given.
    public static let breadcrumbsDensities = [0.1, 0.3, 0.5]

    /// RegMean off-diagonal scales α searched on validation when none is given (the paper tunes 0.1…0.9).
    public static let regMeanAlphas = [0.5, 0.7, 0.9]

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
    /// (DARE drops τ_i's entries with seed `seed &+ i`), Iso-CTS's common fraction, consensus's mask scale,
    /// breadcrumbs' density or RegMean's α. Fisher draws its labels with `seed`; AdaMerging uses
    /// `adaMergingOptions`. EMR has no single direction (see `emrMerge`).
    public func direction(
        _ method: MergeMethod, hyperparameter: Double? = nil, seed: UInt64 = 0
    ) throws -> EncoderVector {
        let taus = tasks.map(\.tau)
        switch method {
        case .breadcrumbs:
            return Merges.breadcrumbs(taus, density: hyperparameter!, outliers: breadcrumbsOutliers)
        case .fisher: return try fisherDirection(seed: seed)
        case .regMean: return try regMeanDirection(alpha: hyperparameter!)
        case .regMeanPlusPlus: return try regMeanDirection(alpha: hyperparameter!, plusPlus: true)
        case .adaMerging, .adaMergingLayer:
            var o = adaMergingOptions
            o.layerWise = method == .adaMergingLayer
            let r = adaMerging(o)
            lastAdaMerging = r
            return r.direction
        case .emr:
            throw MergeError.incompatible("EMR keeps one model per task, not one direction: use emrMerge()")
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
    ) throws
        -> MergeSearchResult
    {
        let tuned = method.isTuned
        precondition(!tuned || !candidates.isEmpty, "merge(\(method)): give at least one hyper-parameter candidate")
        return try merge(method, candidates: tuned ? candidates.map(Optional.some) : [nil], grid: grid) {
            try self.direction(method, hyperparameter: $0, seed: seed)
        }
    }

    /// The search of `merge(_:candidates:seed:grid:)` over directions made by `build` from each candidate.
    func merge(
        _ method: MergeMethod, candidates: [Double?], grid: [Double]?, build: (Double?) throws -> EncoderVector
    ) throws -> MergeSearchResult {
        let lambdas = grid ?? (method.isFixedScale ? [1] : method.isSpectral ? spectralLambdaGrid : lambdaGrid)
        let all = Array(tasks.indices)
        // Each candidate's λ on validation; only the chosen (candidate, λ) is evaluated on test.
        var best: (h: Double?, direction: EncoderVector, lambda: Double, score: Double, curve: [(Double, Double)])?
        for h in candidates {
            let dir = try build(h)
            let r = searchLambda(tasks: all, direction: dir, grid: lambdas)
            if let b = best, !(r.score > b.score || (r.score == b.score && (h ?? 0) < (b.h ?? 0))) { continue }
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

/// EMR-merging's outcome: the unified vector, masks and rescalers, and each task's own model on test.
public struct EMRResult {
    public let emr: Merges.EMR
    public let test: Double
    public let testPerTask: [Double]
    public let testAbsolute: [Double]
    public let testPredictions: [[Int]]
}

extension MergeEvaluator {
    /// EMR-merging of all tasks: task t is evaluated with its own model θ_pre + s_t·M_t ⊙ τ_uni (no λ, no
    /// hyper-parameter; the method is tuning-free).
    public func emrMerge() -> EMRResult {
        let e = Merges.emr(tasks.map(\.tau))
        var perTask: [Double] = [], absolute: [Double] = [], predicted: [[Int]] = []
        for i in tasks.indices {
            let r = normalized(encoder: encoder([e.direction(task: i)], [1]), tasks: [i], split: .test)
            perTask.append(r.perTask[0])
            absolute.append(r.absolute[0])
            predicted.append(r.predictions[0])
        }
        return EMRResult(
            emr: e, test: perTask.reduce(0, +) / Double(max(perTask.count, 1)), testPerTask: perTask,
            testAbsolute: absolute, testPredictions: predicted)
    }
}

extension Merges.EMR {
    /// Writes `unified` (the encoder vector, f32, with the vector's padding), `masks` [T, ⌈count/8⌉] u8 (bit j
    /// of byte i is entry 8i + j, least significant first) and `scales` [T] f32, with metadata kind "emr",
    /// the task names (comma-separated, in order) and the encoder config; atomically.
    public func save(to path: String, tasks: [String], table: ParameterTable) throws {
        precondition(tasks.count == masks.count, "EMR.save: \(tasks.count) names for \(masks.count) masks")
        var w = SafeTensorsWriter(metadata: [
            "kind": "emr", "tasks": tasks.joined(separator: ","), "config": table.config.json,
        ])
        try w.add(
            "unified", floats: UnsafeBufferPointer(start: unified.base, count: unified.count), shape: [unified.count])
        let bytes = (unified.count + 7) / 8
        var packed = [UInt8](repeating: 0, count: masks.count * bytes)
        for (t, m) in masks.enumerated() {
            for i in m.indices where m[i] != 0 { packed[t * bytes + i / 8] |= UInt8(1) << UInt8(i % 8) }
        }
        try w.add("masks", bytes: packed, shape: [masks.count, bytes])
        try w.add("scales", floats: scales, shape: [scales.count])
        try w.write(to: path)
    }
}
