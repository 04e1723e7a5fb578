import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeMerging
import ViTMergeModel
import ViTMergeReport

extension ExperimentPipeline {
    /// Stage 2 for one fine-tuning mode: saves the task vectors, then task addition, accuracy vs number of tasks,
    /// negation, disentanglement and (on the aligned vectors, or each mode's when aligned did not run) the other
    /// merges, into `results`, and each scored model's test outcomes into `outcomes`. Returns the λ curve for the
    /// plot.
    func merge(
        mode: ExperimentMode, pre: ViTParameters, splits: [TaskSplits], names: [String], fineTuned: FineTuned,
        into results: inout ExperimentResults, outcomes: inout Outcomes
    ) throws -> SVG.Series {
        let s = settings, m = mode.rawValue
        let all = Array(splits.indices)
        let tasks = try all.map { i in
            try MergeTask(
                name: names[i], validation: splits[i].validation, test: splits[i].test,
                finetuned: fineTuned.models[mode]![i], pretrained: pre,
                finetunedValidation: fineTuned.validation[mode]![i], finetunedTest: fineTuned.test[mode]![i],
                samples: splits[i].train.sample(s.mergeSamples, seed: s.seed))
        }
        let base = parameterHash(pre)
        for i in all {
            try TaskVector(task: names[i], base: base, values: tasks[i].tau)
                .save(to: "\(s.out)/\(names[i])/task_vector_\(m).safetensors", table: pre.table)
        }
        let ev = MergeEvaluator(pretrained: pre, tasks: tasks, linearized: mode == .linearized)
        let add = ev.addition(tasks: all)
        log(
            String(
                format: "%@ task addition: λ %.2f, normalized accuracy val %.3f test %.3f", m, add.lambda,
                add.validation, add.test))
        results.taskAddition[mode] = TaskAddition(
            lambda: add.lambda, valNormalized: add.validation, testNormalized: add.test,
            testAbsolute: byTask(names, add.testAbsolute), testNormalizedPerTask: byTask(names, add.testPerTask),
            curve: add.curve.map { CurvePoint($0.0, $0.1) })
        let curve = SVG.Series(name: m, points: add.curve.map { (x: $0.0, y: $0.1) })
        record(add.testPredictions, "addition.\(m)", tasks: all, ev, into: &outcomes)

        // Accuracy vs number of tasks: every subset of size k, or a seeded sample; λ on a coarser grid.
        var perK: [TaskCount] = []
        let coarse = (0...10).map { Double($0) / 10 }
        for k in 2...splits.count {
            let every = combinations(all, k)
            let subsets = sample(every, count: s.taskCountSubsets, stream: UInt64(k))
            var scores: [Double] = []
            for (j, subset) in subsets.enumerated() {
                let r = ev.addition(tasks: subset, grid: coarse)
                scores.append(r.test)
                record(r.testPredictions, "count.\(m).k\(k).s\(j)", tasks: subset, ev, into: &outcomes)
            }
            let mean = scores.reduce(0, +) / Double(scores.count)
            perK.append(
                TaskCount(
                    k: k, testNormalized: mean, subsets: subsets.count, possible: every.count,
                    tasks: subsets.map { $0.map { names[$0] } }))
        }
        results.taskCount[mode] = perK
        let points = perK.map { (x: Double($0.k), y: $0.testNormalized) }
        log("\(m) task count: " + points.map { String(format: "k=%d %.3f", Int($0.x), $0.y) }.joined(separator: ", "))

        // Negation: θ_pre − λ τ_target; the control must keep ≥ 95% of its pre-trained accuracy.
        let neg = ev.negation(target: 0, control: 1)
        results.negation[mode] = Negation(
            target: names[neg.target], control: names[neg.control], lambda: neg.lambda,
            targetAccuracy: neg.targetAccuracy, controlAccuracy: neg.controlAccuracy,
            targetPretrainedAccuracy: neg.targetPretrainedAccuracy,
            controlPretrainedAccuracy: neg.controlPretrainedAccuracy)
        let pair = [neg.target, neg.control]
        record(
            ev, ev.encoder([tasks[neg.target].tau], [Float(-neg.lambda)]), "negated.\(m)", tasks: pair, into: &outcomes)
        record(ev, ev.encoder([], []), "pretrained.\(m)", tasks: pair, into: &outcomes)

        // Weight disentanglement error for the first two tasks.
        let alphas = stride(from: -3.0, through: 3.0001, by: s.alphaStep).map { ($0 * 1000).rounded() / 1000 }
        let xi = ev.disentanglement(0, 1, alphas: alphas, limit: s.disentangleImages)
        let d = Disentanglement(tasks: [names[0], names[1]], alphas: alphas, error: xi)
        results.disentanglement[mode] = d
        try write(
            SVG.heatmap(
                title: "Weight disentanglement error ξ (\(m)): \(names[0]) + \(names[1])",
                xLabel: "α2 (\(names[1]))", yLabel: "α1 (\(names[0]))", xs: alphas, ys: alphas, values: xi, vMax: 2),
            "disentanglement_\(m).svg")
        log("\(m) disentanglement: mean ξ over |α| ≤ 1: " + String(format: "%.3f", d.meanError(radius: 1)))

        // Other merges on the aligned task vectors (hyper-parameter and λ on validation).
        if mode == .aligned || !s.modes.contains(.aligned) {
            results.merges = try compareMerges(
                ev, names: names, taskArithmetic: (add.lambda, add.test), mode: mode, outcomes: &outcomes)
            let r = results.merges
            log(
                String(
                    format: "merges (%@): average %.3f, task arithmetic %.3f, TIES %.3f, DARE %.3f (test normalized)",
                    m, r.average!.testNormalized, add.test, r.ties!.testNormalized, r.dare!.testNormalized))
        }
        if (mode == .aligned || mode == .linearized) && !s.mergeMethods.isEmpty {
            var methods = results.methods ?? PerMode()
            methods[mode] = try methodTable(ev, names: names, mode: mode)
            results.methods = methods
            try write(methodsChart(methods, names: s.mergeMethods.map(\.rawValue)), "merge_methods.svg")
        }
        return curve
    }

