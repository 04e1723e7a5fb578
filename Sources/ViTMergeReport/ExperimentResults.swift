import Foundation

/// A fine-tuning mode of the experiment: the linear probe, then aligned (head frozen), full (fresh head) and
/// linearized (aligned in the tangent space of the probed model) fine-tuning.
public enum ExperimentMode: String, Codable, CaseIterable, Sendable {
    case probe, aligned, full, linearized
}

/// One value per fine-tuning mode; modes that were not run are nil and absent from the JSON.
public struct PerMode<Value: Codable & Sendable>: Codable, Sendable {
    public var probe: Value?
    public var aligned: Value?
    public var full: Value?
    public var linearized: Value?

    public init() {}

    public subscript(mode: ExperimentMode) -> Value? {
        get {
            switch mode {
            case .probe: probe
            case .aligned: aligned
            case .full: full
            case .linearized: linearized
            }
        }
        set {
            switch mode {
            case .probe: probe = newValue
            case .aligned: aligned = newValue
            case .full: full = newValue
            case .linearized: linearized = newValue
            }
        }
    }

    /// The modes present, in the order of their names (aligned, full, linearized, probe), as the report lists them.
    public var sorted: [(mode: ExperimentMode, value: Value)] {
        ExperimentMode.allCases.sorted { $0.rawValue < $1.rawValue }.compactMap { m in self[m].map { (m, $0) } }
    }
}

/// `<out>/results.json` of `vitmerge experiment` (FORMATS.md "Experiment results"). Accuracies are fractions in
/// [0, 1]; maps keyed by task name; normalized accuracy is merged accuracy / the task's fine-tuned accuracy.
public struct ExperimentResults: Codable, Sendable {
    /// The pre-trained model's scheme (its checkpoint's "scheme" metadata, or "unknown").
    public var pretraining: String
    public var tasks: [String]
    public var seed: UInt64
    public var accuracy: Accuracies
    public var taskAddition: PerMode<TaskAddition>
    public var taskCount: PerMode<[TaskCount]>
    public var negation: PerMode<Negation>
    public var disentanglement: PerMode<Disentanglement>
    public var merges: MergeComparison
    /// Every merge method of `--merge-methods` on the aligned and linearized task vectors (absent when none ran).
    public var methods: PerMode<MethodTable>?
    /// Bootstrap intervals of the accuracies and differences above (absent in results written before them).
    public var statistics: Statistics?
    /// With `experiment --seeds N` (N > 1): the spread over the fine-tuning runs and the pooled intervals.
    public var seeds: SeedSummary?
    public var environment: Environment

    enum CodingKeys: String, CodingKey {
        case pretraining, tasks, seed, accuracy, negation, disentanglement, merges, methods, statistics, seeds
        case environment
        case taskAddition = "task_addition", taskCount = "task_count"
    }

    public init(
        pretraining: String, tasks: [String], seed: UInt64, accuracy: Accuracies = .init(),
        taskAddition: PerMode<TaskAddition> = .init(), taskCount: PerMode<[TaskCount]> = .init(),
        negation: PerMode<Negation> = .init(), disentanglement: PerMode<Disentanglement> = .init(),
        merges: MergeComparison = .init(), statistics: Statistics? = nil, environment: Environment
    ) {
        self.pretraining = pretraining
        self.tasks = tasks
        self.seed = seed
        self.accuracy = accuracy
        self.taskAddition = taskAddition
        self.taskCount = taskCount
        self.negation = negation
        self.disentanglement = disentanglement
        self.merges = merges
        self.statistics = statistics
        self.environment = environment
    }

    /// Pretty-printed JSON with sorted keys.
    public func json() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted]
        return try e.encode(self)
    }

    public static func decode(_ data: Data) throws -> ExperimentResults {
        try JSONDecoder().decode(ExperimentResults.self, from: data)
    }
}

/// Test accuracy per mode and task; `pretrained_probe` is the probe on the frozen pre-trained encoder.
public struct Accuracies: Codable, Sendable {
    public var pretrainedProbe: [String: Double]?
    public var modes = PerMode<[String: Double]>()

    public init() {}

    enum CodingKeys: String, CodingKey { case pretrainedProbe = "pretrained_probe" }

    public init(from decoder: Decoder) throws {
        pretrainedProbe = try decoder.container(keyedBy: CodingKeys.self)
            .decodeIfPresent([String: Double].self, forKey: .pretrainedProbe)
        modes = try PerMode(from: decoder)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(pretrainedProbe, forKey: .pretrainedProbe)
        try modes.encode(to: encoder)
    }
}

/// Task addition θ_pre + λ Σ τ over all tasks, λ chosen on validation.
public struct TaskAddition: Codable, Sendable {
    public var lambda: Double
    public var valNormalized: Double
    public var testNormalized: Double
    public var testAbsolute: [String: Double]
    public var testNormalizedPerTask: [String: Double]
    /// Mean validation normalized accuracy per λ of the grid.
    public var curve: [CurvePoint]

