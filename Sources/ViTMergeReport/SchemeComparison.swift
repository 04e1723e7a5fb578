import Foundation

/// `<out>/results.json` of `vitmerge experiment --schemes` (FORMATS.md "Experiment results", scheme table): one
/// row per pre-training scheme, each pre-trained from scratch with the same budget and data and then put through
/// the same protocol (its own experiment's results are in `<out>/<scheme>/`); the paired differences between the
/// schemes; the papers' ordering claims decided on them.
public struct SchemeComparison: Codable, Sendable {
    public var tasks: [String]
    public var seed: UInt64
    /// Pre-training budget of every scheme: steps × batch images.
    public var pretrainSteps: Int
    public var pretrainBatch: Int
    public var schemes: [SchemeRow]
    /// Paired bootstrap differences over the same test images: between schemes, keyed
    /// "addition.<mode>.<a>_vs_<b>" (a's test normalized accuracy of task addition minus b's), and within each
    /// scheme "addition.aligned_vs_full.<scheme>".
    public var differences: [String: Estimate]
    public var findings: [SchemeFinding]
    public var environment: Environment

    enum CodingKeys: String, CodingKey {
        case tasks, seed, schemes, differences, findings, environment
        case pretrainSteps = "pretrain_steps", pretrainBatch = "pretrain_batch"
    }

    public init(
        tasks: [String], seed: UInt64, pretrainSteps: Int, pretrainBatch: Int, schemes: [SchemeRow],
        differences: [String: Estimate] = [:], findings: [SchemeFinding] = [], environment: Environment
    ) {
        self.tasks = tasks
        self.seed = seed
        self.pretrainSteps = pretrainSteps
        self.pretrainBatch = pretrainBatch
        self.schemes = schemes
        self.differences = differences
        self.findings = findings
        self.environment = environment
    }

    /// The key of `differences` for a − b in task addition of `mode`.
    public static func additionKey(_ mode: ExperimentMode, _ a: String, _ b: String) -> String {
        "addition.\(mode.rawValue).\(a)_vs_\(b)"
    }

    /// The key of `differences` for aligned − full task addition within one scheme.
    public static func alignedVsFullKey(_ scheme: String) -> String { "addition.aligned_vs_full.\(scheme)" }

    public func row(_ scheme: String) -> SchemeRow? { schemes.first { $0.scheme == scheme } }

    /// Pretty-printed JSON with sorted keys.
    public func json() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted]
        return try e.encode(self)
    }
}

/// One scheme's outcome. Accuracies are means over the tasks of test accuracy; intervals from the scheme's own
/// bootstrap (absent when its results have no statistics).
public struct SchemeRow: Codable, Sendable {
    public var scheme: String
    /// Wall time of pre-training (absent when the model was pre-trained by a run that did not record it).
    public var pretrainSeconds: Double?
    /// The pre-training loss at the last step (the scheme's own loss: cross-entropy, MSE, DINO's, InfoNCE).
    public var pretrainLoss: Double?
    /// The linear probe on the frozen pre-trained encoder.
    public var probe: Estimate
    /// Each fine-tuning mode run (aligned, full, linearized).
    public var fineTuned: PerMode<Estimate>
    /// Task addition of all tasks per mode, λ chosen on validation.
    public var addition: PerMode<SchemeAddition>
    /// Test normalized accuracy of task addition against the number of tasks k, per mode.
    public var taskCount: PerMode<[TaskCount]>
    /// Mean weight disentanglement error ξ over |α1|, |α2| ≤ 1, per mode.
    public var meanXi: PerMode<Double>

    enum CodingKeys: String, CodingKey {
        case scheme, probe, addition
        case pretrainSeconds = "pretrain_seconds", pretrainLoss = "pretrain_loss", fineTuned = "fine_tuned"
        case taskCount = "task_count", meanXi = "mean_xi"
    }

