import ViTMergeCore

/// Task addition's outcome: λ chosen on validation, the mean normalized accuracy there and on
/// test, per-task test accuracies (normalized and absolute), the validation curve (λ, score), and
/// the test predictions per task of the subset (for the bootstrap, so no caller evaluates twice).
public typealias AdditionResult = (
    lambda: Double, validation: Double, test: Double, testPerTask: [Double], testAbsolute: [Double],
    curve: [(Double, Double)], testPredictions: [[Int]]
)

extension MergeEvaluator {
    /// Σ τ_i over `subset` as 0 + τ_a + τ_b + … (one rounding per add, in subset order), in a
    /// scratch vector the evaluator reuses: valid until the next call.
    func taskSum(_ subset: [Int]) -> EncoderVector {
        let s = sumScratch ?? EncoderVector(table: pretrained.table)
        sumScratch = s
        s.zero()
        for i in subset { s.add(tasks[i].tau, pool: pool) }
        return s
    }

    /// Task addition over `subset` with λ from `grid` chosen on validation (ties → smaller λ),
    /// reported on test. `direction` defaults to Σ τ over the subset. Each λ writes
    /// θ_pre + λ·direction into the evaluation model in place (no encoder copy per λ).
    public func addition(
        tasks subset: [Int], direction: EncoderVector? = nil, grid: [Double] = lambdaGrid
    ) -> AdditionResult {
        let dir = direction ?? taskSum(subset)
        let (lambda, score, curve) = searchLambda(tasks: subset, direction: dir, grid: grid)
        let test = normalized(encoder: encoder([dir], [Float(lambda)]), tasks: subset, split: .test)
        return (lambda, score, test.mean, test.perTask, test.absolute, curve, test.predictions)
    }

    /// λ from `grid` with the best mean normalized validation accuracy of θ_pre + λ·direction on `subset`
    /// (ties → smaller λ), its score, and the curve (λ, score).
    func searchLambda(
        tasks subset: [Int], direction: EncoderVector, grid: [Double]
    ) -> (lambda: Double, score: Double, curve: [(Double, Double)]) {
        var curve: [(lambda: Double, score: Double)] = []
        for l in grid {
            curve.append(
                (l, normalized(encoder: encoder([direction], [Float(l)]), tasks: subset, split: .validation).mean))
        }
        let best = selectLambda(curve)
        return (best.lambda, best.score, curve.map { ($0.lambda, $0.score) })
    }

    /// `addition` with the direction as an array (`table.encoderEnd` floats), copied into an arena once.
    public func addition(tasks subset: [Int], direction: [Float], grid: [Double] = lambdaGrid) -> AdditionResult {
        addition(tasks: subset, direction: EncoderVector(direction, table: pretrained.table), grid: grid)
    }

    /// Weight disentanglement error ξ(α1, α2) for tasks a and b on up to `limit` validation images
    /// each: the fraction of images on which θ_pre + α1·τ_a + α2·τ_b predicts differently from
    /// the single-task model θ_pre + α1·τ_a (on task a), plus the same for task b with α2·τ_b.
    /// Rows are α1, columns α2; each cell is in [0, 2].
    public func disentanglement(_ a: Int, _ b: Int, alphas: [Double], limit: Int) -> [[Double]] {
        var singleA: [Double: [Int]] = [:], singleB: [Double: [Int]] = [:]
        for x in alphas {
            singleA[x] = predictions(
                encoder: encoder([tasks[a].tau], [Float(x)]), task: a, split: .validation, limit: limit)
            singleB[x] = predictions(
                encoder: encoder([tasks[b].tau], [Float(x)]), task: b, split: .validation, limit: limit)
        }
        return alphas.map { x1 in
            alphas.map { x2 in
                let merged = encoder([tasks[a].tau, tasks[b].tau], [Float(x1), Float(x2)])
                let pa = predictions(encoder: merged, task: a, split: .validation, limit: limit)
                let pb = predictions(encoder: merged, task: b, split: .validation, limit: limit)
                let da = Double(zip(pa, singleA[x1]!).filter { $0 != $1 }.count) / Double(max(pa.count, 1))
                let db = Double(zip(pb, singleB[x2]!).filter { $0 != $1 }.count) / Double(max(pb.count, 1))
                return da + db
            }
        }
    }
}
