import Foundation

/// report.md from the results dictionary: tables, then the papers' findings checked one by one.
struct ReportWriter {
    let results: [String: Any]
    let options: ExperimentOptions

    func f(_ v: Any?) -> String { (v as? Double).map { String(format: "%.3f", $0) } ?? "–" }
    func mean(_ d: [String: Double]?) -> Double? {
        guard let d, !d.isEmpty else { return nil }
        return d.values.reduce(0, +) / Double(d.count)
    }

    func markdown() -> String {
        let tasks = results["tasks"] as? [String] ?? []
        let acc = results["accuracy"] as? [String: [String: Double]] ?? [:]
        let add = results["task_addition"] as? [String: [String: Any]] ?? [:]
        let counts = results["task_count"] as? [String: [[String: Any]]] ?? [:]
        let neg = results["negation"] as? [String: [String: Any]] ?? [:]
        let dis = results["disentanglement"] as? [String: [String: Any]] ?? [:]
        let merges = results["merges"] as? [String: [String: Any]] ?? [:]
        var s = "# ViTMerge experiment report\n\n"
        s +=
            "Pre-training: \(results["pretraining"] ?? "?") (`\(options.pretrained)`); tasks: \(tasks.joined(separator: ", ")); "
        s +=
            "seed \(options.seed); probe \(options.probeSteps) steps, fine-tuning \(options.finetuneSteps) steps × batch \(options.batchSize), lr \(options.lr).\n"
        if let env = results["environment"] as? [String: Any] {
            s += "Machine: \(env["cpu"] ?? "?"), \(env["threads"] ?? "?") threads.\n"
        }

        s +=
            "\n## Accuracy on test (fraction)\n\n| mode | " + tasks.joined(separator: " | ") + " | mean |\n|---|"
            + String(repeating: "---|", count: tasks.count + 1) + "\n"
        for mode in ["pretrained_probe", "aligned", "full", "linearized"] where acc[mode] != nil {
            s +=
                "| \(mode) | " + tasks.map { f(acc[mode]?[$0]) }.joined(separator: " | ")
                + " | \(f(mean(acc[mode]))) |\n"
        }

        s +=
            "\n## Task addition (λ chosen on validation)\n\n| mode | λ | val normalized | test normalized | test absolute (mean) |\n|---|---|---|---|---|\n"
        for (mode, a) in add.sorted(by: { $0.key < $1.key }) {
            s +=
                "| \(mode) | \(f(a["lambda"])) | \(f(a["val_normalized"])) | \(f(a["test_normalized"])) | \(f(mean(a["test_absolute"] as? [String: Double]))) |\n"
        }
        s += "\n![λ curves](lambda_curves.svg)\n"

        s +=
            "\n## Number of tasks\n\n| mode | "
            + (counts.values.first ?? []).map { "k = \($0["k"] ?? "")" }.joined(separator: " | ") + " |\n|---|"
            + String(repeating: "---|", count: (counts.values.first ?? []).count) + "\n"
        for (mode, c) in counts.sorted(by: { $0.key < $1.key }) {
            s += "| \(mode) | " + c.map { f($0["test_normalized"]) }.joined(separator: " | ") + " |\n"
        }
        s += "\n![task count](task_count.svg)\n"

        s +=
            "\n## Task negation (test accuracy)\n\n| mode | target | control | λ | target: pre-trained → negated | control: pre-trained → negated |\n|---|---|---|---|---|---|\n"
        for (mode, n) in neg.sorted(by: { $0.key < $1.key }) {
            s +=
                "| \(mode) | \(n["target"] ?? "") | \(n["control"] ?? "") | \(f(n["lambda"])) | \(f(n["target_pretrained_accuracy"])) → \(f(n["target_accuracy"])) | \(f(n["control_pretrained_accuracy"])) → \(f(n["control_accuracy"])) |\n"
        }

        s += "\n## Weight disentanglement\n\n"
        for (mode, d) in dis.sorted(by: { $0.key < $1.key }) {
            let xi = d["error"] as? [[Double]] ?? [], alphas = d["alphas"] as? [Double] ?? []
            s +=
                "- \(mode): mean ξ over |α| ≤ 1: \(f(meanXi(xi, alphas, radius: 1))), over the whole grid: \(f(meanXi(xi, alphas, radius: 99))) — ![ξ \(mode)](disentanglement_\(mode).svg)\n"
        }

        s +=
            "\n## Other merges (test normalized accuracy)\n\n| method | hyper-parameter | λ | test normalized |\n|---|---|---|---|\n"
        for key in ["task_arithmetic", "average", "ties", "dare"] {
            guard let m = merges[key] else { continue }
            let hp = key == "ties" ? "keep \(f(m["keep"]))" : key == "dare" ? "drop \(f(m["drop"]))" : "–"
            s += "| \(key) | \(hp) | \(f(m["lambda"])) | \(f(m["test_normalized"])) |\n"
        }

        s += "\n## The papers' findings on our data\n\n"
        for (claim, verdict, numbers) in findings(tasks, acc, add, counts, neg, dis, merges) {
            s += "- **\(verdict ? "holds" : "does not hold")** — \(claim) \(numbers)\n"
        }
        return s
    }

