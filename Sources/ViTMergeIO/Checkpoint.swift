import Foundation
import ViTMergeCore
import ViTMergeKernels
import ViTMergeModel

/// Model checkpoints: safetensors with timm's state-dict names and the config as JSON under
/// `__metadata__["config"]` (FORMATS.md).
public enum Checkpoint {
    /// Loads a checkpoint: one of ours, or a timm hub snapshot (its directory with config.json and
    /// model.safetensors, or that model.safetensors with the config.json beside it; see HubSnapshot).
    /// The config comes from the file's metadata (or config.json), or from `config` when the file
    /// has none (if both exist they must agree). Every tensor must be present with the config's
    /// shape, as F32, F16 or BF16 (half types widened exactly to Float32, as hub checkpoints are
    /// often stored), and no unknown tensor may appear (the ones `__metadata__["auxiliary_tensors"]`
    /// names, another tower or head saved beside the encoder, are skipped). A PyTorch pickle is refused, never opened.
    /// When the config comes from outside the file (given, or timm's config.json) and the file's
    /// `pos_embed` is for another, square patch grid, it is resampled to the config's grid once,
    /// as timm does when a model is created at another img_size (see `resampledPositions`).
    public static func load(
        path: String, config given: ViTConfig? = nil
    ) throws -> (parameters: ViTParameters, metadata: [String: String]) {
        switch try HubSnapshot.locate(path) {
        case .checkpoint(let file): try load(file: file, config: given)
        case .hub(let config, let weights): try HubSnapshot.load(config: config, weights: weights, given: given)
        }
    }

    /// Metadata keys a checkpoint made from another keeps (fine-tuned, probed, merged): the timm
    /// architecture it came from and its preprocessing (`pretrained_cfg`, a Preprocessing JSON).
    public static let lineageKeys = ["architecture", "pretrained_cfg"]

    /// The lineage entries of `metadata` (see `lineageKeys`), to pass on to a derived checkpoint.
    public static func lineage(_ metadata: [String: String]) -> [String: String] {
        metadata.filter { lineageKeys.contains($0.key) }
    }

    /// The preprocessing image folders get for a model: its checkpoint's `pretrained_cfg`, else pixels scaled to
    /// [0, 1] at the model's input size (bilinear resize, no crop margin; what the embedded tasks use).
    public static func preprocessing(
        _ metadata: [String: String], config: ViTConfig
    ) throws(IOError) -> Preprocessing {
        try preprocessing(metadata)
            ?? .unit(channels: config.inChannels, height: config.imageHeight, width: config.imageWidth)
    }

    /// The checkpoint's preprocessing (`metadata["pretrained_cfg"]`), nil when it has none.
    public static func preprocessing(_ metadata: [String: String]) throws(IOError) -> Preprocessing? {
        guard let json = metadata["pretrained_cfg"] else { return nil }
        do { return try JSONDecoder().decode(Preprocessing.self, from: Data(json.utf8)) } catch {
            throw .invalidFile(
                path: metadata["source"] ?? "checkpoint", reason: "its pretrained_cfg metadata is invalid: \(error)",
                hint: "fix or remove __metadata__[\"pretrained_cfg\"]")
        }
    }

