import Foundation

extension ReportWriter {
    /// The papers' claims checked on the results: (claim, verdict, the numbers behind it). A claim about
    /// accuracies is decided by the bootstrap interval of its difference (`Statistics`): holds when the interval
    /// clears the claim's threshold, does not hold when it lies on the wrong side, inconclusive when it
    /// straddles it. Claims on quantities without an interval (λ, ξ, the task-count curve), and every claim of
    /// results written without statistics, are decided on the measured values. Claims whose numbers were not
    /// measured (a mode not run) are left out.
    func findings() -> [(String, Verdict, String)] {
        let r = results, tasks = r.tasks, acc = r.accuracy, add = r.taskAddition
        // Over a seed sweep, the intervals of the mean over the runs; else this run's.
        let st = r.seeds?.pooled ?? r.statistics
        var out: [(String, Verdict, String)] = []
        for mode in [ExperimentMode.aligned, .full, .linearized] {
            guard let a = acc.modes[mode], let p = acc.pretrainedProbe else { continue }
            let m = mode.rawValue
            let perTask = tasks.map { st?[.difference("finetune_vs_probe.\(m).\($0)")] }
            let verdict: Verdict
            var numbers = "(mean \(f(mean(a))) vs \(f(mean(p)))"
            if perTask.allSatisfy({ $0 != nil }) {
                let vs = perTask.map { $0!.verdict(greaterThan: 0) }
                verdict = Verdict.all(vs)
                let unclear = zip(tasks, vs).filter { $0.1 != .holds }.map { "\($0.0) \($0.1.rawValue)" }
                if let d = st?[.difference("finetune_vs_probe.\(m).mean")] { numbers += "; difference \(points(d))" }
                numbers += unclear.isEmpty ? ")" : "; per task: \(unclear.joined(separator: ", ")))"
            } else {
                let worse = tasks.filter { (a[$0] ?? 0) <= (p[$0] ?? 0) }
                verdict = Verdict(worse.isEmpty)
                numbers += worse.isEmpty ? ")" : "; not on \(worse.joined(separator: ", ")))"
            }
            out.append(
                (
                    "Fine-tuning (\(m)) beats the linear probe on the pre-trained encoder on every task.", verdict,
                    numbers
                ))
        }
        if let a = add.aligned?.testNormalized, let fu = add.full?.testNormalized {
            let d = st?[.difference("aligned_vs_full.task_addition")]
            out.append(
                (
                    "Aligned fine-tuning adds better than full fine-tuning, by ≥ 1 point "
                        + "(the paper: full costs 40–50 points).",
                    d?.verdict(atLeast: 0.01) ?? Verdict(a >= fu + 0.01),
                    "(test normalized \(f(a)) vs \(f(fu)), difference \(points(d, a - fu)))"
                ))
        }
        if let l = add.aligned?.lambda {
            out.append(
                (
                    "The optimal λ is small (0.05–0.15).", Verdict(l >= 0.05 - 1e-9 && l <= 0.15 + 1e-9),
                    "(aligned λ = \(f(l)))"
                ))
        }
        if let a = add.aligned?.testAbsolute, let p = acc.pretrainedProbe {
            let d = st?[.difference("probe_vs_aligned_addition.absolute")]
            let point = (mean(p) ?? 0) - (mean(a) ?? 0)
            let verdict = d.map { Verdict.all([$0.verdict(atMost: 0.03), $0.verdict(atLeast: -0.03)]) }
            out.append(
                (
                    "Probe-only is within 3 points of aligned task addition (absolute accuracy).",
                    verdict ?? Verdict(abs(point) <= 0.03),
                    "(probe \(f(mean(p))) vs aligned merged \(f(mean(a))), difference \(points(d, point)))"
                ))
        }
        for (mode, c) in r.taskCount.sorted where c.count >= 2 {
            let (first, last) = (c.first!, c.last!)
            let d = st?[.difference("task_count_drop.\(mode.rawValue)")]
            let point = first.testNormalized - last.testNormalized
            out.append(
                (
                    "Normalized accuracy degrades, by ≥ 1 point, as more tasks are added (\(mode.rawValue)).",
                    d?.verdict(atLeast: 0.01) ?? Verdict(point >= 0.01),
                    "(k = \(first.k): \(f(first.testNormalized)), k = \(last.k): \(f(last.testNormalized)); "
                        + "drop \(points(d, point)))"
                ))
        }
        for (mode, n) in r.negation.sorted {
            let (t0, t, c0, c) =
                (n.targetPretrainedAccuracy, n.targetAccuracy, n.controlPretrainedAccuracy, n.controlAccuracy)
            let drop = st?[.difference("negation_target_drop.\(mode.rawValue)")]
            let kept = st?[.difference("negation_control_retained.\(mode.rawValue)")]
            var numbers = "(target \(f(t0)) → \(f(t)), control \(f(c0)) → \(f(c))"
            let verdict: Verdict
            if let drop, let kept {
                verdict = Verdict.all([drop.verdict(atLeast: 0.1), kept.verdict(atLeast: 0.95)])
                numbers += "; target drop \(points(drop)), control keeps \(f(kept.value)) [\(f(kept.low)), "
                numbers += "\(f(kept.high))])"
            } else {
                verdict = Verdict(t <= t0 - 0.1 && c >= 0.95 * c0)
                numbers += ")"
            }
            out.append(
                (
                    "Negation (\(mode.rawValue)) lowers the target's accuracy by ≥ 10 points while the control "
                        + "keeps ≥ 95% of its pre-trained accuracy (test).", verdict, numbers
                ))
        }
        if let l = add.linearized?.testNormalized, let a = add.aligned?.testNormalized {
            let d = st?[.difference("linearized_vs_aligned.task_addition")]
            out.append(
                (
                    "Linearized (tangent-space) task vectors add better than aligned non-linear ones, by ≥ 1 point "
                        + "(tangent-space paper).",
                    d?.verdict(atLeast: 0.01) ?? Verdict(l >= a + 0.01),
                    "(test normalized \(f(l)) vs \(f(a)), difference \(points(d, l - a)))"
                ))
        }
        let dis = r.disentanglement
        if let l = dis.linearized, let a = dis.aligned {
            let (xl, xa) = (l.meanError(radius: 1), a.meanError(radius: 1))
            out.append(
                (
                    "Linearized task vectors are more weight-disentangled than non-linear ones "
                        + "(lower ξ for |α| ≤ 1).",
                    Verdict(xl < xa), "(\(f(xl)) vs \(f(xa)); no interval)"
                ))
        }
        if let a = dis.aligned, let fu = dis.full {
            let (xa, xf) = (a.meanError(radius: 1), fu.meanError(radius: 1))
            out.append(
                (
                    "Aligned task vectors are more weight-disentangled than full ones (lower ξ for |α| ≤ 1).",
                    Verdict(xa < xf), "(\(f(xa)) vs \(f(xf)); no interval)"
                ))
        }
        if let t = r.merges.ties?.testNormalized, let ta = r.merges.taskArithmetic?.testNormalized {
            let d = st?[.difference("ties_vs_task_arithmetic")]
            out.append(
                (
                    "TIES-merging beats plain task arithmetic by ≥ 1 point "
                        + "(published: 72.2 vs 68.0 absolute on CLIP ViT-B/32).",
                    d?.verdict(atLeast: 0.01) ?? Verdict(t >= ta + 0.01),
                    "(\(f(t)) vs \(f(ta)) test normalized, difference \(points(d, t - ta)))"
                ))
        }
        return out
    }

    /// A difference in points with its interval, e.g. "+1.2 [−0.4, +2.9] points"; without an interval, the
    /// measured difference alone.
    func points(_ d: Estimate?, _ value: Double? = nil) -> String {
        func p(_ x: Double) -> String { String(format: "%+.1f", 100 * x) }
        if let d { return "\(p(d.value)) [\(p(d.low)), \(p(d.high))] points" }
        return value.map { "\(p($0)) points" } ?? "–"
    }
}
