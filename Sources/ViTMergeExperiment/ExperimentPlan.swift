import Foundation
import ViTMergeIO

/// The fan-out of an experiment: optional pre-training, one independent job per task (probe, then each
/// fine-tuning mode; it writes only OUT/<task>/), then the same command without --job, which reuses the jobs'
/// checkpoints and runs the merge stages.
public struct ExperimentPlan {
    public let settings: ExperimentSettings
    /// The command line of this run (`CommandLine.arguments`), from which the jobs' commands are made.
    public let arguments: [String]

    public init(settings: ExperimentSettings, arguments: [String]) {
        self.settings = settings
        self.arguments = arguments
    }

    /// This command line without --plan and --job, then `--job job` if given, quoted for a POSIX shell.
    public func command(job: ExperimentJob?) -> String {
        var args: [String] = [], rest = arguments.dropFirst()
        while let a = rest.popFirst() {
            if a == "--job" {
                _ = rest.popFirst()
                continue
            }
            if a == "--plan" || a.hasPrefix("--job=") { continue }
            args.append(a)
        }
        let words = [arguments[0]] + args + (job.map { ["--job", $0.argument] } ?? [])
        return words.map(shellQuoted).joined(separator: " ")
    }

    /// The plan as printed by `--plan`: comment lines (#) and one command per job, the merge command last.
    public func lines() throws -> [String] {
        let s = settings, out = s.out
        let names = try s.tasks.map { try TaskDataset.open(path: $0).name }
        let stages = ["probe"] + s.modes.filter { $0 != .probe }.map(\.rawValue)
        var lines = [
            "# ViTMerge experiment plan: \(names.count) independent jobs (0–\(names.count - 1)), then the merge "
                + "stage.",
            "# Each job writes only \(out)/<task>/; run them in any order or at once (one node each).",
        ]
        if let scheme = s.scheme {
            lines.append(
                "# first: pre-training (\(scheme.rawValue), \(s.pretrainSteps) steps) to "
                    + "\(out)/pretrained_\(scheme.rawValue).safetensors")
            lines.append(command(job: .pretrain))
        }
        for (i, name) in names.enumerated() {
            let files = "\(out)/\(name)/{\(stages.joined(separator: ","))}.safetensors"
            lines.append("# job \(i): \(name): \(stages.joined(separator: ", ")) → \(files)")
            lines.append(command(job: .task(i)))
        }
        lines.append("# last, once every job has finished: merges, task count, negation, disentanglement, report")
        lines.append(command(job: nil))
        return lines
    }
}

/// `s` as one POSIX shell word.
public func shellQuoted(_ s: String) -> String {
    let plain = !s.isEmpty && s.allSatisfy { $0.isLetter || $0.isNumber || "-_./=:,+@%".contains($0) }
    return plain ? s : "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// All k-element subsets of `items`, in lexicographic order.
public func combinations(_ items: [Int], _ k: Int) -> [[Int]] {
    if k == 0 { return [[]] }
    guard items.count >= k else { return [] }
    let head = items[0], rest = Array(items.dropFirst())
    return combinations(rest, k - 1).map { [head] + $0 } + combinations(rest, k)
}

/// A duration as "42s" or "3m07s" ("?" when not finite).
public func formatSeconds(_ s: Double) -> String {
    guard s.isFinite else { return "?" }
    let t = Int(s.rounded())
    return t >= 60 ? "\(t / 60)m\(String(format: "%02d", t % 60))s" : "\(t)s"
}
