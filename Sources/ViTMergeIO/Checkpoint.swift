import Foundation
import ViTMergeCore
import ViTMergeModel

/// Model checkpoints: safetensors with timm's state-dict names and the config as JSON under
/// `__metadata__["config"]` (FORMATS.md).
public enum Checkpoint {
    /// Loads a checkpoint. The config comes from the file's metadata, or from `config` when the
    /// file has none (if both exist they must agree). Every tensor must be present with the
    /// config's shape, and no unknown tensor may appear.
    public static func load(
        path: String, config given: ViTConfig? = nil
    ) throws -> (parameters: ViTParameters, metadata: [String: String]) {
        try load(file: SafeTensorsFile.read(path: path), config: given)
    }

    /// `load(path:config:)` for a file already read (`file.path` names it in errors).
    public static func load(
        file: SafeTensorsFile, config given: ViTConfig? = nil
    ) throws -> (parameters: ViTParameters, metadata: [String: String]) {
        let path = file.path
        let config: ViTConfig
        if let json = file.metadata["config"] {
            do { config = try ViTConfig.parse(json: Data(json.utf8)) } catch {
                throw IOError.invalidFile(
                    path: path, reason: "its config is invalid: \(error)",
                    hint: "fix the config JSON in the file's metadata")
            }
            if let given, given != config {
                throw IOError.configMismatch(path: path, file: config.json, given: given.json)
            }
        } else if let given {
            config = given
        } else {
            throw IOError.invalidFile(
                path: path, reason: "no model config in the metadata",
                hint: "pass the config (--config cfg.json), or export with scripts/export_timm.py")
        }
        // Every parameter must be in the file with its shape and dtype: checked before the model is
        // allocated, so a config in the header cannot make us allocate more than the file holds.
        let table = ParameterTable(config: config)
        for r in table.layout.regions {
            guard let info = file.info(r.name) else {
                throw IOError.missingTensor(path: path, tensor: r.name, available: file.names)
            }
            guard info.dtype == .f32 else {
                throw IOError.dtypeMismatch(path: path, tensor: r.name, expected: "F32", found: info.dtype.rawValue)
            }
            guard info.shape == r.shape.dims else {
                throw IOError.shapeMismatch(path: path, tensor: r.name, expected: r.shape.dims, found: info.shape)
            }
        }
        let params = ViTParameters(config: config)
        let expected = Set(params.table.names)
        for name in file.names where !expected.contains(name) {
            throw IOError.unknownTensor(
                path: path, tensor: name,
                hint:
                    "a model with config \(config.json) has no such parameter; check the checkpoint matches the config")
        }
        for r in params.table.layout.regions {
            try file.copyFloats(r.name, into: params.base + r.offset, shape: r.shape.dims)
        }
        return (params, file.metadata)
    }

    /// Writes `parameters` (optionally only the tensors `include` accepts) atomically, with the
    /// config and `metadata` in the header.
    public static func save(
        _ parameters: ViTParameters, to path: String, metadata: [String: String] = [:],
        include: (String) -> Bool = { _ in true }
    ) throws {
        var meta = metadata
        meta["config"] = parameters.config.json
        meta["format"] = meta["format"] ?? "vitmerge-checkpoint"
        var writer = SafeTensorsWriter(metadata: meta)
        for r in parameters.table.layout.regions where include(r.name) {
            try writer.add(
                r.name, floats: UnsafeBufferPointer(start: parameters.base + r.offset, count: r.shape.count),
                shape: r.shape.dims)
        }
        try writer.write(to: path)
    }
}