    /// Every method of `settings.mergeMethods` on this mode's task vectors: the method's default hyper-parameter
    /// candidates and λ grid searched on validation, reported on test, timed. A method that refuses the mode
    /// (RegMean on linearized vectors) is listed as skipped with its reason.
    func methodTable(_ ev: MergeEvaluator, names: [String], mode: ExperimentMode) throws -> MethodTable {
        var table = MethodTable()
        ev.adaMergingOptions.steps = settings.adaMergingSteps
        ev.adaMergingOptions.seed = settings.fineTuneSeed
        for method in settings.mergeMethods {
            let start = Date()
            if method == .emr {
                let r = ev.emrMerge()
                table.rows.append(
                    MethodResult(
                        method: method.rawValue, hyperparameter: nil, lambda: nil, valNormalized: nil,
                        testNormalized: r.test, testNormalizedPerTask: byTask(names, r.testPerTask),
                        testAbsolute: byTask(names, r.testAbsolute), seconds: Date().timeIntervalSince(start),
                        perTaskModels: true))
            } else {
                let r: MergeSearchResult
                do {
                    r = try ev.merge(method, candidates: method.defaultCandidates, seed: settings.fineTuneSeed)
                } catch let e as MergeError {
                    table.skipped[method.rawValue] = e.description
                    log("\(mode.rawValue) \(method.rawValue): skipped (\(e.description))")
                    continue
                }
                table.rows.append(
                    MethodResult(
                        method: method.rawValue, hyperparameter: r.hyperparameter, lambda: r.lambda,
                        valNormalized: r.validation, testNormalized: r.test,
                        testNormalizedPerTask: byTask(names, r.testPerTask),
                        testAbsolute: byTask(names, r.testAbsolute),
                        seconds: Date().timeIntervalSince(start)))
            }
            let row = table.rows[table.rows.count - 1]
            log(
                String(
                    format: "%@ %@: test normalized %.3f, absolute %.3f (%.1f s)", mode.rawValue, method.rawValue,
                    row.testNormalized, row.testAbsoluteMean, row.seconds))
        }
        return table
    }

