import Foundation
import ViTMergeModel

/// timm hub snapshots: a directory with `config.json` (architecture, model_args, pretrained_cfg)
/// and `model.safetensors` (timm's state dict), as timm's `save_for_hf` writes them and a timm
/// repository on the Hugging Face hub holds them.
public enum HubSnapshot {
    public static let configFile = "config.json"
    public static let weightsFile = "model.safetensors"

    /// What a parsed config.json describes.
    public struct Config: Equatable, Sendable {
        public var architecture: String
        public var config: ViTConfig
        public var preprocessing: Preprocessing?
    }

    /// The top-level keys of timm's config.json (save_for_hf); anything else is refused.
    static let topLevelKeys: Set<String> = [
        "architecture", "num_classes", "num_features", "global_pool", "model_args", "pretrained_cfg", "label_names",
        "label_descriptions",
    ]

    public static func parseConfig(path: String) throws(IOError) -> Config {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .cannotRead(path: path, reason: "no such file or unreadable")
        }
        return try parseConfig(json: data, path: path)
    }

    /// Parses timm's config.json the way timm resolves it: the architecture's arguments, then
    /// pretrained_cfg's num_classes (overridden by the top-level num_classes), global_pool, in_chans
    /// and img_size (from input_size), then model_args over all of them.
    public static func parseConfig(json: Data, path: String) throws(IOError) -> Config {
        func invalid(_ reason: String) -> IOError { .invalidFile(path: path, reason: reason, hint: "fix config.json") }
        guard let top = try? JSONDecoder().decode([String: JSONValue].self, from: json) else {
            throw invalid("not a JSON object")
        }
        if let key = top.keys.sorted().first(where: { !topLevelKeys.contains($0) }) {
            throw .unsupported(
                path: path, what: "the config.json key '\(key)'",
                hint: "timm's config.json has " + topLevelKeys.sorted().joined(separator: ", ") + "; remove it")
        }
        guard let architecture = top["architecture"]?.string else { throw invalid("no \"architecture\" string") }
        guard let base = TimmArchitectures.arguments(of: architecture) else {
            throw .unsupported(
                path: path, what: "the architecture '\(architecture)'",
                hint: "ViTMerge loads timm's plain ViTs (vit_{tiny,small,medium,base,large}_patch{8,14,16,32}_*, "
                    + "the _clip_ and _clip_quickgelu_ towers, deit_*, the _gap_ variants; MAE and DINO weights "
                    + "are tags of these)")
        }
        let pretrained = top["pretrained_cfg"]?.object
        if top["pretrained_cfg"] != nil && pretrained == nil { throw invalid("pretrained_cfg is not an object") }
        let modelArgs = top["model_args"]?.object
        if top["model_args"] != nil && modelArgs == nil { throw invalid("model_args is not an object") }
        var args = base
        var p = pretrained ?? [:]
        if let n = top["num_classes"] { p["num_classes"] = n }
        if let n = p["num_classes"], (n.int ?? -1) >= 0 { args["num_classes"] = n }
        if let g = p["global_pool"], g != .null { args["global_pool"] = g }
        if let s = p["input_size"]?.array, s.count == 3 {
            args["in_chans"] = s[0]
            if p["fixed_input_size"]?.bool ?? false { args["img_size"] = .array([s[1], s[2]]) }
        }
        args.merge(modelArgs ?? [:]) { $1 }
        let config = try TimmArchitectures.config(arguments: args, path: "\(path) (architecture \(architecture))")
        if let g = top["global_pool"], g != .string(config.globalPool.rawValue) {
            throw invalid("its global_pool \(g) disagrees with the model's '\(config.globalPool.rawValue)'")
        }
        if let n = top["num_features"], n.int != config.embedDim {
            throw invalid("its num_features \(n) disagrees with the model's embed_dim \(config.embedDim)")
        }
        let preprocessing = try pretrained.map { cfg throws(IOError) in
            try Self.preprocessing(from: cfg, config: config, path: path)
        }
        return Config(architecture: architecture, config: config, preprocessing: preprocessing)
    }

    /// The eval transform in timm's pretrained_cfg, with timm's defaults for missing keys.
    static func preprocessing(
        from p: [String: JSONValue], config c: ViTConfig, path: String
    ) throws(IOError) -> Preprocessing {
        func invalid(_ reason: String) -> IOError {
            .invalidFile(path: path, reason: "pretrained_cfg: \(reason)", hint: "fix config.json")
        }
        let size = [c.inChannels, c.imageHeight, c.imageWidth]
        var input = size
        if let v = p["input_size"], v != .null {
            guard let a = v.array?.compactMap(\.int), a.count == 3 else { throw invalid("input_size is not [C, H, W]") }
            input = a
        }
        guard input == size else {
            throw invalid("input_size \(input) disagrees with the model's in_chans and img_size \(size)")
        }
        func choice<T: RawRepresentable>(_ key: String, _ fallback: T) throws(IOError) -> T where T.RawValue == String {
            guard let v = p[key], v != .null else { return fallback }
            guard let s = v.string, let t = T(rawValue: s) else {
                throw .unsupported(path: path, what: "pretrained_cfg \(key) \(v)", hint: "fix config.json")
            }
            return t
        }
        func channels(_ key: String, _ fallback: [Float]) throws(IOError) -> [Float] {
            guard let v = p[key], v != .null else { return fallback }
            guard let a = v.array?.compactMap(\.double), a.count == c.inChannels, a.allSatisfy(\.isFinite) else {
                throw invalid("\(key) \(v) is not \(c.inChannels) numbers (one per input channel)")
            }
            return a.map { Float($0) }
        }
        var cropPct = 0.875  // timm's DEFAULT_CROP_PCT
        if let v = p["crop_pct"], v != .null {
            guard let d = v.double, d > 0, d <= 4 else { throw invalid("crop_pct \(v) is not a number in (0, 4]") }
            cropPct = d
        }
        let defaults = c.inChannels == 3 ? Preprocessing.imagenet : .unit(channels: c.inChannels, height: 1, width: 1)
        let std = try channels("std", defaults.std)
        guard std.allSatisfy({ $0 > 0 }) else { throw invalid("std \(std) has a value ≤ 0") }
        return Preprocessing(
            inputSize: input, interpolation: try choice("interpolation", .bicubic), cropPct: cropPct,
            cropMode: try choice("crop_mode", .center), mean: try channels("mean", defaults.mean), std: std)
    }
}