    func findings(
        _ tasks: [String], _ acc: [String: [String: Double]], _ add: [String: [String: Any]],
        _ counts: [String: [[String: Any]]], _ neg: [String: [String: Any]], _ dis: [String: [String: Any]],
        _ merges: [String: [String: Any]]
    ) -> [(String, Bool, String)] {
        var out: [(String, Bool, String)] = []
        for mode in ["aligned", "full", "linearized"] {
            guard let a = acc[mode], let p = acc["pretrained_probe"] else { continue }
            let worse = tasks.filter { (a[$0] ?? 0) <= (p[$0] ?? 0) }
            out.append(
                (
                    "Fine-tuning (\(mode)) beats the linear probe on the pre-trained encoder on every task.",
                    worse.isEmpty,
                    "(mean \(f(mean(a))) vs \(f(mean(p)))"
                        + (worse.isEmpty ? ")" : "; not on \(worse.joined(separator: ", ")))")
                ))
        }
        if let a = add["aligned"]?["test_normalized"] as? Double, let fu = add["full"]?["test_normalized"] as? Double {
            out.append(
                (
                    "Aligned fine-tuning adds better than full fine-tuning, by ≥ 1 point (the paper: full costs 40–50 points).",
                    a >= fu + 0.01,
                    "(test normalized \(f(a)) vs \(f(fu)), difference \(String(format: "%.1f", 100 * (a - fu))) points)"
                ))
        }
        if let l = add["aligned"]?["lambda"] as? Double {
            out.append(
                ("The optimal λ is small (0.05–0.15).", l >= 0.05 - 1e-9 && l <= 0.15 + 1e-9, "(aligned λ = \(f(l)))"))
        }
        if let a = add["aligned"]?["test_absolute"] as? [String: Double], let p = acc["pretrained_probe"] {
            let d = (mean(p) ?? 0) - (mean(a) ?? 0)
            out.append(
                (
                    "Probe-only is within 2–3 points of aligned task addition (absolute accuracy).", abs(d) <= 0.03,
                    "(probe \(f(mean(p))) vs aligned merged \(f(mean(a))))"
                ))
        }
        for (mode, c) in counts.sorted(by: { $0.key < $1.key }) {
            let v = c.compactMap { $0["test_normalized"] as? Double }
            if v.count >= 2 {
                out.append(
                    (
                        "Normalized accuracy degrades, by ≥ 1 point, as more tasks are added (\(mode)).",
                        v.last! <= v.first! - 0.01,
                        "(k = 2: \(f(v.first)), k = \(v.count + 1): \(f(v.last)))"
                    ))
            }
        }
        for (mode, n) in neg.sorted(by: { $0.key < $1.key }) {
            if let t0 = n["target_pretrained_accuracy"] as? Double, let t = n["target_accuracy"] as? Double,
                let c0 = n["control_pretrained_accuracy"] as? Double, let c = n["control_accuracy"] as? Double
            {
                out.append(
                    (
                        "Negation (\(mode)) lowers the target's accuracy by ≥ 10 points while the control keeps ≥ 95% of its pre-trained accuracy (test).",
                        t <= t0 - 0.1 && c >= 0.95 * c0, "(target \(f(t0)) → \(f(t)), control \(f(c0)) → \(f(c)))"
                    ))
            }
        }
        if let l = add["linearized"]?["test_normalized"] as? Double,
            let a = add["aligned"]?["test_normalized"] as? Double
        {
            out.append(
                (
                    "Linearized (tangent-space) task vectors add better than aligned non-linear ones, by ≥ 1 point (tangent-space paper).",
                    l >= a + 0.01, "(test normalized \(f(l)) vs \(f(a)))"
                ))
        }
        if let l = dis["linearized"], let a = dis["aligned"] {
            let xl = meanXi(l["error"] as? [[Double]] ?? [], l["alphas"] as? [Double] ?? [], radius: 1)
            let xa = meanXi(a["error"] as? [[Double]] ?? [], a["alphas"] as? [Double] ?? [], radius: 1)
            out.append(
                (
                    "Linearized task vectors are more weight-disentangled than non-linear ones (lower ξ for |α| ≤ 1).",
                    xl < xa,
                    "(\(f(xl)) vs \(f(xa)))"
                ))
        }
        if let a = dis["aligned"], let fu = dis["full"] {
            let xa = meanXi(a["error"] as? [[Double]] ?? [], a["alphas"] as? [Double] ?? [], radius: 1)
            let xf = meanXi(fu["error"] as? [[Double]] ?? [], fu["alphas"] as? [Double] ?? [], radius: 1)
            out.append(
                (
                    "Aligned task vectors are more weight-disentangled than full ones (lower ξ for |α| ≤ 1).", xa < xf,
                    "(\(f(xa)) vs \(f(xf)))"
                ))
        }
        if let t = merges["ties"]?["test_normalized"] as? Double,
            let ta = merges["task_arithmetic"]?["test_normalized"] as? Double
        {
            out.append(
                (
                    "TIES-merging beats plain task arithmetic by ≥ 1 point (published: 72.2 vs 68.0 absolute on CLIP ViT-B/32).",
                    t >= ta + 0.01,
                    "(\(f(t)) vs \(f(ta)) test normalized)"
                ))
        }
        return out
    }
}
