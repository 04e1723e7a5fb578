import ArgumentParser
import Foundation
import ViTMergeCore
import ViTMergeExperiment
import ViTMergeIO
import ViTMergeModel
import ViTMergeTraining

/// Options shared by the training commands.
struct TrainOptions: ParsableArguments {
    @Option(help: "Optimizer steps.") var steps: Int
    @Option(help: "Image folders: cache the decoded, preprocessed images in this directory (reused when unchanged).")
    var imageCache: String?
    @Option(help: "Images per step.") var batchSize = 64
    @Option(help: "Peak learning rate (AdamW, warm-up then cosine).") var lr: Float = 1e-3
    @Option(help: "Warm-up steps (default: 10% of --steps).") var warmup: Int?
    @Option(help: "Decoupled weight decay (not applied to biases, norms, tokens, position embeddings).")
    var weightDecay: Float = 0.05
    @Option(help: "Clip the gradient's global L2 norm to this (0 = off).") var clip: Double = 1
    @Option(help: "Seed for initialization, batch order and the validation split.") var seed: UInt64 = 0
    @Option(help: "Validate every N steps (0 = at the end only).") var evalEvery = 0
    @Flag(help: "No progress output.") var quiet = false
    @Flag(help: "Progress and results as JSON lines.") var json = false

    func validate() throws {
        if steps < 1 { throw ValidationError("--steps must be ≥ 1") }
        if batchSize < 1 { throw ValidationError("--batch-size must be ≥ 1") }
        if !(lr > 0) { throw ValidationError("--lr must be positive") }
        if weightDecay < 0 || clip < 0 { throw ValidationError("--weight-decay and --clip must be ≥ 0") }
        if let w = warmup, w < 0 || w > steps { throw ValidationError("--warmup must be between 0 and --steps") }
    }

    func settings(checkpointEvery: Int = 0) -> TrainSettings {
        TrainSettings(
            steps: steps, batchSize: batchSize, lr: lr, warmupSteps: warmup, weightDecay: weightDecay,
            clipNorm: clip, seed: seed, evalEvery: evalEvery, checkpointEvery: checkpointEvery)
    }

    /// A progress printer: a rewritten line on a terminal, plain lines (every 5%) otherwise.
    /// Under an MPI launcher it is always plain lines: Open MPI gives ranks a pseudo-terminal
    /// even when mpirun's output goes to a file.
    func progress(_ label: String) -> (StepLog) -> Void {
        let tty = isatty(STDOUT_FILENO) != 0 && World.launchedSize == nil
        return { s in
            if quiet { return }
            if json {
                var o: [String: Any] = [
                    "event": "step", "what": label, "step": s.step, "steps": s.steps, "loss": Double(s.loss),
                    "lr": Double(s.lr), "images_per_second": s.imagesPerSecond,
                ]
                for (name, value) in s.metrics { o[name] = value }
                if let v = s.validationAccuracy { o["val_accuracy"] = v }
                printJSON(o)
                fflush(nil)
                return
            }
            let line =
                String(
                    format: "%@ step %d/%d  loss %.4f  lr %.2e  %.0f img/s  ETA %@", label, s.step, s.steps, s.loss,
                    s.lr,
                    s.imagesPerSecond, formatSeconds(s.secondsLeft))
                + s.metrics.map { String(format: "  %@ %.4f", $0.name, $0.value) }.joined()
                + (s.validationAccuracy.map { String(format: "  val acc %.4f", $0) } ?? "")
            if tty {
                print("\r\u{1B}[K" + line, terminator: s.step == s.steps ? "\n" : "")
                fflush(nil)
            } else if s.step == s.steps || s.step % max(1, s.steps / 20) == 0 || s.validationAccuracy != nil {
                print(line)
                fflush(nil)
            }
        }
    }
}

func printJSON(_ object: [String: Any]) {
    if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
        print(String(decoding: data, as: UTF8.self))
    }
}

/// Throws unless `path` can be written (its directory exists and is writable): checked before
/// long work, so a typo in an output path does not cost a training run.
func ensureWritable(_ paths: String?...) throws {
    for case let path? in paths {
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw IOError.cannotWrite(path: path, reason: "its directory \(dir) does not exist")
        }
        if access(dir, W_OK) != 0 { throw AtomicFile.error(errno, path: path) }
    }
}

/// Bad input found while running a command (reported without the usage text; exit code 1).
struct InputError: Error, CustomStringConvertible {
    let description: String
}

extension TaskSplits {
    /// The images of `split`.
    func images(_ split: DataSplit) -> LabeledImages {
        switch split {
        case .train: train
        case .val: validation
        case .test: test
        }
    }
}
