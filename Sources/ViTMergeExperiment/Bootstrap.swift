import Foundation
import ViTMergeCore
import ViTMergeIO
import ViTMergeReport

/// Per-image outcomes on each task's test split: for every model the run scores (a fine-tuned model, a merge at
/// its chosen λ, the negated encoder, …), which test images it classifies correctly. The bootstrap turns these
/// into intervals for every accuracy and every difference built from them.
struct Outcomes {
    /// model name → task index → correct[i] for test image i.
    private(set) var correct: [String: [Int: [Bool]]] = [:]

    mutating func record(_ model: String, task: Int, predictions: [Int], labels: [Int32]) {
        precondition(
            predictions.count == labels.count, "\(model): \(predictions.count) predictions, \(labels.count) labels")
        correct[model, default: [:]][task] = zip(predictions, labels).map { $0 == Int($1) }
    }

    /// Adds every model of `other` under the name `prefix` + its name.
    mutating func add(_ other: Outcomes, prefix: String) {
        for (model, byTask) in other.correct { correct[prefix + model] = byTask }
    }

    /// Makes `name` another name of `model`'s outcomes.
    mutating func alias(_ name: String, to model: String) { correct[name] = correct[model] }

    /// `test_outcomes.json`: per model and task index (as a string), one character per test image, "1" for a
    /// correct prediction and "0" for a wrong one. Another run's comparisons (`experiment --schemes`) pair
    /// their bootstrap over the same images from it.
    func json(tasks: [String]) throws -> Data {
        let models = correct.mapValues { byTask in
            Dictionary(uniqueKeysWithValues: byTask.map { t, c in ("\(t)", String(c.map { $0 ? "1" : "0" })) })
        }
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return try e.encode(OutcomesFile(tasks: tasks, models: models))
    }

    /// Reads `json(tasks:)`'s file; the task names it was written for are returned with the outcomes.
    static func read(path: String) throws -> (tasks: [String], outcomes: Outcomes) {
        let file: OutcomesFile
        do {
            file = try JSONDecoder().decode(OutcomesFile.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw IOError.invalidFile(
                path: path, reason: "not a test_outcomes.json (\(error))",
                hint: "rerun that experiment (delete its results.json) so it writes the file again")
        }
        var out = Outcomes()
        for (model, byTask) in file.models {
            for (t, text) in byTask {
                guard let i = Int(t), file.tasks.indices.contains(i), text.allSatisfy({ $0 == "0" || $0 == "1" })
                else {
                    throw IOError.invalidFile(
                        path: path, reason: "model \(model) has a bad entry for task \(t)",
                        hint: "rerun that experiment (delete its results.json) so it writes the file again")
                }
                out.correct[model, default: [:]][i] = text.map { $0 == "1" }
            }
        }
        return (file.tasks, out)
    }
}

/// The JSON form of `Outcomes`.
private struct OutcomesFile: Codable {
    var tasks: [String]
    var models: [String: [String: String]]
}

/// Percentile bootstrap over test images, resampled within each task with replacement; every model is scored on
/// the same draws, so differences are paired. Draw b of task t picks `sizes[t]` indices from one seeded stream.
struct Bootstrap {
    let replicates: Int
    let level: Double
    let seed: UInt64
    /// Per task: replicates × size image indices, replicate-major.
    private let draws: [[Int32]]
    private let sizes: [Int]

    init(sizes: [Int], replicates: Int = 1000, level: Double = 0.95, seed: UInt64) {
        precondition(replicates >= 1 && level > 0 && level < 1, "bootstrap: \(replicates) replicates, level \(level)")
        self.replicates = replicates
        self.level = level
        self.seed = seed
        self.sizes = sizes
        var rng = RNG(seed: seed, stream: 0xB0_075)
        draws = sizes.map { n in
            (0..<(replicates * n)).map { _ in Int32(rng.int(below: max(n, 1))) }
        }
    }

    /// Accuracy of `correct` (task t's test images) in each replicate.
    func accuracies(task t: Int, _ correct: [Bool]) -> [Double] {
        let n = sizes[t]
        precondition(correct.count == n, "task \(t): \(correct.count) outcomes for \(n) test images")
        guard n > 0 else { return [Double](repeating: 0, count: replicates) }
        return draws[t].withUnsafeBufferPointer { d in
            correct.withUnsafeBufferPointer { c in
                (0..<replicates).map { b in
                    var hits = 0
                    for j in (b * n)..<((b + 1) * n) where c[Int(d[j])] { hits += 1 }
                    return Double(hits) / Double(n)
                }
            }
        }
    }

    /// The lower and upper percentiles of `values` for the interval at `level` (linear interpolation between
    /// order statistics, numpy's default).
    func interval(_ values: [Double]) -> (low: Double, high: Double) {
        let v = values.sorted()
        func quantile(_ q: Double) -> Double {
            let x = q * Double(v.count - 1)
            let i = Int(x.rounded(.down)), j = min(i + 1, v.count - 1)
            return v[i] + (x - Double(i)) * (v[j] - v[i])
        }
        let tail = (1 - level) / 2
        return (quantile(tail), quantile(1 - tail))
    }

    /// A statistic of per-task accuracies, at the measured outcomes and over the replicates. `statistic` reads a
    /// model's accuracy on a task through the function it is given; nil when an outcome it needs is missing.
    func estimate(
        _ outcomes: Outcomes, _ statistic: (_ accuracy: (String, Int) -> Double) -> Double
    ) -> Estimate? {
        var missing = false
        var replicated: [String: [Int: [Double]]] = [:]
        let value = statistic { model, t in
            guard let c = outcomes.correct[model]?[t] else {
                missing = true
                return 0
            }
            if replicated[model]?[t] == nil { replicated[model, default: [:]][t] = accuracies(task: t, c) }
            return c.isEmpty ? 0 : Double(c.filter { $0 }.count) / Double(c.count)
        }
        if missing { return nil }
        let values = (0..<replicates).map { b in statistic { model, t in replicated[model]![t]![b] } }
        let (low, high) = interval(values)
        return Estimate(value, low: low, high: high)
    }
}