    public init(
        scheme: String, pretrainSeconds: Double?, pretrainLoss: Double?, probe: Estimate,
        fineTuned: PerMode<Estimate>, addition: PerMode<SchemeAddition>, taskCount: PerMode<[TaskCount]>,
        meanXi: PerMode<Double>
    ) {
        self.scheme = scheme
        self.pretrainSeconds = pretrainSeconds
        self.pretrainLoss = pretrainLoss
        self.probe = probe
        self.fineTuned = fineTuned
        self.addition = addition
        self.taskCount = taskCount
        self.meanXi = meanXi
    }
}

/// Task addition of one scheme and mode: λ, the test normalized accuracy with its interval, and the validation
/// curve over the λ grid from which λ was chosen.
public struct SchemeAddition: Codable, Sendable {
    public var lambda: Double
    public var testNormalized: Estimate
    public var curve: [CurvePoint]

    enum CodingKeys: String, CodingKey {
        case lambda, curve
        case testNormalized = "test_normalized"
    }

    public init(lambda: Double, testNormalized: Estimate, curve: [CurvePoint]) {
        self.lambda = lambda
        self.testNormalized = testNormalized
        self.curve = curve
    }
}

/// A claim of the papers about pre-training schemes, decided on the comparison's numbers.
public struct SchemeFinding: Codable, Sendable {
    public var claim: String
    public var verdict: Verdict
    public var numbers: String

    public init(claim: String, verdict: Verdict, numbers: String) {
        self.claim = claim
        self.verdict = verdict
        self.numbers = numbers
    }
}

extension SchemeComparison {
    /// The papers' claims about schemes, checked on `schemes` and `differences`. A claim that one scheme adds
    /// better than another is decided by the paired interval of their difference (holds when it lies above 0,
    /// does not hold when it lies at or below 0, inconclusive when it straddles 0); claims on quantities without
    /// an interval (the λ curve, ξ) are decided on the measured values. Claims about a scheme not compared are
    /// left out.
    public func decideFindings() -> [SchemeFinding] {
        var out: [SchemeFinding] = []
        let mode = ExperimentMode.aligned
        let names = schemes.map(\.scheme)
        func addition(_ s: String) -> Estimate? { row(s)?.addition[mode]?.testNormalized }
        func versus(_ a: String, _ b: String) -> (Verdict, String)? {
            guard let d = differences[Self.additionKey(mode, a, b)], let x = addition(a), let y = addition(b) else {
                return nil
            }
            return (d.verdict(greaterThan: 0), "\(a) \(f(x.value)) vs \(b) \(f(y.value)): \(points(d))")
        }
        func beatsAll(_ a: String, _ claim: String) {
            let pairs = names.filter { $0 != a }.compactMap { versus(a, $0) }
            guard names.contains(a), !pairs.isEmpty else { return }
            out.append(
                SchemeFinding(
                    claim: claim, verdict: Verdict.all(pairs.map(\.0)),
                    numbers: "(" + pairs.map(\.1).joined(separator: "; ") + ")"))
        }
        beatsAll(
            "clip",
            "Task addition is best after CLIP pre-training (the paper: CLIP ≈ 95% normalized, supervised ≈ 89%, "
                + "MAE ≈ 73%).")
        if let (v, numbers) = versus("supervised", "mae") {
            out.append(
                SchemeFinding(
                    claim: "Supervised pre-training adds better than MAE.", verdict: v, numbers: "(\(numbers))"))
        }
        let worse = names.filter { $0 != "mae" }.compactMap { versus($0, "mae") }
        if names.contains("mae"), !worse.isEmpty {
            out.append(
                SchemeFinding(
                    claim: "MAE pre-training adds worst of the schemes compared.", verdict: Verdict.all(worse.map(\.0)),
                    numbers: "(" + worse.map(\.1).joined(separator: "; ") + ")"))
        }
        if let curve = row("dino")?.addition[mode]?.curve, let zero = curve.first(where: { $0.lambda == 0 }) {
            let positive = curve.filter { $0.lambda > 0 }
            let best = positive.max { $0.score < $1.score }
            if let best {
                out.append(
                    SchemeFinding(
                        claim: "After DINO pre-training, task addition loses accuracy for every λ > 0 (validation "
                            + "normalized accuracy below λ = 0's).",
                        verdict: Verdict(best.score < zero.score),
                        numbers: "(λ = 0: \(f(zero.score)); best λ > 0: \(f(best.score)) at λ = \(f(best.lambda)))"))
            }
        }
        let alignedVsFull = schemes.compactMap { r -> (Verdict, String)? in
            guard let d = differences[Self.alignedVsFullKey(r.scheme)] else { return nil }
            return (d.verdict(greaterThan: 0), "\(r.scheme) \(points(d))")
        }
        if !alignedVsFull.isEmpty {
            out.append(
                SchemeFinding(
                    claim: "Aligned fine-tuning adds better than full fine-tuning after every scheme.",
                    verdict: Verdict.all(alignedVsFull.map(\.0)),
                    numbers: "(aligned − full, test normalized: " + alignedVsFull.map(\.1).joined(separator: "; ")
                        + ")"))
        }
        let pairs = schemes.compactMap { r -> (String, Double, Double)? in
            guard let a = r.addition[mode]?.testNormalized.value, let x = r.meanXi[mode] else { return nil }
            return (r.scheme, a, x)
        }
        if pairs.count >= 3 {
            let rho = spearman(pairs.map(\.1), pairs.map(\.2))
            let critical = spearmanCritical(pairs.count)
            let v: Verdict = rho <= -critical ? .holds : rho >= 0 ? .doesNotHold : .inconclusive
            out.append(
                SchemeFinding(
                    claim: "The schemes that add better are more weight-disentangled (lower mean ξ, aligned).",
                    verdict: v,
                    numbers: String(
                        format: "(Spearman ρ = %.2f over %d schemes; holds at ρ ≤ −%.2f, the one-sided 5%% "
                            + "critical "
                            + "value; ", rho, pairs.count, critical)
                        + pairs.map { "\($0.0) \(f($0.1)) / ξ \(f($0.2))" }.joined(separator: ", ") + ")"))
        }
        return out
    }