    enum CodingKeys: String, CodingKey {
        case lambda, curve
        case valNormalized = "val_normalized", testNormalized = "test_normalized"
        case testAbsolute = "test_absolute", testNormalizedPerTask = "test_normalized_per_task"
    }

    public init(
        lambda: Double, valNormalized: Double, testNormalized: Double, testAbsolute: [String: Double],
        testNormalizedPerTask: [String: Double], curve: [CurvePoint]
    ) {
        self.lambda = lambda
        self.valNormalized = valNormalized
        self.testNormalized = testNormalized
        self.testAbsolute = testAbsolute
        self.testNormalizedPerTask = testNormalizedPerTask
        self.curve = curve
    }
}

/// (λ, score), written as the JSON array `[λ, score]`.
public struct CurvePoint: Codable, Sendable, Equatable {
    public var lambda: Double
    public var score: Double

    public init(_ lambda: Double, _ score: Double) {
        self.lambda = lambda
        self.score = score
    }

    public init(from decoder: Decoder) throws {
        var c = try decoder.unkeyedContainer()
        lambda = try c.decode(Double.self)
        score = try c.decode(Double.self)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.unkeyedContainer()
        try c.encode(lambda)
        try c.encode(score)
    }
}

/// Mean test normalized accuracy of task addition over the subsets of `k` tasks evaluated: all of them, or a
/// seeded sample of `subsets` of the `possible` ones (`experiment --task-count-subsets`).
public struct TaskCount: Codable, Sendable {
    public var k: Int
    public var testNormalized: Double
    public var subsets: Int
    /// How many subsets of k tasks exist (absent in results written before sampling).
    public var possible: Int?
    /// The subsets evaluated, by task name.
    public var tasks: [[String]]?

    enum CodingKeys: String, CodingKey {
        case k, subsets, possible, tasks
        case testNormalized = "test_normalized"
    }

    public init(k: Int, testNormalized: Double, subsets: Int, possible: Int? = nil, tasks: [[String]]? = nil) {
        self.k = k
        self.testNormalized = testNormalized
        self.subsets = subsets
        self.possible = possible
        self.tasks = tasks
    }
}

/// θ_pre − λ τ_target; test accuracies of the negated and the pre-trained encoder.
public struct Negation: Codable, Sendable {
    public var target: String
    public var control: String
    public var lambda: Double
    public var targetAccuracy: Double
    public var controlAccuracy: Double
    public var targetPretrainedAccuracy: Double
    public var controlPretrainedAccuracy: Double

    enum CodingKeys: String, CodingKey {
        case target, control, lambda
        case targetAccuracy = "target_accuracy", controlAccuracy = "control_accuracy"
        case targetPretrainedAccuracy = "target_pretrained_accuracy"
        case controlPretrainedAccuracy = "control_pretrained_accuracy"
    }

    public init(
        target: String, control: String, lambda: Double, targetAccuracy: Double, controlAccuracy: Double,
        targetPretrainedAccuracy: Double, controlPretrainedAccuracy: Double
    ) {
        self.target = target
        self.control = control
        self.lambda = lambda
        self.targetAccuracy = targetAccuracy
        self.controlAccuracy = controlAccuracy
        self.targetPretrainedAccuracy = targetPretrainedAccuracy
        self.controlPretrainedAccuracy = controlPretrainedAccuracy
    }
}

/// Weight disentanglement error ξ(α1, α2) of two tasks: `error[i][j]` at α1 = alphas[i], α2 = alphas[j].
public struct Disentanglement: Codable, Sendable {
    public var tasks: [String]
    public var alphas: [Double]
    public var error: [[Double]]

    public init(tasks: [String], alphas: [Double], error: [[Double]]) {
        self.tasks = tasks
        self.alphas = alphas
        self.error = error
    }

    /// Mean ξ over the grid points with |α1|, |α2| ≤ radius (0 when there are none).
    public func meanError(radius: Double) -> Double { meanDisentanglementError(error, alphas, radius: radius) }
}

/// Mean ξ over the grid points with |α1|, |α2| ≤ radius (0 when there are none).
public func meanDisentanglementError(_ xi: [[Double]], _ alphas: [Double], radius: Double) -> Double {
    var s = 0.0, n = 0
    for (i, a) in alphas.enumerated() where abs(a) <= radius {
        for (j, b) in alphas.enumerated() where abs(b) <= radius {
            s += xi[i][j]
            n += 1
        }
    }
    return n > 0 ? s / Double(n) : 0
}

/// Other merges of the same task vectors (test normalized accuracy; hyper-parameter and λ on validation).
public struct MergeComparison: Codable, Sendable {
    public var average: AverageMerge?
    public var taskArithmetic: TaskArithmeticMerge?
    public var ties: TunedMerge?
    public var dare: TunedMerge?

    enum CodingKeys: String, CodingKey {
        case average, ties, dare
        case taskArithmetic = "task_arithmetic"
    }

    public init() {}
}