    /// `value` as compact JSON with sorted keys (how metadata values are stored).
    static func json<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(value)) ?? Data("{}".utf8), as: UTF8.self)
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
                hint: "put timm's config.json beside it (a hub snapshot), pass the config (--config cfg.json), "
                    + "or export with scripts/export_timm.py")
        }
        // Every parameter must be in the file with its shape and dtype: checked before the model is
        // allocated, so a config in the header cannot make us allocate more than twice what the file
        // holds (F16 and BF16 tensors are widened to Float32).
        let table = ParameterTable(config: config)
        let external = file.metadata["config"] == nil
        var oldGrid: Int?  // side of the square grid of a pos_embed to resample
        for r in table.layout.regions {
            guard let info = file.info(r.name) else {
                throw IOError.missingTensor(path: path, tensor: r.name, available: file.names)
            }
            guard DType.floatTypes.contains(info.dtype) else {
                throw IOError.dtypeMismatch(
                    path: path, tensor: r.name, expected: "F32, F16 or BF16", found: info.dtype.rawValue)
            }
            if info.shape != r.shape.dims, r.name == "pos_embed", external,
                let side = resamplableGrid(found: info.shape, config: config)
            {
                oldGrid = side
                continue
            }
            guard info.shape == r.shape.dims else {
                throw IOError.shapeMismatch(path: path, tensor: r.name, expected: r.shape.dims, found: info.shape)
            }
        }
        let params = ViTParameters(table: table)
        let expected = Set(params.table.names).union(try auxiliaryTensors(file))
        for name in file.names where !expected.contains(name) {
            throw IOError.unknownTensor(
                path: path, tensor: name,
                hint:
                    "a model with config \(config.json) has no such parameter; check the checkpoint matches the config")
        }
        for r in params.table.layout.regions {
            if r.name == "pos_embed", let side = oldGrid {
                let found = try file.floats(r.name)
                let resampled = resampledPositions(found, grid: (side, side), config: config)
                (params.base + r.offset).update(from: resampled, count: resampled.count)
                continue
            }
            try file.copyFloats(r.name, into: params.base + r.offset, shape: r.shape.dims)
        }
        return (params, file.metadata)
    }

    /// The pos_embed prefix rows timm keeps when resampling: the class and register tokens, or
    /// none with `no_embed_class` (checkpoint_filter_fn's num_prefix_tokens).
    static func positionPrefixRows(_ c: ViTConfig) -> Int { c.noEmbedClass ? 0 : c.numPrefixTokens }

    /// The side s of the square s×s grid a pos_embed of shape `found` covers (after the config's
    /// prefix rows), when it can be resampled to `config`'s grid: [1, prefix + s², embed_dim] with
    /// s ≠ the config's grid. nil otherwise (the shape is then an error).
    static func resamplableGrid(found: [Int], config c: ViTConfig) -> Int? {
        let prefix = positionPrefixRows(c)
        guard found.count == 3, found[0] == 1, found[2] == c.embedDim, found[1] > prefix, found[1] <= 1 << 20 else {
            return nil
        }
        let n = found[1] - prefix
        var side = Int(Double(n).squareRoot())
        while side * side > n { side -= 1 }
        while (side + 1) * (side + 1) <= n { side += 1 }
        guard side * side == n, side != c.gridHeight || side != c.gridWidth else { return nil }
        return side
    }

    /// timm's `resample_abs_pos_embed(pos, new_size=grid of c, old_size=grid, num_prefix_tokens=…)`
    /// with its defaults (bicubic, antialias True), as `checkpoint_filter_fn` calls it when
    /// `timm.create_model(..., pretrained=True, img_size=…)` loads a checkpoint: `pos`
    /// [prefix + H·W rows, D] for the old grid → [c.posEmbedTokens, D], the prefix rows copied, the
    /// grid resized with `Bicubic.resize` (antialiased bicubic, the filter stretched when downsampling).
    public static func resampledPositions(
        _ pos: [Float], grid: (height: Int, width: Int), config c: ViTConfig
    )
        -> [Float]
    {
        let prefix = positionPrefixRows(c), d = c.embedDim
        precondition(pos.count == (prefix + grid.height * grid.width) * d, "resampledPositions: wrong size")
        var out = [Float](repeating: 0, count: c.posEmbedTokens * d)
        pos.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                Bicubic.resamplePositions(
                    out: dst.baseAddress!, pos: src.baseAddress!, prefix: prefix, dim: d, from: grid,
                    to: (c.gridHeight, c.gridWidth))
            }
        }
        return out
    }

    /// Checks that `file` holds every parameter of `table` as `prefix + name`, F32 (or F16, BF16,
    /// widened when read) with the table's shape, so that allocating the model afterwards needs at
    /// most twice the memory the file's data takes.
    static func requireParameters(
        _ table: ParameterTable, in file: SafeTensorsFile, prefix: String = ""
    ) throws(IOError) {
        for r in table.layout.regions {
            let name = prefix + r.name
            guard let info = file.info(name) else {
                throw .missingTensor(path: file.path, tensor: name, available: file.names)
            }
            guard DType.floatTypes.contains(info.dtype) else {
                throw .dtypeMismatch(
                    path: file.path, tensor: name, expected: "F32, F16 or BF16", found: info.dtype.rawValue)
            }
            guard info.shape == r.shape.dims else {
                throw .shapeMismatch(path: file.path, tensor: name, expected: r.shape.dims, found: info.shape)
            }
        }
    }

    /// Writes `parameters` (optionally only the tensors `include` accepts) atomically, with the
    /// config and `metadata` in the header. `auxiliary` tensors (another tower or head trained
    /// with the encoder, e.g. an MAE decoder; names distinct from the encoder's) follow the
    /// encoder's, and `__metadata__["auxiliary_tensors"]` lists their names (a JSON array), so
    /// `load` reads the encoder and skips them.
    public static func save(
        _ parameters: ViTParameters, to path: String, metadata: [String: String] = [:],
        include: (String) -> Bool = { _ in true }, auxiliary: Arena? = nil
    ) throws {
        var meta = metadata
        meta["config"] = parameters.config.json
        meta["format"] = meta["format"] ?? "vitmerge-checkpoint"
        if let auxiliary { meta["auxiliary_tensors"] = json(auxiliary.layout.regions.map(\.name)) }
        var writer = SafeTensorsWriter(metadata: meta)
        for r in parameters.table.layout.regions where include(r.name) {
            try writer.add(
                r.name, floats: UnsafeBufferPointer(start: parameters.base + r.offset, count: r.shape.count),
                shape: r.shape.dims)
        }
        for r in auxiliary?.layout.regions ?? [] {
            try writer.add(
                r.name, floats: UnsafeBufferPointer(start: auxiliary!.base + r.offset, count: r.shape.count),
                shape: r.shape.dims)
        }
        try writer.write(to: path)
    }

    /// The names `__metadata__["auxiliary_tensors"]` lists (tensors beside the encoder that `load`
    /// skips); none when the key is absent.
    public static func auxiliaryTensors(_ file: SafeTensorsFile) throws(IOError) -> [String] {
        guard let text = file.metadata["auxiliary_tensors"] else { return [] }
        guard let names = try? JSONDecoder().decode([String].self, from: Data(text.utf8)) else {
            throw .invalidFile(
                path: file.path, reason: "its auxiliary_tensors metadata is not a JSON array of tensor names",
                hint: "fix or remove __metadata__[\"auxiliary_tensors\"]")
        }
        return names
    }
}
