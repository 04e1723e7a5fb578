import ArgumentParser
import Foundation
import ViTMergeIO

/// `vitmerge export`: a checkpoint as a timm hub snapshot.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a checkpoint as a timm hub snapshot: config.json and model.safetensors.",
        discussion:
            "timm loads it with create_model(architecture, pretrained=False, **model_args) and "
            + "load_state_dict(strict=True) (see scripts/check_export.py). The architecture is the one the model "
            + "came from when it was loaded from a snapshot, else the closest timm ViT (fewest model_args, timm's "
            + "vit_ names before aliases such as deit_); pretrained_cfg keeps the "
            + "checkpoint's preprocessing (identity normalization for models trained here).")

    @Option(help: "Model checkpoint (ours, or a hub snapshot directory).")
    var checkpoint: String

    @Option(help: "Output directory (created if missing; its config.json and model.safetensors are replaced).")
    var out: String

    func run() throws {
        let (params, meta) = try Checkpoint.load(path: checkpoint)
        let (architecture, modelArgs) = try HubSnapshot.write(params, metadata: meta, to: out)
        print(
            "wrote \(out)/config.json and model.safetensors: \(architecture) with model_args "
                + modelArgs.keys.sorted().joined(separator: ", "))
    }
}
