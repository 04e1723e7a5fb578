import Foundation
import ViTMergeModel

extension HubSnapshot {
    /// What a checkpoint path names: one of our checkpoints, or a hub snapshot (its config.json and
    /// weights, read already).
    enum Location {
        case checkpoint(SafeTensorsFile)
        case hub(config: String, weights: SafeTensorsFile)
    }

    /// Files that hold a pickle, which ViTMerge never opens.
    static let pickleExtensions: Set<String> = ["bin", "pth", "pt", "ckpt", "pkl"]

    static func pickleRefusal(_ path: String) -> IOError {
        .unsupported(
            path: path, what: "reading a PyTorch pickle",
            hint: "ViTMerge never unpickles (a pickle can run code); download the repository's model.safetensors, "
                + "or convert this file once with `python -c \"import torch, safetensors.torch as st; "
                + "st.save_file(torch.load('\(path)', map_location='cpu', weights_only=True), 'model.safetensors')\"` "
                + "and keep timm's config.json beside it")
    }

    /// Resolves `path`: a snapshot directory (config.json + model.safetensors), a model.safetensors
    /// without our config metadata but with a config.json beside it, or one of our checkpoints.
    static func locate(_ path: String) throws(IOError) -> Location {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            let dir = URL(fileURLWithPath: path)
            let weights = dir.appendingPathComponent(weightsFile).path
            let config = dir.appendingPathComponent(configFile).path
            if fm.fileExists(atPath: weights) {
                let file = try SafeTensorsFile.read(path: weights)
                return fm.fileExists(atPath: config) ? .hub(config: config, weights: file) : .checkpoint(file)
            }
            let names = ((try? fm.contentsOfDirectory(atPath: path)) ?? []).sorted()
            if let pickle = names.first(where: { pickleExtensions.contains(($0 as NSString).pathExtension) }) {
                throw pickleRefusal(dir.appendingPathComponent(pickle).path)
            }
            throw .invalidFile(
                path: path, reason: "a directory without \(weightsFile)",
                hint: "give a timm hub snapshot (config.json + model.safetensors) or a .safetensors checkpoint")
        }
        if pickleExtensions.contains((path as NSString).pathExtension.lowercased()) { throw pickleRefusal(path) }
        let file = try SafeTensorsFile.read(path: path)
        let beside = URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent(configFile).path
        if file.metadata["config"] == nil && fm.fileExists(atPath: beside) {
            return .hub(config: beside, weights: file)
        }
        return .checkpoint(file)
    }

    /// Loads a snapshot's weights with the model its config.json describes. The metadata returned
    /// holds `architecture` and `pretrained_cfg` (our Preprocessing JSON) for the checkpoints made from it.
    static func load(
        config configPath: String, weights file: SafeTensorsFile, given: ViTConfig?
    ) throws -> (parameters: ViTParameters, metadata: [String: String]) {
        let hub = try parseConfig(path: configPath)
        if let given, given != hub.config {
            throw IOError.configMismatch(path: configPath, file: hub.config.json, given: given.json)
        }
        let parameters: ViTParameters
        do { parameters = try Checkpoint.load(file: file, config: hub.config).parameters } catch let e as IOError {
            throw IOError.invalidFile(
                path: file.path,
                reason: "its tensors disagree with \(configPath) (architecture \(hub.architecture)): \(e)",
                hint: "use the config.json that came with these weights, or fix its model_args")
        }
        var metadata = ["architecture": hub.architecture, "source": file.path, "format": "timm-hub"]
        if let p = hub.preprocessing { metadata["pretrained_cfg"] = Checkpoint.json(p) }
        return (parameters, metadata)
    }

    /// Writes `parameters` as a hub snapshot in `directory` (created if missing): config.json with
    /// the architecture, model_args and pretrained_cfg, and model.safetensors with timm's keys.
    /// The architecture is `metadata["architecture"]` when it can express the config, else the
    /// closest one in the table; preprocessing is `metadata["pretrained_cfg"]`, else identity
    /// normalization (the embedded tasks' pixels in [0, 1]). Everything is checked before writing.
    @discardableResult
    public static func write(
        _ parameters: ViTParameters, metadata: [String: String], to directory: String
    ) throws -> (architecture: String, modelArgs: [String: JSONValue]) {
        let c = parameters.config
        guard let chosen = TimmArchitectures.exportArchitecture(for: c, preferred: metadata["architecture"]) else {
            throw IOError.unsupported(
                path: directory, what: "exporting norm_eps \(c.normEps)",
                hint: "timm's plain ViTs use LayerNorm eps 1e-6 (or 1e-5 in the CLIP towers); export a model with one")
        }
        let (architecture, modelArgs) = chosen
        let p =
            try Checkpoint.preprocessing(metadata)
            ?? .unit(channels: c.inChannels, height: c.imageHeight, width: c.imageWidth)
        guard p.inputSize == [c.inChannels, c.imageHeight, c.imageWidth], p.mean.count == c.inChannels,
            p.std.count == c.inChannels
        else {
            throw IOError.invalidFile(
                path: directory, reason: "the checkpoint's pretrained_cfg \(Checkpoint.json(p)) does not fit \(c.json)",
                hint: "fix or drop the pretrained_cfg metadata of the checkpoint")
        }
        func number(_ f: Float) -> JSONValue { .number(Double("\(f)") ?? Double(f)) }
        let pretrainedCfg: [String: JSONValue] = [
            "input_size": .array(p.inputSize.map { .int($0) }), "fixed_input_size": .bool(true),
            "interpolation": .string(p.interpolation.rawValue), "crop_pct": .number(p.cropPct),
            "crop_mode": .string(p.cropMode.rawValue), "mean": .array(p.mean.map(number)),
            "std": .array(p.std.map(number)), "num_classes": .int(c.numClasses), "pool_size": .null,
            "first_conv": "patch_embed.proj", "classifier": "head",
        ]
        let config: [String: JSONValue] = [
            "architecture": .string(architecture), "num_classes": .int(c.numClasses), "num_features": .int(c.embedDim),
            "global_pool": .string(c.globalPool.rawValue), "model_args": .object(modelArgs),
            "pretrained_cfg": .object(pretrainedCfg),
        ]
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let json = try encoder.encode(config)
        try AtomicFile.createDirectory(directory)
        let dir = URL(fileURLWithPath: directory)
        var writer = SafeTensorsWriter(metadata: ["format": "pt"])
        for r in parameters.table.layout.regions {
            try writer.add(
                r.name, floats: UnsafeBufferPointer(start: parameters.base + r.offset, count: r.shape.count),
                shape: r.shape.dims)
        }
        try writer.write(to: dir.appendingPathComponent(weightsFile).path)
        let configPath = dir.appendingPathComponent(configFile)
        try AtomicFile.write(json, to: configPath.path)
        return (architecture, modelArgs)
    }
}

extension JSONValue: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
}