    func f(_ v: Double) -> String { String(format: "%.3f", v) }

    func points(_ d: Estimate) -> String {
        func p(_ x: Double) -> String { String(format: "%+.1f", 100 * x) }
        return "\(p(d.value)) [\(p(d.low)), \(p(d.high))] points"
    }
}

/// Spearman's rank correlation of `x` and `y` (ties get their mean rank).
public func spearman(_ x: [Double], _ y: [Double]) -> Double {
    precondition(x.count == y.count && x.count >= 2, "spearman needs two equal series of at least 2 values")
    func ranks(_ v: [Double]) -> [Double] {
        let order = v.indices.sorted { v[$0] < v[$1] }
        var r = [Double](repeating: 0, count: v.count)
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count && v[order[j + 1]] == v[order[i]] { j += 1 }
            for k in i...j { r[order[k]] = Double(i + j) / 2 + 1 }
            i = j + 1
        }
        return r
    }
    let (rx, ry) = (ranks(x), ranks(y))
    let n = Double(x.count), mx = rx.reduce(0, +) / n, my = ry.reduce(0, +) / n
    var sxy = 0.0, sxx = 0.0, syy = 0.0
    for i in rx.indices {
        sxy += (rx[i] - mx) * (ry[i] - my)
        sxx += (rx[i] - mx) * (rx[i] - mx)
        syy += (ry[i] - my) * (ry[i] - my)
    }
    return sxx > 0 && syy > 0 ? sxy / (sxx * syy).squareRoot() : 0
}

