import ArgumentParser
import Foundation
import ViTMergeIO
import ViTMergeModel

/// `vitmerge init`: a freshly initialized model as a checkpoint.
struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a freshly initialized model (timm's init scheme, seeded) as a checkpoint.")

    @Option(
        help:
            ArgumentHelp(
                "Model config JSON (timm argument names, FORMATS.md) or a preset: "
                    + "\(ViTConfig.presets.keys.sorted().joined(separator: ", ")).")
    )
    var config: String

    @Option(help: "Seed: the same seed gives the same weights on every machine.")
    var seed: UInt64 = 0

    @Option(help: "Output checkpoint (.safetensors), written atomically.")
    var output: String

    func run() throws {
        let cfg = try loadConfig(config)
        let model = ViTParameters(config: cfg)
        model.initialize(seed: seed)
        try Checkpoint.save(
            model, to: output, metadata: ["seed": "\(seed)", "command": CommandLine.arguments.joined(separator: " ")])
        print("wrote \(output): \(model.table.parameterCount) parameters, config \(cfg.json)")
    }
}

/// A config from a preset name or a JSON file, with a message that says what to do when wrong.
func loadConfig(_ spec: String) throws -> ViTConfig {
    if let preset = ViTConfig.presets[spec] { return preset }
    guard let data = FileManager.default.contents(atPath: spec) else {
        throw ValidationError(
            "cannot read config '\(spec)': give a JSON file or one of the presets "
                + "\(ViTConfig.presets.keys.sorted().joined(separator: ", "))"
        )
    }
    do { return try ViTConfig.parse(json: data) } catch {
        throw ValidationError("\(spec): \(error)")
    }
}
