import Foundation

/// A measured value with its bootstrap confidence interval [low, high].
public struct Estimate: Codable, Sendable, Equatable {
    public var value: Double
    public var low: Double
    public var high: Double

    public init(_ value: Double, low: Double, high: Double) {
        self.value = value
        self.low = low
        self.high = high
    }

    /// The verdict on "this difference is at least `threshold`": holds when the whole interval is at or above
    /// it, does not hold when the whole interval is below it, inconclusive when the interval straddles it.
    public func verdict(atLeast threshold: Double) -> Verdict {
        if low >= threshold { return .holds }
        if high < threshold { return .doesNotHold }
        return .inconclusive
    }

    /// The verdict on "this difference is above `threshold`" (strictly: an interval touching it is inconclusive).
    public func verdict(greaterThan threshold: Double) -> Verdict {
        if low > threshold { return .holds }
        if high <= threshold { return .doesNotHold }
        return .inconclusive
    }

    /// The verdict on "this difference is at most `threshold`" (the mirror of `verdict(atLeast:)`).
    public func verdict(atMost threshold: Double) -> Verdict {
        if high <= threshold { return .holds }
        if low > threshold { return .doesNotHold }
        return .inconclusive
    }
}

/// A finding's outcome on our data, decided by its confidence interval where one was measured.
public enum Verdict: String, Codable, Sendable {
    case holds
    case doesNotHold = "does not hold"
    case inconclusive

    /// A claim decided without an interval (a quantity the bootstrap does not cover, such as λ or ξ).
    public init(_ holds: Bool) { self = holds ? .holds : .doesNotHold }

    /// All of `verdicts` hold: holds; any does not hold: does not hold; otherwise inconclusive.
    public static func all(_ verdicts: [Verdict]) -> Verdict {
        if verdicts.contains(.doesNotHold) { return .doesNotHold }
        return verdicts.allSatisfy { $0 == .holds } ? .holds : .inconclusive
    }
}

/// The run's bootstrap: percentile intervals at `level` from `replicates` resamples of every task's test images
/// (with replacement, within each task). Every model is scored on the same resamples, so a difference between
/// two models is a paired comparison. `estimates` is keyed by `StatisticKey`.
public struct Statistics: Codable, Sendable {
    public var replicates: Int
    public var level: Double
    public var seed: UInt64
    public var estimates: [String: Estimate]

    public init(replicates: Int, level: Double, seed: UInt64, estimates: [String: Estimate] = [:]) {
        self.replicates = replicates
        self.level = level
        self.seed = seed
        self.estimates = estimates
    }

    public subscript(key: StatisticKey) -> Estimate? {
        get { estimates[key.name] }
        set { estimates[key.name] = newValue }
    }
}

/// The names of the estimates in results.json's `statistics` (FORMATS.md "Experiment results").
public struct StatisticKey: Hashable, Sendable {
    public let name: String

    /// Test accuracy of a fine-tuning mode (or "pretrained_probe") on one task.
    public static func accuracy(_ model: String, task: String) -> Self { .init(name: "accuracy.\(model).\(task)") }
    /// Mean test accuracy over the tasks.
    public static func meanAccuracy(_ model: String) -> Self { .init(name: "accuracy.\(model).mean") }
    /// Task addition over all tasks at the chosen λ: mean test normalized accuracy.
    public static func additionNormalized(_ mode: ExperimentMode) -> Self {
        .init(name: "task_addition.\(mode.rawValue).test_normalized")
    }
    /// Task addition over all tasks at the chosen λ: mean test absolute accuracy.
    public static func additionAbsolute(_ mode: ExperimentMode) -> Self {
        .init(name: "task_addition.\(mode.rawValue).test_absolute_mean")
    }
    /// Another merge (average, task_arithmetic, ties, dare): mean test normalized accuracy.
    public static func merge(_ method: String) -> Self { .init(name: "merges.\(method).test_normalized") }
    /// Negation: the negated encoder's test accuracy on the target or the control task.
    public static func negation(_ mode: ExperimentMode, _ role: String) -> Self {
        .init(name: "negation.\(mode.rawValue).\(role)")
    }
    /// Task addition over the evaluated subsets of k tasks: mean test normalized accuracy.
    public static func taskCount(_ mode: ExperimentMode, k: Int) -> Self {
        .init(name: "task_count.\(mode.rawValue).k\(k)")
    }
    /// A paired difference (see the pipeline's list of comparisons).
    public static func difference(_ name: String) -> Self { .init(name: "difference.\(name)") }
}

/// One estimate's value in each fine-tuning run of a seed sweep, with their mean and sample standard deviation.
public struct SeedSpread: Codable, Sendable, Equatable {
    public var values: [Double]
    public var mean: Double
    /// Sample standard deviation (n − 1); 0 for one run.
    public var std: Double

    public init(_ values: [Double]) {
        self.values = values
        let n = Double(values.count)
        mean = values.reduce(0, +) / max(n, 1)
        let m = mean
        std = values.count > 1 ? (values.map { ($0 - m) * ($0 - m) }.reduce(0, +) / (n - 1)).squareRoot() : 0
    }
}

/// `experiment --seeds N`: the fine-tuning seeds, every estimate's spread over the runs (keyed like
/// `Statistics.estimates`), and the bootstrap intervals of the mean over the runs (test images resampled, the
/// same resample for every run and model), which the verdicts use.
public struct SeedSummary: Codable, Sendable {
    public var seeds: [UInt64]
    public var spread: [String: SeedSpread]
    public var pooled: Statistics

    public init(seeds: [UInt64], spread: [String: SeedSpread], pooled: Statistics) {
        self.seeds = seeds
        self.spread = spread
        self.pooled = pooled
    }
}
