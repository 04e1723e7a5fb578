import Foundation
import ViTMergeReport

extension ExperimentPipeline {
    /// Bootstrap intervals for every accuracy the results report and for the differences the findings compare,
    /// from the models' per-image test outcomes (1000 paired resamples, 95%, seeded by the run's seed). With
    /// several fine-tuning runs (`runs`: the prefixes of their model names in `outcomes`), each estimate is the
    /// mean over the runs of the statistic, resampled over the (shared) test images.
    func statistics(
        _ outcomes: Outcomes, results r: ExperimentResults, testSizes: [Int], runs: [String] = [""]
    ) -> Statistics {
        let boot = Bootstrap(sizes: testSizes, seed: settings.seed)
        var out = Statistics(replicates: boot.replicates, level: boot.level, seed: boot.seed)
        func estimate(_ statistic: (_ accuracy: (String, Int) -> Double) -> Double) -> Estimate? {
            boot.estimate(outcomes) { acc in
                withoutActuallyEscaping(acc) { acc in
                    runs.map { run in statistic { model, t in acc(run + model, t) } }.reduce(0, +) / Double(runs.count)
                }
            }
        }
        let tasks = Array(r.tasks.indices)
        func mean(_ f: (Int) -> Double, over subset: [Int] = tasks) -> Double {
            subset.map(f).reduce(0, +) / Double(max(subset.count, 1))
        }
        // Fine-tuned models (and the probe on the pre-trained encoder, stored as "probe").
        let fineTunedModes = [ExperimentMode.aligned, .full, .linearized].filter { settings.modes.contains($0) }
        for (model, key) in [("probe", "pretrained_probe")] + fineTunedModes.map({ ($0.rawValue, $0.rawValue) }) {
            for t in tasks {
                out[.accuracy(key, task: r.tasks[t])] = estimate { acc in acc(model, t) }
            }
            out[.meanAccuracy(key)] = estimate { acc in mean { acc(model, $0) } }
        }
        for mode in fineTunedModes {
            let m = mode.rawValue
            for t in tasks {
                out[.difference("finetune_vs_probe.\(m).\(r.tasks[t])")] = estimate { acc in
                    acc(m, t) - acc("probe", t)
                }
            }
            out[.difference("finetune_vs_probe.\(m).mean")] = estimate { acc in
                mean { acc(m, $0) - acc("probe", $0) }
            }
            // Task addition at the chosen λ, normalized by the same resample's fine-tuned accuracy.
            out[.additionNormalized(mode)] = estimate { acc in
                mean { normalized(acc("addition.\(m)", $0), acc(m, $0)) }
            }
            // Mean over the evaluated subsets of size k of their test normalized accuracy.
            func countScore(_ c: TaskCount, _ acc: (String, Int) -> Double) -> Double {
                let subsets = (c.tasks ?? []).map { $0.compactMap { r.tasks.firstIndex(of: $0) } }
                return subsets.enumerated().map { j, subset in
                    mean({ normalized(acc("count.\(m).k\(c.k).s\(j)", $0), acc(m, $0)) }, over: subset)
                }.reduce(0, +) / Double(max(subsets.count, 1))
            }
            let counts = (r.taskCount[mode] ?? []).filter { !($0.tasks ?? []).isEmpty }
            for c in counts { out[.taskCount(mode, k: c.k)] = estimate { acc in countScore(c, acc) } }
            if let first = counts.first, let last = counts.last, counts.count >= 2 {
                out[.difference("task_count_drop.\(m)")] = estimate { acc in
                    countScore(first, acc) - countScore(last, acc)
                }
            }
            out[.additionAbsolute(mode)] = estimate { acc in mean { acc("addition.\(m)", $0) } }
            if let n = r.negation[mode], let target = r.tasks.firstIndex(of: n.target),
                let control = r.tasks.firstIndex(of: n.control)
            {
                out[.negation(mode, "target")] = estimate { acc in acc("negated.\(m)", target) }
                out[.negation(mode, "control")] = estimate { acc in acc("negated.\(m)", control) }
                out[.difference("negation_target_drop.\(m)")] = estimate { acc in
                    acc("pretrained.\(m)", target) - acc("negated.\(m)", target)
                }
                out[.difference("negation_control_retained.\(m)")] = estimate { acc in
                    normalized(acc("negated.\(m)", control), acc("pretrained.\(m)", control))
                }
            }
        }
        func additionDifference(_ a: ExperimentMode, _ b: ExperimentMode) -> Estimate? {
            estimate { acc in
                mean { normalized(acc("addition.\(a.rawValue)", $0), acc(a.rawValue, $0)) }
                    - mean { normalized(acc("addition.\(b.rawValue)", $0), acc(b.rawValue, $0)) }
            }
        }
        out[.difference("aligned_vs_full.task_addition")] = additionDifference(.aligned, .full)
        out[.difference("linearized_vs_aligned.task_addition")] = additionDifference(.linearized, .aligned)
        out[.difference("probe_vs_aligned_addition.absolute")] = estimate { acc in
            mean { acc("probe", $0) - acc("addition.aligned", $0) }
        }
        // The other merges, normalized by the fine-tuned models of the mode they merged.
        let mergeMode = settings.modes.contains(.aligned) ? "aligned" : fineTunedModes.first?.rawValue ?? "aligned"
        func mergeNormalized(_ method: String, _ acc: (String, Int) -> Double) -> Double {
            mean { normalized(acc("merge.\(method)", $0), acc(mergeMode, $0)) }
        }
        for method in ["average", "task_arithmetic", "ties", "dare"] {
            out[.merge(method)] = estimate { acc in mergeNormalized(method, acc) }
        }
        for method in ["ties", "dare", "average"] {
            out[.difference("\(method)_vs_task_arithmetic")] = estimate { acc in
                mergeNormalized(method, acc) - mergeNormalized("task_arithmetic", acc)
            }
        }
        return out
    }
}

/// Accuracy relative to a reference accuracy (0 when the reference is 0), as normalized accuracy is defined.
func normalized(_ accuracy: Double, _ reference: Double) -> Double { reference > 0 ? accuracy / reference : 0 }
