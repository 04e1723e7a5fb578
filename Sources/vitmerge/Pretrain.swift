import ArgumentParser
import Foundation
import ViTMergeCore
import ViTMergeExperiment
import ViTMergeIO
import ViTMergeModel
import ViTMergeTraining

/// `vitmerge pretrain`: a ViT from scratch on the pre-training data.
struct Pretrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Pre-train a ViT from scratch (supervised, mim, mae, dino or clip) and write a checkpoint with its config "
            + "and "
            + "command line.")

    @Option(
        help:
            ArgumentHelp(
                "supervised: classification on the pre-training labels; mim: masked image modeling on the images alone "
                    + "(labels unused); mae: a masked autoencoder (He et al. 2022): the encoder sees the visible "
                    + "patches only, a light decoder reconstructs the masked ones (labels unused); dino: "
                    + "self-distillation (Caron et al. 2021): the encoder and a projection head match an EMA teacher "
                    + "across multi-crop views (labels unused); the checkpoint holds the teacher's encoder and head. "
                    + "dino's views: 2 global crops (area 0.4-1) and --local-crops local ones (0.05-0.4), all resized "
                    + "to the model's input size (fixed patch grid; DINO's local crops are smaller), bilinear, "
                    + "brightness/contrast jitter (--dino-jitter, p 0.8), no flips (glyphs are chiral), no color, "
                    + "blur or solarization; clip: image–text contrastive pre-training (Radford et al. 2021) on the "
                    + "images and their captions (--captions; labels unused).")
    )
    var scheme = PretrainScheme.supervised
    @Option(help: "mim, mae: fraction of patches masked per image (default 0.6 for mim, 0.75 for mae).")
    var maskRatio: Double?
    @Option(help: "mae: decoder blocks (default 2).") var decoderDepth: Int?
    @Option(help: "mae: decoder width (default half the encoder's).") var decoderDim: Int?
    @Option(help: "mae: decoder attention heads (default the encoder's, if they divide the width).")
    var decoderHeads: Int?
    @Flag(help: "mae: reconstruct each patch normalized by its own mean and variance (MAE's norm_pix_loss).")
    var normPixLoss = false
    @Option(help: "dino: local crops per image besides the 2 global ones (default 4).") var localCrops: Int?
    @Option(help: "dino: prototypes K of the head's last layer (default 256).") var dinoPrototypes: Int?
    @Option(help: "dino: width of the head's MLP (default 256).") var dinoHidden: Int?
    @Option(help: "dino: the head's bottleneck before the L2-normalized last layer (default 64).")
    var dinoBottleneck: Int?
    @Option(
        help: "dino: brightness and contrast factors in [1 - j, 1 + j], per view with p 0.8 (default 0.4; 0: none).")
    var dinoJitter: Double?
    @Option(help: "dino: the teacher's EMA momentum at the first step, cosine to 1 (default 0.996).")
    var teacherMomentum: Double?
    @Option(help: "dino: teacher temperature (default 0.04).") var teacherTemperature: Double?
    @Option(help: "dino: teacher temperature at step 0, linear to --teacher-temperature (default: no warm-up).")
    var warmupTeacherTemperature: Double?
    @Option(help: "dino: steps of the teacher-temperature warm-up (default 0).") var teacherTemperatureWarmupSteps: Int?
    @Option(help: "dino: student temperature (default 0.1).") var studentTemperature: Double?
    @Option(help: "dino: the centre's EMA momentum (default 0.9).") var centerMomentum: Double?
    @Option(
        help: ArgumentHelp(
            "clip: the captions file (train.captions, test.captions U8 [N, W], rows aligned with the images; "
                + "default: <data>_captions.safetensors beside --data, i.e. \(defaultCaptionsPath))."))
    var captions: String?
    @Option(help: "clip: text transformer blocks (default 2).") var textDepth: Int?
    @Option(help: "clip: text transformer width (default 64).") var textDim: Int?
    @Option(help: "clip: text attention heads (default 4).") var textHeads: Int?
    @Option(help: "clip: width of the joint image–text space (default 64).") var embedDim: Int?
    @Option(help: "Pre-training data (task-format .safetensors).")
    var data = "data/pretrain/glyphs.safetensors"
    @Option(help: "Model config JSON or preset name.")
    var config = "vit_mini_patch4_28"
    @Option(help: "Output checkpoint.") var output: String
    @OptionGroup var stateOptions: StateOptions
    @OptionGroup var train: TrainOptions
    @OptionGroup var runtime: RuntimeOptions
    @OptionGroup var parallel: ParallelOptions

    func validate() throws {
        if let r = maskRatio, !(r > 0 && r < 1) { throw ValidationError("--mask-ratio must be in (0, 1)") }
        if scheme != .mae && (decoderDepth != nil || decoderDim != nil || decoderHeads != nil || normPixLoss) {
            throw ValidationError(
                "--decoder-depth, --decoder-dim, --decoder-heads and --norm-pix-loss are for --scheme mae only")
        }
        let dinoFlags: [Any?] = [
            localCrops, dinoPrototypes, dinoHidden, dinoBottleneck, dinoJitter, teacherMomentum, teacherTemperature,
            warmupTeacherTemperature, teacherTemperatureWarmupSteps, studentTemperature, centerMomentum,
        ]
        if scheme != .dino && dinoFlags.contains(where: { $0 != nil }) {
            throw ValidationError(
                "--local-crops, --dino-*, --teacher-*, --warmup-teacher-temperature, --student-temperature and "
                    + "--center-momentum are for --scheme dino only")
        }
        if scheme != .clip
            && (captions != nil || textDepth != nil || textDim != nil || textHeads != nil || embedDim != nil)
        {
            throw ValidationError(
                "--captions, --text-depth, --text-dim, --text-heads and --embed-dim are for --scheme clip only")
        }
        if scheme == .clip && maskRatio != nil { throw ValidationError("--mask-ratio is for --scheme mim and mae") }
        if scheme == .dino, let problem = dinoSettings.problem { throw ValidationError(problem) }
    }

    /// DINO's settings: the flags over `DINOSettings()`.
    var dinoSettings: DINOSettings {
        let d = DINOSettings()
        return DINOSettings(
            localCrops: localCrops ?? d.localCrops, hidden: dinoHidden ?? d.hidden,
            bottleneck: dinoBottleneck ?? d.bottleneck, prototypes: dinoPrototypes ?? d.prototypes,
            jitter: dinoJitter ?? d.jitter, studentTemperature: studentTemperature ?? d.studentTemperature,
            teacherTemperature: teacherTemperature ?? d.teacherTemperature,
            warmupTeacherTemperature: warmupTeacherTemperature,
            teacherTemperatureWarmupSteps: teacherTemperatureWarmupSteps ?? d.teacherTemperatureWarmupSteps,
            centerMomentum: centerMomentum ?? d.centerMomentum, teacherMomentum: teacherMomentum ?? d.teacherMomentum)
    }

    /// The MAE decoder for the encoder `cfg`: the flags over `MAESettings.defaults(for:)`.
    func maeSettings(for cfg: ViTConfig) throws -> MAESettings {
        let defaults = MAESettings.defaults(for: cfg)
        let dim = decoderDim ?? defaults.decoderDim
        let heads = decoderHeads ?? MAESettings.defaultHeads(dim: dim, encoder: cfg)
        let mae = MAESettings(
            decoderDepth: decoderDepth ?? defaults.decoderDepth, decoderDim: dim, decoderHeads: heads,
            normPixLoss: normPixLoss)
        if let problem = mae.problem { throw ValidationError(problem) }
        if cfg.numPatches < 2 {
            throw ValidationError("--scheme mae needs at least 2 patches per image; \(config) has \(cfg.numPatches)")
        }
        if normPixLoss && cfg.patchDim < 2 {
            throw ValidationError("--norm-pix-loss needs at least 2 pixels per patch; \(config) has \(cfg.patchDim)")
        }
        return mae
    }

    /// The text tower and joint space: the flags over `CLIPSettings.defaults`.
    func clipSettings(captionBytes: Int) throws -> CLIPSettings {
        let d = CLIPSettings.defaults(captionBytes: captionBytes)
        let clip = CLIPSettings(
            textDepth: textDepth ?? d.textDepth, textDim: textDim ?? d.textDim, textHeads: textHeads ?? d.textHeads,
            embedDim: embedDim ?? d.embedDim, captionBytes: captionBytes)
        if let problem = clip.problem { throw ValidationError(problem) }
        return clip
    }

    /// `splits.train` with its captions: `--captions` (or the file beside --data) attached along the
    /// same rows the validation split was carved with.
    func captionedTrain(_ splits: TaskSplits) throws -> LabeledImages {
        let path = captions ?? Captions.siblingPath(of: data)
        if captions == nil, let c = splits.train.captions, c.count == splits.train.count { return splits.train }
        guard FileManager.default.fileExists(atPath: path) else {
            throw TrainingError.missingCaptions(data: data, captions: path)
        }
        let all = try Captions.load(path: path, train: splits.dataset.train.count, test: splits.dataset.test.count)
        var train = splits.train
        train.captions =
            splits.dataset.validation != nil
            ? all.train
            : all.train.take(splits.dataset.splitIndices(fraction: validationFraction, seed: self.train.seed).train)
        return train
    }

    /// The fraction of train carved for validation.
    var validationFraction: Double { 0.05 }

    func run() throws {
        let (state, resume) = (stateOptions.state, stateOptions.resume)
        runtime.apply()
        let group = try World.join()
        let root = group.isRoot  // rank 0 checks and writes the files and the log
        if root { try ensureWritable(output, state) }
        Interrupt.install()  // Ctrl-C: save the state, stop, say how to resume
        let splits = try TaskSplits(path: data, seed: train.seed, validationFraction: validationFraction)
        let trainSet = scheme == .clip ? try captionedTrain(splits) : splits.train
        try checkShares(batchSize: train.batchSize, train: splits.train, group: group)
        var settings = train.settings(checkpointEvery: stateOptions.every(default: 200))
        settings.maskRatio = maskRatio ?? (scheme == .mae ? 0.75 : 0.6)
        let cfg = try loadConfig(config)
        if scheme == .mae { settings.mae = try maeSettings(for: cfg) }
        if scheme == .dino { settings.dino = dinoSettings }
        if scheme == .clip { settings.clip = try clipSettings(captionBytes: trainSet.captions?.width ?? 1) }
        try splits.check(fits: cfg, checkpoint: "--config \(config)")
        if root && group.size > 1 && !train.quiet {
            print(World.describe(globalBatch: min(train.batchSize, splits.train.count)))
        }
        let pretrained = try pretrain(
            scheme: scheme, train: trainSet, validation: splits.validation, test: splits.test,
            classes: splits.dataset.classes.count, config: cfg, settings: settings, state: state, resume: resume,
            log: root ? train.progress("pretrain-\(scheme.rawValue)") : { _ in }, group: group,
            gradientSync: parallel.gradSync)
        guard root else { return }
        let metadata = pretrained.metadata
        try pretrained.save(
            to: output, metadata: ["command": CommandLine.arguments.joined(separator: " "), "data": data])
        print(
            "wrote \(output) ("
                + (metadata["test_accuracy"].map { "pre-training test accuracy \($0)" }
                    ?? (scheme == .dino
                        ? "DINO loss " : scheme == .clip ? "contrastive loss " : "masked reconstruction MSE ")
                        + (metadata["final_loss"] ?? "?"))
                + ")")
    }
}
