import Foundation
import ViTMergeMerging
import ViTMergeModel
import ViTMergeReport
import ViTMergeTraining

/// Everything the experiment pipeline needs, as plain values (the CLI's options, validated).
public struct ExperimentSettings: Sendable {
    /// Output directory: results.json, report.md, SVGs, checkpoints. Finished stages are reused.
    public var out: String
    /// Task files, at least two.
    public var tasks: [String]
    /// Fine-tuning modes in the order given (the probe always runs; stage 2 runs the modes in this order).
    public var modes: [ExperimentMode]
    /// The pre-trained checkpoint loaded unless `scheme` is set.
    public var pretrained: String
    /// Pre-train from scratch with this scheme instead of loading `pretrained`.
    public var scheme: PretrainScheme?
    public var pretrainData: String
    /// Pre-training steps (batch 64, lr 1e-3).
    public var pretrainSteps: Int
    public var probeSteps: Int
    public var finetuneSteps: Int
    public var batchSize: Int
    public var lr: Float
    public var probeLr: Float
    /// Seed of the validation split, pre-training and the bootstrap; fine-tuning (batches, heads) and DARE use
    /// `fineTuneSeed`.
    public var seed: UInt64
    /// Task subsets evaluated per size k for the task-count curve: all when there are at most this many, else a
    /// seeded sample of this many.
    public var taskCountSubsets = 10
    /// Fine-tuning runs of the sweep (`--seeds`): run r fine-tunes with seed + r; 1 is a single run.
    public var seedCount = 1
    /// Which run of the sweep these settings are for (0 for the first or only one).
    public var replicate = 0
    /// Merge methods run on the aligned and linearized task vectors, one table per mode (empty: none).
    public var mergeMethods: [MergeMethod] = []
    /// Training images per task for the merges that use data (Fisher, RegMean), a seeded subset.
    public var mergeSamples = 256
    /// AdaMerging's optimization steps in the method table.
    public var adaMergingSteps = 100
    /// Disentanglement grid step over [−3, 3].
    public var alphaStep: Double
    /// Validation images per task for the disentanglement error.
    public var disentangleImages: Int

    public init(
        out: String, tasks: [String], modes: [ExperimentMode], pretrained: String, scheme: PretrainScheme?,
        pretrainData: String, pretrainSteps: Int, probeSteps: Int, finetuneSteps: Int, batchSize: Int, lr: Float,
        probeLr: Float, seed: UInt64, alphaStep: Double, disentangleImages: Int
    ) {
        self.out = out
        self.tasks = tasks
        self.modes = modes
        self.pretrained = pretrained
        self.scheme = scheme
        self.pretrainData = pretrainData
        self.pretrainSteps = pretrainSteps
        self.probeSteps = probeSteps
        self.finetuneSteps = finetuneSteps
        self.batchSize = batchSize
        self.lr = lr
        self.probeLr = probeLr
        self.seed = seed
        self.alphaStep = alphaStep
        self.disentangleImages = disentangleImages
    }

    /// The pre-trained model's path: written by the run with `scheme`, else `pretrained`.
    public var pretrainedPath: String { scheme.map { "\(out)/pretrained_\($0.rawValue).safetensors" } ?? pretrained }

    /// The seed of fine-tuning's batches and heads and of DARE's drops: `seed` + `replicate`.
    public var fineTuneSeed: UInt64 { seed &+ UInt64(replicate) }

    /// The settings of run `r` of the seed sweep, writing into `<out>/seed-<r>` (run 0 into `out` itself).
    public func replicate(_ r: Int) -> ExperimentSettings {
        var s = self
        s.replicate = r
        if r > 0 {
            s.out = "\(out)/seed-\(r)"
            // Every run fine-tunes the same pre-trained model: run 0's (pre-trained by it with a scheme).
            s.pretrained = pretrainedPath
            s.scheme = nil
        }
        return s
    }

    /// Training settings of a probe or fine-tuning stage: warm-up 10% of the steps, clip 1.
    func training(_ steps: Int, lr: Float, weightDecay: Float) -> TrainSettings {
        TrainSettings(
            steps: steps, batchSize: batchSize, lr: lr, warmupSteps: max(1, steps / 10), weightDecay: weightDecay,
            clipNorm: 1, seed: fineTuneSeed)
    }

    /// Pre-training settings: batch 64, lr 1e-3, warm-up 5%, weight decay 0.05, state every 250 steps. DINO
    /// takes its own rule instead, lr 5e-4 · batch / 256 = 1.25e-4 (Caron et al. 2021; at 1e-3 its teacher
    /// went to the uniform distribution in a 40-step trial here), and 2 local crops instead of 4, which
    /// keeps a step at about 4.7 supervised ones (student on 4 views, teacher on 2) rather than 7.
    public var pretraining: TrainSettings {
        var t = TrainSettings(
            steps: pretrainSteps, batchSize: 64, lr: scheme == .dino ? 1.25e-4 : 1e-3,
            warmupSteps: max(1, pretrainSteps / 20), weightDecay: 0.05, clipNorm: 1, seed: seed, checkpointEvery: 250,
            maskRatio: scheme == .mae ? 0.75 : 0.6)
        if scheme == .dino { t.dino = DINOSettings(localCrops: 2) }
        return t
    }

    /// The settings report.md states.
    public var report: ReportSettings {
        ReportSettings(
            pretrained: pretrained, seed: seed, probeSteps: probeSteps, finetuneSteps: finetuneSteps,
            batchSize: batchSize, lr: lr)
    }
}

/// One independent piece of the experiment (`--job`): pre-training, or one task's probe and fine-tuning.
public enum ExperimentJob: Equatable, Sendable {
    case pretrain
    /// The task at this index of `ExperimentSettings.tasks`.
    case task(Int)

    /// "pretrain" or a task index.
    public init?(_ text: String) {
        if text == "pretrain" {
            self = .pretrain
        } else if let i = Int(text) {
            self = .task(i)
        } else {
            return nil
        }
    }

    /// The `--job` argument.
    public var argument: String {
        switch self {
        case .pretrain: "pretrain"
        case .task(let i): "\(i)"
        }
    }
}