    /// The methods' mean normalized test accuracy, one bar per mode.
    func methodsChart(_ methods: PerMode<MethodTable>, names: [String]) -> String {
        SVG.barChart(
            title: "Merge methods: mean normalized test accuracy", xLabel: "normalized accuracy", labels: names,
            series: methods.sorted.map { m in
                (m.mode.rawValue, names.map { n in m.value.rows.first { $0.method == n }?.testNormalized })
            }, vMax: 1.1)
    }

    /// Averaging (λ = 1), TIES (keep 0.1, 0.2, 0.5) and DARE (drop 0.5, 0.9) next to plain task arithmetic.
    func compareMerges(
        _ ev: MergeEvaluator, names: [String], taskArithmetic: (lambda: Double, test: Double), mode: ExperimentMode,
        outcomes: inout Outcomes
    ) throws
        -> MergeComparison
    {
        var out = MergeComparison()
        let all = Array(names.indices)
        let avg = try ev.merge(.average)
        record(avg.testPredictions, "merge.average", tasks: all, ev, into: &outcomes)
        out.average = AverageMerge(testNormalized: avg.test, testAbsolute: byTask(names, avg.testAbsolute))
        out.taskArithmetic = TaskArithmeticMerge(lambda: taskArithmetic.lambda, testNormalized: taskArithmetic.test)
        func tuned(_ r: MergeSearchResult) -> TunedMerge {
            let h = r.hyperparameter!
            return TunedMerge(
                hyperparameter: h, keep: r.method == .ties ? h : nil, drop: r.method == .dare ? h : nil,
                lambda: r.lambda, valNormalized: r.validation, testNormalized: r.test,
                testAbsolute: byTask(names, r.testAbsolute))
        }
        let ties = try ev.merge(.ties, candidates: [0.1, 0.2, 0.5])
        let dare = try ev.merge(.dare, candidates: [0.5, 0.9], seed: settings.fineTuneSeed)
        for (name, r) in [("ties", ties), ("dare", dare)] {
            record(r.testPredictions, "merge.\(name)", tasks: all, ev, into: &outcomes)
        }
        out.ties = tuned(ties)
        out.dare = tuned(dare)
        outcomes.alias("merge.task_arithmetic", to: "addition.\(mode.rawValue)")
        return out
    }

    /// All of `items` when there are at most `count`, else `count` of them drawn without replacement (seeded by
    /// the run's seed and `stream`), in their original order.
    func sample(_ items: [[Int]], count: Int, stream: UInt64) -> [[Int]] {
        guard items.count > count else { return items }
        var order = Array(items.indices)
        var rng = RNG(seed: settings.seed, stream: 0x7A5C_0000 &+ stream)
        rng.shuffle(&order)
        return order.prefix(count).sorted().map { items[$0] }
    }

    /// Records the test predictions `predicted[j]` on task `tasks[j]` as model `name`.
    func record(
        _ predicted: [[Int]], _ name: String, tasks: [Int], _ ev: MergeEvaluator, into outcomes: inout Outcomes
    ) {
        for (i, p) in zip(tasks, predicted) {
            outcomes.record(name, task: i, predictions: p, labels: ev.tasks[i].test.labels)
        }
    }

    /// Records `encoder`'s test predictions on each of `tasks` (with the task's head) as model `name`.
    func record(
        _ ev: MergeEvaluator, _ encoder: MergedEncoder, _ name: String, tasks: [Int], into outcomes: inout Outcomes
    ) {
        for i in tasks {
            let predictions = ev.predictions(encoder: encoder, task: i, split: .test)
            outcomes.record(name, task: i, predictions: predictions, labels: ev.tasks[i].test.labels)
        }
    }
}

/// A per-task map from values in task order.
func byTask(_ names: [String], _ values: [Double]) -> [String: Double] {
    Dictionary(uniqueKeysWithValues: zip(names, values))
}