/// Every merge method on one mode's task vectors (`experiment --merge-methods`), in the order run.
public struct MethodTable: Codable, Sendable {
    public var rows: [MethodResult] = []
    /// Methods that do not apply to this mode, with the reason (e.g. RegMean on linearized vectors).
    public var skipped: [String: String] = [:]

    public init() {}
}

/// One merge method's outcome: hyper-parameter and λ chosen on validation (absent where the method has
/// none), test accuracy per task, and the wall time of the merge (search and evaluation included).
public struct MethodResult: Codable, Sendable {
    public var method: String
    public var hyperparameter: Double?
    public var lambda: Double?
    public var valNormalized: Double?
    public var testNormalized: Double
    public var testNormalizedPerTask: [String: Double]
    public var testAbsolute: [String: Double]
    public var seconds: Double
    /// True for EMR: one model per task (the task is needed at inference), reported apart.
    public var perTaskModels: Bool

    enum CodingKeys: String, CodingKey {
        case method, hyperparameter, lambda, seconds
        case valNormalized = "val_normalized", testNormalized = "test_normalized"
        case testNormalizedPerTask = "test_normalized_per_task", testAbsolute = "test_absolute"
        case perTaskModels = "per_task_models"
    }

    public init(
        method: String, hyperparameter: Double?, lambda: Double?, valNormalized: Double?, testNormalized: Double,
        testNormalizedPerTask: [String: Double], testAbsolute: [String: Double], seconds: Double,
        perTaskModels: Bool = false
    ) {
        self.method = method
        self.hyperparameter = hyperparameter
        self.lambda = lambda
        self.valNormalized = valNormalized
        self.testNormalized = testNormalized
        self.testNormalizedPerTask = testNormalizedPerTask
        self.testAbsolute = testAbsolute
        self.seconds = seconds
        self.perTaskModels = perTaskModels
    }

    /// Mean absolute test accuracy over the tasks.
    public var testAbsoluteMean: Double {
        testAbsolute.isEmpty ? 0 : testAbsolute.values.reduce(0, +) / Double(testAbsolute.count)
    }
}

/// The mean task vector at λ = 1 (model soup).
public struct AverageMerge: Codable, Sendable {
    public var testNormalized: Double
    public var testAbsolute: [String: Double]

    enum CodingKeys: String, CodingKey {
        case testNormalized = "test_normalized", testAbsolute = "test_absolute"
    }

    public init(testNormalized: Double, testAbsolute: [String: Double]) {
        self.testNormalized = testNormalized
        self.testAbsolute = testAbsolute
    }
}

/// Plain task addition, as in `task_addition`.
public struct TaskArithmeticMerge: Codable, Sendable {
    public var lambda: Double
    public var testNormalized: Double

    enum CodingKeys: String, CodingKey {
        case lambda
        case testNormalized = "test_normalized"
    }

    public init(lambda: Double, testNormalized: Double) {
        self.lambda = lambda
        self.testNormalized = testNormalized
    }
}

/// TIES or DARE with its hyper-parameter (TIES: `keep`, DARE: `drop`) and λ chosen on validation.
public struct TunedMerge: Codable, Sendable {
    public var hyperparameter: Double
    /// TIES: the fraction of each τ kept (equals `hyperparameter`).
    public var keep: Double?
    /// DARE: the drop probability (equals `hyperparameter`).
    public var drop: Double?
    public var lambda: Double
    public var valNormalized: Double
    public var testNormalized: Double
    public var testAbsolute: [String: Double]

    enum CodingKeys: String, CodingKey {
        case hyperparameter, keep, drop, lambda
        case valNormalized = "val_normalized", testNormalized = "test_normalized"
        case testAbsolute = "test_absolute"
    }

    public init(
        hyperparameter: Double, keep: Double? = nil, drop: Double? = nil, lambda: Double, valNormalized: Double,
        testNormalized: Double, testAbsolute: [String: Double]
    ) {
        self.hyperparameter = hyperparameter
        self.keep = keep
        self.drop = drop
        self.lambda = lambda
        self.valNormalized = valNormalized
        self.testNormalized = testNormalized
        self.testAbsolute = testAbsolute
    }
}

/// Where and how fast the experiment ran (ignored when comparing results).
public struct Environment: Codable, Sendable {
    public var cpu: String
    public var threads: Int
    public var isa: String
    public var seconds: Int
    /// The matrix products' precision (`--precision`): "fp32", or "bf16"; files from before it are fp32.
    public var precision: String

    public init(cpu: String, threads: Int, isa: String, seconds: Int, precision: String = "fp32") {
        self.cpu = cpu
        self.threads = threads
        self.isa = isa
        self.seconds = seconds
        self.precision = precision
    }

    enum CodingKeys: String, CodingKey { case cpu, threads, isa, seconds, precision }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            cpu: try c.decode(String.self, forKey: .cpu), threads: try c.decode(Int.self, forKey: .threads),
            isa: try c.decode(String.self, forKey: .isa), seconds: try c.decode(Int.self, forKey: .seconds),
            precision: try c.decodeIfPresent(String.self, forKey: .precision) ?? "fp32")
    }
}
