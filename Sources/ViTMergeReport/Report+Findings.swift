import Foundation

extension ReportWriter {
    /// The papers' claims checked on the results: (claim, whether it holds, the numbers behind the verdict).
    /// A claim whose numbers were not measured (a mode not run) is left out.
    func findings() -> [(String, Bool, String)] {
        let r = results, tasks = r.tasks, acc = r.accuracy, add = r.taskAddition
        var out: [(String, Bool, String)] = []
        for mode in [ExperimentMode.aligned, .full, .linearized] {
            guard let a = acc.modes[mode], let p = acc.pretrainedProbe else { continue }
            let worse = tasks.filter { (a[$0] ?? 0) <= (p[$0] ?? 0) }
            out.append(
                (
                    "Fine-tuning (\(mode.rawValue)) beats the linear probe on the pre-trained encoder on every task.",
                    worse.isEmpty,
                    "(mean \(f(mean(a))) vs \(f(mean(p)))"
                        + (worse.isEmpty ? ")" : "; not on \(worse.joined(separator: ", ")))")
                ))
        }
        if let a = add.aligned?.testNormalized, let fu = add.full?.testNormalized {
            out.append(
                (
                    "Aligned fine-tuning adds better than full fine-tuning, by ≥ 1 point "
                        + "(the paper: full costs 40–50 points).",
                    a >= fu + 0.01,
                    "(test normalized \(f(a)) vs \(f(fu)), difference \(String(format: "%.1f", 100 * (a - fu))) points)"
                ))
        }
        if let l = add.aligned?.lambda {
            out.append(
                (
                    "The optimal λ is small "
                        + "(0.05–0.15).", l >= 0.05 - 1e-9 && l <= 0.15 + 1e-9, "(aligned λ = \(f(l)))"
                ))
        }
        if let a = add.aligned?.testAbsolute, let p = acc.pretrainedProbe {
            let d = (mean(p) ?? 0) - (mean(a) ?? 0)
            out.append(
                (
                    "Probe-only is within 2–3 points of aligned task addition (absolute accuracy).", abs(d) <= 0.03,
                    "(probe \(f(mean(p))) vs aligned merged \(f(mean(a))))"
                ))
        }
        for (mode, c) in r.taskCount.sorted {
            let v = c.map(\.testNormalized)
            if v.count >= 2 {
                out.append(
                    (
                        "Normalized accuracy degrades, by ≥ 1 point, as more tasks are added (\(mode.rawValue)).",
                        v.last! <= v.first! - 0.01,
                        "(k = 2: \(f(v.first)), k = \(v.count + 1): \(f(v.last)))"
                    ))
            }
        }
        for (mode, n) in r.negation.sorted {
            let (t0, t, c0, c) =
                (n.targetPretrainedAccuracy, n.targetAccuracy, n.controlPretrainedAccuracy, n.controlAccuracy)
            out.append(
                (
                    "Negation (\(mode.rawValue)) lowers the target's accuracy by ≥ 10 points while the control "
                        + "keeps ≥ 95% of its pre-trained accuracy (test).",
                    t <= t0 - 0.1 && c >= 0.95 * c0, "(target \(f(t0)) → \(f(t)), control \(f(c0)) → \(f(c)))"
                ))
        }
        if let l = add.linearized?.testNormalized, let a = add.aligned?.testNormalized {
            out.append(
                (
                    "Linearized (tangent-space) task vectors add better than aligned non-linear ones, by ≥ 1 point "
                        + "(tangent-space paper).",
                    l >= a + 0.01, "(test normalized \(f(l)) vs \(f(a)))"
                ))
        }
        let dis = r.disentanglement
        if let l = dis.linearized, let a = dis.aligned {
            let (xl, xa) = (l.meanError(radius: 1), a.meanError(radius: 1))
            out.append(
                (
                    "Linearized task vectors are more weight-disentangled than non-linear ones (lower ξ for |α| ≤ "
                        + "1).",
                    xl < xa, "(\(f(xl)) vs \(f(xa)))"
                ))
        }
        if let a = dis.aligned, let fu = dis.full {
            let (xa, xf) = (a.meanError(radius: 1), fu.meanError(radius: 1))
            out.append(
                (
                    "Aligned task vectors are more weight-disentangled than full ones (lower ξ for |α| ≤ "
                        + "1).", xa < xf,
                    "(\(f(xa)) vs \(f(xf)))"
                ))
        }
        if let t = r.merges.ties?.testNormalized, let ta = r.merges.taskArithmetic?.testNormalized {
            out.append(
                (
                    "TIES-merging beats plain task arithmetic by ≥ 1 point "
                        + "(published: 72.2 vs 68.0 absolute on CLIP ViT-B/32).",
                    t >= ta + 0.01, "(\(f(t)) vs \(f(ta)) test normalized)"
                ))
        }
        return out
    }
}