/// The one-sided 5% critical value of |Spearman ρ| for n values (exact tables; n = 3 cannot reach 5%, so 1).
public func spearmanCritical(_ n: Int) -> Double {
    switch n {
    case ...4: 1
    case 5: 0.9
    case 6: 0.829
    case 7: 0.714
    case 8: 0.643
    case 9: 0.600
    default: 0.564
    }
}

extension SchemeComparison {
    /// report.md of the comparison (Markdown): the scheme table, the paired differences, the plots, the claims.
    public func markdown(settings o: ReportSettings) -> String {
        func e(_ v: Estimate?) -> String {
            guard let v else { return "–" }
            return "\(f(v.value)) [\(f(v.low)), \(f(v.high))]"
        }
        func seconds(_ s: Double?) -> String {
            guard let s else { return "–" }
            return s >= 60 ? String(format: "%.1f min", s / 60) : String(format: "%.0f s", s)
        }
        var s = "# ViTMerge pre-training scheme comparison\n\n"
        s += "Every scheme pre-trained from scratch on the same data with the same budget: \(pretrainSteps) steps × "
        s += "batch \(pretrainBatch) images; then the same protocol on tasks \(tasks.joined(separator: ", ")): "
        s += "probe \(o.probeSteps) steps, fine-tuning \(o.finetuneSteps) steps × batch \(o.batchSize), lr \(o.lr), "
        s += "seed \(seed). Each scheme's own report is `<scheme>/report.md`.\n"
        s += "Machine: \(environment.cpu), up to \(environment.threads) threads per scheme; \(environment.seconds) s "
        s += "of experiments in all.\n"
        s += "\n## Schemes (test; means over the tasks; 95% bootstrap intervals)\n\n"
        s += "| scheme | pre-training time | final loss | probe | aligned | full | addition aligned | λ | "
        s += "addition full | λ | mean ξ aligned | mean ξ full |\n"
        s += "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        for r in schemes {
            let cells = [
                r.scheme, seconds(r.pretrainSeconds), r.pretrainLoss.map { String(format: "%.4f", $0) } ?? "–",
                e(r.probe), e(r.fineTuned.aligned), e(r.fineTuned.full), e(r.addition.aligned?.testNormalized),
                r.addition.aligned.map { f($0.lambda) } ?? "–", e(r.addition.full?.testNormalized),
                r.addition.full.map { f($0.lambda) } ?? "–", r.meanXi.aligned.map(f) ?? "–",
                r.meanXi.full.map(f) ?? "–",
            ]
            s += "| " + cells.joined(separator: " | ") + " |\n"
        }
        let ks = Array(Set(schemes.flatMap { $0.taskCount.aligned ?? [] }.map(\.k))).sorted()
        if !ks.isEmpty {
            s += "\n## Task count, aligned (test normalized accuracy of adding k tasks)\n\n| scheme | "
            s += ks.map { "k = \($0)" }.joined(separator: " | ") + " |\n|---|"
            s += String(repeating: "---|", count: ks.count) + "\n"
            for r in schemes {
                let byK = Dictionary((r.taskCount.aligned ?? []).map { ($0.k, $0.testNormalized) }) { a, _ in a }
                s += "| \(r.scheme) | " + ks.map { byK[$0].map(f) ?? "–" }.joined(separator: " | ") + " |\n"
            }
        }
        if !differences.isEmpty {
            s += "\n## Paired differences (task addition, test normalized, percentage points)\n\n"
            s += "| difference | estimate |\n|---|---|\n"
            for key in differences.keys.sorted() { s += "| \(key) | \(points(differences[key]!)) |\n" }
        }
        s += "\n## Plots\n\n![λ curves per scheme](scheme_lambda_curves.svg)\n\n"
        s += "![task count per scheme](scheme_task_count.svg)\n"
        s += "\n## The papers' claims on our data\n\n"
        for x in findings { s += "- **\(x.verdict.rawValue)** — \(x.claim) \(x.numbers)\n" }
        return s
    }
}
